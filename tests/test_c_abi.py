"""The C ABI library (libcdsprpc.so.1 and siblings, docs/c_abi.md): real C programs compiled
against the SDK headers, run in their own processes (the library starts the interpreter) and
called from this process through ctypes (the library joins it)."""
from __future__ import annotations

import ctypes
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import native
from libadsprpc_compat.cargs import A

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import compile_c, needs_c_abi, run_c  # noqa: E402

pytestmark = needs_c_abi

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" + rpc.CDSP_DOMAIN
#: What every flavour exports: the API, and the start-up lock shared by flavours in one process.
ABI = {
    "remote_handle_open", "remote_handle_invoke", "remote_handle_close", "remote_handle64_open",
    "remote_handle64_invoke", "remote_handle64_close", "remote_handle_control", "remote_handle64_control",
    "remote_session_control", "remote_mmap", "remote_munmap", "remote_mmap64", "remote_munmap64",
    "remote_mem_map", "remote_mem_unmap", "fastrpc_mmap", "fastrpc_munmap", "remote_register_buf",
    "remote_register_buf_attr", "remote_register_dma_handle", "remote_register_dma_handle_attr",
    "remote_set_mode", "rpcmem_init", "rpcmem_deinit", "rpcmem_alloc", "rpcmem_alloc2", "rpcmem_free",
    "rpcmem_to_fd",
}


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """The test programs of tests/c/abi, built once."""
    d = tmp_path_factory.mktemp("abi")
    out = {name: compile_c(f"abi/{name}.c", d / name) for name in ("contract", "threads", "fork_exit")}
    out["fork_race"] = compile_c("abi/fork_race.c", d / "fork_race", flags=["-ldl"])
    out["calc"] = compile_c("abi/calc.c", d / "calc")
    out["plugin"] = compile_c("abi/local_plugin.c", d / "plugin.so", shared=True)
    out["local_host"] = compile_c("abi/local_host.c", d / "local_host", link_abi=False, flags=["-ldl"])
    return out


def _dynamic(path) -> tuple[str, set[str]]:
    """(soname, defined dynamic symbols) of a shared library, read with binutils."""
    soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]",
                       subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout)
    syms = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True).stdout
    return (soname.group(1) if soname else ""), {line.split()[-1] for line in syms.splitlines() if line.strip()}


@pytest.mark.parametrize("flavour", sorted(native.LIBRARIES))
def test_libraries_export_exactly_the_api_under_the_upstream_soname(flavour):
    if not all(map(_which, ("readelf", "nm"))):
        pytest.skip("binutils (readelf, nm) not installed")
    path = native.library(flavour)
    soname, syms = _dynamic(path)
    assert soname == f"{flavour}.so.1"
    odr = {s for s in syms if s.startswith("__odr_asan")}  # ASan's one-definition markers (QDARPC_SANITIZE=1)
    assert syms - {"_init", "_fini"} - odr == ABI | {"qdarpc_bridge_start_v2"}
    # The unversioned name (for -l<flavour>) is the same library.
    assert (path.parent / f"{flavour}.so").read_bytes() == path.read_bytes()
    # No libpython dependency: the library joins whatever interpreter the process has.
    needed = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
    assert "libpython" not in needed


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_a_c_program_runs_on_either_backend(progs, backend, tmp_path):
    trace = tmp_path / "t.jsonl"
    res = run_c([progs["calc"], 1000], backend=backend, cwd=tmp_path, QDARPC_TRACE=trace)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["sum 499500", "max 999", "closed"]
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    nodes = {e["node"] for e in events if e["kind"] == "ioctl"}
    assert any(("accel" in n) == (backend == "accel") for n in nodes), nodes
    api = [e["name"] for e in events if e["kind"] == "api"]
    assert api[:2] == ["remote_handle64_open", "rpcmem_alloc"]
    invokes = [e for e in events if e["kind"] == "ioctl" and e["name"].endswith("INVOKE")
               and e["fields"].get("sc") in (0x02020100, 0x03020100)]
    # The vector was rpcmem: by reference; n and the result: copied.
    assert [(e["copied"], e["shared"]) for e in invokes] == [(12, 4000), (8, 4000)]


def test_bad_input_gets_the_documented_codes_and_never_crashes(progs):
    res = run_c([progs["contract"]])
    assert res.returncode == 0, res.stderr
    got = dict((name + ")", rest.removeprefix("0x")) for name, rest in
               (line.split(") ", 1) for line in res.stdout.splitlines() if line != "done"))
    expected = _contract_expectations()
    assert {k: got.get(k) for k in expected} == expected
    assert res.stdout.endswith("done\n")


def _contract_expectations() -> dict[str, str]:
    """``<call> -> "<code hex> <errno>"`` (or the rpcmem outcome) for tests/c/abi/contract.c."""
    bad, inval, efault = f"{rpc.AEE_EBADPARM:x}", f"{rpc.AEE_EINVHANDLE:x}", 14
    return {
        "remote_handle_open(NULL)": f"{bad} 0",
        "remote_handle_open(ph=NULL)": f"{bad} 0",
        "remote_handle_open(wild name)": f"{bad} {efault}",
        "remote_handle_open(missing)": "8000043e 0",
        "remote_handle_invoke(-1)": f"{inval} 0",
        "remote_handle_close(-1)": f"{inval} 0",
        "remote_handle64_open(NULL)": f"{bad} 0",
        "remote_handle64_open(ph=NULL)": f"{bad} 0",
        "remote_handle64_open(ph=wild)": f"{bad} {efault}",
        "remote_handle64_open(no _dom)": f"{bad} 0",
        "remote_handle64_invoke(0)": f"{inval} 0",
        "remote_handle64_invoke(bad)": f"{inval} 0",
        "remote_handle64_close(bad)": f"{inval} 0",
        "remote_handle64_open(ok)": "0 0",
        "remote_handle64_invoke(pra=NULL)": f"{bad} 0",
        "remote_handle64_invoke(pra=wild)": f"{bad} {efault}",
        "remote_handle64_invoke(buf=wild)": f"{bad} {efault}",
        "remote_handle64_invoke(nLen=huge)": f"{bad} {efault}",
        "remote_handle64_control(bad)": f"{inval} 0",
        "remote_handle64_control(data=NULL)": f"{bad} 0",
        "remote_handle64_control(data=wild)": f"{bad} {efault}",
        "remote_handle64_control(len=1)": f"{bad} 0",
        "remote_handle64_control(len=huge)": f"{bad} 0",
        "remote_handle64_control(req=999)": f"{rpc.AEE_EUNSUPPORTED:x} 0",
        "remote_handle64_close(ok)": "0 0",
        "remote_handle64_close(again)": f"{inval} 0",
        "remote_handle_control(data=NULL)": f"{bad} 0",
        "remote_session_control(data=NULL)": f"{bad} 0",
        "remote_session_control(req=999)": f"{rpc.AEE_EUNSUPPORTED:x} 0",
        "remote_mmap(vaddrout=NULL)": f"{bad} 0",
        "remote_mmap64(vaddrout=NULL)": f"{bad} 0",
        "remote_mmap64(size<0)": f"{bad} 0",
        "remote_munmap64(size<0)": f"{bad} 0",
        "remote_mem_map(out=NULL)": f"{bad} 0",
        "remote_mem_map(domain=99)": f"{bad} 0",
        "remote_mem_unmap(addr=0)": f"{bad} 0",
        "fastrpc_mmap(domain=99)": f"{bad} 0",
        "fastrpc_munmap(domain=99)": f"{bad} 0",
        "remote_register_buf(...)": "0 0",
        "remote_register_dma_handle(fd=-1)": f"{bad} 0",
        "remote_register_dma_handle_attr(attr=77)": f"{bad} 0",
        "rpcmem_alloc(0)": "NULL",
        "rpcmem_alloc(-5)": "NULL",
        "rpcmem_alloc2(2^62)": "NULL",
        "rpcmem_to_fd(NULL)": "-1",
        "rpcmem_to_fd(wild)": "-1",
        "rpcmem_alloc(4096)": "ptr fd ok",
        "rpcmem_to_fd(inside)": "-1",
        "rpcmem_to_fd(freed)": "-1",
        "remote_set_mode(7)": "0 0",
    }


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_many_c_threads_invoke_at_once(progs, backend):
    res = run_c([progs["threads"], 8, 8], backend=backend)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "failures 0"


def test_fork_gives_the_child_its_own_emulator_and_exit_with_threads_inside_is_clean(progs, tmp_path):
    trace = tmp_path / "t.jsonl"
    res = run_c([progs["fork_exit"], 3], QDARPC_TRACE=trace, timeout=60)
    assert (res.returncode, res.stdout.strip()) == (0, "bad children 0"), res.stderr
    assert res.stderr == ""
    # The parent's exit ran the package's exit work although threads were still calling.
    assert any(json.loads(line)["kind"] == "api" for line in trace.read_text().splitlines())


@pytest.mark.parametrize("mode", ["plain", "tracemalloc"])
def test_fork_while_other_threads_make_their_first_call_never_hangs(progs, mode):
    """plain: before thread states were made under a lock fork() also takes
    (csrc/bridge/embed.c), a child hung inside fork() about once in 2 000 rounds (a
    probabilistic check). tracemalloc: a thread making its state needs the GIL meanwhile, so
    fork() waits for that lock without the GIL (holding it deadlocked the parent in round 0).
    A hang shows as this timeout."""
    if native._loaded_runtimes():
        # tracemalloc: ASan's fork() interceptor takes its allocator lock before the atfork
        # handlers run, so the fork lock waited for there and a thread that mallocs while holding
        # it deadlock (glibc's malloc locks after the handlers). plain: a child can inherit one of
        # the sanitizer allocator's size-class locks held by a parent thread that was in malloc,
        # and hangs in its first malloc (seen: a single-threaded child waiting in
        # SizeClassAllocator64::GetFromAllocator). Both are the sanitizer runtime's locks, not ours.
        pytest.skip("under ASan, fork() with threads in malloc is not safe in the sanitizer's allocator")
    rounds = 200
    res = run_c([progs["fork_race"], rounds, mode], timeout=120)
    assert (res.returncode, res.stdout.strip(), res.stderr) == (0, "bad children 0", "")


def test_a_host_that_loads_the_library_rtld_local_works(progs):
    res = run_c([progs["local_host"], progs["plugin"]])
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["plugin_run 9", "plugin_run again 9"]


def test_a_library_cut_off_from_its_package_answers_codes(tmp_path):
    """A copy of the library away from the package it belongs to, run with an interpreter that
    does not have the package: every call answers AEE_ECONNREFUSED and says why, once."""
    import shutil

    lib = tmp_path / "pkg" / "sdk" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(native.library(), lib / "libcdsprpc.so.1")
    exe = compile_c("abi/calc.c", tmp_path / "calc", link_abi=False,
                    flags=[f"-L{lib}", f"-Wl,-rpath,{lib}", "-l:libcdsprpc.so.1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QDARPC_", "LD_LIBRARY_PATH", "PYTHON"))}
    env["QDARPC_PYTHON"] = str(tmp_path / "bin" / "python3")
    res = subprocess.run([exe, "10"], env=env, capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout) == (1, f"remote_handle64_open: 0x{rpc.AEE_ECONNREFUSED:x}\n"), res.stderr
    assert res.stderr.startswith("qdarpc: libcdsprpc: cannot import the qdarpc package")
    assert res.stderr.count("qdarpc: libcdsprpc:") == 1


# -- in this process, through ctypes (the way Python ML runtimes drive the library) ------------
class _RemoteArg(ctypes.Union):
    class _Buf(ctypes.Structure):
        _fields_ = [("pv", ctypes.c_void_p), ("nLen", ctypes.c_size_t)]

    _fields_ = [("buf", _Buf), ("h64", ctypes.c_uint64)]


@pytest.fixture
def cdll():
    lib = ctypes.CDLL(str(native.library()))
    lib.rpcmem_alloc.restype = ctypes.c_void_p
    lib.rpcmem_alloc.argtypes = [ctypes.c_int, ctypes.c_uint32, ctypes.c_int]
    lib.rpcmem_free.argtypes = [ctypes.c_void_p]
    lib.rpcmem_to_fd.argtypes = [ctypes.c_void_p]
    lib.remote_handle64_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
    lib.remote_handle64_invoke.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.POINTER(_RemoteArg)]
    lib.remote_handle64_close.argtypes = [ctypes.c_uint64]
    yield lib
    rpc.shutdown()


def _ctypes_calc(lib, vec_ptr, n, method):
    h = ctypes.c_uint64()
    assert lib.remote_handle64_open(CALC.encode(), ctypes.byref(h)) == 0
    nn = ctypes.c_int32(n)
    out = ctypes.c_int64(-1)
    pra = (_RemoteArg * 3)()
    pra[0].buf.pv, pra[0].buf.nLen = ctypes.addressof(nn), 4
    pra[1].buf.pv, pra[1].buf.nLen = vec_ptr, 4 * n
    pra[2].buf.pv, pra[2].buf.nLen = ctypes.addressof(out), 8 if method == 2 else 4
    try:
        code = lib.remote_handle64_invoke(h.value, rpc.REMOTE_SCALARS_MAKE(method, 2, 1), pra)
    finally:
        assert lib.remote_handle64_close(h.value) == 0
    return code & 0xFFFF_FFFF, out.value if method == 2 else ctypes.c_int32(out.value & 0xFFFF_FFFF).value


def _python_calc(vec, n, method):
    import struct

    h = rpc.remote_handle64_open(CALC)
    out = bytearray(8 if method == 2 else 4)
    try:
        rpc.remote_handle64_invoke(h, rpc.REMOTE_SCALARS_MAKE(method, 2, 1), [struct.pack("<i", n), vec, out])
        code = 0
    except rpc.FastRpcError as exc:
        code = exc.aee & 0xFFFF_FFFF
    finally:
        rpc.remote_handle64_close(h)
    return code, int.from_bytes(out, "little", signed=True) if not code else -1


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_a_ctypes_client_gets_the_python_api_results(cdll, n):
    import numpy as np

    p = cdll.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, max(4 * n, 4))
    assert p
    try:
        arr = np.ctypeslib.as_array((ctypes.c_int32 * max(n, 1)).from_address(p))
        arr[:] = np.arange(max(n, 1), dtype=np.int32) * 3 - 5
        vec = arr[:n].tobytes()
        for method in (2, 3):
            assert _ctypes_calc(cdll, p, n, method) == _python_calc(vec, n, method)
        assert cdll.rpcmem_to_fd(p) >= 0
        # Python's API sees the C allocation as the rpcmem buffer it is (by reference).
        assert rpc.rpcmem_to_fd(p) == cdll.rpcmem_to_fd(p)
    finally:
        cdll.rpcmem_free(p)
    assert cdll.rpcmem_to_fd(p) == -1


def test_ctypes_bad_length_matches_python(cdll):
    vec = (ctypes.c_int32 * 4)(1, 2, 3, 4)
    assert _ctypes_calc(cdll, ctypes.addressof(vec), 4, 2)[0] == 0
    h = ctypes.c_uint64()
    assert cdll.remote_handle64_open(CALC.encode(), ctypes.byref(h)) == 0
    try:
        nn = ctypes.c_int32(5)  # says 5, sends 4
        out = ctypes.c_int64()
        pra = (_RemoteArg * 3)()
        pra[0].buf.pv, pra[0].buf.nLen = ctypes.addressof(nn), 4
        pra[1].buf.pv, pra[1].buf.nLen = ctypes.addressof(vec), 16
        pra[2].buf.pv, pra[2].buf.nLen = ctypes.addressof(out), 8
        code = cdll.remote_handle64_invoke(h.value, rpc.REMOTE_SCALARS_MAKE(2, 2, 1), pra) & 0xFFFF_FFFF
    finally:
        cdll.remote_handle64_close(h.value)
    assert code == rpc.aee_to_dsp(rpc.AEE_EBADPARM) & 0xFFFF_FFFF


def test_the_pydll_form_holding_the_gil_works(cdll):
    """ctypes.PyDLL calls with the GIL held (no deadlock on the library's start-up)."""
    lib = ctypes.PyDLL(str(native.library()))
    lib.remote_handle64_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
    lib.remote_handle64_close.argtypes = [ctypes.c_uint64]
    h = ctypes.c_uint64()
    assert lib.remote_handle64_open(CALC.encode(), ctypes.byref(h)) == 0
    assert lib.remote_handle64_close(h.value) == 0


def test_c_and_python_callers_share_one_library(cdll):
    """libcdsprpc in a Python process is the module-level API: a handle opened from C is one
    Python can invoke (the same process-wide handle table)."""
    h = ctypes.c_uint64()
    assert cdll.remote_handle64_open(CALC.encode(), ctypes.byref(h)) == 0
    out = bytearray(4)
    rpc.remote_handle64_invoke(h.value, 0x03020100, [b"\x02\0\0\0", b"\x05\0\0\0\x09\0\0\0", out])
    assert int.from_bytes(out, "little") == 9
    rpc.remote_handle64_close(h.value)
    assert cdll.remote_handle64_close(h.value) == rpc.AEE_EINVHANDLE



@pytest.mark.parametrize("flavour,domain", [("libadsprpc", "adsp"), ("libcdsprpc", "cdsp"), ("libsdsprpc", "sdsp")])
def test_each_flavour_opens_non_domain_handles_on_its_own_default_domain(flavour, domain):
    """As upstream builds the three libraries from one source with another DEFAULT_DOMAIN_ID."""
    from qda_core import trace

    lib = ctypes.CDLL(str(native.library(flavour)))
    lib.remote_handle_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32)]
    h = ctypes.c_uint32()
    uri = b"file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"
    try:
        with trace.recording() as rec:
            assert lib.remote_handle_open(uri, ctypes.byref(h)) == 0
            assert lib.remote_handle_close(h.value) == 0
        nodes = {e["node"] for e in rec.events if e["kind"] == "ioctl"}
        assert nodes and all(domain in node or "accel" in node for node in nodes), nodes
        session_nodes = {e["node"] for e in rec.events if e["kind"] == "ioctl" and e["name"].endswith("INIT_CREATE")}
        from qda_core.soc import default_soc

        assert session_nodes == {default_soc().domain(domain).accel.path}
    finally:
        from libadsprpc_compat import _cabi

        _cabi.close_all()
        rpc.shutdown()


URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def test_a_c_caller_takes_the_fast_entry():
    """The C library's remote_handle64_invoke goes through its fast entry (qdarpc/face.h,
    tests/test_c_abi_face.py): in a process whose library binds it, only the call the entry
    cannot serve reaches the Python function (counted by wrapping what bind hands out)."""
    script = textwrap.dedent(f"""
        import ctypes, json
        from libadsprpc_compat import _cabi
        seen = []
        real = _cabi._bound
        def counting(flavour):
            table = dict(real(flavour))
            slow = table["remote_handle64_invoke"]
            def wrapped(*a):
                seen.append(a[0])
                return slow(*a)
            table["remote_handle64_invoke"] = wrapped
            return table
        _cabi._bound = counting
        lib = ctypes.CDLL({str(native.library())!r})
        h = ctypes.c_uint64()
        assert lib.remote_handle64_open({URI!r}.encode(), ctypes.byref(h)) == 0
        codes = [lib.remote_handle64_invoke(h, 0x02000000, None) for _ in range(5)]
        codes.append(lib.remote_handle64_invoke(ctypes.c_uint64(0xDEAD), 0x02000000, None))
        lib.remote_handle64_close(h)
        print(json.dumps([codes, seen]))
    """)
    env = native.run_env(dict(os.environ))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    codes, seen = json.loads(p.stdout.splitlines()[-1])
    assert codes == [0] * 5 + [A.AEE_EINVHANDLE]
    assert seen == [0xDEAD]
