"""An attacker's review of the argument views the DSP's lane hands a Python skel (commit 1f6bcb9:
``DevMemory.base``, ``_marshal._sub_view`` narrowing a new view of the message buffer's own
view in C, ``decode_views_raw`` filling the skel's tuples directly).

Checked: crafted payloads (arguments overlapping, at and past the payload's end, before it,
zero-length, by reference, the payload at an offset in its buffer, 255 in-buffers) give the
skel views of exactly its arguments, identical in all it can observe to the reference's
(``EmulatedDsp.receive``) and writes through out-buffers land only there; in-buffers resist
every way of writing through them the view itself offers; the views a skel keeps after its
call stay valid (the mapping kept, not reused) after the file is closed or the pool evicts the
buffer, and let it go once dropped; the skel's tuples are never the shared empty tuple, hold
no None, and no reference to a view or tuple is leaked or lost; both data planes
(``QDARPC_DATAPLANE``) show a skel the same views for the same invokes.

The review found three faults, each fixed and guarded here: the skel's tuples were visible to
Python code (a DeviceMemory's view of a by-reference buffer) while a slot still held None (now
lists are filled and frozen after every view, as the reference does); a Python subclass of
the SMMU overriding ``view`` was no longer asked for the payload (such a memory now takes the
Python path); a user DeviceMemory's non-'B' or non-1-D views reached the skel as they were (now
cast to bytes, as the reference casts them). The others guard a property that was attacked and
held.
"""
from __future__ import annotations

import ctypes
import gc
import os
import struct
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi, wire
from qda_core.accel.file import GemRef

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import SIDS, Client, FakeMemory, RefBuffers, Shared, build_payload, plane  # noqa: E402

PAGE = 4096
SKEL = """
from qda_core.dsp import Skeleton, method

HOOK = []   # callables run with the Call, in order (set by the test)


class Vatk(Skeleton):
    @method(3)
    def look(self, call):
        for h in HOOK:
            h(call)
        return 0
"""
URI = "file:///libvatk_skel.so?vatk_skel_handle_invoke&_modver=1.0"


def sc_of(nin, nout, method=3):
    return method << 24 | nin << 16 | nout << 8


def traits(v: memoryview) -> tuple:
    """Everything a skel can observe of a view without writing through it."""
    t = (type(v), bytes(v), v.readonly, v.format, v.itemsize, v.ndim, v.shape, v.strides, v.nbytes, len(v),
         v.c_contiguous, v.f_contiguous, v.contiguous, v.suboffsets, type(v.obj))
    try:
        t += (hash(v),)
    except (TypeError, ValueError) as exc:
        t += (type(exc), str(exc))
    if len(v) % 4 == 0:
        t += (v.cast("I").tolist(),)
    return t


class Session:
    """An accel (or legacy) file with a PD and the Vatk skel open: its hook list, the PD, the
    DSP's lane, and a count of the messages the reference's ``_resolve`` served."""

    def __init__(self, soc, legacy=False):
        self.soc = soc
        self.f = soc.open("/dev/fastrpc-cdsp") if legacy else soc.open_device("cdsp")
        assert self.f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        rv, self.h = open_module(self.f, URI)
        assert rv == 0
        self.dsp = soc.domain("cdsp").dsp
        self.proc = next(p for p in self.dsp._procs.values() if self.h in p.modules)
        self.hooks = type(self.proc.modules[self.h].impl.skel).look.__globals__["HOOK"]
        d = vars(self.dsp)
        if "_resolve" not in d:  # an instance attribute (one per DSP): the lane does not look at it
            real, count = self.dsp._resolve, [0]

            def counting(*a):
                count[0] += 1
                return real(*a)

            counting.count = count
            d["_resolve"] = counting
        self._count = d["_resolve"].count

    @property
    def resolved(self):
        """Messages the reference's ``_resolve`` viewed so far (any file of this DSP)."""
        return self._count[0]

    def close(self):
        self.hooks.clear()
        vars(self.dsp).pop("_resolve", None)
        self.f.close()


@pytest.fixture
def skel_dir(tmp_path, monkeypatch):
    (tmp_path / "libvatk_skel.py").write_text(SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    return tmp_path


@pytest.fixture
def sess(make_soc, skel_dir):
    s = Session(make_soc("default"))
    try:
        yield s
    finally:
        s.close()


# --- crafted payloads: the lane's views against the reference's --------------------------------

def craft(view, off, bufs, handles=()):
    """Write at ``view[off:]`` a payload whose buffers are ``bufs`` ((device address, length),
    a None address for a buffer without a page) and handles ``handles`` ((fd, offset, length,
    map address, map size))."""
    n = len(bufs) + len(handles)
    for i, (addr, length) in enumerate(bufs):
        struct.pack_into("<QQ", view, off + 16 * i, 0, length)
        struct.pack_into("<II", view, off + 16 * n + 8 * i, 0 if addr is None else 1, i)
        struct.pack_into("<QQ", view, off + 24 * n + 16 * i, addr or 0, length)
    for j, (fd, offset, length, map_addr, map_size) in enumerate(handles, start=len(bufs)):
        struct.pack_into("<iII", view, off + 16 * j, fd, offset, length)
        struct.pack_into("<II", view, off + 16 * n + 8 * j, 1, j)
        struct.pack_into("<QQ", view, off + 24 * n + 16 * j, map_addr, map_size)


class Crafted:
    """Messages crafted in an 8-page GEM object of an accel session, sent straight to the DSP's
    lane and to the reference (``EmulatedDsp.receive``, as the lane's fallback sends them)."""

    def __init__(self, s: Session):
        self.s = s
        f = s.f
        self.size = 8 * PAGE
        self.g = f.gem_create(self.size)
        self.other = f.gem_create(2 * PAGE)
        self.obj, self.oobj = f.lookup(self.g), f.lookup(self.other)
        self.lane = f.device.fastrpc.channel._remote._lane
        self.origin = wire.Origin(s.proc.client_id, f._origin(False).sids, False)
        self.ctx = 0x100

    def close(self):
        self.s.f.gem_close(self.g)
        self.s.f.gem_close(self.other)

    def memory(self):
        return bytes(self.obj.backing.view) + bytes(self.oobj.backing.view)

    def restore(self, data):
        n = self.size
        self.obj.backing.view[:] = data[:n]
        self.oobj.backing.view[:] = data[n:]

    def where(self, addr):
        """The offset in memory() of a device address in one of the two objects."""
        for o, base in ((self.obj, 0), (self.oobj, self.size)):
            if o.dma_addr <= addr < o.dma_addr + o.size:
                return base + addr - o.dma_addr
        raise AssertionError(f"{addr:#x} in neither object")

    def send(self, sc, addr, size, native):
        self.ctx += 0x10
        if native:
            replied, reference, ctx, rv = self.lane.receive(self.s.proc.client_id, 1, self.ctx, self.s.h, sc, addr,
                                                            size, self.origin)
            assert replied and ctx == self.ctx
            return rv, reference
        got = []
        msg = wire.MSG.pack(self.s.proc.client_id, 1, self.ctx, self.s.h, sc, addr, size)
        self.s.dsp.receive(msg, got.append, self.lane.channel, self.origin)
        ctx, rv = wire.RSP.unpack(got[0])
        assert ctx == self.ctx
        return rv, True


@pytest.fixture
def crafted(sess):
    c = Crafted(sess)
    try:
        yield c
    finally:
        c.close()


KINDS = ("inside", "at-end", "straddle", "before", "past", "other", "zero", "nopage")


def _place(c: Crafted, moff, psz, meta, kind, a, length):
    """A buffer of ``kind`` for a payload at ``[moff, moff + psz)`` of the message object."""
    dev, odev = c.obj.dma_addr, c.oobj.dma_addr
    if kind == "zero":
        return dev + moff + a % (psz + 1), 0
    if kind == "nopage":
        return None, 0
    if kind == "inside":
        start = meta // 2 + a % (psz - meta // 2)
        return dev + moff + start, 1 + length % (psz - start)
    if kind == "at-end":
        return dev + moff + psz, 1 + length % (c.size - moff - psz)
    if kind == "straddle":
        start = psz - 1 - a % min(psz - 1, 64)
        return dev + moff + start, (psz - start) + 1 + length % (c.size - moff - psz)
    if kind == "before":
        start = a % moff
        return dev + start, 1 + length % (moff - start)
    if kind == "past":
        start = moff + psz + a % (c.size - moff - psz)
        return dev + start, 1 + length % (c.size - start)
    start = a % (2 * PAGE)
    return odev + start, 1 + length % (2 * PAGE - start)


arg = st.tuples(st.sampled_from(KINDS), st.integers(0, 1 << 16), st.integers(0, 1 << 16))
handle = st.tuples(st.integers(-1, 64), st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1),
                   st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ins=st.lists(arg, max_size=5), outs=st.lists(arg, max_size=5), moff=st.integers(1, PAGE),
       extra=st.integers(0, PAGE), seed=st.binary(min_size=8, max_size=8),
       hin=st.lists(handle, max_size=2), hout=st.lists(handle, max_size=2))
def test_crafted_payloads_give_the_references_views_and_only_their_bytes(crafted, ins, outs, moff, extra, seed,
                                                                          hin, hout):
    """Arguments anywhere a payload can point (in it, overlapping, at or across its end, before
    it in the same buffer, in another object, empty, without a page), the payload at any offset
    in its buffer, handles after them: the lane serves the call itself, its views (and handles)
    are exactly the reference's in everything the skel can observe (and the call's statistics,
    bytes and modeled time, the reference's), each view is ``length``
    bytes of the argument's own address, and what the skel writes through its out-buffers
    lands exactly there."""
    c = crafted
    n = len(ins) + len(outs) + len(hin) + len(hout)
    meta = wire.metadata_size(n)
    psz = meta + extra + 2
    moff = min(moff, c.size - 1 - psz)
    kinds = [k if k != "before" or moff > 0 else "inside" for k, _, _ in ins + outs]
    bufs = [_place(c, moff, psz, meta, k, a, n_) for k, (_, a, n_) in zip(kinds, ins + outs)]
    # fresh random bytes everywhere, then the payload's metadata over them
    total = c.size + 2 * PAGE
    pattern = (seed * (total // 8 + 1))[:total]
    pattern = bytes((b + i) & 0xFF for i, b in enumerate(pattern))
    c.restore(pattern)
    craft(c.obj.backing.view, moff, bufs, hin + hout)
    before = c.memory()
    nin = len(ins)
    sc = sc_of(nin, len(outs)) | len(hin) << 4 | len(hout)
    seen = {}

    def look(call):
        assert len(call.inbufs) == nin and len(call.outbufs) == len(outs)
        assert list(call.inhandles) == hin and list(call.outhandles) == hout
        seen["views"] = [traits(v) for v in call.inbufs + call.outbufs]
        for j, ob in enumerate(call.outbufs):  # in order: overlapping ones, the last write wins
            ob[:] = bytes([0xC0 + j]) * len(ob)

    c.s.hooks[:] = [look]
    results = {}
    for native in (True, False):
        c.restore(before)
        resolved = c.s.resolved
        stats = c.s.dsp.stats.snapshot()
        rv, reference = c.send(sc, c.obj.dma_addr + moff, psz, native)
        assert rv == 0 and c.s.proc.state == "alive"
        if native:
            assert not reference and c.s.resolved == resolved  # served by the lane itself
        now = c.s.dsp.stats.snapshot()
        results[native] = seen.pop("views"), c.memory(), {k: now[k] - stats[k] for k in now}
    c.s.hooks.clear()
    assert results[True] == results[False]  # views, memory after, statistics (bytes, modeled time)
    views, after, _ = results[True]
    expect = bytearray(before)
    for i, ((addr, length), t) in enumerate(zip(bufs, views)):
        assert t[9] == length  # len(view)
        if length:
            at = c.where(addr)
            assert t[1] == before[at:at + length]
            assert t[2] == (i < nin)
            if i >= nin:
                expect[at:at + length] = bytes([0xC0 + i - nin]) * length
    assert after == bytes(expect)


def test_255_in_and_255_out_buffers_of_every_kind(crafted):
    """The most buffers a scalars word holds, each in the payload, by reference or empty, the
    by-reference ones in both tuples: the lane serves the call, every view is the reference's."""
    c = crafted
    n = 510
    meta = wire.metadata_size(n)
    assert meta + 2 * 255 < c.size - 128
    dev, odev = c.obj.dma_addr, c.oobj.dma_addr
    bufs = []
    for i in range(n):
        k = i % 3
        bufs.append((dev + 64 + meta + (i % 255) * 2, 1 + i % 2) if k == 0 else
                    (odev + 8 * i, 1 + i % 7) if k == 1 else (None, 0))
    c.restore(bytes(range(256)) * ((c.size + 2 * PAGE) // 256))
    craft(c.obj.backing.view, 64, bufs)
    before = c.memory()
    seen = {}

    def look(call):
        assert all(v is not None for v in call.inbufs + call.outbufs)
        seen["views"] = [traits(v) for v in call.inbufs + call.outbufs]

    c.s.hooks[:] = [look]
    got = {}
    for native in (True, False):
        c.restore(before)
        resolved = c.s.resolved
        rv, reference = c.send(sc_of(255, 255), dev + 64, meta + 2 * 255 + 64, native)
        assert rv == 0
        if native:
            assert not reference and c.s.resolved == resolved
        got[native] = seen.pop("views")
    assert got[True] == got[False]
    assert [t[9] for t in got[True]] == [length for _, length in bufs]


# --- both data planes, through the drivers ------------------------------------------------------

class Side:
    """One SoC on one data plane: an accel and a legacy file with the skel open, a GEM object
    and a DMA buffer for by-reference arguments."""

    def __init__(self, make_soc, name):
        self.name = name
        with plane(name):
            soc = make_soc("default")
            self.s = {"accel": Session(soc), "legacy": Session(soc, legacy=True)}
        self.bufs = RefBuffers(self.s["accel"].f, self.s["legacy"].f)
        self.ref = self.bufs.ref

    def run(self, drv, ins, refs_in, outs, refs_out):
        s = self.s[drv]
        seen = []

        def look(call):
            seen.append([traits(v) for v in call.inbufs + call.outbufs])
            for j, ob in enumerate(call.outbufs):
                ob[:] = bytes((j * 31 + k) & 0xFF for k in range(len(ob)))

        s.hooks[:] = [look]
        mem = self.bufs.view(drv)
        mem[:] = bytes((k * 7) & 0xFF for k in range(8192))
        outbufs = [bytearray(n) for n in outs]
        args = [bytes(b) for b in ins] + [self.ref(drv, 64 * k, n) for k, n in enumerate(refs_in)]
        args += outbufs + [self.ref(drv, 4096 + 256 * k, n) for k, n in enumerate(refs_out)]
        resolved = s.resolved
        rv = s.f.invoke(s.h, sc_of(len(ins) + len(refs_in), len(outs) + len(refs_out)), args)
        s.hooks.clear()
        return rv, s.resolved - resolved, seen, [bytes(b) for b in outbufs], bytes(mem)

    def close(self):
        self.bufs.close()
        for s in self.s.values():
            s.close()


@pytest.fixture
def sides(make_soc, skel_dir):
    out = [Side(make_soc, "native"), Side(make_soc, "py")]
    try:
        yield out
    finally:
        for side in out:
            side.close()


sizes = st.lists(st.integers(0, 300), max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drv=st.sampled_from(["accel", "legacy"]), ins=st.lists(st.binary(max_size=300), max_size=4),
       refs_in=st.lists(st.integers(0, 64), max_size=3), outs=sizes, refs_out=st.lists(st.integers(0, 256), max_size=3))
def test_both_data_planes_show_a_skel_the_same_views(sides, drv, ins, refs_in, outs, refs_out):
    """The same invoke on both planes (both drivers, copied and by-reference buffers, empty
    ones): the skel's views are identical in all it observes (bytes, read-only, format, shape,
    strides, contiguity, exporter type, hash or its error, a cast), and so is what it wrote.
    The native plane's lane serves them itself."""
    native, py = sides
    a = native.run(drv, ins, refs_in, outs, refs_out)
    b = py.run(drv, ins, refs_in, outs, refs_out)
    assert a[0] == b[0] == 0
    assert a[1] == 0 and b[1] == 1  # resolved by the reference: only on the Python plane
    assert a[2:] == b[2:]
    views = a[2][0]
    assert [t[9] for t in views] == [len(x) for x in ins] + list(refs_in) + list(outs) + list(refs_out)
    assert [t[1] for t in views[:len(ins)]] == [bytes(x) for x in ins]


# --- what a skel can do with a view --------------------------------------------------------------

def _write_attempts(v):
    """Every way of writing through ``v`` the view itself offers (not its exporter, ``v.obj``):
    (what, the exception it raised or None if it wrote)."""
    import io

    import numpy as np

    n = len(v)
    tries = {
        "item": lambda: v.__setitem__(0, 0x41),
        "slice": lambda: v.__setitem__(slice(0, n), b"A" * n),
        "memoryview()": lambda: memoryview(v).__setitem__(0, 0x41),
        "cast B": lambda: v.cast("B").__setitem__(0, 0x41),
        "cast c": lambda: v.cast("c").__setitem__(0, b"A"),
        "sub-slice": lambda: v[0:1].__setitem__(0, 0x41),
        "ctypes from_buffer": lambda: ctypes.c_char.from_buffer(v),
        "ctypes array from_buffer": lambda: (ctypes.c_ubyte * n).from_buffer(v),
        "numpy frombuffer": lambda: np.frombuffer(v, dtype=np.uint8).__setitem__(0, 0x41),
        "numpy setflags": lambda: np.frombuffer(v, dtype=np.uint8).setflags(write=True),
        "numpy asarray": lambda: np.asarray(v).__setitem__(0, 0x41),
        "struct pack_into": lambda: struct.pack_into("B", v, 0, 0x41),
        "readinto": lambda: io.BytesIO(b"A" * n).readinto(v),
        "toreadonly().cast": lambda: v.toreadonly().cast("B").__setitem__(0, 0x41),
    }
    out = {}
    for what, fn in tries.items():
        try:
            fn()
        except (TypeError, ValueError, BufferError) as exc:
            out[what] = type(exc).__name__
        else:
            out[what] = None
    return out


def test_an_in_buffer_view_refuses_every_write(sess):
    """In-buffers in the payload and by reference: read-only however the skel re-views them
    (memoryview(), casts, slices, ctypes, numpy, struct, readinto) and their bytes unchanged."""
    f = sess.f
    g = f.gem_create(PAGE)
    gv = f.mmap(f.gem_mmap_offset(g), PAGE)
    gv[:8] = b"shared!!"
    got = {}

    def look(call):
        got["ro"] = [v.readonly for v in call.inbufs]
        got["tries"] = [_write_attempts(v) for v in call.inbufs]
        got["bytes"] = [bytes(v) for v in call.inbufs]

    sess.hooks[:] = [look]
    try:
        assert f.invoke(sess.h, sc_of(3, 0), [b"inline-1", b"x" * 300, GemRef(g, gv[:8])]) == 0
        assert got["ro"] == [True] * 3
        for t in got["tries"]:
            assert all(t.values()), t  # each refused
        assert got["bytes"] == [b"inline-1", b"x" * 300, b"shared!!"]
        assert bytes(gv[:8]) == b"shared!!"
    finally:
        gv.release()
        f.gem_close(g)


def test_every_buffer_consumer_sees_exactly_the_argument(sess):
    """What reads a view through the buffer protocol (bytes, struct, ctypes, numpy, hashlib,
    join) or its shape sees the argument's bytes and not one more: the narrowed view's
    ``len`` and ``shape`` agree; an out-buffer refuses a write past its end."""
    import hashlib

    import numpy as np

    got = []

    def look(call):
        for v in call.inbufs + call.outbufs:
            n = len(v)
            r = [bytes(v), v.tobytes(), bytes(memoryview(v)), b"".join([v]), np.frombuffer(v, np.uint8).tobytes(),
                 bytes((ctypes.c_char * n).from_buffer_copy(v)), hashlib.sha256(v).digest(), v.nbytes, len(v.tolist())]
            with pytest.raises(ValueError):
                (ctypes.c_char * (n + 1)).from_buffer_copy(v)
            with pytest.raises(struct.error):
                struct.unpack_from(f"{n + 1}s", v)
            if not v.readonly and n:
                with pytest.raises(struct.error):
                    struct.pack_into("<H", v, n - 1, 0xFFFF)
                with pytest.raises(IndexError):
                    v[n] = 0
                v[n - 1] = 0xEE
            got.append(r)

    sess.hooks[:] = [look]
    outs = [bytearray(b"\x11" * 9), bytearray(b"\x22" * 130)]
    payload = [b"abc", bytes(range(200))]
    assert sess.f.invoke(sess.h, sc_of(2, 2), payload + outs) == 0
    for r, data in zip(got, payload + [bytes(9), bytes(130)]):
        n = len(data)
        assert r[:6] == [data] * 6 and r[6] == hashlib.sha256(data).digest() and r[7:] == [n, n]
    assert outs == [bytearray(8) + b"\xEE", bytearray(129) + b"\xEE"]


# --- views kept past the call --------------------------------------------------------------------

KEEP_SCRIPT = r"""
import gc, os, sys, weakref
from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core.accel.file import GemRef
from qda_core.mem import msgpool
from qda_core.soc import Soc

PAGE = 4096
sc = lambda nin, nout: 3 << 24 | nin << 16 | nout << 8
fds0 = set(os.listdir("/proc/self/fd"))
soc = Soc("default")
f = soc.open_device("cdsp")
assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
rv, h = open_module(f, "%(uri)s")
assert rv == 0
proc = next(p for p in soc.domain("cdsp").dsp._procs.values() if h in p.modules)
hooks = type(proc.modules[h].impl.skel).look.__globals__["HOOK"]
kept = []
hooks.append(lambda call: kept.append(call.inbufs + call.outbufs))
g = f.gem_create(PAGE)
gv = f.mmap(f.gem_mmap_offset(g), PAGE)
gv[:4] = b"ref!"
msgpool.POOL_MAX_BUFFERS = 0  # every message buffer evicted (its GEM object freed) when given back
assert f.invoke(h, sc(2, 2), [b"in-0" * 50, GemRef(g, gv[:4]), bytearray(8), GemRef(g, gv[100:108])]) == 0
first = kept[0]
assert [bytes(v[:4]) for v in first] == [b"in-0", b"ref!", bytes(4), bytes(4)]
assert len(first[0].obj) >= PAGE  # the evicted buffer's pages (qda_core._cdev.Pages): still held by the views
# the next call's buffer is not the evicted one's memory
first[2][:] = b"STALE!!!"
assert f.invoke(h, sc(1, 1), [b"second", bytearray(8)]) == 0
assert bytes(kept[1][0]) == b"second" and bytes(first[0][:4]) == b"in-0" and bytes(first[2]) == b"STALE!!!"
# the by-reference object freed under a kept view: its slot is not handed out again meanwhile
gv.release()
f.gem_close(g)
g2 = f.gem_create(PAGE)
first[3][:] = b"STALE!!!"
first[1].tobytes()
gv2 = f.mmap(f.gem_mmap_offset(g2), PAGE)
assert bytes(gv2[100:108]) == bytes(8), bytes(gv2[100:108])
gv2.release()
f.gem_close(g2)
# a message in an arena slot (a GEM object), sent to the lane: its inline views kept, the slot freed
from qda_core import wire
import struct
gm = f.gem_create(2 * PAGE)
mo = f.lookup(gm)
n, at = 2, 1024
for i in range(n):
    struct.pack_into("<QQ", mo.backing.view, 16 * i, 0, 8)
    struct.pack_into("<II", mo.backing.view, 16 * n + 8 * i, 1, i)
    struct.pack_into("<QQ", mo.backing.view, 24 * n + 16 * i, mo.dma_addr + at + 8 * i, 8)
mo.backing.view[at:at + 8] = b"slot-in!"
lane = f.device.fastrpc.channel._remote._lane
own = wire.Origin(proc.client_id, f._origin(False).sids, False)
assert lane.receive(proc.client_id, 1, 0x40, h, sc(1, 1), mo.dma_addr, 2 * PAGE, own) == (True, False, 0x40, 0)
slot_views = kept[-1]
del mo
f.gem_close(gm)
others = [f.gem_create(2 * PAGE) for _ in range(4)]
slot_views[1][:] = b"STALE!!!"
for o in others:
    assert bytes(f.lookup(o).backing.view[:2 * PAGE]) == bytes(2 * PAGE)
    f.gem_close(o)
assert bytes(slot_views[0]) in (b"slot-in!", bytes(8))  # the freed slot: its bytes or zeros (punched)
# everything closed: the views still read and write their (kept) pages
f.close()
del proc, hooks, f, soc
gc.collect()
for views in kept:
    for v in views:
        bytes(v)
        if not v.readonly and len(v):
            v[:] = b"\xAB" * len(v)
assert bytes(first[0][:4]) == b"in-0"
# ... and let them go when dropped
objs = [weakref.ref(v.obj) for views in kept for v in views if len(v)]
del views, v, first, slot_views
kept.clear()
gc.collect()
assert all(r() is None for r in objs), [r() for r in objs]
assert set(os.listdir("/proc/self/fd")) == fds0, (fds0, os.listdir("/proc/self/fd"))
print("OK")
"""


def test_views_kept_past_the_call_stay_valid_and_are_let_go(skel_dir):
    """A skel keeps its views (in the payload and by reference): after the pool evicts the
    message buffer, after the next call, after the by-reference object is freed and a new one
    made, after a message's arena slot is freed and others made, after the file and SoC are gone, they read and write their own pages (no
    use-after-unmap, no other call's or object's memory), and once dropped every mapping and
    fd goes. In a child: a use-after-unmap would kill the process."""
    code = KEEP_SCRIPT % {"uri": URI}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DSP_LIBRARY_PATH": str(skel_dir)})
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), (r.returncode, r.stdout[-500:], r.stderr[-2000:])


# --- the skel's tuples ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 1), (1, 0), (0, 2), (2, 0), (1, 1), (3, 2)])
def test_by_reference_slots_never_touch_the_empty_tuple(sess, shape):
    """By-reference buffers only (their views put in after the tuple is made), in one of the
    two tuples only: the other is the empty tuple, still empty, and no slot holds None."""
    nin, nout = shape
    f = sess.f
    g = f.gem_create(PAGE)
    gv = f.mmap(f.gem_mmap_offset(g), PAGE)
    seen = []

    def look(call):
        seen.append((call.inbufs, call.outbufs))

    sess.hooks[:] = [look]
    try:
        args = [GemRef(g, gv[16 * k:16 * k + 8]) for k in range(nin)]
        args += [GemRef(g, gv[1024 + 16 * k:1024 + 16 * k + 8]) for k in range(nout)]
        assert f.invoke(sess.h, sc_of(nin, nout), args) == 0
        ins, outs = seen.pop()
        assert (len(ins), len(outs)) == (nin, nout)
        assert all(type(v) is memoryview and len(v) == 8 for v in ins + outs)
        assert type(ins) is tuple and type(outs) is tuple and len(tuple()) == 0
    finally:
        seen.clear()
        gv.release()
        f.gem_close(g)


def test_no_reference_to_a_view_or_tuple_is_leaked_or_lost(sess):
    """Kept by the skel, each tuple and view is held by exactly what the skel holds (a leaked
    or a lost reference shows in ``sys.getrefcount``); not kept, every view and tuple dies with
    the call; many calls leave neither memory nor references to None behind."""
    import tracemalloc

    f = sess.f
    g = f.gem_create(PAGE)
    gv = f.mmap(f.gem_mmap_offset(g), PAGE)
    kept, refs = [], []

    def keep(call):
        kept.append((call.inbufs, call.outbufs))

    def watch(call):
        refs.extend(weakref.ref(v) for v in call.inbufs + call.outbufs)

    sc = sc_of(3, 3)
    out = bytearray(16)

    def args():
        return [b"inline", GemRef(g, gv[:8]), b"", out, GemRef(g, gv[64:72]), bytearray()]

    try:
        sess.hooks[:] = [keep]
        assert f.invoke(sess.h, sc, args()) == 0
        ins, outs = kept.pop()
        gc.collect()
        # held by: the local, getrefcount's argument (tuples); the tuple, the argument (views)
        assert [sys.getrefcount(ins), sys.getrefcount(outs)] == [2, 2]
        assert [sys.getrefcount(ins[i]) for i in range(3)] + [sys.getrefcount(outs[i]) for i in range(3)] == [2] * 6
        del ins, outs
        sess.hooks[:] = [watch]
        assert f.invoke(sess.h, sc, args()) == 0
        assert len(refs) == 6 and all(r() is None for r in refs)  # no collection needed
        refs.clear()
        sess.hooks[:] = []
        for _ in range(200):  # warm up
            f.invoke(sess.h, sc, args())
        gc.collect()
        tracemalloc.start()
        try:
            none0, mem0 = sys.getrefcount(None), tracemalloc.get_traced_memory()[0]
            for _ in range(2000):
                f.invoke(sess.h, sc, args())
            gc.collect()
            none1, mem1 = sys.getrefcount(None), tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert abs(none1 - none0) < 500, (none0, none1)  # a leak per call would be >= 2000
        assert mem1 - mem0 < 64 << 10, (mem0, mem1)
    finally:
        sess.hooks.clear()
        gv.release()
        f.gem_close(g)


# --- a DSP on a DeviceMemory of the user's (the lane's Python-view path) -----------------------

class OddMemory(FakeMemory):
    """FakeMemory whose views, once ``kind`` is set, are another byte view of the same bytes:
    a memoryview of format 'c', 'b' or '<B' (a ctypes array's), a 2-D one, or a numpy array."""

    kind = None

    def view(self, addr, length, writable):
        mv = super().view(addr, length, writable)
        kind = self.kind
        if kind is None or not length:
            return mv
        region = mv.obj
        off = next(a for a, b in self.regions.items() if b is region)
        if kind == "<B":
            v = memoryview((ctypes.c_ubyte * length).from_buffer(region, addr - off))
            return v if writable else v.toreadonly()
        if kind == "numpy":
            import numpy as np

            a = np.frombuffer(region, np.uint8, length, addr - off)
            a.flags.writeable = writable
            return a
        if kind == "2-D":
            return mv.cast("B", (length // 2, 2)) if length % 2 == 0 else mv
        return mv.cast(kind)


@pytest.fixture
def odd_dsp(skel_dir):
    """(memory, the DSP's lane, the client, the skel's handle, its hook list) of a DSP on an
    OddMemory."""
    from qda_core.dsp import EmulatedDsp
    from qda_core.dsp._lane import DspLane

    mem = OddMemory()
    dsp = EmulatedDsp("cdsp", mem, skel_path_env={"DSP_LIBRARY_PATH": str(skel_dir)})
    c = Client(dsp, mem, client_id=1)
    assert c.create() == 0
    rv, h, dlerr, text = c.open(URI)
    assert (rv, dlerr) == (0, 0), text
    proc = dsp._procs[("", 1)]
    hooks = type(proc.modules[h].impl.skel).look.__globals__["HOOK"]
    try:
        yield mem, DspLane(dsp, ""), c, h, hooks
    finally:
        hooks.clear()


def _odd_send(odd, native, ins, outs, kind=None):
    """One message through the lane or the reference, the memory's views of ``kind`` while it
    is served: (retval, the skel's views' traits)."""
    mem, lane, c, h, hooks = odd
    seen = []
    hooks[:] = [lambda call: seen.append([traits(v) for v in call.inbufs + call.outbufs])]
    addr, size, _ = build_payload(mem, ins, outs)
    mem.kind = kind
    try:
        if native:
            replied, reference, ctx, rv = lane.receive(1, 0, 0x20, h, sc_of(len(ins), len(outs)), addr, size,
                                                       wire.Origin(1, SIDS, False))
            assert replied and not reference
        else:
            got = []
            c.dsp.receive(wire.Msg(1, 0, 0x20, h, sc_of(len(ins), len(outs)), addr, size).pack(), got.append,
                          origin=wire.Origin(1, SIDS, False))
            rv = wire.Rsp.unpack(got[0]).retval
    finally:
        mem.kind = None
        mem.free(addr)
        hooks.clear()
    return rv, seen


@pytest.mark.parametrize("kind", ["c", "b", "<B", "2-D", "numpy"])
def test_a_user_device_memorys_views_reach_the_skel_as_the_references(odd_dsp, kind):
    ins, outs = [b"abcdefgh", b"\xfe\xff"], [16]
    ref = _odd_send(odd_dsp, False, ins, outs, kind)
    lane = _odd_send(odd_dsp, True, ins, outs, kind)
    assert ref[0] == 0 and [t[1] for t in ref[1][0]] == [b"abcdefgh", b"\xfe\xff", bytes(16)]
    assert lane == ref


def test_a_user_device_memorys_plain_views_reach_the_skel_as_the_references(odd_dsp):
    """The same, for the plain 1-D 'B' views the protocol describes (the guard of the above)."""
    ins, outs = [b"abcdefgh", b"\xfe\xff", b""], [16, 0]
    ref = _odd_send(odd_dsp, False, ins, outs)
    assert ref[0] == 0 and _odd_send(odd_dsp, True, ins, outs) == ref


def test_no_tuple_is_seen_before_its_by_reference_slots_are_filled(odd_dsp):
    """Python code running while the by-reference buffers are viewed (here the DeviceMemory's
    view) finds the tuples the skel will get through the payload's views, and keeps them."""
    mem, lane, c, h, hooks = odd_dsp
    shared = mem.alloc(64, b"S" * 64)
    addr, size, _ = build_payload(mem, [b"inline!!", Shared(shared, 8)], [8])
    region = mem.regions[addr]
    seen = []
    real = mem.view

    def spying(a, n, writable):
        if a == shared:  # the by-reference buffer: the in-payload views are made by now
            for mb in gc.get_referrers(region):
                for mv in gc.get_referrers(mb):
                    if type(mv) is memoryview:
                        seen.extend((t, list(t)) for t in gc.get_referrers(mv) if type(t) is tuple)
        return real(a, n, writable)

    mem.view = spying
    got = []
    hooks[:] = [lambda call: got.append(call.inbufs)]
    try:
        replied, reference, _, rv = lane.receive(1, 0, 0x30, h, sc_of(2, 1), addr, size, wire.Origin(1, SIDS, False))
        assert replied and not reference and rv == 0
        assert [bytes(v) for v in got[0]] == [b"inline!!", b"S" * 8]
        changed = [(before, list(t)) for t, before in seen if list(t) != before]
        assert not changed, changed
    finally:
        del mem.view
        hooks.clear()
        seen.clear()
        got.clear()
        mem.free(addr)
        mem.free(shared)


# --- an SMMU whose Python view() is overridden ---------------------------------------------------

@pytest.mark.parametrize("name", ["py", "native"])
def test_an_overridden_smmu_view_is_asked_for_the_payload(make_soc, skel_dir, name):
    from qda_core.errors import DeviceFault
    from qda_core.mem.bus import Smmu

    asked = []

    class Refusing(Smmu):
        armed = False

        def view(self, addr, length, writable):
            if self.armed:
                asked.append((addr, length))
                if length >= 4096:  # the payload (message buffers are whole pages), not its arguments
                    raise DeviceFault(addr, length, "refused by the test's SMMU")
            return super().view(addr, length, writable)

    with plane(name):
        soc = make_soc("default")
        dom = soc.domain("cdsp")
        dom.dsp.memory = mem = Refusing(dom.bus)
        s = Session(soc)
    mem.armed = True
    try:
        rv = s.f.invoke(s.h, sc_of(1, 0), [b"x" * 10])
        assert asked and rv & 0xFFFF_FFFF == 0x8000040D and s.proc.state == "crashed"
    finally:
        s.close()


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_skel_scribbling_over_its_message_buffer_gets_efault_not_a_wild_copy(make_soc, skel_dir, drv):
    """An in-buffer view's exporter (``v.obj``) is the whole message buffer, writable (so a
    view's read-only flag is advisory, as on both planes before and after 1f6bcb9): a skel that
    rewrites the payload's metadata through it makes the host refuse the reply (EFAULT), and
    copies nothing into the caller's buffers."""
    s = Session(make_soc("default"), legacy=drv == "legacy")

    def scribble(call):
        mm = memoryview(call.inbufs[0].obj)
        assert not mm.readonly and len(mm) >= 4096
        mm[:] = b"\xff" * len(mm)

    s.hooks[:] = [scribble]
    try:
        out = bytearray(b"\x5a" * 16)
        with pytest.raises(OSError) as exc:
            s.f.invoke(s.h, sc_of(1, 1), [b"abc" * 10, out])
        assert exc.value.errno == 14 and out == bytearray(b"\x5a" * 16)
    finally:
        s.close()


def test_pdmemory_argument_is_the_view_a_skel_is_handed():
    """``PdMemory.argument`` (the reference's and the lane's by-reference view): 1-D bytes,
    read-only for an in-buffer, writable into the memory for an out-buffer, and a fault for an
    address outside the PD's streams."""
    from qda_core.dsp.pdmem import PdMemory
    from qda_core.errors import DeviceFault

    mem = FakeMemory()
    addr = mem.alloc(64, bytes(range(64)))
    pm = PdMemory(mem, frozenset({addr >> 32}), ("cdsp", "test", 1))
    try:
        arg_in, arg_out = pm.argument(addr + 8, 16, False), pm.argument(addr + 8, 16, True)
        assert (arg_in.readonly, arg_in.format, arg_in.ndim, bytes(arg_in)) == (True, "B", 1, bytes(range(8, 24)))
        assert not arg_out.readonly
        arg_out[0] = 0xEE
        assert mem.regions[addr][8] == 0xEE and arg_in[0] == 0xEE
        with pytest.raises(DeviceFault):
            pm.argument(addr + (1 << 32), 16, False)
        arg_in.release()
        arg_out.release()
    finally:
        mem.free(addr)
