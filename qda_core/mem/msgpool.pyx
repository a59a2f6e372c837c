# cython: language_level=3, boundscheck=False, wraparound=False
"""Message buffers for invokes: kernel-internal GEM objects in the caller's context bank.

The RFC allocates one per invoke (``fastrpc_invoke`` -> GEM object of the page-aligned payload).
Creating a memfd per call would dominate the cost of an invoke (a small one: the syscalls; a
64 MiB one: allocating and zeroing 16K fresh pages, ~7x the copy itself), so freed buffers are
kept per file and reused. Semantics are unchanged: a device-visible buffer that never gets a
handle, in the caller's context bank, whose bytes the DSP is shown are this call's or zeros.

**Size classes.** A request is rounded up to its class (whole pages up to 16 KiB, then four
classes per power of two, so at most 25% larger) and served only by a buffer of that class.
Each class keeps up to :data:`CLASS_DEPTH` free buffers (one per thread invoking at once); the
pool as a whole keeps at most :data:`POOL_MAX_BUFFERS` buffers and :data:`POOL_MAX_BYTES` bytes,
evicting the least recently used free buffer when a returned one would exceed a bound. So a
mix of sizes reuses one buffer per class instead of recreating the larger ones (the old
smallest-first list of four dropped every buffer larger than the four it held).

**No stale data reaches the DSP.** The DSP is shown ``[0, size)`` of a buffer allocated with
``size``. ``marshal.pack`` writes every byte of the packet (metadata, copies, zeroed gaps and
out-buffers), and the packet ends in the window's last page (``size`` is the page-rounded packet
size); what lies between the packet and ``size`` is zeroed here, as is whatever an earlier,
larger window of the same buffer left beyond it (``MsgBuf.dirty``).

**In C.** Every invoke allocates and returns a buffer, from any thread of the file, so the pool
is a Cython class (the native data plane, docs/dataplane.md) whose every update runs under the
GIL without calling Python code: no lock, and no other thread sees a half-made update. Making
and freeing GEM objects (Python) happens outside those updates.
"""
cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
from libc.string cimport memset

from qda_core.mem.backing import HOST_PAGE_SIZE, page_align
from qda_core.mem.gem import GemObject

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

POOL_MAX_BYTES = 256 << 20  # per file: beyond this, freed buffers go back to the system
POOL_MAX_BUFFERS = 16       # per file: each one holds a memfd and a mapping
CLASS_DEPTH = 4             # free buffers kept per size class
_SMALL = 16 << 10           # classes of whole pages up to here
_PAGE = HOST_PAGE_SIZE
cdef Py_ssize_t _C_PAGE = HOST_PAGE_SIZE


def size_class(size: int) -> int:
    """The buffer size that serves a request of ``size`` bytes."""
    if 0 < size <= _PAGE:
        return _PAGE  # the usual message (every invoke with small arguments): no arithmetic
    size = page_align(max(size, 1))
    if size <= _SMALL:
        return size
    step = max(_PAGE, 1 << ((size - 1).bit_length() - 3))  # a quarter of the power of two below
    return (size + step - 1) // step * step


cdef class MsgBuf:
    """One message buffer: its GEM object, the object's backing and device address, and how
    many bytes at its front a call may have written (0: all zero)."""
    cdef readonly object obj
    cdef readonly object backing
    cdef readonly object dma_addr
    cdef public Py_ssize_t dirty
    cdef MessagePool _pool
    cdef Py_ssize_t size
    cdef size_t addr

    def __init__(self, obj, MessagePool pool):
        self.obj = obj
        self.backing = obj.backing
        self.dma_addr = obj.dma_addr
        self.size = obj.size
        self.addr = obj.backing.addr
        self.dirty = 0
        self._pool = pool

    def release(self):
        """Give the buffer back to its pool."""
        self._pool._give_back(self)

    cpdef _scrub(self, Py_ssize_t size):
        """Zero what the coming call will show the DSP without writing it, and what earlier
        calls left beyond this one's window: ``[size - page, dirty)`` within the buffer."""
        cdef Py_ssize_t lo = size - _C_PAGE, hi = self.dirty
        if lo < 0:
            lo = 0
        if hi > self.size:
            hi = self.size
        if lo < hi:  # our own mapping of the object, alive while the pool holds it
            memset(<char *><size_t>self.addr + lo, 0, <size_t>(hi - lo))
        self.dirty = size


cdef class MessagePool:
    """Per-file supply of message buffers from one context bank, in size classes."""
    cdef readonly object cb
    cdef dict _free      # class -> free buffers, most recent last
    # id -> free buffer, least recent first (a dict keeps insertion order, and a buffer is
    # inserted when it comes back, so the first one is the least recently used)
    cdef dict _lru
    cdef Py_ssize_t _bytes
    #: Counters: buffers created, reused, evicted (free ones given back to keep the bounds),
    #: dropped (returned ones never kept: larger than the whole pool).
    cdef public Py_ssize_t created, reused, evicted, dropped

    def __init__(self, cb):
        self.cb = cb
        self._free = {}
        self._lru = {}
        self._bytes = 0
        self.created = self.reused = self.evicted = self.dropped = 0

    cpdef MsgBuf alloc(self, size_):
        """A buffer of at least ``size`` bytes whose first ``size`` the caller's packet fills,
        up to its last page (see the module docstring)."""
        cdef MsgBuf buf = None
        cdef Py_ssize_t size
        if size_ > PY_SSIZE_T_MAX:  # no such buffer: the allocation's own error (ENOMEM)
            GemObject.create(self.cb, size_class(size_), name="msg")
            raise MemoryError(f"a {size_}-byte message buffer")
        size = size_
        cls = _C_PAGE if 0 < size <= _C_PAGE else size_class(size)
        bucket = self._free.get(cls)
        if bucket:
            buf = (<list>bucket).pop()
            del self._lru[id(buf)]
            self._bytes -= buf.size
            self.reused += 1
        else:
            self.created += 1
        if buf is None:
            buf = MsgBuf(GemObject.create(self.cb, cls, name="msg"), self)
        buf._scrub(size)
        return buf

    cpdef _give_back(self, MsgBuf buf):
        cdef Py_ssize_t size = buf.size
        cdef Py_ssize_t max_bytes = POOL_MAX_BYTES  # the bounds read now (tests change them)
        out = []
        if size > max_bytes:
            self.dropped += 1
            out.append(buf)
        else:
            bucket = self._free.get(size)
            if bucket is None:
                bucket = self._free[size] = []
            (<list>bucket).append(buf)
            self._lru[id(buf)] = buf
            self._bytes += size
            if len(bucket) > CLASS_DEPTH:
                out.append(self._evict(bucket[0]))
            while len(self._lru) > POOL_MAX_BUFFERS or self._bytes > max_bytes:
                out.append(self._evict(next(iter(self._lru.values()))))
        for b in out:
            (<MsgBuf>b).obj.put()

    cdef MsgBuf _evict(self, MsgBuf buf):
        """Take free ``buf`` out of the pool; the caller puts it."""
        del self._lru[id(buf)]
        bucket = <list>self._free[buf.size]
        bucket.remove(buf)
        if not bucket:
            del self._free[buf.size]
        self._bytes -= buf.size
        self.evicted += 1
        return buf

    def stats(self):
        """Buffers created, reused, evicted and dropped so far, and what is free now."""
        return {"created": self.created, "reused": self.reused, "evicted": self.evicted,
                "dropped": self.dropped, "free": len(self._lru), "free_bytes": self._bytes}

    def close(self):
        free = list(self._lru.values())
        self._free, self._lru, self._bytes = {}, {}, 0
        for buf in free:
            (<MsgBuf>buf).obj.put()
