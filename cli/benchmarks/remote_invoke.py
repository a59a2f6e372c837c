"""Null invoke through the legacy user API, ``remote_handle64_invoke``, on each backend.

Ratios, each against a reference measured in the same run, interleaved call by call:
  * per backend (accel, legacy): ``remote_handle64_invoke(h, 0x02000000, [])`` (qdarpc_test
    ``null``) vs the same INVOKE issued straight at the driver's raw ``ioctl`` (the floor the
    library sits on: emulated kernel + rpmsg + DSP) -- what the library adds;
  * the accel backend's API call vs the legacy backend's.
With ``--profile``, a cProfile of the API loop per backend (on stderr) shows where the time goes.

Usage: qdarpc bench --only remote_invoke   |   python -m qdarpc_cli.benchmarks.remote_invoke [--profile]
"""
from __future__ import annotations

import cProfile
import pstats
import statistics
import sys

from .common import main_for, pairs, pct, row

URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL = 0x02000000


def _record(h: int):
    """The library's record of handle64 ``h`` (session, DSP handle). Private: the benchmark
    needs the session's driver file to issue the raw ioctl beside the API call."""
    import importlib

    for mod in ("libadsprpc_compat.process", "libadsprpc_compat.library"):
        try:
            records = getattr(importlib.import_module(mod), "_records", None)
        except ImportError:
            continue
        if records is not None and h in records:
            return records[h]
    raise RuntimeError("remote_invoke benchmark: cannot find the library's handle records")


def _handle(backend: str):
    """Open the test module through a Library of ``backend``: (h, api call, raw driver call)."""
    import libadsprpc_compat as rpc

    lib = rpc.Library(backend)
    h = lib.remote_handle64_open(URI)
    rec = _record(h)
    f, req = rec.session.backend.file, rec.session.backend.invoke_request
    hdr = bytearray(16)
    hdr[:8] = rec.dsp_handle.to_bytes(4, "little") + SC_NULL.to_bytes(4, "little")
    invoke = rpc.remote_handle64_invoke

    def api():
        invoke(h, SC_NULL, ())

    def driver():
        f.ioctl(req, hdr)

    return h, api, driver


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b) if y > 0)


def run(quick: bool = False, iterations: int | None = None, profile: bool = False) -> dict:
    import libadsprpc_compat as rpc
    from qda_core.soc import Soc

    n = iterations or (200 if quick else 20000)
    rows, notes = [], []
    rpc.use_soc(Soc("default"))
    handles = []
    try:
        calls = {}
        for backend in ("accel", "legacy"):
            h, api, driver = _handle(backend)
            handles.append(h)
            calls[backend] = (api, driver)
        for backend, (api, driver) in calls.items():
            pairs(api, driver, min(n, 200))  # warm up
            a, d = pairs(api, driver, n)
            rows.append(row(f"{backend}: remote_handle64_invoke", statistics.median(a) / 1e6,
                            f"raw {backend} INVOKE ioctl", statistics.median(d) / 1e6, _ratio(a, d),
                            "what the library adds"))
            notes.append(f"{backend}: api median {statistics.median(a):.2f} us (p99 {pct(a, 0.99):.2f}), "
                         f"driver median {statistics.median(d):.2f} us (p99 {pct(d, 0.99):.2f})")
            if profile:
                pr = cProfile.Profile()
                pr.runcall(lambda: [api() for _ in range(min(n, 5000))])
                print(f"--- profile: {backend} remote_handle64_invoke x{min(n, 5000)} ---", file=sys.stderr)
                pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(10)
        a, b = pairs(calls["accel"][0], calls["legacy"][0], n)
        rows.append(row("accel: remote_handle64_invoke", statistics.median(a) / 1e6,
                        "legacy: remote_handle64_invoke", statistics.median(b) / 1e6, _ratio(a, b),
                        "accel vs legacy backend"))
    finally:
        for h in handles:
            rpc.remote_handle64_close(h)
        rpc.shutdown()
    notes.append(f"{n} interleaved pairs per row")
    return {"name": "remote_invoke", "title": "null invoke through remote_handle64_invoke (cdsp, qdarpc_test skel)",
            "rows": rows, "notes": notes}


def main(argv: list[str] | None = None) -> None:
    main_for(run, __doc__, argv,
             extra=lambda ap: ap.add_argument("--profile", action="store_true", help="cProfile the API loop"))


if __name__ == "__main__":
    main()
