# The C structs that cross the in-process transport (csrc/include/qdarpc/fastrpc_wire.h,
# endpoint.h), declared once for the native lanes (_engine.pyx, dsp/_lane.pyx).
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
    struct qda_endpoint:
        int (*receive)(void *self, const fastrpc_msg *m, void *origin, fastrpc_invoke_rsp *rsp) except -1
        void *self
