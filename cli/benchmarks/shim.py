"""What the LD_PRELOAD device shim costs on everything that is not its own (docs/shim.md).

A C program (``shim_loop.c``, compiled here) times, per round, ``open``+``close`` of
``/dev/null`` and ``ioctl(FIONREAD)`` on a pipe; two copies run side by side, one plain and
one with ``libqdarpc_shim.so`` preloaded, rounds interleaved. Ratios (target ~1.0x: the shim
adds a prefix compare per open and a table lookup per ioctl/close, and never starts Python):
  * open+close of a path the shim does not own, shim vs plain;
  * ioctl on an fd the shim does not own, shim vs plain.
Needs a C compiler (``cc``).

Usage: qdarpc bench --only shim   |   python -m qdarpc_cli.benchmarks.shim [--quick]
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from .common import main_for, row

SOURCE = Path(__file__).with_name("shim_loop.c")


def run(quick: bool = False, iterations: int | None = None) -> dict:
    from libadsprpc_compat import native

    n = iterations or (2000 if quick else 50000)
    rounds = 3 if quick else 9
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc) to build the C side")
    with tempfile.TemporaryDirectory(prefix="qdarpc-bench-") as tmp:
        exe = os.path.join(tmp, "shim_loop")
        subprocess.run([cc, "-O2", "-std=gnu99", str(SOURCE), "-o", exe], check=True, capture_output=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("QDARPC_", "LD_PRELOAD"))}
        procs = {}
        for side, env in (("plain", base), ("shim", native.run_env(base, with_shim=True))):
            procs[side] = subprocess.Popen([exe, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True, env=env)
            if procs[side].stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {side} C side did not start")
        times = {side: ([], []) for side in procs}
        try:
            for _ in range(rounds):
                for side, p in procs.items():  # interleaved: plain, shim, plain, shim, ...
                    p.stdin.write("go\n")
                    p.stdin.flush()
                    a, b = map(float, p.stdout.readline().split())
                    times[side][0].append(a)
                    times[side][1].append(b)
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait(timeout=60)
    med = statistics.median
    (po, pi), (so, si) = times["plain"], times["shim"]
    rows = [
        row("open+close /dev/null, shim preloaded", med(so) / 1e9, "the same, plain", med(po) / 1e9,
            med(a / b for a, b in zip(so, po)), "cost on paths the shim does not own (target ~1.0x)"),
        row("ioctl(FIONREAD) on a pipe, shim preloaded", med(si) / 1e9, "the same, plain", med(pi) / 1e9,
            med(a / b for a, b in zip(si, pi)), "cost on fds the shim does not own (target ~1.0x)"),
    ]
    return {"name": "shim", "title": "the device shim on what is not its own",
            "rows": rows, "notes": [f"{rounds} interleaved rounds of {n} calls each side"]}


def main(argv: list[str] | None = None) -> None:
    main_for(run, __doc__, argv)


if __name__ == "__main__":
    main()
