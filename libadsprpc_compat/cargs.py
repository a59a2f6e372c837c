"""C arguments at the API boundary: int ranges of C types, pointers, user strings, control structs.

A C function cannot receive a Python int outside its parameter's type, a NULL struct or an
unreadable string without crashing or truncating. Here each of these fails with the AEE code the
C library would return (``AEE_EBADPARM``, with errno ``EFAULT`` for a bad pointer) before any
driver call, instead of an ``OverflowError``/``struct.error`` deep inside one.
"""
from __future__ import annotations

import ctypes
import operator

from qda_core._ext import load as _load
from qda_core.mem import backing as _backing
from qda_core.uaccess import address as _address
from qda_core.uaccess import copy_from_user, copy_to_user

from .errors import raise_for

A = _load("_abi")

#: ``(min, max)`` of the C parameter types the API takes.
C_INT = (-(1 << 31), (1 << 31) - 1)
C_UINT32 = (0, (1 << 32) - 1)
C_INT64 = (-(1 << 63), (1 << 63) - 1)
C_UINT64 = (0, (1 << 64) - 1)  # size_t, uint64_t, pointers
C_BITS32 = (-(1 << 31), (1 << 32) - 1)  # a 32-bit flag word given as int or uint32_t


def fail(code: int, message: str = "", *, errno: int | None = None, origin: str | None = None):
    """Raise the :class:`~libadsprpc_compat.errors.FastRpcError` subclass of AEE ``code``."""
    raise_for(code, message, errno=errno, origin=origin)


def sc_text(sc) -> str:
    """A scalars word as an error message shows it: hex for an int, ``repr`` for anything else."""
    return f"{sc:#x}" if isinstance(sc, int) else repr(sc)


def c_arg(value, ctype: tuple[int, int], what: str) -> int:
    """``value`` as an int of the C type ``ctype`` (one of the ``C_*`` ranges), else AEE_EBADPARM."""
    try:
        v = operator.index(value)
    except TypeError:
        fail(A.AEE_EBADPARM, f"{what} must be an int, not {type(value).__name__}")
    if not ctype[0] <= v <= ctype[1]:
        fail(A.AEE_EBADPARM, f"{what} {v:#x} does not fit its C type")
    return v


def addr(buf) -> int:
    """A C pointer argument: None -> 0, int -> itself (AEE_EBADPARM unless 0..2^64-1), buffer
    -> its address."""
    if buf is None:
        return 0
    if isinstance(buf, int):
        return c_arg(buf, C_UINT64, "pointer")
    a = getattr(buf, "address", None)  # RpcMem and other objects that know their C address
    return a if isinstance(a, int) else _address(buf)


def cstr(ptr: int, n: int, what: str) -> str:
    """The C string at user pointer ``ptr`` (at most ``n`` bytes, up to its NUL). Read with the
    checked copy, one page at a time so a string ending just before an unmapped page reads
    fine; an unreadable pointer is AEE_EBADPARM with errno EFAULT, never a crash."""
    if not ptr or n <= 0:
        fail(A.AEE_EBADPARM, f"{what}: NULL or empty string")
    out = bytearray()
    while len(out) < n:
        at = ptr + len(out)
        chunk = bytearray(min(n - len(out), _backing.HOST_PAGE_SIZE - at % _backing.HOST_PAGE_SIZE))
        try:
            copy_from_user(chunk, at, what)
        except OSError as exc:
            fail(A.AEE_EBADPARM, f"{what}: {exc.strerror}", errno=exc.errno)
        nul = chunk.find(0)
        if nul >= 0:
            out += chunk[:nul]
            break
        out += chunk
    return out.decode(errors="replace")


def put_cstr(ptr: int, data: bytes, what: str) -> None:
    """Write ``data`` to user pointer ``ptr`` with the checked copy (AEE_EBADPARM, EFAULT)."""
    try:
        copy_to_user(ptr, data, what)
    except OSError as exc:
        fail(A.AEE_EBADPARM, f"{what}: {exc.strerror}", errno=exc.errno)


def struct_arg(st, data, datalen, exact: bool):
    """``data`` (a ctypes struct or bytes-like) as ``(byte view, ctypes copy of st)``; the copy is
    what a control handler reads and changes, :func:`write_back` returns its changes."""
    if data is None:
        fail(A.AEE_EBADPARM, f"{st.__name__}: data is NULL")
    try:
        mv = memoryview(data).cast("B")
    except TypeError:
        fail(A.AEE_EBADPARM, f"{st.__name__}: data must be a ctypes struct or bytes-like")
    n = mv.nbytes if datalen is None else datalen
    size = ctypes.sizeof(st)
    if (exact and n != size) or n < size or n > mv.nbytes:
        fail(A.AEE_EBADPARM, f"{st.__name__}: datalen {n}, expected {size}")
    return mv, st.from_buffer_copy(mv[:size].tobytes())


def write_back(mv: memoryview, obj) -> None:
    """Copy ``obj`` into the caller's ``mv`` if a handler changed it; a read-only ``mv`` is
    AEE_EBADPARM only then (a request without outputs accepts read-only data)."""
    raw = bytes(obj)
    if mv[:len(raw)].tobytes() != raw:
        if mv.readonly:
            fail(A.AEE_EBADPARM, f"{type(obj).__name__}: data is read-only but the request has outputs")
        mv[:len(raw)] = raw
