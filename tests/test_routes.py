"""Routes (docs/dataplane.md "Routes"): a C caller's remote_handle64_invoke of a method without
arguments on a native skel's handle, served without the GIL, with the lanes' records and
answers; declined (the lanes serve it) whenever something a route took changed or something
watches or alters calls; retired with its handle, its file or its library flavour, never
while a call is on it.

The C library is driven in this process through ctypes (which releases the GIL around the
call, so the bridge takes the route as a C program's thread does)."""
from __future__ import annotations

import ctypes
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import Library, _cabi, _remote, native
from qda_core import _cdev, trace, uapi
from qda_core.dsp import aee, cost

sys.path.insert(0, str(Path(__file__).parent))
from cc_helpers import CC, compile_skel  # noqa: E402

pytestmark = [pytest.mark.needs_cc, pytest.mark.skipif(CC is None, reason="no C compiler")]

CRASHY = "file:///libcrashy_skel.so?crashy_skel_handle_invoke&_modver=1.0&_dom=cdsp"
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
NULL, CRASH, GATED, FAILS = 2 << 24, 3 << 24, 9 << 24, 10 << 24  # crashy's methods, no arguments


class C:
    """libcdsprpc through ctypes, on one SoC and backend, with the crashy skel."""

    def __init__(self, soc, backend, skel_dir):
        self.soc, self.dom = soc, soc.domains["cdsp"]
        self.lib = ctypes.CDLL(str(native.library()), use_errno=True)
        self.lib.remote_handle64_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
        self.lib.remote_handle64_invoke.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p]
        self.lib.remote_handle64_close.argtypes = [ctypes.c_uint64]
        self.skel = ctypes.CDLL(str(skel_dir / "libcrashy_skel.so"))  # the DSP's copy (same path: one load)
        self.library = Library(backend, soc)

    def open(self, uri=CRASHY) -> int:
        h = ctypes.c_uint64()
        assert self.lib.remote_handle64_open(uri.encode(), ctypes.byref(h)) == 0
        return h.value

    def invoke(self, h, sc) -> int:
        return self.lib.remote_handle64_invoke(h, sc, None) & 0xFFFF_FFFF

    def close(self, h) -> int:
        return self.lib.remote_handle64_close(h)

    def counts(self):
        """What a message records: the DSP's statistics, the PDs' counters, the channels'."""
        d = self.dom.dsp
        chans = [self.dom.accel.channel, self.dom.legacy_channel.channel]
        return (d.stats.snapshot(), sorted((p.invokes, p.counters.modeled_ns) for p in d._procs.values()),
                [(c.sent, c.received) for c in chans])


@pytest.fixture(params=["accel", "legacy"])
def c(request, make_soc, tmp_path, monkeypatch):
    compile_skel("crashy", tmp_path / "libcrashy_skel.so")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    saved = dict(_cabi._flavours)  # one flavour (others loaded by earlier tests: no routes)
    _cabi._flavours.clear()
    _remote.routes.off = False
    _cabi.bind("libcdsprpc", 3, "remote_handle64_invoke")
    side = C(make_soc("default"), request.param, tmp_path)
    try:
        with rpc.use_library(side.library):
            yield side
    finally:
        side.library.close_all()
        _remote.routes.forget_all()
        _remote.routes.off = False  # (the flavours this test loaded are forgotten too)
        _cabi._flavours.clear()
        _cabi._flavours.update(saved)


def routed(c, h, sc=NULL, n=1):
    """Make ``n`` calls, each of which the route served (its served count says so)."""
    before = _remote.routes.served(h)
    for _ in range(n):
        assert c.invoke(h, sc) == 0
    return _remote.routes.served(h) - before


def test_a_native_null_call_takes_the_route_with_the_lanes_records(c):
    h = c.open()
    assert c.invoke(h, NULL) == 0  # the lanes serve it, and take the route for the next
    assert h in _remote.routes.live()
    stats0, pds0, chans0 = c.counts()
    assert routed(c, h, n=50) == 50
    stats1, pds1, chans1 = c.counts()
    for _ in range(50):  # the same calls through the Python API: the lanes
        rpc.remote_handle64_invoke(h, NULL, ())
    stats2, pds2, chans2 = c.counts()
    for a, b, z in ((stats1, stats2, stats0),):
        assert {k: a[k] - z[k] for k in a} == {k: b[k] - a[k] for k in a}
    assert [(x[0] - y[0], x[1] - y[1]) for x, y in zip(pds1, pds0)] == \
        [(x[0] - y[0], x[1] - y[1]) for x, y in zip(pds2, pds1)]
    assert [(x[0] - y[0], x[1] - y[1]) for x, y in zip(chans1, chans0)] == \
        [(x[0] - y[0], x[1] - y[1]) for x, y in zip(chans2, chans1)]
    assert stats1["invokes"] - stats0["invokes"] == 50 and stats1["errors"] == stats0["errors"]
    with cost.measure() as m:  # the modeled time on the caller's thread, as the lanes count it
        routed(c, h)
    assert m.messages == 1 and m.ns == c.dom.dsp.cost.overhead_ns
    assert c.close(h) == 0
    assert h not in _remote.routes.live()


def test_a_python_skel_handles_and_registered_buffers_take_the_lanes(c):
    """A Python skel's handle has no route; a call with a handle, or with a buffer in a
    registered range (rpcmem: by reference), takes the GIL's path; plain buffers take the route
    whatever else is registered."""
    h = c.open(TEST)
    assert c.invoke(h, NULL) == 0
    assert h not in _remote.routes.live() and _remote.routes.served(h) == 0
    k = c.open()
    c.invoke(k, NULL)
    out = ctypes.create_string_buffer(8)
    pra = (ctypes.c_uint64 * 4)(ctypes.addressof(out), 8, 0, 0)
    before = _remote.routes.served(k)
    c.lib.remote_handle64_invoke(k, 8 << 24 | 1 << 8 | 1 << 4, pra)  # a handle argument: the lanes
    assert _remote.routes.served(k) == before
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)  # a registration
    try:
        view = (ctypes.c_char * 4096).from_buffer(mem)
        shared = (ctypes.c_uint64 * 2)(ctypes.addressof(view) + 64, 8)  # out0 in the rpcmem buffer
        assert c.lib.remote_handle64_invoke(k, 8 << 24 | 1 << 8, shared) == 0
        assert struct.unpack_from("<Q", mem, 64)[0] != 0  # (the DSP wrote it in place: by reference)
        assert _remote.routes.served(k) == before
        over = (ctypes.c_uint64 * 2)(ctypes.addressof(view) + 4090, 8)  # starts in it, runs past
        assert c.lib.remote_handle64_invoke(k, 8 << 24 | 1 << 8, over) & 0xFFFF_FFFF == rpc.AEE_EBADPARM
        assert _remote.routes.served(k) == before
        out.raw = bytes(8)
        assert c.lib.remote_handle64_invoke(k, 8 << 24 | 1 << 8, pra) == 0  # plain memory: the route
        assert struct.unpack("<Q", out.raw)[0] != 0 and _remote.routes.served(k) == before + 1
        del view
    finally:
        rpc.rpcmem_free(mem)
    assert c.close(h) == 0 and c.close(k) == 0


def test_registrations_changing_while_c_threads_call_on_routes(c):
    """rpcmem buffers allocated and freed in a loop (the table's array grows, shifts and
    moves) while two C threads call with plain buffers on their routes without the GIL: every
    answer right, the routes served the calls."""
    hs = [c.open(), c.open()]
    for h in hs:
        c.invoke(h, NULL)
        assert _args_call(c, h, 7, [b"\x01" * 8], 4)[0] == 0
    stop, bad = threading.Event(), []

    def run(h, seed):
        i = 0
        while not stop.is_set():
            data = bytes([(seed + i) & 0xFF]) * (8 + i % 200)
            got = _args_call(c, h, 7, [data], 4)
            if got != (0, 0, struct.pack("<I", sum(data))):
                bad.append(got)
            i += 1

    before = [_remote.routes.served(h) for h in hs]
    ts = [threading.Thread(target=run, args=(h, k)) for k, h in enumerate(hs)]
    for t in ts:
        t.start()
    try:
        for _ in range(150):
            mems = [rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096) for _ in range(20)]
            for m in reversed(mems):
                rpc.rpcmem_free(m)
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert not bad
    assert all(_remote.routes.served(h) > b for h, b in zip(hs, before))
    for h in hs:
        assert c.close(h) == 0


def _args_call(c, h, method, ins, nout):
    """crashy's ``method`` with in-buffers ``ins`` and one ``nout``-byte out-buffer from C:
    (its code, its errno, the out-buffer)."""
    bufs = [ctypes.create_string_buffer(bytes(b), len(b)) for b in ins]
    out = ctypes.create_string_buffer(nout)
    pra = (ctypes.c_uint64 * (2 * len(ins) + 2))()
    for i, b in enumerate(bufs):
        pra[2 * i], pra[2 * i + 1] = ctypes.addressof(b), len(ins[i])
    pra[2 * len(ins)], pra[2 * len(ins) + 1] = ctypes.addressof(out), nout
    code = c.lib.remote_handle64_invoke(h, method << 24 | len(ins) << 16 | 1 << 8, pra) & 0xFFFF_FFFF
    return code, _remote.last_errno(), out.raw


def test_a_c_callers_call_with_copied_buffers_takes_the_route(c):
    """A C caller's call with copied in- and out-buffers on a native skel is served by its
    route without the GIL (EngineRoute.call_args): the same answers, out-buffers and records as
    the lanes give the same call through the Python API; in the page and in the second buffer."""
    h = c.open()
    c.invoke(h, NULL)  # (the lanes; the route for the next calls)
    for n in (1, 100, 4000, 20_000):
        data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert _args_call(c, h, 7, [data], 4)[0] == 0  # (a route, taken after a call the lanes served)
        stats0, pds0, chans0 = c.counts()
        before = _remote.routes.served(h)
        got = _args_call(c, h, 7, [data], 4)
        assert _remote.routes.served(h) == before + 1
        assert got == (0, 0, struct.pack("<I", sum(data)))
        stats1, pds1, chans1 = c.counts()
        out = bytearray(4)
        rpc.remote_handle64_invoke(h, 7 << 24 | 1 << 16 | 1 << 8, [data, out])  # the Python API: the lanes
        assert bytes(out) == got[2]
        stats2, pds2, chans2 = c.counts()
        assert {k: stats1[k] - stats0[k] for k in stats0} == {k: stats2[k] - stats1[k] for k in stats0}
        assert [(x[0] - y[0], x[1] - y[1]) for x, y in zip(pds1, pds0)] == \
            [(x[0] - y[0], x[1] - y[1]) for x, y in zip(pds2, pds1)]
        assert [(x[0] - y[0], x[1] - y[1]) for x, y in zip(chans1, chans0)] == \
            [(x[0] - y[0], x[1] - y[1]) for x, y in zip(chans2, chans1)]
    assert _args_call(c, h, 7, [b"\x01" * 8], 2)[0] == 0x8000040E  # the skel's own error
    assert c.close(h) == 0


def test_a_c_callers_bad_buffers_answer_as_the_gil_path(c):
    """An unreadable in-buffer (declined: the GIL's path answers), an unwritable out-buffer
    (the route's copy back): AEE_EBADPARM with errno EFAULT, as through the lanes."""
    h = c.open()
    c.invoke(h, NULL)
    good = ctypes.create_string_buffer(8)
    pra = (ctypes.c_uint64 * 4)(ctypes.addressof(good), 8, 0x10, 4)  # out0 at an unmapped address
    before = _remote.routes.served(h)
    assert c.lib.remote_handle64_invoke(h, 7 << 24 | 1 << 16 | 1 << 8, pra) & 0xFFFF_FFFF == 0xE
    assert _remote.last_errno() == 14 and _remote.routes.served(h) == before + 1
    pra = (ctypes.c_uint64 * 4)(0x10, 8, ctypes.addressof(good), 4)  # in0 unreadable
    assert c.lib.remote_handle64_invoke(h, 7 << 24 | 1 << 16 | 1 << 8, pra) & 0xFFFF_FFFF == 0xE
    assert _remote.last_errno() == 14 and _remote.routes.served(h) == before + 1
    assert c.lib.remote_handle64_invoke(h, 7 << 24 | 1 << 16 | 1 << 8, None) & 0xFFFF_FFFF == 0xE
    assert _args_call(c, h, 7, [b"\x02" * 8], 4)[:2] == (0, 0)
    assert c.close(h) == 0


def test_nothing_a_route_took_can_change_under_it(c):
    """Each change declines the route's calls (the lanes serve them, and see the change)."""
    h = c.open()
    c.invoke(h, NULL)
    dsp = c.dom.dsp
    with trace.recording() as rec:  # traced: the lanes, whose steps the trace records
        assert routed(c, h, n=3) == 0
    assert sum(1 for e in rec.events if e.get("kind") == "api" and e.get("name") == "remote_handle64_invoke") == 3
    with cost.override(5_000_000):  # an override is another context's: routes serve nothing
        assert routed(c, h) == 0
        assert cost.last_ns() == 5_000_000
    seen = []
    dsp.receive = lambda *a, **k: (seen.append(a), type(dsp).receive(dsp, *a, **k))[1]
    assert routed(c, h) == 0 and len(seen) == 1
    del dsp.receive
    c.invoke(h, NULL)  # a new route, taken after the change
    assert routed(c, h) == 1
    with c.soc.faults.inject("crash:crashy.2"):
        assert c.invoke(h, NULL) == aee.to_u32(aee.ERR_PD_CRASHED)  # the rule applied: the lanes
    assert _remote.routes.served(h) == 1 or not _remote.routes.route(h)
    assert c.invoke(h, NULL) == aee.to_u32(aee.ERR_PD_CRASHED)  # the PD is gone, for routes too
    c.close(h)


def test_a_dsp_error_and_a_crash_answer_as_the_lanes_answer(c):
    h = c.open()
    c.invoke(h, NULL)
    ctypes.set_errno(0)
    before = _remote.routes.served(h)
    bad = (ctypes.c_uint64 * 2)(8, 8)  # an in-buffer at address 8: EFAULT, errno 14 on this thread
    assert c.lib.remote_handle64_invoke(h, 8 << 24 | 1 << 16, bad) == rpc.AEE_EBADPARM
    assert _remote.last_errno() == 14
    code = c.invoke(h, FAILS)
    assert code == 0x8000040E and _remote.routes.served(h) == before + 1
    assert (_remote.last_errno(), _remote.last_origin()) == (0, _remote.ORIGIN_DSP)  # this call's
    try:
        rpc.remote_handle64_invoke(h, FAILS, ())
    except rpc.FastRpcError as exc:
        assert exc.aee == code
    before = _remote.routes.served(h)
    crashes = c.dom.dsp.stats.crashes
    assert c.invoke(h, CRASH) == aee.to_u32(aee.ERR_PD_CRASHED)
    assert _remote.routes.served(h) == before + 1 and c.dom.dsp.stats.crashes == crashes + 1
    assert c.invoke(h, NULL) == aee.to_u32(aee.ERR_PD_CRASHED)  # the lanes: the PD is dead
    assert _remote.routes.served(h) == before + 1
    c.close(h)


def test_a_crash_with_buffers_on_a_route_answers_as_the_lanes(c):
    """A native skel faulting in a call with copied buffers on its route (no GIL): the PD's
    crash code, the crash and the call's bytes recorded, as the lanes record them."""
    h = c.open()
    c.invoke(h, NULL)
    assert _args_call(c, h, 7, [b"\x01" * 8], 4)[0] == 0  # (a route with arguments now)
    before, stats0 = _remote.routes.served(h), c.counts()[0]
    assert _args_call(c, h, 3, [b"\x02" * 100], 8)[0] == aee.to_u32(aee.ERR_PD_CRASHED)  # a NULL write
    stats1 = c.counts()[0]
    assert _remote.routes.served(h) == before + 1
    assert (stats1["invokes"] - stats0["invokes"], stats1["crashes"] - stats0["crashes"],
            stats1["errors"] - stats0["errors"], stats1["bytes_in"] - stats0["bytes_in"],
            stats1["bytes_out"] - stats0["bytes_out"]) == (1, 1, 1, 100, 8)
    assert _args_call(c, h, 7, [b"\x01" * 8], 4)[0] == aee.to_u32(aee.ERR_PD_CRASHED)  # the PD is dead
    c.close(h)


def in_skel(c, call):
    """Start ``call`` (a call of crashy's gated method) in a thread, and return once it is in
    the skel: (the thread, the gate to open, the dict the call stores into)."""
    gate = ctypes.c_int.in_dll(c.skel, "crashy_gate")
    gated = ctypes.c_int.in_dll(c.skel, "crashy_gated")
    gate.value, gated.value = 0, 0
    results = {}
    t = threading.Thread(target=lambda: call(results))
    t.start()
    while gated.value == 0:
        time.sleep(0.001)
    return t, gate, results


def test_a_handle_closed_during_a_call_on_its_route(c):
    """As with the lanes, a close does not wait for a call in flight (nor does any retirement:
    a teardown holds the library's lock): the slot is emptied at once, no call starts on it,
    and the route is closed when the call in it returns."""
    h = c.open()
    c.invoke(h, NULL)
    t, gate, results = in_skel(c, lambda out: out.setdefault("call", c.invoke(h, GATED)))
    assert c.close(h) == 0  # returns with the call still in the skel
    assert h not in _remote.routes.live() and _remote.routes.retiring() == 1
    assert c.invoke(h, NULL) == rpc.AEE_EINVHANDLE  # closed: the lanes answer
    gate.value = 1
    t.join(10)
    assert results == {"call": 0}
    deadline = time.monotonic() + 5
    while _remote.routes.retiring() and time.monotonic() < deadline:  # (the call's pending reap)
        time.sleep(0.001)
    assert _remote.routes.retiring() == 0


def test_a_session_teardown_does_not_wait_for_a_call_on_a_route(c):
    """The library's teardown runs under its lock: it retires the routes without waiting, so a
    call that needs the library meanwhile is not held up behind a long skel call."""
    h = c.open()
    c.invoke(h, NULL)
    t, gate, results = in_skel(c, lambda out: out.setdefault("call", c.invoke(h, GATED)))
    t0 = time.monotonic()
    c.library.close_all()  # every session torn down
    assert time.monotonic() - t0 < 5 and h not in _remote.routes.live()
    gate.value = 1
    t.join(10)
    assert results["call"] in (0, rpc.AEE_ECONNRESET)


def test_a_file_closed_during_a_route_call_is_released_by_that_call(make_soc, tmp_path, monkeypatch):
    """The route holds the file's reference as an ioctl does: a close meanwhile defers the
    release to the call's end, and a closed file's route serves nothing."""
    from libadsprpc_compat.remotectl import open_module

    compile_skel("crashy", tmp_path / "libcrashy_skel.so")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    skel = ctypes.CDLL(str(tmp_path / "libcrashy_skel.so"))
    gate, gated = ctypes.c_int.in_dll(skel, "crashy_gate"), ctypes.c_int.in_dll(skel, "crashy_gated")
    soc = make_soc("default")
    for f in (soc.open_device("cdsp"), soc.open("/dev/fastrpc-cdsp")):
        assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        rv, h = open_module(f, CRASHY)
        assert rv == 0 and f.invoke(h, NULL) == 0
        r = f.route(h)
        assert r is not None and r.invoke(NULL) == 0 and not r.stale()
        gate.value, gated.value = 0, 0
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("rv", r.invoke(GATED)))
        t.start()
        while gated.value == 0:
            time.sleep(0.001)
        f.close()
        assert not f._lane.released  # the call holds the file
        gate.value = 1
        t.join(10)
        assert out == {"rv": 0} and f._lane.released and r.dead and r.stale()
        assert r.invoke(NULL) is None  # declined: nothing happened


def test_a_route_keeps_the_channels_context_ids_and_sequence(c):
    h = c.open()
    c.invoke(h, NULL)
    fastrpc = (c.dom.accel if c.library.backend == "accel" else c.dom.legacy_channel).fastrpc

    def state():
        i = fastrpc._ids.alloc()
        fastrpc._ids.free(i)
        return fastrpc._seq, i

    s0 = state()
    assert routed(c, h, n=7) == 7
    s1 = state()
    for _ in range(7):
        rpc.remote_handle64_invoke(h, NULL, ())
    s2 = state()
    assert (s1[0] - s0[0], s1[1] - s0[1]) == (s2[0] - s1[0], s2[1] - s1[1])
    _cdev.ROUTES.bump()  # a call the route declines (its epoch moved) uses nothing of its own
    assert routed(c, h) == 0
    s3 = state()
    rpc.remote_handle64_invoke(h, NULL, ())
    s4 = state()
    assert (s3[0] - s2[0], s3[1] - s2[1]) == (s4[0] - s3[0], s4[1] - s3[1])
    c.close(h)


def test_two_threads_on_routes_lose_no_record(c):
    hs = [c.open(), c.open()]
    for h in hs:
        c.invoke(h, NULL)
    stats0 = c.counts()[0]
    n = 3000

    def run(h):
        for _ in range(n):
            assert c.invoke(h, NULL) == 0

    ts = [threading.Thread(target=run, args=(h,)) for h in hs]
    for t in ts:
        t.start()
    for _ in range(20):  # meanwhile, changes that retire the routes now and then
        with trace.recording():
            time.sleep(0.001)
    for t in ts:
        t.join()
    stats1 = c.counts()[0]
    assert stats1["invokes"] - stats0["invokes"] == 2 * n and stats1["errors"] == stats0["errors"]
    assert all(_remote.routes.served(h) > 0 for h in hs)
    for h in hs:
        assert c.close(h) == 0


def test_threads_with_copied_buffers_on_one_handle_and_two(c):
    """Three threads calling with copied buffers (in the page, in the second buffer), two of
    them on one handle (one route: a call that finds its buffer busy takes the GIL's path),
    while traces retire the routes now and then: every answer right, no record lost."""
    hs = [c.open(), c.open()]
    for h in hs:
        c.invoke(h, NULL)
    stats0 = c.counts()[0]
    n, bad = 1500, []
    sizes = (8, 3000, 9000)

    def run(h, seed):
        for i in range(n):
            data = bytes([(seed + i) & 0xFF]) * sizes[(seed + i) % 3]
            got = _args_call(c, h, 7, [data], 4)
            if got != (0, 0, struct.pack("<I", sum(data))):
                bad.append(got)

    ts = [threading.Thread(target=run, args=(h, k)) for k, h in enumerate(hs + hs[:1])]
    for t in ts:
        t.start()
    for _ in range(20):
        with trace.recording():
            time.sleep(0.001)
    for t in ts:
        t.join()
    stats1 = c.counts()[0]
    assert not bad
    assert stats1["invokes"] - stats0["invokes"] == 3 * n and stats1["errors"] == stats0["errors"]
    assert stats1["bytes_in"] - stats0["bytes_in"] == sum(
        sizes[(k + i) % 3] for k in (0, 1, 0) for i in range(n))
    assert all(_remote.routes.served(h) > 0 for h in hs)
    for h in hs:
        assert c.close(h) == 0


def test_a_forked_child_has_no_route(c):
    import os

    h = c.open()
    c.invoke(h, NULL)
    assert h in _remote.routes.live()
    pid = os.fork()
    if pid == 0:  # the child: inherited handles are invalid, and so are their routes
        ok = _remote.routes.live() == [] and c.invoke(h, NULL) == rpc.AEE_EINVHANDLE
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert routed(c, h) == 1  # the parent's route is untouched
    c.close(h)


def test_a_second_flavour_retires_every_route(c):
    h = c.open()
    c.invoke(h, NULL)
    assert h in _remote.routes.live()
    _cabi.bind("libadsprpc", 0, "remote_handle64_invoke")  # handles must now be told apart
    assert _remote.routes.live() == [] and _remote.routes.off
    assert c.invoke(h, NULL) == 0 and _remote.routes.live() == []  # and none is taken again
    assert _remote.routes.served(h) == 0
    c.close(h)


def test_the_channel_sequence_counter():
    from qda_core._engine import SeqCounter

    s = SeqCounter(5)
    assert iter(s) is s and next(s) == 5 and next(s) == 6 and s.peek() == 7
    s.set(2**32 - 1)
    assert next(s) == 2**32 - 1 and s.peek() == 2**32
    threads = [threading.Thread(target=lambda: [next(s) for _ in range(20000)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.peek() == 2**32 + 40000  # atomic: no lost update


def test_the_routes_epoch_and_override_count():
    from qda_core import _cdev

    n = _cdev.ROUTES.n
    _cdev.ROUTES.bump()
    assert _cdev.ROUTES.n == n + 1
    assert _cdev.OVERRIDES.n == 0
    with cost.override(1000):
        assert _cdev.OVERRIDES.n == 1 and _cdev.ROUTES.n > n + 1
        with cost.override(2000):
            assert _cdev.OVERRIDES.n == 2
    assert _cdev.OVERRIDES.n == 0


def _gated_restart(c, force_lanes):
    """A call in the skel while the DSP restarts: (its code, the thread's last errno)."""
    h = c.open()
    c.invoke(h, NULL)

    def call(out):
        out["rc"] = c.invoke(h, GATED)
        out["errno"] = _remote.last_errno()

    rule = c.soc.faults.inject("crash:nomatch.5") if force_lanes else None  # armed: the lanes serve
    if rule is not None:
        rule.__enter__()
    try:
        t, gate, out = in_skel(c, call)
        c.soc.restart("cdsp")
        gate.value = 1
        t.join(10)
    finally:
        if rule is not None:
            rule.__exit__(None, None, None)
    served = _remote.routes.served(h)
    c.library.close_all()  # (the session lost its PD: the next open makes a new one)
    return out["rc"], out["errno"], served


def test_a_restart_during_a_routed_call_answers_as_the_lanes(c):
    rc, err, served = _gated_restart(c, force_lanes=False)
    assert served == 1
    assert (rc, err) == _gated_restart(c, force_lanes=True)[:2]  # accel ENODEV, legacy EPIPE


def test_report_internal_says_what_and_where(capsys):
    """``qda_core.errors.report_internal``: the routes' and the C face's report of a bug of
    ours that may not propagate: one line naming the place, then the traceback."""
    from qda_core.errors import report_internal

    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        report_internal("the routes' table", exc)
        saved = exc
    err = capsys.readouterr().err
    assert err.startswith("qdarpc: internal error in the routes' table:\n") and "RuntimeError: boom" in err
    try:
        raise saved
    except RuntimeError:
        report_internal("the C ABI's remote_handle64_invoke")  # the exception being handled
    err = capsys.readouterr().err
    assert "internal error in the C ABI's remote_handle64_invoke:" in err and "RuntimeError: boom" in err
