# cython: language_level=3, boundscheck=False, wraparound=False
"""The invoke engine's native lane: :meth:`qda_core.fastrpc.FastRpc.invoke` in C.

Same steps, results, errors and records as the reference (``FastRpc.invoke``, which stays the
oracle and serves every call the trace watches): a context id, the payload packed into a
message buffer, the request handed to the DSP's native receive as the ``fastrpc_msg`` C struct
(csrc/include/qdarpc/endpoint.h) through the channel, the reply matched, outputs copied back.
No bytes are packed and parsed for the message or the reply, and no reply callback runs.
docs/dataplane.md.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from qda_core._cwire cimport (QDA_ENDPOINT_CAPSULE, QDA_EP_REFERENCE, QDA_EP_REPLIED, fastrpc_invoke_rsp,
                               fastrpc_msg, qda_endpoint)

import errno as _errno

from qda_core import faults as _faults
from qda_core import marshal as _marshal
from qda_core import trace as _trace
from qda_core import wire as _wire
from qda_core.errors import errno_error

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()
from qda_core.fastrpc import _pack_shifted

cdef object _payload_size = _marshal.payload_size
cdef object _pack = _marshal.pack
cdef object _unpack = _marshal.unpack
cdef uint64_t _PAGE = _wire.PAGE_SIZE
cdef uint64_t _ALIGN = _wire.FASTRPC_ALIGN
cdef uint32_t _POLL_RESPONSE = _wire.FASTRPC_POLL_RESPONSE


cdef inline int32_t _s32(uint64_t v) noexcept:
    return <int32_t>(<uint32_t>(v & 0xFFFFFFFF))


cdef class EngineLane:
    """The native invoke of one :class:`~qda_core.fastrpc.FastRpc` (its ``invoke`` when the
    native data plane is selected)."""

    def __cinit__(self, engine):
        layout = engine.layout
        self.engine = engine
        self.channel = engine.channel
        self.ids = engine._ids
        self.id_shift = layout.id_shift
        self.seq_shift = -1 if layout.seq_shift is None else layout.seq_shift
        self.poll_word = layout.poll_word
        self.match_mask = layout.match_mask
        cap = self.channel.native_remote
        if cap is not None and PyCapsule_IsValid(cap, QDA_ENDPOINT_CAPSULE):
            self._ep_capsule = cap  # keeps the endpoint alive
            self.ep = <qda_endpoint *>PyCapsule_GetPointer(cap, QDA_ENDPOINT_CAPSULE)
        else:
            self.ep = NULL

    def __call__(self, *, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                 origin, fdlist=None, bint poll=False):
        """``FastRpc.invoke`` (same keywords, result and errors)."""
        return self.invoke(client_id, tid, handle, sc, pd, args, refs, msg_alloc, origin, fdlist, poll)

    cpdef int invoke(self, int client_id, int tid, uint32_t handle, uint32_t sc, int pd, args, refs, msg_alloc,
                     origin, fdlist, bint poll) except? -1:
        cdef uint32_t n = ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF) + ((sc >> 4) & 0xF) + (sc & 0xF)
        cdef uint64_t shift = _ALIGN if self.poll_word and n % 16 == 0 else 0
        cdef uint64_t size, rounded, ctxword, dev
        cdef int i, ret
        cdef int32_t retval = 0
        cdef bint have = False
        cdef fastrpc_msg m
        cdef fastrpc_invoke_rsp rsp
        cdef const unsigned char[::1] words
        if self.ep == NULL or _trace.RECORDER is not None:  # the trace records the reference's steps
            return self.engine.reference_invoke(client_id=client_id, tid=tid, handle=handle, sc=sc, pd=pd,
                                                args=args, refs=refs, msg_alloc=msg_alloc, origin=origin,
                                                fdlist=fdlist, poll=poll)
        size = <uint64_t>_payload_size(sc, args, refs) + shift
        rounded = (size + _PAGE - 1) & ~(_PAGE - 1)
        i = self.ids.alloc()
        ctxword = (<uint64_t>i << self.id_shift) | <uint64_t>pd
        if self.seq_shift >= 0:  # FIELD_PREP(GENMASK_ULL(63, 16), (u64)seq)
            seq = next(self.engine._seqs) & 0xFFFFFFFF  # the atomic_t's bits, then sign-extended
            ctxword |= (<uint64_t><int64_t>_s32(<uint64_t>seq)) << self.seq_shift
        try:
            msg = msg_alloc(max(rounded, _PAGE))
            try:
                backing = msg.backing
                view, va = backing.view, backing.addr
                dev = msg.dma_addr
                if shift:
                    _pack_shifted(sc, args, refs, view, va, dev, n, shift)
                else:
                    _pack(sc, args, refs, view, va, dev)
                if not self.channel.up:
                    raise errno_error(_errno.ENODEV, f"rpmsg channel {self.channel.name} is down")
                m.client_id, m.tid, m.ctx, m.handle = client_id, tid, ctxword, handle
                m.sc, m.addr, m.size = sc, dev, rounded
                rsp.ctx = 0
                rsp.retval = 0
                next(self.channel._sent)
                ret = self.ep.receive(self.ep.self, &m, <void *>origin, &rsp)
                if ret & QDA_EP_REPLIED:
                    next(self.channel._received)
                    if rsp.ctx & self.match_mask == ctxword:
                        retval, have = rsp.retval, True
                    else:
                        self.engine.drop_reply(rsp.ctx)
                if poll:
                    words = view
                    off = 40 * n + 384
                    if (<const uint32_t *>&words[off])[0] == _POLL_RESPONSE:
                        retval, have = 0, True
                wait = _faults.take_wait() if ret & QDA_EP_REFERENCE else None
                if not have:
                    self.engine.no_reply(i, wait)  # raises, as the reference does
                fds = _unpack(sc, args, refs, view, va)
                if fdlist is not None:
                    fdlist.extend(fds)
            finally:
                msg.release()
        finally:
            self.ids.free(i)
        return retval
