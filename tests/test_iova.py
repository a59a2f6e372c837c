"""qda_core._iova.RangeAllocator: error paths, boundaries and a model check."""
from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qda_core import _ext

iova = _ext.load("_iova")
RangeAllocator = iova.RangeAllocator
IovaExhausted, IovaOverlap, IovaNotFound = iova.IovaExhausted, iova.IovaOverlap, iova.IovaNotFound

G = 4096
GiB = 1 << 30
TOP = 1 << 64


def snapshot(a):
    return a.items(), a.gaps(), a.used, len(a)


def test_exception_hierarchy():
    assert issubclass(IovaExhausted, MemoryError)
    assert issubclass(IovaOverlap, ValueError)
    assert issubclass(IovaNotFound, KeyError)
    assert iova.__version__ == _ext.__version__


# --- construction -------------------------------------------------------------------------

@pytest.mark.parametrize("args,match", [
    ((0, 0), "size is 0"),
    ((0x800, 4 * G), "not a multiple of the granule 0x1000"),
    ((0, 4 * G + 1), "not a multiple"),
    ((0, 4 * G, 0), "granule 0 is not a power of two"),
    ((0, 3 * 4096, 3 * 1024), "granule 0xc00 is not a power of two"),
    ((TOP - G, 2 * G), "ends beyond 2\\^64"),
    ((-G, G), "start -4096 is outside"),
    ((0, TOP), "size 18446744073709551616 is outside"),
])
def test_constructor_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        RangeAllocator(*args)


def test_constructor_type_errors():
    with pytest.raises(TypeError, match="size must be an int, not float"):
        RangeAllocator(0, 4096.0)


def test_properties_and_empty_state():
    a = RangeAllocator(G, 4 * GiB - G)
    assert (a.start, a.size, a.granule, a.used, a.free_bytes, len(a)) == (G, 4 * GiB - G, G, 0, 4 * GiB - G, 0)
    assert a.items() == [] and list(a) == [] and a.gaps() == [(G, 4 * GiB - G)]
    assert a.largest_gap == 4 * GiB - G
    assert "0x1000" in repr(a) and "0x100000000" in repr(a)


def test_range_may_end_exactly_at_2_64():
    a = RangeAllocator(TOP - 4 * G, 4 * G)
    assert a.alloc(4 * G) == TOP - 4 * G
    assert a.find(TOP - 1) == (TOP - 4 * G, 4 * G)
    assert "2^64" in repr(a)


def test_small_granule():
    a = RangeAllocator(0, 64, granule=16)
    assert a.alloc(1) == 0
    assert a.alloc(17) == 16 and a.find(47) == (16, 32)
    assert a.used == 48


# --- alloc --------------------------------------------------------------------------------

def test_alloc_rounds_up_and_is_sequential():
    a = RangeAllocator(0x10000, 16 * G)
    assert a.alloc(1) == 0x10000
    assert a.alloc(G + 1) == 0x11000
    assert a.items() == [(0x10000, G), (0x11000, 2 * G)]
    assert a.used == 3 * G and a.free_bytes == 13 * G


def test_exact_fill_then_exhaustion():
    a = RangeAllocator(0, 8 * G)
    addrs = [a.alloc(G) for _ in range(8)]
    assert addrs == [i * G for i in range(8)]
    assert a.free_bytes == 0 and a.gaps() == [] and a.largest_gap == 0
    before = snapshot(a)
    with pytest.raises(IovaExhausted, match=r"no free range of 0x1000 bytes aligned to 0x1000 in \[0, 0x8000\)"):
        a.alloc(1)
    assert snapshot(a) == before


def test_single_allocation_of_whole_range():
    a = RangeAllocator(G, 8 * G)
    assert a.alloc(8 * G) == G
    with pytest.raises(IovaExhausted):
        a.alloc(G)
    assert a.free(G) == 8 * G
    assert a.gaps() == [(G, 8 * G)]


def test_exhaustion_with_fragmented_space_names_largest_gap():
    a = RangeAllocator(0, 8 * G)
    for page in (1, 3, 5, 7):
        a.alloc_at(page * G, G)
    with pytest.raises(IovaExhausted, match=r"0x2000 bytes .* \(0x4000 bytes free, largest gap 0x1000\)"):
        a.alloc(2 * G)


@pytest.mark.parametrize("size,align,match", [
    (0, 0, "size is 0"),
    (G, 3 * G, "alignment 0x3000 is not a power of two"),
    (G, 2048, "alignment 0x800 is below the granule 0x1000"),
    (TOP - 1, 0, "overflows 2\\^64"),
    (-1, 0, "size -1 is outside"),
    (G, TOP, "align 18446744073709551616 is outside"),
])
def test_alloc_bad_arguments(size, align, match):
    a = RangeAllocator(0, 16 * G)
    a.alloc(G)
    before = snapshot(a)
    with pytest.raises(ValueError, match=match) as ei:
        a.alloc(size, align)
    assert not isinstance(ei.value, IovaOverlap)
    assert snapshot(a) == before


def test_best_fit_prefers_smallest_gap_then_lowest_start():
    a = RangeAllocator(0, 32 * G)
    # gaps: [0,3G) size 3, [4G,5G) size 1, [6G,8G) size 2, [9G,10G) size 1, [11G, 32G)
    for addr in (3, 5, 8, 10):
        a.alloc_at(addr * G, G)
    assert a.alloc(G) == 4 * G       # the size-1 gap with the lowest start
    assert a.alloc(G) == 9 * G       # the other size-1 gap
    assert a.alloc(2 * G) == 6 * G   # the exact size-2 gap, not the front of the size-3 one
    assert a.alloc(2 * G) == 0       # size-3 gap is the best of what is left
    assert a.gaps() == [(2 * G, G), (11 * G, 21 * G)]


def test_alignment():
    a = RangeAllocator(G, 63 * G)
    assert a.alloc(G, 16 * G) == 16 * G
    assert a.alloc(G, 2 * G) == 2 * G   # best fit: gap [G,16G) is smaller than [17G, 64G)
    assert a.gaps() == [(G, G), (3 * G, 13 * G), (17 * G, 47 * G)]
    for start, size in a.items():
        assert start % a.granule == 0


def test_alignment_skips_gap_that_fits_only_unaligned():
    a = RangeAllocator(0, 64 * G)
    a.alloc_at(0, G)
    a.alloc_at(5 * G, 59 * G)
    # The only gap, [G, 5G), is 4 pages, but its one 4-page-aligned address (4G) leaves 1 page.
    with pytest.raises(IovaExhausted, match="aligned to 0x4000"):
        a.alloc(2 * G, 4 * G)
    assert a.alloc(2 * G, 2 * G) == 2 * G


def test_alignment_gap_large_enough_for_any_start():
    a = RangeAllocator(G, 255 * G)
    a.alloc_at(200 * G, G)
    # gaps [G, 200G) and [201G, 256G): a 128-page aligned range of 16 pages must land at 128G
    assert a.alloc(16 * G, 128 * G) == 128 * G


def test_huge_alignment_near_top_of_space():
    a = RangeAllocator(TOP - (1 << 40), 1 << 40)
    assert a.alloc(G, 1 << 39) == TOP - (1 << 40)
    assert a.alloc(G, 1 << 39) == TOP - (1 << 39)
    with pytest.raises(IovaExhausted):
        a.alloc(G, 1 << 63)   # the range holds no 2^63-aligned address at all
    b = RangeAllocator(0, 1 << 63, granule=1 << 20)
    assert b.alloc(1, 1 << 62) == 0 and b.alloc(1, 1 << 62) == 1 << 62


def test_free_and_reuse():
    a = RangeAllocator(0, 4 * G)
    x, y, z = a.alloc(G), a.alloc(G), a.alloc(2 * G)
    assert a.free(y) == G
    assert y not in a and a.find(y) is None
    assert a.alloc(G) == y
    assert a.free(x) == G and a.free(y) == G
    assert a.gaps() == [(0, 2 * G)]            # freed neighbours coalesce
    assert a.free(z) == 2 * G
    assert a.gaps() == [(0, 4 * G)] and a.used == 0 and len(a) == 0
    a._check_invariants()


def test_free_errors_leave_state_intact():
    a = RangeAllocator(0x100000, 16 * G)
    x = a.alloc(3 * G)
    before = snapshot(a)
    with pytest.raises(IovaNotFound, match="no allocation starts at 0x200000"):
        a.free(0x200000)
    with pytest.raises(IovaNotFound, match=r"0x101000 is inside the allocation 0x100000\+0x3000, not its start"):
        a.free(x + G)
    assert snapshot(a) == before
    a.free(x)
    with pytest.raises(IovaNotFound):
        a.free(x)  # double free
    with pytest.raises(ValueError, match="addr -1"):
        a.free(-1)


# --- alloc_at -----------------------------------------------------------------------------

@pytest.fixture
def middle():
    """Range [0, 16 pages) with pages 4..7 allocated."""
    a = RangeAllocator(0, 16 * G)
    assert a.alloc_at(4 * G, 4 * G) == 4 * G
    return a


@pytest.mark.parametrize("addr,size", [
    (2 * G, 3 * G),   # runs into its left edge
    (7 * G, 2 * G),   # starts inside, runs past its right edge
    (4 * G, G),       # its first page
    (5 * G, G),       # inside it
    (3 * G, 6 * G),   # covers it
])
def test_alloc_at_overlaps(middle, addr, size):
    before = snapshot(middle)
    with pytest.raises(IovaOverlap, match=r"overlaps the allocation 0x4000\+0x4000"):
        middle.alloc_at(addr, size)
    assert snapshot(middle) == before


def test_alloc_at_touching_both_edges(middle):
    assert middle.alloc_at(3 * G, G) == 3 * G
    assert middle.alloc_at(8 * G, 1) == 8 * G
    assert middle.items() == [(3 * G, G), (4 * G, 4 * G), (8 * G, G)]
    assert middle.gaps() == [(0, 3 * G), (9 * G, 7 * G)]
    middle._check_invariants()


@pytest.mark.parametrize("addr,size,exc,match", [
    (16 * G, G, IovaOverlap, r"range 0x10000\+0x1000 is outside \[0x1000, 0x10000\)"),
    (15 * G, 2 * G, IovaOverlap, "is outside"),
    (0, G, IovaOverlap, "is outside"),
    (G + 1, G, ValueError, "address 0x1001 is not aligned to the granule 0x1000"),
    (2 * G, 0, ValueError, "size is 0"),
    (TOP - G, 2 * G, IovaOverlap, "is outside"),
])
def test_alloc_at_bad(addr, size, exc, match):
    a = RangeAllocator(G, 15 * G)
    before = snapshot(a)
    with pytest.raises(exc, match=match):
        a.alloc_at(addr, size)
    assert snapshot(a) == before


def test_alloc_at_whole_range_and_exact_edges():
    a = RangeAllocator(G, 15 * G)
    assert a.alloc_at(15 * G, G) == 15 * G      # last page
    assert a.alloc_at(G, G) == G                # first page
    assert a.alloc_at(2 * G, 13 * G) == 2 * G   # everything between
    assert a.free_bytes == 0


# --- queries ------------------------------------------------------------------------------

def test_find_contains_iter():
    a = RangeAllocator(0, 16 * G)
    a.alloc_at(2 * G, 2 * G)
    a.alloc_at(8 * G, G)
    assert a.find(2 * G) == (2 * G, 2 * G)
    assert a.find(4 * G - 1) == (2 * G, 2 * G)
    assert a.find(4 * G) is None and a.find(0) is None and a.find(TOP - 1) is None
    assert (3 * G in a, 4 * G in a, 8 * G + 5 in a, -1 in a, TOP in a) == (True, False, True, False, False)
    assert list(a) == a.items() == [(2 * G, 2 * G), (8 * G, G)]
    assert len(a) == 2
    it = iter(a)
    a.free(2 * G)                               # iteration is over a snapshot
    assert list(it) == [(2 * G, 2 * G), (8 * G, G)]
    with pytest.raises(TypeError):
        "x" in a


# --- the address spaces it serves --------------------------------------------------------

def test_u64_extremes():
    a = RangeAllocator(TOP - 16 * GiB, 16 * GiB)
    top = a.alloc_at(TOP - G, G)
    assert top == TOP - G and a.find(TOP - 1) == (TOP - G, G)
    x = a.alloc(16 * GiB - G)
    assert x == TOP - 16 * GiB
    with pytest.raises(IovaExhausted):
        a.alloc(G)
    assert a.free(top) == G and a.alloc(G) == TOP - G
    a._check_invariants()


def test_context_bank_4gib():
    cb = RangeAllocator(0, 4 * GiB)
    bufs = [cb.alloc(1 << 20, 1 << 20) for _ in range(16)]
    assert bufs == [i << 20 for i in range(16)]
    assert cb.alloc(4 * GiB - (16 << 20)) == 16 << 20
    with pytest.raises(IovaExhausted):
        cb.alloc(G)


def test_fake_mmap_offsets_4gib_to_2_48():
    fo = RangeAllocator(1 << 32, (1 << 48) - (1 << 32))
    offs = [fo.alloc(sz) for sz in (G, 1 << 40, 3 * G, 1 << 21)]
    assert offs[0] == 1 << 32
    assert all(o >= 1 << 32 and o % G == 0 for o in offs)
    assert fo.used == G + (1 << 40) + 3 * G + (1 << 21)
    assert fo.alloc((1 << 48) - (1 << 32) - fo.used) > 0
    with pytest.raises(IovaExhausted, match=r"in \[0x100000000, 0x1000000000000\)"):
        fo.alloc(G)
    fo._check_invariants()


# --- model check --------------------------------------------------------------------------

def _align_up(v, a):
    return (v + a - 1) // a * a


class Model:
    """The allocator's contract over a plain list of intervals."""

    def __init__(self, start, size, granule):
        self.start, self.end, self.g = start, start + size, granule
        self.allocs: list[tuple[int, int]] = []

    def gaps(self):
        out, pos = [], self.start
        for s, n in self.allocs:
            if s > pos:
                out.append((pos, s - pos))
            pos = s + n
        if pos < self.end:
            out.append((pos, self.end - pos))
        return out

    def round(self, size):
        return _align_up(size, self.g)

    def fits(self, gap, size, align):
        return _align_up(gap[0], align) + size <= gap[0] + gap[1]

    def choose(self, size, align, probes):
        """The documented policy; None when no aligned gap fits."""
        cands = sorted(((n, s) for s, n in self.gaps() if n >= size))
        for n, s in cands[:probes]:
            if self.fits((s, n), size, align):
                return _align_up(s, align)
        sure = [(n, s) for n, s in cands if n >= size + align - self.g]
        if sure:
            return _align_up(sure[0][1], align)
        for n, s in cands[probes:]:
            if self.fits((s, n), size, align):
                return _align_up(s, align)
        assert not any(self.fits((s, n), size, align) for n, s in cands)
        return None

    def add(self, addr, size):
        self.allocs.append((addr, size))
        self.allocs.sort()

    def overlaps(self, addr, size):
        return addr < self.start or addr + size > self.end or any(
            addr < s + n and s < addr + size for s, n in self.allocs)


PAGES = 160


class AllocatorMachine(RuleBasedStateMachine):
    @initialize(base=st.sampled_from([0, 1 << 32, (1 << 64) - PAGES * G]), pages=st.integers(1, PAGES))
    def setup(self, base, pages):
        self.a = RangeAllocator(base, pages * G)
        self.m = Model(base, pages * G, G)

    @rule(size=st.integers(1, 20 * G), align_log=st.integers(11, 18))
    def alloc(self, size, align_log):
        align = 0 if align_log == 11 else 1 << align_log
        want = self.m.choose(self.m.round(size), align or G, RangeAllocator.BEST_FIT_PROBES)
        if want is None:
            with pytest.raises(IovaExhausted):
                self.a.alloc(size, align)
        else:
            assert self.a.alloc(size, align) == want
            self.m.add(want, self.m.round(size))

    @rule(page=st.integers(0, PAGES - 1), size=st.integers(1, 8 * G))
    def alloc_at(self, page, size):
        addr = self.m.start + page * G
        size_r = self.m.round(size)
        if self.m.overlaps(addr, size_r):
            with pytest.raises(IovaOverlap):
                self.a.alloc_at(addr, size)
        else:
            assert self.a.alloc_at(addr, size) == addr
            self.m.add(addr, size_r)

    @rule(page=st.integers(0, PAGES - 1), step=st.integers(2, 5), count=st.integers(1, 40))
    def fragment(self, page, step, count):
        """Reserve every step-th page: many small gaps, more than BEST_FIT_PROBES of them."""
        for p in range(page, page + step * count, step):
            addr = self.m.start + p * G
            if addr + G <= self.m.end and not self.m.overlaps(addr, G):
                assert self.a.alloc_at(addr, G) == addr
                self.m.add(addr, G)

    @precondition(lambda self: self.m.allocs)
    @rule(data=st.data())
    def free_existing(self, data):
        s, n = data.draw(st.sampled_from(self.m.allocs))
        assert self.a.free(s) == n
        self.m.allocs.remove((s, n))

    @rule(page=st.integers(0, PAGES - 1), off=st.sampled_from([0, 1, G - 1]))
    def free_or_find_anywhere(self, page, off):
        addr = self.m.start + page * G + off
        hit = [(s, n) for s, n in self.m.allocs if s <= addr < s + n]
        assert self.a.find(addr) == (hit[0] if hit else None)
        assert (addr in self.a) == bool(hit)
        if not (hit and hit[0][0] == addr):
            with pytest.raises(IovaNotFound):
                self.a.free(addr)

    @invariant()
    def matches_model(self):
        if not hasattr(self, "a"):
            return
        assert self.a.items() == self.m.allocs
        assert self.a.gaps() == self.m.gaps()
        assert self.a.used == sum(n for _, n in self.m.allocs)
        assert self.a.free_bytes == self.m.end - self.m.start - self.a.used
        assert len(self.a) == len(self.m.allocs)
        prev_end = self.m.start
        for s, n in self.a.items():
            assert s >= prev_end and s % G == 0 and n % G == 0 and n > 0
            prev_end = s + n
        assert prev_end <= self.m.end
        self.a._check_invariants()


AllocatorMachine.TestCase.settings = settings(stateful_step_count=50, deadline=None)
test_allocator_model = AllocatorMachine.TestCase


def test_many_small_gaps_then_large_alignment():
    """More candidate gaps than BEST_FIT_PROBES, none fitting aligned, then the scan finds one."""
    a = RangeAllocator(0, 256 * G)
    # 2-page gaps at odd pages (never 2-page aligned), one 2-page gap at an aligned spot at the end.
    pos = 0
    while pos + 4 <= 200:
        a.alloc_at(pos * G, G)           # page pos used, pages pos+1..pos+2 free, pos+3 used
        a.alloc_at((pos + 3) * G, G)
        pos += 4
    a.alloc_at(200 * G, 52 * G)           # leaves [252G, 256G): 4 pages at a 4-aligned spot
    assert a.alloc(4 * G, 4 * G) == 252 * G   # found by the scan: no gap is size + align - G
    a.free(252 * G)
    assert a.alloc(2 * G, 2 * G) == 252 * G   # no 2-page gap is 2-aligned; the 4-page one surely fits
    a._check_invariants()
