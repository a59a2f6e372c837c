"""Sessions: one open device file = one DSP user process, for one effective domain.

A :class:`Session` is what QF keeps per domain: the backend's session file, the invoker (the
Cython fast path) on it, the remotectl interface in use, the handles open on it and its maps.
A :class:`Record` is what a ``remote_handle64`` value stands for.
"""
from __future__ import annotations

import struct

from qda_core.uapi import FASTRPC_MODE_UNSIGNED_MODULE
from qda_core.wire import (ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, REMOTECTL1_HANDLE,
                           REMOTECTL_HANDLE, REMOTECTL_METHODS, RPC_PARAM_ADAPTIVE_QOS, RPC_PARAM_THREAD)

from . import _remote, buffers, process, remotectl
from .backends import BACKENDS
from .cargs import A, fail
from .constants import FASTRPC_ATTR_NOVA


#: An open ``remote_handle64`` (a C type: the invoke fast path reads its fields directly).
Record = _remote.Record


class Session:
    """One open device file = one DSP user process, for one effective domain.

    Lifetime (QF refcounts its sessions the same way): every open handle and every call in
    flight through ``Library._acquire`` holds the session. Closing the last handle marks it
    ``closing``; the teardown runs when the last holder lets go, and takes the session out of
    its Library's table first, so an open racing it either keeps the session alive (it got a
    reference before) or creates a fresh one.

    A forced close (FASTRPC_SESSION_CLOSE, ``close_all``) tears the session down at once, holders
    or not. A call it overtakes fails with AEE_ECONNRESET (:meth:`fail_if_closed`), as the
    kernel fails the calls pending on a closed session (docs/spec/legacy_fastrpc_api.md §5.3),
    whatever the driver or the exiting DSP process answered it; later calls on its handles find
    no record (AEE_EINVHANDLE).
    """

    def __init__(self, lib, eff: int):
        self.lib = lib
        self.eff = eff
        self.domain = eff & 7
        self.backend = BACKENDS[lib.backend](lib.soc)
        self.key = next(process.session_keys)
        self.invoker = None
        self.unsigned = False
        self.iface = REMOTECTL1_HANDLE
        self.records: set[int] = set()
        self.nondomain: set[int] = set()
        self.users = 0         # calls in flight holding the session (under process.lock)
        self.closing = False   # the last handle went: tear down when the last user leaves
        self.dead = False      # torn down
        self.maps: dict[int, tuple[int, int, int]] = {}  # fastrpc_mmap: fd -> (vaddr, length, flags)
        self.static: dict[int, tuple[int, int]] = {}     # remote_mmap64: vaddr -> (fd, size)

    def start(self, opts: dict) -> int:
        """Open the session file, create the user PD (signed or unsigned per ``opts``) and send
        the options set before it existed; 0 or the AEE code of the failed step."""
        b = self.backend
        code = b.open(self.domain, self.lib._nodes())
        if code:
            return code
        self.unsigned = bool(opts.get("unsigned", False))
        code = b.init_create(FASTRPC_MODE_UNSIGNED_MODULE if self.unsigned else 0)
        if code:
            b.close()
            # QF returns INIT_CREATE failures other than ECONNREFUSED as the raw -1
            # (docs/spec/legacy_fastrpc_api.md §10 item 9).
            return code if code == A.AEE_ECONNREFUSED or b.errno == 0 else A.AEE_EUNKNOWN
        self.invoker = _remote.Invoker(b.file.ioctl, b.invoke_request, process.REGS, b.translate,
                                       self.key, self._handle_slot)
        if self.eff in self.lib._mode_pending:
            self.invoker.fail_next = A.AEE_EUNSUPPORTED
            self.lib._mode_pending.discard(self.eff)
        for req_id, params in ((RPC_PARAM_THREAD, opts.get("thread")), (RPC_PARAM_ADAPTIVE_QOS, opts.get("qos"))):
            if params is not None:
                code = self.set_param(req_id, params)
                if code:
                    self.teardown()
                    return code
        return 0

    def invoke(self, handle: int, sc: int, args) -> int:
        """The typed ``invoke(handle, sc, args) -> code`` the remotectl stub calls."""
        return self.invoker.invoke(handle, sc, args)

    def _handle_slot(self, item):
        # The invoker's slow path for a handle argument: (offset, length, fd-or-ref, attr).
        fd, offset = (item.fd, item.offset) if hasattr(item, "fd") else item
        length, attr = buffers.take_dma_registration(fd)
        ref = self.backend.ref(fd) if fd > 0 and length else fd
        return offset, length, ref, attr | FASTRPC_ATTR_NOVA

    def set_param(self, req_id: int, params) -> int:
        """remotectl1_set_param, falling back to remotectl_set_param (docs/spec/legacy_fastrpc_api.md §6.1 step 6)."""
        data = struct.pack(f"<{len(params)}I", *[p & 0xFFFF_FFFF for p in params])
        prim = struct.pack("<II", req_id, len(params))
        code = self.invoke(self.iface, REMOTECTL_METHODS[self.iface]["set_param"], [prim, data])
        if code and self.iface == REMOTECTL1_HANDLE:
            self.iface = REMOTECTL_HANDLE
            code = self.invoke(self.iface, REMOTECTL_METHODS[self.iface]["set_param"], [prim, data])
        return code

    def open_module(self, uri: str) -> tuple[int, int]:
        """remotectl1 open, and on any invoke failure remotectl open for good
        (docs/spec/legacy_fastrpc_api.md §10 item 14)."""
        try:
            code, h = remotectl.open_module(self, uri, self.iface)
            if code and self.iface == REMOTECTL1_HANDLE:
                self.iface = REMOTECTL_HANDLE
                code, h = remotectl.open_module(self, uri, self.iface)
        except remotectl.ModuleOpenError as exc:
            return exc.code, 0
        return code, h

    def close_module(self, h: int) -> int:
        """remotectl close of DSP handle ``h``: 0 or the invoke error / dlerr."""
        return remotectl.close_module(self, h, self.iface)

    def modeled_ns(self) -> int:
        """Modeled on-device ns the DSP charged this session's process so far (0 without one)."""
        f = self.backend.file
        if f is None:
            return 0
        # The DSP keeps processes per driver channel, which is named as the backend is.
        for p in self.backend.soc.domain(self.domain).dsp.processes():
            if p.channel == self.lib.backend and p.client_id == f.client_id:
                return p.modeled_ns
        return 0

    def fail_if_closed(self, what: str) -> None:
        """Raise AEE_ECONNRESET if the session was torn down: for a call that failed, checked
        before the call lets go of the session (its own release may be the teardown)."""
        if self.dead:
            fail(A.AEE_ECONNRESET, f"{what}: the session was closed during the call")

    def idle(self) -> bool:
        """No handle and no call in flight holds the session."""
        return not self.users and not self.records and not self.nondomain

    def teardown(self) -> None:
        """Exit the DSP process and close the file (QF: adsp_current_process1_exit, close).
        Runs once, under ``process.lock``."""
        if self.dead:
            return
        self.dead = True
        if self.invoker is not None:
            self.invoker.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, ())
            self.lib._closed_ns[self.eff] = self.modeled_ns()  # before the release ends the process
        for h in self.records:
            process._records.pop(h, None)
            _remote.routes.forget(h)
        self.records.clear()
        process.REGS.forget_session(self.key)
        self.backend.close()
