"""Invoke through the emulated QDA accel driver (``QdaFile.invoke``), qdarpc_test skel on the cdsp.

Ratios, each against a reference measured in the same run, interleaved with it:
  * null invoke (sc 0x02000000) through the typed ``invoke()`` vs the same INVOKE issued as a raw
    ``ioctl`` with a prebuilt struct: the cost of the typed wrapper;
  * the zero-copy check: an invoke passing a shared (GEM, by reference) 64 MiB buffer vs a shared
    4 KiB one (qdarpc_test ``touch``); target <= 1.2x: the size of a shared buffer costs nothing;
  * the same 64 MiB passed as a plain (copied) buffer vs the shared 4 KiB one, for contrast.

Usage: qdarpc bench --only invoke   |   python -m qdarpc_cli.benchmarks.invoke [--quick] [--iterations N]
"""
from __future__ import annotations

import statistics
import struct

from .common import main_for, pairs, pct, row

URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL, SC_TOUCH = 0x02000000, 0x09010100


def run(quick: bool = False, iterations: int | None = None) -> dict:
    from libadsprpc_compat.remotectl import close_module, open_module
    from qda_core import uapi
    from qda_core.accel import GemRef
    from qda_core.soc import Soc

    n = iterations or (200 if quick else 20000)
    big = (4 << 20) if quick else (64 << 20)
    big_label = f"{big >> 20} MiB"
    rows, notes = [], []
    soc = Soc()
    with soc.open_device("cdsp") as f:
        f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE)
        _, h = open_module(f, URI)
        raw = _raw_invoke(f, h)

        def typed():
            if f.invoke(h, SC_NULL, ()):
                raise SystemExit("null invoke failed")

        pairs(typed, raw, min(n, 500))  # warm-up
        a, b = pairs(typed, raw, n)
        ratios = [x / y for x, y in zip(a, b) if y > 0]
        rows.append(row("null invoke, typed invoke()", statistics.median(a) / 1e6, "raw INVOKE ioctl",
                        statistics.median(b) / 1e6, statistics.median(ratios), "cost of the typed wrapper"))
        notes.append(f"null invoke: {n} interleaved pairs; typed p99 {pct(a, 0.99):.2f} us, "
                     f"raw p99 {pct(b, 0.99):.2f} us")

        out = bytearray(16)
        views, refs = [], {}
        for size in (4096, big):
            gh = f.gem_create(size)
            view = f.mmap(f.gem_mmap_offset(gh), size)
            views.append(view)
            refs[size] = GemRef(gh, view)
        m = 20 if quick else 300
        small_fn = (lambda: f.invoke(h, SC_TOUCH, [refs[4096], out]))
        big_fn = (lambda: f.invoke(h, SC_TOUCH, [refs[big], out]))
        big_fn()
        assert struct.unpack_from("<Q", out)[0] == big
        a, b = pairs(big_fn, small_fn, m)
        rows.append(row(f"shared GEM {big_label} invoke", statistics.median(a) / 1e6, "shared GEM 4 KiB invoke",
                        statistics.median(b) / 1e6, statistics.median(x / y for x, y in zip(a, b)),
                        "zero-copy check (target <= 1.2x)"))
        plain = bytearray(big)
        copied, b2 = pairs(lambda: f.invoke(h, SC_TOUCH, [plain, out]), small_fn, 3 if quick else 10)
        rows.append(row(f"copied {big_label} invoke", statistics.median(copied) / 1e6, "shared GEM 4 KiB invoke",
                        statistics.median(b2) / 1e6, statistics.median(x / y for x, y in zip(copied, b2)),
                        "what copying costs instead"))
        for v in views:
            v.release()
        close_module(f, h)
    return {"name": "invoke", "title": "invoke through the emulated QDA driver (cdsp, qdarpc_test skel)",
            "rows": rows, "notes": notes}


def _raw_invoke(f, h: int):
    """A function issuing DRM_IOCTL_QDA_INVOKE(h, SC_NULL, no buffers) with a prebuilt struct."""
    from qda_core import uapi

    req = uapi.DRM_IOCTL_QDA_INVOKE
    arg = bytearray(uapi.qda_invoke_args.size)  # handle, sc, args = NULL: no buffers
    arg[:8] = h.to_bytes(4, "little") + SC_NULL.to_bytes(4, "little")

    def raw():
        if f.ioctl(req, arg):
            raise SystemExit("raw null invoke failed")

    return raw


def main(argv: list[str] | None = None) -> None:
    main_for(run, __doc__, argv)


if __name__ == "__main__":
    main()
