"""Several threads invoking on one open file at once (both drivers allow it): every call gets its
own context and message buffer, so each thread reads back exactly what it sent. Through the
legacy API: threads opening, invoking and closing handles on one domain never race the session
teardown of the last close, and a forced session close fails the calls it overtakes cleanly."""
import struct
import sys
import threading

import pytest

from libadsprpc_compat.remotectl import open_module

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_ECHO = 0x03010100
THREADS, CALLS = 4, 150


def run_threads(workers) -> list:
    """Run each ``worker()`` in its own thread. A worker returns None, or a tuple describing
    what went wrong; an exception counts as a failure too. Returns every failure."""
    failures = []

    def wrap(work):
        try:
            bad = work()
        except Exception as exc:  # surfaced through the returned list
            bad = (repr(exc),)
        if bad is not None:
            failures.append(bad)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


@pytest.mark.parametrize("path", ["/dev/accel/accel1", "/dev/fastrpc-cdsp"])
def test_concurrent_invokes_on_one_file(soc, path, busy_switching):
    f = soc.open(path)
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def worker(tid: int):
            for i in range(CALLS):
                # sizes vary so message buffers of different sizes are recycled between threads
                data = struct.pack("<II", tid, i) * (1 + (i * 7 + tid) % 300)
                out = bytearray(len(data))
                ret = f.invoke(h, SC_ECHO, [data, out])
                if ret != 0 or out != data:
                    return (tid, i, ret)
            return None

        assert run_threads([lambda t=t: worker(t) for t in range(THREADS)]) == []
    finally:
        f.close()


def test_concurrent_shared_buffers_and_churn_accel(soc, busy_switching):
    """By-reference invokes on per-thread GEM buffers while other threads create, export,
    import and close objects on the same file."""
    import os

    from qda_core.accel import GemRef

    f = soc.open_device("cdsp")
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def inc_worker(tid: int):
            gh = f.gem_create(4096)
            view = f.mmap(f.gem_mmap_offset(gh), 4096)
            ref = GemRef(gh, view[:256])
            try:
                for i in range(CALLS):
                    view[:256] = bytes([i % 200]) * 256
                    if f.invoke(h, 0x04000100, [ref]) or view[:256] != bytes([i % 200 + 1]) * 256:
                        return (tid, i)
                return None
            finally:
                ref.buf.release()
                view.release()
                f.gem_close(gh)

        def churn_worker():
            for _ in range(CALLS // 3):
                g = f.gem_create(8192)
                fd = f.prime_handle_to_fd(g)
                imported = f.prime_fd_to_handle(fd)
                os.close(fd)
                f.gem_close(g)
                if imported != g:
                    return ("import of own export", g, imported)
            return None

        workers = [lambda t=t: inc_worker(t) for t in range(3)] + [churn_worker, churn_worker]
        assert run_threads(workers) == []
    finally:
        f.close()


def test_concurrent_dmabuf_invokes_legacy(soc, busy_switching):
    """Threads passing their own dma-bufs by fd through one legacy file (the per-fd map cache)."""
    import os

    from qda_core.legacy import DmaBufRef, dmabuf_mmap

    f = soc.open("/dev/fastrpc-cdsp")
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def worker(tid: int):
            fd = f.alloc_dma_buff(4096)
            view = dmabuf_mmap(fd, 4096)
            head = view[:128]
            try:
                for i in range(CALLS):
                    view[:128] = bytes([(tid * 10 + i) % 200]) * 128
                    if f.invoke(h, 0x04000100, [DmaBufRef(fd, head)]) or \
                            view[:128] != bytes([(tid * 10 + i) % 200 + 1]) * 128:
                        return (tid, i)
                return None
            finally:
                head.release()
                view.release()
                os.close(fd)

        assert run_threads([lambda t=t: worker(t) for t in range(4)]) == []
    finally:
        f.close()


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_concurrent_remote_handle64_invoke(make_soc, backend, busy_switching):
    """Threads sharing one remote_handle64 and rpcmem buffers through the legacy user API."""
    import libadsprpc_compat as rpc

    lib = rpc.Library(backend=backend, soc=make_soc("default"))
    try:
        h = lib.remote_handle64_open(TEST)

        def worker(tid: int):
            mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            view = memoryview(mem)[:64]
            try:
                for i in range(CALLS):
                    data = struct.pack("<II", tid, i) * (1 + i % 50)
                    out = bytearray(len(data))
                    rpc.remote_handle64_invoke(h, SC_ECHO, [data, out])
                    view[:] = bytes([i % 200]) * 64
                    rpc.remote_handle64_invoke(h, 0x04000100, [view])  # rpcmem: by reference
                    if out != data or bytes(view) != bytes([i % 200 + 1]) * 64:
                        return (tid, i)
                return None
            finally:
                view.release()
                rpc.rpcmem_free(mem)

        failures = run_threads([lambda t=t: worker(t) for t in range(4)])
        lib.remote_handle64_close(h)
    finally:
        lib.close_all()
    assert failures == []


# --- the last close's teardown racing other threads' open/invoke/close -------------------------
# Eight threads churning handles on one domain: whenever every handle happens to be closed the
# session is torn down, while other threads are about to open (or are opening) the next one.
# Before sessions were refcounted (e65bf7b) 14-24% of these calls failed: AEE_EBADPARM with
# errno EBADF (an invoke on the file the teardown had closed) and AEE_EBADSTATE on close (the DSP
# process had exited). The race needs time slices long enough for a session to go idle and
# short enough to split a teardown from an open: busy_switching (1e-6 s) keeps some handle open
# all the time, so these tests use a coarser interval.
CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom=cdsp"
SC_SUM = 0x02020100  # qda_core/dsp/skels/calculator.py: in0 {int32 n}, in1 n int32s, out0 int64
CHURN_THREADS, CHURN_ITERS = 8, 25


@pytest.fixture
def race_switching():
    """Switch threads every 0.5 ms: sessions go idle and get torn down within one time slice,
    and a switch can still land between a teardown and another thread's open."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(old)


def churn(open_, invoke, close) -> list:
    """CHURN_THREADS threads each open, invoke (calculator sum) and close a handle CHURN_ITERS
    times; returns every failure (wrong sums included)."""
    import libadsprpc_compat as rpc

    def worker(tid: int):
        bad = []
        for i in range(CHURN_ITERS):
            vec = struct.pack("<3i", tid, i, 7)
            out = bytearray(8)
            stage = "open"
            try:
                h = open_(CALC)
                stage = "invoke"
                invoke(h, SC_SUM, [struct.pack("<i", 3), vec, out])
                stage = "close"
                close(h)
            except rpc.FastRpcError as exc:
                bad.append((tid, i, stage, type(exc).__name__, hex(exc.aee), exc.errno))
                continue
            if struct.unpack("<q", out)[0] != tid + i + 7:
                bad.append((tid, i, "wrong sum", bytes(out)))
        return bad or None

    return run_threads([lambda t=t: worker(t) for t in range(CHURN_THREADS)])


def user_pds(soc) -> list:
    return [p for p in soc.domain("cdsp").dsp.processes() if p.kind == "user" and p.state == "alive"]


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_handle_churn_never_races_session_teardown(make_soc, backend, race_switching):
    import libadsprpc_compat as rpc

    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    try:
        failures = churn(lib.remote_handle64_open, lib.remote_handle64_invoke, lib.remote_handle64_close)
        assert failures == []
        assert not lib._sessions, "the last close tears the session down"
        assert user_pds(soc) == []
    finally:
        lib.close_all()


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_module_level_handle_churn_never_races_session_teardown(soc, backend, race_switching):
    import libadsprpc_compat as rpc

    rpc.use_soc(soc)
    try:
        rpc.set_backend(backend)
        failures = churn(rpc.remote_handle64_open, rpc.remote_handle64_invoke, rpc.remote_handle64_close)
        assert failures == []
        assert user_pds(soc) == []
    finally:
        rpc.use_soc(None)
        rpc.set_backend("accel")


# The two windows of that race, each forced open deterministically.
def outcome(call):
    """``call()``'s result, or ``(exception class name, aee)`` if it raised a FastRpcError."""
    import libadsprpc_compat as rpc

    try:
        return call()
    except rpc.FastRpcError as exc:
        return (type(exc).__name__, exc.aee)


def calc_sum(invoke, h, *vals) -> int:
    out = bytearray(8)
    invoke(h, SC_SUM, [struct.pack("<i", len(vals)), struct.pack(f"<{len(vals)}i", *vals), out])
    return struct.unpack("<q", out)[0]


def pause_in(monkeypatch, cls, name: str, thread_name: str):
    """Make ``cls.name`` stop on entry in the thread called ``thread_name``: returns the events
    (``inside``: it stopped, ``go``: let it run on)."""
    inside, go = threading.Event(), threading.Event()
    orig = getattr(cls, name)

    def paused(self, *args):
        if threading.current_thread().name == thread_name:
            inside.set()
            assert go.wait(10), "the test never let the paused call go"
        return orig(self, *args)

    monkeypatch.setattr(cls, name, paused)
    return inside, go


@pytest.mark.parametrize("uri, opens", [(CALC, True), (CALC.replace("1.2.3", "9.9.9"), False)])
@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_last_close_while_an_open_is_between_acquire_and_open(make_soc, monkeypatch, backend, uri, opens):
    """Thread B holds the session (acquired) but has not opened its module yet when the last
    handle closes: the session stays for B's open; a failed open leaves no session behind."""
    import libadsprpc_compat as rpc
    from libadsprpc_compat.session import Session

    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    inside, go = pause_in(monkeypatch, Session, "open_module", "B")
    got = []
    b = threading.Thread(name="B", target=lambda: got.append(outcome(lambda: lib.remote_handle64_open(uri))))
    try:
        h1 = lib.remote_handle64_open(CALC)
        s = lib._sessions[rpc.CDSP_DOMAIN_ID]
        b.start()
        assert inside.wait(10)
        lib.remote_handle64_close(h1)  # the last handle: B still holds the session
        assert lib._sessions.get(rpc.CDSP_DOMAIN_ID) is s and not s.dead
        go.set()
        b.join()
        if opens:
            (h2,) = got
            assert isinstance(h2, int) and rpc.library._records[h2].session is s
            assert calc_sum(rpc.remote_handle64_invoke, h2, 1, 2, 3) == 6
            lib.remote_handle64_close(h2)
        else:
            assert got == [(rpc.error_class(0x80000594).__name__, 0x80000594)]
        assert s.dead and not lib._sessions and user_pds(soc) == []
    finally:
        go.set()
        b.join()
        lib.close_all()


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_open_during_the_last_close_teardown_gets_a_fresh_session(make_soc, monkeypatch, backend):
    """Thread A's close of the last handle is tearing the session down when thread B opens: B
    waits for the teardown and gets a new session, never the dying one."""
    import libadsprpc_compat as rpc
    from libadsprpc_compat.session import Session

    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    tearing, go = pause_in(monkeypatch, Session, "teardown", "A")
    got = []
    a = threading.Thread(name="A", target=lambda: got.append(outcome(lambda: lib.remote_handle64_close(h1))))
    b = threading.Thread(name="B", target=lambda: got.append(outcome(lambda: lib.remote_handle64_open(CALC))))
    try:
        h1 = lib.remote_handle64_open(CALC)
        old = lib._sessions[rpc.CDSP_DOMAIN_ID]
        a.start()
        assert tearing.wait(10)
        b.start()
        b.join(0.05)
        assert b.is_alive(), "an open finished while the last close was tearing its session down"
        go.set()
        a.join()
        b.join()
        assert got[0] is None  # A's close
        h2 = got[1]
        new = rpc.library._records[h2].session
        assert new is not old and old.dead and not new.dead
        assert calc_sum(rpc.remote_handle64_invoke, h2, 4, 5) == 9
        lib.remote_handle64_close(h2)
        assert not lib._sessions and user_pds(soc) == []
    finally:
        go.set()
        a.join()
        b.join()
        lib.close_all()


# --- a forced session close while other threads use its handles --------------------------------
@pytest.mark.parametrize("how", ["session_close", "close_all"])
@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_forced_close_fails_calls_in_flight_with_econnreset(make_soc, backend, how, busy_switching):
    """FASTRPC_SESSION_CLOSE (or close_all) while four threads invoke on their handles: a call
    the teardown overtakes fails with AEE_ECONNRESET (docs/spec/legacy_fastrpc_api.md §5.3,
    closed session), every invoke or close after it with AEE_EINVHANDLE; never a stray driver or
    DSP code (EBADF from the closed file, 0x8000040d from the exiting PD, 0x8000043e)."""
    import libadsprpc_compat as rpc

    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    reset = ("ConnectionResetFastRpcError", rpc.AEE_ECONNRESET)
    invalid = ("InvalidHandleError", rpc.AEE_EINVHANDLE)
    try:
        for _round in range(8):
            handles = [lib.remote_handle64_open(CALC) for _ in range(4)]
            running, closed = threading.Barrier(len(handles) + 1, timeout=10), threading.Event()

            def worker(h):
                bad = []
                for i in range(100_000):
                    got = outcome(lambda: calc_sum(rpc.remote_handle64_invoke, h, i, 1))
                    if i == 0:
                        running.wait()
                    if got != i + 1:
                        if got not in (reset, invalid):
                            bad.append(("in flight", got))
                        break
                if not closed.wait(10):
                    return [("the close never returned",)]
                for late in (lambda: calc_sum(rpc.remote_handle64_invoke, h, 1), lambda: rpc.remote_handle64_close(h)):
                    got = outcome(late)
                    if got != invalid:
                        bad.append(("after the close", got))
                return bad or None

            failures = []
            workers = threading.Thread(
                target=lambda: failures.extend(run_threads([lambda h=h: worker(h) for h in handles])))
            workers.start()
            running.wait()  # every worker is invoking
            if how == "session_close":
                lib.remote_session_control(rpc.FASTRPC_SESSION_CLOSE, rpc.remote_rpc_session_close(rpc.CDSP_DOMAIN_ID))
            else:
                lib.close_all()
            closed.set()
            workers.join()
            assert failures == []
            assert not lib._sessions and user_pds(soc) == []
    finally:
        lib.close_all()


# --- threads on separate sessions: what every invoke passes through is shared, unlocked --------
# Each invoke takes a context id of its channel and counts on the channel and on the DSP. None of
# that takes a lock the sessions share (under the GIL such a lock convoys their threads: issue
# 15), so here sessions on many threads hammer it at once and every figure must come out exact.
KERNELS = ["accel:qda-rfc-2026-02", "accel:qda-v1-2026-05", "legacy:misc-7.2", "legacy:misc-7.3",
           "legacy:qda-shim"]
SESSIONS = 6  # the default cdsp has 8 context banks; each thread opens its own file


def session_threads(soc, frontend: str, work) -> list:
    """SESSIONS threads, each with a file of its own (opened in that thread, so a bank of its
    own too) and an unsigned PD on it; ``work(f, tid)`` returns None or a failure."""
    def worker(tid: int):
        f = soc.open_device("cdsp") if frontend == "accel" else soc.open("/dev/fastrpc-cdsp")
        try:
            assert f.init_create(attrs=8) == 0
            return work(f, tid)
        finally:
            f.close()

    return run_threads([lambda t=t: worker(t) for t in range(SESSIONS)])


@pytest.mark.parametrize("kernel", KERNELS)
def test_sessions_on_threads_share_ids_and_counters_exactly(make_soc, monkeypatch, kernel, busy_switching):
    """No two messages in flight on the channel carry the same context id, every call reads
    back exactly what it sent, and the channel's counts, the DSP's statistics and (Linux 7.3's
    ctx word) the sequence number all count every message once."""
    from qda_core import wire

    soc = make_soc("default", kernel=kernel)
    frontend = kernel.split(":")[0]
    dom = soc.domain("cdsp")
    eng = dom.accel.fastrpc if frontend == "accel" else dom.legacy_channel.fastrpc
    chan, dsp = eng.channel, dom.dsp
    inflight, clashes, guard = set(), [], threading.Lock()  # the test's own bookkeeping
    orig = dsp.receive

    def receive(msg, reply, channel="", origin=None):
        slot = eng.layout.slot(wire.Msg.unpack(msg).ctx)
        with guard:
            if slot in inflight:
                clashes.append(slot)
            inflight.add(slot)
        try:
            return orig(msg, reply, channel, origin)
        finally:
            with guard:
                inflight.discard(slot)

    monkeypatch.setattr(dsp, "receive", receive)
    before, sent, received, seq = dsp.stats.snapshot(), chan.sent, chan.received, eng._seq

    def echo(f, tid):
        _, h = open_module(f, TEST)
        for i in range(CALLS):
            data = struct.pack("<II", tid, i) * (1 + (i * 5 + tid) % 40)
            out = bytearray(len(data))
            if f.invoke(h, SC_ECHO, [data, out]) or out != data:
                return (tid, i)
        return None

    assert session_threads(soc, frontend, echo) == []
    assert clashes == []
    messages = chan.sent - sent
    assert messages > SESSIONS * CALLS and chan.received - received == messages
    after = dsp.stats.snapshot()
    assert after["invokes"] - before["invokes"] == messages and after["errors"] == before["errors"]
    if eng.layout.seq_shift is not None:
        assert eng._seq - seq == messages
    assert not eng._pending and not eng._ids._used


@pytest.mark.parametrize("cyclic", [False, True], ids=["lowest-free", "cyclic"])
def test_context_ids_are_never_shared_and_the_range_still_fills(cyclic, busy_switching):
    """More threads than ids allocate and free at once: an id is held by one caller at a time,
    within 1..limit, refused with EBUSY only when taken; afterwards the whole range is free."""
    import errno

    from qda_core.fastrpc import IdAllocator

    limit = 16
    ids = IdAllocator(limit=limit, cyclic=cyclic)
    holders: dict = {}

    def hammer(tid: int):
        for _ in range(5000):
            try:
                i = ids.alloc()
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return (tid, "errno", exc.errno)
                continue
            if not 1 <= i <= limit:
                return (tid, "out of range", i)
            if holders.setdefault(i, tid) != tid:
                return (tid, "shared", i)
            del holders[i]
            ids.free(i)
        return None

    assert run_threads([lambda t=t: hammer(t) for t in range(limit + 8)]) == []
    assert holders == {} and not ids._used
    taken = [ids.alloc() for _ in range(limit)]
    assert sorted(taken) == list(range(1, limit + 1))
    with pytest.raises(OSError) as exc:
        ids.alloc()
    assert exc.value.errno == errno.EBUSY
    ids.free(5)
    assert ids.alloc() == 5  # the only free one, either way


def test_dsp_stats_and_live_counts_lose_no_update(busy_switching):
    """Recorders on many threads and a reader at once: each snapshot holds whole records only,
    the totals are exact, and live-object counts return to zero, never read below it."""
    from qda_core import debug
    from qda_core.dsp import DspStats

    stats = DspStats()
    kind = "test_concurrency_object"
    done = threading.Event()
    per_thread = 2000

    def recorder(tid: int):
        for i in range(per_thread):
            debug.created(kind)
            stats.record(bytes_in=1, bytes_out=2, handles_in=tid, ns=3, error=i % 2 == 0)
            debug.destroyed(kind)
        return None

    def reader():
        while not done.is_set():
            s = stats.snapshot()
            n = s["invokes"]
            # every other record of each thread is an error: n/2 of them, and up to one more per thread
            if (s["bytes_in"], s["bytes_out"], s["modeled_ns"]) != (n, 2 * n, 3 * n) or \
                    not n <= 2 * s["errors"] <= n + 6:
                return ("torn", s)
            if debug.live_objects().get(kind, 0) < 0:
                return ("negative", debug.live_objects())
        return None

    failures = []
    watcher = threading.Thread(target=lambda: failures.append(reader()))
    watcher.start()
    failures += run_threads([lambda t=t: recorder(t) for t in range(6)])
    done.set()
    watcher.join()
    assert [f for f in failures if f is not None] == []
    n = 6 * per_thread
    assert stats.snapshot() == {"invokes": n, "errors": n // 2, "crashes": 0, "bytes_in": n, "bytes_out": 2 * n,
                                "handles_in": per_thread * sum(range(6)), "handles_out": 0, "modeled_ns": 3 * n}
    assert stats.invokes == n
    stats.reset()
    assert set(stats.snapshot().values()) == {0}
    assert kind not in debug.live_objects()


# A native skel on every session at once: the runtime's crash guard, the GIL released for the
# skel call and the remote_arg array built per call, with one session's skel returning the
# PD-crashed code as its answer and another's faulting.
CONC_SKEL = r"""
#include <stdint.h>
#include <string.h>

#include "qdarpc/remote_abi.h"

int qdarpc_conc_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	(void)h;
	switch (REMOTE_SCALARS_METHOD(sc)) {
	case 0:
		pra[2].h64 = 1;
		return 0;
	case 1:
		return 0;
	case 2: {  /* in0 u32 words, out0 u64 their sum */
		uint64_t s = 0;
		uint32_t v;
		size_t i;

		if (REMOTE_SCALARS_INBUFS(sc) != 1 || REMOTE_SCALARS_OUTBUFS(sc) != 1 || pra[1].buf.nLen < 8)
			return 0x8000040e;
		for (i = 0; i + 4 <= pra[0].buf.nLen; i += 4) {
			memcpy(&v, (const char *)pra[0].buf.pv + i, 4);
			s += v;
		}
		memcpy(pra[1].buf.pv, &s, 8);
		return 0;
	}
	case 3:  /* the PD-crashed code as the method's own answer: no crash */
		return (int)0x8000040d;
	case 4:
		*(volatile int *)0 = 1;
		return 0;
	}
	return 0x80000414;
}
"""
CONC_URI = "file:///libqdarpc_conc_skel.so?qdarpc_conc_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_SUM_U32, SC_ANSWER_CRASHED, SC_FAULT = 0x02010100, 0x03000000, 0x04000000
PD_CRASHED = 0x8000040D


@pytest.fixture(scope="module")
def conc_skel(tmp_path_factory):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("conc_skel")
    (out / "conc.c").write_text(CONC_SKEL)
    include = Path(__file__).resolve().parents[1] / "csrc" / "include"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared", f"-I{include}",
                    "-o", str(out / "libqdarpc_conc_skel.so"), str(out / "conc.c")],
                   check=True, capture_output=True, text=True)
    return out


@pytest.mark.needs_cc
@pytest.mark.parametrize("frontend", ["accel", "legacy"])
def test_native_skel_on_every_session_at_once(make_soc, monkeypatch, conc_skel, frontend, busy_switching):
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(conc_skel))
    soc = make_soc("default")
    crasher, answerer = 0, 1

    def work(f, tid):
        _, h = open_module(f, CONC_URI)
        for i in range(CALLS):
            words = [tid * 1_000_003 + i * 7 + k for k in range(1 + (i + tid) % 64)]
            out = bytearray(8)
            if tid == crasher and i == CALLS // 2:
                if f.invoke(h, SC_FAULT, []) != PD_CRASHED or f.invoke(h, SC_SUM_U32, [b"\1\0\0\0", out]) != PD_CRASHED:
                    return (tid, i, "the fault did not crash this PD")
                return None
            if tid == answerer and i % 10 == 0 and f.invoke(h, SC_ANSWER_CRASHED, []) != PD_CRASHED:
                return (tid, i, "the skel's answer was lost")
            ret = f.invoke(h, SC_SUM_U32, [struct.pack(f"<{len(words)}I", *words), out])
            if ret or struct.unpack("<Q", out)[0] != sum(words):
                return (tid, i, hex(ret), bytes(out))
        states = {p.state for p in soc.domain("cdsp").dsp.processes() if p.client_id == f.client_id}
        return None if states == {"alive"} else (tid, "state", states)

    assert session_threads(soc, frontend, work) == []
