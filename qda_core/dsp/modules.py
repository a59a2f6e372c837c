"""Open module instances: the object behind one DSP handle, Python or native.

Both kinds offer ``open(uri)``, ``invoke(call)`` and ``close()`` returning AEE codes; an
exception out of any of them means the skel crashed (the caller turns it into a PD crash): a
Python exception, or for a native skel a :class:`~.dsprt.NativeFault` (a signal the runtime
caught).
"""
from __future__ import annotations

import ctypes
import struct

import numpy as np

from . import aee, dsprt
from .loader import ModuleUri
from .skel import ESCAPE_METHOD, Call, Skeleton

__all__ = ["PythonModule", "NativeModule", "RemoteArg"]


class PythonModule:
    """One open of a Python :class:`Skeleton`: a fresh instance per handle."""

    kind = "python"

    def __init__(self, cls: type[Skeleton], uri: ModuleUri):
        self.cls = cls
        self.uri = uri
        self.skel = cls()
        self._reserved = (0, 1) if uri.handle_style else ()  # the framework's open/close
        #: method id -> (function, expected sc or None, cost_ns): what a call needs of its
        #: MethodSpec, for the native lane (dsp/_lane.pyx); the framework's ids left out.
        #: Fixed once made: the lane keeps the last entry it read.
        self.dispatch = {mid: (spec.fn, spec.sc, spec.cost_ns) for mid, spec in cls._methods.items()
                         if mid not in self._reserved}

    def open(self) -> int:
        return _checked(self.skel.open(self.uri), "open")

    def close(self) -> int:
        return _checked(self.skel.close(), "close")

    def invoke(self, call: Call) -> int:
        mid = call.method
        if mid == ESCAPE_METHOD:
            if not call.inbufs or len(call.inbufs[0]) < 4:
                return aee.ERR_BAD_PARM  # qualcomm/fastrpc apps_std_skel: escape needs a 4-byte in-buffer 0
            mid = struct.unpack_from("<I", call.inbufs[0])[0]
            call.method = mid
        spec = self.cls._methods.get(mid)
        # Handle-style modules reserve 0/1 for the framework's open/close.
        if spec is None or mid in self._reserved:
            return aee.ERR_UNKNOWN_METHOD
        if not spec.counts_match(call.sc):
            return aee.ERR_BAD_PARM
        if spec.cost_ns:
            call.extra_ns += spec.cost_ns
        rv = spec.fn(self.skel, call)
        if type(rv) is int and -0x8000_0000 <= rv <= 0x7FFF_FFFF:
            return rv  # already the signed retval (the usual 0)
        return _checked(rv, spec.fn.__name__)


def _checked(rv, what: str) -> int:
    if isinstance(rv, bool) or not isinstance(rv, int):
        raise TypeError(f"skel {what} returned {rv!r}, not an int AEE code")
    return aee.to_int32(rv)


class _RemoteBuf(ctypes.Structure):
    _fields_ = [("pv", ctypes.c_void_p), ("nLen", ctypes.c_size_t)]


class _RemoteDma(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int32), ("offset", ctypes.c_uint32)]


class RemoteArg(ctypes.Union):
    """``remote_arg`` of the host ABI (csrc/include/qdarpc/remote_abi.h), 16 B on LP64."""

    _fields_ = [("buf", _RemoteBuf), ("h", ctypes.c_uint32), ("h64", ctypes.c_uint64),
                ("dma", _RemoteDma)]


_SC_OPEN = 0x00020001   # REMOTE_SCALARS_MAKEX(0, 0, 2, 0, 0, 1), docs/spec/legacy_fastrpc_api.md §2.4
_SC_CLOSE = 0x01000010  # REMOTE_SCALARS_MAKEX(0, 1, 0, 0, 1, 0)


class NativeModule:
    """One open of a host-compiled C skel, called through the DSP runtime (:mod:`.dsprt`).

    ``_modver`` modules use ``int sym(remote_handle64 h, uint32_t sc, remote_arg *pra)`` and get
    the framework's open (sc 0x00020001: ``{int32 len}``, the URI, out ``h64``) and close
    (sc 0x01000010, ``pra[0].h64``); others use ``int sym(uint32_t sc, remote_arg *pra)``.
    Buffers point straight at device memory (in-buffers must not be written, as on a DSP).
    ``ctx`` names the PD the instance belongs to (FARF messages are attributed to it).

    Every call runs under the runtime's crash guard: a skel that faults raises
    :class:`~.dsprt.NativeFault` (the DSP crashes the PD) instead of killing the host process.
    It still runs in the host process, with the host's memory: see :mod:`.dsprt` for what is
    and is not contained.
    """

    kind = "native"

    def __init__(self, fnptr, uri: ModuleUri, ctx: dsprt.DspContext | None = None):
        self.uri = uri
        self.ctx = ctx
        self._fn = ctypes.cast(fnptr, ctypes.c_void_p).value
        self._hs = uri.handle_style
        self._where = uri.file.rsplit("/", 1)[-1]
        self.h64 = 0
        dsprt.ensure_guard()  # once per module opened: faulthandler.enable() may have replaced it

    def _call(self, h64: int, sc: int, pra: int, method: int) -> int:
        tls = dsprt.context
        prev, tls.ctx = tls.ctx, self.ctx
        try:
            return dsprt.call(self._fn, self._hs, h64, sc, pra, self._where, method)
        finally:
            tls.ctx = prev

    def open(self) -> int:
        if not self._hs:
            return 0
        name = self.uri.raw.encode() + b"\0"
        ln = ctypes.c_int32(len(name))
        namebuf = ctypes.create_string_buffer(name, len(name))
        pra = (RemoteArg * 3)()
        pra[0].buf.pv = ctypes.addressof(ln)
        pra[0].buf.nLen = 4
        pra[1].buf.pv = ctypes.addressof(namebuf)
        pra[1].buf.nLen = len(name)
        rv = self._call(0, _SC_OPEN, ctypes.addressof(pra), 0)
        if rv == 0:
            self.h64 = pra[2].h64
        return aee.to_int32(rv)

    def close(self) -> int:
        if not self._hs:
            return 0
        pra = (RemoteArg * 1)()
        pra[0].h64 = self.h64
        return aee.to_int32(self._call(0, _SC_CLOSE, ctypes.addressof(pra), 1))

    def invoke(self, call: Call) -> int:
        # The remote_arg array packed in one C call, not a field at a time through ctypes:
        # every step here holds the GIL that other threads' invokes wait for (issue 15).
        vals: list[int] = []
        for mv in (*call.inbufs, *call.outbufs):
            n = len(mv)
            vals += (_address(mv) if n else 0, n)
        for h in (*call.inhandles, *call.outhandles):
            vals += ((h.fd & 0xFFFF_FFFF) | (h.offset & 0xFFFF_FFFF) << 32, 0)  # {int32 fd, uint32 offset}
        pra = bytearray(_REMOTE_ARG_SIZE * max(1, len(vals) // 2))
        if vals:
            _pra_struct(len(vals)).pack_into(pra, 0, *vals)
        # The views in ``call`` keep every buffer mapped until the skel returns.
        rv = self._call(self.h64 if self._hs else 0, call.sc, ctypes.addressof(ctypes.c_char.from_buffer(pra)),
                        call.method)
        return aee.to_int32(rv)


_REMOTE_ARG_SIZE = ctypes.sizeof(RemoteArg)
_PRA_STRUCTS: dict[int, struct.Struct] = {}


def _pra_struct(nvals: int) -> struct.Struct:
    """``nvals`` u64 words: a remote_arg array of ``nvals / 2`` entries, each packed as
    ``{pv, nLen}`` (a handle's ``{fd, offset}`` is the first word)."""
    st = _PRA_STRUCTS.get(nvals)
    if st is None:
        st = _PRA_STRUCTS[nvals] = struct.Struct(f"<{nvals}Q")  # a racing thread stores an equal one
    return st


def _address(mv: memoryview) -> int:
    """Address of a non-empty 1-D byte view; numpy for a read-only one (ctypes takes only
    writable buffers)."""
    if mv.readonly:
        return np.frombuffer(mv, np.uint8).ctypes.data
    return ctypes.addressof(ctypes.c_char.from_buffer(mv))
