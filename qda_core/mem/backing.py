"""Real shared memory behind every emulated buffer.

A :class:`Backing` is a memfd (or an imported fd) mapped once, read-write, for the "kernel"
side: the DSP's SMMU view and the driver's payload copies go through this mapping, while user
mappings are separate ``mmap`` calls on the same file — so both see the same pages, exactly as
a dma-buf's importer and exporter do.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import threading

from .. import debug
from ..errors import errno_error

PAGE_SIZE = mmap.PAGESIZE

#: The emulated DMA memory pool (what CMA is on a device): bytes of memfd backing the emulator
#: may allocate in this process. Beyond it, allocations fail with ENOMEM instead of exhausting
#: the host. Set with QDARPC_DMA_LIMIT (bytes; K/M/G suffixes accepted).
def _limit() -> int:
    text = os.environ.get("QDARPC_DMA_LIMIT", "8G").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


DMA_LIMIT = _limit()
_pool_lock = threading.Lock()  # protects _pool_used
_pool_used = 0


def _charge(size: int) -> None:
    global _pool_used
    with _pool_lock:
        if _pool_used + size > DMA_LIMIT:
            raise errno_error(errno.ENOMEM, f"emulated DMA memory exhausted: {size:#x} bytes asked, "
                                            f"{DMA_LIMIT - _pool_used:#x} of {DMA_LIMIT:#x} left (QDARPC_DMA_LIMIT)")
        _pool_used += size


def _uncharge(size: int) -> None:
    global _pool_used
    with _pool_lock:
        _pool_used -= size


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Backing:
    """Pages of one buffer, with the kernel-side mapping (``view``, ``addr``)."""

    __slots__ = ("fd", "size", "_mm", "_pin", "view", "addr", "key", "_charged")

    def __init__(self, size: int, *, name: str = "qdarpc-gem", fd: int | None = None):
        self._charged = 0
        if fd is None:
            _charge(size)
            try:
                fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            except OSError:
                _uncharge(size)
                raise
            try:
                os.ftruncate(fd, size)
                # Sealed so nobody holding an exported fd can shrink it under the DSP (SIGBUS).
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
            except OSError:
                os.close(fd)
                _uncharge(size)
                raise
            self._charged = size
        try:
            # Populated up front: dma_alloc_coherent hands out real pages, and faulting them in
            # one by one during a large copy costs several times the copy itself.
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            os.close(fd)
            _uncharge(self._charged)
            err = getattr(exc, "errno", None) or 22
            raise errno_error(err, f"cannot map {size:#x} bytes of fd") from exc
        self.fd = fd
        self.size = size
        self.view = memoryview(self._mm)
        # The pin keeps the mapping's address stable and known; released in close().
        self._pin = ctypes.c_char.from_buffer(self._mm)
        self.addr = ctypes.addressof(self._pin)
        st = os.fstat(fd)
        self.key = (st.st_dev, st.st_ino)
        debug.created("backing")

    @classmethod
    def import_fd(cls, fd: int) -> "Backing":
        """Map a foreign shareable fd (memfd, tmpfs/shm file): the emulated dma-buf import."""
        import stat

        st = os.fstat(fd)  # EBADF for a closed fd
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            raise errno_error(22, f"fd {fd} is not a dma-buf (need a non-empty memfd/shm file)")
        dup = os.dup(fd)
        # The importer maps read-write if the fd allows it; otherwise fall back to read-only pages.
        return cls(st.st_size, fd=dup) if _writable(dup) else cls._readonly(dup, st.st_size)

    @classmethod
    def _readonly(cls, fd: int, size: int) -> "Backing":
        os.close(fd)
        raise errno_error(13, "read-only dma-buf fds cannot be imported for device access")

    def close(self) -> None:
        """Unmap and close; pages stay alive while user mappings of the file exist."""
        if self.fd < 0:
            return
        self.view.release()
        del self._pin
        try:
            self._mm.close()
        except BufferError:
            pass  # a transient export (e.g. a DSP-side view) still exists; refcounting frees it
        os.close(self.fd)
        self.fd = -1
        _uncharge(self._charged)
        debug.destroyed("backing")


def _writable(fd: int) -> bool:
    return (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDWR
