"""``qdarpc trace``: run something under the recorder; summarize and convert trace files."""
from __future__ import annotations

import os
import runpy
import sys
import traceback
from typing import Callable

from .errors import EXIT_FAILED
from .term import fmt_bytes, fmt_ns

TRACE_EXTS = (".jsonl", ".json")


def is_script(target: str) -> bool:
    """True when ``target`` names a Python script rather than a qdarpc subcommand."""
    return target.endswith(".py") or os.path.isfile(target)


def run_script(argv: list[str]) -> int:
    """Run ``argv[0]`` as ``__main__`` with ``sys.argv = argv`` (runpy); its exit code. An
    exception escaping the script prints its traceback, as Python would, and gives 1."""
    path = argv[0]
    if not os.path.isfile(path):
        from .errors import CliError, EXIT_FILE

        raise CliError(f"{path}: no such script", EXIT_FILE)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as exc:
        return _exit_code(exc.code)
    except Exception:  # the script's own failure: show it the way python would
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILED


def traced(fn: Callable[[], int], output: str, report: Callable[[int], None] = lambda n: None) -> int:
    """Run ``fn`` with the recorder on and write its events to ``output`` even when ``fn``
    fails, then call ``report(number of events)``. Returns ``fn``'s exit code."""
    from qda_core import trace
    from qda_core.trace_formats import write

    with trace.recording() as rec:
        try:
            code = fn()
        except SystemExit as exc:
            code = _exit_code(exc.code)
        finally:
            # The recorder appends an event when it completes (a DSP dispatch before the ioctl
            # that carried it): write them in time order, parents before their children.
            events = sorted(rec.events, key=lambda e: (e["ts"], -e["dur"]))
            write(events, output)
            report(len(events))
    return code


# --- summary text -----------------------------------------------------------------------------
def format_summary(path: str, s: dict) -> str:
    k = s["kinds"]
    faults = f", fault {k['fault']}" if k.get("fault") else ""
    lines = [f"{path}: {s['events']} events (api {k['api']}, ioctl {k['ioctl']}, dsp {k['dsp']}{faults}) "
             f"over {fmt_ns(s['span_ns'])}"]
    for title, rows in (("top ioctls by count", s["top_by_count"]), ("top ioctls by time", s["top_by_time"])):
        if not rows:
            continue
        lines.append(f"\n{title}:")
        lines.append(f"  {'driver':<7}{'ioctl':<34}{'count':>7}{'total':>11}{'mean':>11}{'max':>11}{'errors':>8}")
        for r in rows:
            lines.append(f"  {r['driver']:<7}{r['name']:<34}{r['count']:>7}{fmt_ns(r['total_ns']):>11}"
                         f"{fmt_ns(r['mean_ns']):>11}{fmt_ns(r['max_ns']):>11}{r['errors']:>8}")
    if s["api"]:
        lines.append("\nlegacy API calls:")
        for r in s["api"]:
            lines.append(f"  {r['name']:<41}{r['count']:>7}{fmt_ns(r['total_ns']):>11}{'':>22}{r['errors']:>8}")
    b = s["bytes"]
    lines.append(f"\nINVOKE payload: {fmt_bytes(b['copied'])} copied inline, {fmt_bytes(b['shared'])} "
                 f"shared by reference ({b['invokes']} invokes)")
    d = s["dsp"]
    lines.append(f"DSP: {d['invokes']} messages, {d['errors']} answered non-zero, wall {fmt_ns(d['wall_ns'])}, "
                 f"modeled on-device {fmt_ns(d['modeled_ns'])}")
    if s.get("injected"):
        lines.append("\ninjected faults:")
        for r in s["injected"]:
            hit = f" ({', '.join(r['targets'])})" if r["targets"] else ""
            lines.append(f"  {r['count']:>5} x {r['rule']}{hit}")
    if s["errors"]:
        lines.append("\nerrors:")
        for e in s["errors"]:
            lines.append(f"  {e['count']:>5} x {e['kind']:<6}{e['name']}: {e['error']}")
    else:
        lines.append("errors: none")
    return "\n".join(lines)
