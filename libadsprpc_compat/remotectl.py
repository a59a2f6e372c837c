"""The user-side stub of the DSP's ``remotectl`` / ``remotectl1`` static interfaces.

Byte layouts as ``qualcomm/fastrpc src/remotectl_stub.c`` / ``remotectl1_stub.c`` send them
(docs/spec/legacy_fastrpc_api.md §6.3): open = in0 ``{u32 name_len (incl. NUL), u32 dlerror_len}``, in1 the name,
out0 ``{u32 handle, u32 dlerr}``, out1 the dlerror text; close = in0 ``{u32 handle, u32
dlerror_len}``, out0 ``{u32 dlerr}``, out1 dlerror text. Works on any file object with the
typed ``invoke(handle, sc, args)`` of the emulated drivers.
"""
from __future__ import annotations

import struct

# The handles and their method scalars are defined once, in the wire module; re-exported here.
from qda_core.wire import REMOTECTL1_HANDLE, REMOTECTL_HANDLE, REMOTECTL_METHODS

#: The dlerror buffer the stubs pass (``remotectl*_open``'s ``dlerror`` out-buffer).
DLERROR_LEN = 255

__all__ = ["REMOTECTL_HANDLE", "REMOTECTL1_HANDLE", "DLERROR_LEN", "ModuleOpenError", "open_module", "close_module"]


class ModuleOpenError(Exception):
    """The DSP could not open a module: ``dlerr`` is its code, ``text`` its dlerror string."""

    def __init__(self, code: int, text: str, uri: str):
        super().__init__(f"DSP could not open {uri!r}: {code:#x} {text}".rstrip())
        self.code, self.text, self.uri = code, text, uri


def _text(buf: bytearray) -> str:
    return bytes(buf).split(b"\0")[0].decode(errors="replace")


def open_module(f, uri: str, iface: int = REMOTECTL1_HANDLE) -> tuple[int, int]:
    """Open ``uri`` on the DSP. Returns ``(retval, dsp_handle)``: a non-zero ``retval`` is the
    invoke's error; a load failure raises :class:`ModuleOpenError` carrying ``dlerr``."""
    name = uri.encode() + b"\0"
    prim_in = struct.pack("<II", len(name), DLERROR_LEN)
    prim_out, dlerror = bytearray(8), bytearray(DLERROR_LEN)
    ret = f.invoke(iface, REMOTECTL_METHODS[iface]["open"], [prim_in, name, prim_out, dlerror])
    if ret:
        return ret, 0
    handle, dlerr = struct.unpack("<II", prim_out)
    if dlerr:
        raise ModuleOpenError(dlerr, _text(dlerror), uri)
    return 0, handle


def close_module(f, handle: int, iface: int = REMOTECTL1_HANDLE) -> int:
    """Close a DSP module handle; returns the invoke error or ``dlerr`` (0 on success)."""
    prim_in = struct.pack("<II", handle, DLERROR_LEN)
    prim_out, dlerror = bytearray(4), bytearray(DLERROR_LEN)
    ret = f.invoke(iface, REMOTECTL_METHODS[iface]["close"], [prim_in, prim_out, dlerror])
    return ret or struct.unpack("<I", prim_out)[0]
