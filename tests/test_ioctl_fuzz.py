"""Random bytes into every ioctl of both emulated drivers: always a kernel-style return value,
never an exception, a crash or a leak; the file still works afterwards.

fd fields are drawn from a safe set (an invalid fd, a closed fd, a real memfd) so the fuzzer
never imports the test process's own files; fds an ioctl hands back are closed.
"""
import gc
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from qda_core import debug, uapi
from qda_core.mem import backing
from qda_core.soc import Soc
from qda_core.uaccess import address

ACCEL = sorted(i.number for i in uapi.ACCEL_IOCTLS.values())
LEGACY = sorted(uapi.LEGACY_IOCTLS)
# Fields that name an fd in each layout (PRIME's handle<->fd, MEM_MAP, INIT_CREATE, MMAP).
FD_FIELDS = ("fd", "filefd")


def _fds():
    memfd = os.memfd_create("fuzz", os.MFD_ALLOW_SEALING)  # importable: its size can be sealed
    os.ftruncate(memfd, 8192)
    return memfd


def _run(soc_path: str, request: int, data: bytes, fd_choice: int, memfd: int, closed_fd: int) -> None:
    soc = Soc("minimal")
    f = soc.open(soc_path)
    try:
        layout = (uapi.ACCEL_IOCTLS.get(request & 0xFF) if soc_path.startswith("/dev/accel")
                  else uapi.LEGACY_IOCTLS.get(request))
        layout = layout.layout if layout else None
        buf = bytearray(data)
        if layout is not None:
            buf = bytearray(data.ljust(layout.size, b"\0"))
            for name in FD_FIELDS:
                if name in layout.fields:
                    layout.set(buf, name, (-1, closed_fd, memfd)[fd_choice])
        ret = f.ioctl(request, buf)
        assert isinstance(ret, int)
        # fds handed back to user space are the caller's to close
        if ret == 0 and request in (uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD, uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF):
            lay = uapi.drm_prime_handle if request == uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD else uapi.fastrpc_alloc_dma_buf
            os.close(lay.get(buf, "fd"))
        # the file still answers a well-formed call
        if soc_path.startswith("/dev/accel"):
            assert f.query() == "cdsp"
        else:
            assert f.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, uapi.fastrpc_ioctl_capability.pack(domain=3,
                                                                                              attribute_id=1)) == 0
    finally:
        f.close()
        if soc.domain("cdsp").legacy_channel is not None:
            soc.domain("cdsp").legacy_channel.remove()  # frees the channel's remote heap, if any


def _check_clean(before):
    gc.collect()
    assert debug.live_objects() == before


def _fuzz(path, requests):
    @settings(max_examples=150, deadline=None)
    @given(request=st.sampled_from(requests) | st.integers(0, 0xFFFF_FFFF),
           data=st.binary(max_size=72), fd_choice=st.integers(0, 2))
    def inner(request, data, fd_choice):
        before = debug.live_objects()
        memfd = _fds()
        closed_fd = os.dup(memfd)
        os.close(closed_fd)
        try:
            _run(path, request, data, fd_choice, memfd, closed_fd)
        finally:
            os.close(memfd)
        _check_clean(before)
    return inner


def test_fuzz_accel_ioctls(monkeypatch, fd_guard):
    monkeypatch.setattr(backing, "DMA_LIMIT", 64 << 20)  # random sizes must not eat the host
    _fuzz("/dev/accel/accel0", ACCEL)()


def test_fuzz_legacy_ioctls(monkeypatch, fd_guard):
    monkeypatch.setattr(backing, "DMA_LIMIT", 64 << 20)
    _fuzz("/dev/fastrpc-cdsp", LEGACY)()


def test_huge_sizes_fail_before_touching_memory(soc):
    with soc.open_device("cdsp") as f:
        buf = uapi.drm_qda_gem_create.pack(size=1 << 40)
        assert f.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, buf) == -12  # ENOMEM from the IOVA space
        # an inline buffer claiming 1 TiB: the message buffer cannot be placed -> ENOMEM
        small = bytearray(16)
        descs = bytearray(24)
        struct.pack_into("<QQiI", descs, 0, address(small), 1 << 40, -1, 0)
        kbuf = uapi.qda_invoke_args.pack(handle=0x300, sc=0x02010000, args=address(descs))
        assert f.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, kbuf) == -12
    with soc.open("/dev/fastrpc-cdsp") as g:
        buf = uapi.fastrpc_alloc_dma_buf.pack(size=1 << 40)
        assert g.ioctl(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, buf) == -12


def test_dma_limit(monkeypatch, soc):
    monkeypatch.setattr(backing, "DMA_LIMIT", backing._pool_used + (1 << 20))
    with soc.open_device("cdsp") as f:
        f.gem_create(4096)
        try:
            f.gem_create(2 << 20)
        except OSError as exc:
            assert exc.errno == 12 and "QDARPC_DMA_LIMIT" in str(exc)
        else:
            raise AssertionError("allocation beyond the DMA limit succeeded")
