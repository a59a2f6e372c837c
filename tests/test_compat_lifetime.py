"""libadsprpc_compat's structure: RpcMem and Library warn when collected unclosed and release what
they hold; the backends implement the declared Backend protocol; the control requests are tables
keyed by their constants."""
import gc
import inspect
import os
import warnings

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import backends, controls, process
from qda_core.mem import backing

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


@pytest.fixture
def rpcsoc(soc):
    rpc.use_soc(soc)
    yield soc
    rpc.use_soc(None)


def _collect_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_unfreed_rpcmem_warns_when_collected_and_is_freed():
    before, pool = process.counts(), backing.pool_used()
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    addr, fd = m.address, m.fd
    assert process.counts()["rpcmem"] == before["rpcmem"] + 1 and backing.pool_used() > pool
    del m
    messages = _collect_warnings()
    assert any("unfreed <RpcMem" in s and "rpcmem_free" in s for s in messages), messages
    assert process.counts() == before and backing.pool_used() == pool
    assert rpc.rpcmem_to_fd(addr) == -1
    with pytest.raises(OSError):
        os.fstat(fd)  # the dma-buf fd is closed


def test_freed_rpcmem_is_collected_quietly():
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    rpc.rpcmem_free(m)
    rpc.rpcmem_free(m)  # a second free is ignored, as for an unknown pointer
    del m
    assert _collect_warnings() == []


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_library_with_open_sessions_warns_when_collected_and_closes_them(rpcsoc, backend):
    lib = rpc.Library(backend)
    lib.remote_handle_open(TEST)  # a non-domain handle: no handle64 record keeps lib alive
    assert lib._sessions
    procs = rpcsoc.domain("cdsp").dsp.processes
    assert [p for p in procs() if p.kind == "user" and p.state == "alive"]
    del lib
    messages = _collect_warnings()
    assert any("unclosed <Library" in s and "close_all" in s for s in messages), messages
    assert not [p for p in procs() if p.kind == "user" and p.state == "alive"]


def test_closed_library_is_collected_quietly(rpcsoc):
    lib = rpc.Library("accel")
    h = lib.remote_handle64_open(TEST)
    rpc.remote_handle64_close(h)
    lib.close_all()
    del lib
    assert _collect_warnings() == []


@pytest.mark.parametrize("cls", list(backends.BACKENDS.values()))
def test_backends_implement_the_protocol(cls):
    declared = {n for n in vars(backends.Backend) if not n.startswith("_")} | set(backends.Backend.__annotations__)
    for name in declared:
        assert hasattr(cls, name) or name in ("file", "errno"), f"{cls.__name__} lacks {name}"
        proto = getattr(backends.Backend, name, None)
        if callable(proto) and not isinstance(proto, property):
            assert inspect.signature(getattr(cls, name)) == inspect.signature(proto), (cls, name)
    assert backends.BACKENDS[cls.name] is cls


def test_control_tables_are_keyed_by_the_requests_constants():
    assert set(controls.SESSION_CONTROLS) == set(rpc.SESSION_CONTROL_STRUCTS)
    assert set(controls.HANDLE_CONTROLS) == set(rpc.HANDLE_CONTROL_STRUCTS) - {rpc.DSPRPC_SET_PATH, rpc.DSPRPC_GET_PATH}
    for table in (controls.SESSION_CONTROLS, controls.HANDLE_CONTROLS):
        for req, handler in table.items():
            names = [n for n in dir(rpc) if (n.startswith(("FASTRPC_", "DSPRPC_"))) and getattr(rpc, n) == req]
            assert names, req
            assert handler.__module__ == controls.__name__


@pytest.mark.parametrize("req", [rpc.FASTRPC_RESERVED_1, rpc.FASTRPC_RESERVED_2, rpc.FASTRPC_RESERVED_3,
                                 rpc.FASTRPC_MAX_THREAD_PARAM, rpc.FASTRPC_REMOTE_PROCESS_STATE_DUMP, 99])
def test_unknown_session_control_is_unsupported(rpcsoc, req):
    lib = rpc.Library("accel")
    with pytest.raises(rpc.FastRpcError) as e:
        lib.remote_session_control(req, bytearray(64))
    assert e.value.aee == rpc.AEE_EUNSUPPORTED


@pytest.mark.parametrize("req", [rpc.DSPRPC_RESERVED, rpc.DSPRPC_SET_PATH, rpc.DSPRPC_GET_PATH, 99])
def test_unknown_handle_control_is_unsupported(rpcsoc, req):
    lib = rpc.Library("legacy")
    with pytest.raises(rpc.FastRpcError) as e:
        lib.remote_handle_control(req, bytearray(64))
    assert e.value.aee == rpc.AEE_EUNSUPPORTED


def test_unfreed_rpcmem_collected_while_another_thread_holds_the_library_lock_is_freed_later():
    """The collector may finalize an unfreed RpcMem inside a driver holding a file's lock while
    another thread, freeing normally, holds the library's lock and waits for that file's: the
    finalizer does not wait (that deadlocked a fork storm), it leaves the free to the next safe
    point (an rpcmem call, a leak count)."""
    import threading

    before, pool = process.counts(), backing.pool_used()
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    fd = m.fd
    held, release = threading.Event(), threading.Event()

    def hold():
        with process.lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        with warnings.catch_warnings(record=True) as caught:  # the collector may run at any allocation
            warnings.simplefilter("always")
            del m
            gc.collect()                 # returns: the finalizer did not wait for the lock
        assert any("unfreed <RpcMem" in str(w.message) for w in caught), caught
        os.fstat(fd)                     # not freed yet: deferred
    finally:
        release.set()
        t.join()
    assert process.counts() == before and backing.pool_used() == pool  # the count reaps it
    with pytest.raises(OSError):
        os.fstat(fd)


def test_c_abi_free_never_drops_a_new_allocation_at_the_reused_address(monkeypatch):
    """rpcmem_free through the C ABI while another thread's rpcmem_alloc gets the address just
    unmapped: the new allocation stays referenced (it was dropped, then collected and unmapped
    under the C program using it: a segfault in a fork storm)."""
    from libadsprpc_compat import _cabi

    api = _cabi._bound("libcdsprpc")
    addr = api["rpcmem_alloc"](rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    newcomer = []
    real_free = rpc.rpcmem.rpcmem_free

    def free_then_reuse(po):  # the other thread's allocation lands at the freed address
        real_free(po)
        mm = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
        newcomer.append(mm)
        with _cabi._lock:
            _cabi._allocations[addr] = mm

    monkeypatch.setattr(rpc.rpcmem, "rpcmem_free", free_then_reuse)
    assert api["rpcmem_free"](addr) == 0
    monkeypatch.undo()
    assert _cabi._allocations.get(addr) is newcomer[0]
    with _cabi._lock:
        del _cabi._allocations[addr]
    rpc.rpcmem_free(newcomer[0])
