"""Device memory as one protection domain sees it: only the SMMU streams (SIDs) it was granted.

The host's SMMU model (:class:`~qda_core.dsp.core.DeviceMemory`) translates any device
address of the DSP; on hardware each PD's accesses go out on the stream of the context bank the
kernel bound to its session, and an address carrying another stream's SID faults. A
:class:`PdMemory` is that filter: a device address whose SID (bits 63:32) is not granted, or
that the model cannot translate, raises :class:`~qda_core.errors.DeviceFault` and is recorded
as a ``fault`` trace event. The caller turns the fault into what a crash of the PD gives.
"""
from __future__ import annotations

from .. import trace
from ..errors import DeviceFault

__all__ = ["PdMemory", "span_granted"]


def span_granted(sids: frozenset, addr: int, length: int, ranges=()) -> bool:
    """True if ``[addr, addr+length)`` lies in the IOVA space of one granted SID, or inside
    one of the granted ``(address, size)`` ranges."""
    if addr >> 32 in sids and (addr & 0xFFFF_FFFF) + length <= 1 << 32:
        return True
    return any(lo <= addr and addr + length <= lo + size for lo, size in ranges)


class PdMemory:
    """The view of ``memory`` through the SIDs in ``sids`` and the extra ``ranges`` (see the
    module docstring). ``where`` is ``(domain, channel, client_id)``, for a fault's trace event.
    """

    __slots__ = ("_memory", "sids", "ranges", "_where")

    def __init__(self, memory, sids: frozenset, where: tuple[str, str, int], ranges=()):
        self._memory = memory
        self.sids = frozenset(sids)
        self.ranges = tuple(ranges)
        self._where = where

    def view(self, addr: int, length: int, writable: bool) -> memoryview:
        """A view of ``length`` bytes at device address ``addr``; DeviceFault if not granted."""
        if length and not span_granted(self.sids, addr, length, self.ranges):
            exc = DeviceFault(addr, length, f"SID {addr >> 32} is not a stream of this PD "
                                            f"(granted: {sorted(self.sids)})")
            self._trace(exc)
            raise exc
        try:
            return self._memory.view(addr, length, writable)
        except DeviceFault as exc:
            self._trace(exc)
            raise

    def argument(self, addr: int, length: int, out: bool) -> memoryview:
        """An argument buffer at ``addr`` as a skel is handed it (:meth:`view`): a 1-D byte view,
        writable for an out-buffer, read-only for an in-buffer."""
        mv = memoryview(self.view(addr, length, out))
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        return mv if out else mv.toreadonly()

    def _trace(self, exc: DeviceFault) -> None:
        tr = trace.RECORDER
        if tr is not None:
            domain, channel, client_id = self._where
            t = trace.now()
            tr.fault(domain, channel, client_id, "smmu", exc.addr, exc.length, str(exc), t, t)

    def __repr__(self) -> str:
        return f"<PdMemory sids={sorted(self.sids)}>"
