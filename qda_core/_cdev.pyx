# cython: language_level=3, boundscheck=False, wraparound=False
"""C interfaces one layer implements for another (see _cdev.pxd), so a native lane calls across
a layer boundary in C while the one-way imports hold: the invoke engine takes message buffers
from a :class:`MsgSource` it is handed, the DSP reads memory through a :class:`DevMemory`; the
implementations live in the layers that own the state (``qda_core.mem``). docs/dataplane.md."""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer

from qda_core._atomic cimport qda_add_ull

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()


cdef class MsgBuf:
    def __cinit__(self):
        self.ptr = NULL
        self.size = 0
        self.va = self.dev = 0
        self.dirty = 0


cdef class MsgSource:
    cdef MsgBuf take(self, uint64_t size):
        """A buffer of at least ``size`` bytes whose first ``size`` the caller's packet fills
        up to its last page, the rest zero; raises on failure."""
        raise NotImplementedError

    cdef int give(self, MsgBuf buf) except -1:
        """Give back a buffer :meth:`take` returned."""
        raise NotImplementedError

    cdef uint64_t class_of(self, uint64_t size) noexcept nogil:
        """The size of the buffer :meth:`take` gives for ``size`` bytes (0: none it can give)."""
        return 0


cdef class DevMemory:
    cdef int span(self, uint64_t addr, uint64_t length, char **host) except -1:
        """0 with the host address of device range ``[addr, addr + length)`` in ``*host`` (NULL
        for an empty range); 1 when the range is not wholly mapped (no exception: the caller
        asks :meth:`view` for the fault it answers)."""
        return 1

    cdef object base(self, uint64_t addr, uint64_t length, Py_ssize_t *off, char **host):
        """The writable view of the whole buffer device range ``[addr, addr + length)``
        (``length`` > 0) lies in, with the range's offset in it in ``*off`` and its host address
        in ``*host`` (as :meth:`span`); None when the range is not wholly mapped. The caller
        slices it: one view of a buffer per call, however many arguments lie in it."""
        return None

    cpdef view(self, addr, length, bint writable):
        """A byte view of ``length`` bytes at device address ``addr`` (DeviceFault if unmapped)."""
        raise NotImplementedError


cdef class Pages:
    """``Pages(mapping, offset=0, size=-1)``: ``size`` bytes of a writable ``mapping`` (an
    ``mmap``: a Backing's own, or an arena file's) from ``offset``, as a 1-D writable byte
    buffer and nothing else (no item access or method writes past its buffers, as an ``mmap``'s
    would). ``taken`` and ``live`` count the buffers taken of it; ``len()`` is its size."""

    def __cinit__(self, mapping, Py_ssize_t offset=0, Py_ssize_t size=-1):
        PyObject_GetBuffer(mapping, &self._held, PyBUF_WRITABLE)
        if offset < 0 or offset > self._held.len or size < -1 or size > self._held.len - offset:
            PyBuffer_Release(&self._held)
            raise ValueError(f"{size} bytes at {offset} do not fit in a {self._held.len}-byte mapping")
        self.buf = <char *>self._held.buf + offset
        self.len = self._held.len - offset if size < 0 else size

    def __dealloc__(self):
        if self._held.buf != NULL:
            PyBuffer_Release(&self._held)

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.buf, self.len, 0, flags)
        self.taken += 1
        self.live += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.live -= 1

    def __len__(self):
        return self.len

    def __repr__(self):
        return f"<qdarpc pages: {self.len:#x} bytes at {<size_t>self.buf:#x}>"


cdef class ChannelState:
    """An rpmsg channel's C state: ``up``, messages sent, replies delivered. The engine's lane
    reads and counts them in C; every count is an atomic add (a route counts without the GIL:
    docs/dataplane.md "Routes")."""

    def __cinit__(self):
        self.up = True

    def count_sent(self):
        qda_add_ull(&self.sent, 1)

    def count_received(self):
        qda_add_ull(&self.received, 1)


cdef class Count:
    def add(self, Py_ssize_t delta):
        """One C call under the GIL: no update lost between threads. Bumps the routes' epoch
        (a route refused while a count was not 0 may be taken once it is)."""
        self.n += delta
        qda_add_ull(&_routes.n, 1)


cdef class Switch:
    pass


cdef class Epoch:
    def bump(self):
        """One more change that routes must see (atomic: a route reads it without the GIL)."""
        qda_add_ull(&self.n, 1)


cdef Epoch _routes  # ROUTES, in C

#: ``qda_core.trace.RECORDER is not None``, as the lanes read it: set by ``qda_core.trace``
#: whenever it sets its recorder (``trace.recording()``, ``QDARPC_TRACE``).
TRACE = Switch()

#: The fault rule sets (``qda_core.faults.Faults``) that hold a rule now: the lanes skip their
#: fault checks while it is 0.
ARMED = Count()

#: Active ``qda_core.dsp.cost.override()`` blocks in any thread: routes serve no call while one
#: is (a GIL-free caller cannot read another context's override).
OVERRIDES = Count()

#: Bumped by every change a route's snapshot may not see by itself (a module opened or closed in
#: a PD, a PD's parameters set, a tap set on a DSP, a second C library flavour loaded): a route
#: taken before serves no call after it (docs/dataplane.md "Routes").
ROUTES = _routes = Epoch()
