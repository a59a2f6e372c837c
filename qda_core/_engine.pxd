from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from qda_core._cdev cimport ChannelState, MsgBuf, MsgSource
from qda_core._cwire cimport fastrpc_invoke_rsp, fastrpc_msg, qda_endpoint
from qda_core._marshal cimport qda_olap

cdef enum:
    ROUTE_DECLINED = -0x100000  # EngineRoute.call: not served, nothing happened (below any -errno)
    ROUTE_ARGS_KEPT = 8         # arguments of a call whose plan a route keeps (and which call_args serves)

ctypedef int (*route_call_fn)(void *arg, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp) noexcept nogil


cdef class SeqCounter:
    cdef unsigned long long v
    cdef unsigned long long take(self) noexcept nogil


cdef class IdAllocator:
    cdef readonly uint64_t limit
    cdef readonly bint cyclic
    cdef uint64_t *_bits          # ids in use, a bit each (grown to the highest id taken)
    cdef Py_ssize_t _nwords
    cdef uint64_t _nused
    cdef uint64_t *_heap          # lowest-free: ids given back, a min-heap
    cdef Py_ssize_t _nheap, _capheap
    cdef uint64_t _fresh          # lowest-free: above every id handed out so far
    cdef uint64_t _cursor         # cyclic: candidate positions, id = position % limit + 1
    cdef int _lock                # a spin lock around every take and give

    cdef long long take(self) except -1
    cdef int give(self, uint64_t i) except -1
    cdef long long take_nogil(self) noexcept nogil
    cdef void give_nogil(self, uint64_t i) noexcept nogil
    cdef long long _take(self, bint grow) noexcept nogil
    cdef bint _taken(self, uint64_t i) noexcept nogil
    cdef long long _mark(self, uint64_t i) noexcept nogil
    cdef void _push(self, uint64_t v) noexcept nogil
    cdef uint64_t _pop(self) noexcept nogil
    cdef object _busy(self)


cdef class EngineLane:
    cdef readonly object engine
    cdef object channel
    cdef IdAllocator ids
    cdef ChannelState cst    # the channel's up flag and message counts
    cdef dict _eng           # the engine's __dict__ (_seqs)
    cdef object _ep_owner    # the endpoint's object (its capsule's context), kept alive
    cdef qda_endpoint *ep
    cdef int id_shift
    cdef int seq_shift      # -1: the layout has no sequence number
    cdef bint poll_word
    cdef uint64_t match_mask

    cpdef int invoke(self, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                     origin, fdlist, bint poll) except? -1
    cdef bint channel_up(self) except -1


cdef long current_tid() noexcept


cdef class EngineRoute


cdef class FileLane:
    cdef public bint native, ready
    cdef public object cb, origin, pool_alloc, engine_invoke
    cdef readonly object invoke_request
    cdef long long invoke_nr      # invoke_request in C; -1: the revision has no INVOKE
    cdef public int client_id
    cdef public int pd            # the PD the file's user messages go to (legacy: LegacyFile.pd)
    cdef public bint poll_mode    # legacy: LegacyFile.poll_mode
    cdef public EngineLane engine
    cdef int _closed, _released   # (C ints: atomics; closed and released are their properties)
    cdef readonly long inflight
    cdef readonly list routes     # the routes open on this file (closed by its release)
    cdef dict by_handle           # handle -> the route this file's own INVOKEs take
    cdef dict refused             # handle -> the routes' epoch a route was refused at
    cdef EngineRoute last_route   # the last one taken, and its handle
    cdef uint32_t last_handle
    cpdef bint enter(self)
    cpdef bint leave(self)
    cpdef bint close(self)
    cdef bint _leave(self) noexcept nogil
    cdef int route_enter(self) noexcept nogil
    cdef EngineRoute route_to(self, uint32_t handle)
    cdef int refresh_route(self, f, uint32_t handle) except -1
cdef class FileCore:
    cdef FileLane lane            # (DriverFile's _lane: the ioctl entries read it as a C field)
cdef inline FileLane lane_of(f):
    """``f._lane``: a C field read for a driver file (a subclass of :class:`FileCore`); a file
    whose ``__init__`` did not set it raises AttributeError, as the attribute would."""
    if isinstance(f, FileCore) and (<FileCore>f).lane is not None:
        return (<FileCore>f).lane
    return f._lane
cdef object read_descs(uint64_t args, uint32_t n)
# a lane's step after INVOKE's descriptors are read (accel/_invoke.pyx, legacy/_invoke.pyx: _serve)
ctypedef object (*serve_fn)(f, FileLane fl, uint32_t handle, uint32_t sc, uint32_t n, descs)
cdef object serve_invoke(f, FileLane fl, uint32_t handle, uint32_t sc, uint64_t args, serve_fn serve)
cdef object typed_invoke(f, FileLane fl, uint32_t h, uint32_t s, args, ref_type, bufref_type, handle_type,
                         serve_fn serve)
cdef bint tracing() noexcept
cdef object new_refs(uint32_t n)


cdef inline void invoke_fields(const unsigned char *k, uint32_t *handle, uint32_t *sc, uint64_t *args) noexcept:
    """The fields of an INVOKE struct, {u32 handle, u32 sc, u64 args} on every revision of both
    drivers (each lane checks its layouts at import)."""
    memcpy(handle, k, 4)
    memcpy(sc, k + 4, 4)
    memcpy(args, k + 8, 8)


cdef inline int u32_of(obj, uint32_t *out) noexcept:
    """1 and ``*out`` if ``obj`` is an int (not a subclass) in 0..2**32-1, else 0 (the typed
    invoke entries' handle and scalars)."""
    cdef int overflow = 0
    cdef long long v
    if type(obj) is not int:
        return 0
    v = PyLong_AsLongLongAndOverflow(obj, &overflow)
    if overflow or v < 0 or v > 0xFFFFFFFF:
        return 0
    out[0] = <uint32_t>v
    return 1


cdef extern from "Python.h":
    # a borrowed reference or NULL, no error check: only for str and int keys (whose hash and
    # compare cannot fail); PyDict_GetItem would save and restore the error state around it
    PyObject *dict_get "PyDict_GetItemWithError"(object d, object key)


cdef inline object dict_attr(dict d, str name, obj):
    """``getattr(obj, name)`` of a plain instance attribute, read in the object's ``__dict__``
    ``d`` (one dict lookup instead of a generic attribute lookup); getattr when it is not there."""
    cdef PyObject *p = dict_get(d, name)
    return <object>p if p != NULL else getattr(obj, name)


cdef class EngineRoute:
    cdef object f                # a weak reference to the driver file (its _release_now and _failed)
    cdef FileLane fl
    cdef IdAllocator ids
    cdef ChannelState cst
    cdef EngineLane engine
    cdef readonly object dsp     # the DSP's route (owner of arg)
    cdef MsgSource src
    cdef MsgBuf mb               # the route's message buffer, out of the file's pool
    cdef MsgBuf big              # its second, for calls mb does not hold (None: none yet)
    cdef bint big_refused        # the DSP's part took no second buffer: the pool lends them
    cdef void *arg
    cdef route_call_fn dsp_call
    cdef int client_id, pd, id_shift, seq_shift
    cdef SeqCounter seqs         # the channel's ctx_seq (None: the layout has none)
    cdef uint32_t handle
    cdef uint64_t match_mask, size
    cdef unsigned long long epoch  # the routes' epoch when it was taken
    cdef int lost_errno          # the driver's errno for a call a restart ended
    cdef readonly bint native    # to a native skel (call serves it; a Python skel's: call_gil only)
    cdef readonly unsigned long long served  # calls it served (declined ones not counted)
    cdef readonly unsigned long long confined  # calls whose skel stayed in its arguments (QDA_EP_CONFINED)
    cdef int busy                # the message buffer is in use (another thread's call declines)
    cdef int dead
    cdef int cleaned             # the message buffer given back and the DSP's part dropped
    cdef uint64_t dirty          # bytes of the buffer an earlier call may have left non-zero
    # the last call's plan (call_gil), kept for a next call with the very same descriptors
    cdef uint32_t plan_sc        # its scalars (0: none kept)
    cdef uint64_t plan_pkt
    cdef char plan_descs[24 * ROUTE_ARGS_KEPT]
    cdef qda_olap plan_olaps[ROUTE_ARGS_KEPT]
    cdef void _scrub(self, uint64_t end, bint shown) noexcept nogil

    cdef bint _ready(self, uint32_t sc) noexcept nogil
    cdef void _message(self, long long i, uint32_t sc, fastrpc_msg *m) noexcept nogil
    cdef long long call(self, uint32_t sc) noexcept nogil
    cdef long long call_args(self, uint32_t sc, const char *descs, uint32_t n) noexcept nogil
    cdef long long _call_args(self, uint32_t sc, const char *descs, uint32_t n) noexcept nogil
    cdef long long _call_none(self, uint32_t sc) noexcept nogil
    cdef long long _exchange(self, uint32_t sc, uint64_t addr, uint64_t size) noexcept nogil
    cdef void _drop_listed(self, uint64_t *fds, int n) noexcept with gil
    cdef void _scrub_big(self, uint64_t end, uint64_t rounded) noexcept nogil
    cdef int reserve(self) except -1
    cdef uint64_t wanted         # a second buffer's payload a call without the GIL lacked (reserve)
    cdef bint lists_fds          # the driver drops the maps a reply's fdlist names (legacy)
    cdef object call_gil(self, uint32_t sc, const char *descs, bint held)
    cdef int _pack(self, uint32_t sc, const char *descs, uint32_t n, const qda_olap *olaps, uint64_t pkt,
                   uint64_t shift, MsgBuf mb, bint held) except -1
    cdef MsgBuf _buffer_for(self, uint64_t rounded)
    cdef int _lost(self, exc) except -1
    cdef int _cleanup(self) except -1
    cdef void _out(self) noexcept nogil
    cdef void _cleanup_gil(self) noexcept with gil
    cdef void _release(self) noexcept with gil
    cdef void _failed(self, int err) noexcept with gil
