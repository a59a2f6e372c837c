"""The ``qdarpc`` command: every subcommand, its --json output and its error paths (CliRunner)."""
import importlib
import importlib.util
import json
import pathlib
import sys
from unittest import mock

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cli_helpers import cli_runner, errors, main  # noqa: E402

cli = main.cli

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0"
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0"


@pytest.fixture
def run(fd_guard):
    """Run ``qdarpc ARGS``; checks that the command left no emulator object or fd behind."""
    yield from cli_runner()


def one_line_error(res) -> str:
    """The error text; asserts it is a single clean line with no traceback."""
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    return err[-1]


# --- group, version, help, exit codes ---------------------------------------------------------
def test_version_and_help(run):
    import qda_core

    out = run("--version").stdout
    assert f"qdarpc {qda_core.__version__}" in out and "qda_core._abi:" in out and "Python" in out
    for cmd in ([], ["invoke"], ["trace"], ["trace", "summarize"], ["bench"], ["devices"], ["query"], ["ab"],
                ["doctor"], ["selftest"]):
        res = run(*cmd, "--help")
        assert "Example" in res.stdout, cmd
    assert "Exit codes" in run("--help").stdout


def test_exit_codes_documented_once():
    # the codes the README promises users (an independent source), not a copy of the table
    import re

    text = " ".join((ROOT / "README.md").read_text().split())
    promised = re.search(r"Exit codes: (.*?) \(", text).group(1)
    assert set(errors.EXIT_CODES) == {int(c) for c in re.findall(r"(\d+) [a-zA-Z]", promised)}, promised
    for code, name in errors.EXIT_CODES.items():
        assert getattr(errors, name) == code
        assert f"{code:<8}{name}" in errors.__doc__
        assert f"{code} " in main.EPILOG_EXIT


def test_library_error_clean_unless_debug(run):
    res = run("query", "/dev/accel/accel9", code=errors.EXIT_DEVICE)
    assert "ENOENT" in one_line_error(res) and "/dev/accel/accel9" in res.stderr
    res = run("--debug", "query", "/dev/accel/accel9", code=errors.EXIT_DEVICE)  # same code, plus the traceback
    assert "Traceback" in res.stderr and "FileNotFoundError" in res.stderr and "ENOENT" in res.stderr.splitlines()[-1]


def test_unexpected_exception_is_internal_error(run):
    with mock.patch("qdarpc_cli.info.devices", side_effect=RuntimeError("boom")):
        res = run("devices", code=errors.EXIT_INTERNAL)
        assert "internal error: RuntimeError: boom" in one_line_error(res) and "--debug" in res.stderr
        res = run("--debug", "devices", code=errors.EXIT_INTERNAL)
        assert "Traceback" in res.stderr and "RuntimeError: boom" in res.stderr


# --- selftest ---------------------------------------------------------------------------------
def test_selftest(run):
    res = run("selftest")
    assert "PASS" in res.stdout and "DRM_IOCTL_QDA_INIT_CREATE" in res.stdout
    assert "PASS" in run("selftest", "-d", "3").stdout
    res = run("selftest", "-d", "mdsp", code=errors.EXIT_DEVICE)  # not on the default SoC
    assert "ENODEV" in one_line_error(res)


# --- devices / query --------------------------------------------------------------------------
def test_devices_text_and_json(run):
    text = run("devices").stdout
    assert "/dev/accel/accel1" in text and "cdsp" in text and "8/8" in text
    data = json.loads(run("devices", "--soc", "full", "--json").stdout)
    assert data["soc"] == "full"
    doms = {d["domain"]: d for d in data["domains"]}
    assert list(doms) == ["adsp", "mdsp", "sdsp", "cdsp", "cdsp1", "gdsp0", "gdsp1"]
    cdsp = doms["cdsp"]
    assert cdsp["nodes"]["accel"] == "/dev/accel/accel3" and cdsp["domain_id"] == 3
    assert cdsp["context_banks"] == {"total": 8, "free": 8, "sids": list(range(1, 9))}
    assert cdsp["pds_alive"] == 0 and cdsp["dsp_stats"]["invokes"] == 0


def test_devices_soc_file_and_bad_profile(run, tmp_path):
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"domains": [{"name": "cdsp", "context_banks": 2, "sids": [5, 9]}]}))
    data = json.loads(run("devices", "--soc", prof, "--json").stdout)
    assert data["domains"][0]["context_banks"] == {"total": 2, "free": 2, "sids": [5, 9]}
    res = run("devices", "--soc", "nosuch", code=errors.EXIT_USAGE)
    assert "unknown SoC profile 'nosuch'" in res.stderr
    res = run("devices", code=0, env={"QDARPC_SOC": "minimal"})
    assert "accel0" in res.stdout and "adsp" not in res.stdout


@pytest.mark.parametrize("device", ["/dev/accel/accel1", "accel1", "cdsp", "3"])
def test_query(run, device):
    data = json.loads(run("query", device, "--json").stdout)
    assert data == {"device": "/dev/accel/accel1", "domain": "cdsp", "ioctl": "DRM_IOCTL_QDA_QUERY",
                    "request": "0x80106440", "dsp_name": "cdsp", "client_id": 1}
    assert "dsp_name='cdsp'" in run("query", device).stdout


def test_query_errors(run):
    assert "ENODEV" in one_line_error(run("query", "mdsp", code=errors.EXIT_DEVICE))
    assert "ENOENT" in one_line_error(run("query", "/dev/dri/card0", code=errors.EXIT_DEVICE))


# --- invoke -----------------------------------------------------------------------------------
def test_invoke_calculator_sum(run):
    res = run("invoke", CALC, "sum", "--in", "i32:3", "--in", "i32:1,2,3", "--out", "i64:1")
    assert "out0 i64[1]: 6" in res.stdout and "ret 0x0 AEE_SUCCESS" in res.stdout
    assert "method 2 (sum)  sc 0x02020100" in res.stdout and "&_dom=cdsp" in res.stdout


def test_invoke_json_rpcmem_and_order(run):
    # the rpcmem in-buffer comes second on the command line and must be in-buffer 1
    data = json.loads(run("invoke", CALC + "&_dom=cdsp", "3", "--in", "i32:4", "--in-rpcmem", "i32:5,-9,2,7",
                          "--out", "i32:1", "-U", "--json").stdout)
    assert data["method"] == 3 and data["method_name"] == "max" and data["sc"] == "0x03020100"
    assert data["ret"] == 0 and data["ret_name"] == "AEE_SUCCESS"
    assert data["outputs"] == [{"index": 0, "type": "i32", "by_ref": False, "hex": "07000000", "value": [7]}]
    # reversed: the shared buffer as in-buffer 0 holds the count
    data = json.loads(run("invoke", CALC, "max", "--in-rpcmem", "i32:2", "--in", "i32:8,3", "--out-rpcmem",
                          "i32:1", "--json").stdout)
    assert data["outputs"][0]["value"] == [8] and data["outputs"][0]["by_ref"] is True


def test_invoke_parsed_arguments(run):
    """Parsing only: the command hands run() exactly what the command line says."""
    inv = importlib.import_module("qdarpc_cli.invoke")
    res_obj = inv.InvokeResult(CALC, "adsp", "accel", 2, "sum", 0x02020100, 0, [], [1])
    with mock.patch("qdarpc_cli.invoke.run", autospec=True, return_value=res_obj) as fake:
        run("invoke", CALC, "sum", "-d", "0", "--session", "2", "--in", "hex:0a0B", "--in-rpcmem", "str:hi",
            "--in", "u8:1,0xff", "--out", "4", "--out-rpcmem", "f32:2", "--sc", "0x02030200", "--repeat", "3")
    kw = fake.call_args.kwargs
    assert kw["domain"] == "adsp" and kw["session"] == 2 and kw["sc"] == 0x02030200 and kw["repeat"] == 3
    assert kw["backend"] == "accel" and kw["unsigned"] is False and kw["soc_profile"] is None
    assert kw["ins"] == [inv.InBuf(b"\n\x0b", "hex"), inv.InBuf(b"hi", "str", True), inv.InBuf(b"\x01\xff", "u8")]
    assert kw["outs"] == [inv.OutBuf(4, "hex"), inv.OutBuf(8, "f32", True)]


def test_invoke_types_decode(run):
    data = json.loads(run("invoke", TEST, "echo", "--in", "f32:1.5,-2,inf", "--out", "f32:3", "--json").stdout)
    assert data["outputs"][0]["value"] == [1.5, -2.0, "inf"]
    data = json.loads(run("invoke", TEST, "echo", "--in", "str:hello", "--out", "str:16", "--json").stdout)
    assert data["outputs"][0]["value"] == "hello"
    data = json.loads(run("invoke", TEST, "echo", "--in", "i16:-1,300", "--out", "4", "--json").stdout)
    assert data["outputs"][0] == {"index": 0, "type": "hex", "by_ref": False, "hex": "ffff2c01", "value": "ffff2c01"}


def test_invoke_file_input(run, tmp_path):
    blob = tmp_path / "in.bin"
    blob.write_bytes(bytes(range(10)))
    data = json.loads(run("invoke", TEST, "echo", "--in", f"@{blob}", "--out", "u8:10", "--json").stdout)
    assert data["outputs"][0]["value"] == list(range(10))
    res = run("invoke", TEST, "echo", "--in", f"@{tmp_path / 'missing.bin'}", "--out", "1", code=errors.EXIT_USAGE)
    assert "cannot read" in one_line_error(res)


def test_invoke_dsp_error_exit_code(run):
    res = run("invoke", CALC, "sum", "--in", "i32:4", "--in", "i32:1,2,3", "--out", "i64:1", code=errors.EXIT_DSP)
    assert "ret 0x8000040e AEE_EBADPARM" in res.stdout
    data = json.loads(run("invoke", CALC, "sum", "--in", "i32:4", "--in", "i32:1", "--out", "i64:1", "--json",
                          code=errors.EXIT_DSP).stdout)
    assert data["ret"] == 0x8000040E and data["ret_name"] == "AEE_EBADPARM"


def test_invoke_repeat_timing(run):
    data = json.loads(run("invoke", TEST, "null", "--repeat", "50", "--json").stdout)
    t = data["timing"]
    assert t["calls"] == 50 and 0 < t["min_us"] <= t["median_us"] <= t["p99_us"]
    res = run("invoke", TEST, "null", "--repeat", "20")
    assert "20 calls: median" in res.stdout and "invoke x20" not in res.output  # no bar when piped
    # a non-zero retval stops the repetition
    data = json.loads(run("invoke", TEST, "fail", "--in", "u32:0x8000040e", "--repeat", "9", "--json",
                          code=errors.EXIT_DSP).stdout)
    assert data["timing"]["calls"] == 1


def test_progress_bar_only_on_a_terminal(monkeypatch):
    term = importlib.import_module("qdarpc_cli.term")
    items = [1, 2, 3]
    with term.progress("x")(items) as it:
        assert it is items
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with term.progress("x")(items) as it:
        assert type(it).__name__ == "ProgressBar" and list(it) == items


@pytest.mark.parametrize("args,needle", [
    (["file:///libcalc", "2"], "no '?<symbol>'"),
    (["file:///libx.so?", "2"], "empty symbol"),
    ([CALC + "&_dom=mars", "2"], "unknown domain _dom=mars"),
    ([CALC + "&_dom=adsp", "2", "-d", "cdsp"], "_dom=adsp but -d says cdsp"),
    ([CALC, "2", "-d", "venus"], "unknown DSP domain 'venus'"),
    ([CALC + "&_session=7", "2"], "sessions are 0-3"),
    ([CALC, "2", "--session", "5"], "--session"),
    ([CALC, "sum", "--in", "i32:x"], "'x' is not an integer (i32)"),
    ([CALC, "sum", "--in", "u8:256"], "256 does not fit u8"),
    ([CALC, "sum", "--in", "i8:-129"], "does not fit i8"),
    ([CALC, "sum", "--in", "q32:1"], "unknown type 'q32'"),
    ([CALC, "sum", "--in", "12"], "has no type prefix"),
    ([CALC, "sum", "--in", "hex:zz"], "is not hex digits"),
    ([CALC, "sum", "--in", "f32:one"], "'one' is not a number"),
    ([CALC, "sum", "--out", "i64:two"], "'two' is not a count"),
    ([CALC, "sum", "--out", "-3"], "negative"),
    ([CALC, "sum", "--out", "z9:1"], "unknown type 'z9'"),
    ([CALC, "sum", "--in", "i32:1", "--sc", "0x02020100"], "declares 2 in / 1 out buffers and 0 handles; the command line gives 1 in / 0 out"),
    ([CALC, "sum", "--sc", "banana"], "'banana' is not an integer"),
    ([CALC, "sum", "--sc", "0x1ffffffff"], "not a 32-bit"),
    ([CALC, "sum", "--sc", "0x02000001"], "1 handles"),
    ([CALC, "nosuch"], "no method 'nosuch' in this module; it has sum (2), max (3)"),
    ([CALC, "40"], "outside 0..30"),
    ([CALC, "sum", "--repeat", "0"], "--repeat"),
    ([CALC, "sum", "--in-rpcmem", "hex:"], "at least one byte"),
])
def test_invoke_usage_errors(run, args, needle):
    res = run("invoke", *args, code=errors.EXIT_USAGE)
    assert needle in res.stderr, res.stderr
    assert "Traceback" not in res.output


def test_invoke_missing_module_and_device(run):
    res = run("invoke", "file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0", "2", code=errors.EXIT_DSP)
    line = one_line_error(res)
    assert "libnope_skel.so: cannot open shared object file" in line and "AEE_ENOSUCHMOD" in line
    res = run("invoke", CALC, "sum", "--soc", "minimal", "-d", "adsp", code=errors.EXIT_DEVICE)
    assert "ENODEV" in one_line_error(res)
    res = run("invoke", CALC + "&_idlver=9.9", "sum", code=errors.EXIT_DSP)  # the skel refuses the open
    assert "could not open" in one_line_error(res)


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_invoke_both_backends_same_results(run, backend):
    """Copied and shared buffers, in and out, through either driver against the same DSP code."""
    data = json.loads(run("invoke", CALC, "max", "--backend", backend, "--in", "i32:3", "--in-rpcmem", "i32:4,8,1",
                          "--out", "i32:1", "--json").stdout)
    assert data["backend"] == backend and data["outputs"][0]["value"] == [8]
    data = json.loads(run("invoke", CALC, "sum", "--backend", backend, "--in-rpcmem", "i32:2", "--in", "i64:-1",
                          "--out-rpcmem", "i64:1", "--json", env={"QDARPC_BACKEND": "legacy"}).stdout)
    assert data["outputs"][0] == {"index": 0, "type": "i64", "by_ref": True, "hex": "feffffffffffffff", "value": [-2]}


def test_invoke_legacy_backend_errors(run):
    res = run("invoke", CALC, "sum", "--backend", "legacy", "--soc", "full", "-d", "gdsp0", code=errors.EXIT_DEVICE)
    assert "/dev/fastrpc-gdsp0" in one_line_error(res)  # upstream has no legacy node for the GDSPs
    res = run("invoke", CALC, "sum", "--backend", "legacy", "-U", "-d", "sdsp", code=errors.EXIT_DSP)
    line = one_line_error(res)  # the DSP refuses an unsigned PD on the SDSP: the library's code
    assert "legacy backend (/dev/fastrpc-sdsp-secure | /dev/fastrpc-sdsp)" in line and "AEE_EUNSUPPORTED" in line
    run("invoke", CALC, "sum", "--backend", "dsp", code=errors.EXIT_USAGE)
    data = json.loads(run("invoke", CALC, "sum", "--in", "i32:0", "--in", "hex:", "--out", "8", "--json",
                          env={"QDARPC_BACKEND": "legacy"}).stdout)
    assert data["backend"] == "legacy"


def test_devices_lists_legacy_nodes(run):
    doms = {d["domain"]: d for d in json.loads(run("devices", "--soc", "full", "--json").stdout)["domains"]}
    assert doms["cdsp"]["nodes"]["legacy"] == ["/dev/fastrpc-cdsp-secure", "/dev/fastrpc-cdsp"]
    assert doms["adsp"]["nodes"]["legacy"] == ["/dev/fastrpc-adsp"] and doms["gdsp0"]["nodes"]["legacy"] == []
    res = run("query", "/dev/fastrpc-cdsp", code=errors.EXIT_USAGE)
    assert "legacy FastRPC node" in one_line_error(res)


# --- bench ------------------------------------------------------------------------------------
# The benchmarks themselves are smoke-tested in test_cli_bench.py; here, a failing one.
def test_bench_failure_is_reported(run, monkeypatch):
    bench = importlib.import_module("qdarpc_cli.bench")
    monkeypatch.setitem(bench.BENCHMARKS, "marshal", "no_such_benchmark_module")
    res = run("bench", "--only", "marshal", "--json", code=errors.EXIT_FAILED)
    assert "benchmark failed: marshal" in res.stderr
    (r,) = json.loads(res.stdout)["results"]
    assert r["returncode"] != 0 and r["result"] is None and "No module named" in r["stderr"]


# --- trace ------------------------------------------------------------------------------------
sys.path.insert(0, str(ROOT / "tests"))
from test_trace_formats import check_chrome  # noqa: E402

from qda_core.trace_formats import read_jsonl, validate_events  # noqa: E402

SUM_ARGS = ["invoke", CALC, "sum", "--in", "i32:3", "--in", "i32:1,2,3", "--out", "i64:1"]


def test_trace_selftest_jsonl(run, tmp_path):
    out = tmp_path / "self.jsonl"
    res = run("trace", "-o", out, "--", "selftest")
    assert "PASS" in res.stdout and f"events -> {out}" in res.stderr
    events = read_jsonl(out)
    validate_events(events)
    names = [e["name"] for e in events if e["kind"] == "ioctl"]
    assert names[0] == "DRM_IOCTL_QDA_QUERY" and "DRM_IOCTL_QDA_INIT_CREATE" in names
    assert names.count("DRM_IOCTL_QDA_INVOKE") == 4  # remotectl open, sum, max, remotectl close
    assert {e["kind"] for e in events} == {"ioctl", "dsp"}


def test_trace_invoke_chrome(run, tmp_path):
    out = tmp_path / "inv.json"
    res = run("trace", "run", "-o", out, "--", *SUM_ARGS)
    assert "out0 i64[1]: 6" in res.stdout
    doc = json.loads(out.read_text())
    xs = check_chrome(doc)
    invokes = [e for e in xs if e["name"] == "DRM_IOCTL_QDA_INVOKE"]
    sums = [e for e in xs if e["cat"] == "dsp" and e["args"]["method"] == 2 and e["args"]["sc"] == "0x02020100"]
    assert len(sums) == 1
    (s,) = sums
    parent = [i for i in invokes if i["ts"] <= s["ts"] and s["ts"] + s["dur"] <= i["ts"] + i["dur"] + 1e-9]
    assert len(parent) == 1 and parent[0]["args"]["fields"]["sc"] == "0x02020100"
    assert parent[0]["args"]["copied"] >= 4 + 12 + 8 and parent[0]["args"]["shared"] == 0


def test_trace_failing_subcommand_still_writes(run, tmp_path):
    out = tmp_path / "fail.jsonl"
    res = run("trace", "-o", out, "--", "invoke", "file:///libnope_skel.so?x&_modver=1.0", "2",
              code=errors.EXIT_DSP)
    assert "AEE_ENOSUCHMOD" in one_line_error(res) and "events ->" in res.stderr
    dsp = [e for e in read_jsonl(out) if e["kind"] == "dsp"]
    assert dsp  # INIT_CREATE and the refused open reached the DSP
    out2 = tmp_path / "dsperr.jsonl"
    run("trace", "-o", out2, "--", "invoke", CALC, "sum", "--in", "i32:9", "--in", "i32:1", "--out", "8",
        code=errors.EXIT_DSP)
    assert any(e["kind"] == "dsp" and e["retval"] & 0xFFFF_FFFF == 0x8000040E for e in read_jsonl(out2))


def test_trace_script(run, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        "from qda_core.soc import Soc\n"
        "with Soc().open_device('cdsp') as f:\n"
        "    print('dsp', f.query(), sys.argv[1:])\n"
        "sys.exit(int(sys.argv[1]))\n")
    out = tmp_path / "app.jsonl"
    res = run("trace", "-o", out, script, "0", "x")
    assert "dsp cdsp ['0', 'x']" in res.stdout
    assert [e["name"] for e in read_jsonl(out) if e["kind"] == "ioctl"] == ["DRM_IOCTL_QDA_QUERY"]
    run("trace", "-o", out, script, "3", code=3)  # the script's exit code
    bad = tmp_path / "bad.py"
    bad.write_text("raise KeyError('oops')\n")
    res = run("trace", "-o", out, bad, code=errors.EXIT_FAILED)
    assert "KeyError: 'oops'" in res.stderr and read_jsonl(out) == []


def test_trace_usage_errors(run, tmp_path):
    assert "use .jsonl" in run("trace", "-o", tmp_path / "t.txt", "--", "devices", code=errors.EXIT_USAGE).stderr
    assert "Missing argument" in run("trace", "run", code=errors.EXIT_USAGE).stderr
    res = run("trace", "-o", tmp_path / "t.jsonl", "--", "nosuchcmd", code=errors.EXIT_USAGE)
    assert "No such command 'nosuchcmd'" in res.stderr
    res = run("trace", "-o", tmp_path / "t.jsonl", tmp_path / "missing.py", code=errors.EXIT_FILE)
    assert "no such script" in one_line_error(res)


def test_trace_summarize_and_convert(run, tmp_path):
    out = tmp_path / "s.jsonl"
    run("trace", "-o", out, "--", *SUM_ARGS)
    text = run("trace", "summarize", out).stdout
    assert "top ioctls by count" in text and "DRM_IOCTL_QDA_INVOKE" in text and "copied inline" in text
    s = json.loads(run("trace", "summarize", out, "--json").stdout)
    inv = next(r for r in s["ioctls"] if r["name"] == "DRM_IOCTL_QDA_INVOKE")
    assert inv["count"] == 3 and s["bytes"]["copied"] > 0 and s["errors"] == []
    res = run("trace", "convert", out)
    assert res.stdout.strip().endswith(str(tmp_path / "s.json"))
    xs = check_chrome(json.loads((tmp_path / "s.json").read_text()))
    assert len(xs) == s["events"]
    run("trace", "convert", out, "-o", tmp_path / "other.json")
    assert (tmp_path / "other.json").exists()


def test_trace_summarize_errors(run, tmp_path):
    assert "does not exist" in run("trace", "summarize", tmp_path / "none.jsonl", code=errors.EXIT_USAGE).stderr
    chrome = tmp_path / "c.json"
    chrome.write_text("{}")
    assert "read a .jsonl trace" in run("trace", "summarize", chrome, code=errors.EXIT_USAGE).stderr
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"v": 1, "kind": "ioctl"}\n')
    assert "b.jsonl:1: missing" in one_line_error(run("trace", "summarize", broken, code=errors.EXIT_FILE))
    assert "use .jsonl" in run("trace", "convert", broken, "-o", tmp_path / "x.csv", code=errors.EXIT_USAGE).stderr


# --- ab ---------------------------------------------------------------------------------------
def test_ab_calculator_text_json_html(run, tmp_path):
    out = run("ab", "calculator").stdout
    assert "SAME: both backends agree on all 8 steps" in out and "DIFF" not in out
    assert "calculator_sum  sc 0x02020100  499500" in out and "FASTRPC_IOCTL_INVOKE module 0x02020100" in out
    assert "legacy via /dev/fastrpc-cdsp-secure, then accel via /dev/accel/accel1" in out and "totals:" in out
    html_file = tmp_path / "out.html"
    data = json.loads(run("ab", "calculator", "--html", html_file, "--json").stdout)
    assert set(data["runs"]) == {"legacy", "accel"} and data["agree"]
    assert [s["legacy"]["value"] for s in data["steps"]] == [s["accel"]["value"] for s in data["steps"]]
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page and "@import" not in page
    # the legacy column comes from the legacy driver, the accel column from the QDA driver
    rows = [r for r in page.split("<tr") if "FASTRPC_IOCTL_INVOKE" in r]
    assert rows and all("DRM_IOCTL_QDA_INVOKE" in r for r in rows if "module 0x02020100" in r)
    cells = [r.split("<td")[2] for r in rows]  # the legacy column of each aligned row
    assert all("FASTRPC_IOCTL_INVOKE" in c and "DRM_IOCTL" not in c for c in cells)
    assert "499500" in page and "SAME" in page and "modeled on-device" in page


def test_ab_errors_shows_diff(run):
    out = run("ab", "errors").stdout
    line = next(ln for ln in out.splitlines() if "raw invoke of kernel handle 1" in ln)
    assert "0x4e AEE_EBADPERMS (errno EPERM)" in line and "0x80000429 AEE_ENOTOWNER" in line
    assert line.rstrip().endswith("DIFF")
    assert "DIFF: 4 of 17 steps differ; first at step 8" in out
    run("ab", "errors", "--fail-on-diff", code=errors.EXIT_FAILED)
    data = json.loads(run("ab", "errors", "--order", "accel,legacy", "--json").stdout)
    assert data["order"] == ["accel", "legacy"] and data["first_difference"]["accel"] == "0x80000429 AEE_ENOTOWNER"


def test_ab_all_and_script(run, tmp_path):
    data = json.loads(run("ab", "all", "--json").stdout)
    assert [r["workload"] for r in data["reports"]] == ["calculator", "rpcmem-roundtrip", "mmap-lifecycle", "errors"]
    script = tmp_path / "mine.py"
    script.write_text("import libadsprpc_compat as rpc\n"
                      "URI = 'file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp'\n"
                      "def workload(lib):\n"
                      "    h = lib.remote_handle64_open(URI)\n"
                      "    out = bytearray(4)\n"
                      "    rpc.remote_handle64_invoke(h, 0x03010100, [b'ab', out])\n"
                      "    try:\n"
                      "        rpc.remote_handle64_invoke(h, 0x05010000, [(20).to_bytes(4, 'little')])\n"
                      "        err = None\n"
                      "    except rpc.FastRpcError as exc:\n"
                      "        err = exc\n"
                      "    rpc.remote_handle64_close(h)\n"
                      "    return [('echo', bytes(out)), ('fail 20', err)]\n")
    out = run("ab", script).stdout
    assert "A/B mine.py" in out and "6162" in out and "0x14 AEE_EUNSUPPORTED" in out and "SAME: both" in out


def test_ab_errors_paths(run, tmp_path):
    res = run("ab", "nope", code=errors.EXIT_USAGE)
    assert "unknown workload 'nope'" in res.stderr and "calculator" in res.stderr
    res = run("ab", tmp_path / "missing.py", code=errors.EXIT_FILE)
    assert "missing.py" in one_line_error(res)
    empty = tmp_path / "empty.py"
    empty.write_text("def other(lib):\n    return []\n")
    assert "defines no workload(lib)" in one_line_error(run("ab", empty, code=errors.EXIT_FILE))
    broken = tmp_path / "broken.py"
    broken.write_text("def workload(lib):\n    raise KeyError('k')\n")
    assert "KeyError" in one_line_error(run("ab", broken, code=errors.EXIT_FAILED))
    run("ab", code=errors.EXIT_USAGE)
    run("ab", "calculator", "--order", "accel", code=errors.EXIT_USAGE)
