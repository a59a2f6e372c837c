"""``qdarpc ab``: render the A/B report of :mod:`libadsprpc_compat.ab` as text, JSON or HTML.

The engine (workloads, runs, sides, alignment) is library code; this module only resolves the
WORKLOAD argument (built-in name or script path), runs ``--exec`` programs once per side
(:func:`run_exec_sides`) and draws the report dict.
"""
from __future__ import annotations

import contextlib
import html
import os
import re
import tempfile
import time

from .errors import EXIT_USAGE, CliError
from .term import fmt_bytes, fmt_ns


def resolve(workload: str):
    """A built-in name -> itself; an existing path or ``*.py`` -> its ``workload(lib)``
    function. ``ValueError`` for anything else (names the built-ins)."""
    from libadsprpc_compat.ab import WORKLOADS, load_script

    if workload in WORKLOADS:
        return workload, workload
    if workload.endswith(".py") or os.sep in workload or os.path.exists(workload):
        fn = load_script(workload)
        return fn, os.path.basename(workload)
    raise ValueError(f"unknown workload {workload!r}: built-in workloads are {', '.join(WORKLOADS)}, "
                     "or give a path to a script defining workload(lib)")


@contextlib.contextmanager
def _environ(key: str, value: str):
    """``os.environ[key] = value`` for the block (a program started in it inherits it)."""
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def run_exec_sides(argv: list[str], sides, soc: str | None, shim: bool = False) -> dict:
    """``qdarpc ab --exec`` with ``--a``/``--b``: run ``argv`` once per side (each in its own
    process, so its own emulated SoC; with ``A ::: B``, program A for the first side and B for
    the second), the side's front end as ``QDARPC_BACKEND`` and its SoC's revisions as
    ``QDARPC_KERNEL`` in the program's environment (with ``shim`` the program's own library
    picks its nodes; the revisions still hold), and compare the runs with
    :func:`libadsprpc_compat.ab.compare_exec_runs`. A SoC profile that names a kernel of its own
    wins over ``QDARPC_KERNEL`` in the program, so a side it contradicts is a usage error."""
    from libadsprpc_compat.ab import compare_exec_runs
    from qda_core.kernels import ENV
    from qda_core.soc import load_profile
    from qda_core.trace_formats import read_jsonl

    from .native import exit_code, run, split_programs

    named = {d.kernel for d in load_profile(soc) if d.kernel is not None}
    for side in sides:
        if named and side.kernel not in named:
            raise CliError(f"the SoC profile ({soc or os.environ.get('QDARPC_SOC')}) names kernel "
                           f"{', '.join(sorted(named))}, which a program's emulator follows over {ENV}: side "
                           f"{side.label} needs {side.kernel}", EXIT_USAGE)
    programs = split_programs(argv, [x.label for x in sides])
    runs = {}
    with tempfile.TemporaryDirectory(prefix="qdarpc-ab-") as tmp:
        for i, side in enumerate(sides):
            path = os.path.join(tmp, f"side{i}.jsonl")
            with _environ(ENV, side.kernel):
                t0 = time.perf_counter_ns()
                done = run(programs[side.label], backend=side.frontend, soc=soc, trace=path, capture=True, shim=shim)
                wall = time.perf_counter_ns() - t0
            events = read_jsonl(path) if os.path.exists(path) else []
            runs[side.label] = (exit_code(done.returncode), done.stdout, done.stderr, events, wall)
    return compare_exec_runs(" ".join(argv), runs, soc_profile=soc, sides=sides)


def _cell(o: dict | None) -> str:
    from libadsprpc_compat.ab import outcome_text

    return "(no such step)" if o is None else outcome_text(o)


def _ioctl_cell(x: dict | None) -> str:
    if x is None:
        return ""
    text = x["name"]
    if x["op"].startswith("INVOKE"):
        text += " " + x["op"][len("INVOKE "):]
    if x["error"]:
        text += f" -> {x['error']}"
    return text


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]


def _verdict(rep: dict) -> str:
    n = len(rep["steps"])
    if rep["agree"]:
        return f"SAME: both {'sides' if rep.get('sides') else 'backends'} agree on all {n} steps"
    fd = rep["first_difference"]
    a, b = rep["order"]
    return (f"DIFF: {rep['differences']} of {n} steps differ; first at step {fd['index']} "
            f"({fd['name']}): {a} {fd[a]} vs {b} {fd[b]}")


def _totals_rows(rep: dict) -> list[tuple[str, ...]]:
    a, b = rep["order"]
    ta, tb = rep["runs"][a]["totals"], rep["runs"][b]["totals"]

    def row(label, fn):
        return (label, fn(ta), fn(tb))

    return [
        ("", a, b),
        row("ioctls", lambda t: str(t["ioctls"])),
        row("invokes", lambda t: str(t["invokes"])),
        row("bytes copied", lambda t: fmt_bytes(t["copied"])),
        row("bytes shared", lambda t: fmt_bytes(t["shared"])),
        row("maps made / failed", lambda t: f"{t['maps_made']} / {t['maps_failed']}"),
        row("unmaps", lambda t: str(t["unmaps"])),
        row("ioctl errors", lambda t: str(t["ioctl_errors"])),
        row("API errors (AEE)", lambda t: str(t["api_errors"])),
        row("wall time", lambda t: fmt_ns(t["wall_ns"])),
        row("modeled on-device", lambda t: fmt_ns(t["modeled_ns"])),
    ]


def _invoke_rows(rep: dict) -> list[tuple[dict | None, dict | None]]:
    """Pairs of INVOKE entries (one per backend) in aligned order."""
    out = []
    for r in rep["ioctl_alignment"]:
        x = r["a"] if r["a"] and "copied" in r["a"] else None
        y = r["b"] if r["b"] and "copied" in r["b"] else None
        if x or y:
            out.append((x, y))
    return out


def _modeled_cell(x: dict | None) -> str:
    """An ioctl's modeled on-device time (its DSP messages'), ``-`` for none."""
    return fmt_ns(x["modeled_ns"]) if x and "modeled_ns" in x else "-"


def _node_key(node: str):
    """Sort device nodes by name, then number (accel9 before accel10)."""
    m = re.fullmatch(r"(.*?)(\d+)", node)
    return (m.group(1), int(m.group(2))) if m else (node, -1)


def _fresh_accel_nodes(soc: str) -> set[str] | None:
    """The accel nodes a fresh SoC of profile ``soc`` has (None if it cannot be built)."""
    try:
        from .info import devices

        return {d["nodes"]["accel"] for d in devices(soc)["domains"]}
    except Exception:  # an unloadable profile: say nothing rather than guess
        return None


def _via(run: dict, fresh: set[str] | None = None) -> str:
    """The session node a run started on (its first PD), the other nodes it created PDs on
    (``also``: other DSPs or nodes; ``then ... after a subsystem restart``: an accel node a
    fresh SoC does not have, i.e. its DSP re-probed; without ``fresh``, every other accel node),
    and how many other nodes it opened (accel discovery)."""
    main = run["session_nodes"] or sorted(run["nodes"], key=_node_key)
    others = len(set(run["nodes"]) - set(main))
    text = main[0] if main else "-"
    rest = main[1:]
    later = [n for n in rest if n.startswith("/dev/accel/") and (fresh is None or n not in fresh)]
    also = [n for n in rest if n not in later]
    parts = []
    if also:
        parts.append("also " + ", ".join(sorted(also, key=_node_key)))
    if later:
        parts.append(f"then {', '.join(sorted(later, key=_node_key))} after a subsystem restart")
    if parts:
        text += f" ({'; '.join(parts)})"
    return text + (f" (+{others} other node{'s' * (others > 1)} queried)" if others else "")


def _renumbered(rep: dict) -> str | None:
    """Why the second run's accel node is not the one a fresh SoC has: the first run restarted
    the DSP, and the accel driver probed again under a new minor (as the kernel does)."""
    if rep.get("separate_dsps"):  # the second run's SoC is fresh: nothing restarted it
        return None
    a, b = rep["order"]
    nodes = rep["runs"][b]["session_nodes"]
    accel = [n for n in nodes if n.startswith("/dev/accel/")]
    if not accel:
        return None
    try:
        from .info import devices

        fresh = {d["domain"]: d["nodes"]["accel"] for d in devices(rep["soc"])["domains"]}
    except Exception:  # an unloadable profile: say nothing rather than guess
        return None
    node = accel[0]  # the first it created a PD on
    if node in fresh.values():
        return None
    legacy = [n for r in rep["runs"].values() for n in r["session_nodes"] if n.startswith("/dev/fastrpc-")]
    dom = legacy[0][len("/dev/fastrpc-"):].removesuffix("-secure") if legacy else None
    was = f"; it was {fresh[dom]} when the SoC came up" if dom in fresh else ""
    return (f"note: {b} started on {node}: the {a} run restarted {dom or 'the DSP'} before it, and the accel "
            f"driver re-probes under a new node number after a restart{was}")


def _kernels(rep: dict) -> str | None:
    """Which kernel revisions the SoC(s) of a run with explicit sides followed (None for a plain
    legacy/accel run, whose report has no ``sides``)."""
    sides = rep.get("sides")
    if not sides:
        return None
    specs = {x["kernel"] for x in sides.values()}
    if len(specs) == 1:
        return f"kernel {specs.pop()}"
    return "kernels: " + "; ".join(f"{label} on {x['kernel']}" for label, x in sides.items())


def format_text(rep: dict) -> str:
    """The report as aligned plain text (steps with SAME/DIFF, ioctls side by side, bytes, totals)."""
    a, b = rep["order"]
    ra, rb = rep["runs"][a], rep["runs"][b]
    fresh = _fresh_accel_nodes(rep["soc"]) if any(len(r["session_nodes"]) > 1 for r in (ra, rb)) else None
    lines = [f"A/B {rep['workload']}: {rep['description']}",
             f"{'one emulated DSP each' if rep.get('separate_dsps') else 'one emulated DSP'} "
             f"(SoC {rep['soc']}): {a} via {_via(ra, fresh)}, then {b} via {_via(rb, fresh)}"]
    kern = _kernels(rep)
    if kern:
        lines.append(kern)
    note = _renumbered(rep)
    lines += [note, ""] if note else [""]
    rows = [("#", "STEP", a.upper(), b.upper(), "")]
    for st in rep["steps"]:
        rows.append((str(st["index"]), st["name"], _cell(st[a]), _cell(st[b]), "SAME" if st["same"] else "DIFF"))
    lines += _table(rows) + ["", _verdict(rep), "", "ioctls, aligned on the operation (= same, ! same call "
                                                    f"but another result, ~ differ, < {a} only, > {b} only):"]
    rows = [("", a.upper(), b.upper())]
    rows += [(r["op"], _ioctl_cell(r["a"]), _ioctl_cell(r["b"])) for r in rep["ioctl_alignment"]]
    lines += _table(rows)
    inv = _invoke_rows(rep)
    if inv:
        lines += ["", "bytes per INVOKE (copied inline / shared by reference) and its modeled on-device time:"]
        rows = [("STEP", "HANDLE SC", f"{a} copied/shared", f"{a} modeled", f"{b} copied/shared", f"{b} modeled")]
        for x, y in inv:
            any_ = x or y
            rows.append((any_["step"] or "-", any_["op"][len("INVOKE "):],
                         f"{x['copied']} / {x['shared']}" if x else "-", _modeled_cell(x),
                         f"{y['copied']} / {y['shared']}" if y else "-", _modeled_cell(y)))
        lines += _table(rows)
    lines += ["", "totals:"] + _table(_totals_rows(rep))
    inj = _injected_rows(rep)
    if inj:
        lines += ["", "injected faults:"] + _table(inj)
    return "\n".join(lines)


def _injected_rows(rep: dict) -> list[tuple[str, ...]]:
    """(side, step, rule, what it hit) of every fault injected, or [] when none fired."""
    rows = [(side, f["step"] or "-", f["rule"], f"{f['target']} #{f['n']}: {f['detail']}".strip())
            for side in rep["order"] for f in rep["runs"][side].get("injected", ())]
    return [("SIDE", "STEP", "RULE", "HIT"), *rows] if rows else []


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#1d2330;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.8em 0 .5em;border-bottom:1px solid #dde2ea;
padding-bottom:.2em}.sub{color:#5b6575;margin:0 0 1em}
.verdict{padding:.7em 1em;border-radius:6px;font-weight:600;margin:1em 0}
.verdict.same{background:#e5f6ea;color:#155d2b;border:1px solid #a9dcb7}
.verdict.diff{background:#fff1e0;color:#8a4a00;border:1px solid #f1c48a}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{flex:1;min-width:260px;border:1px solid #dde2ea;
border-radius:6px;padding:.6em 1em}.card h3{margin:.1em 0 .4em;font-size:1em}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{text-align:left;padding:.25em .6em;
border-bottom:1px solid #eef1f5;vertical-align:top}th{background:#f5f7fa;font-weight:600}
td.mono,span.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
tr.diff td{background:#fff4e5}tr.diff td.tag{color:#b35900;font-weight:700}td.tag{color:#1f7a3a;font-weight:700}
td.err{color:#b3261e}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.only td{background:#f4f1ff}tr.chg td{background:#fff9e6}.op{color:#5b6575;text-align:center}
.legend{color:#5b6575;font-size:.9em}
"""


def _h(x) -> str:
    return html.escape(str(x))


def _outcome_td(o: dict | None) -> str:
    if o is None:
        return '<td class="mono">(no such step)</td>'
    cls = "mono" if o["ok"] else "mono err"
    return f'<td class="{cls}">{_h(_cell(o))}</td>'


def _report_html(rep: dict) -> str:
    a, b = rep["order"]
    ra, rb = rep["runs"][a], rep["runs"][b]
    out = [f"<h1>A/B: {_h(rep['workload'])}</h1>", f'<p class="sub">{_h(rep["description"])}</p>']
    if rep.get("sides"):
        out.append(f'<p class="sub">{"one emulated DSP each" if rep.get("separate_dsps") else "one emulated DSP"}'
                   f' (SoC {_h(rep["soc"])}); {_h(_kernels(rep))}</p>')
    out += [f'<div class="verdict {"same" if rep["agree"] else "diff"}">{_h(_verdict(rep))}</div>',
            '<div class="cards">']
    for name, r in ((a, ra), (b, rb)):
        t = r["totals"]
        out.append(f'<div class="card"><h3>{_h(name)}</h3><span class="mono">{_h(_via(r))}'
                   f"</span><br>{t['ioctls']} ioctls, {t['invokes']} invokes; copied {_h(fmt_bytes(t['copied']))}, "
                   f"shared {_h(fmt_bytes(t['shared']))}<br>wall {_h(fmt_ns(t['wall_ns']))}, modeled on-device "
                   f"{_h(fmt_ns(t['modeled_ns']))}</div>")
    out.append("</div>")
    out.append("<h2>Steps</h2><table><tr><th>#</th><th>step</th>"
               f"<th>{_h(a)}</th><th>{_h(b)}</th><th></th><th class='num'>{_h(a)} time</th>"
               f"<th class='num'>{_h(b)} time</th></tr>")
    for st in rep["steps"]:
        ta = fmt_ns(st[a]["wall_ns"]) if st[a] and "wall_ns" in st[a] else ""
        tb = fmt_ns(st[b]["wall_ns"]) if st[b] and "wall_ns" in st[b] else ""
        out.append(f'<tr class="{"same" if st["same"] else "diff"}"><td>{st["index"]}</td><td>{_h(st["name"])}</td>'
                   f'{_outcome_td(st[a])}{_outcome_td(st[b])}<td class="tag">{"SAME" if st["same"] else "DIFF"}</td>'
                   f'<td class="num">{_h(ta)}</td><td class="num">{_h(tb)}</td></tr>')
    out.append("</table>")
    out.append(f'<h2>ioctl sequences</h2><p class="legend">Aligned on the operation: = same, ! same call but another result, ~ differ, '
               f'&lt; {_h(a)} only, &gt; {_h(b)} only.</p><table><tr><th>step</th><th>{_h(a)}</th>'
               f'<th class="op"></th><th>{_h(b)}</th></tr>')
    for r in rep["ioctl_alignment"]:
        cls = {"=": "", "!": "chg", "~": "chg", "<": "only", ">": "only"}[r["op"]]
        step = (r["a"] or r["b"])["step"] or ""
        out.append(f'<tr class="{cls}"><td>{_h(step)}</td><td class="mono">{_h(_ioctl_cell(r["a"]))}</td>'
                   f'<td class="op">{_h(r["op"])}</td><td class="mono">{_h(_ioctl_cell(r["b"]))}</td></tr>')
    out.append("</table>")
    inv = _invoke_rows(rep)
    if inv:
        out.append(f"<h2>Bytes per INVOKE</h2><table><tr><th>step</th><th>handle, sc</th>"
                   f"<th class='num'>{_h(a)} copied</th><th class='num'>{_h(a)} shared</th>"
                   f"<th class='num'>{_h(a)} modeled</th>"
                   f"<th class='num'>{_h(b)} copied</th><th class='num'>{_h(b)} shared</th>"
                   f"<th class='num'>{_h(b)} modeled</th></tr>")
        for x, y in inv:
            any_ = x or y
            cells = "".join(f'<td class="num">{_h(v)}</td>' for v in (
                *(x and (x["copied"], x["shared"]) or ("-", "-")), _modeled_cell(x),
                *(y and (y["copied"], y["shared"]) or ("-", "-")), _modeled_cell(y)))
            out.append(f'<tr><td>{_h(any_["step"] or "")}</td><td class="mono">{_h(any_["op"][len("INVOKE "):])}'
                       f"</td>{cells}</tr>")
        out.append("</table>")
    out.append("<h2>Totals</h2><table>")
    for i, row in enumerate(_totals_rows(rep)):
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}{' class=num' if j and i else ''}>{_h(c)}</{tag}>"
                                    for j, c in enumerate(row)) + "</tr>")
    out.append("</table>")
    inj = _injected_rows(rep)
    if inj:
        out.append("<h2>Injected faults</h2><table><tr>" + "".join(f"<th>{_h(c.lower())}</th>" for c in inj[0]) + "</tr>")
        out += ["<tr>" + "".join(f'<td class="mono">{_h(c)}</td>' for c in r) + "</tr>" for r in inj[1:]]
        out.append("</table>")
    errs = [(n, e) for n, r in ((a, ra), (b, rb)) for e in r["errors"]["ioctl"]]
    if errs:
        out.append("<h2>ioctl errors</h2><table><tr><th>backend</th><th>step</th><th>ioctl</th><th>error</th></tr>")
        out += [f'<tr><td>{_h(n)}</td><td>{_h(e["step"] or "")}</td><td class="mono">{_h(e["name"])}</td>'
                f'<td class="mono err">{_h(e["error"])}</td></tr>' for n, e in errs]
        out.append("</table>")
    return "\n".join(out)


def format_html(reports: list[dict]) -> str:
    """One self-contained HTML page (inline CSS, no scripts, nothing fetched) for ``reports``."""
    title = "qdarpc A/B: " + ", ".join(r["workload"] for r in reports)
    body = '\n<hr style="margin:3em 0;border:0;border-top:2px solid #dde2ea">\n'.join(map(_report_html, reports))
    sides = ("each side (a front end, or a front end at a kernel revision), against one emulated DSP, or one "
             "each where the report says so" if any(r.get("sides") for r in reports) else
             "each backend, against one emulated DSP")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>\n{body}\n"
            f'<p class="legend">Generated by qdarpc ab: the same workload through the legacy FastRPC user API on '
            f"{sides}.</p></body></html>\n")
