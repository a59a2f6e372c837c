# cython: language_level=3, boundscheck=False, wraparound=False
"""The DSP's native receive: one ``fastrpc_msg`` as a C struct in, the reply as a C struct out.

The common message - a user method on a dynamic handle of a live PD, with no fault rule, no
trace and no per-PD cost setting in force - is served here with the same steps, results and
records as :meth:`qda_core.dsp.core.EmulatedDsp.receive` (the reference), without packing
the message and reply into bytes or walking the reference's dispatch. Everything else goes
to the reference, so each rule lives in one place: this lane only decides that nothing
unusual applies, then does the usual.

The lane reads the DSP's tables without the DSP's lock, as the reference does (each read is
one load or dict lookup under the GIL); what it caches of them (a PD's tables) it takes again
whenever the DSP's PD table changes (``_procs_gen``, bumped before and after each change).
docs/dataplane.md.
"""
from cpython.pycapsule cimport PyCapsule_GetContext, PyCapsule_New, PyCapsule_SetContext
from cpython.list cimport PyList_AsTuple
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from cpython.contextvars cimport get_value

from qda_core._cwire cimport (QDA_ENDPOINT_CAPSULE, QDA_EP_CONFINED, QDA_EP_REFERENCE, QDA_EP_REPLIED, QDA_ROUTE_DECLINED, fastrpc_invoke_rsp,
                               fastrpc_msg, qda_endpoint, sc_length)

from qda_core._atomic cimport qda_add_ll, qda_load_ull
from qda_core._cdev cimport Count, DevMemory, Epoch, Pages, Switch

from qda_core._marshal cimport decode_c, decode_views_raw, qda_dec_buf, qda_dec_handle, scope_recheck, sub_view
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_New, PyTuple_SET_ITEM

from ._call cimport Call, new_call
from ._counters cimport (Counters, DspState, PdCounters, PdState, account_add, restore_context, swap_context,
                        swap_context_raw)

import errno as _errno

from qda_core import _cdev as _cdev_mod
from qda_core import trace as _trace
from qda_core import wire as _wire
from qda_core.errors import DeviceFault, errno_error, report_internal

from . import aee as _aee
from . import cost as _cost
from . import dsprt as _dsprt
from .modules import NativeModule as _NativeModule, PythonModule as _PythonModule, _checked
from .skel import ESCAPE_METHOD as _ESCAPE_METHOD, DmaHandle as _DmaHandle

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef object _MSG = _wire.MSG
cdef object _RSP = _wire.RSP
cdef uint32_t _CONST_LIMIT = _wire.CONST_HANDLE_LIMIT
cdef object _QOS_KEYS = (_cost.QOS_PARAM, _wire.RPC_PARAM_ADAPTIVE_QOS)
cdef int32_t _ERR_PD_CRASHED = _aee.to_int32(_aee.ERR_PD_CRASHED)
cdef object _ERR_UNKNOWN_METHOD = _aee.ERR_UNKNOWN_METHOD
cdef object _ERR_BAD_PARM = _aee.ERR_BAD_PARM
cdef uint32_t _ESCAPE = _ESCAPE_METHOD
cdef object _settle = _cost.settle
cdef object _OVERRIDE = _cost._OVERRIDE
cdef unsigned long _HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement
cdef enum:
    _NATIVE_SLOTS = 64  # arguments a native skel's call takes without views (more: the views)


cdef bint _in_streams(_Pd pd, uint64_t addr, uint64_t length) except -1:
    """PdMemory.view's check (pdmem.span_granted without ranges): the range lies in one of
    the PD's streams (its SID in the PD's, within the 32-bit IOVA space)."""
    cdef uint64_t sid = addr >> 32
    if length > (<uint64_t>1 << 32) - (addr & <uint64_t>0xFFFFFFFF):
        return False
    if pd.sid_ok >= 0 and sid == <uint64_t>pd.sid_ok:  # (pd.sids is a frozenset: a hit stays one)
        return True
    if sid not in pd.sids:
        return False
    pd.sid_ok = sid
    return True


cdef extern from "Python.h":
    # a borrowed reference or NULL, no error check: only for str and int keys (whose hash and
    # compare cannot fail); PyDict_GetItem would save and restore the error state around it
    PyObject *_dict_get "PyDict_GetItemWithError"(object d, object key)


cdef extern from "Python.h":
    # Borrowed, pointer-level looks (no reference taken, so the counts read are the holders'):
    # a view's flags, cached hash and buffer (cpython's memoryobject.h), to tell a view nobody
    # else holds and nobody hashed.
    ctypedef struct _PyManagedBufferObject:
        Py_ssize_t exports      # views registered with it
        Py_buffer master        # the exporter's buffer (master.obj: the exporter)
    ctypedef struct PyMemoryViewObject:
        _PyManagedBufferObject *mbuf
        Py_hash_t hash
        int flags
        Py_ssize_t exports      # buffers taken of the view itself
        Py_buffer view
        PyObject *weakreflist
    int _Py_MEMORYVIEW_RELEASED
    PyTypeObject PyTuple_Type
    Py_ssize_t _refs "Py_REFCNT"(PyObject *o)
    Py_ssize_t _tuple_len "PyTuple_GET_SIZE"(PyObject *t)
    PyObject *_tuple_item "PyTuple_GET_ITEM"(PyObject *t, Py_ssize_t i)


cdef inline bint _spare_view(PyObject *v, const char *p, Py_ssize_t n, bint ro) noexcept:
    """``v`` (one of the route's own views, see :func:`_spare_views`) is held by its tuple
    only, unreleased, never hashed, and at exactly ``n`` bytes at ``p``, read-only iff ``ro``:
    what ``sub_view`` would make again."""
    cdef PyMemoryViewObject *o = <PyMemoryViewObject *>v
    return (_refs(v) == 1 and not (o.flags & _Py_MEMORYVIEW_RELEASED) and o.hash == -1
            and o.view.buf == <void *>p and o.view.len == n and (o.view.readonly != 0) == ro)


cdef inline bint _spare_views(PyObject *t, PyObject *mine, Py_ssize_t count, const char *mhost,
                              const qda_dec_buf *bufs, uint64_t base, bint ro) noexcept:
    # `t` (a Call's tuple) is `mine`, the tuple the route made (so its views are sub_view's:
    # format, shape and strides as made), held by the Call and the route only, of `count` views
    # _spare_view accepts for bufs
    cdef Py_ssize_t i
    if t != mine or count != _tuple_len(t):
        return False
    if count == 0:
        return True  # (the empty tuple: shared, immutable)
    if _refs(t) != 2:
        return False
    for i in range(count):
        if not _spare_view(_tuple_item(t, i), mhost + (bufs[i].addr - base), <Py_ssize_t>bufs[i].len, ro):
            return False
    return True


cdef extern from *:
    """
    /* an object of a type with weak references has one now (its weak reference list) */
    static inline int qda_weakly_referenced(PyObject *o) {
        Py_ssize_t off = Py_TYPE(o)->tp_weaklistoffset;
        return off > 0 && *(PyObject **)((char *)o + off) != NULL;
    }
    """
    bint _weakly_referenced "qda_weakly_referenced"(PyObject *o) noexcept


cdef inline Py_ssize_t _held_views(PyObject *t, PyObject *mine, _PyManagedBufferObject *mbuf) noexcept:
    """How many non-empty views `t` holds, when `t` is empty or `mine` (the tuple the route made) held
    by the Call and the route only, and each of its views by `t` only, unreleased, with no
    buffer taken of it and no weak reference to it, a view of `mbuf` when not empty; else -1
    (something of the call's arguments is held elsewhere)."""
    cdef Py_ssize_t i, n = 0, count
    cdef PyMemoryViewObject *o
    if not PyTuple_CheckExact(<object>t):  # (Call's fields are public: anything may be there)
        return -1
    count = _tuple_len(t)
    if count == 0:
        return 0  # (an empty tuple holds nothing)
    if t != mine or _refs(t) != 2:
        return -1
    for i in range(count):
        o = <PyMemoryViewObject *>_tuple_item(t, i)
        if _refs(<PyObject *>o) != 1 or o.flags & _Py_MEMORYVIEW_RELEASED or o.exports or o.weakreflist != NULL:
            return -1
        if o.view.len:
            if o.mbuf != mbuf:
                return -1
            n += 1
    return n


cdef inline bint _in_payload(uint64_t addr, uint64_t n, uint64_t base, uint64_t size) noexcept nogil:
    """``[addr, addr + n)`` lies in the payload at ``base`` (``size`` bytes); no sum that can wrap."""
    return addr >= base and addr - base <= size and n <= size - (addr - base)


cdef inline bint _bare(Call call, proc, handle) noexcept:
    """``call``, a call without arguments, is as a route makes one: no buffers or handles, its
    process and handle, ints where ints were (so keeping it keeps nothing of the skel's)."""
    return (call.inbufs is () and call.outbufs is () and call.inhandles is () and call.outhandles is ()
            and call.process is proc and call.handle is handle and type(call.sc) is int
            and type(call.method) is int and type(call.extra_ns) is int)


cdef class DspRoute


cdef object _own_key(dict d, uint32_t handle):
    """``handle`` as an int: the key object ``d`` holds for it when ``d`` is small (a lookup
    with the very key object skips the compare), else a new one."""
    if len(d) <= 8:
        for k in d:
            if type(k) is int and k == handle:
                return k
    return handle


cdef Switch _TRACE = _trace._SWITCH


cdef Count _ARMED = _cdev_mod.ARMED
cdef Count _OVERRIDES = _cdev_mod.OVERRIDES
cdef Epoch _ROUTES = _cdev_mod.ROUTES
cdef unsigned long long *_EPOCH = &_ROUTES.n  # (read without the GIL: DspRoute.stale)


cdef inline bint _tracing() noexcept:
    return _TRACE.on  # trace.RECORDER is not None (the switch qda_core.trace keeps with it)


cdef bint _c_face(m) except -1:
    """``m`` is a DevMemory whose ``view`` is still its C class's (a Python subclass that
    overrides it - a spy, a fault injector - is asked through its ``view`` for everything)."""
    if not isinstance(m, DevMemory):
        return False
    for c in type(m).__mro__:
        if "view" in c.__dict__:
            return not c.__flags__ & _HEAPTYPE
    return False


cdef class _Capture:
    """The reply callback of the reference path: keeps the one reply."""
    cdef public object data

    def __call__(self, data):
        self.data = data


cdef class _Pd:
    """What the lane reads of one PD on every message (see DspLane._pd)."""
    cdef object proc, params, sids, view
    cdef DevMemory nmem         # the memory behind view in C (None: only its Python view)
    cdef bint ranges            # the PD is granted ranges beyond its streams (PdMemory.ranges)
    cdef dict modules
    cdef PdState st             # proc._st: state, poll_mode
    cdef PdCounters ctr
    cdef int32_t cid
    cdef long long gen          # dsp._procs_gen when taken
    cdef object origin          # the last sender found to be this PD's client (Origin is immutable)
    cdef _Mod mod               # the module instance last called
    cdef object hkey            # the last message's handle as an int (the modules' own key), and in C
    cdef uint32_t hval
    cdef long long sid_ok       # a SID found in sids (-1: none yet)
    cdef object sc              # the last message's scalars as an int, and in C
    cdef uint32_t scval


cdef class _Mod:
    """What a call reads of one module instance (a ModuleInstance, immutable; a
    PythonModule's skel and dispatch, a NativeModule's entry point, handle style and FARF
    context are set once, when it is made)."""
    cdef object mi, impl, skel
    cdef dict dispatch          # None: not a PythonModule
    cdef long long mid          # the method last looked up in dispatch (-1: none), and its entry
    cdef object entry
    cdef bint native
    cdef void *fn               # NativeModule: _fn, _hs, ctx
    cdef int hs
    cdef object ctx
    cdef uint64_t h64           # NativeModule.h64 once its open set it (never changed after)


cdef _Mod _new_mod(mi):
    cdef _Mod m = _Mod.__new__(_Mod)
    m.mi, m.mid = mi, -1
    m.impl = impl = (<tuple>mi)[2]  # ModuleInstance.impl
    m.native = type(impl) is _NativeModule
    if m.native:
        m.fn, m.hs, m.ctx = <void *><size_t>impl._fn, impl._hs, impl.ctx
    if type(impl) is _PythonModule:
        m.skel, m.dispatch = impl.skel, impl.dispatch
    return m


cdef class DspLane:
    """The native receive of one DSP endpoint (one host driver's channel)."""
    cdef readonly object dsp
    cdef readonly str channel
    cdef qda_endpoint _ep
    cdef qda_endpoint *ep
    cdef dict _dsp_dict
    cdef DspState _st       # dsp._st: faults, cost, stats, generations
    cdef dict _pds          # client id -> _Pd
    cdef long long _pds_gen # dsp._procs_gen when _pds was filled
    cdef _Pd _last          # the PD of the last message
    cdef Counters _stats    # dsp.stats.native (see _counters)
    cdef object _stats_owner
    # the cost model last seen, and its figures (CostModel is frozen: cached by identity)
    cdef object _cost
    cdef int64_t _overhead
    cdef double _cbps
    cdef object _faults         # the fault rules last seen, and their __dict__ (see _armed)
    cdef dict _faults_dict

    def __cinit__(self, dsp, str channel):
        self.dsp = dsp
        self.channel = channel
        self._dsp_dict = dsp.__dict__
        self._st = dsp._st
        self._pds = {}
        self._pds_gen = -1
        self._stats = None
        self._stats_owner = None
        self.ep = &self._ep  # in the object itself: it lives exactly as long as the lane
        self.ep.receive = _receive
        self.ep.self = <void *>self  # each capsule made of ep owns a reference to the lane (see capsule)
        self.ep.route_open = _route_open
        self.ep.route_call = _route_call
        self.ep.route_call_gil = _route_call_gil
        self.ep.route_clean = _route_clean
        self.ep.route_attach = _route_attach
        self._cost = None

    @property
    def capsule(self):
        """The ``qda_endpoint`` as a new ``PyCapsule`` (see csrc/include/qdarpc/endpoint.h),
        which owns a reference to this lane (its context): the lane lives as long as whoever
        holds it. A holder that keeps the entry for long keeps the context instead (a reference
        the cycle collector sees: one it cannot see, the capsule's, would keep every SoC, a
        cycle through its DSPs' SSR callbacks, from ever being freed)."""
        cap = PyCapsule_New(<void *>self.ep, QDA_ENDPOINT_CAPSULE, _release_capsule)
        Py_INCREF(self)
        PyCapsule_SetContext(cap, <void *>self)
        return cap

    def receive(self, uint32_t client_id, uint32_t tid, uint64_t ctx, uint32_t handle, uint32_t sc,
                uint64_t addr, uint64_t size, origin):
        """The native entry from Python (tests): ``(replied, reference, rsp_ctx, retval)``."""
        cdef fastrpc_msg m
        cdef fastrpc_invoke_rsp r
        m.client_id, m.tid, m.ctx, m.handle = <int32_t>client_id, <int32_t>tid, ctx, handle
        m.sc, m.addr, m.size = sc, addr, size
        r.ctx, r.retval = 0, 0
        ret = self._receive(&m, origin, &r)
        return bool(ret & QDA_EP_REPLIED), bool(ret & QDA_EP_REFERENCE), r.ctx, r.retval

    cdef int _reference(self, const fastrpc_msg *m, object origin, fastrpc_invoke_rsp *rsp) except -1:
        """The message through :meth:`EmulatedDsp.receive`, bytes in and out."""
        cdef _Capture cap = _Capture()
        raw = _MSG.pack(m.client_id, m.tid, m.ctx, m.handle, m.sc, m.addr, m.size)
        self.dsp.receive(raw, cap, self.channel, origin)
        if cap.data is None:
            return QDA_EP_REFERENCE
        rctx, rv = _RSP.unpack(cap.data)
        rsp.ctx = rctx
        rsp.retval = rv
        return QDA_EP_REPLIED | QDA_EP_REFERENCE

    cdef bint _armed(self, f) except -1:
        """``f._kinds`` is not empty: a fault rule is armed (read in the rules' ``__dict__``)."""
        cdef PyObject *k
        if f is not self._faults:
            self._faults, self._faults_dict = f, getattr(f, "__dict__", None)
        if self._faults_dict is None:
            return bool(f._kinds)
        k = _dict_get(self._faults_dict, "_kinds")
        if k == NULL:
            return bool(f._kinds)
        return bool(<object>k)

    cdef Counters _counters(self):
        """The C counters of the DSP's statistics now (``dsp.stats.native``); None when
        ``dsp.stats`` is not a DspStats (then its own ``record`` counts)."""
        st = self._st.stats
        if st is not self._stats_owner:
            native = getattr(st, "native", None)
            self._stats = native if type(native) is Counters else None
            self._stats_owner = st
        return self._stats

    cdef _Pd _pd(self, int32_t client_id):
        """The PD of ``client_id`` on this channel, with what every message reads of it; None
        if there is none. Cached until the DSP's table of PDs changes (``_procs_gen``)."""
        cdef long long gen = self._st.procs_gen
        cdef _Pd pd = self._last
        if pd is not None and pd.cid == client_id and pd.gen == gen:
            return pd
        dsp = self.dsp
        if gen != self._pds_gen:
            self._pds.clear()
            self._pds_gen = gen
        pd = self._pds.get(client_id)
        if pd is None:
            proc = dsp._procs.get((self.channel, client_id))
            if proc is None:
                return None
            pd = _Pd.__new__(_Pd)
            pd.proc, pd.modules, pd.params, pd.ctr = proc, proc.modules, proc.params, proc.counters
            pd.st = proc._st
            pd.cid, pd.gen, pd.sid_ok = client_id, gen, -1
            memory = proc.memory
            pd.sids, pd.view = memory.sids, memory._memory.view
            pd.nmem = memory._memory if _c_face(memory._memory) else None
            pd.ranges = bool(memory.ranges)
            self._pds[client_id] = pd
        self._last = pd
        return pd

    cdef object _route(self, int32_t client_id, uint32_t handle, origin, uint64_t addr, uint64_t size,
                       void **arg):
        """A :class:`DspRoute` for (``client_id``, ``handle``) with the message buffer at device
        address ``addr`` (``size`` bytes), or None: the same checks :meth:`_receive` makes of a
        message before it serves one natively, made once; a native skel's or a Python skel's
        (``PythonModule``) handle (a Python skel's route serves callers holding the GIL only)."""
        cdef unsigned long long epoch = _EPOCH[0]  # first: a change while this runs is seen
        cdef char *host = NULL
        cdef Py_ssize_t boff = 0
        cdef _Pd pd
        cdef _Mod mod
        cdef DspRoute r
        cdef PyObject *exporter
        cdef DspState st = self._st
        if (handle < _CONST_LIMIT or origin is None or st is None or _tracing()
                or _dict_get(self._dsp_dict, "receive") != NULL or _ARMED.n or _OVERRIDES.n):
            return None
        cost = st.cost
        if cost.realtime:
            return None
        stats = self._counters()
        if stats is None:
            return None
        pd = self._pd(client_id)
        if pd is None or client_id != <int32_t>origin.client_id:
            return None
        if pd.st.state != "alive" or pd.st.poll_mode:
            return None
        if pd.params and (_QOS_KEYS[0] in pd.params or _QOS_KEYS[1] in pd.params):
            return None
        mi = pd.modules.get(handle)
        if mi is None:
            return None
        mod = _new_mod(mi)
        if not (mod.native or mod.dispatch is not None) or pd.nmem is None or not _in_streams(pd, addr, size):
            return None  # (a skel neither native nor a PythonModule: its own invoke, the lanes')
        # the message buffer translated once: the engine's route holds it out of its pool, so its
        # mapping stays until the file's release, which closes the route first
        whole = pd.nmem.base(addr, size, &boff, &host)
        if whole is None or host == NULL:
            return None
        if mod.native and _dsp_call == NULL:
            _load_dsprt()
        r = DspRoute.__new__(DspRoute)
        r.lane, r.pd, r.mod, r.stats = self, pd, mod, stats
        r.hkey = _own_key(pd.modules, handle)
        r.origin = origin
        r.pv, r.pvoff = whole, boff
        if type(whole) is memoryview:
            exporter = <PyObject *>(<PyMemoryViewObject *><PyObject *>whole).mbuf.master.obj
            if exporter != NULL and type(<object>exporter) is Pages:
                r.pages = exporter
        r.c.native = mod.native
        r.c.epoch = epoch
        r.c.fn, r.c.hs = mod.fn, mod.hs
        r.c.h64 = mod.impl.h64 if mod.native and mod.hs else 0
        r.c.ctx = <PyObject *>mod.ctx if mod.ctx is not None else NULL
        r.c.overhead = cost.overhead_ns
        r.c.stats_v = &(<Counters>stats).v[0]
        r.c.pd_invokes, r.c.pd_ns = &pd.ctr.invokes, &pd.ctr.modeled_ns
        r.c.generation = st.generation
        r.c.owner = <PyObject *>r
        r.c.cbps = cost.cache_bytes_per_s
        r.c.phost, r.c.paddr, r.c.psize = host, addr, size
        r.c.bhost, r.c.baddr, r.c.bsize = NULL, 0, 0
        arg[0] = <void *>&r.c
        return r

    cdef int _receive(self, const fastrpc_msg *m, object origin, fastrpc_invoke_rsp *rsp) except -1:
        cdef _Pd pd
        cdef _Mod mod
        cdef object handle
        cdef PyObject *p
        cdef dict d = self._dsp_dict
        cdef DspState st = self._st
        dsp = self.dsp
        # what sends a message to the reference: anything that is not a user method of a
        # live PD, or that something watches (trace) or may alter (fault rules, QoS, realtime)
        # (st is None: the lane was cleared by the cycle collector; the reference fails cleanly)
        if (m.handle < _CONST_LIMIT or origin is None or st is None or _tracing()
                or _dict_get(d, "receive") != NULL):
            # (a receive set on the DSP itself is a tap on every message: tests, tools)
            return self._reference(m, origin, rsp)
        f = st.faults if _ARMED.n else None  # no rule anywhere: no rule set to read
        if f is not None and self._armed(f):
            return self._reference(m, origin, rsp)
        cost = st.cost
        if cost is not self._cost:
            if cost.realtime:
                return self._reference(m, origin, rsp)
            self._overhead = cost.overhead_ns
            self._cbps = cost.cache_bytes_per_s
            self._cost = cost
        pd = self._pd(m.client_id)
        if pd is None:
            return self._reference(m, origin, rsp)
        if origin is not pd.origin:  # the header must name the sender's own client
            if m.client_id != <int32_t>origin.client_id:
                return self._reference(m, origin, rsp)
            pd.origin = origin
        if pd.st.state != "alive" or pd.st.poll_mode:
            return self._reference(m, origin, rsp)
        if pd.params and (_QOS_KEYS[0] in pd.params or _QOS_KEYS[1] in pd.params):
            return self._reference(m, origin, rsp)
        if pd.hkey is None or m.handle != pd.hval:  # the handle's int, kept for the next message
            pd.hkey, pd.hval = _own_key(pd.modules, m.handle), m.handle
        handle = pd.hkey
        p = _dict_get(pd.modules, handle)
        if p == NULL:
            return self._reference(m, origin, rsp)
        mod = pd.mod
        if mod is None or mod.mi is not <object>p:
            mod = pd.mod = _new_mod(<object>p)
        return self._serve(m, origin, rsp, pd, mod, handle, st.generation, self._overhead, self._cbps, None, 0, NULL)

    cdef int _serve(self, const fastrpc_msg *m, object origin, fastrpc_invoke_rsp *rsp, _Pd pd, _Mod mod, handle,
                    long long generation, int64_t overhead, double cbps, object whole, Py_ssize_t boff,
                    char *mhost, DspRoute owner=None) except -1:
        """A message :meth:`_receive` (or a route) found to be the usual one, served: the
        arguments viewed, the skel called, the records (:meth:`_finish`). ``handle``: the
        modules' own key for ``m.handle``; ``generation``: the DSP's restarts when the message
        came; ``overhead``, ``cbps``: the cost model's figures; ``whole``, ``boff``, ``mhost``:
        the message buffer's translation (``Smmu.base``) when the caller has it (a route's own
        buffer), else None; ``owner``: that route (its spare ``Call``, :meth:`_plain_call`)."""
        cdef Call call
        cdef uint32_t sc = m.sc
        cdef int64_t copied = 0, nbytes_in = 0, nbytes_out = 0, nhin, nhout, ns
        cdef uint32_t ninh, method
        cdef char *host
        cdef uint64_t pra[2 * _NATIVE_SLOTS]
        cdef uint64_t counts[3]
        cdef bint native
        cdef int k
        proc = pd.proc
        # the arguments, as the reference's _resolve views them; any failure (an SMMU fault,
        # a payload that does not decode) is the reference's to answer: nothing ran yet
        if m.size and not _in_streams(pd, m.addr, m.size):
            return self._reference(m, origin, rsp)  # PdMemory.view's check: outside the PD's streams
        # a native skel's arguments straight from the payload into its remote_arg array (no
        # views, no Call): anything this does not serve takes the views below
        native = mod.native and pd.nmem is not None and sc_length(sc) <= _NATIVE_SLOTS
        if native:
            k = self._native_args(m, pd, pra, &copied, &nbytes_in, &nbytes_out, mhost)
            if k < 0:
                return self._reference(m, origin, rsp)
            native = k == 0
        ninh = (sc >> 4) & 0xF
        method = (sc >> 24) & 0x1F
        call = None
        nhin = nhout = 0
        if native:
            nhin = ninh
            nhout = (sc & 0xF)
        else:
            if pd.sc is None or sc != pd.scval:  # the Call's sc as an int, kept
                pd.sc, pd.scval = sc, sc
            if sc & 0xFFFFFF:
                if pd.nmem is not None and not sc & 0xFF:  # buffers only: views straight from the decode
                    call = self._plain_call(m, pd, counts, method, handle, whole, boff, mhost, owner)
                if call is None:
                    try:  # the device memory, past PdMemory's check
                        got = self._views(m, pd, counts)
                    except (DeviceFault, OSError):
                        return self._reference(m, origin, rsp)
                    if got is None:  # not wholly mapped: the reference reports the fault
                        return self._reference(m, origin, rsp)
                    ins, outs, handles = got
                    # the handle counts recorded are the decode's, whatever the skel does to its Call
                    hs = <tuple>handles
                    nhin = ninh
                    nhout = len(hs) - ninh
                    call = new_call(pd.sc, method, ins, outs,
                                    hs[:ninh] if ninh else (), hs[ninh:] if nhout else (), proc, handle)
                copied, nbytes_in, nbytes_out = counts[0], counts[1], counts[2]
            else:  # no arguments: only the translation's check, no view; the empty tuple, four times
                if mhost == NULL:
                    if pd.nmem is not None:
                        if pd.nmem.span(m.addr, m.size, &host):
                            return self._reference(m, origin, rsp)
                    else:
                        try:
                            pd.view(m.addr, m.size, True)
                        except (DeviceFault, OSError):
                            return self._reference(m, origin, rsp)
                call = new_call(pd.sc, method, (), (), (), (), proc, handle)
        ns = overhead + <int64_t>(<double>copied * 1e9 / cbps)
        return self._run(m, rsp, pd, mod, None if native else call, pra, handle, ns, nbytes_in, nbytes_out, nhin, nhout,
                         generation, owner if mhost != NULL and not native else None)

    cdef int _run(self, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp, _Pd pd, _Mod mod, Call call, uint64_t *pra,
                  handle, int64_t ns, int64_t nbytes_in, int64_t nbytes_out, int64_t nhin, int64_t nhout,
                  long long generation, DspRoute owner) except -1:
        """A served message's skel call - a Python skel's ``call``, or a native skel's with its
        ``remote_arg`` array ``pra`` when ``call`` is None - and its records (:meth:`_finish`;
        ``ns``: the modeled time before the skel's own); on a route's own buffer (``owner``) the
        ``Call`` kept for the next call and whether the skel stayed in its arguments
        (DspRoute._keep, _confined: ``QDA_EP_CONFINED`` with the reply). A route's usual calls
        take the same steps in ``_route_call_gil``."""
        cdef uint32_t sc = m.sc, method = (m.sc >> 24) & 0x1F
        cdef bint crashed = False, confined = False
        cdef int64_t r
        cdef int32_t rv
        cdef int k
        try:
            if call is None:
                r = _native_call(mod, pra, sc, method)
            else:
                r = _invoke(mod, call, method, sc)
            rv = <int32_t><uint32_t>r  # aee.to_int32
        except Exception as exc:
            crashed = True
            rv = _ERR_PD_CRASHED
            self.dsp._crashed(self.channel, pd.proc, exc)
        else:
            if owner is not None:
                confined = owner.pages != NULL and owner._confined(call, owner.at_taken, owner.at_made)
                owner._keep(call, pd.proc, handle)
            if call is not None:  # (a crashed call charges no compute time: the reference loses it)
                ns += <int64_t>call.extra_ns
        k = self._finish(m, rsp, pd, rv, crashed, ns, nbytes_in, nbytes_out, nhin, nhout, generation)
        return k | QDA_EP_CONFINED if confined and k == QDA_EP_REPLIED else k

    cdef int _finish(self, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp, _Pd pd, int32_t rv, bint crashed,
                     int64_t ns, int64_t nbytes_in, int64_t nbytes_out, int64_t nhin, int64_t nhout,
                     long long generation) except -1:
        """A served message's last steps, as the reference takes them: its modeled ``ns``
        settled (the caller's override), the PD's and the DSP's records, a restart since
        ``generation`` (ENODEV), a fault rule armed while it ran, the reply."""
        cdef Counters stats
        cdef DspState st = self._st
        dsp = self.dsp
        if get_value(_OVERRIDE) is None:  # cost.settle: no override, not realtime (checked before)
            account_add(ns)
        else:
            ns = _settle(st.cost, ns)
        pd.ctr.add(1, ns)
        stats = self._counters()
        if stats is not None:
            stats.add(nbytes_in, nbytes_out, nhin, nhout, ns, rv != 0, crashed)
        else:  # a DspStats stand-in (a test's recorder): its own record()
            dsp.stats.record(bytes_in=nbytes_in, bytes_out=nbytes_out, handles_in=nhin, handles_out=nhout, ns=ns,
                             error=rv != 0, crash=crashed)
        if st.generation != generation:
            raise errno_error(_errno.ENODEV, f"{dsp.domain} restarted while handle {m.handle:#x} "
                                             f"sc {m.sc:#x} of client {m.client_id} was running")
        f = st.faults if _ARMED.n else None
        if f is not None and self._armed(f):  # a rule came while it ran: the reference's last step
            rctx, withheld = dsp._reply_faults(m.handle, m.sc, m.ctx)
            if withheld:
                return QDA_EP_REFERENCE
            rsp.ctx = rctx
            rsp.retval = rv
            return QDA_EP_REPLIED | QDA_EP_REFERENCE
        rsp.ctx = m.ctx
        rsp.retval = rv
        return QDA_EP_REPLIED

    cdef int _native_args(self, const fastrpc_msg *m, _Pd pd, uint64_t *pra, int64_t *copied, int64_t *nbytes_in,
                          int64_t *nbytes_out, char *mhost) except -2:
        """A native skel's ``remote_arg`` array filled straight from the payload, as
        :func:`_native` fills it from the views: a buffer in the payload points into it, one
        outside through the PD's SMMU (PdMemory's check first), a handle is ``{fd, offset}``.
        0: filled; -1: a fault or a payload that does not decode (the reference answers it,
        nothing ran); 1: a case left to the views (granted ranges beyond the PD's streams)."""
        cdef uint32_t sc = m.sc
        cdef uint32_t nin = (sc >> 16) & 0xFF
        cdef uint32_t nbufs = nin + ((sc >> 8) & 0xFF)
        cdef uint32_t nh = ((sc >> 4) & 0xF) + (sc & 0xF)
        cdef uint32_t i
        cdef uint64_t base = m.addr, size = m.size, a, n, off
        cdef char *host
        cdef char *q
        cdef qda_dec_buf bufs[_NATIVE_SLOTS]
        cdef qda_dec_handle hs[32]
        host = mhost  # (the caller's translation of the message buffer, when it has one)
        if host == NULL and (pd.nmem.span(base, size, &host) or host == NULL):
            return -1
        if decode_c(sc, host, <size_t>size, bufs, _NATIVE_SLOTS, hs, 32) < 0:
            return -1
        for i in range(nbufs):
            a, n = bufs[i].addr, bufs[i].len
            if i < nin:
                nbytes_in[0] += n
            else:
                nbytes_out[0] += n
            off = a - base  # wraps below base: then >= size, so "outside"
            if n and a >= base and off < size:
                copied[0] += n
            if n == 0:
                pra[2 * i] = 0
            elif _in_payload(a, n, base, size):
                pra[2 * i] = <uint64_t><size_t>(host + off)
            else:
                if pd.ranges:
                    return 1
                if not _in_streams(pd, a, n):
                    return -1  # PdMemory.view's check
                if pd.nmem.span(a, n, &q):
                    return -1
                pra[2 * i] = <uint64_t><size_t>q
            pra[2 * i + 1] = n
        for i in range(nh):  # {int32 fd, uint32 offset} in the slot's first word
            pra[2 * (nbufs + i)] = (<uint64_t><uint32_t>hs[i].fd) | (<uint64_t>hs[i].offset) << 32
            pra[2 * (nbufs + i) + 1] = 0
        return 0

    cdef Call _plain_call(self, const fastrpc_msg *m, _Pd pd, uint64_t *counts, uint32_t method, handle,
                          object whole, Py_ssize_t boff, char *mhost, DspRoute owner):
        """The ``Call`` of a message with buffers only, all inside its payload (the usual
        one), its two tuples of views made straight from the decode, as :meth:`_views` and
        ``new_call`` would make them; None for any other (then :meth:`_views`). On a route
        (``owner``), its last call's ``Call`` again when nobody kept it, its tuples or any of
        their views and its views are the ones this call would make (a loop with the same
        buffers): every field set again, no view, tuple or ``Call`` made."""
        cdef qda_dec_buf bufs[_NATIVE_SLOTS]
        cdef qda_dec_handle nohandle[1]
        cdef uint32_t sc = m.sc, nin = (sc >> 16) & 0xFF, nbufs = nin + ((sc >> 8) & 0xFF), i
        cdef uint64_t base = m.addr, size = m.size, off, n
        cdef tuple ins, outs
        cdef Call call
        if nbufs > _NATIVE_SLOTS:
            return None
        if whole is None:
            whole = pd.nmem.base(base, size, &boff, &mhost)
            if whole is None:
                return None
        if decode_c(sc, mhost, <size_t>size, bufs, _NATIVE_SLOTS, nohandle, 0) < 0:
            return None
        counts[0] = counts[1] = counts[2] = 0
        for i in range(nbufs):
            n = bufs[i].len
            off = bufs[i].addr - base
            if n and not _in_payload(bufs[i].addr, n, base, size):
                return None  # by reference: the PD's SMMU view (_views)
            counts[1 if i < nin else 2] += n
            counts[0] += n
        if owner is not None and owner.spare is not None and mhost != NULL:
            call = owner.spare
            owner.spare = None
            if (_refs(<PyObject *>call) == 1  # (only here: nobody kept it)
                    and _spare_views(<PyObject *>call.inbufs, <PyObject *>owner.spare_ins, nin, mhost, bufs, base,
                                     True)
                    and _spare_views(<PyObject *>call.outbufs, <PyObject *>owner.spare_outs, nbufs - nin, mhost,
                                     bufs + nin, base, False)):
                call.sc, call.method, call.extra_ns = pd.sc, method, 0
                # (the rest as the route made it, unless changed since _keep looked: checks
                # cost less than setting them again)
                if call.inhandles is not () or call.outhandles is not ():
                    call.inhandles, call.outhandles = (), ()
                if call.process is not pd.proc or call.handle is not handle:
                    call.process, call.handle = pd.proc, handle
                owner.spared += 1
                return call
        ins = PyTuple_New(nin) if nin else ()
        outs = PyTuple_New(nbufs - nin) if nbufs > nin else ()
        for i in range(nbufs):
            n = bufs[i].len
            if n == 0:  # (a fresh empty view each, as _view_of makes it)
                v = memoryview(b"") if i < nin else memoryview(bytearray())
            else:
                v = sub_view(whole, boff + <Py_ssize_t>(bufs[i].addr - base), <Py_ssize_t>n, i < nin)
            Py_INCREF(v)
            if i < nin:
                PyTuple_SET_ITEM(ins, i, v)
            else:
                PyTuple_SET_ITEM(outs, i - nin, v)
        if owner is not None and mhost != NULL:
            owner.spare_ins, owner.spare_outs = ins, outs  # (what a spare's tuples must be)
        return new_call(pd.sc, method, ins, outs, (), (), pd.proc, handle)

    cdef tuple _views(self, const fastrpc_msg *m, _Pd pd, uint64_t *counts):
        """The reference's _resolve: the payload decoded and every argument viewed (in the
        payload, or through the PD's SMMU view when by reference); None if the payload is not
        wholly mapped. Through the SMMU's C face the arguments are slices of the message
        buffer's own view (no view of the payload is made)."""
        cdef uint32_t sc = m.sc
        cdef Py_ssize_t nin = (sc >> 16) & 0xFF, boff = 0
        cdef char *host
        cdef Py_buffer p
        if pd.nmem is not None:
            whole = pd.nmem.base(m.addr, m.size, &boff, &host)
            if whole is None:
                return None
            ins, outs, handles, refs = decode_views_raw(sc, whole, boff, host, <size_t>m.size, m.addr, counts)
        else:
            payload = pd.view(m.addr, m.size, True)
            if type(payload) is not memoryview or payload.format != "B" or payload.ndim != 1:
                payload = memoryview(payload).cast("B")  # as the reference views it
            PyObject_GetBuffer(payload, &p, PyBUF_SIMPLE)
            try:
                ins, outs, handles, refs = decode_views_raw(sc, payload, 0, <const char *>p.buf, <size_t>p.len,
                                                            m.addr, counts)
            finally:
                PyBuffer_Release(&p)
        if refs is not None:  # (then lists: filled here, the skel gets tuples)
            for i, (addr, length) in (<dict>refs).items():
                if pd.nmem is not None and not pd.ranges and _in_streams(pd, addr, length):
                    mv = pd.nmem.view(addr, length, i >= nin)  # PdMemory.view, its check done
                else:
                    mv = pd.proc.memory.argument(addr, length, i >= nin)
                if i < nin:
                    (<list>ins)[i] = mv
                else:
                    (<list>outs)[i - nin] = mv
            ins, outs = PyList_AsTuple(ins), PyList_AsTuple(outs)
        hs = tuple([_DmaHandle(*h) for h in handles]) if handles else ()
        return ins, outs, hs


ctypedef int (*dsp_call_fn)(void *fn, int handle_style, uint64_t h64, uint32_t sc, void *pra,
                            int *signo) noexcept nogil
ctypedef int (*last_fault_fn)(uint64_t *addr, int *code) noexcept nogil
cdef dsp_call_fn _dsp_call = NULL
cdef last_fault_fn _last_fault = NULL
cdef int _FAULTED = <int>0x8000040D  # QDARPC_DSP_CALL_FAULTED (csrc/dsprt/dsprt.h)


cdef int _load_dsprt() except -1:
    """The DSP runtime's entry points, once (qda_core.dsp.dsprt loads the library)."""
    global _dsp_call, _last_fault
    import ctypes
    lib = _dsprt.load()
    _last_fault = <last_fault_fn><size_t>ctypes.cast(lib.qdarpc_dsprt_last_fault, ctypes.c_void_p).value
    _dsp_call = <dsp_call_fn><size_t>ctypes.cast(lib.qdarpc_dsp_call, ctypes.c_void_p).value
    return 0


cdef object _native(_Mod mod, Call call, uint32_t method, uint32_t sc):
    """``NativeModule.invoke(call)`` in C: the ``remote_arg`` array built from the views (each
    pointing straight at device memory), then :func:`_native_call`."""
    cdef uint64_t stack_pra[64]
    cdef uint64_t *pra = stack_pra
    cdef Py_ssize_t nb = len(call.inbufs) + len(call.outbufs), nh = len(call.inhandles) + len(call.outhandles)
    cdef Py_ssize_t i = 0
    cdef Py_buffer v
    if 2 * (nb + nh) > 64:
        pra = <uint64_t *>malloc(16 * (nb + nh))
        if pra == NULL:
            raise MemoryError()
    try:
        for bufs in (call.inbufs, call.outbufs):
            for mv in bufs:
                PyObject_GetBuffer(mv, &v, PyBUF_SIMPLE)  # the view keeps the memory: released at once
                pra[2 * i] = <uint64_t><size_t>v.buf if v.len else 0
                pra[2 * i + 1] = <uint64_t>v.len
                PyBuffer_Release(&v)
                i += 1
        for hl in (call.inhandles, call.outhandles):
            for h in hl:  # {int32 fd, uint32 offset} in the slot's first word
                pra[2 * i] = (<uint64_t>(h.fd & 0xFFFFFFFF)) | (<uint64_t>(h.offset & 0xFFFFFFFF)) << 32
                pra[2 * i + 1] = 0
                i += 1
        return _native_call(mod, pra, sc, call.method)
    finally:
        if pra != stack_pra:
            free(pra)


cdef object _native_call(_Mod mod, uint64_t *pra, uint32_t sc, method):
    """The native skel called with its ``remote_arg`` array under the crash guard, the GIL
    released, the PD's FARF context set around it (``dsprt.context``), as
    ``NativeModule.invoke`` calls it."""
    cdef int rv, signo = 0, code = 0, hs = mod.hs
    cdef uint64_t h64 = 0, addr = 0
    cdef void *fn = mod.fn
    if hs:
        if mod.h64 == 0:  # (the open sets it, before any call; a skel may answer 0)
            mod.h64 = mod.impl.h64
        h64 = mod.h64
    if _dsp_call == NULL:
        _load_dsprt()
    prev = swap_context(mod.ctx)
    try:
        with nogil:
            scope_recheck()  # (skel code: see _invoke)
            rv = _dsp_call(fn, hs, h64, sc, pra, &signo)
            scope_recheck()
    finally:
        if prev is None:  # (no object to keep alive: the usual case, no threading.local touched)
            swap_context(None)
        else:
            restore_context(prev)
    if rv == _FAULTED and signo:
        _last_fault(&addr, &code)
        raise _dsprt.NativeFault(signo, addr, code, f"{mod.impl._where} method {method}")
    return rv


cdef int64_t _invoke(_Mod mod, Call call, uint32_t method, uint32_t sc) except? 0x10000000000:  # (no retval is outside 33 bits)
    """``impl.invoke(call)``'s retval (:func:`_invoke_skel`). Skel code may change the signal
    handlers the guarded user copy relies on: the copies after it, and any it makes itself
    (a nested call), ask the guard again (``qda_uaccess_recheck``)."""
    scope_recheck()
    try:
        return _invoke_skel(mod, call, method, sc)
    finally:
        scope_recheck()


cdef int64_t _invoke_skel(_Mod mod, Call call, uint32_t method, uint32_t sc) except? 0x10000000000:
    """``impl.invoke(call)``'s retval; a Python skel's method called here, as
    ``PythonModule.invoke`` calls it (the escape, method 31, through ``PythonModule.invoke``
    itself), a native skel as ``NativeModule.invoke`` calls it (:func:`_native`)."""
    cdef PyObject *entry
    if mod.native:
        return _native(mod, call, method, sc)
    if mod.dispatch is None or method == _ESCAPE:
        return mod.impl.invoke(call) & 0xFFFFFFFF
    if method != mod.mid:
        entry = _dict_get(mod.dispatch, method)  # handle-style modules' 0 and 1 are not in it
        if entry == NULL:
            return _ERR_UNKNOWN_METHOD
        mod.mid, mod.entry = method, <object>entry
    fn, want, cost_ns = <tuple>mod.entry
    if want is not None and (<uint32_t>want ^ sc) & 0xFFFFFF:  # MethodSpec.counts_match
        return _ERR_BAD_PARM
    if cost_ns is not None and cost_ns != 0:  # (an int, the MethodSpec's: 0 for most)
        call.extra_ns += cost_ns
    rv = fn(mod.skel, call)
    if type(rv) is int and -0x80000000 <= rv <= 0x7FFFFFFF:
        return rv
    return _checked(rv, fn.__name__)


cdef void _release_capsule(object cap) noexcept:
    # the capsule's reference to its lane (see DspLane.capsule)
    Py_DECREF(<object>PyCapsule_GetContext(cap))


cdef int _receive(void *self, const fastrpc_msg *m, void *origin, fastrpc_invoke_rsp *rsp) except -1:
    # called by the engine holding the GIL; -1 leaves the Python exception set for it
    return (<DspLane>self)._receive(m, <object>origin, rsp)


# -- routes (docs/dataplane.md "Routes") ------------------------------------------------------
cdef struct qda_dsp_route:
    unsigned long long epoch        # _ROUTES when the route was taken
    void *fn                        # the skel's invoke, its handle style and handle
    int hs
    uint64_t h64
    PyObject *ctx                   # the module's DspContext (FARF), or NULL
    int64_t overhead                # the cost model's per-message ns
    long long *stats_v              # the DSP's Counters.v
    long long *pd_invokes           # the PD's PdCounters
    long long *pd_ns
    long long generation            # the DSP's restarts when the route was taken
    PyObject *owner                 # the DspRoute (the crash path's, with the GIL)
    bint native                     # a native skel (else a Python skel: route_call_gil only)
    double cbps                     # the cost model's copy rate
    char *phost                     # the route's message buffer translated (DspRoute.pv's host
    uint64_t paddr, psize           # address), its device address and size
    char *bhost                     # its second buffer's (route_attach), NULL while it has none
    uint64_t baddr, bsize


cdef int _ENODEV = _errno.ENODEV


cdef class DspRoute:
    """The DSP's side of a route: what :meth:`DspLane._route` checked and took, kept alive for
    the C struct the GIL-free call reads."""
    cdef qda_dsp_route c
    cdef DspLane lane
    cdef _Pd pd
    cdef _Mod mod
    cdef object stats
    cdef object hkey            # the handle as the modules dict's own key (the Call's handle)
    cdef object origin          # the sender's stamp (a message the reference answers names it)
    cdef object pv              # the route's message buffer translated: Smmu.base's view and
    cdef Py_ssize_t pvoff       # offset (its host address, device address and size: c.p*)
    cdef PyObject *pages        # pv's exporter when it is a Pages (pv holds it), else NULL
    cdef object bv              # the route's second buffer (route_attach) translated as pv is
    cdef Py_ssize_t bvoff       # (c.b*), None while it has none
    cdef unsigned long long v_taken, v_made  # its taken and the PD memory's views_made at the
                                             # last confined call (_route_clean compares)
    cdef unsigned long long at_taken, at_made  # the same when this call reached the DSP, before
                                               # any Python code of it ran (_confined compares)
    cdef Call spare             # the last call's Call, for the next (DspLane._plain_call)
    cdef Call spare0            # the last call without arguments' Call, for the next such call
    cdef object spare_ins, spare_outs  # the tuples the route made for the Calls it spares
    cdef readonly unsigned long long spared  # calls served with it

    cdef bint _confined(self, Call call, unsigned long long taken, unsigned long long made) noexcept:
        """A Python skel's ``call`` in the route's page (``taken``, ``made``: the page exporter's
        and the PD memory's counts before it) reached nothing of the page past its arguments,
        and holds nothing that could later: no buffer taken of the exporter (``view.obj``) and
        no view made through the PD's memory (``call.process.memory``) during the call; nobody
        but the route holds the exporter, the Call, its tuples or its views; no other view of
        the page registered; no weak reference to the exporter or a view. Then the engine
        clears only up to the packet's end before the next call (``QDA_EP_CONFINED``), not the
        page (a native skel's pointers reach all of it), if nothing reached the page in between
        either (``_route_clean``: a finalizer run when the Call goes, another thread)."""
        cdef _PyManagedBufferObject *mbuf
        cdef Py_ssize_t nin, nout, k, kept = 0
        if not self._untouched(taken, made) or _refs(<PyObject *>call) != 1:
            return False
        mbuf = (<PyMemoryViewObject *><PyObject *>self.pv).mbuf
        nin = _held_views(<PyObject *>call.inbufs, <PyObject *>self.spare_ins, mbuf)
        nout = _held_views(<PyObject *>call.outbufs, <PyObject *>self.spare_outs, mbuf)
        if nin < 0 or nout < 0:
            return False
        if self.spare is not None:
            # a call without arguments while the route keeps its last plain call's Call (a call
            # with them took it first): that Call's views are the page's too, held by it alone
            if _refs(<PyObject *>self.spare) != 1:
                return False
            kept = _held_views(<PyObject *>self.spare.inbufs, <PyObject *>self.spare_ins, mbuf)
            if kept < 0:
                return False
            k = _held_views(<PyObject *>self.spare.outbufs, <PyObject *>self.spare_outs, mbuf)
            if k < 0:
                return False
            kept += k
        if mbuf.exports != 1 + nin + nout + kept:  # (pv's own, the Call's and the spare's)
            return False
        self.v_taken, self.v_made = taken, made  # (what _route_clean compares before the next call)
        return True

    cdef bint _untouched(self, unsigned long long taken, unsigned long long made) noexcept:
        # the page's exporter: no buffer taken of it since ``taken``, none held but pv's, held
        # by pv alone, no weak reference to it (a write through one takes a buffer, so the
        # counts catch it too: a second line); no view made through the PD's memory since ``made``
        if (self.pages == NULL or self.pd.nmem.views_made != made or _refs(self.pages) != 1
                or _weakly_referenced(self.pages)):
            return False
        return (<Pages>self.pages).taken == taken and (<Pages>self.pages).live == 1

    cdef void _keep(self, Call call, proc, handle) noexcept:
        """Keep ``call`` for the next call if the skel left it as the route made it: its own
        tuples, no handles, the same process and handle, ints where ints were (anything the
        skel put in it would otherwise live on in the spare)."""
        if (call.inbufs is self.spare_ins and call.outbufs is self.spare_outs and call.inhandles is ()
                and call.outhandles is () and call.process is proc and call.handle is handle
                and type(call.sc) is int and type(call.method) is int and type(call.extra_ns) is int):
            self.spare = call
        else:
            self.spare = self.spare_ins = self.spare_outs = None

    @property
    def native(self):
        """A native skel's route (else a Python skel's: served with the GIL only)."""
        return bool(self.c.native)

    def stale(self):
        """Something the route took has changed: it serves no call again (open a new one)."""
        return qda_load_ull(_EPOCH) != self.c.epoch


cdef void *_route_open(void *self, int client_id, unsigned int handle, void *origin, unsigned long long addr,
                       unsigned long long size, void **arg) except NULL:
    r = (<DspLane>self)._route(client_id, handle, <object>origin, addr, size, arg)
    Py_INCREF(r)
    return <void *>r


cdef inline void _route_account(qda_dsp_route *r, int64_t ns, bint error, bint crash, int64_t nbytes_in=0,
                                int64_t nbytes_out=0) noexcept nogil:
    # the lane's records of one message of copied buffers only, or none (the thread's account,
    # Counters.add, PdCounters.add)
    account_add(ns)
    qda_add_ll(r.pd_invokes, 1)
    qda_add_ll(r.pd_ns, ns)
    qda_add_ll(&r.stats_v[0], 1)
    if error:
        qda_add_ll(&r.stats_v[1], 1)
    if crash:
        qda_add_ll(&r.stats_v[2], 1)
    if nbytes_in:
        qda_add_ll(&r.stats_v[3], nbytes_in)
    if nbytes_out:
        qda_add_ll(&r.stats_v[4], nbytes_out)
    qda_add_ll(&r.stats_v[7], ns)


cdef int _route_skel(qda_dsp_route *r, uint32_t sc, int *signo) noexcept nogil:
    # a native skel's call without arguments, its FARF context set around it
    cdef uint64_t pra[2]
    return _route_skel_pra(r, sc, pra, signo)


cdef int _route_skel_pra(qda_dsp_route *r, uint32_t sc, uint64_t *pra, int *signo) noexcept nogil:
    # a native skel's call with its remote_arg array, its FARF context set around it
    cdef PyObject *prev = swap_context_raw(r.ctx)  # (the outer call's, kept by its frame, when nested)
    cdef int rv = _dsp_call(r.fn, r.hs, r.h64, sc, pra, signo)
    swap_context_raw(prev)
    return rv


cdef bint _route_args(qda_dsp_route *r, const fastrpc_msg *m, uint64_t *pra, int64_t *nbytes_in,
                      int64_t *nbytes_out) noexcept nogil:
    """A native skel's ``remote_arg`` array (``pra``: 2 * _NATIVE_SLOTS words) of a message of
    buffers only, every one in its payload, in the route's page or second buffer (translated
    once): :meth:`DspLane._native_args` without the GIL, and their byte counts. False for any
    other message (the engine's part sends none: it declines it before)."""
    cdef uint32_t sc = m.sc, nin = (sc >> 16) & 0xFF, nbufs = nin + ((sc >> 8) & 0xFF), i
    cdef uint64_t base = m.addr, size = m.size, off, n
    cdef char *host
    cdef qda_dec_buf bufs[_NATIVE_SLOTS]
    cdef qda_dec_handle nohandle[1]
    if sc & 0xFF or nbufs > _NATIVE_SLOTS:
        return False
    if base == r.paddr and size == r.psize:
        host = r.phost
    elif r.bhost != NULL and base == r.baddr and size <= r.bsize:
        host = r.bhost
    else:
        return False
    if decode_c(sc, host, <size_t>size, bufs, _NATIVE_SLOTS, nohandle, 0) < 0:
        return False
    for i in range(nbufs):
        n = bufs[i].len
        off = bufs[i].addr - base
        if n and not _in_payload(bufs[i].addr, n, base, size):
            return False
        pra[2 * i] = <uint64_t><size_t>(host + off) if n else 0
        pra[2 * i + 1] = n
        if i < nin:
            nbytes_in[0] += n
        else:
            nbytes_out[0] += n
    return True


cdef int _route_call(void *arg, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp) noexcept nogil:
    """One message on a route, without the GIL: the skel's call and the records
    :meth:`DspLane._receive` makes of it. The engine's part checked, before it took a context
    id, that nothing the route took has changed (the routes' epoch, which this part's snapshot
    shares) and that no trace, fault rule or cost override is on: a change after that is one
    made after the call began. A native skel's only; a call with arguments: buffers only, in
    the route's page or second buffer (:func:`_route_args`); declines the rest (nothing
    happened)."""
    cdef qda_dsp_route *r = <qda_dsp_route *>arg
    cdef int rv, signo = 0
    cdef int64_t ns = r.overhead, nin = 0, nout = 0
    cdef uint64_t pra[2 * _NATIVE_SLOTS]
    if not r.native:  # a Python skel
        return QDA_ROUTE_DECLINED
    if m.sc & 0xFFFFFF:
        if not _route_args(r, m, pra, &nin, &nout):
            return QDA_ROUTE_DECLINED
        ns += <int64_t>(<double>(nin + nout) * 1e9 / r.cbps)  # (every byte in the payload: copied)
        scope_recheck()  # (skel code: see _invoke)
        rv = _route_skel_pra(r, m.sc, pra, &signo)
        scope_recheck()
    else:
        rv = _route_skel(r, m.sc, &signo)
    if rv == _FAULTED and signo:
        return _route_crashed(r, m, rsp, signo, ns, nin, nout)
    _route_account(r, ns, rv != 0, False, nin, nout)
    if qda_load_ull(_EPOCH) != r.epoch and _route_restarted(r):
        return -_ENODEV
    rsp.ctx = m.ctx
    rsp.retval = rv
    return QDA_EP_REPLIED


cdef bint _route_restarted(qda_dsp_route *r) noexcept with gil:
    # something changed while the skel ran: a restart of the DSP fails the call, as in the lane
    return (<DspRoute>r.owner).lane._st.generation != r.generation


cdef int _crash_report(DspRoute o, int signo, uint32_t method) except -1:
    """A native skel's fault on a route, as :func:`_native_call` reports it: the fault's
    ``NativeFault`` to ``EmulatedDsp._crashed`` (the PD crashes)."""
    cdef uint64_t addr = 0
    cdef int code = 0
    _last_fault(&addr, &code)
    o.lane.dsp._crashed(o.lane.channel, o.pd.proc,
                        _dsprt.NativeFault(signo, addr, code, f"{o.mod.impl._where} method {method}"))
    return 0


cdef int _route_crashed(qda_dsp_route *r, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp, int signo, int64_t ns,
                        int64_t nbytes_in, int64_t nbytes_out) noexcept with gil:
    # the skel faulted: what the lane does for a crash (EmulatedDsp._crashed, its records, the
    # PD's crash code as the reply), with the GIL
    cdef DspRoute o = <DspRoute>r.owner
    try:
        _crash_report(o, signo, (m.sc >> 24) & 0x1F)
    except BaseException as e:  # (nothing may cross the C ABI): the crash is still answered
        report_internal("a skel crash's report on a route", e)
    _route_account(r, ns, True, True, nbytes_in, nbytes_out)
    if o.lane._st.generation != r.generation:
        return -_ENODEV
    rsp.ctx = m.ctx
    rsp.retval = _ERR_PD_CRASHED
    return QDA_EP_REPLIED



cdef int _route_call_gil(void *arg, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp) except -1:
    """One message on a route, with the GIL (a Python caller's): the skel called as
    :meth:`DspLane._receive` calls it - a Python skel's ``Call`` and dispatch, a native skel's
    call with the GIL released - and the rest as the lane does it with the GIL: a crash, the
    records (the caller's cost override, the DSP's statistics as they are now), a restart
    meanwhile, a fault rule armed meanwhile. The engine's part made the checks (see
    :func:`_route_call`)."""
    cdef qda_dsp_route *r = <qda_dsp_route *>arg
    cdef DspRoute o
    cdef _Pd pd
    cdef uint32_t sc = m.sc, method = (m.sc >> 24) & 0x1F
    cdef int32_t rv
    cdef int64_t ns = r.overhead
    cdef int signo = 0
    cdef bint crashed = False
    cdef Call call = None
    cdef DspLane lane
    cdef uint64_t counts[3]
    cdef bint confined = False
    cdef int k
    o = <DspRoute>r.owner
    pd, lane = o.pd, o.lane
    if o.pages != NULL:  # before anything here runs Python code (a finalizer, a weak reference's
        # callback: the spare Call dropped, views made) that could reach the page unwatched
        o.at_taken, o.at_made = (<Pages>o.pages).taken, pd.nmem.views_made
    if not r.native and (not sc & 0xFFFFFF or (not sc & 0xFF and m.addr == r.paddr and m.size == r.psize)):
        # a Python skel's call without arguments, or with buffers only in the route's own buffer
        # (checked in the PD's streams when the route was opened: _serve's plain case), straight
        # to its Call - from the decode, or the last such call's if nobody kept or changed it
        if pd.sc is None or sc != pd.scval:  # the Call's sc as an int, kept
            pd.sc, pd.scval = sc, sc
        counts[0] = counts[1] = counts[2] = 0
        if sc & 0xFFFFFF:
            call = lane._plain_call(m, pd, counts, method, o.hkey, o.pv, o.pvoff, r.phost, o)
        else:
            call, o.spare0 = o.spare0, None
            if call is not None and _refs(<PyObject *>call) == 1 and _bare(call, pd.proc, o.hkey):
                call.sc, call.method, call.extra_ns = pd.sc, method, 0
            else:
                call = new_call(pd.sc, method, (), (), (), (), pd.proc, o.hkey)
        if call is not None:  # (else the lane's serving below: it answers what this does not)
            # (DspLane._run, for the route's Calls)
            ns += <int64_t>(<double>counts[0] * 1e9 / r.cbps)
            try:
                rv = <int32_t><uint32_t>_invoke(o.mod, call, method, sc)
            except Exception as exc:
                crashed = True
                rv = _ERR_PD_CRASHED
                lane.dsp._crashed(lane.channel, pd.proc, exc)
            else:
                confined = o.pages != NULL and o._confined(call, o.at_taken, o.at_made)
                if sc & 0xFFFFFF:
                    o._keep(call, pd.proc, o.hkey)
                elif _bare(call, pd.proc, o.hkey):
                    o.spare0 = call
                ns += <int64_t>call.extra_ns  # (a crashed call charges none: the reference loses it)
            k = lane._finish(m, rsp, pd, rv, crashed, ns, <int64_t>counts[1], <int64_t>counts[2], 0, 0, r.generation)
            return k | QDA_EP_CONFINED if confined and k == QDA_EP_REPLIED else k
    if sc & 0xFFFFFF:  # arguments: the lane's own serving of a message it found usual
        if m.addr == r.paddr:  # in the route's own buffer, translated once
            return lane._serve(m, o.origin, rsp, pd, o.mod, o.hkey, r.generation, r.overhead, r.cbps, o.pv, o.pvoff,
                               r.phost, o)
        if r.bhost != NULL and m.addr == r.baddr and m.size <= r.bsize:  # in its second one: its
            # spare Call too (a view of the second buffer is no view of the page: never confined)
            return lane._serve(m, o.origin, rsp, pd, o.mod, o.hkey, r.generation, r.overhead, r.cbps, o.bv, o.bvoff,
                               r.bhost, o)
        return lane._serve(m, o.origin, rsp, pd, o.mod, o.hkey, r.generation, r.overhead, r.cbps, None, 0, NULL)
    with nogil:  # (a native skel's call without arguments)
        rv = _route_skel(r, sc, &signo)
    if rv == _FAULTED and signo:
        crashed = True
        rv = _ERR_PD_CRASHED
        _crash_report(o, signo, method)
    return lane._finish(m, rsp, pd, rv, crashed, ns, 0, 0, 0, 0, r.generation)


cdef int _route_attach(void *arg, unsigned long long addr, unsigned long long size) except -1:
    """The route's second message buffer (``qda_endpoint.route_attach``): translated once, as
    :meth:`DspLane._route` translates the first, or none (0) when it is not wholly in the PD's
    streams and mapped."""
    cdef DspRoute o = <DspRoute>(<qda_dsp_route *>arg).owner
    cdef _Pd pd = o.pd
    cdef char *host = NULL
    cdef Py_ssize_t boff = 0
    o.bv, o.bvoff = None, 0  # (an earlier one: gone now,
    o.c.bhost, o.c.baddr, o.c.bsize = NULL, 0, 0
    o.spare = o.spare_ins = o.spare_outs = None  # and any Call with views of it)
    if pd.nmem is None or not size or not _in_streams(pd, addr, size):
        return 0
    whole = pd.nmem.base(addr, size, &boff, &host)
    if whole is None or host == NULL:
        return 0
    o.bv, o.bvoff = whole, boff
    o.c.bhost, o.c.baddr, o.c.bsize = host, addr, size
    return 1


cdef int _route_clean(void *arg) noexcept:
    """Nothing reached the route's page since its last confined call (DspRoute._confined): no
    buffer taken of its exporter, no view made through the PD's memory, nothing holding it."""
    cdef DspRoute o = <DspRoute>(<qda_dsp_route *>arg).owner
    return o._untouched(o.v_taken, o.v_made)
