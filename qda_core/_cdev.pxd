# C interfaces one layer implements for another, so a lane calls across a layer boundary in C
# without importing the layer above it (docs/dataplane.md "C interfaces"): the engine takes
# message buffers from the driver's pool, the DSP reads device memory through the SMMU.
from libc.stdint cimport uint64_t


cdef class MsgBuf:
    """One message buffer as the engine uses it: its kernel-side mapping and device address."""
    cdef char *ptr       # the kernel-side mapping, alive while the buffer is out of its pool
    cdef size_t size
    cdef uint64_t va     # ptr as an integer (the payload's pointers are kernel addresses)
    cdef uint64_t dev    # device address
    cdef public Py_ssize_t dirty  # bytes at its front a call may have left non-zero (past them: zeros)


cdef class MsgSource:
    """A supply of message buffers (``qda_core.mem.msgpool.MessagePool``)."""
    cdef MsgBuf take(self, uint64_t size)
    cdef int give(self, MsgBuf buf) except -1
    cdef uint64_t class_of(self, uint64_t size) noexcept nogil


cdef class DevMemory:
    """Device memory as the DSP reads it (the C form of ``qda_core.dsp.DeviceMemory``)."""
    cdef readonly unsigned long long views_made  # views made for Python code (view() calls)
    cdef int span(self, uint64_t addr, uint64_t length, char **host) except -1
    cdef object base(self, uint64_t addr, uint64_t length, Py_ssize_t *off, char **host)
    cpdef view(self, addr, length, bint writable)


cdef class ChannelState:
    """What every message reads and counts of its rpmsg channel (``qda_core.rpmsg.Channel``)."""
    cdef public bint up
    cdef readonly unsigned long long sent, received


cdef class Count:
    """A count Python code keeps and the lanes read as one C load (``ARMED``: fault rule sets
    with a rule in them, kept by ``qda_core.faults``)."""
    cdef readonly Py_ssize_t n


cdef class Epoch:
    """A generation Python code bumps and routes read without the GIL (``ROUTES``)."""
    cdef readonly unsigned long long n


cdef class Switch:
    """A flag Python code sets and the lanes read as one C load (``TRACE``: a trace recorder is
    on, kept by ``qda_core.trace`` with its ``RECORDER``)."""
    cdef public bint on


cdef class Pages:
    """The emulator's own pages of one buffer as Python code reaches them: the exporter of a
    buffer's kernel-side view (so of every view a DSP skel is handed of it: ``view.obj``). It
    counts the buffers taken of it, so a route knows whether a skel reached past its arguments
    (docs/dataplane.md "Routes")."""
    cdef Py_buffer _held     # the mapping's bytes (an export of it: the mapping stays while we do)
    cdef char *buf
    cdef Py_ssize_t len
    cdef readonly unsigned long long taken  # buffers ever taken of it
    cdef readonly Py_ssize_t live           # buffers taken and not yet released
    cdef object __weakref__
