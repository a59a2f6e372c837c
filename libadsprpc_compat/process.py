"""What the C library holds once per process, shared by every :class:`~libadsprpc_compat.Library`.

Process memory is not per backend: an rpcmem buffer or a registered range goes by reference to
a handle of either backend, and a ``remote_handle64`` value routes itself to its Library. So
the registration table, the rpcmem allocations, the dma-handle registrations and the handle64
records live here, under one lock that also guards every Library's session table (a session's
teardown touches both).

The tables are mutated in place, never rebound: other modules (and the tests' hygiene check)
hold references to them.
"""
from __future__ import annotations

import itertools
import os
import threading
import weakref

from qda_core._ext import load as _load

from . import _remote

if _remote.__version__ != _load("_abi").__version__:  # a stale build would mis-marshal silently
    raise ImportError(f"libadsprpc_compat._remote was built for {_remote.__version__!r}, qda_core is "
                      f"{_load('_abi').__version__!r}; rebuild it with `pip install .`")

#: Protects everything below and every Library's session table. Re-entrant: a control request
#: that closes a session runs the teardown under the lock it already holds.
lock = threading.RLock()
#: Registered ranges (rpcmem + remote_register_buf): address -> (size, fd, attr).
REGS = _remote.RegTable()
#: rpcmem base address -> weak reference to its RpcMem (an unfreed, dropped RpcMem warns).
_rpcmem: dict[int, "weakref.ref"] = {}
#: While ``qdarpc ab`` runs a workload, the list every new RpcMem is also kept in, so the runner
#: frees what the workload left allocated however it dropped it (an RpcMem pins its own buffer,
#: a cycle: only the collector frees a dropped one, at any later allocation); None otherwise.
_keep: list | None = None
#: dma-buf fd -> [(len, attr)] from remote_register_dma_handle, consumed one per invoke.
_dma_regs: dict[int, list[tuple[int, int]]] = {}
#: remote_handle64 value -> its record (session, DSP handle, URI).
_records: dict[int, object] = {}
#: remote_handle64 values: opaque, pointer-like, never a static-PD value.
next_h64 = itertools.count(0x51D0_0000_1000, 0x40)
#: Session keys: the registration table caches per-session buffer references under them.
session_keys = itertools.count(1)
#: Every live Library (a fork and forget_fd walk them).
libraries: "weakref.WeakSet" = weakref.WeakSet()


class ApiState:
    """The module-level API's choices: its backend, the SoC set with ``use_soc``, its default
    Libraries, and whether a module-level open has fixed the backend."""

    def __init__(self):
        self.backend = os.environ.get("QDARPC_BACKEND", "accel") or "accel"
        self.soc = None
        self.used = False  # a module-level open happened: the backend is fixed
        self.libs: dict = {}  # backend name -> its default Library


state = ApiState()


def forget_fd(fd: int) -> None:
    """dma-buf ``fd`` is no longer registered anywhere: every session drops what it holds for it
    (on accel, the GEM handle it was imported as). Call under :data:`lock`."""
    for lib in list(libraries):
        for s in lib._sessions.values():
            s.backend.forget(fd)


#: Called by :func:`counts` first: each frees what a finalizer had to leave for later (rpcmem).
reapers: list = []


def counts() -> dict[str, int]:
    """How many rpcmem allocations, registered ranges, dma-handle registrations and handle64
    records the process holds (for leak checks); deferred frees are done first."""
    for reap in reapers:
        reap()
    with lock:
        return {"rpcmem": len(_rpcmem), "registered_ranges": len(REGS), "dma_regs": len(_dma_regs),
                "records": len(_records)}
