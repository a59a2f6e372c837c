"""Shared helpers of the legacy driver tests."""
import errno
import struct

import pytest

from qda_core import wire
from qda_core.dsp import aee

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom=cdsp"
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_SUM, SC_MAX = 0x02020100, 0x03020100
SC_NULL, SC_INC, SC_CHECKSUM, SC_MAPPED_READ = 0x02000000, 0x04000100, 0x07010100, 0x08010100
UNSIGNED = 8


def raises_errno(err):
    """``pytest.raises(OSError)`` that also checks the errno."""
    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(OSError)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self._cm.__exit__(*exc)
            assert self.info.value.errno == err, f"expected {errno.errorcode[err]}, got {self.info.value!r}"
            return handled
    return _Ctx()


def hexagon_elf(n: int) -> bytes:
    """An ``n``-byte blob the DSP accepts as a shell image (ELF32 LE, EM_QDSP6)."""
    img = bytearray(n)
    img[:6] = b"\x7fELF\x01\x01"
    struct.pack_into("<H", img, 18, 164)
    return bytes(img)


class DspTap:
    """Wraps a DSP's ``receive`` to watch (and optionally rewrite) the traffic of one channel."""

    def __init__(self, dsp, channel: str = "legacy"):
        self.dsp = dsp
        self.channel = channel
        self.msgs: list[wire.Msg] = []
        self.fdlist: dict[int, list[int]] = {}   # handle -> fds the DSP "lists" in its reply
        self.answer: dict[int, int] = {}         # handle -> forced retval (without running it)
        self._orig = dsp.receive

    def __call__(self, msg, reply, channel="", origin=None):
        if channel != self.channel:
            return self._orig(msg, reply, channel, origin)
        m = wire.Msg.unpack(msg)
        self.msgs.append(m)
        if m.handle in self.answer:
            reply(wire.Rsp(m.ctx, aee.to_int32(self.answer[m.handle])).pack())
            return
        fds = self.fdlist.get(m.handle)

        def tapped(data):
            if fds:
                n = wire.sc_length(m.sc)
                view = self.dsp.memory.view(m.addr + 40 * n, 8 * len(fds), True)
                view[:] = struct.pack(f"<{len(fds)}Q", *fds)
            reply(data)
        self._orig(msg, tapped, channel, origin)
