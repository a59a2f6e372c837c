"""Issue #8, "Isolation that holds": a Hypothesis state machine over several open files of one SoC.

Actors stand for separate processes on one compute DSP:

* ``A0``, ``A1``: raw QDA accel files, each opened on its own parked thread (the RFC shares a
  context bank between accel files opened by the same thread id, so one thread = one process);
* ``L0``, ``L1``: raw legacy ``/dev/fastrpc-cdsp`` files;
* ``PA``, ``PL``: the legacy user API (``libadsprpc_compat.Library``) over the accel and the
  legacy backend. Both are one process ("LIB"): rpcmem is process memory shared by both.

Every buffer is filled with a marker that names it (:func:`pattern`). Rules allocate, share
(PRIME export/import, passing an fd), map, invoke the ``qdarpc_test`` skel with by-reference
pointers aimed anywhere (own buffers, another file's mappings, unmapped addresses, offsets that
reach another context bank, lengths past the object), send crafted INIT-handle messages naming
another file's client id, crash, close, and restart the DSP. After every step:

* no actor reads, through the DSP, the marker of a buffer its process was not given;
* a well-formed read of one's own (or legitimately shared) buffer returns exactly its bytes;
* no buffer changes unless an actor that may write it acted;
* no actor's PD (state, modules, mappings) changes because another actor acted;
* a DSP module handle of one PD means nothing in another;
* every raw ioctl returns 0, ``-errno`` in [-4095, -1], or a DSP code (signed 32-bit);

and after closing everything: no live emulator object, no leaked fd, every context bank free,
no PD left on the DSP.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import gc
import os
import struct
import sys
import threading

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

import libadsprpc_compat as rpc
from libadsprpc_compat.remotectl import ModuleOpenError, open_module
from qda_core import debug, uapi, wire
from qda_core.legacy import dmabuf_mmap
from qda_core.mem import vma
from qda_core.soc import DomainSpec, Soc
from qda_core.uaccess import address

sys.path.insert(0, os.path.dirname(__file__))
from fuzz_worker import check_contract  # noqa: E402  - the raw-ioctl contract, one definition

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL, SC_ECHO, SC_INC, SC_CRASH, SC_MAPPED_READ = 0x02000000, 0x03010100, 0x04000100, 0x06000000, 0x08010100
UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
AEE_NO_SUCH_HANDLE = 0x8000043E
AEE_BADSTATE = 0x8000040D
RAW_ACCEL = ("A0", "A1")
RAW_LEGACY = ("L0", "L1")
LIBS = ("PA", "PL")
ACTORS = RAW_ACCEL + RAW_LEGACY + LIBS
#: Which process each actor stands for (fds, rpcmem and buffers handed over are per process).
PROCESS = {"A0": "A0", "A1": "A1", "L0": "L0", "L1": "L1", "PA": "LIB", "PL": "LIB"}
BIG = 40 << 30          # a reserved, never-touched address range: offsets into every CB's SID
MAP_NORESERVE = 0x4000
PAGE = 4096



# --- markers --------------------------------------------------------------------------------
def token(buf_id: int) -> bytes:
    """8 bytes naming buffer ``buf_id``: 0xA7 0x5A id16 0x5A 0xA7 ~id16."""
    return b"\xa7\x5a" + struct.pack("<H", buf_id) + b"\x5a\xa7" + struct.pack("<H", ~buf_id & 0xFFFF)


def pattern(buf_id: int, size: int) -> bytes:
    return (token(buf_id) * (size // 8 + 1))[:size]


def markers_in(data) -> set[int]:
    """Buffer ids whose marker token appears anywhere in ``data``."""
    data = bytes(data)
    found, i = set(), data.find(b"\xa7\x5a")
    while i >= 0:
        if i + 8 <= len(data) and data[i + 4:i + 6] == b"\x5a\xa7":
            bid = struct.unpack_from("<H", data, i + 2)[0]
            if struct.unpack_from("<H", data, i + 6)[0] == ~bid & 0xFFFF:
                found.add(bid)
        i = data.find(b"\xa7\x5a", i + 1)
    return found


class Buf:
    """A buffer of the model: who owns it, its CPU view, the emulator object behind it."""

    def __init__(self, bid: int, owner: str, kind: str, size: int, view, obj=None, rpcmem=None):
        self.id, self.owner, self.kind, self.size = bid, owner, kind, size
        self.view = view            # CPU mapping (memoryview) of the whole buffer
        self.obj = obj              # GemObject (its dma_addr is what an attacker aims at)
        self.rpcmem = rpcmem
        self.holders: set[str] = {owner}   # actors holding a reference (CPU view kept while any)
        self.fill()

    def fill(self) -> None:
        self.view[:] = pattern(self.id, self.size)

    def intact(self) -> bool:
        return bytes(self.view) == pattern(self.id, self.size)

    def __repr__(self) -> str:
        return f"<Buf #{self.id} {self.kind} of {self.owner} size={self.size:#x}>"


class Actor:
    def __init__(self, name: str):
        self.name = name
        self.proc = PROCESS[name]
        self.file = None
        self.lib = None
        self.stale = False          # opened before the last SSR
        self.refs: dict[int, Buf] = {}        # accel: GEM handle -> Buf; legacy: fd -> Buf
        self.own_fds: set[int] = set()        # legacy fds this actor must close
        self.handles: list[int] = []          # DSP module handles (raw) / remote_handle64 values (lib)
        self.mapped: dict[int, list[Buf]] = {}   # DSP mapping tag (fd field) -> buffers mapped under it
        self.map_vaddrs: list[tuple[int, int, int]] = []  # (tag, vaddr, size) for unmaps
        self.gate: threading.Event | None = None
        self.thread: threading.Thread | None = None

    @property
    def open(self) -> bool:
        return self.file is not None or self.lib is not None

    @property
    def accel(self) -> bool:
        return self.name in RAW_ACCEL

    def channel_and_cid(self):
        """(rpmsg channel, client id) of this actor's session on the DSP, or None. A session from
        before an SSR has no PD on the restarted DSP, whose driver numbers clients afresh: its
        client id may now name another file's PD."""
        if self.stale:
            return None
        if self.lib is not None:
            s = self.lib._sessions.get(3)
            if s is None or s.backend.file is None:
                return None
            return ("accel" if self.name == "PA" else "legacy"), s.backend.file.client_id
        if self.file is None:
            return None
        return ("accel" if self.accel else "legacy"), self.file.client_id


def _step(fn):
    """Mark a rule in progress, so that teardown after a failing step only cleans up."""
    @functools.wraps(fn)
    def wrapper(self, *a, **kw):
        self.pending = True
        self.acted = set()
        fn(self, *a, **kw)
        self.pending = False
    return wrapper


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class IsolationMachine(RuleBasedStateMachine):
    #: rule names to leave out (subclasses focus on one mechanism)
    disabled: frozenset[str] = frozenset()
    #: (live emulator objects, open fds) when no machine runs; taken once per test run
    baseline: tuple[dict, set] | None = None

    def __init__(self):
        super().__init__()
        if IsolationMachine.baseline is None:
            IsolationMachine.baseline = _baseline()
        self.live_before, self.fds_before = IsolationMachine.baseline
        self.soc = Soc([DomainSpec("cdsp", 8)])
        self.dom = self.soc.domain("cdsp")
        self.actors = {n: Actor(n) for n in ACTORS}
        self.bufs: dict[int, Buf] = {}
        self.next_id = 1
        self.allowed: dict[str, set[int]] = {p: set() for p in PROCESS.values()}
        self.pending = False
        self.acted: set[str] = set()
        self.snap = {}
        self.big = _libc.mmap(None, BIG, 0x1, 0x02 | 0x20 | MAP_NORESERVE, -1, 0)  # PROT_READ, PRIVATE|ANON
        assert self.big not in (None, ctypes.c_void_p(-1).value)
        self.big_start = vma.find_vma_start(self.big)
        self.regs: list[tuple[int, int]] = []   # remote_register_buf ranges to undo

    # --- helpers ----------------------------------------------------------------------------
    def enabled(self, name: str) -> bool:
        return name not in self.disabled

    def pick(self, names, i: int, pred=lambda a: True):
        cands = [self.actors[n] for n in names if pred(self.actors[n])]
        return cands[i % len(cands)] if cands else None

    def new_buf(self, owner: Actor, kind: str, size: int, view, obj=None, rpcmem=None) -> Buf:
        b = Buf(self.next_id, owner.name, kind, size, view, obj, rpcmem)
        self.next_id += 1
        self.bufs[b.id] = b
        self.allowed[owner.proc].add(b.id)
        note(f"  {b!r}")
        return b

    def check_ret(self, who: Actor, request: int, ret) -> int:
        check_contract("accel" if who.accel or who.name == "PA" else "legacy", request, ret)  # raises on a breach
        return ret

    def ioctl(self, who: Actor, request: int, buf) -> int:
        return self.check_ret(who, request, who.file.ioctl(request, buf))

    def raw_invoke(self, who: Actor, handle: int, sc: int, entries) -> int:
        """INVOKE with descriptors (ptr, len, fd) on ``who``'s raw file; entries keep buffers alive."""
        descs = bytearray(24 * len(entries))
        for i, (ptr, length, fd) in enumerate(entries):
            wire.INVOKE_ARG.pack_into(descs, 24 * i, ptr, length, fd, 0)
        layout = uapi.qda_invoke_args if who.accel else uapi.fastrpc_invoke
        req = uapi.DRM_IOCTL_QDA_INVOKE if who.accel else uapi.FASTRPC_IOCTL_INVOKE
        return self.ioctl(who, req, layout.pack(handle=handle, sc=sc, args=address(descs) if entries else 0))

    def pd_info(self, who: Actor):
        key = who.channel_and_cid()
        if key is None:
            return None
        for p in self.dom.dsp.processes():
            if (p.channel, p.client_id) == key:
                return (p.kind, p.state, tuple(h for h, _ in p.modules), p.mappings, p.mmaps)
        return None

    def healthy(self, who: Actor, handle: int) -> bool:
        info = self.pd_info(who)
        return not who.stale and info is not None and info[1] == "alive" and handle in info[2]

    def check_read(self, who: Actor, out, what: str) -> None:
        seen = markers_in(out) - self.allowed[who.proc]
        assert not seen, (f"{who.name} read the marker of {sorted(self.bufs.get(i, i) for i in seen)!r} "
                          f"through the DSP ({what})")

    def module(self, who: Actor, i: int):
        return who.handles[i % len(who.handles)] if who.handles else None

    # --- opens and closes -------------------------------------------------------------------
    @initialize()
    @_step
    def setup(self):
        """Every actor open, with a user PD, the test module and one buffer (rules take it from here)."""
        for n in RAW_ACCEL + RAW_LEGACY:
            a = self.actors[n]
            self._open(a)
            self._init_create(a)
            self._open_module(a)
            self._alloc(a, 8192)
        self._alloc(self.actors["PA"], 8192)   # rpcmem of the LIB process
        for n in LIBS:
            self._open_module(self.actors[n])
        self.acted = set(ACTORS)

    @rule(i=st.integers(0, 7))
    @_step
    def open_file(self, i):
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: not a.open)
        if a is not None:
            self.acted = {a.name}
            self._open(a)

    def _open(self, a: Actor) -> None:
        if a.accel:
            box, ready = [], threading.Event()
            a.gate = gate = threading.Event()

            def opener():  # this thread is the process: it stays alive until the file closes
                try:
                    box.append(self.soc.open_device("cdsp"))
                except OSError as exc:
                    box.append(exc)
                ready.set()
                gate.wait()
            a.thread = threading.Thread(target=opener, daemon=True)
            a.thread.start()
            ready.wait()
            res = box[0]
        else:
            try:
                res = self.soc.open("/dev/fastrpc-cdsp")
            except OSError as exc:
                res = exc
        if isinstance(res, OSError):
            note(f"open {a.name}: {res}")
            assert res.errno in (errno.EBUSY, errno.ENOMEM), res
            self._stop_thread(a)
            return
        a.file, a.stale = res, False
        note(f"open {a.name}: client {a.file.client_id}")

    def _stop_thread(self, a: Actor) -> None:
        if a.thread is not None:
            a.gate.set()
            a.thread.join()
            a.thread = a.gate = None

    @rule(i=st.integers(0, 7))
    @_step
    def close_actor(self, i):
        a = self.pick(ACTORS, i, lambda a: a.open)
        if a is not None:
            self.acted = {a.name}
            self._close(a)

    def _close(self, a: Actor) -> None:
        note(f"close {a.name}")
        if a.lib is not None:
            for h in a.handles:
                try:
                    a.lib.remote_handle64_close(h)
                except rpc.FastRpcError:
                    pass
            a.lib.close_all()
            a.lib = None
        if a.file is not None:
            a.file.close()
            a.file = None
        self._stop_thread(a)
        for fd in a.own_fds:
            os.close(fd)
        a.own_fds.clear()
        for b in list(a.refs.values()):
            self._drop_holder(b, a.name)
        for b in list(self.bufs.values()):
            if b.owner == a.name:
                self._drop_holder(b, a.name)
        a.refs.clear()
        a.handles.clear()
        a.mapped.clear()
        a.map_vaddrs.clear()
        if a.proc != "LIB":  # a file opened later stands for a new process
            self.allowed[a.proc] = set()

    def _drop_holder(self, b: Buf, name: str) -> None:
        b.holders.discard(name)
        if b.holders or b.id not in self.bufs:
            return
        del self.bufs[b.id]
        b.view.release()
        if b.rpcmem is not None:
            rpc.rpcmem_free(b.rpcmem)

    # --- PDs and modules --------------------------------------------------------------------
    @rule(i=st.integers(0, 7))
    @_step
    def init_create(self, i):
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open)
        if a is not None:
            self.acted = {a.name}
            self._init_create(a)

    def _init_create(self, a: Actor) -> None:
        if a.accel:
            ret = self.ioctl(a, uapi.DRM_IOCTL_QDA_INIT_CREATE, uapi.qda_init_create.pack(attrs=UNSIGNED))
        else:
            ret = self.ioctl(a, uapi.FASTRPC_IOCTL_INIT_CREATE,
                             uapi.fastrpc_init_create.pack(attrs=UNSIGNED, filefd=-1))
        note(f"{a.name} INIT_CREATE -> {ret:#x}")
        if ret == 0:
            assert self.pd_info(a)[:2] == ("user", "alive")

    @rule(i=st.integers(0, 7))
    @_step
    def open_test_module(self, i):
        a = self.pick(ACTORS, i, lambda a: a.name in LIBS or a.open)
        if a is not None:
            self.acted = {a.name}
            self._open_module(a)

    def _open_module(self, a: Actor) -> None:
        if a.name in LIBS:
            if a.lib is None:
                a.lib = rpc.Library("accel" if a.name == "PA" else "legacy", soc=self.soc)
            try:
                h = a.lib.remote_handle64_open(TEST)
            except rpc.FastRpcError as exc:
                note(f"{a.name} remote_handle64_open: {exc!r}")
                return
            a.handles.append(h)
            note(f"{a.name} remote_handle64_open -> session {a.channel_and_cid()}, handle {h:#x}")
            return
        try:
            ret, h = open_module(a.file, TEST)
        except (OSError, ModuleOpenError) as exc:
            note(f"{a.name} open_module: {exc!r}")
            return
        note(f"{a.name} open_module -> {ret:#x} handle {h:#x}")
        if ret == 0:
            a.handles.append(h)
            assert h in self.pd_info(a)[2]

    @rule(i=st.integers(0, 7), j=st.integers(0, 7))
    @_step
    def crash_own_pd(self, i, j):
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open and a.handles)
        if a is None:
            return
        self.acted = {a.name}
        ret = self.raw_invoke(a, self.module(a, j), SC_CRASH, [])
        note(f"{a.name} crash -> {ret & 0xFFFFFFFF:#x}")

    @rule(i=st.integers(0, 7), j=st.integers(0, 7), k=st.integers(0, 7))
    @_step
    def invoke_foreign_handle(self, i, j, k):
        """A DSP module handle of another PD means nothing in mine."""
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open)
        v = self.pick(RAW_ACCEL + RAW_LEGACY, j, lambda v: v.open and v is not a and v.handles)
        if a is None or v is None:
            return
        self.acted = {a.name}
        h = self.module(v, k)
        if h in a.handles:
            return
        ret = self.raw_invoke(a, h, SC_NULL, [])
        note(f"{a.name} invokes {v.name}'s handle {h:#x} -> {ret & 0xFFFFFFFF:#x}")
        assert ret != 0, f"{a.name} ran a module of {v.name}'s PD through handle {h:#x}"

    # --- buffers ----------------------------------------------------------------------------
    @rule(i=st.integers(0, 7), size=st.sampled_from([4096, 8192, 3 * 4096, 65536]))
    @_step
    def alloc(self, i, size):
        a = self.pick(RAW_ACCEL + RAW_LEGACY + ("PA",), i, lambda a: a.open or a.name == "PA")
        if a is not None:
            self.acted = {a.name}
            self._alloc(a, size)

    def _alloc(self, a: Actor, size: int) -> None:
        if a.name == "PA":  # rpcmem: process memory of the LIB process, registered (by reference)
            mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, size)
            b = self.new_buf(a, "rpcmem", size, memoryview(mem), rpcmem=mem)
            return
        if a.accel:
            kb = uapi.drm_qda_gem_create.pack(size=size)
            if self.ioctl(a, uapi.DRM_IOCTL_QDA_GEM_CREATE, kb):
                return
            h = uapi.drm_qda_gem_create.get(kb, "handle")
            view = a.file.mmap(a.file.gem_mmap_offset(h), size)
            b = self.new_buf(a, "gem", size, view, obj=a.file.lookup(h))
            a.refs[h] = b
            return
        kb = uapi.fastrpc_alloc_dma_buf.pack(fd=-1, size=size)
        if self.ioctl(a, uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, kb):
            return
        fd = uapi.fastrpc_alloc_dma_buf.get(kb, "fd")
        with a.file._lock:
            obj = a.file._dma_bufs[-1]
        b = self.new_buf(a, "dmabuf", size, dmabuf_mmap(fd, size), obj=obj)
        a.refs[fd] = b
        a.own_fds.add(fd)

    @precondition(lambda self: self.enabled("drop_fd"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63))
    @_step
    def drop_fd(self, i, j):
        """A legacy actor closes one of its dma-buf fds (the pages stay mapped); the number
        may come back for a different buffer."""
        a = self.pick(RAW_LEGACY, i, lambda a: a.open and a.refs)
        if a is None:
            return
        self.acted = {a.name}
        fd = sorted(a.refs)[j % len(a.refs)]
        b = a.refs.pop(fd)
        a.own_fds.discard(fd)
        os.close(fd)
        note(f"{a.name} closes fd {fd} of {b!r}")
        if b.owner != a.name:
            self._drop_holder(b, a.name)

    @precondition(lambda self: self.enabled("share"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63), k=st.integers(0, 7))
    @_step
    def share(self, i, j, k):
        """Hand a buffer to another process: PRIME export -> import, or pass the fd."""
        src = self.pick(RAW_ACCEL + RAW_LEGACY + ("PA",), i, lambda a: any(b.owner == a.name for b in self.bufs.values()))
        dst = self.pick(RAW_ACCEL + RAW_LEGACY, k, lambda d: d.open and d.proc != (src.proc if src else None))
        if src is None or dst is None:
            return
        self.acted = {src.name, dst.name}
        own = sorted((b for b in self.bufs.values() if b.owner == src.name), key=lambda b: b.id)
        b = own[j % len(own)]
        if b.kind == "gem":
            h = next((h for h, x in src.refs.items() if x is b), None)
            if h is None or src.file is None:
                return
            kb = uapi.drm_prime_handle.pack(handle=h, flags=uapi.DRM_CLOEXEC | uapi.DRM_RDWR)
            if self.ioctl(src, uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD, kb):
                return
            fd = uapi.drm_prime_handle.get(kb, "fd")
        elif b.kind == "rpcmem":
            fd = os.dup(b.rpcmem.fd)
        else:
            fd0 = next((f for f, x in src.refs.items() if x is b), None)
            if fd0 is None:
                return
            fd = os.dup(fd0)
        if dst.accel:
            kb = uapi.drm_prime_handle.pack(fd=fd)
            ret = self.ioctl(dst, uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE, kb)
            os.close(fd)
            if ret:
                return
            h = uapi.drm_prime_handle.get(kb, "handle")
            if h in dst.refs and dst.refs[h] is not b:
                raise AssertionError(f"{dst.name}: importing {b!r} returned handle {h}, already {dst.refs[h]!r}")
            dst.refs[h] = b
        else:
            dst.refs[fd] = b
            dst.own_fds.add(fd)
        b.holders.add(dst.name)
        self.allowed[dst.proc].add(b.id)
        note(f"{src.name} shares {b!r} with {dst.name}")

    # --- maps -------------------------------------------------------------------------------
    @precondition(lambda self: self.enabled("map_own"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63))
    @_step
    def map_own(self, i, j):
        """QDA MAP (attr request) of a GEM handle / legacy MEM_MAP of a dma-buf fd."""
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open and a.refs)
        if a is None:
            return
        self.acted = {a.name}
        tag = sorted(a.refs)[j % len(a.refs)]
        b = a.refs[tag]
        if a.accel:
            kb = uapi.qda_mem_map.pack(request=uapi.QDA_MAP_REQUEST_ATTR, fd=tag, size=b.size)
            ret = self.ioctl(a, uapi.DRM_IOCTL_QDA_MAP, kb)
            vaddr = uapi.qda_mem_map.get(kb, "vaddrout")
        else:
            kb = uapi.fastrpc_mem_map.pack(fd=tag, length=b.size)
            ret = self.ioctl(a, uapi.FASTRPC_IOCTL_MEM_MAP, kb)
            vaddr = uapi.fastrpc_mem_map.get(kb, "vaddrout")
        note(f"{a.name} maps {b!r} as {tag} -> {ret & 0xFFFFFFFF:#x} vaddr {vaddr:#x}")
        if ret == 0:
            a.mapped.setdefault(tag, []).append(b)
            a.map_vaddrs.append((tag, vaddr, b.size))

    @precondition(lambda self: self.enabled("map_own"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 63))
    @_step
    def unmap_own(self, i, j):
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open and a.map_vaddrs)
        if a is None:
            return
        self.acted = {a.name}
        tag, vaddr, size = a.map_vaddrs.pop(j % len(a.map_vaddrs))
        if a.accel:
            kb = uapi.qda_mem_unmap.pack(request=uapi.QDA_MAP_REQUEST_ATTR, fd=tag, vaddr=vaddr, size=size)
            ret = self.ioctl(a, uapi.DRM_IOCTL_QDA_MUNMAP, kb)
        else:
            ret = self.ioctl(a, uapi.FASTRPC_IOCTL_MEM_UNMAP, uapi.fastrpc_mem_unmap.pack(fd=tag, vaddr=vaddr, length=size))
        note(f"{a.name} unmaps {tag} at {vaddr:#x} -> {ret & 0xFFFFFFFF:#x}")
        if ret == 0 and a.mapped.get(tag):
            a.mapped[tag].pop(0)
            if not a.mapped[tag]:
                del a.mapped[tag]

    @rule(i=st.integers(0, 7), j=st.integers(0, 7), tag=st.integers(0, 63),
          off=st.sampled_from([0, 8, 4000, 4096, 65536]), length=st.sampled_from([8, 64, 4096]))
    @_step
    def mapped_read(self, i, j, tag, off, length):
        """HAP_mmap_get on the DSP: read a MEM_MAP'd buffer through the caller's PD."""
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open and a.handles)
        if a is None:
            return
        self.acted = {a.name}
        tags = sorted(a.mapped) + [1000 + t for t in range(4)]  # 1000+: crafted INIT maps
        tag = tags[tag % len(tags)]
        out = bytearray(length)
        h = self.module(a, j)
        ret = self.raw_invoke(a, h, SC_MAPPED_READ, [self._k(struct.pack("<iII", tag, off, length)), self._k(out)])
        note(f"{a.name} mapped_read({tag}, {off:#x}, {length:#x}) -> {ret & 0xFFFFFFFF:#x}")
        self.check_read(a, out, f"mapped_read of tag {tag}")
        bufs = a.mapped.get(tag, [])
        if ret == 0 and len(bufs) == 1 and off + length <= bufs[0].size:
            want = bytes(bufs[0].view[off:off + length])
            assert bytes(out) == want, f"{a.name}: mapped_read of {bufs[0]!r} returned other bytes"

    @staticmethod
    def _k(buf):
        return (address(buf), len(buf), -1)

    # --- invokes with pointers aimed anywhere -----------------------------------------------
    def _aim(self, a: Actor, kind: str, j: int, off: int, length: int):
        """(ptr, length, ref, keepalive, expected bytes or None) of a by-reference argument."""
        refs = sorted(a.refs)
        if not refs:
            return None
        ref = refs[j % len(refs)]
        b = a.refs[ref]
        if kind == "own":
            off %= b.size
            ptr = address(b.view) + off
            want = bytes(b.view[off:off + length]) if off + length <= b.size else None
            return ptr, length, ref, want
        others = sorted((x for x in self.bufs.values() if x is not b), key=lambda x: x.id)
        if kind == "foreign_view":  # a pointer into another buffer's CPU mapping, with my handle
            if not others:
                return None
            x = others[(j // max(1, len(refs))) % len(others)]
            return address(x.view) + off % x.size, length, ref, None
        if kind == "spill":  # an offset from my object's start to another object's device address
            victims = [x for x in others if x.obj is not None and b.obj is not None
                       and x.obj.dma_addr + off % x.size >= b.obj.dma_addr]
            if not victims:
                return None
            x = victims[(j // max(1, len(refs))) % len(victims)]
            delta = x.obj.dma_addr + off % x.size - b.obj.dma_addr
            ptr = self.big_start + delta
            if delta + length > BIG - (self.big_start - self.big) or vma.find_vma_start(ptr) != self.big_start:
                return None
            return ptr, length, ref, None
        if kind == "huge":  # the next SID(s), or past the end of the IOVA space
            ptr = self.big_start + ((1 + j % 3) << 32) + off
            return ptr, length, ref, None
        # unmapped: no VMA at all
        return 0x10000 + off, length, ref, None

    def _aimed_actor(self, i, kind, j, off, length):
        """(actor, aim) for a by-reference rule: a raw file with a module and buffers, and the
        pointer ``_aim`` makes for ``kind``; aim is None when the rule has nothing to do."""
        a = self.pick(RAW_ACCEL + RAW_LEGACY, i, lambda a: a.open and a.handles and a.refs)
        if a is None or not self.enabled(kind):
            return a, None
        self.acted = {a.name}
        return a, self._aim(a, kind, j, off, length)

    @rule(i=st.integers(0, 7), j=st.integers(0, 255), h=st.integers(0, 7),
          kind=st.sampled_from(["own", "own", "foreign_view", "spill", "huge", "unmapped"]),
          off=st.sampled_from([0, 1, 8, 4096, 4100, 8192, 65536 - 8]),
          length=st.sampled_from([8, 64, 4096, 4096 + 8, 65536, 1 << 20]))
    @_step
    def echo_by_reference(self, i, j, h, kind, off, length):
        """echo: in0 by reference (aimed by ``kind``) -> out0 copied back to the caller."""
        a, aim = self._aimed_actor(i, kind, j, off, length)
        if aim is None:
            return
        ptr, length, ref, want = aim
        out = bytearray(length)
        handle = self.module(a, h)
        healthy = self.healthy(a, handle)
        ret = self.raw_invoke(a, handle, SC_ECHO, [(ptr, length, ref), self._k(out)])
        note(f"{a.name} echo {kind} ptr={ptr:#x} len={length:#x} ref={ref} ({a.refs[ref]!r}) -> {ret & 0xFFFFFFFF:#x}")
        self.check_read(a, out, f"echo of a by-reference buffer aimed '{kind}'")
        if want is not None and healthy:
            assert ret == 0, f"{a.name}: echo of its own {a.refs[ref]!r} failed with {ret & 0xFFFFFFFF:#x}"
        if want is not None and ret == 0:
            assert bytes(out) == want, f"{a.name}: echo of {a.refs[ref]!r} returned bytes of another buffer"

    @precondition(lambda self: self.enabled("inc"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 255), h=st.integers(0, 7),
          kind=st.sampled_from(["own", "foreign_view", "spill", "huge", "unmapped"]),
          off=st.sampled_from([0, 8, 4096, 65536 - 8]), length=st.sampled_from([8, 64, 4096 + 8]))
    @_step
    def inc_by_reference(self, i, j, h, kind, off, length):
        """inc: the DSP writes the by-reference out0 in place (a write aimed by ``kind``)."""
        a, aim = self._aimed_actor(i, kind, j, off, length)
        if aim is None:
            return
        ptr, length, ref, _ = aim
        ret = self.raw_invoke(a, self.module(a, h), SC_INC, [(ptr, length, ref)])
        note(f"{a.name} inc {kind} ptr={ptr:#x} len={length:#x} ref={ref} -> {ret & 0xFFFFFFFF:#x}")

    # --- crafted INIT-handle messages (accel forwards a user invoke of handle 1) -------------
    @precondition(lambda self: self.enabled("init_release"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 7))
    @_step
    def forged_init_release(self, i, j):
        a = self.pick(RAW_ACCEL, i, lambda a: a.open)
        v = self.pick(RAW_ACCEL + ("PA",), j, lambda v: v.channel_and_cid() is not None)
        if a is None or v is None:
            return
        self.acted = {a.name}
        cid = struct.pack("<i", v.channel_and_cid()[1])
        ret = self.raw_invoke(a, wire.FASTRPC_INIT_HANDLE, wire.scalars(wire.RMID_INIT_RELEASE, 1, 0), [self._k(cid)])
        note(f"{a.name} sends INIT_RELEASE naming {v.name}'s client id -> {ret & 0xFFFFFFFF:#x}")

    @precondition(lambda self: self.enabled("init_mem_map"))
    @rule(i=st.integers(0, 7), j=st.integers(0, 7), k=st.integers(0, 63), tag=st.integers(0, 3),
          mmap_=st.booleans())
    @_step
    def forged_init_map(self, i, j, k, tag, mmap_):
        """INIT_MEM_MAP (or INIT_MMAP) of a page list of the caller's making, naming any client."""
        a = self.pick(RAW_ACCEL, i, lambda a: a.open)
        v = self.pick(RAW_ACCEL + ("PA",), j, lambda v: v.channel_and_cid() is not None)
        targets = sorted((b for b in self.bufs.values() if b.obj is not None), key=lambda b: b.id)
        if a is None or v is None or not targets:
            return
        self.acted = {a.name}
        b = targets[k % len(targets)]
        cid = v.channel_and_cid()[1]
        page = wire.PHY_PAGE.pack(b.obj.dma_addr, b.size)
        out = bytearray(8)
        if mmap_:
            req = wire.MMAP_REQ.pack(cid, 0x1000, 0, 1)
            sc = wire.scalars(wire.RMID_INIT_MMAP, 2, 1)
            entries = [self._k(req), self._k(page), self._k(out)]
        else:
            req = wire.MEM_MAP_REQ.pack(cid, 1000 + tag, 0, 0, 0, 1, 0)
            sc = wire.scalars(wire.RMID_INIT_MEM_MAP, 3, 1)
            entries = [self._k(req), self._k(page), (0, 0, -1), self._k(out)]
        ret = self.raw_invoke(a, wire.FASTRPC_INIT_HANDLE, sc, entries)
        note(f"{a.name} sends INIT_{'MMAP' if mmap_ else 'MEM_MAP'} naming {v.name}'s client id, "
             f"pages of {b!r} -> {ret & 0xFFFFFFFF:#x}")

    # --- the legacy API ---------------------------------------------------------------------
    @rule(i=st.integers(0, 1), j=st.integers(0, 7), k=st.integers(0, 63),
          off=st.sampled_from([0, 8, 4096]), length=st.sampled_from([8, 64, 4096]))
    @_step
    def lib_echo_rpcmem(self, i, j, k, off, length):
        """remote_handle64_invoke with an rpcmem slice: by reference, must read exactly it."""
        a = self.actors[LIBS[i]]
        mems = sorted((b for b in self.bufs.values() if b.kind == "rpcmem"), key=lambda b: b.id)
        if not a.handles or not mems:
            return
        self.acted = {a.name}
        b = mems[k % len(mems)]
        off %= b.size
        length = min(length, b.size - off)
        out = bytearray(length)
        try:
            rpc.remote_handle64_invoke(self.module(a, j), SC_ECHO, [b.view[off:off + length], out])
        except rpc.FastRpcError as exc:
            note(f"{a.name} echo rpcmem: {exc!r}")
            self.check_read(a, out, "echo of rpcmem (failed)")
            return
        self.check_read(a, out, "echo of rpcmem")
        assert bytes(out) == bytes(b.view[off:off + length]), f"{a.name}: echo of {b!r} returned other bytes"

    @precondition(lambda self: self.enabled("lib_spill"))
    @rule(i=st.integers(0, 1), j=st.integers(0, 7), k=st.integers(0, 63), v=st.integers(0, 63),
          length=st.sampled_from([8, 64, 4096]))
    @_step
    def lib_registered_spill(self, i, j, k, v, length):
        """remote_register_buf of a huge range under a small rpcmem fd, then an invoke with a
        pointer deep inside it: the offset must not carry into another buffer or context bank."""
        a = self.actors[LIBS[i]]
        mems = sorted((b for b in self.bufs.values() if b.kind == "rpcmem"), key=lambda b: b.id)
        if not a.handles or not mems or a.lib is None or 3 not in a.lib._sessions:
            return
        self.acted = {a.name}
        b = mems[k % len(mems)]
        # where does the session know b? its object's device address, if it was imported
        sess = a.lib._sessions[3]
        f = sess.backend.file
        own = None
        if f is not None and a.name == "PA":
            h = sess.backend._refs.get(b.rpcmem.fd)
            own = f.lookup(h) if h is not None else None
        elif f is not None:
            m = f.maps.get(b.rpcmem.fd)
            own = m.obj if m is not None else None
        victims = sorted((x for x in self.bufs.values() if x.obj is not None and x.kind != "rpcmem"
                          and own is not None and x.obj.dma_addr > own.dma_addr), key=lambda x: x.id)
        if own is not None and victims:
            x = victims[v % len(victims)]
            ptr = self.big_start + (x.obj.dma_addr - own.dma_addr)
        else:
            ptr = self.big_start + (1 << 32)
        size = ptr + length - self.big_start
        rpc.remote_register_buf(self.big_start, size, b.rpcmem.fd)
        out = bytearray(length)
        try:
            arg = (ctypes.c_char * length).from_address(ptr)
            rpc.remote_handle64_invoke(self.module(a, j), SC_ECHO, [arg, out])
            note(f"{a.name} registered-spill echo at +{ptr - self.big_start:#x} -> 0")
        except rpc.FastRpcError as exc:
            note(f"{a.name} registered-spill echo at +{ptr - self.big_start:#x}: {exc!r}")
        finally:
            rpc.remote_register_buf(self.big_start, size, -1)
        self.check_read(a, out, "echo through a registered range")

    # --- subsystem restart ------------------------------------------------------------------
    @precondition(lambda self: self.enabled("ssr"))
    @rule()
    @_step
    def ssr(self):
        self.acted = set(ACTORS)
        self.soc.restart("cdsp")
        note("SSR of cdsp")
        assert self.dom.dsp.processes() == []
        for a in self.actors.values():
            if a.open:
                a.stale = True

    # --- invariants -------------------------------------------------------------------------
    @invariant()
    def isolation_holds(self):
        try:
            self._check_isolation()
        except AssertionError:
            self.pending = True
            raise

    def _check_isolation(self):
        snap = {n: self.pd_info(a) for n, a in self.actors.items() if a.open}
        for name, info in snap.items():
            if name in self.acted or name not in self.snap:
                continue
            assert info == self.snap[name], (f"{name}'s PD changed from {self.snap[name]} to {info} when only "
                                             f"{sorted(self.acted)} acted")
        self.snap = snap
        writers = {self.actors[n].proc for n in self.acted}
        for b in list(self.bufs.values()):
            if b.intact():
                continue
            may = {p for p, ids in self.allowed.items() if b.id in ids}
            assert may & writers, f"{b!r} was modified when only {sorted(self.acted)} acted"
            b.fill()  # a permitted write: its owner writes the marker again

    def teardown(self):
        failing = self.pending
        try:
            for a in self.actors.values():
                if a.open:
                    self._close(a)
            for b in list(self.bufs.values()):
                b.holders.clear()
                self._drop_holder(b, "")
        except Exception:
            if not failing:
                raise  # otherwise the step's own failure is the one to report
        finally:
            _libc.munmap(self.big, BIG)
        if failing:
            # what a failed step left behind must not be blamed on the next example
            IsolationMachine.baseline = _baseline()
            return
        if debug.live_objects() != self.live_before:
            gc.collect()  # only when needed: a full collection costs more than a whole scenario
        assert debug.live_objects() == self.live_before, f"live emulator objects left: {debug.live_objects()}"
        leaked = {int(n) for n in os.listdir("/proc/self/fd")} - self.fds_before
        leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
        assert not leaked, f"leaked fds: {leaked}"
        assert self.dom.bus.free_count == len(self.dom.bus.cbs), \
            f"context banks still held: {[(cb.index, cb.owner, cb.refcount) for cb in self.dom.bus.cbs if not cb.free]}"
        assert self.dom.dsp.processes() == [], f"PDs left on the DSP: {self.dom.dsp.processes()}"


def _baseline() -> tuple[dict, set]:
    gc.collect()
    return debug.live_objects(), {int(n) for n in os.listdir("/proc/self/fd")}


def _settings(**kw):
    """The conftest profile's example budget, scaled for a machine that runs whole scenarios."""
    base = settings.default
    # One bug at a time, and no "explain" phase: while the drivers still fail an invariant, a
    # red run should print a minimal reproducer quickly rather than shrink every bug it met.
    return settings(base, max_examples=max(10, base.max_examples // 2), stateful_step_count=25, deadline=None,
                    report_multiple_bugs=False, phases=[p for p in Phase if p is not Phase.explain],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], **kw)


@pytest.mark.usefixtures("fd_guard")
def test_isolation_stateful():
    IsolationMachine.baseline = None
    run_state_machine_as_test(IsolationMachine, settings=_settings())
