cdef class Counters:
    cdef long long v[8]   # DspStats._FIELDS order
    cdef void add(self, long long bytes_in, long long bytes_out, long long handles_in, long long handles_out,
                  long long ns, bint error, bint crash) noexcept

cdef class PdCounters:
    cdef readonly long long invokes, modeled_ns
    cdef void add(self, long long invokes, long long ns) noexcept

cpdef void account_add(long long ns) noexcept nogil

cdef class DspState:
    cdef public object faults, cost, stats
    cdef public long long generation, procs_gen

cdef class PdState:
    cdef public object state
    cdef public bint poll_mode

from cpython.object cimport PyObject

cdef object swap_context(object ctx)
cdef PyObject *swap_context_raw(PyObject *ctx) noexcept nogil
cdef int restore_context(object ctx) except -1
