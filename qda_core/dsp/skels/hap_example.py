"""The Hexagon SDK ``hap_example`` (docs/spec/legacy_fastrpc_api.md §8.3), on the emulated DSP.

URI: ``file:///libhap_example_skel.so?hap_example_skel_handle_invoke&_modver=1.0&_dom=cdsp``

The SDK example shows the DSP's HAP services, one selector per run of upstream's
``fastrpc_test``: FARF logging at run time, memory (a buffer the CPU mapped with
``fastrpc_mmap``, a buffer passed as a DMA handle), and timing. Its source is not public here;
each method below does the same kind of work, cheaply, against this DSP's own services, and
answers 0 as a device does for that call sequence (docs/spec/upstream_library.md §6).

====  =================  ===========  =========================================================
id    name               sc           behaviour
====  =================  ===========  =========================================================
4     farf_runtime       0x04010000   in0 ``{int32 enable}`` sets this handle's run-time FARF
                                      mask (the ``HAP_setFARFRuntimeLoggingParams`` step):
                                      non-zero turns LOW, MEDIUM and HIGH on, 0 only HIGH (the
                                      "always" level); then one ``RUNTIME_LOW/MEDIUM/HIGH``
                                      message each is logged, those whose level is off dropped
5     mem_dmahandle      0x05000010   one in-handle (dma-buf fd, offset, length): reads the
                                      ``length`` bytes at ``offset`` of the buffer the kernel
                                      mapped for the call, through the PD's memory, and logs
                                      their checksum; nothing mapped, or a range past the
                                      mapping -> 0x8000040e
7     mem_fastrpc_mmap   0x07010000   in0 ``{int32 fd, u32 len}``: finds the buffer the CPU
                                      mapped with ``fastrpc_mmap`` by fd (``HAP_mmap_get``),
                                      reads ``len`` bytes of it, logs their checksum
                                      (``HAP_mmap_put``); fd not mapped -> 0x80000448, ``len``
                                      past the mapping -> 0x8000040e
10    perf               0x0a000000   times a small computation with the host's monotonic
                                      clock (``HAP_perf_get_time_us``), logs it, and charges a
                                      modeled ``HAP_timer_sleep`` of :data:`PERF_SLEEP_US`
====  =================  ===========  =========================================================

Ids 2, 3, 6, 8, 9, 11 and 12 (compute resources, ``mem_dmahandlev2``, VA reservation, power,
sysmon cache lock) exist in the SDK interface but are not emulated: ``0x80000414``, which
``fastrpc_test`` counts as a skip. Memory reads are charged to the cost model at the domain's
bandwidth (handle and mapped data are not in the per-message byte count).

FARF messages go where a native skel's do (:mod:`qda_core.dsp.dsprt`): the logger
``qdarpc.dsp`` and, while tracing, a ``farf`` event naming the PD and module.
"""
from __future__ import annotations

import logging
import struct
import time

import numpy as np

from ... import trace
from .. import aee
from ..skel import Call, Skeleton, method

__all__ = ["HapExample", "PERF_SLEEP_US", "FARF_LEVELS"]

LOG = logging.getLogger("qdarpc.dsp")
MODULE = "libhap_example_skel.so"

#: HAP_LEVEL_* values (csrc/include/HAP_farf.h) of the run-time levels ``farf_runtime`` shows.
FARF_LEVELS = {0: "LOW", 1: "MEDIUM", 2: "HIGH"}
_HIGH = 2  # FARF_ALWAYS_LEVEL
_PY_LEVEL = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.ERROR, 4: logging.CRITICAL}
_DEFAULT_MASK = 1 << _HIGH  # (our choice)
_ALL_LEVELS = (1 << len(FARF_LEVELS)) - 1
#: The modeled HAP_timer_sleep of ``perf``, in microseconds (our choice).
PERF_SLEEP_US = 1000


def farf(call: Call, level: int, message: str) -> None:
    """One run-time FARF message from skel code, attributed like a native skel's."""
    p = call.process
    LOG.log(_PY_LEVEL.get(level, logging.INFO), "%s client %d %s: %s", p.domain, p.client_id, MODULE, message,
            extra={"farf_level": level, "farf_runtime": True, "dsp_context": None})
    tr = trace.RECORDER
    if tr is not None:
        tr.farf(p.domain, p.channel, p.client_id, MODULE, level, True, "hap_example.py", 0, message, trace.now())


def _charge_read(call: Call, nbytes: int) -> None:
    cost = call.process.cost
    if cost is not None and nbytes:
        call.add_cost(int(nbytes * 1e9 / cost.bytes_per_s))


def _checksum(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).sum(dtype=np.uint64))


class HapExample(Skeleton):
    skel_name = "libhap_example_skel.so"
    symbols = ("hap_example_skel_handle_invoke",)

    #: Run-time FARF levels on for this handle (bit = HAP level); ``farf_runtime`` widens it.
    farf_mask = _DEFAULT_MASK

    @method(4, sc=0x04010000)
    def farf_runtime(self, call: Call) -> int:
        if len(call.inbufs[0]) < 4:
            return aee.ERR_BAD_PARM
        (enable,) = struct.unpack_from("<i", call.inbufs[0])
        self.farf_mask = _ALL_LEVELS if enable else _DEFAULT_MASK
        for level, name in FARF_LEVELS.items():
            if self.farf_mask >> level & 1:
                farf(call, level, f"RUNTIME_{name} message (farf_runtime({enable}))")
        return 0

    @method(5, sc=0x05000010)
    def mem_dmahandle(self, call: Call) -> int:
        h = call.inhandles[0]
        if h.map_size == 0 or h.offset + h.length > h.map_size:
            return aee.ERR_BAD_PARM
        data = call.process.memory.view(h.map_addr + h.offset, h.length, False)
        _charge_read(call, h.length)
        farf(call, _HIGH, f"dma handle fd {h.fd}: {h.length} bytes at offset {h.offset}, checksum {_checksum(data)}")
        return 0

    @method(7, sc=0x07010000)
    def mem_fastrpc_mmap(self, call: Call) -> int:
        if len(call.inbufs[0]) < 8:
            return aee.ERR_BAD_PARM
        fd, length = struct.unpack_from("<iI", call.inbufs[0])
        mapping = call.mapping(fd)  # HAP_mmap_get
        if mapping is None:
            return aee.ERR_NO_SUCH_MAP
        if length > mapping.size:
            return aee.ERR_BAD_PARM
        data = call.mapped_view(fd, 0, length)
        _charge_read(call, length)
        farf(call, _HIGH, f"fastrpc_mmap fd {fd} at DSP address {mapping.vaddr:#x}: {length} bytes, "
                      f"checksum {_checksum(data)}")
        return 0  # HAP_mmap_put: the mapping stays until the CPU unmaps it

    @method(10, sc=0x0A000000)
    def perf(self, call: Call) -> int:
        t0 = time.monotonic_ns()
        total = int(np.arange(4096, dtype=np.int64).sum())
        elapsed_us = (time.monotonic_ns() - t0) // 1000
        call.add_cost(PERF_SLEEP_US * 1000)  # HAP_timer_sleep(PERF_SLEEP_US): modeled, nothing sleeps
        farf(call, _HIGH, f"perf: sum {total} took {elapsed_us} us; slept {PERF_SLEEP_US} us")
        return 0
