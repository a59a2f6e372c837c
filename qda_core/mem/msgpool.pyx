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
size); the window's whole last page, where the packet ends, is zeroed here (whatever a skel
wrote there, even past an earlier, smaller window: a Python skel's view's ``.obj`` reaches the
whole mapping), as is whatever an earlier, larger window of the same buffer left beyond this one
(``MsgBuf.dirty``).

**In C.** Every invoke takes and gives back a buffer, from any thread of the file, so the pool
is a Cython class whose every update runs under the GIL without calling Python code: no lock,
and no other thread sees a half-made update. Making and freeing GEM objects (Python) happens
outside those updates. The engine's lane takes and gives back buffers through the pool's C
interface (``qda_core._cdev.MsgSource``), without a Python call (docs/dataplane.md).
"""
from cpython.mem cimport PyMem_Free, PyMem_Realloc

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
from libc.stdint cimport uint64_t
from libc.string cimport memmove, memset

from qda_core._cdev cimport MsgBuf as _CMsgBuf, MsgSource

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
cdef Py_ssize_t _C_SMALL = _SMALL

cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil


def size_class(size: int) -> int:
    """The buffer size that serves a request of ``size`` bytes."""
    if 0 < size < _CLASS_C_MAX:
        return _class_of(size)  # (in C; the sizes around it, in Python's ints)
    size = page_align(max(size, 1))
    if size <= _SMALL:
        return size
    step = max(_PAGE, 1 << ((size - 1).bit_length() - 3))  # a quarter of the power of two below
    return (size + step - 1) // step * step


cdef Py_ssize_t _CLASS_C_MAX = PY_SSIZE_T_MAX >> 2  # sizes whose class C arithmetic finds


cdef Py_ssize_t _class_of(Py_ssize_t size) noexcept nogil:
    """:func:`size_class` of ``size < _CLASS_C_MAX`` in C: a take sizes its request without
    running Python code (no other thread can run meanwhile), and without a Python call."""
    cdef Py_ssize_t step
    if size <= _C_PAGE:
        return _C_PAGE
    size = (size + _C_PAGE - 1) & ~(_C_PAGE - 1)
    if size <= _C_SMALL:
        return size
    step = (<Py_ssize_t>1) << (63 - __builtin_clzll(<unsigned long long>(size - 1)) + 1 - 3)
    if step < _C_PAGE:
        step = _C_PAGE
    return (size + step - 1) // step * step


cdef class MsgBuf(_CMsgBuf):
    """One message buffer: its GEM object, the object's backing and device address, and how
    many bytes at its front a call may have written (0: all zero)."""
    cdef readonly object obj
    cdef readonly object backing
    cdef readonly object dma_addr
    cdef MessagePool _pool
    cdef bint free  # in its pool's free list (a second give back is ignored)

    def __init__(self, obj, MessagePool pool):
        self.obj = obj
        self.backing = obj.backing
        self.dma_addr = obj.dma_addr
        self.size = obj.size
        self.va = obj.backing.addr
        self.ptr = <char *><size_t>self.va  # our own mapping of the object, alive while we hold it
        self.dev = self.dma_addr
        self.dirty = 0
        self._pool = pool
        self.free = False

    def release(self):
        """Give the buffer back to its pool."""
        self._pool.give(self)

    cpdef _scrub(self, Py_ssize_t size):
        """Zero what the coming call will show the DSP without writing it, and what earlier
        calls left beyond this one's window: ``[size - page, max(size, dirty))`` within the
        buffer. (The window's last page whatever ``dirty`` says: a Python skel's view's ``.obj``
        reaches the whole mapping, past the window it was shown.)"""
        cdef Py_ssize_t lo = size - _C_PAGE, hi = self.dirty if self.dirty > size else size
        if lo < 0:
            lo = 0
        if hi > <Py_ssize_t>self.size:
            hi = self.size
        if lo < hi:
            memset(self.ptr + lo, 0, <size_t>(hi - lo))
        self.dirty = size if size > 0 else 0


cdef class MessagePool(MsgSource):
    """Per-file supply of message buffers from one context bank, in size classes.

    The free buffers are one list, least recently returned first, with their sizes in a C array
    beside it: a request takes the most recent free buffer of its class (a scan of at most
    :data:`POOL_MAX_BUFFERS` integers), a returned buffer goes at the end, eviction takes the
    front. Calling the pool is :meth:`alloc` (the reference engine's ``msg_alloc``)."""
    cdef readonly object cb
    cdef list _free          # free buffers in [0, _n), least recently returned first, then None
    cdef Py_ssize_t _n       # (the list never shrinks: no reallocation per take and give)
    cdef Py_ssize_t *_sizes  # their sizes, in the same order
    cdef Py_ssize_t _cap     # entries _sizes has room for
    cdef Py_ssize_t _bytes
    #: Counters: buffers created, reused, evicted (free ones given back to keep the bounds),
    #: dropped (returned ones never kept: larger than the whole pool).
    cdef public Py_ssize_t created, reused, evicted, dropped

    def __cinit__(self):
        self._sizes = NULL
        self._cap = 0

    def __init__(self, cb):
        self.cb = cb
        self._free = []
        self._n = 0
        self._bytes = 0
        self.created = self.reused = self.evicted = self.dropped = 0

    def __dealloc__(self):
        PyMem_Free(self._sizes)

    def __call__(self, size):
        """:meth:`alloc`."""
        return self.alloc(size)

    cpdef MsgBuf alloc(self, size_):
        """A buffer of at least ``size`` bytes whose first ``size`` the caller's packet fills,
        up to its last page (see the module docstring)."""
        if size_ > PY_SSIZE_T_MAX:
            self._none_of(size_)
        return self._take(size_)

    cdef _CMsgBuf take(self, uint64_t size):
        if size > <uint64_t>PY_SSIZE_T_MAX:
            self._none_of(size)
        return self._take(<Py_ssize_t>size)

    cdef int _none_of(self, size) except -1:
        """No buffer of ``size`` bytes can exist (its class is past every C size): the
        allocation's own error (ENOMEM), else MemoryError."""
        GemObject.create(self.cb, size_class(size), name="msg")
        raise MemoryError(f"a {size}-byte message buffer")

    cdef uint64_t class_of(self, uint64_t size) noexcept nogil:
        return <uint64_t>_class_of(<Py_ssize_t>size) if 0 < size < <uint64_t>_CLASS_C_MAX else 0

    cdef MsgBuf _take(self, Py_ssize_t size):
        cdef MsgBuf buf = None
        cdef Py_ssize_t cls = <Py_ssize_t>self.class_of(<uint64_t>size) if size > 0 else 0
        cdef Py_ssize_t i
        if cls == 0:  # (no size or a huge one)
            c = size_class(size)  # Python code: before the free list is read
            if c > PY_SSIZE_T_MAX:  # rounded up past any C size
                self._none_of(size)
            cls = c
        # from here until the buffer is out of the list no Python code runs (no other thread)
        i = self._n - 1
        while i >= 0 and self._sizes[i] != cls:  # the most recently returned buffer of the class
            i -= 1
        if i >= 0:
            buf = <MsgBuf>self._remove(i)
            self.reused += 1
        else:
            self.created += 1
            buf = MsgBuf(GemObject.create(self.cb, cls, name="msg"), self)
        buf._scrub(size)
        return buf

    cdef object _remove(self, Py_ssize_t i):
        """Take free entry ``i`` out of the list (no Python code runs)."""
        cdef Py_ssize_t n = self._n, j
        cdef list free = self._free
        buf = free[i]
        for j in range(i, n - 1):  # (none for the usual one: the most recent)
            free[j] = free[j + 1]
        free[n - 1] = None
        memmove(&self._sizes[i], &self._sizes[i + 1], (n - 1 - i) * sizeof(Py_ssize_t))
        self._n = n - 1
        (<MsgBuf>buf).free = False
        self._bytes -= (<MsgBuf>buf).size
        return buf

    cdef int give(self, _CMsgBuf cbuf) except -1:
        cdef MsgBuf buf = <MsgBuf>cbuf
        cdef Py_ssize_t size = buf.size, n, i, same = 0, first = -1
        cdef Py_ssize_t max_bytes = POOL_MAX_BYTES  # the bounds read now (tests change them)
        cdef Py_ssize_t max_bufs = POOL_MAX_BUFFERS, depth = CLASS_DEPTH
        cdef Py_ssize_t *sizes
        out = None
        if buf._pool is not self:
            return buf._pool.give(buf)
        if buf.free:  # given back already: kept once
            return 0
        if size > max_bytes:
            self.dropped += 1
            buf.obj.put()
            return 0
        n = self._n
        if n == self._cap:
            sizes = <Py_ssize_t *>PyMem_Realloc(self._sizes, (2 * n + 16) * sizeof(Py_ssize_t))
            if sizes == NULL:
                raise MemoryError()
            self._sizes, self._cap = sizes, 2 * n + 16
        if n < len(self._free):
            self._free[n] = buf
        else:
            self._free.append(buf)
        self._n = n + 1
        buf.free = True
        self._sizes[n] = size
        self._bytes += size
        for i in range(n + 1):
            if self._sizes[i] == size:
                same += 1
                if first < 0:
                    first = i
        if same > depth:
            out = [self._remove(first)]
            self.evicted += 1
        while self._n and (self._n > max_bufs or self._bytes > max_bytes):
            if out is None:
                out = []
            out.append(self._remove(0))
            self.evicted += 1
        if out is not None:  # outside the update: put() runs Python code
            for b in out:
                (<MsgBuf>b).obj.put()
        return 0

    def stats(self):
        """Buffers created, reused, evicted and dropped so far, and what is free now."""
        return {"created": self.created, "reused": self.reused, "evicted": self.evicted,
                "dropped": self.dropped, "free": self._n, "free_bytes": self._bytes}

    def close(self):
        free, self._free, self._bytes = self._free[:self._n], [], 0
        self._n = 0
        for buf in free:
            (<MsgBuf>buf).free = False
            (<MsgBuf>buf).obj.put()
