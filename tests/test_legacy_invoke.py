"""End to end through /dev/fastrpc-cdsp: calculator, copy vs by-reference buffers, the per-fd
map cache and its lifetime (buffers, handles, fdlist, MEM_MAP), cyclic context ids, and the
legacy-vs-QDA differences seen with the same workload on both drivers against one DSP."""
import errno
import os
import struct
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from libadsprpc_compat.remotectl import close_module, open_module
from qda_core import wire
from qda_core.accel import GemRef
from qda_core.dsp import aee
from qda_core.legacy import DmaBufRef, HandleArg, dmabuf_mmap

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import (
    CALC,
    SC_CHECKSUM,
    SC_INC,
    SC_MAX,
    SC_NULL,
    SC_SUM,
    TEST,
    UNSIGNED,
    DspTap,
    raises_errno,
)

CDSP = "/dev/fastrpc-cdsp"

PEEK_SKEL = """
from qda_core.dsp import Skeleton, method

class Peek(Skeleton):
    @method(2, sc=0x02000110)
    def peek(self, call):
        h = call.inhandles[0]
        out = call.outbufs[0]
        n = min(len(out), h.length)
        out[:n] = call.process.memory.view(h.map_addr + h.offset, n, False)
        return 0
"""
PEEK = "file:///libpeek_skel.so?peek_skel_handle_invoke&_modver=1.0"
SC_PEEK = 0x02000110  # 0 in, 1 out, 1 in-handle


def calc_sum_max(f, h, vec_arg, n=1000):
    prim = struct.pack("<i", n)
    out8, out4 = bytearray(8), bytearray(4)
    assert f.invoke(h, SC_SUM, [prim, vec_arg, out8]) == 0
    assert f.invoke(h, SC_MAX, [prim, vec_arg, out4]) == 0
    return struct.unpack("<q", out8)[0], struct.unpack("<i", out4)[0]


def test_calculator_plain_dmabuf_and_memfd(upd):
    ret, h = open_module(upd, CALC)
    assert ret == 0 and h
    vec = np.arange(1000, dtype=np.int32)
    assert calc_sum_max(upd, h, vec) == (499500, 999)

    fd = upd.alloc_dma_buff(4000)
    view = dmabuf_mmap(fd)
    np.frombuffer(view, np.int32, 1000)[:] = vec
    assert calc_sum_max(upd, h, DmaBufRef(fd, view[:4000])) == (499500, 999)

    mfd = os.memfd_create("vec", os.MFD_ALLOW_SEALING)  # importable: its size can be sealed
    os.ftruncate(mfd, 8192)
    mview = dmabuf_mmap(mfd)
    np.frombuffer(mview, np.int32, 1000, offset=4096)[:] = vec   # second page of the buffer
    assert calc_sum_max(upd, h, DmaBufRef(mfd, mview[4096:8096])) == (499500, 999)
    assert upd.maps == {}                        # buffer maps end with their invoke context
    assert close_module(upd, h) == 0
    view.release()
    mview.release()
    os.close(fd)
    os.close(mfd)


def test_copy_vs_by_reference(upd):
    _, h = open_module(upd, TEST)
    plain = bytearray(b"\x10" * 64)
    assert upd.invoke(h, SC_INC, [plain]) == 0
    assert plain == b"\x01" * 64                 # the DSP saw a zeroed copy
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[:64] = b"\x10" * 64
    assert upd.invoke(h, SC_INC, [DmaBufRef(fd, view[:64])]) == 0
    assert bytes(view[:64]) == b"\x11" * 64      # the DSP worked on the caller's pages
    view.release()
    os.close(fd)


def test_bad_fd_in_invoke_is_einval(upd):
    _, h = open_module(upd, TEST)
    buf = bytearray(64)
    with raises_errno(errno.EINVAL):
        upd.invoke(h, SC_INC, [DmaBufRef(999, buf)])
    r, w = os.pipe()
    try:
        with raises_errno(errno.EINVAL):
            upd.invoke(h, SC_INC, [DmaBufRef(r, buf)])
    finally:
        os.close(r)
        os.close(w)
    # fd 0 / -1 or length 0: no map at all, the buffer is copied
    assert upd.invoke(h, SC_INC, [DmaBufRef(0, buf)]) == 0 and buf == b"\x01" * 64
    assert upd.maps == {}


def test_map_cache_reuse_with_mem_map(upd):
    _, h = open_module(upd, TEST)
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[:4] = b"\x01\x02\x03\x04"
    vaddr = upd.mem_map(fd, 4096)
    m = upd.map_of(fd)
    assert m.refs == 1
    out = bytearray(8)
    for _ in range(3):
        assert upd.invoke(h, SC_CHECKSUM, [DmaBufRef(fd, view[:4]), out]) == 0
        assert struct.unpack("<Q", out)[0] == 10
        assert upd.map_of(fd) is m and m.refs == 1  # reused, per-call reference dropped again
    upd.mem_unmap(fd, vaddr, 4096)
    assert upd.maps == {}
    view.release()
    os.close(fd)


def test_map_cache_identifies_the_buffer_not_the_fd_number(upd):
    """Issue 8 item 4: a cached map is bound to the fd number *and* its dma-buf (as
    ``fastrpc_map_lookup`` compares the buffer): once the number is reused for another buffer,
    an invoke reaches the new buffer's pages, never the old one's."""
    _, h = open_module(upd, TEST)
    fd = upd.alloc_dma_buff(4096)
    old = dmabuf_mmap(fd)
    old[:4] = b"\x05\x05\x05\x05"
    vaddr = upd.mem_map(fd, 4096)                # keeps the map of the old buffer alive
    old_map = upd.map_of(fd)
    other = os.memfd_create("other", os.MFD_ALLOW_SEALING)
    os.ftruncate(other, 4096)
    os.dup2(other, fd)                           # same number, different buffer
    os.close(other)
    assert upd.map_of(fd) is None                # the cached map is not this buffer's
    new = dmabuf_mmap(fd)
    new[:4] = b"\x01\x01\x01\x01"
    out = bytearray(8)
    assert upd.invoke(h, SC_CHECKSUM, [DmaBufRef(fd, new[:4]), out]) == 0
    assert struct.unpack("<Q", out)[0] == 4      # the NEW buffer's bytes
    upd.mem_unmap(-1, vaddr, 4096)               # the old map is still there, by address
    assert old_map.refs == 0
    old.release()
    new.release()
    os.close(fd)


def test_handle_maps_live_until_fdlist_or_close(soc, upd, tmp_path, monkeypatch):
    (tmp_path / "libpeek_skel.py").write_text(PEEK_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    ret, h = open_module(upd, PEEK)
    assert ret == 0
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[:8] = b"handle!!"
    out = bytearray(8)
    assert upd.invoke(h, SC_PEEK, [out, HandleArg(fd, 0, 8)]) == 0
    assert out == b"handle!!"                    # the DSP reached the buffer through its map
    m = upd.map_of(fd)
    assert m.refs == 1                           # kept after the context ended
    assert upd.invoke(h, SC_PEEK, [out, HandleArg(fd, 2, 4)]) == 0
    assert out[:4] == b"ndle" and upd.map_of(fd) is m and m.refs == 2
    # the DSP lists the fd in its reply's fdlist: one reference dropped per listing
    dsp = soc.domain("cdsp").dsp
    tap = DspTap(dsp)
    tap.fdlist[h] = [fd]
    monkeypatch.setattr(dsp, "receive", tap)
    no_handle = HandleArg(-1, 0, 0)              # this call maps nothing itself
    assert upd.invoke(h, SC_PEEK, [out, no_handle]) == 0
    assert m.refs == 1 and upd.map_of(fd) is m
    assert upd.invoke(h, SC_PEEK, [out, no_handle]) == 0
    assert fd not in upd.maps                    # last reference gone
    assert upd.invoke(h, SC_PEEK, [out, no_handle]) == 0   # listing an unknown fd is harmless
    monkeypatch.undo()
    assert upd.invoke(h, SC_PEEK, [out, HandleArg(fd, 0, 8)]) == 0
    assert upd.map_of(fd) is not None                       # held again; close releases it
    view.release()
    os.close(fd)


def test_context_ids_are_cyclic_per_channel(make_soc, monkeypatch):
    """misc-7.2's ctx word, id << 4 (test_legacy_revisions.py: every revision's)."""
    soc = make_soc("default", kernel="legacy:misc-7.2")
    with soc.open(CDSP) as upd:
        assert upd.init_create(attrs=UNSIGNED) == 0
        _context_ids_are_cyclic(soc, upd, monkeypatch)


def _context_ids_are_cyclic(soc, upd, monkeypatch):
    _, h = open_module(upd, TEST)
    dsp = soc.domain("cdsp").dsp
    tap = DspTap(dsp)
    monkeypatch.setattr(dsp, "receive", tap)
    with soc.open(CDSP) as g:                    # a second file shares the channel's id space
        assert g.init_create(attrs=UNSIGNED) == 0
        _, hg = open_module(g, TEST)
        for _ in range(130):
            assert upd.invoke(h, SC_NULL, []) == 0
            assert g.invoke(hg, SC_NULL, []) == 0
    ids = [(m.ctx >> 4) & 0xFF for m in tap.msgs]
    start = ids[0]
    assert ids == [(start - 1 + k) % 255 + 1 for k in range(len(ids))]  # 1..255, then wraps to 1
    assert len(ids) > 255 and 255 in ids and ids[ids.index(255) + 1] == 1
    assert {m.ctx & 0xF for m in tap.msgs if m.handle in (h, hg)} == {wire.USER_PD}
    assert {m.client_id for m in tap.msgs if m.handle in (h, hg)} == {upd.client_id, g.client_id}


def test_same_workload_on_both_drivers(soc):
    """A/B: the calculator through /dev/accel/accelN and /dev/fastrpc-cdsp at once, one DSP."""
    dom = soc.domain("cdsp")
    acc = soc.open(dom.accel.path)
    leg = soc.open(CDSP)
    try:
        assert acc.init_create(attrs=UNSIGNED) == 0 and leg.init_create(attrs=UNSIGNED) == 0
        (_, ha), (_, hl) = open_module(acc, CALC), open_module(leg, CALC)
        procs = dom.dsp.processes()
        assert sorted((p.channel, p.client_id) for p in procs) == [("accel", 1), ("legacy", 1)]
        assert all(len(p.modules) == 1 for p in procs)
        # buffers by reference: a GEM handle on QDA, a dma-buf fd on legacy
        gh = acc.gem_create(4000)
        gview = acc.mmap(acc.gem_mmap_offset(gh), 4096)
        fd = leg.alloc_dma_buff(4000)
        lview = dmabuf_mmap(fd)

        def work(k):
            vec = np.arange(1000, dtype=np.int32) * k
            want = (499500 * k, 999 * k if k > 0 else 0)
            ok = calc_sum_max(acc, ha, vec) == want and calc_sum_max(leg, hl, vec) == want
            return ok

        with ThreadPoolExecutor(4) as ex:
            assert all(ex.map(work, range(-3, 20)))
        np.frombuffer(gview, np.int32, 1000)[:] = np.arange(1000)
        np.frombuffer(lview, np.int32, 1000)[:] = np.arange(1000)
        assert calc_sum_max(acc, ha, GemRef(gh, gview[:4000])) == (499500, 999)
        assert calc_sum_max(leg, hl, DmaBufRef(fd, lview[:4000])) == (499500, 999)
        # visible differences
        with raises_errno(errno.EPERM):
            leg.invoke(1, 0x00010000, [struct.pack("<i", 1)])   # legacy refuses handle 1
        # QDA forwards it: the DSP itself answers (the PD of that client id already exists)
        assert acc.invoke(1, 0x00010000, [struct.pack("<i", acc.client_id)]) == aee.to_u32(aee.ERR_PD_EXISTS)
        with raises_errno(errno.EINVAL):
            leg.req_munmap(0x1234000, 4096)                          # legacy: not in the list
        with pytest.raises(OSError):
            acc.munmap(1, vaddrout=0x1234000, size=4096)         # QDA: forwarded, the DSP says no
        gview.release()
        lview.release()
        os.close(fd)
    finally:
        acc.close()
        leg.close()
    assert dom.dsp.processes() == []
    assert dom.bus.free_count == len(dom.bus.cbs)


def test_concurrent_invokes_on_one_file(upd):
    _, h = open_module(upd, CALC)
    errors = []

    def run(k):
        try:
            for _ in range(20):
                vec = np.full(100, k, np.int32)
                assert calc_sum_max(upd, h, vec, 100) == (100 * k, k)
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
