"""Contract tests: every public legacy name exists with the C parameter names (out-parameters
become return values), returns what it documents, and raises only the AEE codes its docstring
lists, for every error case we can trigger. Constants and struct layouts match remote.h."""
import ctypes
import inspect
import re
import struct

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.errors import bare_code
from qda_core._ext import load

abi = load("_abi")
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"

# name -> (parameters as in remote.h/rpcmem.h without out-parameters, return annotation)
SIGNATURES = {
    "remote_handle_open": (["name"], "int"),
    "remote_handle_invoke": (["h", "sc", "args"], "None"),
    "remote_handle_close": (["h"], "None"),
    "remote_handle64_open": (["name"], "int"),
    "remote_handle64_invoke": (["h", "sc", "args"], "None"),
    "remote_handle64_close": (["h"], "None"),
    "remote_handle_control": (["req", "data", "datalen"], "None"),
    "remote_handle64_control": (["h", "req", "data", "datalen"], "None"),
    "remote_session_control": (["req", "data", "datalen"], "None"),
    "fastrpc_mmap": (["domain", "fd", "addr", "offset", "length", "flags"], "None"),
    "fastrpc_munmap": (["domain", "fd", "addr", "length"], "None"),
    "remote_mmap": (["fd", "flags", "vaddrin", "size"], "int"),
    "remote_munmap": (["vaddrout", "size"], "None"),
    "remote_mmap64": (["fd", "flags", "vaddrin", "size"], "int"),
    "remote_munmap64": (["vaddrout", "size"], "None"),
    "remote_mem_map": (["domain", "fd", "flags", "virtAddr", "size"], "int"),
    "remote_mem_unmap": (["domain", "remoteVirtAddr", "size"], "None"),
    "remote_set_mode": (["mode"], "None"),
    "remote_register_buf": (["buf", "size", "fd"], "None"),
    "remote_register_buf_attr": (["buf", "size", "fd", "attr"], "None"),
    "remote_register_dma_handle": (["fd", "len"], "None"),
    "remote_register_dma_handle_attr": (["fd", "len", "attr"], "None"),
    "rpcmem_init": ([], "None"),
    "rpcmem_deinit": ([], "None"),
    "rpcmem_alloc": (["heapid", "flags", "size"], "RpcMem"),
    "rpcmem_alloc2": (["heapid", "flags", "size"], "RpcMem"),
    "rpcmem_free": (["po"], "None"),
    "rpcmem_to_fd": (["po"], "int"),
}
SCALARS = [n for n in rpc.LEGACY_FUNCTIONS if n.startswith("REMOTE_SCALARS_")]


def test_every_legacy_function_is_covered():
    assert set(rpc.LEGACY_FUNCTIONS) == set(SIGNATURES) | set(SCALARS)
    assert set(rpc.LEGACY_FUNCTIONS) <= set(rpc.__all__)
    for name in rpc.__all__:
        assert hasattr(rpc, name), name


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_and_doc(name):
    fn = getattr(rpc, name)
    assert callable(fn)
    sig = inspect.signature(fn)
    params, ret = SIGNATURES[name]
    assert list(sig.parameters) == params
    assert sig.return_annotation == ret
    doc = inspect.getdoc(fn)
    assert doc and "AEE codes:" in doc, f"{name} lacks the AEE codes list"
    # Library methods and module functions document the same contract
    if hasattr(rpc.Library, name):
        assert inspect.getdoc(getattr(rpc.Library, name)) == doc


def test_scalars_helpers():
    assert rpc.REMOTE_SCALARS_MAKE(2, 2, 1) == 0x02020100
    assert rpc.REMOTE_SCALARS_MAKEX(0, 0, 2, 0, 0, 1) == 0x00020001
    sc = 0x0A123456 | (5 << 29)
    assert (rpc.REMOTE_SCALARS_METHOD_ATTR(sc), rpc.REMOTE_SCALARS_METHOD(sc), rpc.REMOTE_SCALARS_INBUFS(sc),
            rpc.REMOTE_SCALARS_OUTBUFS(sc), rpc.REMOTE_SCALARS_INHANDLES(sc), rpc.REMOTE_SCALARS_OUTHANDLES(sc),
            rpc.REMOTE_SCALARS_LENGTH(sc)) == (5, 0x0A, 0x12, 0x34, 5, 6, 0x12 + 0x34 + 11)
    for n in SCALARS:
        assert getattr(rpc, n) is getattr(abi, n)


def test_constants():
    names = [r[0] for r in abi.AEE_TABLE if r[0].startswith("AEE_")]
    assert set(names) == set(rpc.AEE_NAMES) and len(names) > 100
    for n in names:
        assert getattr(rpc, n) == getattr(abi, n)
    # Domain ids: the library's table is the emulator's (one source, wire.DOMAIN_IDS).
    from qda_core.wire import DOMAIN_IDS
    assert {d: getattr(rpc, f"{d.upper()}_DOMAIN_ID") for d in DOMAIN_IDS} == DOMAIN_IDS
    assert all(getattr(rpc, f"{d.upper()}_DOMAIN") == f"&_dom={d}" and
               len(getattr(rpc, f"{d.upper()}_DOMAIN")) < rpc.MAX_DOMAIN_URI_SIZE for d in DOMAIN_IDS)


@pytest.mark.parametrize("st,size", [
    ("remote_dma_handle", 8), ("remote_rpc_control_latency", 8), ("remote_dsp_capability", 12),
    ("remote_rpc_control_wakelock", 4), ("remote_rpc_get_domain", 4), ("remote_control_custom_path", 24),
    ("remote_rpc_thread_params", 12), ("remote_rpc_control_unsigned_module", 8),
    ("remote_rpc_relative_thread_priority", 8), ("remote_rpc_process_clean_params", 4),
    ("remote_rpc_session_close", 4), ("remote_rpc_control_pd_dump", 8), ("remote_rpc_process_exception", 4),
    ("remote_process_type", 8), ("remote_rpc_notif_register", 24), ("remote_rpc_pd_initmem_size", 8),
    ("remote_rpc_reserve_new_session", 40), ("remote_rpc_effective_domain_id", 24), ("remote_rpc_get_uri", 48),
    ("fastrpc_context_create", 32), ("fastrpc_context_destroy", 16)])
def test_struct_sizes(st, size):
    assert ctypes.sizeof(getattr(rpc, st)) == size


def test_struct_offsets():
    def offs(st):
        return [getattr(st, f).offset for f, _ in st._fields_]
    assert offs(rpc.remote_rpc_reserve_new_session) == [0, 8, 16, 24, 28, 32]
    assert offs(rpc.remote_rpc_get_uri) == [0, 8, 12, 16, 24, 32, 40]


# --- documented AEE codes vs reality ------------------------------------------------------
def documented(fn) -> tuple[set[str], bool]:
    doc = inspect.getdoc(fn)
    text = doc[doc.index("AEE codes:"):]
    names = set(re.findall(r"AEE_[A-Z_]+", text)) | {h.lower() for h in re.findall(r"0x[0-9a-fA-F]+", text)}
    return names, "DSP" in text or "invoke errors" in text or "driver" in text


@pytest.fixture
def env(soc):
    rpc.use_soc(soc)
    lib = rpc.Library("accel")
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, 1, 4096)
    yield lib, m
    rpc.rpcmem_free(m)
    rpc.use_soc(None)


def _cases(lib, m):
    """(function, call) for every error case triggerable without special hardware."""
    c = lib
    fresh = rpc.Library("legacy")  # never opens a session: the "no session" cases
    h = None

    def opened():
        nonlocal h
        if h is None:
            h = c.remote_handle64_open(TEST)
        return h
    name = ctypes.create_string_buffer(b"cdsp")
    return [
        ("remote_handle_open", lambda: c.remote_handle_open("")),
        ("remote_handle_open", lambda: c.remote_handle_open(":attachguestos")),
        ("remote_handle_open", lambda: c.remote_handle_open("file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0")),
        ("remote_handle_invoke", lambda: c.remote_handle_invoke(-1, 0, [])),
        ("remote_handle_invoke", lambda: c.remote_handle_invoke(0x12345678, 0x02000000, [])),
        ("remote_handle_close", lambda: c.remote_handle_close(-1)),
        ("remote_handle_close", lambda: c.remote_handle_close(0x1234)),
        ("remote_handle64_open", lambda: c.remote_handle64_open("file:///x.so?x")),
        ("remote_handle64_open", lambda: c.remote_handle64_open(TEST + "&_session=9")),
        ("remote_handle64_open", lambda: c.remote_handle64_open(TEST.replace("cdsp", "cdsp1"))),
        ("remote_handle64_open", lambda: c.remote_handle64_open("file:///libnope_skel.so?n&_modver=1.0&_dom=cdsp")),
        ("remote_handle64_invoke", lambda: rpc.remote_handle64_invoke(77, 0, [])),
        ("remote_handle64_invoke", lambda: rpc.remote_handle64_invoke(opened(), 0x03010100, [b"x"])),
        ("remote_handle64_invoke", lambda: rpc.remote_handle64_invoke(opened(), 0x03010100, [b"x", b"y"])),
        ("remote_handle64_invoke", lambda: rpc.remote_handle64_invoke(opened(), 0x10000000, [])),
        ("remote_handle64_invoke", lambda: rpc.remote_handle64_invoke(opened(), 0x03000000, [])),
        ("remote_handle64_close", lambda: rpc.remote_handle64_close(77)),
        ("remote_handle_control", lambda: c.remote_handle_control(0, bytearray(8))),
        ("remote_handle_control", lambda: c.remote_handle_control(1, bytearray(4))),
        ("remote_handle_control", lambda: c.remote_handle_control(1, rpc.remote_rpc_control_latency(0, 0))),
        ("remote_handle_control", lambda: c.remote_handle_control(2, rpc.remote_dsp_capability(99, 0, 0))),
        ("remote_handle64_control", lambda: c.remote_handle64_control(77, 4, rpc.remote_rpc_get_domain())),
        ("remote_session_control", lambda: c.remote_session_control(0, bytearray(4))),
        ("remote_session_control", lambda: c.remote_session_control(2, bytearray(4))),
        ("remote_session_control", lambda: c.remote_session_control(6, rpc.remote_rpc_process_clean_params(3))),
        ("remote_session_control", lambda: c.remote_session_control(7, rpc.remote_rpc_session_close(11))),
        ("remote_session_control", lambda: c.remote_session_control(
            14, rpc.remote_rpc_effective_domain_id(ctypes.addressof(name), 5, 7, 0))),
        ("fastrpc_mmap", lambda: fresh.fastrpc_mmap(3, m.fd, m, 0, 4096, 2)),
        ("fastrpc_mmap", lambda: c.fastrpc_mmap(3, m.fd, m, 1, 4096, 2)),
        ("fastrpc_munmap", lambda: fresh.fastrpc_munmap(3, m.fd)),
        ("remote_mmap64", lambda: fresh.remote_mmap64(m.fd, 0, m.address, 4096)),
        ("remote_mmap64", lambda: c.remote_mmap64(m.fd, 3, m.address, 4096)),
        ("remote_mmap", lambda: c.remote_mmap(-1, 0, 0, 4096)),
        ("remote_munmap64", lambda: fresh.remote_munmap64(0x1000, 4096)),
        ("remote_munmap", lambda: fresh.remote_munmap(0x1000, 4096)),
        ("remote_mem_map", lambda: c.remote_mem_map(3, m.fd, 1, 0, 4096)),
        ("remote_mem_map", lambda: fresh.remote_mem_map(3, m.fd, 0, 0, 4096)),
        ("remote_mem_unmap", lambda: c.remote_mem_unmap(3, 0, 4096)),
        ("remote_register_buf", lambda: (rpc.remote_register_buf(m.address + 64, 64, m.fd),
                                         rpc.remote_register_buf(m.address + 64, 65, -1))),
        ("remote_register_buf_attr", lambda: rpc.remote_register_buf_attr(m.address + 64, 63, -1, 0)),
        ("remote_register_dma_handle", lambda: rpc.remote_register_dma_handle(-2, 10)),
        ("remote_register_dma_handle_attr", lambda: rpc.remote_register_dma_handle_attr(3, 10, 4)),
        ("rpcmem_alloc", lambda: rpc.rpcmem_alloc(25, 1, -5)),
        ("rpcmem_alloc2", lambda: rpc.rpcmem_alloc2(25, 1, 0)),
        # with a session open
        ("remote_munmap64", lambda: (opened(), c.remote_munmap64(0x1000, 4096))),
        ("remote_mem_unmap", lambda: (opened(), c.remote_mem_unmap(3, 0x1000, 4096))),
        ("remote_session_control", lambda: (opened(), c.remote_session_control(8, rpc.remote_rpc_control_pd_dump(3, 1)))),
        ("fastrpc_mmap", lambda: (opened(), c.fastrpc_mmap(3, m.fd, m, 0, 4096, 2), c.fastrpc_mmap(3, m.fd, m, 0, 4096, 2))),
        ("remote_handle_invoke", lambda: (opened(), c.remote_handle_invoke(0x12345678, 0x02000000, []))),
    ]


def test_documented_codes_match_the_errors_we_can_trigger(env):
    lib, m = env
    seen = {}
    for i, (name, call) in enumerate(_cases(lib, m)):
        with pytest.raises(rpc.FastRpcError) as e:
            call()
            pytest.fail(f"case {i} ({name}) raised nothing")
        err = e.value
        listed, dsp_ok = documented(getattr(rpc, name))
        label = abi.aee_name(bare_code(err.aee))
        if label == "AEE_EBADHANDLE":
            label = "AEE_EINVHANDLE"
        ok = label in listed or f"{err.aee:#x}" in listed or (err.origin in ("dsp", "driver") and dsp_ok)
        assert ok, f"{name}: raised {label} ({err.aee:#x}, {err.origin}) not in its docstring {sorted(listed)}"
        seen.setdefault(name, set()).add(label)
    # each function with error paths had at least one case
    assert set(seen) >= set(SIGNATURES) - {"rpcmem_init", "rpcmem_deinit", "rpcmem_free", "rpcmem_to_fd",
                                           "remote_set_mode"}
    for h in list(rpc.process._records):
        rpc.remote_handle64_close(h)
    rpc.remote_register_buf(m.address + 64, 64, -1)  # the case whose deregistration failed


def test_return_types(env):
    lib, m = env
    assert isinstance(m, rpc.RpcMem) and memoryview(m).nbytes == 4096
    h = lib.remote_handle64_open(TEST)
    assert isinstance(h, int)
    assert rpc.remote_handle64_invoke(h, 0x02000000, []) is None
    va = lib.remote_mmap64(m.fd, 0, m.address, 4096)
    assert isinstance(va, int) and va
    assert lib.remote_munmap64(va, 4096) is None
    assert isinstance(rpc.rpcmem_to_fd(m), int)
    nd = lib.remote_handle_open(TEST)
    assert isinstance(nd, int) and nd <= 0xFFFF_FFFF
    assert lib.remote_handle_close(nd) is None
    assert rpc.remote_handle64_close(h) is None
    assert struct.calcsize("<Q") == 8


def test_domain_table_is_the_emulators():
    """constants.py is the library's one domain table; it names what qda_core.soc emulates."""
    from qda_core.soc import DOMAINS

    assert rpc.DOMAIN_NAMES == {dom_id: name for name, dom_id in DOMAINS.items()}
    for name, dom_id in DOMAINS.items():
        assert getattr(rpc, f"{name.upper()}_DOMAIN_ID") == dom_id
        assert getattr(rpc, f"{name.upper()}_DOMAIN") == rpc.FASTRPC_DOMAIN_URI + name
    # URI matching tries a name before any name it is a prefix of (cdsp1 before cdsp)
    names = list(rpc.DOMAIN_NAMES.values())
    assert all(names.index(a) < names.index(b) for a in names for b in names if a != b and a.startswith(b))


# --- use_library: the module-level functions on a given Library for a block ----------------
def test_use_library(soc):
    assert list(inspect.signature(rpc.use_library).parameters) == ["lib"] and inspect.getdoc(rpc.use_library)
    state = rpc.process.state
    before = (state.backend, dict(state.libs), state.used)
    rpc.use_soc(soc)  # unlocks set_backend; the libraries below run on soc
    try:
        lib, inner = rpc.Library("legacy"), rpc.Library("accel")
        with rpc.use_library(lib) as got:
            assert got is lib
            h = rpc.remote_handle64_open(TEST)  # a module-level open: on lib
            assert rpc.process._records[h].session.lib is lib and state.used
            rpc.set_backend("legacy")  # lib's backend: fine
            with pytest.raises(rpc.AlreadyLoadedError) as e:
                rpc.set_backend("accel")
            assert e.value.aee == rpc.AEE_EALREADYLOADED
            with rpc.use_library(inner):  # nested: the inner one wins, then lib again
                h2 = rpc.remote_handle64_open(TEST)
                assert rpc.process._records[h2].session.lib is inner
                rpc.remote_handle64_close(h2)
            rpc.remote_handle64_close(h)
            h = rpc.remote_handle64_open(TEST)
            assert rpc.process._records[h].session.lib is lib
        assert lib._sessions  # the block closes nothing of lib's
        rpc.remote_handle64_close(h)  # handles route themselves after the block too
        assert (state.backend, state.libs, state.used) == (before[0], before[1], False)
        with pytest.raises(TypeError):
            with rpc.use_library("legacy"):
                pass
        lib.close_all()
        inner.close_all()
    finally:
        rpc.use_soc(None)
    assert state.backend == before[0]


# --- the pytest plugin (cli/pytest_plugin.py, qdarpc_cli.pytest_plugin) ------------------------
#: Its public names: "fixture", a function's (parameters, return annotation), or a constant's value.
PLUGIN_NAMES = {
    "qdarpc_soc": "fixture",
    "fastrpc": "fixture",
    "format_trace": (["events", "tail", "header", "fired", "unfired"], "str"),
    "DEFAULT_TRACE_TAIL": 30,
    "MARKER_ARGS": ("backends", "soc", "kernel", "faults"),
}


def test_pytest_plugin_public_names(request):
    from qdarpc_cli import pytest_plugin as plug

    assert set(plug.__all__) == set(PLUGIN_NAMES)
    assert request.config.pluginmanager.get_plugin("qdarpc") is plug  # the pytest11 entry point
    assert any(line.startswith("qdarpc(") for line in request.config.getini("markers"))
    for name, want in PLUGIN_NAMES.items():
        obj = getattr(plug, name)
        if want == "fixture":
            assert obj.__name__ == name and inspect.getdoc(obj), name
        elif isinstance(want, tuple) and callable(obj):
            sig = inspect.signature(obj)
            assert (list(sig.parameters), sig.return_annotation) == want and inspect.getdoc(obj), name
        else:
            assert obj == want, name
