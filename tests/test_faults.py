"""Fault injection (qda_core/faults.py): the language, every kind on both front ends with the
codes each kernel revision gives, determinism, trace events, and a clean teardown after each."""
import errno
import json
import re
import struct
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libadsprpc_compat import FastRpcError, Library, remote_handle64_close, remote_handle64_invoke
from libadsprpc_compat import rpcmem_alloc, rpcmem_free
from libadsprpc_compat.ab import CALC_URI, SC_NULL, SC_SUM, TEST_URI
from qda_core import faults as F
from qda_core import trace
from qda_core._ext import load
from qda_core.faults import FaultError, Faults, parse, parse_duration
from qda_core.trace_formats import summarize, validate_events

aee_name = load("_abi").aee_name
BACKENDS = ("legacy", "accel")


# --- the language ---------------------------------------------------------------------------
def _doc_examples() -> list[str]:
    """Every spec in the first column of the module docstring's table."""
    return re.findall(r"^``([^`]+)``\s{2,}", F.__doc__, re.M)


def test_every_example_of_the_docstring_parses():
    examples = _doc_examples()
    assert len(examples) >= 10
    for spec in examples:
        rules, _ = parse(spec)
        assert rules, spec


@pytest.mark.parametrize("spec, rule", [
    ("alloc:gem@3", dict(kind="alloc", target="gem", nth=3, repeat=False, errno=errno.ENOMEM)),
    ("alloc@2+", dict(kind="alloc", target="", nth=2, repeat=True)),
    ("ssr:cdsp@invoke=5", dict(kind="ssr", target="cdsp", nth=5)),
    ("ssr:cdsp@time=20ms", dict(kind="ssr", at_ns=20_000_000)),
    ("delay:calculator.max,time=5ms", dict(kind="delay", target="calculator.max", ns=5_000_000, repeat=True)),
    ("delay:calculator@2,time=1us", dict(nth=2, repeat=False, ns=1000)),
    ("timeout:calculator", dict(kind="timeout", ns=F.DEFAULT_WAIT_NS)),
    ("drop@1,after=2s", dict(kind="drop", ns=2_000_000_000)),
    ("map@2,errno=EFAULT", dict(kind="map", nth=2, errno=errno.EFAULT)),
    ("map:legacy,errno=13", dict(target="legacy", errno=13)),
    ("alloc:rpcmem@p=0.25", dict(prob=0.25, repeat=True)),
])
def test_rules_parse_to_what_they_say(spec, rule):
    (r,), _ = parse(spec)
    for k, v in rule.items():
        assert getattr(r, k) == v, (spec, k)
    assert str(r) == spec


@pytest.mark.parametrize("spec, words", [
    ("bogus", "unknown fault kind 'bogus'"),
    ("ssr", "ssr needs a target"),
    ("alloc:heap", "alloc target must be one of gem, dma, rpcmem"),
    ("map:gpu", "map target must be one of accel, legacy"),
    ("alloc@0", "trigger must be N or N+"),
    ("alloc@x", "trigger must be"),
    ("alloc@p=2", "probability must be in (0, 1]"),
    ("alloc@when=3", "unknown trigger 'when'"),
    ("crash:calc@time=1ms", "@time= is for ssr only"),
    ("alloc@invoke=2", "@invoke= is for"),
    ("delay:calculator", "delay needs time=DUR"),
    ("delay:calculator,time=5 parsecs", "bad duration"),
    ("alloc,errno=EWHAT", "unknown errno 'EWHAT'"),
    ("alloc,errno=0", "out of range"),
    ("crash:x,errno=EIO", "crash takes no parameter 'errno'"),
    ("alloc,flag", "is not KEY=VALUE"),
    ("nocb:cdsp.x", "nocb target must be a DSP domain: adsp, mdsp"),
    ("ssr:foo", "ssr target must be a DSP domain"),
    ("drop:cdps@2", "drop target must be a DSP domain"),
    ("alloc@1,errno=ENOMEM,errno=EIO", "parameter 'errno' given twice"),
    ("alloc:rpcmem@p=0.1,seed=7", "seed is an item of its own: '...;seed=7'"),
    ("map@2,errno=EFOO", "'map@2,errno=EFOO': unknown errno 'EFOO'"),
    ("ssr:cdsp@time=5 parsecs", "'ssr:cdsp@time=5 parsecs': bad duration"),
    ("alloc:", "empty target"),
    ("alloc@", "empty trigger"),
    ("seed=1;seed=2", "seed given twice"),
    ("seed=x", "seed must be an integer"),
    ("crash:a/b", "bad target"),
])
def test_bad_specs_name_the_item_and_the_problem(spec, words):
    with pytest.raises(FaultError) as e:
        parse(spec)
    assert words in str(e.value)


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_fault_error(text):
    try:
        rules, _ = parse(text)
    except FaultError:
        return
    for r in rules:  # what parses prints back to itself
        assert parse(str(r))[0] == [r]


@given(st.integers(0, 10**6), st.sampled_from(["", "ns", "us", "ms", "s"]))
def test_durations(n, unit):
    assert parse_duration(f"{n}{unit}") == n * {"": 1, "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}[unit]


# --- counting -------------------------------------------------------------------------------
def _fires(f: Faults, kind: str, names: tuple, n: int) -> list[int]:
    return [i for i in range(1, n + 1) if f.check(kind, names)]


def test_triggers_count_their_own_events():
    f = Faults("alloc:gem@2;alloc@3+;map@1")
    got = [(i, (r := f.check("alloc", ("gem",))) and str(r)) for i in range(1, 6)]
    assert got == [(1, None), (2, "alloc:gem@2"), (3, "alloc@3+"), (4, "alloc@3+"), (5, "alloc@3+")]
    assert _fires(f, "map", ("accel",), 3) == [1]
    assert f.check("nocb", ("cdsp",)) is None  # no rule of that kind: nothing counted
    assert [(x.rule, x.n) for x in f.fired] == [("alloc:gem@2", 2), ("alloc@3+", 3), ("alloc@3+", 4),
                                                ("alloc@3+", 5), ("map@1", 1)]


def test_targets_filter_the_events_a_rule_counts():
    f = Faults("alloc:rpcmem@2")
    assert f.check("alloc", ("gem",)) is None and f.check("alloc", ("dma",)) is None
    assert f.check("alloc", ("rpcmem",)) is None
    assert str(f.check("alloc", ("rpcmem",))) == "alloc:rpcmem@2"


def test_probabilistic_rules_are_reproducible_with_a_seed_and_reset():
    def run(spec):
        return _fires(Faults(spec), "alloc", ("gem",), 300)

    a = run("seed=7;alloc@p=0.3")
    assert a == run("seed=7;alloc@p=0.3")
    assert a != run("seed=8;alloc@p=0.3")
    assert 50 < len(a) < 130
    # each rule's stream comes from the seed and its own text: other rules change nothing
    assert a == run("seed=7;crash:calculator.sum;alloc@p=0.3")
    assert a == run("map@p=0.5;alloc@p=0.3;seed=7")
    f = Faults("seed=7;alloc@p=0.3")
    assert _fires(f, "alloc", ("gem",), 300) == a
    f.reset()
    assert f.fired == [] and _fires(f, "alloc", ("gem",), 300) == a


def test_inject_adds_rules_for_a_block_and_quiet_counts_nothing():
    f = Faults()
    with f.inject("map@1+") as rules:
        assert [str(r) for r in rules] == ["map@1+"] and f.armed("map")
        with F.quiet():
            assert f.check("map", ("accel",)) is None
        assert f.check("map", ("accel",)) is not None
    assert not f.armed("map") and f.check("map", ("accel",)) is None


def test_the_environment_gives_a_soc_its_rules(monkeypatch, make_soc):
    monkeypatch.setenv("QDARPC_FAULTS", "nocb:cdsp;seed=3")
    assert [str(r) for r in make_soc("minimal").faults.rules] == ["nocb:cdsp"]
    assert make_soc("minimal", faults="").faults.rules == []  # an explicit spec wins
    monkeypatch.setenv("QDARPC_FAULTS", "nocb:")
    with pytest.raises(FaultError, match=r"^\$QDARPC_FAULTS: 'nocb:': empty target"):
        make_soc("minimal")


def test_unfired_rules_are_listed():
    f = Faults("ssr:cdsp@3;map@1")
    f.check("ssr", ("cdsp",))
    f.check("map", ("accel",))
    assert [str(r) for r in f.unfired()] == ["ssr:cdsp@3"]


# --- every kind, both front ends --------------------------------------------------------------
def _clean(soc) -> None:
    """What a closed run leaves: no PD on any DSP, every context bank free."""
    for d in soc.domains.values():
        assert d.dsp.processes() == [], d.name
        assert d.bus.free_count == len(d.bus.cbs), d.name


def _codes(soc, backend, n=3, uri=TEST_URI, sc=SC_NULL, args=()):
    """Open ``uri``, invoke ``n`` times, close: each outcome ("ok" or AEE name/errno)."""
    lib = Library(backend, soc)
    out = []
    try:
        try:
            h = lib.remote_handle64_open(uri)
        except FastRpcError as e:
            return [f"open {aee_name(e.aee)}/{e.errno}"]
        for _ in range(n):
            try:
                remote_handle64_invoke(h, sc, list(args))
                out.append("ok")
            except FastRpcError as e:
                out.append(f"{aee_name(e.aee)}/{e.errno}")
        remote_handle64_close(h)
    finally:
        lib.close_all()
    _clean(soc)
    return out


ERPC_EINTR = f"AEE_ERPC/{errno.EINTR}"


@pytest.mark.parametrize("backend, codes", [
    ("legacy", ["ok", f"AEE_ECONNRESET/{errno.EPIPE}", f"AEE_ECONNRESET/{errno.EPIPE}"]),
    ("accel", ["ok", f"AEE_ENOSUCHDEVICE/{errno.ENODEV}", f"AEE_ENOSUCHDEVICE/{errno.ENODEV}"]),
])
def test_ssr_at_the_nth_invoke_gives_each_front_end_its_code(make_soc, backend, codes):
    soc = make_soc("minimal", faults="ssr:cdsp@invoke=2")
    accel_before = soc.domain("cdsp").accel.path
    assert _codes(soc, backend) == codes
    assert soc.domain("cdsp").restarts == 1 and soc.domain("cdsp").accel.path != accel_before
    assert [f.rule for f in soc.faults.fired] == ["ssr:cdsp@invoke=2"]
    assert _codes(soc, backend) == ["ok"] * 3  # the DSP is back; the rule fired once


def test_ssr_on_the_qda_shim_fails_waiters_with_epipe(make_soc):
    soc = make_soc("minimal", faults="ssr:cdsp@2", kernel="legacy:qda-shim")
    assert _codes(soc, "legacy")[1] == f"AEE_ECONNRESET/{errno.EPIPE}"


def test_ssr_after_modeled_time(make_soc):
    soc = make_soc("minimal", faults="ssr:cdsp@time=50ms;delay:qdarpc_test,time=20ms")
    # 20 ms per call: the DSP has 40+ ms after two calls, 60+ after three: the 4th meets the SSR
    assert _codes(soc, "legacy", n=4) == ["ok", "ok", "ok", f"AEE_ECONNRESET/{errno.EPIPE}"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_on_a_method_crashes_the_pd(make_soc, backend):
    soc = make_soc("minimal", faults="crash:qdarpc_test.2@2")  # method 2: the null call
    assert _codes(soc, backend) == ["ok", "AEE_EBADSTATE/None", "AEE_EBADSTATE/None"]
    assert _codes(soc, backend) == ["ok"] * 3  # a new PD


@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_by_method_name_of_a_python_skel(make_soc, backend):
    soc = make_soc("minimal", faults="crash:calculator.sum")
    vec, res = struct.pack("<4i", 1, 2, 3, 4), bytearray(8)
    out = _codes(soc, backend, n=1, uri=CALC_URI, sc=SC_SUM, args=(struct.pack("<i", 4), vec, res))
    assert out == ["AEE_EBADSTATE/None"]
    assert soc.faults.fired[0].target == "calculator"


@pytest.mark.parametrize("backend", BACKENDS)
def test_delay_adds_modeled_time_to_every_call_of_the_method(make_soc, backend):
    soc = make_soc("minimal", faults="delay:qdarpc_test,time=7ms")
    with trace.recording() as rec:
        assert _codes(soc, backend, n=2) == ["ok", "ok"]
    calls = [e for e in rec.events if e["kind"] == "dsp" and e["handle"] >= 0x100 and e["sc"] == SC_NULL]
    assert len(calls) == 2 and all(7_000_000 <= e["modeled_ns"] < 8_000_000 for e in calls)


@pytest.mark.parametrize("spec", ["timeout:qdarpc_test@2", "drop:cdsp@2"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_whose_reply_never_comes_is_interrupted(make_soc, backend, spec):
    soc = make_soc("minimal", faults=spec)
    t0 = time.monotonic()
    assert _codes(soc, backend) == ["ok", ERPC_EINTR, "ok"]
    assert time.monotonic() - t0 < 0.9  # modeled: the 1 s wait does not really pass


def test_realtime_sleeps_the_wait(make_soc, monkeypatch):
    monkeypatch.setenv("QDARPC_REALTIME", "1")
    soc = make_soc("minimal", faults="timeout:qdarpc_test,after=150ms")
    t0 = time.monotonic()
    assert _codes(soc, "accel", n=1) == [ERPC_EINTR]
    assert time.monotonic() - t0 >= 0.15


@pytest.mark.parametrize("kernel, backend, completes", [
    ("legacy:misc-7.2", "legacy", True),      # matches on the id bits only
    ("legacy:misc-7.3", "legacy", False),     # the sequence number differs: dropped
    ("legacy:qda-shim", "legacy", False),
    ("accel:qda-rfc-2026-02", "accel", True),  # (ctx & 0xFF0) >> 4
    ("accel:qda-v1-2026-05", "accel", False),  # ctx >> 4: another id, no such context
])
def test_a_corrupted_reply_is_handled_as_the_kernel_revision_does(make_soc, kernel, backend, completes):
    soc = make_soc("minimal", faults="corrupt:cdsp@2", kernel=kernel)
    assert _codes(soc, backend) == ["ok", "ok" if completes else ERPC_EINTR, "ok"]


@pytest.mark.parametrize("backend, code", [
    ("legacy", f"open AEE_ECONNREFUSED/{errno.EBUSY}"),  # misc: no session at open
    ("accel", f"open AEE_EUNKNOWN/{errno.ENOMEM}"),      # QDA: none to assign
])
def test_no_free_context_bank_for_the_next_session(make_soc, backend, code):
    soc = make_soc("minimal", faults="nocb:cdsp")
    assert _codes(soc, backend) == [code]
    assert _codes(soc, backend) == ["ok"] * 3


def test_no_free_context_bank_on_the_qda_shim_is_ebusy_at_first_use(make_soc):
    soc = make_soc("minimal", faults="nocb", kernel="legacy:qda-shim")
    assert _codes(soc, "legacy")[0].endswith(f"/{errno.EBUSY}")


def test_alloc_gem_and_dma_fail_in_the_driver(make_soc):
    soc = make_soc("minimal", faults="alloc:gem@2;alloc:dma,errno=ENOSPC")
    with soc.open_device("cdsp") as f:
        h = f.gem_create(4096)
        with pytest.raises(OSError) as e:
            f.gem_create(4096)
        assert e.value.errno == errno.ENOMEM and "alloc:gem@2" in str(e.value)
        f.gem_close(h)
        f.gem_close(f.gem_create(4096))  # fired once
    with soc.open("/dev/fastrpc-cdsp") as g:
        with pytest.raises(OSError) as e:
            g.alloc_dma_buff(4096)
        assert e.value.errno == errno.ENOSPC
    _clean(soc)


def test_alloc_rpcmem_fails_rpcmem_alloc_of_the_default_soc(make_soc):
    soc = make_soc("minimal", faults="alloc:rpcmem@2")
    with soc.as_default():
        a = rpcmem_alloc(25, 1, 4096)
        with pytest.raises(FastRpcError) as e:
            rpcmem_alloc(25, 1, 4096)
        b = rpcmem_alloc(25, 1, 4096)
    rpcmem_free(a)
    rpcmem_free(b)
    assert aee_name(e.value.aee) == "AEE_ENOMEMORY" and e.value.errno == errno.ENOMEM


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_fails_with_the_rules_errno(make_soc, backend):
    soc = make_soc("minimal", faults="map@1,errno=EFAULT")
    lib = Library(backend, soc)
    mem = rpcmem_alloc(25, 1, 4096)
    try:
        h = lib.remote_handle64_open(TEST_URI)
        with pytest.raises(FastRpcError) as e:
            lib.fastrpc_mmap(3, mem.fd, mem, 0, 4096, 0)
        assert e.value.errno == errno.EFAULT
        lib.fastrpc_mmap(3, mem.fd, mem, 0, 4096, 0)  # the second map is not touched
        lib.fastrpc_munmap(3, mem.fd, None, 0)
        remote_handle64_close(h)
    finally:
        lib.close_all()
        rpcmem_free(mem)
    _clean(soc)


# --- trace ------------------------------------------------------------------------------------
def test_each_fault_is_a_trace_event_and_summarize_lists_them(make_soc):
    soc = make_soc("minimal", faults="drop@2;delay:qdarpc_test@3,time=1ms")
    with trace.recording() as rec:
        _codes(soc, "accel")
    inject = [e for e in rec.events if e["kind"] == "inject"]
    assert [(e["rule"], e["fault"], e["target"], e["n"]) for e in inject] == [
        ("drop@2", "drop", "cdsp", 2), ("delay:qdarpc_test@3,time=1ms", "delay", "qdarpc_test", 3)]
    assert inject[0]["detail"].endswith("the caller's wait ends after 1000000000 ns")
    validate_events(rec.events)  # raises on a schema violation
    s = summarize(rec.events)
    assert [(r["rule"], r["count"]) for r in s["injected"]] == [("drop@2", 1), ("delay:qdarpc_test@3,time=1ms", 1)]
    assert s["kinds"]["inject"] == 2


def test_teardown_never_consumes_a_rule(make_soc):
    # Closing a file sends INIT_RELEASE (the accel file claims a bank for it): not an event.
    soc = make_soc("minimal", faults="nocb:cdsp@2")
    assert _codes(soc, "accel", n=1) == ["ok"]
    assert _codes(soc, "accel", n=1) == [f"open AEE_EUNKNOWN/{errno.ENOMEM}"]



# --- the CLI ---------------------------------------------------------------------------------
@pytest.fixture
def cli(fd_guard):
    sys.path.insert(0, str(Path(__file__).parent))
    from cli_helpers import cli_runner

    yield from cli_runner()


def test_cli_invoke_takes_faults_and_refuses_a_bad_spec(cli):
    args = ["invoke", CALC_URI, "sum", "--in", "i32:3", "--in", "i32:1,2,3", "--out", "i64:1", "--soc", "minimal"]
    assert "6" in cli(*args).output
    res = cli(*args, "--faults", "crash:calculator.sum", code=4)
    assert "0x8000040d" in res.output
    assert "injected fault crash:calculator.sum (calculator #1: " in res.output
    data = json.loads(cli(*args, "--faults", "delay:calculator,time=2ms", "--json").output)
    assert [f["rule"] for f in data["injected"]] == ["delay:calculator,time=2ms"]
    res = cli(*args, "--faults", "crash:calculator.sum@x", code=2)
    assert "trigger must be" in res.output


def test_cli_invoke_repeat_says_where_a_fault_stopped_it(cli):
    out = cli("invoke", CALC_URI, "sum", "--in", "i32:3", "--in", "i32:1,2,3", "--out", "i64:1", "--soc", "minimal",
              "--repeat", "10", "--faults", "ssr:cdsp@invoke=4", code=4).output
    assert "stopped at call 4 of 10: it answered non-zero" in out and "4 calls: median" in out


def test_cli_ab_reports_the_faults_of_each_side(cli):
    out = cli("ab", "calculator", "--soc", "minimal", "--faults", "ssr:cdsp@invoke=2").output
    tail = out[out.index("injected faults:"):].splitlines()
    assert [line.split()[0] for line in tail[2:4]] == ["legacy", "accel"]
    assert all("ssr:cdsp@invoke=2" in line for line in tail[2:4])


def test_cli_trace_summarize_lists_injected_faults(cli, tmp_path):
    out = tmp_path / "t.jsonl"
    cli("trace", "run", "-o", out, "--faults", "delay:calculator,time=3ms", "--", "invoke", CALC_URI, "sum",
        "--in", "i32:1", "--in", "i32:5", "--out", "i64:1", "--repeat", "3")
    text = cli("trace", "summarize", out).output
    assert "injected faults:" in text and "3 x delay:calculator,time=3ms (calculator)" in text
