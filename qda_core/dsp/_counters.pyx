# cython: language_level=3, boundscheck=False, wraparound=False
"""The DSP's C counters: a DSP's statistics as its native lanes record them, and each thread's
modeled-time account (``qda_core.dsp.cost``: ``last_ns``, ``measure``), kept in C so the
invoke path updates them without a Python call. Every update is an atomic add, so none is lost
between threads, also from a route running without the GIL (docs/dataplane.md "Routes")."""

from cpython.object cimport PyObject

from qda_core._atomic cimport qda_add_ll, qda_xchg_ll

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef extern from *:
    """
    /* this thread's messages: the last one's modeled ns, their sum, their number */
    static __thread long long qda_acct[3];
    """
    long long qda_acct[3]


cdef class Counters:
    """One DSP's figures recorded by its native lanes since the last :meth:`take`, in
    ``DspStats._FIELDS`` order; ``DspStats`` folds them into its totals."""

    cdef void add(self, long long bytes_in, long long bytes_out, long long handles_in, long long handles_out,
                  long long ns, bint error, bint crash) noexcept:
        qda_add_ll(&self.v[0], 1)
        if error:
            qda_add_ll(&self.v[1], 1)
        if crash:
            qda_add_ll(&self.v[2], 1)
        if bytes_in:
            qda_add_ll(&self.v[3], bytes_in)
        if bytes_out:
            qda_add_ll(&self.v[4], bytes_out)
        if handles_in:
            qda_add_ll(&self.v[5], handles_in)
        if handles_out:
            qda_add_ll(&self.v[6], handles_out)
        qda_add_ll(&self.v[7], ns)

    def record(self, *, bytes_in=0, bytes_out=0, handles_in=0, handles_out=0, ns=0, error=False, crash=False):
        """One message (``DspStats.record``'s keywords)."""
        self.add(bytes_in, bytes_out, handles_in, handles_out, ns, error, crash)

    def take(self):
        """The figures so far, as a tuple, and zero them."""
        return tuple([qda_xchg_ll(&self.v[i], 0) for i in range(8)])


cdef class PdCounters:
    """One PD's messages (``Process.invokes``: the calls on its own handles) and modeled ns
    (every message for it), updated by both data planes in C."""

    cdef void add(self, long long invokes, long long ns) noexcept:
        if invokes:
            qda_add_ll(&self.invokes, invokes)
        qda_add_ll(&self.modeled_ns, ns)

    def record(self, long long invokes, long long ns):
        """Count ``invokes`` (0 or 1) more calls and ``ns`` more modeled ns."""
        self.add(invokes, ns)


cpdef void account_add(long long ns) noexcept nogil:
    """Count one message of ``ns`` modeled ns on the calling thread."""
    qda_acct[0] = ns
    qda_acct[1] += ns
    qda_acct[2] += 1


def account():
    """``(last, total, count)``: the calling thread's last message's modeled ns, the sum and
    the number of all its messages."""
    return qda_acct[0], qda_acct[1], qda_acct[2]


cdef class DspState:
    """What every message reads of its DSP, in C fields the native lane reads directly:
    ``EmulatedDsp``'s ``faults``, ``cost``, ``stats``, ``_generation`` and ``_procs_gen`` are
    properties over these (the only copy)."""


cdef class PdState:
    """What every message checks of its PD: ``Process.state`` and ``Process.poll_mode`` are
    properties over these (the only copy)."""

    def __init__(self):
        self.state = "alive"
        self.poll_mode = False


from qda_core._cdev import ROUTES as _ROUTES


def state_property(str field, str doc):
    """A property over ``self._st.<field>`` (a DspState or PdState). Setting it bumps the
    routes' epoch: a route (docs/dataplane.md "Routes") took these fields once, and reads only
    the epoch on each call."""
    def get(self):
        return getattr(self._st, field)

    def set(self, value):
        setattr(self._st, field, value)
        _ROUTES.bump()
    return property(get, set, doc=doc)


cdef extern from *:
    """
    /* the DspContext of the native skel call running in this thread, or NULL: borrowed (its
       holder is ThreadContext's threading.local, or the lane's frame around a call) */
    static __thread PyObject *qda_dsp_ctx;
    """
    PyObject *qda_dsp_ctx


import threading as _threading

cdef object _HOLD = _threading.local()  # per thread: the strong reference behind qda_dsp_ctx


cdef class ThreadContext:
    """``dsprt.context``: the context of the native skel call running in this thread, if any
    (``ctx``). Read from a C thread-local, so the DSP's lane sets it around each call without
    a ``threading.local`` lookup (:func:`swap_context`); a context set here is held by a
    ``threading.local``, which lets it go when its thread ends."""

    @property
    def ctx(self):
        return <object>qda_dsp_ctx if qda_dsp_ctx != NULL else None

    @ctx.setter
    def ctx(self, value):
        restore_context(value)


cdef object swap_context(object ctx):
    """Make ``ctx`` (None: none) this thread's context for a call, borrowed: the caller keeps
    it alive until it puts the previous one (returned) back with :func:`restore_context`."""
    global qda_dsp_ctx
    prev = <object>qda_dsp_ctx if qda_dsp_ctx != NULL else None
    qda_dsp_ctx = NULL if ctx is None else <PyObject *>ctx
    return prev


cdef PyObject *swap_context_raw(PyObject *ctx) noexcept nogil:
    """:func:`swap_context` without the GIL (a route's skel call): ``ctx`` borrowed, the
    previous one returned as it was."""
    global qda_dsp_ctx
    prev = qda_dsp_ctx
    qda_dsp_ctx = ctx
    return prev


cdef int restore_context(object ctx) except -1:
    """Make ``ctx`` (None: none) this thread's context, held by the thread's ``threading.local``
    (a context set inside a call, by Python code, may have been the only other holder)."""
    global qda_dsp_ctx
    if ctx is None:
        qda_dsp_ctx = NULL
        _HOLD.ctx = None
    else:
        _HOLD.ctx = ctx
        qda_dsp_ctx = <PyObject *>ctx
    return 0
