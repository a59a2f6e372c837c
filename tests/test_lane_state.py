"""What the native lanes keep of the DSP, a PD and a file: each cached item is taken again when
what it was read from changes, and each C field is the only copy of its Python attribute."""
from __future__ import annotations

import errno
import gc
import sys
import weakref
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import faults, uapi, wire
from qda_core.dsp import aee

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import plane  # noqa: E402

SKELS = {
    "liblane_a_skel.py": """
from qda_core.dsp import Skeleton, method

class A(Skeleton):
    @method(2)
    def who(self, call):
        return 0xA
""",
    "liblane_b_skel.py": """
from qda_core.dsp import Skeleton, method

class B(Skeleton):
    @method(2)
    def who(self, call):
        return 0xB
""",
}
URI = "file:///liblane_{}_skel.so?lane_{}_skel_handle_invoke&_modver=1.0"
SC_WHO = 2 << 24


@pytest.fixture
def pd(make_soc, tmp_path, monkeypatch):
    """An accel file with a PD, modules A and B open in it: (file, handles, the PD, the DSP)."""
    for name, text in SKELS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    soc = make_soc("default")
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    h = {}
    for k in "ab":
        rv, h[k] = open_module(f, URI.format(k, k))
        assert rv == 0
    dsp = soc.domain("cdsp").dsp
    proc = next(p for p in dsp._procs.values() if h["a"] in p.modules)
    try:
        yield f, h, proc, dsp
    finally:
        f.close()


def test_a_module_replaced_at_its_handle_is_the_one_called(pd):
    """The lane keeps the module instance it last called per PD: another one at the handle
    (a new ModuleInstance) is called, not the one kept."""
    f, h, proc, _ = pd
    assert f.invoke(h["a"], SC_WHO) == 0xA
    assert f.invoke(h["a"], SC_WHO) == 0xA
    proc.modules[h["a"]] = proc.modules[h["b"]]
    assert f.invoke(h["a"], SC_WHO) == 0xB


def test_every_new_sender_of_a_pd_is_checked_again(pd):
    """The lane keeps the sender it last found to be a PD's client: another sender naming
    that client in the header is refused as the reference refuses it."""
    f, h, proc, _ = pd
    lane = f.device.fastrpc.channel._remote._lane
    cid = proc.client_id
    sids = f._origin(False).sids
    own, other = wire.Origin(cid, sids, False), wire.Origin(cid + 100, sids, False)
    assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, 0, 0, own) == (True, False, 0x10, 0xA)
    replied, _, ctx, rv = lane.receive(cid, 1, 0x20, h["a"], SC_WHO, 0, 0, other)
    assert (replied, ctx, rv & 0xFFFF_FFFF) == (True, 0x20, aee.ERR_NOT_OWNER)
    assert lane.receive(cid, 1, 0x30, h["a"], SC_WHO, 0, 0, own) == (True, False, 0x30, 0xA)


def test_a_pds_state_and_poll_mode_are_one_c_copy(pd):
    f, h, proc, _ = pd
    assert f.invoke(h["a"], SC_WHO) == 0xA
    proc.state = "exited"
    assert proc._st.state == "exited" and not proc.alive
    assert f.invoke(h["a"], SC_WHO) == aee.ERR_PD_CRASHED
    proc.poll_mode = True
    assert proc._st.poll_mode is True


def test_the_dsps_switches_are_one_c_copy(pd):
    f, h, proc, dsp = pd
    gen, procs_gen = dsp._generation, dsp._procs_gen
    dsp._generation += 1
    dsp._procs_gen += 2
    assert (dsp._st.generation, dsp._st.procs_gen) == (gen + 1, procs_gen + 2)
    assert dsp._st.cost is dsp.cost and dsp._st.stats is dsp.stats and dsp._st.faults is dsp.faults
    assert f.invoke(h["a"], SC_WHO) == 0xA  # the PD table taken again: the same PD


def test_a_pd_table_change_is_seen_by_the_lane(pd):
    """A PD removed from the DSP's table (release) after the lane cached it: no PD now."""
    f, h, proc, dsp = pd
    assert f.invoke(h["a"], SC_WHO) == 0xA
    with dsp._lock:
        dsp._procs_gen += 1
        key = next(k for k, p in dsp._procs.items() if p is proc)
        del dsp._procs[key]
        dsp._procs_gen += 1
    assert f.invoke(h["a"], SC_WHO) == aee.ERR_NO_PD


def test_a_legacy_files_pd_and_poll_mode_are_its_lanes(make_soc):
    soc = make_soc("default")
    f = soc.open("/dev/fastrpc-cdsp")
    try:
        assert (f.pd, f.poll_mode) == (wire.ROOT_PD, False) == (f._lane.pd, f._lane.poll_mode)
        f.pd, f.poll_mode = wire.USER_PD, True
        assert (f._lane.pd, f._lane.poll_mode) == (wire.USER_PD, True)
    finally:
        f.close()


def _lane_of(f, proc):
    return f.device.fastrpc.channel._remote._lane, proc.client_id, f._origin(False)


@pytest.mark.parametrize("off,size", [(0, 8193), (4096, 2**64 - 4096), (4096, 2**64 - 1), (8192, 1)],
                         ids=["past-end", "wraps", "max", "after"])
def test_a_message_range_outside_its_object_goes_to_the_reference(pd, off, size):
    """A call with no arguments has its message address checked by the SMMU's C translation
    (``_cdev.DevMemory.span``): a range that runs past its object, however large (no
    wrap-around), is the reference's to answer (an SMMU fault, which crashes the PD)."""
    f, h, proc, _ = pd
    lane, cid, own = _lane_of(f, proc)
    dev = f.lookup(f.gem_create(8192)).dma_addr
    assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, dev, 8192, own) == (True, False, 0x10, 0xA)
    assert lane.receive(cid, 1, 0x11, h["a"], SC_WHO, dev + 4096, 4096, own) == (True, False, 0x11, 0xA)
    replied, reference, _, rv = lane.receive(cid, 1, 0x12, h["a"], SC_WHO, dev + off, size, own)
    assert reference and rv & 0xFFFF_FFFF == aee.ERR_PD_CRASHED


def test_the_translation_kept_follows_unmap_and_remap(pd):
    """The SMMU keeps its last translation: an object mapped anew at its address is translated
    afresh (its own size), and an unmapped one is not found."""
    f, h, proc, _ = pd
    lane, cid, own = _lane_of(f, proc)
    g = f.gem_create(8192)
    dev = f.lookup(g).dma_addr
    assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, dev, 8192, own) == (True, False, 0x10, 0xA)
    f.gem_close(g)
    g2 = f.gem_create(4096)
    assert f.lookup(g2).dma_addr == dev  # the lowest free IOVA again
    assert lane.receive(cid, 1, 0x14, h["a"], SC_WHO, dev, 4096, own) == (True, False, 0x14, 0xA)
    assert lane.receive(cid, 1, 0x15, h["a"], SC_WHO, dev, 8192, own)[1]  # past the new, smaller object


def test_an_unmapped_objects_address_goes_to_the_reference(pd):
    f, h, proc, _ = pd
    lane, cid, own = _lane_of(f, proc)
    g = f.gem_create(4096)
    dev = f.lookup(g).dma_addr
    assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, dev, 4096, own) == (True, False, 0x10, 0xA)
    f.gem_close(g)
    assert lane.receive(cid, 1, 0x13, h["a"], SC_WHO, dev, 4096, own)[1]


def test_a_files_lane_takes_message_buffers_from_its_pool_in_c(pd):
    """The lane holds the file's pool itself (the engine takes and gives back buffers through
    its C interface); the pool called is its alloc, for the reference engine."""
    from qda_core._cdev import MsgSource

    f, h, _, _ = pd
    assert f.invoke(h["a"], SC_WHO) == 0xA
    assert f._lane.pool_alloc is f._pool and isinstance(f._pool, MsgSource)
    before = f._pool.stats()
    for _ in range(5):
        assert f.invoke(h["a"], SC_WHO) == 0xA
    after = f._pool.stats()
    assert after["created"] == before["created"] and after["reused"] == before["reused"] + 5
    buf = f._pool(100)
    try:
        assert buf.obj.size == 4096 and bytes(buf.backing.view[:4096]) == bytes(4096)
    finally:
        buf.release()


def test_the_farf_context_is_per_thread_and_held():
    """``dsprt.context.ctx`` (a C thread-local the native lane sets around each skel call)
    is None by default, each thread's own, and keeps its object alive while set."""
    import gc
    import threading
    import weakref

    from qda_core.dsp import dsprt

    class Ctx:
        pass

    assert dsprt.context.ctx is None
    mine = Ctx()
    dsprt.context.ctx = mine
    seen = []
    t = threading.Thread(target=lambda: seen.append(dsprt.context.ctx))
    t.start()
    t.join()
    assert seen == [None] and dsprt.context.ctx is mine
    ref = weakref.ref(mine)
    del mine
    gc.collect()
    assert ref() is not None
    dsprt.context.ctx = None
    gc.collect()
    assert ref() is None and dsprt.context.ctx is None


def test_translations_of_several_objects_are_kept_until_the_bank_changes(pd):
    """The SMMU keeps a few translations per bank (a call's message and its by-reference
    buffers): calls alternating between objects are translated right, and after one of them is
    unmapped its address is not found while the other's still is."""
    f, h, proc, _ = pd
    lane, cid, own = _lane_of(f, proc)
    gs = [f.gem_create(4096 * (k + 1)) for k in range(6)]
    devs = [f.lookup(g).dma_addr for g in gs]
    for _ in range(3):
        for k, dev in enumerate(devs):
            size = 4096 * (k + 1)
            assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, dev, size, own) == (True, False, 0x10, 0xA)
    f.gem_close(gs[0])
    assert lane.receive(cid, 1, 0x11, h["a"], SC_WHO, devs[1], 8192, own) == (True, False, 0x11, 0xA)
    assert lane.receive(cid, 1, 0x12, h["a"], SC_WHO, devs[0], 4096, own)[1]


def test_a_reserved_iova_not_yet_attached_is_an_smmu_fault(pd):
    """An IOVA reserved for an object being made (or being unmapped) is not mapped: the SMMU
    answers DeviceFault, not an error of its own bookkeeping."""
    from qda_core.errors import DeviceFault

    f, _, _, dsp = pd
    cb = f.cb
    iova = cb.reserve(4096)
    try:
        smmu = dsp.memory  # the Smmu
        with pytest.raises(DeviceFault):
            smmu.view(cb.sid << 32 | iova, 16, False)
    finally:
        cb.unreserve(iova)


def test_a_channels_up_and_counts_are_one_c_copy(pd):
    """``Channel.up``, ``sent`` and ``received`` are its C state's fields, which the engine's
    lane reads and counts: a call on the native lane counts one message and one reply, a
    removed channel fails the next call with ENODEV on both planes' entry."""
    f, h, _, _ = pd
    ch = f.device.fastrpc.channel
    sent, received = ch.sent, ch.received
    assert f.invoke(h["a"], SC_WHO) == 0xA
    assert (ch.sent, ch.received) == (ch._st.sent, ch._st.received) == (sent + 1, received + 1)
    ch.up = False
    try:
        assert ch._st.up is False
        with pytest.raises(OSError) as ei:
            f.invoke(h["a"], SC_WHO)
        assert ei.value.errno == errno.ENODEV
        assert (ch.sent, ch.received) == (sent + 1, received + 1)  # nothing sent
    finally:
        ch.up = True


def test_the_armed_count_follows_every_rule_set(pd):
    """``faults._ARMED`` counts the rule sets that hold a rule (the lanes skip their fault
    checks while it is 0): adding, removing, clearing and dropping a set keep it exact, and an
    armed rule set makes the DSP's lane hand its messages to the reference."""
    f, h, _, dsp = pd
    n0 = faults._ARMED.n
    a, b = faults.Faults(), faults.Faults("crash:nothing_here")
    assert faults._ARMED.n == n0 + 1
    rules = a.add("crash:nothing_here")
    a.add("crash:nothing_else")
    assert faults._ARMED.n == n0 + 2
    a.remove(rules)
    assert faults._ARMED.n == n0 + 2  # one rule is left in a
    a.clear()
    b.clear()
    a.clear()
    assert faults._ARMED.n == n0
    b.add("crash:nothing_here")
    del b
    gc.collect()
    assert faults._ARMED.n == n0  # a set dropped while armed
    lane = f.device.fastrpc.channel._remote._lane
    cid = next(p for p in dsp._procs.values() if h["a"] in p.modules).client_id
    origin = f._origin(False)
    with dsp.faults.inject("crash:no_such_module"):
        assert faults._ARMED.n == n0 + 1
        # the reference answers (a rule that matches nothing leaves the result alone)
        assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, 0, 0, origin) == (True, True, 0x10, 0xA)
    assert faults._ARMED.n == n0
    assert lane.receive(cid, 1, 0x10, h["a"], SC_WHO, 0, 0, origin) == (True, False, 0x10, 0xA)


@pytest.mark.parametrize("name", ["native", "py"])
def test_a_dropped_soc_is_freed_on_both_planes(name, fd_guard):
    """A SoC is a cycle (its DSPs' SSR callbacks name it); the native lanes hide no reference
    in it from the collector (the endpoint capsule borrows its lane), so a dropped SoC, and
    the fault rules armed in it, are freed."""
    from qda_core.soc import Soc

    with plane(name):
        soc = Soc("default")
        soc.faults.add("drop:cdsp@2")
        f = soc.open_device("cdsp")
        try:
            assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
            assert f._lane.native == (name == "native")
        finally:
            f.close()
    n = faults._ARMED.n
    ref, rules = weakref.ref(soc), weakref.ref(soc.faults)
    del soc, f
    gc.collect()
    assert ref() is None and rules() is None
    assert faults._ARMED.n == n - 1
