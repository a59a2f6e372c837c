"""Diagnostics: live-object counters (tests assert they return to zero) and QDARPC_DEBUG logging.

``QDARPC_DEBUG=gem,cb,rpmsg,dsp`` (or ``all``) enables debug logging for those categories.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import Counter

log = logging.getLogger("qdarpc")
_enabled = {c.strip() for c in os.environ.get("QDARPC_DEBUG", "").split(",") if c.strip()}

# Protects _live.
_lock = threading.Lock()
# A thread of the parent may hold a module lock at fork(); in the child only the forking thread
# exists, so the lock is free whatever its state was (the same for every module-level lock).
os.register_at_fork(after_in_child=_lock._at_fork_reinit)
_live: Counter[str] = Counter()


def dbg(category: str, msg: str, *args) -> None:
    """Log ``msg`` if ``category`` is enabled in QDARPC_DEBUG."""
    if category in _enabled or "all" in _enabled:
        log.debug(f"[{category}] " + msg, *args)


def created(kind: str) -> None:
    with _lock:
        _live[kind] += 1


def destroyed(kind: str) -> None:
    with _lock:
        _live[kind] -= 1


def live_objects() -> dict[str, int]:
    """Counts of emulator objects alive now, by kind (``gem``, ``backing``, ``accel_file``...)."""
    with _lock:
        return {k: v for k, v in _live.items() if v}


def count_value(counter: itertools.count) -> int:
    """The value ``next(counter)`` would return, without taking it. A counter many threads
    advance is an ``itertools.count``: ``next()`` is one C call, which no other thread
    interleaves with under the GIL (no lost update, no lock to convoy on); its repr is read in
    one C call too, so the value read is exact."""
    return int(repr(counter)[len("count("):-1])
