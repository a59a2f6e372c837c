"""A Python skel's route clears only its packet when the skel stayed in its arguments
(``QDA_EP_CONFINED``, docs/dataplane.md "Routes"): every way a skel can reach the route's page
past its arguments - a buffer of the views' exporter (``view.obj``), the exporter kept, a view
or slice kept, the Call kept, a ctypes array over a view, a view through the PD's memory - makes
the next call clear the whole page again, so no later call sees bytes written there. Both
drivers; the reference plane makes the same calls and sees the same."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import PAGE_SKEL_PRELUDE, RouteSide  # noqa: E402

SKEL = PAGE_SKEL_PRELUDE + r'''

KEPT = []
DEV = [0]


class Confined(PageSkel):
    @method(3)
    def escape(self, call):
        how, out = call.inbufs[0][0], call.outbufs[0]
        if how == 1:  # a buffer of the exporter, written past the arguments, dropped
            page, lo, hi = _tail(out)
            page[lo:hi] = bytes([EE]) * (hi - lo)
            page.release()
        elif how == 2:
            KEPT.append(("exporter", out.obj))
        elif how == 3:
            KEPT.append(("view", out[:]))
        elif how == 4:
            KEPT.append(("call", call))
        elif how == 5:
            KEPT.append(("ctypes", (ctypes.c_char * len(out)).from_buffer(out)))
        elif how == 6:  # a slice kept, the Call's view released
            KEPT.append(("view", out[:]))
            out.release()
        elif how == 7 and DEV[0]:  # a view through the PD's memory, written and dropped
            mv = call.process.memory.view(DEV[0], 4096, True)
            mv[2048:] = bytes([EE]) * 2048
            mv.release()
        elif how == 8:  # the view kept through a tuple of the skel's own
            KEPT.append(("view", (call.outbufs,)))
        elif how == 9:  # the very view kept (the route keeps its Call for the next call)
            KEPT.append(("view", out))
        return 0

    @method(6)
    def nothing(self, call):
        return 0

    @method(4)
    def later(self, call):
        # writes through whatever an earlier call kept (past this smaller call's packet)
        for kind, k in KEPT:
            if kind == "exporter":
                page = memoryview(k)
                page[2048:] = bytes([EE]) * (len(page) - 2048)
                page.release()
            elif kind == "call":
                v = k.outbufs[0]
                v[:] = bytes([EE]) * len(v)
            elif kind == "ctypes":
                ctypes.memset(ctypes.addressof(k), EE, ctypes.sizeof(k))
            else:
                v = k[0][0] if isinstance(k, tuple) else k
                v[:] = bytes([EE]) * len(v)
        return 0


SKEL = Confined  # (PageSkel is a Skeleton too)
'''


KEEPS = {2, 3, 4, 5, 6, 8, 9}  # the escapes that keep something




def Side(make_soc, tmp_path, monkeypatch, drv, name):
    return RouteSide(make_soc, tmp_path, monkeypatch, drv, name, SKEL, "qdarpc_confined")


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_skel_that_stays_in_its_arguments_lets_the_route_clear_only_its_packet(make_soc, tmp_path, monkeypatch,
                                                                                  drv):
    """The usual loop: each call confined (counted), the page's tail still zero after it."""
    s = Side(make_soc, tmp_path, monkeypatch, drv, "native")
    try:
        s.call(2, 1)  # the lanes, then a route
        r = s.route()
        before = r.confined
        for i in range(5):
            assert s.call(2, i + 2) == bytes([i + 2]) * 8
        assert r.confined - before == 5 and r.served >= 5
        assert s.call(2, 9, nout=1024) == b"\x09" * 1024  # a bigger packet, then a smaller one
        assert s.peek() == 0
    finally:
        s.f.close()


@pytest.mark.parametrize("drv", ["accel", "legacy"])
@pytest.mark.parametrize("how", range(1, 10))
def test_every_way_past_the_arguments_makes_the_next_call_clear_the_page(make_soc, tmp_path, monkeypatch, drv, how):
    """A skel that reaches the page past its arguments (``how``: see the skel's ``escape``), then
    writes through what it kept during a later, smaller call: the call after sees zeros past its
    packet, on both planes; the escaping calls are not counted confined; once the skel lets go,
    its calls are again."""
    seen = {}
    for name in ("native", "py"):
        s = Side(make_soc, tmp_path, monkeypatch, drv, name)
        try:
            r = s.start()  # (the reference plane has no route: its skel skips escape 7)
            before = r.confined if r is not None else 0
            s.call(3, how, nout=1024)
            if r is not None:
                assert r.confined == before, how  # the escape
            s.call(4)
            got = [s.peek()]
            s.call(4)  # again, while the skel still holds what it kept
            got.append(s.peek())
            if r is not None and how in KEEPS:
                assert r.confined == before, how  # nothing is while it holds it
            s.g["KEPT"].clear()
            s.call(2, 1)
            s.call(2, 1)
            got.append(s.peek())
            if r is not None:
                assert r.confined >= before + 1, how  # let go: confined again
            seen[name] = got
        finally:
            s.g["KEPT"].clear()
            s.f.close()
    assert seen["native"] == seen["py"] == [0, 0, 0]



def test_pages_is_a_writable_byte_buffer_of_its_mapping_that_counts_what_is_taken():
    """``qda_core._cdev.Pages``: ``size`` bytes of a mapping from ``offset``, 1-D writable bytes
    and nothing else (no item access), counting buffers taken (``taken``) and held (``live``);
    it holds the mapping (``close()`` refuses while it lives), refuses a range outside it, and
    supports weak references (the arena's test for views still held)."""
    import mmap
    import weakref

    from qda_core._ext import load

    Pages = load("_cdev").Pages
    mm = mmap.mmap(-1, 8192)
    mm[4096:4100] = b"abcd"
    p = Pages(mm, 4096, 4096)
    assert (len(p), p.taken, p.live) == (4096, 0, 0)
    v = memoryview(p)
    assert (v.format, v.ndim, v.readonly, len(v), bytes(v[:4])) == ("B", 1, False, 4096, b"abcd")
    assert (p.taken, p.live) == (1, 1) and v.obj is p
    v[4:8] = b"wxyz"
    assert mm[4100:4104] == b"wxyz"
    w = memoryview(p)
    w.release()
    assert (p.taken, p.live) == (2, 1)
    with pytest.raises(TypeError):
        p[0] = 1  # no item access: a buffer taken is the one way in
    with pytest.raises(BufferError):
        mm.close()  # the pages hold the mapping
    r = weakref.ref(p)
    v.release()
    del p, v, w
    assert r() is None
    mm.close()
    with pytest.raises(ValueError, match="do not fit"):
        Pages(mmap.mmap(-1, 4096), 4096, 1)
    with pytest.raises(ValueError, match="do not fit"):
        Pages(mmap.mmap(-1, 4096), -1)
    with pytest.raises(BufferError):
        Pages(b"read-only")  # a writable mapping only
    assert len(Pages(mmap.mmap(-1, 4096), 1024)) == 3072


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_calls_without_arguments_between_plain_calls_are_judged_with_the_kept_call(make_soc, tmp_path, monkeypatch,
                                                                                    drv):
    """A call without arguments while the route keeps its last plain call's ``Call`` (for the
    next one): confined when nobody else holds that Call's views either; not when the skel kept
    one of them and writes through it in that call (the next, smaller call sees zeros)."""
    s = Side(make_soc, tmp_path, monkeypatch, drv, "native")
    try:
        r = s.start()
        before = r.confined
        for i in range(3):
            s.call(2, i)
            s.call0(6)
        assert r.confined - before == 6
        s.call(3, 9, nout=1024)  # the out view itself kept: not confined
        before = r.confined
        s.call0(4)  # writes through it, without arguments
        assert r.confined == before
        s.g["KEPT"].clear()
        assert s.peek() == 0
    finally:
        s.g["KEPT"].clear()
        s.f.close()
