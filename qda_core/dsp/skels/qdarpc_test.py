"""``qdarpc_test``: a skel for tests and benchmarks of the emulator itself.

URI: ``file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0``

====  ============  ===========  ==============================================================
id    name          sc           behaviour
====  ============  ===========  ==============================================================
2     null          0x02000000   nothing; returns 0 (round-trip cost)
3     echo          0x03010100   in0 -> out0 (copies ``len(in0)`` bytes); out shorter than in
                                 -> 0x8000040e
4     inc           0x04000100   adds 1 (mod 256) to every byte of out0 in place: a copied
                                 out-buffer starts zeroed (result all 1s), a shared one holds
                                 the caller's bytes (result caller + 1)
5     fail          0x05010000   in0 ``{int32 code}``; returns ``code`` verbatim
6     crash         0x06000000   raises: the PD crashes (0x8000040d until INIT_RELEASE)
7     checksum      0x07010100   out0 ``{u64}`` = sum of the bytes of in0
8     mapped_read   0x08010100   in0 ``{int32 fd, u32 offset, u32 len}``; copies ``len`` bytes at
                                 ``offset`` of the MEM_MAP'd buffer ``fd`` (HAP_mmap_get) into
                                 out0; fd not mapped -> 0x80000448, range outside the mapping or
                                 out0 too short -> 0x8000040e
9     touch         0x09010100   out0 ``{u64 len, u8 first, u8 last}`` of in0 without scanning
                                 it: the cost of reaching a buffer, independent of its size
                                 when it is shared (the zero-copy benchmark)
====  ============  ===========  ==============================================================
"""
from __future__ import annotations

import struct

import numpy as np

from .. import aee
from ..skel import Call, Skeleton, method


class SkelCrashed(RuntimeError):
    """Raised on purpose by ``crash()``."""


class QdarpcTest(Skeleton):
    skel_name = "libqdarpc_test_skel.so"
    symbols = ("qdarpc_test_skel_handle_invoke",)

    @method(2, sc=0x02000000)
    def null(self, call: Call) -> int:
        return 0

    @method(3, sc=0x03010100)
    def echo(self, call: Call) -> int:
        src, dst = call.inbufs[0], call.outbufs[0]
        if len(dst) < len(src):
            return aee.ERR_BAD_PARM
        dst[: len(src)] = src
        return 0

    @method(4, sc=0x04000100)
    def inc(self, call: Call) -> int:
        buf = np.frombuffer(call.outbufs[0], dtype=np.uint8)
        buf += np.uint8(1)  # in place, wraps mod 256
        return 0

    @method(5, sc=0x05010000)
    def fail(self, call: Call) -> int:
        if len(call.inbufs[0]) < 4:
            return aee.ERR_BAD_PARM
        return struct.unpack_from("<i", call.inbufs[0])[0]

    @method(6, sc=0x06000000)
    def crash(self, call: Call) -> int:
        raise SkelCrashed("qdarpc_test.crash() called")

    @method(7, sc=0x07010100)
    def checksum(self, call: Call) -> int:
        if len(call.outbufs[0]) < 8:
            return aee.ERR_BAD_PARM
        total = int(np.frombuffer(call.inbufs[0], dtype=np.uint8).sum(dtype=np.uint64))
        struct.pack_into("<Q", call.outbufs[0], 0, total)
        return 0

    @method(8, sc=0x08010100)
    def mapped_read(self, call: Call) -> int:
        if len(call.inbufs[0]) < 12:
            return aee.ERR_BAD_PARM
        fd, offset, length = struct.unpack_from("<iII", call.inbufs[0])
        mapping = call.mapping(fd)
        if mapping is None:
            return aee.ERR_NO_SUCH_MAP
        if offset + length > mapping.size or len(call.outbufs[0]) < length:
            return aee.ERR_BAD_PARM
        call.outbufs[0][:length] = call.mapped_view(fd, offset, length)
        return 0

    @method(9, sc=0x09010100)
    def touch(self, call: Call) -> int:
        buf, out = call.inbufs[0], call.outbufs[0]
        if len(out) < 10:
            return aee.ERR_BAD_PARM
        n = len(buf)
        struct.pack_into("<QBB", out, 0, n, buf[0] if n else 0, buf[n - 1] if n else 0)
        return 0
