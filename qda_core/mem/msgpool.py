"""Message buffers for invokes: kernel-internal GEM objects in the caller's context bank.

The RFC allocates one per invoke (``fastrpc_invoke`` -> GEM object of the page-aligned payload).
Creating a memfd per call would dominate the cost of an invoke (a small one: the syscalls; a
64 MiB one: allocating and zeroing 16K fresh pages, ~7x the copy itself), so freed buffers are
kept on a per-file free list, bounded in count and bytes. ``marshal.pack`` zeroes the whole
packet it writes, so a recycled buffer needs no clearing. Semantics are unchanged: a zeroed,
device-visible buffer that never gets a handle, in the caller's context bank.
"""
from __future__ import annotations

import threading

from .bus import ContextBank
from .gem import GemObject

POOL_MAX_BYTES = 256 << 20  # per file: beyond this, freed buffers go back to the system
POOL_DEPTH = 4


class MsgBuf:
    __slots__ = ("obj", "backing", "dma_addr", "_pool")

    def __init__(self, obj: GemObject, pool: "MessagePool"):
        self.obj = obj
        self.backing = obj.backing
        self.dma_addr = obj.dma_addr
        self._pool = pool

    def release(self) -> None:
        self._pool._give_back(self)


class MessagePool:
    """Per-file supply of zeroed message buffers from one context bank."""

    def __init__(self, cb: ContextBank):
        self.cb = cb
        self._lock = threading.Lock()  # protects _free and _bytes: threads invoke on one file at once
        self._free: list[MsgBuf] = []  # smallest first
        self._bytes = 0

    def alloc(self, size: int) -> MsgBuf:
        with self._lock:
            buf = next((b for b in self._free if b.obj.size >= size), None)
            if buf is not None:
                self._free.remove(buf)
                self._bytes -= buf.obj.size
        if buf is not None:
            return buf
        return MsgBuf(GemObject.create(self.cb, size, name="msg"), self)

    def _give_back(self, buf: MsgBuf) -> None:
        with self._lock:
            keep = len(self._free) < POOL_DEPTH and self._bytes + buf.obj.size <= POOL_MAX_BYTES
            if keep:
                self._free.append(buf)
                self._free.sort(key=lambda b: b.obj.size)
                self._bytes += buf.obj.size
        if not keep:
            buf.obj.put()

    def close(self) -> None:
        with self._lock:
            free, self._free, self._bytes = self._free, [], 0
        for buf in free:
            buf.obj.put()
