# The marshaller's raw entry points, for the native lanes (qda_core/_engine.pyx): the same
# checks, copies and errors as payload_size/pack/unpack, on buffers the caller holds.
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef extern from "qdarpc/marshal.h" nogil:
    # what the DSP sees of an argument (csrc/include/qdarpc/marshal.h)
    struct qda_dec_buf:
        uint64_t addr
        uint64_t len
    enum:
        REMOTE_SCALARS_MAX_LENGTH
        FASTRPC_MAX_FDLIST
    struct qda_olap:
        pass
    struct qda_dec_handle:
        int32_t fd
        uint32_t offset
        uint32_t len
        uint64_t map_addr
        uint64_t map_size

cdef uint64_t plan_raw(uint32_t sc, const void *a, size_t alen, const void *r, size_t rlen,
                       qda_olap *olaps) except? 0
cdef int pack_planned_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                          const qda_olap *olaps, uint64_t size, void *pbuf, size_t plen, uint64_t payload_va,
                          uint64_t payload_dev) except -1
cdef int pack_held(uint32_t sc, const void *abuf, const void *rbuf, const qda_olap *olaps, uint64_t size,
                   void *pbuf, size_t plen, uint64_t payload_va, uint64_t payload_dev) except -1
cdef object unpack_held(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                        const void *pbuf, size_t plen, uint64_t payload_va)
cdef object unpack_raw(uint32_t sc, const void *abuf, size_t alen, const void *rbuf, size_t rlen,
                       const void *pbuf, size_t plen, uint64_t payload_va)
cdef tuple decode_views_raw(uint32_t sc, object pv, Py_ssize_t pvoff, const char *p, size_t plen, uint64_t base,
                            uint64_t *counts)
# pv[start:start + n] as a new view (read-only if asked) of a 1-D byte memoryview pv
cdef object sub_view(object pv, Py_ssize_t start, Py_ssize_t n, bint readonly)
# qda_decode (csrc/decode.c) for the DSP's lane; < 0: the payload does not decode
cdef int decode_c(uint32_t sc, const void *p, size_t plen, qda_dec_buf *bufs, size_t bufs_cap,
                  qda_dec_handle *handles, size_t handles_cap) noexcept nogil
cdef int _user_copy(void *buf, uint64_t uaddr, size_t n, int to_user, bint checked) except? -1
# qda_uaccess_begin/end of this module's uaccess.c: one user-copy scope (its copies share one
# look at the guarded copy's readiness), e.g. around a whole INVOKE
cdef size_t scope_begin() noexcept nogil
cdef void scope_end(size_t mark) noexcept nogil
# qda_uaccess_recheck: the next copy asks the guard again (around skel code)
cdef void scope_recheck() noexcept nogil


cdef enum:
    ARGPINS_SMALL = 4   # buffer arguments an ArgPins holds without an allocation


# A typed invoke's descriptors and buffer holds; the drivers' typed-invoke lanes
# (accel/_invoke.pyx, legacy/_invoke.pyx) drive it through the cdef methods, without the
# context-manager protocol: fill() as __init__, pin() as __enter__, unpin() as __exit__.
cdef class ArgPins:
    cdef Py_buffer *views
    cdef char *state       # per buffer argument: bit 0 held, bit 1 copied (worth pinning)
    cdef Py_ssize_t nbufs
    cdef Py_buffer dview
    cdef bint dheld
    cdef bint pinned       # pin() ran and unpin() has not yet
    cdef size_t mark
    cdef readonly bytearray descs
    cdef Py_buffer small_views[ARGPINS_SMALL]
    cdef char small_state[ARGPINS_SMALL]

    cdef int fill(self, uint32_t sc, object args, object ref_type, object bufref_type,
                  object handle_type) except -1
    cdef int _arg(self, Py_ssize_t i, object a, Py_ssize_t nin, Py_ssize_t nbufs, object ref_type,
                  object bufref_type, object handle_type) except -1
    cdef int pin(self) except -1
    cdef void unpin(self) noexcept
    cdef void _release(self) noexcept
    cdef void _free(self) noexcept
# the user-copy steps of copied buffers without the GIL (a C caller's route): 0 / fds, or -errno
cdef int plan_nogil(uint32_t sc, const void *a, size_t alen, qda_olap *olaps, uint64_t *size) noexcept nogil
cdef int pack_user_nogil(uint32_t sc, const void *abuf, const qda_olap *olaps, uint64_t size, void *pbuf,
                         size_t plen, uint64_t payload_va, uint64_t payload_dev) noexcept nogil
cdef int unpack_user_nogil(uint32_t sc, const void *abuf, size_t alen, const void *pbuf, size_t plen,
                           uint64_t payload_va, uint64_t *fds) noexcept nogil
