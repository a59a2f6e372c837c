"""The emulated DSP's runtime for native skels: ``libqdarpc_dsprt.so`` (csrc/dsprt/dsprt.c).

A host-compiled skel runs in the host process. On a device the DSP image gives it two things
this module provides here:

* **a crash boundary**: :func:`call` runs a skel entry point through ``qdarpc_dsp_call``, which
  catches SIGSEGV/SIGBUS/SIGFPE/SIGILL raised in the calling thread while skel code runs
  (including a stack overflow) and returns; :func:`call` then raises :class:`NativeFault`, which
  the DSP turns into a crash of the calling PD. The host process keeps running. What is *not*
  contained: a skel that corrupts host memory before (or instead of) faulting, ``abort()`` or
  ``exit()``, faults in threads the skel starts, hangs, and signals sent with ``kill``.
* **the HAP_debug* functions FARF calls** (csrc/include/HAP_farf.h): every message goes to the
  logger ``qdarpc.dsp`` and, when tracing, to a ``farf`` trace event naming the PD and module it
  came from (known for messages logged in the thread that invoked the skel).

The library is loaded once, with ``RTLD_GLOBAL``, before the first skel is opened, so a skel's
undefined ``HAP_*`` symbols resolve to it as they resolve against the DSP image on a device.
ctypes releases the GIL for the call: other Python threads run while skel code does.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from typing import NamedTuple

from .. import _ext, trace
from ._counters import ThreadContext

__all__ = ["NativeFault", "RuntimeMissing", "load", "ensure_guard", "guarding_user_copies", "call", "DspContext",
           "context", "LIBRARY", "HAP_LEVEL_RUNTIME", "UACCESS_ENV"]

#: Where the build puts the runtime (setup.py NATIVE_LIBS).
LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libqdarpc_dsprt.so")
HAP_LEVEL_RUNTIME = 1 << 5
#: ``QDARPC_UACCESS=checked``: the emulated kernel's user copies of ranges nobody vouched for go
#: through ``process_vm_readv/writev`` (a syscall each) instead of the guarded copy.
UACCESS_ENV = "QDARPC_UACCESS"
LOG = logging.getLogger("qdarpc.dsp")

# HAP_LEVEL_* (LOW .. CRITICAL, and the RPC_* levels 16..21) -> logging levels.
_PY_LEVEL = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.ERROR, 4: logging.CRITICAL,
             5: logging.CRITICAL}
# si_code names of the signals the guard catches (<asm-generic/siginfo.h>).
_SI_CODES = {
    signal.SIGSEGV: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"},
    signal.SIGBUS: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR"},
    signal.SIGFPE: {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF", 5: "FPE_FLTUND",
                    6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
    signal.SIGILL: {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC",
                    6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK"},
}
_SI_TKILL = -6
#: What ``qdarpc_dsp_call`` returns after a caught fault (QDARPC_DSP_CALL_FAULTED in dsprt.h).
FAULTED = 0x8000040D - (1 << 32)


class RuntimeMissing(OSError):
    """``libqdarpc_dsprt.so`` is not built or does not load: native skels cannot run."""


class NativeFault(Exception):
    """A native skel faulted in the invoking thread: the signal, its si_code and address."""

    def __init__(self, signo: int, addr: int, code: int, where: str):
        self.signo, self.addr, self.code, self.where = signo, addr, code, where
        try:
            self.signame = signal.Signals(signo).name
        except ValueError:
            self.signame = f"signal {signo}"
        how = _SI_CODES.get(signo, {}).get(code) or ("raised" if code == _SI_TKILL else f"si_code {code}")
        super().__init__(f"{self.signame} ({how}) at {addr:#x} in {where}")


class DspContext(NamedTuple):
    """Which PD and module a native skel runs for (what a FARF message is attributed to)."""

    domain: str
    channel: str
    client_id: int
    module: str


#: The context of the native skel call running in this thread, if any (``context.ctx``: a C
#: thread-local, which the DSP's native lane sets around each call).
context = ThreadContext()

_lock = threading.Lock()  # protects _lib, _error and _log_cb
_lib: ctypes.CDLL | None = None
_error: str = ""
_log_cb = None
_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)


def _on_farf(level: int, file: bytes | None, line: int, text: bytes | None) -> None:
    # Called from C (HAP_debug*), in the skel's thread, with the GIL taken by ctypes.
    runtime = bool(level & HAP_LEVEL_RUNTIME)
    base = level & ~HAP_LEVEL_RUNTIME
    msg = (text or b"").decode("utf-8", "replace")
    fname = (file or b"").decode("utf-8", "replace")
    ctx = context.ctx
    where = f"{ctx.domain} client {ctx.client_id} {ctx.module}: " if ctx is not None else ""
    LOG.log(_PY_LEVEL.get(base - 16 if 16 <= base <= 21 else base, logging.INFO), "%s%s:%d: %s", where, fname, line, msg,
            extra={"farf_level": base, "farf_runtime": runtime, "dsp_context": ctx})
    tr = trace.RECORDER
    if tr is not None:
        t = trace.now()
        if ctx is None:
            tr.farf("", "", -1, "", base, runtime, fname, line, msg, t)
        else:
            tr.farf(ctx.domain, ctx.channel, ctx.client_id, ctx.module, base, runtime, fname, line, msg, t)


def load() -> ctypes.CDLL:
    """The runtime, loaded once per process with RTLD_GLOBAL; :class:`RuntimeMissing` if it
    cannot be."""
    lib = _lib
    if lib is not None:
        return lib
    with _lock:
        return _lib or _load_locked()


def _load_locked() -> ctypes.CDLL:
    # (under _lock)
    global _lib, _error, _log_cb
    if _error:
        raise RuntimeMissing(_error)
    try:
        lib = ctypes.CDLL(LIBRARY, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    except OSError as exc:
        _error = (f"qdarpc's DSP runtime {os.path.basename(LIBRARY)} does not load ({exc}); rebuild "
                  "the package (`python setup.py build_ext --inplace` in a checkout)")
        raise RuntimeMissing(_error) from None
    lib.qdarpc_dsp_call.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32,
                                    ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.qdarpc_dsp_call.restype = ctypes.c_int
    lib.qdarpc_dsprt_last_fault.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_int)]
    lib.qdarpc_dsprt_last_fault.restype = ctypes.c_int
    lib.qdarpc_dsprt_call_fault.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_int)]
    lib.qdarpc_dsprt_call_fault.restype = ctypes.c_int
    lib.qdarpc_dsprt_ensure.argtypes = []
    lib.qdarpc_dsprt_ensure.restype = ctypes.c_int
    lib.qdarpc_guarded_copy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.qdarpc_guarded_copy.restype = ctypes.c_int
    lib.qdarpc_guard_armed.argtypes = []
    lib.qdarpc_guard_armed.restype = ctypes.c_int
    lib.qdarpc_dsprt_set_log.argtypes = [_LOG_FN]
    lib.qdarpc_dsprt_set_log.restype = None
    _log_cb = _LOG_FN(_on_farf)  # kept for the life of the process: C holds the pointer
    lib.qdarpc_dsprt_set_log(_log_cb)
    lib.qdarpc_dsprt_ensure()
    _lib = lib
    _guard_user_copies(lib)
    return lib


def _guard_user_copies(lib: ctypes.CDLL) -> None:
    # (see guarding_user_copies; the handlers the guarded copy needs were just installed)
    if os.environ.get(UACCESS_ENV, "") != "checked":
        _ext.load("_marshal").set_guarded_copy(_address(lib.qdarpc_guarded_copy), _address(lib.qdarpc_guard_armed))


def _address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


def guarding_user_copies() -> bool:
    """Whether the emulated kernel's user copies of ranges nobody vouched for (a C caller's
    pointers, a raw ioctl's addresses) go through ``qdarpc_guarded_copy``: a fault in the copy is
    -EFAULT, as the kernel's exception table makes it, with no syscall (``process_vm_readv``
    costs several times a whole emulated invoke). From the runtime's load on (the first native
    skel: the crash guard's handlers are installed then, and only then, so a process that runs
    no native skel keeps its signal dispositions untouched); not with ``QDARPC_UACCESS=checked``.
    Each emulated syscall's copies still take the syscalls while the guard could not catch their
    fault (``qdarpc_guard_armed``: a signal handler installed after the runtime's, or the
    thread blocking SIGSEGV or SIGBUS)."""
    return _ext.load("_marshal").guarded_copy()[0] != 0


def ensure_guard() -> int:
    """Put the crash guard's signal handlers back if something replaced them (Python's
    ``faulthandler.enable()`` does); the replacement still gets every fault outside skel code.
    Returns how many were (re-)installed. Run per native module opened, not per call."""
    return load().qdarpc_dsprt_ensure()


def call(fn: int, handle_style: bool, h64: int, sc: int, pra: int, module: str, method: int) -> int:
    """Run skel entry ``fn`` (an address) with ``sc`` and the ``remote_arg`` array at ``pra``
    under the crash guard: its return value, or :class:`NativeFault` if it faulted (in method
    ``method`` of ``module``). ctypes releases the GIL for the whole skel call."""
    lib = _lib or load()
    rv = lib.qdarpc_dsp_call(fn, 1 if handle_style else 0, h64, sc, pra, None)
    # A skel may return the faulted code itself: only then ask whether this call faulted.
    if rv == FAULTED:
        addr, code = ctypes.c_uint64(0), ctypes.c_int(0)
        signo = lib.qdarpc_dsprt_call_fault(ctypes.byref(addr), ctypes.byref(code))
        if signo:
            raise NativeFault(signo, addr.value, code.value, f"{module} method {method}")
    return rv
