"""User copies: the known-valid path (memcpy), the guarded copy and the checked path
(process_vm_*) agree.

Memory is copied with ``memcpy`` when the calling thread pinned it for the call (the buffers a
typed invoke or the library's invoker holds) or when it lies in a registered mapping whose owner
is alive (``qda_core.mem.vma``); everything else goes through the DSP runtime's guarded copy
once the runtime is loaded (a fault in it is EFAULT, as the kernel's exception table makes it),
else through ``process_vm_readv``/``writev``.
The properties below run the same copies both ways (and through the pure-Python reference) over
real memory with guard pages around it, bad raw pointers included: same bytes, same errno, same
lengths, and never a crash. The copy counters show which path ran.
"""
from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import gc
import mmap
import os
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import marshal, uapi, wire
from qda_core import marshal_ref as ref
from qda_core._ext import load
from qda_core.invoke_args import BufRef, HandleArg
from qda_core.mem import vma
from qda_core.uaccess import address

native = load("_marshal")
#: The drivers copy through the native paths; with QDARPC_MARSHAL=py everything is the reference.
FAST = marshal.BACKEND == "c"

PAGE = mmap.PAGESIZE
ARENA = 8 * PAGE
GUARD = 4 * PAGE  # user_ranges reach 2 pages below the arena and 4 above it
M64 = (1 << 64) - 1
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_ECHO = 0x03010100
UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Arena:
    """``ARENA`` bytes of real memory between two PROT_NONE guard regions of ``GUARD`` bytes, in
    one anonymous mmap (which vouches for the arena: ``view``). The guards are as wide as the
    furthest address the tests reach around the arena (user_ranges), so a copy never lands in
    whatever else is mapped next to it: a guard one page wide let the copies write into the
    process's neighbouring memory (its heap, once), with random bytes."""

    def __init__(self):
        self.mm = mmap.mmap(-1, ARENA + 2 * GUARD)
        self.lo = address(self.mm)
        self.base = self.lo + GUARD
        assert _libc.mprotect(self.lo, GUARD, 0) == 0
        assert _libc.mprotect(self.base + ARENA, GUARD, 0) == 0
        self.view = memoryview(self.mm)[GUARD:GUARD + ARENA]

    def fill(self, pattern: bytes) -> None:
        self.view[:] = (pattern * (ARENA // max(len(pattern), 1) + 1))[:ARENA] if pattern else bytes(ARENA)

    def snapshot(self) -> bytes:
        return bytes(self.view)

    def close(self) -> None:
        self.view.release()
        _libc.mprotect(self.lo, ARENA + 2 * GUARD, mmap.PROT_READ | mmap.PROT_WRITE)
        self.mm.close()


@pytest.fixture(scope="module")
def arena():
    a = Arena()
    yield a
    a.close()


def pinned(sc, args):
    """The native typed-invoke argument builder (whichever marshaller the drivers use)."""
    return native.ArgPins(sc, args, BufRef, BufRef, HandleArg)


def pins(view):
    """Pin ``view`` (writable) on this thread, as a typed invoke pins its one out-buffer."""
    return pinned(wire.scalars(0, 0, 1), [view])


def stats():
    return native.copy_stats()


def _guarded_copier() -> tuple[int, int]:
    """The DSP runtime's guarded copy and its readiness check (``qdarpc_guarded_copy``,
    ``qdarpc_guard_armed``), loading the runtime."""
    from qda_core.dsp import dsprt

    lib = dsprt.load()
    return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in (lib.qdarpc_guarded_copy, lib.qdarpc_guard_armed))


@contextlib.contextmanager
def guard_copies(on: bool):
    """Copies of ranges nobody pinned through the guarded copy (``on``) or the syscalls."""
    prev = native.set_guarded_copy(*(_guarded_copier() if on else (0, 0)))
    try:
        yield
    finally:
        native.set_guarded_copy(*prev)


# --- single copies --------------------------------------------------------------------------
BAD = [0, 8, 0x1000, M64 - 15, 1 << 63, 0xFFFF_8000_0000_0000]


@st.composite
def user_ranges(draw):
    """(address, length) in and around the arena (an offset relative to it), or a wild pointer."""
    if draw(st.integers(0, 9)) == 0:
        return ("abs", draw(st.sampled_from(BAD))), draw(st.integers(0, 64))
    length = draw(st.integers(0, 3 * PAGE))
    off = draw(st.integers(-2 * PAGE, ARENA + PAGE))
    return ("arena", off), length


def _resolve(arena, where, n: int) -> int:
    kind, v = where
    if kind == "abs":
        return v
    # never past the guards: what lies beyond them is other memory of this process
    assert arena.lo <= arena.base + v and arena.base + v + n <= arena.base + ARENA + GUARD
    return arena.base + v


def _inside(arena, uaddr, n) -> bool:
    return n > 0 and arena.base <= uaddr and uaddr + n <= arena.base + ARENA


@settings(deadline=None, max_examples=300)
@given(rng=user_ranges(), pattern=st.binary(max_size=64), data=st.binary(max_size=64))
def test_copy_from_user_fast_checked_and_reference_agree(arena, rng, pattern, data):
    where, n = rng
    uaddr = _resolve(arena, where, n)
    arena.fill(pattern)
    outcomes = []
    for mode in ("fast", "guarded", "syscalls", "checked", "reference"):
        dst = bytearray(n)
        before = stats()
        if mode == "reference":
            got = ref.copy_from_user(uaddr, n) if uaddr else None
            ret = 0 if got is not None or n == 0 else -errno.EFAULT
            dst[:] = got if got is not None else dst
        else:
            with pins(arena.view) if mode == "fast" else contextlib.nullcontext(), guard_copies(mode != "syscalls"):
                ret = native.copy_from_user(dst, uaddr, checked=mode == "checked")
        used_memcpy = stats()["memcpy"] > before["memcpy"]
        outcomes.append((ret, bytes(dst) if ret == 0 else None))
        if mode == "fast":
            assert used_memcpy == _inside(arena, uaddr, n)
        else:
            assert not used_memcpy
        # (a NULL or wrapping range is refused before any copy)
        tried = n > 0 and uaddr != 0 and uaddr + n <= M64 + 1
        assert (stats()["guarded"] > before["guarded"]) == (mode in ("fast", "guarded") and tried and not used_memcpy)
    assert len(set(outcomes)) == 1, (where, n, outcomes)


@settings(deadline=None, max_examples=300)
@given(rng=user_ranges(), pattern=st.binary(max_size=64), data=st.binary(min_size=1, max_size=64))
def test_copy_to_user_fast_checked_and_reference_agree(arena, rng, pattern, data):
    where, n = rng
    uaddr = _resolve(arena, where, n)
    src = (data * (n // len(data) + 1))[:n]
    outcomes = []
    for mode in ("fast", "guarded", "syscalls", "checked", "reference"):
        arena.fill(pattern)
        before = stats()["memcpy"]
        if mode == "reference":
            ret = 0 if n == 0 or (uaddr and ref.copy_to_user(uaddr, src)) else -errno.EFAULT
        else:
            with pins(arena.view) if mode == "fast" else contextlib.nullcontext(), guard_copies(mode != "syscalls"):
                ret = native.copy_to_user(uaddr, src, checked=mode == "checked")
        used_memcpy = stats()["memcpy"] > before
        # a failed copy may have written a prefix: the same one on every path (the guarded copy
        # redoes a faulted copy page by page to stop where the syscalls stop)
        outcomes.append((ret, arena.snapshot()))
        assert used_memcpy == (mode == "fast" and _inside(arena, uaddr, n))
    assert len(set(outcomes)) == 1, (where, n)


def test_pins_are_per_thread_and_end_with_the_call(arena):
    seen = []
    with pins(arena.view):
        assert native.pinned(arena.base, ARENA, True)
        assert not native.pinned(arena.base - 1, 2)          # starts in the guard page
        assert not native.pinned(arena.base + ARENA - 1, 2)  # runs into the other one
        t = threading.Thread(target=lambda: seen.append(native.pinned(arena.base, 16)))
        t.start()
        t.join()
    assert seen == [False]  # another thread's copy of the same memory takes the checked path
    assert not native.pinned(arena.base, 16)


def test_pinned_buffers_are_held_for_the_call_only():
    buf = bytearray(64)
    with pinned(wire.scalars(0, 1, 0), [buf]) as descs:
        assert struct.unpack_from("<QQi", descs) == (address(buf), 64, -1)
        with pytest.raises(BufferError):
            buf.extend(b"x")  # pinned memory cannot move
    buf.extend(b"x")


def test_read_only_buffers_are_pinned_for_reading_only():
    ro = bytes(range(64))
    with pinned(wire.scalars(0, 1, 0, 0), [ro]):
        assert native.pinned(address(ro), 64, False)
        assert not native.pinned(address(ro), 64, True)


# --- who vouches for its memory -------------------------------------------------------------
def _memfd_map(size: int, prot=mmap.PROT_READ | mmap.PROT_WRITE):
    fd = os.memfd_create("copy-paths")
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, prot)


def test_which_exporters_vouch_for_their_memory():
    m = mmap.mmap(-1, PAGE)
    ro = mmap.mmap(-1, PAGE, prot=mmap.PROT_READ)
    none = mmap.mmap(-1, PAGE, prot=0)
    fd, shared = _memfd_map(2 * PAGE)
    carr = (ctypes.c_char * 16)()
    try:
        yes = [b"abc", bytearray(8), array.array("i", [1, 2]), memoryview(bytearray(8))[2:],
               np.arange(8), np.frombuffer(m, np.uint8)[4:], m]
        # a file's mapping never vouches: the file can shrink under it at any time, during the
        # call too (its pages past the end then raise SIGBUS; the guarded or checked copy says
        # EFAULT)
        no = [carr, memoryview(carr), np.frombuffer(carr, np.uint8), ro, none,
              (ctypes.c_char * 16).from_address(address(m)), shared, memoryview(shared)[PAGE:]]
        assert [native.vouches(x) for x in yes] == [True] * len(yes)
        assert [native.vouches(x) for x in no] == [False] * len(no)
    finally:
        del yes, no
        for mm in (m, ro, none, shared):
            mm.close()
        os.close(fd)


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "syscalls"])
def test_unvouched_buffers_fault_instead_of_crashing(soc, guarded):
    """Buffers whose memory Python cannot vouch for take the checked path - the DSP runtime's
    guarded copy (SIGSEGV and SIGBUS caught) or process_vm_readv: a ctypes view of a guard page,
    a PROT_NONE mmap and a mapping past its truncated file are EFAULT."""
    guard = Arena()
    fd, shared = _memfd_map(2 * PAGE)
    none = mmap.mmap(-1, PAGE, prot=0)
    try:
        for f in (soc.open_device("cdsp"), soc.open("/dev/fastrpc-cdsp")):
            with f:
                assert f.init_create(attrs=UNSIGNED) == 0
                h = open_module(f, TEST)[1]
                out = bytearray(PAGE)
                os.ftruncate(fd, 2 * PAGE)
                tail = memoryview(shared)[PAGE:]
                os.ftruncate(fd, PAGE)
                for bad in ((ctypes.c_char * 16).from_address(guard.base + ARENA), none, tail):
                    with pytest.raises(OSError) as e, guard_copies(guarded):
                        n = stats()["guarded"]
                        f.invoke(h, SC_ECHO, [bad, out])
                    assert e.value.errno == errno.EFAULT and (stats()["guarded"] > n) == guarded
                tail.release()
    finally:
        guard.close()
        none.close()
        shared.close()
        os.close(fd)


# --- the emulator's VMA registry -------------------------------------------------------------
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FIXED_NOREPLACE = 0x100000


def _map_of(mm) -> int:
    """The address of any mmap, read-only ones included."""
    return np.frombuffer(mm, np.uint8).ctypes.data


def test_registered_mapping_is_memcpy_while_its_owner_lives_and_efault_after():
    fd, mm = _memfd_map(3 * PAGE)
    mm[:] = bytes(range(256)) * (3 * PAGE // 256)
    start = _map_of(mm)
    entries = native.vma_count()
    vma.register(mm, start, 3 * PAGE, vma.file_key(fd))
    try:
        dst = bytearray(100)
        before = stats()
        assert native.copy_from_user(dst, start + PAGE + 7) == 0
        assert dst == mm[PAGE + 7:PAGE + 107]
        assert native.copy_to_user(start + 2 * PAGE, b"\x99" * 8) == 0 and mm[2 * PAGE:2 * PAGE + 8] == b"\x99" * 8
        after = stats()
        assert after["memcpy"] - before["memcpy"] == 2 and after["checked"] == before["checked"]
        # the file shrinks under the mapping: its pages past the end would SIGBUS; checked, EFAULT
        os.ftruncate(fd, PAGE)
        before = stats()["memcpy"]
        assert native.copy_from_user(dst, start + 2 * PAGE) == -errno.EFAULT
        assert native.copy_from_user(dst, start) == 0 and stats()["memcpy"] == before
        # unmapped while still registered (its owner alive, closed): EFAULT, no crash
        mm.close()
        hole = _libc.mmap(start, 3 * PAGE, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        if hole == start:  # the range is ours again, inaccessible: the copy must not touch it
            try:
                assert native.copy_from_user(dst, start) == -errno.EFAULT
                assert native.copy_to_user(start, b"x") == -errno.EFAULT
            finally:
                _libc.munmap(start, 3 * PAGE)
    finally:
        os.close(fd)
    del mm
    gc.collect()
    assert native.vma_count() == entries  # the owner's finalizer dropped the registration


def test_read_only_registered_mapping_takes_the_checked_path():
    fd, mm = _memfd_map(PAGE, prot=mmap.PROT_READ)
    start = _map_of(mm)
    vma.register(mm, start, PAGE, vma.file_key(fd))
    try:
        before = stats()["memcpy"]
        assert native.copy_to_user(start, b"x") == -errno.EFAULT  # process_vm_writev refuses
        dst = bytearray(4)
        assert native.copy_from_user(dst, start) == 0 and dst == bytes(4)
        assert stats()["memcpy"] == before
    finally:
        mm.close()
        os.close(fd)


# --- through the marshaller -----------------------------------------------------------------
@st.composite
def buffers(draw):
    """One buffer descriptor: (arena offset or wild address, length, by-reference)."""
    length = draw(st.integers(0, 2 * PAGE))
    if draw(st.integers(0, 14)) == 0:
        return ("abs", draw(st.sampled_from(BAD[1:]))), draw(st.integers(1, 64)), False
    off = draw(st.integers(-PAGE, ARENA))
    return ("arena", off), length, draw(st.integers(0, 9)) == 0


@settings(deadline=None, max_examples=150)
@given(nin=st.integers(0, 4), nout=st.integers(0, 4), data=st.data(), pattern=st.binary(max_size=32),
       va=st.sampled_from([0x7F00_0000_0000, 0x1000]))
def test_pack_and_unpack_same_with_and_without_pins(arena, nin, nout, data, pattern, va):
    bufs = [data.draw(buffers(), label=f"buffer {i}") for i in range(nin + nout)]
    sc = wire.scalars(1, nin, nout)
    args = b"".join(wire.INVOKE_ARG.pack(_resolve(arena, w, n) & M64, n, -1, 0) for w, n, _ in bufs)
    refs = b"".join(struct.pack("<QQ", 0x5000_0000, 4096) if byref else bytes(16) for _, _, byref in bufs)
    try:
        size = native.payload_size(sc, args, refs)
    except OSError as e:
        assert e.errno == ref_outcome(ref.payload_size, sc, args, refs)
        return
    if size > (1 << 20):
        return
    arena.fill(pattern)
    packed = {}
    for mode in ("fast", "checked", "reference"):
        payload = bytearray(size)
        m = ref if mode == "reference" else native
        with pins(arena.view) if mode == "fast" else contextlib.nullcontext():
            packed[mode] = (outcome(m.pack, sc, args, refs, payload, va, 0x9000_0000), payload)
    assert packed["fast"] == packed["checked"]
    assert packed["fast"][0] == packed["reference"][0]
    if packed["fast"][0][0] != "ok":
        return
    assert packed["fast"][1] == packed["reference"][1]
    # the DSP's reply: every out-buffer filled with its index
    reply = bytearray(packed["fast"][1])
    for i in range(nin, nin + nout):
        pv, n = struct.unpack_from("<QQ", reply, 16 * i)
        off = pv - va
        if not bufs[i][2] and n and 0 <= off <= len(reply) - n:
            reply[off:off + n] = bytes([i + 1]) * n
    after = {}
    for mode in ("fast", "checked", "reference"):
        arena.fill(pattern)
        m = ref if mode == "reference" else native
        with pins(arena.view) if mode == "fast" else contextlib.nullcontext():
            after[mode] = (outcome(m.unpack, sc, args, refs, bytes(reply), va), arena.snapshot())
    assert after["fast"] == after["checked"] == after["reference"]


def outcome(fn, *a):
    try:
        return ("ok", fn(*a))
    except OSError as e:
        return ("err", e.errno)


def ref_outcome(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno
    return None


# --- through the drivers --------------------------------------------------------------------
def _raw_invoke(f, h: int, sc: int, descs: bytearray) -> int:
    if hasattr(f, "uapi"):  # accel
        ioc = f.uapi.ioctls[uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INVOKE)]
        return f.ioctl(ioc.number, ioc.layout.pack(handle=h, sc=sc, args=address(descs)))
    return f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, uapi.fastrpc_invoke.pack(handle=h, sc=sc, args=address(descs)))


def _code(ret: int) -> int:
    """-errno as is; a DSP code as its unsigned 32-bit value (the typed methods' form)."""
    return ret if -4096 < ret < 0 else ret & 0xFFFFFFFF


def _typed(f, h, sc, args) -> int:
    try:
        return f.invoke(h, sc, args)
    except OSError as e:
        return -e.errno


@pytest.mark.parametrize("driver", ["accel", "legacy"])
@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_in=st.integers(0, 3 * PAGE), n_out=st.integers(0, 3 * PAGE), off=st.integers(0, 64),
       wild=st.sampled_from([None, None, None, 8, 0x1000, M64 - 15]), fill=st.integers(0, 255))
def test_typed_invoke_equals_raw_ioctl(soc, driver, n_in, n_out, off, wild, fill):
    """The typed invoke (buffers pinned: memcpy) and a raw INVOKE ioctl with the same
    descriptors (raw pointers: checked) give the same return, errno and out bytes; a wild
    in-pointer is EFAULT on the raw path."""
    f = soc.open_device("cdsp") if driver == "accel" else soc.open("/dev/fastrpc-cdsp")
    with f:
        assert f.init_create(attrs=UNSIGNED) == 0
        h = open_module(f, TEST)[1]
        src = bytearray(bytes([fill]) * (n_in + off))
        view = memoryview(src)[off:]
        results = []
        for path in ("typed", "raw"):
            out = bytearray(b"\xee" * n_out)
            before = stats()["memcpy"]
            if path == "typed":
                ret = _typed(f, h, SC_ECHO, [view, out])
            else:
                descs = bytearray(wire.INVOKE_ARG.pack(address(view) if wild is None else wild, n_in, -1, 0)
                                  + wire.INVOKE_ARG.pack(address(out), n_out, -1, 0))
                ret = _code(_raw_invoke(f, h, SC_ECHO, descs))
            used = stats()["memcpy"] - before
            results.append((ret, bytes(out)))
            assert used > 0 if path == "typed" and FAST else used == 0
        view.release()
        if wild is None or n_in == 0:
            assert results[0] == results[1]
        else:
            assert results[1] == (-errno.EFAULT, b"\xee" * n_out)


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_library_invoker_pins_its_callers_buffers(soc, backend):
    """remote_handle64_invoke: copied buffers the caller's exporters vouch for are memcpy'd, a
    ctypes one is checked; the results are the same."""
    import libadsprpc_compat as rpc

    rpc.use_soc(soc)
    try:
        lib = rpc.Library(backend)
        h = lib.remote_handle64_open(TEST)
        src = bytes(range(256)) * 64
        for kind in ("bytes", "ctypes"):
            arg = src if kind == "bytes" else (ctypes.c_char * len(src)).from_buffer_copy(src)
            out = bytearray(len(src))
            before = stats()
            rpc.remote_handle64_invoke(h, SC_ECHO, [arg, out])
            after = stats()
            assert out == src
            if not FAST:
                assert after == before  # the reference copies through ctypes, uncounted
            elif kind == "bytes":
                assert after["memcpy"] - before["memcpy"] >= 3  # descriptors, in, out
            else:
                assert after["checked"] > before["checked"]
        rpc.remote_handle64_close(h)
    finally:
        rpc.use_soc(None)
        rpc.set_backend("accel")


def test_the_runtime_guards_user_copies_from_its_load_unless_told_not_to():
    """Loading the DSP runtime (the first native skel) sets its guarded copy for the kernel's
    user copies; with QDARPC_UACCESS=checked it does not (a process of its own: once set, a
    process keeps it)."""
    import subprocess
    import sys

    code = ("from qda_core.dsp import dsprt; from qda_core._ext import load; m = load('_marshal'); "
            "before = dsprt.guarding_user_copies(); dsprt.load(); "
            "print(before, dsprt.guarding_user_copies(), m.set_guarded_copy(0) != (0, 0), "
            "dsprt.guarding_user_copies())")
    for env, want in (({}, "False True True False"), ({"QDARPC_UACCESS": "checked"}, "False False False False")):
        e = {k: v for k, v in os.environ.items() if k != "QDARPC_UACCESS"}
        out = subprocess.run([sys.executable, "-c", code], env={**e, **env}, capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == want, env


def test_guarded_copies_fault_cleanly_in_any_thread(arena):
    """Each thread's first guarded copy sets up what the guard needs (an alternate signal stack):
    a fault in a new thread's copy is EFAULT, and its good copies are exact."""
    arena.fill(b"threads")
    results = []

    def run():
        dst = bytearray(64)
        bad = native.copy_from_user(dst, arena.base + ARENA - 8, False)  # into the guard
        good = native.copy_from_user(dst, arena.base, False)
        results.append((bad, good, bytes(dst) == arena.snapshot()[:64]))

    with guard_copies(True):
        before = stats()["guarded"]
        ts = [threading.Thread(target=run) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert results == [(-errno.EFAULT, 0, True)] * 4 and stats()["guarded"] >= before + 8


#: What the children below start with: an inaccessible page at ``bad``.
_BAD_PAGE = r"""
import ctypes, mmap
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
bad = libc.mmap(None, mmap.PAGESIZE, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
"""
_HANDLERS_CHILD = _BAD_PAGE + r"""
import faulthandler, signal
from qda_core.dsp import dsprt
from qda_core._ext import load
m = load("_marshal")
dsprt.load()

def probe(what):
    s = m.copy_stats()
    r = m.copy_from_user(bytearray(8), bad), m.copy_to_user(bad, b"12345678")
    t = m.copy_stats()
    print(what, *r, t["guarded"] - s["guarded"], t["guard_refused"] - s["guard_refused"], flush=True)

probe("runtime")
signal.signal(signal.SIGSEGV, lambda *a: print("python handler ran", flush=True))
probe("signal.signal")
signal.signal(signal.SIGSEGV, signal.SIG_DFL)
probe("SIG_DFL")
dsprt.ensure_guard()
probe("ensure_guard")
faulthandler.enable()
probe("faulthandler.enable")
dsprt.ensure_guard()
probe("ensure_guard")
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGBUS])
probe("SIGBUS blocked")
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGBUS])
probe("unblocked")
"""


def test_copies_take_the_syscalls_while_the_guard_could_not_catch_their_fault():
    """The guarded copy catches a fault only while its handlers are the installed ones and the
    thread lets the signal through. Whatever the process did since the runtime loaded (Python's
    ``signal.signal``, ``SIG_DFL``, ``faulthandler.enable()``, a blocked SIGBUS), a bad address
    is EFAULT, through the syscalls while the guard is out, and never reaches another handler;
    ``ensure_guard()`` puts the guard back. (A process of its own: it changes its signals.)"""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("QDARPC_UACCESS", "PYTHONFAULTHANDLER")}
    res = subprocess.run([sys.executable, "-c", _HANDLERS_CHILD], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    guarded, refused = f"-{errno.EFAULT} -{errno.EFAULT} 2 0", f"-{errno.EFAULT} -{errno.EFAULT} 0 2"
    assert res.stdout.splitlines() == [
        f"runtime {guarded}", f"signal.signal {refused}", f"SIG_DFL {refused}", f"ensure_guard {guarded}",
        f"faulthandler.enable {refused}", f"ensure_guard {guarded}", f"SIGBUS blocked {refused}",
        f"unblocked {guarded}"]


def test_a_calls_copies_share_one_look_at_the_guard(soc):
    """The guard's readiness costs syscalls (qdarpc_guard_armed), so an emulated call asks once
    for all its copies (a user-copy scope, qda_uaccess_begin): a typed invoke with four in-buffers
    Python cannot vouch for makes four guarded copies and one check."""
    keep = [(ctypes.c_char * 16)(*(b"%02d" % i * 8)) for i in range(4)]
    bufs = [(ctypes.c_char * 16).from_address(ctypes.addressof(b)) for b in keep]  # (not vouched for)
    out = bytearray(16)
    with soc.open_device("cdsp") as f, guard_copies(True):
        assert f.init_create(attrs=UNSIGNED) == 0
        h = open_module(f, TEST)[1]
        f.invoke(h, SC_ECHO, [bufs[0], out])
        s = stats()
        with contextlib.suppress(OSError):  # (the null method answers whatever it is given)
            f.invoke(h, 0x02040100, [*bufs, out])
        t = stats()
    assert t["guarded"] - s["guarded"] >= 4
    assert (t["guard_checks"] - s["guard_checks"], t["guard_refused"] - s["guard_refused"]) == (1, 0)


def test_a_raw_invokes_copies_share_one_look_at_the_guard(soc):
    """The same for a raw INVOKE ioctl (what the device shim hands a C program's ioctl to): its
    descriptors, in-buffer and out-buffer copies are one scope (``serve_invoke``), asked once
    each way."""
    inb, outb = (ctypes.c_char * 16)(*b"0123456789abcdef"), (ctypes.c_char * 16)()
    descs = (ctypes.c_uint64 * 6)(ctypes.addressof(inb), 16, 0xFFFFFFFF, ctypes.addressof(outb), 16, 0xFFFFFFFF)
    with soc.open("/dev/fastrpc-cdsp") as f, guard_copies(True):
        assert f.init_create(attrs=UNSIGNED) == 0
        h = open_module(f, TEST)[1]
        inv = bytearray(struct.pack("<IIQ", h, SC_ECHO, ctypes.addressof(descs)))
        assert f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, inv) == 0
        s = stats()
        assert f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, inv) == 0
        t = stats()
    # one look for the copies in (descriptors, in-buffer), one for the copy back: the skel ran
    # in between and may have changed the handlers
    assert bytes(outb) == b"0123456789abcdef" and t["guarded"] - s["guarded"] == 3
    assert (t["guard_checks"] - s["guard_checks"], t["guard_refused"] - s["guard_refused"]) == (2, 0)


_SIG_SKEL = """\
import faulthandler
import os
import signal

from qda_core.dsp import Skeleton, method


class QdarpcSigSkel(Skeleton):
    @method(3)
    def handler(self, call):
        # a skel that installs a Python SIGSEGV handler for its own debugging
        signal.signal(signal.SIGSEGV, lambda *a: os.write(2, b"python handler ran\\\\n"))
        return 0

    @method(4)
    def fh(self, call):
        faulthandler.enable()  # a skel that turns faulthandler on
        return 0
"""
_SIG_CHILD = _BAD_PAGE + r"""
import sys
from qda_core.soc import Soc
from qda_core import uapi
from qda_core._ext import load
from qda_core.dsp import dsprt
from libadsprpc_compat.remotectl import open_module
m = load("_marshal")
dsprt.load()
f = Soc("default").open_device("cdsp")
assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
h = open_module(f, "file:///libqdarpc_sig_skel.so?qdarpc_sig_skel_handle_invoke&_modver=1.0&_dom=cdsp")[1]
inb = (ctypes.c_char * 16)(*b"0123456789abcdef")  # (ctypes: copied by the guarded copy)
s = m.copy_stats()
try:
    r = f.invoke(h, (int(sys.argv[1]) << 24) | 0x10100, [inb, (ctypes.c_char * 16).from_address(bad)])
except OSError as e:
    r = -e.errno
t = m.copy_stats()
print(r, t["guard_checks"] - s["guard_checks"], t["guard_refused"] - s["guard_refused"], flush=True)
f.close()
"""


@pytest.mark.parametrize("method", [3, 4], ids=["signal.signal", "faulthandler.enable"])
def test_handlers_a_skel_installs_count_for_its_calls_copies_back(tmp_path, method):
    """The copies back to the user are asked about the guard again (an attacker's review): a
    skel that installs a SIGSEGV handler while it runs makes its own call's bad out-buffer EFAULT
    through the syscalls, not a hang in the handler or a fatal error. (A process of its own.)"""
    import subprocess
    import sys

    (tmp_path / "libqdarpc_sig_skel.py").write_text(_SIG_SKEL)
    env = {k: v for k, v in os.environ.items() if k not in ("QDARPC_UACCESS", "PYTHONFAULTHANDLER")}
    res = subprocess.run([sys.executable, "-c", _SIG_CHILD, str(method)], env={**env, "DSP_LIBRARY_PATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == [str(-errno.EFAULT), "2", "1"]  # in: armed; back: refused
    assert "python handler ran" not in res.stderr


_TRUNC_SKEL = """\
import os

from qda_core.dsp import Skeleton, method


class QdarpcTruncSkel(Skeleton):
    @method(2)
    def trunc(self, call):
        os.truncate(os.environ["TRUNC_FILE"], 0)  # (any thread or process could, meanwhile)
        return 0
"""
_TRUNC_CHILD = r"""
import mmap, os, sys
from qda_core.soc import Soc
from qda_core import uapi
from libadsprpc_compat.remotectl import open_module
f = Soc("default").open_device("cdsp")
assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
h = open_module(f, "file:///libqdarpc_trunc_skel.so?qdarpc_trunc_skel_handle_invoke&_modver=1.0&_dom=cdsp")[1]
path = os.environ["TRUNC_FILE"]
for i in range(3):  # the lanes, then the route
    with open(path, "wb") as fh:
        fh.write(bytes(2 * mmap.PAGESIZE))
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, 2 * mmap.PAGESIZE)
    view = memoryview(mm)[mmap.PAGESIZE:mmap.PAGESIZE + 16]
    try:
        r = f.invoke(h, 0x02000100, [view])
    except OSError as e:
        r = -e.errno
    print(r, flush=True)
    view.release()
    mm.close()
    os.close(fd)
f.close()
"""


def test_a_file_mapping_truncated_during_the_call_is_efault(tmp_path):
    """An out-buffer in a mapping of the caller's file whose file the skel truncates while it
    runs (an attacker's review): its pages past the new end would raise SIGBUS, so a file's
    mapping never vouches for its memory, and the copy back is EFAULT, as the kernel's. (A
    process of its own: a failure is a death by SIGBUS.)"""
    import subprocess
    import sys

    (tmp_path / "libqdarpc_trunc_skel.py").write_text(_TRUNC_SKEL)
    env = {k: v for k, v in os.environ.items() if k != "QDARPC_UACCESS"}
    res = subprocess.run([sys.executable, "-c", _TRUNC_CHILD], capture_output=True, text=True, timeout=120,
                         env={**env, "DSP_LIBRARY_PATH": str(tmp_path), "TRUNC_FILE": str(tmp_path / "f")})
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.split() == [str(-errno.EFAULT)] * 3


_NEST_SKEL = """\
import builtins
import os
import signal

from qda_core.dsp import Skeleton, method

NESTED = builtins.__dict__.setdefault("_qdarpc_test_nested", {})


def _handler():
    signal.signal(signal.SIGSEGV, lambda *a: os.write(2, b"python handler ran\\\\n"))


class QdarpcNestSkel(Skeleton):
    @method(2)
    def plain(self, call):
        return 0

    @method(3)
    def handler_then_call(self, call):
        _handler()
        NESTED["result"] = NESTED["call"]()  # a host call from skel code, in the same thread
        return 0

    @method(4)
    def call_then_handler(self, call):
        NESTED["result"] = NESTED["good"]()
        _handler()
        return 0
"""
_NEST_CHILD = _BAD_PAGE + r"""
import builtins, struct, sys
from qda_core.soc import Soc
from qda_core import uapi
from qda_core.dsp import dsprt
from libadsprpc_compat.remotectl import open_module
dsprt.load()
soc = Soc("default")
files = [soc.open_device("cdsp") for _ in range(2)]
hs = []
for f in files:
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    hs.append(open_module(f, "file:///libqdarpc_nest_skel.so?qdarpc_nest_skel_handle_invoke&_modver=1.0&_dom=cdsp")[1])
req = files[1].uapi.ioctls[0x47].number
inb, outb = (ctypes.c_char * 16)(*b"0123456789abcdef"), (ctypes.c_char * 16)()
good = (ctypes.c_uint64 * 6)(ctypes.addressof(inb), 16, 0xFFFFFFFF, ctypes.addressof(outb), 16, 0xFFFFFFFF)
nested = builtins.__dict__.setdefault("_qdarpc_test_nested", {})
raw = (ctypes.c_char * 16).from_buffer_copy(struct.pack("<IIQ", hs[1], 0x02010100, ctypes.addressof(good)))
nested["call"] = lambda: files[1].ioctl(req, bad)  # the struct unreadable: EFAULT
nested["good"] = lambda: files[1].ioctl(req, ctypes.addressof(raw))
method = int(sys.argv[1])
# the outer call: its in-buffer copied by the guarded copy; with method 4 its out-buffer is bad
out = (ctypes.c_char * 16).from_address(bad) if method == 4 else (ctypes.c_char * 16)()
try:
    r = files[0].invoke(hs[0], (method << 24) | 0x10100, [(ctypes.c_char * 16)(*b"x" * 16), out])
except OSError as e:
    r = -e.errno
print(r, nested.get("result"), flush=True)
for f in files:
    f.close()
"""


@pytest.mark.parametrize("method", [3, 4], ids=["handler-then-nested-call", "nested-call-then-handler"])
def test_skel_code_makes_the_next_copy_ask_the_guard_again(tmp_path, method):
    """Skel code that changes the SIGSEGV handler and makes a host call of its own (a nested
    INVOKE in the same thread; another reviewer's finding): the nested call's bad struct, or
    the outer call's bad out-buffer after the nested call asked the guard, is EFAULT - each
    call of skel code makes the next copy ask again - never a hang or a death. (A process of
    its own.)"""
    import subprocess
    import sys

    (tmp_path / "libqdarpc_nest_skel.py").write_text(_NEST_SKEL)
    env = {k: v for k, v in os.environ.items() if k not in ("QDARPC_UACCESS", "PYTHONFAULTHANDLER")}
    res = subprocess.run([sys.executable, "-c", _NEST_CHILD, str(method)], capture_output=True, text=True,
                         timeout=120, env={**env, "DSP_LIBRARY_PATH": str(tmp_path)})
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    want = [0, str(-errno.EFAULT)] if method == 3 else [str(-errno.EFAULT), "0"]
    assert res.stdout.split() == [str(w) for w in want]
    assert "python handler ran" not in res.stderr


def test_dmabuf_mmap_of_a_file_that_can_shrink_is_never_copied_blindly():
    """``dmabuf_mmap`` registers any fd's mapping (another reviewer's finding: a file truncated
    while a copy ran raised SIGBUS). Only a file sealed against shrinking (``shrink_sealed``:
    the emulator's memfds, an imported dma-buf) lets copies of raw addresses in it be a
    ``memcpy``; any other takes the checked copies, EFAULT past its end."""
    from qda_core.legacy import dmabuf_mmap

    for sealed in (True, False):
        fd = os.memfd_create("shrinkable", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, 2 * PAGE)
            if sealed:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
            assert vma.shrink_sealed(fd) == sealed
            view = dmabuf_mmap(fd)
            start, dst = address(view), bytearray(16)
            before = stats()
            assert native.copy_from_user(dst, start + PAGE) == 0
            assert (stats()["memcpy"] - before["memcpy"] == 1) == sealed
            if not sealed:
                os.ftruncate(fd, PAGE)
                assert native.copy_from_user(dst, start + PAGE) == -errno.EFAULT
            view.release()
        finally:
            os.close(fd)
    with open(os.devnull, "rb") as devnull:  # (not a memfd: no seals at all)
        assert not vma.shrink_sealed(devnull.fileno())
