"""The emulated DSP: receives ``fastrpc_msg`` requests, runs them, answers ``invoke_rsp``.

Handle map (docs/spec/legacy_fastrpc_api.md §6.2, §7.5):

===========  ================================================================================
handle       served by
===========  ================================================================================
1            kernel INIT handle: ATTACH, RELEASE, MMAP, MUNMAP, CREATE(_ATTR), CREATE_STATIC,
             MEM_MAP, MEM_UNMAP. Client id from in-buffer 0 (the header's is 0); it must be
             the sender's (see below).
2            kernel "DSP utilities": method 0 capability query. Needs no PD.
0 / 8        ``remotectl`` / ``remotectl1``: open, close, set_param (grow_heap unsupported).
4            ``adsp_current_process1``: 2 exit (ends the PD, wakes its listener), 3 thread_exit,
             9 poll_mode (others unsupported; see :meth:`EmulatedDsp._poll_complete`).
7            ``adsp_listener1``: 5 init2, 6 next2 (blocks until the PD ends; see
             :meth:`EmulatedDsp._listener`).
3,5,6,9      known static interfaces not emulated -> ``0x80000414``.
             (Served handles are one entry each in ``_STATIC_SERVERS``; names in ``wire``.)
other < 0x100  unknown constant handle -> ``0x80000600``.
>= 0x100     dynamic handles returned by remotectl open in *this* process, else ``0x8000043e``.
===========  ================================================================================

Who may do what (the isolation the kernel and the SMMU give on hardware): every message
arrives with its sender's :class:`~qda_core.wire.Origin`, stamped by the host driver beside the
bytes. A message acts only on the PD of that client id: an INIT request naming another client
is refused (``ERR_NOT_OWNER``), and a message on a user handle whose header names another
client too. Every device address the DSP touches for a message, and every page a request asks
the DSP to map, must lie in a context bank the sender was granted; each PD reads memory only
through its own :class:`~.pdmem.PdMemory`, and anything else is an SMMU fault: the call fails
as a PD crash does, and the fault is traced.

Every code is defined and justified in :mod:`qda_core.dsp.aee`.
"""
from __future__ import annotations

import errno
import struct
import threading
from typing import Callable, Mapping, NamedTuple, Protocol

from .. import _ext, dataplane, errors, faults as _faults, trace
from ..marshal import decode_views
from ..wire import (ADSP_CURRENT_PROCESS1_HANDLE, ADSP_LISTENER1_HANDLE, CONST_HANDLE_LIMIT, CREATE_INBUF,
                    CREATE_STATIC_INBUF, CTX_ASYNC_BIT, CURRENT_PROCESS1_EXIT, CURRENT_PROCESS1_POLL_MODE,
                    CURRENT_PROCESS1_THREAD_EXIT, FASTRPC_MAX_STATIC_HANDLE, FASTRPC_POLL_RESPONSE,
                    FASTRPC_DSP_UTILITIES_HANDLE, FASTRPC_INIT_HANDLE, FASTRPC_MODE_UNSIGNED_MODULE,
                    LISTENER1_INIT2, LISTENER1_NEXT2, MEM_MAP_REQ, MEM_UNMAP_REQ, MMAP_REQ, MSG, MUNMAP_REQ, PAGE_SIZE,
                    PHY_PAGE, REMOTECTL1_HANDLE, REMOTECTL_HANDLE, REMOTECTL_METHODS, RPC_PARAM_ADAPTIVE_QOS,
                    RPC_PARAM_THREAD, RSP, S32, SENSORS_PD, STATIC_HANDLES, U64, Msg, Origin, metadata_size,
                    sc_counts, sc_method)
from . import aee, caps, cost
from ._counters import DspState, state_property
from ._lane import DspLane
from .cost import DOMAIN_COST, CostModel, DspStats
from .dsprt import DspContext, NativeFault
from .loader import Loader, LoadError, parse_uri
from .modules import NativeModule, PythonModule
from .pdmem import PdMemory, span_granted
from .process import MemMapping
from .process import MmapRegion, ModuleInstance, Process, ProcessInfo
from .skel import Call, DmaHandle, interface_name

#: Routes' epoch (docs/dataplane.md "Routes"): bumped by every change of what a route took once.
_ROUTES = _ext.load("_cdev").ROUTES
#: The next user copy of this thread asks the guarded copy's readiness again (around skel code).
_guard_recheck = _ext.load("_marshal").guard_recheck

__all__ = ["EmulatedDsp", "DeviceMemory", "STATIC_PDS", "FIRST_DYNAMIC_HANDLE", "HANDLE_STEP"]


class DeviceMemory(Protocol):
    """What the DSP can reach: device (IOVA) addresses through the host's SMMU model."""

    def view(self, addr: int, length: int, writable: bool) -> memoryview:
        """A byte view of ``length`` bytes at device address ``addr``.

        Raises :class:`qda_core.errors.DeviceFault` if any byte is unmapped.
        """
        ...


#: Static PD names CREATE_STATIC accepts, per domain.
STATIC_PDS: Mapping[str, frozenset[str]] = {
    "adsp": frozenset({"audiopd", "sensorspd", "oispd"}),
    "sdsp": frozenset({"sensorspd"}),
}
#: DSP handles look like heap addresses (observed ``0x35f08490``) and step like allocations.
FIRST_DYNAMIC_HANDLE = 0x35F0_8000
HANDLE_STEP = 0x10

# (method -> operation) of remotectl and remotectl1, with the counts each expects.
_RCTL_OPS = {h: {sc_method(sc): op for op, sc in ops.items()} for h, ops in REMOTECTL_METHODS.items()}
_RCTL_COUNTS = {op: sc_counts(sc) for op, sc in REMOTECTL_METHODS[REMOTECTL_HANDLE].items()}

_EM_QDSP6 = 164
_U32X2 = struct.Struct("<II")
_U32 = struct.Struct("<I")
_U32X4 = struct.Struct("<IIII")


class _Hung(Exception):
    """A method that does not return (a ``timeout`` fault): no reply is sent."""

    def __init__(self, ns: int):
        super().__init__(ns)
        self.ns = ns


#: The ctx bit a ``corrupt`` fault flips: above the id field of every layout, inside misc-7.3's
#: sequence number, so each driver's reply matching decides what happens.
_CORRUPT_BIT = 1 << 40
_METHOD_FAULTS = frozenset(("crash", "timeout", "delay"))  # the kinds _method_faults serves


class _SkelCrash(Exception):
    """Skel code (or the memory it reached) failed: the PD crashes."""


class _Args:
    __slots__ = ("inbufs", "outbufs", "inhandles", "outhandles", "nbytes_in", "nbytes_out", "copied")

    def __init__(self, inbufs: tuple = (), outbufs: tuple = (), inhandles: tuple = (), outhandles: tuple = (),
                 copied: int = 0, nbytes_in: int = 0, nbytes_out: int = 0):
        self.inbufs = inbufs
        self.outbufs = outbufs
        self.inhandles = inhandles
        self.outhandles = outhandles
        self.nbytes_in = nbytes_in    # bytes of the in-buffers, and of the out-buffers
        self.nbytes_out = nbytes_out
        self.copied = copied  # bytes of the buffers copied into the payload (the cost model's)


_NO_ARGS = _Args()


class _Req(NamedTuple("_Req", [*Msg.__annotations__.items(), ("chan", str)])):
    """A received ``fastrpc_msg`` (its fields) and the channel it came in on (``chan``)."""

    @property
    def pd(self) -> int:
        return self.ctx & 0xF


class Endpoint:
    """One host driver's rpmsg endpoint on the DSP (see :meth:`EmulatedDsp.endpoint`)."""

    __slots__ = ("dsp", "channel", "_lane")

    def __init__(self, dsp: "EmulatedDsp", channel: str):
        self.dsp, self.channel = dsp, channel
        self._lane = DspLane(dsp, channel) if dataplane.native() else None

    def receive(self, msg: bytes, reply: Callable[[bytes], None], origin: Origin | None) -> None:
        self.dsp.receive(msg, reply, self.channel, origin)

    @property
    def native(self):
        """The native receive of this endpoint (a capsule, csrc/include/qdarpc/endpoint.h),
        or None when the Python data plane is selected (``QDARPC_DATAPLANE=py``)."""
        return self._lane.capsule if self._lane is not None else None


class EmulatedDsp:
    """One emulated DSP subsystem (``domain``), reachable only through :meth:`receive`.

    ``memory``: the host's device-memory model (:class:`DeviceMemory`). ``skel_path_env``: the
    environment the loader reads ``DSP_LIBRARY_PATH``/``ADSP_LIBRARY_PATH`` from (default: the
    live ``os.environ``). ``capabilities``: attribute -> value overrides for the capability
    table (:mod:`.caps`). ``cost``: a :class:`~.cost.CostModel` replacing the domain default.
    """

    # What every message reads of the DSP lives in C (a DspState, read by the native lane).
    cost = state_property("cost", "The DSP's cost model (:class:`~.cost.CostModel`).")
    stats = state_property("stats", "The DSP's statistics (:class:`~.cost.DspStats`).")
    faults = state_property("faults", "The SoC's fault rules (:mod:`qda_core.faults`), or None.")
    _generation = state_property("generation", "Subsystem restarts so far.")
    _procs_gen = state_property("procs_gen", "Bumped before and after every change of ``_procs``.")

    def __init__(self, domain: str, memory: DeviceMemory, *, skel_path_env: Mapping[str, str] | None = None,
                 capabilities: Mapping[int, int] | None = None, cost: CostModel | None = None):
        from .skels import BUILTIN_SKELS

        self._st = DspState()
        self.domain = domain
        self.memory = memory
        self.capabilities = caps.capability_table(domain, capabilities)
        self.cost = cost or DOMAIN_COST[domain]
        self.stats = DspStats()
        self.loader = Loader(domain, BUILTIN_SKELS, skel_path_env)
        # Protects the updates of _procs ((channel, client id) -> Process), _next_handle and
        # _generation. Not taken to read one of them (each read is one load or dict lookup under
        # the GIL): every message reads _procs and _generation, and a lock all of a DSP's callers
        # share convoys their threads under the GIL (issue 15).
        self._lock = threading.Lock()
        self._procs: dict[tuple[str, int], Process] = {}
        self._next_handle = FIRST_DYNAMIC_HANDLE
        self._generation = 0  # subsystem restarts so far: a message spanning one gets no reply
        # Bumped before and after every change of _procs (under _lock), so the native lane's
        # cache of PDs, filled without the lock, is never taken for current across a change.
        self._procs_gen = 0
        # Per receiving thread, while tracing: what the module loader did for this message
        # (remotectl open), recorded on its ``dsp`` trace event.
        self._traced = threading.local()
        #: The SoC's fault rules (:mod:`qda_core.faults`), or None; ``on_ssr`` restarts this
        #: DSP's subsystem (both drivers' channels and the DSP), for an ``ssr`` rule.
        self.faults: _faults.Faults | None = None
        self.on_ssr: Callable[[], None] | None = None

    # -- public API ------------------------------------------------------------------------

    def __setattr__(self, name, value):
        # a tap on every message (an instance's ``receive``, set by tests and tools) is read by
        # the lanes on each message, but a route took its snapshot once: it must see the change
        if name == "receive":
            _ROUTES.bump()
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name == "receive":
            _ROUTES.bump()
        object.__delattr__(self, name)

    def endpoint(self, channel: str) -> "Endpoint":
        """The rpmsg endpoint of one host driver. Each driver numbers its clients on its own
        (the accel driver from a device counter, the legacy one by session), so processes are
        kept per channel: ``client_id`` 1 of the legacy driver is not ``client_id`` 1 of QDA."""
        return Endpoint(self, channel)

    def receive(self, msg: bytes, reply: Callable[[bytes], None], channel: str = "",
                origin: Origin | None = None) -> None:
        """Handle one 40-byte ``fastrpc_msg`` arriving on ``channel`` from ``origin`` (the
        sender as the host driver stamps it); call ``reply`` once with the 16-byte response.
        A message without an origin cannot be authorised and is refused.

        A message still running when the subsystem restarts (:meth:`restart`; a listener's
        ``next2`` is the usual one) gets no reply: the DSP that took it is gone. This endpoint
        then raises ``ENODEV`` to the sender, as the transport does for a send on a removed
        channel, and each driver reports its SSR code for the call (accel ``ENODEV``,
        legacy ``EPIPE``, as the kernel completes its waiters on rpmsg remove)."""
        try:
            m = _Req._make((*MSG.unpack(msg), channel))
        except (struct.error, TypeError):
            self.stats.record(error=True)
            reply(RSP.pack(0, aee.to_int32(aee.ERR_MALFORMED)))
            return
        tr = trace.RECORDER
        t0 = 0
        if tr is not None:
            t0 = trace.now()
            self._traced.load = None
        generation = self._generation
        f = self.faults
        # the kinds of fault armed now: empty (no rule) on the usual path, one test then
        user_call = f is not None and origin is not None and m.handle >= CONST_HANDLE_LIMIT
        armed = f.kinds if user_call else ()
        if "ssr" in armed and f.check("ssr", (self.domain,), modeled_ns=self.stats.modeled_ns,
                                               detail=f"handle {m.handle:#x} sc {m.sc:#x}"):
            if self.on_ssr is not None:
                self.on_ssr()  # the whole subsystem: the drivers' channels go too
            else:
                self.restart()
        withheld = False
        if origin is None:
            self.stats.record(error=True)
            retval, ns = aee.ERR_NOT_OWNER, 0
        elif self._generation != generation:
            retval, ns = 0, 0  # restarted before it ran: nothing runs
        else:
            try:
                retval, ns = self._handle(m, origin)
            except _Hung as exc:
                retval, ns, withheld = 0, exc.ns, True
        if self._generation != generation:
            raise errors.errno_error(errno.ENODEV, f"{self.domain} restarted while handle {m.handle:#x} "
                                                   f"sc {m.sc:#x} of client {m.client_id} was running")
        if tr is not None:
            load, self._traced.load = self._traced.load, None
            tr.dsp(self.domain, channel, m.client_id, m.pd, m.handle, m.sc, retval, ns, t0, trace.now(), load=load)
        ctx = m.ctx
        if user_call and not withheld and f.kinds:  # again: a rule may have come while it ran
            ctx, withheld = self._reply_faults(m.handle, m.sc, ctx)
        if withheld:
            return  # the reply never comes: the caller's wait is what ends (see faults.hung)
        reply(RSP.pack(ctx, aee.to_int32(retval)))

    def _reply_faults(self, handle: int, sc: int, ctx: int) -> tuple[int, bool]:
        """The ``drop`` and ``corrupt`` rules on a reply about to go: (the ctx it carries,
        whether it is withheld)."""
        armed = self.faults.kinds
        if "drop" not in armed and "corrupt" not in armed:
            return ctx, False
        detail = f"handle {handle:#x} sc {sc:#x}"
        rule = self.faults.check("drop", (self.domain,), detail=detail)
        if rule:
            _faults.hung(rule.ns, self.cost.realtime)
            return ctx, True
        rule = self.faults.check("corrupt", (self.domain,), detail=detail)
        if rule:
            ctx ^= _CORRUPT_BIT
            _faults.hung(rule.ns, self.cost.realtime)  # the wait, should the driver drop the reply
        return ctx, False

    def _crashed(self, chan: str, p: Process, exc: BaseException) -> None:
        """A PD's skel code (or the memory it reached) failed: the fault is traced and the PD
        crashes. ``exc``: the :class:`_SkelCrash`, or the exception the skel raised."""
        if not isinstance(exc, _SkelCrash):
            crash = _SkelCrash(f"{type(exc).__name__}: {exc}")
            crash.__cause__ = exc
            exc = crash
        self._note_fault(chan, p, exc)
        p.crash(str(exc.__cause__ or exc))

    def restart(self) -> None:
        """Subsystem restart: every PD is destroyed and its modules unloaded (no close calls);
        blocked listeners wake, and every message in flight gets no reply (see :meth:`receive`)."""
        with self._lock:
            procs = list(self._procs.values())
            self._procs_gen += 1
            self._procs.clear()
            self._procs_gen += 1
            self._generation += 1
        for p in procs:
            p.exit()

    def processes(self) -> list[ProcessInfo]:
        """A snapshot of every PD, ordered by channel and client id."""
        with self._lock:
            procs = sorted(self._procs.items())
        return [p.info()._replace(channel=chan) for (chan, _), p in procs]

    def __repr__(self) -> str:
        return f"<EmulatedDsp {self.domain} processes={len(self._procs)}>"

    # -- dispatch --------------------------------------------------------------------------

    def _handle(self, m: _Req, origin: Origin) -> tuple[int, int]:
        """Run one request from ``origin``: (retval, modeled on-device ns)."""
        proc: Process | None = None
        crashed = False
        args = _NO_ARGS
        call_ns = 0
        kernel_handle = m.handle in (FASTRPC_INIT_HANDLE, FASTRPC_DSP_UTILITIES_HANDLE)
        try:
            if kernel_handle:
                args = self._resolve(m, self._sender_memory(m.chan, origin))
                if m.handle == FASTRPC_INIT_HANDLE:
                    rv = self._init_handle(m, args, origin)
                else:
                    rv = self._utilities(m, args)
            elif m.client_id != origin.client_id:
                rv = aee.ERR_NOT_OWNER  # no driver sends this: the header names another client
            else:
                proc = self._proc(m.chan, m.client_id)
                if proc is None:
                    rv = aee.ERR_NO_PD
                elif not proc.alive:
                    rv = aee.ERR_PD_CRASHED
                else:
                    args = self._resolve(m, proc.memory)
                    rv, call_ns = self._user_handle(proc, m, args)
                    if rv == 0 and proc.poll_mode:
                        self._poll_complete(proc, m)
        except _Malformed:
            rv = aee.ERR_MALFORMED
        except _SkelCrash as exc:
            crashed = True
            rv = aee.ERR_PD_CRASHED
            if proc is not None:
                self._crashed(m.chan, proc, exc)
        if proc is None and kernel_handle:
            proc = self._proc(m.chan, origin.client_id)  # the kernel's messages for a PD count toward it
        ns = self.cost.charge(args.copied, call_ns, qos=proc is not None and cost.qos_in_force(proc),
                              maps=int(rv == 0 and kernel_handle and cost.is_map(m.handle, m.sc)))
        ns = cost.settle(self.cost, ns)  # the caller's override; QDARPC_REALTIME sleeps here, no lock held
        if proc is not None:
            proc.counters.record(int(not kernel_handle), ns)
        self.stats.record(bytes_in=args.nbytes_in, bytes_out=args.nbytes_out,
                          handles_in=len(args.inhandles), handles_out=len(args.outhandles), ns=ns,
                          error=rv != 0, crash=crashed)
        return rv, ns

    def _sender_memory(self, chan: str, origin: Origin) -> PdMemory:
        """Memory as the sender's streams reach it, for kernel messages (which may have no PD)."""
        return PdMemory(self.memory, origin.sids, (self.domain, chan, origin.client_id), origin.ranges)

    def _resolve(self, m: _Req, memory: PdMemory) -> _Args:
        """Decode the payload and view every argument in device memory, through ``memory``."""
        if not m.sc & 0xFFFFFF and m.size == 0:  # no arguments, no payload
            return _NO_ARGS
        try:
            payload = memory.view(m.addr, m.size, True)
        except errors.DeviceFault as exc:
            raise _SkelCrash(f"payload unreachable: {exc}") from exc
        if not m.sc & 0xFFFFFF:
            return _NO_ARGS  # the payload is reachable but carries no arguments
        sc = m.sc
        nin, nout, ninh, nouth = sc_counts(sc)
        try:
            # Arguments inside the payload come back as views of it: the PD's SMMU view above
            # already reached those pages (one translation per message, not per argument).
            bufs, handles, views, copied, nbytes_in, nbytes_out = decode_views(sc, payload, m.addr)
        except OSError as exc:
            raise _Malformed(str(exc)) from exc
        if len(bufs) != nin + nout or len(handles) != ninh + nouth:
            raise _Malformed(f"decode returned {len(bufs)} buffers/{len(handles)} handles for sc {sc:#x}")
        try:
            for i, mv in enumerate(views):
                if mv is None:  # elsewhere in device memory (by reference): through the SMMU
                    addr, length = bufs[i]
                    views[i] = memory.argument(addr, length, i >= nin)
        except errors.DeviceFault as exc:
            raise _SkelCrash(f"argument unreachable: {exc}") from exc
        hs = tuple(DmaHandle(*h) for h in handles) if handles else ()
        return _Args(tuple(views[:nin]), tuple(views[nin:]), hs[:ninh], hs[ninh:], copied, nbytes_in, nbytes_out)

    # -- handle 1: the kernel's INIT handle ------------------------------------------------

    def _init_handle(self, m: _Req, a: _Args, origin: Origin) -> int:
        method = sc_method(m.sc)
        op = {0: self._attach, 1: self._release, 4: self._mmap, 5: self._munmap,
              6: self._create, 7: self._create, 8: self._create_static,
              10: self._mem_map, 11: self._mem_unmap}.get(method)
        if op is None:
            return aee.ERR_UNKNOWN_METHOD
        expected = {0: (1, 0), 1: (1, 0), 4: (2, 1), 5: (1, 0), 6: (4, 0), 7: (4, 0), 8: (3, 0),
                    10: (3, 1), 11: (1, 0)}[method] + (0, 0)
        if sc_counts(m.sc) != expected or len(a.inbufs[0]) < 4:
            return aee.ERR_BAD_PARM
        if S32.unpack_from(a.inbufs[0])[0] != origin.client_id:
            return aee.ERR_NOT_OWNER  # every request starts with the client id it acts for
        return op(m, a, origin)

    def _new_process(self, m: _Req, origin: Origin, kind: str, **kw) -> Process:
        """A PD for the sender, reading memory only through the streams it was granted."""
        return Process(origin.client_id, kind, self._sender_memory(m.chan, origin), domain=self.domain,
                       channel=m.chan, cost=self.cost, **kw)

    def _attach(self, m: _Req, a: _Args, origin: Origin) -> int:
        cid = origin.client_id
        kind = "sensorspd" if m.pd == SENSORS_PD else "root"
        with self._lock:
            p = self._procs.get((m.chan, cid))
            if p is None:
                p = self._new_process(m, origin, kind)
                self._procs_gen += 1
                self._procs[m.chan, cid] = p
                self._procs_gen += 1
                return 0
        if not p.alive:
            return aee.ERR_PD_CRASHED
        return 0 if p.kind == kind else aee.ERR_PD_EXISTS  # re-attach is harmless (docs/spec/qda_accel_uapi.md §3.4)

    def _release(self, m: _Req, a: _Args, origin: Origin) -> int:
        cid = origin.client_id
        with self._lock:
            self._procs_gen += 1
            p = self._procs.pop((m.chan, cid), None)
            self._procs_gen += 1
        if p is not None:
            self._exit_process(m.chan, p)
        return 0

    def _add_process(self, chan: str, p: Process) -> int:
        with self._lock:
            old = self._procs.get((chan, p.client_id))
            if old is None:
                self._procs_gen += 1
                self._procs[chan, p.client_id] = p
                self._procs_gen += 1
                return 0
        return aee.ERR_PD_EXISTS if old.alive else aee.ERR_PD_CRASHED

    def _create(self, m: _Req, a: _Args, origin: Origin) -> int:
        in0, name, shell, pages = a.inbufs
        if len(in0) < CREATE_INBUF.size or len(pages) < PHY_PAGE.size:
            return aee.ERR_BAD_PARM
        _cid, namelen, filelen, pageslen, attrs, _siglen = CREATE_INBUF.unpack_from(in0)
        if namelen != len(name) or filelen != len(shell) or pageslen != 1:
            return aee.ERR_BAD_PARM
        init_mem = PHY_PAGE.unpack_from(pages)
        if not _granted(origin, *init_mem):
            return aee.ERR_FOREIGN_PAGES
        if len(shell) and not _is_hexagon_elf(shell):
            return aee.ERR_BAD_SHELL
        unsigned = bool(attrs & FASTRPC_MODE_UNSIGNED_MODULE)
        if unsigned and not self.capabilities.get(caps.UNSIGNED_PD_SUPPORT, 0):
            return aee.ERR_UNSIGNED_UNSUPPORTED
        pname = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
        return self._add_process(m.chan, self._new_process(m, origin, "user", name=pname, unsigned=unsigned,
                                                           init_mem=init_mem))

    def _create_static(self, m: _Req, a: _Args, origin: Origin) -> int:
        in0, name, heap = a.inbufs
        if len(in0) < CREATE_STATIC_INBUF.size:
            return aee.ERR_BAD_PARM
        _cid, namelen, _pageslen = CREATE_STATIC_INBUF.unpack_from(in0)
        if namelen != len(name) or namelen == 0:
            return aee.ERR_BAD_PARM
        pname = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
        if pname not in STATIC_PDS.get(self.domain, ()):
            return aee.ERR_UNKNOWN_STATIC_PD
        heap_page = PHY_PAGE.unpack_from(heap) if len(heap) >= PHY_PAGE.size else (0, 0)
        if heap_page[1] and not _granted(origin, *heap_page):
            return aee.ERR_FOREIGN_PAGES
        return self._add_process(m.chan, self._new_process(m, origin, pname, name=pname, init_mem=heap_page))

    def _proc(self, chan: str, cid: int) -> Process | None:
        return self._procs.get((chan, cid))  # one lookup: no lock (see __init__)

    def _live(self, chan: str, cid: int) -> tuple[Process | None, int]:
        p = self._proc(chan, cid)
        if p is None:
            return None, aee.ERR_NO_PD
        return (p, 0) if p.alive else (None, aee.ERR_PD_CRASHED)

    def _map_va(self, p: Process, size: int) -> int | None:
        try:
            return p.va.alloc(-(-size // PAGE_SIZE) * PAGE_SIZE)
        except MemoryError:
            return None

    def _place(self, chan: str, cid: int, size: int, out, record) -> int:
        """Give ``size`` bytes a DSP virtual address in the client's PD, ``record(p, va)`` the
        mapping under the PD lock, and answer ``{u64 vaddr}`` in ``out`` (MMAP and MEM_MAP)."""
        p, err = self._live(chan, cid)
        if p is None:
            return err
        with p.lock:
            vaddr = self._map_va(p, size)
            if vaddr is None:
                return aee.ERR_VA_EXHAUSTED
            record(p, vaddr)
        U64.pack_into(out, 0, vaddr)
        return 0

    def _mmap(self, m: _Req, a: _Args, origin: Origin) -> int:
        req, pagebuf = a.inbufs
        out = a.outbufs[0]
        if len(req) < MMAP_REQ.size or len(out) < U64.size or len(pagebuf) < PHY_PAGE.size \
                or len(pagebuf) % PHY_PAGE.size:
            return aee.ERR_BAD_PARM
        cid, flags, _vaddr_hint, _num = MMAP_REQ.unpack_from(req)
        pages = tuple(PHY_PAGE.iter_unpack(pagebuf))
        size = sum(sz for _, sz in pages)
        if size == 0:
            return aee.ERR_BAD_PARM
        if not all(_granted(origin, addr, sz) for addr, sz in pages):
            return aee.ERR_FOREIGN_PAGES
        return self._place(m.chan, cid, size, out,
                           lambda p, va: p.mmaps.__setitem__(va, MmapRegion(va, size, pages, flags)))

    def _munmap(self, m: _Req, a: _Args, origin: Origin) -> int:
        if len(a.inbufs[0]) < MUNMAP_REQ.size:
            return aee.ERR_BAD_PARM
        cid, vaddr, size = MUNMAP_REQ.unpack_from(a.inbufs[0])
        p, err = self._live(m.chan, cid)
        if p is None:
            return err
        with p.lock:
            region = p.mmaps.get(vaddr)
            if region is None or region.size != size:
                return aee.ERR_NO_SUCH_MAP
            del p.mmaps[vaddr]
            p.va.free(vaddr)
        return 0

    def _mem_map(self, m: _Req, a: _Args, origin: Origin) -> int:
        req, pagebuf, _data = a.inbufs
        out = a.outbufs[0]
        if len(req) < MEM_MAP_REQ.size or len(pagebuf) < PHY_PAGE.size or len(out) < U64.size:
            return aee.ERR_BAD_PARM
        cid, fd, offset, flags, vaddrin, _num, _data_len = MEM_MAP_REQ.unpack_from(req)
        dev_addr, size = PHY_PAGE.unpack_from(pagebuf)
        if size == 0:
            return aee.ERR_BAD_PARM
        if not _granted(origin, dev_addr, size):
            return aee.ERR_FOREIGN_PAGES
        return self._place(m.chan, cid, size, out,
                           lambda p, va: p.mappings.append(MemMapping(fd, va, dev_addr, size, offset, flags, vaddrin)))

    def _mem_unmap(self, m: _Req, a: _Args, origin: Origin) -> int:
        if len(a.inbufs[0]) < MEM_UNMAP_REQ.size:
            return aee.ERR_BAD_PARM
        cid, fd, vaddr, _length = MEM_UNMAP_REQ.unpack_from(a.inbufs[0])
        p, err = self._live(m.chan, cid)
        if p is None:
            return err
        with p.lock:
            for i, mp in enumerate(p.mappings):
                # vaddr 0 = "by fd" (fastrpc_unmap_fd); fd < 0 = "by address" (legacy kernel).
                if (mp.fd == fd and vaddr in (0, mp.vaddr)) or (fd < 0 and vaddr == mp.vaddr):
                    del p.mappings[i]
                    p.va.free(mp.vaddr)
                    return 0
        return aee.ERR_NO_SUCH_MAP

    # -- handle 2: DSP utilities -----------------------------------------------------------

    def _utilities(self, m: _Req, a: _Args) -> int:
        if sc_method(m.sc) != 0:
            return aee.ERR_UNKNOWN_METHOD
        if sc_counts(m.sc) != (1, 1, 0, 0) or len(a.inbufs[0]) < 4:
            return aee.ERR_BAD_PARM
        # The kernel asks for attributes 1..n into out[0..n-1]; attribute 0 (DOMAIN_SUPPORT)
        # is filled on the CPU side (drivers/misc/fastrpc.c fastrpc_get_info_from_dsp).
        n = min(_U32.unpack_from(a.inbufs[0])[0], len(a.outbufs[0]) // 4)
        out = a.outbufs[0]
        for i in range(n):
            _U32.pack_into(out, 4 * i, self.capabilities.get(i + 1, 0))
        return 0

    # -- handles served inside a PD --------------------------------------------------------

    def _user_handle(self, p: Process, m: _Req, a: _Args) -> tuple[int, int]:
        h = m.handle
        if h < CONST_HANDLE_LIMIT:
            serve = _STATIC_SERVERS.get(h)
            if serve is not None:
                return serve(self, p, m, a), 0
            return (aee.ERR_STATIC_UNSUPPORTED if h in STATIC_HANDLES else aee.ERR_UNKNOWN_CONST_HANDLE), 0
        with p.lock:
            mi = p.modules.get(h)
        if mi is None:
            return aee.ERR_NO_SUCH_HANDLE, 0
        call = Call(m.sc, sc_method(m.sc), a.inbufs, a.outbufs, a.inhandles, a.outhandles, p, h)
        f = self.faults
        if f is not None and f.kinds & _METHOD_FAULTS:
            self._method_faults(f, mi, call)
        rv = _skel(mi.impl.invoke, call)
        return rv, call.extra_ns

    def _method_faults(self, f: "_faults.Faults", mi: ModuleInstance, call: Call) -> None:
        """``crash``/``timeout``/``delay`` rules naming this module or method."""
        iface = interface_name(mi.uri.file)
        names = (iface, f"{iface}.{call.method}")
        py = getattr(mi.impl, "cls", None)
        mname = py.method_names().get(call.method) if py is not None else None
        if mname is not None:
            names += (f"{iface}.{mname}",)
        detail = f"{mi.uri.file} method {call.method}"
        if f.armed("crash") and f.check("crash", names, detail=detail):
            raise _SkelCrash("injected crash (fault rule)")
        rule = f.armed("timeout") and f.check("timeout", names, detail=detail)
        if rule:
            _faults.hung(rule.ns, self.cost.realtime)
            raise _Hung(rule.ns)
        rule = f.armed("delay") and f.check("delay", names, detail=detail)
        if rule:
            call.add_cost(rule.ns)

    def _current_process(self, p: Process, m: _Req, a: _Args) -> int:
        method = sc_method(m.sc)
        if method == sc_method(CURRENT_PROCESS1_POLL_MODE):
            # poll_mode(uint32 enable, uint32 timeout): in0 {enable, timeout}
            if sc_counts(m.sc) != sc_counts(CURRENT_PROCESS1_POLL_MODE) or len(a.inbufs[0]) < 8:
                return aee.ERR_BAD_PARM
            enable, timeout = _U32X2.unpack_from(a.inbufs[0])
            with p.lock:
                p.poll_mode, p.poll_timeout = bool(enable), timeout
            return 0
        if method == sc_method(cost.SET_QOS):
            # setQoS(uint32 latency_us): the PD's calls take the QoS fixed cost while it is in force
            if sc_counts(m.sc) != sc_counts(cost.SET_QOS) or len(a.inbufs[0]) < 4:
                return aee.ERR_BAD_PARM
            with p.lock:
                p.params[cost.QOS_PARAM] = _U32.unpack_from(a.inbufs[0])
                _ROUTES.bump()  # routes serve no PD with QoS in force
            return 0
        if method not in (sc_method(CURRENT_PROCESS1_EXIT), sc_method(CURRENT_PROCESS1_THREAD_EXIT)):
            return aee.ERR_STATIC_UNSUPPORTED
        if sc_counts(m.sc) != (0, 0, 0, 0):
            return aee.ERR_BAD_PARM
        if method == sc_method(CURRENT_PROCESS1_EXIT):
            self._exit_process(m.chan, p)  # like RELEASE; later calls see 0x8000040d
        return 0

    def _poll_complete(self, p: Process, m: _Req) -> None:
        """Poll mode (Linux 7.3, docs/spec/kernel_revisions_2026.md §5): a PD whose library
        turned it on (``adsp_current_process1`` poll_mode, the DSP half of what the kernel's
        SET_OPTION turns on) completes a call on a dynamic module by writing
        ``FASTRPC_POLL_RESPONSE`` (``0xdecaf``) into the ``u32`` after the payload metadata, at
        ``40n + 384``, before it sends the reply, which it sends as always. Not for an "async"
        context (ctx bit 4; odd ids under the 7.2 layout, why 7.3 moved them to bits 15:8), not
        in a static PD, and only for a call that succeeded: the kernel takes the poll word as
        "retval 0", so a failure must reach it through the reply (our choice; the firmware's
        rule is not public). The word lands wherever the kernel's metadata ends; a kernel
        whose metadata has no poll word (7.2) gets it over the first bytes of its data area."""
        if m.ctx & CTX_ASYNC_BIT or m.handle <= FASTRPC_MAX_STATIC_HANDLE or p.kind != "user":
            return
        off = metadata_size(sum(sc_counts(m.sc)))
        if off + 4 > m.size:
            return
        try:
            _U32.pack_into(p.memory.view(m.addr + off, 4, True), 0, FASTRPC_POLL_RESPONSE)
        except errors.DeviceFault:
            return

    def _listener(self, p: Process, m: _Req, a: _Args) -> int:
        """``adsp_listener1`` (docs/spec/legacy_fastrpc_api.md §6.4): the library's listener
        thread sends ``init2`` once, then loops on ``next2``, which returns the DSP's next
        reverse request (``apps_std`` file access, ``apps_mem`` heap growth ...) and carries
        the CPU's answer to the previous one.

        ``next2`` (sc ``0x06020200``): in0 ``u32[4] {prevCtx, prevResult, prevLen, bufLen}``,
        in1 the previous request's out-buffers (``prevLen`` bytes), out0 ``u32[4] {ctx,
        handle, sc, lenReq}``, out1 the next request's in-buffers (``bufLen`` bytes).

        This DSP loads skels from the search path itself and grows no heap through the CPU, so
        it never makes a reverse request: ``next2`` blocks (no lock held, the GIL released)
        until the PD ends — ``adsp_current_process1`` exit, INIT_RELEASE, a crash — and then
        answers ``ERR_LISTENER_ENDED`` (``0x8000040d``), on which the library's listener leaves
        its loop, so the library's teardown (exit, then join the listener) completes. A
        subsystem restart ends it with no reply at all (see :meth:`receive`). Each PD's
        listeners wait on that PD alone; a ``prevCtx`` naming no request of ours is dropped, as
        an answer to nothing.
        """
        if m.sc == LISTENER1_INIT2:
            return 0
        if m.sc != LISTENER1_NEXT2:
            return aee.ERR_UNKNOWN_METHOD if sc_method(m.sc) not in (5, 6) else aee.ERR_BAD_PARM
        (req, prev), (out0, bufs) = a.inbufs, a.outbufs
        if len(req) < _U32X4.size or len(out0) < _U32X4.size:
            return aee.ERR_BAD_PARM
        _prev_ctx, _prev_result, prev_len, buf_len = _U32X4.unpack_from(req)
        if len(prev) < prev_len or len(bufs) < buf_len:
            return aee.ERR_BAD_PARM
        p.listen()
        return aee.ERR_LISTENER_ENDED

    def _remotectl(self, p: Process, m: _Req, a: _Args) -> int:
        op = _RCTL_OPS[m.handle].get(sc_method(m.sc))
        if op is None or op == "grow_heap":
            return aee.ERR_UNKNOWN_METHOD
        if sc_counts(m.sc) != _RCTL_COUNTS[op] or len(a.inbufs[0]) < 8:
            return aee.ERR_BAD_PARM
        if op == "set_param":
            req_id, nparams = _U32X2.unpack_from(a.inbufs[0])
            if len(a.inbufs[1]) != 4 * nparams:
                return aee.ERR_BAD_PARM
            if req_id not in (RPC_PARAM_THREAD, RPC_PARAM_ADAPTIVE_QOS):
                return aee.ERR_STATIC_UNSUPPORTED
            with p.lock:
                p.params[req_id] = struct.unpack(f"<{nparams}I", a.inbufs[1])
                _ROUTES.bump()
            return 0
        out0, errbuf = a.outbufs
        if op == "open":
            name_len, dlerror_len = _U32X2.unpack_from(a.inbufs[0])
            raw = bytes(a.inbufs[1])
            if len(out0) < 8 or name_len != len(raw) or b"\0" not in raw:
                return aee.ERR_BAD_PARM
            handle, dlerr, text = self._open_module(p, m.chan, raw.split(b"\0", 1)[0])
            _U32X2.pack_into(out0, 0, handle, dlerr)
        else:
            handle, dlerror_len = _U32X2.unpack_from(a.inbufs[0])
            if len(out0) < 4:
                return aee.ERR_BAD_PARM
            dlerr, text = self._close_module(p, handle)
            _U32.pack_into(out0, 0, dlerr)
        _put_cstring(errbuf, text, dlerror_len)
        return 0

    def _open_module(self, p: Process, chan: str, raw: bytes) -> tuple[int, int, str]:
        try:
            uri = parse_uri(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return 0, aee.ERR_BAD_URI, f"bad module URI: {exc}"
        try:
            src = self.loader.resolve(uri)
        except LoadError as exc:
            self._trace_load(uri.file, "", exc.passed_over)
            return 0, exc.code, exc.text
        self._trace_load(uri.file, src.origin, src.passed_over)
        if src.skel is not None:
            impl = _skel(PythonModule, src.skel, uri)
        else:
            ctx = DspContext(self.domain, chan, p.client_id, uri.file.rsplit("/", 1)[-1])
            try:
                impl = NativeModule(src.native, uri, ctx)
            except OSError as exc:  # the DSP runtime went missing after the loader found it
                return 0, aee.ERR_MOD_UNLOADABLE, str(exc)
        if uri.handle_style:
            rv = _skel(impl.open)
            if rv != 0:
                return 0, aee.to_u32(rv), f"{uri.file}: open returned {aee.to_u32(rv):#x}"
        with self._lock:
            handle = self._next_handle
            self._next_handle = (self._next_handle + HANDLE_STEP) & 0xFFFF_FFFF
        with p.lock:
            alive, exited = p.alive, p.state == "exited"
            if alive:
                p.modules[handle] = ModuleInstance(handle, uri, impl, src.origin)
        if not alive:  # crashed or exited meanwhile on another thread
            if exited and uri.handle_style:
                self._close_quietly(chan, p, ModuleInstance(handle, uri, impl, src.origin))
            return 0, aee.ERR_PD_CRASHED, "process is exiting"
        return handle, 0, ""

    def _trace_load(self, file: str, loaded: str, passed_over) -> None:
        if trace.RECORDER is not None:
            self._traced.load = {"file": file, "loaded": loaded,
                                 "passed_over": [{"path": p, "reason": r} for p, r in passed_over]}

    def _close_module(self, p: Process, handle: int) -> tuple[int, str]:
        with p.lock:
            mi = p.modules.pop(handle, None)
            _ROUTES.bump()  # before the skel's close: no route calls the instance after it
        if mi is None:
            return aee.ERR_CLOSE_UNKNOWN, f"handle {handle:#x} is not open"
        if not mi.uri.handle_style:
            return 0, ""
        rv = _skel(mi.impl.close)
        return (aee.to_u32(rv), f"{mi.uri.file}: close returned {aee.to_u32(rv):#x}") if rv else (0, "")

    def _exit_process(self, chan: str, p: Process) -> None:
        """PD teardown (process exit, INIT_RELEASE): every handle-style module still open gets
        its framework close (method 1), latest open first, as the DSP's module table closes its
        entries when the process goes. Each instance is closed exactly once: a remotectl close
        took it out of the table before, a crash drops them all without close. A crash in one
        close ends the teardown there (the PD is dead)."""
        with p.lock:
            alive = p.alive
            if alive:
                p.state = "exited"  # no new opens, invokes see 0x8000040d
            closing = [mi for mi in reversed(p.modules.values()) if mi.uri.handle_style]  # dicts keep open order
            p.modules.clear()
            _ROUTES.bump()
        p.release_listeners()  # before the closes: a listener waits on the PD, not on its modules
        if alive:
            for mi in closing:
                if not self._close_quietly(chan, p, mi):
                    break
        p.exit()

    def _close_quietly(self, chan: str, p: Process, mi: ModuleInstance) -> bool:
        """The framework close of ``mi`` at teardown (its status goes nowhere); False if it
        crashed."""
        try:
            _skel(mi.impl.close)
        except _SkelCrash as exc:
            self._note_fault(chan, p, exc)
            with p.lock:
                p.state = "crashed"
                p.crash_reason = str(exc.__cause__ or exc)
            return False
        return True

    def _note_fault(self, chan: str, p: Process, exc: "_SkelCrash") -> None:
        """Trace a native skel's fault (the signal the runtime caught) as a ``fault`` event."""
        tr = trace.RECORDER
        cause = exc.__cause__
        if tr is not None and isinstance(cause, NativeFault):
            t = trace.now()
            tr.fault(self.domain, chan, p.client_id, cause.signame.lower(), cause.addr, 0, str(cause), t, t)


#: The static handles a PD serves: handle -> ``(dsp, process, request, args) -> retval``. A handle
#: in ``wire.STATIC_HANDLES`` without an entry here answers ERR_STATIC_UNSUPPORTED; adding a
#: service is one entry.
_STATIC_SERVERS: dict[int, Callable[[EmulatedDsp, Process, _Req, _Args], int]] = {
    REMOTECTL_HANDLE: EmulatedDsp._remotectl,
    REMOTECTL1_HANDLE: EmulatedDsp._remotectl,
    ADSP_CURRENT_PROCESS1_HANDLE: EmulatedDsp._current_process,
    ADSP_LISTENER1_HANDLE: EmulatedDsp._listener,
}


class _Malformed(Exception):
    """The payload does not decode."""


def _skel(fn, *args):
    """Run skel code; any exception out of it is a crash of the calling PD. Skel code may change
    the signal handlers the guarded user copy relies on: the copies after it, and any it makes
    itself, ask the guard again."""
    _guard_recheck()
    try:
        return fn(*args)
    except Exception as exc:
        raise _SkelCrash(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _guard_recheck()


def _granted(origin: Origin, addr: int, size: int) -> bool:
    """A page descriptor the sender may hand the DSP: inside one of its context banks."""
    return size >= 0 and span_granted(origin.sids, addr, size, origin.ranges)


def _put_cstring(buf: memoryview, text: str, limit: int) -> None:
    n = min(len(buf), limit)
    if n <= 0:
        return
    data = text.encode("utf-8", "replace")[: n - 1] + b"\0"
    buf[: len(data)] = data


def _is_hexagon_elf(image: memoryview) -> bool:
    """A 32-bit little-endian ELF for EM_QDSP6, what a DSP shell must be."""
    if len(image) < 52:  # sizeof(Elf32_Ehdr)
        return False
    hdr = bytes(image[:20])
    return (hdr[:4] == b"\x7fELF" and hdr[4] == 1 and hdr[5] == 1
            and struct.unpack_from("<H", hdr, 18)[0] == _EM_QDSP6)
