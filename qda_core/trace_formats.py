"""Output formats of the trace recorder (:mod:`qda_core.trace`), kept off the hot path.

* JSON Lines (``.jsonl``): one schema-v1 event per line, exactly the recorder's dicts; the
  lossless form, read back with :func:`read_jsonl`.
* Chrome trace-event JSON (``.json``): what Perfetto UI and ``chrome://tracing`` open. Every event
  is a complete (``"ph": "X"``) slice with ``ts``/``dur`` in microseconds relative to the first
  event, on the track of its ``pid``/``tid``; ``cat`` is the event kind (``api``, ``ioctl``,
  ``dsp``, ``fault``, ``farf``). API calls, the ioctls they make and the DSP work those cause run on the caller's
  thread with nested time ranges, so they show as nested slices.

:func:`summarize` condenses a trace (top ioctls, bytes copied vs shared, errors); :data:`SCHEMA`
is the JSON Schema of one event and :func:`validate_event` checks an event against it without
third-party packages.
"""
from __future__ import annotations

import errno as _errno
import json
import os
from collections import Counter, defaultdict
from typing import IO, Any, Iterable


__all__ = ["write", "to_jsonl", "read_jsonl", "to_chrome", "summarize", "SCHEMA", "validate_event",
           "validate_events", "TraceFormatError", "ret_name", "slice_name"]

#: Version of the event schema below; every event carries it as ``v``.
SCHEMA_VERSION = 1
KINDS = ("api", "ioctl", "dsp", "fault", "farf", "inject")
#: Kinds a summary always counts (others are counted when a trace has them).
_SUMMARY_KINDS = ("api", "ioctl", "dsp", "fault")


class TraceFormatError(ValueError):
    """A trace file or event that does not follow the schema; the message names the place."""


# --- schema -----------------------------------------------------------------------------------
_INT = {"type": "integer"}
_UINT = {"type": "integer", "minimum": 0}
_COMMON = {
    "v": {"const": SCHEMA_VERSION},
    "ts": _INT,
    "dur": _UINT,
    "pid": _UINT,
    "tid": _UINT,
}
_KIND_FIELDS: dict[str, dict[str, dict]] = {
    "ioctl": {
        "driver": {"enum": ["accel", "legacy", "dma_heap"]},
        "node": {"type": "string"},
        "name": {"type": "string"},
        "nr": _UINT,
        "fields": {"type": "object"},
        "ret": _INT,
        "errno": _UINT,
        "copied": _UINT,
        "shared": _UINT,
    },
    "api": {
        "name": {"type": "string"},
        "args": {"type": "string"},
        "ret": _INT,
    },
    "dsp": {
        "domain": {"type": "string"},
        "channel": {"type": "string"},
        "client_id": _INT,
        "pd": _INT,
        "handle": _UINT,
        "method": {"type": "integer", "minimum": 0, "maximum": 31},
        "sc": _UINT,
        "retval": _INT,
        "modeled_ns": _UINT,
    },
    "fault": {
        "domain": {"type": "string"},
        "channel": {"type": "string"},
        "client_id": _INT,
        "fault": {"enum": ["smmu", "sigsegv", "sigbus", "sigfpe", "sigill"]},
        "addr": _UINT,
        "length": _UINT,
        "detail": {"type": "string"},
    },
    "inject": {
        "rule": {"type": "string"},
        "fault": {"enum": ["alloc", "nocb", "ssr", "crash", "delay", "timeout", "map", "drop", "corrupt"]},
        "target": {"type": "string"},
        "n": _UINT,
        "detail": {"type": "string"},
    },
    "farf": {
        "domain": {"type": "string"},
        "channel": {"type": "string"},
        "client_id": _INT,
        "module": {"type": "string"},
        "level": _UINT,
        "runtime": {"type": "boolean"},
        "file": {"type": "string"},
        "line": _INT,
        "message": {"type": "string"},
    },
}
_STR = {"type": "string"}
#: Fields some events of a kind carry (the ``dsp`` event of a remotectl open: what loaded).
_OPTIONAL_FIELDS: dict[str, dict[str, dict]] = {
    "dsp": {
        "load": {
            "type": "object",
            "properties": {
                "file": _STR,
                "loaded": _STR,
                "passed_over": {"type": "array", "items": {
                    "type": "object", "properties": {"path": _STR, "reason": _STR},
                    "required": ["path", "reason"], "additionalProperties": False}},
            },
            "required": ["file", "loaded", "passed_over"],
            "additionalProperties": False,
        },
    },
}


def _kind_schema(kind: str) -> dict:
    props = {**_COMMON, "kind": {"const": kind}, **_KIND_FIELDS[kind]}
    required = sorted(props)
    props.update(_OPTIONAL_FIELDS.get(kind, {}))
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


#: JSON Schema (draft 2020-12) of one event record of schema version 1.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://qdarpc.invalid/schema/trace-event-v1.json",
    "title": "qdarpc trace event (schema v1)",
    "oneOf": [_kind_schema(k) for k in KINDS],
}

_JSON_TYPES = {"integer": int, "string": str, "object": dict, "array": list, "boolean": bool}


def _check(value: Any, schema: dict, where: str) -> list[str]:
    """The subset of JSON Schema that :data:`SCHEMA` uses (type, const, enum, min/max, objects,
    arrays)."""
    errs: list[str] = []
    if "const" in schema and (value != schema["const"] or isinstance(value, bool)):
        return [f"{where}: must be {schema['const']!r}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: must be one of {schema['enum']}, got {value!r}"]
    typ = schema.get("type")
    if typ == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema integers are mathematical: 3.0 is one
    if typ is not None and (not isinstance(value, _JSON_TYPES[typ]) or (isinstance(value, bool) != (typ == "boolean"))):
        return [f"{where}: must be {'an' if typ[0] in 'aeiou' else 'a'} {typ}, got {type(value).__name__}"]
    if "minimum" in schema and value < schema["minimum"]:
        errs.append(f"{where}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errs.append(f"{where}: {value} > maximum {schema['maximum']}")
    if typ == "object" and "properties" in schema:
        props = schema["properties"]
        errs += [f"{where}: missing {k!r}" for k in schema.get("required", ()) if k not in value]
        if schema.get("additionalProperties") is False:
            errs += [f"{where}: unexpected field {k!r}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errs += _check(value[k], sub, f"{where}.{k}")
    if typ == "array" and "items" in schema:
        for i, item in enumerate(value):
            errs += _check(item, schema["items"], f"{where}[{i}]")
    return errs


def validate_event(ev: Any, where: str = "event") -> list[str]:
    """Problems of one event against :data:`SCHEMA` (empty list: valid)."""
    if not isinstance(ev, dict):
        return [f"{where}: must be an object, got {type(ev).__name__}"]
    kind = ev.get("kind")
    if kind not in KINDS:
        return [f"{where}.kind: must be one of {list(KINDS)}, got {kind!r}"]
    return _check(ev, _kind_schema(kind), where)


def validate_events(events: Iterable[Any]) -> None:
    """Raise :class:`TraceFormatError` naming the first invalid event."""
    for i, ev in enumerate(events):
        errs = validate_event(ev, f"event {i}")
        if errs:
            raise TraceFormatError("; ".join(errs[:3]))


# --- JSON Lines -------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    # Decoded struct fields may hold raw bytes (names, padding); keep them readable and lossless.
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def to_jsonl(events: Iterable[dict], fp: IO[str]) -> int:
    """Write one event per line to the text file ``fp``; returns the number written."""
    n = 0
    for ev in events:
        fp.write(json.dumps(ev, separators=(",", ":"), default=_json_default))
        fp.write("\n")
        n += 1
    return n


def read_jsonl(path: str | os.PathLike, *, validate: bool = True) -> list[dict]:
    """Read a ``.jsonl`` trace. Blank lines are skipped; a malformed line or (with ``validate``)
    an event outside the schema raises :class:`TraceFormatError` naming the line."""
    events = []
    with open(path, encoding="utf-8") as fp:
        for lineno, line in enumerate(fp, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if validate:
                errs = validate_event(ev, f"{path}:{lineno}")
                if errs:
                    raise TraceFormatError("; ".join(errs[:3]))
            events.append(ev)
    return events


# --- names of return codes --------------------------------------------------------------------
def _aee_name(code: int) -> str:
    from ._ext import load

    name = load("_abi").aee_name(code & 0xFFFF_FFFF)
    return name or f"{code & 0xFFFF_FFFF:#x}"


def ret_name(ev: dict) -> str | None:
    """The error name of an event's result (``ENOENT``, ``AEE_EBADPARM``, ...), None on success."""
    kind = ev["kind"]
    if kind == "fault":
        return f"{ev['fault'].upper()}_FAULT"
    if kind in ("farf", "inject"):
        return None
    if kind == "ioctl":
        if ev["errno"]:
            return _errno.errorcode.get(ev["errno"], f"errno {ev['errno']}")
        return _aee_name(ev["ret"]) if ev["ret"] else None
    code = ev["retval"] if kind == "dsp" else ev["ret"]
    return _aee_name(code) if code else None


# --- Chrome trace-event JSON ------------------------------------------------------------------
_COMMON_KEYS = frozenset(("v", "kind", "ts", "dur", "pid", "tid"))


def slice_name(ev: dict) -> str:
    """A one-line name of a trace event (the Chrome trace's slice name)."""
    if ev["kind"] == "dsp":
        return f"dsp {ev['domain']} handle {ev['handle']:#x} method {ev['method']}"
    if ev["kind"] == "fault":
        return f"{ev['fault']} fault {ev['domain']} client {ev['client_id']} at {ev['addr']:#x}"
    if ev["kind"] == "inject":
        return f"injected {ev['rule']}"
    if ev["kind"] == "farf":
        return f"FARF {ev['module'] or ev['file']}: {ev['message'][:60]}"
    return ev["name"]


def _us(ns: int) -> float:
    # Three decimals are exact nanoseconds: viewers parse them back without drift, so slices
    # that nest in nanoseconds still nest after conversion.
    return round(ns / 1000, 3)


def to_chrome(events: Iterable[dict]) -> dict:
    """The trace-event JSON object of ``events`` (see the module docstring)."""
    evs = sorted(events, key=lambda e: (e["ts"], -e["dur"]))  # parents before their children
    origin = evs[0]["ts"] if evs else 0
    out: list[dict] = []
    tracks: dict[int, set[int]] = defaultdict(set)
    for ev in evs:
        args = {k: v for k, v in ev.items() if k not in _COMMON_KEYS}
        if ev["kind"] == "dsp":
            args["sc"] = f"{ev['sc']:#010x}"
            args["handle"] = f"{ev['handle']:#x}"
        elif ev["kind"] == "ioctl":
            args["nr"] = f"{ev['nr']:#x}"
            if isinstance(ev["fields"].get("sc"), int):
                args["fields"] = {**ev["fields"], "sc": f"{ev['fields']['sc']:#010x}"}
        err = ret_name(ev)
        if err:
            args["error"] = err
        out.append({"name": slice_name(ev), "cat": ev["kind"], "ph": "X", "ts": _us(ev["ts"] - origin),
                    "dur": _us(ev["dur"]), "pid": ev["pid"], "tid": ev["tid"], "args": args})
        tracks[ev["pid"]].add(ev["tid"])
    meta: list[dict] = []
    for pid, tids in sorted(tracks.items()):
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"qdarpc pid {pid}"}})
        for tid in sorted(tids):
            label = "main thread" if tid == pid else f"thread {tid}"
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"{label} ({tid})"}})
    return {"traceEvents": meta + out, "displayTimeUnit": "ns",
            "otherData": {"producer": "qdarpc", "schema_version": SCHEMA_VERSION, "origin_perf_counter_ns": origin}}


# --- summary ----------------------------------------------------------------------------------
def summarize(events: Iterable[dict], top: int = 10) -> dict:
    """Counts and totals of a trace, ready for ``json.dumps``:

    ``events``/``kinds`` (count per kind: api, ioctl, dsp and fault always, others when the trace has
    them)/``span_ns``; ``ioctls`` (per driver+name: count, total/mean/max ns,
    errors), ``top_by_count`` and ``top_by_time`` (the ``top`` first of those rows, ordered); ``api`` (per
    name); ``dsp`` (invokes, errors, wall and modeled ns); ``bytes`` (INVOKE payload bytes
    ``copied`` inline vs ``shared`` by reference); ``injected`` (per fault rule that fired: its
    kind, how often, what it hit); ``errors`` (per kind, name and error name).
    """
    evs = list(events)
    kinds = Counter(e["kind"] for e in evs)
    ioctl: dict[tuple[str, str], dict] = {}
    api: dict[str, dict] = {}
    errors: Counter = Counter()
    dsp = {"invokes": 0, "errors": 0, "wall_ns": 0, "modeled_ns": 0}
    injected: dict[str, dict] = {}
    copied = shared = invokes = 0
    for ev in evs:
        err = ret_name(ev)
        kind = ev["kind"]
        if kind == "ioctl":
            row = ioctl.setdefault((ev["driver"], ev["name"]), {"driver": ev["driver"], "name": ev["name"], "count": 0,
                                                                "total_ns": 0, "max_ns": 0, "errors": 0})
            row["count"] += 1
            row["total_ns"] += ev["dur"]
            row["max_ns"] = max(row["max_ns"], ev["dur"])
            row["errors"] += err is not None
            copied += ev["copied"]
            shared += ev["shared"]
            invokes += ev["name"].endswith("INVOKE")
        elif kind == "inject":
            row = injected.setdefault(ev["rule"], {"rule": ev["rule"], "fault": ev["fault"], "count": 0, "targets": []})
            row["count"] += 1
            if ev["target"] and ev["target"] not in row["targets"]:
                row["targets"].append(ev["target"])
        elif kind in ("fault", "farf"):
            pass  # faults are counted under errors below; FARF messages only by kind
        elif kind == "api":
            row = api.setdefault(ev["name"], {"name": ev["name"], "count": 0, "total_ns": 0, "errors": 0})
            row["count"] += 1
            row["total_ns"] += ev["dur"]
            row["errors"] += err is not None
        else:
            dsp["invokes"] += 1
            dsp["errors"] += err is not None
            dsp["wall_ns"] += ev["dur"]
            dsp["modeled_ns"] += ev["modeled_ns"]
        if err is not None:
            name = slice_name(ev) if kind in ("dsp", "fault") else ev["name"]
            errors[(kind, name, err)] += 1
    rows = list(ioctl.values())
    for r in rows:
        r["mean_ns"] = r["total_ns"] // r["count"]
    span = (max(e["ts"] + e["dur"] for e in evs) - min(e["ts"] for e in evs)) if evs else 0
    return {
        "events": len(evs),
        "kinds": {k: kinds.get(k, 0) for k in KINDS if k in _SUMMARY_KINDS or kinds.get(k)},
        "span_ns": span,
        "ioctls": sorted(rows, key=lambda r: (r["driver"], r["name"])),
        "top_by_count": sorted(rows, key=lambda r: (-r["count"], -r["total_ns"], r["name"]))[:top],
        "top_by_time": sorted(rows, key=lambda r: (-r["total_ns"], r["name"]))[:top],
        "api": sorted(api.values(), key=lambda r: (-r["count"], r["name"])),
        "dsp": dsp,
        "bytes": {"copied": copied, "shared": shared, "invokes": invokes},
        "injected": list(injected.values()),
        "errors": [{"kind": k, "name": n, "error": e, "count": c}
                   for (k, n, e), c in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


# --- files ------------------------------------------------------------------------------------
def _kernel_meta(kernel: str | bool) -> dict[str, str] | None:
    """front end -> ``FRONTEND:REVISION`` of ``kernel`` (True: the selection in force for the
    process), or None: not asked, or not a valid selection (metadata never fails a write)."""
    from .kernels import KernelError, parse_kernel

    if kernel is False:
        return None
    try:
        return {f: str(r) for f, r in parse_kernel(None if kernel is True else kernel).items()}
    except KernelError:
        return None


def write(events: Iterable[dict], path: str | os.PathLike, *, kernel: str | bool = True) -> None:
    """Write ``events`` to ``path``: ``.jsonl`` as JSON Lines, ``.json`` as Chrome trace JSON.
    Any other extension raises :class:`TraceFormatError` before anything is written.

    A ``.json`` trace names kernel revisions in ``otherData["kernel"]`` (front end ->
    ``FRONTEND:REVISION``; viewers show it as metadata): those of the selection ``kernel``, by
    default (True) the one in force for the process (``$QDARPC_KERNEL``, as ``qdarpc trace run
    --kernel`` sets it, else the defaults), which every SoC built without its own follows; False:
    none (``qdarpc trace convert``: a ``.jsonl`` does not record it). JSON Lines have no header
    to hold it: every line is a schema event."""
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext not in (".jsonl", ".json"):
        raise TraceFormatError(f"{p}: unknown trace format {ext or '(no extension)'!r}; use .jsonl or .json")
    events = list(events)
    with open(p, "w", encoding="utf-8") as fp:
        if ext == ".jsonl":
            to_jsonl(events, fp)
        else:
            doc = to_chrome(events)
            meta = _kernel_meta(kernel)
            if meta is not None:
                doc["otherData"]["kernel"] = meta
            json.dump(doc, fp, separators=(",", ":"), default=_json_default)
            fp.write("\n")
