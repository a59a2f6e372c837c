"""End to end through the accel driver and the emulated DSP: INIT_CREATE, remotectl open by URI,
INVOKE with copied and shared buffers, MAP/MUNMAP, crashes, release."""
import errno
import os
import struct

import numpy as np
import pytest

from libadsprpc_compat.remotectl import ModuleOpenError, close_module, open_module
from qda_core import uapi
from qda_core.accel import GemRef

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom=cdsp"
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_SUM, SC_MAX = 0x02020100, 0x03020100
SC_NULL, SC_ECHO, SC_INC, SC_FAIL, SC_CRASH = 0x02000000, 0x03010100, 0x04000100, 0x05010000, 0x06000000
AEE_EBADSTATE_DSP = 0x8000040D
AEE_EBADPARM_DSP = 0x8000040E
AEE_EUNSUPPORTED_DSP = 0x80000414
AEE_ENOSUCHMOD_DSP = 0x8000043E


@pytest.fixture
def pd(cdsp):
    """A cdsp file with an unsigned user PD."""
    assert cdsp.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    return cdsp


def gem_buffer(f, size):
    h = f.gem_create(size)
    return h, f.mmap(f.gem_mmap_offset(h), (size + 4095) & ~4095)


def test_calculator_plain_and_gem(pd):
    ret, h = open_module(pd, CALC)
    assert ret == 0 and h > 0x200
    vec = np.arange(1000, dtype=np.int32)
    prim = struct.pack("<i", 1000)
    out = bytearray(8)
    assert pd.invoke(h, SC_SUM, [prim, vec, out]) == 0
    assert struct.unpack("<q", out)[0] == 499500

    gh, view = gem_buffer(pd, 4000)
    np.frombuffer(view, np.int32, 1000)[:] = vec
    out4 = bytearray(4)
    assert pd.invoke(h, SC_MAX, [prim, GemRef(gh, view[:4000]), out4]) == 0
    assert struct.unpack("<i", out4)[0] == 999
    neg = np.full(10, -5, np.int32)
    assert pd.invoke(h, SC_MAX, [struct.pack("<i", 10), neg, out4]) == 0
    assert struct.unpack("<i", out4)[0] == 0  # the SDK skel's max starts from 0
    assert close_module(pd, h) == 0
    view.release()


def test_handles_distinct_per_open(pd):
    hs = [open_module(pd, CALC)[1] for _ in range(3)]
    assert len(set(hs)) == 3 and all(h > 0x200 for h in hs)
    for h in hs:
        assert close_module(pd, h) == 0


def test_remotectl_handle0_also_opens(pd):
    ret, h = open_module(pd, TEST, iface=0)
    assert ret == 0
    assert pd.invoke(h, SC_NULL, []) == 0
    assert close_module(pd, h, iface=0) == 0


def test_module_not_found(pd):
    with pytest.raises(ModuleOpenError) as e:
        open_module(pd, "file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    assert e.value.code == AEE_ENOSUCHMOD_DSP


def test_copy_semantics_vs_by_reference(pd):
    _, h = open_module(pd, TEST)
    plain = bytearray(b"\x10" * 64)
    assert pd.invoke(h, SC_INC, [plain]) == 0
    assert plain == bytearray(b"\x01" * 64)  # the DSP saw a zeroed copy, its result was copied back

    gh, view = gem_buffer(pd, 4096)
    view[:64] = b"\x10" * 64
    assert pd.invoke(h, SC_INC, [GemRef(gh, view[:64])]) == 0
    assert bytes(view[:64]) == b"\x11" * 64  # the DSP worked on the caller's pages
    view.release()


def test_in_buffer_is_a_snapshot(pd):
    _, h = open_module(pd, TEST)
    src = bytearray(b"abcdefgh")
    dst = bytearray(8)
    assert pd.invoke(h, SC_ECHO, [src, dst]) == 0
    assert dst == src


def test_outputs_copied_even_when_the_method_fails(pd):
    _, h = open_module(pd, TEST)
    code = 0x8000040E
    assert pd.invoke(h, SC_FAIL, [struct.pack("<I", code)]) == code
    assert pd.invoke(h, SC_FAIL, [struct.pack("<I", 20)]) == 20


def test_wrong_counts_and_unknown_method(pd):
    _, h = open_module(pd, TEST)
    assert pd.invoke(h, 0x1F000000 | 0, [] ) in (AEE_EUNSUPPORTED_DSP, AEE_EBADPARM_DSP)
    assert pd.invoke(h, 0x10000000, []) == AEE_EUNSUPPORTED_DSP  # method 16: none
    assert pd.invoke(h, 0x03000000, []) == AEE_EBADPARM_DSP       # echo without buffers
    with pytest.raises(OSError) as e:
        pd.invoke(h, SC_ECHO, [b"x"])  # the typed API checks the count against sc
    assert e.value.errno == errno.EINVAL


def test_stale_handle(pd):
    _, h = open_module(pd, TEST)
    assert close_module(pd, h) == 0
    assert pd.invoke(h, SC_NULL, []) == AEE_ENOSUCHMOD_DSP


def test_crash_kills_the_pd(pd):
    _, h = open_module(pd, TEST)
    assert pd.invoke(h, SC_CRASH, []) == AEE_EBADSTATE_DSP
    assert pd.invoke(h, SC_NULL, []) == AEE_EBADSTATE_DSP  # dead for later calls


def test_unknown_gem_handle_in_invoke(pd, soc):
    _, h = open_module(pd, TEST)
    with soc.open_device("cdsp") as other:
        gh, view = gem_buffer(other, 4096)
        head = view[:16]
        # other's handle number means nothing in pd: ENOENT, never other's memory
        with pytest.raises(FileNotFoundError, match="no GEM handle"):
            pd.invoke(h, SC_INC, [GemRef(gh + 5, head)])
        head.release()
        view.release()


def test_bad_user_pointer_is_efault(pd):
    _, h = open_module(pd, TEST)
    descs = bytearray(24 * 2)
    struct.pack_into("<QQiI", descs, 0, 0x10, 8, -1, 0)   # unreadable in-buffer
    struct.pack_into("<QQiI", descs, 24, 0x20, 8, -1, 0)
    from qda_core.uaccess import address

    kbuf = uapi.qda_invoke_args.pack(handle=h, sc=SC_ECHO, args=address(descs))
    assert pd.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, kbuf) == -errno.EFAULT
    kbuf = uapi.qda_invoke_args.pack(handle=h, sc=SC_ECHO, args=0x30)  # unreadable descriptors
    assert pd.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, kbuf) == -errno.EFAULT


def test_lib_invoke_command_size_works(pd):
    _, h = open_module(pd, TEST)
    kbuf = bytearray(uapi.qda_invoke_args.pack(handle=h, sc=SC_NULL, args=0)) + bytearray(8)
    assert pd.ioctl(0xC0186447, kbuf) == 0  # LIB encodes 24 bytes; dispatch is by nr


def test_init_create_validation(cdsp):
    buf = uapi.qda_init_create.pack(filelen=(4 << 20) + 1)
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, buf) == -errno.EINVAL
    buf = uapi.qda_init_create.pack(filelen=16, filefd=-1)  # LIB's static-PD form
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, buf) == -errno.EINVAL
    buf = uapi.qda_init_create.pack(filelen=16, filefd=0, file=0x40)  # inline image, bad pointer
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, buf) == -errno.EFAULT


def test_init_create_image_in_gem(cdsp):
    gh, view = gem_buffer(cdsp, 8192)
    image = bytearray(104)  # a minimal ELF header of a Hexagon shell: ELFCLASS32, LSB, EM_QDSP6
    image[:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HH", image, 16, 3, 164)
    view[:len(image)] = image
    assert cdsp.init_create(gem=GemRef(gh, view[:len(image)])) == 0
    assert open_module(cdsp, TEST)[0] == 0
    view.release()


def test_init_create_rejects_a_non_hexagon_image(cdsp):
    assert cdsp.init_create(b"\x7fELF\x02\x01" + bytes(64)) == 0x80000411


def test_attach_to_root_pd(cdsp):
    assert cdsp.init_attach() == 0
    ret, h = open_module(cdsp, TEST)
    assert ret == 0 and cdsp.invoke(h, SC_NULL, []) == 0


def test_map_and_munmap(pd):
    gh, view = gem_buffer(pd, 8192)
    va = pd.map(uapi.QDA_MAP_REQUEST_ATTR, gh, flags=2)
    assert va != 0
    pd.munmap(uapi.QDA_MAP_REQUEST_ATTR, fd=gh, vaddr=va, size=8192)
    va2 = pd.map(uapi.QDA_MAP_REQUEST_LEGACY, gh, flags=0x1000)
    pd.munmap(uapi.QDA_MAP_REQUEST_LEGACY, vaddrout=va2, size=8192)
    with pytest.raises(OSError):  # the DSP rejects an unmap of something never mapped
        pd.munmap(uapi.QDA_MAP_REQUEST_LEGACY, vaddrout=0xDEAD000, size=4096)
    buf = uapi.qda_mem_map.pack(request=3)
    assert pd.ioctl(uapi.DRM_IOCTL_QDA_MAP, buf) == -errno.EINVAL
    buf = uapi.qda_mem_map.pack(request=2, fd=99)
    assert pd.ioctl(uapi.DRM_IOCTL_QDA_MAP, buf) == -errno.ENOENT
    buf = uapi.qda_mem_unmap.pack(request=0)
    assert pd.ioctl(uapi.DRM_IOCTL_QDA_MUNMAP, buf) == -errno.EINVAL
    view.release()


def test_release_on_close_tears_down_the_pd(soc):
    dsp = soc.domain("cdsp").dsp
    f = soc.open_device("cdsp")
    f.init_create()
    assert [p.kind for p in dsp.processes() if p.client_id == f.client_id] == ["user"]
    f.close()
    assert not [p for p in dsp.processes() if p.client_id == f.client_id]


def test_no_fds_or_objects_left(soc):
    before = set(os.listdir("/proc/self/fd"))
    with soc.open_device("cdsp") as f:
        f.init_create()
        _, h = open_module(f, CALC)
        gh, view = gem_buffer(f, 4096)
        fd = f.prime_handle_to_fd(gh)
        os.close(fd)
        out = bytearray(8)
        f.invoke(h, SC_SUM, [struct.pack("<i", 1), GemRef(gh, view[:4]), out])
        view.release()
    assert set(os.listdir("/proc/self/fd")) == before
