"""libadsprpc_compat.ab: every built-in workload on both backends against one DSP, the report's
columns really from each driver, byte counts, ioctl alignment, user workloads and clean-up."""
import gc
import json
import os

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import ab
from qda_core import debug
from qda_core.soc import Soc


@pytest.fixture
def clean(fd_guard):
    """No emulator object, rpcmem allocation or session left behind by a run."""
    from libadsprpc_compat import process as library

    gc.collect()
    before, mems = debug.live_objects(), set(library._rpcmem)
    yield
    gc.collect()
    assert debug.live_objects() == before
    assert set(library._rpcmem) == mems


def outcomes(rep, backend):
    return {s["name"]: (s[backend]["value"] if s[backend]["ok"] else s[backend]["aee"]) for s in rep["steps"]}


def ioctl_names(rep, backend):
    return [x["name"] for x in rep["runs"][backend]["ioctls"]]


def test_calculator_identical_and_from_each_driver(clean):
    rep = ab.run_ab("calculator")
    assert rep["order"] == ["legacy", "accel"] and rep["agree"] and rep["first_difference"] is None
    for b in ("legacy", "accel"):
        o = outcomes(rep, b)
        assert o["calculator_sum  sc 0x02020100"] == 499500 and o["calculator_max  sc 0x03020100"] == 999
    leg, acc = ioctl_names(rep, "legacy"), ioctl_names(rep, "accel")
    assert all(n.startswith("FASTRPC_IOCTL_") for n in leg) and leg.count("FASTRPC_IOCTL_INVOKE") == 6
    assert all(n.startswith("DRM_IOCTL_") for n in acc) and acc.count("DRM_IOCTL_QDA_INVOKE") == 6
    assert "DRM_IOCTL_PRIME_FD_TO_HANDLE" in acc  # the rpcmem fd imported into the session file
    assert rep["runs"]["legacy"]["session_nodes"] == ["/dev/fastrpc-cdsp-secure"]
    assert rep["runs"]["accel"]["session_nodes"] == ["/dev/accel/accel1"]
    # the 4000-byte vector goes by reference on both; sum and max each share it
    for b in ("legacy", "accel"):
        inv = {x["step"]: x for x in rep["runs"][b]["invokes"] if x["handle"] == "module"}
        assert inv["calculator_sum  sc 0x02020100"]["shared"] == 4000
        assert inv["calculator_sum  sc 0x02020100"]["copied"] == 4 + 8
        t = rep["runs"][b]["totals"]
        assert t["shared"] == 8000 and t["modeled_ns"] > 0 and t["wall_ns"] > 0 and t["api_errors"] == 0
    # alignment pairs every INVOKE of one driver with the same call of the other
    pairs = [(r["a"]["name"], r["b"]["name"]) for r in rep["ioctl_alignment"] if r["op"] == "="]
    assert all(r["op"] in "=<>" for r in rep["ioctl_alignment"])
    assert ("FASTRPC_IOCTL_INVOKE", "DRM_IOCTL_QDA_INVOKE") in pairs
    assert ("FASTRPC_IOCTL_INIT_CREATE", "DRM_IOCTL_QDA_INIT_CREATE") in pairs
    only_accel = [r["b"]["name"] for r in rep["ioctl_alignment"] if r["op"] == ">"]
    assert only_accel.count("DRM_IOCTL_QDA_QUERY") == 3 and "DRM_IOCTL_PRIME_FD_TO_HANDLE" in only_accel
    json.dumps(rep)


def test_order_and_one_dsp(clean):
    soc = Soc()
    rep = ab.run_ab("calculator", order=["accel", "legacy"], soc=soc)
    assert rep["order"] == ["accel", "legacy"] and list(rep["runs"]) == ["accel", "legacy"]
    assert soc.domain("cdsp").dsp.stats.snapshot()["invokes"] > 0  # both runs hit this DSP
    assert soc.domain("cdsp").dsp.processes() == []
    with pytest.raises(ValueError, match="each backend once"):
        ab.run_ab("calculator", order=["accel", "accel"])
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        ab.run_ab("nope")


def test_rpcmem_roundtrip_copy_vs_reference(clean):
    rep = ab.run_ab("rpcmem-roundtrip")
    assert rep["agree"]
    o = outcomes(rep, "accel")
    assert o["inc rpcmem[64] (0x10s, by reference)"] == "64 bytes, all 0x11"  # caller's bytes + 1
    assert o["inc bytearray[64] (0x10s, copied)"] == "64 bytes, all 0x01"     # a zeroed copy + 1
    assert o["echo 'hello, dsp' copied -> copied"] == o["echo rpcmem -> copied"] == "hello, dsp"
    assert o["checksum rpcmem[2048] (by reference)"] == o["checksum bytes[2048] (copied)"] == 255 * 128 * 8
    by = {b: {s["name"]: (s[b]["copied"], s[b]["shared"]) for s in rep["steps"]} for b in ("legacy", "accel")}
    assert by["legacy"] == by["accel"]  # byte counts differ between calls, not between backends
    leg = by["legacy"]
    assert leg["inc rpcmem[64] (0x10s, by reference)"] == (0, 64)
    assert leg["inc bytearray[64] (0x10s, copied)"][1] == 0 and leg["inc bytearray[64] (0x10s, copied)"][0] >= 64
    assert leg["checksum rpcmem[2048] (by reference)"][1] == 2048
    assert leg["checksum bytes[2048] (copied)"] != leg["checksum rpcmem[2048] (by reference)"]


def test_mmap_lifecycle(clean):
    rep = ab.run_ab("mmap-lifecycle")
    for b in ("legacy", "accel"):
        o = outcomes(rep, b)
        assert o["fastrpc_mmap(fd, FASTRPC_MAP_FD)"] == "mapped" and o["mapped_read(dsp_fd, 0, 8)"] == "mapped!!"
        assert o["fastrpc_mmap again"] == rpc.AEE_EALREADY
        assert o["fastrpc_munmap(fd)"] == "unmapped" and o["fastrpc_munmap again"] == rpc.AEE_ENOSUCHMAP
        assert o["mapped_read after munmap"] == 0x80000448
    leg, acc = outcomes(rep, "legacy"), outcomes(rep, "accel")
    assert leg["dsp_fd(fd): the buffer's number on the DSP"] == "the dma-buf fd itself"
    assert acc["dsp_fd(fd): the buffer's number on the DSP"].startswith("GEM handle ")
    assert leg["remote_mem_map(fd, flags 0)"] == rpc.AEE_EBADPARM        # the legacy kernel refuses flags 0
    assert acc["remote_mem_map(fd, flags 0)"] == "mapped at a DSP address"  # QDA forwards it
    diff = {s["name"] for s in rep["steps"] if not s["same"]}
    assert diff == {"dsp_fd(fd): the buffer's number on the DSP", "remote_mem_map(fd, flags 0)", "remote_mem_unmap"}
    assert rep["first_difference"]["index"] == 3
    tl, ta = rep["runs"]["legacy"]["totals"], rep["runs"]["accel"]["totals"]
    assert (tl["maps_made"], tl["maps_failed"], ta["maps_made"], ta["maps_failed"]) == (1, 1, 2, 0)
    assert [m["name"] for m in rep["runs"]["legacy"]["maps"]][:2] == ["FASTRPC_IOCTL_MEM_MAP",
                                                                    "FASTRPC_IOCTL_MEM_UNMAP"]
    assert {e["error"] for e in rep["runs"]["legacy"]["errors"]["ioctl"]} >= {"EINVAL"}


def test_errors_workload_shows_the_differences(clean):
    rep = ab.run_ab("errors")
    leg, acc = outcomes(rep, "legacy"), outcomes(rep, "accel")
    for o in (leg, acc):
        assert o["invoke a bad handle64"] == o["invoke the closed handle"] == rpc.AEE_EINVHANDLE
        assert o["unknown method 16"] == 0x80000414 and o["echo with 0 buffers (sc 0x03000000)"] == 0x8000040E
        assert o["open a missing module"] == 0x8000043E
        assert o["crash the skel"] == o["null on the dead PD"] == 0x8000040D
    h1 = "raw invoke of kernel handle 1 (INIT_MUNMAP)"
    assert leg[h1] == rpc.AEE_EBADPERMS                      # the legacy kernel: EPERM
    assert acc[h1] == 0x80000429  # QDA lets it through; the DSP refuses a request for another client (ENOTOWNER)
    row = next(s for s in rep["steps"] if s["name"] == h1)
    assert not row["same"] and row["legacy"]["errno"] == 1 and row["accel"]["origin"] == "dsp"
    assert rep["first_difference"]["name"] == h1 and not rep["agree"]
    assert leg["remote_munmap64 of an address never mapped"] == rpc.AEE_EBADPARM
    assert acc["remote_munmap64 of an address never mapped"] == 0x80000448
    assert (leg["GET_DSP_INFO HVX_SUPPORT_128B"], acc["GET_DSP_INFO HVX_SUPPORT_128B"]) == (4, 0)
    assert (leg["invoke after the restart"], acc["invoke after the restart"]) == (rpc.AEE_ECONNRESET,
                                                                                 rpc.AEE_ENOSUCHDEVICE)
    assert rep["differences"] == 4
    errs = {e["name"]: e["error"] for e in rep["runs"]["legacy"]["errors"]["ioctl"] if e["step"] == h1}
    assert errs == {"FASTRPC_IOCTL_INVOKE": "EPERM"}


def test_user_workload_function_and_script(clean, tmp_path):
    def mine(lib):
        """Checksums through either backend."""
        h = lib.remote_handle64_open(ab.TEST_URI)
        steps = []
        out = bytearray(8)
        rpc.remote_handle64_invoke(h, ab.SC_CHECKSUM, [b"\x01\x02\x03", out])
        steps.append(("checksum", int.from_bytes(out, "little")))
        try:
            rpc.remote_handle64_invoke(h, 0x10000000, [])
        except rpc.FastRpcError as exc:
            steps.append(("unknown method", exc))
        rpc.remote_handle64_close(h)
        return steps

    rep = ab.run_ab(mine)
    assert rep["workload"] == "mine" and rep["description"] == "Checksums through either backend."
    assert rep["agree"] and outcomes(rep, "legacy") == {"checksum": 6, "unknown method": 0x80000414}
    assert "wall_ns" not in rep["steps"][0]["legacy"]  # plain lists carry no per-step windows
    script = tmp_path / "wl.py"
    script.write_text("import libadsprpc_compat as rpc\n"
                      "from libadsprpc_compat.ab import Steps, TEST_URI\n"
                      "def workload(lib):\n"
                      "    s = Steps()\n"
                      "    m = rpc.rpcmem_alloc(25, 1, 128)\n"   # never freed: the runner frees it
                      "    h = s.call('open', lib.remote_handle64_open, TEST_URI, show=lambda _: 'ok')\n"
                      "    s.call('inc', rpc.remote_handle64_invoke, h, 0x04000100, [memoryview(m)[:16]],\n"
                      "           show=lambda _: bytes(m[:2]).hex())\n"
                      "    return s\n")                          # handle left open: the runner closes it
    rep = ab.run_ab(ab.load_script(str(script)), name="wl.py")
    assert rep["agree"] and outcomes(rep, "accel") == {"open": "ok", "inc": "0101"}
    assert rep["steps"][1]["accel"]["shared"] == 16


def test_bad_workloads(clean, tmp_path):
    with pytest.raises(FileNotFoundError):
        ab.load_script(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ab.WorkloadError, match="defines no workload"):
        ab.load_script(str(empty))
    broken = tmp_path / "broken.py"
    broken.write_text("def workload(lib):\n    return 1 / 0\n")
    with pytest.raises(ab.WorkloadError, match="ZeroDivisionError"):
        ab.run_ab(ab.load_script(str(broken)))
    with pytest.raises(ab.WorkloadError, match="not a list"):
        ab.run_ab(lambda lib: 5)


def test_align_ioctls():
    a = [{"op": x} for x in ["INIT_CREATE", "INVOKE m 1", "MAP", "INVOKE m 2"]]
    b = [{"op": x} for x in ["QUERY", "INIT_CREATE", "INVOKE m 1", "INVOKE m 2", "MUNMAP"]]
    rows = [(r["op"], r["a"] and r["a"]["op"], r["b"] and r["b"]["op"]) for r in ab.align_ioctls(a, b)]
    assert rows == [(">", None, "QUERY"), ("=", "INIT_CREATE", "INIT_CREATE"), ("=", "INVOKE m 1", "INVOKE m 1"),
                    ("<", "MAP", None), ("=", "INVOKE m 2", "INVOKE m 2"), (">", None, "MUNMAP")]
    assert os.path.basename(ab.__file__) == "ab.py"


def test_alignment_marks_same_call_other_result(clean):
    rep = ab.run_ab("errors")
    marked = [(r["a"]["name"], r["a"]["error"], r["b"]["error"]) for r in rep["ioctl_alignment"] if r["op"] == "!"]
    assert ("FASTRPC_IOCTL_INVOKE", "EPERM", "DSP 0x80000429 AEE_ENOTOWNER") in marked
    assert ("FASTRPC_IOCTL_MUNMAP", "EINVAL", "DSP 0x80000448 AEE_ENOSUCHMAP") in marked
    assert any(x["step"] == "(cleanup)" for x in rep["runs"]["legacy"]["invokes"])


def test_the_runner_frees_allocations_the_workload_dropped(clean):
    """An RpcMem pins its own buffer (a cycle), so one the workload drops lives until the
    collector runs, at any later allocation: the runner keeps every allocation of the run and
    frees it, with no unfreed warning however often the collector runs (here: at nearly every
    allocation)."""
    def dropper(lib):
        for _ in range(3):
            rpc.rpcmem_alloc(25, 1, 4096)  # dropped at once
        return [("dropped", 3)]

    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        rep = ab.run_ab(dropper)
    finally:
        gc.set_threshold(*threshold)
    assert rep["agree"]
    from libadsprpc_compat import process

    assert process._keep is None
