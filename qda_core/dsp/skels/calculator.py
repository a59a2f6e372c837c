"""The Hexagon SDK calculator example (docs/spec/legacy_fastrpc_api.md §2.5), on the emulated DSP.

URI: ``file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3``

====  ======  ===========  ==================================================================
id    name    sc           arguments
====  ======  ===========  ==================================================================
2     sum     0x02020100   in0 ``{int32 n}``, in1 ``n`` int32s, out0 ``int64`` (64-bit sum)
3     max     0x03020100   in0 ``{int32 n}``, in1 ``n`` int32s, out0 ``int32`` (max from 0)
====  ======  ===========  ==================================================================

``max`` starts from 0 like the SDK implementation, so an all-negative input gives 0. An
``_idlver`` other than ``1.2.3`` refuses the open with ``0x80000594``; ``n * 4 != len(in1)``
or a short out-buffer answers ``0x8000040e``.
"""
from __future__ import annotations

import struct

import numpy as np

from .. import aee
from ..skel import Call, Skeleton, method

IDL_VERSION = "1.2.3"


class Calculator(Skeleton):
    skel_name = "libcalculator_skel.so"
    symbols = ("calculator_skel_handle_invoke",)

    def open(self, uri) -> int:
        idlver = uri.params.get("_idlver")
        if idlver is not None and idlver != IDL_VERSION:
            return aee.ERR_IDL_VERSION
        return 0

    @staticmethod
    def _vec(call: Call, out_size: int):
        n = struct.unpack_from("<i", call.inbufs[0])[0] if len(call.inbufs[0]) >= 4 else -1
        if n < 0 or 4 * n != len(call.inbufs[1]) or len(call.outbufs[0]) < out_size:
            return None
        return np.frombuffer(call.inbufs[1], dtype="<i4")

    @method(2, sc=0x02020100)
    def sum(self, call: Call) -> int:
        vec = self._vec(call, 8)
        if vec is None:
            return aee.ERR_BAD_PARM
        struct.pack_into("<q", call.outbufs[0], 0, int(vec.sum(dtype=np.int64)))
        return 0

    @method(3, sc=0x03020100)
    def max(self, call: Call) -> int:
        vec = self._vec(call, 4)
        if vec is None:
            return aee.ERR_BAD_PARM
        struct.pack_into("<i", call.outbufs[0], 0, max(0, int(vec.max())) if len(vec) else 0)
        return 0
