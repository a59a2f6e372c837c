"""Exceptions for non-zero AEE codes.

Where the C library returns a non-zero AEE code, this package raises a :class:`FastRpcError`
subclass chosen by :data:`ERROR_CLASSES` (one table, code -> class). The exception keeps the
exact code the C library would have returned in ``.aee`` (DSP-generated codes keep their
``0x80000400`` offset), ``.errno`` when the code was converted from a driver errno, and
``.origin``: ``"dsp"`` (the DSP's retval), ``"driver"`` (a failed ioctl) or ``"host"`` (a check
in this library). A DSP-form code ``0x80000400 + x`` is raised as the class of ``x``.
"""
from __future__ import annotations

from qda_core._ext import load as _load

_abi = _load("_abi")

__all__ = [
    "FastRpcError", "BadParameterError", "NoMemoryError", "InvalidHandleError", "UnsupportedError",
    "AlreadyLoadedError", "UnableToLoadError", "ExpiredError", "BadStateError", "AlreadyError",
    "NoSuchModuleError", "NoSuchDeviceError", "NoSuchMapError", "BadPermissionsError",
    "NotInitializedError", "ConnectionResetFastRpcError", "ConnectionRefusedFastRpcError",
    "NoSessionError", "RpcError", "ProcessRestartError", "InterruptedFastRpcError",
    "VersionMismatchError", "ERROR_CLASSES", "error_class", "raise_for", "bare_code",
]


class FastRpcError(Exception):
    """A FastRPC call failed with the AEE code ``aee`` (the C library's return value)."""

    def __init__(self, aee: int, message: str = "", *, errno: int | None = None, origin: str = "host"):
        self.aee = aee
        self.errno = errno
        self.origin = origin
        name = _abi.aee_name(aee) or "unknown AEE code"
        text = f"{name} ({aee:#x}, from the {origin})"
        if errno:
            import os

            text += f", errno {errno} ({os.strerror(errno)})"
        if message:
            text = f"{message}: {text}"
        super().__init__(text)


class BadParameterError(FastRpcError, ValueError):
    """AEE_EBADPARM and relatives: an argument is invalid."""


class NoMemoryError(FastRpcError, MemoryError):
    """AEE_ENOMEMORY: out of memory (host or DSP)."""


class InvalidHandleError(FastRpcError, LookupError):
    """AEE_EINVHANDLE: not a live handle."""


class UnsupportedError(FastRpcError, NotImplementedError):
    """AEE_EUNSUPPORTED / AEE_EUNSUPPORTEDAPI: not supported (unknown request or method)."""


class AlreadyLoadedError(FastRpcError, RuntimeError):
    """AEE_EALREADYLOADED: a setting that must precede session creation came too late."""


class UnableToLoadError(FastRpcError, RuntimeError):
    """AEE_EUNABLETOLOAD: an object could not be loaded."""


class ExpiredError(FastRpcError, TimeoutError):
    """AEE_EEXPIRED: timed out."""


class BadStateError(FastRpcError, RuntimeError):
    """AEE_EBADSTATE: on the DSP usually the process crashed or is exiting."""


class AlreadyError(FastRpcError, RuntimeError):
    """AEE_EALREADY: already done (e.g. the fd is already mapped)."""


class NoSuchModuleError(FastRpcError, LookupError):
    """AEE_ENOSUCHMOD / AEE_ENOSUCHSYMBOL: no such module, symbol or DSP handle."""


class NoSuchDeviceError(FastRpcError, LookupError):
    """AEE_ENOSUCHDEVICE: no such device."""


class NoSuchMapError(FastRpcError, LookupError):
    """AEE_ENOSUCHMAP: no such mapping."""


class BadPermissionsError(FastRpcError):
    """AEE_EBADPERMS: permission denied. (Not an OSError: its constructor reinterprets args.)"""


class NotInitializedError(FastRpcError, RuntimeError):
    """AEE_ENOTINITIALIZED: needs an open session first."""


class ConnectionResetFastRpcError(FastRpcError, RuntimeError):
    """AEE_ECONNRESET (104, equal to AEE_ENORPCMEMORY): the DSP or its channel went away."""


class ConnectionRefusedFastRpcError(FastRpcError, RuntimeError):
    """AEE_ECONNREFUSED: the device node could not be opened or refused the process."""


class NoSessionError(FastRpcError, RuntimeError):
    """AEE_ENOSESSION: no free session."""


class RpcError(FastRpcError, RuntimeError):
    """AEE_ERPC: generic FastRPC transport failure."""


class ProcessRestartError(FastRpcError, RuntimeError):
    """AEE_ENOSUCH (39): the DSP process restarted."""


class InterruptedFastRpcError(FastRpcError, RuntimeError):
    """AEE_EINTERRUPTED (46): interrupted; retry."""


class VersionMismatchError(FastRpcError, RuntimeError):
    """AEE_ESTUBSKELVERMISMATCH: stub and skel IDL versions differ."""


#: The one table from bare AEE code to exception class; codes not listed raise FastRpcError.
ERROR_CLASSES: dict[int, type[FastRpcError]] = {
    _abi.AEE_EBADPARM: BadParameterError,
    _abi.AEE_EINVARGS: BadParameterError,
    _abi.AEE_EBADSIZE: BadParameterError,
    _abi.AEE_EBADDOMAIN: BadParameterError,
    _abi.AEE_ENOMEMORY: NoMemoryError,
    _abi.AEE_EINVHANDLE: InvalidHandleError,
    _abi.AEE_EUNSUPPORTED: UnsupportedError,
    _abi.AEE_EUNSUPPORTEDAPI: UnsupportedError,
    _abi.AEE_EALREADYLOADED: AlreadyLoadedError,
    _abi.AEE_EUNABLETOLOAD: UnableToLoadError,
    _abi.AEE_EEXPIRED: ExpiredError,
    _abi.AEE_EBADSTATE: BadStateError,
    _abi.AEE_EALREADY: AlreadyError,
    _abi.AEE_ENOSUCHMOD: NoSuchModuleError,
    _abi.AEE_ENOSUCHSYMBOL: NoSuchModuleError,
    _abi.AEE_ENOSUCHDEVICE: NoSuchDeviceError,
    _abi.AEE_ENOSUCHMAP: NoSuchMapError,
    _abi.AEE_EBADPERMS: BadPermissionsError,
    _abi.AEE_ENOTINITIALIZED: NotInitializedError,
    _abi.AEE_ECONNRESET: ConnectionResetFastRpcError,
    _abi.AEE_ECONNREFUSED: ConnectionRefusedFastRpcError,
    _abi.AEE_ENOSESSION: NoSessionError,
    _abi.AEE_ERPC: RpcError,
    _abi.AEE_ENOSUCH: ProcessRestartError,
    _abi.AEE_EINTERRUPTED: InterruptedFastRpcError,
    _abi.AEE_ESTUBSKELVERMISMATCH: VersionMismatchError,
}


def bare_code(code: int) -> int:
    """``x`` for a DSP-form code ``0x80000400 + x`` (int32 or unsigned), else the code itself."""
    if _abi.is_dsp_error(code):
        return (code & 0xFFFF_FFFF) - _abi.DSP_AEE_EOFFSET
    return code


def error_class(code: int) -> type[FastRpcError]:
    """The exception class raised for ``code`` (bare or DSP form)."""
    return ERROR_CLASSES.get(bare_code(code), FastRpcError)


def raise_for(code: int, message: str = "", *, errno: int | None = None, origin: str | None = None):
    """Raise the exception for a non-zero AEE ``code``. ``origin`` defaults to ``"dsp"`` for a
    DSP-form code, else ``"host"``."""
    code32 = code & 0xFFFF_FFFF if code >= -0x8000_0000 and _abi.is_dsp_error(code) else code
    if origin is None:
        origin = "dsp" if _abi.is_dsp_error(code) else "host"
    raise error_class(code)(code32, message, errno=errno, origin=origin)
