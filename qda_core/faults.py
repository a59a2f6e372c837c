"""Deterministic fault injection: one small language, parsed here, used everywhere.

A fault spec is a ``;``-separated list of rules (blanks around items are ignored)::

    KIND[:TARGET][@TRIGGER][,PARAM=VALUE...]

and optionally one ``seed=N`` item, which makes probabilistic triggers reproducible. Examples:

=====================================  =========================================================
``alloc:gem@3``                        the 3rd GEM allocation (accel GEM_CREATE) fails, ENOMEM
``alloc@2+``                           every allocation from the 2nd on (gem, dma, rpcmem) fails
``alloc:rpcmem@p=0.1;seed=7``          each rpcmem_alloc fails with probability 0.1, seeded
``nocb:cdsp``                          the next context bank cdsp would hand out is not free
``ssr:cdsp@invoke=5``                  cdsp restarts (SSR) while running its 5th invoke
``ssr:cdsp@time=20ms``                 cdsp restarts at the first invoke once 20 ms of modeled
                                       DSP time have passed
``crash:calculator.sum``               the PD crashes on the first call of calculator's ``sum``
``delay:calculator.max,time=5ms``      every call of ``max`` takes 5 ms more modeled time
``timeout:calculator@2``               the 2nd call into calculator never returns: the caller's
                                       wait is interrupted after ``after=`` (default 1 s)
``map@2,errno=EFAULT``                 the 2nd map (accel MAP, legacy MMAP / MEM_MAP) fails
``drop:cdsp@3``                        the DSP's reply to cdsp's 3rd invoke is lost
``corrupt@1``                          the first invoke's reply comes back with a garbled ctx word
=====================================  =========================================================

Kinds, what their TARGET names and which events they count (an *invoke* is a message to a
module's dynamic handle, the calls a program makes on its own handles; remotectl opens and
kernel messages are not counted):

* ``alloc`` (``gem`` | ``dma`` | ``rpcmem`` | none: any): allocations: the accel driver's
  GEM_CREATE, the legacy driver's ALLOC_DMA_BUFF (both reached by programs that use the driver
  directly or through the device shim), ``rpcmem_alloc`` (C or Python). The call fails with
  ``errno=`` (default ENOMEM); ``rpcmem_alloc`` returns NULL.
* ``nocb`` (a domain | none): a context bank being taken: the bus answers as if none were
  free, so each driver fails as it does then (misc EBUSY at open, QDA ENOMEM, the QDA shim
  EBUSY at first use). The QDA RFC shares one bank per thread (pid), so on accel only a
  thread's first session takes one.
* ``ssr`` (a domain, required): invokes on it; the DSP restarts mid-call and each driver
  answers as its kernel revision does (legacy EPIPE, accel ENODEV).
* ``crash`` / ``delay`` / ``timeout`` (``module`` or ``module.method``, the method a name of a
  Python skel's method or its number): calls of that method. ``crash``: the PD crashes (the
  DSP's retval 0x8000040d, ``BadStateError`` in Python, then every call on that PD fails). ``delay``: ``time=`` of modeled
  time added to the call (default trigger: every call). ``timeout``: the method does not return.
* ``map`` (``accel`` | ``legacy`` | none): map requests (accel MAP; legacy MMAP and MEM_MAP,
  which ``fastrpc_mmap``, ``remote_mmap64`` and ``remote_mem_map`` send); fails with ``errno=``
  (default ENOMEM).
* ``drop`` / ``corrupt`` (a domain | none): invokes; the reply is lost, or bit 40 of its ctx
  word flips. A driver that matches replies on the id bits alone (misc-7.2, the QDA RFC) still
  completes the call; one that checks a sequence number (misc-7.3, the QDA shim) or decodes
  the whole word (QDA v1) drops it, and the caller waits.

A caller whose reply never comes waits as the kernel does (interruptibly, no timeout); the
emulator interrupts that wait after ``after=`` (``timeout``, ``drop``, ``corrupt``) of modeled
time (default 1 s; the fault's trace event says how long) and the call fails with ``EINTR``,
what a program sees when a signal (a watchdog alarm) ends the wait. Nothing
really sleeps unless the SoC was built with ``QDARPC_REALTIME=1``.

Triggers: ``@N`` the Nth counted event only (default ``@1``; ``delay`` defaults to ``@1+``),
``@N+`` the Nth and every later one, ``@p=P`` each event with probability P (seeded),
``@invoke=N`` the same as ``@N`` for the kinds that count invokes, ``@time=DUR`` (``ssr``
only) the first invoke once the domain's modeled time reaches DUR. Durations: ``500ns``,
``20us``, ``5ms``, ``1s`` (a bare number is ns). Every rule counts its own events, so the same
spec and the same program give the same run. Each fault that fires is a trace event (kind
``inject``) and a record in :attr:`Faults.fired`.

Where a spec comes from: ``Soc(faults=...)``, else ``$QDARPC_FAULTS`` (read when the SoC is
built); :meth:`Faults.add` and :meth:`Faults.inject` add rules later.
"""
from __future__ import annotations

import errno as _errno
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from . import trace
from ._ext import load as _load
from .wire import DOMAIN_IDS
from .errors import ConfigError, errno_error

#: How many rule sets hold a rule now, as the native lanes read it (one C load each message):
#: while 0 they skip their fault checks. Kept by Faults._set_states.
_ARMED = _load("_cdev").ARMED

__all__ = ["ENV", "KINDS", "FaultError", "Rule", "Faults", "parse", "parse_duration"]

#: The environment variable a SoC reads its fault spec from.
ENV = "QDARPC_FAULTS"

#: Every kind: (what TARGET may be, params it takes, whether a target is required).
KINDS: dict[str, tuple[str, frozenset[str], bool]] = {
    "alloc": ("gem | dma | rpcmem", frozenset({"errno"}), False),
    "nocb": ("a DSP domain", frozenset(), False),
    "ssr": ("a DSP domain", frozenset(), True),
    "crash": ("module[.method]", frozenset(), True),
    "delay": ("module[.method]", frozenset({"time"}), True),
    "timeout": ("module[.method]", frozenset({"after"}), True),
    "map": ("accel | legacy", frozenset({"errno"}), False),
    "drop": ("a DSP domain", frozenset({"after"}), False),
    "corrupt": ("a DSP domain", frozenset({"after"}), False),
}
_ALLOC_TARGETS = ("gem", "dma", "rpcmem")
_MAP_TARGETS = ("accel", "legacy")
#: Kinds that leave a caller waiting for a reply that does not come.
_WAIT_KINDS = frozenset({"timeout", "drop", "corrupt"})
#: Kinds whose events are invokes (``@invoke=N`` allowed).
_INVOKE_KINDS = frozenset({"ssr", "drop", "corrupt"})
#: Modeled time a hung caller waits before its wait is interrupted, unless ``after=`` says.
DEFAULT_WAIT_NS = 1_000_000_000

_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DUR = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s)?$")
_NAME = re.compile(r"^[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?$")


_tls = threading.local()


def hung(wait_ns: int, realtime: bool = False) -> None:
    """The DSP withholds the reply to the message this thread is sending (a ``timeout``,
    ``drop`` or ``corrupt`` fault): the caller's wait ends after ``wait_ns`` of modeled time,
    slept for real when the DSP runs in real time (``QDARPC_REALTIME``, read per SoC)."""
    _tls.wait = (wait_ns, realtime)


def take_wait() -> tuple[int, bool] | None:
    """``(wait ns, realtime)`` that :func:`hung` set for this thread's message (None: no fault
    withheld it); clears it."""
    wait = getattr(_tls, "wait", None)
    _tls.wait = None
    return wait


@contextmanager
def quiet() -> Iterator[None]:
    """Events of this thread inside the block are not counted and fire nothing (a file's
    release: teardown stays deterministic and clean whatever the rules say)."""
    _tls.quiet = getattr(_tls, "quiet", 0) + 1
    try:
        yield
    finally:
        _tls.quiet -= 1


def wait_interrupted(wait: tuple[int, bool]) -> None:
    """A caller's hung wait ends (see :func:`hung`): sleeps it in real time, else returns."""
    ns, realtime = wait
    if realtime and ns > 0:
        time.sleep(ns / 1e9)


def fail_request(faults: "Faults | None", kind: str, name: str, detail: str) -> None:
    """A driver request (``alloc``, ``map``) meets the rules: raises the rule's errno if one fires."""
    rule = faults.check(kind, (name,), detail=detail) if faults is not None else None
    if rule is not None:
        raise errno_error(rule.errno, f"{detail}: injected by fault rule {rule}")


class FaultError(ConfigError):
    """A fault spec that does not parse; the message names the item and what is wrong."""


def parse_duration(text: str) -> int:
    """Nanoseconds of ``"5ms"``, ``"20us"``, ``"1s"``, ``"300ns"`` or ``"300"`` (ns)."""
    m = _DUR.match(text.strip())
    if not m:
        raise FaultError(f"bad duration {text!r} (use e.g. 500ns, 20us, 5ms, 1s)")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "ns"])


def _parse_errno(text: str) -> int:
    if text.isdigit():
        value = int(text)
    else:
        value = getattr(_errno, text.upper(), None)
        if not isinstance(value, int):
            raise FaultError(f"unknown errno {text!r} (use a name such as EFAULT, or a number)")
    if not 0 < value < 4096:
        raise FaultError(f"errno {text!r} out of range 1..4095")
    return value


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``nth``/``repeat``/``prob``/``at_ns`` are the trigger."""

    kind: str
    target: str = ""
    nth: int = 1
    repeat: bool = False
    prob: float | None = None
    at_ns: int | None = None
    errno: int = _errno.ENOMEM
    #: ``delay``: modeled time added; ``timeout``/``drop``/``corrupt``: the caller's wait.
    ns: int = 0
    text: str = ""

    def __str__(self) -> str:
        return self.text


def _parse_rule(item: str) -> Rule:
    head, *params = (p.strip() for p in item.split(","))
    head, at, trig = head.partition("@")
    kind, colon, target = (s.strip() for s in head.partition(":"))
    if kind not in KINDS:
        raise FaultError(f"{item!r}: unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
    what, allowed, required = KINDS[kind]
    if colon and not target:
        raise FaultError(f"{item!r}: empty target after ':'")
    if required and not target:
        raise FaultError(f"{item!r}: {kind} needs a target ({kind}:{what})")
    if target and not _NAME.match(target):
        raise FaultError(f"{item!r}: bad target {target!r}")
    if kind == "alloc" and target and target not in _ALLOC_TARGETS:
        raise FaultError(f"{item!r}: alloc target must be one of {', '.join(_ALLOC_TARGETS)}")
    if kind == "map" and target and target not in _MAP_TARGETS:
        raise FaultError(f"{item!r}: map target must be one of {', '.join(_MAP_TARGETS)}")
    if kind in ("nocb", "ssr", "drop", "corrupt") and target and target not in DOMAIN_IDS:
        raise FaultError(f"{item!r}: {kind} target must be a DSP domain: {', '.join(DOMAIN_IDS)}")
    kw: dict = {"kind": kind, "target": target, "repeat": kind == "delay"}
    trig = trig.strip()
    if at and not trig:
        raise FaultError(f"{item!r}: empty trigger after '@'")
    if trig:
        kw["repeat"] = False
        name, eq, value = (s.strip() for s in trig.partition("="))
        if not eq:
            name, value = "", trig
        if name == "p":
            try:
                prob = float(value)
            except ValueError:
                raise FaultError(f"{item!r}: bad probability {value!r}") from None
            if not 0.0 < prob <= 1.0:
                raise FaultError(f"{item!r}: probability must be in (0, 1]")
            kw.update(prob=prob, repeat=True)
        elif name == "time":
            if kind != "ssr":
                raise FaultError(f"{item!r}: @time= is for ssr only")
            try:
                kw["at_ns"] = parse_duration(value)
            except FaultError as exc:
                raise FaultError(f"{item!r}: {exc}") from None
        elif name in ("", "invoke"):
            if name == "invoke" and kind not in _INVOKE_KINDS:
                raise FaultError(f"{item!r}: @invoke= is for {', '.join(sorted(_INVOKE_KINDS))}")
            m = re.match(r"^(\d+)(\+?)$", value)
            if not m or int(m.group(1)) < 1:
                raise FaultError(f"{item!r}: trigger must be N or N+ with N >= 1, p=P, invoke=N or time=DUR")
            kw.update(nth=int(m.group(1)), repeat=bool(m.group(2)))
        else:
            raise FaultError(f"{item!r}: unknown trigger {name!r} (use N, N+, p=P, invoke=N, time=DUR)")
    seen: set[str] = set()
    for p in params:
        key, eq, value = (s.strip() for s in p.partition("="))
        if not eq or not value:
            raise FaultError(f"{item!r}: parameter {p!r} is not KEY=VALUE")
        if key == "seed":
            raise FaultError(f"{item!r}: seed is an item of its own: '...;seed={value}'")
        if key in seen:
            raise FaultError(f"{item!r}: parameter {key!r} given twice")
        seen.add(key)
        if key not in allowed:
            raise FaultError(f"{item!r}: {kind} takes no parameter {key!r}"
                             + (f" (it takes {', '.join(sorted(allowed))})" if allowed else ""))
        try:
            if key == "errno":
                kw["errno"] = _parse_errno(value)
            else:
                kw["ns"] = parse_duration(value)
        except FaultError as exc:
            raise FaultError(f"{item!r}: {exc}") from None
    if kind == "delay" and "ns" not in kw:
        raise FaultError(f"{item!r}: delay needs time=DUR")
    if kind in ("timeout", "drop", "corrupt"):
        kw.setdefault("ns", DEFAULT_WAIT_NS)
    return Rule(text=item, **kw)


def parse(spec: str) -> tuple[list[Rule], int | None]:
    """The rules of ``spec`` and its ``seed=`` (None if it gives none). :class:`FaultError` on
    anything that does not parse."""
    rules: list[Rule] = []
    seed = None
    for item in spec.split(";"):
        item = " ".join(item.split())
        if not item:
            continue
        if item.startswith("seed="):
            if seed is not None:
                raise FaultError(f"{item!r}: seed given twice")
            try:
                seed = int(item[5:])
            except ValueError:
                raise FaultError(f"{item!r}: seed must be an integer") from None
            continue
        rules.append(_parse_rule(item))
    return rules, seed


@dataclass
class _State:
    rule: Rule
    rng: random.Random
    rng0: tuple  # the stream's start, for reset()
    seen: int = 0
    fired: int = 0
    done: bool = False


@dataclass(frozen=True)
class Fired:
    """One fault that fired: the rule, what it hit, the count of that rule's events."""

    rule: str
    kind: str
    target: str
    n: int
    detail: str = ""

    def as_dict(self) -> dict:
        return {"rule": self.rule, "kind": self.kind, "target": self.target, "n": self.n,
                "detail": self.detail}


class Faults:
    """The fault rules of one SoC and what they did. Thread-safe.

    Hot paths ask :meth:`armed` (one set lookup) before :meth:`check`."""

    def __init__(self, spec: str | None = None):
        self._lock = threading.Lock()  # protects _states, _kinds, fired, _seed
        self._states: list[_State] = []
        self._kinds: frozenset[str] = frozenset()
        self._seed = 0
        #: Every fault that fired, in order (see :class:`Fired`).
        self.fired: list[Fired] = []
        if spec:
            self.add(spec)

    @classmethod
    def from_env(cls) -> "Faults":
        """Rules from ``$QDARPC_FAULTS`` (none if unset); a bad spec's error names the variable."""
        try:
            return cls(os.environ.get(ENV) or None)
        except FaultError as exc:
            raise FaultError(f"${ENV}: {exc}") from None

    def add(self, spec: str) -> list[Rule]:
        """Parse ``spec`` and add its rules (a ``seed=`` reseeds the rules it adds)."""
        rules, seed = parse(spec)
        with self._lock:
            if seed is not None:
                self._seed = seed
            for r in rules:
                # A stream per rule, from the seed and the rule's own text (the k-th copy of a
                # rule gets its own): adding or reordering other rules changes nothing.
                k = sum(st.rule.text == r.text for st in self._states)
                rng = random.Random(f"{self._seed}:{r.text}:{k}")
                self._states.append(_State(r, rng, rng.getstate()))
            self._set_states(self._states)
        return rules

    def remove(self, rules: list[Rule]) -> None:
        """Forget ``rules`` (as :meth:`add` returned them)."""
        ids = {id(r) for r in rules}
        with self._lock:
            self._set_states([s for s in self._states if id(s.rule) not in ids])

    @contextmanager
    def inject(self, spec: str) -> Iterator[list[Rule]]:
        """``with soc.faults.inject("alloc:gem@1"): ...``: the rules hold inside the block."""
        rules = self.add(spec)
        try:
            yield rules
        finally:
            self.remove(rules)

    def clear(self) -> None:
        """Forget every rule (what fired stays in :attr:`fired`)."""
        with self._lock:
            self._set_states([])

    def _set_states(self, states: list[_State]) -> None:
        """The rules are ``states`` now (caller holds the lock); :meth:`armed` follows, and so
        does the process' count of rule sets with a rule (``_ARMED``, read by the lanes)."""
        was = bool(self._kinds)
        self._states = states
        self._kinds = frozenset(s.rule.kind for s in states)
        if bool(self._kinds) != was:
            _ARMED.add(1 if self._kinds else -1)

    def __del__(self) -> None:
        if getattr(self, "_kinds", None) and _ARMED is not None:  # (None: at interpreter exit)
            _ARMED.add(-1)

    def reset(self) -> None:
        """Every rule counts from zero again, its random stream restarted (the same run can be
        made twice on one SoC: ``qdarpc ab`` does per side); :attr:`fired` empties."""
        with self._lock:
            for s in self._states:
                s.seen = s.fired = 0
                s.done = False
                s.rng.setstate(s.rng0)
            self.fired = []

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return [s.rule for s in self._states]

    def armed(self, kind: str) -> bool:
        """Some rule of ``kind`` is present (cheap; then call :meth:`check`)."""
        return kind in self._kinds

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds some rule is present for: empty (false) when no rule is, which is all a
        hot path needs to test."""
        return self._kinds

    def check(self, kind: str, names: tuple[str, ...] = (), *, detail: str = "",
              modeled_ns: int | None = None) -> Rule | None:
        """Count one event of ``kind`` for every rule whose target is empty or in ``names``
        (what the event is: ``("gem",)``, ``("cdsp",)``, ``("calculator", "calculator.sum",
        "calculator.2")``); the first rule that fires is returned and recorded, else None.
        ``modeled_ns``: the domain's modeled time so far (``ssr@time=``)."""
        if kind not in self._kinds or getattr(_tls, "quiet", 0):
            return None
        hit: Rule | None = None
        with self._lock:
            for s in self._states:
                r = s.rule
                if r.kind != kind or s.done or (r.target and r.target not in names):
                    continue
                s.seen += 1
                if r.at_ns is not None:
                    fire = modeled_ns is not None and modeled_ns >= r.at_ns
                    s.done = fire
                elif r.prob is not None:
                    fire = s.rng.random() < r.prob
                elif r.repeat:
                    fire = s.seen >= r.nth
                else:
                    fire = s.seen == r.nth
                    s.done = s.seen >= r.nth
                if fire and hit is None:
                    s.fired += 1
                    hit = r
                    if kind in _WAIT_KINDS:  # the wait is modeled: say here how long it was
                        detail = f"{detail}; the caller's wait ends after {r.ns} ns".lstrip("; ")
                    rec = Fired(r.text, kind, names[0] if names else "", s.seen, detail)
                    self.fired.append(rec)
        if hit is not None:
            tr = trace.RECORDER
            if tr is not None:
                tr.inject(hit.text, kind, rec.target, rec.n, detail)
        return hit

    def unfired(self) -> list[Rule]:
        """The rules that have not fired yet (a rule whose target is misspelled never does)."""
        with self._lock:
            return [s.rule for s in self._states if not s.fired]

    def summary(self) -> list[dict]:
        """Each fired fault as a dict (for reports and JSON)."""
        with self._lock:
            return [f.as_dict() for f in self.fired]

    def __repr__(self) -> str:
        return f"<Faults rules={[str(r) for r in self.rules]} fired={len(self.fired)}>"
