"""Invoke benchmarks through the emulated QDA driver's typed ``invoke()``.

Prints, measured side by side in one run:
  * null-invoke latency (qdarpc_test ``null``, sc 0x02000000): median and p99;
  * the zero-copy check: an invoke passing a shared 64 MiB GEM buffer vs a shared 4 KiB one
    (qdarpc_test ``touch``), target: 64 MiB within 1.2x of 4 KiB; and the same 64 MiB passed as a
    plain (copied) buffer, for contrast.

Usage: python bench/invoke.py [--iterations N]
"""
from __future__ import annotations

import argparse
import statistics
import struct
import time

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core.accel import GemRef
from qda_core.soc import Soc

URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL, SC_TOUCH = 0x02000000, 0x09010100


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e3)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=20000)
    args = ap.parse_args()
    soc = Soc()
    with soc.open_device("cdsp") as f:
        f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE)
        _, h = open_module(f, URI)

        def null():
            if f.invoke(h, SC_NULL, ()):
                raise SystemExit("null invoke failed")

        timed(null, 500)  # warm-up
        lat = timed(null, args.iterations)
        print(f"null invoke (typed QdaFile.invoke, {args.iterations} calls): "
              f"median {statistics.median(lat):.2f} us, p99 {pct(lat, 0.99):.2f} us")

        out = bytearray(16)
        rows = {}
        bufs = []
        for size in (4096, 64 << 20):
            gh = f.gem_create(size)
            view = f.mmap(f.gem_mmap_offset(gh), size)
            bufs.append(view)
            ref = GemRef(gh, view)
            rows[size] = timed(lambda: f.invoke(h, SC_TOUCH, [ref, out]), 300)
            assert struct.unpack_from("<Q", out)[0] == size
        plain = bytearray(64 << 20)
        copied = timed(lambda: f.invoke(h, SC_TOUCH, [plain, out]), 10)
        small, big = statistics.median(rows[4096]), statistics.median(rows[64 << 20])
        print(f"shared GEM 4 KiB   invoke: median {small:8.2f} us")
        print(f"shared GEM 64 MiB  invoke: median {big:8.2f} us   ratio {big / small:.2f}x (target <= 1.2x)")
        print(f"copied     64 MiB  invoke: median {statistics.median(copied):8.2f} us   "
              f"({statistics.median(copied) / small:.0f}x the shared 4 KiB call)")
        for v in bufs:
            v.release()


if __name__ == "__main__":
    main()
