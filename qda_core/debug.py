"""Diagnostics: live-object counters (tests assert they return to zero) and QDARPC_DEBUG logging.

``QDARPC_DEBUG=gem,cb,rpmsg,dsp`` (or ``all``) enables debug logging for those categories.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading

log = logging.getLogger("qdarpc")
_enabled = {c.strip() for c in os.environ.get("QDARPC_DEBUG", "").split(",") if c.strip()}

# Live objects per kind as two counters, (created, destroyed), counted without a lock: objects
# are made and freed on invoke paths of every thread (a legacy by-reference invoke makes and frees
# two per call today), and a lock all threads share convoys them under the GIL (issue 15). See
# count_value.
_counts: dict[str, tuple[itertools.count, itertools.count]] = {}
_lock = threading.Lock()  # protects adding a kind to _counts
# A thread of the parent may hold a module lock at fork(); in the child only the forking thread
# exists, so the lock is free whatever its state was (the same for every module-level lock).
os.register_at_fork(after_in_child=_lock._at_fork_reinit)


def dbg(category: str, msg: str, *args) -> None:
    """Log ``msg`` if ``category`` is enabled in QDARPC_DEBUG."""
    if category in _enabled or "all" in _enabled:
        log.debug(f"[{category}] " + msg, *args)


def _counters(kind: str) -> tuple[itertools.count, itertools.count]:
    c = _counts.get(kind)
    if c is None:
        with _lock:
            c = _counts.setdefault(kind, (itertools.count(), itertools.count()))
    return c


def created(kind: str) -> None:
    next(_counters(kind)[0])


def destroyed(kind: str) -> None:
    next(_counters(kind)[1])


def live_objects() -> dict[str, int]:
    """Counts of emulator objects alive now, by kind (``gem``, ``backing``, ``accel_file``...)."""
    live = {}
    for kind, (made, freed) in list(_counts.items()):
        gone = count_value(freed)  # read first: every object freed was made before, so n >= 0
        n = count_value(made) - gone
        if n:
            live[kind] = n
    return live


def count_value(counter: itertools.count) -> int:
    """The value ``next(counter)`` would return, without taking it. A counter many threads
    advance is an ``itertools.count``: ``next()`` is one C call, which no other thread
    interleaves with under the GIL (no lost update, no lock to convoy on); its repr is read in
    one C call too, so the value read is exact."""
    return int(repr(counter)[len("count("):-1])
