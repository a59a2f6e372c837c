# cython: language_level=3, boundscheck=False, wraparound=False
"""The invoke engine's native lane: :meth:`qda_core.fastrpc.FastRpc.invoke` in C.

Same steps, results, errors and records as the reference (``FastRpc.invoke``, which stays the
oracle and serves every call the trace watches): a context id, the payload packed into a
message buffer, the request handed to the DSP's native receive as the ``fastrpc_msg`` C struct
(csrc/include/qdarpc/endpoint.h) through the channel, the reply matched, outputs copied back.
No bytes are packed and parsed for the message or the reply, and no reply callback runs.
docs/dataplane.md.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLongMask
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from cpython.pycapsule cimport PyCapsule_GetContext, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memmove, memset

from qda_core._atomic cimport (qda_add_ull, qda_cas_int, qda_fetch_add_ull, qda_load_ull, qda_store_ull, qda_inc_long, qda_load_int, qda_load_long, qda_spin_lock,
                               qda_spin_unlock, qda_store_int)
from qda_core._marshal cimport (FASTRPC_MAX_FDLIST, REMOTE_SCALARS_MAX_LENGTH, ArgPins, _user_copy, pack_held, pack_planned_raw,
                               pack_user_nogil, plan_nogil, plan_raw, qda_olap, scope_begin, scope_end, unpack_held,
                               unpack_raw, unpack_user_nogil)
from qda_core._cdev cimport ChannelState, Count, Epoch, MsgBuf, MsgSource, Switch
from qda_core._cwire cimport (QDA_ENDPOINT_CAPSULE, QDA_EP_CONFINED, QDA_EP_REFERENCE, QDA_EP_REPLIED, QDA_ROUTE_DECLINED, fastrpc_invoke_rsp,
                               fastrpc_msg, qda_endpoint, sc_length)

import errno as _errno
from weakref import ref as _weakref

from qda_core import _cdev as _cdev_mod
from qda_core import faults as _faults
from qda_core import trace as _trace
from qda_core import wire as _wire
from qda_core.errors import errno_error, report_internal

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()
cdef uint64_t _PAGE = _wire.PAGE_SIZE
cdef uint64_t _ALIGN = _wire.FASTRPC_ALIGN
cdef uint32_t _POLL_RESPONSE = _wire.FASTRPC_POLL_RESPONSE
cdef int _ENODEV = _errno.ENODEV
cdef int _EFAULT = _errno.EFAULT
# what a route reads on each call, without the GIL: the C fields themselves
cdef Switch _TRACE_SW = _trace._SWITCH
cdef int *_TRACE_ON = <int *>&_TRACE_SW.on
cdef Count _ARMED_C = _cdev_mod.ARMED
cdef Count _OVERRIDES_C = _cdev_mod.OVERRIDES
cdef Epoch _ROUTES_C = _cdev_mod.ROUTES
cdef Py_ssize_t *_ARMED_N = &_ARMED_C.n
cdef Py_ssize_t *_OVERRIDES_N = &_OVERRIDES_C.n
cdef unsigned long long *_EPOCH = &_ROUTES_C.n


cdef extern from *:
    """
    #include <pthread.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    /* The calling thread's id (what threading.get_native_id() answers), made once per thread:
       a gettid syscall per invoke cost more than the rest of a null invoke. A forked child's
       thread is another thread: the atfork handler forgets the id. */
    static __thread long qda_tid_cache;
    static void qda_tid_forget(void) { qda_tid_cache = 0; }
    static int qda_tid_init(void) { return pthread_atfork(NULL, NULL, qda_tid_forget); }
    static long qda_tid(void) {
        if (qda_tid_cache == 0)
            qda_tid_cache = (long)syscall(SYS_gettid);
        return qda_tid_cache;
    }
    """
    int qda_tid_init()
    long qda_tid() nogil

if qda_tid_init() != 0:
    raise OSError("pthread_atfork failed")


cdef long current_tid() noexcept:
    """The calling thread's native id (``threading.get_native_id()``), without a syscall."""
    return qda_tid()


cdef Switch _TRACE = _trace._SWITCH


cdef bint tracing() noexcept:
    """``trace.RECORDER is not None``: the switch ``qda_core.trace`` keeps with it (one load)."""
    return _TRACE.on


def native_id():
    """``threading.get_native_id()`` as the lanes know it (a test checks they agree)."""
    return qda_tid()


cdef class FileCore:
    """The C part of a driver's open file (``qda_core.driver_file.DriverFile`` derives from it):
    its :class:`FileLane` as a field the ioctl entries read without an attribute lookup (that
    lookup was about a fifth of a null INVOKE through the raw ioctl)."""

    @property
    def _lane(self):
        """The file's :class:`FileLane` (set once by ``DriverFile.__init__``; never deleted)."""
        if self.lane is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute '_lane'")
        return self.lane

    @_lane.setter
    def _lane(self, FileLane lane not None):
        self.lane = lane

    @_lane.deleter
    def _lane(self):
        raise AttributeError(f"{type(self).__name__!r} object's '_lane' cannot be deleted")


cdef class FileLane:
    """An open driver file's lifetime, and what its INVOKE lane reads of it on every call.

    Lifetime (``DriverFile``): ``closed``, the ioctls in flight and whether the release ran;
    :meth:`enter`, :meth:`leave` and :meth:`close` change them, each atomic under the GIL (no
    Python code runs inside), so no ioctl takes a lock for it.

    Taken once the file has its context bank (which it keeps until its release): the bank, the
    sender's stamp (``Origin``) of its user messages, its message pool's ``alloc``, its client
    id and its channel's engine. ``native``: the file was opened on the native data plane;
    ``invoke_request``: the INVOKE ioctl number of its driver revision (None: it has none).
    ``pd``, ``poll_mode``: the legacy file's PD and poll mode, kept here as their only copy
    (``LegacyFile.pd``/``poll_mode`` are properties over them) so the lane reads C fields."""

    def __init__(self, bint native, invoke_request=None):
        self.native = native
        self.ready = False
        self.invoke_request = invoke_request
        self.invoke_nr = -1 if invoke_request is None else <uint32_t>invoke_request
        self.pd = 0
        self.poll_mode = False
        self._closed = self._released = 0
        self.inflight = 0
        self.routes = []
        self.by_handle = {}
        self.refused = {}
        self.last_route = None
        self.last_handle = 0

    def fill(self, cb, origin, pool_alloc, int client_id, engine_invoke):
        pool = getattr(pool_alloc, "__self__", None)  # a pool's alloc: the pool, taken from in C
        if isinstance(pool, MsgSource) and pool_alloc == pool.alloc:
            pool_alloc = pool
        self.cb, self.origin, self.pool_alloc, self.client_id = cb, origin, pool_alloc, client_id
        self.engine = engine_invoke if type(engine_invoke) is EngineLane else None
        self.engine_invoke = engine_invoke
        self.ready = True

    @property
    def closed(self):
        return bool(qda_load_int(&self._closed))

    @property
    def released(self):
        return bool(qda_load_int(&self._released))

    cpdef bint enter(self):
        """Take an ioctl's reference; False once the file is closed (the caller answers EBADF)."""
        if qda_load_int(&self._closed):
            return False
        qda_inc_long(&self.inflight, 1)
        return True

    cpdef bint leave(self):
        """Drop an ioctl's reference; True when the caller must now run the release (the last
        one after ``close()``)."""
        return self._leave()

    cpdef bint close(self):
        """Mark the file closed; True when the caller must now run the release (no ioctl in
        flight)."""
        if qda_load_int(&self._closed):
            return False
        qda_store_int(&self._closed, 1)
        return qda_load_long(&self.inflight) == 0 and qda_cas_int(&self._released, 0, 1)

    # The counts are atomic and ordered (seq_cst) because a route takes and drops its
    # reference without the GIL: a closer that sees no ioctl in flight and a route that sees
    # the file open cannot both happen, and exactly one of them runs the release.
    cdef bint _leave(self) noexcept nogil:
        return (qda_inc_long(&self.inflight, -1) == 0 and qda_load_int(&self._closed)
                and qda_cas_int(&self._released, 0, 1))

    def close_routes(self):
        """Close every route open on this file (its release: no ioctl or route call is in
        flight then, and none starts on a closed file)."""
        routes, self.routes = self.routes, []
        self.by_handle.clear()
        self.refused.clear()
        self.last_route = None
        for r in routes:
            (<EngineRoute>r).close()

    def route_for(self, handle):
        """The route this file's own INVOKEs take to ``handle``, or None."""
        return self.route_to(handle)

    cdef EngineRoute route_to(self, uint32_t handle):
        """The route this file's own INVOKEs take to ``handle`` (None: the lanes)."""
        cdef PyObject *p
        if self.last_route is not None and self.last_handle == handle:
            return self.last_route
        if not self.by_handle:
            return None
        p = dict_get(self.by_handle, handle)
        if p == NULL:
            return None
        self.last_route, self.last_handle = <EngineRoute>p, handle
        return self.last_route

    cdef int refresh_route(self, f, uint32_t handle) except -1:
        """After the lanes served a call to ``handle``: a route for the next ones, unless one
        is live or one was refused since the routes' epoch last moved."""
        cdef EngineRoute r = self.route_to(handle)
        cdef unsigned long long epoch = qda_load_ull(_EPOCH)
        if r is not None:
            if r.epoch == epoch and not qda_load_int(&r.dead):  # (stale() in C: the DSP's part shares the epoch)
                return 0  # live: it declined that call
            self.by_handle.pop(handle, None)
            self.last_route = None
            r.close()
        if self.refused.get(handle) == epoch or self.closed:
            return 0
        route = getattr(f, "route", None)
        r = route(handle) if route is not None else None
        if r is None:
            if len(self.refused) > 1024:
                self.refused.clear()
            self.refused[handle] = epoch
            return 0
        if self.closed or handle in self.by_handle:  # (closed, or opened by another thread, meanwhile)
            r.close()
            return 0
        if len(self.by_handle) >= 64:  # a file's routes: the most recently served handles
            old = next(iter(self.by_handle))
            (<EngineRoute>self.by_handle.pop(old)).close()
            self.last_route = None
        self.by_handle[handle] = r
        return 0

    cdef int route_enter(self) noexcept nogil:
        """:meth:`enter` for a route: 1 entered, 0 closed, 2 closed and the release is now the
        caller's to run (its reference was the last)."""
        if qda_load_int(&self._closed):
            return 0
        qda_inc_long(&self.inflight, 1)
        if qda_load_int(&self._closed):
            return 2 if self._leave() else 0
        return 1


cdef class SeqCounter:
    """A channel's ``ctx_seq`` (the kernel's ``atomic_inc_return``): ``next()`` returns the
    next value; an atomic add, so the lanes, the reference and a route (without the GIL) each
    get their own."""

    def __cinit__(self, unsigned long long start=0):
        self.v = start

    def __iter__(self):
        return self

    def __next__(self):
        return self.take()

    cdef unsigned long long take(self) noexcept nogil:
        return qda_fetch_add_ull(&self.v, 1)

    def peek(self):
        """The value ``next()`` would return, without taking it."""
        return qda_load_ull(&self.v)

    def set(self, unsigned long long value):
        """The next value ``next()`` returns."""
        qda_store_ull(&self.v, value)


cdef class IdAllocator:
    """Context ids. ``cyclic=False``: lowest free id >= 1 (xarray ALLOC1, QDA RFC);
    ``cyclic=True``: next id after the last one, wrapping within 1..limit (legacy IDR cyclic).

    Every invoke on a channel, from any file and thread, allocates and frees here, under a spin
    lock held for the few instructions of a take or a give (a route allocates without the
    GIL). The native lane and the reference engine share one allocator per channel. The ids in
    use are a bit array up to the highest id taken (lowest-free: the most ever outstanding;
    cyclic: at most ``limit``, 32 bytes for the legacy driver's 255)."""

    def __cinit__(self, limit, bint cyclic):
        if not 0 < limit <= 0xFFFFFFFF:
            raise ValueError(f"context id limit must be 1..2**32-1, got {limit}")
        self.limit = limit
        self.cyclic = cyclic
        self._bits = NULL
        self._nwords = 0
        self._nused = 0
        self._heap = NULL
        self._nheap = self._capheap = 0
        self._fresh = 1
        self._cursor = 0
        self._lock = 0

    def __dealloc__(self):
        free(self._heap)
        free(self._bits)

    @property
    def _used(self):
        """The ids in use (-> None), for tests."""
        return {i: None for i in range(64 * self._nwords) if self._taken(i)}

    def alloc(self):
        """A free context id; ``EBUSY`` when ``limit`` are outstanding."""
        return self.take()

    def free(self, i):
        """Give id ``i`` back (again, or an id never taken: nothing happens)."""
        if type(i) is int and 0 < i <= 0xFFFFFFFF:
            self.give(i)

    cdef long long take(self) except -1:
        cdef long long i
        qda_spin_lock(&self._lock)
        i = self._take(True)
        qda_spin_unlock(&self._lock)
        if i == -2:
            raise MemoryError()
        if i < 0:
            raise self._busy()  # idr_alloc_cyclic and xa_alloc both answer a full range with EBUSY
        return i

    cdef int give(self, uint64_t i) except -1:
        self.give_nogil(i)
        return 0

    cdef long long take_nogil(self) noexcept nogil:
        """:meth:`take` for a route: the id, or -1 when the take would raise or would grow the
        bit array (the route leaves the call to the lanes)."""
        cdef long long i
        qda_spin_lock(&self._lock)
        i = self._take(False)
        qda_spin_unlock(&self._lock)
        return i if i > 0 else -1

    cdef void give_nogil(self, uint64_t i) noexcept nogil:
        qda_spin_lock(&self._lock)
        if self._taken(i):
            self._bits[i >> 6] &= ~((<uint64_t>1) << (i & 63))
            self._nused -= 1
            if not self.cyclic:
                self._push(i)
        qda_spin_unlock(&self._lock)

    cdef long long _take(self, bint grow) noexcept nogil:
        # under the lock: the id, -1 (busy), -2 (no memory), -3 (the bit array must grow)
        cdef uint64_t k, i
        if self._nused >= self.limit:
            return -1
        if self.cyclic:
            # the id after the last one taken, skipping those in use, as the kernel's IDR does
            for k in range(self.limit):
                i = self._cursor % self.limit + 1
                if not self._taken(i):
                    if not grow and <Py_ssize_t>(i >> 6) >= self._nwords:
                        return -3
                    self._cursor += 1
                    return self._mark(i)
                self._cursor += 1
            return -1
        if self._nheap:
            i = self._heap[0]  # the heap holds only ids below _fresh
        else:
            i = self._fresh
        if i > self.limit:
            return -1  # (kept on the heap, or _fresh stays, for when an id frees up below it)
        if not grow and <Py_ssize_t>(i >> 6) >= self._nwords:
            return -3
        if self._nheap:
            self._pop()
        else:
            self._fresh += 1
        return self._mark(i)

    cdef bint _taken(self, uint64_t i) noexcept nogil:
        return <Py_ssize_t>(i >> 6) < self._nwords and (self._bits[i >> 6] >> (i & 63)) & 1

    cdef long long _mark(self, uint64_t i) noexcept nogil:
        # the caller checked that i is free; i, or -2 (no memory: nothing changed but the caller's
        # own step, which it gives back: a lowest-free id goes back to the heap)
        cdef Py_ssize_t w = <Py_ssize_t>(i >> 6), n
        cdef uint64_t *b
        if w >= self._nwords:
            n = max(w + 1, 2 * self._nwords, 4)
            b = <uint64_t *>realloc(self._bits, n * sizeof(uint64_t))
            if b == NULL:
                if not self.cyclic:
                    self._push(i)
                return -2
            memset(b + self._nwords, 0, (n - self._nwords) * sizeof(uint64_t))
            self._bits, self._nwords = b, n
        self._bits[w] |= (<uint64_t>1) << (i & 63)
        self._nused += 1
        return <long long>i

    cdef void _push(self, uint64_t v) noexcept nogil:
        # (out of memory: the id is not kept for reuse; lowest-free then hands out higher ones)
        cdef Py_ssize_t j, parent
        cdef uint64_t *h
        if self._nheap == self._capheap:
            h = <uint64_t *>realloc(self._heap, (self._capheap * 2 + 16) * sizeof(uint64_t))
            if h == NULL:
                return
            self._heap = h
            self._capheap = self._capheap * 2 + 16
        j = self._nheap
        self._nheap += 1
        while j > 0:
            parent = (j - 1) // 2
            if self._heap[parent] <= v:
                break
            self._heap[j] = self._heap[parent]
            j = parent
        self._heap[j] = v

    cdef uint64_t _pop(self) noexcept nogil:
        cdef uint64_t top = self._heap[0], last
        cdef Py_ssize_t j = 0, c, n
        self._nheap -= 1
        n = self._nheap
        if n:
            last = self._heap[n]
            while True:
                c = 2 * j + 1
                if c >= n:
                    break
                if c + 1 < n and self._heap[c + 1] < self._heap[c]:
                    c += 1
                if self._heap[c] >= last:
                    break
                self._heap[j] = self._heap[c]
                j = c
            self._heap[j] = last
        return top

    cdef object _busy(self):
        return errno_error(_errno.EBUSY, f"no free invoke context id ({self.limit} invokes outstanding)")


cdef bytes _NO_DESCS = b""  # no arguments: no descriptors, no page list (nothing to allocate)


cdef object read_descs(uint64_t args, uint32_t n):
    """The ``n`` invoke descriptors at user address ``args`` (an INVOKE struct's ``args``), as
    ``uaccess.copy_from_user(descs, args, "invoke argument descriptors")`` reads them (same
    path, same EFAULT); an empty bytes for none (nothing allocated)."""
    if not n:
        return _NO_DESCS
    descs = PyByteArray_FromStringAndSize(NULL, 24 * n)  # (bytearray(24 * n) without the type call)
    if _user_copy(PyByteArray_AS_STRING(descs), args, 24 * n, 0, False):
        raise errno_error(_errno.EFAULT, f"cannot read {24 * n} bytes of invoke argument descriptors at {args:#x}")
    return descs


cdef list _ZERO_REFS = [None] * 541  # n -> bytes(16 * n), made on first use (n <= 540)


cdef object new_refs(uint32_t n):
    """The page list of ``n`` arguments with none by reference: 16 zero bytes each, a shared
    read-only ``bytes`` (nothing allocated per call). A lane that passes an argument by
    reference fills a ``bytearray(...)`` copy of it instead."""
    if not n:
        return _NO_DESCS
    if n >= <uint32_t>len(_ZERO_REFS):
        return bytes(16 * n)
    refs = _ZERO_REFS[n]
    if refs is None:
        refs = _ZERO_REFS[n] = bytes(16 * n)  # a racing thread stores an equal one
    return refs


cdef inline int32_t _s32(uint64_t v) noexcept nogil:
    return <int32_t><uint32_t>v


cdef class EngineLane:
    """The native invoke of one :class:`~qda_core.fastrpc.FastRpc` (its ``invoke`` when the
    native data plane is selected)."""

    def __cinit__(self, engine):
        cdef void *ctx
        layout = engine.layout
        self.engine = engine
        self.channel = engine.channel
        st = getattr(self.channel, "_st", None)  # made with the channel, never replaced
        self.cst = st if type(st) is ChannelState else None
        self._eng = vars(engine)
        self.ids = engine._ids
        self.id_shift = layout.id_shift
        self.seq_shift = -1 if layout.seq_shift is None else layout.seq_shift
        self.poll_word = layout.poll_word
        self.match_mask = layout.match_mask
        cap = self.channel.native_remote
        if self.cst is not None and cap is not None and PyCapsule_IsValid(cap, QDA_ENDPOINT_CAPSULE):
            # the capsule's context kept instead of the capsule: the same object alive, by a
            # reference the cycle collector sees (the capsule's own would keep every cycle
            # through this engine and the endpoint - a whole SoC - alive for good)
            ctx = PyCapsule_GetContext(cap)
            self._ep_owner = <object>ctx if ctx != NULL else cap
            self.ep = <qda_endpoint *>PyCapsule_GetPointer(cap, QDA_ENDPOINT_CAPSULE)
        else:
            self.ep = NULL

    def __call__(self, *, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                 origin, fdlist=None, bint poll=False):
        """``FastRpc.invoke`` (same keywords, result and errors)."""
        return self.invoke(client_id, tid, handle, sc, pd, args, refs, msg_alloc, origin, fdlist, poll)

    cpdef int invoke(self, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                     origin, fdlist, bint poll) except? -1:
        cdef uint32_t n = sc_length(sc)
        cdef uint64_t shift = _shift(self.poll_word, n)
        cdef uint64_t size, pkt, rounded, ctxword, dev, va, meta, seq
        cdef qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH]
        cdef size_t plen
        cdef char *pbuf
        cdef long long i
        cdef int ret
        cdef int32_t retval = 0
        cdef bint have = False
        cdef fastrpc_msg m
        cdef fastrpc_invoke_rsp rsp
        cdef Py_buffer a, r
        cdef MsgSource src
        cdef MsgBuf mb
        if self.ep == NULL or tracing():  # the trace records the reference's steps
            return self.engine.reference_invoke(client_id=client_id, tid=tid, handle=handle, sc=sc, pd=pd,
                                                args=args, refs=refs, msg_alloc=msg_alloc, origin=origin,
                                                fdlist=fdlist, poll=poll)
        _get_buffer(args, &a)
        try:
            _get_buffer(refs, &r)
            try:
                pkt = plan_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, olaps)  # planned once
                size = pkt
                if size > (<uint64_t>1 << 62):  # beyond C sizes: the reference (its allocation fails)
                    return self.engine.reference_invoke(client_id=client_id, tid=tid, handle=handle, sc=sc,
                                                        pd=pd, args=args, refs=refs, msg_alloc=msg_alloc,
                                                        origin=origin, fdlist=fdlist, poll=poll)
                size += shift
                rounded = (size + _PAGE - 1) & ~(_PAGE - 1)
                i = self.ids.take()
                ctxword = (<uint64_t>i << self.id_shift) | <uint64_t>pd
                if self.seq_shift >= 0:  # FIELD_PREP(GENMASK_ULL(63, 16), (u64)seq)
                    # the atomic_t's bits, then sign-extended
                    seqs = dict_attr(self._eng, "_seqs", self.engine)
                    if type(seqs) is SeqCounter:
                        seq = (<SeqCounter>seqs).take()
                    else:
                        seq = PyLong_AsUnsignedLongLongMask(next(seqs))
                    ctxword |= (<uint64_t><int64_t>_s32(seq)) << self.seq_shift
                try:
                    if isinstance(msg_alloc, MsgSource):  # the driver's pool, in C
                        src = <MsgSource>msg_alloc
                        mb = src.take(max(rounded, _PAGE))
                    else:  # any allocator the reference takes: a MsgBuf-like object with release()
                        src = None
                        msg = msg_alloc(max(rounded, _PAGE))
                        backing = msg.backing
                        mb = MsgBuf.__new__(MsgBuf)
                        mb.va, mb.size, mb.dev = backing.addr, backing.size, msg.dma_addr
                        mb.ptr = <char *><size_t>mb.va  # the kernel-side mapping, held by msg
                    try:
                        va, plen, pbuf, dev = mb.va, mb.size, mb.ptr, mb.dev
                        if shift:  # fastrpc._pack_shifted: the poll word moves the data area
                            pack_planned_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, olaps, pkt, pbuf + shift,
                                             plen - shift, va + shift, dev + shift)
                            meta = 40 * n + 384
                            memmove(pbuf, pbuf + shift, meta)
                            memset(pbuf + meta, 0, shift)
                        else:
                            pack_planned_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, olaps, pkt, pbuf, plen,
                                             va, dev)
                        if not self.cst.up:
                            raise errno_error(_errno.ENODEV, f"rpmsg channel {self.channel.name} is down")
                        m.client_id, m.tid, m.ctx, m.handle = client_id, tid, ctxword, handle
                        m.sc, m.addr, m.size = sc, dev, rounded
                        rsp.ctx = 0
                        rsp.retval = 0
                        qda_add_ull(&self.cst.sent, 1)
                        ret = self.ep.receive(self.ep.self, &m, <void *>origin, &rsp)
                        if ret & QDA_EP_REPLIED:
                            qda_add_ull(&self.cst.received, 1)
                            if rsp.ctx & self.match_mask == ctxword:
                                retval, have = rsp.retval, True
                            else:
                                self.engine.drop_reply(rsp.ctx)
                        if poll and (<const uint32_t *>(pbuf + 40 * n + 384))[0] == _POLL_RESPONSE:
                            retval, have = 0, True
                        wait = _faults.take_wait() if ret & QDA_EP_REFERENCE else None
                        if not have:
                            self.engine.no_reply(i, wait)  # raises, as the reference does
                        fds = unpack_raw(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, pbuf, plen, va)
                        if fdlist is not None and len(<tuple>fds):  # (a tuple: () for none)
                            fdlist.extend(fds)
                    finally:
                        if src is not None:
                            src.give(mb)
                        else:
                            msg.release()
                finally:
                    self.ids.give(i)
            finally:
                PyBuffer_Release(&r)
        finally:
            PyBuffer_Release(&a)
        return retval

    cdef bint channel_up(self) except -1:
        """``channel.up``: False once the transport is removed."""
        return self.cst.up if self.cst is not None else self.channel.up


cdef int _get_buffer(obj, Py_buffer *view) except -1:
    """``PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)``; a ``bytes`` (immutable: nothing to
    lock, the lanes' empty descriptors and shared page lists) is read in place, its view with no
    owner, which ``PyBuffer_Release`` then leaves alone."""
    if type(obj) is bytes:
        memset(view, 0, sizeof(Py_buffer))  # (obj NULL)
        view.buf = PyBytes_AS_STRING(obj)
        view.len = PyBytes_GET_SIZE(obj)
        return 0
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)


cdef object serve_invoke(f, FileLane fl, uint32_t handle, uint32_t sc, uint64_t args, serve_fn serve):
    """INVOKE once its struct is read, as both drivers' lanes serve it: the descriptors read
    from user address ``args`` (``EFAULT``, as ``-errno``), then the lane's ``serve``. One
    user-copy scope: the descriptors' and the buffers' copies share one look at the guard."""
    cdef size_t mark = scope_begin()
    try:
        return _serve_invoke(f, fl, handle, sc, args, serve)
    finally:
        scope_end(mark)


cdef object _serve_invoke(f, FileLane fl, uint32_t handle, uint32_t sc, uint64_t args, serve_fn serve):
    cdef uint32_t n = sc_length(sc)
    cdef EngineRoute r = fl.route_to(handle)
    descs = None
    if r is not None:  # the handle's route, if it has one (docs/dataplane.md "Routes")
        try:
            if n:
                descs = read_descs(args, n)  # (once: the lanes take these if the route declines)
            ret = r.call_gil(sc, PyByteArray_AS_STRING(descs) if n else NULL, False)
        except OSError as exc:
            return f._failed(exc)
        if ret is not None:
            return ret
    if descs is None:
        try:
            descs = read_descs(args, n)
        except OSError as exc:
            return f._failed(exc)
    ret = serve(f, fl, handle, sc, n, descs)
    if type(ret) is int and ret == 0 and fl.native and (not n or _routable(sc, PyByteArray_AS_STRING(descs))):
        fl.refresh_route(f, handle)  # served, and a route would have: one for the next calls
    return ret


cdef enum:
    # a route's second buffer (EngineRoute._buffer_for) serves calls up to this (their payload
    # page-rounded; larger ones take a buffer of the pool each): a 64 KiB buffer's call, whose
    # class is 80 KiB, and everything smaller. Past it the copy dwarfs what the buffer saves.
    _BIG_MAX = 128 << 10
    _ROUTE_ARGS_MAX = 510  # buffers a call can declare (255 in, 255 out)
#: The largest payload (page-rounded) a route's second buffer serves (EngineRoute._buffer_for).
ROUTE_SECOND_MAX = _BIG_MAX
cdef char _ZREFS[16 * _ROUTE_ARGS_MAX]  # the page list of a call with nothing by reference: zeros


cdef inline uint64_t _shift(bint poll_word, uint32_t n) noexcept nogil:
    """How far the poll word moves a payload's data area (fastrpc._pack_shifted): the layout has
    one and the metadata ends on its alignment (n % 16 == 0, no arguments included)."""
    return _ALIGN if poll_word and n % 16 == 0 else 0


cdef inline void _meta_to_front(char *ptr, uint32_t n, uint64_t shift) noexcept nogil:
    """After a payload of n arguments was packed ``shift`` bytes in: its metadata back where
    the DSP reads it, the poll word's gap after it zeroed (fastrpc._pack_shifted)."""
    cdef uint64_t meta = 40 * n + 384
    memmove(ptr, ptr + shift, meta)
    memset(ptr + meta, 0, shift)


cdef bint _routable(uint32_t sc, const char *descs) noexcept nogil:
    """A call a route serves (:meth:`EngineRoute.call_gil`): no handles, every buffer copied
    (``fd`` 0 or -1, or empty: both drivers copy those) - the lanes map the others."""
    cdef uint32_t n = sc_length(sc), j
    cdef uint64_t length
    cdef int32_t fd
    if sc & 0xFF or n > _ROUTE_ARGS_MAX:
        return False
    for j in range(n):
        memcpy(&length, descs + 24 * j + 8, 8)
        memcpy(&fd, descs + 24 * j + 16, 4)
        if length and fd != 0 and fd != -1:
            return False
    return True


cdef object _dsp_code(f, ret):
    """``f._check_dsp(ret)``: a DSP code as unsigned 32-bit, a ``-errno`` raised by it."""
    cdef int overflow = 0
    cdef long long v
    if type(ret) is int:
        v = PyLong_AsLongLongAndOverflow(ret, &overflow)
        if not overflow and not -4096 < v < 0:
            return <uint32_t><uint64_t>v  # ret & 0xFFFF_FFFF
    return f._check_dsp(ret)


cdef object typed_invoke(f, FileLane fl, uint32_t h, uint32_t s, args, ref_type, bufref_type, handle_type,
                         serve_fn serve):
    """The typed ``invoke()`` of both drivers' lanes, once the lane chose to serve it: the
    arguments checked, held and the copied ones pinned (``ArgPins``), INVOKE served as the
    lane's ``ioctl()`` serves it (``serve``: the lane's step after the descriptors are read;
    EBADF once the file is closed), a traced call issued through ``f.ioctl`` with the struct
    in a buffer as before; the pins dropped; the result checked as ``_check_dsp`` does."""
    cdef ArgPins pins = None
    cdef uint64_t a = 0
    cdef char *k
    if sc_length(s) or len(args):
        pins = ArgPins.__new__(ArgPins)
    try:
        if pins is not None:
            pins.fill(s, args, ref_type, bufref_type, handle_type)
            pins.pin()
            # address(descs): the struct's args, from which INVOKE reads them (a copy, as ever)
            if sc_length(s):
                a = <uint64_t><size_t>PyByteArray_AS_STRING(pins.descs)
        if tracing():
            # the trace records the reference's steps: the ioctl with the struct in a buffer
            kbuf = bytearray(16)
            k = PyByteArray_AS_STRING(kbuf)
            memcpy(k, &h, 4)
            memcpy(k + 4, &s, 4)
            memcpy(k + 8, &a, 8)
            ret = f.ioctl(fl.invoke_request, kbuf)
        elif not fl.enter():
            ret = -_errno.EBADF
        else:
            try:
                ret = serve_invoke(f, fl, h, s, a, serve)
            finally:
                if fl.leave():
                    f._release_now()
    finally:
        if pins is not None:
            pins.unpin()
    return _dsp_code(f, ret)


# -- routes (docs/dataplane.md "Routes") ------------------------------------------------------
def open_route(f, FileLane fl, uint32_t handle, int pd, int lost_errno):
    """An :class:`EngineRoute` for user calls from file ``f`` (its lane ``fl``) to DSP handle
    ``handle`` with context word ``pd``, or None where the lanes must serve every call: a file
    off the native plane or without its bank yet, a trace on, a layout with a sequence number
    (a Python counter), no DSP lane behind the channel, or a DSP that takes no route to that
    handle (``qda_endpoint.route_open``). The caller (a driver) closes it, or its file's
    release does."""
    cdef EngineLane e = fl.engine
    cdef uint64_t shift, pkt, size
    cdef qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH]
    cdef EngineRoute r
    cdef MsgBuf mb
    cdef void *arg = NULL
    cdef Py_ssize_t i
    if (not fl.native or not fl.ready or e is None or tracing() or fl.closed or e.ep == NULL
            or e.cst is None or not isinstance(fl.pool_alloc, MsgSource)):
        return None
    seqs = dict_attr(e._eng, "_seqs", e.engine) if e.seq_shift >= 0 else None
    if seqs is not None and type(seqs) is not SeqCounter:
        return None
    shift = _shift(e.poll_word, 0)
    pkt = plan_raw(0, NULL, 0, NULL, 0, olaps)
    size = pkt + shift
    if size > _PAGE:
        return None
    src = <MsgSource>fl.pool_alloc
    mb = src.take(_PAGE)
    try:
        # a call without arguments packs the same bytes every time: the metadata, all zeros (a
        # route writes them again on each call and clears what a call with arguments left past
        # them: EngineRoute._scrub, as the pool scrubs a buffer it hands out)
        pack_planned_raw(0, NULL, 0, NULL, 0, olaps, pkt, mb.ptr + shift, mb.size - shift, mb.va + shift,
                         mb.dev + shift)
        memset(mb.ptr, 0, shift)
        for i in range(<Py_ssize_t>size):
            if mb.ptr[i]:
                return None
        epoch = _EPOCH[0]
        dsp = <object>e.ep.route_open(e.ep.self, fl.client_id, handle, <void *>fl.origin, mb.dev, _PAGE, &arg)
        Py_DECREF(dsp)  # (route_open's new reference: the local holds one)
        if dsp is None or _EPOCH[0] != epoch:  # (a change while the DSP took its part)
            return None
        r = EngineRoute.__new__(EngineRoute)
        r.f, r.fl, r.ids, r.cst, r.engine, r.dsp = _weakref(f), fl, e.ids, e.cst, e, dsp
        r.src, r.mb = src, mb
        mb = None
        r.arg, r.dsp_call = arg, e.ep.route_call
        r.client_id, r.pd, r.handle = fl.client_id, pd, handle
        r.id_shift, r.match_mask, r.size = e.id_shift, e.match_mask, size
        r.seqs, r.seq_shift = seqs, e.seq_shift
        r.epoch, r.lost_errno = epoch, lost_errno
        r.native = bool(dsp.native)
        r.lists_fds = hasattr(f, "drop_listed_maps")
        fl.routes.append(r)
        return r
    finally:
        if mb is not None:
            src.give(mb)


cdef inline int _route_plan(EngineRoute r, uint32_t sc, const char *descs, uint32_t n, qda_olap *olaps,
                            uint64_t *pkt) noexcept nogil:
    """Route ``r``'s call's payload plan (``olaps``) and packet size: the last call's when its
    descriptors are the very same (a loop over the same buffers, up to ROUTE_ARGS_KEPT of them),
    else made now and kept; -1: a call no route serves (handles, a buffer by reference) or whose
    descriptors the marshaller refuses (the lanes raise it). (Inline: on every routed call.)"""
    if n <= ROUTE_ARGS_KEPT and sc == r.plan_sc and memcmp(descs, r.plan_descs, 24 * n) == 0:
        pkt[0] = r.plan_pkt
        memcpy(olaps, r.plan_olaps, n * sizeof(qda_olap))
        return 0
    if not _routable(sc, descs) or plan_nogil(sc, descs, 24 * n, olaps, pkt) < 0:
        return -1
    if n <= ROUTE_ARGS_KEPT:
        memcpy(r.plan_descs, descs, 24 * n)
        memcpy(r.plan_olaps, olaps, n * sizeof(qda_olap))
        r.plan_sc, r.plan_pkt = sc, pkt[0]
    return 0


cdef class EngineRoute:
    """The engine's side of a route: calls from one file to one DSP handle, served as
    :meth:`EngineLane.invoke` serves them - the file's reference held, a context id, the
    message packed into the route's own message buffer and handed to the DSP's route, the
    channel's counts, the reply matched - or declined before anything happened (the caller
    then takes the lanes): without arguments and without the GIL by :meth:`call`
    (``qda_endpoint.route_call``), with copied arguments too by :meth:`call_gil`. The route
    keeps one message buffer of the file's pool until it is closed."""

    @property
    def buffer(self):
        """The route's own message buffer: ``(device address, bytes)`` (None once closed)."""
        return None if self.mb is None else (self.mb.dev, self.mb.size)

    @property
    def second_buffer(self):
        """The route's second message buffer, for calls its first does not hold (up to 128 KiB
        page-rounded): ``(device address, bytes)``, or None (none taken yet, or closed)."""
        return None if self.big is None else (self.big.dev, self.big.size)

    cdef bint _ready(self, uint32_t sc) noexcept nogil:
        # what may change under a route, checked before anything is taken (the DSP's part trusts
        # it: a change after this is a change made after the call began); then the message
        # buffer taken (busy) unless the route is closed or the file's state forbids the call
        return (qda_load_ull(_EPOCH) == self.epoch and not _TRACE_ON[0] and not _ARMED_N[0]
                and not _OVERRIDES_N[0] and not qda_load_int(&self.dead) and self.cst.up and not self.fl.poll_mode
                and self.fl.pd == self.pd and qda_cas_int(&self.busy, 0, 1))

    cdef void _message(self, long long i, uint32_t sc, fastrpc_msg *m) noexcept nogil:
        # context id i's message header (its sequence number taken), in the route's own buffer
        m.client_id, m.tid, m.handle, m.sc = self.client_id, <int>qda_tid(), self.handle, sc
        m.ctx = (<uint64_t>i << self.id_shift) | <uint64_t>self.pd
        if self.seq_shift >= 0:  # FIELD_PREP(GENMASK_ULL(63, 16), (u64)seq), as the lane
            m.ctx |= (<uint64_t><int64_t>_s32(self.seqs.take())) << self.seq_shift
        m.addr, m.size = self.mb.dev, _PAGE

    cdef void _scrub(self, uint64_t end, bint shown) noexcept nogil:
        # the route's own buffer as the pool hands out a taken one (MsgBuf._scrub): zeros past
        # this call's packet up to what an earlier call left (its packet, or what the DSP wrote
        # in the page it was shown); ``shown``: this call shows the DSP the page (a native
        # skel's pointers and a Python skel's view's .obj reach all of it), so the next call
        # clears it up to its end
        if self.dirty > end:
            memset(self.mb.ptr + end, 0, self.dirty - end)
        self.dirty = _PAGE if shown else end

    cdef long long call(self, uint32_t sc) noexcept nogil:
        """The DSP's retval (0..2**32-1), ``-errno``, or ``ROUTE_DECLINED``: :meth:`call_args`
        of a call without arguments."""
        return self.call_args(sc, NULL, 0)

    cdef long long call_args(self, uint32_t sc, const char *descs, uint32_t n) noexcept nogil:
        """A C caller's call on a native skel's route, without the GIL: without arguments, or
        with copied buffers only (``descs``: its ``n`` descriptors, 24 bytes each, read from its
        ``remote_arg`` array; none in a registered range: planned, packed into the route's page
        or second buffer with the checked user copies, the out-buffers copied back - what
        :meth:`call_gil` does). The DSP's retval (0..2**32-1), ``-errno`` (a restart; an
        out-buffer not writable: ``-EFAULT``), or ``ROUTE_DECLINED`` before anything was sent:
        a Python skel's route, handles, more than 8 arguments, a plan the marshaller refuses, a
        payload neither buffer holds, an in-buffer not readable (the GIL's path answers those)."""
        cdef long long ret = ROUTE_DECLINED
        cdef int k
        if not self.native or sc & 0xFF or n > ROUTE_ARGS_KEPT or n != sc_length(sc):
            return ROUTE_DECLINED
        k = self.fl.route_enter()
        if k != 1:
            if k == 2:
                self._release()
            return ROUTE_DECLINED
        if self._ready(sc):
            ret = self._call_args(sc, descs, n) if n else self._call_none(sc)
            self._out()
        if self.fl._leave():
            self._release()
        if ret < 0 and ret != ROUTE_DECLINED:
            self._failed(<int>-ret)
        return ret

    cdef long long _call_none(self, uint32_t sc) noexcept nogil:
        # (call_args's body for a call without arguments, the message buffer taken)
        memset(self.mb.ptr, 0, self.size)  # the metadata of no arguments: zeros
        self._scrub(self.size, False)
        return self._exchange(sc, self.mb.dev, _PAGE)

    cdef long long _exchange(self, uint32_t sc, uint64_t addr, uint64_t size) noexcept nogil:
        # the message of a payload at addr (size bytes) to the DSP's route, with a context id
        # and sequence number taken, and its reply: the retval (0..2**32-1), -errno, or
        # ROUTE_DECLINED (no context id to be had: nothing sent)
        cdef fastrpc_msg m
        cdef fastrpc_invoke_rsp rsp
        cdef long long i, ret = ROUTE_DECLINED
        cdef int k
        i = self.ids.take_nogil()
        if i <= 0:
            return ROUTE_DECLINED
        self._message(i, sc, &m)
        m.addr, m.size = addr, size
        rsp.ctx = 0
        rsp.retval = 0
        k = self.dsp_call(self.arg, &m, &rsp)
        if k == QDA_EP_REPLIED and rsp.ctx & self.match_mask == m.ctx:
            qda_add_ull(&self.served, 1)
            qda_add_ull(&self.cst.sent, 1)
            qda_add_ull(&self.cst.received, 1)
            ret = <uint32_t>rsp.retval
        elif k < 0:  # the DSP failed the call after the skel ran (a restart meanwhile)
            qda_add_ull(&self.cst.sent, 1)
            ret = -self.lost_errno if k == -_ENODEV else k
        self.ids.give_nogil(i)
        return ret

    cdef long long _call_args(self, uint32_t sc, const char *descs, uint32_t n) noexcept nogil:
        # (call_args's body, the message buffer taken)
        cdef qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH]
        cdef uint64_t fds[FASTRPC_MAX_FDLIST]
        cdef uint64_t pkt = 0, size, rounded, shift
        cdef long long ret
        cdef int k
        cdef char *ptr
        cdef uint64_t bsize, va, dev
        cdef size_t mark
        cdef bint page
        if _route_plan(self, sc, descs, n, olaps, &pkt) < 0:
            return ROUTE_DECLINED  # (the lanes raise what the marshaller refuses)
        shift = _shift(self.engine.poll_word, n)
        size = pkt + shift
        rounded = (size + _PAGE - 1) & ~(_PAGE - 1)
        if rounded <= self.mb.size:
            page, ptr, bsize, va, dev = True, self.mb.ptr, self.mb.size, self.mb.va, self.mb.dev
        elif self.big is not None and self.src.class_of(rounded) == self.big.size:
            page, ptr, bsize, va, dev = False, self.big.ptr, self.big.size, self.big.va, self.big.dev
        else:  # (a buffer of the pool: the GIL's path; the route takes a second buffer of this
            # class next time the GIL is held for it, if it may keep one: reserve)
            self.wanted = rounded if rounded <= _BIG_MAX and not self.big_refused else 0
            return ROUTE_DECLINED
        mark = scope_begin()  # (the caller's: its remote_arg array's copy shares the look)
        if pack_user_nogil(sc, descs, olaps, pkt, ptr + shift, bsize - shift, va + shift, dev + shift) < 0:
            if page:
                self.dirty = _PAGE  # (written in part: cleared past the next packet)
            scope_end(mark)
            return ROUTE_DECLINED  # an in-buffer not readable: the GIL's path says EFAULT
        if shift:
            _meta_to_front(ptr, n, shift)
        if page:
            self._scrub(size, True)
        else:
            self._scrub_big(size, rounded)
        ret = self._exchange(sc, dev, rounded)
        if ret >= 0 and (sc & 0xFF00 or (<uint64_t *>(ptr + 40 * n))[0]):  # (out-buffers, an fd listed)
            k = unpack_user_nogil(sc, descs, 24 * n, ptr, bsize, va, fds)
            if k < 0:
                ret = k  # an out-buffer not writable: EFAULT, whatever the DSP answered
            elif k > 0 and self.lists_fds:
                self._drop_listed(fds, k)
        scope_end(mark)
        return ret

    cdef int reserve(self) except -1:
        """With the GIL: the second buffer a call without the GIL lacked (``call_args``
        declined it for want of one), taken now for the next such calls, unless a call is in
        the route (then later)."""
        cdef uint64_t want = self.wanted
        cdef MsgBuf mb
        if not want or qda_load_int(&self.dead) or not qda_cas_int(&self.busy, 0, 1):
            return 0
        try:
            self.wanted = 0
            mb = self._buffer_for(want)
            if mb is not self.big:
                self.src.give(mb)  # (lent: the route may not keep one of that class)
        except (MemoryError, OSError):
            pass  # (none to be had now: such calls keep taking the GIL's path, which says why)
        finally:
            self._out()
        return 0

    cdef void _scrub_big(self, uint64_t end, uint64_t rounded) noexcept nogil:
        # the second buffer as the pool scrubs one it lends (MsgBuf._scrub): the DSP is shown
        # [0, rounded), the packet and zeros whatever a skel wrote past an earlier window; and
        # nothing an earlier, larger window of it left (dirty: that window's end)
        cdef uint64_t hi = <uint64_t>self.big.dirty
        if hi < rounded:
            hi = rounded
        if hi > end:
            memset(self.big.ptr + end, 0, hi - end)
        self.big.dirty = <Py_ssize_t>rounded

    cdef void _drop_listed(self, uint64_t *fds, int n) noexcept with gil:
        # the legacy driver's put_args: the maps a reply's fdlist names dropped (as call_gil)
        try:
            f = self.f()
            if f is not None:
                f.drop_listed_maps([fds[k] for k in range(n)])
        except BaseException as e:
            report_internal("a route call's listed maps")

    cdef object call_gil(self, uint32_t sc, const char *descs, bint held):
        """:meth:`call` with the GIL, from one of the file's own INVOKEs (whose reference it
        holds), with or without arguments (``descs``: the call's descriptors, 24 bytes each,
        already copied in; NULL for none; ``held``: each copied buffer is memory the caller
        holds, copied without a check): the DSP's retval (an int32), or None when declined
        (nothing happened); the errors the lanes raise, raised (a restart meanwhile: the
        driver's errno; a reply a fault rule withheld: ``FastRpc.no_reply``'s; a bad buffer
        address: EFAULT). Served: copied buffers (``fd`` 0 or -1, or empty), packed into the
        route's own buffer or, when the call needs more, one the pool lends for the call, and
        copied back as the lane does; declined: handles and buffers by reference (the lanes'
        maps and ``DmaHandle``\ s), descriptors the marshaller refuses (the lanes raise it)."""
        cdef fastrpc_msg m
        cdef fastrpc_invoke_rsp rsp
        cdef qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH]
        cdef uint32_t n = sc_length(sc)
        cdef uint64_t pkt = 0, size = 0, rounded
        cdef long long i
        cdef int k
        cdef bint have = False
        cdef int32_t retval = 0
        cdef MsgBuf mb
        if n:
            if _route_plan(self, sc, descs, n, olaps, &pkt) < 0:
                return None
            size = pkt + _shift(self.engine.poll_word, n)
            if size > (<uint64_t>1 << 62):
                return None
        if not self._ready(sc):
            return None
        mb = self.mb
        try:
            i = self.ids.take_nogil()
            if i <= 0:
                return None
            try:
                self._message(i, sc, &m)
                if self.dirty < _PAGE and not self.native and not self.engine.ep.route_clean(self.arg):
                    self.dirty = _PAGE  # the page was reached since the last (confined) call
                if n:
                    rounded = (size + _PAGE - 1) & ~(_PAGE - 1)
                    if max(rounded, _PAGE) > mb.size:  # the second buffer, or one the pool lends
                        mb = self._buffer_for(max(rounded, _PAGE))
                    self._pack(sc, descs, n, olaps, pkt, size - pkt, mb, held)
                    if mb is self.mb:
                        # the DSP is shown the page: a native skel's pointers reach all of it,
                        # and so does a Python skel's view's .obj (the buffer's mapping)
                        self._scrub(size, True)
                    elif mb is self.big:
                        self._scrub_big(size, rounded)
                    m.addr, m.size = mb.dev, rounded
                else:
                    memset(mb.ptr, 0, self.size)  # the metadata of no arguments: zeros
                    self._scrub(self.size, not self.native)  # (a Python skel may reach the page)
                rsp.ctx = 0
                rsp.retval = 0
                qda_add_ull(&self.cst.sent, 1)
                try:
                    k = self.engine.ep.route_call_gil(self.arg, &m, &rsp)
                except OSError as exc:
                    self._lost(exc)
                    raise
                qda_add_ull(&self.served, 1)
                if k & QDA_EP_CONFINED and mb is self.mb and not self.native:
                    # the skel reached nothing of the page past its arguments, and nothing it
                    # holds can (a Python skel's, DspRoute._confined): the packet is all the
                    # next call clears, not the page (if route_clean still says so then)
                    self.dirty = size if n else self.size
                    self.confined += 1
                if k & QDA_EP_REPLIED:
                    qda_add_ull(&self.cst.received, 1)
                    if rsp.ctx & self.match_mask == m.ctx:
                        retval, have = rsp.retval, True
                    else:
                        self.engine.engine.drop_reply(rsp.ctx)
                wait = _faults.take_wait() if k & QDA_EP_REFERENCE else None
                if not have:
                    self.engine.engine.no_reply(i, wait)  # raises, as the lane does
                if n and (sc & 0xFF00 or (<uint64_t *>(mb.ptr + 40 * n))[0]):  # (else no out-buffer to copy
                    # back and no fd listed: qda_unpack would do nothing)
                    if held:
                        fds = unpack_held(sc, descs, 24 * n, _ZREFS, 16 * n, mb.ptr, mb.size, mb.va)
                    else:
                        fds = unpack_raw(sc, descs, 24 * n, _ZREFS, 16 * n, mb.ptr, mb.size, mb.va)
                    if len(<tuple>fds) and self.lists_fds:  # (the legacy driver's put_args)
                        f = self.f()
                        if f is not None:
                            f.drop_listed_maps(list(fds))
                return retval  # (signed, as EngineLane.invoke returns it)
            finally:
                self.ids.give_nogil(i)
                if mb is not self.mb and mb is not self.big:
                    self.src.give(mb)
        finally:
            self._out()

    cdef MsgBuf _buffer_for(self, uint64_t rounded):
        """A buffer for a call whose payload (``rounded`` bytes, page-rounded) the route's page
        does not hold: its second buffer when that is of the payload's size class (the very
        buffer size the pool would lend: the DSP, a view's ``.obj`` and the copy back see what
        they see on the lanes), or one of a larger class it takes now for this call and the
        next (up to ``_BIG_MAX``: a buffer the DSP's part translated once, route_attach), else
        one the pool lends for this call only."""
        cdef MsgBuf b = self.big
        cdef uint64_t cls = self.src.class_of(rounded)
        if b is not None and b.size == cls:
            return b  # (its class exactly: the buffer the pool would lend, as the lanes see it)
        b = self.src.take(rounded)
        if rounded > _BIG_MAX or self.big_refused or (self.big is not None and cls < self.big.size):
            return b  # (lent for this call: a smaller class than the kept one's is the pool's)
        try:
            k = self.engine.ep.route_attach(self.arg, b.dev, b.size)
        except BaseException:
            self.src.give(b)
            raise
        old, self.big = self.big, None  # (the DSP's part dropped it: route_attach replaces it)
        if old is not None:
            old.dirty = old.size  # what the pool scrubs before it shows it again
            self.src.give(old)
        if k:
            self.big = b
        else:
            self.big_refused = True
        return b

    cdef int _pack(self, uint32_t sc, const char *descs, uint32_t n, const qda_olap *olaps, uint64_t pkt,
                   uint64_t shift, MsgBuf mb, bint held) except -1:
        # the payload as the lane packs it (fastrpc._pack_shifted when the poll word moves the
        # data area): the checked copies of every buffer (pinned ones: memcpy), or plain ones
        if held:
            pack_held(sc, descs, _ZREFS, olaps, pkt, mb.ptr + shift, mb.size - shift, mb.va + shift, mb.dev + shift)
        else:
            pack_planned_raw(sc, descs, 24 * n, _ZREFS, 16 * n, olaps, pkt, mb.ptr + shift, mb.size - shift,
                             mb.va + shift, mb.dev + shift)
        if shift:
            _meta_to_front(mb.ptr, n, shift)
        return 0

    cdef int _lost(self, exc) except -1:
        # a restart while the skel ran: the driver's errno for it (legacy: EPIPE), as its lane says
        if exc.errno == _ENODEV and self.lost_errno != _ENODEV:
            raise errno_error(self.lost_errno, f"{getattr(self.f(), 'path', 'the file')}: DSP channel is down") from None
        return 0

    cdef void _release(self) noexcept with gil:
        # the file was closed during the call, whose reference was the last: its release
        try:
            f = self.f()
            if f is not None:  # (a file is released when it is closed: one collected is gone)
                f._release_now()
        except BaseException as e:
            report_internal("a file's release after a route call")

    cdef void _failed(self, int err) noexcept with gil:
        # the driver's record of a failed ioctl (the message its errno's report gives)
        try:
            if err == _ENODEV:
                msg = (f"{self.engine.engine.channel.name}: the DSP restarted while handle {self.handle:#x} "
                       f"of client {self.client_id} was running")
            elif err == _EFAULT:  # (call_args: an out-buffer the copy back could not write)
                msg = f"handle {self.handle:#x}: cannot copy an out-buffer back to the caller"
            else:  # (the legacy driver: its channel went away under the call)
                msg = f"{getattr(self.f(), 'path', 'the file')}: DSP channel is down"
            f = self.f()
            if f is not None:
                f._failed(errno_error(err, msg))
        except BaseException as e:
            report_internal("a route call's error")

    def invoke(self, uint32_t sc):
        """:meth:`call` from Python (tests): the retval, ``-errno``, or None when declined."""
        cdef long long r
        with nogil:
            r = self.call(sc)
        return None if r == ROUTE_DECLINED else r

    @property
    def dead(self):
        return bool(qda_load_int(&self.dead))

    def stale(self):
        """Closed, or something the DSP's side took has changed: it serves no call again."""
        return bool(qda_load_int(&self.dead)) or self.dsp is None or self.dsp.stale()

    def close(self):
        """Serve no more calls; give the message buffer back and drop the DSP's part now, or,
        when a call is in the route, once that call is out of it (it still uses both)."""
        if qda_load_int(&self.dead):
            return
        qda_store_int(&self.dead, 1)  # seq_cst, then the busy flag: see _out
        try:
            self.fl.routes.remove(self)
        except ValueError:
            pass
        if qda_cas_int(&self.busy, 0, 1):  # no call in it: and none starts (dead)
            self._cleanup()

    cdef int _cleanup(self) except -1:
        # once, by close() or by the call that was in the route when it was closed
        if not qda_cas_int(&self.cleaned, 0, 1):
            return 0
        mb, self.mb = self.mb, None
        big, self.big = self.big, None
        self.dsp = None
        if mb is not None:
            self.src.give(mb)
        if big is not None:
            big.dirty = big.size  # (calls were shown windows of it: the pool scrubs it whole)
            self.src.give(big)
        return 0

    cdef void _out(self) noexcept nogil:
        # a call leaves the route: if the route was closed meanwhile, the call cleans it up
        qda_store_int(&self.busy, 0)
        if qda_load_int(&self.dead) and qda_cas_int(&self.busy, 0, 1):
            self._cleanup_gil()

    cdef void _cleanup_gil(self) noexcept with gil:
        try:
            self._cleanup()
        except BaseException as e:
            report_internal("a closed route's cleanup")

