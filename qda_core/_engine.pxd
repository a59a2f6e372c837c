from libc.stdint cimport uint32_t, uint64_t

from qda_core._cwire cimport qda_endpoint


cdef class EngineLane:
    cdef readonly object engine
    cdef object channel
    cdef object ids
    cdef object _ep_capsule
    cdef qda_endpoint *ep
    cdef int id_shift
    cdef int seq_shift      # -1: the layout has no sequence number
    cdef bint poll_word
    cdef uint64_t match_mask

    cpdef int invoke(self, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                     origin, fdlist, bint poll) except? -1
