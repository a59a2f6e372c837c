"""Modeled device time (qda_core/dsp/cost.py, docs/cost_model.md): the formula and each of its
parameters, the profile and per-call overrides, the figures the API, ``qdarpc invoke`` and ``ab``
report against the trace's ``dsp`` events, and ``QDARPC_REALTIME``."""
import json
import pathlib
import struct
import sys
import threading
import time

import pytest

import libadsprpc_compat as rpc
from qda_core import trace
from qda_core.dsp import EmulatedDsp, aee, cost
from qda_core.dsp.cost import DOMAIN_COST, CostModel
from qda_core.soc import DomainSpec, load_profile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cli_helpers import cli_runner, errors, load  # noqa: E402
from dsp_helpers import TEST_URI, Client, FakeMemory, Shared, u32  # noqa: E402

MODEL = CostModel(overhead_ns=10_000, bytes_per_s=1e9, qos_overhead_ns=2_000, cache_bytes_per_s=2e9, map_ns=500)
SC_NULL, SC_ECHO = 0x02000000, 0x03010100
BACKENDS = pytest.mark.parametrize("backend", ["accel", "legacy"])
fmt_ns = load("term").fmt_ns


def new_client(model=MODEL):
    mem = FakeMemory()
    dsp = EmulatedDsp("cdsp", mem, skel_path_env={}, cost=model)
    c = Client(dsp, mem, client_id=1)
    assert c.create() == 0
    rv, h, dlerr, text = c.open(TEST_URI)
    assert (rv, dlerr) == (0, 0), text
    return c, h


def charged(c, *args, **kw) -> int:
    """Send one message; return what the DSP charged it (and check it is this thread's last)."""
    before = c.dsp.stats.snapshot()["modeled_ns"]
    c.send(*args, **kw)
    ns = c.dsp.stats.snapshot()["modeled_ns"] - before
    assert cost.last_ns() == ns
    return ns


def dsp_events(rec) -> list[dict]:
    return [e for e in rec.events if e["kind"] == "dsp"]


def module_calls(rec, sc: int) -> list[int]:
    """modeled_ns of each call of method ``sc`` on a module (a dynamic handle) in ``rec``."""
    return [e["modeled_ns"] for e in dsp_events(rec) if e["sc"] == sc and e["handle"] >= 0x100]


# --- the formula ------------------------------------------------------------------------------
def test_formula_terms():
    assert MODEL.charge(0) == 10_000
    assert MODEL.charge(0, qos=True) == 2_000
    assert MODEL.charge(4000) == 10_000 + 2_000                 # 4000 bytes at 2 GB/s
    assert MODEL.charge(0, maps=1) == 10_500
    assert MODEL.charge(0, 777) == 10_777
    assert MODEL.charge(4000, 777, qos=True, maps=1) == 2_000 + 2_000 + 500 + 777


def test_parameter_defaults_and_validation():
    m = CostModel(100, 1e9)
    assert (m.qos_overhead_ns, m.cache_bytes_per_s, m.map_ns, m.realtime) == (100, 1e9, 0, False)
    for bad in ({"overhead_ns": -1}, {"map_ns": -5}, {"cache_bytes_per_s": 0}, {"bytes_per_s": -1.0}):
        with pytest.raises(ValueError):
            CostModel(**{"overhead_ns": 1, "bytes_per_s": 1e9, **bad})
    for dom, m in DOMAIN_COST.items():  # QoS shortens the fixed cost on every domain
        assert 0 < m.qos_overhead_ns < m.overhead_ns and m.map_ns > 0, dom


def test_copied_buffers_pay_cache_maintenance_by_reference_ones_do_not():
    c, h = new_client()
    assert charged(c, h, SC_NULL) == 10_000
    assert charged(c, h, SC_ECHO, [b"x" * 3000], [1000]) == 10_000 + 2_000   # 4000 copied bytes
    addr_in, addr_out = c.mem.alloc(3000, b"x" * 3000), c.mem.alloc(1000)
    assert charged(c, h, SC_ECHO, [Shared(addr_in, 3000)], [Shared(addr_out, 1000)]) == 10_000
    assert charged(c, h, SC_ECHO, [Shared(addr_in, 3000)], [1000]) == 10_000 + 500  # only the copied out


def test_maps_that_succeed_cost_map_ns_and_count_toward_the_pd():
    c, _ = new_client()
    pd = c.dsp.processes()[0].modeled_ns
    rv, va = c.mmap([(0x8000_0000, 0x3000)])
    assert rv == 0
    ok = cost.last_ns()
    assert c.dsp.processes()[0].modeled_ns == pd + ok      # the kernel's message for the PD counts toward it
    assert u32(c.mmap([(0, 0)])[0]) == aee.ERR_BAD_PARM    # the same bytes, no map made
    assert ok - cost.last_ns() == MODEL.map_ns
    rv, va2 = c.mem_map(7, 0x8001_0000, 0x1000)
    assert rv == 0
    mem_map = cost.last_ns()
    assert c.mem_unmap(7, va2) == 0 and c.munmap(va, 0x3000) == 0
    unmap = cost.last_ns()
    assert unmap < ok and unmap < mem_map                   # an unmap is no map
    assert mem_map - MODEL.map_ns >= MODEL.overhead_ns and unmap >= MODEL.overhead_ns


def test_set_qos_lowers_the_fixed_cost_until_disabled():
    c, h = new_client()
    qos = struct.pack("<I", 100)
    assert charged(c, 4, cost.SET_QOS, [qos]) == 2_000 + 2       # in force from this call (4 copied bytes)
    assert charged(c, h, SC_NULL) == 2_000
    c.send(4, cost.SET_QOS, [struct.pack("<I", cost.QOS_MAX_LATENCY_US)])   # the library's "disable"
    assert charged(c, h, SC_NULL) == 10_000
    assert u32(c.send(4, cost.SET_QOS & ~0xFF0000, [])[0]) == aee.ERR_BAD_PARM  # setQoS takes its latency
    assert u32(c.send(4, cost.SET_QOS, [b"\0\0"])[0]) == aee.ERR_BAD_PARM


def test_adaptive_qos_set_param_lowers_the_fixed_cost():
    c, h = new_client()
    assert c.send(8, 0x05020000, [struct.pack("<II", 2, 1), struct.pack("<I", 1)])[0] == 0
    assert charged(c, h, SC_NULL) == 2_000
    assert c.send(8, 0x05020000, [struct.pack("<II", 2, 1), struct.pack("<I", 0)])[0] == 0
    assert charged(c, h, SC_NULL) == 10_000


def test_declared_and_measured_compute(tmp_path):
    (tmp_path / "libslow_skel.py").write_text(
        "from qda_core.dsp import Skeleton, method\n"
        "class Slow(Skeleton):\n"
        "    @method(2, cost_ns=40_000)\n"
        "    def work(self, call):\n"
        "        call.add_cost(len(call.inbufs[0]) * 3)\n"
        "        return 0\n")
    mem = FakeMemory()
    c = Client(EmulatedDsp("cdsp", mem, skel_path_env={"DSP_LIBRARY_PATH": str(tmp_path)}, cost=MODEL), mem)
    assert c.create() == 0
    rv, h, _, text = c.open("file:///libslow_skel.so?slow_skel_handle_invoke&_modver=1.0")
    assert rv == 0, text
    assert charged(c, h, 0x02010000, [b"y" * 200]) == 10_000 + 100 + 40_000 + 600


# --- overrides --------------------------------------------------------------------------------
def test_override_replaces_or_adds_for_this_thread_only():
    c, h = new_client()
    with cost.override(123):
        assert charged(c, h, SC_NULL) == 123
        with cost.override(extra_ns=7):                    # nests: the innermost wins
            assert charged(c, h, SC_NULL) == 10_007
        seen = []
        t = threading.Thread(target=lambda: seen.append(charged(c, h, SC_NULL)))
        t.start()
        t.join()
        assert seen == [10_000]                            # another thread: the formula
    assert charged(c, h, SC_NULL) == 10_000
    with pytest.raises(ValueError):
        with cost.override(-1):
            pass


def test_measure_sums_the_threads_messages():
    c, h = new_client()
    with cost.measure() as m:
        c.send(h, SC_NULL)
        c.send(h, SC_ECHO, [b"ab"], [2])
    assert (m.ns, m.messages) == (20_002, 2)
    with cost.measure() as m:
        pass
    assert (m.ns, m.messages) == (0, 0)


def test_profile_cost_table(tmp_path, make_soc):
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"cost": {"overhead_ns": 1000, "map_ns": 5},
                                "domains": [{"name": "adsp", "context_banks": 1},
                                            {"name": "cdsp", "context_banks": 2,
                                             "cost": {"overhead_ns": 3000, "cache_bytes_per_s": 1e9}}]}))
    soc = make_soc(str(prof))
    adsp, cdsp = soc.domain("adsp").dsp.cost, soc.domain("cdsp").dsp.cost
    assert (adsp.overhead_ns, adsp.map_ns, adsp.qos_overhead_ns) == (1000, 5, DOMAIN_COST["adsp"].qos_overhead_ns)
    assert (cdsp.overhead_ns, cdsp.map_ns, cdsp.cache_bytes_per_s) == (3000, 5, 1e9)
    toml = tmp_path / "soc.toml"
    toml.write_text('[cost]\nqos_overhead_ns = 9\n[[domains]]\nname = "cdsp"\ncontext_banks = 1\n')
    assert load_profile(str(toml))[0].cost == {"qos_overhead_ns": 9}
    lib = rpc.Library("accel", soc)
    try:
        with trace.recording() as rec:
            h = lib.remote_handle64_open(TEST_URI)
            lib.remote_handle64_invoke(h, SC_NULL, [])
        assert dsp_events(rec)[-1]["modeled_ns"] == 3000
        lib.remote_handle64_close(h)
    finally:
        lib.close_all()


@pytest.mark.parametrize("table,needle", [({"overhead": 1}, "unknown cost parameter"),
                                          ({"map_ns": "5"}, "must be a number"),
                                          ({"overhead_ns": 1.5}, "whole number"),
                                          ({"bytes_per_s": 0}, "must be > 0"),
                                          ({"realtime": True}, "unknown cost parameter")])
def test_profile_cost_table_errors(table, needle):
    with pytest.raises(ValueError, match=needle):
        DomainSpec("cdsp", 1, cost=table)


def test_profile_cost_must_be_a_table(tmp_path):
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"cost": 5, "domains": [{"name": "cdsp", "context_banks": 1}]}))
    with pytest.raises(ValueError, match="must be a table"):
        load_profile(str(prof))


# --- the figures the API reports --------------------------------------------------------------
@BACKENDS
def test_api_figures_equal_the_trace(make_soc, backend):
    soc = make_soc("minimal")
    lib = rpc.Library(backend, soc)
    try:
        h = lib.remote_handle64_open(TEST_URI)
        opened = lib.modeled_ns(rpc.CDSP_DOMAIN_ID)
        assert opened > 0 and lib.modeled_ns(-1) == opened          # -1: the thread's current domain
        mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
        try:
            with trace.recording() as rec, cost.measure() as m:
                out = bytearray(64)
                lib.remote_handle64_invoke(h, SC_ECHO, [b"z" * 64, out])
                last = dsp_events(rec)[-1]["modeled_ns"]
                assert lib.last_modeled_ns == last
                lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, rpc.rpcmem_to_fd(mem), mem, 0, 8192, rpc.FASTRPC_MAP_FD)
                lib.fastrpc_munmap(rpc.CDSP_DOMAIN_ID, rpc.rpcmem_to_fd(mem))
            evs = dsp_events(rec)
            assert sum(e["modeled_ns"] for e in evs) == m.ns
            assert lib.modeled_ns(rpc.CDSP_DOMAIN_ID) - opened == m.ns  # the maps count toward the session
            assert any(cost.is_map(e["handle"], e["sc"]) for e in evs)
        finally:
            rpc.rpcmem_free(mem)
        with trace.recording() as rec:
            total = lib.modeled_ns(rpc.CDSP_DOMAIN_ID)
            lib.remote_handle64_close(h)                                 # exit, then release
        exit_ns = next(e["modeled_ns"] for e in dsp_events(rec) if e["handle"] == 4)
        assert lib.modeled_ns(rpc.CDSP_DOMAIN_ID) == total + exit_ns     # what the session ended with
    finally:
        lib.close_all()


@BACKENDS
def test_library_qos_control_lowers_the_modeled_call(make_soc, backend):
    soc = make_soc("minimal")
    model = soc.domain("cdsp").dsp.cost
    lib = rpc.Library(backend, soc)
    try:
        h = lib.remote_handle64_open(TEST_URI)
        lib.remote_handle64_invoke(h, SC_NULL, [])
        assert lib.last_modeled_ns == model.overhead_ns
        lib.remote_handle64_control(h, rpc.DSPRPC_CONTROL_LATENCY,
                                    rpc.remote_rpc_control_latency(rpc.RPC_ADAPTIVE_QOS, 100))
        lib.remote_handle64_invoke(h, SC_NULL, [])
        assert lib.last_modeled_ns == model.qos_overhead_ns
        lib.remote_handle64_close(h)
    finally:
        lib.close_all()


@BACKENDS
def test_realtime_sleeps_the_modeled_time(make_soc, monkeypatch, backend):
    monkeypatch.setenv(cost.REALTIME_ENV, "1")
    soc = make_soc("minimal")                                    # read now, once for this SoC
    monkeypatch.delenv(cost.REALTIME_ENV)
    assert soc.domain("cdsp").dsp.cost.realtime
    lib = rpc.Library(backend, soc)
    try:
        h = lib.remote_handle64_open(TEST_URI)
        t0 = time.perf_counter_ns()
        lib.remote_handle64_invoke(h, SC_NULL, [])
        assert time.perf_counter_ns() - t0 >= lib.last_modeled_ns > 0
        with cost.override(30_000_000):
            t0 = time.perf_counter_ns()
            lib.remote_handle64_invoke(h, SC_NULL, [])
            assert time.perf_counter_ns() - t0 >= 30_000_000 == lib.last_modeled_ns
        lib.remote_handle64_close(h)
    finally:
        lib.close_all()


def test_realtime_is_read_when_the_soc_is_built(make_soc, monkeypatch):
    monkeypatch.delenv(cost.REALTIME_ENV, raising=False)
    soc = make_soc("minimal")
    monkeypatch.setenv(cost.REALTIME_ENV, "1")
    assert not soc.domain("cdsp").dsp.cost.realtime              # set after: this SoC does not sleep
    assert cost.domain_cost("cdsp").realtime and not cost.domain_cost("cdsp", environ={}).realtime
    assert not cost.domain_cost("cdsp", environ={cost.REALTIME_ENV: "0"}).realtime


# --- qdarpc invoke and ab ---------------------------------------------------------------------
@pytest.fixture
def run(fd_guard):
    yield from cli_runner()


def test_invoke_reports_each_calls_modeled_time(run):
    with trace.recording() as rec:
        data = json.loads(run("invoke", TEST_URI, "echo", "--in", "str:hello", "--out", "16", "--json").stdout)
    call = module_calls(rec, SC_ECHO)
    assert len(call) == 1 and data["modeled_ns"] == call[0] > 0 and "modeled" not in data
    with trace.recording() as rec:
        text = run("invoke", TEST_URI, "null").stdout
    (ns,) = module_calls(rec, SC_NULL)
    assert f"modeled on-device {fmt_ns(ns)} ({ns} ns)" in text


def test_invoke_repeat_reports_total_and_mean(run):
    with trace.recording() as rec:
        data = json.loads(run("invoke", TEST_URI, "echo", "--in", "str:hi", "--out", "4", "--repeat", "7",
                              "--json").stdout)
    calls = module_calls(rec, SC_ECHO)
    assert data["modeled"] == {"calls": 7, "total_ns": sum(calls), "mean_ns": sum(calls) / 7}
    assert data["modeled_ns"] == calls[-1]
    text = run("invoke", TEST_URI, "null", "--repeat", "3").stdout
    assert "over 3 calls" in text and "mean" in text
    data = json.loads(run("invoke", TEST_URI, "fail", "--in", "u32:0x8000040e", "--repeat", "4", "--json",
                          code=errors.EXIT_DSP).stdout)
    assert data["modeled"]["calls"] == 1                         # the failed call stopped the repetition


def test_ab_modeled_time_per_run_step_and_ioctl():
    from libadsprpc_compat.ab import run_ab

    model = DOMAIN_COST["cdsp"]
    rep = run_ab("rpcmem-roundtrip", soc_profile="minimal")
    for side in rep["order"]:
        r = rep["runs"][side]
        calls = [x for x in r["invokes"] if x["handle"] == "module"]
        assert len(calls) == 6
        for x in calls:  # each INVOKE carries its DSP message's figure: the formula over its copied bytes
            assert x["modeled_ns"] == model.charge(x["copied"]), x
        by_step: dict = {}
        for x in r["ioctls"]:
            by_step[x["step"]] = by_step.get(x["step"], 0) + x["modeled_ns"]
        steps = {row["name"]: row[side]["modeled_ns"] for row in rep["steps"]}
        for name, ns in steps.items():  # a step is its ioctls, and the releases of files it closed
            assert ns >= by_step.get(name, 0), name
            if name.startswith(("inc", "echo", "checksum")):
                assert ns == by_step[name] > 0, name
        assert r["totals"]["modeled_ns"] >= sum(steps.values()) > 0
