"""Routes for calls with copied arguments (docs/dataplane.md "Routes"): a Python caller's INVOKE
whose buffers are all copied - the raw ioctl, the typed ``invoke()``, the library's
``remote_handle64_invoke`` - takes the file's route to the handle, packed into the route's own
message buffer or one the pool lends for the call. A SoC on the native plane and one on the
Python reference make the same calls: the same answers, out-buffers, errors and records."""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import libadsprpc_compat as rpc
from libadsprpc_compat import Library
from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core._engine import ROUTE_SECOND_MAX
from qda_core.accel import GemRef
from qda_core.legacy import DmaBufRef, dmabuf_mmap
from qda_core.mem import backing

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import TEST_URI, VIEW_PRELUDE, plane  # noqa: E402

NULL, ECHO, INC, FAIL, CHECKSUM, TOUCH = 0x02000000, 0x03010100, 0x04000100, 0x05010000, 0x07010100, 0x09010100
BAD = object()  # an argument at an unmapped address (raw INVOKE only)


def _pattern(n: int, seed: int) -> bytearray:
    return bytearray((seed + 7 * i) & 0xFF for i in range(n))


class Side:
    """One SoC on one data plane: a file per driver and a library per backend, each with
    qdarpc_test open."""

    def __init__(self, make_soc, name, kernel=None):
        with plane(name):
            self.soc = make_soc("default", **({"kernel": kernel} if kernel else {}))
            self.files = {"accel": self.soc.open_device("cdsp"), "legacy": self.soc.open("/dev/fastrpc-cdsp")}
            self.libs = {b: Library(b, self.soc) for b in self.files}
        self.h, self.h64 = {}, {}
        for drv, f in self.files.items():
            assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
            rv, self.h[drv] = open_module(f, TEST_URI)
            assert rv == 0
            with rpc.use_library(self.libs[drv]):
                self.h64[drv] = rpc.remote_handle64_open(TEST_URI)

    def raw(self, drv, sc, bufs):
        """INVOKE with descriptors written by hand over ``bufs`` (``BAD``: an unmapped address)."""
        f = self.files[drv]
        req = uapi.FASTRPC_IOCTL_INVOKE if drv == "legacy" else f.uapi.ioctls[0x47].number
        descs = bytearray(24 * len(bufs) or 1)
        keep = []
        for i, b in enumerate(bufs):
            if b is BAD:
                addr, n = 0x1000, 8
            else:
                c = (ctypes.c_char * len(b)).from_buffer(b) if len(b) else None
                keep.append(c)
                addr, n = (ctypes.addressof(c) if c is not None else 0), len(b)
            struct.pack_into("<QQiI", descs, 24 * i, addr, n, -1, 0)
        d = (ctypes.c_char * len(descs)).from_buffer(descs)
        try:
            return f.ioctl(req, bytearray(struct.pack("<IIQ", self.h[drv], sc, ctypes.addressof(d) if bufs else 0)))
        finally:
            del d, keep

    def typed(self, drv, sc, bufs):
        try:
            return self.files[drv].invoke(self.h[drv], sc, bufs)
        except OSError as exc:
            return -exc.errno

    def lib(self, drv, sc, bufs):
        with rpc.use_library(self.libs[drv]):
            try:
                rpc.remote_handle64_invoke(self.h64[drv], sc, bufs)
            except rpc.FastRpcError as exc:
                return exc.aee
        return 0

    def route(self, drv, how="typed"):
        if how == "lib":
            rec = rpc.process._records[self.h64[drv]]
            return rec.session.backend.file._lane.route_for(rec.dsp_handle)
        return self.files[drv]._lane.route_for(self.h[drv])

    def records(self):
        dsp = self.soc.domains["cdsp"].dsp
        return (dsp.stats.snapshot(), sorted((p.invokes, p.counters.modeled_ns, p.state) for p in dsp._procs.values()))

    def close(self):
        for lib in self.libs.values():
            lib.close_all()
        for f in self.files.values():
            f.close()


def _args(op: str, n_in: int, n_out: int, seed: int, bad: bool):
    """(sc, buffers) of one call: the method's declared counts, or others (MethodSpec refuses)."""
    sc = {"echo": ECHO, "inc": INC, "fail": FAIL, "checksum": CHECKSUM, "touch": TOUCH, "null": NULL}[op]
    if op == "fail":
        ins = [bytearray(struct.pack("<i", seed - 2))]
        outs = []
    elif op == "null":
        ins, outs = [], []
    elif op == "inc":
        ins, outs = [], [_pattern(n_out, seed)]
    else:
        ins, outs = [_pattern(n_in, seed)], [bytearray(max(n_out, 16))]
    if seed % 11 == 0:  # counts the method does not declare
        ins.append(bytearray(3))
        sc = (sc & ~0x00FF0000) | (len(ins) << 16)
    if bad and ins:
        ins[0] = BAD
    return sc, ins + outs


SIZES = st.sampled_from([0, 1, 8, 100, 4000, 5000, 70_000])
CALLS = st.lists(st.tuples(st.sampled_from(["accel", "legacy"]), st.sampled_from(["raw", "typed", "lib"]),
                           st.sampled_from(["echo", "inc", "fail", "checksum", "touch", "null"]), SIZES, SIZES,
                           st.integers(0, 40), st.booleans()), min_size=1, max_size=10)


@pytest.mark.parametrize("kernel", [None, "legacy:misc-7.3"])
@given(calls=CALLS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_routes_with_arguments_answer_and_record_as_the_reference(make_soc, kernel, calls):
    """Copied in- and out-buffers of every size (past one page: a buffer of the pool's), counts
    a method does not declare, a bad address: the same answers, out-buffers, errors and records
    (misc-7.3: a sequence number in the context and the poll word's shifted payload)."""
    native, ref = Side(make_soc, "native", kernel), Side(make_soc, "py", kernel)
    try:
        for drv, how, op, n_in, n_out, seed, bad in calls:
            bad = bad and how == "raw" and seed % 3 == 0
            got = []
            for side in (native, ref):
                sc, bufs = _args(op, n_in, n_out, seed, bad)
                got.append((getattr(side, how)(drv, sc, bufs), [bytes(b) for b in bufs if b is not BAD]))
            assert got[0] == got[1], (drv, how, op, n_in, n_out, seed, bad)
            assert native.records() == ref.records()
    finally:
        native.close()
        ref.close()


@pytest.fixture
def sides(make_soc):
    both = Side(make_soc, "native"), Side(make_soc, "py")
    yield both
    for side in both:
        side.close()


@pytest.mark.parametrize("drv", ["accel", "legacy"])
@pytest.mark.parametrize("how", ["raw", "typed", "lib"])
def test_a_call_with_copied_buffers_takes_the_route(sides, drv, how):
    native, _ = sides
    call = getattr(native, how)
    out = bytearray(16)
    assert call(drv, ECHO, [bytearray(b"abcdefgh"), out]) == 0  # the lanes, then a route
    r = native.route(drv, how)
    assert r is not None and r.served == 0
    for i in range(3):
        out[:] = bytes(16)
        assert call(drv, ECHO, [bytearray(b"%08d" % i), out]) == 0 and out[:8] == b"%08d" % i
    assert r.served == 3


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_call_bigger_than_a_page_borrows_a_buffer_of_the_pool(sides, drv):
    """The route's own buffer is one page: a bigger call takes one of the file's pool for the
    call and gives it back (the pool's use is as before the call)."""
    native, _ = sides
    big, out = _pattern(300_000, 5), bytearray(16)
    assert native.typed(drv, TOUCH, [bytearray(8), out]) == 0
    r = native.route(drv)
    native.typed(drv, TOUCH, [big, out])  # (the pool's buffer of that size class, made once)
    used = backing.pool_used()
    for _ in range(3):
        assert native.typed(drv, TOUCH, [big, out]) == 0
        assert struct.unpack_from("<QBB", out) == (300_000, big[0], big[-1])
    assert r.served == 4 and backing.pool_used() == used


@pytest.mark.parametrize("drv", ["accel", "legacy"])
@pytest.mark.parametrize("how", ["typed", "lib"])
def test_a_call_past_the_page_takes_the_routes_second_buffer(sides, drv, how):
    """A call whose payload the route's page does not hold takes the route's second buffer (up
    to ROUTE_SECOND_MAX, page-rounded), which the route keeps for the next calls of its size
    class and replaces only by one of a larger class; a call of another class borrows a buffer
    of the pool (the one the lanes would lend). Nothing is made in the pool once the sizes were
    seen, and every call is the route's."""
    native, _ = sides
    call = getattr(native, how)
    out = bytearray(16)

    def touch(n):
        data = _pattern(n, n % 251)
        assert call(drv, TOUCH, [data, out]) == 0
        assert struct.unpack_from("<QBB", out) == (n, data[0], data[-1])

    touch(8)
    r = native.route(drv, how)
    assert r is not None and r.second_buffer is None
    touch(10_000)
    first = r.second_buffer
    assert first is not None and first[1] >= 12 << 10
    touch(5_000)
    touch(10_000)
    assert r.second_buffer == first  # kept (a smaller class's call borrows one of the pool)
    touch(60_000)
    second = r.second_buffer
    assert second[1] >= 64 << 10 and second != first  # replaced by a larger one
    touch(ROUTE_SECOND_MAX + 1)  # a buffer of the pool for the call
    assert r.second_buffer == second
    used = backing.pool_used()
    for n in (100, 5_000, 60_000, 10_000, ROUTE_SECOND_MAX + 1, 8):
        touch(n)
    assert r.second_buffer == second and backing.pool_used() == used
    assert r.served == 11


def _keep_calls(make_soc, tmp_path, monkeypatch, drv, size, calls, route_check=None):
    """KEEP_SKEL's ``calls`` - ``(method, bytes of in0 (a slice of one arena of ``size``
    bytes), bytes of out0)`` - on each plane: ``{plane: [out0's first int64 of each call]}``;
    ``route_check(route)``: the native plane's route to the skel after them."""
    seen = {}
    for name in ("native", "py"):
        f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_keep_skel.py", KEEP_SKEL, KEEP_URI, name)
        try:
            arena, got = memoryview(bytearray(b"d" * size)), []
            for method, n_in, n_out in calls:
                out = bytearray(n_out)
                with arena[:n_in] as data:
                    assert f.invoke(h, (method << 24) | 0x10100, [data, out]) == 0
                got.append(struct.unpack_from("<q", out)[0])
            arena.release()
            if name == "native" and route_check is not None:
                route_check(f._lane.route_for(h))
            seen[name] = got
        finally:
            f.close()
    return seen


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_the_routes_second_buffer_shows_the_dsp_no_earlier_calls_bytes(make_soc, tmp_path, monkeypatch, drv):
    """The DSP is shown a window of the second buffer (the packet, page-rounded): its packet's
    bytes and zeros, whatever an earlier, larger call left in it or a skel wrote through its
    view's ``.obj`` past its window (both planes alike)."""

    def route_check(r):
        assert r is not None and r.second_buffer is not None and r.served == 6

    big, small = 40_000, 6_000
    seen = _keep_calls(make_soc, tmp_path, monkeypatch, drv, 50_000,
                       ((12, small, 32), (14, big, 32), (13, small, 32), (14, big, 32), (15, small, 20_000),
                        (14, big, 32), (13, big, 32)), route_check)
    assert seen["native"][2] == seen["native"][4] == seen["native"][6] == 0, seen
    assert [g for i, g in enumerate(seen["native"]) if i in (2, 4, 6)] == [
        g for i, g in enumerate(seen["py"]) if i in (2, 4, 6)]


SPY_SKEL = VIEW_PRELUDE + """
import struct

from qda_core.dsp import Skeleton, method


class QdarpcSpySkel(Skeleton):
    @method(2)
    def spy(self, call):
        # out0 = (the runs of 16 bytes 0xAB anywhere in the message buffer's mapping: out0's
        # .obj, its size); runs, not bytes: a pointer in the metadata may hold an 0xAB byte
        whole = memoryview(call.outbufs[0].obj).cast("B")
        struct.pack_into("<QQ", call.outbufs[0], 0, bytes(whole).count(b"\\xab" * 16), len(whole))
        return 0

    @method(3)
    def lie(self, call):
        # a lying reply: out0's pointer in the payload's metadata moved 20000 bytes in (past this
        # call's window when its payload is about 10 KB)
        whole, off = _offset(call.outbufs[0])
        pv, n = struct.unpack_from("<QQ", whole, 16)
        struct.pack_into("<QQ", whole, 16, pv - off + 20_000, n)
        return 0
"""
SPY_URI = "file:///libqdarpc_spy_skel.so?qdarpc_spy_skel_handle_invoke&_modver=1.0&_dom=cdsp"


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_the_second_buffer_is_what_the_pool_would_lend(make_soc, tmp_path, monkeypatch, drv):
    """An attacker's review: a 10 KB call after a 60 KB one was served in the route's kept
    64 KiB buffer, whose mapping (a view's ``.obj``) still held the 60 KB call's bytes, and
    whose size bounded the copy back of a lying reply (the caller got them). The second buffer
    now serves only calls of its size class - the very buffer the pool lends on the lanes - and
    is scrubbed as the pool scrubs one: both planes see the same mapping, bytes and errors."""
    seen = {}
    for name in ("native", "py"):
        f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_spy_skel.py", SPY_SKEL, SPY_URI, name)
        try:
            got = []
            # (63 000 and 58 000 bytes: one size class, 64 KiB; windows of 64 and 60 KiB)
            for method, n, fill in ((2, 8, 1), (2, 63_000, 0xAB), (2, 10_000, 1), (2, 63_000, 0xAB),
                                    (2, 58_000, 1), (3, 10_000, 1), (2, 60_000, 0xAB), (3, 10_000, 1)):
                out = bytearray(16)
                try:
                    rv = f.invoke(h, (method << 24) | 0x10100, [bytearray([fill]) * n, out])
                except OSError as exc:
                    rv = -exc.errno
                got.append((rv, bytes(out)))
            seen[name] = got
        finally:
            f.close()
    assert seen["native"] == seen["py"]
    spied = [struct.unpack("<QQ", out) for rv, out in seen["native"][:5]]
    assert spied[2] == (0, 12 << 10) and spied[4] == (0, 64 << 10), spied  # (nothing of the 63 KB calls)
    assert seen["native"][5][0] == seen["native"][7][0] == -errno.EFAULT


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_pool_buffer_shows_no_bytes_a_skel_wrote_past_its_window(make_soc, tmp_path, monkeypatch, drv):
    """A skel that writes through its view's ``.obj`` past its call's window (to the end of the
    pool buffer's mapping): a later call in the same buffer with a larger window must still be
    shown its packet and zeros only (both planes; the buffer is the pool's, past the route's
    second buffer)."""
    small, large = 300_000, 318_000
    seen = _keep_calls(make_soc, tmp_path, monkeypatch, drv, 320_000,
                       ((14, small, 32), (14, small, 32), (13, large, 32), (14, small, 32), (13, large, 32)))
    assert seen["native"][2] == seen["native"][4] == seen["py"][2] == seen["py"][4] == 0, seen


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_buffer_by_reference_or_a_handle_takes_the_lanes(sides, drv):
    native, ref = sides
    f = native.files[drv]
    out = bytearray(16)
    assert native.typed(drv, TOUCH, [bytearray(8), out]) == 0
    r = native.route(drv)
    if drv == "accel":
        gh = f.gem_create(4096)
        mv = f.mmap(f.gem_mmap_offset(gh), 4096)
        arg = GemRef(gh, mv[:100])
    else:
        fd = f.alloc_dma_buff(4096)
        mv = dmabuf_mmap(fd, 4096)
        arg = DmaBufRef(fd, mv[:100])
    try:
        assert f.invoke(native.h[drv], TOUCH, [arg, out]) == 0 and struct.unpack_from("<Q", out)[0] == 100
        assert r.served == 0  # declined: the lanes mapped it
        assert native.typed(drv, TOUCH, [bytearray(8), out]) == 0 and r.served == 1
    finally:
        del arg
        mv.release()
        if drv == "accel":
            f.gem_close(gh)
        else:
            os.close(fd)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_bad_address_fails_with_efault_on_the_route(sides, drv):
    native, ref = sides
    out = bytearray(16)
    for side in (native, ref):
        assert side.raw(drv, TOUCH, [bytearray(8), out]) == 0
    r = native.route(drv)
    for side in (native, ref):
        assert side.raw(drv, TOUCH, [BAD, out]) == -errno.EFAULT
        assert side.files[drv].last_error.errno == errno.EFAULT
    assert r.served == 0 and native.records() == ref.records()
    assert native.raw(drv, TOUCH, [bytearray(8), out]) == 0 and r.served == 1  # (nothing left behind)


def test_a_library_call_with_an_unvouched_buffer_takes_the_checked_copies(sides):
    """A ctypes buffer (its exporter does not vouch for its memory) is copied by the checked
    path, on the route too."""
    from qda_core import _marshal

    native, _ = sides
    out = bytearray(16)
    assert native.lib("accel", ECHO, [bytearray(8), out]) == 0
    r = native.route("accel", "lib")
    src = (ctypes.c_char * 8).from_buffer_copy(b"ctypes!!")
    before = _marshal.copy_stats()
    assert native.lib("accel", ECHO, [src, out]) == 0 and out[:8] == b"ctypes!!"
    assert r.served == 1 and _marshal.copy_stats()["checked"] > before["checked"]


PEEK_SKEL = VIEW_PRELUDE + """
import struct

from qda_core.dsp import Skeleton, method


class QdarpcPageSkel(Skeleton):
    @method(3)
    def fill(self, call):
        for out in call.outbufs:
            out[:] = b"\\xee" * len(out)
        return 0

    @method(4)
    def peek(self, call):
        # the non-zero bytes of the message page past out0 (its view's object: the buffer's mapping)
        out = call.outbufs[0]
        page, lo, end = _tail(out)
        struct.pack_into("<Q", out, 0, len(page[lo:end]) - bytes(page[lo:end]).count(0))
        return 0
"""
PAGE_URI = "file:///libqdarpc_page_skel.so?qdarpc_page_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def _skel_file(make_soc, tmp_path, monkeypatch, drv, name, text, uri, dataplane="native"):
    """A file of driver ``drv`` on a SoC of ``dataplane``, with the Python skel ``text`` (saved as
    ``name``) open: ``(file, handle)``."""
    (tmp_path / name).write_text(text)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    with plane(dataplane):
        soc = make_soc("default")
        f = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    rv, h = open_module(f, uri)
    assert rv == 0
    return f, h


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_the_routes_page_shows_the_dsp_no_earlier_calls_bytes(make_soc, tmp_path, monkeypatch, drv):
    """The route's own buffer is cleared past each call's packet as the pool clears a buffer it
    hands out: a call's out-buffer bytes (or anything the DSP wrote in the page it was shown) never
    reach a later, smaller call (an attacker's review found the page's tail unscrubbed)."""
    f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_page_skel.py", PEEK_SKEL, PAGE_URI)
    try:
        fill, peek = 0x03000100, 0x04000100
        assert f.invoke(h, fill, [bytearray(16)]) == 0  # the lanes, then a route
        r = f._lane.route_for(h)
        assert f.invoke(h, fill, [bytearray(3000)]) == 0
        out = bytearray(16)
        assert f.invoke(h, peek, [out]) == 0 and struct.unpack_from("<Q", out)[0] == 0
        assert r.served == 2
    finally:
        f.close()


KEEP_SKEL = VIEW_PRELUDE + """
import struct

from qda_core.dsp import Skeleton, method


class QdarpcKeepSkel(Skeleton):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.kept = []  # (dies with the skel's instance, and what it holds with it)

    def _answer(self, call):
        # out0 = (the Call's id, the in-bytes' sum, extra_ns on entry)
        struct.pack_into("<QQQ", call.outbufs[0], 0, id(call), sum(call.inbufs[0]), call.extra_ns)

    @method(2)
    def plain(self, call):
        self._answer(call)
        return 0

    @method(3)
    def keep_call(self, call):
        self._answer(call)
        self.kept.append(call)
        return 0

    @method(4)
    def keep_view(self, call):
        self._answer(call)
        self.kept.append(call.inbufs[0])
        return 0

    @method(5)
    def release(self, call):
        self._answer(call)
        call.inbufs[0].release()
        return 0

    @method(6)
    def swap(self, call):
        self._answer(call)
        call.inbufs = (memoryview(b"zz"),)
        call.outbufs = ()
        return 0

    @method(7)
    def cost(self, call):
        self._answer(call)
        call.add_cost(5000)
        return 0

    @method(8)
    def hashed(self, call):
        # out0 = (hash(in0), len(out0), out0.ndim, in0[0]); hashing caches the hash in the view
        out = call.outbufs[0]
        first = call.inbufs[0][0]
        struct.pack_into("<qQQq", out, 0, hash(call.inbufs[0]), len(out), out.ndim,
                         first if isinstance(first, int) else -1)
        return 0

    @method(9)
    def recast(self, call):
        # the skel's own views in place of the route's: same memory, another format and shape
        self.hashed(call)
        call.outbufs = (call.outbufs[0].cast("B", (2, len(call.outbufs[0]) // 2)),)
        call.inbufs = (call.inbufs[0].cast("c"),)
        return 0

    @method(10)
    def hold(self, call):
        # a view of the skel's own bytearray left in the Call (it must not outlive the call)
        self.hashed(call)
        self.own = getattr(self, "own", bytearray(8))
        call.outbufs = (memoryview(self.own),)
        return 0

    @method(11)
    def grow(self, call):
        self.own.extend(b"x")  # (BufferError while anything still exports it)
        return 0

    @method(12)
    def scribble(self, call):
        # writes past out0 to the page's end through the view's .obj (the buffer's mapping)
        self.hashed(call)
        page, lo, hi = _tail(call.outbufs[0])
        page[lo:hi] = b"\\xee" * (hi - lo)
        return 0

    @method(13)
    def peek(self, call):
        # (hash slot: the scribble's bytes in the page past out0)
        out = call.outbufs[0]
        page, lo, hi = _tail(out)
        struct.pack_into("<qQQq", out, 0, bytes(page[lo:hi]).count(0xEE), len(out), out.ndim, call.inbufs[0][0])
        return 0


    @method(14)
    def flood(self, call):
        # writes past out0 to the end of the buffer's mapping (past the call's window too)
        self.hashed(call)
        page, lo, _ = _tail(call.outbufs[0])
        page[lo:] = b"\\xee" * (len(page) - lo)
        return 0

    @method(15)
    def zeros(self, call):
        # (hash slot: the non-zero bytes of out0 as the call found it)
        out = call.outbufs[0]
        n = len(out) - bytes(out).count(0)
        struct.pack_into("<qQQq", out, 0, n, len(out), out.ndim, call.inbufs[0][0])
        return 0
"""
KEEP_URI = "file:///libqdarpc_keep_skel.so?qdarpc_keep_skel_handle_invoke&_modver=1.0&_dom=cdsp"


@pytest.mark.parametrize("drv", ["accel", "legacy"])
@pytest.mark.parametrize("size", [16, 6000])  # (in the route's page; in its second buffer)
def test_a_routes_call_object_is_reused_only_when_nobody_kept_it(make_soc, tmp_path, monkeypatch, drv, size):
    """A route serves a loop over the same buffers with the last call's ``Call``, tuples and views
    again (none made), but only when the skel kept none of them, released no view and replaced
    no tuple, and with every field as new (``extra_ns`` back to 0): each call still sees its own
    bytes (docs/dataplane.md "Calls with copied arguments"). In the page and the second buffer."""
    f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_keep_skel.py", KEEP_SKEL, KEEP_URI)
    try:

        data, out = bytearray(size), bytearray(24)  # (the same buffers: the same layout in the page)

        def call(method, seed):
            data[:], out[:] = _pattern(size, seed), bytes(24)
            assert f.invoke(h, (method << 24) | 0x10100, [data, out]) == 0
            total, extra = struct.unpack_from("<QQ", out, 8)
            assert total == sum(data) and extra == 0

        call(2, 0)  # (the lanes; a route from the next call on)
        for method in (2, 3, 4, 5, 6, 7):
            call(method, 1)  # (a Call to spare, whatever the last method did to its own)
            r = f._lane.route_for(h)
            before = r.dsp.spared
            for seed in range(2, 6):
                call(method, seed)
            assert r.dsp.spared - before == (4 if method in (2, 7) else 0), method
    finally:
        f.close()


@pytest.mark.parametrize("drv", ["accel", "legacy"])
@pytest.mark.parametrize("size", [8, 6000])  # (in the route's page; in its second buffer)
def test_a_spare_call_shows_each_call_what_a_fresh_one_would(make_soc, tmp_path, monkeypatch, drv, size):
    """What a skel did to its last Call never shows in the next (an attacker's review): a view's
    cached hash, views the skel swapped in (another format and shape over the same memory), an
    object of the skel's left in the Call (kept alive, its buffer still exported), bytes it wrote
    past its buffers through a view's ``.obj`` (the page is cleared for the next call). Both
    planes see the same, in the page and in the second buffer."""
    seen = {}
    for name in ("native", "py"):
        f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_keep_skel.py", KEEP_SKEL, KEEP_URI, name)
        try:
            data, out, got = bytearray(size), bytearray(32), []
            for method, fill in ((8, b"A"), (8, b"B"), (8, b"C"), (9, b"D"), (8, b"E"), (8, b"F"), (10, b"G"),
                                 (8, b"H"), (12, b"I"), (13, b"J"), (13, b"K")):
                data[:], out[:] = fill * size, bytes(32)
                rv = f.invoke(h, (method << 24) | 0x10100, [data, out])
                got.append((rv, *struct.unpack("<qQQq", out)))
            got.append(f.invoke(h, 11 << 24, []))  # the skel's bytearray is not exported any more
            seen[name] = got
        finally:
            f.close()
    assert seen["native"] == seen["py"]
    hashes = [g[1] for g in seen["native"][:3]]
    assert hashes == [hash(c * size) for c in (b"A", b"B", b"C")]
    assert seen["native"][4][1:] == (hash(b"E" * size), 32, 1, ord("E"))  # after the recast
    assert [g[1] for g in seen["native"][9:11]] == [0, 0] and seen["native"][-1] == 0  # no scribble left


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_a_pool_buffer_shows_the_dsp_no_earlier_calls_scribble(make_soc, tmp_path, monkeypatch, drv):
    """A call bigger than the route's page takes a buffer of the file's pool; the DSP is shown
    its whole last page, so what a skel wrote there past its packet is cleared before the buffer
    is handed out again (both planes: no scribble reaches the next call)."""
    for name in ("native", "py"):
        f, h = _skel_file(make_soc, tmp_path, monkeypatch, drv, "libqdarpc_keep_skel.py", KEEP_SKEL, KEEP_URI, name)
        try:
            # out0 above data in memory: the payload puts it after the in-buffer, so the scribble
            # past it lands past the packet, in the packet's last page
            arena = bytearray(b"d" * 8192)
            data, out, got = memoryview(arena)[:6000], memoryview(arena)[6144:6176], []
            for method in (12, 13, 8, 12, 13):  # (the first call takes the lanes, the others a route)
                out[:] = bytes(32)
                assert f.invoke(h, (method << 24) | 0x10100, [data, out]) == 0
                got.append(struct.unpack_from("<q", out)[0])
            data.release()
            out.release()
            assert got[1] == got[4] == 0, (name, got)
        finally:
            f.close()
