"""FastRPC invoke contexts: allocate an id, pack, send, wait for the reply, unpack, return retval.

Shared by both emulated drivers; what differs between them (context-id policy, how the ctx
word is laid out on the wire and decoded from a reply, whether the payload metadata carries a
poll word, which fds are by reference) is passed in by the driver (:class:`CtxLayout`).
"""
from __future__ import annotations

import errno
import struct
import threading

from . import _engine, dataplane, debug, faults, marshal, trace, wire
from .errors import errno_error
from .rpmsg import Channel


#: Most invoke contexts a driver keeps outstanding: replies are matched on 8 bits of ctx. The
#: RFC's xarray would hand out ids up to 2^32 and route a 256th context's reply to another one;
#: we stop at 255 and answer EBUSY (xa_alloc's errno for a full range) instead.
CTX_ID_LIMIT = 255


class CtxLayout:
    """How a driver lays out the 64-bit ``ctx`` word of ``fastrpc_msg`` and finds a reply's
    context again, and what its payload metadata holds (docs/spec/legacy_fastrpc_api.md §7.3,
    docs/spec/kernel_revisions_2026.md §5).

    * ``id << 4 | pd`` (:data:`CTX_ID4`): upstream misc/fastrpc up to Linux 7.2
      (``FASTRPC_CTXID_MASK GENMASK(11, 4)``) and the QDA RFC/v1; a reply is matched by
      ``(ctx & 0xFF0) >> 4``.
    * ``seq << 16 | id << 8 | pd`` (:data:`CTX_ID8_SEQ`): Linux 7.3 (``GENMASK(15, 8)``, commit
      "Expand context ID mask for DSP polling mode support", and 96e62cc0a84d's sequence
      number in bits 63:16, ``FASTRPC_CTXID_SEQ_SHIFT 16``). Bits 7:5 stay 0, bit 4 is the
      DSP's "async" bit (set: the DSP writes no poll word), bits 3:0 the PD. The sequence
      number is a per-channel ``atomic_t`` incremented for every context allocated; it is
      ``(u64)`` of the ``int`` ``atomic_inc_return`` answers (sign-extended once it wraps
      negative) placed by ``FIELD_PREP`` (masked to 48 bits).
      A reply is matched by ``(ctx & 0xFF00) >> 8`` and dropped unless its sequence number is
      the context's.

    ``poll_word``: the payload metadata ends with a ``u32`` the DSP sets to
    :data:`qda_core.wire.FASTRPC_POLL_RESPONSE` when it completes a polled call (Linux 7.3:
    ``fastrpc_get_meta_size`` + ``sizeof(u32)``, after the CRC list, at ``40n + 384``).

    The engine checks more than upstream does: the matched context must have sent the bits of
    the ctx word the driver decodes (:attr:`match_mask`: id and pd bits, the whole word where a
    sequence number or a whole-word id is decoded), so a caller never receives another's result.
    """

    __slots__ = ("name", "id_shift", "seq_shift", "poll_word", "id_bits")

    def __init__(self, name: str, id_shift: int, seq_shift: int | None = None, poll_word: bool = False,
                 id_bits: int = 8):
        self.name = name
        self.id_shift = id_shift
        self.seq_shift = seq_shift
        self.poll_word = poll_word
        #: Bits of the id a reply is matched on (8: ``& 0xFF << id_shift``; a driver that
        #: decodes ``ctx >> id_shift`` whole passes ``64 - id_shift``).
        self.id_bits = id_bits

    @property
    def match_mask(self) -> int:
        """The bits of a reply's ctx word the driver decodes: the id and the PD, and every bit
        for a layout with a sequence number (checked whole) or a whole-word id (QDA v1). A
        reply whose other bits differ (a ``corrupt`` fault) still completes its context, as
        on the kernel that ignores them."""
        if self.seq_shift is not None:
            return _U64_MAX
        return (self.id_mask | 0xF) & _U64_MAX

    @property
    def id_mask(self) -> int:
        return ((1 << self.id_bits) - 1) << self.id_shift

    def encode(self, i: int, seq: int, pd: int) -> int:
        """The ctx word of context id ``i`` (1..255), sequence number ``seq`` (the counter's
        value after its increment), PD ``pd``."""
        ctx = (i << self.id_shift) | pd
        if self.seq_shift is not None:  # FIELD_PREP(GENMASK_ULL(63, 16), (u64)seq)
            ctx |= ((seq & _U64_MAX) << self.seq_shift) & _U64_MAX
        return ctx

    def slot(self, ctx: int) -> int:
        """The context id a reply's ctx word names."""
        return (ctx & self.id_mask) >> self.id_shift

    def seq(self, ctx: int) -> int | None:
        """The sequence number field of ``ctx`` (None: the layout has none)."""
        return None if self.seq_shift is None else ctx >> self.seq_shift

    def __repr__(self) -> str:
        return f"<CtxLayout {self.name}>"


_U64_MAX = (1 << 64) - 1
_U32 = struct.Struct("<I")

#: ``id << 4 | pd``: misc/fastrpc up to Linux 7.2, the QDA RFC and v1.
CTX_ID4 = CtxLayout("id<<4", 4)
#: ``seq << 16 | id << 8 | pd`` and a poll word after the metadata: misc/fastrpc of Linux 7.3.
CTX_ID8_SEQ = CtxLayout("seq<<16|id<<8", 8, seq_shift=16, poll_word=True)


def _s32(v: int) -> int:
    """``v`` as an ``atomic_t`` holds it: wrapped to a signed 32-bit int."""
    return ((v + (1 << 31)) & 0xFFFF_FFFF) - (1 << 31)


def _s32_inc(v: int) -> int:
    """``atomic_inc_return`` on an ``atomic_t``: the next value, wrapping as a 32-bit int."""
    return _s32(v + 1)


#: Context ids (lowest-free or cyclic, capped), shared by the reference and the native lane:
#: ``qda_core._engine.IdAllocator``, in C (each operation is atomic under the GIL, no lock).
IdAllocator = _engine.IdAllocator


_tls = threading.local()  # this thread's last invoke traffic, while tracing


def take_traffic() -> tuple[int, int]:
    """(bytes copied inline, bytes passed by reference) of this thread's last invoke since the
    previous call, for the ioctl trace event; (0, 0) when tracing is off or nothing was sent."""
    traffic = getattr(_tls, "traffic", (0, 0))
    _tls.traffic = (0, 0)
    return traffic


def take_context() -> tuple[int, str] | None:
    """(ctx word sent, how the call completed: ``"rpmsg"`` or ``"poll"``) of this thread's last
    invoke since the previous call, while tracing; None when there was none."""
    last = getattr(_tls, "context", None)
    _tls.context = None
    return last


def _traffic(sc: int, args, refs) -> tuple[int, int]:
    copied = shared = 0
    nin, nout, _, _ = wire.sc_counts(sc)
    for i in range(nin + nout):
        length = wire.INVOKE_ARG.unpack_from(args, 24 * i)[1]
        if wire.PHY_PAGE.unpack_from(refs, 16 * i)[1]:
            shared += length
        else:
            copied += length
    return copied, shared


class _Ctx:
    __slots__ = ("id", "ctx", "retval")

    def __init__(self, i: int, ctx: int):
        self.id = i
        self.ctx = ctx  # the full ctx word sent; the reply must echo it
        self.retval: int | None = None


class FastRpc:
    """The invoke engine of one driver instance on one rpmsg channel.

    A reply is matched to its context by the 8 id bits of ``layout`` (``(ctx & 0xFF0) >> 4``
    by default), so the id allocator of every driver is capped at 255 outstanding ids (see
    :data:`CTX_ID_LIMIT`). The matched context must also have sent the decoded bits of the ctx
    the reply echoes (:attr:`CtxLayout.match_mask`); anything else is dropped, so no caller can
    ever receive another's result.
    """

    def __init__(self, channel: Channel, ids: IdAllocator, layout: CtxLayout = CTX_ID4):
        self.channel = channel
        self.layout = layout
        # No lock on the invoke path (every thread of the channel passes here; see IdAllocator):
        # _ids is lock-free, _seqs is the channel's atomic_t ctx_seq (an atomic C counter, which
        # a route advances without the GIL), and
        # _pending (context id -> _Ctx) changes only by single dict stores and pops under the GIL.
        self._ids = ids
        self._seqs = _engine.SeqCounter(1)  # yields the value atomic_inc_return would (before wrapping)
        self._pending: dict[int, _Ctx] = {}
        self._drop_lock = threading.Lock()  # protects dropped_replies (a fault's path only)
        self.dropped_replies = 0
        channel.on_receive = self._on_reply
        if dataplane.native():
            # the native lane serves invoke (qda_core/_engine.pyx); the method below stays the
            # reference it falls back to, and the oracle of the equivalence tests
            self.invoke = _engine.EngineLane(self)

    @property
    def _seq(self) -> int:
        """The channel's ctx_seq: the sequence number of the last context allocated."""
        return _s32(self._seqs.peek() - 1)

    @_seq.setter
    def _seq(self, value: int) -> None:
        self._seqs.set(value + 1)  # in place: a route holds the counter

    def _on_reply(self, data: bytes) -> None:
        word, retval = wire.RSP.unpack(data)
        layout = self.layout
        ctx = self._pending.get(layout.slot(word))
        if ctx is None or ctx.ctx != word & layout.match_mask:
            self.drop_reply(word)
            return
        ctx.retval = retval

    def drop_reply(self, word: int) -> None:
        """Count a reply that matches no context (its ctx word ``word``) and drop it."""
        with self._drop_lock:
            self.dropped_replies += 1
        debug.dbg("rpmsg", "no context matches reply ctx %#x", word)

    @staticmethod
    def no_reply(i: int, wait: tuple[int, bool] | None) -> None:
        """Raise what a caller whose context ``i`` got no reply sees: ``EINTR`` when a fault
        withheld it (``wait``: what :func:`qda_core.faults.take_wait` gave), else ``EIO``."""
        if wait is not None:
            # A fault withheld the reply (or garbled it past this layout's matching): the
            # kernel waits interruptibly with no timeout, so the caller's wait ends only when
            # a signal ends it - EINTR.
            faults.wait_interrupted(wait)
            raise errno_error(errno.EINTR, f"no reply from the DSP for context {i}: the wait "
                                           f"was interrupted after {wait[0]} ns (modeled)")
        # In-process delivery is synchronous; a missing reply means the DSP side dropped it.
        # The RFC would wait forever; we fail the call instead.
        raise errno_error(errno.EIO, f"no reply from the DSP for context {i}")

    def reference_invoke(self, *, client_id: int, tid: int, handle: int, sc: int, pd: int,
               args, refs, msg_alloc, origin: wire.Origin, fdlist: list | None = None,
               poll: bool = False) -> int:
        """Run one invoke. ``args``: N x 24-byte descriptors; ``refs``: N x 16-byte device
        ranges for by-reference arguments (see ``qda_core.marshal``); ``msg_alloc(size)``
        returns the message buffer (a GEM object of the caller's context bank, zeroed, with
        ``release()``). ``origin``: the sender as the driver knows it (:class:`wire.Origin`),
        passed beside the message. Returns the DSP retval, or raises OSError for a kernel-side failure.
        ``fdlist``: if given, extended with the fds the DSP listed for the driver to unmap
        (the legacy driver drops those maps; QDA ignores the list).

        ``poll``: the driver polls this context (Linux 7.3 poll mode: a dynamic handle of a
        user PD on a file with poll mode on). It reads the poll word after the send: the DSP's
        :data:`~qda_core.wire.FASTRPC_POLL_RESPONSE` completes the call with retval 0
        (``poll_for_remote_response``); otherwise the reply does, as without polling. Delivery
        is synchronous here, so the reply (which the DSP sends in either case) has always
        arrived by then and the 10 ms poll timeout never runs."""
        tr = trace.RECORDER
        if tr is not None:
            _tls.traffic = _traffic(sc, args, refs)
        layout = self.layout
        n = wire.sc_length(sc)
        # Linux 7.3's metadata is 4 bytes longer (the poll word). Inline data starts at the
        # next 128-byte boundary after it, which moves by exactly 128 bytes when 40n + 384 is
        # itself a multiple of 128 (n % 16 == 0) and not at all otherwise.
        shift = wire.FASTRPC_ALIGN if layout.poll_word and n % 16 == 0 else 0
        size = marshal.payload_size(sc, args, refs) + shift
        rounded = (size + wire.PAGE_SIZE - 1) & ~(wire.PAGE_SIZE - 1)
        i = self._ids.alloc()
        ctx = _Ctx(i, layout.encode(i, _s32(next(self._seqs)) if layout.seq_shift is not None else 0, pd))
        self._pending[i] = ctx
        try:
            msg = msg_alloc(max(rounded, wire.PAGE_SIZE))
            try:
                view, va = msg.backing.view, msg.backing.addr
                if shift:
                    _pack_shifted(sc, args, refs, view, va, msg.dma_addr, n, shift)
                else:
                    marshal.pack(sc, args, refs, view, va, msg.dma_addr)
                self.channel.send(wire.MSG.pack(client_id, tid, ctx.ctx, handle, sc, msg.dma_addr, rounded),
                                  origin)
                completion = "rpmsg"
                if poll and _U32.unpack_from(view, wire.metadata_size(n))[0] == wire.FASTRPC_POLL_RESPONSE:
                    ctx.retval, completion = 0, "poll"
                if tr is not None:
                    _tls.context = (ctx.ctx, completion)
                wait = faults.take_wait()
                if ctx.retval is None:
                    self.no_reply(i, wait)
                # Outputs are copied back before the retval is looked at, as the kernel does.
                fds = marshal.unpack(sc, args, refs, view, va)
                if fdlist is not None:
                    fdlist.extend(fds)
            finally:
                msg.release()
        finally:
            del self._pending[i]
            self._ids.free(i)
        return ctx.retval

    invoke = reference_invoke


def _pack_shifted(sc: int, args, refs, view, va: int, dev: int, n: int, shift: int) -> None:
    """``marshal.pack`` for metadata 4 bytes longer than the marshaller's (the poll word), in
    the case where that moves the data area by ``shift`` (128) bytes: pack as if the payload
    started ``shift`` bytes later (every inline position, pointer and page descriptor then
    lands where the longer metadata puts it), then move the metadata to the front and zero
    the gap behind it (the poll word and the alignment padding)."""
    marshal.pack(sc, args, refs, view[shift:], va + shift, dev + shift)
    meta = wire.metadata_size(n)
    view[:meta] = bytes(view[shift:shift + meta])
    view[meta:meta + shift] = bytes(shift)


def current_comm() -> bytes:
    """``current->comm`` of the calling thread, NUL-terminated: the process name both drivers
    send with INIT_CREATE."""
    try:
        with open("/proc/thread-self/comm", "rb") as f:
            return f.read().strip()[:15] + b"\0"
    except OSError:
        return b"python\0"


__all__ = ["FastRpc", "IdAllocator", "CTX_ID_LIMIT", "CtxLayout", "CTX_ID4", "CTX_ID8_SEQ", "current_comm",
           "take_traffic", "take_context"]
