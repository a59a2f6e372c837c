"""The legacy /dev/fastrpc-* driver: ioctl table and raw dispatch, nodes, sessions at open,
INIT_* rules, MMAP/MUNMAP, MEM_MAP/MEM_UNMAP, GET_DSP_INFO, ALLOC_DMA_BUFF, channel removal,
release on close, trace hook."""
import ctypes
import errno
import fcntl
import mmap
import os
import struct
import sys
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import trace, uapi, wire
from qda_core.dsp import aee, caps
from qda_core.legacy import LegacyFile, dmabuf_mmap
from qda_core.legacy.file import (
    _HANDLERS,
    ADSP_MMAP_ADD_PAGES,
    ADSP_MMAP_REMOTE_HEAP_ADDR,
)
from qda_core.soc import Soc
from qda_core.uaccess import address

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import (
    SC_MAPPED_READ,
    TEST,
    UNSIGNED,
    DspTap,
    hexagon_elf,
    raises_errno,
)

CDSP = "/dev/fastrpc-cdsp"
CDSP_SECURE = "/dev/fastrpc-cdsp-secure"


@pytest.fixture
def minimal(make_soc):
    """``Soc("minimal")``: one cdsp with two context banks; leak-checked like ``soc``."""
    return make_soc("minimal")


@pytest.fixture
def lf(soc):
    f = soc.open(CDSP)
    yield f
    f.close()


@pytest.fixture
def upd(lf):
    """A /dev/fastrpc-cdsp file with an unsigned user PD."""
    assert lf.init_create(attrs=UNSIGNED) == 0
    return lf


def proc(soc, f, domain="cdsp"):
    return next(p for p in soc.domain(domain).dsp.processes()
                if p.channel == "legacy" and p.client_id == f.client_id)


# --- ioctl table and raw dispatch -----------------------------------------------------------


def test_every_ioctl_number_is_dispatched_except_free():
    # numbers and names are checked against the spec in test_uapi.py and
    # test_legacy_revisions.py; here: every one of every revision is handled
    every = set().union(*uapi.LEGACY_UAPI.values())
    assert set(_HANDLERS) == every - {uapi.FASTRPC_IOCTL_FREE_DMA_BUFF}
    assert set(uapi.LEGACY_IOCTLS) == set(uapi.LEGACY_UAPI["misc-7.2"])


def test_raw_dispatch_rules(lf):
    assert lf.ioctl(uapi.FASTRPC_IOCTL_FREE_DMA_BUFF, bytearray(4)) == -errno.ENOTTY
    # a switch on the full number: same nr with another size/direction, or other magics, is unknown
    for bad in (0xC0185203, 0x00005203, 0xC01C520C, uapi.DRM_IOCTL_QDA_INVOKE, 0):
        assert lf.ioctl(bad, bytearray(64)) == -errno.ENOTTY
    inv = uapi.FASTRPC_IOCTL_INVOKE
    assert lf.ioctl(inv, None) == -errno.EFAULT
    assert lf.ioctl(inv, bytearray(15)) == -errno.EFAULT          # shorter than the 16-byte struct
    assert lf.ioctl(inv, 8) == -errno.EFAULT                      # unmapped user address
    # descriptors behind a bad pointer: EFAULT from copy_from_user before anything else
    assert lf.ioctl(inv, uapi.fastrpc_invoke.pack(handle=1, sc=0x02010000, args=8)) == -errno.EFAULT
    assert "invoke argument descriptors" in lf.last_error.strerror


def test_int_address_and_copy_back(upd):
    cap = ctypes.create_string_buffer(bytes(uapi.fastrpc_ioctl_capability.pack(domain=3, attribute_id=6)), 28)
    assert upd.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, ctypes.addressof(cap)) == 0
    got = uapi.fastrpc_ioctl_capability.unpack(cap.raw)
    assert (got["domain"], got["attribute_id"], got["capability"]) == (3, 6, 0x68)  # whole struct back
    ro = bytes(uapi.fastrpc_ioctl_capability.pack(domain=3, attribute_id=6))
    assert upd.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, ro) == -errno.EFAULT


def test_closed_file_is_ebadf(soc):
    f = soc.open(CDSP)
    f.close()
    f.close()  # idempotent
    assert f.ioctl(uapi.FASTRPC_IOCTL_INIT_ATTACH) == -errno.EBADF


# --- nodes and sessions ---------------------------------------------------------------------
def test_nodes_per_domain():
    full = Soc("full")
    assert full.legacy_nodes() == [
        "/dev/fastrpc-adsp", "/dev/fastrpc-mdsp", "/dev/fastrpc-sdsp", "/dev/fastrpc-cdsp-secure",
        "/dev/fastrpc-cdsp", "/dev/fastrpc-cdsp1-secure", "/dev/fastrpc-cdsp1"]
    assert full.domain("gdsp0").legacy == {} and full.domain("gdsp0").legacy_channel is None
    cd = full.domain("cdsp")
    assert set(cd.legacy) == {CDSP, CDSP_SECURE} and cd.legacy_channel.secure
    assert cd.legacy[CDSP_SECURE].secure and not cd.legacy[CDSP].secure
    assert not full.domain("adsp").legacy_channel.secure
    assert full.accel_nodes()[0] == "/dev/accel/accel0"  # the accel side is unchanged
    with raises_errno(errno.ENOENT):
        full.open("/dev/fastrpc-adsp-secure")


def test_session_per_open_and_ebusy(minimal):
    a, b = minimal.open(CDSP), minimal.open(CDSP_SECURE)
    assert (a.client_id, b.client_id) == (1, 2) and (a.cb.sid, b.cb.sid) == (1, 2)
    with raises_errno(errno.EBUSY):
        minimal.open(CDSP)
    acc = minimal.open_device("cdsp")            # the accel open itself takes no CB ...
    with raises_errno(errno.ENOMEM):
        acc.gem_create(4096)                     # ... its first memory use finds none
    b.close()
    h = acc.gem_create(4096)                     # accel gets the released CB
    with raises_errno(errno.EBUSY):
        minimal.open(CDSP)                       # and now legacy finds none
    acc.gem_close(h)
    acc.close()
    c = minimal.open(CDSP)
    assert c.client_id == 2                      # session index + 1
    a.close()
    c.close()
    assert minimal.domain("cdsp").bus.free_count == 2


# --- INIT_* -----------------------------------------------------------------------------------
def test_user_invoke_of_handle_1_is_eperm(upd):
    with raises_errno(errno.EPERM):
        upd.invoke(1, 0x00010000, [struct.pack("<i", upd.client_id)])


def test_init_create_policy_on_secure_channel(soc):
    with soc.open(CDSP) as f:
        with raises_errno(errno.ECONNREFUSED):
            f.init_create()                      # signed PD from the non-secure node
        assert f.init_create(attrs=UNSIGNED) == 0
        assert not proc(soc, f).signed and proc(soc, f).kind == "user"
    with soc.open(CDSP_SECURE) as f:
        assert f.init_create() == 0              # the secure node may create signed PDs
        assert proc(soc, f).signed
    with soc.open("/dev/fastrpc-adsp") as f:     # non-secure channel: no restriction
        assert f.init_create() == 0


def test_init_create_image_and_init_memory(soc, lf):
    dsp = soc.domain("cdsp").dsp
    big = uapi.fastrpc_init_create.pack(filelen=(2 << 20) + 1, attrs=UNSIGNED)
    assert lf.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, big) == -errno.EINVAL
    assert "> 2 MiB" in lf.last_error.strerror
    for fd in (-1, 999):                         # filelen != 0 and filefd != 0: must be a dma-buf
        buf = uapi.fastrpc_init_create.pack(filelen=64, filefd=fd, attrs=UNSIGNED)
        assert lf.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, buf) == -errno.EBADF
    assert lf._init_mem == [] and lf.maps == {}
    img = hexagon_elf(1 << 20)
    assert lf.init_create(img, attrs=UNSIGNED) == 0
    assert lf._init_mem[0].size == 4 << 20       # ALIGN(max(2 MiB, 4 * 1 MiB), 1 MiB)
    assert dsp._proc("legacy", lf.client_id).init_mem[1] == 4 << 20
    assert len(lf.maps) == 1                     # the image's map lives until close


def test_init_create_small_image_and_bad_shell(soc):
    with soc.open(CDSP) as f:
        assert f.init_create(hexagon_elf(100), attrs=UNSIGNED) == 0
        assert f._init_mem[0].size == 2 << 20
    with soc.open(CDSP) as f:
        rv = f.init_create(b"not an elf" * 10, attrs=UNSIGNED)
        assert rv == aee.to_u32(aee.ERR_BAD_SHELL)     # the DSP refuses the shell
        assert f._init_mem == [] and f.maps == {}       # kernel frees init memory and the map
        assert soc.domain("cdsp").dsp.processes() == []


def test_create_static_and_sensors(soc):
    ch = soc.domain("adsp").legacy_channel
    with soc.open("/dev/fastrpc-adsp") as f:
        with raises_errno(errno.EINVAL):
            f.init_create_static("x" * 128, 1 << 20)   # 129 bytes with the NUL
        assert f.init_create_static("audiopd", 1 << 20) == 0
        assert f.pd == wire.USER_PD and proc(soc, f, "adsp").kind == "audiopd"
        heap = ch.remote_heap
        assert heap is not None and heap.size == 1 << 20
    with soc.open("/dev/fastrpc-adsp") as g:
        assert g.init_create_static("oispd", 8 << 20) == 0
        assert ch.remote_heap is heap                 # allocated once per channel
        assert g.init_create_static("nopd", 1 << 20) != 0   # DSP refuses the name
        assert ch.remote_heap is None                 # the kernel frees the heap on failure
    with soc.open("/dev/fastrpc-sdsp") as s:
        assert s.init_attach_sns() == 0
        assert s.pd == wire.SENSORS_PD and proc(soc, s, "sdsp").kind == "sensorspd"
    with soc.open("/dev/fastrpc-adsp") as f:
        assert f.init_create_static("audiopd", 1 << 20) == 0
    ch.remove()                                       # rpmsg remove frees the heap
    assert ch.remote_heap is None


def test_attach_root_pd(soc, lf):
    assert lf.init_attach() == 0
    assert lf.pd == wire.ROOT_PD and proc(soc, lf).kind == "root"


# --- MMAP / MUNMAP ----------------------------------------------------------------------------
def test_mmap_rules(soc, upd):
    for flags in (0, 4, 6, 0x3000):
        with raises_errno(errno.EINVAL):
            upd.req_mmap(flags, 4096)
    with raises_errno(errno.EINVAL):
        upd.req_mmap(ADSP_MMAP_ADD_PAGES, 4096, vaddrin=0x1000)
    assert upd.mmaps == []
    v1 = upd.req_mmap(ADSP_MMAP_ADD_PAGES, 0x3000)
    v2 = upd.req_mmap(ADSP_MMAP_REMOTE_HEAP_ADDR, 0x1000)
    assert v1 != v2 and proc(soc, upd).mmaps == 2 and len(upd.mmaps) == 2
    with raises_errno(errno.EINVAL):
        upd.req_munmap(v1, 0x1000)                   # size must match exactly
    with raises_errno(errno.EINVAL):
        upd.req_munmap(v1 + 0x1000, 0x3000)
    upd.req_munmap(v1, 0x3000)
    with raises_errno(errno.EINVAL):
        upd.req_munmap(v1, 0x3000)                   # no longer in the list
    assert proc(soc, upd).mmaps == 1
    # copy-back failure: the kernel unmaps again and returns EFAULT
    ro = bytes(uapi.fastrpc_req_mmap.pack(flags=ADSP_MMAP_ADD_PAGES, size=4096))
    assert upd.ioctl(uapi.FASTRPC_IOCTL_MMAP, ro) == -errno.EFAULT
    assert len(upd.mmaps) == 1 and proc(soc, upd).mmaps == 1
    # v2 is still mapped at close: freed with the file


def test_mmap_without_pd_is_a_dsp_error(lf):
    with raises_errno(errno.EIO):
        lf.req_mmap(ADSP_MMAP_ADD_PAGES, 4096)
    assert lf.mmaps == []


# --- MEM_MAP / MEM_UNMAP ----------------------------------------------------------------------
def test_mem_map_holds_the_dmabuf(soc, upd):
    fd = upd.alloc_dma_buff(8192)
    view = dmabuf_mmap(fd)
    view[:8] = b"ABCDEFGH"
    vaddr = upd.mem_map(fd, 8192, flags=0, attrs=1)
    assert upd.map_of(fd).raddr == vaddr and proc(soc, upd).mappings == 1
    os.close(fd)                                 # the map keeps the buffer
    _, h = open_module(upd, TEST)
    out = bytearray(8)
    assert upd.invoke(h, SC_MAPPED_READ, [struct.pack("<iII", fd, 0, 8), out]) == 0
    assert out == b"ABCDEFGH"
    with raises_errno(errno.EINVAL):
        upd.mem_unmap(fd, vaddr + 0x1000, 8192)  # (fd, vaddr) must match a map
    with raises_errno(errno.EINVAL):
        upd.mem_unmap(fd + 1, vaddr, 8192)
    upd.mem_unmap(-1, vaddr, 8192)               # fd < 0: found by address
    assert upd.maps == {} and proc(soc, upd).mappings == 0
    with raises_errno(errno.EINVAL):
        upd.mem_unmap(fd, vaddr, 8192)
    view.release()


def test_mem_map_bad_fds(upd):
    with raises_errno(errno.EBADF):
        upd.mem_map(999, 4096)
    r, w = os.pipe()
    try:
        with raises_errno(errno.EINVAL):
            upd.mem_map(r, 4096)                 # not a dma-buf
    finally:
        os.close(r)
        os.close(w)
    assert upd.maps == {}


def test_mem_map_dsp_failure_releases_the_map(lf):
    fd = lf.alloc_dma_buff(4096)
    try:
        with raises_errno(errno.EIO):
            lf.mem_map(fd, 4096)                 # no PD on the DSP yet
        assert lf.maps == {}
    finally:
        os.close(fd)


# --- GET_DSP_INFO -----------------------------------------------------------------------------
@pytest.fixture
def soc72(make_soc):
    """The default SoC on ``legacy:misc-7.2``, for what only 7.2 does (test_legacy_revisions.py
    covers every revision)."""
    return make_soc("default", kernel="legacy:misc-7.2")


@pytest.fixture
def lf72(soc72):
    f = soc72.open(CDSP)
    yield f
    f.close()


def test_get_dsp_info_errors_values_and_cache(soc72, lf72):
    # misc-7.2 validates the domain field (7.3 ignores it)
    soc, lf = soc72, lf72
    for dom in (1, 5, 7):
        with raises_errno(errno.ECHRNG):
            lf.get_dsp_info(dom, 1)
    with raises_errno(errno.EOVERFLOW):
        lf.get_dsp_info(3, 256)
    chan = soc.domain("cdsp").legacy_channel.channel
    sent = chan.sent
    dsp_caps = soc.domain("cdsp").dsp.capabilities    # values chosen here, not read from the emulator's table
    dsp_caps[caps.VTCM_PAGE], dsp_caps[caps.ARCH_VER] = 0x00AB_C000, 0x73
    assert lf.get_dsp_info(3, caps.VTCM_PAGE) == 0x00AB_C000
    assert lf.get_dsp_info(0, caps.ARCH_VER) == 0x73                   # any valid domain id
    assert lf.get_dsp_info(3, caps.DOMAIN_SUPPORT) == 0                # left 0 by the kernel
    assert lf.get_dsp_info(3, 255) == 0
    assert chan.sent == sent + 1                  # fetched once, then cached per channel
    with soc.open(CDSP_SECURE) as g:
        assert g.get_dsp_info(3, caps.HVX_SUPPORT_128B) == 4 and chan.sent == sent + 1


def test_get_dsp_info_unsupported(soc, lf, monkeypatch):
    dsp = soc.domain("cdsp").dsp
    tap = DspTap(dsp)
    tap.answer[wire.FASTRPC_DSP_UTILITIES_HANDLE] = 0x80000414
    monkeypatch.setattr(dsp, "receive", tap)
    with raises_errno(errno.EOPNOTSUPP):
        lf.get_dsp_info(3, 1)
    m = tap.msgs[-1]
    assert (m.handle, m.sc, m.client_id) == (2, wire.scalars(0, 1, 1), 0)
    del tap.answer[wire.FASTRPC_DSP_UTILITIES_HANDLE]
    assert lf.get_dsp_info(3, 1) == 1            # not cached after a failure: asked again
    assert len(tap.msgs) == 2


# --- ALLOC_DMA_BUFF -----------------------------------------------------------------------------
def test_alloc_dma_buff(soc, lf):
    with raises_errno(errno.ENOMEM):
        lf.alloc_dma_buff(0)
    cb_before = lf.cb.mapped
    fd = lf.alloc_dma_buff(10000)
    assert os.fstat(fd).st_size >= 10000 and os.get_inheritable(fd)
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    assert lf.cb.mapped == cb_before + 1         # lives in the session's context bank
    mm = mmap.mmap(fd, 10000)
    mm[:4] = b"data"
    lf.close()
    assert mm[:4] == b"data"                     # the pages belong to the fd, not the file
    mm.close()
    os.close(fd)


# --- channel removal, release, finalizer, trace -------------------------------------------------
def test_epipe_after_channel_removal(soc):
    ch = soc.domain("cdsp").legacy_channel
    f = soc.open(CDSP)
    assert f.init_create(attrs=UNSIGNED) == 0
    _, h = open_module(f, TEST)
    ch.channel.remove()
    with raises_errno(errno.EPIPE):
        f.invoke(h, 0x02000000, [])
    with raises_errno(errno.EPIPE):
        f.init_attach()
    with raises_errno(errno.EPIPE):
        f.get_dsp_info(3, 1)
    assert f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, uapi.fastrpc_invoke.pack(handle=h)) == -errno.EPIPE
    assert CDSP not in soc.legacy_nodes() and "/dev/fastrpc-adsp" in soc.legacy_nodes()
    with raises_errno(errno.ENOENT):
        soc.open(CDSP)
    with soc.open_device("cdsp") as acc:         # the accel driver has its own channel
        assert acc.init_create(attrs=UNSIGNED) == 0
    f.close()
    assert soc.domain("cdsp").bus.free_count == len(soc.domain("cdsp").bus.cbs)


def test_release_on_close(soc):
    dom = soc.domain("cdsp")
    f = soc.open(CDSP)
    assert f.init_create(hexagon_elf(256), attrs=UNSIGNED) == 0
    fd = f.alloc_dma_buff(4096)
    f.mem_map(fd, 4096)
    f.req_mmap(ADSP_MMAP_ADD_PAGES, 8192)
    assert open_module(f, TEST)[0] == 0
    assert len(dom.dsp.processes()[0].modules) == 1 and dom.bus.free_count == len(dom.bus.cbs) - 1
    tap = DspTap(dom.dsp)
    dom.dsp.receive = tap
    try:
        f.close()
    finally:
        del dom.dsp.receive
    assert [(m.handle, m.sc, m.client_id) for m in tap.msgs] == [(1, 0x01010000, 0)]  # INIT_RELEASE
    assert dom.dsp.processes() == [] and dom.bus.free_count == len(dom.bus.cbs)
    assert f.maps == {} and f.mmaps == []
    os.close(fd)
    # soc fixture: no GEM objects, backings or files left


def test_unclosed_file_warns(soc):
    f = soc.open(CDSP)
    assert isinstance(f, LegacyFile)
    with pytest.warns(ResourceWarning, match="unclosed legacy fastrpc file"):
        del f


def test_trace_hook(soc, upd):
    _, h = open_module(upd, TEST)
    plain = bytearray(100)
    fd = upd.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    from qda_core.legacy import DmaBufRef
    with trace.recording() as rec:
        upd.invoke(h, 0x04000100, [plain])
        upd.invoke(h, 0x04000100, [DmaBufRef(fd, view[:300])])
        upd.ioctl(0x1234)
    ev = [e for e in rec.events if e["kind"] == "ioctl"]
    assert [(e["driver"], e["node"], e["name"]) for e in ev] == [
        ("legacy", CDSP, "FASTRPC_IOCTL_INVOKE"), ("legacy", CDSP, "FASTRPC_IOCTL_INVOKE"),
        ("legacy", CDSP, "0x00001234")]
    assert (ev[0]["copied"], ev[0]["shared"]) == (100, 0)
    assert (ev[1]["copied"], ev[1]["shared"]) == (0, 300)
    assert ev[0]["fields"]["handle"] == h and ev[0]["fields"]["sc"] == 0x04000100
    assert ev[0]["nr"] == uapi.FASTRPC_IOCTL_INVOKE and ev[0]["ret"] == 0
    assert ev[2]["errno"] == errno.ENOTTY
    view.release()
    os.close(fd)
    assert trace.RECORDER is None
    assert address(plain)  # keeps `plain` alive until here
