"""INVOKE with the ioctl's argument as a C program's own address (what the device shim hands the
drivers, docs/shim.md): the native lanes read the struct with copy_from_user and serve the call
(a route, when the handle has one), as the Python reference does - the same answers, bytes and
errors, a bad struct address EFAULT, and on the accel driver drm_ioctl's copy back (a struct the
call cannot write back fails it with EFAULT, whatever it answered)."""
from __future__ import annotations

import ctypes
import errno
import mmap
import struct
import sys
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import TEST_URI, plane  # noqa: E402

ECHO = 0x03010100
_libc = ctypes.CDLL(None)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _open(make_soc, name, drv, kernel=None):
    with plane(name):
        soc = make_soc("default", **({"kernel": kernel} if kernel else {}))
        f = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    rv, h = open_module(f, TEST_URI)
    assert rv == 0
    return f, h


def _request(f, drv):
    return uapi.FASTRPC_IOCTL_INVOKE if drv == "legacy" else f.uapi.ioctls[0x47].number


class Call:
    """An echo INVOKE in C memory: the struct, its descriptors and both buffers."""

    def __init__(self, h, data: bytes):
        self.inb = (ctypes.c_char * len(data)).from_buffer_copy(data)
        self.outb = (ctypes.c_char * len(data))()
        self.descs = (ctypes.c_uint64 * 6)(ctypes.addressof(self.inb), len(data), 0xFFFFFFFF,
                                          ctypes.addressof(self.outb), len(data), 0xFFFFFFFF)
        self.raw = (ctypes.c_char * 16).from_buffer_copy(struct.pack("<IIQ", h, ECHO, ctypes.addressof(self.descs)))
        self.addr = ctypes.addressof(self.raw)


@pytest.mark.parametrize("drv", ["accel", "legacy"])
def test_an_invoke_at_a_programs_address_takes_the_lanes_and_answers_as_the_reference(make_soc, drv):
    answers = {}
    for name in ("native", "py"):
        f, h = _open(make_soc, name, drv)
        try:
            req, got = _request(f, drv), []
            for i in range(4):
                c = Call(h, bytes(range(i, i + 24)))
                got.append((f.ioctl(req, c.addr), bytes(c.outb)))
            got.append(f.ioctl(req, 8))  # an unmapped struct address: EFAULT
            got.append(str(f.last_error) if f.last_error else None)
            if name == "native":  # served by the handle's route, after the lanes' first call
                assert f._lane.route_for(h).served == 3
            answers[name] = got
        finally:
            f.close()
    assert answers["native"] == answers["py"]
    assert answers["native"][0] == (0, bytes(range(24))) and answers["native"][4] == -errno.EFAULT


@pytest.mark.parametrize("kernel", [None, "accel:qda-v1-2026-05"])
def test_accel_a_struct_the_call_cannot_write_back_fails_it_as_drm_ioctl_does(make_soc, kernel):
    """DRM_IOCTL_QDA_INVOKE is read-write: drm_ioctl copies the struct back after the call, and
    a failed copy makes the ioctl EFAULT though the DSP answered (the out-buffer is written),
    with the reference's message (the revision's name for the ioctl: v1's is REMOTE_INVOKE)."""
    answers = {}
    for name in ("native", "py"):
        f, h = _open(make_soc, name, "accel", kernel)
        page = mmap.mmap(-1, mmap.PAGESIZE)
        try:
            c = Call(h, b"abcdefgh")
            page[:16] = bytes(c.raw)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
            assert _libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ) == 0
            answers[name] = [(f.ioctl(_request(f, "accel"), addr), bytes(c.outb), str(f.last_error))
                             for _ in range(3)]
            assert _libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE) == 0
        finally:
            page.close()
            f.close()
    assert answers["native"] == answers["py"]
    assert [a[:2] for a in answers["native"]] == [(-errno.EFAULT, b"abcdefgh")] * 3
