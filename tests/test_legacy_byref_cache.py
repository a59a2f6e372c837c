"""Legacy by-reference invokes through one host mapping per buffer (issue 15, row 5).

The legacy driver maps a dma-buf into the session for each invoke and drops it when the invoke
ends, as the kernel does. The emulator's import borrows a mapping the process already has of the
same buffer (the ALLOC_DMA_BUFF buffer's, an rpcmem allocation's, an earlier import's) instead of
mapping, faulting in and unmapping the whole buffer each time. These tests check that nothing
observable changed: what the DSP and the caller see, the session's maps table, the IOVA and SMMU
state after a map goes, errnos, pool accounting, fds and mappings after the buffer or the file
goes, and the isolation of sessions and of a reused fd number. They count, never time.
"""
import errno
import fcntl
import gc
import os
import struct
import sys
import threading
import warnings
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.remotectl import open_module
from qda_core.dsp import aee
from qda_core.errors import DeviceFault
from qda_core.legacy import DmaBufRef, dmabuf_mmap
from qda_core.legacy import file as legacy_file
from qda_core.mem import backing
from qda_core.mem.vma import file_key

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import SC_CHECKSUM, SC_INC, SC_MAPPED_READ, TEST, UNSIGNED, raises_errno  # noqa: E402
from skel_helpers import PEEK, PEEK_SKEL, SC_PEEK  # noqa: E402

CDSP = "/dev/fastrpc-cdsp"
MiB = 1 << 20


def pool_used(f) -> int:
    """The backing pool's bytes in use, less the message buffer (a page) each route of file
    ``f`` holds until its release (docs/dataplane.md "Routes"): what the buffers use."""
    return backing.pool_used() - 4096 * len(f._lane.routes)



def host_mappings(key) -> int:
    """How many mappings of file ``key`` (``(st_dev, st_ino)``) this process has."""
    n = 0
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            major, minor = (int(x, 16) for x in fields[3].split(b":"))
            n += (os.makedev(major, minor), int(fields[4])) == key
    return n


@pytest.fixture
def peek_path(tmp_path, monkeypatch):
    (tmp_path / "libpeek_skel.py").write_text(PEEK_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


@pytest.fixture
def map_addrs(monkeypatch):
    """Device addresses of the maps the legacy driver creates, in order."""
    made: list[int] = []

    class Recorded(legacy_file.GemObject):
        __slots__ = ()

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.name == "map":
                made.append(self.dma_addr)

    monkeypatch.setattr(legacy_file, "GemObject", Recorded)
    return made


@pytest.fixture
def dsp_sees(soc, monkeypatch):
    """Calls ``probe()`` whenever the DSP receives a message on the legacy channel (inside the
    invoke, while its maps exist) and collects the results."""
    dsp = soc.domain("cdsp").dsp
    orig = dsp.receive
    seen: list = []
    probe = []

    def receive(msg, reply, channel="", origin=None):
        if channel == "legacy" and probe:
            seen.append(probe[0]())
        return orig(msg, reply, channel, origin)

    monkeypatch.setattr(dsp, "receive", receive)
    return probe, seen


def _checksum(f, h, ref) -> int:
    out = bytearray(8)
    assert f.invoke(h, SC_CHECKSUM, [ref, out]) == 0
    return struct.unpack("<Q", out)[0]


def _sealed(size: int, name: str = "foreign") -> int:
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    return fd


def test_repeated_invokes_see_current_data_and_the_dsps_writes(soc, upd, dsp_sees):
    _, h = open_module(upd, TEST)
    fd = upd.alloc_dma_buff(MiB)
    view = dmabuf_mmap(fd)
    key = file_key(fd)
    probe, seen = dsp_sees
    probe.append(lambda: (host_mappings(key), len(upd.maps)))
    baseline = host_mappings(key)               # the driver's own mapping and the caller's
    for i in range(1, 5):
        view[:4] = bytes([i]) * 4
        view[MiB - 4:] = bytes([i]) * 4
        assert _checksum(upd, h, DmaBufRef(fd, view)) == 8 * i
        assert upd.invoke(h, SC_INC, [DmaBufRef(fd, view[MiB - 4:])]) == 0
        assert bytes(view[MiB - 4:]) == bytes([i + 1]) * 4   # the DSP wrote the caller's pages
        assert upd.maps == {}
    # during every invoke the buffer was in the maps table and not mapped into the host again
    assert seen == [(baseline, 1)] * 8
    assert host_mappings(key) == baseline
    view.release()
    os.close(fd)


def test_the_dsp_cannot_reach_a_map_after_its_invoke(soc, upd, peek_path, map_addrs):
    _, h = open_module(upd, TEST)
    ret, hp = open_module(upd, PEEK)
    assert ret == 0
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[:8] = b"secret!!"
    for _ in range(2):
        assert _checksum(upd, h, DmaBufRef(fd, view[:8])) == sum(b"secret!!")
    assert len(map_addrs) == 2                  # one map per invoke, each gone with its invoke
    smmu = soc.domain("cdsp").smmu
    for addr in map_addrs:
        assert upd.cb.lookup(addr & 0xFFFF_FFFF) is None
        with pytest.raises(DeviceFault):
            smmu.view(addr, 8, False)
    out = bytearray(8)
    assert upd.invoke(hp, SC_PEEK, [struct.pack("<QI", map_addrs[-1], 8), out]) == aee.ERR_PD_CRASHED
    assert out == bytes(8)
    view.release()
    os.close(fd)


def test_mem_unmap_then_invoke(soc, upd, peek_path):
    _, h = open_module(upd, TEST)
    ret, hp = open_module(upd, PEEK)
    assert ret == 0
    start = pool_used(upd)
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[:4] = b"\x01\x02\x03\x04"
    vaddr = upd.mem_map(fd, 4096)
    m = upd.map_of(fd)
    phys = m.phys
    assert _checksum(upd, h, DmaBufRef(fd, view[:4])) == 10
    assert upd.map_of(fd) is m and m.refs == 1
    out = bytearray(16)
    assert upd.invoke(h, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 4), out]) == 0 and out[:4] == b"\x01\x02\x03\x04"
    upd.mem_unmap(fd, vaddr, 4096)
    assert upd.maps == {} and upd.map_of(fd) is None
    assert upd.invoke(h, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 4), out]) == aee.ERR_NO_SUCH_MAP
    with raises_errno(errno.EINVAL):
        upd.mem_unmap(fd, vaddr, 4096)          # gone from the kernel's list
    view[:4] = b"\x05\x05\x05\x05"
    assert _checksum(upd, h, DmaBufRef(fd, view[:4])) == 20   # mapped again, current bytes
    assert upd.maps == {}
    with pytest.raises(DeviceFault):
        soc.domain("cdsp").smmu.view(phys, 4, False)
    assert upd.invoke(hp, SC_PEEK, [struct.pack("<QI", phys, 4), out]) == aee.ERR_PD_CRASHED
    view.release()
    os.close(fd)
    assert pool_used(upd) == start + 4096  # the ALLOC_DMA_BUFF buffer, until close


def test_a_reused_fd_number_reaches_the_new_buffer_only(soc, upd):
    _, h = open_module(upd, TEST)
    fd = upd.alloc_dma_buff(4096)               # the file keeps this buffer (and its mapping)
    old = dmabuf_mmap(fd)
    old[:4] = b"\x07\x07\x07\x07"
    assert _checksum(upd, h, DmaBufRef(fd, old[:4])) == 28
    other = _sealed(4096)
    os.dup2(other, fd)                          # same number, another buffer
    os.close(other)
    new = dmabuf_mmap(fd)
    new[:4] = b"\x01\x01\x01\x01"
    for i in range(1, 3):
        assert _checksum(upd, h, DmaBufRef(fd, new[:4])) == 4 * i
        assert upd.invoke(h, SC_INC, [DmaBufRef(fd, new[:4])]) == 0
    assert bytes(new[:4]) == b"\x03\x03\x03\x03" and bytes(old[:4]) == b"\x07\x07\x07\x07"
    # a pointer into the old buffer's mapping does not name the buffer the fd is now
    with raises_errno(errno.EFAULT):
        upd.invoke(h, SC_CHECKSUM, [DmaBufRef(fd, old[:4]), bytearray(8)])
    assert upd.maps == {}
    old.release()
    new.release()
    os.close(fd)


def test_read_only_fd_of_a_mapped_buffer_is_still_refused(upd):
    _, h = open_module(upd, TEST)
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    assert _checksum(upd, h, DmaBufRef(fd, view[:4])) == 0
    ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    try:
        with raises_errno(errno.EINVAL):        # the import's EACCES, as fastrpc_create_maps gives it
            upd.invoke(h, SC_CHECKSUM, [DmaBufRef(ro, view[:4]), bytearray(8)])
        with raises_errno(errno.EACCES):
            upd.mem_map(ro, 4096)
    finally:
        os.close(ro)
    assert upd.maps == {}
    view.release()
    os.close(fd)


def test_a_grown_buffer_is_mapped_at_its_new_size(upd):
    """A foreign memfd sealed against shrinking only may grow: an import after that sees the
    whole file, not the length an earlier import mapped."""
    _, h = open_module(upd, TEST)
    fd = _sealed(4096)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    vaddr = upd.mem_map(fd, 4096)               # an import of 4096 bytes, alive until MEM_UNMAP
    os.ftruncate(fd, 8192)
    view = dmabuf_mmap(fd)
    view[4096:4100] = b"\x02\x02\x02\x02"
    dup = os.dup(fd)                            # another fd number: a new map, imported now
    try:
        assert _checksum(upd, h, DmaBufRef(dup, view[4096:4100])) == 8
    finally:
        os.close(dup)
    upd.mem_unmap(fd, vaddr, 4096)
    view.release()
    os.close(fd)


def test_freeing_a_foreign_buffer_frees_its_memory(upd):
    """Nothing of a by-reference buffer outlives its invoke: once the caller closes the fd and
    drops its mapping, the file has no mapping left and the pool has its bytes back."""
    _, h = open_module(upd, TEST)
    start = pool_used(upd)
    fd = _sealed(16 * MiB)
    key = file_key(fd)
    view = dmabuf_mmap(fd)
    view[:4] = b"\x01\x01\x01\x01"
    for _ in range(2):
        assert _checksum(upd, h, DmaBufRef(fd, view[:4])) == 4
    assert host_mappings(key) == 1 and pool_used(upd) == start
    view.release()
    os.close(fd)
    assert host_mappings(key) == 0


def test_rpcmem_free_frees_the_memory_after_by_reference_invokes(upd, dsp_sees):
    _, h = open_module(upd, TEST)
    start = pool_used(upd)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8 * MiB)
    fd, key = mem.fd, file_key(mem.fd)
    mv = memoryview(mem)
    probe, seen = dsp_sees
    probe.append(lambda: host_mappings(key))
    baseline = host_mappings(key)               # the caller's mapping and the kernel side's
    try:
        for i in range(1, 4):
            mv[:4] = bytes([i]) * 4
            assert _checksum(upd, h, DmaBufRef(fd, mv[:4])) == 4 * i
            assert upd.invoke(h, SC_INC, [DmaBufRef(fd, mv[8 * MiB - 4:])]) == 0
            assert bytes(mv[8 * MiB - 4:]) == bytes([i]) * 4
        assert seen == [baseline] * 6           # no mapping of its own, during each invoke
        assert pool_used(upd) == start + 8 * MiB
    finally:
        mv.release()
        rpc.rpcmem_free(mem)
    assert host_mappings(key) == 0 and pool_used(upd) == start
    with pytest.raises(OSError):
        os.fstat(fd)                            # closed


def test_a_map_keeps_a_freed_rpcmem_buffer_until_mem_unmap(upd):
    """The kernel's map holds the dma-buf: a buffer freed by its owner while MEM_MAPped stays
    readable by the DSP, and its memory goes with MEM_UNMAP."""
    _, h = open_module(upd, TEST)
    start = pool_used(upd)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4 * MiB)
    mem[:4] = b"kept"
    fd, key = mem.fd, file_key(mem.fd)
    try:
        vaddr = upd.mem_map(fd, 4 * MiB)
    finally:
        rpc.rpcmem_free(mem)
    del mem
    assert pool_used(upd) == start + 4 * MiB and host_mappings(key) == 1
    out = bytearray(16)
    assert upd.invoke(h, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 4), out]) == 0
    assert out[:4] == b"kept"
    upd.mem_unmap(fd, vaddr, 4 * MiB)
    assert host_mappings(key) == 0 and pool_used(upd) == start


def test_an_unfreed_rpcmem_buffer_is_still_collected_while_mapped(upd):
    """A map borrows the allocation's kernel-side mapping, not the RpcMem: dropping the RpcMem
    unfreed still warns and frees it (fd closed) at once; the map keeps the pages until
    MEM_UNMAP."""
    _, h = open_module(upd, TEST)
    start = pool_used(upd)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, MiB)
    mem[:4] = b"left"
    fd, key = mem.fd, file_key(mem.fd)
    vaddr = upd.mem_map(fd, MiB)
    del mem
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert any("unfreed <RpcMem" in str(w.message) for w in caught)
    with pytest.raises(OSError):
        os.fstat(fd)                            # freed: its fd is closed
    out = bytearray(16)
    assert upd.invoke(h, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 4), out]) == 0
    assert out[:4] == b"left" and host_mappings(key) == 1
    upd.mem_unmap(fd, vaddr, MiB)
    assert host_mappings(key) == 0 and pool_used(upd) == start


def test_library_legacy_rpcmem_invokes(soc):
    rpc.use_soc(soc)
    lib = rpc.Library("legacy")
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4 * MiB)
    key = file_key(mem.fd)
    mv = memoryview(mem)
    try:
        h = lib.remote_handle64_open(TEST)
        out = bytearray(8)
        for i in range(1, 4):
            mv[4 * MiB - 1] = i
            rpc.remote_handle64_invoke(h, SC_CHECKSUM, [mv, out])
            assert struct.unpack("<Q", out)[0] == i
        assert host_mappings(key) == 2          # the caller's and the kernel side's
        lib.remote_handle64_close(h)
    finally:
        mv.release()
        rpc.rpcmem_free(mem)
        lib.close_all()
        rpc.use_soc(None)
    assert host_mappings(key) == 0


def test_close_releases_everything_also_with_another_session_mapping_the_buffer(soc):
    start = backing.pool_used()
    cbs = soc.domain("cdsp").bus.free_count
    a, b = soc.open(CDSP), soc.open(CDSP)
    for f in (a, b):
        assert f.init_create(attrs=UNSIGNED) == 0
    _, ha = open_module(a, TEST)
    _, hb = open_module(b, TEST)
    fd = a.alloc_dma_buff(MiB)
    key = file_key(fd)
    view = dmabuf_mmap(fd)
    view[:4] = b"\x02\x02\x02\x02"
    assert _checksum(a, ha, DmaBufRef(fd, view[:4])) == 8
    vaddr = b.mem_map(fd, MiB)                  # b imports a's buffer, alive until MEM_UNMAP
    a.close()                                   # a's buffer stays: b's map holds it
    view[:4] = b"\x03\x03\x03\x03"
    out = bytearray(16)
    assert b.invoke(hb, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 4), out]) == 0
    assert out[:4] == b"\x03\x03\x03\x03"
    assert _checksum(b, hb, DmaBufRef(fd, view[:4])) == 12
    view.release()
    os.close(fd)
    assert host_mappings(key) == 1             # b's map only
    b.mem_unmap(fd, vaddr, MiB)
    assert host_mappings(key) == 0
    b.close()
    assert soc.domain("cdsp").bus.free_count == cbs and backing.pool_used() == start


def test_two_sessions_keep_their_own_maps(soc, peek_path, map_addrs):
    a, b = soc.open(CDSP), soc.open(CDSP)
    try:
        for f in (a, b):
            assert f.init_create(attrs=UNSIGNED) == 0
        _, ha = open_module(a, TEST)
        _, hb = open_module(b, TEST)
        _, pb = open_module(b, PEEK)
        fd = a.alloc_dma_buff(4096)
        view = dmabuf_mmap(fd)
        view[:4] = b"\x01\x02\x03\x04"
        vaddr = a.mem_map(fd, 4096)             # a's map, alive until MEM_UNMAP
        ma = a.map_of(fd)
        assert _checksum(b, hb, DmaBufRef(fd, view[:4])) == 10
        assert _checksum(a, ha, DmaBufRef(fd, view[:4])) == 10
        assert b.maps == {} and a.map_of(fd) is ma and ma.refs == 1 and b.map_of(fd) is None
        # b's invoke mapped the buffer in b's own bank, a's reused a's map
        assert [addr >> 32 for addr in map_addrs] == [a.cb.sid, b.cb.sid]
        assert map_addrs[0] == ma.phys and a.cb.sid != b.cb.sid
        out = bytearray(4)
        assert b.invoke(pb, SC_PEEK, [struct.pack("<QI", ma.phys, 4), out]) == aee.ERR_PD_CRASHED
        assert out == bytes(4)
        a.mem_unmap(fd, vaddr, 4096)
        view.release()
        os.close(fd)
    finally:
        a.close()
        b.close()


def test_imports_racing_the_owners_close_leave_no_mapping(busy_switching):
    """Imports borrowing a buffer's mapping on several threads while its owner closes: each
    import reads the buffer, and once all are closed the file has no mapping left."""
    owner = backing.Backing(MiB, name="owned")
    owner.view[:4] = b"race"
    fd = owner.export_fd(writable=True, cloexec=True)
    key = owner.key
    errors = []

    def importer():
        try:
            for _ in range(50):
                imp = backing.Backing.import_fd(fd)
                if bytes(imp.view[:4]) != b"race":
                    errors.append(bytes(imp.view[:4]))
                imp.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=importer) for _ in range(3)]
    for t in threads:
        t.start()
    owner.close()
    for t in threads:
        t.join()
    assert errors == []
    assert host_mappings(key) == 0              # the imports' own mappings went with them
    os.close(fd)


def test_an_rpcmem_freed_while_the_share_table_is_locked_does_not_deadlock():
    """A collection inside a locked section of the share table (any allocation can run one) may
    finalize an unfreed RpcMem, whose free unshares its mapping on the same thread: it must not
    wait for itself (a fork storm's child hung there with a plain lock)."""
    done = threading.Event()

    def free_under_the_lock():
        with backing._shared_lock:
            m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            rpc.rpcmem_free(m)
        done.set()

    t = threading.Thread(target=free_under_the_lock, daemon=True)
    t.start()
    t.join(timeout=10)
    assert done.is_set(), "share_mapping/unshare_mapping deadlocked on their own thread"
