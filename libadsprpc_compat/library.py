"""One instance of the legacy FastRPC user library over one backend.

:class:`Library` holds what ``libcdsprpc`` holds per process: the sessions (one open device
file = one DSP user process per effective domain), the per-domain options set by
``remote_session_control``, the multi-domain handle records and the thread-local current
domain. What is process memory — rpcmem allocations, buffer and dma-handle registrations,
handle64 records — is shared by every Library in the process, so one rpcmem buffer can go by
reference to a handle of either backend. The module-level functions of the package call the
default Library of the selected backend; handle64 values route themselves to their Library.

Decisions a user must know (each is also in the function's docstring):

* ``rpcmem_alloc`` works before any other call (lazy init, spec §10.1).
* On ``accel``, a registered buffer reaches the DSP by reference even when it was allocated
  before the session existed: it is imported (PRIME_FD_TO_HANDLE) into the session on first
  use. LIB 759d6f8 would leave such a buffer unregistered, i.e. copied.
* On ``accel`` the DSP knows a buffer by its GEM handle in the session file (what
  ``HAP_mmap_get``/dma-handle arguments see); :meth:`Library.dsp_fd` gives that number.
* A closed ``remote_handle64`` is invalid at once (``AEE_EINVHANDLE``); QF keeps it reaching the
  DSP until the session ends (spec §10.2).
* ``set_backend`` after the first module-level open raises :class:`AlreadyLoadedError`.
* After ``fork()`` the child starts with no sessions on a fresh emulated SoC; handles from the
  parent are invalid there, rpcmem buffers stay shared (see :class:`Library`).
* A pointer the library must read or write (``remote_session_control`` names and URIs) is
  accessed with the emulator's checked copies: a bad one is AEE_EBADPARM with errno EFAULT.
  An int argument outside its C type is AEE_EBADPARM.
"""
from __future__ import annotations

import atexit
import ctypes
import errno as _errno
import fcntl
import itertools
import mmap
import operator
import os
import struct
import threading
import weakref

from qda_core import debug as _debug
from qda_core import soc as _socmod
from qda_core import trace as _trace
from qda_core._ext import load as _load
from qda_core.mem import backing as _backing
from qda_core.mem import vma as _vma
from qda_core.soc import default_soc as _default_soc
from qda_core.uaccess import address as _address
from qda_core.uaccess import copy_from_user, copy_to_user

from . import _remote, remotectl
from .backends import AccelBackend, LegacyBackend
from .constants import (DEFAULT_DOMAIN_ID, DOMAIN_NAMES, FASTRPC_ATTR_NOMAP, FASTRPC_ATTR_NOVA,
                        FASTRPC_MAP_MAX, HANDLE_CONTROL_STRUCTS, NUM_DOMAINS, NUM_DOMAINS_EXTEND,
                        NUM_SESSIONS, RPCMEM_HEAP_NOREG, SESSION_CONTROL_STRUCTS)
from .errors import AlreadyLoadedError, FastRpcError, raise_for

_abi = _load("_abi")
if _remote.__version__ != _abi.__version__:
    raise ImportError(f"libadsprpc_compat._remote was built for {_remote.__version__!r}, qda_core is "
                      f"{_abi.__version__!r}; rebuild it with `pip install .`")

A = _abi
BACKENDS = ("accel", "legacy")
_ORIGINS = {_remote.ORIGIN_DSP: "dsp", _remote.ORIGIN_HOST: "host", _remote.ORIGIN_DRIVER: "driver"}
STATICPD_LO, STATICPD_HI = 0x100, 0x200
ITRANSPORT_PREFIX = "'\":;./\\"
_SC_EXIT = 0x02000000          # adsp_current_process1.exit (handle 4, method 2)
_SC_EXCEPTION = 0x07000000     # adsp_current_process1.exception (handle 4, method 7)
_CURRENT_PROCESS1 = 4
_SET_PARAM = {remotectl.REMOTECTL1_HANDLE: 0x05020000, remotectl.REMOTECTL_HANDLE: 0x03020000}
_PARAM_THREAD, _PARAM_ADAPTIVE_QOS = 1, 2
_DEFAULT_PRIO, _DEFAULT_STACK = 192, 16 * 1024
_MIN_STACK, _MAX_STACK = 16 * 1024, 8 * 1024 * 1024
FASTRPC_MODE_UNSIGNED_MODULE = 0x8
DMA_HANDLE_TABLE = 256

# --- process-wide state (process memory; shared by every Library) -------------------------
_lock = threading.RLock()        # protects everything below and Library session tables
REGS = _remote.RegTable()        # registered ranges: rpcmem + remote_register_buf
_rpcmem: dict[int, "RpcMem"] = {}           # base address -> allocation
_dma_regs: dict[int, list[tuple[int, int]]] = {}  # fd -> [(len, attr)] uses, consumed per invoke
_records: dict[int, "_Record"] = {}          # remote_handle64 value -> record
_next_h64 = itertools.count(0x51D0_0000_1000, 0x40)   # opaque, pointer-like, never a static-PD value
_session_keys = itertools.count(1)
_libraries: "weakref.WeakSet[Library]" = weakref.WeakSet()


def _fail(code: int, message: str = "", *, errno: int | None = None, origin: str | None = None):
    raise_for(code, message, errno=errno, origin=origin)


# C parameter types: a Python int outside the type's range fails with AEE_EBADPARM here instead
# of an OverflowError/struct.error deep in a driver call.
C_INT = (-(1 << 31), (1 << 31) - 1)
C_UINT32 = (0, (1 << 32) - 1)
C_INT64 = (-(1 << 63), (1 << 63) - 1)
C_UINT64 = (0, (1 << 64) - 1)  # size_t, uint64_t, pointers
C_BITS32 = (-(1 << 31), (1 << 32) - 1)  # a 32-bit flag word given as int or uint32_t


def _c_arg(value, ctype: tuple[int, int], what: str) -> int:
    """``value`` as an int of the C type ``ctype`` (one of the ``C_*`` ranges), else AEE_EBADPARM."""
    try:
        v = operator.index(value)
    except TypeError:
        _fail(A.AEE_EBADPARM, f"{what} must be an int, not {type(value).__name__}")
    if not ctype[0] <= v <= ctype[1]:
        _fail(A.AEE_EBADPARM, f"{what} {v:#x} does not fit its C type")
    return v


def _addr(buf) -> int:
    """A C pointer argument: None -> 0, int -> itself (AEE_EBADPARM unless 0..2^64-1), buffer
    -> its address."""
    if buf is None:
        return 0
    if isinstance(buf, int):
        return _c_arg(buf, C_UINT64, "pointer")
    a = getattr(buf, "address", None)
    return a if isinstance(a, int) else _address(buf)


def _traced(name: str):
    """Report the call to an active trace recorder: ``tr.api(name, args, ret_aee, t0, t1)``."""
    def wrap(fn):
        def api(*args, **kw):
            tr = _trace.RECORDER
            if tr is None:
                return fn(*args, **kw)
            t0 = _trace.now()
            ret = 0
            try:
                return fn(*args, **kw)
            except FastRpcError as exc:
                ret = exc.aee
                raise
            finally:
                tr.api(name, _summary(args[1:] if args and isinstance(args[0], Library) else args),
                       ret, t0, _trace.now())
        api.__name__ = api.__qualname__ = fn.__name__
        api.__doc__ = fn.__doc__
        api.__wrapped__ = fn
        return api
    return wrap


def _summary(args) -> str:
    out = []
    for a in args:
        if isinstance(a, int):
            out.append(hex(a) if a > 0xFFFF else str(a))
        elif isinstance(a, str):
            out.append(repr(a if len(a) < 80 else a[:77] + "..."))
        elif isinstance(a, (list, tuple)):
            out.append(f"[{len(a)} args]")
        else:
            out.append(type(a).__name__)
    return ", ".join(out)


# --- rpcmem objects -----------------------------------------------------------------------
class RpcMem(mmap.mmap):
    """An rpcmem allocation: a shared mapping of a memfd "dma-buf". Supports the buffer
    protocol (slice it with ``memoryview``); ``.address`` is the C pointer, ``.fd`` the fd."""

    address: int
    fd: int

    def __repr__(self) -> str:
        return f"<RpcMem {self.address:#x} size={len(self)} fd={self.fd}>"


class _VmaToken:
    __slots__ = ("__weakref__",)


def _rpcmem_alloc(heapid, flags, size, ctype: tuple[int, int]) -> RpcMem:
    _c_arg(heapid, C_INT, "rpcmem_alloc: heapid")
    flags = _c_arg(flags, C_BITS32, "rpcmem_alloc: flags")
    size = _c_arg(size, ctype, "rpcmem_alloc: size")
    if size <= 0:
        _fail(A.AEE_EBADPARM, f"rpcmem_alloc: size {size} must be > 0")
    if size > _backing.DMA_LIMIT:  # fails before even a memfd is made
        _fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: {size} bytes exceed QDARPC_DMA_LIMIT", errno=_errno.ENOMEM)
    try:
        fd = os.memfd_create("rpcmem", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError as exc:
        _fail(A.AEE_ENOMEMORY, "rpcmem_alloc: no dma-buf", errno=exc.errno)
    # The dma-buf heap allocates from the emulated DMA pool (QDARPC_DMA_LIMIT), charged before
    # the file has any size. Charged under the file's key, so a driver importing the buffer
    # does not count it twice.
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    charged = _backing.page_align(size)
    try:
        _backing.charge(charged, key)
    except OSError as exc:
        os.close(fd)
        _fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: {size} bytes", errno=exc.errno)
    try:
        os.ftruncate(fd, size)
        # A dma-buf never changes size: sealed, so no holder of the fd can truncate the pages
        # under the DSP or a mapping (SIGBUS).
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        mm = RpcMem(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError, OverflowError) as exc:
        _backing.uncharge(charged, key)
        os.close(fd)
        _fail(A.AEE_ENOMEMORY, f"rpcmem_alloc: cannot map {size} bytes", errno=getattr(exc, "errno", None))
    mm._pin = ctypes.c_char.from_buffer(mm)  # keeps the address fixed while allocated
    mm.address = ctypes.addressof(mm._pin)
    mm.fd = fd
    mm._charge = (charged, key)
    # The "kernel" knows this VMA (fast find_vma). The owner is a token dropped by rpcmem_free,
    # so the entry goes when the mapping does, not when the caller drops the RpcMem object.
    mm._vma_token = _VmaToken()
    _vma.register(mm._vma_token, mm.address, size, key=key)
    with _lock:
        _rpcmem[mm.address] = mm
        if not flags & RPCMEM_HEAP_NOREG:
            REGS.add(mm.address, size, fd, 0)
    return mm


def _deregister(start: int, size: int) -> None:
    with _lock:
        try:
            fd, left = REGS.remove(start, size)
        except ValueError as exc:  # QF raise(SIGABRT)s here; a Python library raises instead
            _fail(A.AEE_EBADPARM, f"remote_register_buf: {exc}")
        if fd is None or left:
            return
        if any(r[2] == fd for r in REGS.ranges()):
            return
        for lib in list(_libraries):
            for s in lib._sessions.values():
                s.backend.forget(fd)


# --- sessions and records -----------------------------------------------------------------
class _Record:
    __slots__ = ("h64", "session", "dsp_handle", "uri", "invoker")

    def __init__(self, h64, session, dsp_handle, uri):
        self.h64, self.session, self.dsp_handle, self.uri = h64, session, dsp_handle, uri
        self.invoker = session.invoker


class _Session:
    """One open device file = one DSP user process, for one effective domain.

    Lifetime (QF refcounts its sessions the same way): every open handle and every call in
    flight through :meth:`Library._acquire` holds the session. Closing the last handle marks it
    ``closing``; the teardown runs when the last holder lets go, and takes the session out of
    its Library's table first, so an open racing it either keeps the session alive (it got a
    reference before) or creates a fresh one.
    """

    def __init__(self, lib: "Library", eff: int):
        self.lib = lib
        self.eff = eff
        self.domain = eff & 7
        self.backend = AccelBackend(lib.soc) if lib.backend == "accel" else LegacyBackend(lib.soc)
        self.key = next(_session_keys)
        self.invoker = None
        self.unsigned = False
        self.iface = remotectl.REMOTECTL1_HANDLE
        self.records: set[int] = set()
        self.nondomain: set[int] = set()
        self.users = 0         # calls in flight holding the session (under _lock)
        self.closing = False   # the last handle went: tear down when the last user leaves
        self.dead = False      # torn down
        self.maps: dict[int, tuple[int, int, int]] = {}  # fastrpc_mmap: fd -> (vaddr, length, flags)
        self.static: dict[int, tuple[int, int]] = {}     # remote_mmap64: vaddr -> (fd, size)

    def start(self, opts: dict) -> int:
        b = self.backend
        code = b.open(self.domain, self.lib._nodes()) if isinstance(b, AccelBackend) else b.open(self.domain)
        if code:
            return code
        self.unsigned = bool(opts.get("unsigned", False))
        attrs = FASTRPC_MODE_UNSIGNED_MODULE if self.unsigned else 0
        code = b.init_create(attrs)
        if code:
            b.close()
            # QF returns INIT_CREATE failures other than ECONNREFUSED as the raw -1 (§10.9).
            return code if code == A.AEE_ECONNREFUSED or b.errno == 0 else A.AEE_EUNKNOWN
        self.invoker = _remote.Invoker(b.file.ioctl, b.invoke_request, REGS,
                                       None if isinstance(b, LegacyBackend) else b.ref,
                                       self.key, self._handle_slot)
        if self.eff in self.lib._mode_pending:
            self.invoker.fail_next = A.AEE_EUNSUPPORTED
            self.lib._mode_pending.discard(self.eff)
        for req_id, params in (( _PARAM_THREAD, opts.get("thread")), (_PARAM_ADAPTIVE_QOS, opts.get("qos"))):
            if params is not None:
                code = self.set_param(req_id, params)
                if code:
                    self.teardown()
                    return code
        return 0

    # remotectl's stub calls f.invoke(handle, sc, args) -> code
    def invoke(self, handle: int, sc: int, args) -> int:
        return self.invoker.invoke(handle, sc, args)

    def _handle_slot(self, item):
        fd, offset = (item.fd, item.offset) if hasattr(item, "fd") else item
        length, attr = 0, 0
        with _lock:
            uses = _dma_regs.get(fd)
            if uses:
                length, attr = uses.pop(0)  # one registration is consumed per invoke (§2.2)
                if not uses:
                    del _dma_regs[fd]
        ref = self.backend.ref(fd) if fd > 0 and length else fd
        return offset, length, ref, attr | FASTRPC_ATTR_NOVA

    def set_param(self, req_id: int, params) -> int:
        """remotectl1_set_param, falling back to remotectl_set_param (spec §6.1 step 6)."""
        data = struct.pack(f"<{len(params)}I", *[p & 0xFFFF_FFFF for p in params])
        prim = struct.pack("<II", req_id, len(params))
        code = self.invoke(self.iface, _SET_PARAM[self.iface], [prim, data])
        if code and self.iface == remotectl.REMOTECTL1_HANDLE:
            self.iface = remotectl.REMOTECTL_HANDLE
            code = self.invoke(self.iface, _SET_PARAM[self.iface], [prim, data])
        return code

    def open_module(self, uri: str) -> tuple[int, int]:
        """remotectl1 open, and on any invoke failure remotectl open for good (spec §10.14)."""
        try:
            code, h = remotectl.open_module(self, uri, self.iface)
            if code and self.iface == remotectl.REMOTECTL1_HANDLE:
                self.iface = remotectl.REMOTECTL_HANDLE
                code, h = remotectl.open_module(self, uri, self.iface)
        except remotectl.LoadError as exc:
            return exc.code, 0
        return code, h

    def close_module(self, h: int) -> int:
        return remotectl.close_module(self, h, self.iface)

    def idle(self) -> bool:
        """No handle and no call in flight holds the session."""
        return not self.users and not self.records and not self.nondomain

    def teardown(self) -> None:
        """Exit the DSP process and close the file (QF: adsp_current_process1_exit, close).
        Runs once, under ``_lock``."""
        if self.dead:
            return
        self.dead = True
        if self.invoker is not None:
            self.invoker.invoke(_CURRENT_PROCESS1, _SC_EXIT, ())
        for h in self.records:
            _records.pop(h, None)
        self.records.clear()
        REGS.forget_session(self.key)
        self.backend.close()


# --- the library ----------------------------------------------------------------------------
class Library:
    """The legacy FastRPC user library over ``backend`` (``"accel"`` or ``"legacy"``) on
    ``soc`` (default: the one set with :func:`use_soc`, else ``qda_core.default_soc()``).

    Sessions are refcounted: a call in flight keeps its session, and the teardown after the
    last handle's close waits for it, so threads may open, invoke and close handles on one
    domain concurrently.

    After ``fork()`` the child does not share its parent's sessions, unlike a real child, which
    inherits the open device files and with them the DSP processes. The emulated drivers and
    DSP live in this process's (copy-on-write) memory, so the child forgets every session and
    handle it inherited without closing them (the parent's are untouched), and its first call
    builds a fresh emulated SoC of the same profile (``qda_core.default_soc()`` likewise).
    Handles from before the fork are invalid in the child (``AEE_EINVHANDLE``). rpcmem buffers
    stay valid, shared memory (``MAP_SHARED``, as dma-buf mappings are across fork) and go by
    reference in the child's new sessions.
    """

    def __init__(self, backend: str = "accel", soc=None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.backend = backend
        self._soc = soc
        self._sessions: dict[int, _Session] = {}
        self._opts: dict[int, dict] = {}
        self._reserved: set[int] = set()
        self._mode_pending: set[int] = set()
        self._discovered: dict[str, str] | None = None
        self._discovered_from: tuple = ()  # the accel nodes present at the last scan
        self._tls = threading.local()
        with _lock:
            _libraries.add(self)

    def __repr__(self) -> str:
        return f"<Library backend={self.backend} sessions={sorted(self._sessions)}>"

    @property
    def soc(self):
        if self._soc is not None:
            if id(self._soc) in _parents_socs:  # inherited across fork(): see _after_fork_in_child
                self._soc = _child_soc(self._soc)
            return self._soc
        if _state.soc is not None:
            if id(_state.soc) in _parents_socs:
                _state.soc = _child_soc(_state.soc)
            return _state.soc
        return _default_soc()

    def _nodes(self) -> dict[str, str]:
        """Domain name -> accel node, as LIB's discovery caches it. LIB rescans when inotify
        reports a node created or deleted under /dev/accel (SSR re-probes the DSP under a new
        minor); the emulated equivalent is a changed node list, checked on every lookup."""
        soc = self.soc
        present = (id(soc), *soc.accel_nodes())
        if self._discovered is None or present != self._discovered_from:
            self._discovered = AccelBackend(soc).discover()
            self._discovered_from = present
        return self._discovered

    # -- helpers --------------------------------------------------------------------------
    def _current(self) -> int:
        return getattr(self._tls, "domain", DEFAULT_DOMAIN_ID)

    def _session(self, eff: int, create: bool = True) -> _Session:
        with _lock:
            s = self._sessions.get(eff)
            if s is not None or not create:
                return s
            if (eff & 7) not in DOMAIN_NAMES:
                _fail(A.AEE_EBADPARM, f"no DSP domain {eff & 7}")
            s = _Session(self, eff)
            code = s.start(self._opts.get(eff, {}))
            if code:
                _fail(code, f"cannot create a session on {DOMAIN_NAMES[eff & 7]} (effective domain {eff})",
                      errno=s.backend.errno or None, origin="driver" if s.backend.errno else None)
            self._sessions[eff] = s
            if _state.libs.get(self.backend) is self:
                _state.used = True  # the module-level backend is now fixed
            return s

    def _acquire(self, eff: int) -> _Session:
        """The session of ``eff`` (created if needed), held for one call: pair with _release."""
        with _lock:
            s = self._session(eff)
            s.users += 1
            return s

    def _release(self, s: _Session) -> None:
        """Let go of a session taken with _acquire; the last holder of a closing one tears it down."""
        with _lock:
            s.users -= 1
            if s.closing and s.idle():
                self._drop(s)

    def _drop(self, s: _Session) -> None:
        """Tear ``s`` down now (explicit close, or the last holder gone)."""
        with _lock:
            if self._sessions.get(s.eff) is s:
                del self._sessions[s.eff]
            s.teardown()

    def close_all(self) -> None:
        """Tear down every session (what the library destructor does at exit)."""
        with _lock:
            for s in list(self._sessions.values()):
                self._drop(s)
            self._discovered = None

    def _raise_invoke(self, code: int, what: str):
        _fail(code, what, errno=_remote.last_errno() or None, origin=_ORIGINS[_remote.last_origin()])

    def _domain_arg(self, domain: int) -> int:
        eff = self._current() if domain == -1 else domain
        if not 0 <= eff < NUM_DOMAINS_EXTEND or (eff & 7) not in DOMAIN_NAMES:
            _fail(A.AEE_EBADPARM, f"invalid domain {domain}")
        return eff

    def dsp_fd(self, fd: int, domain: int = -1) -> int:
        """The number the DSP knows dma-buf ``fd`` by in the session of ``domain`` (-1: current):
        ``fd`` itself on legacy, its GEM handle in the session file on accel (imported now if
        needed). Not a C API: what an accel-aware caller passes to DSP code that calls
        ``HAP_mmap_get``."""
        s = self._session(self._domain_arg(domain), create=False)
        if s is None:
            _fail(A.AEE_ENOTINITIALIZED, "no session open on that domain")
        try:
            return s.backend.ref(fd)
        except ValueError as exc:
            _fail(A.AEE_EBADPARM, str(exc))

    # -- handles --------------------------------------------------------------------------
    @_traced("remote_handle_open")
    def remote_handle_open(self, name: str) -> int:
        """Open a module on the current domain (non-domain form).

        @param[in] name  module name or ``file:///`` URI; ``_dom`` is ignored
        @return the DSP handle (``remote_handle``, 32-bit)
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_ECONNREFUSED, AEE_EUNKNOWN, DSP dlerr codes
        (e.g. 0x8000043e module not found), invoke errors
        """
        if not isinstance(name, str) or not name:
            _fail(A.AEE_EBADPARM, "remote_handle_open: name must be a non-empty str")
        if name[0] in ITRANSPORT_PREFIX:
            _fail(A.AEE_EUNSUPPORTED, f"transport request {name!r} is not supported by this library")
        s = self._acquire(self._current())
        try:
            code, h = s.open_module(name)
            if code:
                _fail(code, f"remote_handle_open({name!r})", origin="dsp" if code & 0x8000_0000 else None)
            with _lock:
                s.nondomain.add(h)
                s.closing = False
            return h
        finally:
            self._release(s)

    @_traced("remote_handle_invoke")
    def remote_handle_invoke(self, h: int, sc: int, args=()) -> None:
        """Invoke method ``REMOTE_SCALARS_METHOD(sc)`` of non-domain handle ``h`` on the current
        domain.

        @param[in] h     DSP handle from remote_handle_open (or a static handle 0..10)
        @param[in] sc    scalars word
        @param[in,out] args  in-bufs, out-bufs, in-handles, out-handles (buffer-protocol objects;
                         handle slots: ``remote_dma_handle`` or ``(fd, offset)``)
        AEE codes: AEE_EINVHANDLE, AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_ECONNREFUSED,
        AEE_ECONNRESET, DSP codes (0x8000040e, 0x80000414, 0x8000043e, 0x8000040d, ...)
        """
        if h in (-1, 0xFFFF_FFFF):
            _fail(A.AEE_EINVHANDLE, "remote_handle_invoke: handle -1")
        s = self._acquire(self._current())
        try:
            code = s.invoker.invoke(h & 0xFFFF_FFFF, sc, args)
        except OverflowError:
            _fail(A.AEE_EBADPARM, f"remote_handle_invoke: sc {sc:#x} is not a uint32_t")
        finally:
            self._release(s)
        if code:
            self._raise_invoke(code, f"remote_handle_invoke({h:#x}, {sc:#010x})")

    @_traced("remote_handle_close")
    def remote_handle_close(self, h: int) -> None:
        """Close a non-domain handle on the current domain (remotectl close on the DSP).

        @param[in] h  DSP handle from remote_handle_open
        AEE codes: AEE_EINVHANDLE, DSP dlerr codes (0x8000043e for an unknown handle), invoke errors
        """
        h = _c_arg(h, C_BITS32, "remote_handle_close: handle") & 0xFFFF_FFFF
        with _lock:
            s = self._session(self._current(), create=False)
            if h == 0xFFFF_FFFF or s is None:
                _fail(A.AEE_EINVHANDLE, f"remote_handle_close({h:#x}): no session on the current domain")
            s.users += 1
        try:
            code = s.close_module(h)
            with _lock:
                s.nondomain.discard(h)
        finally:
            self._release(s)
        if code:
            _fail(code, f"remote_handle_close({h:#x})", origin="dsp" if code & 0x8000_0000 else None)

    @_traced("remote_handle64_open")
    def remote_handle64_open(self, name: str) -> int:
        """Open a module on the domain named in its URI.

        @param[in] name  URI with ``&_dom=<adsp|mdsp|sdsp|cdsp|cdsp1|gdsp0|gdsp1>`` and optional
                         ``&_session=N`` (N < 4); effective domain = domain + 8*N
        @return an opaque ``remote_handle64`` (a library record, not the DSP handle)
        AEE codes: AEE_EBADPARM (no/invalid ``&_dom``, bad session), AEE_EUNSUPPORTED,
        AEE_ECONNREFUSED, AEE_EUNKNOWN, AEE_ENOTINITIALIZED, DSP dlerr codes (0x8000043e,
        0x80000442, 0x80000594, ...), invoke errors
        """
        if not isinstance(name, str) or not name:
            _fail(A.AEE_EBADPARM, "remote_handle64_open: name must be a non-empty str")
        if name[0] in ITRANSPORT_PREFIX:
            _fail(A.AEE_EUNSUPPORTED, f"transport request {name!r} is not supported by this library")
        eff = domain_from_uri(name)
        s = self._acquire(eff)
        try:
            self._tls.domain = eff
            code, h = s.open_module(name)
            with _lock:
                if code:
                    if not s.records and not s.nondomain:
                        s.closing = True  # a failed first open leaves no session behind
                    _fail(code, f"remote_handle64_open({name!r})", origin="dsp" if code & 0x8000_0000 else None)
                if s.dead:  # closed under us (FASTRPC_SESSION_CLOSE, close_all)
                    _fail(A.AEE_ECONNRESET, f"remote_handle64_open({name!r}): the session was closed")
                h64 = next(_next_h64)
                _records[h64] = _Record(h64, s, h, name)
                s.records.add(h64)
                s.closing = False
            return h64
        finally:
            self._release(s)

    def remote_handle64_invoke(self, h: int, sc: int, args=()) -> None:
        """Same as the module-level :func:`remote_handle64_invoke` (its docstring is copied here)."""
        return remote_handle64_invoke(h, sc, args)

    @_traced("remote_handle64_close")
    def remote_handle64_close(self, h: int) -> None:
        """Close a multi-domain handle. The last one of a session (with no non-domain handles)
        tears the session down (the DSP process exits; no remotectl close, spec §4.6).

        @param[in] h  handle from remote_handle64_open
        AEE codes: AEE_EINVHANDLE, DSP dlerr codes, invoke errors
        """
        return remote_handle64_close(h)

    @_traced("remote_handle_control")
    def remote_handle_control(self, req: int, data=None, datalen: int | None = None) -> None:
        """Control request on the current domain (spec §4.7).

        @param[in] req   DSPRPC_CONTROL_LATENCY, DSPRPC_GET_DSP_INFO, DSPRPC_CONTROL_WAKELOCK,
                         DSPRPC_GET_DOMAIN (others: AEE_EUNSUPPORTED)
        @param[in,out] data  the request's struct (ctypes instance or writable bytes-like);
                         outputs are written into it
        @param[in] datalen  defaults to the size of ``data``
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EUNKNOWN (capability ioctl failure),
        AEE_ECONNREFUSED
        """
        self._handle_control(self._current(), req, data, datalen)

    @_traced("remote_handle64_control")
    def remote_handle64_control(self, h: int, req: int, data=None, datalen: int | None = None) -> None:
        """remote_handle_control on the domain of handle ``h``.

        @param[in] h  handle from remote_handle64_open
        AEE codes: AEE_EINVHANDLE, AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EUNKNOWN, AEE_ECONNREFUSED
        """
        rec = _records.get(h)
        if rec is None:
            _fail(A.AEE_EINVHANDLE, f"remote_handle64_control: {h!r} is not an open handle")
        rec.session.lib._handle_control(rec.session.eff, req, data, datalen)

    def _handle_control(self, eff: int, req: int, data, datalen) -> None:
        st = HANDLE_CONTROL_STRUCTS.get(req)
        if st is None or req in (5, 6):
            _fail(A.AEE_EUNSUPPORTED, f"remote_handle_control: request {req} is not supported")
        mv, obj = _struct_arg(st, data, datalen, exact=req != 2)
        if req == 1:  # DSPRPC_CONTROL_LATENCY
            if obj.enable == 1:
                return
            if obj.enable == 2:
                self._opts.setdefault(eff, {})["qos"] = (2,)
                s = self._session(eff, create=False)
                if s is not None:
                    code = s.set_param(_PARAM_ADAPTIVE_QOS, (2,))
                    if code:
                        _fail(code, "adaptive QoS")
                return
            if obj.enable == 3 and obj.latency >= 10000:
                _fail(A.AEE_EBADPARM, f"RPC_POLL_QOS latency {obj.latency} us must be < 10000")
            if obj.enable in (0, 3):  # needs the kernel's control ioctl: not upstream (§10.6)
                _fail(A.AEE_EUNSUPPORTED, "the driver has no QoS control")
            _fail(A.AEE_EBADPARM, f"latency control enable={obj.enable}")
        elif req == 2:  # DSPRPC_GET_DSP_INFO
            if not 0 <= obj.domain < NUM_DOMAINS_EXTEND or obj.attribute_ID >= 260:
                _fail(A.AEE_EBADPARM, f"GET_DSP_INFO domain {obj.domain} attribute {obj.attribute_ID}")
            dom = obj.domain & 7
            if obj.attribute_ID == 0:
                obj.capability = int(dom in DOMAIN_NAMES and _has_domain(self.soc, dom))
            elif 256 <= obj.attribute_ID < 260 and self.backend == "legacy":
                obj.capability = 0
            else:
                s = self._session(obj.domain, create=False)
                b = s.backend if s is not None else (AccelBackend(self.soc) if self.backend == "accel"
                                                     else LegacyBackend(self.soc))
                code, value = b.dsp_info(dom, obj.attribute_ID)
                if code:
                    _fail(A.AEE_EUNKNOWN, "GET_DSP_INFO ioctl failed", errno=b.errno or None, origin="driver")
                if value is not None:
                    if obj.attribute_ID == 10:  # reported as 1 only for the V2 raw value 3
                        value = int(value == 3)
                    obj.capability = value
        elif req == 3:  # DSPRPC_CONTROL_WAKELOCK
            if obj.enable not in (0, 1):
                _fail(A.AEE_EBADPARM, f"wakelock enable={obj.enable}")
            return  # the emulated SoC never suspends: nothing to hold
        elif req == 4:  # DSPRPC_GET_DOMAIN
            obj.domain = eff
        _write_back(mv, obj)

    # -- sessions -------------------------------------------------------------------------
    @_traced("remote_session_control")
    def remote_session_control(self, req: int, data=None, datalen: int | None = None) -> None:
        """Session control request (spec §4.8); ``datalen`` must equal the struct size.

        @param[in] req  FASTRPC_THREAD_PARAMS, DSPRPC_CONTROL_UNSIGNED_MODULE,
                        FASTRPC_RELATIVE_THREAD_PRIORITY, FASTRPC_REMOTE_PROCESS_KILL,
                        FASTRPC_SESSION_CLOSE, FASTRPC_CONTROL_PD_DUMP,
                        FASTRPC_REMOTE_PROCESS_EXCEPTION, FASTRPC_REMOTE_PROCESS_TYPE,
                        FASTRPC_REGISTER_STATUS_NOTIFICATIONS, FASTRPC_PD_INITMEM_SIZE,
                        FASTRPC_RESERVE_NEW_SESSION, FASTRPC_GET_EFFECTIVE_DOMAIN_ID,
                        FASTRPC_GET_URI, FASTRPC_CONTEXT_CREATE, FASTRPC_CONTEXT_DESTROY
        @param[in,out] data  the request's struct (ctypes instance or writable bytes-like)
        @param[in] datalen   defaults to the size of ``data``
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EALREADYLOADED, AEE_ERPC, AEE_EUNKNOWN,
        AEE_ENOSESSION, AEE_EBADSIZE, AEE_ENOTINITIALIZED, invoke errors
        """
        st = SESSION_CONTROL_STRUCTS.get(req)
        if st is None:
            _fail(A.AEE_EUNSUPPORTED, f"remote_session_control: request {req} is not supported")
        mv, obj = _struct_arg(st, data, datalen, exact=True)
        getattr(self, f"_sc_{req}")(obj)
        _write_back(mv, obj)

    def _domains(self, domain: int) -> list[int]:
        if domain == -1:
            return list(range(NUM_DOMAINS_EXTEND))
        if not 0 <= domain < NUM_DOMAINS_EXTEND:
            _fail(A.AEE_EBADPARM, f"invalid domain {domain}")
        return [domain]

    def _sc_1(self, o):  # FASTRPC_THREAD_PARAMS
        if not (o.prio == -1 or 1 <= o.prio <= 255):
            _fail(A.AEE_EBADPARM, f"thread priority {o.prio} (valid: -1, 1..255)")
        if not (o.stack_size == -1 or _MIN_STACK <= o.stack_size <= _MAX_STACK):
            _fail(A.AEE_EBADPARM, f"stack size {o.stack_size} (valid: -1, 16 KiB..8 MiB)")
        for d in self._domains(o.domain):
            self._set_thread(d, o.prio if o.prio != -1 else None, o.stack_size if o.stack_size != -1 else None)

    def _set_thread(self, eff: int, prio, stack) -> None:
        opts = self._opts.setdefault(eff, {})
        old = opts.get("thread", (_DEFAULT_PRIO, _DEFAULT_STACK))
        params = (prio if prio is not None else old[0], stack if stack is not None else old[1])
        opts["thread"] = params
        s = self._sessions.get(eff)
        if s is not None:
            code = s.set_param(_PARAM_THREAD, params)
            if code:
                _fail(code, "remotectl set_param(thread params)")

    def _sc_2(self, o):  # DSPRPC_CONTROL_UNSIGNED_MODULE
        for d in self._domains(o.domain):
            s = self._sessions.get(d)
            if s is not None and s.unsigned != bool(o.enable):
                _fail(A.AEE_EALREADYLOADED, f"a {'un' if s.unsigned else ''}signed session is open on domain {d}")
            self._opts.setdefault(d, {})["unsigned"] = bool(o.enable)

    def _sc_4(self, o):  # FASTRPC_RELATIVE_THREAD_PRIORITY
        prio = min(255, max(1, _DEFAULT_PRIO + o.relative_thread_priority))
        for d in self._domains(o.domain):
            self._set_thread(d, prio, None)

    def _open_session(self, domain: int) -> _Session:
        if not 0 <= domain < NUM_DOMAINS_EXTEND:
            _fail(A.AEE_EBADPARM, f"invalid domain {domain}")
        s = self._sessions.get(domain)
        if s is None:
            _fail(A.AEE_ERPC, f"no session open on domain {domain}")
        return s

    def _sc_6(self, o):  # FASTRPC_REMOTE_PROCESS_KILL
        self._open_session(o.domain)
        _fail(A.AEE_EUNSUPPORTED, "the driver has no process-kill control")

    def _sc_7(self, o):  # FASTRPC_SESSION_CLOSE
        for d in self._domains(o.domain):
            s = self._sessions.get(d)
            if s is None:  # QF: -1 for a closed domain; with -1 it stops at the first one (§10.8)
                _fail(A.AEE_EUNKNOWN, f"no session open on domain {d}")
            self._drop(s)

    def _sc_8(self, o):  # FASTRPC_CONTROL_PD_DUMP
        for d in self._domains(o.domain):
            if d in self._sessions:
                _fail(A.AEE_ERPC, f"PD dump must be set before the session on domain {d} opens")
            self._opts.setdefault(d, {})["pd_dump"] = bool(o.enable)

    def _sc_9(self, o):  # FASTRPC_REMOTE_PROCESS_EXCEPTION
        s = self._open_session(o.domain)
        code = s.invoker.invoke(_CURRENT_PROCESS1, _SC_EXCEPTION, ())
        if code == A.aee_to_dsp(A.AEE_EBADSTATE):
            return
        _fail(A.AEE_ERPC if code == 0 else code, "process exception", origin="dsp" if code else None)

    def _sc_10(self, o):  # FASTRPC_REMOTE_PROCESS_TYPE
        if not 0 <= o.domain < NUM_DOMAINS_EXTEND:
            _fail(A.AEE_EBADPARM, f"invalid domain {o.domain}")
        s = self._sessions.get(o.domain)
        o.process_type = int(s.unsigned if s is not None else self._opts.get(o.domain, {}).get("unsigned", False))

    def _sc_11(self, o):  # FASTRPC_REGISTER_STATUS_NOTIFICATIONS
        _fail(A.AEE_EUNSUPPORTED, "status notifications are not supported by the upstream drivers")

    def _sc_12(self, o):  # FASTRPC_PD_INITMEM_SIZE
        if not (3 << 20) <= o.pd_initmem_size <= (200 << 20):
            _fail(A.AEE_EBADPARM, f"PD init memory {o.pd_initmem_size} (valid: 3 MiB..200 MiB)")
        for d in self._domains(o.domain):
            if self._opts.get(d, {}).get("unsigned"):
                _fail(A.AEE_EUNSUPPORTED, "unsigned PDs have a fixed init memory size")
            self._opts.setdefault(d, {})["initmem"] = o.pd_initmem_size  # no driver field: ignored

    def _sc_13(self, o):  # FASTRPC_RESERVE_NEW_SESSION
        dom = _domain_by_prefix(_cstr(o.domain_name, o.domain_name_len, "RESERVE_NEW_SESSION domain_name"))
        o.effective_domain_id, o.session_id = NUM_DOMAINS_EXTEND, NUM_SESSIONS
        for sid in range(1, NUM_SESSIONS):
            eff = dom + NUM_DOMAINS * sid
            if eff not in self._reserved and eff not in self._sessions:
                self._reserved.add(eff)
                o.effective_domain_id, o.session_id = eff, sid
                return
        _fail(A.AEE_ENOSESSION, f"no free session on {DOMAIN_NAMES[dom]}")

    def _sc_14(self, o):  # FASTRPC_GET_EFFECTIVE_DOMAIN_ID
        dom = _domain_by_prefix(_cstr(o.domain_name, o.domain_name_len, "GET_EFFECTIVE_DOMAIN_ID domain_name"))
        if o.session_id >= NUM_SESSIONS:
            _fail(A.AEE_EBADPARM, f"session {o.session_id} (valid: 0..{NUM_SESSIONS - 1})")
        o.effective_domain_id = dom + NUM_DOMAINS * o.session_id

    def _sc_15(self, o):  # FASTRPC_GET_URI
        dom = _domain_by_prefix(_cstr(o.domain_name, o.domain_name_len, "GET_URI domain_name"))
        if o.session_id >= NUM_SESSIONS or not o.uri or not o.module_uri:
            _fail(A.AEE_EBADPARM, "GET_URI: bad session id or NULL buffer")
        module = _cstr(o.module_uri, o.module_uri_len, "GET_URI module_uri")
        if o.uri_len <= o.module_uri_len:
            _fail(A.AEE_EBADSIZE, f"GET_URI: uri_len {o.uri_len} must exceed module_uri_len {o.module_uri_len}")
        text = f"{module}&_dom={DOMAIN_NAMES[dom]}&_session={o.session_id}".encode()
        n = min(len(text), o.uri_len - 1)
        _put_cstr(o.uri, text[:n] + b"\0", "GET_URI uri")
        if len(text) >= o.uri_len:
            _fail(A.AEE_EBADSIZE, f"GET_URI: {len(text) + 1} bytes needed, uri_len is {o.uri_len}")

    def _sc_17(self, o):  # FASTRPC_CONTEXT_CREATE
        _fail(A.AEE_EUNSUPPORTED, "multi-domain contexts need a driver control the upstream drivers lack")

    def _sc_18(self, o):  # FASTRPC_CONTEXT_DESTROY
        if o.flags:
            _fail(A.AEE_EBADPARM, f"CONTEXT_DESTROY flags {o.flags:#x} must be 0")
        _fail(A.AEE_EBADPARM, f"no context {o.ctx:#x}")

    # -- memory ---------------------------------------------------------------------------
    @_traced("fastrpc_mmap")
    def fastrpc_mmap(self, domain: int, fd: int, addr, offset: int, length: int, flags: int) -> None:
        """Map dma-buf ``fd`` into the DSP process of ``domain`` (spec §4.10).

        @param[in] domain  effective domain, -1 = current
        @param[in] fd      dma-buf fd (e.g. rpcmem_to_fd); on accel the DSP sees its GEM handle
        @param[in] addr    CPU address of the buffer (buffer object, int or None)
        @param[in] offset  must be 0
        @param[in] length  bytes to map
        @param[in] flags   a fastrpc_map_flags value (< 17, not FASTRPC_MAP_RESERVED)
        AEE codes: AEE_EBADPARM (also for any argument outside its C type), AEE_ENOTINITIALIZED
        (no session), AEE_EALREADY (fd mapped), AEE_EUNSUPPORTED, AEE_EFAILED
        """
        domain = _c_arg(domain, C_INT, "fastrpc_mmap: domain")
        if domain != -1 and not 0 <= domain < NUM_DOMAINS_EXTEND:
            _fail(A.AEE_EBADPARM, f"fastrpc_mmap: invalid domain {domain}")
        fd, offset = _c_arg(fd, C_INT, "fastrpc_mmap: fd"), _c_arg(offset, C_INT, "fastrpc_mmap: offset")
        length, flags = _c_arg(length, C_UINT64, "fastrpc_mmap: length"), _c_arg(flags, C_INT, "fastrpc_mmap: flags")
        vaddr_in = _addr(addr)
        if fd < 0 or offset != 0 or flags & 0xFFFF0000 or flags >= FASTRPC_MAP_MAX or flags == 1 or length < 0:
            _fail(A.AEE_EBADPARM, f"fastrpc_mmap: bad fd/offset/flags/length ({fd}, {offset}, {flags}, {length})")
        eff = self._domain_arg(domain)
        s = self._sessions.get(eff)
        if s is None:
            _fail(A.AEE_ENOTINITIALIZED, f"fastrpc_mmap: no session open on domain {eff}")
        with _lock:
            if fd in s.maps:
                _fail(A.AEE_EALREADY, f"fastrpc_mmap: fd {fd} is already mapped")
            code, vaddr = s.backend.mem_map(fd, offset, int(flags), vaddr_in, length)
            if code:
                if s.backend.errno == 25 or A.is_dsp_error(code) and (code & 0x3FF) == A.AEE_EUNSUPPORTED:
                    _fail(A.AEE_EUNSUPPORTED, "fastrpc_mmap", errno=s.backend.errno or None)
                _fail(A.AEE_EFAILED, f"fastrpc_mmap: map failed with {code:#x}", errno=s.backend.errno or None)
            s.maps[fd] = (vaddr, length, int(flags))

    @_traced("fastrpc_munmap")
    def fastrpc_munmap(self, domain: int, fd: int, addr=None, length: int = 0) -> None:
        """Unmap the mapping of ``fd`` (found by fd only; ``addr``/``length`` are ignored).

        @param[in] domain  effective domain, -1 = current
        @param[in] fd      the fd given to fastrpc_mmap
        AEE codes: AEE_EBADPARM, AEE_ENOSUCHMAP, AEE_EFAILED
        """
        eff = self._domain_arg(domain)
        s = self._sessions.get(eff)
        with _lock:
            if s is None or fd not in s.maps:
                _fail(A.AEE_ENOSUCHMAP, f"fastrpc_munmap: fd {fd} is not mapped on domain {eff}")
            vaddr, maplen, _flags = s.maps[fd]
            code = s.backend.mem_unmap(fd, vaddr, maplen)
            if code:
                _fail(A.AEE_EFAILED, f"fastrpc_munmap: unmap failed with {code:#x}", errno=s.backend.errno or None)
            del s.maps[fd]
            for va, (sfd, _size) in list(s.static.items()):
                if sfd == fd:
                    del s.static[va]

    def _current_session(self, what: str) -> _Session:
        s = self._sessions.get(self._current())
        if s is None:
            _fail(A.AEE_ENOTINITIALIZED, f"{what}: no session open on the current domain")
        return s

    @_traced("remote_mmap64")
    def remote_mmap64(self, fd: int, flags: int, vaddrin: int, size: int) -> int:
        """Map ``fd`` statically into the current domain's DSP process.

        @param[in] fd       dma-buf fd
        @param[in] flags    must be REMOTE_MAP_MEM_STATIC (0)
        @param[in] vaddrin  CPU address of the buffer
        @param[in] size     bytes (>= 0)
        @return the DSP virtual address (``*vaddrout``)
        AEE codes: AEE_EBADPARM (also for any argument outside its C type), AEE_ENOTINITIALIZED,
        AEE_EALREADY, AEE_EUNSUPPORTED, AEE_EFAILED
        """
        fd, flags = _c_arg(fd, C_INT, "remote_mmap64: fd"), _c_arg(flags, C_UINT32, "remote_mmap64: flags")
        vaddrin, size = _addr(vaddrin), _c_arg(size, C_INT64, "remote_mmap64: size")
        if flags != 0 or size < 0 or fd < 0:
            _fail(A.AEE_EBADPARM, f"remote_mmap64: flags {flags} must be 0, size/fd >= 0")
        s = self._current_session("remote_mmap64")
        self.fastrpc_mmap.__wrapped__(self, s.eff, fd, vaddrin, 0, size, 0)
        vaddr = s.maps[fd][0]
        s.static[vaddr] = (fd, size)
        return vaddr

    @_traced("remote_mmap")
    def remote_mmap(self, fd: int, flags: int, vaddrin: int, size: int) -> int:
        """32-bit remote_mmap64: returns the DSP address truncated to 32 bits.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_EALREADY, AEE_EUNSUPPORTED, AEE_EFAILED
        """
        # vaddrin stays a full pointer: a Python caller's buffers live above 4 GiB.
        vaddrin = _addr(vaddrin)
        size = _c_arg(size, C_INT, "remote_mmap: size")
        return self.remote_mmap64.__wrapped__(self, fd, flags, vaddrin, size) & 0xFFFF_FFFF

    @_traced("remote_munmap64")
    def remote_munmap64(self, vaddrout: int, size: int) -> None:
        """Unmap a remote_mmap64 mapping by DSP address (else via the driver's MUNMAP).

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_ENOSUCHMAP, AEE_EFAILED, driver codes
        """
        vaddrout = _c_arg(vaddrout, C_UINT64, "remote_munmap64: vaddrout")
        size = _c_arg(size, C_INT64, "remote_munmap64: size")
        if size < 0:
            _fail(A.AEE_EBADPARM, f"remote_munmap64: size {size} must be >= 0")
        s = self._current_session("remote_munmap64")
        for va, (fd, sz) in list(s.static.items()):
            if va == vaddrout or va & 0xFFFF_FFFF == vaddrout:
                self.fastrpc_munmap.__wrapped__(self, s.eff, fd)
                return
        code = s.backend.munmap(vaddrout, size)
        if code:
            _fail(code, "remote_munmap64", errno=s.backend.errno or None,
                  origin="driver" if s.backend.errno else "dsp")

    @_traced("remote_munmap")
    def remote_munmap(self, vaddrout: int, size: int) -> None:
        """32-bit remote_munmap64.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_ENOSUCHMAP, AEE_EFAILED, driver codes
        """
        vaddrout = _c_arg(vaddrout, C_UINT32, "remote_munmap: vaddrout")
        self.remote_munmap64.__wrapped__(self, vaddrout, _c_arg(size, C_INT, "remote_munmap: size"))

    @_traced("remote_mem_map")
    def remote_mem_map(self, domain: int, fd: int, flags: int, virtAddr: int, size: int) -> int:
        """Map memory with the driver's MMAP request (flags 0). The upstream legacy kernel
        rejects flags 0 (AEE_EBADPARM, spec §10.7); the QDA driver forwards it to the DSP.

        @return the DSP address (``*remoteVirtAddr``)
        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, driver and DSP codes
        """
        domain, fd = _c_arg(domain, C_INT, "remote_mem_map: domain"), _c_arg(fd, C_INT, "remote_mem_map: fd")
        virtAddr, size = _addr(virtAddr), _c_arg(size, C_UINT64, "remote_mem_map: size")
        if flags != 0:
            _fail(A.AEE_EBADPARM, f"remote_mem_map: flags {flags} must be 0")
        s = self._sessions.get(self._domain_arg(domain))
        if s is None:
            _fail(A.AEE_ENOTINITIALIZED, "remote_mem_map: no session")
        code, vaddr = s.backend.mmap(fd, flags, virtAddr, size)
        if code:
            _fail(code, "remote_mem_map", errno=s.backend.errno or None, origin="driver" if s.backend.errno else "dsp")
        return vaddr

    @_traced("remote_mem_unmap")
    def remote_mem_unmap(self, domain: int, remoteVirtAddr: int, size: int) -> None:
        """Unmap a remote_mem_map mapping.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, driver and DSP codes (0x80000448 unknown map)
        """
        domain = _c_arg(domain, C_INT, "remote_mem_unmap: domain")
        remoteVirtAddr = _c_arg(remoteVirtAddr, C_UINT64, "remote_mem_unmap: remoteVirtAddr")
        size = _c_arg(size, C_UINT64, "remote_mem_unmap: size")
        if not remoteVirtAddr:
            _fail(A.AEE_EBADPARM, "remote_mem_unmap: address 0")
        s = self._sessions.get(self._domain_arg(domain))
        if s is None:
            _fail(A.AEE_ENOTINITIALIZED, "remote_mem_unmap: no session")
        code = s.backend.munmap(remoteVirtAddr, size)
        if code:
            _fail(code, "remote_mem_unmap", errno=s.backend.errno or None, origin="driver" if s.backend.errno else "dsp")

    @_traced("remote_set_mode")
    def remote_set_mode(self, mode: int) -> None:
        """Mark every domain for a mode change. As upstream (spec §10.5) the drivers have no
        set-mode, so the next invoke on each domain fails with AEE_EUNSUPPORTED.

        @param[in] mode  REMOTE_MODE_PARALLEL or REMOTE_MODE_SERIAL
        AEE codes: (none)
        """
        with _lock:
            self._mode_pending = set(range(NUM_DOMAINS_EXTEND)) - set(self._sessions)
            for s in self._sessions.values():
                s.invoker.fail_next = A.AEE_EUNSUPPORTED


# --- functions not bound to a Library -----------------------------------------------------
def domain_from_uri(uri: str) -> int:
    """Effective domain of a multi-domain URI (spec §3.2): ``&_dom=`` (cdsp1 before cdsp),
    ``&_session=N`` with N < 4. AEE_EBADPARM if there is no ``&_dom=`` or N is invalid."""
    for dom_id, name in DOMAIN_NAMES.items():
        if f"&_dom={name}" in uri:
            break
    else:
        _fail(A.AEE_EBADPARM, f"URI {uri!r} names no domain (&_dom=...)")
    i = uri.find("&_session=")
    session = 0
    if i >= 0:
        digits = uri[i + 10:]
        j = 0
        while j < len(digits) and (digits[j].isdigit() or (j == 0 and digits[j] in "+-")):
            j += 1
        try:
            session = int(digits[:j]) if j else 0
        except ValueError:
            session = -1
        if not 0 <= session < NUM_SESSIONS:
            _fail(A.AEE_EBADPARM, f"URI {uri!r}: session must be 0..{NUM_SESSIONS - 1}")
    return dom_id + NUM_DOMAINS * session


def remote_handle64_invoke(h: int, sc: int, args=()) -> None:
    """Invoke method ``REMOTE_SCALARS_METHOD(sc)`` of multi-domain handle ``h``.

    @param[in] h     handle from remote_handle64_open
    @param[in] sc    scalars word
    @param[in,out] args  in-bufs, out-bufs, in-handles, out-handles: buffer-protocol objects
                     (out-buffers writable); a buffer inside a registered range (rpcmem,
                     remote_register_buf) goes by reference, others are copied; handle slots
                     take ``remote_dma_handle`` or ``(fd, offset)``
    AEE codes: AEE_EINVHANDLE, AEE_EBADPARM (count mismatch, read-only out-buffer, buffer
    overrunning its registered range, ``sc`` not a uint32_t), AEE_EUNSUPPORTED (after remote_set_mode),
    AEE_ECONNRESET, AEE_ERPC, DSP codes (0x8000040e, 0x80000414, 0x8000043e, 0x8000040d, any
    code the method returns)
    """
    tr = _trace.RECORDER
    if tr is not None:
        return _invoke64_traced(tr, h, sc, args)
    rec = _records.get(h)
    if rec is None:
        _fail(A.AEE_EINVHANDLE, f"remote_handle64_invoke: {h!r} is not an open handle")
    try:
        code = rec.invoker.invoke(rec.dsp_handle, sc, args)
    except OverflowError:
        _fail(A.AEE_EBADPARM, f"remote_handle64_invoke: sc {sc:#x} is not a uint32_t")
    if code:
        _fail(code, f"remote_handle64_invoke({sc:#010x})", errno=_remote.last_errno() or None,
              origin=_ORIGINS[_remote.last_origin()])


Library.remote_handle64_invoke.__doc__ = remote_handle64_invoke.__doc__


def _invoke64_traced(tr, h, sc, args) -> None:
    t0 = _trace.now()
    ret = 0
    try:
        rec = _records.get(h)
        if rec is None:
            ret = A.AEE_EINVHANDLE
            _fail(ret, f"remote_handle64_invoke: {h!r} is not an open handle")
        try:
            ret = rec.invoker.invoke(rec.dsp_handle, sc, args)
        except OverflowError:
            ret = A.AEE_EBADPARM
            _fail(ret, f"remote_handle64_invoke: sc {sc:#x} is not a uint32_t")
        if ret:
            _fail(ret, f"remote_handle64_invoke({sc:#010x})", errno=_remote.last_errno() or None,
                  origin=_ORIGINS[_remote.last_origin()])
    finally:
        shown = (f"{h:#x}, {sc:#010x}, [{len(args) if args else 0} args]"
                 if isinstance(h, int) and isinstance(sc, int) else _summary((h, sc, args)))
        tr.api("remote_handle64_invoke", shown,
               ret, t0, _trace.now())


@_traced("remote_handle64_close")
def remote_handle64_close(h: int) -> None:
    """Close a multi-domain handle. The last one of a session (with no non-domain handles)
    tears the session down (the DSP process exits; no remotectl close, spec §4.6).

    @param[in] h  handle from remote_handle64_open
    AEE codes: AEE_EINVHANDLE, DSP dlerr codes, invoke errors
    """
    if isinstance(h, int) and STATICPD_LO <= h < STATICPD_HI:
        return  # static-PD handles: nothing to close (QF)
    with _lock:
        rec = _records.pop(h, None)
        if rec is None:
            _fail(A.AEE_EINVHANDLE, f"remote_handle64_close: {h!r} is not an open handle")
        s = rec.session
        s.records.discard(h)
        lib = s.lib
        lib._tls.domain = s.eff
        if s.idle():
            lib._drop(s)
            return
        if not s.records and not s.nondomain:
            # Another thread is inside an open on this session: the teardown waits for it.
            s.closing = True
        s.users += 1
    try:
        code = s.close_module(rec.dsp_handle)
    finally:
        lib._release(s)
    if code:
        _fail(code, "remote_handle64_close", origin="dsp" if code & 0x8000_0000 else None)


def _has_domain(soc, dom: int) -> bool:
    try:
        soc.domain(dom)
        return True
    except OSError:
        return False


def _domain_by_prefix(name: str) -> int:
    for dom_id, dname in DOMAIN_NAMES.items():  # cdsp1 is tried before cdsp
        if name.startswith(dname):
            return dom_id
    _fail(A.AEE_EBADPARM, f"unknown domain name {name!r}")


def _cstr(ptr: int, n: int, what: str) -> str:
    """The C string at user pointer ``ptr`` (at most ``n`` bytes, up to its NUL). Read with the
    checked copy, one page at a time so a string ending just before an unmapped page reads
    fine; an unreadable pointer is AEE_EBADPARM with errno EFAULT, never a crash."""
    if not ptr or n <= 0:
        _fail(A.AEE_EBADPARM, f"{what}: NULL or empty string")
    out = bytearray()
    while len(out) < n:
        addr = ptr + len(out)
        chunk = bytearray(min(n - len(out), _backing.PAGE_SIZE - addr % _backing.PAGE_SIZE))
        try:
            copy_from_user(chunk, addr, what)
        except OSError as exc:
            _fail(A.AEE_EBADPARM, f"{what}: {exc.strerror}", errno=exc.errno)
        nul = chunk.find(0)
        if nul >= 0:
            out += chunk[:nul]
            break
        out += chunk
    return out.decode(errors="replace")


def _put_cstr(ptr: int, data: bytes, what: str) -> None:
    """Write ``data`` to user pointer ``ptr`` with the checked copy (AEE_EBADPARM, EFAULT)."""
    try:
        copy_to_user(ptr, data, what)
    except OSError as exc:
        _fail(A.AEE_EBADPARM, f"{what}: {exc.strerror}", errno=exc.errno)


def _struct_arg(st, data, datalen, exact: bool):
    """``data`` as a ctypes copy of ``st`` (and its byte view for writing back)."""
    if data is None:
        _fail(A.AEE_EBADPARM, f"{st.__name__}: data is NULL")
    try:
        mv = memoryview(data).cast("B")
    except TypeError:
        _fail(A.AEE_EBADPARM, f"{st.__name__}: data must be a ctypes struct or bytes-like")
    n = mv.nbytes if datalen is None else datalen
    size = ctypes.sizeof(st)
    if (exact and n != size) or n < size or n > mv.nbytes:
        _fail(A.AEE_EBADPARM, f"{st.__name__}: datalen {n}, expected {size}")
    return mv, st.from_buffer_copy(mv[:size].tobytes())


def _write_back(mv: memoryview, obj) -> None:
    raw = bytes(obj)
    if mv[:len(raw)].tobytes() != raw:
        if mv.readonly:
            _fail(A.AEE_EBADPARM, f"{type(obj).__name__}: data is read-only but the request has outputs")
        mv[:len(raw)] = raw


# --- memory registration (process-wide) ---------------------------------------------------
@_traced("remote_register_buf_attr")
def remote_register_buf_attr(buf, size: int, fd: int, attr: int) -> None:
    """Register (``fd != -1``) or deregister (``fd == -1``) ``[buf, buf+size)`` as memory of
    dma-buf ``fd``: invoke buffers lying inside it then go by reference. NULL ``buf`` or size
    0 is ignored (as in C).

    @param[in] buf   buffer object or address
    @param[in] size  bytes (up to ``size_t``, as remote_register_buf_attr2)
    @param[in] fd    dma-buf fd, -1 to deregister
    @param[in] attr  FASTRPC_ATTR_* bits passed with the buffer
    AEE codes: AEE_EBADPARM (deregistering with another size: QF aborts the process instead; an
    argument outside its C type; a range wrapping past the end of the address space)
    """
    start = _addr(buf)
    # size as remote_register_buf_attr2 takes it (size_t): ranges beyond 2 GiB are legal.
    size = _c_arg(size, (C_INT64[0], C_UINT64[1]), "remote_register_buf: size")
    fd = _c_arg(fd, C_INT, "remote_register_buf: fd")
    attr = _c_arg(attr, C_BITS32, "remote_register_buf: attr") & 0xFFFF_FFFF
    if not start or size <= 0:
        return
    if start + size > C_UINT64[1] + 1:
        _fail(A.AEE_EBADPARM, f"remote_register_buf: [{start:#x}, +{size:#x}) wraps around")
    if fd == -1:
        _deregister(start, size)
        return
    with _lock:
        REGS.add(start, size, fd, attr)


@_traced("remote_register_buf")
def remote_register_buf(buf, size: int, fd: int) -> None:
    """remote_register_buf_attr with attr 0.

    AEE codes: AEE_EBADPARM
    """
    remote_register_buf_attr.__wrapped__(buf, size, fd, 0)


@_traced("remote_register_dma_handle_attr")
def remote_register_dma_handle_attr(fd: int, len: int, attr: int) -> None:  # noqa: A002 - C name
    """Register one use of dma-buf ``fd`` (``len`` bytes) as a handle argument: the next invoke
    passing ``fd`` in a handle slot consumes it.

    @param[in] fd    dma-buf fd (>= 0)
    @param[in] len   length of the buffer
    @param[in] attr  0 or FASTRPC_ATTR_NOMAP
    AEE codes: AEE_EBADPARM, AEE_EINVHANDLE (table of 256 registrations full)
    """
    fd, len = _c_arg(fd, C_INT, "remote_register_dma_handle: fd"), _c_arg(len, C_UINT32, "remote_register_dma_handle: len")
    if fd < 0 or attr not in (0, FASTRPC_ATTR_NOMAP):
        _fail(A.AEE_EBADPARM, f"remote_register_dma_handle: fd {fd} attr {attr}")
    with _lock:
        if sum(map(len_, _dma_regs.values())) >= DMA_HANDLE_TABLE:
            _fail(A.AEE_EINVHANDLE, "remote_register_dma_handle: table full")
        _dma_regs.setdefault(fd, []).append((len, attr))


len_ = len  # the C parameter name ``len`` shadows the builtin above


@_traced("remote_register_dma_handle")
def remote_register_dma_handle(fd: int, len: int) -> None:  # noqa: A002 - C name
    """remote_register_dma_handle_attr with attr 0.

    AEE codes: AEE_EBADPARM, AEE_EINVHANDLE
    """
    remote_register_dma_handle_attr.__wrapped__(fd, len, 0)


# --- rpcmem ---------------------------------------------------------------------------------
@_traced("rpcmem_init")
def rpcmem_init() -> None:
    """Initialise rpcmem. Optional: every rpcmem call initialises lazily (spec §10.1).

    AEE codes: (none)
    """


@_traced("rpcmem_deinit")
def rpcmem_deinit() -> None:
    """Counterpart of rpcmem_init; allocations stay valid until rpcmem_free.

    AEE codes: (none)
    """


@_traced("rpcmem_alloc")
def rpcmem_alloc(heapid: int, flags: int, size: int) -> RpcMem:
    """Allocate ``size`` bytes of shared memory (a memfd standing in for a dma-buf), mapped and
    registered, so it goes to the DSP by reference on either backend. Heap id and flags are
    ignored as on Linux, except RPCMEM_HEAP_NOREG (not registered: copied).

    @param[in] heapid  RPCMEM_HEAP_ID_SYSTEM etc.
    @param[in] flags   RPCMEM_DEFAULT_FLAGS etc.
    @param[in] size    bytes (> 0, a C ``int``)
    @return an :class:`RpcMem` (buffer protocol, ``.address``, ``.fd``); where C returns NULL
    this raises. The memfd is sealed against shrinking and growing, like a dma-buf, and the
    allocation counts against the emulated DMA pool (``QDARPC_DMA_LIMIT``).
    AEE codes: AEE_EBADPARM (size <= 0 or beyond ``int``, an argument outside its C type),
    AEE_ENOMEMORY (errno ENOMEM: the DMA pool is exhausted)
    """
    return _rpcmem_alloc(heapid, flags, size, C_INT)


@_traced("rpcmem_alloc2")
def rpcmem_alloc2(heapid: int, flags: int, size: int) -> RpcMem:
    """rpcmem_alloc with a ``size_t`` size.

    AEE codes: AEE_EBADPARM (size 0 or beyond ``size_t``), AEE_ENOMEMORY (errno ENOMEM: the
    DMA pool is exhausted)
    """
    return _rpcmem_alloc(heapid, flags, size, C_UINT64)


@_traced("rpcmem_free")
def rpcmem_free(po) -> None:
    """Deregister, unmap and close an rpcmem allocation; unknown pointers are ignored.

    @param[in] po  the RpcMem (or its address)
    AEE codes: (none)
    """
    with _lock:
        mm = _rpcmem.pop(_addr(po), None)
        if mm is None:
            return
        if any(r[0] == mm.address and r[1] == len(mm) and r[2] == mm.fd for r in REGS.ranges()):
            _deregister(mm.address, len(mm))
        else:  # NOREG allocation: nothing registered, but sessions may have imported the fd
            for lib in list(_libraries):
                for s in lib._sessions.values():
                    s.backend.forget(mm.fd)
    del mm._pin
    del mm._vma_token
    _backing.uncharge(*mm._charge)  # while the fd is open: the key names this file only
    os.close(mm.fd)
    mm.fd = -1
    try:
        mm.close()
    except BufferError:
        pass  # the caller still holds a view; the mapping goes when that view does


@_traced("rpcmem_to_fd")
def rpcmem_to_fd(po) -> int:
    """The dma-buf fd of an allocation, for its base pointer only.

    @param[in] po  the RpcMem (or its exact base address)
    @return the fd, or -1
    AEE codes: (none)
    """
    mm = _rpcmem.get(_addr(po))
    return mm.fd if mm is not None else -1


# --- module-level state: backend choice, SoC, exit --------------------------------------------
class _State:
    def __init__(self):
        self.backend = os.environ.get("QDARPC_BACKEND", "accel") or "accel"
        self.soc = None
        self.used = False  # a module-level open happened: the backend is fixed
        self.libs: dict[str, Library] = {}


_state = _State()


def default_library() -> Library:
    """The Library behind the module-level functions (selected backend)."""
    b = _state.backend
    if b not in BACKENDS:
        raise ValueError(f"QDARPC_BACKEND={b!r}: valid backends are {', '.join(BACKENDS)}")
    lib = _state.libs.get(b)
    if lib is None:
        with _lock:
            lib = _state.libs.get(b)
            if lib is None:
                lib = _state.libs[b] = Library(b)
    return lib


def set_backend(name: str) -> None:
    """Choose the backend of the module-level functions (``"accel"`` or ``"legacy"``); default
    ``$QDARPC_BACKEND`` or accel. Only before the first session is opened through them:
    afterwards a different choice raises AlreadyLoadedError (AEE_EALREADYLOADED). Use
    :class:`Library` objects to drive both backends in one process."""
    if name not in BACKENDS:
        _fail(A.AEE_EBADPARM, f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    with _lock:
        if name != _state.backend and _state.used:
            raise AlreadyLoadedError(A.AEE_EALREADYLOADED,
                                     f"backend {_state.backend!r} is in use; set_backend must precede the first open")
        _state.backend = name


def use_soc(soc) -> None:
    """Run every Library without an own SoC on ``soc`` (None: back to ``default_soc()``).
    Tears down all sessions of those libraries first and unlocks :func:`set_backend`."""
    with _lock:
        for lib in list(_libraries):
            if lib._soc is None:
                lib.close_all()
        _state.soc = soc
        _state.used = False


def shutdown() -> None:
    """Tear down every session of every Library (also run at interpreter exit)."""
    with _lock:
        for lib in list(_libraries):
            lib.close_all()


atexit.register(shutdown)


# --- fork() -----------------------------------------------------------------------------------
# A real child shares its parent's open device files, hence its DSP sessions. The emulator's
# drivers and DSP are Python objects: after fork() the child holds a copy-on-write copy of them
# that shares only the memfd pages with the parent, so using it would act on device memory the
# parent's DSP owns, and closing it would send INIT_RELEASE for the parent's PDs. The child
# therefore starts over: every Library forgets its inherited sessions and handles without
# talking to them, and builds a fresh emulator (same SoC profile) on first use.
_inherited: list = []             # child: the parent's emulator objects, kept alive, never used
_parents_socs: set[int] = set()   # child: ids of inherited Socs (alive in _inherited)
_reborn: dict[int, object] = {}   # child: id(inherited Soc) -> its fresh replacement


def _soc_profile(soc) -> list:
    """The DomainSpec list ``soc`` was built from (domains, CB count, SIDs)."""
    return [_socmod.DomainSpec(d.name, len(d.bus.cbs), [cb.sid for cb in d.bus.cbs])
            for d in soc.domains.values()]


def _child_soc(old):
    """The child's fresh Soc standing for the inherited ``old`` (one per inherited Soc)."""
    with _lock:
        new = _reborn.get(id(old))
        if new is None:
            new = _reborn[id(old)] = _socmod.Soc(_soc_profile(old))
        return new


_fork_held: list = []  # the locks _before_fork took, released after the fork


def _before_fork() -> None:
    # Library tables and the default SoC are consistent in the child: no thread is mid-change.
    _lock.acquire()
    _fork_held[:] = [_socmod._default_lock]
    _socmod._default_lock.acquire()


def _after_fork_in_parent() -> None:
    for lock in _fork_held:
        lock.release()
    _lock.release()


def _after_fork_in_child() -> None:
    try:
        # Leaf locks of qda_core another parent thread may have held at fork(), and the one
        # _before_fork took: only this thread exists now, so they are all free.
        for mod, name in ((_debug, "_lock"), (_vma, "_lock"), (_backing, "_pool_lock"),
                          (_socmod, "_default_lock")):
            lock = getattr(mod, name, None)
            if lock is not None:
                lock._at_fork_reinit()
        # Socs this process built after its own fork are inherited ones now, too.
        _inherited.append(_reborn.copy())
        _parents_socs.update(id(v) for v in _reborn.values())
        _reborn.clear()
        for soc in (_socmod._default, _state.soc, *(lib._soc for lib in _libraries)):
            if soc is not None and id(soc) not in _parents_socs:
                _inherited.append(soc)
                _parents_socs.add(id(soc))
        _socmod._default = None  # qda_core.default_soc() builds a new one on first use
        for lib in list(_libraries):
            # Dropped, not closed: closing would message the parent's DSP state. Kept
            # referenced so no driver file is collected (and warns, and closes) in the child.
            _inherited.append(lib._sessions)
            for sess in lib._sessions.values():
                REGS.forget_session(sess.key)
            lib._sessions = {}
            lib._discovered = None
        _inherited.append(dict(_records))
        _records.clear()  # inherited handles are invalid: AEE_EINVHANDLE
    finally:
        _fork_held.clear()
        _lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
