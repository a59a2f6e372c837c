"""The rough edges of issue 12, one test each: selftest on DSPs without unsigned PDs, unknown
domains, --debug and exit codes, JSONL time order, the ab header's node, and ``qdarpc bench``
from an installed package."""
import json
import os
import pathlib
import subprocess
import sys
from unittest import mock

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cli_helpers import cli_runner, errors  # noqa: E402


@pytest.fixture
def run(fd_guard):
    yield from cli_runner()


# --- selftest ---------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", ["adsp", "sdsp", "0", "2"])
def test_selftest_signed_pd_where_unsigned_is_cdsp_only(run, domain):
    out = run("selftest", "-d", domain).stdout
    lines = out.splitlines()
    assert "unsigned user PD -> 0x80000414" in out and "has no unsigned PDs (CDSP-only); a signed PD instead" in out
    assert "signed user PD -> 0x0" in out and lines[-1].startswith("PASS: sum=499500 max=999")


def test_selftest_stops_at_first_failed_step(run):
    res = run("selftest", "-d", "adsp", "-U", code=errors.EXIT_FAILED)
    last = res.stdout.splitlines()[-1]
    assert last.startswith("FAIL at INIT_CREATE (unsigned user PD): the DSP answered 0x80000414 AEE_EUNSUPPORTED")
    assert "CDSP-only" in last and "INVOKE" not in res.stdout and "remotectl1" not in res.stdout
    assert "PASS" not in res.stdout and "sum=499500" not in res.stdout
    # a later step failing stops there too, naming it and the DSP's answer
    with mock.patch("libadsprpc_compat.remotectl.open_module", return_value=(0x8000040E, 0)):
        res = run("selftest", code=errors.EXIT_FAILED)
    assert res.stdout.splitlines()[-1] == ("FAIL at remotectl1 open of the calculator: the DSP answered "
                                           "0x8000040e AEE_EBADPARM")
    assert "INVOKE" not in res.stdout


def test_selftest_pd_choice(run):
    assert "signed user PD -> 0x0" in run("selftest", "--pd", "signed").stdout
    out = run("selftest", "-U").stdout
    assert "unsigned user PD -> 0x0" in out and "PASS" in out
    assert "contradicts" in run("selftest", "-U", "--pd", "signed", code=errors.EXIT_USAGE).stderr


# --- unknown domains --------------------------------------------------------------------------
def test_unknown_domain_lists_the_socs_domains(run):
    err = run("selftest", "-d", "nosuch", code=errors.EXIT_USAGE).stderr
    assert "unknown DSP domain 'nosuch'; this SoC (default) has adsp (0), cdsp (3), sdsp (2)" in err
    # --soc is known even when it comes after -d
    err = run("invoke", "-d", "nosuch", "file:///libx_skel.so?x_skel_handle_invoke&_modver=1.0", "2", "--soc",
              "minimal", code=errors.EXIT_USAGE).stderr
    assert "this SoC (minimal) has cdsp (3)" in err and "adsp" not in err
    err = run("selftest", "-d", "99", code=errors.EXIT_USAGE, env={"QDARPC_SOC": "full"}).stderr
    assert "this SoC (full) has adsp (0), mdsp (1), sdsp (2), cdsp (3), cdsp1 (4), gdsp0 (5), gdsp1 (6)" in err


# --- --debug ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args,code", [
    (["query", "/dev/accel/accel9"], 3),
    (["invoke", "file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0", "2"], 4),
    (["trace", "summarize", "{broken}"], 5),
])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(run, tmp_path, args, code):
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"v": 1}\n')
    args = [a.format(broken=broken) for a in args]
    plain = run(*args, code=code)
    debug = run("--debug", *args, code=code)
    assert "Traceback" not in plain.stderr and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


# --- trace order ------------------------------------------------------------------------------
def test_jsonl_trace_is_in_time_order(run, tmp_path):
    from qda_core.trace_formats import read_jsonl

    out = tmp_path / "t.jsonl"
    run("trace", "-o", out, "--", "invoke", "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0",
        "sum", "--in", "i32:3", "--in", "i32:1,2,3", "--out", "i64:1")
    events = read_jsonl(out)
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    # each DSP dispatch comes after the ioctl that carried it (parents first)
    carried = 0
    for i, e in enumerate(events):
        for j, p in enumerate(events):
            if e["kind"] == "dsp" and p["kind"] == "ioctl" and p["ts"] <= e["ts"] <= p["ts"] + p["dur"]:
                assert j < i, (p, e)
                carried += 1
    assert carried >= 3  # remotectl open, sum, remotectl close


# --- ab header --------------------------------------------------------------------------------
def test_ab_header_names_the_node_each_run_started_on(run):
    lines = run("ab", "errors").stdout.splitlines()
    assert lines[1] == ("one emulated DSP (SoC default): legacy via /dev/fastrpc-cdsp-secure, then accel via "
                        "/dev/accel/accel3 (+2 other nodes queried)")
    assert lines[2] == ("note: accel started on /dev/accel/accel3: the legacy run restarted cdsp before it, and the "
                        "accel driver re-probes under a new node number after a restart; it was /dev/accel/accel1 "
                        "when the SoC came up")
    lines = run("ab", "errors", "--order", "accel,legacy").stdout.splitlines()
    assert "accel via /dev/accel/accel1 (+2 other nodes queried)" in lines[1] and not lines[2]
    assert not run("ab", "calculator").stdout.splitlines()[2]  # no restart, no note


# --- bench ------------------------------------------------------------------------------------
def test_bench_quick_runs_every_benchmark_and_prints_ratios(run, tmp_path, monkeypatch):
    # from a directory holding an unbuilt source tree: the benchmarks must not import it
    (tmp_path / "qda_core").mkdir()
    (tmp_path / "qda_core" / "__init__.py").write_text("raise ImportError('the unbuilt tree was imported')\n")
    monkeypatch.chdir(tmp_path)
    data = json.loads(run("bench", "--quick", "--json").stdout)
    assert [r["name"] for r in data["results"]] == ["marshal", "invoke", "remote_invoke", "c_abi", "shim", "dataplane"]
    for r in data["results"]:
        assert r["returncode"] == 0, r["stderr"]
        rows = r["result"]["rows"]
        assert rows and all(_measured(row) and row["reference"] for row in rows)
    cases = {row["case"] for r in data["results"] for row in r["result"]["rows"]}
    assert {"pack+unpack, 16 small args", "shared GEM 4 MiB invoke", "accel: remote_handle64_invoke",
            "legacy: remote_handle64_invoke"} <= cases
    text = run("bench", "--quick", "--only", "remote_invoke").stdout
    assert text.startswith("== remote_invoke") and "ratio" in text and "raw legacy INVOKE ioctl" in text


def _measured(row: dict) -> bool:
    """A positive ratio, or none with the row saying why (a target table's unmeasured row), or 0
    for a difference of two times that the noise swallowed (the row says so)."""
    if row["ratio"] is None:
        return row.get("note", "").startswith("not measured")
    if row["ratio"] == 0:
        return "below the noise" in row.get("note", "")
    return isinstance(row["ratio"], (int, float)) and row["ratio"] > 0


# the rows of the dataplane benchmark (issue 15's targets) in --quick mode, and their targets
DATAPLANE_ROWS = {
    **{f"1 null invoke, {d}: {p}": "<= 1.0x" for d, raw in (("accel", "DRM_IOCTL_QDA_INVOKE"),
                                                         ("legacy", "FASTRPC_IOCTL_INVOKE"))
       for p in (f"raw {raw}", "typed invoke()", "remote_handle64_invoke")},
    **{f"2 null invoke, C ABI from C, {b}, native skel (a route)": "<= 0.5x" for b in ("accel", "legacy")},
    **{f"2 null invoke, C ABI from C, {b}, Python skel": "-" for b in ("accel", "legacy")},
    **{f"3 each of {k} extra 8-byte in-buffer{'s' if k > 1 else ''}, {b}": "<= 5.0x"
       for k in (1, 4) for b in ("accel", "legacy")},
    **{f"4 copied {size} {d}, {b}": target for size, target in (("64 KiB", ">= 0.5x"), ("1 MiB", ">= 0.8x"))
       for d in ("in-buffer", "out-buffer") for b in ("accel", "legacy")},
    **{f"5 by reference 16 MiB, {how}": "<= 1.1x" for how in (
        "accel driver, GEM by handle", "legacy driver, dma-buf by fd", "library accel, rpcmem",
        "library legacy, rpcmem")},
    "6 GEM_CREATE, 10^3 live objects": "<= 1.5x",
    "6 by-reference invoke, 10^3 live objects": "<= 1.5x",
    "6 open fds, 10^3 live objects": "<= 1.0x",
    "7a 2 threads / 1, native skel, 20 us of work per call": ">= 1.7x",
    "7b 2 threads / 1, Python null skel": ">= 1.0x",
}


def test_bench_dataplane_quick_table(run):
    """``qdarpc bench --only dataplane --quick``: one row per target of issue 15, each with a
    positive ratio, its reference, its target and whether it meets it (no figure is checked:
    targets live in the benchmark, not in tests)."""
    from qdarpc_cli.bench import format_result

    data = json.loads(run("bench", "--only", "dataplane", "--quick", "--json").stdout)
    (r,) = data["results"]
    assert r["name"] == "dataplane" and r["returncode"] == 0, r["stderr"]
    rows = {row["case"]: row for row in r["result"]["rows"]}
    assert set(DATAPLANE_ROWS) <= set(rows)
    for case, row in rows.items():
        assert _measured(row) and row["reference"], row
        assert row["target"] == DATAPLANE_ROWS.get(case, row["target"])
        if row["target"] == "-":  # a context row (the machine's own thread scaling)
            assert row["meets"] == "-"
            continue
        op, bound = row["target"][:2], float(row["target"][3:-1])
        if row["ratio"] is None:
            assert row["meets"] == "n/a"
        else:
            assert row["meets"] == ("yes" if (row["ratio"] <= bound if op == "<=" else row["ratio"] >= bound) else "no")
    text = format_result(r)
    assert text.startswith("== dataplane") and "target" in text.splitlines()[2] and "meets" in text.splitlines()[2]
    assert "6 open fds, 10^3 live objects" in text and "Python fcntl.ioctl(FIONREAD)" in text


def test_bench_script_entry_point(tmp_path):
    """``python bench/remote_invoke.py`` in a checkout runs the packaged benchmark."""
    # A script's own directory on sys.path, as a user runs it (PYTHONSAFEPATH from conftest dropped).
    env = {k: v for k, v in os.environ.items() if k not in ("QDARPC_TRACE", "PYTHONSAFEPATH")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "remote_invoke.py"), "--quick", "--iterations", "20",
                           "--json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "remote_invoke"


def test_a_target_rows_verdict_is_on_the_figure_it_shows():
    """A ratio just below a bound that rounds onto it (0.499996 -> 0.5) meets a ">= 0.5" target,
    as the figure shown says (the verdict was on the unrounded ratio: a row said 0.5 and "no")."""
    from qdarpc_cli.benchmarks.common import target_row

    assert [(r["ratio"], r["meets"]) for r in (target_row("c", 0.499996, "ref", ">= 0.5"),
                                               target_row("c", 0.49994, "ref", ">= 0.5"),
                                               target_row("c", 1.000004, "ref", "<= 1.0"),
                                               target_row("c", None, "ref", "<= 1.0"))] == \
        [(0.5, "yes"), (0.4999, "no"), (1.0, "yes"), (None, "n/a")]
