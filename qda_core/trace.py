"""Trace recorder: every driver ioctl, legacy API call and DSP dispatch, when switched on.

Off by default, and then free: hot paths test one module global, ``trace.RECORDER``, and do
nothing else when it is ``None``. Switch on with ``QDARPC_TRACE=<file>`` (written at exit) or::

    with qda_core.trace.recording() as rec:
        ...
    rec.events  # list of dicts, see SCHEMA_VERSION

Event schema (version 1), one dict per event; timestamps are ``time.perf_counter_ns()``:

* common: ``v`` (schema version), ``kind`` (``ioctl`` | ``api`` | ``dsp`` | ``fault`` | ``farf``), ``ts`` (start, ns),
  ``dur`` (ns), ``pid``, ``tid`` (thread id of the caller)
* ``ioctl``: ``driver`` (``accel`` | ``legacy``), ``node`` (device path), ``name``, ``nr``
  (full request number), ``fields`` (decoded struct fields), ``ret`` (kernel return: 0, -errno or
  the DSP retval), ``errno`` (0 or the positive errno), ``copied`` / ``shared`` (INVOKE: payload
  bytes copied inline / passed by reference)
* ``api``: ``name`` (legacy C name), ``args`` (short summary string), ``ret`` (AEE code)
* ``dsp``: ``domain``, ``channel``, ``client_id``, ``pd``, ``handle``, ``method``, ``sc``,
  ``retval``, ``modeled_ns`` (cost-model on-device time); a remotectl open also carries ``load``:
  ``file`` (the URI's file), ``loaded`` (what answered: ``builtin``, ``plugin:<dist>`` or the
  path; ``""`` if nothing did) and ``passed_over`` (``[{path, reason}]``: candidates found that
  could not run here, e.g. a Hexagon ELF)
* ``fault``: ``domain``, ``channel``, ``client_id``, ``fault`` (``smmu``: a PD reached a device
  address outside its context banks; ``sigsegv`` | ``sigbus`` | ``sigfpe`` | ``sigill``: a native
  skel faulted and its PD crashed), ``addr``, ``length``, ``detail``
* ``farf``: a skel's FARF message: ``domain``, ``channel``, ``client_id``, ``module`` (the PD and
  skel file it came from; ``""``/``-1`` when logged outside an invoke), ``level`` (``HAP_LEVEL_*``),
  ``runtime`` (a ``RUNTIME_*`` FARF), ``file``, ``line``, ``message``
* ``inject``: a fault injected on request (:mod:`qda_core.faults`): ``rule`` (as written),
  ``fault`` (its kind: ``alloc``, ``ssr``, ...), ``target`` (what it hit), ``n`` (the rule's
  event count when it fired), ``detail``
"""
from __future__ import annotations

import atexit
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from ._ext import load as _load
from .trace_formats import SCHEMA_VERSION  # the schema lives with its formats; no cycle back

#: The lanes' copy of ``RECORDER is not None`` (one C load per check): set with RECORDER, so
#: RECORDER is set only here (:func:`recording`, ``QDARPC_TRACE``).
_SWITCH = _load("_cdev").TRACE

#: The active recorder, or None. Read it once per hot-path call: ``tr = trace.RECORDER``.
RECORDER: "Recorder | None" = None

now = time.perf_counter_ns


class Recorder:
    """Collects events in memory (thread-safe append)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # protects events
        self.pid = os.getpid()

    def _add(self, kind: str, t0: int, t1: int, **fields: Any) -> None:
        ev = {"v": SCHEMA_VERSION, "kind": kind, "ts": t0, "dur": t1 - t0, "pid": self.pid,
              "tid": threading.get_native_id(), **fields}
        with self._lock:
            self.events.append(ev)

    def ioctl(self, driver: str, node: str, name: str, nr: int, fields: dict, ret: int, t0: int, t1: int,
              *, copied: int = 0, shared: int = 0) -> None:
        err = -ret if -4096 < ret < 0 else 0
        self._add("ioctl", t0, t1, driver=driver, node=node, name=name, nr=nr, fields=fields, ret=ret,
                  errno=err, copied=copied, shared=shared)

    def api(self, name: str, args: str, ret: int, t0: int, t1: int) -> None:
        self._add("api", t0, t1, name=name, args=args, ret=ret)

    def dsp(self, domain: str, channel: str, client_id: int, pd: int, handle: int, sc: int, retval: int,
            modeled_ns: int, t0: int, t1: int, *, load: dict | None = None) -> None:
        extra = {"load": load} if load is not None else {}
        self._add("dsp", t0, t1, domain=domain, channel=channel, client_id=client_id, pd=pd, handle=handle,
                  method=(sc >> 24) & 0x1F, sc=sc, retval=retval, modeled_ns=modeled_ns, **extra)

    def fault(self, domain: str, channel: str, client_id: int, fault: str, addr: int, length: int, detail: str,
              t0: int, t1: int) -> None:
        self._add("fault", t0, t1, domain=domain, channel=channel, client_id=client_id, fault=fault, addr=addr,
                  length=length, detail=detail)

    def inject(self, rule: str, fault: str, target: str, n: int, detail: str) -> None:
        t = now()
        self._add("inject", t, t, rule=rule, fault=fault, target=target, n=n, detail=detail)

    def farf(self, domain: str, channel: str, client_id: int, module: str, level: int, runtime: bool, file: str,
             line: int, message: str, t: int) -> None:
        self._add("farf", t, t, domain=domain, channel=channel, client_id=client_id, module=module, level=level,
                  runtime=runtime, file=file, line=line, message=message)


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record everything inside the block (nests: the outer recorder is restored after)."""
    global RECORDER
    prev, rec = RECORDER, Recorder()
    RECORDER = rec
    _SWITCH.on = True
    try:
        yield rec
    finally:
        RECORDER = prev
        _SWITCH.on = prev is not None


def _from_env() -> None:
    global RECORDER
    path = os.environ.get("QDARPC_TRACE")
    if not path:
        return
    RECORDER = rec = Recorder()
    _SWITCH.on = True

    def _write() -> None:
        from .trace_formats import write

        # Recorded when each call returns; written in start order, parents before children.
        write(sorted(rec.events, key=lambda e: (e["ts"], -e["dur"])), path)

    atexit.register(_write)


_from_env()
