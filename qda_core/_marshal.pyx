# cython: language_level=3, boundscheck=False, wraparound=False
"""Invoke marshalling over the C core (csrc/marshal.c, decode.c, uaccess.c).

Same API, results and errors as the pure-Python oracle ``qda_core.marshal_ref``; see there
and csrc/include/qdarpc/marshal.h for the semantics. Import through ``qda_core.marshal``.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from libc.stdint cimport uint32_t, uint64_t, int32_t

from qda_core.errors import errno_error

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

BACKEND = "c"

cdef extern from "qdarpc/marshal.h" nogil:
    enum:
        FASTRPC_MAX_FDLIST
        REMOTE_SCALARS_MAX_LENGTH
    struct qda_uaccess:
        pass
    struct qda_marshal_status:
        int arg
        const char *why
    struct qda_dec_buf:
        uint64_t addr
        uint64_t len
    struct qda_dec_handle:
        int32_t fd
        uint32_t offset
        uint32_t len
        uint64_t map_addr
        uint64_t map_size
    uint64_t qda_metadata_size(uint32_t n)
    int qda_payload_size(uint32_t sc, const void *args, size_t args_len, const void *refs,
                         size_t refs_len, uint64_t *pkt_size, qda_marshal_status *st)
    int qda_pack(uint32_t sc, const void *args, size_t args_len, const void *refs,
                 size_t refs_len, void *payload, size_t payload_len, uint64_t payload_va,
                 uint64_t payload_dev, const qda_uaccess *ua, uint64_t *pkt_size,
                 qda_marshal_status *st)
    int qda_unpack(uint32_t sc, const void *args, size_t args_len, const void *refs,
                   size_t refs_len, const void *payload, size_t payload_len,
                   uint64_t payload_va, const qda_uaccess *ua, uint64_t *fdlist,
                   qda_marshal_status *st)
    int qda_decode(uint32_t sc, const void *payload, size_t payload_len, qda_dec_buf *bufs,
                   size_t bufs_cap, qda_dec_handle *handles, size_t handles_cap,
                   qda_marshal_status *st)

cdef extern from "qdarpc/uaccess.h" nogil:
    int qda_uaccess_prepare()

# The copy pipe exists from import on, so it never shows up as a descriptor "leaked" by
# whichever call happens to be first (failure is fine: copies then go one syscall each).
qda_uaccess_prepare()

# Above this payload size the copies dominate; let other threads run meanwhile.
cdef enum:
    NOGIL_MIN = 65536


cdef int _get(object obj, Py_buffer *view, int flags, str name) except -1:
    try:
        PyObject_GetBuffer(obj, view, flags)
    except (BufferError, TypeError, ValueError):
        # same messages as the reference (it inspects a memoryview)
        try:
            mv = memoryview(obj)
        except TypeError:
            raise TypeError(f"{name} must support the buffer protocol, not {type(obj).__name__}") from None
        if not mv.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous buffer") from None
        if flags & PyBUF_WRITABLE and mv.readonly:
            raise TypeError(f"{name} must be a writable buffer") from None
        raise
    return 0


cdef object _error(int ret, qda_marshal_status *st):
    why = st.why.decode() if st.why != NULL else ""
    if st.arg >= 0:
        why = f"arg {st.arg}: {why}"
    return errno_error(ret, why)


def metadata_size(uint32_t n):
    """Bytes of payload metadata for ``n`` arguments: 40n + 384."""
    return qda_metadata_size(n)


def payload_size(uint32_t sc, args, refs):
    """Validate the descriptors and return the payload size the kernel would allocate."""
    cdef Py_buffer a, r
    cdef uint64_t size = 0
    cdef qda_marshal_status st
    cdef int ret
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            ret = qda_payload_size(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, &size, &st)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)
    if ret < 0:
        raise _error(ret, &st)
    return size


def pack(uint32_t sc, args, refs, payload, uint64_t payload_va, uint64_t payload_dev):
    """Write the metadata and copy inline in-buffers into ``payload``; return the packet size.

    The first ``pkt_size`` bytes of ``payload`` are all written: inline out-buffers and
    alignment gaps are zeroed, so a reused buffer needs no clearing.
    """
    cdef Py_buffer a, r, p
    cdef uint64_t size = 0
    cdef qda_marshal_status st
    cdef int ret
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            _get(payload, &p, PyBUF_WRITABLE, "payload")
            try:
                if p.len >= NOGIL_MIN:
                    with nogil:
                        ret = qda_pack(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf,
                                       <size_t>p.len, payload_va, payload_dev, NULL, &size, &st)
                else:
                    ret = qda_pack(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf,
                                   <size_t>p.len, payload_va, payload_dev, NULL, &size, &st)
            finally:
                PyBuffer_Release(&p)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)
    if ret < 0:
        raise _error(ret, &st)
    return size


def unpack(uint32_t sc, args, refs, payload, uint64_t payload_va):
    """Copy inline out-buffers back to user memory; return the fdlist entries before the first 0."""
    cdef Py_buffer a, r, p
    cdef uint64_t fds[FASTRPC_MAX_FDLIST]
    cdef qda_marshal_status st
    cdef int ret, k
    _get(args, &a, PyBUF_SIMPLE, "args")
    try:
        _get(refs, &r, PyBUF_SIMPLE, "refs")
        try:
            _get(payload, &p, PyBUF_SIMPLE, "payload")
            try:
                if p.len >= NOGIL_MIN:
                    with nogil:
                        ret = qda_unpack(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf,
                                         <size_t>p.len, payload_va, NULL, fds, &st)
                else:
                    ret = qda_unpack(sc, a.buf, <size_t>a.len, r.buf, <size_t>r.len, p.buf,
                                     <size_t>p.len, payload_va, NULL, fds, &st)
            finally:
                PyBuffer_Release(&p)
        finally:
            PyBuffer_Release(&r)
    finally:
        PyBuffer_Release(&a)
    if ret < 0:
        raise _error(ret, &st)
    if ret == 0:
        return ()
    return tuple([fds[k] for k in range(ret)])


def decode(uint32_t sc, payload):
    """The DSP's view: ([(dev_addr, len)] per buffer, [(fd, offset, len, map_addr, map_size)] per handle)."""
    cdef Py_buffer p
    cdef qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH]
    cdef qda_dec_handle hs[32]
    cdef qda_marshal_status st
    cdef int ret
    cdef uint32_t nbufs = ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF)
    cdef uint32_t nh = ((sc >> 4) & 0xF) + (sc & 0xF)
    cdef uint32_t i
    _get(payload, &p, PyBUF_SIMPLE, "payload")
    try:
        ret = qda_decode(sc, p.buf, <size_t>p.len, bufs, REMOTE_SCALARS_MAX_LENGTH, hs, 32, &st)
    finally:
        PyBuffer_Release(&p)
    if ret < 0:
        raise _error(ret, &st)
    return ([(bufs[i].addr, bufs[i].len) for i in range(nbufs)],
            [(hs[i].fd, hs[i].offset, hs[i].len, hs[i].map_addr, hs[i].map_size) for i in range(nh)])
