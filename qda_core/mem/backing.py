"""Real shared memory behind every emulated buffer.

A :class:`Backing` is a memfd (or an imported fd) mapped once, read-write, for the "kernel"
side: the DSP's SMMU view and the driver's payload copies go through this mapping, while user
mappings are separate ``mmap`` calls on the same file — so both see the same pages, exactly as
a dma-buf's importer and exporter do.

What a memfd is made to keep of a dma-buf's guarantees:

- **Fixed size.** A dma-buf never changes size; a memfd can be truncated, and a truncated
  file under the kernel-side mapping kills the process (SIGBUS) at the next DSP access. Memfds
  created here are sealed ``F_SEAL_SHRINK | F_SEAL_GROW``. :meth:`Backing.import_fd` accepts a
  foreign fd only if it cannot shrink: it already has ``F_SEAL_SHRINK``, or it is a memfd that
  allows sealing, which the import seals ``F_SEAL_SHRINK | F_SEAL_GROW`` (permanently, as
  seals are; also when the import then fails). Anything else (a memfd made without
  ``MFD_ALLOW_SEALING``, a regular or ``/dev/shm`` file) is refused with ``EINVAL``.
- **Read-only exports stay read-only.** A dma-buf fd cannot be reopened through
  ``/proc/self/fd/N``; a memfd can, with any access mode its inode's permission bits allow. A
  seal cannot help (seals are per inode: ``F_SEAL_WRITE`` / ``F_SEAL_FUTURE_WRITE`` would stop
  the exporter's and every writable export's writes too), so memfds created here get mode
  ``0400`` and :meth:`Backing.export_fd` never reopens for writing: a writable export is a
  ``dup`` of the kernel-side ``O_RDWR`` description (as DRM hands every export the same
  dma-buf file), a read-only one a ``/proc`` reopen with ``O_RDONLY``. Reopening a read-only
  export for writing then fails with ``EACCES`` for an unprivileged process, the owner
  included — with caveats a real dma-buf does not have: **root** (``CAP_DAC_OVERRIDE``, as in
  most containers and CI) bypasses the mode bits; the inode's **owner** (the emulator's uid)
  may deliberately ``fchmod`` it writable first (ownership, not access mode, decides that); and
  an export of an *imported* buffer keeps whatever mode its foreign owner gave the inode.
- **A bounded pool.** Everything the emulator maps for device access counts against
  ``QDARPC_DMA_LIMIT`` (:func:`charge`, :func:`uncharge`, :func:`pool_used`): buffers it creates
  (charged, then populated, before use) and imports (charged at import, uncharged at close,
  mapped without populating: pages come in as the DSP touches them), so a sparse foreign file
  larger than the pool fails with ``ENOMEM`` before any of it is touched. Charges may be tied
  to a file (``key=(st_dev, st_ino)``): a file is counted once however many imports map it.
- **One host mapping per file.** An import of a file the emulator already maps whole and
  writable (a buffer it created, an earlier import, an rpcmem allocation:
  :func:`share_mapping`) uses that mapping instead of mapping the file again. Mapping,
  faulting in and unmapping a large buffer per import made by-reference invokes cost more with
  the buffer's size (the legacy driver imports per invoke); a borrowed mapping costs the same
  for any size. The import still takes its own fd, charge, view and IOVA, and holds the mapping
  only while it lives (an export of it), so nothing outlives what an own mapping would.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import stat
import threading
import weakref
from typing import Hashable

from .. import debug
from .._ext import load
from ..errors import InternalError, errno_error
from .vma import file_key

#: The exporter of every buffer's kernel-side view (qda_core._cdev.Pages): a DSP skel's
#: argument views are slices of that view, so ``view.obj`` is one, and it counts its exports.
Pages = load("_cdev").Pages

__all__ = ["Backing", "DMA_LIMIT", "HOST_PAGE_SIZE", "charge", "uncharge", "pool_used", "page_align",
           "share_mapping", "unshare_mapping", "new_memfd", "export_of", "rekey_charge", "keep_private",
           "release_private"]

#: The host CPU page (what mmap rounds to); the DSP/FastRPC page is ``wire.PAGE_SIZE``.
HOST_PAGE_SIZE = mmap.PAGESIZE


def _limit() -> int:
    text = os.environ.get("QDARPC_DMA_LIMIT", "8G").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


#: The emulated DMA memory pool (what CMA is on a device): bytes of memory the emulator may map
#: for device access in this process. Beyond it, allocations and imports fail with ENOMEM
#: instead of exhausting the host. Set with QDARPC_DMA_LIMIT (bytes; K/M/G suffixes accepted);
#: read at each charge, so tests may patch this attribute.
DMA_LIMIT = _limit()
# Re-entrant: a collection inside a charge can finalize a buffer whose free uncharges.
_pool_lock = threading.RLock()  # protects _pool_used and _pool_files
os.register_at_fork(after_in_child=_pool_lock._at_fork_reinit)  # see qda_core.debug
_pool_used = 0
_pool_files: dict[Hashable, list[int]] = {}  # file key -> [bytes charged, references]


def charge(size: int, key: Hashable | None = None) -> None:
    """Take ``size`` bytes from the emulated DMA pool, or raise ``OSError(ENOMEM)``.

    Call it before creating or touching the memory, and pair it with one :func:`uncharge`.
    With ``key`` (the file's ``(st_dev, st_ino)``) the bytes belong to that file: while it is
    charged, further charges of the same key only take a reference, so a buffer allocated from
    the pool and then imported by a driver is counted once. The key must stay charged only
    while its file is open (an inode number is reused once the file is gone).

    For the library layer: ``rpcmem_alloc`` (``libadsprpc_compat``) charges its buffers against
    this same pool; charging with the memfd's key (after ``memfd_create``, before
    ``ftruncate``) keeps a by-reference import of the buffer from counting it twice.
    """
    global _pool_used
    if size < 0:
        raise errno_error(errno.EINVAL, f"cannot charge {size} bytes")
    with _pool_lock:
        entry = _pool_files.get(key) if key is not None else None
        if entry is not None:
            entry[1] += 1
            return
        if _pool_used + size > DMA_LIMIT:
            raise errno_error(errno.ENOMEM, f"emulated DMA memory exhausted: {size:#x} bytes asked, "
                                            f"{max(DMA_LIMIT - _pool_used, 0):#x} of {DMA_LIMIT:#x} left "
                                            "(QDARPC_DMA_LIMIT)")
        _pool_used += size
        if key is not None:
            _pool_files[key] = [size, 1]


def uncharge(size: int, key: Hashable | None = None) -> None:
    """Give back what :func:`charge` took (with a ``key``: drop its reference; the file's bytes
    return with the last one)."""
    global _pool_used
    with _pool_lock:
        if key is not None:
            entry = _pool_files.get(key)
            if entry is None:
                raise InternalError(f"uncharge of file {key} that is not charged")
            entry[1] -= 1
            if entry[1]:
                return
            del _pool_files[key]
            size = entry[0]
        _pool_used -= size


def pool_used() -> int:
    """Bytes of the emulated DMA pool in use now (everything charged and not yet given back)."""
    return _pool_used


# Re-entrant: a collection inside a locked section can finalize an RpcMem, whose free unshares
# its mapping on the same thread (a plain Lock deadlocked there).
_shared_lock = threading.RLock()  # protects _shared; an export is taken under it (see _borrow)
os.register_at_fork(after_in_child=_shared_lock._at_fork_reinit)
_shared: dict[Hashable, list[weakref.ref]] = {}  # file key -> mappings of the whole file


def share_mapping(key: Hashable, mm: mmap.mmap) -> None:
    """Offer ``mm``, a ``MAP_SHARED`` read-write mapping of the whole of file ``key``, to later
    imports of that file (see the module docstring). The owner calls :func:`unshare_mapping`
    before closing it; until then an import may hold an export of it (``mm.close()`` then raises
    ``BufferError`` and the pages stay mapped until the import goes, as its own mapping would).
    Held weakly: a mapping dropped without unsharing is skipped."""
    ref = weakref.ref(mm)
    with _shared_lock:
        refs = _shared.setdefault(key, [])
        refs[:] = [r for r in refs if r() is not None]  # may collect, and unshare re-entrantly
        _shared.setdefault(key, refs).append(ref)  # into the list in the table now


def unshare_mapping(key: Hashable, mm: mmap.mmap) -> None:
    """No further import may borrow ``mm`` (imports holding it keep it until they go)."""
    with _shared_lock:
        refs = _shared.get(key)
        if refs is None:
            return
        refs[:] = [r for r in refs if r() is not None and r() is not mm]
        if not refs:
            del _shared[key]


def _borrow(key: Hashable, size: int):
    """``(mapping, view, pin)`` of a shared mapping of file ``key`` exactly ``size`` bytes long,
    or None. The exports are taken under the lock, so an owner that unshares and then closes
    either is not found or finds its mapping exported."""
    with _shared_lock:
        for ref in _shared.get(key, ()):
            mm = ref()
            if mm is not None and not mm.closed and len(mm) == size:
                return mm, memoryview(Pages(mm)), ctypes.c_char.from_buffer(mm)
    return None


def page_align(n: int) -> int:
    return (n + HOST_PAGE_SIZE - 1) & ~(HOST_PAGE_SIZE - 1)


class Backing:
    """Pages of one buffer, with the kernel-side mapping (``view``, ``addr``).

    ``Backing(size)`` allocates: a sealed, mode-0400 memfd, charged to the pool, populated.
    ``fd=`` adopts an fd instead (the constructor owns it from then on, closing it on failure):
    charged, not populated, mapped through a shared mapping of the file if there is one;
    :meth:`import_fd` is the checked way in for a foreign fd. A mapping of its own is shared.
    """

    __slots__ = ("fd", "size", "_mm", "_pin", "view", "addr", "key", "_charged", "_own")

    def __init__(self, size: int, *, name: str = "qdarpc-gem", fd: int | None = None):
        self._charged = page_align(size)
        populate = fd is None
        key = None
        charged = False
        try:
            if fd is None:
                fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            key = file_key(fd)
            charge(self._charged, key)  # before any page exists or is touched
            charged = True
            if populate:
                _fix_new(fd, size)
            # Populated up front when created: dma_alloc_coherent hands out real pages, and
            # faulting them in one by one during a large copy costs several times the copy
            # itself. An import is not: it may be sparse, and only what the DSP touches is used.
            mapped = None if populate else _borrow(key, size)
            self._own = mapped is None
            if mapped is None:
                flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
                mm = mmap.mmap(fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)
                # The pin keeps the mapping's address stable and known; released in close().
                mapped = mm, memoryview(Pages(mm)), ctypes.c_char.from_buffer(mm)
        except BaseException as exc:
            if fd is not None:
                os.close(fd)
            if charged:
                uncharge(self._charged, key)
            if isinstance(exc, (ValueError, OverflowError)):  # e.g. mmap of an empty file
                raise errno_error(errno.EINVAL, f"cannot map {size:#x} bytes of fd: {exc}") from exc
            raise
        self.fd = fd
        self.size = size
        self.key = key
        self._mm, self.view, self._pin = mapped
        self.addr = ctypes.addressof(self._pin)
        if self._own:
            share_mapping(key, self._mm)
        debug.created("backing")

    @classmethod
    def import_fd(cls, fd: int) -> "Backing":
        """Map a foreign shareable fd (memfd, tmpfs/shm file): the emulated dma-buf import.

        The fd must be a non-empty file open read-write whose size cannot shrink (see the module
        docstring): ``EINVAL`` otherwise (``EACCES`` if read-only). Its size is charged to the
        pool before anything is mapped (``ENOMEM`` beyond ``QDARPC_DMA_LIMIT``).
        """
        dup = os.dup(fd)  # EBADF for a closed fd; every check below is on the description we keep
        try:
            st = os.fstat(dup)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                raise errno_error(errno.EINVAL, f"fd {fd} is not a dma-buf (need a non-empty memfd/shm file)")
            if (st.st_dev, st.st_ino) in _private:
                raise errno_error(errno.EINVAL, f"fd {fd} is one of the emulator's own arena files, not a dma-buf")
            if not _writable(dup):
                raise errno_error(errno.EACCES, "read-only dma-buf fds cannot be imported for device access")
            _fix_size(dup, fd)
            size = os.fstat(dup).st_size  # final: it cannot shrink any more
        except BaseException:
            os.close(dup)
            raise
        return cls(size, fd=dup)

    def export_fd(self, writable: bool, cloexec: bool) -> int:
        """A new fd on these pages for user space (a PRIME or ALLOC_DMA_BUFF dma-buf fd).

        ``writable``: a dup of the kernel-side ``O_RDWR`` description; else an ``O_RDONLY``
        description, which (mode 0400 inode) an unprivileged process cannot reopen for writing
        (see the module docstring for root and the owner). ``cloexec``:
        ``O_CLOEXEC`` on the new fd; without it the fd is inherited across ``exec``.
        """
        return export_of(self.fd, writable, cloexec)

    def close(self) -> None:
        """Unmap and close; pages stay alive while user mappings of the file exist."""
        if self.fd < 0:
            return
        if self._own:
            unshare_mapping(self.key, self._mm)
        self.view.release()
        del self._pin
        if self._own:
            try:
                self._mm.close()
            except BufferError:
                pass  # still exported (a DSP-side view, a borrowing import): unmapped when that goes
        self._mm = None  # a borrowed mapping is its owner's to close
        os.close(self.fd)
        self.fd = -1
        uncharge(self._charged, self.key)
        debug.destroyed("backing")


def new_memfd(name: str, size: int) -> int:
    """A memfd of ``size`` bytes made as every buffer the emulator creates is (see the module
    docstring): sealed against resizing, mode 0400. The caller owns it and its charge."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        _fix_new(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fix_new(fd: int, size: int) -> None:
    os.ftruncate(fd, size)
    # Sealed so nobody holding an exported fd can shrink it under the DSP (SIGBUS).
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    # Owner read-only: no reopen through /proc can make a writable fd (see export_of).
    os.fchmod(fd, 0o400)


def export_of(fd: int, writable: bool, cloexec: bool) -> int:
    """A new fd on the pages of ``fd``, a buffer's own file (:meth:`Backing.export_fd`)."""
    if writable:
        new = os.dup(fd)  # never a reopen: the inode's mode would (rightly) refuse it
    else:
        new = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    if not cloexec:
        os.set_inheritable(new, True)
    return new


def rekey_charge(size: int, key: Hashable) -> None:
    """Make ``size`` unkeyed bytes charged by :func:`charge` the charge of file ``key`` (a
    buffer that got a file of its own); :func:`uncharge` with ``key`` then gives them back."""
    with _pool_lock:
        if key in _pool_files:
            raise InternalError(f"file {key} is already charged")
        _pool_files[key] = [size, 1]


# Files only the emulator may map (arena files): never imported as a dma-buf, though their fds
# sit in the process's table where any fd number can be named.
_private: set[Hashable] = set()


def keep_private(key: Hashable) -> None:
    """Refuse imports of file ``key`` from now on."""
    _private.add(key)


def release_private(key: Hashable) -> None:
    """Call before closing the file: its inode number may name another file after."""
    _private.discard(key)


def _fix_size(fd: int, user_fd: int) -> None:
    """Make sure ``fd``'s file can no longer shrink, or raise EINVAL saying what is needed."""
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:  # EINVAL: a file system without seals (disk files)
        seals = fcntl.F_SEAL_SEAL
    if seals & fcntl.F_SEAL_SHRINK:
        return
    if seals & fcntl.F_SEAL_SEAL:
        raise errno_error(errno.EINVAL, f"fd {user_fd} can be truncated (not a sealed memfd): a dma-buf "
                          "has a fixed size; create it with memfd_create(MFD_ALLOW_SEALING) and seal it "
                          "F_SEAL_SHRINK, or use rpcmem/ALLOC_DMA_BUFF")
    # A sealable memfd: the importer fixes its size, as a dma-buf's is from its creation.
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)


def _writable(fd: int) -> bool:
    return (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDWR
