"""Null-invoke latency through the legacy user API, ``remote_handle64_invoke``, per backend.

Prints, side by side for ``accel`` and ``legacy``: the median and p99 of
  * ``api``:    ``remote_handle64_invoke(h, 0x02000000, [])`` (qdarpc_test ``null``);
  * ``driver``: the same INVOKE issued straight at the driver's raw ``ioctl`` (the floor the
    library sits on: emulated kernel + rpmsg + DSP);
  * ``lib``:    api - driver per interleaved pair: the cost this library adds.
With ``--profile``, a cProfile of the api loop per backend shows where the time goes.

Usage: python bench/remote_invoke.py [--iterations N] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import libadsprpc_compat as rpc
from libadsprpc_compat import library
from qda_core.soc import Soc

URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL = 0x02000000


def timed(fn, n: int) -> list[float]:
    out = []
    ns = time.perf_counter_ns
    for _ in range(n):
        t = ns()
        fn()
        out.append((ns() - t) / 1e3)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def measure(backend: str, n: int, profile: bool) -> dict[str, tuple[float, float]]:
    lib = rpc.Library(backend)
    h = lib.remote_handle64_open(URI)
    rec = library._records[h]
    f, req, dsp_h = rec.session.backend.file, rec.session.backend.invoke_request, rec.dsp_handle
    hdr = bytearray(16)
    hdr[:8] = dsp_h.to_bytes(4, "little") + SC_NULL.to_bytes(4, "little")
    invoke = rpc.remote_handle64_invoke

    def api():
        invoke(h, SC_NULL, ())

    def driver():
        f.ioctl(req, hdr)

    for fn in (api, driver):  # warm up
        timed(fn, 200)
    # Interleaved, so machine-load drift hits both series alike; lib = per-pair difference.
    a, d = [], []
    ns = time.perf_counter_ns
    for _ in range(n):
        t0 = ns()
        api()
        t1 = ns()
        driver()
        t2 = ns()
        a.append((t1 - t0) / 1e3)
        d.append((t2 - t1) / 1e3)
    diff = [x - y for x, y in zip(a, d)]
    res = {"api": (statistics.median(a), pct(a, 0.99)), "driver": (statistics.median(d), pct(d, 0.99)),
           "lib": (statistics.median(diff), pct(diff, 0.99))}
    if profile:
        pr = cProfile.Profile()
        pr.runcall(lambda: [api() for _ in range(min(n, 5000))])
        print(f"--- profile: {backend} remote_handle64_invoke x{min(n, 5000)} ---")
        pstats.Stats(pr).sort_stats("tottime").print_stats(10)
    rpc.remote_handle64_close(h)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    rpc.use_soc(Soc("default"))
    results = {b: measure(b, args.iterations, args.profile) for b in ("accel", "legacy")}
    print(f"null invoke through remote_handle64_invoke, {args.iterations} iterations (us)")
    print(f"{'':8}{'accel median':>14}{'accel p99':>11}{'legacy median':>15}{'legacy p99':>12}")
    for row in ("api", "driver", "lib"):
        a, l_ = results["accel"][row], results["legacy"][row]
        print(f"{row:8}{a[0]:14.2f}{a[1]:11.2f}{l_[0]:15.2f}{l_[1]:12.2f}")
    print("target: api median <= 5 us")
    rpc.shutdown()


if __name__ == "__main__":
    main()
