"""A/B comparison of the legacy and the accel front end: one workload, two backends, one DSP.

A *workload* is a function over a :class:`~libadsprpc_compat.Library` returning its steps,
``[(name, value_or_FastRpcError), ...]``. :func:`run_ab` runs it once per backend (``legacy``
then ``accel`` unless ``order`` says otherwise) against ONE emulated SoC, each run under
:func:`qda_core.trace.recording`, and returns a plain, JSON-ready report dict:

* ``steps``: each step's outcome on each backend (a value, or an error with its AEE code and
  name) and whether they agree; ``agree`` / ``first_difference`` for the whole workload;
* ``runs[backend]``: the ioctls that backend issued (``FASTRPC_IOCTL_*`` on legacy,
  ``DRM_IOCTL_QDA_*`` / PRIME on accel), per INVOKE the payload bytes copied vs shared, the maps
  made (MAP / MEM_MAP / MMAP), ioctl errnos and API AEE codes, wall time and modeled on-device
  time (sum of the DSP events' ``modeled_ns``: in total, per step, and per ioctl, that of the
  DSP messages it sent; docs/cost_model.md), the nodes it created PDs on (first use first);
* ``ioctl_alignment``: the two ioctl sequences aligned with :mod:`difflib` on the operation
  (``INVOKE <sc>``, ``INIT_CREATE``, ``MAP`` ...), since the two drivers name them differently.

Sides across kernel revisions: ``run_ab(..., sides=["legacy:misc-7.3", "legacy:qda-shim"])``
(:func:`resolve_sides`). A side is a front end (the revision in force) or
``FRONTEND:REVISION``; sides that fit on one SoC share it, two revisions of one front end get
one SoC each (same profile), and the report is keyed by the sides' labels and says which
(``separate_dsps``, ``sides``). Without revisions named, the report is the legacy/accel one.

Workloads that build their list with :class:`Steps` also get per-step wall time and the ioctls
and bytes of each step. Built-ins: :data:`WORKLOADS` (``porting`` exercises what differs
between kernel revisions; :data:`ALL` is what ``qdarpc ab all`` runs). A user script defines
``def workload(lib) -> list[tuple[str, object]]`` (:func:`load_script`). Everything a run leaves
open (sessions, rpcmem allocations) is closed after it, so nothing leaks into the next run.
"""
from __future__ import annotations

import bisect
import difflib
import errno as _errno
import hashlib
import importlib.util
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from qda_core import trace as _trace
from qda_core import uapi
from qda_core.kernels import FRONTENDS, KernelError, Revision, kernel_spec, parse_kernel, valid_names
from qda_core._ext import load as _load
from qda_core.wire import MUNMAP_REQ

from . import process as _process
from .backends import BACKENDS as _BACKENDS
from .constants import (CDSP_DOMAIN, CDSP_DOMAIN_ID, DOMAIN_NAMES, DSPRPC_GET_DSP_INFO, FASTRPC_DOMAIN_URI,
                        FASTRPC_MAP_FD, RPCMEM_DEFAULT_FLAGS, RPCMEM_HEAP_ID_SYSTEM, remote_dsp_capability)
from .errors import FastRpcError, error_class
from .handle64 import remote_handle64_close, remote_handle64_invoke
from .library import Library
from .rpcmem import rpcmem_alloc, rpcmem_free, rpcmem_to_fd

_abi = _load("_abi")

__all__ = ["Steps", "WORKLOADS", "DESCRIPTIONS", "ALL", "run_ab", "compare_exec_runs", "load_script", "WorkloadError",
           "BACKEND_ORDER", "Side", "parse_side", "resolve_sides"]

Workload = Callable[[Library], "list[tuple[str, object]]"]
BACKEND_ORDER = ("legacy", "accel")

CALC_URI = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" + CDSP_DOMAIN
TEST_URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0" + CDSP_DOMAIN
SC_SUM, SC_MAX = 0x02020100, 0x03020100
SC_NULL, SC_ECHO, SC_INC, SC_CRASH, SC_CHECKSUM, SC_MAPPED_READ = (0x02000000, 0x03010100, 0x04000100,
                                                                  0x06000000, 0x07010100, 0x08010100)
SC_INIT_MUNMAP = 0x05010000  # kernel INIT handle (1), method 5: what MUNMAP sends the DSP


class WorkloadError(Exception):
    """The workload itself failed (not a FastRPC error of one of its steps)."""


class Steps(list):
    """The steps of a workload, a ``list`` of ``(name, value_or_error)``. :meth:`call` runs one
    step, catches its :class:`FastRpcError` as the outcome and remembers the step's wall time and
    the trace events it produced (the ioctls and bytes of each step in the report)."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[tuple[int, int, int]] = []  # (first event, end event, wall ns) per step

    def call(self, name: str, fn: Callable, *args, show: Callable[[Any], Any] | None = None, **kw):
        """Run ``fn(*args, **kw)`` as step ``name``; record ``show(result)`` (default the result)
        or the FastRpcError raised. Returns the raw result, or the exception."""
        rec = _trace.RECORDER
        first = len(rec.events) if rec is not None else 0
        t0 = time.perf_counter_ns()
        try:
            raw = fn(*args, **kw)
            value = show(raw) if show is not None else raw
        except FastRpcError as exc:
            raw = value = exc
        dt = time.perf_counter_ns() - t0
        self.append((name, value))
        self.windows.append((first, len(rec.events) if rec is not None else 0, dt))
        return raw


def failed(v) -> bool:
    """Whether a step's outcome ``v`` is an error (a FastRpcError) rather than a value."""
    return isinstance(v, FastRpcError)


def _bytes_summary(b) -> str:
    b = bytes(b)
    if len(set(b)) == 1 and len(b) > 4:
        return f"{len(b)} bytes, all {b[0]:#04x}"
    return b.hex() if len(b) <= 32 else f"{len(b)} bytes sha256:{hashlib.sha256(b).hexdigest()[:16]}"


# --- built-in workloads -------------------------------------------------------------------
def calculator(lib: Library) -> Steps:
    """fastrpc_test's libcalculator run_test: rpcmem before open, sum and max by reference."""
    s = Steps()
    buf = s.call("rpcmem_alloc(25, 1, 4000)", rpcmem_alloc, RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4000,
                 show=lambda m: f"{len(m)} bytes")
    if failed(buf):
        return s
    handles = []
    try:
        struct.pack_into("<1000i", buf, 0, *range(1000))
        prim = struct.pack("<i", 1000)
        h_sum = s.call("remote_handle64_open (sum)", lib.remote_handle64_open, CALC_URI, show=lambda h: "opened")
        if failed(h_sum):
            return s
        handles.append(h_sum)
        res = bytearray(8)
        s.call("calculator_sum  sc 0x02020100", remote_handle64_invoke, h_sum, SC_SUM, [prim, buf, res],
               show=lambda _: struct.unpack("<q", res)[0])
        h_max = s.call("remote_handle64_open (max)", lib.remote_handle64_open, CALC_URI, show=lambda h: "opened")
        if not failed(h_max):
            handles.append(h_max)
            m = bytearray(4)
            s.call("calculator_max  sc 0x03020100", remote_handle64_invoke, h_max, SC_MAX, [prim, buf, m],
                   show=lambda _: struct.unpack("<i", m)[0])
        for i, h in enumerate(list(handles)):
            s.call(f"remote_handle64_close ({'sum' if i == 0 else 'max'})", remote_handle64_close, h,
                   show=lambda _: "closed")
            handles.remove(h)
        return s
    finally:
        for h in handles:
            _quiet(remote_handle64_close, h)
        s.call("rpcmem_free", rpcmem_free, buf, show=lambda _: "freed")


def rpcmem_roundtrip(lib: Library) -> Steps:
    """qdarpc_test inc on rpcmem (by reference: caller bytes + 1) vs a plain bytearray (copied:
    a zeroed out-buffer, all 1s); echo and checksum copied and by reference."""
    s = Steps()
    mem = s.call("rpcmem_alloc(25, 1, 4096)", rpcmem_alloc, RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096,
                 show=lambda m: f"{len(m)} bytes")
    if failed(mem):
        return s
    mv = memoryview(mem)
    h = None
    try:
        h = s.call("remote_handle64_open", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if failed(h):
            h = None
            return s
        mv[:64] = b"\x10" * 64
        s.call("inc rpcmem[64] (0x10s, by reference)", remote_handle64_invoke, h, SC_INC, [mv[:64]],
               show=lambda _: _bytes_summary(mv[:64]))
        plain = bytearray(b"\x10" * 64)
        s.call("inc bytearray[64] (0x10s, copied)", remote_handle64_invoke, h, SC_INC, [plain],
               show=lambda _: _bytes_summary(plain))
        out = bytearray(16)
        s.call("echo 'hello, dsp' copied -> copied", remote_handle64_invoke, h, SC_ECHO, [b"hello, dsp", out],
               show=lambda _: bytes(out).rstrip(b"\0").decode(errors="replace"))
        mv[1024:1034] = b"hello, dsp"
        out2 = bytearray(16)
        s.call("echo rpcmem -> copied", remote_handle64_invoke, h, SC_ECHO, [mv[1024:1034], out2],
               show=lambda _: bytes(out2).rstrip(b"\0").decode(errors="replace"))
        mv[2048:4096] = bytes(range(256)) * 8
        total = bytearray(8)
        s.call("checksum rpcmem[2048] (by reference)", remote_handle64_invoke, h, SC_CHECKSUM,
               [mv[2048:4096], total], show=lambda _: struct.unpack("<Q", total)[0])
        s.call("checksum bytes[2048] (copied)", remote_handle64_invoke, h, SC_CHECKSUM,
               [bytes(range(256)) * 8, total], show=lambda _: struct.unpack("<Q", total)[0])
        s.call("remote_handle64_close", remote_handle64_close, h, show=lambda _: "closed")
        h = None
        return s
    finally:
        if h is not None:
            _quiet(remote_handle64_close, h)
        mv.release()
        s.call("rpcmem_free", rpcmem_free, mem, show=lambda _: "freed")


def mmap_lifecycle(lib: Library) -> Steps:
    """fastrpc_mmap of an rpcmem fd, read through the skel, EALREADY, munmap, ENOSUCHMAP, and
    remote_mem_map (the legacy kernel rejects flags 0; QDA forwards it)."""
    s = Steps()
    mem = s.call("rpcmem_alloc(25, 1, 4096)", rpcmem_alloc, RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096,
                 show=lambda m: f"{len(m)} bytes")
    if failed(mem):
        return s
    mem[:8] = b"mapped!!"
    fd = rpcmem_to_fd(mem)
    h = None
    try:
        h = s.call("remote_handle64_open", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if failed(h):
            h = None
            return s
        s.call("fastrpc_mmap(fd, FASTRPC_MAP_FD)", lib.fastrpc_mmap, CDSP_DOMAIN_ID, fd, mem, 0, 4096,
               FASTRPC_MAP_FD, show=lambda _: "mapped")
        dsp_fd = s.call("dsp_fd(fd): the buffer's number on the DSP", lib.dsp_fd, fd,
                        show=lambda n: "the dma-buf fd itself" if n == fd else f"GEM handle {n}")
        req = struct.pack("<iII", -1 if failed(dsp_fd) else dsp_fd, 0, 8)
        out = bytearray(8)
        s.call("mapped_read(dsp_fd, 0, 8)", remote_handle64_invoke, h, SC_MAPPED_READ, [req, out],
               show=lambda _: bytes(out).decode(errors="replace"))
        s.call("fastrpc_mmap again", lib.fastrpc_mmap, CDSP_DOMAIN_ID, fd, mem, 0, 4096, FASTRPC_MAP_FD,
               show=lambda _: "mapped")
        s.call("fastrpc_munmap(fd)", lib.fastrpc_munmap, CDSP_DOMAIN_ID, fd, None, 0, show=lambda _: "unmapped")
        s.call("fastrpc_munmap again", lib.fastrpc_munmap, CDSP_DOMAIN_ID, fd, None, 0, show=lambda _: "unmapped")
        s.call("mapped_read after munmap", remote_handle64_invoke, h, SC_MAPPED_READ, [req, out],
               show=lambda _: bytes(out).decode(errors="replace"))
        va = s.call("remote_mem_map(fd, flags 0)", lib.remote_mem_map, CDSP_DOMAIN_ID, fd, 0, mem.address, 4096,
                    show=lambda v: "mapped at a DSP address" if v else "address 0")
        if failed(va):
            s.append(("remote_mem_unmap", "skipped: nothing mapped"))
            s.windows.append((0, 0, 0))
        else:
            s.call("remote_mem_unmap", lib.remote_mem_unmap, CDSP_DOMAIN_ID, va, 4096, show=lambda _: "unmapped")
        s.call("remote_handle64_close", remote_handle64_close, h, show=lambda _: "closed")
        h = None
        return s
    finally:
        if h is not None:
            _quiet(remote_handle64_close, h)
        s.call("rpcmem_free", rpcmem_free, mem, show=lambda _: "freed")


def errors(lib: Library) -> Steps:
    """Error paths with their real codes, and the places the two front ends answer differently:
    the kernel-reserved handle 1, an unknown legacy MMAP address, GET_DSP_INFO, invoke after SSR."""
    s = Steps()
    h = s.call("remote_handle64_open", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
    if failed(h):
        return s
    try:
        s.call("invoke a bad handle64", remote_handle64_invoke, 0xDEAD_BEEF, SC_NULL, [], show=lambda _: "ok")
        h2 = s.call("open a second handle", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if not failed(h2):
            s.call("close it", remote_handle64_close, h2, show=lambda _: "closed")
            s.call("invoke the closed handle", remote_handle64_invoke, h2, SC_NULL, [], show=lambda _: "ok")
        s.call("open a missing module", lib.remote_handle64_open,
               "file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0" + CDSP_DOMAIN, show=lambda _: "opened")
        s.call("unknown method 16", remote_handle64_invoke, h, 0x10000000, [], show=lambda _: "ok")
        s.call("echo with 0 buffers (sc 0x03000000)", remote_handle64_invoke, h, 0x03000000, [],
               show=lambda _: "ok")
        s.call("raw invoke of kernel handle 1 (INIT_MUNMAP)", lib.remote_handle_invoke, 1, SC_INIT_MUNMAP,
               [MUNMAP_REQ.pack(0, 0x1000, 4096)], show=lambda _: "ok")
        s.call("remote_munmap64 of an address never mapped", lib.remote_munmap64, 0x1234000, 4096,
               show=lambda _: "unmapped")
        cap = remote_dsp_capability(CDSP_DOMAIN_ID, 3, 0)  # HVX_SUPPORT_128B
        s.call("GET_DSP_INFO HVX_SUPPORT_128B", lib.remote_handle_control, DSPRPC_GET_DSP_INFO, cap,
               show=lambda _: cap.capability)
        s.call("crash the skel", remote_handle64_invoke, h, SC_CRASH, [], show=lambda _: "ok")
        s.call("null on the dead PD", remote_handle64_invoke, h, SC_NULL, [], show=lambda _: "ok")
        s.call("close on the dead PD", remote_handle64_close, h, show=lambda _: "closed")
        h = None
        h3 = s.call("reopen after the crash", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if not failed(h3):
            h = h3
            s.call("subsystem restart of cdsp", lib.soc.restart, "cdsp", show=lambda _: "restarted")
            s.call("invoke after the restart", remote_handle64_invoke, h3, SC_NULL, [], show=lambda _: "ok")
        return s
    finally:
        if h is not None:
            _quiet(remote_handle64_close, h)


# --- porting: what differs between kernel revisions, seen through the library ---------------
def _driver_error(code: int, what: str, errno: int = 0) -> FastRpcError:
    """The FastRpcError a failed driver call surfaces as (the library's AEE code and errno)."""
    return error_class(code)(code, what, errno=errno or None, origin="driver" if errno else "host")


#: The DSPs every legacy revision has nodes for (GDSP has none on misc).
_EVERY_REVISION_DOMAINS = ("adsp", "mdsp", "sdsp", "cdsp", "cdsp1")


def _smallest_domain(soc) -> tuple[str, int]:
    """``(name, context banks)`` of the DSP with the fewest context banks among
    :data:`_EVERY_REVISION_DOMAINS`, ties in domain-table order."""
    reachable = [d for d in soc.domains.values() if d.name in _EVERY_REVISION_DOMAINS]
    if not reachable:
        raise WorkloadError(f"the SoC has no DSP every legacy revision serves ({', '.join(_EVERY_REVISION_DOMAINS)})")
    d = min(reachable, key=lambda d: len(d.bus.cbs))
    return d.name, len(d.bus.cbs)


def _set_poll_mode(lib: Library, domain: int) -> str:
    """What the driver answers FASTRPC_IOCTL_SET_OPTION(FASTRPC_POLL_MODE, 1) on the session
    file of ``domain``, as upstream's library (v1.0.7) sends it; the library here has no
    poll-mode call, so the answer is the step's value: ``"0: poll mode on"`` or the errno's
    name (misc-7.2 ENOTTY: no such ioctl; misc-7.3 and the shim EOPNOTSUPP on a SoC whose
    profile has no poll mode). The accel uapi of the emulated revisions has no SET_OPTION."""
    sess = lib._session(domain, create=False)
    if sess is None:
        raise FastRpcError(_abi.AEE_ENOTINITIALIZED, "no session open on that domain")
    if lib.backend != "legacy":
        try:
            uapi.ACCEL_UAPI[lib.soc.kernel["accel"].name].by_name("QDA_SET_OPTION")
        except KeyError:
            return "no SET_OPTION ioctl in the accel uapi"
        raise WorkloadError("this accel revision has a SET_OPTION ioctl the porting workload does not know")
    opt = uapi.fastrpc_ioctl_set_option.pack(request_id=uapi.FASTRPC_POLL_MODE,
                                              value=uapi.FASTRPC_POLL_MODE_ENABLE)
    ret = sess.backend.file.ioctl(uapi.FASTRPC_IOCTL_SET_OPTION, opt)
    if ret == 0:
        return "0: poll mode on"
    if not -4096 < ret < 0:
        return f"{ret:#x}"
    return "EOPNOTSUPP" if -ret == _errno.EOPNOTSUPP else _errno.errorcode.get(-ret, f"errno {-ret}")


def _signed_pd_on_non_secure_node(lib: Library, domain: int) -> str:
    """INIT_CREATE of a signed PD (attrs 0, no shell, as the library sends it) on the
    non-secure node: legacy ``/dev/fastrpc-<d>`` (where a process without access to
    ``-secure`` ends up: the library tries ``-secure`` first); accel has one node per DSP, no
    secure/non-secure split, so it is that node."""
    b = _BACKENDS[lib.backend](lib.soc)
    try:
        if lib.backend == "legacy":
            try:
                b.file = lib.soc.open(f"/dev/fastrpc-{DOMAIN_NAMES[domain]}", os.O_RDWR | os.O_NONBLOCK)
            except OSError as exc:
                raise _driver_error(_abi.errno_to_aee(exc.errno or _errno.EIO), "open", exc.errno or 0) from None
        else:
            code = b.open(domain, lib._nodes())
            if code:
                raise _driver_error(code, "open", b.errno)
        code = b.init_create(0)
        if code:
            raise _driver_error(code, "INIT_CREATE (signed PD)", b.errno)
        return "signed PD created"
    finally:
        b.close()


def porting(lib: Library) -> Steps:
    """What differs between kernel revisions, as a porter sees it through the library: the
    calculator flow (the same everywhere), the buffer number the DSP sees (fd or GEM handle),
    poll mode (SET_OPTION), a signed PD on the non-secure node, context-bank exhaustion, and
    the codes around a subsystem restart.

    Meant for ``qdarpc ab porting --a legacy:misc-7.3 --b legacy:qda-shim`` and the like: every
    step is a value or the FastRpcError the library raised, and names no node, fd or handle
    number, so two runs of one revision agree on every step. The calculator runs on a copied
    vector; passing rpcmem by reference is in the buffer-identity steps, where the accel
    library's GEM handles and ``accel:qda-v1-2026-05``'s DMA-BUF fd fields disagree (what v1
    answers depends on what the host fd of that number is: EINVAL, EACCES, EBADF). Context
    banks: sessions are opened (one Library each, as separate processes would) on the DSP with
    the fewest banks until one more than it has; the misc driver takes a bank at open (EBUSY
    there, which the library reports as AEE_ECONNREFUSED), the QDA shim at the PD's creation
    (EBUSY from INIT_CREATE, the library's raw -1), and an accel file shares its opener's bank
    (per PID), so none fails."""
    s = Steps()
    vec = struct.pack("<1000i", *range(1000))
    prim = struct.pack("<i", 1000)
    handles: list[int] = []
    extra: list[Library] = []
    mem = None
    try:
        # -- the calculator flow: the same on every revision --------------------------------
        h = s.call("calculator: remote_handle64_open", lib.remote_handle64_open, CALC_URI, show=lambda _: "opened")
        if not failed(h):
            handles.append(h)
            res, m = bytearray(8), bytearray(4)
            s.call("calculator: sum of 0..999 (copied)", remote_handle64_invoke, h, SC_SUM, [prim, vec, res],
                   show=lambda _: struct.unpack("<q", res)[0])
            s.call("calculator: max of 0..999 (copied)", remote_handle64_invoke, h, SC_MAX, [prim, vec, m],
                   show=lambda _: struct.unpack("<i", m)[0])
            s.call("calculator: remote_handle64_close", remote_handle64_close, h, show=lambda _: "closed")
            handles.remove(h)

        # -- buffer identity: the number the DSP knows an rpcmem buffer by ------------------
        mem = s.call("rpcmem_alloc(25, 1, 4096)", rpcmem_alloc, RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096,
                     show=lambda b: f"{len(b)} bytes")
        h = s.call("qdarpc_test: remote_handle64_open", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if not failed(h):
            handles.append(h)
        if not failed(mem) and not failed(h):
            mv = memoryview(mem)
            try:
                mv[:8] = b"mapped!!"
                mv[2048:4096] = bytes(range(256)) * 8
                fd = rpcmem_to_fd(mem)
                dsp_fd = s.call("dsp_fd(rpcmem fd): the buffer's number on the DSP", lib.dsp_fd, fd,
                                show=lambda n: "the dma-buf fd itself" if n == fd else "a GEM handle of the session file")
                total = bytearray(8)
                s.call("checksum rpcmem[2048] by reference", remote_handle64_invoke, h, SC_CHECKSUM,
                       [mv[2048:4096], total], show=lambda _: struct.unpack("<Q", total)[0])
                s.call("fastrpc_mmap(rpcmem fd, FASTRPC_MAP_FD)", lib.fastrpc_mmap, CDSP_DOMAIN_ID, fd, mem, 0, 4096,
                       FASTRPC_MAP_FD, show=lambda _: "mapped")
                req = struct.pack("<iII", -1 if failed(dsp_fd) else dsp_fd, 0, 8)
                out = bytearray(8)
                s.call("mapped_read(dsp_fd, 0, 8) on the DSP", remote_handle64_invoke, h, SC_MAPPED_READ, [req, out],
                       show=lambda _: bytes(out).decode(errors="replace"))
                s.call("fastrpc_munmap(rpcmem fd)", lib.fastrpc_munmap, CDSP_DOMAIN_ID, fd, None, 0,
                       show=lambda _: "unmapped")
            finally:
                mv.release()

            # -- poll mode: SET_OPTION on the session file ----------------------------------
            s.call("SET_OPTION FASTRPC_POLL_MODE 1 on the session file", _set_poll_mode, lib, CDSP_DOMAIN_ID)
            s.call("null invoke after it", remote_handle64_invoke, h, SC_NULL, [], show=lambda _: "ok")
            s.call("qdarpc_test: remote_handle64_close", remote_handle64_close, h, show=lambda _: "closed")
            handles.remove(h)
        if not failed(mem):
            s.call("rpcmem_free", rpcmem_free, mem, show=lambda _: "freed")
        mem = None

        # -- signed PD on the non-secure node -----------------------------------------------
        s.call("signed PD on cdsp's non-secure node (accel: its one node)", _signed_pd_on_non_secure_node, lib,
               CDSP_DOMAIN_ID)

        # -- context-bank exhaustion ----------------------------------------------------------
        name, cbs = _smallest_domain(lib.soc)
        uri = TEST_URI.replace(CDSP_DOMAIN, FASTRPC_DOMAIN_URI + name)
        for k in range(1, cbs + 2):
            other = Library(lib.backend, lib.soc)
            extra.append(other)
            got = s.call(f"open session {k} of {cbs + 1} on {name} ({cbs} context banks)",
                         other.remote_handle64_open, uri, show=lambda _: "opened")
            if failed(got):
                break
        for other in extra:
            other.close_all()
        extra.clear()
        again = Library(lib.backend, lib.soc)
        extra.append(again)
        s.call(f"after closing them: open a session on {name}", again.remote_handle64_open, uri,
               show=lambda _: "opened")
        again.close_all()
        extra.clear()

        # -- subsystem restart mid-session -------------------------------------------------
        h = s.call("open qdarpc_test for the restart", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if failed(h):
            return s
        handles.append(h)
        s.call("invoke before the restart", remote_handle64_invoke, h, SC_NULL, [], show=lambda _: "ok")
        s.call("subsystem restart of cdsp", lib.soc.restart, "cdsp", show=lambda _: "restarted")
        s.call("invoke after the restart", remote_handle64_invoke, h, SC_NULL, [], show=lambda _: "ok")
        s.call("close the handle", remote_handle64_close, h, show=lambda _: "closed")
        handles.remove(h)
        h = s.call("recovery: reopen", lib.remote_handle64_open, TEST_URI, show=lambda _: "opened")
        if not failed(h):
            handles.append(h)
            s.call("recovery: invoke", remote_handle64_invoke, h, SC_NULL, [], show=lambda _: "ok")
            s.call("recovery: close", remote_handle64_close, h, show=lambda _: "closed")
            handles.remove(h)
        return s
    finally:
        for other in extra:
            other.close_all()
        for h in handles:
            _quiet(remote_handle64_close, h)
        if mem is not None and not failed(mem):
            _quiet(rpcmem_free, mem)


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except FastRpcError:
        pass  # cleanup after a failed step: the step already reported the error


WORKLOADS: dict[str, Workload] = {
    "calculator": calculator,
    "rpcmem-roundtrip": rpcmem_roundtrip,
    "mmap-lifecycle": mmap_lifecycle,
    "errors": errors,
    "porting": porting,
}
DESCRIPTIONS = {name: " ".join((fn.__doc__ or "").split("\n\n")[0].split()) for name, fn in WORKLOADS.items()}
#: What ``qdarpc ab all`` runs: the workloads comparing the two front ends. ``porting`` is about
#: kernel revisions (``--a``/``--b``) and runs by name.
ALL = ("calculator", "rpcmem-roundtrip", "mmap-lifecycle", "errors")


def load_script(path: str) -> Workload:
    """The ``workload(lib)`` function of the Python script at ``path``. ``OSError`` if it cannot
    be read; :class:`WorkloadError` if it fails to import or defines no callable ``workload``."""
    with open(path, "rb"):  # a missing/unreadable file is an OSError naming it
        pass
    name = "qdarpc_ab_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkloadError(f"{path}: not a Python script")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code
        raise WorkloadError(f"{path}: {type(exc).__name__}: {exc}") from exc
    fn = getattr(mod, "workload", None)
    if not callable(fn):
        raise WorkloadError(f"{path} defines no workload(lib) function (def workload(lib) -> list of "
                            "(step name, value or FastRpcError))")
    return fn


# --- one run ----------------------------------------------------------------------------------
def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return _bytes_summary(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    return repr(v)


def outcome(v) -> dict:
    """A step's outcome as data: ``{"ok": True, "value": ...}`` or ``{"ok": False, "aee": code,
    "aee_name": ..., "origin": ..., "errno": ...}``."""
    if isinstance(v, FastRpcError):
        return {"ok": False, "aee": v.aee & 0xFFFF_FFFF, "aee_name": _abi.aee_name(v.aee & 0xFFFF_FFFF) or "",
                "origin": v.origin, "errno": v.errno or 0}
    return {"ok": True, "value": _jsonable(v)}


def outcome_text(o: dict) -> str:
    """A short display form of an outcome."""
    if o["ok"]:
        v = o["value"]
        return "ok" if v is None else str(v)
    text = f"{o['aee']:#x} {o['aee_name']}".rstrip()
    if o.get("errno"):
        text += f" (errno {_errno.errorcode.get(o['errno'], o['errno'])})"
    return text


def _same(a: dict, b: dict) -> bool:
    if a["ok"] != b["ok"]:
        return False
    return a["value"] == b["value"] if a["ok"] else a["aee"] == b["aee"]


# accel v1 (qda-v1-2026-05) names the session ioctls REMOTE_*: the same operations
_MAP_OPS = {"FASTRPC_IOCTL_MMAP", "FASTRPC_IOCTL_MEM_MAP", "DRM_IOCTL_QDA_MAP", "DRM_IOCTL_QDA_REMOTE_MAP"}
_UNMAP_OPS = {"FASTRPC_IOCTL_MUNMAP", "FASTRPC_IOCTL_MEM_UNMAP", "DRM_IOCTL_QDA_MUNMAP", "DRM_IOCTL_QDA_REMOTE_MUNMAP"}
_INVOKE_OPS = {"FASTRPC_IOCTL_INVOKE", "DRM_IOCTL_QDA_INVOKE", "DRM_IOCTL_QDA_REMOTE_INVOKE"}
_SESSION_OPS = ("INIT_CREATE", "SESSION_CREATE")
_STATIC_HANDLES = {0: "remotectl", 1: "INIT (kernel)", 2: "utilities", 3: "listener", 4: "current_process",
                   8: "remotectl1"}


def _handle_label(h: int) -> str:
    return _STATIC_HANDLES.get(h, f"static {h}" if h < 16 else "module")


def op_key(ev: dict) -> str:
    """The operation an ioctl event performs, named alike for both drivers (alignment key)."""
    n = ev["name"]
    for prefix in ("FASTRPC_IOCTL_", "DRM_IOCTL_QDA_", "DRM_IOCTL_"):
        if n.startswith(prefix):
            n = n[len(prefix):]
            break
    n = {"MEM_MAP": "MAP", "MMAP": "MAP", "MEM_UNMAP": "MUNMAP", "REMOTE_SESSION_CREATE": "INIT_CREATE",
         "REMOTE_MAP": "MAP", "REMOTE_MUNMAP": "MUNMAP", "REMOTE_INVOKE": "INVOKE"}.get(n, n)
    if n == "INVOKE":
        f = ev.get("fields", {})
        n += f" {_handle_label(int(f.get('handle', 0)))} {int(f.get('sc', 0)):#010x}"
    return n


def _ioctl_error(ev: dict) -> str | None:
    ret = ev["ret"]
    if ret == 0:
        return None
    if ev["errno"]:
        return _errno.errorcode.get(ev["errno"], str(ev["errno"]))
    code = ret & 0xFFFF_FFFF
    return f"DSP {code:#x} {_abi.aee_name(code) or ''}".rstrip()


def _step_of(windows, names, idx: int) -> str | None:
    for (first, end, _dt), name in zip(windows, names):
        if first <= idx < end:
            return name
    return None


def _run_one(workload: Workload, backend: str, soc, label: str | None = None) -> dict:
    lib = Library(backend=backend, soc=soc)
    kept, _process._keep = _process._keep, []  # what the workload allocates (see _process._keep)
    soc.faults.reset()  # each side meets the fault rules afresh, even on a shared SoC
    t0 = time.perf_counter_ns()
    try:
        with _trace.recording() as rec, soc.as_default():
            try:
                steps = workload(lib)
            except FastRpcError as exc:
                raise WorkloadError(f"the workload raised outside a step: {exc}") from exc
            except WorkloadError:
                raise
            except Exception as exc:  # noqa: BLE001 - user code
                raise WorkloadError(f"the workload failed on {label or backend}: {type(exc).__name__}: {exc}") from exc
            finally:
                wall = time.perf_counter_ns() - t0
                lib.close_all()
                for mm in _process._keep:  # left allocated by the workload
                    if mm.fd != -1:
                        rpcmem_free(mm)
    finally:
        _process._keep = kept
        lib.close_all()
    windows = steps.windows if isinstance(steps, Steps) and len(steps.windows) == len(steps) else None
    try:
        steps = [(str(name), value) for name, value in steps]
    except (TypeError, ValueError):
        raise WorkloadError(f"the workload returned {type(steps).__name__}, not a list of (name, value) "
                            "steps") from None
    return _summarize_run(backend, steps, windows, rec.events, wall)


def _dsp_within(events) -> Callable[[dict], int]:
    """``f(ioctl event)``: the modeled ns of the DSP messages that ioctl sent, i.e. of the ``dsp``
    events of the same process and thread inside its time span (delivery is synchronous)."""
    by_thread: dict[tuple, tuple[list[int], list[dict]]] = {}
    for e in sorted((e for e in events if e["kind"] == "dsp"), key=lambda e: e["ts"]):
        ts, evs = by_thread.setdefault((e["pid"], e["tid"]), ([], []))
        ts.append(e["ts"])
        evs.append(e)

    def within(io: dict) -> int:
        ts, evs = by_thread.get((io["pid"], io["tid"]), ((), ()))
        end = io["ts"] + io["dur"]
        return sum(d["modeled_ns"] for d in evs[bisect.bisect_left(ts, io["ts"]):bisect.bisect_right(ts, end)]
                   if d["ts"] + d["dur"] <= end)

    return within


def _summarize_run(backend: str, steps, windows, events, wall_ns: int) -> dict:
    names = [n for n, _ in steps]
    # Events are appended when they complete; ioctls never nest, so start order is issue order.
    indexed = [(i, e) for i, e in enumerate(events)]
    ioctls = sorted(((i, e) for i, e in indexed if e["kind"] == "ioctl"), key=lambda ie: ie[1]["ts"])
    # Events outside every step window are the workload's own clean-up (or the runner's).
    step_of = (lambda i: _step_of(windows, names, i) or "(cleanup)") if windows else (lambda i: None)
    seq, invokes, maps, ioctl_errors = [], [], [], []
    dsp_of = _dsp_within(events)
    for i, e in ioctls:
        err = _ioctl_error(e)
        entry = {"name": e["name"], "op": op_key(e), "step": step_of(i), "error": err, "modeled_ns": dsp_of(e)}
        if e["name"] in _INVOKE_OPS:
            entry.update(copied=e["copied"], shared=e["shared"])
        seq.append(entry)
        if e["name"] in _INVOKE_OPS:
            f = e.get("fields", {})
            invokes.append({"step": step_of(i), "handle": _handle_label(int(f.get("handle", 0))),
                            "sc": f"{int(f.get('sc', 0)):#010x}", "copied": e["copied"], "shared": e["shared"],
                            "modeled_ns": entry["modeled_ns"], "error": err})
        if e["name"] in _MAP_OPS | _UNMAP_OPS:
            maps.append({"name": e["name"], "unmap": e["name"] in _UNMAP_OPS, "step": step_of(i), "error": err})
        if err:
            ioctl_errors.append({"name": e["name"], "step": step_of(i), "error": err})
    api_errors = [{"name": e["name"], "aee": e["ret"] & 0xFFFF_FFFF,
                   "aee_name": _abi.aee_name(e["ret"] & 0xFFFF_FFFF) or ""}
                  for e in events if e["kind"] == "api" and e["ret"]]
    modeled = sum(e["modeled_ns"] for e in events if e["kind"] == "dsp")
    per_step = []
    for k, (name, value) in enumerate(steps):
        o = outcome(value)
        if windows:
            first, end, dt = windows[k]
            evs = events[first:end]
            o.update(wall_ns=dt, ioctls=sum(e["kind"] == "ioctl" for e in evs),
                     copied=sum(e.get("copied", 0) for e in evs if e["kind"] == "ioctl"),
                     shared=sum(e.get("shared", 0) for e in evs if e["kind"] == "ioctl"),
                     modeled_ns=sum(e["modeled_ns"] for e in evs if e["kind"] == "dsp"))
        per_step.append(o)
    nodes = sorted({e["node"] for _, e in ioctls})
    # where the run created PDs (INIT_CREATE; accel v1: REMOTE_SESSION_CREATE), in order of first use
    session_nodes = list(dict.fromkeys(e["node"] for _, e in ioctls if e["name"].endswith(_SESSION_OPS)))
    injected = [{"rule": e["rule"], "target": e["target"], "n": e["n"], "detail": e["detail"], "step": step_of(i)}
                for i, e in indexed if e["kind"] == "inject"]
    return {
        "backend": backend, "nodes": nodes, "session_nodes": session_nodes, "steps": per_step, "step_names": names,
        "injected": injected,
        "ioctls": seq, "invokes": invokes, "maps": maps,
        "errors": {"ioctl": ioctl_errors, "api": api_errors},
        "totals": {"ioctls": len(seq), "invokes": len(invokes),
                   "copied": sum(x["copied"] for x in invokes), "shared": sum(x["shared"] for x in invokes),
                   "maps_made": sum(1 for m in maps if not m["unmap"] and not m["error"]),
                   "maps_failed": sum(1 for m in maps if not m["unmap"] and m["error"]),
                   "unmaps": sum(1 for m in maps if m["unmap"] and not m["error"]),
                   "ioctl_errors": len(ioctl_errors), "api_errors": len(api_errors),
                   "wall_ns": wall_ns, "modeled_ns": modeled, "dsp_calls": sum(e["kind"] == "dsp" for e in events)},
    }


def align_ioctls(a: list[dict], b: list[dict]) -> list[dict]:
    """Rows ``{"op", "a", "b"}`` aligning two ioctl sequences on their operation keys; ``op`` is
    ``"="`` (same operation, same result), ``"!"`` (same operation, different error),
    ``"~"`` (different operations at this place), ``"<"`` (only in ``a``) or ``">"`` (only in ``b``)."""
    rows = []
    sm = difflib.SequenceMatcher(a=[x["op"] for x in a], b=[x["op"] for x in b], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            rows += [{"op": "=" if a[i].get("error") == b[j].get("error") else "!", "a": a[i], "b": b[j]}
                     for i, j in zip(range(i1, i2), range(j1, j2))]
            continue
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            x = a[i1 + k] if i1 + k < i2 else None
            y = b[j1 + k] if j1 + k < j2 else None
            rows.append({"op": "~" if x and y else ("<" if x else ">"), "a": x, "b": y})
    return rows


@dataclass(frozen=True)
class Side:
    """One side of an A/B run: the library's backend (a front end) and the kernel revisions of
    the SoC it runs on."""

    #: The side's key in the report (``runs``, step rows, ``order``): ``"legacy"``,
    #: ``"legacy:misc-7.3"``, with `` (a)``/`` (b)`` appended when both sides would be named alike.
    label: str
    #: The front end, i.e. the library's backend: ``"legacy"`` or ``"accel"``.
    frontend: str
    #: The selection string of every front end's revision on the side's SoC.
    kernel: str

    @property
    def revision(self) -> str:
        """``FRONTEND:REVISION`` of the side's own front end."""
        return str(parse_kernel(self.kernel)[self.frontend])


def parse_side(text: str) -> tuple[str, Revision | None]:
    """``"legacy"`` -> ``("legacy", None)`` (the revision in force); ``"legacy:misc-7.3"`` ->
    ``("legacy", Revision)``. ``ValueError`` (a :class:`qda_core.kernels.KernelError` listing the
    valid names) for anything else."""
    front, sep, _ = text.strip().partition(":")
    if front not in FRONTENDS or "," in text:
        raise KernelError(f"side {text!r} is not a front end ({', '.join(FRONTENDS)}) or FRONTEND:REVISION; "
                          f"valid: {', '.join(valid_names())}")
    return (front, parse_kernel(text.strip())[front]) if sep else (front, None)


def _base_kernel(soc, soc_profile: str | None, kernel: str | None) -> dict[str, Revision]:
    """The revisions a SoC built for this run follows where a side names none: the given SoC's;
    else ``kernel``, the profile's ``"kernel"``, ``$QDARPC_KERNEL``, the defaults (as
    :class:`qda_core.soc.Soc` resolves them)."""
    from qda_core.soc import load_profile

    if soc is not None:
        return dict(soc.kernel)
    if kernel is not None:
        return parse_kernel(kernel)
    named = {d.kernel for d in load_profile(soc_profile) if d.kernel is not None}
    return parse_kernel(named.pop() if len(named) == 1 else None)


def resolve_sides(sides: Iterable[str], *, soc=None, soc_profile: str | None = None,
                  kernel: str | None = None) -> tuple[list[Side], bool]:
    """The two :class:`Side` of ``sides`` (``FRONTEND`` or ``FRONTEND:REVISION`` each) and
    whether they need one SoC each.

    A bare front end takes the revision in force (:func:`_base_kernel`). Sides of two front
    ends, or of one front end at one revision, share one SoC following both; two revisions of
    one front end cannot (a SoC runs one revision per front end), so each side gets its own,
    built with its revision and the base for the other front end. Labels are the front ends
    unless a side names a revision, then every side's ``FRONTEND:REVISION``."""
    parsed = [parse_side(x) for x in sides]
    if len(parsed) != 2:
        raise ValueError(f"an A/B run has two sides, got {len(parsed)}")
    base = _base_kernel(soc, soc_profile, kernel)
    (fa, ra), (fb, rb) = ((f, r or base[f]) for f, r in parsed)
    separate = fa == fb and ra != rb
    if separate:
        kernels = [{**base, fa: ra}, {**base, fb: rb}]
    else:
        merged = {**base, fa: ra, fb: rb}
        kernels = [merged, merged]
    explicit = any(r is not None for _, r in parsed)
    labels = [str(k[f]) if explicit else f for (f, _), k in zip(parsed, kernels)]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]} (a)", f"{labels[1]} (b)"]
    if soc is not None and (separate or kernels[0] != dict(soc.kernel)):
        need = " and ".join(sorted({kernel_spec(k) for k in kernels}))
        raise ValueError(f"the given SoC runs {soc.kernel_spec}; these sides need {need} (pass no soc)")
    return [Side(lb, f, kernel_spec(k)) for lb, (f, _), k in zip(labels, parsed, kernels)], separate


def _plain(sides: list[Side]) -> bool:
    """The sides are the two front ends, named only so: the report of a plain legacy/accel run."""
    return all(s.label == s.frontend for s in sides)


def _describe_sides(rep: dict, sides: list[Side], separate: bool) -> dict:
    if not _plain(sides):
        rep["separate_dsps"] = separate
        rep["sides"] = {s.label: {"frontend": s.frontend, "revision": s.revision, "kernel": s.kernel}
                        for s in sides}
    return rep


def run_ab(workload: str | Workload, *, order: Iterable[str] = BACKEND_ORDER, sides: Iterable[str] | None = None,
           soc=None, soc_profile: str | None = None, kernel: str | None = None, name: str | None = None) -> dict:
    """Run ``workload`` (a built-in name or a function) once per side and return the report
    dict described in the module docstring. :class:`WorkloadError` when the workload itself
    fails; ``ValueError`` for an unknown name, backend or side.

    Without ``sides``: once per backend in ``order``, against one emulated SoC (``soc``, else a
    fresh ``Soc(soc_profile, kernel=kernel)``). ``sides`` (two of ``FRONTEND`` or
    ``FRONTEND:REVISION``, instead of ``order``): see :func:`resolve_sides`; one SoC when both
    fit on one, else one each (``separate_dsps``). Unless the sides are just the two front
    ends, the report's keys are the sides' labels (``"legacy:misc-7.3"``) and it carries
    ``separate_dsps`` and ``sides`` (label -> front end, revision, the SoC's kernel)."""
    from qda_core.soc import Soc

    order = tuple(order)
    if sorted(order) != sorted(BACKEND_ORDER):
        raise ValueError(f"order must name each backend once: {', '.join(BACKEND_ORDER)} (got {', '.join(order)})")
    if sides is not None and order != BACKEND_ORDER:
        raise ValueError("give the sides or the order, not both")
    if isinstance(workload, str):
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}; built-in: {', '.join(WORKLOADS)}")
        name, description, fn = workload, DESCRIPTIONS[workload], WORKLOADS[workload]
    else:
        fn = workload
        name = name or getattr(fn, "__name__", "workload")
        description = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
    if sides is None:
        soc = soc if soc is not None else Soc(soc_profile, kernel=kernel)
        runs = {b: _run_one(fn, b, soc) for b in order}
        return _report(name, description, order, soc_profile, runs)
    resolved, separate = resolve_sides(sides, soc=soc, soc_profile=soc_profile, kernel=kernel)
    if separate:
        socs = [Soc(soc_profile, kernel=x.kernel) for x in resolved]
    else:
        one = soc if soc is not None else Soc(soc_profile, kernel=resolved[0].kernel if not _plain(resolved)
                                              else kernel)
        socs = [one, one]
    runs = {x.label: _run_one(fn, x.frontend, sc, x.label) for x, sc in zip(resolved, socs)}
    rep = _report(name, description, tuple(x.label for x in resolved), soc_profile, runs)
    return _describe_sides(rep, resolved, separate)


#: Lines of a program's output compared one by one by :func:`compare_exec_runs`.
EXEC_LINES = 200


def compare_exec_runs(command: str, runs: dict, *, order: Iterable[str] = BACKEND_ORDER,
                      soc_profile: str | None = None, sides: list[Side] | None = None) -> dict:
    """The ``ab`` report of a program run once per backend (``qdarpc ab --exec``).

    ``runs[backend]`` is ``(exit code, stdout, stderr, trace events, wall ns)``; the steps
    compared are the exit code and each line of standard output (the first
    :data:`EXEC_LINES`, then one step for the rest), and each run's trace gives its ioctls,
    copies and shares, maps, errors and modeled time as for a workload. With ``sides``
    (:func:`resolve_sides`), ``runs`` is keyed by their labels instead, in their order."""
    order = tuple(x.label for x in sides) if sides is not None else tuple(order)
    backend = {x.label: x.frontend for x in sides} if sides is not None else {}
    summaries = {}
    for b in order:
        code, out, err, events, wall = runs[b]
        lines = out.splitlines()
        steps = [("exit code", code)]
        steps += [(f"stdout line {i + 1}", line) for i, line in enumerate(lines[:EXEC_LINES])]
        if len(lines) > EXEC_LINES:
            rest = "\n".join(lines[EXEC_LINES:]).encode()
            steps.append((f"stdout lines {EXEC_LINES + 1}-", f"{len(lines) - EXEC_LINES} lines, sha1 "
                          f"{hashlib.sha1(rest).hexdigest()[:12]}"))
        summaries[b] = _summarize_run(backend.get(b, b), steps, None, events, wall)
        summaries[b]["stderr"] = err
    rep = _report(command, f"the program {command!r}, once per backend", order, soc_profile, summaries)
    rep["separate_dsps"] = True
    if sides is not None and not _plain(sides):
        rep["sides"] = {x.label: {"frontend": x.frontend, "revision": x.revision, "kernel": x.kernel} for x in sides}
    return rep


def _report(name: str, description: str, order: tuple, soc_profile: str | None, runs: dict) -> dict:
    a, b = (runs[x] for x in order)
    steps, first_diff = [], None
    names_a, names_b = a["step_names"], b["step_names"]
    for k in range(max(len(names_a), len(names_b))):
        oa = a["steps"][k] if k < len(names_a) else None
        ob = b["steps"][k] if k < len(names_b) else None
        na = names_a[k] if k < len(names_a) else None
        nb = names_b[k] if k < len(names_b) else None
        same = oa is not None and ob is not None and na == nb and _same(oa, ob)
        row = {"index": k, "name": na if na == nb or nb is None else (nb if na is None else f"{na} / {nb}"),
               order[0]: oa, order[1]: ob, "same": same}
        steps.append(row)
        if not same and first_diff is None:
            first_diff = {"index": k, "name": row["name"],
                          order[0]: outcome_text(oa) if oa else "(no such step)",
                          order[1]: outcome_text(ob) if ob else "(no such step)"}
    for r in runs.values():
        del r["step_names"]
    return {
        "workload": name, "description": description, "order": list(order),
        "soc": soc_profile or "default",
        "agree": first_diff is None, "first_difference": first_diff,
        "differences": sum(not s["same"] for s in steps),
        "steps": steps, "runs": runs,
        "ioctl_alignment": align_ioctls(a["ioctls"], b["ioctls"]),
    }
