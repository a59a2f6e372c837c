"""Marshalling: the C core vs the pure-Python reference, and inline copies vs memcpy.

Ratios, each against a reference measured in the same run, interleaved with it:
  * pack+unpack of an invoke payload (null call; 16 small arguments): reference time / C time,
    i.e. how many times faster the C core is (target: >= 20x on 16 arguments);
  * inline copy throughput of a large buffer, in (pack) and out (unpack): the C copy's speed as
    a fraction of numpy.copyto of the same bytes (the machine's memcpy; target >= 0.7x).

Usage: qdarpc bench --only marshal   |   python -m qdarpc_cli.benchmarks.marshal [--quick] [--json]
"""
from __future__ import annotations

import numpy as np

from .common import interleaved, main_for, row

VA, DEV = 0x7F00_0000_0000, 0x3_0000_0000


def _invocation(c, nin: int, nout: int, size: int):
    from qda_core.wire import INVOKE_ARG, scalars

    bufs = [np.full(size, i + 1, dtype=np.uint8) for i in range(nin + nout)]
    sc = scalars(2, nin, nout)
    args = b"".join(INVOKE_ARG.pack(b.ctypes.data, size, -1, 0) for b in bufs)
    refs = bytes(16 * (nin + nout))
    payload = np.zeros(c.payload_size(sc, args, refs), dtype=np.uint8)
    return sc, args, refs, payload, bufs


def run(quick: bool = False, iterations: int | None = None) -> dict:
    from qda_core import marshal_ref as ref
    from qda_core._ext import load

    c = load("_marshal")
    rounds = 3 if quick else 9
    batch_s = 0.002 if quick else 0.02
    rows = []
    for name, (nin, nout, size) in {"pack+unpack, null call": (0, 0, 0),
                                    "pack+unpack, 16 small args": (8, 8, 32)}.items():
        sc, args, refs, payload, _bufs = _invocation(c, nin, nout, size)

        def c_rt():
            c.pack(sc, args, refs, payload, VA, DEV)
            c.unpack(sc, args, refs, payload, VA)

        def py_rt():
            ref.pack(sc, args, refs, payload, VA, DEV)
            ref.unpack(sc, args, refs, payload, VA)

        tp, tc, r = interleaved(py_rt, c_rt, rounds=rounds, batch_s=batch_s, per_round=iterations)
        rows.append(row(name, tc, "Python reference", tp, r, "C is this many times faster"))

    sizes = (1 << 20,) if quick else (1 << 20, 64 << 20)
    for size in sizes:
        label = f"{size >> 20} MiB"
        sc_in, args_in, refs_in, payload_in, bufs_in = _invocation(c, 1, 0, size)
        sc_out, args_out, refs_out, payload_out, _ = _invocation(c, 0, 1, size)
        for p in (payload_in, payload_out):
            p[:] = 7  # fault the pages in before timing
        c.pack(sc_out, args_out, refs_out, payload_out, VA, DEV)  # metadata for unpack
        off = 512
        dst = payload_in[off:off + size]

        def memcpy():
            np.copyto(dst, bufs_in[0])

        for what, fn in (("in (pack)", lambda: c.pack(sc_in, args_in, refs_in, payload_in, VA, DEV)),
                         ("out (unpack)", lambda: c.unpack(sc_out, args_out, refs_out, payload_out, VA))):
            tm, tcp, r = interleaved(memcpy, fn, rounds=3 if quick else 7, per_round=1 if size > 8 << 20 else None,
                                     batch_s=batch_s)
            rows.append(row(f"{label} inline copy {what}", tcp, "numpy.copyto", tm, r,
                            "fraction of memcpy throughput"))
        assert bytes(payload_in[off:off + 16]) == bytes(bufs_in[0][:16])
    return {"name": "marshal", "title": "marshal: C core vs the Python reference; inline copies vs memcpy",
            "rows": rows, "notes": ["targets: 16 small args >= 20x; 64 MiB copies >= 0.7x memcpy"]}


def main(argv: list[str] | None = None) -> None:
    main_for(run, __doc__, argv)


if __name__ == "__main__":
    main()
