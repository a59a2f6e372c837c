"""Small GEM objects packed into shared arena files, so that they cost no fd of their own.

A GEM object of at most :data:`ARENA_MAX` bytes is a *slot* of an arena file (a memfd of
:data:`CHUNK_SIZE` bytes, sparse, mapped once for the kernel side and never populated up
front): creating one takes no fd, no ``mmap`` and no page. Slots come in power-of-two page
classes, one file per class until it fills; a freed slot is hole-punched (its pages go back to
the host, and the next object there reads zeros, as ``dma_alloc_coherent`` memory does).

An object that must be a file of its own — its first CPU mapping (``mmap`` of its fake offset),
PRIME export, or any use giving the DSP its device address (``MAP``, a handle or by-reference
argument) — is *promoted*: its pages move to a memfd of their own,
which is mapped over the slot's kernel-side address (``MAP_FIXED``), so every view and device
address taken of it stays valid, and the slot's pages are punched out of the arena. Only the
pages holding data are copied (``SEEK_DATA``), so promoting a fresh object copies nothing.

Nobody outside the emulator ever sees an arena file: user space gets fds only of promoted
objects, and :meth:`Backing.import_fd` refuses the arena files themselves (their fds are in the
process's table, as every emulator fd is). A write to a slot *during* its promotion, from a
thread that holds no reference given for it (a DSP reaching an IOVA it was never passed), may
be lost: every sanctioned access — a CPU mapping, a by-reference argument, a ``MAP`` — needs
the promotion first. docs/dataplane.md has the whole model.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import weakref

from .. import debug
from ..errors import InternalError, errno_error
from . import backing as _backing
from .backing import HOST_PAGE_SIZE, page_align
from .vma import file_key

__all__ = ["ARENA_MAX", "CHUNK_SIZE", "Slot", "alloc", "stats"]

#: The largest object kept in an arena (bytes); larger ones get a memfd of their own at once.
ARENA_MAX = 1 << 20
#: Bytes of one arena file and of its kernel-side mapping (address space only until touched).
CHUNK_SIZE = 1 << 30

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)
_FALLOC_FL_PUNCH_HOLE = 0x02 | 0x01  # PUNCH_HOLE | KEEP_SIZE (linux/falloc.h)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map_over(addr: int, size: int, fd: int, offset: int) -> None:
    """Map ``size`` bytes of ``fd`` from ``offset`` at ``addr``, replacing what is there."""
    got = _libc.mmap(addr, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | 0x10,  # MAP_FIXED
                     fd, offset)
    if got == _MAP_FAILED or got != addr:
        e = ctypes.get_errno()
        raise errno_error(e or errno.ENOMEM, f"cannot map {size:#x} bytes at {addr:#x}: {os.strerror(e)}")


def _punch(fd: int, offset: int, size: int) -> None:
    """Give the pages of ``[offset, offset+size)`` back to the host; they read as zeros after."""
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE, offset, size) != 0:
        e = ctypes.get_errno()
        raise errno_error(e, f"cannot free arena pages: {os.strerror(e)}")


class _Chunk:
    """One arena file of equal slots, and its kernel-side mapping."""

    __slots__ = ("fd", "key", "slot_size", "mm", "addr", "free", "next", "used", "pid", "forks",
                 "__weakref__")

    def __init__(self, slot_size: int):
        fd = _backing.new_memfd(f"qdarpc-arena-{slot_size // 1024}k", CHUNK_SIZE)  # sealed, 0400
        try:
            self.mm = mmap.mmap(fd, CHUNK_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.key = file_key(fd)
        self.slot_size = slot_size
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self.free: list[int] = []  # slot offsets given back
        self.next = 0              # the first offset never handed out
        self.used = 0
        self.pid = _pid          # the process whose arena it is (a forked child only inherits it)
        self.forks = _forks      # the process's forks when it was made (see forked)
        _backing.keep_private(self.key)
        debug.created("arena")

    @property
    def forked(self) -> bool:
        """The process forked since the file was made: a child shares its pages, so no slot of
        it is handed out again (a slot free at the fork may still be: no child object is there)."""
        return self.forks != _forks

    @property
    def full(self) -> bool:
        return self.forked or (not self.free and self.next + self.slot_size > CHUNK_SIZE)

    @property
    def ours(self) -> bool:
        """False in a forked child: the parent's file, whose slots the child must never punch
        or hand out (its pages are the parent's objects)."""
        return self.pid == _pid

    def take(self) -> int:
        self.used += 1
        if self.free:
            return self.free.pop()
        off, self.next = self.next, self.next + self.slot_size
        return off

    def close(self) -> None:
        _backing.release_private(self.key)
        try:
            self.mm.close()
        except BufferError:
            pass  # a view of a slot is still held (an SMMU cache): unmapped when it goes
        os.close(self.fd)
        self.fd = -1
        debug.destroyed("arena")


_lock = threading.Lock()  # protects every chunk's slot lists and the classes below
_classes: dict[int, list[_Chunk]] = {}  # slot size -> chunks of that class, newest last
_pid = os.getpid()
_inherited: list = []  # a child's view of its parent's arenas: kept, never used


_forks = 0  # forks of this process so far: a file made before the last one is shared with a child


def _before_fork() -> None:
    # Every file is marked at once, without waiting for the arena lock inside fork() (a thread
    # holding it may need the allocator, which a sanitizer's fork() holds while the handlers
    # run). A thread that checked a file just before may still hand out one of its slots, or
    # queue one freed before the fork: either was free at the fork, so no child object is there.
    global _forks
    _forks += 1


def _after_fork_in_child() -> None:
    global _classes, _pid
    _lock._at_fork_reinit()  # see qda_core.debug
    _inherited.append(_classes)  # the parent's: freeing or promoting its objects punches nothing
    _classes, _pid = {}, os.getpid()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _slot_size(size: int) -> int:
    pages = -(-size // HOST_PAGE_SIZE)
    return HOST_PAGE_SIZE << (pages - 1).bit_length()


def alloc(size: int, name: str = "qdarpc-gem") -> "Slot":
    """A zeroed buffer of ``size`` bytes (at most :data:`ARENA_MAX`) in an arena, charged to the
    emulated DMA pool (``ENOMEM`` beyond it): a :class:`~qda_core.mem.backing.Backing` without
    an fd until one is asked for."""
    if not 0 < size <= ARENA_MAX:
        raise InternalError(f"arena slot of {size:#x} bytes")
    size = page_align(size)
    slot_size = _slot_size(size)
    _backing.charge(size)
    if _released:
        _drain()
    try:
        with _lock:
            chunks = _classes.setdefault(slot_size, [])
            chunk = next((c for c in reversed(chunks) if not c.full), None)
            if chunk is None:
                chunk = _Chunk(slot_size)
                chunks.append(chunk)
            offset = chunk.take()
    except BaseException:
        _backing.uncharge(size)
        raise
    return Slot(chunk, offset, size, name)


# Promotions, and frees after them, one at a time: a promotion is rare, and a module lock is
# made free again in a forked child (a per-slot one held at the fork would hang the child).
_promoting = threading.Lock()
os.register_at_fork(after_in_child=_promoting._at_fork_reinit)


def _give_back(chunk: _Chunk, offset: int | None) -> None:
    """Return a slot of ``chunk`` (``offset`` None: retired, never handed out again)."""
    with _lock:
        chunk.used -= 1
        if offset is not None and not chunk.forked:
            chunk.free.append(offset)
        if chunk.used:
            return
        _classes[chunk.slot_size].remove(chunk)
        if not _classes[chunk.slot_size]:
            del _classes[chunk.slot_size]
    chunk.close()


# Slots freed while views of them were still held (a DSP module keeping a view of an argument):
# not handed out again until the last such view is gone, as it would read and write the next
# object there. Their weakref callbacks queue them in _released (a callback may run inside a
# locked section, during a collection); alloc and close give them back.
class _Held(weakref.ref):
    __slots__ = ("slot",)  # (chunk, offset, size)


_quarantine: dict[int, _Held] = {}  # id -> ref (a weakref hashes as its referent, unhashable)
_released: list[tuple[_Chunk, int, int]] = []


def _quarantined(ref: _Held) -> None:
    _quarantine.pop(id(ref), None)
    _released.append(ref.slot)
    if _lock.acquire(blocking=False):  # else a locked section of this or another thread: later
        _lock.release()
        _drain()


def _drain() -> None:
    while _released:
        try:
            chunk, offset, size = _released.pop()
        except IndexError:  # another thread took the last one
            return
        if chunk.ours:  # in a forked child, a view of its parent's slot went: not ours to free
            _punch(chunk.fd, offset, size)  # what stale views wrote meanwhile
            _give_back(chunk, offset)


def stats() -> dict[int, tuple[int, int]]:
    """Slot size -> (arena files, slots in use): how much the arenas hold now."""
    with _lock:
        return {s: (len(cs), sum(c.used for c in cs)) for s, cs in _classes.items()}


class Slot:
    """A buffer in an arena slot, with :class:`~qda_core.mem.backing.Backing`'s interface.

    ``view``, ``addr`` and ``size`` are fixed for the buffer's life. ``fd`` is the buffer's own
    file: reading it the first time promotes the buffer (see the module docstring); until then
    ``key`` is an identity no file has, so no mapping is ever taken for one of this buffer's.
    """

    __slots__ = ("size", "view", "addr", "key", "_chunk", "_offset", "_fd", "_name", "_pages")

    def __init__(self, chunk: _Chunk, offset: int, size: int, name: str):
        self._chunk, self._offset, self._name = chunk, offset, name
        self.size = size
        # An exporter of the slot's own (not the arena's), so that whether any view of the slot
        # is still held is known at close: every view derived from ``view`` keeps it alive.
        pages = _backing.Pages(chunk.mm, offset, size)
        self.view = memoryview(pages)
        self._pages = weakref.ref(pages)
        self.addr = chunk.addr + offset
        self.key: tuple = ("arena", chunk.key, offset)  # never a file's (st_dev, st_ino)
        self._fd = -1
        debug.created("backing")

    @property
    def promoted(self) -> bool:
        return self._fd >= 0

    @property
    def fd(self) -> int:
        """This buffer's own memfd, made (and the buffer promoted to it) on first use."""
        if self._fd < 0:
            self._promote()
        return self._fd

    def export_fd(self, writable: bool, cloexec: bool) -> int:
        """As :meth:`Backing.export_fd <qda_core.mem.backing.Backing.export_fd>` (promotes)."""
        return _backing.export_of(self.fd, writable, cloexec)

    def _promote(self) -> None:
        with _promoting:
            if self._fd >= 0:
                return
            chunk, offset, size = self._chunk, self._offset, self.size
            if chunk is None:
                raise errno_error(errno.EBADF, "the buffer is freed")
            fd = _backing.new_memfd(self._name, size)
            try:
                _copy_data(chunk.fd, offset, self.view, fd)
                key = file_key(fd)
                _map_over(self.addr, size, fd, 0)
            except BaseException:
                os.close(fd)
                raise
            # From here the pages are the new file's; the arena's copies are not needed.
            if chunk.ours:
                _punch(chunk.fd, offset, size)
            _backing.rekey_charge(size, key)
            self.key, self._fd = key, fd
            debug.dbg("gem", "promoted %#x-byte arena slot to its own memfd", size)

    def close(self) -> None:
        """Free the buffer: its pages go back to the host and its slot to the arena."""
        with _promoting:  # after a promotion in progress
            chunk = self._chunk
            if chunk is None:
                return
            self._chunk = None
        self.view.release()
        size, ours = self.size, chunk.ours
        if self._fd >= 0:
            if ours:
                # The slot's address gets the arena's (punched, zero) pages back for the next buffer.
                try:
                    _map_over(self.addr, size, chunk.fd, self._offset)
                except OSError:  # ENOMEM: out of mappings (vm.max_map_count)
                    ours = False  # the slot keeps this file's pages: never handed out again
                    _give_back(chunk, None)
            os.close(self._fd)
            self._fd = -1
            _backing.uncharge(size, self.key)
        else:
            if ours:
                _punch(chunk.fd, self._offset, size)
            _backing.uncharge(size)
        debug.destroyed("backing")
        if not ours:
            return  # a forked child's copy of its parent's object (the slot is the parent's), or retired
        pages = self._pages()
        if pages is not None:  # a view of the slot is still held somewhere
            ref = _Held(pages, _quarantined)
            ref.slot = (chunk, self._offset, size)
            _quarantine[id(ref)] = ref
            return
        _give_back(chunk, self._offset)
        if _released:
            _drain()


def _copy_data(src: int, offset: int, view: memoryview, dst: int) -> None:
    """Copy ``view`` (the mapping of ``src``'s bytes from ``offset``) to ``dst`` from 0, only
    where ``src`` holds data: pages never written stay holes, and read as zeros, in both."""
    size = len(view)
    end = offset + size
    pos = offset
    while pos < end:
        try:
            data = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            raise
        if data >= end:
            return
        hole = min(os.lseek(src, data, os.SEEK_HOLE), end)
        part, at = view[data - offset:hole - offset], data - offset
        while part:
            n = os.pwrite(dst, part, at)
            part, at = part[n:], at + n
        pos = hole
