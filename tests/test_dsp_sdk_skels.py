"""The built-in ``hap_example`` and ``multithreading`` skels (the Hexagon SDK examples upstream's
``fastrpc_test`` runs, docs/spec/legacy_fastrpc_api.md §8.3-§8.4): the test libraries' call
sequences through the legacy API on both backends, each method through both raw drivers, what
the skels do (FARF, reads through the PD's mappings, work on several threads) and what they
answer when misused."""
import logging
import os
import struct
import threading

import numpy as np
import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.remotectl import close_module, open_module
from qda_core import trace, uapi
from qda_core.dsp import aee
from qda_core.dsp.skels import BUILTIN_SKELS, HapExample, Multithreading
from qda_core.dsp.skels import hap_example as hap_mod
from qda_core.dsp.skels import multithreading as mt
from qda_core.legacy import HandleArg, dmabuf_mmap

HAP = "file:///libhap_example_skel.so?hap_example_skel_handle_invoke&_modver=1.0&_dom=cdsp"
MT = "file:///libmultithreading_skel.so?multithreading_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_FARF, SC_DMAHANDLE, SC_FASTRPC_MMAP, SC_PERF = 0x04010000, 0x05000010, 0x07010000, 0x0A000000
SC_PARALLEL_SUM, SC_BARRIERS, SC_MUTEXES = 0x02000000, 0x03000000, 0x04000000
UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
BACKENDS = ["accel", "legacy"]


def u32(v: int) -> int:
    """A retval as the unsigned code the spec writes."""
    return v & 0xFFFF_FFFF


def test_registered_as_builtins():
    assert BUILTIN_SKELS["libhap_example_skel.so"] is HapExample
    assert BUILTIN_SKELS["libmultithreading_skel.so"] is Multithreading
    assert HapExample.exported_symbols() == ("hap_example_skel_handle_invoke",)
    assert Multithreading.exported_symbols() == ("multithreading_skel_handle_invoke",)
    assert HapExample.method_names() == {4: "farf_runtime", 5: "mem_dmahandle", 7: "mem_fastrpc_mmap", 10: "perf"}
    assert Multithreading.method_names() == {2: "parallel_sum", 3: "barriers", 4: "mutexes"}


def farf_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "qdarpc.dsp"]


# -- the test libraries' sequences through the legacy API -----------------------------------------

def hap_example_run_test(lib) -> list[int]:
    """libhap_example.so's run_test (docs/spec/legacy_fastrpc_api.md §8.3): three selectors,
    each its own session (open ... close of the only handle); the codes it would judge."""
    codes = []
    for selector in range(3):
        lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE,
                                   rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 1), 8)
        h = lib.remote_handle64_open(HAP)
        if selector == 0:
            for enable in (0, 1):
                codes.append(rpc.remote_handle64_invoke(h, SC_FARF, [struct.pack("<i", enable)]) or 0)
        elif selector == 1:
            m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            np.frombuffer(m, np.uint8)[:] = 1
            fd = rpc.rpcmem_to_fd(m)
            lib.fastrpc_mmap(rpc.CDSP_DOMAIN_ID, fd, m, 0, 4096, rpc.FASTRPC_MAP_FD)
            dsp_fd = lib.dsp_fd(fd)
            codes.append(rpc.remote_handle64_invoke(h, SC_FASTRPC_MMAP, [struct.pack("<iI", dsp_fd, 4096)]) or 0)
            lib.fastrpc_munmap(rpc.CDSP_DOMAIN_ID, fd, None, 0)
            rpc.remote_register_dma_handle(fd, 4096)
            codes.append(rpc.remote_handle64_invoke(h, SC_DMAHANDLE, [rpc.remote_dma_handle(fd, 0)]) or 0)
            rpc.rpcmem_free(m)
        else:
            codes.append(rpc.remote_handle64_invoke(h, SC_PERF, []) or 0)
        rpc.remote_handle64_close(h)
    return codes


@pytest.mark.parametrize("backend", BACKENDS)
def test_hap_example_run_test(soc, backend, caplog):
    caplog.set_level(logging.DEBUG, logger="qdarpc.dsp")
    lib = rpc.Library(backend, soc=soc)
    try:
        assert hap_example_run_test(lib) == [0] * 5
    finally:
        lib.close_all()
    assert [p for p in soc.domain("cdsp").dsp.processes() if p.state == "alive"] == []
    lines = farf_lines(caplog)
    assert sum("RUNTIME_HIGH" in x for x in lines) == 2 and sum("RUNTIME_LOW" in x for x in lines) == 1
    assert any("fastrpc_mmap fd" in x and "4096 bytes, checksum 4096" in x for x in lines)
    assert any("dma handle fd" in x and "4096 bytes at offset 0, checksum 4096" in x for x in lines)
    assert any(x.startswith("cdsp client") and "perf: sum 8386560" in x for x in lines)


@pytest.mark.parametrize("backend", BACKENDS)
def test_multithreading_run_test(soc, backend):
    """libmultithreading.so's run_test (§8.4): a relative thread priority of -50 before the
    session, which makes the session send remotectl1 set_param {142, 16384}; then parallel_sum."""
    lib = rpc.Library(backend, soc=soc)
    try:
        lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE,
                                   rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 1), 8)
        lib.remote_session_control(rpc.FASTRPC_RELATIVE_THREAD_PRIORITY,
                                   rpc.remote_rpc_relative_thread_priority(rpc.CDSP_DOMAIN_ID, -50), 8)
        h = lib.remote_handle64_open(MT)
        dsp = soc.domain("cdsp").dsp
        assert [p.params.get(1) for p in dsp._procs.values()] == [(142, 16384)]
        assert (rpc.remote_handle64_invoke(h, SC_PARALLEL_SUM, []) or 0) == 0
        rpc.remote_handle64_close(h)
    finally:
        lib.close_all()


# -- hap_example through the raw drivers -----------------------------------------------------------

def _legacy_buffer(f, fill: bytes):
    fd = f.alloc_dma_buff(4096)
    view = dmabuf_mmap(fd)
    view[: len(fill)] = fill
    return fd, view


def _accel_buffer(f, fill: bytes):
    gh = f.gem_create(4096)
    view = f.mmap(f.gem_mmap_offset(gh), 4096)
    view[: len(fill)] = fill
    return gh, view


@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_hap_example_methods(soc, driver, caplog):
    caplog.set_level(logging.DEBUG, logger="qdarpc.dsp")
    legacy = driver == "legacy"
    f = soc.open("/dev/fastrpc-cdsp") if legacy else soc.open_device("cdsp")
    with f:
        assert f.init_create(attrs=UNSIGNED) == 0
        ret, h = open_module(f, HAP)
        assert ret == 0 and h > 0x200
        fd, view = (_legacy_buffer if legacy else _accel_buffer)(f, bytes(range(256)) * 16)
        want = sum(range(256)) * 16

        # mem_fastrpc_mmap: the mapping is found by fd (HAP_mmap_get) only while it exists
        fd_len = lambda n: [struct.pack("<iI", fd, n)]  # noqa: E731
        assert f.invoke(h, SC_FASTRPC_MMAP, fd_len(4096)) == u32(aee.ERR_NO_SUCH_MAP)
        if legacy:
            vaddr = f.mem_map(fd, 4096)
        else:
            vaddr = f.map(uapi.QDA_MAP_REQUEST_ATTR, fd, size=4096)
        assert f.invoke(h, SC_FASTRPC_MMAP, fd_len(4096)) == 0
        assert f.invoke(h, SC_FASTRPC_MMAP, fd_len(4097)) == u32(aee.ERR_BAD_PARM)
        assert f.invoke(h, SC_FASTRPC_MMAP, [b"\0" * 4]) == u32(aee.ERR_BAD_PARM)
        if legacy:
            f.mem_unmap(fd, vaddr, 4096)
        else:
            f.munmap(uapi.QDA_MAP_REQUEST_ATTR, fd=fd, vaddr=vaddr, size=4096)
        assert f.invoke(h, SC_FASTRPC_MMAP, fd_len(4096)) == u32(aee.ERR_NO_SUCH_MAP)

        # mem_dmahandle: reads the in-handle through the PD's memory. (The legacy kernel maps a
        # handle's fd with the length of its first use and keeps that map: whole buffer first.)
        assert f.invoke(h, SC_DMAHANDLE, [HandleArg(fd, 0, 4096)]) == 0
        assert f.invoke(h, SC_DMAHANDLE, [HandleArg(fd, 16, 256)]) == 0
        if legacy:
            assert f.invoke(h, SC_DMAHANDLE, [HandleArg(-1, 0, 0)]) == u32(aee.ERR_BAD_PARM)  # nothing mapped
        assert f.invoke(h, SC_DMAHANDLE, [HandleArg(fd, 4000, 4096)]) == u32(aee.ERR_BAD_PARM)

        # farf_runtime and perf; methods of the interface that are not emulated
        assert f.invoke(h, SC_FARF, [struct.pack("<i", 1)]) == 0
        assert f.invoke(h, SC_PERF, []) == 0
        for m in (2, 3, 6, 8, 9, 11, 12):
            assert f.invoke(h, m << 24, []) == u32(aee.ERR_UNKNOWN_METHOD)
        assert f.invoke(h, 0x04000000, []) == u32(aee.ERR_BAD_PARM)  # farf_runtime without its int
        assert close_module(f, h) == 0
        view.release()
        if legacy:
            os.close(fd)
    lines = farf_lines(caplog)
    assert any(f"checksum {want}" in x and "fastrpc_mmap" in x for x in lines)
    assert any(f"256 bytes at offset 16, checksum {sum(range(16, 256)) + sum(range(16))}" in x for x in lines)
    assert any(f"4096 bytes at offset 0, checksum {want}" in x for x in lines)


def test_hap_example_farf_mask_is_per_handle_and_traced(soc):
    with soc.open_device("cdsp") as f, trace.recording() as rec:
        assert f.init_create(attrs=UNSIGNED) == 0
        _, h1 = open_module(f, HAP)
        _, h2 = open_module(f, HAP)
        assert f.invoke(h1, SC_FARF, [struct.pack("<i", 1)]) == 0
        assert f.invoke(h2, SC_FARF, [struct.pack("<i", 0)]) == 0
        assert f.invoke(h1, SC_FARF, [struct.pack("<i", 0)]) == 0
    farfs = [e for e in rec.events if e["kind"] == "farf"]
    assert [e["level"] for e in farfs] == [0, 1, 2, 2, 2]
    assert {(e["domain"], e["channel"], e["client_id"], e["module"], e["runtime"]) for e in farfs} \
        == {("cdsp", "accel", f.client_id, "libhap_example_skel.so", True)}


def test_hap_example_perf_charges_the_modeled_sleep(soc):
    with soc.open_device("cdsp") as f:
        assert f.init_create(attrs=UNSIGNED) == 0
        _, h = open_module(f, HAP)
        dsp = soc.domain("cdsp").dsp
        before = dsp.stats.snapshot()["modeled_ns"]
        assert f.invoke(h, SC_PERF, []) == 0
        spent = dsp.stats.snapshot()["modeled_ns"] - before
        assert spent == dsp.cost.overhead_ns + hap_mod.PERF_SLEEP_US * 1000


# -- multithreading ---------------------------------------------------------------------------------

class _Watched(threading.Barrier):
    """A barrier that records who waits at it (the threads the skel really runs)."""

    waiters: list = []

    def wait(self, timeout=None):
        _Watched.waiters.append(threading.current_thread().name)
        return super().wait(timeout)


@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_multithreading_runs_on_several_threads(soc, driver, monkeypatch):
    monkeypatch.setattr(threading, "Barrier", _Watched)
    monkeypatch.setattr(_Watched, "waiters", [])
    f = soc.open("/dev/fastrpc-cdsp") if driver == "legacy" else soc.open_device("cdsp")
    with f:
        assert f.init_create(attrs=UNSIGNED) == 0
        _, h = open_module(f, MT)
        dsp = soc.domain("cdsp").dsp
        for sc, waits in ((SC_PARALLEL_SUM, 1), (SC_BARRIERS, 2 * mt.ROUNDS), (SC_MUTEXES, 2)):
            _Watched.waiters.clear()
            before = dsp.stats.snapshot()["modeled_ns"]
            assert f.invoke(h, sc, []) == 0
            names = _Watched.waiters
            assert len(set(names)) == mt.N_THREADS and len(names) == waits * mt.N_THREADS
            assert all(n.startswith(f"dsp-cdsp-{f.client_id}-") for n in names)
            assert threading.current_thread().name not in names
            assert dsp.stats.snapshot()["modeled_ns"] - before >= dsp.cost.overhead_ns + mt.N_THREADS * mt.THREAD_NS
        assert f.invoke(h, 0x02010000, [b"x"]) == u32(aee.ERR_BAD_PARM)
        assert f.invoke(h, 0x05000000, []) == u32(aee.ERR_UNKNOWN_METHOD)
        assert close_module(f, h) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("dsp-cdsp-")]  # all joined


def test_multithreading_check_failure_and_crash(soc, monkeypatch):
    """A wrong result, or a thread that never reaches the barrier, answers 0x80000401 and the
    PD lives on; an exception in a worker thread crashes the PD, as a fault in one of its QuRT
    threads would."""
    import time

    with soc.open_device("cdsp") as f:
        assert f.init_create(attrs=UNSIGNED) == 0
        _, h = open_module(f, MT)
        monkeypatch.setattr(mt, "_slice_sum", lambda data, i: 0)
        assert f.invoke(h, SC_PARALLEL_SUM, []) == u32(aee.ERR_SKEL_CHECK)

        def late(data, i):
            if i == 1:
                time.sleep(0.3)
            return 0

        monkeypatch.setattr(mt, "BARRIER_TIMEOUT_S", 0.05)
        monkeypatch.setattr(mt, "_slice_sum", late)
        t0 = time.monotonic()
        assert f.invoke(h, SC_PARALLEL_SUM, []) == u32(aee.ERR_SKEL_CHECK)
        assert time.monotonic() - t0 < 5
        assert f.invoke(h, SC_BARRIERS, []) == 0  # the PD lives on
        monkeypatch.undo()

        def fault(data, i):
            if i == 2:
                raise RuntimeError("fault in a worker")
            return 0

        monkeypatch.setattr(mt, "_slice_sum", fault)
        assert f.invoke(h, SC_PARALLEL_SUM, []) == u32(aee.ERR_PD_CRASHED)
        assert soc.domain("cdsp").dsp.processes()[0].state == "crashed"
    assert not [t for t in threading.enumerate() if t.name.startswith("dsp-cdsp-")]
