"""Which mapping of this process contains a user address (the kernel's ``find_vma``).

Invoke needs it to turn a user pointer into a device address: ``obj.dma_addr + (page(ptr) -
vma.start)``. Mappings the emulator creates (GEM CPU mappings) are registered here and found in
O(log n); any other address falls back to reading ``/proc/self/maps``.
"""
from __future__ import annotations

import bisect
import threading
import weakref

_lock = threading.Lock()  # protects _starts and _spans
_starts: list[int] = []
_spans: dict[int, int] = {}


def register(owner, start: int, size: int) -> None:
    """Track ``[start, start+size)`` until ``owner`` (the mmap object) is garbage-collected."""
    with _lock:
        bisect.insort(_starts, start)
        _spans[start] = size
    weakref.finalize(owner, _unregister, start)


def _unregister(start: int) -> None:
    with _lock:
        i = bisect.bisect_left(_starts, start)
        if i < len(_starts) and _starts[i] == start:
            del _starts[i]
            _spans.pop(start, None)


def find_vma_start(addr: int) -> int | None:
    """Start of the mapping containing ``addr``, or None if ``addr`` is not mapped."""
    with _lock:
        i = bisect.bisect_right(_starts, addr) - 1
        if i >= 0 and addr < _starts[i] + _spans[_starts[i]]:
            return _starts[i]
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            lo, _, rest = line.partition(b"-")
            start = int(lo, 16)
            if start > addr:
                return None
            if addr < int(rest.split(b" ", 1)[0], 16):
                return start
    return None
