"""Message buffers for invokes: kernel-internal GEM objects in the caller's context bank.

The RFC allocates one per invoke (``fastrpc_invoke`` -> GEM object of the page-aligned payload).
Creating a memfd per call would dominate the cost of an invoke (a small one: the syscalls; a
64 MiB one: allocating and zeroing 16K fresh pages, ~7x the copy itself), so freed buffers are
kept per file and reused. Semantics are unchanged: a device-visible buffer that never gets a
handle, in the caller's context bank, whose bytes the DSP is shown are this call's or zeros.

**Size classes.** A request is rounded up to its class (whole pages up to 16 KiB, then four
classes per power of two, so at most 25% larger) and served only by a buffer of that class.
Each class keeps up to :data:`CLASS_DEPTH` free buffers (one per thread invoking at once); the
pool as a whole keeps at most :data:`POOL_MAX_BUFFERS` buffers and :data:`POOL_MAX_BYTES` bytes,
evicting the least recently used free buffer when a returned one would exceed a bound. So a
mix of sizes reuses one buffer per class instead of recreating the larger ones (the old
smallest-first list of four dropped every buffer larger than the four it held).

**No stale data reaches the DSP.** The DSP is shown ``[0, size)`` of a buffer allocated with
``size``. ``marshal.pack`` writes every byte of the packet (metadata, copies, zeroed gaps and
out-buffers), and the packet ends in the window's last page (``size`` is the page-rounded packet
size); what lies between the packet and ``size`` is zeroed here, as is whatever an earlier,
larger window of the same buffer left beyond it (``MsgBuf.dirty``).
"""
from __future__ import annotations

import threading

from .._ext import load as _load
from .backing import HOST_PAGE_SIZE, page_align
from .bus import ContextBank
from .gem import GemObject

_zero = _load("_marshal").zero

POOL_MAX_BYTES = 256 << 20  # per file: beyond this, freed buffers go back to the system
POOL_MAX_BUFFERS = 16       # per file: each one holds a memfd and a mapping
CLASS_DEPTH = 4             # free buffers kept per size class
_SMALL = 16 << 10           # classes of whole pages up to here
_PAGE = HOST_PAGE_SIZE


def size_class(size: int) -> int:
    """The buffer size that serves a request of ``size`` bytes."""
    if 0 < size <= _PAGE:
        return _PAGE  # the usual message (every invoke with small arguments): no arithmetic
    size = page_align(max(size, 1))
    if size <= _SMALL:
        return size
    step = max(_PAGE, 1 << ((size - 1).bit_length() - 3))  # a quarter of the power of two below
    return (size + step - 1) // step * step


class MsgBuf:
    __slots__ = ("obj", "backing", "dma_addr", "dirty", "_pool")

    def __init__(self, obj: GemObject, pool: "MessagePool"):
        self.obj = obj
        self.backing = obj.backing
        self.dma_addr = obj.dma_addr
        self.dirty = 0  # bytes at the front that a call may have written (0: all zero)
        self._pool = pool

    def release(self) -> None:
        self._pool._give_back(self)

    def _scrub(self, size: int) -> None:
        """Zero what the coming call will show the DSP without writing it, and what earlier
        calls left beyond this one's window: ``[size - page, dirty)`` within the buffer."""
        _zero(self.backing.view, size - _PAGE, self.dirty)  # clipped to the buffer in C
        self.dirty = size


class MessagePool:
    """Per-file supply of message buffers from one context bank, in size classes."""

    def __init__(self, cb: ContextBank):
        self.cb = cb
        self._lock = threading.Lock()  # protects everything below: threads invoke on one file at once
        self._free: dict[int, list[MsgBuf]] = {}  # class -> free buffers, most recent last
        # id -> free buffer, least recent first (a dict keeps insertion order, and a buffer is
        # inserted when it comes back, so the first one is the least recently used)
        self._lru: dict[int, MsgBuf] = {}
        self._bytes = 0
        #: Counters: buffers created, reused, evicted (free ones given back to keep the bounds),
        #: dropped (returned ones never kept: larger than the whole pool).
        self.created = self.reused = self.evicted = self.dropped = 0

    def alloc(self, size: int) -> MsgBuf:
        """A buffer of at least ``size`` bytes whose first ``size`` the caller's packet fills,
        up to its last page (see the module docstring)."""
        cls = size_class(size)
        with self._lock:
            bucket = self._free.get(cls)
            buf = bucket.pop() if bucket else None
            if buf is not None:
                del self._lru[id(buf)]
                self._bytes -= buf.obj.size
                self.reused += 1
            else:
                self.created += 1
        if buf is None:
            buf = MsgBuf(GemObject.create(self.cb, cls, name="msg"), self)
        buf._scrub(size)
        return buf

    def _give_back(self, buf: MsgBuf) -> None:
        size = buf.obj.size
        out: list[MsgBuf] = []
        with self._lock:
            if size > POOL_MAX_BYTES:
                self.dropped += 1
                out.append(buf)
            else:
                self._free.setdefault(size, []).append(buf)
                self._lru[id(buf)] = buf
                self._bytes += size
                bucket = self._free[size]
                if len(bucket) > CLASS_DEPTH:
                    out.append(self._evict(bucket[0]))
                while len(self._lru) > POOL_MAX_BUFFERS or self._bytes > POOL_MAX_BYTES:
                    out.append(self._evict(next(iter(self._lru.values()))))
        for b in out:
            b.obj.put()

    def _evict(self, buf: MsgBuf) -> MsgBuf:
        """Take free ``buf`` out of the pool (lock held); the caller puts it."""
        del self._lru[id(buf)]
        bucket = self._free[buf.obj.size]
        bucket.remove(buf)
        if not bucket:
            del self._free[buf.obj.size]
        self._bytes -= buf.obj.size
        self.evicted += 1
        return buf

    def stats(self) -> dict[str, int]:
        """Buffers created, reused, evicted and dropped so far, and what is free now."""
        with self._lock:
            return {"created": self.created, "reused": self.reused, "evicted": self.evicted,
                    "dropped": self.dropped, "free": len(self._lru), "free_bytes": self._bytes}

    def close(self) -> None:
        with self._lock:
            free = list(self._lru.values())
            self._free, self._lru, self._bytes = {}, {}, 0
        for buf in free:
            buf.obj.put()
