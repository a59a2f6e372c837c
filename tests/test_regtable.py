"""The library's table of registered buffers (libadsprpc_compat._remote.RegTable) against a
plain Python model: which ranges a buffer lies in, overruns, refcounts, and no address
arithmetic that wraps at 2^64."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libadsprpc_compat import _remote

TOP = (1 << 64) - 1
# addresses clustered so ranges overlap and share starts, plus the top of the address space
addrs = st.one_of(st.integers(0x1000, 0x1100), st.integers(TOP - 0x100, TOP))
sizes = st.one_of(st.integers(1, 0x100), st.integers(TOP - 0x200, TOP))


def model_lookup(regs: list[tuple[int, int, int]], addr: int, length: int):
    """What RegTable.lookup promises, with Python's unbounded ints: the most recently ordered
    range (largest start <= addr, then later registrations) that holds [addr, addr+length)."""
    inside = [(s, e, fd) for s, e, fd in regs if s <= addr < e]
    fits = [r for r in inside if addr + length <= r[1]]
    if fits:
        return fits
    return "overrun" if inside else None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(addrs, sizes, st.integers(3, 9)), max_size=8), addrs, sizes)
def test_lookup_agrees_with_a_model_without_wrapping(regs, addr, length):
    table = _remote.RegTable()
    model = []
    for start, size, fd in regs:
        if start + size > TOP:
            with pytest.raises(ValueError, match="runs past the end of the address space"):
                table.add(start, size, fd)
            continue
        table.add(start, size, fd)
        model.append((start, start + size, fd))
    want = model_lookup(model, addr, length)
    if want == "overrun":
        with pytest.raises(ValueError, match="overruns its registered range"):
            table.lookup(addr, length)
    elif want is None:
        assert table.lookup(addr, length) is None
    else:
        assert table.lookup(addr, length)[0] in {fd for _, _, fd in want}


def test_a_length_that_wraps_is_an_overrun_not_a_fit():
    table = _remote.RegTable()
    table.add(0x1000, 0x1000, 5)
    # 0x1800 + (2^64 - 0x100) wraps to 0x1700, inside the range: still an overrun
    with pytest.raises(ValueError, match="overruns"):
        table.lookup(0x1800, (1 << 64) - 0x100)
    assert table.lookup(0x1800, 0x800) == (5, 0)
    with pytest.raises(ValueError, match="overruns"):
        table.lookup(0x1800, 0x801)


def test_a_range_ending_at_2_64_is_refused_and_changes_nothing():
    table = _remote.RegTable()
    with pytest.raises(ValueError, match="address space"):
        table.add(TOP - 0xFFF, 0x1000, 5)
    assert len(table) == 0 and table.ranges() == []


def test_register_buf_refuses_a_range_ending_at_2_64():
    import libadsprpc_compat as rpc

    with pytest.raises(rpc.FastRpcError) as ei:
        rpc.remote_register_buf(TOP - 0xFFF, 0x1000, 5)
    assert ei.value.aee == rpc.AEE_EBADPARM and "runs past the end of the address space" in str(ei.value)
    rpc.remote_register_buf(TOP - 0xFFF, 0x1000, -1)  # deregistering it: nothing there, ignored
