"""Where the C face of this package lives, and the environment that points C programs at it.

The build installs, inside this package (docs/c_abi.md):

- ``sdk/lib``: ``libcdsprpc.so.1``, ``libadsprpc.so.1``, ``libsdsprpc.so.1`` (the C ABI of the
  legacy user library, with unversioned copies for ``-lcdsprpc``) and ``pkgconfig/qdarpc.pc``;
- ``sdk/include``: the SDK-compatible headers (``remote.h``, ``rpcmem.h``, ``AEEStdErr.h``, ...).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["SDK_DIR", "LIBRARIES", "libdir", "includedir", "pkgconfig_dir", "library", "cflags", "libs",
           "run_env", "shim", "NotBuiltError"]

SDK_DIR = Path(__file__).resolve().parent / "sdk"
#: The C ABI libraries by flavour, as upstream names them (same API, another default domain).
LIBRARIES = {"libcdsprpc": "cdsp", "libadsprpc": "adsp", "libsdsprpc": "sdsp"}


class NotBuiltError(FileNotFoundError):
    """The C libraries or headers are missing: the package was not built (a bare checkout)."""


def _need(path: Path) -> Path:
    if not path.exists():
        raise NotBuiltError(f"{path} is missing: the C ABI is built with the package "
                            "(`pip install .`, or `python setup.py build_ext --inplace` in a checkout)")
    return path


def libdir() -> Path:
    """The directory holding ``libcdsprpc.so.1`` and its siblings."""
    return _need(SDK_DIR / "lib")


def includedir() -> Path:
    """The directory holding ``remote.h``, ``rpcmem.h`` and the other SDK headers."""
    return _need(SDK_DIR / "include")


def pkgconfig_dir() -> Path:
    """The directory holding ``qdarpc.pc`` (for ``PKG_CONFIG_PATH``)."""
    return _need(SDK_DIR / "lib" / "pkgconfig")


def library(flavour: str = "libcdsprpc") -> Path:
    """The path of one C ABI library (``libcdsprpc.so.1`` by default)."""
    if flavour not in LIBRARIES:
        raise ValueError(f"unknown library {flavour!r}; valid: {', '.join(LIBRARIES)}")
    return _need(SDK_DIR / "lib" / f"{flavour}.so.1")


def shim() -> Path:
    """The LD_PRELOAD device shim, ``libqdarpc_shim.so`` (docs/shim.md)."""
    return _need(SDK_DIR / "lib" / "libqdarpc_shim.so")


def cflags() -> str:
    """Compiler flags for code including the SDK headers."""
    return f"-I{includedir()}"


def libs() -> str:
    """Linker flags for a host app (an rpath, so the program runs without LD_LIBRARY_PATH)."""
    d = libdir()
    return f"-L{d} -Wl,-rpath,{d} -lcdsprpc"


#: Preloaded libraries that must stay first on LD_PRELOAD (the sanitizers' runtimes).
_SANITIZER_RUNTIMES = ("libasan", "libubsan", "libtsan", "liblsan", "libclang_rt.")


def _loaded_runtimes() -> list[str]:
    """The sanitizer runtimes this process has loaded (from /proc/self/maps), ASan's first."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)  # an anonymous mapping has no sixth field
                path = fields[5].strip() if len(fields) > 5 else ""
                if path and os.path.basename(path).startswith(_SANITIZER_RUNTIMES) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return sorted(found, key=lambda p: "asan" not in os.path.basename(p))  # ASan's must be the very first


def sanitizer_preload(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the sanitizer runtimes this process runs with on ``LD_PRELOAD`` (when it
    has none): a Python started with it that imports our extensions built with
    ``QDARPC_SANITIZE=1`` needs them first (tox -e asan). Returns ``env``."""
    runtimes = _loaded_runtimes()
    if runtimes and not env.get("LD_PRELOAD"):
        env["LD_PRELOAD"] = " ".join(runtimes)
    return env


def run_env(base: dict[str, str] | None = None, *, backend: str | None = None, soc: str | None = None,
            trace: str | None = None, with_shim: bool = False) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus what a C program needs to reach the emulator:
    our libraries first on ``LD_LIBRARY_PATH`` (so a program linked against a device's
    ``libcdsprpc.so`` loads ours) - or, ``with_shim``, the device shim on ``LD_PRELOAD`` and the
    program's own FastRPC library left alone -, the interpreter the package runs in
    (``QDARPC_PYTHON``), and the backend, SoC profile and trace file when given."""
    env = dict(os.environ if base is None else base)
    # A sanitizer runtime goes first on LD_PRELOAD, then the shim, then the rest: ASan aborts a
    # program whose preload list does not start with it, and our libraries built with it
    # (QDARPC_SANITIZE=1, tox -e asan) need it in every program that loads them, so the
    # runtimes this process runs with are passed on.
    prev = env.get("LD_PRELOAD", "").replace(":", " ").split()
    runtimes = list(dict.fromkeys([p for p in prev if os.path.basename(p).startswith(_SANITIZER_RUNTIMES)]
                                  + _loaded_runtimes()))
    preload = [*runtimes, *([str(shim())] if with_shim else []), *(p for p in prev if p not in runtimes)]
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    if not with_shim:
        prev_path = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(libdir()) + (os.pathsep + prev_path if prev_path else "")
    env["QDARPC_PYTHON"] = sys.executable
    for key, value in (("QDARPC_BACKEND", backend), ("QDARPC_SOC", soc),
                       ("QDARPC_TRACE", os.path.abspath(trace) if trace else None)):
        if value is not None:
            env[key] = value
    return env
