# The marshaller's raw entry points, for the native lanes (qda_core/_engine.pyx): the same
# checks, copies and errors as payload_size/pack/unpack, on buffers the caller holds.
from libc.stdint cimport uint32_t, uint64_t

cdef uint64_t payload_size_raw(uint32_t sc, const void *a, size_t alen, const void *r, size_t rlen) except? 0
cdef uint64_t pack_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen, void *pbuf,
                       size_t plen, uint64_t payload_va, uint64_t payload_dev) except? 0
cdef object unpack_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                       const void *pbuf, size_t plen, uint64_t payload_va)
