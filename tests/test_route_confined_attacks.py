"""An attacker's review of QDA_EP_CONFINED (docs/dataplane.md "Routes"): a Python skel writes into
the route's page past its arguments at a moment the check after its call does not watch - through
a weak reference, from a finalizer run when its Call goes, in a call without arguments or in one
served in another buffer - and the next call of the route must still see zeros past its packet,
as the reference plane does. Each failed before the fix (route_clean, the weak reference checks,
calls without arguments shown the page). Out of scope, as ctypes and the garbage collector's
object lists are: a skel importing the emulator's host modules (qda_core.mem.backing's table of
mappings reaches the page's mmap itself)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import PAGE_SKEL_PRELUDE, RouteSide  # noqa: E402

SKEL = PAGE_SKEL_PRELUDE + r'''
import gc

WR = []       # weak references to the page's exporter (a weakref holds no reference)
KEEP = []     # strong ones




def _scribble():
    # writes 0xEE over the upper half of every page kept weakly (taken += 1, but outside the
    # window a route's check watches), or strongly (then let go)
    for r in WR + [lambda p=p: p for p in KEEP]:
        p = r()
        if p is not None:
            mv = memoryview(p)
            mv[2048:4096] = bytes([EE]) * 2048
            mv.release()
    KEEP.clear()


class Boom:
    """Held by the Call only: dies when the Call does, after DspRoute._confined ran."""
    def __del__(self):
        _scribble()


OLD = []
DEV = [0]  # the route's page (its device address; 0 on the reference plane: no write)


class Writer:
    def __init__(self, process):
        self.process = process

    def __del__(self):
        if DEV[0]:
            mv = self.process.memory.view(DEV[0], 4096, True)
            mv[2048:4096] = bytes([EE]) * 2048
            mv.release()


class Attack(PageSkel):
    @method(3)
    def stash(self, call):
        # a weak reference to the exporter: no buffer taken, refcount unchanged -> confined
        WR.append(weakref.ref(call.outbufs[0].obj))
        return 0

    @method(4)
    def scribble(self, call):
        # (served outside the route's window: a call in another buffer, or without arguments)
        _scribble()
        return 0


    @method(6)
    def finalizer(self, call):
        # a weak reference, and an object of the skel's left in the Call (not its tuples): the
        # route does not keep such a Call (DspRoute._keep), so it is freed - after the check
        WR.append(weakref.ref(call.outbufs[0].obj))
        call.handle = Boom()
        return 0

    @method(9)
    def finalizer_smmu(self, call):
        # an object of the skel's left in the Call, holding only its process: when the Call
        # goes (after the check), a view through the PD's memory writes the page
        call.handle = Writer(call.process)
        return 0

    @method(10)
    def arm(self, call):
        # a weak reference with a callback to the route's own out view (this call is not
        # confined); the callback runs when the route drops its spare Call - inside the next
        # call with another layout, before its skel
        proc = call.process

        def cb(_r, proc=proc):
            if DEV[0]:
                mv = proc.memory.view(DEV[0], 4096, True)
                mv[2048:4096] = bytes([EE]) * 2048
                mv.release()
        WR.append(weakref.ref(call.outbufs[0], cb))
        return 0

    @method(11)
    def cycle(self, call):
        # nothing of the page kept: a garbage cycle whose finalizer holds only the process, the
        # collector's threshold set so the collection comes while the next call's views are made
        proc = call.process

        class W:
            def __del__(self, proc=proc):
                if DEV[0]:
                    mv = proc.memory.view(DEV[0], 4096, True)
                    mv[2048:4096] = bytes([EE]) * 2048
                    mv.release()
                gc.set_threshold(*OLD)
        w = W()
        w.me = w
        del w
        OLD[:] = gc.get_threshold()
        gc.set_threshold(gc.get_count()[0] + int(call.inbufs[0][0]))
        return 0

    @method(12)
    def many(self, call):
        return 0

    @method(8)
    def keep(self, call):
        KEEP.append(call.outbufs[0].obj)  # (not confined: the exporter is held)
        return 0


SKEL = Attack  # (PageSkel is a Skeleton too)
'''




URI = "file:///libqdarpc_attack_skel.so?qdarpc_attack_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def Side(make_soc, tmp_path, monkeypatch, drv, name):
    return RouteSide(make_soc, tmp_path, monkeypatch, drv, name, SKEL, "qdarpc_attack")


def _run(make_soc, tmp_path, monkeypatch, drv, steps):
    seen = {}
    for name in ("native", "py"):
        s = Side(make_soc, tmp_path, monkeypatch, drv, name)
        try:
            r = s.start()
            before = r.confined if r is not None else 0
            steps(s)
            seen[name] = (s.peek(), (r.confined - before) if r is not None else None)
        finally:
            s.g["WR"].clear()
            s.g["KEEP"].clear()
            s.f.close()
    # the reference sees zeros past its packet; so must the route
    assert seen["native"][0] == seen["py"][0] == 0, seen


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_weakref_then_write_from_a_call_in_another_buffer(make_soc, tmp_path, monkeypatch, drv):
    """Call N keeps a weak reference to view.obj (confined: nothing held, nothing taken); a
    call too big for the route's page (served in a buffer the pool lends, so the route's
    dirty mark is untouched) writes into the route's page through it; the next routed call
    clears only up to the previous packet's end."""
    def steps(s):
        s.call(3)                 # stash (confined)
        s.call(4, nout=8192)      # scribble, in another message buffer
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_weakref_then_write_from_a_call_without_arguments(make_soc, tmp_path, monkeypatch, drv):
    """A call without arguments on the same route: the engine marks the page clean past the
    metadata (_scrub(self.size, False)) whatever the skel did, and ignores the DSP's verdict."""
    def steps(s):
        s.call(3)                 # stash (confined)
        s.call0(4)                # scribble, no arguments: the route's page, dirty = metadata
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_strong_ref_then_write_from_a_call_without_arguments(make_soc, tmp_path, monkeypatch, drv):
    """Same without any weakref: the exporter held strongly (call N not confined), the write
    made in a zero-argument call (pre-existing: not the confinement check's)."""
    def steps(s):
        s.call(8)                 # keep view.obj (not confined: the route clears the page next)
        s.call0(4)                # scribble through it and let go, in a call without arguments
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_finalizer_of_an_object_left_in_the_call_runs_after_the_check(make_soc, tmp_path, monkeypatch, drv):
    """One call: a weakref to view.obj and an object with __del__ stored in call.handle. The
    check passes (the Call's refcount is 1, its tuples/views untouched); _keep then drops the
    Call, whose field's finalizer writes the page; the next call sees it."""
    def steps(s):
        s.call(6)
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_finalizer_writing_through_the_pds_memory_after_the_check(make_soc, tmp_path, monkeypatch, drv):
    """One call leaves an object holding its process in the Call; when the Call goes (after the
    check said confined) it writes the page through a view of the PD's memory. Only the look
    before the next call (route_clean: the PD memory's views_made moved) catches it."""
    def steps(s):
        s.call(9)
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_weak_references_callback_run_by_the_next_call_before_its_skel(make_soc, tmp_path, monkeypatch, drv):
    """(a second review) A weak reference's callback on the route's spare view writes the page
    while the next call (another layout) drops that spare, before its skel: its counts are
    read when the message reaches the DSP's part, so it is not counted confined."""
    def steps(s):
        s.call(10)
        s.call(2, 1, nout=16)
    _run(make_soc, tmp_path, monkeypatch, drv, steps)


@pytest.mark.parametrize("slack", [2, 4])
def test_a_finalizer_collected_while_the_next_calls_views_are_made(make_soc, tmp_path, monkeypatch, slack):
    """(a second review) A garbage cycle's finalizer, run by a collection while the next call's
    eight views are made, writes the page through the PD's memory: not counted confined."""
    import gc

    old = gc.get_threshold()

    def steps(s):
        s.call(11, slack)
        outs = [bytearray(8) for _ in range(8)]
        assert s.f.invoke(s.h, 12 << 24 | 1 << 16 | 8 << 8, [bytes(8)] + outs) == 0
        s.call(2, 1)
    try:
        _run(make_soc, tmp_path, monkeypatch, "accel", steps)
    finally:
        gc.set_threshold(*old)


_SIGBUS_SCRIPT = r'''
import mmap, os, sys, tempfile
os.environ["DSP_LIBRARY_PATH"] = sys.argv[1]
from qda_core._ext import load
from qda_core._marshal import vouches
from qda_core import uapi
from libadsprpc_compat.remotectl import open_module
from qda_core.soc import Soc as make_soc
Pages = load("_cdev").Pages
fd, path = tempfile.mkstemp()
os.ftruncate(fd, 8192)
mm = mmap.mmap(fd, 8192)
p = Pages(mm)
print("vouches(mmap of a file)", vouches(mm), "vouches(Pages of it)", vouches(memoryview(p)), flush=True)
soc = make_soc("default")
f = soc.open_device("cdsp")
assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
rv, h = open_module(f, sys.argv[2])
assert rv == 0
os.ftruncate(fd, 0)  # the caller's file shrinks under its mapping
for buf in (memoryview(mm)[:8], memoryview(p)[:8]):
    try:
        f.invoke(h, 2 << 24 | 1 << 16 | 1 << 8, [buf, bytearray(8)])
        print("served", flush=True)
    except OSError as exc:
        print("errno", exc.errno, flush=True)
'''


def test_pages_over_a_callers_file_mapping_vouches_and_the_copy_faults(tmp_path):
    """A ``qda_core._cdev.Pages`` vouches for its memory only as its mapping does (anyone can
    wrap a file's mapping in one): before, a truncated file's mapping wrapped in Pages took the
    unchecked memcpy and SIGBUS killed the process; now both get EFAULT."""
    import subprocess
    (tmp_path / "libqdarpc_attack_skel.py").write_text(SKEL)
    script = tmp_path / "sigbus.py"
    script.write_text(_SIGBUS_SCRIPT)
    p = subprocess.run([sys.executable, str(script), str(tmp_path), URI],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.count("errno 14") == 2, (p.returncode, p.stdout)
