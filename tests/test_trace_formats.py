"""Trace output formats: the v1 event schema, JSON Lines, Chrome trace-event JSON, summaries."""
import io
import json
import struct

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import trace
from qda_core.accel import GemRef
from qda_core.trace_formats import (SCHEMA, TraceFormatError, read_jsonl, summarize, to_chrome, to_jsonl,
                                    validate_event, validate_events, write)

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_dom=cdsp"
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def synthetic() -> list[dict]:
    """A legacy call -> two ioctls -> DSP work, recorded through the Recorder API, on two
    threads' worth of tids, with one failing ioctl and one DSP error."""
    rec = trace.Recorder()
    rec.api("remote_handle64_invoke", "h=0x8 sc=0x02020100", 0, 1_000, 9_000)
    rec.ioctl("accel", "/dev/accel/accel1", "DRM_IOCTL_QDA_INVOKE", 0xC0106447,
              {"handle": 8, "sc": 0x02020100, "args": 1234}, 0, 2_000, 6_000, copied=4012, shared=0)
    rec.dsp("cdsp", "accel", 1, 0, 8, 0x02020100, 0, 12_000, 3_000, 5_000)
    rec.ioctl("accel", "/dev/accel/accel1", "DRM_IOCTL_QDA_INVOKE", 0xC0106447,
              {"handle": 8, "sc": 0x03020100, "args": 1234}, 0x8000040E, 6_500, 8_500, copied=12, shared=4096)
    rec.dsp("cdsp", "accel", 1, 0, 8, 0x03020100, 0x8000040E, 1_000, 7_000, 8_000)
    rec.ioctl("accel", "/dev/accel/accel1", "DRM_IOCTL_QDA_GEM_CREATE", 0xC0106441, {"size": 0, "handle": 0},
              -22, 10_000, 10_500)
    other = dict(rec.events[-1], tid=rec.events[-1]["tid"] + 1, ts=2_500, dur=100)  # another thread
    return rec.events + [other]


def real_events(soc) -> list[dict]:
    f = soc.open_device("cdsp")
    try:
        with trace.recording() as rec:
            f.init_create()
            _, h = open_module(f, CALC)
            gh = f.gem_create(4096)
            view = f.mmap(f.gem_mmap_offset(gh), 4096)
            view[:8] = struct.pack("<ii", 5, 7)
            f.invoke(h, 0x02020100, [struct.pack("<i", 2), GemRef(gh, view[:8]), bytearray(8)])
            f.invoke(h, 0x02020100, [struct.pack("<i", 3), struct.pack("<ii", 5, 7), bytearray(8)])  # AEE error
            f.ioctl(0xC0106441, bytearray(16))  # GEM_CREATE size 0: EINVAL
            view.release()
    finally:
        f.close()
    return rec.events


# --- schema -----------------------------------------------------------------------------------
def test_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    json.dumps(SCHEMA)


def test_recorder_events_match_schema(soc):
    events = synthetic() + real_events(soc)
    for ev in events:
        assert validate_event(ev) == []
        VALIDATOR.validate(json.loads(json.dumps(ev)))
    validate_events(events)


BROKEN = [
    ({"v": 2}, "v"),
    ({"kind": "bogus"}, "kind"),
    ({"dur": -1}, "dur"),
    ({"ts": 1.5}, "ts"),
    ({"ret": True}, "ret"),
    ({"driver": "nvidia"}, "driver"),
    ({"copied": -4}, "copied"),
    ({"fields": []}, "fields"),
    ({"extra": 1}, "extra"),
]


@pytest.mark.parametrize("patch,field", BROKEN, ids=[b[1] for b in BROKEN])
def test_invalid_events_rejected_by_both_validators(patch, field):
    ev = {**synthetic()[1], **patch}  # an ioctl event
    errs = validate_event(ev)
    assert errs and any(field in e for e in errs), errs
    assert not VALIDATOR.is_valid(ev)
    with pytest.raises(TraceFormatError, match=field):
        validate_events([synthetic()[0], ev])


def test_missing_field_named():
    ev = dict(synthetic()[2])
    del ev["modeled_ns"]
    assert validate_event(ev) == ["event: missing 'modeled_ns'"]
    assert not VALIDATOR.is_valid(ev)
    assert validate_event([1]) and validate_event({"kind": "dsp"})


json_scalars = st.one_of(st.integers(-2**40, 2**40), st.text(max_size=5), st.booleans(), st.none(),
                         st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@given(base=st.sampled_from(range(7)), key=st.sampled_from(sorted({k for e in synthetic() for k in e} | {"zz"})),
       value=json_scalars, drop=st.booleans())
def test_hand_validator_agrees_with_jsonschema(base, key, value, drop):
    ev = dict(synthetic()[base])
    if drop:
        ev.pop(key, None)
    else:
        ev[key] = value
    assert (validate_event(ev) == []) == VALIDATOR.is_valid(ev), (ev, validate_event(ev))


# --- JSON Lines -------------------------------------------------------------------------------
def test_jsonl_round_trip(tmp_path, soc):
    events = synthetic() + real_events(soc)
    buf = io.StringIO()
    assert to_jsonl(events, buf) == len(events)
    assert len(buf.getvalue().splitlines()) == len(events)
    path = tmp_path / "t.jsonl"
    write(events, path)
    assert read_jsonl(path) == json.loads(json.dumps(events))


def test_jsonl_bytes_fields_become_hex(tmp_path):
    rec = trace.Recorder()
    rec.ioctl("accel", "/dev/accel/accel0", "DRM_IOCTL_QDA_QUERY", 0x80106440, {"raw": b"\x01\xff"}, 0, 1, 2)
    write(rec.events, tmp_path / "b.jsonl")
    assert read_jsonl(tmp_path / "b.jsonl")[0]["fields"] == {"raw": "01ff"}


def test_read_jsonl_errors_name_the_line(tmp_path):
    good = json.dumps(synthetic()[0])
    bad_json = tmp_path / "a.jsonl"
    bad_json.write_text(good + "\n\n{nope\n")
    with pytest.raises(TraceFormatError, match=r"a\.jsonl:3: not JSON"):
        read_jsonl(bad_json)
    bad_event = tmp_path / "b.jsonl"
    bad_event.write_text(good + "\n" + json.dumps({**synthetic()[0], "dur": -5}) + "\n")
    with pytest.raises(TraceFormatError, match=r"b\.jsonl:2\.dur"):
        read_jsonl(bad_event)
    assert len(read_jsonl(bad_event, validate=False)) == 2


def test_write_refuses_unknown_extension(tmp_path):
    with pytest.raises(TraceFormatError, match=r"\.txt"):
        write(synthetic(), tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()


# --- Chrome trace-event JSON ------------------------------------------------------------------
def check_chrome(doc: dict) -> list[dict]:
    """Structural check of a trace-event JSON object; returns its X events."""
    doc = json.loads(json.dumps(doc))  # must be plain JSON
    assert isinstance(doc["traceEvents"], list)
    xs = []
    named = set()
    for e in doc["traceEvents"]:
        assert {"name", "ph", "pid", "tid"} <= set(e), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name") and isinstance(e["args"]["name"], str)
            if e["name"] == "thread_name":
                named.add((e["pid"], e["tid"]))
            continue
        assert e["ph"] == "X"
        assert e["cat"] in ("api", "ioctl", "dsp")
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        assert isinstance(e["args"], dict)
        xs.append(e)
    assert {(e["pid"], e["tid"]) for e in xs} <= named, "every track has a thread name"
    tracks: dict = {}
    for e in xs:
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    for evs in tracks.values():  # slices on one thread nest or follow each other, never overlap
        stack: list[tuple[int, int]] = []
        for e in sorted(evs, key=lambda e: (round(e["ts"] * 1000), -round(e["dur"] * 1000))):
            start, end = round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)
            while stack and stack[-1][1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1][1], f"{e['name']} overlaps its parent"
            stack.append((start, end))
    return xs


def test_chrome_synthetic_nesting_and_fields():
    events = synthetic()
    doc = to_chrome(events)
    xs = check_chrome(doc)
    assert len(xs) == len(events)
    api, inv1, dsp1 = (next(e for e in xs if e["ts"] == t) for t in (0.0, 1.0, 2.0))
    assert (api["cat"], api["name"]) == ("api", "remote_handle64_invoke")
    assert (inv1["cat"], inv1["name"], inv1["dur"]) == ("ioctl", "DRM_IOCTL_QDA_INVOKE", 4.0)
    assert inv1["args"]["nr"] == "0xc0106447" and inv1["args"]["fields"]["sc"] == "0x02020100"
    assert dsp1["cat"] == "dsp" and dsp1["args"]["sc"] == "0x02020100" and dsp1["args"]["method"] == 2
    errs = sorted(e["args"]["error"] for e in xs if "error" in e["args"])
    assert errs == ["AEE_EBADPARM", "AEE_EBADPARM", "EINVAL", "EINVAL"]
    assert doc["otherData"]["schema_version"] == trace.SCHEMA_VERSION


def test_chrome_detects_overlap_in_checker():
    rec = trace.Recorder()
    rec.ioctl("accel", "n", "A", 1, {}, 0, 0, 10)
    rec.ioctl("accel", "n", "B", 2, {}, 0, 5, 15)  # partial overlap on one thread
    with pytest.raises(AssertionError, match="overlaps"):
        check_chrome(to_chrome(rec.events))


def test_chrome_real_events_nest(soc, tmp_path):
    events = real_events(soc)
    write(events, tmp_path / "r.json")
    xs = check_chrome(json.loads((tmp_path / "r.json").read_text()))
    inv = [e for e in xs if e["name"] == "DRM_IOCTL_QDA_INVOKE"]
    dsp = [e for e in xs if e["cat"] == "dsp"]
    assert inv and dsp
    # every DSP message sent by an INVOKE lies inside that INVOKE's slice
    for d in dsp:
        if d["args"]["client_id"]:
            assert any(i["ts"] <= d["ts"] and d["ts"] + d["dur"] <= i["ts"] + i["dur"] + 1e-9 for i in xs
                       if i["cat"] == "ioctl"), d


def test_chrome_empty():
    assert check_chrome(to_chrome([])) == []


# --- summary ----------------------------------------------------------------------------------
def test_summarize_synthetic():
    s = summarize(synthetic())
    assert s["events"] == 7 and s["kinds"] == {"api": 1, "ioctl": 4, "dsp": 2, "fault": 0}
    assert s["span_ns"] == 10_500 - 1_000
    inv = next(r for r in s["ioctls"] if r["name"] == "DRM_IOCTL_QDA_INVOKE")
    assert inv == {"driver": "accel", "name": "DRM_IOCTL_QDA_INVOKE", "count": 2, "total_ns": 6_000,
                   "max_ns": 4_000, "errors": 1, "mean_ns": 3_000}
    assert [r["name"] for r in s["top_by_count"]] == ["DRM_IOCTL_QDA_INVOKE", "DRM_IOCTL_QDA_GEM_CREATE"]
    assert [r["name"] for r in s["top_by_time"]] == ["DRM_IOCTL_QDA_INVOKE", "DRM_IOCTL_QDA_GEM_CREATE"]
    assert s["bytes"] == {"copied": 4024, "shared": 4096, "invokes": 2}
    assert s["dsp"] == {"invokes": 2, "errors": 1, "wall_ns": 3_000, "modeled_ns": 13_000}
    assert s["api"] == [{"name": "remote_handle64_invoke", "count": 1, "total_ns": 8_000, "errors": 0}]
    assert {(e["kind"], e["name"], e["error"], e["count"]) for e in s["errors"]} == {
        ("ioctl", "DRM_IOCTL_QDA_GEM_CREATE", "EINVAL", 2),
        ("ioctl", "DRM_IOCTL_QDA_INVOKE", "AEE_EBADPARM", 1),
        ("dsp", "dsp cdsp handle 0x8 method 3", "AEE_EBADPARM", 1),
    }
    json.dumps(s)


def test_summarize_real(soc):
    events = real_events(soc)
    s = summarize(events)
    n_inv = sum(e["kind"] == "ioctl" and e["name"] == "DRM_IOCTL_QDA_INVOKE" for e in events)
    assert s["bytes"]["invokes"] == n_inv == 3  # remotectl open + 2 sums
    assert s["bytes"]["shared"] >= 8
    errors = {(e["name"], e["error"]) for e in s["errors"]}
    assert ("DRM_IOCTL_QDA_GEM_CREATE", "EINVAL") in errors
    assert ("DRM_IOCTL_QDA_INVOKE", "AEE_EBADPARM") in errors
    assert summarize([])["span_ns"] == 0


def test_slice_name_names_each_kind_on_one_line():
    from qda_core.trace_formats import slice_name

    assert slice_name({"kind": "dsp", "domain": "cdsp", "handle": 0x35f08000, "method": 2}) == \
        "dsp cdsp handle 0x35f08000 method 2"
    assert slice_name({"kind": "inject", "rule": "drop@2"}) == "injected drop@2"
    assert slice_name({"kind": "ioctl", "name": "FASTRPC_IOCTL_INVOKE"}) == "FASTRPC_IOCTL_INVOKE"
