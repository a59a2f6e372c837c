"""Protection domains (DSP processes) and their address spaces, handles and mappings."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from .. import _ext
from ..wire import PAGE_SIZE
from ._counters import PdCounters, PdState, state_property

_ROUTES = _ext.load("_cdev").ROUTES

if TYPE_CHECKING:  # pragma: no cover
    from .cost import CostModel
    from .loader import ModuleUri

__all__ = ["Process", "MemMapping", "MmapRegion", "ModuleInstance", "ProcessInfo", "new_va_space",
           "VA_BASE", "VA_SIZE"]

# DSP virtual addresses handed out by MMAP/MEM_MAP: a 32-bit DSP, the low 256 MiB left to the
# shell image and heap.
VA_BASE = 0x1000_0000
VA_SIZE = 0xE000_0000


def new_va_space(start: int = VA_BASE, size: int = VA_SIZE):
    """The one place that creates a DSP virtual-address allocator (C++ ``_iova``)."""
    return _ext.load("_iova").RangeAllocator(start, size, PAGE_SIZE)


@dataclass(frozen=True)
class MemMapping:
    """A MEM_MAP'd buffer (what ``HAP_mmap_get(fd)`` finds on the DSP)."""

    fd: int
    vaddr: int          # DSP virtual address handed back to the caller
    dev_addr: int       # device (IOVA) address of the pages
    size: int           # bytes the page descriptor covers
    offset: int
    flags: int
    vaddrin: int        # the caller's virtual address, as sent


@dataclass(frozen=True)
class MmapRegion:
    """An INIT_MMAP'd region (DSP heap growth / remote heap)."""

    vaddr: int
    size: int
    pages: tuple[tuple[int, int], ...]
    flags: int


class ModuleInstance(NamedTuple):
    handle: int
    uri: "ModuleUri"
    impl: object        # PythonModule | NativeModule
    origin: str


class ProcessInfo(NamedTuple):
    """Introspection record returned by ``EmulatedDsp.processes()``."""

    client_id: int
    kind: str           # "root", "user", or the static PD name ("audiopd", "sensorspd", ...)
    name: str           # process name sent with CREATE ("" for attached PDs)
    signed: bool
    state: str          # "alive", "crashed" or "exited"
    modules: tuple[tuple[int, str], ...]   # (DSP handle, URI) of each open module
    mappings: int
    mmaps: int
    invokes: int
    modeled_ns: int
    channel: str = ""   # the host driver's rpmsg channel the PD belongs to
    listeners: int = 0  # adsp_listener1 next2 calls blocked in the PD now


class Process:
    """One protection domain as seen by one client id.

    ``lock`` protects ``state``, ``modules``, ``mappings``, ``mmaps``, ``params``,
    ``listeners``, ``poll_mode``, ``poll_timeout`` and the VA allocator; skel code runs without
    it so calls into one PD can proceed in parallel. A blocked listener (:meth:`listen`) holds no lock.
    """

    # What every message checks of the PD lives in C (a PdState, read by the native lane).
    state = state_property("state", '"alive", "crashed" or "exited".')
    poll_mode = state_property("poll_mode", "Calls complete by the poll word too (``poll_mode`` method).")

    def __init__(self, client_id: int, kind: str, memory, *, name: str = "", unsigned: bool = False,
                 init_mem: tuple[int, int] = (0, 0), domain: str = "", channel: str = "",
                 cost: "CostModel | None" = None):
        self._st = PdState()
        self.client_id = client_id
        self.domain = domain    # where the PD runs (a skel's FARF names it)
        self.channel = channel
        self.cost = cost        # the domain's cost model, for skels that charge their own work
        self.kind = kind
        self.name = name
        self.unsigned = unsigned
        self.init_mem = init_mem
        self.memory = memory
        self.lock = threading.Lock()
        self.crash_reason = ""
        self.modules: dict[int, ModuleInstance] = {}
        self.mappings: list[MemMapping] = []
        self.mmaps: dict[int, MmapRegion] = {}
        self.params: dict[int, tuple[int, ...]] = {}
        self.va = new_va_space()
        #: This PD's calls and modeled ns, in C (both data planes add to them): ``invokes``, ``modeled_ns``.
        self.counters = PdCounters()
        self.listeners = 0
        self.poll_timeout = 0
        self._ended = threading.Event()  # set once the PD stops being alive (never cleared)

    @property
    def invokes(self) -> int:
        """Calls on this PD's own handles so far."""
        return self.counters.invokes

    @property
    def modeled_ns(self) -> int:
        """Modeled ns of every message for this PD so far (docs/cost_model.md)."""
        return self.counters.modeled_ns

    @property
    def alive(self) -> bool:
        return self.state == "alive"

    def crash(self, reason: str) -> None:
        """Mark the PD dead; its modules are dropped without their close method."""
        with self.lock:
            if self.state == "alive":
                self.state = "crashed"
                self.crash_reason = reason
            self.modules.clear()
            _ROUTES.bump()  # (docs/dataplane.md "Routes")
        self.release_listeners()

    def exit(self) -> None:
        with self.lock:
            if self.state == "alive":
                self.state = "exited"
            self.modules.clear()
            _ROUTES.bump()  # (docs/dataplane.md "Routes")
        self.release_listeners()

    def release_listeners(self) -> None:
        """Wake every :meth:`listen` in the PD, now and later: the PD no longer runs (exit,
        INIT_RELEASE, crash, subsystem restart). Called by whoever ends the PD."""
        self._ended.set()

    def listen(self, timeout: float | None = None) -> bool:
        """The blocking part of an ``adsp_listener1`` ``next2``: wait until the PD has a
        reverse request for the CPU or has ended. The emulated DSP makes no reverse requests,
        so this returns when the PD ends (True), or after ``timeout`` seconds (False). The
        thread waits on an event: no lock held, the GIL released."""
        with self.lock:
            self.listeners += 1
        try:
            return self._ended.wait(timeout)
        finally:
            with self.lock:
                self.listeners -= 1

    def find_mapping(self, fd: int) -> MemMapping | None:
        with self.lock:
            for m in self.mappings:
                if m.fd == fd:
                    return m
        return None

    def mapped_view(self, fd: int, offset: int, length: int, writable: bool) -> memoryview:
        m = self.find_mapping(fd)
        if m is None:
            raise LookupError(f"fd {fd} is not mapped in client {self.client_id}")
        if offset < 0 or length < 0 or offset + length > m.size:
            raise ValueError(f"range {offset:#x}+{length:#x} outside the {m.size:#x}-byte mapping "
                             f"of fd {fd}")
        return self.memory.view(m.dev_addr + offset, length, writable)

    def info(self) -> ProcessInfo:
        with self.lock:
            return ProcessInfo(
                self.client_id, self.kind, self.name, not self.unsigned, self.state,
                tuple((h, mi.uri.raw) for h, mi in sorted(self.modules.items())),
                len(self.mappings), len(self.mmaps), self.invokes, self.modeled_ns,
                listeners=self.listeners)
