"""Message buffers for invokes: kernel-internal GEM objects in the caller's context bank.

The RFC allocates one per invoke (``fastrpc_invoke`` -> GEM object of the page-aligned payload).
Creating a memfd per call would dominate the cost of an invoke (a small one: the syscalls; a
64 MiB one: allocating and zeroing 16K fresh pages, ~7x the copy itself), so freed buffers are
kept on a per-file free list, bounded in count and bytes, and re-zeroed up to the extent the
previous call dirtied. Semantics are unchanged: a zeroed, device-visible buffer that never gets
a handle, in the caller's context bank.
"""
from __future__ import annotations

import ctypes

from .bus import ContextBank
from .gem import GemObject

POOL_MAX_BYTES = 256 << 20  # per file: beyond this, freed buffers go back to the system
POOL_DEPTH = 4


class MsgBuf:
    __slots__ = ("obj", "backing", "dma_addr", "dirty", "_pool")

    def __init__(self, obj: GemObject, pool: "MessagePool"):
        self.obj = obj
        self.backing = obj.backing
        self.dma_addr = obj.dma_addr
        self.dirty = 0
        self._pool = pool

    def release(self) -> None:
        self._pool._give_back(self)


class MessagePool:
    """Per-file supply of zeroed message buffers from one context bank."""

    def __init__(self, cb: ContextBank):
        self.cb = cb
        self._free: list[MsgBuf] = []  # smallest first
        self._bytes = 0

    def alloc(self, size: int) -> MsgBuf:
        for i, buf in enumerate(self._free):
            if buf.obj.size >= size:
                del self._free[i]
                self._bytes -= buf.obj.size
                n = min(buf.dirty, buf.obj.size)
                if n:
                    ctypes.memset(buf.backing.addr, 0, n)
                buf.dirty = size
                return buf
        buf = MsgBuf(GemObject.create(self.cb, size, name="msg"), self)
        buf.dirty = size
        return buf

    def _give_back(self, buf: MsgBuf) -> None:
        if len(self._free) < POOL_DEPTH and self._bytes + buf.obj.size <= POOL_MAX_BYTES:
            self._free.append(buf)
            self._free.sort(key=lambda b: b.obj.size)
            self._bytes += buf.obj.size
        else:
            buf.obj.put()

    def close(self) -> None:
        for buf in self._free:
            buf.obj.put()
        self._free.clear()
        self._bytes = 0
