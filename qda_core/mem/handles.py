"""Per-file GEM handle namespace: ids from 1, lowest free id reused (idr_alloc(…, 1, 0))."""
from __future__ import annotations

import heapq
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class HandleTable(Generic[T]):
    """Maps small integer handles (>= 1) to objects; O(log n) allocate and free."""

    def __init__(self) -> None:
        self._items: dict[int, T] = {}
        self._free: list[int] = []  # min-heap of released ids below _next
        self._next = 1

    def add(self, obj: T) -> int:
        h = heapq.heappop(self._free) if self._free else self._next
        if h == self._next:
            self._next += 1
        self._items[h] = obj
        return h

    def get(self, handle: int) -> T | None:
        return self._items.get(handle)

    def remove(self, handle: int) -> T | None:
        obj = self._items.pop(handle, None)
        if obj is not None:
            heapq.heappush(self._free, handle)
        return obj

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[int, T]]:
        return sorted(self._items.items())
