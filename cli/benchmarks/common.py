"""Timing helpers shared by the benchmarks: interleaved case/reference measurement and output."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls of ``fn`` that take about ``target_s`` (at least 1)."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt >= target_s or n >= 1 << 22:
            return max(1, int(n * target_s / dt)) if dt > 0 else n
        n *= 4


def interleaved(case: Callable[[], object], ref: Callable[[], object], *, rounds: int = 9,
                batch_s: float = 0.02, per_round: int | None = None) -> tuple[float, float, float]:
    """Time ``case`` and ``ref`` in alternating batches (ABAB...): returns the median seconds
    per call of each and the median of the per-round ratios case/ref. ``per_round`` fixes the
    calls per batch (else each is calibrated to about ``batch_s``)."""
    case(), ref()  # warm up (first-call allocations, caches)
    n_case = per_round or calibrate(case, batch_s)
    n_ref = per_round or calibrate(ref, batch_s)
    tc, tr, ratios = [], [], []
    pc = time.perf_counter
    for _ in range(rounds):
        t0 = pc()
        for _ in range(n_case):
            case()
        t1 = pc()
        for _ in range(n_ref):
            ref()
        t2 = pc()
        a, b = (t1 - t0) / n_case, (t2 - t1) / n_ref
        tc.append(a)
        tr.append(b)
        ratios.append(a / b if b > 0 else float("inf"))
    return statistics.median(tc), statistics.median(tr), statistics.median(ratios)


def pairs(case: Callable[[], object], ref: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """``n`` single calls of each, alternating (case, ref, case, ref, ...); microseconds each."""
    ns = time.perf_counter_ns
    a, b = [], []
    for _ in range(n):
        t0 = ns()
        case()
        t1 = ns()
        ref()
        t2 = ns()
        a.append((t1 - t0) / 1e3)
        b.append((t2 - t1) / 1e3)
    return a, b


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def row(case: str, time_s: float, reference: str, ref_s: float, ratio: float, meaning: str) -> dict:
    """One result row; times in microseconds (information), ``ratio`` is the figure."""
    return {"case": case, "time_us": round(time_s * 1e6, 3), "reference": reference,
            "reference_us": round(ref_s * 1e6, 3), "ratio": round(ratio, 3), "meaning": meaning}


def format_rows(result: dict) -> str:
    if any("target" in r for r in result["rows"]):
        return format_target_rows(result)
    lines = [f"{result['title']}"]
    rows = result["rows"]
    w_case = max([len(r["case"]) for r in rows] + [4])
    w_ref = max([len(r["reference"]) for r in rows] + [9])
    lines.append(f"  {'case':<{w_case}}  {'ratio':>8}  {'reference':<{w_ref}}  {'case us':>10}  {'ref us':>10}  meaning")
    for r in rows:
        lines.append(f"  {r['case']:<{w_case}}  {r['ratio']:>7.2f}x  {r['reference']:<{w_ref}}  "
                     f"{r['time_us']:>10.2f}  {r['reference_us']:>10.2f}  {r['meaning']}")
    lines += [f"  {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def interleaved_many(fns: list[Callable[[], object]], *, rounds: int = 9, batch_s: float = 0.02,
                     per_round: int | None = None) -> list[list[float]]:
    """``interleaved`` for several functions: per round a batch of each in turn (ABC ABC ...).
    Returns, per function, its seconds per call in each round (same order), so a figure that
    combines them (a difference, a slope) is computed round by round and then medianed."""
    for fn in fns:
        fn()  # warm up
    ns = [per_round or calibrate(fn, batch_s) for fn in fns]
    out: list[list[float]] = [[] for _ in fns]
    pc = time.perf_counter
    for _ in range(rounds):
        for fn, n, acc in zip(fns, ns, out):
            t0 = pc()
            for _ in range(n):
                fn()
            acc.append((pc() - t0) / n)
    return out


def compiler() -> str | None:
    """The C compiler benchmarks build their C sides with (``$CC``, else cc or gcc), or None."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def compile_c(source: str | os.PathLike, out: str, *flags: str) -> str:
    """Compile ``source`` to ``out`` with :func:`compiler` (``-O2 -std=gnu99`` then ``flags``);
    raises RuntimeError naming the compiler's complaint."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc)")
    proc = subprocess.run([cc, "-O2", "-std=gnu99", str(source), "-o", out, *flags], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cc} {source}: {proc.stderr.strip()[-400:]}")
    return out


def target_row(case: str, ratio: float | None, reference: str, target: str, *, time_s: float | None = None,
               ref_s: float | None = None, note: str = "") -> dict:
    """A row of a table with targets. ``target`` is ``"<= X"`` or ``">= X"`` (information
    only: a missed target never fails the benchmark), or ``"-"`` for a row that only gives
    context; ``meets`` is "yes"/"no", "-" without a target, or "n/a" when ``ratio`` is None (not
    measured: ``note`` says why). Times in microseconds."""
    if ratio is not None:
        ratio = float(f"{ratio:.4g}")  # (the figure shown: the verdict is on it, so they agree)
    if target == "-":
        meets = "-"
    elif ratio is None:
        meets = "n/a"
    else:
        op, bound = target.split()
        meets = "yes" if (ratio <= float(bound) if op == "<=" else ratio >= float(bound)) else "no"
    return {"case": case, "ratio": ratio, "reference": reference,
            "target": target if target == "-" else f"{target}x", "meets": meets,
            "time_us": None if time_s is None else round(time_s * 1e6, 3),
            "reference_us": None if ref_s is None else round(ref_s * 1e6, 3), "note": note}


def _ratio_text(x: float) -> str:
    """Three significant figures at most, never an exponent."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def format_target_rows(result: dict) -> str:
    """The text table of a result whose rows carry a target (:func:`target_row`)."""
    rows = result["rows"]

    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    w_case = max([len(r["case"]) for r in rows] + [4])
    w_ref = max([len(r["reference"]) for r in rows] + [9])
    lines = [result["title"],
             f"  {'case':<{w_case}}  {'ratio':>9}  {'target':>8}  meets  {'reference':<{w_ref}}  "
             f"{'case us':>10}  {'ref us':>10}  note"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{_ratio_text(r['ratio'])}x"
        lines.append(f"  {r['case']:<{w_case}}  {ratio:>9}  {r['target']:>8}  {r['meets']:<5}  "
                     f"{r['reference']:<{w_ref}}  {num(r['time_us'], '10.2f'):>10}  "
                     f"{num(r['reference_us'], '10.2f'):>10}  {r['note']}".rstrip())
    lines += [f"  {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def main_for(run: Callable[..., dict], doc: str, argv: list[str] | None = None,
             extra: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The command line of one benchmark module: ``--quick``, ``--iterations N``, ``--json``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few iterations")
    ap.add_argument("--iterations", type=int, default=None, metavar="N", help="calls per measured series")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON document")
    if extra:
        extra(ap)
    args = vars(ap.parse_args(argv))
    as_json = args.pop("json")
    res = run(**args)
    if as_json:
        json.dump(res, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_rows(res))
