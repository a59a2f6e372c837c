"""libadsprpc_compat end to end on both backends: the fastrpc_test calculator flow, rpcmem by
reference vs plain memory by copy, fastrpc_mmap rules, handle and argument errors with the real
codes, sessions, controls, tracing and clean teardown."""
import ctypes
import struct

import numpy as np
import pytest

import libadsprpc_compat as rpc
from qda_core import debug, trace

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL, SC_ECHO, SC_INC, SC_FAIL, SC_CRASH = 0x02000000, 0x03010100, 0x04000100, 0x05010000, 0x06000000
SC_MAPPED_READ = 0x08010100
BACKENDS = ["accel", "legacy"]


@pytest.fixture
def rpcsoc(soc):
    """Module-level functions on a fresh SoC; every session torn down after the test."""
    rpc.use_soc(soc)
    yield soc
    rpc.use_soc(None)
    rpc.set_backend("accel")


@pytest.fixture(params=BACKENDS)
def lib(request, rpcsoc):
    return rpc.Library(request.param)


def cdsp_procs(soc, alive_only=True):
    return [p for p in soc.domain("cdsp").dsp.processes() if p.kind == "user" and (not alive_only or p.state == "alive")]


def calculator_test(backend: str):
    """fastrpc_test's libcalculator run_test (spec §8.2) through the module-level API."""
    rpc.set_backend(backend)
    buf = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4000)
    vec = np.frombuffer(buf, np.int32)
    vec[:] = np.arange(1000)
    rpc.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE,
                               rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 1), 8)
    uri = CALC + rpc.CDSP_DOMAIN
    h_sum = rpc.remote_handle64_open(uri)
    res = bytearray(8)
    rpc.remote_handle64_invoke(h_sum, 0x02020100, [struct.pack("<i", 1000), buf, res])
    h_max = rpc.remote_handle64_open(uri)
    m = bytearray(4)
    rpc.remote_handle64_invoke(h_max, 0x03020100, [struct.pack("<i", 1000), buf, m])
    rpc.remote_handle64_close(h_sum)
    rpc.remote_handle64_close(h_max)
    del vec
    rpc.rpcmem_free(buf)
    return struct.unpack("<q", res)[0], struct.unpack("<i", m)[0]


def test_calculator_flow_identical_on_both_backends(rpcsoc):
    results = {}
    for backend in BACKENDS:
        results[backend] = calculator_test(backend)
        assert not cdsp_procs(rpcsoc)  # the last close tore the session down
        rpc.use_soc(rpcsoc)  # unlock set_backend for the next round
    assert results["accel"] == results["legacy"] == (499500, 999)


def test_both_backends_live_in_one_process(rpcsoc):
    acc, leg = rpc.Library("accel"), rpc.Library("legacy")
    buf = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4000)
    np.frombuffer(buf, np.int32)[:] = np.arange(1000)
    ha = acc.remote_handle64_open(CALC + rpc.CDSP_DOMAIN)
    hl = leg.remote_handle64_open(CALC + rpc.CDSP_DOMAIN)
    assert ha != hl
    outs = []
    for h in (ha, hl, ha):
        out = bytearray(8)
        rpc.remote_handle64_invoke(h, 0x02020100, [struct.pack("<i", 1000), buf, out])
        outs.append(struct.unpack("<q", out)[0])
    assert outs == [499500] * 3
    chans = {p.channel for p in cdsp_procs(rpcsoc)}
    assert len(chans) == 2  # one DSP process per driver channel, same DSP
    rpc.remote_handle64_close(ha)
    rpc.remote_handle64_close(hl)
    rpc.rpcmem_free(buf)


def test_rpcmem_by_reference_plain_by_copy(lib):
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    h = lib.remote_handle64_open(TEST)
    mv = memoryview(m)
    mv[:64] = b"\x10" * 64
    rpc.remote_handle64_invoke(h, SC_INC, [mv[:64]])
    assert bytes(mv[:64]) == b"\x11" * 64            # the DSP wrote the caller's pages
    mv[5000:5010] = b"\x30" * 10
    rpc.remote_handle64_invoke(h, SC_INC, [mv[5000:5010]])  # a sub-range, also by reference
    assert bytes(mv[5000:5010]) == b"\x31" * 10
    plain = bytearray(b"\x10" * 64)
    rpc.remote_handle64_invoke(h, SC_INC, [plain])
    assert plain == b"\x01" * 64                     # a zeroed copy went out, the result came back
    noreg = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_HEAP_NOREG, 4096)
    memoryview(noreg)[:8] = b"\x10" * 8
    rpc.remote_handle64_invoke(h, SC_INC, [memoryview(noreg)[:8]])
    assert bytes(memoryview(noreg)[:8]) == b"\x01" * 8  # not registered: copied
    rpc.remote_handle64_close(h)
    mv.release()
    rpc.rpcmem_free(m)
    rpc.rpcmem_free(noreg)


def test_buffer_overrunning_its_registration_is_rejected(lib):
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    h = lib.remote_handle64_open(TEST)
    rpc.remote_register_buf(memoryview(m)[:4096], 4096, rpc.rpcmem_to_fd(m))
    rpc.remote_register_buf(memoryview(m)[:4096], 4096, -1)  # refcounted: rpcmem's own stays
    # A range registered alone (not the whole allocation) and a buffer running past it.
    big = bytearray(8192)
    rpc.remote_register_buf(big, 4096, rpc.rpcmem_to_fd(m))
    with pytest.raises(rpc.BadParameterError) as e:
        rpc.remote_handle64_invoke(h, SC_INC, [memoryview(big)[4000:4200]])
    assert e.value.aee == rpc.AEE_EBADPARM and e.value.origin == "host"
    with pytest.raises(rpc.BadParameterError):
        rpc.remote_register_buf(big, 100, -1)  # another size than registered
    rpc.remote_register_buf(big, 4096, -1)
    rpc.remote_handle64_invoke(h, SC_INC, [memoryview(big)[4000:4200]])  # now copied
    rpc.remote_handle64_close(h)
    rpc.rpcmem_free(m)


def test_rpcmem_api(rpcsoc):
    m = rpc.rpcmem_alloc2(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 100)
    assert isinstance(m, rpc.RpcMem) and len(m) == 100 and m.address
    fd = rpc.rpcmem_to_fd(m)
    assert fd == m.fd >= 0 and rpc.rpcmem_to_fd(m.address) == fd
    assert rpc.rpcmem_to_fd(m.address + 4) == -1  # only the base pointer
    with pytest.raises(rpc.BadParameterError):
        rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, 1, 0)
    rpc.rpcmem_free(m)
    rpc.rpcmem_free(m)  # unknown now: ignored
    assert rpc.rpcmem_to_fd(m.address) == -1
    rpc.rpcmem_init()
    rpc.rpcmem_deinit()


def test_fastrpc_mmap_rules(lib):
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    memoryview(m)[:8] = b"mapped!!"
    fd = rpc.rpcmem_to_fd(m)
    with pytest.raises(rpc.NotInitializedError):
        lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, fd, m, 0, 4096, rpc.FASTRPC_MAP_FD)
    h = lib.remote_handle64_open(TEST)
    for bad in [(-1, 0, rpc.FASTRPC_MAP_FD), (fd, 4, rpc.FASTRPC_MAP_FD), (fd, 0, rpc.FASTRPC_MAP_RESERVED),
                (fd, 0, 17), (fd, 0, 0x10000)]:
        with pytest.raises(rpc.BadParameterError):
            lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, bad[0], m, bad[1], 4096, bad[2])
    lib.fastrpc_mmap(-1, fd, m, 0, 4096, rpc.FASTRPC_MAP_FD)  # -1: the current domain
    with pytest.raises(rpc.AlreadyError):
        lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, fd, m, 0, 4096, rpc.FASTRPC_MAP_FD)
    dsp_fd = lib.dsp_fd(fd)  # the fd on legacy, the session's GEM handle on accel
    out = bytearray(8)
    rpc.remote_handle64_invoke(h, SC_MAPPED_READ, [struct.pack("<iII", dsp_fd, 0, 8), out])
    assert out == b"mapped!!"
    lib.fastrpc_munmap(rpc.CDSP_DOMAIN_ID, fd, None, 0)
    with pytest.raises(rpc.NoSuchMapError):
        lib.fastrpc_munmap(rpc.CDSP_DOMAIN_ID, fd, None, 0)
    with pytest.raises(rpc.NoSuchMapError) as e:  # the DSP no longer finds it either
        rpc.remote_handle64_invoke(h, SC_MAPPED_READ, [struct.pack("<iII", dsp_fd, 0, 8), out])
    assert e.value.aee == 0x80000448 and e.value.origin == "dsp"
    lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, fd, m, 0, 4096, rpc.FASTRPC_MAP_STATIC)  # again after unmap
    rpc.remote_handle64_close(h)  # last handle: the session (and its maps) go
    with pytest.raises(rpc.NoSuchMapError):
        lib.fastrpc_munmap(rpc.CDSP_DOMAIN_ID, fd, None, 0)
    rpc.rpcmem_free(m)


def test_remote_mmap64_and_mem_map(lib):
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    fd = m.fd
    with pytest.raises(rpc.NotInitializedError):
        lib.remote_mmap64(fd, 0, m.address, 4096)
    h = lib.remote_handle64_open(TEST)
    with pytest.raises(rpc.BadParameterError):
        lib.remote_mmap64(fd, 1, m.address, 4096)
    va = lib.remote_mmap64(fd, 0, m.address, 4096)
    assert va
    with pytest.raises(rpc.AlreadyError):
        lib.remote_mmap(fd, 0, m.address, 4096)
    lib.remote_munmap64(va, 4096)
    va32 = lib.remote_mmap(fd, 0, m.address, 4096)
    assert va32 == va & 0xFFFF_FFFF
    lib.remote_munmap(va32, 4096)
    with pytest.raises(rpc.BadParameterError):
        lib.remote_mem_map(rpc.CDSP_DOMAIN_ID, fd, 1, m.address, 4096)
    if lib.backend == "legacy":  # the upstream kernel rejects MMAP flags 0 (spec §10.7)
        with pytest.raises(rpc.BadParameterError) as e:
            lib.remote_mem_map(rpc.CDSP_DOMAIN_ID, fd, 0, m.address, 4096)
        assert e.value.origin == "driver" and e.value.errno == 22
    else:  # the QDA driver forwards it; the DSP maps the object
        va = lib.remote_mem_map(rpc.CDSP_DOMAIN_ID, fd, 0, m.address, 4096)
        lib.remote_mem_unmap(rpc.CDSP_DOMAIN_ID, va, 4096)
    with pytest.raises(rpc.BadParameterError):
        lib.remote_mem_unmap(rpc.CDSP_DOMAIN_ID, 0, 4096)
    rpc.remote_handle64_close(h)
    rpc.rpcmem_free(m)


def test_invoke_errors_with_the_real_codes(lib):
    h = lib.remote_handle64_open(TEST)
    with pytest.raises(rpc.InvalidHandleError) as e:
        rpc.remote_handle64_invoke(0xDEAD_BEEF, SC_NULL, [])
    assert e.value.aee == rpc.AEE_EINVHANDLE and e.value.origin == "host"
    with pytest.raises(rpc.BadParameterError) as e:  # sc says 2 buffers, 1 given
        rpc.remote_handle64_invoke(h, SC_ECHO, [b"x"])
    assert e.value.aee == rpc.AEE_EBADPARM and e.value.origin == "host"
    with pytest.raises(rpc.BadParameterError):  # read-only out-buffer
        rpc.remote_handle64_invoke(h, SC_ECHO, [b"x", b"y"])
    with pytest.raises(rpc.BadParameterError):  # not a buffer
        rpc.remote_handle64_invoke(h, SC_ECHO, [b"x", 5])
    with pytest.raises(rpc.UnsupportedError) as e:  # unknown method
        rpc.remote_handle64_invoke(h, 0x10000000, [])
    assert e.value.aee == 0x80000414 and e.value.origin == "dsp"
    with pytest.raises(rpc.BadParameterError) as e:  # the skel's own count check
        rpc.remote_handle64_invoke(h, 0x03000000, [])
    assert e.value.aee == 0x8000040E and e.value.origin == "dsp"
    with pytest.raises(rpc.UnsupportedError) as e:  # a bare code returned by DSP code
        rpc.remote_handle64_invoke(h, SC_FAIL, [struct.pack("<i", 20)])
    assert e.value.aee == 20 and e.value.origin == "dsp"
    src, dst = bytearray(b"abc"), bytearray(3)
    rpc.remote_handle64_invoke(h, SC_ECHO, [src, dst])
    assert dst == src
    rpc.remote_handle64_invoke(h, SC_NULL, None)
    h2 = lib.remote_handle64_open(TEST)
    rpc.remote_handle64_close(h2)
    with pytest.raises(rpc.InvalidHandleError):  # closed
        rpc.remote_handle64_invoke(h2, SC_NULL, [])
    with pytest.raises(rpc.InvalidHandleError):
        rpc.remote_handle64_close(h2)
    rpc.remote_handle64_close(h)


def test_crash_then_bad_state(lib):
    h = lib.remote_handle64_open(TEST)
    with pytest.raises(rpc.BadStateError) as e:
        rpc.remote_handle64_invoke(h, SC_CRASH, [])
    assert e.value.aee == 0x8000040D
    with pytest.raises(rpc.BadStateError):
        rpc.remote_handle64_invoke(h, SC_NULL, [])
    rpc.remote_handle64_close(h)


def test_open_errors(lib):
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle64_open(TEST.replace("&_dom=cdsp", ""))  # no &_dom
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle64_open(TEST.replace("&_dom=cdsp", "?_dom=cdsp"))  # needs the '&'
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle64_open(TEST + "&_session=4")
    with pytest.raises(rpc.NoSuchModuleError) as e:
        lib.remote_handle64_open("file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    assert e.value.aee == 0x8000043E and e.value.origin == "dsp"
    assert not cdsp_procs(lib.soc)  # the failed first open left no session
    with pytest.raises(rpc.ConnectionRefusedFastRpcError):
        lib.remote_handle64_open(TEST.replace("cdsp", "cdsp1"))  # no such DSP on this SoC
    with pytest.raises(rpc.UnsupportedError):
        lib.remote_handle64_open(":createstaticpd:audiopd&_dom=adsp")


def test_domain_uri_rules():
    d = rpc.uri.domain_from_uri
    assert d("x&_dom=cdsp") == 3 and d("x&_dom=cdsp1") == 4 and d("x&_dom=adsp&_session=1") == 8
    assert d("x&_dom=cdsp&_session=3") == 27 and d("x&_dom=sdsp&_session=0") == 2
    for bad in ("x", "x?_dom=cdsp", "x&_dom=cdsp&_session=4", "x&_dom=cdsp&_session=-1"):
        with pytest.raises(rpc.BadParameterError):
            d(bad)


def test_sessions_lifecycle(lib):
    soc = lib.soc
    h1 = lib.remote_handle64_open(TEST)
    h2 = lib.remote_handle64_open(TEST + "&_session=1")
    assert len(cdsp_procs(soc)) == 2  # one DSP process per effective domain
    get = rpc.remote_rpc_get_domain()
    lib.remote_handle64_control(h2, rpc.DSPRPC_GET_DOMAIN, get)
    assert get.domain == rpc.CDSP_DOMAIN_ID + 8
    h3 = lib.remote_handle64_open(TEST)
    rpc.remote_handle64_close(h1)  # not the last one: remotectl close, session stays
    assert len(cdsp_procs(soc)) == 2
    rpc.remote_handle64_invoke(h3, SC_NULL, [])
    rpc.remote_handle64_close(h3)  # last of session 0: the process goes
    assert len(cdsp_procs(soc)) == 1
    lib.remote_session_control(rpc.FASTRPC_SESSION_CLOSE, rpc.remote_rpc_session_close(rpc.CDSP_DOMAIN_ID + 8))
    assert not cdsp_procs(soc)
    with pytest.raises(rpc.InvalidHandleError):
        rpc.remote_handle64_invoke(h2, SC_NULL, [])
    with pytest.raises(rpc.FastRpcError) as e:
        lib.remote_session_control(rpc.FASTRPC_SESSION_CLOSE, rpc.remote_rpc_session_close(rpc.CDSP_DOMAIN_ID))
    assert e.value.aee == rpc.AEE_EUNKNOWN


def test_nondomain_handles(lib):
    get = rpc.remote_rpc_get_domain()
    lib.remote_handle_control(rpc.DSPRPC_GET_DOMAIN, get)
    assert get.domain == rpc.DEFAULT_DOMAIN_ID
    h = lib.remote_handle_open(TEST)
    assert 0x200 < h <= 0xFFFF_FFFF
    lib.remote_handle_invoke(h, SC_NULL, [])
    h64 = lib.remote_handle64_open(TEST)
    rpc.remote_handle64_close(h64)  # a non-domain handle is open: the session stays
    assert cdsp_procs(lib.soc)
    lib.remote_handle_close(h)
    with pytest.raises(rpc.NoSuchModuleError):
        lib.remote_handle_invoke(h, SC_NULL, [])
    with pytest.raises(rpc.InvalidHandleError):
        lib.remote_handle_invoke(-1, SC_NULL, [])


def test_unsigned_module_and_process_type(lib):
    ctl = rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 1)
    lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE, ctl)
    h = lib.remote_handle64_open(TEST)
    assert [p.signed for p in cdsp_procs(lib.soc)] == [False]
    pt = rpc.remote_process_type(rpc.CDSP_DOMAIN_ID, -1)
    lib.remote_session_control(rpc.FASTRPC_REMOTE_PROCESS_TYPE, pt)
    assert pt.process_type == 1
    lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE, ctl)  # same mode: fine
    with pytest.raises(rpc.AlreadyLoadedError):
        lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE,
                                   rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 0))
    with pytest.raises(rpc.BadParameterError):  # datalen must be exact
        lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE, ctl, 4)
    rpc.remote_handle64_close(h)


def test_thread_params_reach_the_dsp(lib):
    lib.remote_session_control(rpc.FASTRPC_THREAD_PARAMS, rpc.remote_rpc_thread_params(rpc.CDSP_DOMAIN_ID, 142, 16384))
    h = lib.remote_handle64_open(TEST)
    dsp = lib.soc.domain("cdsp").dsp
    (p,) = [p for p in dsp._procs.values() if p.kind == "user"]
    assert p.params[1] == (142, 16384)
    lib.remote_session_control(rpc.FASTRPC_RELATIVE_THREAD_PRIORITY,
                               rpc.remote_rpc_relative_thread_priority(rpc.CDSP_DOMAIN_ID, -50))
    assert p.params[1] == (192 - 50, 16384)  # applied at once to the open session
    for bad in [(3, 0, 16384), (3, 256, 16384), (3, 10, 1024)]:
        with pytest.raises(rpc.BadParameterError):
            lib.remote_session_control(rpc.FASTRPC_THREAD_PARAMS, rpc.remote_rpc_thread_params(*bad))
    rpc.remote_handle64_close(h)


def test_handle_control_requests(lib):
    cap = rpc.remote_dsp_capability(rpc.CDSP_DOMAIN_ID, rpc.DOMAIN_SUPPORT, 0)
    lib.remote_handle_control(rpc.DSPRPC_GET_DSP_INFO, cap, 12)
    assert cap.capability == 1
    cap = rpc.remote_dsp_capability(rpc.CDSP1_DOMAIN_ID, rpc.DOMAIN_SUPPORT, 7)
    lib.remote_handle_control(rpc.DSPRPC_GET_DSP_INFO, cap)
    assert cap.capability == 0
    cap = rpc.remote_dsp_capability(rpc.CDSP_DOMAIN_ID, rpc.UNSIGNED_PD_SUPPORT, 7)
    lib.remote_handle_control(rpc.DSPRPC_GET_DSP_INFO, cap)
    # legacy asks the DSP; the QDA library has no capability ioctl and leaves the value alone
    assert cap.capability == (1 if lib.backend == "legacy" else 7)
    for bad in [(32, 0), (3, 260)]:
        with pytest.raises(rpc.BadParameterError):
            lib.remote_handle_control(rpc.DSPRPC_GET_DSP_INFO, rpc.remote_dsp_capability(*bad, 0))
    lib.remote_handle_control(rpc.DSPRPC_CONTROL_LATENCY, rpc.remote_rpc_control_latency(rpc.RPC_PM_QOS, 100))
    with pytest.raises(rpc.UnsupportedError):
        lib.remote_handle_control(rpc.DSPRPC_CONTROL_LATENCY, rpc.remote_rpc_control_latency(rpc.RPC_POLL_QOS, 100))
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle_control(rpc.DSPRPC_CONTROL_LATENCY, rpc.remote_rpc_control_latency(rpc.RPC_POLL_QOS, 10000))
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle_control(rpc.DSPRPC_CONTROL_LATENCY, bytearray(12))  # datalen 12 != 8
    with pytest.raises(rpc.BadParameterError):
        lib.remote_handle_control(rpc.DSPRPC_GET_DOMAIN, None, 4)
    with pytest.raises(rpc.BadParameterError):  # outputs need a writable struct
        lib.remote_handle_control(rpc.DSPRPC_GET_DOMAIN, bytes(4))
    lib.remote_handle_control(rpc.DSPRPC_CONTROL_WAKELOCK, rpc.remote_rpc_control_wakelock(1))
    for req in (0, 5, 6, 7, 14, 99):
        with pytest.raises(rpc.UnsupportedError) as e:
            lib.remote_handle_control(req, bytearray(24))
        assert e.value.aee == rpc.AEE_EUNSUPPORTED
    with pytest.raises(rpc.InvalidHandleError):
        lib.remote_handle64_control(12345, rpc.DSPRPC_GET_DOMAIN, rpc.remote_rpc_get_domain())


def test_session_control_requests(lib):
    name = ctypes.create_string_buffer(b"cdsp")
    eff = rpc.remote_rpc_effective_domain_id(ctypes.addressof(name), 5, 2, 0)
    lib.remote_session_control(rpc.FASTRPC_GET_EFFECTIVE_DOMAIN_ID, eff)
    assert eff.effective_domain_id == 19
    module = ctypes.create_string_buffer(b"file:///x.so?x_skel_handle_invoke&_modver=1.0")
    out = ctypes.create_string_buffer(128)
    gu = rpc.remote_rpc_get_uri(ctypes.addressof(name), 5, 1, ctypes.addressof(module), len(module),
                                ctypes.addressof(out), 128)
    lib.remote_session_control(rpc.FASTRPC_GET_URI, gu)
    assert out.value == module.value + b"&_dom=cdsp&_session=1"
    gu.uri_len = len(module) + 2
    with pytest.raises(rpc.BadParameterError) as e:
        lib.remote_session_control(rpc.FASTRPC_GET_URI, gu)
    assert e.value.aee == rpc.AEE_EBADSIZE
    reserved = []
    for _ in range(3):
        r = rpc.remote_rpc_reserve_new_session(ctypes.addressof(name), 5, 0, 0, 0, 0)
        lib.remote_session_control(rpc.FASTRPC_RESERVE_NEW_SESSION, r)
        reserved.append((r.effective_domain_id, r.session_id))
    assert reserved == [(11, 1), (19, 2), (27, 3)]
    with pytest.raises(rpc.NoSessionError):
        lib.remote_session_control(rpc.FASTRPC_RESERVE_NEW_SESSION,
                                   rpc.remote_rpc_reserve_new_session(ctypes.addressof(name), 5, 0, 0, 0, 0))
    for req in (0, 3, 5, 16, 19, 20, 77):
        with pytest.raises(rpc.UnsupportedError):
            lib.remote_session_control(req, bytearray(8))
    with pytest.raises(rpc.RpcError):  # needs an open session
        lib.remote_session_control(rpc.FASTRPC_REMOTE_PROCESS_KILL, rpc.remote_rpc_process_clean_params(3))
    with pytest.raises(rpc.UnsupportedError):
        lib.remote_session_control(rpc.FASTRPC_REGISTER_STATUS_NOTIFICATIONS, rpc.remote_rpc_notif_register())
    with pytest.raises(rpc.BadParameterError):
        lib.remote_session_control(rpc.FASTRPC_PD_INITMEM_SIZE, rpc.remote_rpc_pd_initmem_size(3, 1 << 20))
    lib.remote_session_control(rpc.FASTRPC_PD_INITMEM_SIZE, rpc.remote_rpc_pd_initmem_size(3, 8 << 20))
    lib.remote_session_control(rpc.FASTRPC_CONTROL_PD_DUMP, rpc.remote_rpc_control_pd_dump(3, 1))
    with pytest.raises(rpc.UnsupportedError):
        lib.remote_session_control(rpc.FASTRPC_CONTEXT_CREATE, rpc.fastrpc_context_create())
    with pytest.raises(rpc.BadParameterError):
        lib.remote_session_control(rpc.FASTRPC_CONTEXT_DESTROY, rpc.fastrpc_context_destroy(1, 1))
    h = lib.remote_handle64_open(TEST)
    with pytest.raises(rpc.RpcError):
        lib.remote_session_control(rpc.FASTRPC_CONTROL_PD_DUMP, rpc.remote_rpc_control_pd_dump(3, 1))
    with pytest.raises(rpc.UnsupportedError):
        lib.remote_session_control(rpc.FASTRPC_REMOTE_PROCESS_KILL, rpc.remote_rpc_process_clean_params(3))
    with pytest.raises(rpc.UnsupportedError) as e:  # the emulated DSP has no exception method
        lib.remote_session_control(rpc.FASTRPC_REMOTE_PROCESS_EXCEPTION, rpc.remote_rpc_process_exception(3))
    assert e.value.origin == "dsp"
    rpc.remote_handle64_close(h)


def test_set_mode_fails_the_next_invoke(lib):
    h = lib.remote_handle64_open(TEST)
    lib.remote_set_mode(rpc.REMOTE_MODE_SERIAL)
    with pytest.raises(rpc.UnsupportedError) as e:
        rpc.remote_handle64_invoke(h, SC_NULL, [])
    assert e.value.aee == rpc.AEE_EUNSUPPORTED and e.value.origin == "host"
    rpc.remote_handle64_invoke(h, SC_NULL, [])
    rpc.remote_handle64_close(h)


def test_dma_handle_registration_consumed_per_invoke(lib):
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    with pytest.raises(rpc.BadParameterError):
        rpc.remote_register_dma_handle_attr(m.fd, 4096, rpc.FASTRPC_ATTR_COHERENT)
    with pytest.raises(rpc.BadParameterError):
        rpc.remote_register_dma_handle(-1, 4096)
    h = lib.remote_handle64_open(TEST)
    # Registration and its consumption per invoke are tested through real invokes in
    # test_dma_handle_slots.py. What a handle slot carries is tested through real invokes in test_dma_handle_slots.py.
    with pytest.raises(rpc.BadParameterError):  # a method without handle slots gets one: count mismatch
        rpc.remote_handle64_invoke(h, SC_NULL, [rpc.remote_dma_handle(m.fd, 0)])
    rpc.remote_handle64_close(h)
    rpc.rpcmem_free(m)


def test_set_backend_rules(rpcsoc):
    with pytest.raises(rpc.BadParameterError):
        rpc.set_backend("nope")
    rpc.set_backend("legacy")
    h = rpc.remote_handle64_open(TEST)
    assert rpc.process._records[h].session.lib.backend == "legacy"
    rpc.set_backend("legacy")  # same choice: fine
    with pytest.raises(rpc.AlreadyLoadedError) as e:
        rpc.set_backend("accel")
    assert e.value.aee == rpc.AEE_EALREADYLOADED
    rpc.remote_handle64_close(h)


def test_api_trace_hook(lib):
    with trace.recording() as rec:
        h = lib.remote_handle64_open(TEST)
        rpc.remote_handle64_invoke(h, SC_NULL, [])
        with pytest.raises(rpc.UnsupportedError):
            rpc.remote_handle64_invoke(h, 0x10000000, [])
        rpc.remote_handle64_close(h)
    api = [(e["name"], e["ret"]) for e in rec.events if e["kind"] == "api"]
    assert api == [("remote_handle64_open", 0), ("remote_handle64_invoke", 0),
                   ("remote_handle64_invoke", 0x80000414), ("remote_handle64_close", 0)]
    assert all(e["dur"] >= 0 for e in rec.events)


def test_shutdown_leaves_nothing(rpcsoc):
    libs = [rpc.Library(b) for b in BACKENDS]
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, 1, 4096)
    for lib in libs:
        h = lib.remote_handle64_open(TEST)
        rpc.remote_handle64_invoke(h, SC_INC, [memoryview(m)[:16]])
        lib.remote_handle64_open(TEST + "&_session=1")
    rpc.shutdown()
    assert not cdsp_procs(rpcsoc)
    assert not rpc.process._records
    rpc.rpcmem_free(m)
    import gc

    gc.collect()
    assert not {k: v for k, v in debug.live_objects().items() if k in ("accel_file", "legacy_file")}
