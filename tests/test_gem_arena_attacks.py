"""Attacks on the GEM arena (qda_core.mem.arena): ways one session, a forked child or a stale
view could reach another object's slot, or lose data across a promotion. Each test is the
regression test of a bug found in review (docs/dataplane.md, "GEM objects: arena slots")."""
from __future__ import annotations

import os
import sys
import textwrap
import threading
import time

import pytest

from qda_core import uapi, vfs, wire
from qda_core.invoke_args import HandleArg
from qda_core.mem import arena, backing
from qda_core.mem.backing import HOST_PAGE_SIZE as PAGE

sys.path.insert(0, os.path.dirname(__file__))
from child_helpers import in_child  # noqa: E402


def _dsp(soc, obj, writable=True) -> memoryview:
    return soc.domain("cdsp").smmu.view(obj.dma_addr, obj.size, writable)


def _poke(soc, obj, data: bytes) -> None:
    v = _dsp(soc, obj)
    v[:len(data)] = data
    v.release()


def _peek(soc, obj, n: int) -> bytes:
    v = _dsp(soc, obj, False)
    try:
        return bytes(v[:n])
    finally:
        v.release()


# --- fork: the arena files are MAP_SHARED memfds a child inherits -------------------------------
def test_a_forked_child_neither_shares_nor_frees_the_parents_slots(soc):
    """Before: the child took slots from the inherited arena files (the same pages as the
    parent's next objects), and closing or promoting an inherited object punched the parent's
    data out of the shared file."""
    f = soc.open_device("cdsp")
    h = f.gem_create(PAGE)
    other = f.gem_create(PAGE)
    obj = f.lookup(h)
    _poke(soc, obj, b"parent")
    _poke(soc, f.lookup(other), b"second")
    off = f.gem_mmap_offset(other)

    def child():
        from qda_core.soc import Soc

        s2 = Soc("default")
        g = s2.open_device("cdsp")
        for _ in range(4):  # the child's own objects, left alive (and written) at its exit
            o = g.lookup(g.gem_create(PAGE))
            s2.domain("cdsp").smmu.view(o.dma_addr, 5, True)[:5] = b"child"
        f.mmap(off, PAGE).release()  # promotes an inherited object in the child
        f.close()  # and frees every inherited one
        return True

    assert in_child(child)
    assert _peek(soc, obj, 6) == b"parent"
    assert _peek(soc, f.lookup(other), 6) == b"second"
    fresh = [f.gem_create(PAGE) for _ in range(4)]
    assert all(_peek(soc, f.lookup(x), 5) == bytes(5) for x in fresh)
    f.close()


# --- a promotion racing the object's free -------------------------------------------------------
@pytest.fixture
def free_during_promotion(monkeypatch):
    """Runs ``action()`` once, in the middle of the next promotion (after the data is copied,
    before the new file is mapped over the slot)."""
    todo: list = []
    real = arena._copy_data

    def copy(*a):
        real(*a)
        while todo:
            todo.pop()()

    monkeypatch.setattr(arena, "_copy_data", copy)
    return todo.append


@pytest.mark.parametrize("how", ["mmap", "prime", "shim"])
def test_an_object_freed_during_its_promotion_never_lands_on_another_sessions_slot(soc, free_during_promotion, how):
    """Before: CPU mapping and PRIME export promoted an object they held no reference to; a
    GEM_CLOSE meanwhile freed its slot, another session's object took it, and the promotion
    then mapped the freed object's file over that object's pages (and punched them): the first
    session's mapping or dma-buf read and wrote the second session's object."""
    f = soc.open_device("cdsp")
    g = soc.open_device("cdsp")
    h = f.gem_create(PAGE)
    g.gem_create(PAGE)  # the arena file stays in use (it is shared by every session)
    off = f.gem_mmap_offset(h)
    theirs = []

    def race():
        f.gem_close(h)
        hb = g.gem_create(PAGE)
        g.gem_mmap_offset(hb)  # may be the fake offset the first file is mapping
        b = g.lookup(hb)
        _poke(soc, b, b"secret")
        theirs.append(b)

    free_during_promotion(race)
    if how == "mmap":
        mine = f.mmap(off, PAGE)
        fd = None
    elif how == "prime":
        fd = f.prime_handle_to_fd(h)
        mine = memoryview(__import__("mmap").mmap(fd, PAGE))
    else:
        key = next(vfs._keys)  # f as an fd the device shim opened
        vfs._files[key] = f
        try:
            fd = vfs.mmap_source(key, off, PAGE, 3)
        finally:
            del vfs._files[key]
        assert fd >= 0
        mine = memoryview(__import__("mmap").mmap(fd, PAGE))
    (b,) = theirs
    assert _peek(soc, b, 6) == b"secret"  # not punched by the other object's promotion
    assert bytes(mine[:6]) != b"secret"
    mine[:4] = b"evil"
    assert _peek(soc, b, 6) == b"secret"  # no alias of the other session's pages
    mm = mine.obj
    mine.release()
    mm.close()
    if fd is not None:
        os.close(fd)
    f.close()
    g.close()


# --- stale views: a freed slot is the next object's ---------------------------------------------
@pytest.mark.parametrize("promoted", [False, True])
def test_a_view_held_past_the_free_never_reaches_the_next_object_in_the_slot(soc, promoted):
    """Before: a freed slot went to the next object at once, whatever still viewed it (a DSP
    module keeping a view of an argument past its call); that view then read and wrote the new
    object, another session's. Now the slot waits until the last such view is gone."""
    f = soc.open_device("cdsp")
    g = soc.open_device("cdsp")
    g.gem_create(PAGE)  # the arena file stays in use
    h = f.gem_create(PAGE)
    obj = f.lookup(h)
    addr = obj.backing.addr
    if promoted:
        f.mmap(f.gem_mmap_offset(h), PAGE).release()
    stale = _dsp(soc, obj)
    f.gem_close(h)
    b = g.lookup(g.gem_create(PAGE))
    _poke(soc, b, b"secret")
    assert b.backing.addr != addr
    assert bytes(stale[:6]) != b"secret"
    stale[:4] = b"evil"
    assert _peek(soc, b, 6) == b"secret"
    stale.release()  # the slot is given back now, zeroed
    again = g.lookup(g.gem_create(PAGE))
    assert again.backing.addr == addr and _peek(soc, again, 4) == bytes(4)
    f.close()
    g.close()


# --- a DMA handle argument is a DSP access as a MAP is ------------------------------------------
SC_TAKE = wire.scalars(2, 0, 0, 1)  # method 2: one in-handle


@pytest.fixture
def writer_skel(monkeypatch, tmp_path):
    """A module whose method 2 writes ``b"during"`` at its in-handle, once ``GO`` is set."""
    mod = sys.modules[__name__]
    monkeypatch.setattr(mod, "INSIDE", threading.Event(), raising=False)
    monkeypatch.setattr(mod, "GO", threading.Event(), raising=False)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    (tmp_path / "libwriter_skel.py").write_text(textwrap.dedent(f"""
        import sys
        from qda_core.dsp import Skeleton, method

        class Writer(Skeleton):
            @method(2, sc={SC_TAKE:#x})
            def take(self, call):
                t = sys.modules[{__name__!r}]
                h = call.inhandles[0]
                t.INSIDE.set()
                t.GO.wait(5)
                call.process.memory.view(h.map_addr, 6, True)[:] = b"during"
                return 0
    """))
    return "file:///libwriter_skel.so?writer_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def test_a_handle_argument_promotes_before_the_dsp_writes(soc, writer_skel, free_during_promotion):
    """Before: an in/out handle naming a GEM object gave the DSP its device address without a
    promotion; a CPU mapping made during the call promoted it under the DSP's writes, which
    went to the arena's copy and were lost."""
    from libadsprpc_compat.remotectl import open_module

    mod = sys.modules[__name__]
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    ret, h_mod = open_module(f, writer_skel)
    assert ret == 0
    h = f.gem_create(PAGE)
    res = []
    t = threading.Thread(target=lambda: res.append(f.invoke(h_mod, SC_TAKE, [HandleArg(h, 0, PAGE)])))
    t.start()
    assert mod.INSIDE.wait(10)
    free_during_promotion(lambda: (mod.GO.set(), time.sleep(0.2)))  # the DSP writes mid-promotion
    cpu = f.mmap(f.gem_mmap_offset(h), PAGE)
    mod.GO.set()
    t.join(10)
    assert res == [0]
    assert bytes(cpu[:6]) == b"during"
    cpu.release()
    f.close()


# --- follow-ups of the review --------------------------------------------------------------------
def test_a_fork_while_another_thread_promotes_leaves_the_child_able_to_promote(soc):
    """Promotions take one module lock, made free again in a forked child: a lock held by a
    thread that does not exist in the child must not hang it."""
    f = soc.open_device("cdsp")
    h = f.gem_create(PAGE)
    off = f.gem_mmap_offset(h)
    held, release = threading.Event(), threading.Event()

    def holder():
        with arena._promoting:  # what a promotion in progress holds
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        def child():
            f.mmap(off, PAGE).release()  # an inherited object, promoted in the child
            return f.lookup(h).backing.promoted

        assert in_child(child) is True
    finally:
        release.set()
        t.join()
    f.close()


def test_a_slot_whose_restore_fails_is_retired_not_reused(soc, monkeypatch):
    """Freeing a promoted object maps the arena back over its slot; if that fails (out of
    mappings) the slot keeps the object's pages, so it is never handed out again, and the
    fd, the charge and the arena file still go."""
    f = soc.open_device("cdsp")
    f.gem_create(PAGE)  # keeps the arena file alive
    h = f.gem_create(PAGE)
    addr = f.lookup(h).backing.addr
    f.mmap(f.gem_mmap_offset(h), PAGE).release()
    fds, pool = len(os.listdir("/proc/self/fd")), backing.pool_used()

    def no_mappings(*a):
        raise OSError(12, "cannot map: out of mappings")

    with monkeypatch.context() as m:
        m.setattr(arena, "_map_over", no_mappings)
        f.gem_close(h)
    assert len(os.listdir("/proc/self/fd")) == fds - 1 and backing.pool_used() == pool - PAGE
    fresh = [f.lookup(f.gem_create(PAGE)).backing.addr for _ in range(8)]
    assert addr not in fresh
    f.close()  # the arena file goes with its last slot, the retired one counted out
    assert arena.stats() == {}


def test_a_reexported_import_is_imported_anew_by_another_file(soc):
    """PRIME: only the device's own objects are found by their file; a dma-buf it imported
    and exports again is a foreign buffer, which another file imports as its own object."""
    fd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, PAGE)
    a = soc.open_device("cdsp")
    ha = a.prime_fd_to_handle(fd)
    again = a.prime_handle_to_fd(ha)
    b = soc.open_device("cdsp")  # same thread: same context bank
    hb = b.prime_fd_to_handle(again)
    assert b.lookup(hb) is not a.lookup(ha) and b.lookup(hb).imported
    for x in (fd, again):
        os.close(x)
    a.close()
    b.close()
