"""copy_from_user / copy_to_user for the emulated kernel.

User pointers are real addresses in this process. Access goes through ``process_vm_readv`` /
``process_vm_writev`` on our own pid, so a bad pointer yields ``EFAULT`` instead of a crash —
the same contract the kernel gives user space.
"""
from __future__ import annotations

import ctypes
import errno
import os

import numpy as np

from .errors import errno_error

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
        if got <= 0:
            return -errno.EFAULT
        done += got
    return 0


def address(buf) -> int:
    """Address of a contiguous buffer-protocol object (bytes, bytearray, memoryview, numpy)."""
    return np.frombuffer(buf, dtype=np.uint8).ctypes.data if len(memoryview(buf)) else 0


def copy_from_user(dst, uaddr: int, what: str = "user buffer") -> None:
    """Fill writable ``dst`` from user address ``uaddr``; ``EFAULT`` if unreadable."""
    n = memoryview(dst).nbytes
    if n and (uaddr == 0 or _xfer(_libc.process_vm_readv, address(dst), uaddr, n)):
        raise errno_error(errno.EFAULT, f"cannot read {n} bytes of {what} at {uaddr:#x}")


def copy_to_user(uaddr: int, src, what: str = "user buffer") -> None:
    """Write ``src`` to user address ``uaddr``; ``EFAULT`` if unwritable."""
    n = memoryview(src).nbytes
    if n and (uaddr == 0 or _xfer(_libc.process_vm_writev, address(src), uaddr, n)):
        raise errno_error(errno.EFAULT, f"cannot write {n} bytes of {what} at {uaddr:#x}")
