"""The drivers' typed ``invoke(handle, sc, args)`` on its native lane (``accel/_invoke.pyx``,
``legacy/_invoke.pyx``: ``invoke``) against its reference (``_invoke_reference``: the
descriptors pinned, the INVOKE struct issued through ``ioctl()``, the result checked).

Twin SoCs get the same random typed invokes, one through each path, and must answer alike:
return value or exception (type, errno, message), output bytes, ``last_error``, the user copies
taken and the DSP's records. The error paths are checked one by one, with the pins and buffer
holds undone on every exit (docs/dataplane.md).
"""
import ctypes
import errno
import os
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import _marshal as native
from qda_core import dataplane, kernels, marshal, trace, uapi, wire
from qda_core.accel.file import GemRef
from qda_core.invoke_args import HandleArg
from qda_core.legacy.file import DmaBufRef, dmabuf_mmap
from qda_core.uaccess import address

UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
PINS_MAX = 600  # QDA_UACCESS_PINS_MAX (csrc/include/qdarpc/uaccess.h)

TWIN_SKEL = """
from qda_core.dsp import Skeleton, method

class Twin(Skeleton):
    @method(2)
    def mix(self, call):
        # every out-buffer gets a pattern of the in-buffers, and the first in-byte picks the
        # answer: 0, an AEE code, a crash, or a code that reads as a negative errno
        data = b"".join(bytes(b) for b in call.inbufs)
        for j, ob in enumerate(call.outbufs):
            pat = (data + bytes([j + 1, len(call.inhandles)])) * (len(ob) // (len(data) + 2) + 1)
            ob[:] = pat[:len(ob)]
        op = data[0] % 8 if data else 0
        if op == 5:
            return 0x8000040e
        if op == 6:
            raise RuntimeError("the skel fails")
        if op == 7:
            return 0xFFFFFFF0  # -16 as the kernel returns it: the typed call's EBUSY
        return 0
"""
TWIN = "file:///libtwin_skel.so?twin_skel_handle_invoke&_modver=1.0"
SC_MIX = 2 << 24
#: The lanes marshal with the C core: under QDARPC_MARSHAL=py every file takes the reference.
needs_lanes = pytest.mark.skipif(marshal.BACKEND != "c", reason="no native lanes with QDARPC_MARSHAL=py")
KERNELS = [f"accel:{a},legacy:{b}" for a, b in zip(list(kernels.REVISIONS["accel"]) * 2, kernels.REVISIONS["legacy"])]


@pytest.fixture
def twin_path(tmp_path, monkeypatch):
    (tmp_path / "libtwin_skel.py").write_text(TWIN_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


def sc_of(nin, nout, hin=0, hout=0, method=2):
    return method << 24 | nin << 16 | nout << 8 | hin << 4 | hout


class Side:
    """One native SoC with a file per driver, an unsigned PD, the Twin module open and a
    buffer object per driver for by-reference arguments."""

    def __init__(self, make_soc, kernel=None):
        self.soc = make_soc("default", kernel=kernel)
        self.files = {"accel": self.soc.open_device("cdsp"), "legacy": self.soc.open("/dev/fastrpc-cdsp")}
        self.h = {}
        for drv, f in self.files.items():
            assert f._lane.native
            assert f.init_create(attrs=UNSIGNED) == 0
            rv, self.h[drv] = open_module(f, TWIN)
            assert rv == 0
        fa = self.files["accel"]
        self.gem = fa.gem_create(8192)
        self.gem_view = fa.mmap(fa.gem_mmap_offset(self.gem), 8192)
        self.dma_fd = self.files["legacy"].alloc_dma_buff(8192)
        self.dma_view = dmabuf_mmap(self.dma_fd)

    def ref(self, drv, off, n, kind=None):
        kind = kind or drv
        if kind == "accel":
            return GemRef(self.gem, self.gem_view[off:off + n])
        return DmaBufRef(self.dma_fd, self.dma_view[off:off + n])

    def shared(self, drv, off, n):
        return bytes((self.gem_view if drv == "accel" else self.dma_view)[off:off + n])

    def close(self):
        self.gem_view.release()
        self.dma_view.release()
        os.close(self.dma_fd)
        for f in self.files.values():
            f.close()

    def state(self):
        dsp = self.soc.domain("cdsp").dsp
        procs = [(p.channel, p.client_id, p.state, p.invokes, p.modeled_ns, len(p.modules)) for p in dsp.processes()]
        return dsp.stats.snapshot(), procs


def outcome(fn):
    """What a typed call gave: its value, or its exception's type, errno and message."""
    try:
        return ("ret", fn())
    except Exception as exc:  # noqa: BLE001 - the exception is the result compared
        return ("raise", type(exc).__name__, getattr(exc, "errno", None), str(exc))


def typed(f, path):
    return f.invoke if path == "lane" else f._invoke_reference


# --- equivalence ------------------------------------------------------------------------------
buf = st.binary(min_size=0, max_size=200)
step = st.fixed_dictionaries({
    "drv": st.sampled_from(["accel", "legacy"]),
    "handle": st.sampled_from(["ok"] * 6 + ["bogus", "static", "init"]),
    "ins": st.lists(st.tuples(buf, st.sampled_from(["bytes", "bytearray", "memoryview", "ctypes"])), max_size=3),
    "outs": st.lists(st.integers(0, 300), max_size=3),
    "refs_in": st.lists(st.integers(1, 512), max_size=2),
    "ref_out": st.sampled_from([0, 0, 16, 700]),
    "handles": st.lists(st.sampled_from(["none", "buf", "bogus"]), max_size=2),
    "container": st.sampled_from([list, tuple]),
    "bad": st.sampled_from([None] * 8 + ["extra", "missing", "ro-out", "wrong-ref", "not-a-buffer",
                                         "buffer-in-handle-slot", "handle-in-buffer-slot"]),
})


def build(side, s):
    """The typed call of step ``s`` on ``side``: (file, handle, sc, args, out-buffers, plain
    buffers given)."""
    drv = s["drv"]
    f = side.files[drv]
    handle = {"ok": side.h[drv], "bogus": 0x7654_3210, "static": 5, "init": wire.FASTRPC_INIT_HANDLE}[s["handle"]]
    plain = []
    ins = []
    for data, kind in s["ins"]:
        # a ctypes buffer is not vouched for: never pinned, its copies take the checked path
        b = (bytes(data) if kind == "bytes" else (ctypes.c_char * len(data)).from_buffer_copy(data)
             if kind == "ctypes" else bytearray(data))
        plain.append(b)
        ins.append(memoryview(b) if kind == "memoryview" else b)
    refs = [side.ref(drv, 1024 * k, n) for k, n in enumerate(s["refs_in"])]
    outs = [bytearray(n) for n in s["outs"]]
    plain += outs
    out_refs = [side.ref(drv, 4096, s["ref_out"])] if s["ref_out"] else []
    fd = side.gem if drv == "accel" else side.dma_fd
    hs = [HandleArg(-1 if k == "none" else fd if k == "buf" else 0x3F3F, 0, 64 if k != "none" else 0)
          for k in s["handles"]]
    bad = s["bad"]
    if bad == "ro-out" and outs:
        outs[0] = bytes(len(outs[0]))
    elif bad == "wrong-ref" and (refs or out_refs):
        (refs or out_refs)[0] = side.ref(drv, 0, 8, "legacy" if drv == "accel" else "accel")
    elif bad == "not-a-buffer" and ins:
        ins[0] = 12345
    elif bad == "buffer-in-handle-slot" and hs:
        hs[0] = bytearray(8)
    elif bad == "handle-in-buffer-slot" and ins:
        ins[0] = HandleArg(-1)
    args = [*ins, *refs, *outs, *out_refs, *hs]
    sc = sc_of(len(ins) + len(refs), len(outs) + len(out_refs), len(hs))
    if bad == "extra":
        args.append(bytearray(4))
    elif bad == "missing" and args:
        args.pop()
    return f, handle, sc, s["container"](args), outs, plain


def run(side, s, path):
    f, handle, sc, args, outs, plain = build(side, s)
    before = native.copy_stats()
    got = outcome(lambda: typed(f, path)(handle, sc, args))
    after = native.copy_stats()
    copies = (after["memcpy"] - before["memcpy"], after["checked"] - before["checked"])
    for a in args:
        if isinstance(a, memoryview):
            a.release()  # the caller's own export of an argument
    # every exit undoes the pins and lets the buffers go
    for b in plain:
        if len(b):
            assert not native.pinned(address(b), len(b)), s
        if isinstance(b, bytearray):
            b.append(0)  # a held buffer cannot be resized (BufferError)
            b.pop()
    data = b"".join(bytes(b) for b in outs if isinstance(b, bytearray))
    if s["ref_out"]:
        data += side.shared(s["drv"], 4096, s["ref_out"])
    err = f.last_error
    return got, data, copies, (err.errno, err.strerror) if err is not None else None


@needs_lanes
@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_the_lane_answers_as_the_reference(make_soc, twin_path, kernel, steps):
    lane, ref = Side(make_soc, kernel), Side(make_soc, kernel)
    try:
        for s in steps:
            assert run(lane, s, "lane") == run(ref, s, "reference"), s
        assert lane.state() == ref.state()
    finally:
        lane.close()
        ref.close()


# --- error paths ------------------------------------------------------------------------------
@pytest.fixture
def twins(make_soc, twin_path):
    sides = Side(make_soc), Side(make_soc)
    yield sides
    for side in sides:
        side.close()


def both(twins, drv, call):
    """``call(file, handle, invoke)`` through the lane on one twin and the reference on the
    other: both outcomes."""
    return [outcome(lambda side=side, path=path: call(side.files[drv], side.h[drv], typed(side.files[drv], path)))
            for side, path in zip(twins, ("lane", "reference"))]


DRIVERS = ["accel", "legacy"]


@contextmanager
def dsp_taps(twins, make_tap):
    """Each twin's DSP ``receive`` replaced by ``make_tap(side, receive)`` for the block (put
    back before the twins' files close, whose release messages the DSP receives too)."""
    mp = pytest.MonkeyPatch()
    try:
        for side in twins:
            dsp = side.soc.domain("cdsp").dsp
            mp.setattr(dsp, "receive", make_tap(side, dsp.receive))
        yield
    finally:
        mp.undo()


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_wrong_argument_count_is_einval_with_nothing_left_pinned(twins, drv):
    held = bytearray(b"\x01" * 32)
    lane, ref = both(twins, drv, lambda f, h, inv: inv(h, sc_of(2, 0), [held]))
    assert lane == ref == ("raise", "OSError", errno.EINVAL,
                           "[Errno 22] Invalid argument (EINVAL): scalars 0x02020000 declare 2 arguments, got 1")
    assert not native.pinned(address(held), 32)
    held.extend(b"more")  # released


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_read_only_out_buffer_is_a_type_error(twins, drv):
    held = bytearray(b"\x01" * 16)
    lane, ref = both(twins, drv, lambda f, h, inv: inv(h, sc_of(1, 1), (held, b"read-only")))
    assert lane == ref == ("raise", "TypeError", None, "out-buffer 0 must be writable")
    assert not native.pinned(address(held), 16)
    held.extend(b"more")  # the in-buffer taken before the error was let go


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_the_other_drivers_buffer_reference_is_refused(twins, drv):
    other = {"accel": "DmaBufRef", "legacy": "GemRef"}[drv]
    mine = {"accel": "GemRef", "legacy": "DmaBufRef"}[drv]

    def call(f, h, inv):
        side = twins[0] if f is twins[0].files[drv] else twins[1]
        return inv(h, sc_of(1, 0), [side.ref(drv, 0, 8, "legacy" if drv == "accel" else "accel")])
    lane, ref = both(twins, drv, call)
    assert lane == ref == ("raise", "TypeError", None, f"argument 0: this driver takes {mine}, not {other}")


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_handle_slots_and_non_buffers(twins, drv):
    for args, sc in (([bytearray(4)], sc_of(0, 0, 1)), ([object()], sc_of(1, 0)), ([HandleArg(-1)], sc_of(1, 0))):
        lane, ref = both(twins, drv, lambda f, h, inv: inv(h, sc, args))
        assert lane == ref and lane[1] == "TypeError", (lane, ref)


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_closed_file_answers_ebadf(twins, drv):
    for side in twins:
        side.files[drv].close()
    lane, ref = both(twins, drv, lambda f, h, inv: inv(h, sc_of(1, 1), [b"\x00", bytearray(4)]))
    assert lane == ref and lane[:3] == ("raise", "OSError", errno.EBADF)
    # the argument checks come first, as before
    lane, ref = both(twins, drv, lambda f, h, inv: inv(h, sc_of(1, 1), [b"\x00"]))
    assert lane == ref and lane[:3] == ("raise", "OSError", errno.EINVAL)


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_file_closed_during_its_invoke_is_released_when_the_invoke_returns(twins, drv):
    seen = []

    def make_tap(side, receive):
        f = side.files[drv]

        def tap(*a, **kw):
            if not f.closed:
                f.close()  # the invoke in flight holds its reference: no release yet
                seen.append(f._lane.released)
            return receive(*a, **kw)
        return tap
    outs = [bytearray(4), bytearray(4)]
    with dsp_taps(twins, make_tap):
        lane, ref = (outcome(lambda side=side, path=path, out=out: typed(side.files[drv], path)(
            side.h[drv], sc_of(1, 1), [b"\x03", out])) for side, path, out in zip(twins, ("lane", "reference"), outs))
    assert lane == ref == ("ret", 0) and outs[0] == outs[1] == b"\x03\x01\x00\x03"
    assert seen == [False, False] and all(side.files[drv]._lane.released for side in twins)


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_an_exception_out_of_the_call_undoes_the_pins(twins, drv):
    class Boom(Exception):
        pass

    def make_tap(side, receive):
        def tap(*a, **kw):
            raise Boom("from the DSP side")
        return tap
    held = bytearray(b"\x02" * 64)
    out = bytearray(8)
    seen = []

    def call(f, h, inv):
        try:
            return inv(h, sc_of(1, 1), [held, out])
        finally:
            seen.append(native.pinned(address(held), 64))
    with dsp_taps(twins, make_tap):
        lane, ref = both(twins, drv, call)
    assert lane == ref and lane[:2] == ("raise", "Boom"), lane
    assert seen == [False, False]
    held.extend(b"x")
    out.extend(b"x")


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_failing_calls_leave_no_pins_behind(twins, drv):
    """More failing calls than a thread can hold pins: a later call still copies by memcpy."""
    side = twins[0]
    f, h = side.files[drv], side.h[drv]
    src = bytearray(b"\x01" * 64)
    for i in range(PINS_MAX + 10):
        if i % 3 == 0:
            with pytest.raises(TypeError):  # after the in-buffer was held
                f.invoke(h, sc_of(1, 1), [src, b"ro"])
        elif i % 3 == 1:
            with pytest.raises(OSError):    # EINVAL from the checks
                f.invoke(h, sc_of(2, 1), [src, bytearray(4)])
        else:                               # the DSP's failure, after the pins were taken
            assert f.invoke(0x7654_3210, sc_of(1, 1), [src, bytearray(4)]) != 0
    out = bytearray(64)
    before = native.copy_stats()
    assert f.invoke(h, sc_of(1, 1), [src, out]) == 0
    after = native.copy_stats()
    assert after["memcpy"] - before["memcpy"] >= 3 and after["checked"] == before["checked"]
    assert out[:2] == b"\x01\x01"


def _events(rec):
    """The trace's events without what differs between two SoCs (times, addresses)."""
    keep = []
    for e in rec.events:
        e = {k: v for k, v in e.items() if k not in ("ts", "dur", "t0", "t1", "modeled_ns")}
        if "fields" in e:
            e["fields"] = {k: v for k, v in e["fields"].items() if k != "args"}
        keep.append(e)
    return keep


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_traced_call_records_the_reference_steps(twins, drv):
    recs, outs = [], []
    for side, path in zip(twins, ("lane", "reference")):
        out = bytearray(6)
        with trace.recording() as rec:
            got = outcome(lambda side=side, path=path, out=out: typed(side.files[drv], path)(
                side.h[drv], sc_of(1, 1), [b"\x02\x03", out]))
            bad = outcome(lambda side=side, path=path: typed(side.files[drv], path)(side.h[drv], sc_of(1, 0), []))
        recs.append((got, bad, _events(rec)))
        outs.append(bytes(out))
    assert recs[0] == recs[1]
    got, bad, events = recs[0]
    assert got == ("ret", 0) and bad[:3] == ("raise", "OSError", errno.EINVAL)
    inv = [e for e in events if e["kind"] == "ioctl" and e["name"].endswith("INVOKE")]
    assert len(inv) == 1 and inv[0]["fields"]["handle"] == twins[0].h[drv] and inv[0]["copied"] == 2 + 6
    assert outs[0] == outs[1] == b"\x02\x03\x01\x00\x02\x03"


# --- which path serves ------------------------------------------------------------------------
@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_the_lane_serves_the_common_call_and_hands_the_rest_to_the_reference(twins, drv, monkeypatch):
    side = twins[0]
    f, h = side.files[drv], side.h[drv]
    taken = []
    orig = type(f)._invoke_reference

    def reference(self, *a):
        taken.append(a[1:])
        return orig(self, *a)
    monkeypatch.setattr(type(f), "_invoke_reference", reference)
    out = bytearray(4)
    assert f.invoke(h, sc_of(1, 1), [b"\x01", out]) == 0
    assert f.invoke(h, sc_of(1, 1), (b"\x01", out)) == 0
    assert f.invoke(h, SC_MIX) == 0
    assert f.invoke(handle=h, sc=SC_MIX, args=[]) == 0
    assert taken == []

    class Handle(int):
        pass
    assert f.invoke(Handle(h), SC_MIX) == 0                 # an int subclass: struct converts it
    with pytest.raises(TypeError):
        f.invoke(h, sc_of(1, 1), (a for a in [b"\x01", out]))  # no len(): the reference's error
    assert f.invoke(h, SC_MIX, []) == 0 and len(taken) == 2
    with pytest.raises(struct.error):
        f.invoke(1 << 32, SC_MIX)                           # struct's range error
    with pytest.raises(OSError):
        f.invoke(h, -1)                                     # not a u32: descriptors()' errors
    assert len(taken) == 4


@needs_lanes
def test_accel_v1_exports_gem_references_through_the_reference(make_soc, twin_path, monkeypatch):
    side = Side(make_soc, "accel:qda-v1-2026-05")
    try:
        f, h = side.files["accel"], side.h["accel"]
        assert f.uapi.fd_kind != "gem-handle"
        taken = []
        orig = type(f)._invoke_reference
        monkeypatch.setattr(type(f), "_invoke_reference", lambda self, *a: taken.append(1) or orig(self, *a))
        side.gem_view[:4] = b"\x04\x05\x06\x07"
        out = bytearray(6)
        assert f.invoke(h, sc_of(1, 1), [side.ref("accel", 0, 4), out]) == 0 and taken == [1]
        assert out == b"\x04\x05\x06\x07\x01\x00"
        assert f.invoke(h, sc_of(1, 1), [b"\x04", out]) == 0 and taken == [1]  # no GemRef: the lane
    finally:
        side.close()


@pytest.mark.parametrize("drv", DRIVERS)
def test_a_file_on_the_python_data_plane_takes_the_reference(make_soc, twin_path, monkeypatch, drv):
    monkeypatch.setenv(dataplane.ENV, "py")
    soc = make_soc("default")
    f = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
    try:
        assert not f._lane.native
        assert f.init_create(attrs=UNSIGNED) == 0
        taken = []
        orig = type(f)._invoke_reference
        monkeypatch.setattr(type(f), "_invoke_reference", lambda self, *a: taken.append(1) or orig(self, *a))
        rv, h = open_module(f, TWIN)
        out = bytearray(3)
        assert rv == 0 and f.invoke(h, sc_of(1, 1), [b"\x01", out]) == 0 and out == b"\x01\x01\x00"
        assert len(taken) == 2
    finally:
        f.close()


@needs_lanes
@pytest.mark.parametrize("drv", DRIVERS)
def test_a_subclass_keeps_its_own_ioctl(make_soc, twin_path, drv):
    """A subclass of a driver's file may wrap ``ioctl()``: its typed invoke goes through it."""
    soc = make_soc("default")
    base = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
    seen = []

    class Watched(type(base)):
        def ioctl(self, request, arg=None):
            seen.append(request)
            return super().ioctl(request, arg)
    base.__class__ = Watched
    try:
        assert base.init_create(attrs=UNSIGNED) == 0
        rv, h = open_module(base, TWIN)
        out = bytearray(3)
        assert rv == 0 and base.invoke(h, sc_of(1, 1), [b"\x01", out]) == 0 and out == b"\x01\x01\x00"
        assert len(seen) == 3 and seen[-1] == base._lane.invoke_request
    finally:
        base.__class__ = type(base).__mro__[1]
        base.close()


@pytest.mark.parametrize("drv", DRIVERS)
def test_driver_files_keep_their_lane_in_the_c_core(make_soc, drv):
    """``DriverFile`` derives from ``_engine.FileCore``: ``_lane`` is a typed C field (the ioctl
    entries read it without a lookup), None before ``__init__`` set it, a FileLane only."""
    from qda_core._engine import FileCore, FileLane
    from qda_core.driver_file import DriverFile

    soc = make_soc("default")
    f = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
    try:
        assert isinstance(f, FileCore) and issubclass(DriverFile, FileCore)
        assert type(f._lane) is FileLane and not f.closed
        with pytest.raises(TypeError):
            f._lane = object()
        with pytest.raises(TypeError):
            f._lane = None
        with pytest.raises(AttributeError):
            del f._lane
        with pytest.raises(AttributeError):
            FileCore()._lane
        bare = type(f).__new__(type(f))  # (no __init__: no lane; its ioctl raises, as it did)
        assert bare.closed
        with pytest.raises(AttributeError, match="_lane"):
            bare.ioctl(f._lane.invoke_request, bytearray(16))
        with pytest.raises(AttributeError, match="_lane"):
            bare.invoke(1, 0x02000000, ())
        assert DriverFile.__new__(DriverFile).closed
    finally:
        f.close()
    assert f.closed and f.ioctl(f._lane.invoke_request, bytearray(16)) < 0  # EBADF, as before
