"""Which mapping of this process contains a user address, and of which file (``find_vma``).

Invoke needs it to turn a by-reference user pointer into a device address: the pointer must
lie in a CPU mapping *of the buffer the argument names* (the same file), and its offset into
that buffer is ``page(ptr) - vma.start + vma.pgoff``. Mappings the emulator creates (GEM CPU
mappings, dma-buf and rpcmem mappings) are registered here with their file's identity and
found in O(log n); any other address falls back to ``/proc/self/maps``, which names the
device and inode of every file mapping.

The table itself lives in C (``qda_core._marshal``), where the user copies consult it too: a raw
address inside a registered mapping whose owner exports its pages (an mmap) is copied with
``memcpy`` while an export of the owner is held, instead of through ``process_vm_*``.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import threading
import weakref
from typing import NamedTuple

from .. import wire
from .._ext import load as _load
from ..errors import errno_error

_table = _load("_marshal")

__all__ = ["Vma", "register", "shrink_sealed", "find", "find_vma_start", "file_key", "ref_address"]


class Vma(NamedTuple):
    """One mapping: ``[start, start+size)`` of file ``key`` (``(st_dev, st_ino)``, None for
    anonymous memory) from byte ``pgoff`` of the file."""

    start: int
    size: int
    pgoff: int
    key: tuple[int, int] | None


_lock = threading.Lock()  # makes a token and its registration one step
os.register_at_fork(after_in_child=_lock._at_fork_reinit)  # see qda_core.debug
# A token per registration: the same address can be registered again (a new mapping at a
# reused address) before the old owner has been collected; the newest one wins.
_tokens = itertools.count(1)


def file_key(fd: int) -> tuple[int, int]:
    """The identity of the file behind ``fd``: what a dma-buf comparison is here."""
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def register(owner, start: int, size: int, key: tuple[int, int] | None = None, pgoff: int = 0,
             pinnable: bool = True) -> None:
    """Track ``[start, start+size)`` (a mapping of file ``key`` from byte ``pgoff``) until
    ``owner`` (the mapping object) is garbage-collected. If ``owner`` exports the mapping's
    pages (an mmap) and ``pinnable``, copies of raw addresses in it may use them while ``owner``
    lives; pass ``pinnable=False`` for a file that may shrink under the mapping (one not sealed
    ``F_SEAL_SHRINK``: a copy racing a truncation would raise SIGBUS)."""
    with _lock:
        token = next(_tokens)
        _table.vma_add(token, start, size, pgoff, key, owner if pinnable else None)
    weakref.finalize(owner, _table.vma_remove, token, start)


def shrink_sealed(fd: int) -> bool:
    """Whether file ``fd`` cannot shrink (sealed ``F_SEAL_SHRINK``: the emulator's own memfds,
    an imported dma-buf); False for any other file."""
    try:
        return bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK)
    except OSError:
        return False


def find(addr: int) -> Vma | None:
    """The mapping containing ``addr``, or None if ``addr`` is not mapped."""
    # The newest registration at the highest start <= addr is the live one.
    hit = _table.vma_find(addr) if 0 <= addr < 1 << 64 else None
    if hit is not None and hit[3] is not None:
        return Vma(*hit)
    return _from_proc_maps(addr)


def _from_proc_maps(addr: int) -> Vma | None:
    # Lines: "start-end perms offset major:minor inode [path]", all numbers in hex but inode.
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            lo, _, rest = line.partition(b"-")
            start = int(lo, 16)
            if start > addr:
                return None
            fields = rest.split(None, 5)
            end = int(fields[0], 16)
            if addr < end:
                major, minor = (int(x, 16) for x in fields[3].split(b":"))
                inode = int(fields[4])
                key = (os.makedev(major, minor), inode) if inode else None
                return Vma(start, end - start, int(fields[2], 16), key)
    return None


def find_vma_start(addr: int) -> int | None:
    """Start of the mapping containing ``addr``, or None if ``addr`` is not mapped."""
    vma = find(addr)
    return None if vma is None else vma.start


def ref_address(i: int, ptr: int, length: int, obj) -> int:
    """Device address of the first page of by-reference buffer ``i`` (``ptr``, ``length``)
    that names buffer object ``obj``: ``obj.dma_addr`` plus the page offset of ``ptr`` in its
    CPU mapping of ``obj``.

    The kernel takes the offset from whatever mapping holds ``ptr`` and checks nothing else, so
    a pointer into another buffer's mapping, or a length past the end, reaches pages the file
    was never given (even another context bank's, once the offset spills into the SID bits).
    Here the mapping must be one of ``obj``'s file and the pages spanned must lie inside
    ``obj``, else ``EFAULT``: the address returned never leaves the object's IOVA range.
    """
    m = find(ptr)
    if m is None or m.key != obj.backing.key:
        raise errno_error(errno.EFAULT, f"argument {i}: pointer {ptr:#x} is not in a CPU mapping of the "
                                        f"buffer the argument names")
    offset = (ptr & wire.PAGE_MASK) - m.start + m.pgoff
    span = ((ptr + length + wire.PAGE_SIZE - 1) & wire.PAGE_MASK) - (ptr & wire.PAGE_MASK)
    if offset + span > obj.size:
        raise errno_error(errno.EFAULT, f"argument {i}: {length:#x} bytes at {ptr:#x} run past the "
                                        f"{obj.size:#x}-byte buffer the argument names")
    return obj.dma_addr + offset
