"""The message pool: size classes, bounds, no thrashing on mixed sizes, no stale bytes shown
to the DSP. Counted (buffers created, reused, evicted), never timed."""
from __future__ import annotations

import errno
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core.mem import msgpool
from qda_core.mem.backing import HOST_PAGE_SIZE as PAGE
from qda_core.mem.backing import page_align
from qda_core._engine import ROUTE_SECOND_MAX
from qda_core.mem.msgpool import MessagePool, size_class

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_TOUCH = 0x09010100  # qdarpc_test.touch: in0 read, 10 bytes of out0 written
KiB, MiB = 1 << 10, 1 << 20
MIXED = [4 * KiB, 8 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 2 * MiB, 4 * MiB]


@settings(max_examples=300)
@given(st.integers(1, 1 << 34))
def test_size_classes(size):
    c = size_class(size)
    assert c >= page_align(size) and c % PAGE == 0
    assert size_class(c) == c                       # a class serves its own size
    assert c <= max(page_align(size), 16 * KiB) * 5 // 4  # at most a quarter more
    assert size_class(size + 1) >= c                # monotonic


def _class_by_formula(size: int) -> int:
    """The classes as the module docstring states them: whole pages up to 16 KiB, then four per
    power of two (a quarter of the power of two below each step)."""
    size = page_align(max(size, 1))
    if size <= 16 * KiB:
        return size
    step = max(PAGE, (1 << ((size - 1).bit_length() - 1)) // 4)
    return -(-size // step) * step


@settings(max_examples=300)
@given(st.one_of(st.integers(-(1 << 10), 1 << 40), st.integers((1 << 61) - 4096, 1 << 64),
                 st.integers(-(1 << 70), -(1 << 62))))
def test_size_class_in_c_matches_the_formula(size):
    """The C arithmetic (a take's, sizes below 2**61) and the Python one (beyond) agree with the
    documented classes at every size, the boundaries between them included."""
    assert size_class(size) == _class_by_formula(size)


def test_few_classes_per_power_of_two():
    classes = {size_class(s) for s in range(16 * KiB + 1, 32 * MiB + 1, PAGE)}
    assert len(classes) == 4 * 11  # four per doubling, 16 KiB .. 32 MiB


@pytest.fixture
def pool(cdsp):
    """A pool of its own in the accel file's context bank."""
    p = MessagePool(cdsp.ensure_cb())
    yield p
    p.close()


def cycle(pool, sizes, rounds):
    for _ in range(rounds):
        for s in sizes:
            pool.alloc(s).release()


def test_mixed_sizes_reuse_one_buffer_per_class(pool):
    cycle(pool, MIXED, 20)
    st_ = pool.stats()
    classes = len({size_class(s) for s in MIXED})
    assert st_["created"] == classes
    assert st_["evicted"] == st_["dropped"] == 0
    assert st_["reused"] == 20 * len(MIXED) - classes
    assert st_["free"] == classes


def test_ascending_sizes_after_small_ones_keep_the_large_buffer(pool):
    """The old pool's failure: four small buffers filled it and every larger one was dropped
    on release, so each large call made a fresh buffer."""
    held = [pool.alloc(s) for s in (4 * KiB, 8 * KiB, 12 * KiB, 16 * KiB)]
    for b in held:
        b.release()
    cycle(pool, [4 * MiB, 4 * KiB, 4 * MiB], 10)
    assert pool.stats()["created"] == 5 and pool.stats()["evicted"] == 0


def test_bounds_evict_the_least_recently_used(pool):
    sizes = sorted({size_class(s) for s in range(64 * KiB, 4 * MiB, 16 * KiB)})[:msgpool.POOL_MAX_BUFFERS + 4]
    cycle(pool, sizes, 1)
    st_ = pool.stats()
    assert st_["free"] == msgpool.POOL_MAX_BUFFERS and st_["evicted"] == 4
    pool.alloc(sizes[-1]).release()  # the newest are kept: reused
    pool.alloc(sizes[0]).release()   # the oldest went: made again
    st_ = pool.stats()
    assert (st_["reused"], st_["created"]) == (1, len(sizes) + 1)


def test_per_class_depth_and_byte_bound(pool, monkeypatch):
    bufs = [pool.alloc(8 * KiB) for _ in range(msgpool.CLASS_DEPTH + 2)]  # threads at once
    for b in bufs:
        b.release()
    assert pool.stats()["free"] == msgpool.CLASS_DEPTH
    monkeypatch.setattr(msgpool, "POOL_MAX_BYTES", 1 * MiB)
    pool.alloc(2 * MiB).release()  # larger than the whole pool: not kept
    assert pool.stats()["dropped"] == 1
    pool.alloc(768 * KiB).release()
    assert pool.stats()["free_bytes"] <= 1 * MiB


def test_threads_share_a_pool(pool):
    errors = []

    def work(k):
        try:
            cycle(pool, MIXED[: 4 + k % 4], 10)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st_ = pool.stats()
    assert not errors
    assert st_["free"] <= msgpool.POOL_MAX_BUFFERS
    assert st_["created"] + st_["reused"] == sum(10 * (4 + k % 4) for k in range(6))


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(1, 300 * KiB), second=st.integers(1, 300 * KiB))
def test_a_reused_buffer_shows_the_dsp_no_stale_bytes(cdsp, first, second):
    """Whatever a call (and its DSP) wrote in its window, the next call's window holds zeros
    wherever its own packet does not reach: pack writes the packet, the pool zeroes the rest."""
    p = MessagePool(cdsp.ensure_cb())
    try:
        w1 = page_align(first)
        b = p.alloc(w1)
        b.backing.view[:w1] = b"\xa5" * w1  # the previous call's packet and DSP writes
        b.release()
        w2 = page_align(second)
        b2 = p.alloc(w2)
        if b2 is b:
            packet = w2 - PAGE + 1  # the shortest packet a window of w2 holds
            b.backing.view[:packet] = b"\x11" * packet  # this call's pack
            assert bytes(b.backing.view[packet:b.obj.size]) == bytes(b.obj.size - packet)
        else:
            assert bytes(b2.backing.view[:b2.obj.size]) == bytes(b2.obj.size)  # fresh
        b2.release()
    finally:
        p.close()


@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_mixed_size_invokes_do_not_thrash_the_pool(soc, driver):
    """Invokes of eight sizes in turn, through each driver's own pool: after the first round
    every message buffer is reused, none is made again or evicted. (The handle's route keeps
    one buffer of a size class up to ROUTE_SECOND_MAX: the other sizes come from the pool.)"""
    f = soc.open_device("cdsp") if driver == "accel" else soc.open("/dev/fastrpc-cdsp")
    with f:
        assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        h = open_module(f, TEST)[1]
        bufs = {s: bytearray(s) for s in MIXED}
        out = bytearray(16)

        def one_round():
            for s in MIXED:
                assert f.invoke(h, SC_TOUCH, [bufs[s], out]) == 0

        one_round()
        warm = f._pool.stats()
        for _ in range(5):
            one_round()
        now = f._pool.stats()
        assert now["created"] == warm["created"]
        assert now["evicted"] == warm["evicted"] == 0
        # (the route keeps one buffer of the largest class up to ROUTE_SECOND_MAX it saw)
        kept = max(c for c in (size_class(s + PAGE) for s in MIXED) if c <= ROUTE_SECOND_MAX)
        pooled = [s for s in MIXED if size_class(s + PAGE) != kept]
        assert 0 < len(pooled) < len(MIXED)
        assert now["reused"] - warm["reused"] == 5 * len(pooled)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.integers(2**62, 2**64 - 1), st.integers(-2**63, 0)))
def test_any_size_gets_a_buffer_or_the_allocations_own_error(cdsp, size):
    """However large the request (one rounded up past every C size included), the pool answers
    with a buffer or the allocation's error (ENOMEM), never an exception of its own arithmetic."""
    p = MessagePool(cdsp.ensure_cb())
    try:
        try:
            b = p.alloc(size)
        except OSError as exc:
            assert exc.errno == errno.ENOMEM and size > 0
        except MemoryError:
            assert size > 0
        else:
            assert size <= 0 and b.obj.size == PAGE  # no bytes asked: one page
            b.release()
    finally:
        p.close()
