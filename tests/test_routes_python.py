"""Routes taken by Python callers (docs/dataplane.md "Routes"): a driver file's own INVOKE of a
method without arguments - the raw ioctl, the typed ``invoke()``, the library's
``remote_handle64_invoke`` - takes the file's route to the handle after the lanes served one
such call, with the GIL held, to a Python skel as to a native one. A SoC on the native plane
and one on the Python reference make the same calls: the same answers and records."""
from __future__ import annotations

import errno
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import trace, uapi
from qda_core.dsp import aee, cost

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import TEST_URI, plane  # noqa: E402

NULL, FAIL, CRASH, UNKNOWN = 0x02000000, 0x05000000, 0x06000000, 0x14000000  # qdarpc_test, no arguments


class Side:
    """One SoC on one data plane: a file per driver, each with qdarpc_test open."""

    def __init__(self, make_soc, name):
        with plane(name):
            self.soc = make_soc("default")
            self.files = {"accel": self.soc.open_device("cdsp"), "legacy": self.soc.open("/dev/fastrpc-cdsp")}
        self.h = {}
        for drv, f in self.files.items():
            assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
            rv, self.h[drv] = open_module(f, TEST_URI)
            assert rv == 0

    def raw(self, drv, sc):
        """The INVOKE ioctl with a prebuilt struct: its return (retval or -errno)."""
        f = self.files[drv]
        req = uapi.FASTRPC_IOCTL_INVOKE if drv == "legacy" else f.uapi.ioctls[0x47].number
        return f.ioctl(req, bytearray(struct.pack("<IIQ", self.h[drv], sc, 0)))

    def typed(self, drv, sc):
        try:
            return self.files[drv].invoke(self.h[drv], sc)
        except OSError as exc:
            return -exc.errno

    def records(self):
        dsp = self.soc.domains["cdsp"].dsp
        return (dsp.stats.snapshot(), sorted((p.invokes, p.counters.modeled_ns, p.state) for p in dsp._procs.values()),
                {d: (f._lane.closed,) for d, f in self.files.items()})

    def close(self):
        for f in self.files.values():
            f.close()

    def route(self, drv):
        return self.files[drv]._lane.route_for(self.h[drv])


@pytest.fixture
def sides(make_soc):
    both = Side(make_soc, "native"), Side(make_soc, "py")
    yield both
    for side in both:
        side.close()


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_served_call_without_arguments_opens_the_files_route(sides, drv):
    native, ref = sides
    assert native.route(drv) is None
    assert native.typed(drv, NULL) == 0  # the lanes, then a route for the next
    r = native.route(drv)
    assert r is not None and not r.native and not r.stale()
    with cost.measure() as m:
        for _ in range(5):
            assert native.raw(drv, NULL) == 0 and native.typed(drv, NULL) == 0
    assert r.served == 10 and m.messages == 10
    assert ref.route(drv) is None  # the reference plane takes none
    for _ in range(11):
        assert ref.typed(drv, NULL) == 0
    assert native.records() == ref.records()


@given(calls=st.lists(st.tuples(st.sampled_from(["accel", "legacy"]), st.sampled_from(["raw", "typed"]),
                                st.sampled_from([NULL, NULL, NULL, FAIL, UNKNOWN, CRASH])), min_size=1, max_size=12))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_routes_answer_and_record_as_the_reference(make_soc, calls):
    """Routed calls (after the first on each file) and the reference answer alike: a method
    whose declared counts differ, an unknown one, a skel that raises (the PD crashes, and every
    later call answers so), with the same statistics and PD states."""
    native, ref = Side(make_soc, "native"), Side(make_soc, "py")
    for drv, how, sc in calls:
        got = [getattr(side, how)(drv, sc) for side in (native, ref)]
        assert got[0] == got[1], (drv, how, hex(sc))
        assert native.records() == ref.records()
    native.close()
    ref.close()


def test_a_traced_or_faulted_call_takes_the_lanes(sides):
    native, _ = sides
    assert native.typed("accel", NULL) == 0
    r = native.route("accel")
    with trace.recording() as rec:
        assert native.typed("accel", NULL) == 0
    assert r.served == 0 and any(e.get("kind") == "ioctl" for e in rec.events)
    with native.soc.faults.inject("crash:qdarpc_test.null"):
        assert native.typed("accel", NULL) == aee.to_u32(aee.ERR_PD_CRASHED)  # the rule applied
    assert r.served == 0


def test_the_librarys_invoke_takes_the_files_route(make_soc):
    import libadsprpc_compat as rpc
    from libadsprpc_compat import Library

    soc = make_soc("default")
    for backend in ("accel", "legacy"):
        lib = Library(backend, soc)
        with rpc.use_library(lib):
            h = rpc.remote_handle64_open(TEST_URI)
            rpc.remote_handle64_invoke(h, NULL, ())
            rec = rpc.process._records[h]
            f = rec.session.backend.file
            r = f._lane.route_for(rec.dsp_handle)
            assert r is not None
            for _ in range(4):
                rpc.remote_handle64_invoke(h, NULL, ())
            assert r.served == 4
            with pytest.raises(rpc.FastRpcError) as exc:
                rpc.remote_handle64_invoke(h, CRASH, ())
            assert exc.value.aee == aee.to_u32(aee.ERR_PD_CRASHED) and r.served == 5
            rpc.remote_handle64_close(h)
        lib.close_all()


# -- a native skel's route taken by a Python caller (regressions of an attacker's review) ------
CRASHY = "file:///libcrashy_skel.so?crashy_skel_handle_invoke&_modver=1.0&_dom=cdsp"
GATED = 9 << 24  # crashy: waits in the skel until crashy_gate is set


@pytest.fixture
def crashy(make_soc, tmp_path, monkeypatch):
    """(a native-plane SoC's accel and legacy files with crashy open, their handles, the skel)."""
    import ctypes

    from cc_helpers import CC, compile_skel

    if CC is None:
        pytest.skip("no C compiler")
    compile_skel("crashy", tmp_path / "libcrashy_skel.so")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    soc = make_soc("default")
    files = {"accel": soc.open_device("cdsp"), "legacy": soc.open("/dev/fastrpc-cdsp")}
    hs = {}
    for drv, f in files.items():
        assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        rv, hs[drv] = open_module(f, CRASHY)
    for drv, f in files.items():  # (after every PD was made: a change of the PD table moves the epoch)
        assert f.invoke(hs[drv], NULL) == 0
        r = f._lane.route_for(hs[drv])
        assert r.native and not r.stale()
    yield soc, files, hs, ctypes.CDLL(str(tmp_path / "libcrashy_skel.so"))
    for f in files.values():
        f.close()


def _in_skel(skel, fn):
    """Run ``fn`` (a call of crashy's gated method) in a thread; return once it is in the skel."""
    import ctypes
    import threading
    import time

    gate, gated = ctypes.c_int.in_dll(skel, "crashy_gate"), ctypes.c_int.in_dll(skel, "crashy_gated")
    gate.value, gated.value = 0, 0
    out = {}

    def run():
        try:
            out["rv"] = fn()
        except OSError as exc:
            out["errno"] = exc.errno

    t = threading.Thread(target=run)
    t.start()
    while gated.value == 0:
        time.sleep(0.001)
    return t, gate, out


@pytest.mark.needs_cc
@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_route_closed_during_its_call_is_cleaned_up_by_that_call(crashy, drv):
    soc, files, hs, skel = crashy
    f, h = files[drv], hs[drv]
    r = f._lane.route_for(h)
    t, gate, out = _in_skel(skel, lambda: f.invoke(h, GATED))
    with soc.faults.inject("crash:nomatch.5"):  # the epoch moves: the next call's refresh closes r
        assert f.invoke(h, NULL) == 0
    assert r.dead  # closed, but its message buffer and DSP part stay with the call in it
    junk = [bytearray(200) for _ in range(20000)]  # (freed memory would be reused by now)
    gate.value = 1
    t.join(10)
    del junk
    assert out == {"rv": 0} and r.served >= 1


@pytest.mark.needs_cc
@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_restart_during_a_routed_native_call_answers_as_the_lanes(crashy, drv):
    """The driver's errno and message: accel ENODEV ("... restarted while ..."), legacy EPIPE."""
    soc, files, hs, skel = crashy
    f, h = files[drv], hs[drv]
    t, gate, out = _in_skel(skel, lambda: f.invoke(h, GATED))
    soc.restart("cdsp")
    gate.value = 1
    t.join(10)
    want = {"accel": errno.ENODEV, "legacy": errno.EPIPE}[drv]
    assert out == {"errno": want} and f.last_error.errno == want
    assert ("restarted while" if drv == "accel" else "DSP channel is down") in str(f.last_error)


@pytest.mark.needs_cc
def test_a_routed_native_call_keeps_the_callers_own_override(crashy):
    """An override the caller's context still holds after its block ended (a copied context, an
    asyncio task) while the process-wide count is 0: charged, as the lanes charge it."""
    import contextvars

    soc, files, hs, _ = crashy
    f, h = files["accel"], hs["accel"]
    with cost.override(5_000_000):
        ctx = contextvars.copy_context()
    f.invoke(h, NULL)  # (the block moved the epoch: this one reopens the route)

    def measured():
        with cost.measure() as m:
            f.invoke(h, NULL)
        return m.ns

    served = f._lane.route_for(h).served
    assert ctx.run(measured) == 5_000_000 and f._lane.route_for(h).served == served + 1


def test_the_library_checks_arguments_the_call_does_not_declare(make_soc):
    import libadsprpc_compat as rpc
    from libadsprpc_compat import Library

    lib = Library("accel", make_soc("default"))
    with rpc.use_library(lib):
        h = rpc.remote_handle64_open(TEST_URI)
        rpc.remote_handle64_invoke(h, NULL, ())  # a route from now on
        with pytest.raises(rpc.FastRpcError) as exc:
            rpc.remote_handle64_invoke(h, NULL, (b"x",))
        assert exc.value.aee == rpc.AEE_EBADPARM
        with pytest.raises(TypeError):
            rpc.remote_handle64_invoke(h, NULL, 5)
        rpc.remote_handle64_close(h)
    lib.close_all()


def test_a_dropped_file_with_a_route_is_released_at_once(make_soc):
    """A route holds its file weakly: dropping the last reference releases it (and warns that
    it was not closed), with no help from the cycle collector."""
    import gc
    import warnings

    soc = make_soc("default")
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    rv, h = open_module(f, TEST_URI)
    assert f.invoke(h, NULL) == 0 and f._lane.route_for(h) is not None
    dsp = soc.domains["cdsp"].dsp
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            del f
        assert [p.state for p in dsp._procs.values()] == [] and any("unclosed" in str(w.message) for w in seen)
    finally:
        gc.enable()
