"""Null invoke through the C ABI (``libcdsprpc.so.1``) from a C program, beside the Python
API's null invoke and a real ``ioctl`` syscall, interleaved round by round in one run.

A C program (``c_abi_loop.c``, compiled here with the SDK headers) times, per round, a batch of
``remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 0, 0), NULL)`` (qdarpc_test ``null``) and a
batch of ``ioctl(FIONREAD)`` on a pipe; between its rounds this process times the same null
invoke through ``libadsprpc_compat`` and the same ioctl through ``fcntl.ioctl``. Ratios:
  * C ABI null invoke vs Python API null invoke (what the C face adds; target <= 1.10x);
  * C ABI null invoke vs a real ioctl syscall in C (how far the emulated call is from the
    syscall it stands in for);
  * Python API null invoke vs a real ioctl syscall from Python.
Needs a C compiler (``cc``); without one the benchmark says so and reports nothing.

Usage: qdarpc bench --only c_abi   |   python -m qdarpc_cli.benchmarks.c_abi [--quick]
"""
from __future__ import annotations

import fcntl
import os
import shutil
import statistics
import subprocess
import tempfile
import termios
import time
from pathlib import Path

from .common import main_for, row

URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL = 0x02000000
SOURCE = Path(__file__).with_name("c_abi_loop.c")


def _build(tmp: str) -> str:
    from libadsprpc_compat import native

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) to build the C side")
    exe = os.path.join(tmp, "c_abi_loop")
    subprocess.run([cc, "-O2", "-std=gnu99", native.cflags(), str(SOURCE), "-o", exe,
                    *native.libs().split()], check=True, capture_output=True, text=True)
    return exe


def _python_batch(invoke, h, n_inv: int, n_io: int, fd: int) -> tuple[float, float]:
    buf = bytearray(4)
    t0 = time.perf_counter_ns()
    for _ in range(n_inv):
        invoke(h, SC_NULL, ())
    t1 = time.perf_counter_ns()
    for _ in range(n_io):
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    t2 = time.perf_counter_ns()
    return (t1 - t0) / n_inv, (t2 - t1) / n_io


def run(quick: bool = False, iterations: int | None = None) -> dict:
    import libadsprpc_compat as rpc
    from libadsprpc_compat import native

    n_inv = iterations or (200 if quick else 5000)
    n_io = n_inv * 20
    rounds = 3 if quick else 9
    with tempfile.TemporaryDirectory(prefix="qdarpc-bench-") as tmp:
        exe = _build(tmp)
        env = native.run_env(backend="accel")
        env.pop("QDARPC_TRACE", None)
        proc = subprocess.Popen([exe, str(n_inv), str(n_io)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env)
        rfd, wfd = os.pipe()
        lib = rpc.Library("accel")
        h = lib.remote_handle64_open(URI)
        c_inv, c_io, py_inv, py_io = [], [], [], []
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the C side did not start (see its stderr)")
            _python_batch(rpc.remote_handle64_invoke, h, min(n_inv, 200), 100, rfd)  # warm up
            for _ in range(rounds):
                proc.stdin.write("go\n")
                proc.stdin.flush()
                a, b = map(float, proc.stdout.readline().split())
                c_inv.append(a)
                c_io.append(b)
                a, b = _python_batch(rpc.remote_handle64_invoke, h, n_inv, n_io, rfd)
                py_inv.append(a)
                py_io.append(b)
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
            rpc.remote_handle64_close(h)
            lib.close_all()
            os.close(rfd)
            os.close(wfd)
    med = statistics.median

    def ratio(xs, ys):
        return med(x / y for x, y in zip(xs, ys))

    rows = [
        row("C: remote_handle64_invoke (null)", med(c_inv) / 1e9, "Python: remote_handle64_invoke",
            med(py_inv) / 1e9, ratio(c_inv, py_inv), "what the C face adds (target <= 1.10x)"),
        row("C: remote_handle64_invoke (null)", med(c_inv) / 1e9, "C: ioctl(FIONREAD) syscall",
            med(c_io) / 1e9, ratio(c_inv, c_io), "emulated call vs a real syscall"),
        row("Python: remote_handle64_invoke", med(py_inv) / 1e9, "Python: fcntl.ioctl(FIONREAD)",
            med(py_io) / 1e9, ratio(py_inv, py_io), "emulated call vs a real syscall"),
    ]
    return {"name": "c_abi", "title": "null invoke through the C ABI (libcdsprpc.so.1), accel backend",
            "rows": rows, "notes": [f"{rounds} interleaved rounds of {n_inv} invokes and {n_io} ioctls each side"]}


def main(argv: list[str] | None = None) -> None:
    main_for(run, __doc__, argv)


if __name__ == "__main__":
    main()
