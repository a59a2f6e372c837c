"""rpcmem (``rpcmem.h``): shared memory standing in for a dma-buf heap allocation.

An allocation is a sealed memfd mapped ``MAP_SHARED``, charged to the emulated DMA pool
(``QDARPC_DMA_LIMIT``), known to the emulated kernel's VMA table and, unless
``RPCMEM_HEAP_NOREG``, registered (:mod:`.buffers`) so it goes to the DSP by reference. Every
rpcmem call works before any other (lazy init, docs/spec/legacy_fastrpc_api.md §10 item 1).
"""
from __future__ import annotations

import _thread
import ctypes
import errno as _errno
import fcntl
import gc
import mmap
import os
import sys
import warnings
import weakref
from collections import deque
from types import SimpleNamespace

from qda_core import soc as _soc
from qda_core.mem import backing as _backing
from qda_core.mem import vma as _vma

from . import buffers, process
from .cargs import C_BITS32, C_INT, C_UINT64, A, addr, c_arg, fail
from .constants import RPCMEM_HEAP_NOREG
from .tracing import traced


class RpcMem(mmap.mmap):
    """An rpcmem allocation: a shared mapping of a memfd "dma-buf". Supports the buffer
    protocol (slice it with ``memoryview``); ``.address`` is the C pointer, ``.fd`` the fd
    (-1 once freed). Free it with :func:`rpcmem_free`: one collected unfreed warns
    (``ResourceWarning``) and is freed soon after, off the collecting thread (see _defer)."""

    address: int
    fd: int

    def __repr__(self) -> str:
        return f"<RpcMem {self.address:#x} size={len(self)} fd={self.fd}>"

    def __del__(self) -> None:
        if getattr(self, "fd", -1) == -1 or sys.is_finalizing():
            return
        # Never freed here: the collector runs this at any allocation, on a thread that may hold
        # any lock (a driver file's, the DMA pool's, the share table's) while another thread
        # holds the locks the free takes and waits for that one. Queued first, so a warning
        # turned into an error cannot leak the allocation.
        message = f"unfreed {self!r}: call rpcmem_free"  # before a reaper sets fd to -1
        _defer(self)
        warnings.warn(message, ResourceWarning, stacklevel=2)


class _VmaToken:
    """Owner of the allocation's VMA entry: dropped by rpcmem_free, so the entry goes when the
    mapping does, not when the caller drops the RpcMem object."""
    __slots__ = ("__weakref__",)


# --- deferred frees of collected allocations --------------------------------------------------
# A finalizer (RpcMem.__del__) only queues the allocation and makes sure a reaper thread runs:
# both lock-free (deque.append, and a raw thread's start takes no Python-level lock). The free
# happens on the reaper, a thread that holds nothing when it takes the library lock, or at the
# next reap point (rpcmem_alloc/free, process.counts) if that comes first. The reaper exits once
# the queue is empty (no thread is left behind to make a later fork() multi-threaded). A full
# collection (gc.collect()) then waits for it, bounded (see _after_collection); an automatic
# young-generation one never does.

#: Unfreed allocations the collector found, each kept alive (a finalizer runs once) until freed.
_orphans: deque[RpcMem] = deque()
#: pid of the process whose reaper thread is running, else 0 (a forked child has none).
_reaper_pid = 0
#: Thread ids of the running reapers (a collection on one must not wait for itself).
_reaper_threads: set[int] = set()
#: Locked locks of threads waiting for the reapers (see _after_collection): released when the
#: last reaper exits or cannot free promptly (another thread holds the library lock).
_waiters: deque = deque()
#: How long (seconds) a full collection that left frees to the reaper waits for them.
FLUSH_TIMEOUT = 1.0
_hooked = False


def _defer(mm: RpcMem) -> None:
    """Queue ``mm``'s free (from its finalizer: takes no lock, calls nothing that could)."""
    global _hooked
    _orphans.append(mm)
    _start_reaper()
    if not _hooked:
        _hooked = True
        gc.callbacks.append(_after_collection)


def _start_reaper() -> bool:
    """Make sure a reaper thread of this process runs; False if none could start (the next reap
    point frees the queue then). Safe from a finalizer: a raw thread, no threading locks."""
    global _reaper_pid
    pid = os.getpid()
    if _reaper_pid == pid:
        return True
    _reaper_pid = pid
    try:
        _thread.start_new_thread(_reaper, ())
    except Exception:  # RuntimeError: thread limits, interpreter shutdown, an isolated sub-interpreter
        _reaper_pid = 0
        return False
    return True


def _reaper() -> None:
    global _reaper_pid
    me = _thread.get_ident()
    _reaper_threads.add(me)
    try:
        while not sys.is_finalizing():
            _reap(contended=_release_waiters)
            _reaper_pid = 0  # before the last look: an orphan queued after it starts a reaper
            if not _orphans:
                break
            _reaper_pid = os.getpid()
    except BaseException:
        _reaper_pid = 0
        raise  # reported by the thread machinery (sys.unraisablehook)
    finally:
        _reaper_threads.discard(me)
        _release_waiters()


def _release_waiters() -> None:
    while _waiters:
        try:
            _waiters.popleft().release()
        except IndexError:  # another reaper took the last one
            return


def _after_collection(phase: str, info: dict) -> None:
    """gc callback: after a full collection (``gc.collect()``) that left frees to the reaper, wait
    (at most FLUSH_TIMEOUT) until it has done them, so a program (or leak check) collecting
    explicitly sees the memory freed when gc.collect returns, as when finalizers freed inline.
    Not on a thread holding a lock the free takes, nor on a reaper: there it would only wait."""
    if phase != "stop" or info.get("generation") != 2 or sys.is_finalizing():
        return
    pid = os.getpid()
    if not _orphans and _reaper_pid != pid:
        return
    if _thread.get_ident() in _reaper_threads:
        return
    # RLock._is_owned (what Condition uses): held here, the reaper would wait for this thread.
    if any(lock._is_owned() for lock in (process.lock, _backing._pool_lock, _backing._shared_lock)):
        return
    if not _start_reaper():
        return
    done = _thread.allocate_lock()
    done.acquire()
    _waiters.append(done)
    if _reaper_pid == pid:  # else the reapers finished after the append: nothing to wait for
        done.acquire(timeout=FLUSH_TIMEOUT)


def _after_fork_in_child() -> None:
    # The parent's reapers do not run here; its waiters' locks are not this process's business.
    global _reaper_pid
    _reaper_pid = 0
    _reaper_threads.clear()
    _waiters.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def reap() -> None:
    """Free the allocations the collector deferred. Each is freed whole under process.lock, so
    counts taken after this (process.counts, the DMA pool) see every queued free done, even one
    a reaper thread was doing. Call holding no emulator lock (process.lock is fine)."""
    _reap()


def _reap(contended=None) -> None:
    while _orphans:
        if not process.lock.acquire(blocking=False):
            if contended is not None:
                contended()  # the free will not be prompt: nobody waits for it
            process.lock.acquire()
        try:
            try:
                mm = _orphans.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                _release(mm)
                exc = None
            except Exception as e:  # not the current caller's error (e.g. the program closed its fd)
                exc = e
        finally:
            process.lock.release()
        if exc is not None:
            sys.unraisablehook(SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
                                               err_msg="Exception freeing a collected rpcmem allocation", object=mm))
        del mm, exc


process.reapers.append(reap)


def _alloc(heapid, flags, size, ctype: tuple[int, int]) -> RpcMem:
    reap()
    c_arg(heapid, C_INT, "rpcmem_alloc: heapid")
    flags = c_arg(flags, C_BITS32, "rpcmem_alloc: flags")
    size = c_arg(size, ctype, "rpcmem_alloc: size")
    if size <= 0:
        fail(A.AEE_EBADPARM, f"rpcmem_alloc: size {size} must be > 0")
    faults = _soc.default_faults()
    if faults is not None and faults.armed("alloc"):
        rule = faults.check("alloc", ("rpcmem",), detail=f"rpcmem_alloc size {size}")
        if rule is not None:
            fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: {size} bytes: injected by fault rule {rule}", errno=rule.errno)
    if size > _backing.DMA_LIMIT:  # fails before even a memfd is made
        fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: {size} bytes exceed QDARPC_DMA_LIMIT", errno=_errno.ENOMEM)
    try:
        fd = os.memfd_create("rpcmem", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError as exc:
        fail(A.AEE_ENOMEMORY, "rpcmem_alloc: no dma-buf", errno=exc.errno)
    # The dma-buf heap allocates from the emulated DMA pool (QDARPC_DMA_LIMIT), charged before
    # the file has any size. Charged under the file's key, so a driver importing the buffer
    # does not count it twice.
    key = _vma.file_key(fd)
    charged = _backing.page_align(size)
    try:
        _backing.charge(charged, key)
    except OSError as exc:
        os.close(fd)
        fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: {size} bytes", errno=exc.errno)
    try:
        os.ftruncate(fd, size)
        # A dma-buf never changes size: sealed, so no holder of the fd can truncate the pages
        # under the DSP or a mapping (SIGBUS).
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        mm = RpcMem(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            # The kernel side's mapping of the dma-buf, which a driver's import of it borrows
            # instead of mapping it per invoke. Not the caller's: an import holding that would
            # keep the RpcMem alive past its last reference (no ResourceWarning, no free).
            kmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            mm.close()
            raise
    except (OSError, ValueError, OverflowError) as exc:
        _backing.uncharge(charged, key)
        os.close(fd)
        fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: cannot map {size} bytes", errno=getattr(exc, "errno", None))
    mm._kmap = kmap
    mm._pin = ctypes.c_char.from_buffer(mm)  # keeps the address fixed while allocated
    mm.address = ctypes.addressof(mm._pin)
    mm._charge = (charged, key)
    # The "kernel" knows this VMA (fast find_vma).
    mm._vma_token = _VmaToken()
    _vma.register(mm._vma_token, mm.address, size, key=key)
    _backing.share_mapping(key, kmap)
    mm.fd = fd  # last: from here on the object owns the fd (and __del__ frees it)
    with process.lock:
        process._rpcmem[mm.address] = weakref.ref(mm)
        if process._keep is not None:
            process._keep.append(mm)
        if not flags & RPCMEM_HEAP_NOREG:
            process.REGS.add(mm.address, size, fd, 0)
    return mm


def _release(mm: RpcMem) -> None:
    """Deregister, unmap and close ``mm`` (once; rpcmem_free or the collector)."""
    with process.lock:
        if mm.fd == -1:
            return
        ref = process._rpcmem.get(mm.address)
        if ref is not None and ref() in (mm, None):  # a dead ref: mm is being collected
            del process._rpcmem[mm.address]
        if any(r[0] == mm.address and r[1] == len(mm) and r[2] == mm.fd for r in process.REGS.ranges()):
            buffers.deregister(mm.address, len(mm))
        else:  # NOREG allocation: nothing registered, but sessions may have imported the fd
            process.forget_fd(mm.fd)
        fd, mm.fd = mm.fd, -1
    _backing.unshare_mapping(mm._charge[1], mm._kmap)
    try:
        mm._kmap.close()
    except BufferError:
        pass  # an import still maps the buffer (a map holds its dma-buf): unmapped when it goes
    del mm._kmap
    del mm._pin
    del mm._vma_token
    _backing.uncharge(*mm._charge)  # while the fd is open: the key names this file only
    os.close(fd)
    try:
        mm.close()
    except BufferError:
        pass  # the caller still holds a view; the mapping goes when that view does


def lookup(po) -> RpcMem | None:
    """The live allocation whose base address is ``po`` (an RpcMem or an int), else None."""
    ref = process._rpcmem.get(addr(po))
    return ref() if ref is not None else None


@traced("rpcmem_init")
def rpcmem_init() -> None:
    """Initialise rpcmem. Optional: every rpcmem call initialises lazily (docs/spec/legacy_fastrpc_api.md §10 item 1).

    AEE codes: (none)
    """


@traced("rpcmem_deinit")
def rpcmem_deinit() -> None:
    """Counterpart of rpcmem_init; allocations stay valid until rpcmem_free.

    AEE codes: (none)
    """


@traced("rpcmem_alloc")
def rpcmem_alloc(heapid: int, flags: int, size: int) -> RpcMem:
    """Allocate ``size`` bytes of shared memory (a memfd standing in for a dma-buf), mapped and
    registered, so it goes to the DSP by reference on either backend. Heap id and flags are
    ignored as on Linux, except RPCMEM_HEAP_NOREG (not registered: copied).

    @param[in] heapid  RPCMEM_HEAP_ID_SYSTEM etc.
    @param[in] flags   RPCMEM_DEFAULT_FLAGS etc.
    @param[in] size    bytes (> 0, a C ``int``)
    @return an :class:`RpcMem` (buffer protocol, ``.address``, ``.fd``); where C returns NULL
    this raises. The memfd is sealed against shrinking and growing, like a dma-buf, and the
    allocation counts against the emulated DMA pool (``QDARPC_DMA_LIMIT``). Keep the object
    until rpcmem_free: it owns the memory (dropping it unfreed warns and frees).
    AEE codes: AEE_EBADPARM (size <= 0 or beyond ``int``, an argument outside its C type),
    AEE_ENOMEMORY (errno ENOMEM: the DMA pool is exhausted)
    """
    return _alloc(heapid, flags, size, C_INT)


@traced("rpcmem_alloc2")
def rpcmem_alloc2(heapid: int, flags: int, size: int) -> RpcMem:
    """rpcmem_alloc with a ``size_t`` size.

    AEE codes: AEE_EBADPARM (size 0 or beyond ``size_t``), AEE_ENOMEMORY (errno ENOMEM: the
    DMA pool is exhausted)
    """
    return _alloc(heapid, flags, size, C_UINT64)


@traced("rpcmem_free")
def rpcmem_free(po) -> None:
    """Deregister, unmap and close an rpcmem allocation; unknown pointers are ignored.

    @param[in] po  the RpcMem (or its address)
    AEE codes: (none)
    """
    reap()
    mm = lookup(po)
    if mm is not None:
        _release(mm)


@traced("rpcmem_to_fd")
def rpcmem_to_fd(po) -> int:
    """The dma-buf fd of an allocation, for its base pointer only.

    @param[in] po  the RpcMem (or its exact base address)
    @return the fd, or -1
    AEE codes: (none)
    """
    mm = lookup(po)
    return mm.fd if mm is not None else -1
