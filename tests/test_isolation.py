"""Isolation between sessions (issue 8): each test is an attack that worked before the fix.

Two accel files opened on two threads stand for two processes (the RFC shares a context bank
only between files of one opener thread); legacy files each own a session. Every test checks
both that the attack fails with the documented code and that the victim is untouched.
"""
import errno
import os
import pathlib
import struct
import sys
import threading

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import debug, trace, uapi, wire
from qda_core.accel import GemRef
from qda_core.dsp import aee
from qda_core.legacy.file import DmaBufRef, dmabuf_mmap
from qda_core.wire import MEM_MAP_REQ, MMAP_REQ, PHY_PAGE, scalars

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from skel_helpers import PEEK, PEEK_SKEL, SC_NAP, SC_PEEK  # noqa: E402

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_ECHO = 0x03010100
SC_CHECKSUM = 0x07010100
UNSIGNED = 0x8
MARK_A = b"\xaa" * 16



def on_thread(fn):
    """Run ``fn`` on a new thread (a new opener pid) and return its result."""
    box = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    return box[0]


@pytest.fixture
def peek_path(tmp_path, monkeypatch):
    (tmp_path / "libpeek_skel.py").write_text(PEEK_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


@pytest.fixture
def two(soc, peek_path):
    """Two accel files on different context banks, each with a user PD and the peek module."""
    files = [on_thread(lambda: soc.open_device("cdsp")) for _ in range(2)]
    mods = []
    for f in files:
        assert f.init_create(attrs=UNSIGNED) == 0
        ret, h = open_module(f, PEEK)
        assert ret == 0
        mods.append(h)
    assert files[0].cb is not files[1].cb
    yield files, mods
    for f in files:
        f.close()


def gem_with(f, data: bytes, size: int = 4096):
    h = f.gem_create(size)
    buf = f.mmap(f.gem_mmap_offset(h), size)
    buf[: len(data)] = data
    return h, buf


def procs(soc):
    return {p.client_id: p for p in soc.domain("cdsp").dsp.processes() if p.channel == "accel"}


def raw_init(f, method: int, ins, outs=()):
    """A user INVOKE of kernel handle 1 (the RFC passes it through to the DSP)."""
    args = [*ins, *outs]
    return f.invoke(wire.FASTRPC_INIT_HANDLE, scalars(method, len(ins), len(outs)), args)


# -- item 1: the DSP acts only for the sender ------------------------------------------------------
def test_user_init_release_of_another_files_pd_is_refused(soc, two):
    (a, b), (ha, _) = two
    assert raw_init(b, wire.RMID_INIT_RELEASE, [struct.pack("<i", a.client_id)]) == aee.ERR_NOT_OWNER
    assert procs(soc)[a.client_id].state == "alive"
    assert a.invoke(ha, SC_NAP, [struct.pack("<II", 0, 7)]) == 7   # the victim's module still answers


def test_user_init_mem_map_into_another_files_bank_is_refused(soc, two):
    (a, b), _ = two
    ga, _buf = gem_with(a, MARK_A)
    target = a.lookup(ga).dma_addr
    out = bytearray(8)
    page = PHY_PAGE.pack(target, 4096)
    # Naming the victim's client: refused before anything is looked at.
    req = MEM_MAP_REQ.pack(a.client_id, 0, 0, 0, 0, 16, 0)
    assert raw_init(b, wire.RMID_INIT_MEM_MAP, [req, page, b""], [out]) == aee.ERR_NOT_OWNER
    # Naming itself, with a page list of its own making that points into the victim's bank.
    req = MEM_MAP_REQ.pack(b.client_id, 0, 0, 0, 0, 16, 0)
    assert raw_init(b, wire.RMID_INIT_MEM_MAP, [req, page, b""], [out]) == aee.ERR_FOREIGN_PAGES
    req = MMAP_REQ.pack(b.client_id, 0x1000, 0, 16)
    assert raw_init(b, wire.RMID_INIT_MMAP, [req, page], [out]) == aee.ERR_FOREIGN_PAGES
    assert procs(soc)[b.client_id].mappings == procs(soc)[b.client_id].mmaps == 0


def test_user_init_requests_for_itself_still_reach_the_dsp(soc, two):
    """The RFC difference stays visible: a user may send handle-1 requests for its own client."""
    (_, b), _ = two
    gb, _buf = gem_with(b, b"mine")
    out = bytearray(8)
    req = MEM_MAP_REQ.pack(b.client_id, 0, 0, 0, 0, 16, 0)
    page = PHY_PAGE.pack(b.lookup(gb).dma_addr, 4096)
    assert raw_init(b, wire.RMID_INIT_MEM_MAP, [req, page, b""], [out]) == 0
    assert procs(soc)[b.client_id].mappings == 1


def test_legacy_refuses_user_handle_1(soc):
    with soc.open("/dev/fastrpc-cdsp") as f:
        assert f.init_create(attrs=UNSIGNED) == 0
        assert f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, uapi.fastrpc_invoke.pack(
            handle=1, sc=scalars(1, 0, 0), args=0)) == -errno.EPERM


# -- item 2: each PD reads only its own context bank -------------------------------------------------
def test_skel_cannot_read_another_sessions_memory(soc, two):
    (a, b), (_, hb) = two
    ga, _buf = gem_with(a, MARK_A)
    gb, _bufb = gem_with(b, b"own bytes")
    out = bytearray(16)
    own = b.lookup(gb).dma_addr
    assert b.invoke(hb, SC_PEEK, [struct.pack("<QI", own, 9), out]) == 0 and out[:9] == b"own bytes"
    victim = a.lookup(ga).dma_addr
    out[:] = bytes(16)
    with trace.recording() as rec:
        assert b.invoke(hb, SC_PEEK, [struct.pack("<QI", victim, 16), out]) == aee.ERR_PD_CRASHED
    assert out == bytes(16)
    faults = [e for e in rec.events if e["kind"] == "fault"]
    assert len(faults) == 1 and faults[0]["addr"] == victim and faults[0]["client_id"] == b.client_id
    assert procs(soc)[b.client_id].state == "crashed"   # the attacker's PD, not the victim's
    assert procs(soc)[a.client_id].state == "alive"


def test_legacy_skel_cannot_read_an_accel_files_memory(soc, peek_path):
    a = on_thread(lambda: soc.open_device("cdsp"))
    with soc.open("/dev/fastrpc-cdsp") as lf:
        ga, _buf = gem_with(a, MARK_A)
        assert lf.init_create(attrs=UNSIGNED) == 0
        ret, h = open_module(lf, PEEK)
        assert ret == 0
        out = bytearray(16)
        rv = lf.invoke(h, SC_PEEK, [struct.pack("<QI", a.lookup(ga).dma_addr, 16), out])
        assert rv == aee.ERR_PD_CRASHED and out == bytes(16)
    a.close()


# -- item 3: by-reference pointers stay inside the buffer they name ----------------------------------
def test_accel_by_reference_pointer_into_another_buffer_is_efault(soc, two):
    (a, b), (_, hb) = two
    ga, bufa = gem_with(a, MARK_A)
    gb, bufb = gem_with(b, b"b")
    other, bufo = gem_with(b, MARK_A)   # the caller's own second buffer, same bank
    _, hcheck = open_module(b, TEST)
    out = bytearray(8)
    # Handle gb with a pointer into another buffer's mapping (the caller's own, then the victim's):
    # the kernel would take that mapping's offset and apply it to gb.
    for wrong in (bufo, bufa):
        with pytest.raises(OSError) as ei:
            b.invoke(hcheck, SC_CHECKSUM, [GemRef(gb, wrong[:16]), out])
        assert ei.value.errno == errno.EFAULT
    assert out == bytes(8)


def test_accel_by_reference_length_past_the_object_is_efault(soc, two):
    (_, b), (_, hb) = two
    gb, bufb = gem_with(b, b"x", 8192)
    out = bytearray(8)
    for ptr_off, length in ((4096, 8192), (0, 1 << 33), (8191, 2)):
        descs = bytearray(48)
        wire.INVOKE_ARG.pack_into(descs, 0, _addr(bufb) + ptr_off, length, gb, 0)
        wire.INVOKE_ARG.pack_into(descs, 24, _addr(out), 8, -1, 0)
        k = uapi.qda_invoke_args.pack(handle=hb, sc=SC_PEEK, args=_addr(descs))
        assert b.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, k) == -errno.EFAULT, (ptr_off, length)


def _addr(buf) -> int:
    from qda_core.uaccess import address
    return address(buf)


def test_legacy_by_reference_pointer_into_another_buffer_is_efault(soc):
    with soc.open("/dev/fastrpc-cdsp") as f:
        assert f.init_create(attrs=UNSIGNED) == 0
        _, h = open_module(f, TEST)
        mine, theirs = f.alloc_dma_buff(4096), f.alloc_dma_buff(4096)
        vm, vt = dmabuf_mmap(mine), dmabuf_mmap(theirs)
        vt[:16] = MARK_A
        out = bytearray(8)
        with pytest.raises(OSError) as ei:
            f.invoke(h, SC_CHECKSUM, [DmaBufRef(mine, vt[:16]), out])
        assert ei.value.errno == errno.EFAULT and out == bytes(8)
        descs = bytearray(48)
        wire.INVOKE_ARG.pack_into(descs, 0, _addr(vm), 1 << 40, mine, 0)
        wire.INVOKE_ARG.pack_into(descs, 24, _addr(out), 8, -1, 0)
        k = uapi.fastrpc_invoke.pack(handle=h, sc=SC_CHECKSUM, args=_addr(descs))
        assert f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, k) == -errno.EFAULT
        vm.release()
        vt.release()
        os.close(mine)
        os.close(theirs)


# -- item 10: close racing an ioctl ------------------------------------------------------------------
@pytest.mark.parametrize("node", ["accel", "legacy"])
def test_close_during_an_ioctl_releases_after_it(soc, node, monkeypatch):
    from qda_core.mem import gem

    f = soc.open_device("cdsp") if node == "accel" else soc.open("/dev/fastrpc-cdsp")
    bus = soc.domain("cdsp").bus
    inside, go = threading.Event(), threading.Event()
    real = gem.GemObject.create.__func__

    def slow_create(cls, cb, size, name="gem", **kw):
        if name in ("gem", "dmabuf"):
            inside.set()
            go.wait(10)
        return real(cls, cb, size, name, **kw)

    monkeypatch.setattr(gem.GemObject, "create", classmethod(slow_create))
    res = []
    if node == "accel":
        req, arg = uapi.DRM_IOCTL_QDA_GEM_CREATE, uapi.drm_qda_gem_create.pack(size=4096)
    else:
        req, arg = uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, uapi.fastrpc_alloc_dma_buf.pack(fd=-1, size=4096)
    t = threading.Thread(target=lambda: res.append(f.ioctl(req, arg)))
    t.start()
    assert inside.wait(10)
    f.close()                                   # returns at once; the release waits for the ioctl
    assert f.ioctl(req, bytearray(arg)) == -errno.EBADF
    go.set()
    t.join(10)
    assert res == [0]
    if node == "legacy":
        os.close(uapi.fastrpc_alloc_dma_buf.get(arg, "fd"))
    import gc
    gc.collect()
    assert bus.free_count == len(bus.cbs)
    assert not {k: v for k, v in debug.live_objects().items() if k in ("gem", "accel_file", "legacy_file")}


# -- item 11: more invokes in flight than reply ids --------------------------------------------------
def test_256th_outstanding_invoke_gets_ebusy_never_another_result(soc, peek_path):
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    ret, h = open_module(f, PEEK)
    assert ret == 0
    n = 300
    results = [None] * n
    start = threading.Barrier(n)

    def worker(i):
        start.wait()
        try:
            results[i] = f.invoke(h, SC_NAP, [struct.pack("<II", 400, 1000 + i)])
        except OSError as exc:
            results[i] = -exc.errno

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wrong = [(i, r) for i, r in enumerate(results) if r not in (1000 + i, -errno.EBUSY)]
    assert not wrong, wrong[:5]
    assert results.count(-errno.EBUSY) >= 1     # the cap was reached: some calls were refused
    f.close()


# -- item 13: raw ioctls answer -errno, never raise -------------------------------------------------
def test_raw_ioctls_with_out_of_range_values_return_errno(soc):
    with soc.open_device("cdsp") as f:
        assert f.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, uapi.drm_qda_gem_create.pack(size=2**64 - 1)) == -errno.ENOMEM
        assert f.init_create(attrs=UNSIGNED) == 0
        k = uapi.qda_mem_map.pack(request=uapi.QDA_MAP_REQUEST_ATTR, fd=0, offset=2**31, size=4096)
        assert f.ioctl(uapi.DRM_IOCTL_QDA_MAP, k) == aee.to_int32(aee.ERR_BAD_PARM)
    with soc.open("/dev/fastrpc-cdsp") as lf:
        fd = lf.alloc_dma_buff(4096)
        assert lf.init_create(attrs=UNSIGNED) == 0
        k = uapi.fastrpc_mem_map.pack(fd=fd, length=2**64 - 1)
        # The kernel sends the length as the page size; the DSP refuses pages past the bank.
        assert lf.ioctl(uapi.FASTRPC_IOCTL_MEM_MAP, k) == aee.to_int32(aee.ERR_FOREIGN_PAGES)
        os.close(fd)


def test_prime_export_copy_out_failure_leaks_no_fd(soc, fd_guard):
    with soc.open_device("cdsp") as f:
        h = f.gem_create(4096)
        f.mmap(f.gem_mmap_offset(h), 4096).release()  # the object's own file exists from here
        before = set(os.listdir("/proc/self/fd"))
        k = uapi.drm_prime_handle.pack(handle=h, flags=uapi.DRM_RDWR)
        ro = memoryview(bytes(k))               # a read-only argument: the copy-out fails
        assert f.ioctl(uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD, ro) == -errno.EFAULT
        assert set(os.listdir("/proc/self/fd")) == before


def test_static_pd_heap_lives_outside_every_session_bank(soc, peek_path):
    ch = soc.domain("adsp").legacy_channel
    with soc.open("/dev/fastrpc-adsp") as f:
        assert f.init_create_static("audiopd", 1 << 20) == 0
        heap = ch.remote_heap
        assert heap.cb is ch.bus.kernel_cb and heap.dma_addr >> 32 == 0
    # A later session takes the same bank; its PD cannot reach the heap the static PD used.
    with soc.open("/dev/fastrpc-adsp") as g:
        assert g.init_create(attrs=0) == 0
        ret, h = open_module(g, PEEK)
        assert ret == 0
        out = bytearray(8)
        assert g.invoke(h, SC_PEEK, [struct.pack("<QI", heap.dma_addr, 8), out]) == aee.ERR_PD_CRASHED
    ch.remove()                                  # the channel owns the heap until it goes
