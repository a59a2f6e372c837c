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
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.pycapsule cimport PyCapsule_GetContext, PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from qda_core._marshal cimport (REMOTE_SCALARS_MAX_LENGTH, ArgPins, _user_copy, pack_planned_raw, plan_raw, qda_olap,
                               unpack_raw)
from qda_core._cdev cimport ChannelState, MsgBuf, MsgSource, Switch
from qda_core._cwire cimport (QDA_ENDPOINT_CAPSULE, QDA_EP_REFERENCE, QDA_EP_REPLIED, fastrpc_invoke_rsp,
                               fastrpc_msg, qda_endpoint, sc_length)

import errno as _errno

from qda_core import faults as _faults
from qda_core import trace as _trace
from qda_core import wire as _wire
from qda_core.errors import errno_error

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()
cdef uint64_t _PAGE = _wire.PAGE_SIZE
cdef uint64_t _ALIGN = _wire.FASTRPC_ALIGN
cdef uint32_t _POLL_RESPONSE = _wire.FASTRPC_POLL_RESPONSE


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
        self.closed = self.released = False
        self.inflight = 0

    def fill(self, cb, origin, pool_alloc, int client_id, engine_invoke):
        pool = getattr(pool_alloc, "__self__", None)  # a pool's alloc: the pool, taken from in C
        if isinstance(pool, MsgSource) and pool_alloc == pool.alloc:
            pool_alloc = pool
        self.cb, self.origin, self.pool_alloc, self.client_id = cb, origin, pool_alloc, client_id
        self.engine = engine_invoke if type(engine_invoke) is EngineLane else None
        self.engine_invoke = engine_invoke
        self.ready = True

    cpdef bint enter(self):
        """Take an ioctl's reference; False once the file is closed (the caller answers EBADF)."""
        if self.closed:
            return False
        self.inflight += 1
        return True

    cpdef bint leave(self):
        """Drop an ioctl's reference; True when the caller must now run the release (the last
        one after ``close()``)."""
        self.inflight -= 1
        if self.closed and self.inflight == 0 and not self.released:
            self.released = True
            return True
        return False

    cpdef bint close(self):
        """Mark the file closed; True when the caller must now run the release (no ioctl in
        flight)."""
        if self.closed:
            return False
        self.closed = True
        if self.inflight == 0 and not self.released:
            self.released = True
            return True
        return False


cdef class IdAllocator:
    """Context ids. ``cyclic=False``: lowest free id >= 1 (xarray ALLOC1, QDA RFC);
    ``cyclic=True``: next id after the last one, wrapping within 1..limit (legacy IDR cyclic).

    Every invoke on a channel, from any file and thread, allocates and frees here, so there is
    no lock: each operation runs in C under the GIL and calls no Python code, so no other
    thread interleaves with it (an id is taken by exactly one caller, and freed once). The
    native lane and the reference engine share one allocator per channel. The ids in use are
    a bit array up to the highest id taken (lowest-free: the most ever outstanding; cyclic: at
    most ``limit``, 32 bytes for the legacy driver's 255)."""

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

    def __dealloc__(self):
        PyMem_Free(self._heap)
        PyMem_Free(self._bits)

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
        cdef uint64_t k, i
        if self._nused >= self.limit:
            raise self._busy()  # idr_alloc_cyclic and xa_alloc both answer a full range with EBUSY
        if self.cyclic:
            # the id after the last one taken, skipping those in use, as the kernel's IDR does
            for k in range(self.limit):
                i = self._cursor % self.limit + 1
                self._cursor += 1
                if not self._taken(i):
                    self._mark(i)
                    return i
            raise self._busy()
        if self._nheap:
            i = self._pop()  # the heap holds only ids below _fresh
        else:
            i = self._fresh
            self._fresh += 1
        if i > self.limit:
            self._push(i)  # kept for when an id frees up below it
            raise self._busy()
        self._mark(i)
        return i

    cdef int give(self, uint64_t i) except -1:
        if self._taken(i):
            self._bits[i >> 6] &= ~((<uint64_t>1) << (i & 63))
            self._nused -= 1
            if not self.cyclic:
                self._push(i)
        return 0

    cdef bint _taken(self, uint64_t i) noexcept:
        return <Py_ssize_t>(i >> 6) < self._nwords and (self._bits[i >> 6] >> (i & 63)) & 1

    cdef int _mark(self, uint64_t i) except -1:
        # the caller checked that i is free
        cdef Py_ssize_t w = <Py_ssize_t>(i >> 6), n
        cdef uint64_t *b
        if w >= self._nwords:
            n = max(w + 1, 2 * self._nwords, 4)
            b = <uint64_t *>PyMem_Realloc(self._bits, n * sizeof(uint64_t))
            if b == NULL:
                raise MemoryError()
            memset(b + self._nwords, 0, (n - self._nwords) * sizeof(uint64_t))
            self._bits, self._nwords = b, n
        self._bits[w] |= (<uint64_t>1) << (i & 63)
        self._nused += 1
        return 0

    cdef int _push(self, uint64_t v) except -1:
        cdef Py_ssize_t j, parent
        cdef uint64_t *h
        if self._nheap == self._capheap:
            h = <uint64_t *>PyMem_Realloc(self._heap, (self._capheap * 2 + 16) * sizeof(uint64_t))
            if h == NULL:
                raise MemoryError()
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
        return 0

    cdef uint64_t _pop(self) noexcept:
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


cdef inline int32_t _s32(uint64_t v) noexcept:
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
        cdef uint64_t shift = _ALIGN if self.poll_word and n % 16 == 0 else 0
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
                    seq = PyLong_AsUnsignedLongLongMask(next(dict_attr(self._eng, "_seqs", self.engine)))
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
                        self.cst.sent += 1
                        ret = self.ep.receive(self.ep.self, &m, <void *>origin, &rsp)
                        if ret & QDA_EP_REPLIED:
                            self.cst.received += 1
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
    from user address ``args`` (``EFAULT``, as ``-errno``), then the lane's ``serve``."""
    cdef uint32_t n = sc_length(sc)
    try:
        descs = read_descs(args, n)
    except OSError as exc:
        return f._failed(exc)
    return serve(f, fl, handle, sc, n, descs)


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
