"""Pure-Python reference of the invoke marshalling (the oracle for ``qda_core._marshal``).

Follows the kernel's ``drivers/misc/fastrpc.c`` (``fastrpc_get_buff_overlaps``,
``fastrpc_get_payload_size``, ``fastrpc_get_args``, ``fastrpc_put_args``) step by step, with
the same validation, errno and error text as ``csrc/marshal.c`` / ``csrc/decode.c``. Slow but
obvious; property tests require byte-identical output from both.

Inputs: ``args`` is N 24-byte ``struct fastrpc_invoke_args`` records, ``refs`` N 16-byte
``{u64 addr; u64 size}`` records from the driver (buffer: size != 0 = by reference, 0 =
inline; handle: copied to ``pages[i]``). Any contiguous buffer-protocol object works.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

from .errors import errno_error
from .wire import (
    FASTRPC_ALIGN,
    FASTRPC_MAX_FDLIST,
    INVOKE_ARG,
    PAGE_MASK,
    PAGE_SIZE,
    sc_counts,
)
from .wire import metadata_size as _wire_metadata_size

__all__ = ["payload_size", "pack", "unpack", "decode", "decode_views", "metadata_size", "BACKEND"]

BACKEND = "py"
_M64 = (1 << 64) - 1
_REF = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_II = struct.Struct("<II")
_HANDLE = struct.Struct("<iII")


def _fail(err: int, arg: int, why: str) -> OSError:
    return errno_error(err, f"arg {arg}: {why}" if arg >= 0 else why)


def _bytes_view(obj, name: str, writable: bool = False) -> memoryview:
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"{name} must support the buffer protocol, not {type(obj).__name__}") from None
    if not mv.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous buffer")
    if writable and mv.readonly:
        raise TypeError(f"{name} must be a writable buffer")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


# --- user memory: process_vm_readv/writev on ourselves, so bad pointers give EFAULT ---------

class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = _libc.process_vm_readv
_writev = _libc.process_vm_writev
for _fn in (_readv, _writev):
    _fn.restype = ctypes.c_ssize_t
    _fn.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                    ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]


def _pvm(fn, local_addr: int, remote: int, n: int) -> bool:
    pid = os.getpid()
    while n:
        loc = _IoVec(local_addr, n)
        rem = _IoVec(remote, n)
        got = fn(pid, ctypes.byref(loc), 1, ctypes.byref(rem), 1, 0)
        if got < 0 and ctypes.get_errno() == errno.EINTR:
            continue
        if got <= 0:
            return False
        local_addr += got
        remote += got
        n -= got
    return True


def copy_from_user(uaddr: int, n: int) -> bytes | None:
    """Read ``n`` bytes at raw address ``uaddr`` of this process; ``None`` on a fault."""
    if n == 0:
        return b""
    if uaddr + n - 1 > _M64:
        return None
    buf = ctypes.create_string_buffer(n)
    return buf.raw if _pvm(_readv, ctypes.addressof(buf), uaddr, n) else None


def copy_to_user(uaddr: int, data: bytes) -> bool:
    """Write ``data`` at raw address ``uaddr`` of this process; ``False`` on a fault."""
    n = len(data)
    if n == 0:
        return True
    if uaddr + n - 1 > _M64:
        return False
    buf = ctypes.create_string_buffer(bytes(data), n)
    return _pvm(_writev, ctypes.addressof(buf), uaddr, n)


# --- planning -------------------------------------------------------------------------------

def _word(v: int, bits: int, name: str) -> int:
    """Range-check an integer argument like the typed C signature does (OverflowError)."""
    v = int(v)
    if not 0 <= v < (1 << bits):
        raise OverflowError(f"{name} {v:#x} is out of range for u{bits}")
    return v


def metadata_size(n: int) -> int:
    """Bytes of payload metadata for ``n`` arguments: 40n + 384."""
    return _wire_metadata_size(_word(n, 32, "n"))


def _check_lens(n: int, args: memoryview, refs: memoryview) -> None:
    if len(args) // INVOKE_ARG.size < n:
        raise _fail(errno.EINVAL, -1, "args holds fewer than N descriptors")
    if len(refs) // _REF.size < n:
        raise _fail(errno.EINVAL, -1, "refs holds fewer than N records")


def _align(v: int) -> int:
    return (v + FASTRPC_ALIGN - 1) & ~(FASTRPC_ALIGN - 1)


def _plan(sc: int, args: memoryview, refs: memoryview):
    """Validate and return (descs, refs, olaps, pkt_size); olap = [start, end, mstart, mend, offset, i]."""
    nin, nout, ninh, nouth = sc_counts(_word(sc, 32, "sc"))
    n = nin + nout + ninh + nouth
    nbufs = nin + nout
    _check_lens(n, args, refs)
    descs = [INVOKE_ARG.unpack_from(args, i * INVOKE_ARG.size) for i in range(n)]
    rrecs = [_REF.unpack_from(refs, i * _REF.size) for i in range(n)]

    olaps = []
    for i in range(nbufs):
        ptr, length = descs[i][0], descs[i][1]
        if ptr + length > _M64:
            raise _fail(errno.EFAULT, i, "buffer ptr + length overflows")
        if rrecs[i][1] == 0 and length and not ptr:
            raise _fail(errno.EFAULT, i, "inline buffer has a NULL ptr")
        olaps.append([ptr, ptr + length, 0, 0, 0, i])
    # start asc, end desc, then index asc (the kernel's heapsort leaves exact ties arbitrary)
    olaps.sort(key=lambda o: (o[0], -o[1], o[5]))

    max_end = 0
    for o in olaps:
        start, end = o[0], o[1]
        if start < max_end:
            o[4] = max_end - start
            if end > max_end:
                o[2], o[3] = max_end, end
                max_end = end
            else:
                o[2] = o[3] = 0
        else:
            o[2], o[3], o[4] = start, end, 0
            max_end = end

    size = _align(metadata_size(n))
    for o in olaps:
        if rrecs[o[5]][1] != 0:
            continue
        if o[4] == 0:
            size = _align(size)
            if size > _M64:
                raise _fail(errno.ENOMEM, o[5], "payload size overflows")
        size += o[3] - o[2]
        if size > _M64:
            raise _fail(errno.ENOMEM, o[5], "payload size overflows")
    return descs, rrecs, olaps, size


def payload_size(sc: int, args, refs) -> int:
    """Validate the descriptors and return the payload size the kernel would allocate."""
    return _plan(sc, _bytes_view(args, "args"), _bytes_view(refs, "refs"))[3]


def _page_span(addr: int, length: int) -> int:
    pg_start = (addr & PAGE_MASK) >> 12
    pg_end = (((addr + length - 1) & _M64) & PAGE_MASK) >> 12
    return ((pg_end - pg_start + 1) * PAGE_SIZE) & _M64


def pack(sc: int, args, refs, payload, payload_va: int, payload_dev: int) -> int:
    """Write the metadata and copy inline in-buffers into ``payload``; return the packet size.

    The first ``pkt_size`` bytes of ``payload`` are all written: inline out-buffers and
    alignment gaps are zeroed, so a reused buffer needs no clearing.
    """
    av, rv = _bytes_view(args, "args"), _bytes_view(refs, "refs")
    pv_ = _bytes_view(payload, "payload", writable=True)
    payload_va = _word(payload_va, 64, "payload_va")
    payload_dev = _word(payload_dev, 64, "payload_dev")
    descs, rrecs, olaps, pkt = _plan(sc, av, rv)
    if len(pv_) < pkt:
        raise _fail(errno.EINVAL, -1, "payload is smaller than the packet size")
    nin, nout, _, _ = sc_counts(sc)
    n = len(descs)
    nbufs = nin + nout
    metalen = metadata_size(n)
    rpra, lst, pages = 0, 16 * n, 24 * n
    pv_[:pkt] = bytes(pkt)  # the whole packet starts zeroed, metadata included
    pos = metalen
    copies = []

    for start, end, mstart, mend, offset, i in olaps:
        ptr, length = descs[i][0], descs[i][1]
        _REF.pack_into(pv_, rpra + 16 * i, 0, length)
        _II.pack_into(pv_, lst + 8 * i, 1 if length else 0, i)
        if not length:
            continue
        if rrecs[i][1] != 0:
            _REF.pack_into(pv_, rpra + 16 * i, ptr, length)
            _REF.pack_into(pv_, pages + 16 * i, rrecs[i][0], _page_span(ptr, length))
            continue
        if offset == 0:
            pos = _align(pos)
        at = pos
        pos += mend - mstart
        _REF.pack_into(pv_, rpra + 16 * i, (payload_va + at - offset) & _M64, length)
        _REF.pack_into(pv_, pages + 16 * i, ((payload_dev + at - offset) & _M64) & PAGE_MASK,
                       _page_span((payload_va + at) & _M64, length))
        if i >= nin:
            continue
        if offset > at - metalen:
            # only when a by-ref buffer overlaps this one: the kernel would overwrite its
            # metadata or memory before its buffer
            raise _fail(errno.EFAULT, i, "inline copy would land before the data area")
        dst = at - offset
        if length > pkt - dst:
            raise _fail(errno.EFAULT, i, "inline copy would run past the payload")
        copies.append((i, dst, ptr, length))
    # copies touch only the data area, so doing them after the metadata changes nothing
    for i, dst, ptr, length in copies:
        data = copy_from_user(ptr, length)
        if data is None:
            raise _fail(errno.EFAULT, i, "cannot read the in-buffer")
        pv_[dst:dst + length] = data

    for k in range(nbufs, n):
        ptr, length, fd, _attr = descs[k]
        _II.pack_into(pv_, lst + 8 * k, 1 if length else 0, k)
        _REF.pack_into(pv_, pages + 16 * k, *rrecs[k])
        _HANDLE.pack_into(pv_, rpra + 16 * k, fd, ptr & 0xFFFFFFFF, length & 0xFFFFFFFF)
    return pkt


def unpack(sc: int, args, refs, payload, payload_va: int) -> tuple[int, ...]:
    """Copy inline out-buffers back to user memory; return the fdlist entries before the first 0."""
    av, rv = _bytes_view(args, "args"), _bytes_view(refs, "refs")
    pv_ = _bytes_view(payload, "payload")
    payload_va = _word(payload_va, 64, "payload_va")
    nin, nout, ninh, nouth = sc_counts(_word(sc, 32, "sc"))
    n = nin + nout + ninh + nouth
    _check_lens(n, av, rv)
    if len(pv_) < metadata_size(n):
        raise _fail(errno.EINVAL, -1, "payload is shorter than its metadata")
    copies = []
    for i in range(nin, nin + nout):
        if _REF.unpack_from(rv, 16 * i)[1] != 0:
            continue
        ptr, cap, _fd, _attr = INVOKE_ARG.unpack_from(av, 24 * i)
        pv, length = _REF.unpack_from(pv_, 16 * i)
        if not length:
            continue
        if length > cap:
            raise _fail(errno.EFAULT, i, "DSP returned a length beyond the out-buffer")
        off = (pv - payload_va) & _M64
        if off > len(pv_) or length > len(pv_) - off:
            raise _fail(errno.EFAULT, i, "DSP returned an out-buffer outside the payload")
        copies.append((i, ptr, off, length))
    # every reply is validated before anything is written back
    for i, ptr, off, length in copies:
        if not copy_to_user(ptr, pv_[off:off + length]):
            raise _fail(errno.EFAULT, i, "cannot write the out-buffer")
    fds = []
    base = 40 * n
    for k in range(FASTRPC_MAX_FDLIST):
        fd = _U64.unpack_from(pv_, base + 8 * k)[0]
        if not fd:
            break
        fds.append(fd)
    return tuple(fds)


def decode(sc: int, payload):
    """The DSP's view: ([(dev_addr, len)] per buffer, [(fd, offset, len, map_addr, map_size)] per handle)."""
    pv_ = _bytes_view(payload, "payload")
    nin, nout, ninh, nouth = sc_counts(_word(sc, 32, "sc"))
    n = nin + nout + ninh + nouth
    nbufs = nin + nout
    if len(pv_) < metadata_size(n):
        raise _fail(errno.EINVAL, -1, "payload is shorter than its metadata")
    bufs: list[tuple[int, int]] = []
    handles: list[tuple[int, int, int, int, int]] = []
    for i in range(n):
        num, pgidx = _II.unpack_from(pv_, 16 * n + 8 * i)
        if num > 1:
            raise _fail(errno.EINVAL, i, "page list has more than one entry")
        if pgidx >= n:
            raise _fail(errno.EINVAL, i, "page index out of range")
        addr, size = _REF.unpack_from(pv_, 24 * n + 16 * pgidx)
        if i < nbufs:
            if num:
                pv, length = _REF.unpack_from(pv_, 16 * i)
                bufs.append(((addr + (pv & (PAGE_SIZE - 1))) & _M64, length))
            else:
                bufs.append((0, 0))
        else:
            fd, offset, length = _HANDLE.unpack_from(pv_, 16 * i)
            handles.append((fd, offset, length, addr, size))
    return bufs, handles


def decode_views(sc: int, payload, base: int):
    """:func:`decode`, and the buffers that lie wholly inside ``payload`` (which sits at device
    address ``base``) viewed in it: ``(bufs, handles, views, copied, nbytes_in, nbytes_out)``.
    ``views[i]``: a slice of ``payload`` (in-buffers read-only), an empty view for a 0-length
    buffer, None for one elsewhere in device memory (the caller views it through the SMMU).
    ``copied``: bytes of the buffers that start inside the payload (the cost model's copied
    bytes); ``nbytes_in``/``nbytes_out``: bytes of all in-/out-buffers (sums mod 2^64, as C
    keeps them: only a call whose buffers are all reachable uses them)."""
    bufs, handles = decode(sc, payload)
    pv_ = _bytes_view(payload, "payload")
    size = len(pv_)
    nin = (sc >> 16) & 0xFF
    views: list[memoryview | None] = []
    copied = nbytes_in = nbytes_out = 0
    for i, (addr, length) in enumerate(bufs):
        out = i >= nin
        if out:
            nbytes_out = (nbytes_out + length) & _M64
        else:
            nbytes_in = (nbytes_in + length) & _M64
        off = addr - base
        if length and 0 <= off < size:
            copied = (copied + length) & _M64
        if length == 0:
            views.append(memoryview(bytearray()) if out else memoryview(b""))
        elif 0 <= off and off + length <= size:
            mv = pv_[off:off + length]
            views.append(mv if out else mv.toreadonly())
        else:
            views.append(None)
    return bufs, handles, views, copied, nbytes_in, nbytes_out
