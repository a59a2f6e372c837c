"""Marshalling benchmark: C backend vs the pure-Python reference, and copy throughput vs memcpy.

Run: ``python bench/marshal.py`` (after ``python setup.py build_ext --inplace``). All figures
come from this one run on this machine; targets: C >= 20x reference on 16 args, inline copy
throughput >= 0.7x the machine's memcpy (numpy.copyto) at 64 MiB.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from qda_core import marshal_ref as ref  # noqa: E402
from qda_core._ext import load  # noqa: E402
from qda_core.wire import INVOKE_ARG, scalars  # noqa: E402

c = load("_marshal")
VA, DEV = 0x7F00_0000_0000, 0x3_0000_0000


def per_call(fn, min_time=0.3):
    """Median seconds per call over 5 batches, each batch running for about min_time/5."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > min_time / 5:
            break
        n *= 4
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)


def best_of(fn, reps=7):
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def invocation(nin, nout, size):
    """sc, args, refs, payload and the backing arrays for nin/nout inline buffers of size bytes."""
    bufs = [np.full(size, i + 1, dtype=np.uint8) for i in range(nin + nout)]
    sc = scalars(2, nin, nout)
    args = b"".join(INVOKE_ARG.pack(b.ctypes.data, size, -1, 0) for b in bufs)
    refs = bytes(16 * (nin + nout))
    payload = np.zeros(c.payload_size(sc, args, refs), dtype=np.uint8)
    return sc, args, refs, payload, bufs


def round_trip(mod, sc, args, refs, payload):
    def run():
        mod.pack(sc, args, refs, payload, VA, DEV)
        mod.unpack(sc, args, refs, payload, VA)
    return run


def main():
    rows = []
    print("pack+unpack latency (median per call)")
    print(f"{'case':<36}{'C':>12}{'reference':>14}{'ref/C':>9}")
    for name, (nin, nout, size) in {"null call (sc=0)": (0, 0, 0),
                                    "16 small args (8 in+8 out)": (8, 8, 32)}.items():
        sc, args, refs, payload, bufs = invocation(nin, nout, size)
        tc = per_call(round_trip(c, sc, args, refs, payload))
        tp = per_call(round_trip(ref, sc, args, refs, payload))
        print(f"{name:<36}{tc * 1e6:>10.2f}us{tp * 1e6:>12.2f}us{tp / tc:>8.1f}x")
        rows.append((name, tc, tp))

    print()
    print("inline copy throughput (C backend vs numpy.copyto of the same size)")
    print(f"{'case':<36}{'C GB/s':>10}{'memcpy GB/s':>13}{'ratio':>8}")
    for size in (1 << 20, 64 << 20):
        label = f"{size >> 20} MiB"
        sc_in, args_in, refs_in, payload_in, bufs_in = invocation(1, 0, size)
        sc_out, args_out, refs_out, payload_out, bufs_out = invocation(0, 1, size)
        off = 512
        for p in (payload_in, payload_out):
            p[:] = 7  # fault the pages in before timing
        c.pack(sc_out, args_out, refs_out, payload_out, VA, DEV)  # metadata for unpack
        t_in = best_of(lambda: c.pack(sc_in, args_in, refs_in, payload_in, VA, DEV))
        t_out = best_of(lambda: c.unpack(sc_out, args_out, refs_out, payload_out, VA))
        dst = payload_in[off:off + size]
        t_mem = best_of(lambda: np.copyto(dst, bufs_in[0]))
        mem = size / t_mem / 1e9
        for what, t in (("in  (pack, user->payload)", t_in), ("out (unpack, payload->user)", t_out)):
            gbs = size / t / 1e9
            print(f"{label + ' ' + what:<36}{gbs:>10.2f}{mem:>13.2f}{gbs / mem:>7.2f}x")
        assert bytes(payload_in[off:off + 16]) == bytes(bufs_in[0][:16])


if __name__ == "__main__":
    main()
