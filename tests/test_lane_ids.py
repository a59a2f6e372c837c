"""The engine's context-id allocator (qda_core._engine.IdAllocator, a bit array in C) against a
model of the kernel's two policies: lowest free id (xarray ALLOC1) and cyclic (IDR)."""
from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qda_core.fastrpc import IdAllocator


class _Model:
    def __init__(self, limit: int, cyclic: bool):
        self.limit, self.cyclic, self.used, self.cursor = limit, cyclic, set(), 0

    def alloc(self) -> int | None:
        if len(self.used) >= self.limit:
            return None
        if self.cyclic:
            for _ in range(self.limit):
                i = self.cursor % self.limit + 1
                self.cursor += 1
                if i not in self.used:
                    self.used.add(i)
                    return i
            return None
        i = min(set(range(1, self.limit + 1)) - self.used)
        self.used.add(i)
        return i

    def free(self, i: int) -> None:
        self.used.discard(i)


@settings(max_examples=200, deadline=None)
@given(limit=st.sampled_from([1, 2, 63, 64, 65, 130, 255]), cyclic=st.booleans(),
       ops=st.lists(st.one_of(st.just(None), st.integers(0, 300)), max_size=400))
def test_ids_follow_the_model(limit, cyclic, ops):
    """None: alloc; an int: free it (taken, free, never taken or out of range alike)."""
    ids, model = IdAllocator(limit, cyclic), _Model(limit, cyclic)
    for op in ops:
        if op is None:
            want = model.alloc()
            if want is None:
                with pytest.raises(OSError) as exc:
                    ids.alloc()
                assert exc.value.errno == errno.EBUSY
            else:
                assert ids.alloc() == want
        else:
            ids.free(op)
            model.free(op)
        assert set(ids._used) == model.used


def test_lowest_free_keeps_the_bit_array_to_what_is_outstanding():
    """Lowest-free ids never exceed the most ever outstanding, whatever the limit."""
    ids = IdAllocator(0xFFFFFFFF, False)
    for _ in range(10_000):
        ids.free(ids.alloc())
    assert ids.alloc() == 1 and ids.alloc() == 2
    assert set(ids._used) == {1, 2}
