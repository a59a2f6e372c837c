"""Modeled on-device time: one formula, its parameters, and where they come from.

Every message the emulated DSP handles is charged once, by :meth:`CostModel.charge`::

    t = overhead                                   qos_overhead_ns if QoS is in force, else overhead_ns
      + copied_bytes * 1e9 / cache_bytes_per_s     cache maintenance of the copied buffers
      + map_ns                                     if the message is a map that succeeded (INIT MMAP, MEM_MAP)
      + compute_ns                                 the skel's: @method(cost_ns=...) + call.add_cost()

and :func:`override` may replace ``t`` or add to it for the calling thread's messages.

Terms (docs/cost_model.md has the sources and the table of defaults):

* **Fixed per-call cost**, without and with QoS. The Hexagon SDK's "IPC performance
  considerations" describe the overhead of a FastRPC call as interrupt, wake-up and scheduling
  latency that clock settings and CPU sleep modes can stretch to milliseconds, and QoS
  (``remote_handle_control(DSPRPC_CONTROL_LATENCY)``: PM QoS keeps the CPU out of deep sleep,
  adaptive QoS makes the DSP wake the CPU before the reply) as what shortens it. QoS is in force
  for a PD once the library sent ``adsp_current_process1`` ``setQoS(latency)`` (method 6) with
  a latency under :data:`QOS_MAX_LATENCY_US` (the library's "no requirement", sent to disable),
  or turned adaptive QoS on with ``remotectl`` ``set_param(RPC_PARAM_ADAPTIVE_QOS, {1})``.
* **Cache maintenance, per byte, of copied buffers only.** CPU and DSP share no cache, so the
  DSP cleans and invalidates the lines of the inline (copied) arguments of each message. A
  by-reference buffer (a dma-buf, rpcmem) is mapped once and not flushed per call (the upstream
  kernel does no per-call cache operation on it), so only what the skel does with it costs:
  its compute. The DSP tells the two apart by address: a copied argument lies in the message's
  payload.
* **Per map**: a page-table update on the DSP for each INIT-handle MMAP or MEM_MAP (what
  ``fastrpc_mmap``, ``remote_mmap64``, ``remote_mem_map`` and the accel MAP ioctl send).
* **Compute**: what the skel declares per method (``@method(cost_ns=...)``) plus what it measures
  or derives from its data (``call.add_cost(ns)``, e.g. bytes read at :attr:`CostModel.bytes_per_s`).

The numbers (:data:`DOMAIN_COST`) are our nominal round choices: no public source gives them
for a SoC. They put copy vs zero-copy, small vs large calls and QoS on vs off in the right order,
not predict a device. A SoC profile may override any of them (``"cost"``, :func:`domain_cost`).

Where the figure goes: the ``dsp`` trace event of the message (``modeled_ns``), the DSP's
:class:`DspStats`, the PD's ``ProcessInfo.modeled_ns`` (every message for the PD: the calls on
its handles and the kernel's INIT messages for it, from the one that creates it up to its
release) and this thread's :func:`last_ns` / :func:`measure`. With ``QDARPC_REALTIME=1`` in the
environment when a SoC is built (read once per SoC, per domain), its DSPs also sleep each
message's modeled time in the sending thread after handling it, holding no lock of theirs.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Iterator, Mapping

from .. import _ext
from ._counters import Counters, account, account_add
from ..wire import FASTRPC_INIT_HANDLE, RMID_INIT_MEM_MAP, RMID_INIT_MMAP, RPC_PARAM_ADAPTIVE_QOS, scalars

__all__ = ["CostModel", "DOMAIN_COST", "PROFILE_KEYS", "DspStats", "REALTIME_ENV", "QOS_MAX_LATENCY_US",
           "SET_QOS", "QOS_PARAM", "domain_cost", "qos_in_force", "is_map", "override", "measure", "Measure",
           "last_ns", "settle"]

#: ``QDARPC_REALTIME=1``: DSPs of a SoC built while it is set sleep each message's modeled time.
REALTIME_ENV = "QDARPC_REALTIME"
#: A ``setQoS`` latency at or above this (us) states no requirement: the library sends it to
#: disable QoS (``FASTRPC_QOS_MAX_LATENCY_USEC`` of the upstream library).
QOS_MAX_LATENCY_US = 10_000
#: ``adsp_current_process1`` ``setQoS(uint32 latency)``: method 6, one in-buffer.
SET_QOS = scalars(6, 1, 0)
#: The ``Process.params`` key a PD keeps its ``setQoS`` latency under (``set_param`` request ids
#: are small integers; this is the method's scalars word, so the two never collide).
QOS_PARAM = SET_QOS


@dataclass(frozen=True)
class CostModel:
    """Per-domain parameters of the one formula (see the module docstring).

    ``overhead_ns``: fixed cost of a message without QoS. ``bytes_per_s``: the DSP's sustained
    memory bandwidth, for skels that charge what they read. ``qos_overhead_ns``: fixed cost with
    QoS in force (default: ``overhead_ns``). ``cache_bytes_per_s``: cache maintenance rate over
    copied buffers (default: ``bytes_per_s``). ``map_ns``: cost of one map. ``realtime``: the
    DSP sleeps each message's modeled time (``QDARPC_REALTIME``; not a profile key).
    """

    overhead_ns: int
    bytes_per_s: float
    qos_overhead_ns: int | None = None
    cache_bytes_per_s: float | None = None
    map_ns: int = 0
    realtime: bool = False

    def __post_init__(self) -> None:
        if self.qos_overhead_ns is None:
            object.__setattr__(self, "qos_overhead_ns", self.overhead_ns)
        if self.cache_bytes_per_s is None:
            object.__setattr__(self, "cache_bytes_per_s", self.bytes_per_s)
        for name in ("overhead_ns", "qos_overhead_ns", "map_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"cost {name} must be >= 0, got {getattr(self, name)}")
        for name in ("bytes_per_s", "cache_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cost {name} must be > 0, got {getattr(self, name)}")

    def charge(self, copied_bytes: int, compute_ns: int = 0, *, qos: bool = False, maps: int = 0) -> int:
        """Modeled ns of one message: the formula of the module docstring, and its only place."""
        return ((self.qos_overhead_ns if qos else self.overhead_ns)
                + int(copied_bytes * 1e9 / self.cache_bytes_per_s) + maps * self.map_ns + compute_ns)


# Nominal round numbers (docs/cost_model.md): the audio/modem/sensors DSPs are slower to reach
# and to run than the compute DSPs.
_CONTROL = CostModel(overhead_ns=400_000, bytes_per_s=2e9, qos_overhead_ns=100_000, map_ns=100_000)
_COMPUTE = CostModel(overhead_ns=200_000, bytes_per_s=8e9, qos_overhead_ns=50_000, cache_bytes_per_s=4e9,
                     map_ns=50_000)

#: The default cost model of each domain.
DOMAIN_COST: dict[str, CostModel] = {
    "adsp": _CONTROL,
    "mdsp": _CONTROL,
    "sdsp": replace(_CONTROL, bytes_per_s=1e9, cache_bytes_per_s=1e9),
    "cdsp": _COMPUTE,
    "cdsp1": _COMPUTE,
    "gdsp0": _COMPUTE,
    "gdsp1": _COMPUTE,
}

#: The keys a SoC profile's ``"cost"`` table may set.
PROFILE_KEYS = tuple(f.name for f in fields(CostModel) if f.name != "realtime")


def domain_cost(domain: str, overrides: Mapping[str, float] | None = None,
                environ: Mapping[str, str] | None = None) -> CostModel:
    """The cost model of ``domain``: its default with ``overrides`` (a profile's ``"cost"``
    table: keys of :data:`PROFILE_KEYS`) applied, realtime if ``environ`` (default: the live
    ``os.environ``, read now) has ``QDARPC_REALTIME=1``. ``ValueError`` names a bad key or value."""
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(PROFILE_KEYS))
    if bad:
        raise ValueError(f"unknown cost parameter(s) {', '.join(bad)}; valid: {', '.join(PROFILE_KEYS)}")
    for k, v in overrides.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"cost {k} must be a number, got {v!r}")
        if k.endswith("_ns"):
            if v != int(v):
                raise ValueError(f"cost {k} must be a whole number of ns, got {v!r}")
            overrides[k] = int(v)
    env = os.environ if environ is None else environ
    return replace(DOMAIN_COST[domain], **overrides, realtime=env.get(REALTIME_ENV) == "1")


def qos_in_force(process) -> bool:
    """Whether ``process`` (a :class:`~.process.Process`) asked for QoS: a ``setQoS`` latency
    under :data:`QOS_MAX_LATENCY_US`, or adaptive QoS turned on."""
    with process.lock:
        latency = process.params.get(QOS_PARAM)
        adaptive = process.params.get(RPC_PARAM_ADAPTIVE_QOS)
    return bool((latency and latency[0] < QOS_MAX_LATENCY_US) or (adaptive and adaptive[0]))


def is_map(handle: int, sc: int) -> bool:
    """Whether a message is a map the ``map_ns`` term charges: INIT-handle MMAP or MEM_MAP."""
    return handle == FASTRPC_INIT_HANDLE and (sc >> 24) & 0x1F in (RMID_INIT_MMAP, RMID_INIT_MEM_MAP)


# -- per call: the calling thread's override and account ------------------------------------
@dataclass(frozen=True)
class _Override:
    ns: int | None
    extra_ns: int


_OVERRIDES = _ext.load("_cdev").OVERRIDES
_OVERRIDE: ContextVar[_Override | None] = ContextVar("qdarpc_cost_override", default=None)


@contextlib.contextmanager
def override(ns: int | None = None, *, extra_ns: int = 0) -> Iterator[None]:
    """Inside the block, every message the calling thread (or asyncio task) sends to a DSP is
    charged ``ns`` instead of the formula (``None``: the formula), plus ``extra_ns``. Delivery
    is synchronous, so the DSP handles a call in the caller's thread, where this applies::

        with qda_core.dsp.cost.override(5_000_000):
            lib.remote_handle64_invoke(h, sc, args)   # modeled at 5 ms

    Blocks nest; the innermost wins."""
    if ns is not None and ns < 0 or extra_ns < 0:
        raise ValueError(f"modeled time must be >= 0 (ns={ns}, extra_ns={extra_ns})")
    token = _OVERRIDE.set(_Override(None if ns is None else int(ns), int(extra_ns)))
    _OVERRIDES.add(1)  # routes (GIL-free callers) serve nothing while any override is on
    try:
        yield
    finally:
        _OVERRIDES.add(-1)
        _OVERRIDE.reset(token)


def settle(cost: CostModel, ns: int) -> int:
    """The DSP's last step for one message charged ``ns`` by :meth:`CostModel.charge`: apply
    the caller's :func:`override`, count it on this thread, sleep it if ``cost.realtime``.
    Returns the figure that stands (the one traced and summed). Call it holding no lock."""
    o = _OVERRIDE.get()
    if o is not None:
        ns = (ns if o.ns is None else o.ns) + o.extra_ns
    account_add(ns)  # this thread's account, in C (the native lane adds to it too)
    if cost.realtime and ns > 0:
        time.sleep(ns / 1e9)
    return ns


def last_ns() -> int:
    """Modeled ns of the last message this thread had a DSP handle (0 before any). A
    ``remote_handle64_invoke`` is one message; an open or a map may send several (this is the
    last); a call refused before it reached a DSP leaves the figure of the one before."""
    return account()[0]


class Measure:
    """What :func:`measure` yields: ``ns``, the modeled time of the messages the thread sent in
    the block (final once the block ends), and ``messages``, how many."""

    __slots__ = ("_t0", "_n0", "ns", "messages")

    def __init__(self) -> None:
        _, self._t0, self._n0 = account()
        self.ns = self.messages = 0

    def _update(self) -> None:
        _, total, count = account()
        self.ns = total - self._t0
        self.messages = count - self._n0


@contextlib.contextmanager
def measure() -> Iterator[Measure]:
    """``with measure() as m: ...``; then ``m.ns`` is the modeled time of every message this
    thread sent inside the block (0 if none reached a DSP) and ``m.messages`` their number."""
    m = Measure()
    try:
        yield m
    finally:
        m._update()


class DspStats:
    """Counters of one emulated DSP; read them with :meth:`snapshot` (or one as an attribute).

    ``invokes`` counts every message, ``errors`` those answered non-zero, ``crashes`` PD
    crashes; ``bytes_in``/``bytes_out`` are buffer bytes by direction, ``handles_in``/
    ``handles_out`` the number of handle arguments; ``modeled_ns`` the summed cost model.

    Every message the DSP handles, from any thread, is recorded here, and a lock its callers
    share convoys their threads under the GIL (issue 15). So :meth:`record` takes none: it
    appends the message's figures to a queue (one ``deque.append``, atomic under the GIL), and
    the queue is folded into the totals under ``_lock`` by a reader, or by a recorder that
    finds the queue long and the lock free (it never waits for it). A record is counted
    whole or not yet, never lost.
    """

    _FIELDS = ("invokes", "errors", "crashes", "bytes_in", "bytes_out", "handles_in",
               "handles_out", "modeled_ns")
    _FOLD_AT = 512  # records queued before a recorder folds them

    def __init__(self):
        self._queue: deque[tuple[int, ...]] = deque()
        self._lock = threading.Lock()  # protects _totals (folding the queue into them, reading them)
        self._totals = [0] * len(self._FIELDS)
        #: What the native lanes record (C counters, no queue), folded in with the queue.
        self.native = Counters()

    def reset(self) -> None:
        with self._lock:
            self._fold()  # what was recorded before the reset goes with it
            self._totals = [0] * len(self._FIELDS)

    def record(self, *, bytes_in=0, bytes_out=0, handles_in=0, handles_out=0, ns=0,
               error=False, crash=False) -> None:
        q = self._queue
        q.append((1, bool(error), bool(crash), bytes_in, bytes_out, handles_in, handles_out, ns))
        if len(q) >= self._FOLD_AT and self._lock.acquire(False):
            try:
                self._fold()
            finally:
                self._lock.release()

    def _fold(self) -> None:
        """Add the records queued now to the totals (the caller holds ``_lock``); records
        appended meanwhile stay queued for the next fold."""
        q = self._queue
        batch = [q.popleft() for _ in range(len(q))]
        batch.append(self.native.take())
        self._totals = [t + sum(col) for t, col in zip(self._totals, zip(*batch))]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            self._fold()
            return dict(zip(self._FIELDS, self._totals))

    def __getattr__(self, name: str) -> int:
        if name in DspStats._FIELDS:
            return self.snapshot()[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"DspStats({self.snapshot()})"
