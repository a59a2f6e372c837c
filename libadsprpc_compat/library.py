"""The :class:`Library`: one instance of the legacy FastRPC user library over one backend.

:class:`Library` holds what ``libcdsprpc`` holds per process and backend: the sessions (one open
device file = one DSP user process per effective domain, :mod:`.session`), the per-domain
options set by ``remote_session_control``, the reserved sessions and the thread-local current
domain. What is process memory — rpcmem allocations, buffer and dma-handle registrations,
handle64 records — is shared by every Library in the process (:mod:`.process`), so one rpcmem
buffer can go by reference to a handle of either backend. The module-level functions of the
package call the default Library of the selected backend (:mod:`.default`); handle64 values
route themselves to their Library (:mod:`.handle64`).

Decisions a user must know (each is also in the function's docstring):

* ``rpcmem_alloc`` works before any other call (lazy init, docs/spec/legacy_fastrpc_api.md §10 item 1).
* On ``accel``, a registered buffer reaches the DSP by reference even when it was allocated
  before the session existed: it is imported (PRIME_FD_TO_HANDLE) into the session on first
  use. LIB 759d6f8 would leave such a buffer unregistered, i.e. copied.
* On ``accel`` the DSP knows a buffer by its GEM handle in the session file (what
  ``HAP_mmap_get``/dma-handle arguments see); :meth:`Library.dsp_fd` gives that number.
* A closed ``remote_handle64`` is invalid at once (``AEE_EINVHANDLE``); QF keeps it reaching the
  DSP until the session ends (docs/spec/legacy_fastrpc_api.md §10 item 2).
* ``set_backend`` after the first module-level open raises :class:`AlreadyLoadedError`.
* After ``fork()`` the child starts with no sessions on a fresh emulated SoC; handles from the
  parent are invalid there, rpcmem buffers stay shared (see :class:`Library`, :mod:`.fork`).
* A pointer the library must read or write (``remote_session_control`` names and URIs) is
  accessed with the emulator's checked copies: a bad one is AEE_EBADPARM with errno EFAULT.
  An int argument outside its C type is AEE_EBADPARM.

This module also re-exports the names that lived here before the package was split
(``REGS``, ``RpcMem``, ``rpcmem_*``, ``remote_register_*``, ``remote_handle64_*``,
``domain_from_uri``, the process tables), so ``from libadsprpc_compat.library import X`` keeps
working; ``set_backend``, ``use_soc``, ``shutdown`` and ``default_library`` moved to
:mod:`.default` (and the package).
"""
from __future__ import annotations

import errno as _errno
import sys
import threading
import warnings

from qda_core.dsp import cost as _cost
from qda_core.soc import default_soc as _default_soc

from . import fork, process
from .backends import BACKENDS as _BACKEND_CLASSES
from .cargs import C_BITS32, C_INT, C_INT64, C_UINT32, C_UINT64, A, c_arg, fail, sc_text, struct_arg, write_back
from .cargs import addr as _addr
from .constants import (DEFAULT_DOMAIN_ID, DOMAIN_NAMES, FASTRPC_MAP_MAX, FASTRPC_MAP_RESERVED,
                        HANDLE_CONTROL_STRUCTS, NUM_DOMAINS_EXTEND, SESSION_CONTROL_STRUCTS)
from .controls import HANDLE_CONTROL_ANY_LEN, HANDLE_CONTROLS, SESSION_CONTROLS
from .handle64 import raise_invoke, remote_handle64_close, remote_handle64_invoke
from .process import state
from .session import Record, Session
from .tracing import traced
from .uri import domain_from_uri

#: The backends a Library can drive.
BACKENDS = tuple(_BACKEND_CLASSES)
#: A name starting with one of these asks for a transport (QF's ITRANSPORT): not supported.
ITRANSPORT_PREFIX = "'\":;./\\"


class Library:
    """The legacy FastRPC user library over ``backend`` (``"accel"`` or ``"legacy"``) on
    ``soc`` (default: the one set with :func:`use_soc`, else ``qda_core.default_soc()``).

    ``default_domain`` is the domain id (a key of ``DOMAIN_NAMES``; anything else is a
    ValueError) that the non-domain calls (``remote_handle_open/invoke/close``,
    ``remote_handle_control``, ``remote_mmap(64)``...) and ``domain == -1`` arguments use on a
    thread that has not selected a domain yet (a thread selects one by opening or closing a
    ``remote_handle64``; docs/spec/legacy_fastrpc_api.md §3.2). Upstream builds one library per
    default domain from one source (docs/spec/legacy_fastrpc_api.md §1): libadsprpc
    (``ADSP_DOMAIN_ID``, 0), libsdsprpc (``SDSP_DOMAIN_ID``, 2) and libcdsprpc (``CDSP_DOMAIN_ID``,
    3, = ``DEFAULT_DOMAIN_ID``, the default here and the module-level functions' library). It
    does not apply to ``remote_handle64_open``, whose URI must name its domain, nor to
    ``remote_session_control``, where -1 means every domain.

    Sessions are refcounted: a call in flight keeps its session, and the teardown after the
    last handle's close waits for it, so threads may open, invoke and close handles on one
    domain concurrently: an open racing the last close's teardown either keeps the session or,
    once the teardown has begun, waits for it and starts a fresh one. A forced close
    (``FASTRPC_SESSION_CLOSE``, :meth:`close_all`) does not wait: a call it overtakes fails with
    AEE_ECONNRESET, later calls on its handles with AEE_EINVHANDLE.

    Call :meth:`close_all` when done: a Library collected with sessions open warns
    (``ResourceWarning``) and closes them then. (Open ``remote_handle64`` values keep their
    Library alive: they route themselves to it.)

    After ``fork()`` the child does not share its parent's sessions, unlike a real child, which
    inherits the open device files and with them the DSP processes. The emulated drivers and
    DSP live in this process's (copy-on-write) memory, so the child forgets every session and
    handle it inherited without closing them (the parent's are untouched), and its first call
    builds a fresh emulated SoC of the same profile (``qda_core.default_soc()`` likewise).
    Handles from before the fork are invalid in the child (``AEE_EINVHANDLE``). rpcmem buffers
    stay valid, shared memory (``MAP_SHARED``, as dma-buf mappings are across fork) and go by
    reference in the child's new sessions.
    """

    def __init__(self, backend: str = "accel", soc=None, *, default_domain: int = DEFAULT_DOMAIN_ID):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if isinstance(default_domain, bool) or not isinstance(default_domain, int) \
                or default_domain not in DOMAIN_NAMES:
            valid = ", ".join(f"{d} ({n})" for d, n in sorted(DOMAIN_NAMES.items()))
            raise ValueError(f"default_domain {default_domain!r} is not a domain id; valid: {valid}")
        self.backend = backend
        #: The domain of non-domain calls and ``domain == -1`` on a thread that selected none.
        self.default_domain = int(default_domain)
        self._backend_cls = _BACKEND_CLASSES[backend]
        self._soc = soc
        self._sessions: dict[int, Session] = {}
        self._opts: dict[int, dict] = {}
        self._reserved: set[int] = set()
        self._mode_pending: set[int] = set()
        self._discovered: dict[str, str] | None = None
        self._discovered_from: tuple = ()  # the accel nodes present at the last scan
        self._tls = threading.local()
        self._closed_ns: dict[int, int] = {}  # effective domain -> modeled ns of its last closed session
        with process.lock:
            process.libraries.add(self)

    def __repr__(self) -> str:
        return (f"<Library backend={self.backend} default_domain={DOMAIN_NAMES[self.default_domain]} "
                f"sessions={sorted(self._sessions)}>")

    def __del__(self) -> None:
        if not getattr(self, "_sessions", None) or sys.is_finalizing():
            return
        warnings.warn(f"unclosed {self!r}: call close_all()", ResourceWarning, stacklevel=2)
        self.close_all()

    @property
    def soc(self):
        """The emulated SoC this Library's sessions open their device files on."""
        if self._soc is not None:
            self._soc = fork.current(self._soc)
            return self._soc
        if state.soc is not None:
            state.soc = fork.current(state.soc)
            return state.soc
        return _default_soc()

    def _forget_inherited(self) -> dict:
        """In a forked child: drop every session without talking to it (see :mod:`.fork`);
        returns them, for the caller to keep referenced."""
        sessions, self._sessions = self._sessions, {}
        for sess in sessions.values():
            process.REGS.forget_session(sess.key)
        self._discovered = None
        return sessions

    def _nodes(self) -> dict[str, str]:
        """Domain name -> node, as the backend's discovery finds them (LIB caches it and rescans
        when inotify reports a node created or deleted under /dev/accel: SSR re-probes the DSP
        under a new minor; the emulated equivalent is a changed node list, checked on every
        lookup)."""
        soc = self.soc
        present = (id(soc), *soc.accel_nodes())
        if self._discovered is None or present != self._discovered_from:
            self._discovered = self._backend_cls.discover(soc)
            self._discovered_from = present
        return self._discovered

    # -- sessions -------------------------------------------------------------------------
    def _current(self) -> int:
        """The thread's current effective domain: the last one it opened or closed a
        ``remote_handle64`` on, else this Library's default domain."""
        return getattr(self._tls, "domain", self.default_domain)

    def _session(self, eff: int, create: bool = True) -> Session:
        with process.lock:
            s = self._sessions.get(eff)
            if s is not None or not create:
                return s
            if (eff & 7) not in DOMAIN_NAMES:
                fail(A.AEE_EBADPARM, f"no DSP domain {eff & 7}")
            s = Session(self, eff)
            code = s.start(self._opts.get(eff, {}))
            if code:
                fail(code, f"cannot create a session on {DOMAIN_NAMES[eff & 7]} (effective domain {eff})",
                     errno=s.backend.errno or None, origin="driver" if s.backend.errno else None)
            self._sessions[eff] = s
            if state.libs.get(self.backend) is self:
                state.used = True  # the module-level backend is now fixed
            return s

    def _acquire(self, eff: int) -> Session:
        """The session of ``eff`` (created if needed), held for one call: pair with _release."""
        with process.lock:
            s = self._session(eff)
            s.users += 1
            return s

    def _release(self, s: Session) -> None:
        """Let go of a session taken with _acquire; the last holder of a closing one tears it down."""
        with process.lock:
            s.users -= 1
            if s.closing and s.idle():
                self._drop(s)

    def _drop(self, s: Session) -> None:
        """Tear ``s`` down now (explicit close, or the last holder gone)."""
        with process.lock:
            if self._sessions.get(s.eff) is s:
                del self._sessions[s.eff]
            s.teardown()

    def close_all(self) -> None:
        """Tear down every session (what the library destructor does at exit)."""
        with process.lock:
            for s in list(self._sessions.values()):
                self._drop(s)
            self._discovered = None

    # -- modeled device time (docs/cost_model.md) -----------------------------------------
    @property
    def last_modeled_ns(self) -> int:
        """Modeled on-device time, in ns, of the last FastRPC message this thread had a DSP
        answer: after ``remote_handle64_invoke``, that call's (one call is one message; an open
        or a map sends several, and this is the last). A call refused before it reached the DSP
        leaves the figure of the one before; ``qda_core.dsp.cost.measure()`` sums a block exactly.
        Equals the ``modeled_ns`` of that message's ``dsp`` trace event."""
        return _cost.last_ns()

    def modeled_ns(self, domain: int = -1) -> int:
        """Modeled on-device time, in ns, of this Library's session on ``domain`` (effective
        domain id, -1: the current one): what the DSP charged its process, from the create to
        now (calls on its handles and the kernel's maps and unmaps for it; the sum of those
        messages' ``dsp`` trace events). With no session open there, the total of the last one
        closed (its exit included), else 0. A subsystem restart ends the process and its count.
        An invalid ``domain`` raises AEE_EBADPARM."""
        eff = self._domain_arg(domain)
        with process.lock:
            s = self._sessions.get(eff)
            return s.modeled_ns() if s is not None else self._closed_ns.get(eff, 0)

    def _domain_arg(self, domain: int) -> int:
        eff = self._current() if domain == -1 else domain
        if not 0 <= eff < NUM_DOMAINS_EXTEND or (eff & 7) not in DOMAIN_NAMES:
            fail(A.AEE_EBADPARM, f"invalid domain {domain}")
        return eff

    # -- handles --------------------------------------------------------------------------
    def dsp_fd(self, fd: int, domain: int = -1) -> int:
        """The number the DSP knows dma-buf ``fd`` by in the session of ``domain`` (-1: current):
        ``fd`` itself on legacy, its GEM handle in the session file on accel (imported now if
        needed). Not a C API: what an accel-aware caller passes to DSP code that calls
        ``HAP_mmap_get``."""
        s = self._session(self._domain_arg(domain), create=False)
        if s is None:
            fail(A.AEE_ENOTINITIALIZED, "no session open on that domain")
        try:
            return s.backend.ref(fd)
        except ValueError as exc:
            fail(A.AEE_EBADPARM, str(exc))

    @traced("remote_handle_open")
    def remote_handle_open(self, name: str) -> int:
        """Open a module on the current domain (non-domain form).

        @param[in] name  module name or ``file:///`` URI; ``_dom`` is ignored
        @return the DSP handle (``remote_handle``, 32-bit)
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_ECONNREFUSED, AEE_EUNKNOWN, AEE_ECONNRESET
        (the session was closed during the call), DSP dlerr codes (e.g. 0x8000043e module not
        found), invoke errors
        """
        if not isinstance(name, str) or not name:
            fail(A.AEE_EBADPARM, "remote_handle_open: name must be a non-empty str")
        if name[0] in ITRANSPORT_PREFIX:
            fail(A.AEE_EUNSUPPORTED, f"transport request {name!r} is not supported by this library")
        s = self._acquire(self._current())
        try:
            code, h = s.open_module(name)
            with process.lock:
                s.fail_if_closed(f"remote_handle_open({name!r})")
                if code:
                    fail(code, f"remote_handle_open({name!r})", origin="dsp" if code & 0x8000_0000 else None)
                s.nondomain.add(h)
                s.closing = False
            return h
        finally:
            self._release(s)

    @traced("remote_handle_invoke")
    def remote_handle_invoke(self, h: int, sc: int, args=()) -> None:
        """Invoke method ``REMOTE_SCALARS_METHOD(sc)`` of non-domain handle ``h`` on the current
        domain.

        @param[in] h     DSP handle from remote_handle_open (or a static handle 0..10)
        @param[in] sc    scalars word
        @param[in,out] args  in-bufs, out-bufs, in-handles, out-handles (buffer-protocol objects;
                         handle slots: ``remote_dma_handle`` or ``(fd, offset)``)
        AEE codes: AEE_EINVHANDLE, AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_ECONNREFUSED,
        AEE_ECONNRESET (SSR, or the session was closed during the call), DSP codes (0x8000040e,
        0x80000414, 0x8000043e, 0x8000040d, ...)
        """
        if h in (-1, 0xFFFF_FFFF):
            fail(A.AEE_EINVHANDLE, "remote_handle_invoke: handle -1")
        s = self._acquire(self._current())
        try:
            code = s.invoker.invoke(h & 0xFFFF_FFFF, sc, args)
            if code:
                s.fail_if_closed("remote_handle_invoke")
        except OverflowError:
            fail(A.AEE_EBADPARM, f"remote_handle_invoke: sc {sc_text(sc)} is not a uint32_t")
        finally:
            self._release(s)
        if code:
            raise_invoke(code, f"remote_handle_invoke({h:#x}, {sc:#010x})")

    @traced("remote_handle_close")
    def remote_handle_close(self, h: int) -> None:
        """Close a non-domain handle on the current domain (remotectl close on the DSP).

        @param[in] h  DSP handle from remote_handle_open
        AEE codes: AEE_EINVHANDLE, AEE_ECONNRESET (the session was closed during the call), DSP
        dlerr codes (0x8000043e for an unknown handle), invoke errors
        """
        h = c_arg(h, C_BITS32, "remote_handle_close: handle") & 0xFFFF_FFFF
        with process.lock:
            s = self._session(self._current(), create=False)
            if h == 0xFFFF_FFFF or s is None:
                fail(A.AEE_EINVHANDLE, f"remote_handle_close({h:#x}): no session on the current domain")
            s.users += 1
        try:
            code = s.close_module(h)
            with process.lock:
                s.nondomain.discard(h)
            if code:
                s.fail_if_closed(f"remote_handle_close({h:#x})")
        finally:
            self._release(s)
        if code:
            fail(code, f"remote_handle_close({h:#x})", origin="dsp" if code & 0x8000_0000 else None)

    @traced("remote_handle64_open")
    def remote_handle64_open(self, name: str) -> int:
        """Open a module on the domain named in its URI.

        @param[in] name  URI with ``&_dom=<adsp|mdsp|sdsp|cdsp|cdsp1|gdsp0|gdsp1>`` and optional
                         ``&_session=N`` (N < 4); effective domain = domain + 8*N
        @return an opaque ``remote_handle64`` (a library record, not the DSP handle)
        AEE codes: AEE_EBADPARM (no/invalid ``&_dom``, bad session), AEE_EUNSUPPORTED,
        AEE_ECONNREFUSED, AEE_EUNKNOWN, AEE_ENOTINITIALIZED, AEE_ECONNRESET (the session was
        closed during the call), DSP dlerr codes (0x8000043e, 0x80000442, 0x80000594, ...),
        invoke errors
        """
        if not isinstance(name, str) or not name:
            fail(A.AEE_EBADPARM, "remote_handle64_open: name must be a non-empty str")
        if name[0] in ITRANSPORT_PREFIX:
            fail(A.AEE_EUNSUPPORTED, f"transport request {name!r} is not supported by this library")
        eff = domain_from_uri(name)
        s = self._acquire(eff)
        try:
            self._tls.domain = eff
            code, h = s.open_module(name)
            with process.lock:
                # Closed under us (FASTRPC_SESSION_CLOSE, close_all): whatever the open answered.
                s.fail_if_closed(f"remote_handle64_open({name!r})")
                if code:
                    if not s.records and not s.nondomain:
                        s.closing = True  # a failed first open leaves no session behind
                    fail(code, f"remote_handle64_open({name!r})", origin="dsp" if code & 0x8000_0000 else None)
                h64 = next(process.next_h64)
                process._records[h64] = Record(h64, s, h, name)
                s.records.add(h64)
                s.closing = False
            return h64
        finally:
            self._release(s)

    def remote_handle64_invoke(self, h: int, sc: int, args=()) -> None:
        """Same as the module-level :func:`remote_handle64_invoke` (its docstring is copied here)."""
        return remote_handle64_invoke(h, sc, args)

    @traced("remote_handle64_close")
    def remote_handle64_close(self, h: int) -> None:
        """Close a multi-domain handle. The last one of a session (with no non-domain handles)
        tears the session down (the DSP process exits; no remotectl close, docs/spec/legacy_fastrpc_api.md §4.6).

        @param[in] h  handle from remote_handle64_open
        AEE codes: AEE_EINVHANDLE, AEE_ECONNRESET (the session was closed during the call; the
        handle is closed all the same), DSP dlerr codes, invoke errors
        """
        return remote_handle64_close(h)

    @traced("remote_handle_control")
    def remote_handle_control(self, req: int, data=None, datalen: int | None = None) -> None:
        """Control request on the current domain (docs/spec/legacy_fastrpc_api.md §4.7).

        @param[in] req   DSPRPC_CONTROL_LATENCY, DSPRPC_GET_DSP_INFO, DSPRPC_CONTROL_WAKELOCK,
                         DSPRPC_GET_DOMAIN (others: AEE_EUNSUPPORTED)
        @param[in,out] data  the request's struct (ctypes instance or writable bytes-like);
                         outputs are written into it
        @param[in] datalen  defaults to the size of ``data``
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EUNKNOWN (capability ioctl failure),
        AEE_ECONNREFUSED
        """
        self._handle_control(self._current(), req, data, datalen)

    @traced("remote_handle64_control")
    def remote_handle64_control(self, h: int, req: int, data=None, datalen: int | None = None) -> None:
        """remote_handle_control on the domain of handle ``h``.

        @param[in] h  handle from remote_handle64_open
        AEE codes: AEE_EINVHANDLE, AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EUNKNOWN, AEE_ECONNREFUSED
        """
        rec = process._records.get(h)
        if rec is None:
            fail(A.AEE_EINVHANDLE, f"remote_handle64_control: {h!r} is not an open handle")
        rec.session.lib._handle_control(rec.session.eff, req, data, datalen)

    def _handle_control(self, eff: int, req: int, data, datalen) -> None:
        handler = HANDLE_CONTROLS.get(req)
        if handler is None:
            fail(A.AEE_EUNSUPPORTED, f"remote_handle_control: request {req} is not supported")
        mv, obj = struct_arg(HANDLE_CONTROL_STRUCTS[req], data, datalen, exact=req not in HANDLE_CONTROL_ANY_LEN)
        handler(self, eff, obj)
        write_back(mv, obj)

    @traced("remote_session_control")
    def remote_session_control(self, req: int, data=None, datalen: int | None = None) -> None:
        """Session control request (docs/spec/legacy_fastrpc_api.md §4.8); ``datalen`` must equal the struct size.

        @param[in] req  FASTRPC_THREAD_PARAMS, DSPRPC_CONTROL_UNSIGNED_MODULE,
                        FASTRPC_RELATIVE_THREAD_PRIORITY, FASTRPC_REMOTE_PROCESS_KILL,
                        FASTRPC_SESSION_CLOSE, FASTRPC_CONTROL_PD_DUMP,
                        FASTRPC_REMOTE_PROCESS_EXCEPTION, FASTRPC_REMOTE_PROCESS_TYPE,
                        FASTRPC_REGISTER_STATUS_NOTIFICATIONS, FASTRPC_PD_INITMEM_SIZE,
                        FASTRPC_RESERVE_NEW_SESSION, FASTRPC_GET_EFFECTIVE_DOMAIN_ID,
                        FASTRPC_GET_URI, FASTRPC_CONTEXT_CREATE, FASTRPC_CONTEXT_DESTROY
                        (others: AEE_EUNSUPPORTED)
        @param[in,out] data  the request's struct (ctypes instance or writable bytes-like)
        @param[in] datalen   defaults to the size of ``data``
        AEE codes: AEE_EBADPARM, AEE_EUNSUPPORTED, AEE_EALREADYLOADED, AEE_ERPC, AEE_EUNKNOWN,
        AEE_ENOSESSION, AEE_EBADSIZE, AEE_ENOTINITIALIZED, invoke errors
        """
        handler = SESSION_CONTROLS.get(req)
        if handler is None:
            fail(A.AEE_EUNSUPPORTED, f"remote_session_control: request {req} is not supported")
        mv, obj = struct_arg(SESSION_CONTROL_STRUCTS[req], data, datalen, exact=True)
        handler(self, obj)
        write_back(mv, obj)

    # -- memory ---------------------------------------------------------------------------
    @traced("fastrpc_mmap")
    def fastrpc_mmap(self, domain: int, fd: int, addr, offset: int, length: int, flags: int) -> None:
        """Map dma-buf ``fd`` into the DSP process of ``domain`` (docs/spec/legacy_fastrpc_api.md §4.10).

        @param[in] domain  effective domain, -1 = current
        @param[in] fd      dma-buf fd (e.g. rpcmem_to_fd); on accel the DSP sees its GEM handle
        @param[in] addr    CPU address of the buffer (buffer object, int or None)
        @param[in] offset  must be 0
        @param[in] length  bytes to map
        @param[in] flags   a fastrpc_map_flags value (< 17, not FASTRPC_MAP_RESERVED)
        AEE codes: AEE_EBADPARM (also for any argument outside its C type), AEE_ENOTINITIALIZED
        (no session), AEE_EALREADY (fd mapped), AEE_EUNSUPPORTED, AEE_EFAILED
        """
        domain = c_arg(domain, C_INT, "fastrpc_mmap: domain")
        if domain != -1 and not 0 <= domain < NUM_DOMAINS_EXTEND:
            fail(A.AEE_EBADPARM, f"fastrpc_mmap: invalid domain {domain}")
        fd, offset = c_arg(fd, C_INT, "fastrpc_mmap: fd"), c_arg(offset, C_INT, "fastrpc_mmap: offset")
        length, flags = c_arg(length, C_UINT64, "fastrpc_mmap: length"), c_arg(flags, C_INT, "fastrpc_mmap: flags")
        vaddr_in = _addr(addr)
        if fd < 0 or offset != 0 or flags & 0xFFFF0000 or flags >= FASTRPC_MAP_MAX or flags == FASTRPC_MAP_RESERVED or length < 0:
            fail(A.AEE_EBADPARM, f"fastrpc_mmap: bad fd/offset/flags/length ({fd}, {offset}, {flags}, {length})")
        eff = self._domain_arg(domain)
        s = self._sessions.get(eff)
        if s is None:
            fail(A.AEE_ENOTINITIALIZED, f"fastrpc_mmap: no session open on domain {eff}")
        with process.lock:
            if fd in s.maps:
                fail(A.AEE_EALREADY, f"fastrpc_mmap: fd {fd} is already mapped")
            code, vaddr = s.backend.mem_map(fd, offset, int(flags), vaddr_in, length)
            if code:
                if s.backend.errno == _errno.ENOTTY or A.is_dsp_error(code) and (code & 0x3FF) == A.AEE_EUNSUPPORTED:
                    fail(A.AEE_EUNSUPPORTED, "fastrpc_mmap", errno=s.backend.errno or None)
                fail(A.AEE_EFAILED, f"fastrpc_mmap: map failed with {code:#x}", errno=s.backend.errno or None)
            s.maps[fd] = (vaddr, length, int(flags))

    @traced("fastrpc_munmap")
    def fastrpc_munmap(self, domain: int, fd: int, addr=None, length: int = 0) -> None:
        """Unmap the mapping of ``fd`` (found by fd only; ``addr``/``length`` are ignored).

        @param[in] domain  effective domain, -1 = current
        @param[in] fd      the fd given to fastrpc_mmap
        AEE codes: AEE_EBADPARM, AEE_ENOSUCHMAP, AEE_EFAILED
        """
        eff = self._domain_arg(domain)
        s = self._sessions.get(eff)
        with process.lock:
            if s is None or fd not in s.maps:
                fail(A.AEE_ENOSUCHMAP, f"fastrpc_munmap: fd {fd} is not mapped on domain {eff}")
            vaddr, maplen, _flags = s.maps[fd]
            code = s.backend.mem_unmap(fd, vaddr, maplen)
            if code:
                fail(A.AEE_EFAILED, f"fastrpc_munmap: unmap failed with {code:#x}", errno=s.backend.errno or None)
            del s.maps[fd]
            for va, (sfd, _size) in list(s.static.items()):
                if sfd == fd:
                    del s.static[va]

    def _current_session(self, what: str) -> Session:
        s = self._sessions.get(self._current())
        if s is None:
            fail(A.AEE_ENOTINITIALIZED, f"{what}: no session open on the current domain")
        return s

    @traced("remote_mmap64")
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
        fd, flags = c_arg(fd, C_INT, "remote_mmap64: fd"), c_arg(flags, C_UINT32, "remote_mmap64: flags")
        vaddrin, size = _addr(vaddrin), c_arg(size, C_INT64, "remote_mmap64: size")
        if flags != 0 or size < 0 or fd < 0:
            fail(A.AEE_EBADPARM, f"remote_mmap64: flags {flags} must be 0, size/fd >= 0")
        s = self._current_session("remote_mmap64")
        self.fastrpc_mmap.__wrapped__(self, s.eff, fd, vaddrin, 0, size, 0)
        vaddr = s.maps[fd][0]
        s.static[vaddr] = (fd, size)
        return vaddr

    @traced("remote_mmap")
    def remote_mmap(self, fd: int, flags: int, vaddrin: int, size: int) -> int:
        """32-bit remote_mmap64: returns the DSP address truncated to 32 bits.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_EALREADY, AEE_EUNSUPPORTED, AEE_EFAILED
        """
        # vaddrin stays a full pointer: a Python caller's buffers live above 4 GiB.
        vaddrin = _addr(vaddrin)
        size = c_arg(size, C_INT, "remote_mmap: size")
        return self.remote_mmap64.__wrapped__(self, fd, flags, vaddrin, size) & 0xFFFF_FFFF

    @traced("remote_munmap64")
    def remote_munmap64(self, vaddrout: int, size: int) -> None:
        """Unmap a remote_mmap64 mapping by DSP address (else via the driver's MUNMAP).

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_ENOSUCHMAP, AEE_EFAILED, driver codes
        """
        vaddrout = c_arg(vaddrout, C_UINT64, "remote_munmap64: vaddrout")
        size = c_arg(size, C_INT64, "remote_munmap64: size")
        if size < 0:
            fail(A.AEE_EBADPARM, f"remote_munmap64: size {size} must be >= 0")
        s = self._current_session("remote_munmap64")
        for va, (fd, sz) in list(s.static.items()):
            if va == vaddrout or va & 0xFFFF_FFFF == vaddrout:
                self.fastrpc_munmap.__wrapped__(self, s.eff, fd)
                return
        code = s.backend.munmap(vaddrout, size)
        if code:
            fail(code, "remote_munmap64", errno=s.backend.errno or None,
                  origin="driver" if s.backend.errno else "dsp")

    @traced("remote_munmap")
    def remote_munmap(self, vaddrout: int, size: int) -> None:
        """32-bit remote_munmap64.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, AEE_ENOSUCHMAP, AEE_EFAILED, driver codes
        """
        vaddrout = c_arg(vaddrout, C_UINT32, "remote_munmap: vaddrout")
        self.remote_munmap64.__wrapped__(self, vaddrout, c_arg(size, C_INT, "remote_munmap: size"))

    @traced("remote_mem_map")
    def remote_mem_map(self, domain: int, fd: int, flags: int, virtAddr: int, size: int) -> int:
        """Map memory with the driver's MMAP request (flags 0). The upstream legacy kernel
        rejects flags 0 (AEE_EBADPARM, docs/spec/legacy_fastrpc_api.md §10 item 7); the QDA driver forwards it to
        the DSP.

        @return the DSP address (``*remoteVirtAddr``)
        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, driver and DSP codes
        """
        domain, fd = c_arg(domain, C_INT, "remote_mem_map: domain"), c_arg(fd, C_INT, "remote_mem_map: fd")
        virtAddr, size = _addr(virtAddr), c_arg(size, C_UINT64, "remote_mem_map: size")
        if flags != 0:
            fail(A.AEE_EBADPARM, f"remote_mem_map: flags {flags} must be 0")
        s = self._sessions.get(self._domain_arg(domain))
        if s is None:
            fail(A.AEE_ENOTINITIALIZED, "remote_mem_map: no session")
        code, vaddr = s.backend.mmap(fd, flags, virtAddr, size)
        if code:
            fail(code, "remote_mem_map", errno=s.backend.errno or None, origin="driver" if s.backend.errno else "dsp")
        return vaddr

    @traced("remote_mem_unmap")
    def remote_mem_unmap(self, domain: int, remoteVirtAddr: int, size: int) -> None:
        """Unmap a remote_mem_map mapping.

        AEE codes: AEE_EBADPARM, AEE_ENOTINITIALIZED, driver and DSP codes (0x80000448 unknown map)
        """
        domain = c_arg(domain, C_INT, "remote_mem_unmap: domain")
        remoteVirtAddr = c_arg(remoteVirtAddr, C_UINT64, "remote_mem_unmap: remoteVirtAddr")
        size = c_arg(size, C_UINT64, "remote_mem_unmap: size")
        if not remoteVirtAddr:
            fail(A.AEE_EBADPARM, "remote_mem_unmap: address 0")
        s = self._sessions.get(self._domain_arg(domain))
        if s is None:
            fail(A.AEE_ENOTINITIALIZED, "remote_mem_unmap: no session")
        code = s.backend.munmap(remoteVirtAddr, size)
        if code:
            fail(code, "remote_mem_unmap", errno=s.backend.errno or None, origin="driver" if s.backend.errno else "dsp")

    @traced("remote_set_mode")
    def remote_set_mode(self, mode: int) -> None:
        """Mark every domain for a mode change. As upstream (docs/spec/legacy_fastrpc_api.md §10 item 5) the
        drivers have no set-mode, so the next invoke on each domain fails with AEE_EUNSUPPORTED.

        @param[in] mode  REMOTE_MODE_PARALLEL or REMOTE_MODE_SERIAL
        AEE codes: (none)
        """
        with process.lock:
            self._mode_pending = set(range(NUM_DOMAINS_EXTEND)) - set(self._sessions)
            for s in self._sessions.values():
                s.invoker.fail_next = A.AEE_EUNSUPPORTED


# --- the names this module held before the split (kept importable) -------------------------
from .buffers import (DMA_HANDLE_TABLE, remote_register_buf, remote_register_buf_attr,  # noqa: E402,F401
                      remote_register_dma_handle, remote_register_dma_handle_attr)
from .handle64 import STATICPD_HI, STATICPD_LO  # noqa: E402,F401
from .process import REGS, _dma_regs, _records, _rpcmem  # noqa: E402,F401
from .rpcmem import RpcMem, rpcmem_alloc, rpcmem_alloc2, rpcmem_deinit, rpcmem_free, rpcmem_init, rpcmem_to_fd  # noqa: E402,F401

Library.remote_handle64_invoke.__doc__ = remote_handle64_invoke.__doc__
