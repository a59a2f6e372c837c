"""Message buffers for invokes: kernel-internal GEM objects in the caller's context bank.

The RFC allocates one per invoke (``fastrpc_invoke`` -> GEM object of the page-aligned payload).
Creating a memfd per call would dominate the cost of a small invoke, so small buffers are kept
on a per-file free list and re-zeroed up to the extent the previous call dirtied; semantics are
unchanged (a zeroed, device-visible buffer that never gets a handle).
"""
from __future__ import annotations

import ctypes

from .bus import ContextBank
from .gem import GemObject

POOL_MAX_SIZE = 1 << 20  # larger payloads get a fresh buffer each call
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
        self._free: list[MsgBuf] = []

    def alloc(self, size: int) -> MsgBuf:
        for i, buf in enumerate(self._free):
            if buf.obj.size >= size:
                del self._free[i]
                n = min(buf.dirty, buf.obj.size)
                if n:
                    ctypes.memset(buf.backing.addr, 0, n)
                buf.dirty = size
                return buf
        buf = MsgBuf(GemObject.create(self.cb, size, name="msg"), self)
        buf.dirty = size
        return buf

    def _give_back(self, buf: MsgBuf) -> None:
        if buf.obj.size <= POOL_MAX_SIZE and len(self._free) < POOL_DEPTH and self.cb is not None:
            self._free.append(buf)
        else:
            buf.obj.put()

    def close(self) -> None:
        for buf in self._free:
            buf.obj.put()
        self._free.clear()
