"""Typed invoke arguments of the emulated drivers, and the uapi descriptors they become.

Both drivers' typed ``invoke(handle, sc, args)`` take ``args`` in ``[inbufs, outbufs,
inhandles, outhandles]`` order: a plain buffer is copied, a :class:`BufRef` of the driver's kind
is passed by reference, a :class:`HandleArg` fills a handle slot. :func:`descriptors` turns them
into the 24-byte ``fastrpc_invoke_args`` array that the raw ioctl reads from user memory;
:func:`pinned` does the same for the length of a call, holding the buffers so that the
driver's copies of them (and of the descriptors) are plain ``memcpy``. The drivers' native
lanes (``accel/_invoke.pyx``, ``legacy/_invoke.pyx``) drive the same ``ArgPins`` through its C
methods; :func:`pinned` serves their reference (``_invoke_reference``).
"""
from __future__ import annotations

import contextlib
import errno

from . import marshal, wire
from ._ext import load as _load
from .errors import errno_error
from .uaccess import address

# The native builder with the C marshaller; the reference marshaller keeps the Python one.
_ArgPins = _load("_marshal").ArgPins if marshal.BACKEND == "c" else None


class BufRef:
    """A buffer passed by reference: ``buf`` lies inside a CPU mapping of the buffer object
    ``ident`` names (a GEM handle on QDA, a dma-buf fd on legacy). The DSP works on those pages."""

    __slots__ = ("ident", "buf")

    def __init__(self, ident: int, buf):
        self.ident = ident
        self.buf = buf


class HandleArg:
    """A handle argument: ``fd`` (a GEM handle on QDA, a dma-buf fd on legacy), ``offset`` and
    ``length``."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int = 0, length: int = 0):
        self.fd, self.offset, self.length = fd, offset, length


def descriptors(sc: int, args, ref_type: type[BufRef]) -> bytearray:
    """The descriptor array for ``args`` (checked against ``sc``); the caller keeps ``args``
    alive while the ioctl runs, since descriptors hold their addresses."""
    counts = wire.sc_counts(sc)
    n = sum(counts)
    if len(args) != n:
        raise errno_error(errno.EINVAL, f"scalars {sc:#010x} declare {n} arguments, got {len(args)}")
    nin, nbufs = counts[0], counts[0] + counts[1]
    descs = bytearray(24 * n)
    for i, a in enumerate(args):
        if i >= nbufs:
            if not isinstance(a, HandleArg):
                raise TypeError(f"argument {i} is a handle slot: pass a HandleArg")
            wire.INVOKE_ARG.pack_into(descs, 24 * i, a.offset, a.length, a.fd, 0)
            continue
        if isinstance(a, BufRef) and not isinstance(a, ref_type):
            raise TypeError(f"argument {i}: this driver takes {ref_type.__name__}, not {type(a).__name__}")
        ident, buf = (a.ident, a.buf) if isinstance(a, BufRef) else (-1, a)
        mv = memoryview(buf)
        if i >= nin and mv.readonly:
            raise TypeError(f"out-buffer {i - nin} must be writable")
        wire.INVOKE_ARG.pack_into(descs, 24 * i, address(buf), mv.nbytes, ident, 0)
    return descs


def pinned(sc: int, args, ref_type: type[BufRef]):
    """A context manager giving :func:`descriptors` of ``args`` for one call: the buffers are
    held (a bytearray cannot be resized meanwhile) and those the driver copies are pinned as
    known-valid on this thread, as are the descriptors, until the block ends. The typed invoke
    issues its ioctl inside the block; nothing else changes (same checks, errors and bytes)."""
    if _ArgPins is None or not (type(sc) is int and 0 <= sc <= 0xFFFFFFFF):
        return contextlib.nullcontext(descriptors(sc, args, ref_type))  # its errors, as before
    return _ArgPins(sc, args, ref_type, BufRef, HandleArg)
