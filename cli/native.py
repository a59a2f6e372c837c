"""``qdarpc config`` and ``qdarpc run``: C programs against the emulator (docs/c_abi.md)."""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from .errors import EXIT_UNAVAILABLE, CliError


def sdk(fn, *args, **kw):
    """Call a :mod:`libadsprpc_compat.native` accessor; a missing build is EXIT_UNAVAILABLE."""
    from libadsprpc_compat.native import NotBuiltError

    try:
        return fn(*args, **kw)
    except NotBuiltError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


def config_lines(what: tuple[str, ...]) -> list[str]:
    """The values ``qdarpc config`` prints, one per requested item, in the order asked."""
    from libadsprpc_compat import native

    get = {"libdir": native.libdir, "includedir": native.includedir, "cflags": native.cflags,
           "libs": native.libs, "pkgconfigdir": native.pkgconfig_dir, "shim": native.shim}
    return [str(sdk(get[w])) for w in what]


def exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it (128 + N for a signal)."""
    return 128 - returncode if returncode < 0 else returncode


def run(argv: list[str], *, backend: str | None, soc: str | None, trace: str | None,
        capture: bool = False, shim: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` with the emulator's libraries (or its device shim) and settings in its
    environment."""
    from libadsprpc_compat import native

    env = sdk(native.run_env, None, backend=backend, soc=soc, trace=trace, with_shim=shim)
    # Forward ^C to the program only: we wait for it, then report its status.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(argv, env=env, capture_output=capture, text=capture, check=False,
                              restore_signals=True, preexec_fn=lambda: signal.signal(signal.SIGINT, old))
    except FileNotFoundError:
        raise CliError(f"{argv[0]}: command not found", 127) from None
    except PermissionError:
        raise CliError(f"{argv[0]}: permission denied", 126) from None
    finally:
        signal.signal(signal.SIGINT, old)


#: Separates the two programs of ``qdarpc ab --exec --shim -- A ::: B``.
PROGRAM_SEPARATOR = ":::"


def split_programs(argv: list[str], order: list[str]) -> dict[str, list[str]]:
    """The program each side runs: the same ``argv`` for both, or with ``A ::: B`` the first for
    ``order[0]`` and the second for ``order[1]`` (two builds of one source against two
    libraries, e.g. upstream's legacy and accel builds under the shim)."""
    if PROGRAM_SEPARATOR not in argv:
        return {b: list(argv) for b in order}
    k = argv.index(PROGRAM_SEPARATOR)
    first, second = argv[:k], argv[k + 1:]
    if not first or not second or PROGRAM_SEPARATOR in second:
        raise CliError(f"expected PROGRAM ARGS... {PROGRAM_SEPARATOR} PROGRAM ARGS...", 2)
    return {order[0]: first, order[1]: second}


def run_exec_ab(argv: list[str], order: list[str], soc: str | None, shim: bool = False) -> dict:
    """Run ``argv`` once per backend (each its own emulated DSP; with ``A ::: B``, program A for
    the first and B for the second) and compare the two runs with the ``ab`` report of
    :func:`libadsprpc_compat.ab.compare_exec_runs`. With ``shim`` the programs keep their own
    FastRPC library and the device shim serves their nodes."""
    from libadsprpc_compat.ab import compare_exec_runs
    from qda_core.trace_formats import read_jsonl

    programs = split_programs(argv, order)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="qdarpc-ab-") as tmp:
        for backend in order:
            path = os.path.join(tmp, f"{backend}.jsonl")
            t0 = time.perf_counter_ns()
            done = run(programs[backend], backend=backend, soc=soc, trace=path, capture=True, shim=shim)
            wall = time.perf_counter_ns() - t0
            events = read_jsonl(path) if os.path.exists(path) else []
            runs[backend] = (exit_code(done.returncode), done.stdout, done.stderr, events, wall)
    label = " ".join(argv)
    return compare_exec_runs(label, runs, order=order, soc_profile=soc)
