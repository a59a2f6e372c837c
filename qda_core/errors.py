"""Error types of the emulated kernel side.

Driver entry points follow the kernel: the raw ``ioctl()`` form returns ``-errno``, the typed
methods raise :class:`OSError` built from that errno (so Python picks the PEP 3151 subclass:
``ENOENT`` -> ``FileNotFoundError``, ``EACCES`` -> ``PermissionError``, ...). Conditions that
"cannot happen" raise :class:`InternalError`, kept apart from user errors.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = ["errno_error", "check", "InternalError", "DeviceFault", "report_internal"]


def errno_error(err: int, detail: str = "") -> OSError:
    """Return the ``OSError`` for a positive or negative errno, with a message naming the problem."""
    err = abs(err)
    name = _errno.errorcode.get(err, str(err))
    msg = f"{os.strerror(err)} ({name})"
    if detail:
        msg = f"{msg}: {detail}"
    return OSError(err, msg)


def check(ret: int, detail: str = "") -> int:
    """Raise for a kernel-style negative return, pass non-negative values through."""
    if ret < 0:
        raise errno_error(ret, detail)
    return ret


def report_internal(what: str, exc: BaseException | None = None) -> None:
    """Say on stderr that a bug of ours happened in ``what`` (``qdarpc: internal error in
    ...``), with the traceback of ``exc`` (default: the exception being handled), where it may
    not propagate: across the C ABI, or out of a call whose answer stands."""
    import sys
    import traceback

    sys.stderr.write(f"qdarpc: internal error in {what}:\n")
    if exc is None:
        traceback.print_exc()
    else:
        traceback.print_exception(type(exc), exc, exc.__traceback__)


class ConfigError(ValueError):
    """The emulator's configuration is invalid: a SoC profile, a kernel selection, a fault spec
    or a cost table, from an argument or the environment (the message says which). A user's
    mistake to fix, never a bug in qdarpc."""


class InternalError(RuntimeError):
    """An emulator invariant was broken: a bug in qdarpc, never a caller's mistake."""


class DeviceFault(Exception):
    """A device address that no context bank maps (what an SMMU fault is on hardware)."""

    def __init__(self, addr: int, length: int, why: str = "unmapped"):
        super().__init__(f"SMMU fault at {addr:#x}+{length:#x}: {why}")
        self.addr = addr
        self.length = length
