"""Compiling and running C programs against the C ABI library in tests (docs/c_abi.md)."""
from __future__ import annotations

import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
C_DIR = Path(__file__).resolve().parent / "c"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
STRICT = ["-std=gnu99", "-Wall", "-Wextra", "-Werror"]


def _sdk():
    from libadsprpc_compat import native

    try:
        return native.includedir(), native.libdir()
    except native.NotBuiltError as exc:
        return exc


_SDK = _sdk()

#: Marks for a test module that compiles C against the C ABI.
needs_c_abi = [
    pytest.mark.needs_cc,
    pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)"),
    pytest.mark.skipif(isinstance(_SDK, Exception), reason=f"the C ABI is not built: {_SDK}"),
]


def compile_c(sources, out: Path, *, shared: bool = False, link_abi: bool = True, flags=()) -> Path:
    """Build ``sources`` (paths, or names under tests/c/) into ``out`` with the SDK headers."""
    inc, lib = _SDK
    srcs = [str(s if Path(s).is_absolute() else C_DIR / s) for s in ([sources] if isinstance(sources, (str, Path))
                                                                       else sources)]
    cmd = [CC, *STRICT, f"-I{inc}", *srcs, "-o", str(out), *flags]
    if shared:
        cmd[1:1] = ["-shared", "-fPIC"]
    if link_abi:
        cmd += [f"-L{lib}", f"-Wl,-rpath,{lib}", "-lcdsprpc", "-lpthread"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    return out


def compile_skel(name: str, out: Path) -> Path:
    """The skel ``tests/c/skels/<name>.c`` as a shared library ``out``: DSP-side code, built
    against the repository's own headers (``qdarpc/remote_abi.h``), not the C ABI."""
    subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
                    f"-I{ROOT / 'csrc' / 'include'}", "-o", str(out), str(C_DIR / "skels" / f"{name}.c")],
                   check=True, capture_output=True, text=True)
    return out


def run_c(argv, *, backend: str = "accel", env=None, timeout: float = 120, cwd=None,
          **extra_env) -> subprocess.CompletedProcess:
    """Run a C program as `qdarpc run` would (our libraries, this interpreter, ``backend``)."""
    from libadsprpc_compat import native

    base = dict(os.environ if env is None else env)
    for k in ("QDARPC_TRACE", "QDARPC_SOC", "PYTHONPATH"):
        base.pop(k, None)
    e = native.run_env(base, backend=backend)
    e.update({k: str(v) for k, v in extra_env.items()})
    # Its own process group, killed whole when the wait ends any other way (a timeout, Ctrl-C):
    # a hung child it forked must not outlive the test.
    with subprocess.Popen([str(a) for a in argv], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=cwd, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                exc.stdout, exc.stderr = out, err  # what the hung program said
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def python_exe() -> str:
    return sys.executable
