"""The qdarpc pytest plugin: an emulated SoC per test, FastRPC on both backends, faults on
request, and the trace of a failing test in its report.

Installed with qdarpc (``pytest11`` entry point ``qdarpc``), so every pytest run of a project
that has qdarpc loads it; ``-p no:qdarpc`` turns it off, ``-p qdarpc`` turns it on under
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``. Loading it imports only pytest: the fixtures and hooks of
the tests that use the fixtures or the marker import qda_core and libadsprpc_compat, so other
tests pay nothing (no emulator import, SoC, Library or trace recorder).

Fixtures

* ``qdarpc_soc``: a fresh :class:`qda_core.soc.Soc`, the process default for the test
  (``Soc.as_default()``: ``rpcmem_alloc`` and the module-level functions act on it). At teardown
  it fails the test, naming what leaked, if a ``remote_handle64``/``remote_handle`` or a session
  of any Library is still open on it, a DSP process is left, a context bank is still taken (a
  device file left open) or an ``rpcmem`` allocation made during the test was not freed; it
  cleans up what it can first. Faults: ``qdarpc_soc.faults.add(spec)`` or
  ``with qdarpc_soc.faults.inject(spec):`` (:mod:`qda_core.faults`);
  ``qdarpc_soc.faults.fired`` lists what fired.
* ``fastrpc``: a :class:`libadsprpc_compat.Library` on ``qdarpc_soc``; ``fastrpc.backend`` is
  its backend. While the test runs the module-level functions (and libcdsprpc's C functions)
  act on it (:func:`libadsprpc_compat.use_library`): code that calls
  ``rpc.remote_handle64_open`` runs on the test's backend. Closed (``close_all``) at teardown.

Marker (every argument optional; on a function, class or module, the closest setting of each
argument wins)::

    @pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal", kernel="accel:qda-v1-2026-05",
                        faults="alloc:rpcmem@1; ssr:cdsp@invoke=2")

* ``backends``: the test runs once per backend, the backend in its id (``test_x[accel]``,
  ``test_x[legacy]``). It sets the backend of ``fastrpc``: on a test function that does not use
  ``fastrpc`` it fails that test's setup; from a class or module marker such a test runs once.
  Without it ``fastrpc`` runs once on the module-level API's backend: ``$QDARPC_BACKEND``, else
  ``accel``. A wrong marker argument fails the setup of the tests it applies to.
* ``soc``: a profile name (``default``, ``full``, ``minimal``: ``qda_core.soc.PROFILES``) or a
  ``.json``/``.toml`` profile file, relative to the test file's directory; default
  ``$QDARPC_SOC``, else ``default``.
* ``kernel``: the kernel revisions, e.g. ``"accel:qda-v1-2026-05,legacy:misc-7.3"``
  (:mod:`qda_core.kernels`); default the profile's, else ``$QDARPC_KERNEL``, else the current.
* ``faults``: a fault spec (``KIND[:TARGET][@TRIGGER][,PARAM=VALUE]`` rules separated by ``;``,
  :mod:`qda_core.faults`) or a list of them; default ``$QDARPC_FAULTS``, else none.

A failing test (setup, call or teardown) that used ``qdarpc_soc`` gets a report section
``qdarpc trace (last N events)``: the SoC, the fault rules that fired, and the last N API calls,
ioctls, DSP messages and injected faults, nested as they ran. N is ``--qdarpc-trace-tail=N`` or
the ini option ``qdarpc_trace_tail`` (default 30; 0 records nothing).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

__all__ = ["qdarpc_soc", "fastrpc", "format_trace", "DEFAULT_TRACE_TAIL", "MARKER_ARGS"]

#: Events a failing test's report shows when neither the option nor the ini setting says.
DEFAULT_TRACE_TAIL = 30
#: The keyword arguments ``@pytest.mark.qdarpc`` takes.
MARKER_ARGS = ("backends", "soc", "kernel", "faults")

_MARKER_DOC = ("qdarpc(backends=[...], soc=..., kernel=..., faults=...): run the test once per FastRPC "
               "backend of the fastrpc fixture, on an emulated SoC of that profile, kernel revisions and "
               "fault rules (the qdarpc pytest plugin)")


class _TestState:
    """What the fixtures leave for the report hook of one test (plain data once torn down: the
    item outlives the test and must not keep emulator objects alive)."""

    __slots__ = ("soc", "events", "start", "header", "fired", "unfired", "leaks", "backend", "shown")

    def __init__(self):
        self.soc = None
        self.events: list | None = []
        self.start = 0
        self.header = ""
        self.fired: list[dict] = []
        self.unfired: list[str] = []  # rules that never fired (a misspelled module or method?)
        self.leaks: list[str] = []
        self.backend = ""
        self.shown = False


_STATE = pytest.StashKey[_TestState]()
_TAIL = pytest.StashKey[int]()


# --- options and marker ----------------------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("qdarpc", "qdarpc (emulated FastRPC)")
    group.addoption("--qdarpc-trace-tail", type=int, default=None, metavar="N",
                    help="trace events shown in a failing qdarpc test's report "
                         f"(default: ini qdarpc_trace_tail, else {DEFAULT_TRACE_TAIL}; 0: no trace)")
    parser.addini("qdarpc_trace_tail", f"trace events shown in a failing qdarpc test's report "
                  f"(default {DEFAULT_TRACE_TAIL}; 0: no trace)", default=str(DEFAULT_TRACE_TAIL))


def pytest_configure(config):
    config.addinivalue_line("markers", _MARKER_DOC)
    config.stash[_TAIL] = _trace_tail(config)  # a bad value is a usage error now, not in some test


def _trace_tail(config) -> int:
    n = config.getoption("qdarpc_trace_tail")
    if n is None:
        raw = config.getini("qdarpc_trace_tail")
        try:
            n = int(raw)
        except ValueError:
            raise pytest.UsageError(f"ini qdarpc_trace_tail = {raw!r}: not an integer") from None
    if n < 0:
        raise pytest.UsageError(f"qdarpc trace tail {n}: must be >= 0")
    return n


def _bad(node, msg: str) -> pytest.fail.Exception:
    """The failure of a test whose marker arguments are wrong (raise it)."""
    return pytest.fail.Exception(f"{node.nodeid}: @pytest.mark.qdarpc: {msg}", pytrace=False)


def _options(node) -> dict:
    """The marker arguments in force for ``node`` (closest marker first), validated."""
    opts: dict = {}
    for mark in node.iter_markers("qdarpc"):
        if mark.args:
            raise _bad(node, f"takes keyword arguments only ({', '.join(MARKER_ARGS)}), got {mark.args!r}")
        for key, value in mark.kwargs.items():
            if key not in MARKER_ARGS:
                raise _bad(node, f"unknown argument {key!r}; it takes {', '.join(MARKER_ARGS)}")
            opts.setdefault(key, value)
    if "backends" in opts:
        backends = opts["backends"]
        backends = [backends] if isinstance(backends, str) else backends
        from libadsprpc_compat.library import BACKENDS

        if not isinstance(backends, (list, tuple)) or not backends \
                or any(b not in BACKENDS for b in backends) or len(set(backends)) != len(backends):
            raise _bad(node, f"backends={opts['backends']!r}: give a non-empty list of distinct backends "
                             f"from {', '.join(BACKENDS)}")
        opts["backends"] = list(backends)
    for key in ("soc", "kernel"):
        if key in opts and not isinstance(opts[key], str):
            raise _bad(node, f"{key}={opts[key]!r}: must be a string")
    faults = opts.get("faults")
    if faults is not None:
        if isinstance(faults, (list, tuple)) and all(isinstance(f, str) for f in faults):
            opts["faults"] = ";".join(faults)
        elif not isinstance(faults, str):
            raise _bad(node, f"faults={faults!r}: must be a fault spec string or a list of them")
    soc = opts.get("soc")
    if soc is not None and (os.path.sep in soc or soc.endswith((".json", ".toml"))) and not os.path.isabs(soc):
        opts["soc"] = str(node.path.parent / soc)  # a profile file next to the test, wherever pytest runs
    return opts


def pytest_generate_tests(metafunc):
    definition = metafunc.definition
    if definition.get_closest_marker("qdarpc") is None:
        return
    try:
        backends = _options(definition).get("backends")
    except pytest.fail.Exception:
        return  # reported by that test's setup (pytest_runtest_setup), not by the file's collection
    # A class or module marker covers tests that need no backend: those run once.
    if backends is not None and "fastrpc" in metafunc.fixturenames:
        metafunc.parametrize("fastrpc", backends, indirect=True, ids=backends)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Fail the setup of a test whose marker is wrong (before its fixtures run)."""
    if item.get_closest_marker("qdarpc") is None:
        return
    _options(item)
    if "fastrpc" not in getattr(item, "fixturenames", ()) and any(
            m.name == "qdarpc" and "backends" in m.kwargs for m in getattr(item, "own_markers", ())):
        raise _bad(item, "backends= chooses the backend of the fastrpc fixture, which this test does not use")


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def qdarpc_soc(request):
    """A fresh emulated SoC (:class:`qda_core.soc.Soc`) for this test, the process default while
    it runs, leak-checked at teardown; set it up with ``@pytest.mark.qdarpc(soc=, kernel=,
    faults=)``. Add faults with ``qdarpc_soc.faults.add(spec)`` or ``with
    qdarpc_soc.faults.inject(spec):``; ``qdarpc_soc.faults.fired`` lists those that fired."""
    from libadsprpc_compat import process
    from qda_core.soc import Soc

    node = request.node
    opts = _options(node)
    try:
        soc = Soc(opts.get("soc"), kernel=opts.get("kernel"), faults=opts.get("faults"))
    except (ValueError, OSError) as exc:  # a bad profile, kernel selection or fault spec
        # qda_core's message names the $QDARPC_* variable at fault; name the marker's part here.
        args = ", ".join(f"{k}={opts[k]!r}" for k in ("soc", "kernel", "faults") if k in opts)
        where = f" of @pytest.mark.qdarpc({args})" if args else ""
        raise pytest.fail.Exception(f"{node.nodeid}: qdarpc_soc: cannot build the SoC{where}: {exc}",
                                    pytrace=False) from None
    st = _TestState()
    st.soc = soc
    st.header = f"soc {_profile_name(opts.get('soc'))}, kernel {soc.kernel_spec}"
    node.stash[_STATE] = st
    with process.lock:
        rpcmem_before = set(process._rpcmem)
    try:
        with soc.as_default(), _recorded(st, request.config.stash[_TAIL]):
            yield soc
            _teardown(soc, st, rpcmem_before)  # recorded too: a leak's report shows the cleanup
    finally:
        st.fired = soc.faults.summary()
        st.unfired = [r.text for r in soc.faults.unfired()]
        st.soc = None
    if st.leaks:
        pytest.fail("qdarpc_soc: the test left FastRPC state behind (cleaned up now):\n  "
                    + "\n  ".join(st.leaks), pytrace=False)


@contextmanager
def _recorded(st: _TestState, tail: int):
    """Record the trace of the test into ``st`` (nothing when ``tail`` is 0)."""
    from qda_core import trace

    rec = trace.RECORDER
    if not tail:
        st.events = None
        yield
    elif rec is not None:  # someone records already ($QDARPC_TRACE): share it, do not divert it
        st.events, st.start = rec.events, len(rec.events)
        try:
            yield
        finally:
            st.events, st.start = rec.events[st.start:], 0
    else:
        with trace.recording() as rec:
            st.events = rec.events
            yield


@pytest.fixture
def fastrpc(request, qdarpc_soc):
    """A :class:`libadsprpc_compat.Library` on ``qdarpc_soc``; its backend is the marker's
    (``@pytest.mark.qdarpc(backends=[...])``: one run per backend), else ``$QDARPC_BACKEND`` or
    ``accel``. The module-level functions act on it while the test runs
    (:func:`libadsprpc_compat.use_library`). Closed at teardown; a handle the test left open
    fails the test there."""
    from libadsprpc_compat import process
    from libadsprpc_compat.default import use_library
    from libadsprpc_compat.library import Library

    backend = getattr(request, "param", None) or process.state.backend
    lib = Library(backend, qdarpc_soc)
    st = request.node.stash.get(_STATE, None)
    if st is not None:
        st.backend = backend
    try:
        with use_library(lib):
            yield lib
    finally:
        if st is not None:
            st.leaks += _open_sessions(lib, qdarpc_soc, f"fastrpc ({backend}; the module-level API in this test)")
        lib.close_all()


# --- teardown and its leak check -------------------------------------------------------------
def _profile_name(soc) -> str:
    return soc or os.environ.get("QDARPC_SOC") or "default"


def _open_sessions(lib, soc, who: str) -> list[str]:
    """What ``lib`` still has open on ``soc``: one line per session, naming its handles."""
    from libadsprpc_compat import process
    from libadsprpc_compat.constants import DOMAIN_NAMES

    out = []
    with process.lock:
        for s in list(lib._sessions.values()):
            if s.backend.soc is not soc or s.dead:
                continue
            dom = DOMAIN_NAMES.get(s.domain, str(s.domain))
            what = [f"remote_handle64 {h:#x} ({process._records[h].uri})" for h in sorted(s.records)
                    if h in process._records]
            what += [f"remote_handle {h:#x}" for h in sorted(s.nondomain)]
            if what:
                out.append(f"{who}: {', '.join(what)} left open on {dom}")
            elif s.maps or s.static:
                out.append(f"{who}: a session on {dom} with {len(s.maps) + len(s.static)} DSP mapping(s) left "
                           f"(fastrpc_munmap/remote_munmap64 them, or close_all())")
    return out


def _teardown(soc, st: _TestState, rpcmem_before: set) -> None:
    """Close what the test left on ``soc`` and note each leak in ``st.leaks``; keep what the
    report needs as plain data."""
    from libadsprpc_compat import process
    from libadsprpc_compat.rpcmem import rpcmem_free

    for lib in list(process.libraries):
        if process.state.libs.get(lib.backend) is lib:
            leaked = _open_sessions(lib, soc, f"the module-level API ({lib.backend})")
        else:
            leaked = [line + "; call close_all()" for line in
                      _open_sessions(lib, soc, f"Library({lib.backend!r}) made by the test")]
        st.leaks += leaked
        with process.lock:
            for s in [s for s in lib._sessions.values() if s.backend.soc is soc]:
                lib._drop(s)
    with process.lock:
        new = [ref() for base, ref in process._rpcmem.items() if base not in rpcmem_before]
    new = [m for m in new if m is not None]
    if new:
        st.leaks.append(f"rpcmem: {len(new)} allocation(s) not freed: {', '.join(map(repr, new[:5]))}"
                        + (" ..." if len(new) > 5 else ""))
        for m in new:
            rpcmem_free(m)
    for name, dom in soc.domains.items():
        procs = dom.dsp.processes()
        if procs:
            st.leaks.append(f"{name}: DSP process(es) left: " + ", ".join(
                f"{p.kind} PD client {p.client_id} via {p.channel} ({p.state})" for p in procs)
                + " (a device file left open?)")
        used = len(dom.bus.cbs) - dom.bus.free_count
        if used:
            st.leaks.append(f"{name}: {used} of {len(dom.bus.cbs)} context bank(s) still taken (a device file "
                            f"left open?)")


# --- the trace in a failing test's report ----------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    st = item.stash.get(_STATE, None)
    if st is None:
        return
    rep = outcome.get_result()
    if rep.failed and not st.shown and st.events is not None:
        tail = item.config.stash[_TAIL]
        if tail:
            st.shown = True
            fired = st.fired if st.soc is None else st.soc.faults.summary()
            unfired = st.unfired if st.soc is None else [r.text for r in st.soc.faults.unfired()]
            head = st.header + (f", backend {st.backend}" if st.backend else "")
            events = st.events[st.start:]
            rep.sections.append((f"qdarpc trace (last {min(tail, len(events))} events)",
                                 format_trace(events, tail, header=head, fired=fired, unfired=unfired)))
    if call.when == "teardown":
        del item.stash[_STATE]  # the events go with the test


def _fmt_value(key: str, v) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        text = v.hex() if isinstance(v, (bytes, bytearray)) else str(v)
        return text if len(text) <= 24 else text[:21] + "..."
    if key == "sc":
        return f"{v & 0xFFFF_FFFF:#010x}"
    return f"{v:#x}" if v >= 0x10000 else str(v)


def _describe(ev: dict) -> str:
    from qda_core.trace_formats import slice_name, ret_name

    kind = ev["kind"]
    err = ret_name(ev)
    if kind == "api":
        text = f"api    {ev['name']}({ev['args']})"
    elif kind == "ioctl":
        fields = " ".join(f"{k}={_fmt_value(k, v)}" for k, v in ev["fields"].items())
        moved = "".join(f" {k} {ev[k]} B" for k in ("copied", "shared") if ev[k])
        text = f"ioctl  {ev['driver']} {ev['name']} {fields}{moved}".rstrip()
    elif kind == "dsp":
        load = ev.get("load")
        loaded = f" load {load['file']}: {load['loaded'] or 'nothing'}" if load else ""
        text = (f"dsp    {slice_name(ev).removeprefix('dsp ')} sc {ev['sc']:#010x} via {ev['channel']} "
                f"[modeled {ev['modeled_ns'] / 1000:.1f} us]{loaded}")
    elif kind == "inject":
        text = (f"INJECT {ev['rule']} -> {ev['target'] or ev['fault']} (its event {ev['n']})"
                + (f": {ev['detail']}" if ev["detail"] else ""))
    elif kind == "fault":
        text = f"FAULT  {slice_name(ev)}" + (f": {ev['detail']}" if ev["detail"] else "")
    else:
        text = f"farf   {slice_name(ev).removeprefix('FARF ')}"
    return f"{text} -> {err}" if err else text


def format_trace(events: list[dict], tail: int = DEFAULT_TRACE_TAIL, *, header: str = "",
                 fired: list[dict] | None = None, unfired: list[str] | None = None) -> str:
    """The last ``tail`` of ``events`` (:mod:`qda_core.trace` records) as text, one line each:
    time since the first event, then the event, indented under the call it ran inside (an API
    call, its ioctls, the DSP work they caused), with its error name if it failed. ``header``,
    the faults that ``fired`` (:meth:`qda_core.faults.Faults.summary`) and the rules that never
    did (``unfired``: their texts) come first."""
    evs = sorted(events, key=lambda e: (e["ts"], -e["dur"]))  # parents before their children
    depths, open_until = [], {}
    for ev in evs:
        stack = open_until.setdefault(ev["tid"], [])
        while stack and stack[-1] <= ev["ts"] and not (stack[-1] == ev["ts"] and ev["dur"] == 0):
            stack.pop()
        depths.append(len(stack))
        stack.append(ev["ts"] + ev["dur"])
    fired = fired or []
    lines = [header] if header else []
    for f in fired:
        lines.append(f"fault fired: {f['rule']} -> {f['target'] or f['kind']} (its event {f['n']})"
                     + (f": {f['detail']}" if f.get("detail") else ""))
    if not fired:
        lines.append("faults fired: none")
    for text in unfired or ():
        lines.append(f"fault rule never fired: {text} (its event never came, or a target is misspelled)")
    shown = evs[-tail:] if tail else []
    skipped = len(evs) - len(shown)
    lines.append(f"{len(evs)} events" + (f", the first {skipped} not shown (--qdarpc-trace-tail)" if skipped else ""))
    origin = evs[0]["ts"] if evs else 0
    threads = len({e["tid"] for e in shown}) > 1
    for ev, depth in zip(shown, depths[skipped:]):
        who = f"[tid {ev['tid']}] " if threads else ""
        lines.append(f"{(ev['ts'] - origin) / 1e6:+10.3f} ms  {who}{'  ' * depth}{_describe(ev)}")
    return "\n".join(lines)
