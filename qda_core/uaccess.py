"""copy_from_user / copy_to_user for the emulated kernel.

User pointers are real addresses in this process. A bad pointer yields ``EFAULT`` instead of a
crash — the same contract the kernel gives user space. With the C marshaller (the default) the
copies run in C (csrc/uaccess.c through ``qda_core._marshal``): ``memcpy`` for memory known to be
valid (buffers a typed invoke pinned, the emulator's registered mappings), ``process_vm_readv`` /
``process_vm_writev`` on our own pid for anything else. With ``QDARPC_MARSHAL=py`` they are the
pure-Python reference: always ``process_vm_*`` through ctypes.
"""
from __future__ import annotations

import ctypes
import errno
import os

from . import marshal
from ._ext import load as _load
from .errors import errno_error

_marshal_ext = _load("_marshal")
#: The native copies, or None for the reference (QDARPC_MARSHAL=py).
_native = _marshal_ext if marshal.BACKEND == "c" else None
_M64 = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


for _fn in (_libc.process_vm_readv, _libc.process_vm_writev):
    _fn.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong,
                    ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]
    _fn.restype = ctypes.c_ssize_t


def _xfer(fn, local: int, remote: int, n: int) -> int:
    pid = os.getpid()  # after fork() the child copies through its own address space
    done = 0
    while done < n:
        lv = _Iovec(local + done, n - done)
        rv = _Iovec(remote + done, n - done)
        got = fn(pid, ctypes.byref(lv), 1, ctypes.byref(rv), 1, 0)
        if got < 0 and ctypes.get_errno() == errno.EINTR:
            continue
        if got <= 0:
            return -errno.EFAULT
        done += got
    return 0


def address(buf) -> int:
    """Address of a contiguous buffer-protocol object (bytes, bytearray, memoryview, numpy);
    0 if it is empty."""
    return _marshal_ext.address(buf)


def _user(uaddr: int) -> int:
    """``uaddr`` for the native copies: an int outside 64 bits faults like NULL (as it did
    through ctypes)."""
    return uaddr if 0 <= uaddr <= _M64 else 0


def copy_from_user(dst, uaddr: int, what: str = "user buffer") -> None:
    """Fill writable ``dst`` from user address ``uaddr``; ``EFAULT`` if unreadable."""
    if _native is not None:
        if _native.copy_from_user(dst, _user(uaddr)):
            raise errno_error(errno.EFAULT, f"cannot read {memoryview(dst).nbytes} bytes of {what} at {uaddr:#x}")
        return
    n = memoryview(dst).nbytes
    if n and (uaddr == 0 or _xfer(_libc.process_vm_readv, address(dst), uaddr, n)):
        raise errno_error(errno.EFAULT, f"cannot read {n} bytes of {what} at {uaddr:#x}")


def copy_to_user(uaddr: int, src, what: str = "user buffer") -> None:
    """Write ``src`` to user address ``uaddr``; ``EFAULT`` if unwritable."""
    if _native is not None:
        if _native.copy_to_user(_user(uaddr), src):
            raise errno_error(errno.EFAULT, f"cannot write {memoryview(src).nbytes} bytes of {what} at {uaddr:#x}")
        return
    n = memoryview(src).nbytes
    if n and (uaddr == 0 or _xfer(_libc.process_vm_writev, address(src), uaddr, n)):
        raise errno_error(errno.EFAULT, f"cannot write {n} bytes of {what} at {uaddr:#x}")
