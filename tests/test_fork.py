"""fork(): the child gets a fresh emulator on first use and none of its parent's sessions.

A real child shares its parent's device files; the emulator's drivers are Python objects in
copy-on-write memory, so sharing them would let parent and child diverge over shared device
memory (#8 item 15). The child forgets what it inherited without touching it, its handles from
the parent are invalid, and rpcmem buffers stay shared memory (as dma-buf mappings are).
"""
import gc
import os
import struct
import sys
import threading
import warnings
import weakref

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import process as library  # the process-wide tables
from qda_core import soc as socmod

sys.path.insert(0, os.path.dirname(__file__))
from child_helpers import in_child  # noqa: E402

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_ECHO, SC_INC = 0x03010100, 0x04000100
BACKENDS = ["accel", "legacy"]


def profile(soc) -> list:
    return [(d.name, [cb.sid for cb in d.bus.cbs]) for d in soc.domains.values()]


def user_pds(soc, channel=None) -> list:
    return [p for p in soc.domain("cdsp").dsp.processes()
            if p.kind == "user" and p.state == "alive" and channel in (None, p.channel)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_child_gets_fresh_emulator_and_parent_is_untouched(make_soc, backend):
    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    try:
        h = lib.remote_handle64_open(TEST)
        pds = user_pds(soc)
        assert len(pds) == 1
        parent_file = weakref.ref(library._records[h].session.backend.file)

        def child():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = use_library()
                gc.collect()
            # Dropped, never closed or collected: no INIT_RELEASE, no ResourceWarning.
            assert parent_file() is not None and not parent_file().closed
            assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
            return result

        def use_library():
            with pytest.raises(rpc.InvalidHandleError) as e:  # the parent's handle means nothing here
                rpc.remote_handle64_invoke(h, SC_ECHO, [b"abcd", bytearray(4)])
            assert e.value.aee == rpc.AEE_EINVHANDLE
            with pytest.raises(rpc.InvalidHandleError):
                rpc.remote_handle64_close(h)
            assert lib.soc is not soc and profile(lib.soc) == profile(soc)
            assert user_pds(lib.soc) == []
            h2 = lib.remote_handle64_open(TEST)
            view = memoryview(mem)[:8]
            view[:] = b"\x41" * 8
            rpc.remote_handle64_invoke(h2, SC_INC, [view])  # the parent's rpcmem, by reference
            view.release()
            lib.remote_handle64_close(h2)
            assert user_pds(lib.soc) == []
            lib.close_all()
            return bytes(memoryview(mem)[:8])

        assert in_child(child) == b"\x42" * 8
        assert bytes(memoryview(mem)[:8]) == b"\x42" * 8  # the child's DSP wrote the shared pages
        assert user_pds(soc) == pds  # no INIT_RELEASE reached the parent's PD
        out = bytearray(4)
        rpc.remote_handle64_invoke(h, SC_ECHO, [struct.pack("<I", 7), out])  # parent session intact
        assert out == struct.pack("<I", 7)
        lib.remote_handle64_close(h)
    finally:
        rpc.rpcmem_free(mem)
        lib.close_all()


def test_child_rebuilds_default_and_use_soc_socs(make_soc):
    """The default SoC, a use_soc() SoC and an explicit one of another profile are each
    replaced by a fresh SoC of the same profile in the child; libraries sharing one inherited
    SoC share its replacement."""
    minimal = make_soc("minimal")
    shared = make_soc("default")
    a, b = rpc.Library("accel", soc=minimal), rpc.Library("legacy", soc=minimal)
    default_before = socmod._default
    rpc.use_soc(shared)
    try:
        def child():
            assert socmod._default is None or socmod._default is not default_before
            assert a.soc is b.soc and a.soc is not minimal and profile(a.soc) == profile(minimal)
            fresh = rpc.Library("accel")
            assert fresh.soc is not shared and profile(fresh.soc) == profile(shared)
            for lib in (a, b, fresh):
                h = lib.remote_handle64_open(TEST)
                out = bytearray(4)
                rpc.remote_handle64_invoke(h, SC_ECHO, [b"\x01\x02\x03\x04", out])
                assert out == b"\x01\x02\x03\x04"
                lib.remote_handle64_close(h)
            return True

        assert in_child(child)
        assert socmod._default is default_before  # the parent's default is its own business
    finally:
        rpc.use_soc(None)
        a.close_all()
        b.close_all()


def test_grandchild_gets_its_own_emulator(make_soc):
    soc = make_soc("default")
    lib = rpc.Library("accel", soc=soc)
    try:
        def child():
            h = lib.remote_handle64_open(TEST)
            mine = lib.soc

            def grandchild():
                with pytest.raises(rpc.InvalidHandleError):
                    rpc.remote_handle64_invoke(h, SC_ECHO, [b"ab", bytearray(2)])
                assert lib.soc is not mine and lib.soc is not soc
                h2 = lib.remote_handle64_open(TEST)
                lib.remote_handle64_close(h2)
                return True

            assert in_child(grandchild)
            out = bytearray(2)
            rpc.remote_handle64_invoke(h, SC_ECHO, [b"ab", out])  # the child's session survived
            lib.remote_handle64_close(h)
            return bytes(out)

        assert in_child(child) == b"ab"
    finally:
        lib.close_all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_children_while_parent_threads_invoke(make_soc, backend):
    """Two parent threads invoke without pause while 24 children, forked one after another,
    each open a module, invoke (by copy and with the parent's rpcmem by reference), close and
    exit: nothing hangs and nothing fails on either side."""
    soc = make_soc("default")
    lib = rpc.Library(backend=backend, soc=soc)
    mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    h = lib.remote_handle64_open(TEST)
    stop = threading.Event()
    failures, calls = [], [0, 0]

    def invoker(tid: int):
        part = memoryview(mem)[tid * 64:(tid + 1) * 64]
        try:
            i = 0
            while not stop.is_set():
                data = struct.pack("<II", tid, i)
                out = bytearray(8)
                rpc.remote_handle64_invoke(h, SC_ECHO, [data, out])
                part[:] = bytes([i % 200]) * 64
                rpc.remote_handle64_invoke(h, SC_INC, [part])
                if out != data or bytes(part) != bytes([i % 200 + 1]) * 64:
                    failures.append((tid, i))
                    return
                i += 1
                calls[tid] = i
        except Exception as exc:  # surfaced through failures
            failures.append((tid, repr(exc)))
        finally:
            part.release()

    def child():
        out = bytearray(8)
        h2 = lib.remote_handle64_open(TEST)
        rpc.remote_handle64_invoke(h2, SC_ECHO, [b"childxyz", out])
        view = memoryview(mem)[1024:1088]
        view[:] = b"\x07" * 64
        rpc.remote_handle64_invoke(h2, SC_INC, [view])
        ok = bytes(view) == b"\x08" * 64
        view.release()
        lib.remote_handle64_close(h2)
        return bytes(out) == b"childxyz" and ok

    threads = [threading.Thread(target=invoker, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    try:
        results = [in_child(child, timeout=20) for _ in range(24)]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert results == [True] * 24
    assert failures == [] and min(calls) > 0
    lib.remote_handle64_close(h)
    assert user_pds(soc) == []
    rpc.rpcmem_free(mem)
    lib.close_all()
