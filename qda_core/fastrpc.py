"""FastRPC invoke contexts: allocate an id, pack, send, wait for the reply, unpack, return retval.

Shared by both emulated drivers; what differs between them (context-id policy, how the reply's
ctx is decoded, which fds are by reference) is passed in by the driver.
"""
from __future__ import annotations

import errno
import heapq
import threading

from . import debug, marshal, wire
from .errors import errno_error
from .rpmsg import Channel


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
            raise errno_error(errno.EBUSY if self.cyclic else errno.ENOMEM, "no free invoke context id")
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


class _Ctx:
    __slots__ = ("id", "retval")

    def __init__(self, i: int):
        self.id = i
        self.retval: int | None = None


class FastRpc:
    """The invoke engine of one driver instance on one rpmsg channel.

    ``reply_id`` decodes the context id from a reply's ctx: the RFC keeps only 8 bits
    (``(ctx & 0xFF0) >> 4``), as does legacy; a reply that matches nothing is dropped.
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
        if ctx is None:
            self.dropped_replies += 1
            debug.dbg("rpmsg", "no context matches reply ctx %#x", rsp.ctx)
            return
        ctx.retval = rsp.retval

    def invoke(self, *, client_id: int, tid: int, handle: int, sc: int, pd: int,
               args, refs, msg_alloc, fdlist: list | None = None) -> int:
        """Run one invoke. ``args``: N x 24-byte descriptors; ``refs``: N x 16-byte device
        ranges for by-reference arguments (see ``qda_core.marshal``); ``msg_alloc(size)``
        returns the message buffer (a GEM object of the caller's context bank, zeroed, with
        ``release()``). Returns the DSP retval, or raises OSError for a kernel-side failure.
        ``fdlist``: if given, extended with the fds the DSP listed for the driver to unmap
        (the legacy driver drops those maps; QDA ignores the list)."""
        size = marshal.payload_size(sc, args, refs)
        rounded = (size + wire.PAGE_SIZE - 1) & ~(wire.PAGE_SIZE - 1)
        with self._lock:
            i = self._ids.alloc()
            ctx = _Ctx(i)
            self._pending[i] = ctx
        try:
            msg = msg_alloc(max(rounded, wire.PAGE_SIZE))
            try:
                view, va = msg.backing.view, msg.backing.addr
                marshal.pack(sc, args, refs, view, va, msg.dma_addr)
                self.channel.send(wire.MSG.pack(client_id, tid, (i << 4) | pd, handle, sc,
                                                msg.dma_addr, rounded))
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


__all__ = ["FastRpc", "IdAllocator", "current_comm"]
