"""Modeled on-device time and traffic counters (nothing sleeps).

Every message the DSP handles is charged::

    t = overhead_ns + bytes_touched * 1e9 / bytes_per_s + method cost

``bytes_touched`` is the total length of the in and out buffers (what a skel could read or
write; handles are not counted, their data is touched only through explicit accesses).
The method cost is what the skel declared (``@method(cost_ns=...)``) plus whatever it added
with ``call.add_cost()``. The per-domain figures are nominal round numbers (dispatch overhead of
a FastRPC call on the DSP side, sustained DDR bandwidth of one DSP thread), chosen so relative
comparisons (copy vs zero-copy, small vs large calls) come out in the right order, not to
predict a particular SoC.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["CostModel", "DOMAIN_COST", "DspStats"]


@dataclass(frozen=True)
class CostModel:
    """Per-domain constants of the cost formula."""

    overhead_ns: int
    bytes_per_s: float

    def charge(self, nbytes: int, method_ns: int = 0) -> int:
        return self.overhead_ns + int(nbytes * 1e9 / self.bytes_per_s) + method_ns


DOMAIN_COST = {
    "adsp": CostModel(overhead_ns=25_000, bytes_per_s=2e9),
    "mdsp": CostModel(overhead_ns=25_000, bytes_per_s=2e9),
    "sdsp": CostModel(overhead_ns=25_000, bytes_per_s=1e9),
    "cdsp": CostModel(overhead_ns=12_000, bytes_per_s=8e9),
    "cdsp1": CostModel(overhead_ns=12_000, bytes_per_s=8e9),
    "gdsp0": CostModel(overhead_ns=12_000, bytes_per_s=8e9),
    "gdsp1": CostModel(overhead_ns=12_000, bytes_per_s=8e9),
}


class DspStats:
    """Counters of one emulated DSP; read them with :meth:`snapshot`.

    ``invokes`` counts every message, ``errors`` those answered non-zero, ``crashes`` PD
    crashes; ``bytes_in``/``bytes_out`` are buffer bytes by direction, ``handles_in``/
    ``handles_out`` the number of handle arguments; ``modeled_ns`` the summed cost model.
    """

    _FIELDS = ("invokes", "errors", "crashes", "bytes_in", "bytes_out", "handles_in",
               "handles_out", "modeled_ns")

    def __init__(self):
        self._lock = threading.Lock()  # Protects every counter below.
        self.reset()

    def reset(self) -> None:
        with self._lock:
            for f in self._FIELDS:
                setattr(self, f, 0)

    def record(self, *, bytes_in=0, bytes_out=0, handles_in=0, handles_out=0, ns=0,
               error=False, crash=False) -> None:
        with self._lock:
            self.invokes += 1
            self.errors += bool(error)
            self.crashes += bool(crash)
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out
            self.handles_in += handles_in
            self.handles_out += handles_out
            self.modeled_ns += ns

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f: getattr(self, f) for f in self._FIELDS}

    def __repr__(self) -> str:
        return f"DspStats({self.snapshot()})"
