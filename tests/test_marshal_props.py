"""Property tests: the C marshaller and the pure-Python reference agree byte for byte.

Descriptor sets point into one real bytearray arena, so inline copies read real memory and
unpack writes real memory; the arena is snapshotted so both backends see the same state.

Every choice is drawn through Hypothesis (no inner ``random.Random``), so a failure shrinks to
few, short buffers at small offsets; bulk bytes (the arena, raw payloads) are a drawn pattern
repeated, which shrinks to zeros.
"""
from __future__ import annotations

import ctypes
import struct

from hypothesis import event, given, settings
from hypothesis import strategies as st

from qda_core import marshal_ref as py
from qda_core._ext import load
from qda_core.wire import INVOKE_ARG, scalars

c = load("_marshal")

ARENA = 1 << 16
M64 = (1 << 64) - 1
REF = struct.Struct("<QQ")


def outcome(fn, *a):
    """('ok', value) or ('err', errno / exception type) so results and errors compare alike."""
    try:
        return ("ok", fn(*a))
    except OSError as e:
        return ("err", e.errno)
    except (TypeError, OverflowError) as e:
        return ("exc", type(e))


def tiled(pattern: bytes, n: int) -> bytes:
    """``n`` bytes of ``pattern`` repeated (zeros for an empty pattern)."""
    if not pattern:
        return bytes(n)
    return (pattern * (n // len(pattern) + 1))[:n]


class Arena:
    def __init__(self, pattern: bytes):
        self.buf = bytearray(tiled(pattern, ARENA))
        self.base = ctypes.addressof((ctypes.c_char * ARENA).from_buffer(self.buf))

    def snapshot(self) -> bytes:
        return bytes(self.buf)

    def restore(self, snap: bytes) -> None:
        self.buf[:] = snap


@st.composite
def counts(draw):
    if draw(st.integers(0, 9)) == 0:  # sometimes the maxima
        return draw(st.sampled_from([(255, 255, 15, 15), (255, 0, 0, 0), (0, 255, 15, 0)]))
    return (draw(st.integers(0, 24)), draw(st.integers(0, 24)),
            draw(st.integers(0, 15)), draw(st.integers(0, 15)))


u64 = st.integers(0, (1 << 64) - 1)
POOL = 24


def percent(draw, p: int) -> bool:
    """True with probability ``p``% (drawn, so it shrinks to False)."""
    return p > 0 and draw(st.integers(0, 99)) < p


@st.composite
def buffer_record(draw, hot: int, p_ref: int, p_wild: int):
    """[ptr (arena offset, None, "huge" or absolute), length, fd] and its (addr, size) reference."""
    length = draw(st.integers(0, 11999))   # Hypothesis favours 0, small and boundary values
    off = draw(st.integers(0, ARENA + 511))
    off = hot + off - 256 if off < 512 else off - 512   # near the hot spot (overlaps) or anywhere
    ptr = max(0, min(off, ARENA - length))  # arena offset; made absolute per arena by materialize
    fd, ref = -1, (0, 0)
    if percent(draw, p_ref):
        fd = draw(st.integers(1, 49))
        ref = (draw(st.integers(0, (1 << 40) - 1)) & ~0xFFF, draw(st.integers(1, (1 << 24) - 1)))
    if percent(draw, p_wild):
        ptr, length = draw(st.sampled_from(["null", "top", "null0", "huge"]).flatmap(lambda k: {
            "null": st.tuples(st.none(), st.integers(1, 63)),
            "top": st.tuples(st.integers(0, 63).map(lambda d: M64 - d), st.integers(0, 64)),
            "null0": st.just((None, 0)),
            "huge": st.just(("huge", 1 << 63)),
        }[k]))
    return [ptr, length, fd], ref


@st.composite
def invocations(draw, valid_only: bool = False):
    """(sc, args, refs, arena_pattern) with a mix of inline/by-ref, overlapping and empty buffers."""
    nin, nout, nih, noh = draw(counts())
    sc = scalars(draw(st.integers(0, 31)), nin, nout, nih, noh)
    pattern = draw(st.binary(max_size=256))
    p_ref = draw(st.sampled_from([0, 10, 50]))
    p_wild = 0 if valid_only else draw(st.sampled_from([0, 0, 2]))
    hot = draw(st.integers(0, ARENA - 4097))    # cluster pointers so overlaps are common
    recs, refs = [], []
    # At most POOL distinct records are drawn; longer lists repeat them, each round shifted by a
    # drawn stride (keeps a 255-buffer case to a few hundred choices, and repeats overlap).
    nbufs = nin + nout
    pool = [draw(buffer_record(hot, p_ref, p_wild)) for _ in range(min(nbufs, POOL))]
    stride = draw(st.integers(-512, 512)) if nbufs > POOL else 0
    for i in range(nbufs):
        (ptr, length, fd), ref = pool[i % POOL]
        if i >= POOL and isinstance(ptr, int) and ptr < ARENA:
            ptr = max(0, min(ptr + (i // POOL) * stride, ARENA - length))
        recs.append([ptr, length, fd])
        refs.append(ref)
    for _ in range(nih + noh):
        recs.append([draw(u64), draw(u64), draw(st.integers(-(1 << 31), (1 << 31) - 1))])
        refs.append((draw(u64), draw(u64)))
    return sc, recs, refs, pattern, nin + nout


def materialize(recs, refs, arena: Arena, nbufs: int):
    out = []
    for i, (ptr, length, fd) in enumerate(recs):
        if i < nbufs:
            if ptr is None:
                ptr = 0
            elif ptr == "huge":
                ptr = arena.base
            elif ptr < ARENA:
                ptr += arena.base
        out.append(INVOKE_ARG.pack(ptr, length, fd, 0))
    return b"".join(out), b"".join(REF.pack(*r) for r in refs)


addresses = st.sampled_from([0x7F00_0000_0000, 0x1000, M64 + 1 - 4096, 0]) | \
    st.integers(0, (1 << 52) - 1).map(lambda v: v << 12)


@settings(deadline=None)
@given(invocations(), addresses, addresses, st.data())
def test_c_matches_reference(inv, va, dev, data):
    sc, recs, refs, pattern, nbufs = inv
    arena = Arena(pattern)
    args, rr = materialize(recs, refs, arena, nbufs)
    size_c, size_py = outcome(c.payload_size, sc, args, rr), outcome(py.payload_size, sc, args, rr)
    assert size_c == size_py
    event(f"payload_size: {size_c[0] if size_c[0] == 'ok' else size_c}")
    if size_c[0] != "ok" or size_c[1] > (4 << 20):
        return
    size = size_c[1]
    pc, pp = bytearray(size), bytearray(size)
    r_c = outcome(c.pack, sc, args, rr, pc, va, dev)
    r_py = outcome(py.pack, sc, args, rr, pp, va, dev)
    assert r_c == r_py
    assert pc == pp
    event(f"pack: {r_c[0] if r_c[0] == 'ok' else r_c}")
    if r_c[0] != "ok":
        return
    assert r_c[1] == size

    # the DSP's reply: arbitrary output data, sometimes lies in rpra, an fdlist
    n = len(recs)
    reply = bytearray(pc)
    meta = c.metadata_size(n)
    if size > meta:
        for _ in range(data.draw(st.integers(0, 3), label="output writes")):
            a = data.draw(st.integers(meta, size - 1), label="output at")
            reply[a:a + 64] = data.draw(st.binary(min_size=min(64, size - a), max_size=min(64, size - a)))
    if nbufs and data.draw(st.sampled_from([False, False, True]), label="rpra lie"):
        i = data.draw(st.integers(0, nbufs - 1), label="lying buffer")
        struct.pack_into("<Q", reply, 16 * i + data.draw(st.sampled_from([0, 8])), data.draw(u64, label="lie"))
    for k in range(data.draw(st.integers(0, 16), label="fdlist entries")):
        struct.pack_into("<Q", reply, 40 * n + 8 * k, data.draw(u64))

    snap = arena.snapshot()
    u_c = outcome(c.unpack, sc, args, rr, reply, va)
    after_c = arena.snapshot()
    arena.restore(snap)
    u_py = outcome(py.unpack, sc, args, rr, bytes(reply), va)
    assert u_c == u_py
    assert arena.snapshot() == after_c
    event(f"unpack: {u_c[0] if u_c[0] == 'ok' else u_c}, arena {'changed' if after_c != snap else 'unchanged'}")


@settings(deadline=None)
@given(invocations(valid_only=True), addresses)
def test_decode_of_pack_round_trips(inv, va):
    sc, recs, refs, pattern, nbufs = inv
    arena = Arena(pattern)
    args, rr = materialize(recs, refs, arena, nbufs)
    size = c.payload_size(sc, args, rr)
    payload = bytearray(size)
    dev = (va ^ 0x5_0000_0000) & M64 & ~0xFFF     # same page offset as va
    any_ref = any(refs[i][1] for i in range(nbufs) if recs[i][1])
    try:
        c.pack(sc, args, rr, payload, va, dev)
    except OSError:
        assert any_ref    # only a by-ref/inline overlap may fail on valid pointers
        return
    bufs, handles = c.decode(sc, payload)
    assert (bufs, handles) == py.decode(sc, payload)
    nin = (sc >> 16) & 0xFF
    for i in range(nbufs):
        ptr, length, _fd, _ = INVOKE_ARG.unpack_from(args, 24 * i)
        addr, blen = bufs[i]
        assert blen == length
        if not length:
            assert addr == 0
        elif refs[i][1]:
            assert addr == (refs[i][0] + (ptr & 0xFFF)) & M64
        elif not any_ref:
            pv = struct.unpack_from("<Q", payload, 16 * i)[0]
            off = (addr - dev) & M64
            assert off == (pv - va) & M64
            assert c.metadata_size(len(recs)) <= off and off + length <= size
            if i < nin:
                assert payload[off:off + length] == arena.buf[ptr - arena.base:ptr - arena.base + length]
    for k, h in enumerate(handles):
        ptr, length, fd, _ = INVOKE_ARG.unpack_from(args, 24 * (nbufs + k))
        assert h == (fd, ptr & 0xFFFFFFFF, length & 0xFFFFFFFF, *refs[nbufs + k])


@st.composite
def raw_payloads(draw):
    sc = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        sc &= 0xFF0F0F33
    n = sum(((sc >> 16) & 0xFF, (sc >> 8) & 0xFF, (sc >> 4) & 0xF, sc & 0xF))
    meta = 40 * n + 384
    length = draw(st.sampled_from([meta, meta + 100, max(0, meta - 1)]) | st.integers(0, meta))
    data = bytearray(tiled(draw(st.binary(max_size=512)), length))
    if length >= meta and draw(st.sampled_from([True, True, True, False])):   # mostly-valid page lists
        entries = [(draw(st.integers(0, 1)), draw(st.integers(0, n - 1))) for _ in range(min(n, POOL))]
        for i in range(n):   # at most POOL drawn entries, repeated
            struct.pack_into("<II", data, 16 * n + 8 * i, *entries[i % POOL])
        if n and draw(st.booleans()):
            struct.pack_into("<II", data, 16 * n + 8 * draw(st.integers(0, n - 1)),
                             *draw(st.sampled_from([(2, 0), (1, n), (0, 1 << 31)])))
    return sc, bytes(data)


@settings(deadline=None, max_examples=300)
@given(raw_payloads())
def test_decode_arbitrary_bytes_c_equals_reference(case):
    sc, data = case
    res = outcome(c.decode, sc, data)
    assert res == outcome(py.decode, sc, data)
    event(f"decode: {res[0] if res[0] == 'ok' else res}")


def _views_outcome(fn, sc, data, base):
    """decode_views' result in comparable form: views as (bytes, readonly) or None."""
    try:
        bufs, handles, views, copied, nin, nout = fn(sc, memoryview(bytearray(data)), base)
    except OSError as exc:
        return ("err", exc.errno, str(exc))
    return ("ok", bufs, handles, [None if v is None else (bytes(v), v.readonly) for v in views], copied, nin, nout)


@settings(deadline=None, max_examples=300)
@given(raw_payloads(), st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 0x1000, 2**64 - 0x1000])))
def test_decode_views_c_equals_reference(case, base):
    """Arbitrary payloads at arbitrary device addresses (buffers inside, straddling, outside,
    below the base, wrapping): both backends view the same buffers and count the same bytes."""
    sc, data = case
    res = _views_outcome(c.decode_views, sc, data, base)
    assert res == _views_outcome(py.decode_views, sc, data, base)
    if res[0] == "ok":
        assert (res[1], res[2]) == py.decode(sc, data)
        event(f"views inside: {sum(v is not None for v in res[3])}")


@settings(deadline=None)
@given(invocations(valid_only=True), addresses)
def test_decode_views_of_a_packed_payload_show_the_copied_buffers(inv, va):
    """A payload as the driver packs it: every buffer wholly inside it is a view of its bytes
    there (read-only for in-buffers); the others (by reference, or an inline copy the kernel's
    overlap rules placed outside) are left to the SMMU; ``copied`` counts those that start inside."""
    sc, recs, refs, pattern, nbufs = inv
    arena = Arena(pattern)
    args, rr = materialize(recs, refs, arena, nbufs)
    payload = bytearray(c.payload_size(sc, args, rr))
    dev = (va ^ 0x5_0000_0000) & M64 & ~0xFFF
    try:
        c.pack(sc, args, rr, payload, va, dev)
    except OSError:
        return
    bufs, _, views, copied, nin_bytes, nout_bytes = c.decode_views(sc, memoryview(payload), dev)
    assert (bufs, _) == c.decode(sc, payload)
    nin, size = (sc >> 16) & 0xFF, len(payload)
    for i, (addr, length) in enumerate(bufs):
        off = (addr - dev) & M64
        inside = length == 0 or (off < size and length <= size - off)
        assert (views[i] is not None) == inside
        if views[i] is not None:
            assert views[i].readonly == (i < nin) and bytes(views[i]) == bytes(payload[off:off + length])
    assert copied == sum(length for addr, length in bufs if (addr - dev) & M64 < size)
    assert (nin_bytes, nout_bytes) == (sum(n for _, n in bufs[:nin]), sum(n for _, n in bufs[nin:]))


def _view_traits(v: memoryview) -> tuple:
    return (bytes(v), v.readonly, v.format, v.itemsize, v.ndim, v.shape, v.strides, v.nbytes, len(v),
            v.c_contiguous, v.f_contiguous, v.contiguous, v.suboffsets)


@settings(deadline=None)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=6), st.integers(0, 5))
def test_argument_views_are_plain_slices_of_the_payload(lengths, nin):
    """The views ``decode_views`` makes (narrowed in C, not sliced) behave as ``payload[a:b]``
    (and ``.toreadonly()`` for in-buffers) in everything a skel can observe: their bytes and
    shape, casts, hashing, writes through an out-buffer's view, and the hold they keep on the
    payload's memory."""
    import mmap

    nin = min(nin, len(lengths))
    src = bytearray(bytes(range(256)) * 2)
    a_src = ctypes.addressof((ctypes.c_char * len(src)).from_buffer(src))
    args = bytearray(24 * len(lengths))
    for i, n in enumerate(lengths):
        INVOKE_ARG.pack_into(args, 24 * i, a_src + i, n, -1, 0)
    sc = scalars(0, nin, len(lengths) - nin)
    refs = bytes(16 * len(lengths))
    size = c.payload_size(sc, args, refs)
    mm = mmap.mmap(-1, max(size, 1))
    dev = 0x7_0000_0000
    c.pack(sc, args, refs, memoryview(mm)[:size], 0x1000_0000, dev)
    bufs, _, views, *_ = c.decode_views(sc, memoryview(mm)[:size], dev)
    for i, ((addr, n), v) in enumerate(zip(bufs, views)):
        assert v is not None and len(v) == n
        if n == 0:
            continue
        ref = memoryview(mm)[addr - dev:addr - dev + n]
        if i < nin:
            ref = ref.toreadonly()
            assert bytes(v) == bytes(src[i:i + n])
        assert _view_traits(v) == _view_traits(ref)
        if n % 4 == 0:
            assert v.cast("I").tolist() == ref.cast("I").tolist()
        if v.readonly:
            assert hash(v) == hash(ref)
        else:
            v[n - 1] = 0xA5
            assert mm[addr - dev + n - 1] == 0xA5
        ref.release()
    if any(lengths):  # the views hold the mapping, as slices do
        try:
            mm.close()
        except BufferError:
            pass
        else:
            raise AssertionError("the payload's mapping closed under live views")
    for v in views:
        v.release()
    mm.close()
