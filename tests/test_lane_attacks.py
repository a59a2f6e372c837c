"""An attacker's review of the native data plane (the message pool in C, the SMMU's kept
translations, the DSP lane's native arguments, the FARF context thread-local).

Four tests reproduced bugs the review found, each failing on the code it was written against: a
take racing another thread's (the free list read before Python code ran), a buffer given back twice
kept twice, a negative pool bound crashing the process, a FARF context left set by an ending thread
never let go. The others guard a property that was attacked and held.
"""
from __future__ import annotations

import gc
import struct
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import _marshal, uapi, wire
from qda_core.errors import DeviceFault
from qda_core.mem import msgpool
from qda_core.mem.msgpool import MessagePool

sys.path.insert(0, str(Path(__file__).parent))
from cc_helpers import CC, compile_skel  # noqa: E402
PAGE = 4096

PY_SKEL = """
from qda_core.dsp import Skeleton, method

CALLS = []

class Atk(Skeleton):
    @method(3)
    def eat(self, call):
        CALLS.append(bytes(call.inbufs[0]) if call.inbufs else b"")
        return 0
"""
PY_URI = "file:///libatk_skel.so?atk_skel_handle_invoke&_modver=1.0"
NATIVE_URI = "file:///libequivn_skel.so?equivn_skel_handle_invoke&_modver=1.0"


# --- the message pool ------------------------------------------------------------------------

@pytest.fixture
def pool(make_soc):
    soc = make_soc("default")
    f = soc.open_device("cdsp")
    p = MessagePool(f.ensure_cb())
    try:
        yield p
    finally:
        p.close()
        f.close()


def test_a_buffer_taken_while_a_request_is_sized_does_not_break_the_take(pool, monkeypatch):
    """size_class() once ran Python code (page_align) inside a take, so the GIL could pass to
    another thread that took a buffer from the same pool: 6 threads invoking 4 KiB and larger
    messages on one file raised IndexError (dozens in 4 s at sys.setswitchinterval(1e-6)).
    A take now sizes its request in C: the module's size_class (here one that would take a
    page buffer, as "another thread") is not called, and the take finds its class's buffer."""
    a, b = pool.alloc(PAGE), pool.alloc(2 * PAGE)
    a.release()
    b.release()
    real = msgpool.size_class
    taken = []

    def sizing(size):
        if not taken:
            taken.append(pool.alloc(PAGE))  # "another thread" takes the free page buffer
        return real(size)

    monkeypatch.setattr(msgpool, "size_class", sizing)
    got = None
    try:
        got = pool.alloc(2 * PAGE)
        assert got is b and not taken  # the free buffer of its class, sized without Python code
    finally:
        monkeypatch.setattr(msgpool, "size_class", real)
        for buf in taken + ([got] if got is not None else []):
            buf.release()


def test_a_buffer_given_back_twice_is_kept_once(pool):
    c = pool.alloc(PAGE)
    c.release()
    try:
        c.release()  # a misuse: ignored or refused, never kept twice
    except Exception:  # noqa: BLE001 - refusing it is as good as ignoring it
        pass
    free = pool.stats()["free"]
    d1, d2 = pool.alloc(PAGE), pool.alloc(PAGE)
    same = d1 is d2
    d1.release()
    if not same:
        d2.release()
    assert free == 1 and not same


def test_pool_bounds_changed_at_runtime_are_obeyed(pool, monkeypatch):
    """POOL_MAX_BUFFERS, POOL_MAX_BYTES and CLASS_DEPTH are read on every give back."""
    bufs = [pool.alloc(PAGE) for _ in range(6)] + [pool.alloc(3 * PAGE)]
    monkeypatch.setattr(msgpool, "CLASS_DEPTH", 2)
    for b in bufs:
        b.release()
    s = pool.stats()
    assert s["free"] == 3 and s["free_bytes"] == 2 * PAGE + 3 * PAGE
    monkeypatch.setattr(msgpool, "POOL_MAX_BUFFERS", 0)
    pool.alloc(PAGE).release()
    assert pool.stats()["free"] == 0 and pool.stats()["free_bytes"] == 0
    monkeypatch.setattr(msgpool, "POOL_MAX_BUFFERS", 16)
    monkeypatch.setattr(msgpool, "POOL_MAX_BYTES", 2 * PAGE)
    pool.alloc(4 * PAGE).release()  # larger than the whole pool: dropped
    a, b = pool.alloc(PAGE), pool.alloc(PAGE)
    a.release()
    b.release()
    s = pool.stats()
    assert s["free"] == 2 and s["dropped"] == 1 and s["free_bytes"] == 2 * PAGE


def test_a_reused_buffer_shows_no_stale_bytes(pool):
    """What one call wrote in a message buffer is not shown to the next (smaller) one."""
    big = pool.alloc(2 * PAGE)
    big.backing.view[:2 * PAGE] = b"\xAA" * (2 * PAGE)
    big.dirty = 2 * PAGE
    big.release()
    again = pool.alloc(PAGE + 1)  # same class, smaller window
    try:
        assert again is big
        assert bytes(again.backing.view[PAGE:2 * PAGE]) == bytes(PAGE)  # the window's tail and beyond
    finally:
        again.release()


def test_a_negative_buffer_bound_does_not_crash_the_process():
    code = textwrap.dedent("""
        from qda_core.soc import Soc
        from qda_core.mem import msgpool
        f = Soc("default").open_device("cdsp")
        p = msgpool.MessagePool(f.ensure_cb())
        msgpool.POOL_MAX_BUFFERS = -1
        try:
            p.alloc(4096).release()
        except Exception:
            pass
        print("alive")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stderr[-500:])


# --- the FARF context thread-local -----------------------------------------------------------

def test_a_context_left_set_by_an_ending_thread_is_let_go():
    from qda_core.dsp import dsprt

    class Ctx:
        pass

    c = Ctx()
    ref = weakref.ref(c)
    t = threading.Thread(target=setattr, args=(dsprt.context, "ctx", c))  # (a Thread drops its args when done)
    t.start()
    t.join()
    del c
    gc.collect()
    assert ref() is None


def test_the_context_is_restored_around_nested_sets_per_thread():
    from qda_core.dsp import dsprt

    class Ctx:
        pass

    a, b = Ctx(), Ctx()
    seen = []

    def run():
        dsprt.context.ctx = a
        dsprt.context.ctx = b
        seen.append(dsprt.context.ctx)
        dsprt.context.ctx = None
        seen.append(dsprt.context.ctx)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [b, None] and dsprt.context.ctx is None


# --- the SMMU ---------------------------------------------------------------------------------

@pytest.fixture
def accel(make_soc):
    soc = make_soc("default")
    f = soc.open_device("cdsp")
    try:
        yield soc, f
    finally:
        f.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(off=st.one_of(st.integers(0, 3 * PAGE), st.integers(0, (1 << 32) - 1)),
       length=st.one_of(st.integers(0, 3 * PAGE), st.integers(0, (1 << 64) - 1),
                        st.sampled_from([(1 << 64) - 1, (1 << 64) - PAGE, (1 << 32), (1 << 32) - 1])))
def test_a_view_never_leaves_its_object(accel, off, length):
    """Any (address, length) within a bank: a view of exactly ``length`` bytes inside the
    object the address lies in, or DeviceFault; never memory past it (no wrap)."""
    soc, f = accel
    g = f.gem_create(2 * PAGE)
    try:
        obj = f.lookup(g)
        dev = obj.dma_addr
        addr = (dev & ~0xFFFFFFFF) | ((dev + off) & 0xFFFFFFFF)
        try:
            mv = soc.domain("cdsp").smmu.view(addr, length, True)
        except DeviceFault:
            assert length and not (dev <= addr and addr - dev + length <= obj.size)
        else:
            with mv:
                assert mv.nbytes == length
                if length:
                    assert dev <= addr and addr - dev + length <= obj.size
    finally:
        f.gem_close(g)


def test_a_translation_never_outlives_its_object(accel):
    """An object freed and another made at its IOVA (same bank, kept translations of both
    sizes before): the SMMU shows the new object's bytes and bounds, never the old ones."""
    soc, f = accel
    g = f.gem_create(2 * PAGE)
    obj = f.lookup(g)
    dev = obj.dma_addr
    with soc.domain("cdsp").smmu.view(dev, 2 * PAGE, True) as mv:
        mv[:] = b"\x5A" * (2 * PAGE)
    f.gem_close(g)
    with pytest.raises(DeviceFault):
        soc.domain("cdsp").smmu.view(dev, 1, False)
    g2 = f.gem_create(PAGE)
    try:
        assert f.lookup(g2).dma_addr == dev
        with soc.domain("cdsp").smmu.view(dev, PAGE, False) as mv:
            assert bytes(mv) == bytes(PAGE)
        with pytest.raises(DeviceFault):
            soc.domain("cdsp").smmu.view(dev, PAGE + 1, False)
    finally:
        f.gem_close(g2)


def test_a_promoted_slots_translation_sees_the_promoted_pages(accel):
    """An arena slot translated, then promoted (its own file mapped over the same address):
    the kept translation and the object's own pages are the same memory."""
    soc, f = accel
    g = f.gem_create(PAGE)
    try:
        obj = f.lookup(g)
        with soc.domain("cdsp").smmu.view(obj.dma_addr, PAGE, True) as mv:
            mv[:4] = b"pre!"
        obj.promote()
        with soc.domain("cdsp").smmu.view(obj.dma_addr, PAGE, True) as mv:
            assert bytes(mv[:4]) == b"pre!"
            mv[4:8] = b"post"
        assert bytes(obj.backing.view[:8]) == b"pre!post"
    finally:
        f.gem_close(g)


# --- crafted payloads at the DSP's lane ------------------------------------------------------

def _session(soc, uri):
    """An accel file with a PD and ``uri`` open, its lane, and another thread's file (another
    context bank) holding an object: (file, handle, proc, lane, origin, other file, its object)."""
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    rv, h = open_module(f, uri)
    assert rv == 0
    dsp = soc.domain("cdsp").dsp
    proc = next(p for p in dsp._procs.values() if h in p.modules)
    lane = f.device.fastrpc.channel._remote._lane
    own = wire.Origin(proc.client_id, f._origin(False).sids, False)
    got = {}

    def other():  # a file opened by another thread: another context bank
        got["f"] = soc.open_device("cdsp")
        got["g"] = got["f"].gem_create(PAGE)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    return f, h, proc, lane, own, got["f"], got["g"]


def _crafted(f, sc, refs_addr, length, mg):
    """A message of one by-reference in-buffer at ``refs_addr`` in GEM ``mg``: its device address."""
    mobj = f.lookup(mg)
    descs = struct.pack("<QQiI", 0x1000, length, 3, 0)
    refs = struct.pack("<QQ", refs_addr, length)
    _marshal.pack(sc, descs, refs, mobj.backing.view, mobj.backing.addr, mobj.dma_addr)
    return mobj.dma_addr


def _foreign_by_reference(soc, uri):
    """By-reference arguments at another session's IOVA, past an object's end and at an
    unmapped IOVA: never served natively, the skel never runs, the PD takes the SMMU fault."""
    f, h, proc, lane, own, fo, og = _session(soc, uri)
    try:
        assert f.cb.sid != fo.cb.sid
        sc = 3 << 24 | 1 << 16
        mg = f.gem_create(2 * PAGE)
        mine = f.gem_create(PAGE)
        targets = [fo.lookup(og).dma_addr,                           # another session's object
                   f.lookup(mine).dma_addr + PAGE - 8,               # straddling my object's end
                   (f.cb.sid << 32) | 0xFFFF_F000]                   # nothing mapped there
        for k, target in enumerate(targets):
            if proc.state != "alive":
                break
            dev = _crafted(f, sc, target, 64, mg)
            replied, reference, ctx, rv = lane.receive(proc.client_id, 1, 0x10 + k, h, sc, dev, 2 * PAGE, own)
            assert replied and reference and ctx == 0x10 + k, (k, target)
            assert proc.state == "crashed"  # the fault: what an SMMU fault gives the PD
        f.gem_close(mine)
        f.gem_close(mg)
    finally:
        fo.close()
        f.close()


def test_a_python_skel_never_sees_another_sessions_memory(make_soc, tmp_path, monkeypatch):
    (tmp_path / "libatk_skel.py").write_text(PY_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    _foreign_by_reference(make_soc("default"), PY_URI)


@pytest.fixture
def native_skel(tmp_path, monkeypatch):
    compile_skel("equiv", tmp_path / "libequivn_skel.so")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


@pytest.mark.needs_cc
@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_a_native_skel_never_sees_another_sessions_memory(make_soc, native_skel):
    _foreign_by_reference(make_soc("default"), NATIVE_URI)


@pytest.mark.needs_cc
@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_a_native_skels_zero_length_and_own_by_reference_args_are_served_natively(make_soc, native_skel):
    """A zero-length by-reference argument anywhere (even another SID) and a by-reference one
    in the session's own object are served by the lane itself, the PD alive."""
    f, h, proc, lane, own, fo, og = _session(make_soc("default"), NATIVE_URI)
    try:
        sc = 3 << 24 | 1 << 16
        mg = f.gem_create(2 * PAGE)
        mine = f.gem_create(PAGE)
        for k, (target, n) in enumerate([(fo.lookup(og).dma_addr, 0), (f.lookup(mine).dma_addr, 64),
                                         (f.lookup(mine).dma_addr + PAGE - 64, 64)]):
            dev = _crafted(f, sc, target, n, mg)
            replied, reference, ctx, rv = lane.receive(proc.client_id, 1, 0x20 + k, h, sc, dev, 2 * PAGE, own)
            assert (replied, reference, ctx, rv) == (True, False, 0x20 + k, 0), (k, target, n)
        assert proc.state == "alive"
        f.gem_close(mine)
        f.gem_close(mg)
    finally:
        fo.close()
        f.close()
