"""An unfreed RpcMem's finalizer only queues its free: the collector runs it on whatever thread
allocates, which may hold the emulated DMA pool's lock or the share table's (qda_core.mem.backing)
while another thread, importing through PRIME, holds its driver file's lock and waits for those.
Freeing there took the library lock and went on to GEM_CLOSE, that file's lock: a lock-order
deadlock. The free runs on a reaper thread (or the next rpcmem call, or process.counts), and an
explicit ``gc.collect()`` still returns with it done.

Every wait is bounded: a regression fails instead of hanging the run."""
import errno
import gc
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import process
from libadsprpc_compat import rpcmem as rpcmem_mod
from qda_core.mem import backing

sys.path.insert(0, os.path.dirname(__file__))
from child_helpers import in_child  # noqa: E402

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_INC = 0x04000100
WAIT = 10.0


class Frees:
    """Every call of rpcmem's internal free, and the thread it ran on."""

    def __init__(self, monkeypatch):
        self.threads: list[int] = []
        self.done = threading.Event()
        real = rpcmem_mod._release

        def release(mm):
            self.threads.append(threading.get_ident())
            try:
                real(mm)
            finally:
                self.done.set()

        monkeypatch.setattr(rpcmem_mod, "_release", release)


@pytest.fixture
def session(soc):
    """An accel session with a handle open on the test skel: ``(lib, h)``."""
    lib = rpc.Library("accel", soc=soc)
    h = lib.remote_handle64_open(TEST)
    yield lib, h
    lib.remote_handle64_close(h)
    lib.close_all()


def imported_rpcmem(lib, h) -> rpc.RpcMem:
    """An rpcmem allocation the session imported (passed by reference): freeing it GEM_CLOSEs
    that import, under the session file's lock."""
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    view = memoryview(m)[:8]
    rpc.remote_handle64_invoke(h, SC_INC, [view])
    view.release()
    (s,) = lib._sessions.values()
    assert m.fd in s.backend._refs  # imported: a free calls into the driver
    return m


def collect(drop) -> list[str]:
    """Run a full collection that finalizes what ``drop()`` let go; the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.mark.parametrize("lock_name", ["_pool_lock", "_shared_lock"])
def test_a_collection_holding_a_memory_lock_only_queues_the_free(session, monkeypatch, lock_name):
    """The collector finalizing an unfreed, imported RpcMem on a thread holding the DMA pool's
    or the share table's lock: the finalizer does not free on that thread (no call into the
    library or the driver there), it queues; a reaper frees it once the lock is let go, with
    no rpcmem call or count to prompt it, exactly once."""
    lib, h = session
    before, pool = process.counts(), backing.pool_used()
    holder = {"m": imported_rpcmem(lib, h)}
    fd, addr = holder["m"].fd, holder["m"].address
    frees = Frees(monkeypatch)
    me = threading.get_ident()
    with getattr(backing, lock_name):
        messages = collect(holder.clear)
        freed_here = [t for t in frees.threads if t == me]
        still_open = not closed(fd)
    assert any("unfreed <RpcMem" in s for s in messages), messages
    assert freed_here == [], "the finalizer freed on the collecting thread, which holds " + lock_name
    assert still_open
    assert frees.done.wait(WAIT), "the deferred free never ran"
    assert frees.threads != [] and me not in frees.threads
    assert closed(fd)
    rpc.rpcmem_free(addr)  # the address of a collected allocation: ignored, no second free
    assert process.counts() == before and backing.pool_used() == pool


def test_a_collection_under_the_pool_lock_does_not_deadlock_with_a_prime_import(session, monkeypatch):
    """The deadlock itself. Thread A holds the DMA pool's lock (inside charge/uncharge) when the
    collector finalizes an unfreed RpcMem that B's session imported; B, importing a dma-buf
    (prime_import: the file's lock, then the pool's to charge it), holds its file's lock and
    waits for the pool's. Freed inline, A's GEM_CLOSE waited for B's file lock while B waited
    for A's pool lock. B gives up after a while here, so the old code fails (after WAIT s)
    instead of hanging."""
    lib, h = session
    before, pool = process.counts(), backing.pool_used()
    holder = {"m": imported_rpcmem(lib, h)}
    fd = holder["m"].fd
    (s,) = lib._sessions.values()
    file_lock = s.backend.file._lock  # what GEM_CLOSE and PRIME_FD_TO_HANDLE take
    frees = Frees(monkeypatch)
    importing, got_pool = threading.Event(), []

    def importer():
        with file_lock:
            importing.set()
            ok = backing._pool_lock.acquire(timeout=WAIT)
            got_pool.append(ok)
            if ok:
                backing._pool_lock.release()

    t = threading.Thread(target=importer, daemon=True)
    with backing._pool_lock:
        t.start()
        assert importing.wait(WAIT)
        messages = collect(holder.clear)
    t.join(2 * WAIT)
    assert not t.is_alive()
    assert got_pool == [True], "the collecting thread froze in the finalizer's free (lock-order deadlock)"
    assert any("unfreed <RpcMem" in s for s in messages), messages
    assert frees.done.wait(WAIT)
    assert threading.get_ident() not in frees.threads and closed(fd)
    assert process.counts() == before and backing.pool_used() == pool


def test_an_explicit_collection_returns_with_the_free_done_off_its_thread(monkeypatch):
    """``gc.collect()`` on a thread holding no library lock waits (bounded) for the reaper, so a
    leak check or test looking right after it sees the memory freed, as when it was freed
    inline; yet nothing was freed on the collecting thread."""
    before, pool = process.counts(), backing.pool_used()
    holder = {"m": rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)}
    fd, addr = holder["m"].fd, holder["m"].address
    frees = Frees(monkeypatch)
    messages = collect(holder.clear)
    assert any("unfreed <RpcMem" in s and "rpcmem_free" in s for s in messages), messages
    assert len(frees.threads) == 1 and frees.threads[0] != threading.get_ident()
    assert closed(fd) and rpc.rpcmem_to_fd(addr) == -1 and not rpcmem_mod._orphans
    assert backing.pool_used() == pool and process.counts() == before


def test_a_finalizer_freeing_nothing_when_the_library_lock_is_held_elsewhere_does_not_wait(monkeypatch):
    """Another thread holds the library lock (it may be waiting for the collecting thread): the
    collection neither frees nor waits out FLUSH_TIMEOUT; the count after the lock is let go
    frees the allocation."""
    monkeypatch.setattr(rpcmem_mod, "FLUSH_TIMEOUT", 60.0)  # a wait for the reaper would show
    before, pool = process.counts(), backing.pool_used()
    holder = {"m": rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)}
    fd = holder["m"].fd
    held, release = threading.Event(), threading.Event()

    def hold():
        with process.lock:
            held.set()
            release.wait(WAIT)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    try:
        assert held.wait(WAIT)
        collecting = threading.Thread(target=collect, args=(holder.clear,), daemon=True)
        collecting.start()
        collecting.join(WAIT / 2)
        assert not collecting.is_alive(), "gc.collect waited for a reaper that cannot get the lock"
        assert not closed(fd)
    finally:
        release.set()
        t.join(WAIT)
    assert process.counts() == before and backing.pool_used() == pool and closed(fd)


def test_an_error_freeing_a_collected_allocation_goes_to_the_unraisable_hook(monkeypatch):
    """The reaper reports an error freeing an orphan to sys.unraisablehook (not to an unrelated
    caller) and goes on: a later orphan is freed too."""
    real = rpcmem_mod._release
    failed = []

    def release(mm):
        real(mm)
        if not failed:
            failed.append(mm.address)
            raise OSError(errno.EBADF, "injected")

    seen = []
    monkeypatch.setattr(rpcmem_mod, "_release", release)
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    before, pool = process.counts(), backing.pool_used()
    for _ in range(2):
        holder = {"m": rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)}
        fd = holder["m"].fd
        collect(holder.clear)
        assert closed(fd)
    assert [(u.exc_type, u.err_msg) for u in seen] == [(OSError, "Exception freeing a collected rpcmem allocation")]
    assert seen[0].object.address == failed[0]
    seen.clear()
    assert process.counts() == before and backing.pool_used() == pool


def test_a_forked_child_runs_its_own_reaper(monkeypatch):
    """A reaper running in the parent at fork() does not exist in the child: the child starts its
    own when it collects an unfreed allocation."""
    monkeypatch.setattr(rpcmem_mod, "_reaper_pid", os.getpid())  # as if one ran at fork()

    def child():
        holder = {"m": rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)}
        fd = holder["m"].fd
        collect(holder.clear)
        return closed(fd), len(rpcmem_mod._orphans)

    assert in_child(child, timeout=WAIT * 3) == (True, 0)


def test_the_interpreter_exits_with_a_free_pending():
    """The interpreter exits while a reaper waits for the library lock (another thread holds it
    a moment longer), and with an unfreed allocation left for its own exit: quietly, promptly."""
    script = textwrap.dedent("""
        import gc, threading, time
        import libadsprpc_compat as rpc
        from libadsprpc_compat import process
        stuck = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
        late = [rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)]
        late.append(late)  # a cycle: collected only at exit
        held = threading.Event()

        def hold():
            with process.lock:
                held.set()
                time.sleep(0.5)

        threading.Thread(target=hold, daemon=True).start()
        held.wait()
        del stuck, late
        gc.collect()  # the reaper cannot get the lock: no wait
        print("done", flush=True)
    """)
    out = subprocess.run([sys.executable, "-W", "error", "-W", "ignore::ResourceWarning", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done\n" and out.stderr == "", out.stderr
