"""FastRPC invoke contexts: allocate an id, pack, send, wait for the reply, unpack, return retval.

Shared by both emulated drivers; what differs between them (context-id policy, how the reply's
ctx is decoded, which fds are by reference) is passed in by the driver.
"""
from __future__ import annotations

import errno
import heapq
import threading

from . import debug, marshal, trace, wire
from .errors import errno_error
from .rpmsg import Channel


#: Most invoke contexts a driver keeps outstanding: replies are matched on 8 bits of ctx. The
#: RFC's xarray would hand out ids up to 2^32 and route a 256th context's reply to another one;
#: we stop at 255 and answer EBUSY (xa_alloc's errno for a full range) instead.
CTX_ID_LIMIT = 255


class IdAllocator:
    """Context ids. ``cyclic=False``: lowest free id >= 1 (xarray ALLOC1, QDA RFC);
    ``cyclic=True``: next id after the last one, wrapping within 1..limit (legacy IDR cyclic)."""

    def __init__(self, limit: int, cyclic: bool):
        self.limit = limit
        self.cyclic = cyclic
        self._used: set[int] = set()
        self._free: list[int] = []
        self._next = 1

    def alloc(self) -> int:
        if len(self._used) >= self.limit:
            # idr_alloc_cyclic and xa_alloc both answer a full id range with EBUSY.
            raise errno_error(errno.EBUSY, f"no free invoke context id ({self.limit} invokes outstanding)")
        if self.cyclic:
            while self._next in self._used:
                self._next = self._next % self.limit + 1
            i = self._next
            self._next = i % self.limit + 1
        else:
            i = heapq.heappop(self._free) if self._free else self._next
            if i == self._next:
                self._next += 1
        self._used.add(i)
        return i

    def free(self, i: int) -> None:
        self._used.discard(i)
        if not self.cyclic:
            heapq.heappush(self._free, i)


_tls = threading.local()  # this thread's last invoke traffic, while tracing


def take_traffic() -> tuple[int, int]:
    """(bytes copied inline, bytes passed by reference) of this thread's last invoke since the
    previous call, for the ioctl trace event; (0, 0) when tracing is off or nothing was sent."""
    traffic = getattr(_tls, "traffic", (0, 0))
    _tls.traffic = (0, 0)
    return traffic


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

    A reply is matched to its context by ``(ctx & 0xFF0) >> 4``, the 8 bits both the RFC and
    legacy keep, so the id allocator of every driver is capped at 255 outstanding ids (see
    :data:`CTX_ID_LIMIT`). The matched context must also have sent exactly the ctx the reply
    echoes; anything else is dropped, so no caller can ever receive another's result.
    """

    def __init__(self, channel: Channel, ids: IdAllocator):
        self.channel = channel
        self._ids = ids
        self._pending: dict[int, _Ctx] = {}
        self._lock = threading.Lock()  # protects _ids and _pending
        self.dropped_replies = 0
        channel.on_receive = self._on_reply

    def _on_reply(self, data: bytes) -> None:
        rsp = wire.Rsp.unpack(data)
        with self._lock:
            ctx = self._pending.get((rsp.ctx & 0xFF0) >> 4)
        if ctx is None or ctx.ctx != rsp.ctx:
            self.dropped_replies += 1
            debug.dbg("rpmsg", "no context matches reply ctx %#x", rsp.ctx)
            return
        ctx.retval = rsp.retval

    def invoke(self, *, client_id: int, tid: int, handle: int, sc: int, pd: int,
               args, refs, msg_alloc, origin: wire.Origin, fdlist: list | None = None) -> int:
        """Run one invoke. ``args``: N x 24-byte descriptors; ``refs``: N x 16-byte device
        ranges for by-reference arguments (see ``qda_core.marshal``); ``msg_alloc(size)``
        returns the message buffer (a GEM object of the caller's context bank, zeroed, with
        ``release()``). ``origin``: the sender as the driver knows it (:class:`wire.Origin`),
        passed beside the message. Returns the DSP retval, or raises OSError for a kernel-side failure.
        ``fdlist``: if given, extended with the fds the DSP listed for the driver to unmap
        (the legacy driver drops those maps; QDA ignores the list)."""
        if trace.RECORDER is not None:
            _tls.traffic = _traffic(sc, args, refs)
        size = marshal.payload_size(sc, args, refs)
        rounded = (size + wire.PAGE_SIZE - 1) & ~(wire.PAGE_SIZE - 1)
        with self._lock:
            i = self._ids.alloc()
            ctx = _Ctx(i, (i << 4) | pd)
            self._pending[i] = ctx
        try:
            msg = msg_alloc(max(rounded, wire.PAGE_SIZE))
            try:
                view, va = msg.backing.view, msg.backing.addr
                marshal.pack(sc, args, refs, view, va, msg.dma_addr)
                self.channel.send(wire.MSG.pack(client_id, tid, ctx.ctx, handle, sc, msg.dma_addr, rounded),
                                  origin)
                if ctx.retval is None:
                    # In-process delivery is synchronous; a missing reply means the DSP side
                    # dropped it. The RFC would wait forever; we fail the call instead.
                    raise errno_error(errno.EIO, f"no reply from the DSP for context {i}")
                # Outputs are copied back before the retval is looked at, as the kernel does.
                fds = marshal.unpack(sc, args, refs, view, va)
                if fdlist is not None:
                    fdlist.extend(fds)
            finally:
                msg.release()
        finally:
            with self._lock:
                del self._pending[i]
                self._ids.free(i)
        return ctx.retval


def current_comm() -> bytes:
    """``current->comm`` of the calling thread, NUL-terminated: the process name both drivers
    send with INIT_CREATE."""
    try:
        with open("/proc/thread-self/comm", "rb") as f:
            return f.read().strip()[:15] + b"\0"
    except OSError:
        return b"python\0"


__all__ = ["FastRpc", "IdAllocator", "CTX_ID_LIMIT", "current_comm", "take_traffic"]
