"""Small GEM objects live in arena slots (qda_core.mem.arena): no fd, mapping or page of their
own until one is needed, then promoted to a memfd of their own at the same kernel address.

What is checked: fds do not grow with the object count; contents survive promotion (data the
DSP wrote before it, zeros where nothing was written) and every view stays coherent after it;
freed slots come back zeroed and their pages go back to the host; the pool's charge follows the
object; nobody can import an arena file; a promotion that fails leaves the object usable.
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import resource
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core.accel import GemRef
from qda_core.errors import InternalError
from qda_core.mem import arena, backing
from qda_core.mem.backing import HOST_PAGE_SIZE as PAGE

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_TOUCH = 0x09010100  # qdarpc_test.touch: in0 read, 10 bytes of out0 written


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def f(soc):
    with soc.open_device("cdsp") as f:
        yield f


def _dsp(soc, obj, writable=True) -> memoryview:
    return soc.domain("cdsp").smmu.view(obj.dma_addr, obj.size, writable)


def test_many_objects_take_no_fds(f):
    f.gem_create(PAGE)  # the file's bank, message pool and first arena file exist from here
    before, pool = _fds(), backing.pool_used()
    hs = [f.gem_create(PAGE) for _ in range(3000)]
    assert _fds() == before
    assert backing.pool_used() == pool + 3000 * PAGE
    assert sum(files for files, _ in arena.stats().values()) == 1
    addrs = {f.lookup(h).backing.addr for h in hs}
    assert len(addrs) == len(hs)  # no two live objects share a slot
    for h in hs:
        f.gem_close(h)
    assert backing.pool_used() == pool


def test_sizes_pick_power_of_two_classes_and_large_objects_get_their_own_file(f):
    for size, slot in ((1, PAGE), (PAGE, PAGE), (PAGE + 1, 2 * PAGE), (5 * PAGE, 8 * PAGE),
                       (arena.ARENA_MAX, arena.ARENA_MAX)):
        obj = f.lookup(f.gem_create(size))
        assert isinstance(obj.backing, arena.Slot) and not obj.backing.promoted
        assert obj.size == backing.page_align(size)
        assert slot in arena.stats()
    before = _fds()
    big = f.lookup(f.gem_create(arena.ARENA_MAX + 1))
    # its memfd, and the mmap object's own dup of it
    assert isinstance(big.backing, backing.Backing) and _fds() == before + 2


def test_promotion_keeps_the_data_and_every_view(soc, f):
    h = f.gem_create(4 * PAGE)
    obj = f.lookup(h)
    addr, dsp = obj.backing.addr, _dsp(soc, obj)
    dsp[PAGE:PAGE + 5] = b"early"  # the DSP writes page 1 before any file exists
    chunk_blocks = os.fstat(obj.backing._chunk.fd).st_blocks
    assert chunk_blocks > 0
    cpu = f.mmap(f.gem_mmap_offset(h), 4 * PAGE)  # promotes
    assert obj.backing.promoted and obj.backing.addr == addr
    own = os.fstat(obj.backing.fd)
    assert own.st_size == 4 * PAGE and own.st_blocks * 512 == PAGE  # only the written page copied
    assert bytes(cpu[PAGE:PAGE + 5]) == b"early"
    assert bytes(cpu[:PAGE]) == bytes(PAGE)  # never written: still zeros
    assert os.fstat(obj.backing._chunk.fd).st_blocks < chunk_blocks  # the arena's copy is gone
    cpu[0:3] = b"cpu"
    assert bytes(dsp[0:3]) == b"cpu"  # the view taken before promotion sees the new file
    dsp[10:13] = b"dsp"
    assert bytes(cpu[10:13]) == b"dsp"
    fd = f.prime_handle_to_fd(h)
    with mmap.mmap(fd, 4 * PAGE) as other:
        assert other[0:3] == b"cpu" and other[PAGE:PAGE + 5] == b"early"
    os.close(fd)
    cpu.release()
    dsp.release()


def test_by_reference_invoke_needs_a_mapping_of_the_object_not_of_the_arena(f):
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    ret, h_mod = open_module(f, TEST)
    assert ret == 0
    h = f.gem_create(PAGE)
    other = f.lookup(f.gem_create(PAGE))
    out = bytearray(16)
    # The arena's kernel-side pages are no CPU mapping of the object (an attacker can find the
    # arena in /proc/self/maps): EFAULT. (The call promotes the object it names, as every
    # argument the DSP is given an address of; its own kernel-side pages are then its file's.)
    with pytest.raises(OSError) as e:
        f.invoke(h_mod, SC_TOUCH, [GemRef(h, other.backing.view), out])
    assert e.value.errno == errno.EFAULT
    assert not other.backing.promoted
    # Through its own mapping it works.
    cpu = f.mmap(f.gem_mmap_offset(h), PAGE)
    cpu[:2] = b"\x07\x09"
    assert f.invoke(h_mod, SC_TOUCH, [GemRef(h, cpu), out]) == 0
    cpu.release()


def test_freed_slots_come_back_zeroed_with_their_pages_returned(soc, f):
    h = f.gem_create(2 * PAGE)
    obj = f.lookup(h)
    addr, chunk = obj.backing.addr, obj.backing._chunk
    dsp = _dsp(soc, obj)
    dsp[:] = b"\xa5" * (2 * PAGE)
    dsp.release()
    assert os.fstat(chunk.fd).st_blocks * 512 >= 2 * PAGE
    hold = f.gem_create(2 * PAGE)  # keeps the arena file alive
    f.gem_close(h)
    assert os.fstat(chunk.fd).st_blocks == 0  # punched
    again = f.lookup(f.gem_create(2 * PAGE))
    assert again.backing.addr == addr  # the slot is reused ...
    assert bytes(_dsp(soc, again, False)) == bytes(2 * PAGE)  # ... and reads zeros
    f.gem_close(hold)


def test_a_promoted_slot_is_zeroed_for_the_next_object(soc, f):
    h = f.gem_create(PAGE)
    obj = f.lookup(h)
    addr = obj.backing.addr
    hold = f.gem_create(PAGE)
    cpu = f.mmap(f.gem_mmap_offset(h), PAGE)
    cpu[:4] = b"mine"
    cpu.release()
    f.gem_close(h)
    again = f.lookup(f.gem_create(PAGE))
    assert again.backing.addr == addr and bytes(_dsp(soc, again, False)) == bytes(PAGE)
    f.gem_close(hold)


def test_arena_files_cannot_be_imported(soc, f):
    obj = f.lookup(f.gem_create(PAGE))
    chunk_fd = obj.backing._chunk.fd  # any fd number in the process can be named
    with pytest.raises(OSError) as e:
        f.prime_fd_to_handle(chunk_fd)
    assert e.value.errno == errno.EINVAL and "arena" in str(e.value)
    with soc.open("/dev/fastrpc-cdsp") as lf:
        k = uapi.fastrpc_mem_map.pack(fd=chunk_fd, length=PAGE)
        assert lf.ioctl(uapi.FASTRPC_IOCTL_MEM_MAP, k) == -errno.EINVAL


def test_an_exported_object_is_charged_once_however_it_is_imported(soc, f):
    pool = backing.pool_used()
    h = f.gem_create(3 * PAGE)
    fd = f.prime_handle_to_fd(h)
    assert backing.pool_used() == pool + 3 * PAGE
    assert f.prime_fd_to_handle(fd) == h  # the exporter's own object, found by its new file
    with soc.open_device("cdsp") as other:
        other.prime_fd_to_handle(fd)  # an import elsewhere: the same file, counted once
        assert backing.pool_used() == pool + 3 * PAGE
    os.close(fd)
    f.gem_close(h)
    assert backing.pool_used() == pool


def test_a_failed_promotion_leaves_the_object_usable(soc, f):
    h = f.gem_create(PAGE)
    obj = f.lookup(h)
    _dsp(soc, obj)[:4] = b"kept"
    off = f.gem_mmap_offset(h)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(x) for x in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    filler = []
    try:
        while True:  # take every fd number left below the limit
            try:
                filler.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        with pytest.raises(OSError) as e:
            f.mmap(off, PAGE)
        assert e.value.errno == errno.EMFILE
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not obj.backing.promoted
    cpu = f.mmap(off, PAGE)
    assert bytes(cpu[:4]) == b"kept"
    cpu.release()


def test_map_to_the_dsp_promotes(f):
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0  # a user PD to map into
    h = f.gem_create(PAGE)
    vaddr = f.map(uapi.QDA_MAP_REQUEST_LEGACY, h, flags=0x1000)
    assert f.lookup(h).backing.promoted  # the DSP may write it at any time from here
    f.munmap(uapi.QDA_MAP_REQUEST_LEGACY, vaddrout=vaddr, size=PAGE)


def test_threads_never_share_a_slot(f):
    f.gem_create(PAGE)
    errors = []
    live: set[int] = set()  # slot addresses of the objects alive now, both threads'
    lock = threading.Lock()

    def churn():
        try:
            for n in range(300):
                hs = [f.gem_create(PAGE * (1 + n % 3)) for _ in range(4)]
                addrs = [f.lookup(h).backing.addr for h in hs]
                with lock:
                    assert not live & set(addrs) and len(set(addrs)) == 4
                    live.update(addrs)
                with lock:
                    live.difference_update(addrs)
                for h in hs:  # freed after leaving the set: a reuse by the other thread is fine
                    f.gem_close(h)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=churn) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["create", "write", "promote", "close"]),
                          st.integers(0, 7), st.integers(1, 6 * PAGE), st.binary(min_size=1, max_size=8)),
                max_size=30))
def test_contents_follow_a_model(soc, ops):
    """Random creates, DSP writes, promotions (CPU mappings) and frees: every object reads what
    was written to it and zeros elsewhere, through the DSP and its own file alike."""
    with soc.open_device("cdsp") as f:
        live: dict[int, tuple[int, bytearray]] = {}  # slot -> (handle, model)
        for op, slot, size, data in ops:
            if op == "create" and slot not in live:
                h = f.gem_create(size)
                live[slot] = (h, bytearray(backing.page_align(size)))
            elif slot in live:
                h, model = live[slot]
                obj = f.lookup(h)
                at = size % len(model)
                data = data[:len(model) - at]
                if op == "write":
                    v = _dsp(soc, obj)
                    v[at:at + len(data)] = data
                    v.release()
                    model[at:at + len(data)] = data
                elif op == "promote":
                    f.mmap(f.gem_mmap_offset(h), len(model)).release()
                else:
                    f.gem_close(h)
                    del live[slot]
            for h, model in live.values():
                obj = f.lookup(h)
                v = _dsp(soc, obj, False)
                assert bytes(v) == bytes(model)
                v.release()
                if obj.backing.promoted:
                    assert os.pread(obj.backing.fd, len(model), 0) == bytes(model)


def test_slot_contract():
    """arena.alloc / Slot, used directly: the Backing interface, charged and freed exactly."""
    for bad in (0, arena.ARENA_MAX + 1):
        with pytest.raises(InternalError):
            arena.alloc(bad)
    pool = backing.pool_used()
    s = arena.alloc(PAGE + 1, name="qdarpc-contract")
    assert s.size == 2 * PAGE and len(s.view) == 2 * PAGE and not s.promoted
    assert backing.pool_used() == pool + 2 * PAGE
    s.view[:2] = b"ok"
    ro = s.export_fd(writable=False, cloexec=True)  # promotes
    assert s.promoted and os.pread(ro, 2, 0) == b"ok"
    assert os.get_inheritable(ro) is False
    with pytest.raises(OSError):
        os.pwrite(ro, b"no", 0)  # a read-only export
    rw = s.export_fd(writable=True, cloexec=False)
    assert os.get_inheritable(rw) is True
    os.pwrite(rw, b"yes", 0)
    assert bytes(s.view[:3]) == b"yes"
    os.close(ro)
    os.close(rw)
    s.close()
    s.close()  # idempotent
    assert backing.pool_used() == pool and arena.stats() == {}


def test_backing_helpers_contract():
    fd = backing.new_memfd("qdarpc-contract", 3 * PAGE)
    try:
        st = os.fstat(fd)
        assert st.st_size == 3 * PAGE and st.st_mode & 0o777 == 0o400
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & (fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        key = (st.st_dev, st.st_ino)
        pool = backing.pool_used()
        backing.charge(3 * PAGE)
        backing.rekey_charge(3 * PAGE, key)
        with pytest.raises(InternalError):
            backing.rekey_charge(3 * PAGE, key)  # a file is charged once
        backing.uncharge(0, key)
        assert backing.pool_used() == pool
        backing.keep_private(key)
        with pytest.raises(OSError) as e:
            backing.Backing.import_fd(fd)
        assert e.value.errno == errno.EINVAL
        backing.release_private(key)
        backing.Backing.import_fd(fd).close()  # an ordinary sealed memfd again
    finally:
        os.close(fd)
