"""Several threads invoking on one open file at once (both drivers allow it): every call gets its
own context and message buffer, so each thread reads back exactly what it sent."""
import struct
import threading

import pytest

from libadsprpc_compat.remotectl import open_module

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_ECHO = 0x03010100
THREADS, CALLS = 4, 150


def run_threads(workers) -> list:
    """Run each ``worker()`` in its own thread. A worker returns None, or a tuple describing
    what went wrong; an exception counts as a failure too. Returns every failure."""
    failures = []

    def wrap(work):
        try:
            bad = work()
        except Exception as exc:  # surfaced through the returned list
            bad = (repr(exc),)
        if bad is not None:
            failures.append(bad)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


@pytest.mark.parametrize("path", ["/dev/accel/accel1", "/dev/fastrpc-cdsp"])
def test_concurrent_invokes_on_one_file(soc, path, busy_switching):
    f = soc.open(path)
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def worker(tid: int):
            for i in range(CALLS):
                # sizes vary so message buffers of different sizes are recycled between threads
                data = struct.pack("<II", tid, i) * (1 + (i * 7 + tid) % 300)
                out = bytearray(len(data))
                ret = f.invoke(h, SC_ECHO, [data, out])
                if ret != 0 or out != data:
                    return (tid, i, ret)
            return None

        assert run_threads([lambda t=t: worker(t) for t in range(THREADS)]) == []
    finally:
        f.close()


def test_concurrent_shared_buffers_and_churn_accel(soc, busy_switching):
    """By-reference invokes on per-thread GEM buffers while other threads create, export,
    import and close objects on the same file."""
    import os

    from qda_core.accel import GemRef

    f = soc.open_device("cdsp")
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def inc_worker(tid: int):
            gh = f.gem_create(4096)
            view = f.mmap(f.gem_mmap_offset(gh), 4096)
            ref = GemRef(gh, view[:256])
            try:
                for i in range(CALLS):
                    view[:256] = bytes([i % 200]) * 256
                    if f.invoke(h, 0x04000100, [ref]) or view[:256] != bytes([i % 200 + 1]) * 256:
                        return (tid, i)
                return None
            finally:
                ref.buf.release()
                view.release()
                f.gem_close(gh)

        def churn_worker():
            for _ in range(CALLS // 3):
                g = f.gem_create(8192)
                fd = f.prime_handle_to_fd(g)
                imported = f.prime_fd_to_handle(fd)
                os.close(fd)
                f.gem_close(g)
                if imported != g:
                    return ("import of own export", g, imported)
            return None

        workers = [lambda t=t: inc_worker(t) for t in range(3)] + [churn_worker, churn_worker]
        assert run_threads(workers) == []
    finally:
        f.close()


def test_concurrent_dmabuf_invokes_legacy(soc, busy_switching):
    """Threads passing their own dma-bufs by fd through one legacy file (the per-fd map cache)."""
    import os

    from qda_core.legacy import DmaBufRef, dmabuf_mmap

    f = soc.open("/dev/fastrpc-cdsp")
    try:
        f.init_create(attrs=8)
        _, h = open_module(f, TEST)

        def worker(tid: int):
            fd = f.alloc_dma_buff(4096)
            view = dmabuf_mmap(fd, 4096)
            head = view[:128]
            try:
                for i in range(CALLS):
                    view[:128] = bytes([(tid * 10 + i) % 200]) * 128
                    if f.invoke(h, 0x04000100, [DmaBufRef(fd, head)]) or \
                            view[:128] != bytes([(tid * 10 + i) % 200 + 1]) * 128:
                        return (tid, i)
                return None
            finally:
                head.release()
                view.release()
                os.close(fd)

        assert run_threads([lambda t=t: worker(t) for t in range(4)]) == []
    finally:
        f.close()


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_concurrent_remote_handle64_invoke(make_soc, backend, busy_switching):
    """Threads sharing one remote_handle64 and rpcmem buffers through the legacy user API."""
    import libadsprpc_compat as rpc

    lib = rpc.Library(backend=backend, soc=make_soc("default"))
    try:
        h = lib.remote_handle64_open(TEST)

        def worker(tid: int):
            mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            view = memoryview(mem)[:64]
            try:
                for i in range(CALLS):
                    data = struct.pack("<II", tid, i) * (1 + i % 50)
                    out = bytearray(len(data))
                    rpc.remote_handle64_invoke(h, SC_ECHO, [data, out])
                    view[:] = bytes([i % 200]) * 64
                    rpc.remote_handle64_invoke(h, 0x04000100, [view])  # rpcmem: by reference
                    if out != data or bytes(view) != bytes([i % 200 + 1]) * 64:
                        return (tid, i)
                return None
            finally:
                view.release()
                rpc.rpcmem_free(mem)

        failures = run_threads([lambda t=t: worker(t) for t in range(4)])
        lib.remote_handle64_close(h)
    finally:
        lib.close_all()
    assert failures == []
