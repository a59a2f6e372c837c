"""The accel driver and the DSP report to the trace recorder, and cost nothing when it is off."""
import struct

import numpy as np

from libadsprpc_compat.remotectl import open_module
from qda_core import trace
from qda_core.accel import GemRef

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def test_ioctl_and_dsp_events(cdsp):
    with trace.recording() as rec:
        cdsp.init_create()
        _, h = open_module(cdsp, CALC)
        gh = cdsp.gem_create(4096)
        view = cdsp.mmap(cdsp.gem_mmap_offset(gh), 4096)
        np.frombuffer(view, np.int32, 10)[:] = np.arange(10)
        out = bytearray(8)
        cdsp.invoke(h, 0x02020100, [struct.pack("<i", 10), GemRef(gh, view[:40]), out])
        cdsp.invoke(h, 0x02020100, [struct.pack("<i", 10), np.arange(10, dtype=np.int32), out])
        cdsp.ioctl(0xC0106441, bytearray(16))  # GEM_CREATE of size 0: an error event
        view.release()
    ioctls = [e for e in rec.events if e["kind"] == "ioctl"]
    names = [e["name"] for e in ioctls]
    assert names[:1] == ["DRM_IOCTL_QDA_INIT_CREATE"] and "DRM_IOCTL_QDA_GEM_CREATE" in names
    inv = [e for e in ioctls if e["name"] == "DRM_IOCTL_QDA_INVOKE"]
    assert [(e["copied"], e["shared"]) for e in inv[-2:]] == [(4 + 8, 40), (4 + 40 + 8, 0)]
    assert inv[-1]["fields"]["handle"] == h and inv[-1]["nr"] == 0xC0106447
    assert ioctls[-1]["errno"] == 22 and ioctls[-1]["ret"] == -22
    dsp = [e for e in rec.events if e["kind"] == "dsp"]
    sums = [e for e in dsp if e["handle"] == h]
    assert len(sums) == 2 and all(e["method"] == 2 and e["retval"] == 0 and e["modeled_ns"] > 0 for e in sums)
    assert all(e["v"] == trace.SCHEMA_VERSION and e["dur"] >= 0 for e in rec.events)
    # DSP work nests inside the ioctl that caused it
    last = inv[-1]
    assert last["ts"] <= sums[-1]["ts"] and sums[-1]["ts"] + sums[-1]["dur"] <= last["ts"] + last["dur"]


def test_off_by_default(cdsp):
    assert trace.RECORDER is None
    with trace.recording() as outer:
        with trace.recording() as inner:
            cdsp.query()
        cdsp.query()
    assert trace.RECORDER is None
    assert len(inner.events) == 1 and len(outer.events) == 1


def test_qdarpc_trace_env_traces_any_program(tmp_path):
    """QDARPC_TRACE=<file> switches tracing on at import and writes the file at exit (.jsonl
    here; .json gives Chrome trace-event JSON)."""
    import json
    import os
    import subprocess
    import sys

    import qda_core

    out = tmp_path / "prog.jsonl"
    prog = ("import libadsprpc_compat as rpc\n"
            "h = rpc.remote_handle64_open('" + CALC + "')\n"
            "rpc.remote_handle64_close(h)\n")
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qda_core.__file__)))
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": pkg_root, "QDARPC_TRACE": str(out)})
    assert res.returncode == 0, res.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)  # in time order
    kinds = {e["kind"] for e in events}
    assert kinds == {"api", "ioctl", "dsp"}
    assert any(e["kind"] == "api" and e["name"] == "remote_handle64_open" and e["ret"] == 0 for e in events)
    assert any(e["kind"] == "ioctl" and e["name"] == "DRM_IOCTL_QDA_INIT_CREATE" for e in events)
    chrome = tmp_path / "prog.json"
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": pkg_root, "QDARPC_TRACE": str(chrome)})
    assert res.returncode == 0, res.stderr
    doc = json.loads(chrome.read_text())
    assert any(ev.get("ph") == "X" and ev.get("cat") == "ioctl" for ev in doc["traceEvents"])
