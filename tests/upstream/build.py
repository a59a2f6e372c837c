#!/usr/bin/env python3
"""Build the upstream FastRPC user library (github.com/qualcomm/fastrpc, BSD-3-Clause) from its
source tarballs, unmodified, so the tests can run it against the emulator through the device shim.

Two branches, each built out of tree into its own cache directory::

    <cache>/<branch>-<commit>/
        src/        the tarball, extracted (autoreconf runs here)
        build/      configure and make run here
        prefix/     make install: lib/libcdsprpc.so.1, bin/fastrpc_test, include/fastrpc/...
        logs/       one log per step (autoreconf.log, configure.log, make.log, install.log)
        drm/        accel/staging only: drm/drm -> /usr/include/libdrm (Debian ships <drm/drm.h>
                    only there); -I<cache>/<name>/drm goes on CPPFLAGS
        .stamp      written last; while it exists the build is not repeated

``<cache>`` is ``$QDARPC_UPSTREAM_CACHE``, default ``<repo>/.cache/upstream``. The tarballs
(``fastrpc-development-29851fd.tar.gz``, ``fastrpc-accel-staging-759d6f8.tar.gz``) are looked for
in ``$QDARPC_UPSTREAM_FIXTURES``, by default where the project's workspace keeps its fixtures
(:func:`fixtures_dir`). A file lock (``<cache>/<name>.lock``) keeps two processes (two pytest
sessions) from building the same branch at once: the second waits, then finds the stamp.

The stand-ins for ``fastrpc_test``'s three test libraries (the tarballs carry aarch64 builds of
Hexagon SDK examples) and the calculator client are compiled from ``tests/c/upstream`` against
the installed upstream headers and ``libcdsprpc.so``; :func:`install_standins` puts the test
libraries into the build's ``testlibdir`` (``prefix/lib/fastrpc_test``), replacing the aarch64
files of the cache copy.

Standalone::

    python tests/upstream/build.py                   # both branches, with the stand-ins
    python tests/upstream/build.py development       # one branch
    python tests/upstream/build.py --rebuild accel-staging
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
C_SOURCES = ROOT / "tests" / "c" / "upstream"
#: The apt packages the build needs (Debian/Ubuntu names), by what is checked for them.
APT_PACKAGES = "autoconf automake libtool pkg-config libyaml-dev libbsd-dev libdrm-dev"
CFLAGS = "-O2 -g -pipe -w"
#: The test libraries fastrpc_test runs (test/Makefile.am TESTLIST) and the client program.
STANDINS = ("calculator", "hap_example", "multithreading")
CLIENT = "calc_client"


@dataclass(frozen=True)
class Branch:
    name: str        # cache directory prefix and command-line name
    tarball: str     # file name in the fixtures directory
    commit: str      # short commit the tarball was made from
    accel: bool      # configure --enable-accel-driver (QDA accel backend)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.commit}"


BRANCHES = {
    "development": Branch("development", "fastrpc-development-29851fd.tar.gz", "29851fd", accel=False),
    "accel-staging": Branch("accel-staging", "fastrpc-accel-staging-759d6f8.tar.gz", "759d6f8", accel=True),
}


class BuildError(RuntimeError):
    """A build step failed; the message ends with the tail of its log."""


class Unavailable(RuntimeError):
    """The build cannot be attempted here: the tarballs or the build tools are missing."""


def fixtures_dir() -> Path:
    env = os.environ.get("QDARPC_UPSTREAM_FIXTURES")
    return Path(env) if env else ROOT.parent / "shared" / "fixtures" / "upstream"


def cache_dir() -> Path:
    env = os.environ.get("QDARPC_UPSTREAM_CACHE")
    return Path(env) if env else ROOT / ".cache" / "upstream"


@dataclass(frozen=True)
class Built:
    """One installed upstream build."""
    branch: Branch
    dir: Path

    @property
    def prefix(self) -> Path:
        return self.dir / "prefix"

    @property
    def libdir(self) -> Path:
        return self.prefix / "lib"

    @property
    def includedir(self) -> Path:
        """Where ``remote.h``, ``rpcmem.h``, ``AEEStdErr.h``, ... are installed."""
        return self.prefix / "include" / "fastrpc"

    @property
    def libcdsprpc(self) -> Path:
        return self.libdir / "libcdsprpc.so.1"

    @property
    def fastrpc_test(self) -> Path:
        return self.prefix / "bin" / "fastrpc_test"

    @property
    def testlibdir(self) -> Path:
        """fastrpc_test's compile-time ``testlibdir``: it dlopens every ``*.so`` here."""
        return self.libdir / "fastrpc_test"

    @property
    def client(self) -> Path:
        return self.dir / "client" / CLIENT

    @property
    def logs(self) -> Path:
        return self.dir / "logs"


# --- checks -------------------------------------------------------------------------------------
def missing_tools() -> list[str]:
    """What the build needs and this machine lacks (empty: all there)."""
    out = [t for t in ("autoreconf", "automake", "libtoolize", "pkg-config", "make") if shutil.which(t) is None]
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        out.append("cc")
    if shutil.which("pkg-config"):
        for pc in ("yaml-0.1", "libbsd-overlay", "libdrm"):
            if subprocess.run(["pkg-config", "--exists", pc]).returncode != 0:
                out.append(f"pkg-config {pc}")
    return out


def check_available(branches=None) -> None:
    """Raise :class:`Unavailable` saying what building ``branches`` (default: all) needs and this
    machine lacks, and how to get it."""
    branches = list(BRANCHES.values() if branches is None else branches)
    if not branches:
        return
    fx = fixtures_dir()
    absent = [b.tarball for b in branches if not (fx / b.tarball).is_file()]
    if absent:
        raise Unavailable(f"upstream FastRPC tarballs not found in {fx}: {', '.join(absent)} (put them there, or "
                          f"set QDARPC_UPSTREAM_FIXTURES to the directory holding them)")
    tools = missing_tools()
    if tools:
        raise Unavailable(f"cannot build upstream FastRPC, missing: {', '.join(tools)} "
                          f"(apt-get install {APT_PACKAGES})")


# --- the build ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _step(label: str, name: str, cmd: list[str], *, cwd: Path, env: dict, log: Path, timings: dict) -> None:
    t0 = time.monotonic()
    with open(log, "w") as f:
        f.write(f"$ {' '.join(cmd)}\n# cwd {cwd}\n")
        f.flush()
        res = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t0
    timings[name] = round(dt, 1)
    failed = "" if res.returncode == 0 else f" (FAILED, exit {res.returncode})"
    _say(f"[upstream {label}] {name}: {dt:.1f} s{failed}")
    if res.returncode != 0:
        raise BuildError(f"upstream {label}: {name} failed (exit {res.returncode}); log {log}, last lines:\n"
                         f"{_tail(log)}")


def _build_env(d: Path, branch: Branch) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CPPFLAGS", "CFLAGS", "CXXFLAGS", "LDFLAGS",
                        "CONFIG_SITE")}
    env.update(CFLAGS=CFLAGS, CXXFLAGS=CFLAGS, LC_ALL="C")
    if branch.accel:
        env["CPPFLAGS"] = f"-I{d / 'drm'}"
    return env


def _extract(tarball: Path, dest: Path) -> None:
    """Extract the tarball's single top directory as ``dest``."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        tops = {m.name.split("/", 1)[0] for m in tf.getmembers()}
        if len(tops) != 1:
            raise BuildError(f"{tarball}: expected one top directory, found {sorted(tops)}")
        if hasattr(tarfile, "tar_filter"):  # Python >= 3.11.4: no absolute paths or links out of tmp
            tf.extractall(tmp, filter="tar")
        else:
            tf.extractall(tmp)
    (tmp / tops.pop()).rename(dest)
    tmp.rmdir()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_built(name: str) -> bool:
    """Whether the cache holds a finished build of branch ``name``."""
    return (cache_dir() / BRANCHES[name].key / ".stamp").exists()


def build(name: str, *, rebuild: bool = False, jobs: int = 2) -> Built:
    """Build and install one branch (a :data:`BRANCHES` key) unless its stamp says it is built.
    Raises :class:`Unavailable` when it has to build and cannot, :class:`BuildError` when a step
    fails."""
    branch = BRANCHES[name]
    root = cache_dir()
    d = root / branch.key
    out = Built(branch, d)
    stamp = d / ".stamp"
    if stamp.exists() and not rebuild:
        return out
    check_available([branch])
    with _locked(root / f"{branch.key}.lock"):
        if stamp.exists() and not rebuild:  # built by another process while we waited
            return out
        tarball = fixtures_dir() / branch.tarball
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        out.logs.mkdir()
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        _extract(tarball, d / "src")
        timings["extract"] = round(time.monotonic() - t0, 1)
        _say(f"[upstream {branch.key}] extract: {timings['extract']:.1f} s")
        if branch.accel:
            (d / "drm").mkdir()
            (d / "drm" / "drm").symlink_to("/usr/include/libdrm")
        (d / "build").mkdir()
        env = _build_env(d, branch)
        configure = [str(d / "src" / "configure"), f"--prefix={out.prefix}"]
        if branch.accel:
            configure.append("--enable-accel-driver")
        steps = [
            ("autoreconf", ["autoreconf", "-is"], d / "src"),
            ("configure", configure, d / "build"),
            ("make", ["make", f"-j{jobs}"], d / "build"),
            ("install", ["make", "install"], d / "build"),
        ]
        for step, cmd, cwd in steps:
            _step(branch.key, step, cmd, cwd=cwd, env=env, log=out.logs / f"{step}.log", timings=timings)
        for f in (out.libcdsprpc, out.fastrpc_test, out.includedir / "remote.h"):
            if not f.exists():
                raise BuildError(f"upstream {branch.key}: make install did not produce {f}")
        total = round(time.monotonic() - t0, 1)
        _say(f"[upstream {branch.key}] total: {total:.1f} s")
        stamp.write_text(json.dumps({"tarball": branch.tarball, "sha256": _sha256(tarball), "cflags": CFLAGS,
                                     "accel": branch.accel, "timings_s": timings, "total_s": total}, indent=1) + "\n")
    return out


# --- stand-in test libraries and the client -----------------------------------------------------
def _cc() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unavailable("no C compiler (apt-get install gcc)")
    return cc


def compile_against(built: Built, source: Path, out: Path, *, shared: bool) -> Path:
    """Compile ``source`` with the upstream headers and link it to the upstream ``libcdsprpc.so``.

    The library is found through a DT_RPATH (``--disable-new-dtags``), which the loader searches
    *before* ``LD_LIBRARY_PATH``: the program loads this build's library even when the environment
    points at another ``libcdsprpc.so.1`` (the emulator's C ABI)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [_cc(), "-std=gnu99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{built.includedir}",
           *(["-shared", "-fPIC"] if shared else []), str(source), "-o", str(tmp),
           f"-L{built.libdir}", f"-Wl,--disable-new-dtags,-rpath,{built.libdir}", "-lcdsprpc", "-ldl", "-lpthread"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(cmd)}\n{res.stdout}{res.stderr}")
    os.replace(tmp, out)  # atomic: a fastrpc_test running in another process sees the old or the new file
    return out


def install_standins(built: Built) -> list[Path]:
    """Compile the three stand-ins into ``testlibdir`` (replacing the aarch64 copies) and the
    calculator client into ``<build>/client``. Returns the installed test libraries."""
    with _locked(cache_dir() / f"{built.branch.key}.lock"):
        libs = [compile_against(built, C_SOURCES / f"{n}_test.c", built.testlibdir / f"lib{n}.so", shared=True)
                for n in STANDINS]
        keep = {p.name for p in libs}
        for other in built.testlibdir.glob("*.so"):
            if other.name not in keep:
                other.unlink()
        compile_against(built, C_SOURCES / f"{CLIENT}.c", built.client, shared=False)
    return libs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("branches", nargs="*", metavar="BRANCH",
                    help=f"branches to build: {', '.join(BRANCHES)} (default: all)")
    ap.add_argument("--rebuild", action="store_true", help="build even if the stamp says it is built")
    ap.add_argument("--no-standins", action="store_true", help="do not compile the stand-in test libraries")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    for name in args.branches:
        if name not in BRANCHES:
            ap.error(f"unknown branch {name!r}; valid: {', '.join(BRANCHES)}")
    try:
        for name in args.branches or list(BRANCHES):
            built = build(name, rebuild=args.rebuild, jobs=args.jobs)
            if not args.no_standins:
                install_standins(built)
            print(f"{name}: {built.prefix}")
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
