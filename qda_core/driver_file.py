"""What the two emulated drivers' open files have in common: user-struct copies, the error
convention (raw ``ioctl()`` returns ``-errno``; typed methods raise ``OSError`` with the
handler's message), DSP-code handling, context management and the unclosed-file warning."""
from __future__ import annotations

import errno
import sys
import warnings

from . import faults
from . import dataplane
from ._engine import FileCore, FileLane, open_route
from .errors import errno_error
from .uaccess import copy_from_user, copy_to_user


def copy_in(kbuf: bytearray, arg, n: int, name: str) -> None:
    """``copy_from_user`` of an ioctl struct: ``arg`` is a buffer or an int user address."""
    if isinstance(arg, int):
        copy_from_user(memoryview(kbuf)[:n], arg, name)
        return
    if arg is None or memoryview(arg).nbytes < n:
        raise errno_error(errno.EFAULT, f"{name}: argument shorter than the {n} bytes the command encodes")
    kbuf[:n] = memoryview(arg).cast("B")[:n]


def copy_out(arg, kbuf: bytearray, n: int, name: str) -> None:
    """``copy_to_user`` of an ioctl struct."""
    if isinstance(arg, int):
        copy_to_user(arg, memoryview(kbuf)[:n], name)
        return
    mv = memoryview(arg).cast("B") if arg is not None else None
    if mv is None or mv.readonly or mv.nbytes < n:
        raise errno_error(errno.EFAULT, f"{name}: argument not writable for {n} bytes")
    mv[:n] = kbuf[:n]


class DriverFile(FileCore):
    """Base of ``QdaFile`` and ``LegacyFile``. Subclasses call ``super().__init__()`` and
    implement ``ioctl()`` (each call bracketed by :meth:`_enter`/:meth:`_leave`),
    ``_release()`` and ``_describe()``.

    Lifetime follows the kernel's: ``close()`` drops the descriptor, but every ioctl in flight
    holds its own reference to the file (``fdget``), so the release runs when the last of them
    returns, never under one. Ioctls that start after ``close()`` get ``EBADF``.
    """

    #: The last handler error, without its traceback (so it never pins a caller's buffers).
    last_error: OSError | None = None

    def __init__(self, invoke_request: int | None = None) -> None:
        #: The file's lifetime and its INVOKE lane's cache (qda_core._engine.FileLane): every
        #: ioctl takes and drops its reference there, without a lock.
        self._lane = FileLane(dataplane.native(), invoke_request)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (ioctls in flight may still be finishing)."""
        lane = getattr(self, "_lane", None)  # None: __init__ did not get that far
        return lane is None or lane.closed

    def _enter(self) -> bool:
        """Take an ioctl's reference; False once the file is closed (the caller answers EBADF)."""
        return self._lane.enter()

    def _leave(self) -> None:
        """Drop an ioctl's reference; the last one after ``close()`` runs the release."""
        if self._lane.leave():
            self._release_now()

    def close(self) -> None:
        """Close the file; the driver's release runs now, or when the last ioctl in flight returns."""
        if self._lane.close():
            self._release_now()

    def _release_now(self) -> None:
        self._lane.close_routes()  # (no ioctl or route call in flight now, none can start)
        with faults.quiet():  # teardown never consumes a fault rule's events
            self._release()

    #: The errno of a call the DSP's restart ended (the legacy driver answers EPIPE).
    _ROUTE_LOST = errno.ENODEV

    def _open_route(self, handle: int):
        """A route (docs/dataplane.md "Routes") for user calls without arguments to DSP handle
        ``handle``, served without the GIL, or None where only the lanes serve them. The
        drivers' ``route`` calls it for their own class only: a subclass may have its own
        ``ioctl()``, which a route would skip."""
        lane = self._lane
        return open_route(self, lane, handle, lane.pd, self._ROUTE_LOST)

    def _failed(self, exc: OSError) -> int:
        """Record a handler's error and return the ``-errno`` the raw ioctl gives back."""
        self.last_error = OSError(exc.errno, exc.strerror)
        return -(exc.errno or errno.EINVAL)

    def _error(self, ret: int) -> OSError:
        """A fresh exception for a negative return, with the handler's message when it has one."""
        err = self.last_error
        if err is not None and err.errno == -ret:
            return OSError(err.errno, err.strerror)
        return errno_error(ret)

    def _check_dsp(self, ret: int, raise_dsp: bool = False) -> int:
        """Negative errno -> OSError; a DSP code is returned as unsigned (or raised if asked)."""
        if -4096 < ret < 0:
            raise self._error(ret)
        code = ret & 0xFFFF_FFFF
        if code and raise_dsp:
            raise OSError(errno.EIO, f"DSP returned {code:#x}")
        return code

    def _describe(self) -> str:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "closed", True) and not sys.is_finalizing():
            warnings.warn(f"unclosed {self._describe()}", ResourceWarning, stacklevel=2)
            self.close()
