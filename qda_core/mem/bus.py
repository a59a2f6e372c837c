"""The compute bus of one DSP: its IOMMU context banks (CBs) and the SMMU view the DSP reads.

Assignment follows the QDA RFC (``qda_memory_manager.c``, docs/spec/qda_accel_uapi.md §1.1): lazy, on a file's first
memory use; a CB already assigned to the same opener thread id is shared (refcounted); else the
lowest-numbered free CB; none free -> ``ENOMEM``. The legacy driver takes one whole CB per
``open()`` instead (``EBUSY`` when none is free). Both drivers draw from the same bus because the
CBs are hardware: one SMMU, one set of SIDs.

Device addresses are ``iova | sid << 32`` (32-bit IOVA space per CB). Besides the session CBs
there is one bank no session is ever given, :attr:`ComputeBus.kernel_cb` (SID
:data:`KERNEL_SID`): memory the kernel allocates for the DSP itself on the rpmsg device, such as
a static PD's remote heap, lives there, out of every session's reach.
"""
from __future__ import annotations

import errno
import threading
from typing import TYPE_CHECKING

from .._ext import load
from ._smmu import BankState, Smmu  # noqa: F401 - the SMMU view, in C (mem/_smmu.pyx)
from ..errors import errno_error

if TYPE_CHECKING:
    from .gem import GemObject

_iova = load("_iova")

IOVA_START = 0x1000          # page 0 stays unmapped so a NULL device address always faults
IOVA_END = 1 << 32           # DMA_BIT_MASK(32)
#: SID of the rpmsg device's own stream (kernel-owned DSP memory); reserved in every profile.
KERNEL_SID = 0


class ContextBank:
    """One SMMU context bank: a SID, its IOVA space, and who holds it."""

    def __init__(self, index: int, sid: int, dsp_name: str):
        self.index = index
        self.sid = sid
        self.name = f"qda-cb-{dsp_name}-{sid}"
        self._space = _iova.RangeAllocator(IOVA_START, IOVA_END - IOVA_START)
        self._objects: dict[int, GemObject] = {}  # iova start -> object
        self._st = BankState()  # its generation: bumped on every change of _objects (the SMMU's cache)
        self.assigned_pid = 0
        self.refcount = 0
        self.owner = ""  # "accel" or "legacy" while assigned

    def reserve(self, size: int) -> int:
        """IOVA space for ``size`` bytes, taken before any memory is allocated (``ENOMEM``)."""
        try:
            return self._space.alloc(size)
        except (MemoryError, ValueError, OverflowError) as exc:  # too big for the space, or for 64 bits
            raise errno_error(errno.ENOMEM, f"{self.name}: IOVA space exhausted ({size:#x} bytes)") from exc

    def unreserve(self, iova: int) -> None:
        self._space.free(iova)

    def attach(self, iova: int, obj: "GemObject") -> None:
        """Make ``obj`` reachable at its reserved ``iova``."""
        self._objects[iova] = obj
        self._st.gen += 1

    def unmap(self, obj: "GemObject") -> None:
        del self._objects[obj.iova]
        self._st.gen += 1
        self._space.free(obj.iova)

    def lookup(self, iova: int) -> tuple["GemObject", int] | None:
        """The object mapped at ``iova`` and the offset into it."""
        hit = self._space.find(iova)
        if hit is None:
            return None
        start, _ = hit
        return self._objects[start], iova - start

    @property
    def mapped(self) -> int:
        return len(self._objects)

    @property
    def free(self) -> bool:
        return self.assigned_pid == 0 and self.refcount == 0


class ComputeBus:
    """The ``qda-compute-cb`` bus of one DSP: CBs in DT order, ids from 0."""

    def __init__(self, dsp_name: str, sids: list[int]):
        self.dsp_name = dsp_name
        if KERNEL_SID in sids:
            raise ValueError(f"{dsp_name}: SID {KERNEL_SID} is reserved for the rpmsg device's own memory")
        self.cbs = [ContextBank(i, sid, dsp_name) for i, sid in enumerate(sids)]
        self.kernel_cb = ContextBank(-1, KERNEL_SID, dsp_name)
        self._by_sid = {cb.sid: cb for cb in (*self.cbs, self.kernel_cb)}
        self.lock = threading.Lock()  # protects assignment state of every CB
        #: The SoC's fault rules (:mod:`qda_core.faults`), or None: ``nocb`` makes a claim
        #: find no free bank.
        self.faults = None

    def assign(self, pid: int) -> ContextBank:
        """RFC lazy assignment for an accel file opened by thread ``pid``."""
        with self.lock:
            for cb in self.cbs:
                if cb.owner == "accel" and cb.assigned_pid == pid:
                    cb.refcount += 1
                    return cb
            cb = self._claim_free(pid, "accel")
        if cb is None:
            raise errno_error(errno.ENOMEM, f"{self.dsp_name}: no free context bank ({len(self.cbs)} in use)")
        return cb

    def take_session(self, pid: int) -> ContextBank:
        """Legacy ``fastrpc_session_alloc``: one free CB per open, never shared."""
        with self.lock:
            cb = self._claim_free(pid, "legacy")
        if cb is None:
            raise errno_error(errno.EBUSY, f"{self.dsp_name}: no free session (context bank)")
        return cb

    def _claim_free(self, pid: int, owner: str) -> ContextBank | None:
        """The lowest-numbered free CB, now held by ``owner`` for ``pid``; caller holds the lock."""
        f = self.faults
        if f is not None and f.armed("nocb") and f.check("nocb", (self.dsp_name,), detail=f"{owner} claim"):
            return None
        for cb in self.cbs:
            if cb.free:
                cb.assigned_pid, cb.refcount, cb.owner = pid, 1, owner
                return cb
        return None

    def release(self, cb: ContextBank) -> None:
        with self.lock:
            cb.refcount -= 1
            if cb.refcount == 0:
                cb.assigned_pid, cb.owner = 0, ""

    def by_sid(self, sid: int) -> ContextBank | None:
        return self._by_sid.get(sid)

    @property
    def free_count(self) -> int:
        return sum(cb.free for cb in self.cbs)
