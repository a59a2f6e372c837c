"""Which mapping of this process contains a user address (the kernel's ``find_vma``).

Invoke needs it to turn a user pointer into a device address: ``obj.dma_addr + (page(ptr) -
vma.start)``. Mappings the emulator creates (GEM CPU mappings, rpcmem buffers) are registered
here and found in O(log n); any other address falls back to reading ``/proc/self/maps``.
"""
from __future__ import annotations

import bisect
import itertools
import threading
import weakref

_lock = threading.Lock()  # protects _entries
# Sorted (start, token, size). A token per registration: the same address can be registered
# again (a new mapping at a reused address) before the old owner has been collected.
_entries: list[tuple[int, int, int]] = []
_tokens = itertools.count()


def register(owner, start: int, size: int) -> None:
    """Track ``[start, start+size)`` until ``owner`` (the mapping object) is garbage-collected."""
    entry = (start, next(_tokens), size)
    with _lock:
        bisect.insort(_entries, entry)
    weakref.finalize(owner, _unregister, entry)


def _unregister(entry: tuple[int, int, int]) -> None:
    with _lock:
        i = bisect.bisect_left(_entries, entry)
        if i < len(_entries) and _entries[i] == entry:
            del _entries[i]


def find_vma_start(addr: int) -> int | None:
    """Start of the mapping containing ``addr``, or None if ``addr`` is not mapped."""
    with _lock:
        i = bisect.bisect_right(_entries, (addr, float("inf"), 0)) - 1
        # The newest registration at the highest start <= addr is the live one.
        if i >= 0 and addr < _entries[i][0] + _entries[i][2]:
            return _entries[i][0]
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            lo, _, rest = line.partition(b"-")
            start = int(lo, 16)
            if start > addr:
                return None
            if addr < int(rest.split(b" ", 1)[0], 16):
                return start
    return None
