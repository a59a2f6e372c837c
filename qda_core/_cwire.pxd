# The C structs that cross the in-process transport (csrc/include/qdarpc/fastrpc_wire.h,
# endpoint.h), and the counts of the scalars word every message carries, declared once for the
# native lanes (_engine.pyx, dsp/_lane.pyx, the drivers' lanes, the C face).
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef extern from "qdarpc/fastrpc_wire.h":
    struct fastrpc_msg:
        int32_t client_id
        int32_t tid
        uint64_t ctx
        uint32_t handle
        uint32_t sc
        uint64_t addr
        uint64_t size
    struct fastrpc_invoke_rsp:
        uint64_t ctx
        int32_t retval

cdef extern from "qdarpc/endpoint.h":
    const char *QDA_ENDPOINT_CAPSULE
    enum:
        QDA_EP_REPLIED
        QDA_EP_REFERENCE
        QDA_EP_CONFINED
        QDA_ROUTE_DECLINED
    struct qda_endpoint:
        int (*receive)(void *self, const fastrpc_msg *m, void *origin, fastrpc_invoke_rsp *rsp) except -1
        void *self
        void *(*route_open)(void *self, int client_id, unsigned int handle, void *origin, unsigned long long msg_addr,
                            unsigned long long msg_size, void **call_arg) except NULL
        int (*route_call)(void *call_arg, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp) noexcept nogil
        int (*route_call_gil)(void *call_arg, const fastrpc_msg *m, fastrpc_invoke_rsp *rsp) except -1
        int (*route_clean)(void *call_arg) noexcept
        int (*route_attach)(void *call_arg, unsigned long long msg_addr, unsigned long long msg_size) except -1


cdef inline uint32_t sc_length(uint32_t sc) noexcept nogil:
    """Arguments a scalars word declares (wire.sc_length)."""
    return ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF) + ((sc >> 4) & 0xF) + (sc & 0xF)


cdef inline uint32_t sc_nbufs(uint32_t sc) noexcept nogil:
    """Buffer arguments (in and out) a scalars word declares."""
    return ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF)
