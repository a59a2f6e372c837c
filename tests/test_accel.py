"""The emulated QDA accel driver: DRM dispatch, GEM, PRIME, context banks, isolation, release."""
import errno
import mmap
import os
import struct
import threading

import pytest

from qda_core import uapi
from qda_core.soc import Soc, load_profile


def errno_of(excinfo) -> int:
    return excinfo.value.errno


# --- devices and dispatch ---------------------------------------------------------------------
def test_nodes_in_table_order_and_query(soc):
    assert soc.accel_nodes() == ["/dev/accel/accel0", "/dev/accel/accel1", "/dev/accel/accel2"]
    for path, name in zip(soc.accel_nodes(), ["adsp", "cdsp", "sdsp"]):
        with soc.open(path) as f:
            assert f.query() == name


def test_unknown_node_and_domain(soc):
    with pytest.raises(FileNotFoundError):
        soc.open("/dev/accel/accel9")
    with pytest.raises(OSError) as e:
        soc.open_device("cdsp1")
    assert errno_of(e) == errno.ENODEV


def test_profiles():
    assert [d.name for d in load_profile("full")] == ["adsp", "mdsp", "sdsp", "cdsp", "cdsp1", "gdsp0", "gdsp1"]
    with pytest.raises(ValueError, match="valid profiles: default, full, minimal"):
        load_profile("nope")


def test_profile_file(tmp_path):
    p = tmp_path / "soc.toml"
    p.write_text('[[domains]]\nname = "cdsp"\ncontext_banks = 1\nsids = [9]\n')
    doms = load_profile(str(p))
    assert [(d.name, d.context_banks, d.sids) for d in doms] == [("cdsp", 1, [9])]
    bad = tmp_path / "bad.json"
    bad.write_text('{"domains": [{"name": "xdsp", "context_banks": 1}]}')
    with pytest.raises(ValueError, match="unknown DSP domain 'xdsp'"):
        load_profile(str(bad))


def test_client_ids_count_up_per_device(soc):
    a, b = soc.open_device("cdsp"), soc.open_device("cdsp")
    c = soc.open_device("adsp")
    assert (a.client_id, b.client_id, c.client_id) == (1, 2, 1)
    for f in (a, b, c):
        f.close()


def test_query_with_lib_struct_size(cdsp):
    # LIB's QUERY is 20 bytes (0x80146440): same nr, the extra capabilities word reads back 0.
    buf = bytearray(b"\xff" * 20)
    assert cdsp.ioctl(0x80146440, buf) == 0
    assert bytes(buf[:5]) == b"cdsp\0" and bytes(buf[16:]) == b"\0\0\0\0"


def test_dispatch_errors(cdsp):
    assert cdsp.ioctl(uapi.IOC(3, ord("d"), 0x48, 16), bytearray(16)) == -errno.EINVAL  # hole past table
    assert cdsp.ioctl(uapi.IOC(3, ord("d"), 0x00, 4), bytearray(4)) == -errno.EINVAL    # core VERSION: not emulated
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, bytearray(8)) == -errno.EFAULT     # shorter than encoded
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_QUERY, 0) == -errno.EFAULT                     # NULL user pointer
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_QUERY, bytes(16)) == -errno.EFAULT              # read-only buffer


def test_raw_ioctl_with_user_address(cdsp):
    import ctypes

    buf = (ctypes.c_char * 16)()
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_QUERY, ctypes.addressof(buf)) == 0
    assert buf.value == b"cdsp"


def test_closed_file(soc):
    f = soc.open_device("cdsp")
    f.close()
    f.close()  # idempotent
    assert f.ioctl(uapi.DRM_IOCTL_QDA_QUERY, bytearray(16)) == -errno.EBADF


def test_unclosed_file_warns(soc):
    """A file dropped without close() warns when collected, and is released like a closed one:
    its PD gets INIT_RELEASE."""
    import gc

    f = soc.open_device("cdsp")
    assert f.init_create(attrs=0x8) == 0
    assert len(soc.domain("cdsp").dsp.processes()) == 1
    with pytest.warns(ResourceWarning, match="unclosed QDA file"):
        del f
        gc.collect()
    assert soc.domain("cdsp").dsp.processes() == []


# --- GEM ------------------------------------------------------------------------------------------
def test_gem_create_rounding_zeroed_and_handles(cdsp):
    h1, h2 = cdsp.gem_create(1), cdsp.gem_create(5000)
    assert (h1, h2) == (1, 2)
    assert cdsp.lookup(h1).size == 4096 and cdsp.lookup(h2).size == 8192
    view = cdsp.mmap(cdsp.gem_mmap_offset(h2), 8192)
    assert bytes(view) == bytes(8192)
    view.release()
    cdsp.gem_close(h1)
    assert cdsp.gem_create(10) == 1  # lowest free id is reused


def test_gem_create_size_zero(cdsp):
    with pytest.raises(OSError) as e:
        cdsp.gem_create(0)
    assert errno_of(e) == errno.EINVAL


def test_gem_create_lib_layout_fails_like_the_rfc(cdsp):
    # LIB 759d6f8 puts size at offset 0: the RFC kernel reads size 0 from offset 8 -> EINVAL.
    buf = bytearray(struct.pack("<QI4x", 4096, 0))
    assert cdsp.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, buf) == -errno.EINVAL


def test_gem_close_unknown(cdsp):
    with pytest.raises(OSError) as e:
        cdsp.gem_close(42)
    assert errno_of(e) == errno.EINVAL


def test_mmap_offsets(cdsp):
    a, b = cdsp.gem_create(4096), cdsp.gem_create(3 * 4096)
    oa, ob = cdsp.gem_mmap_offset(a), cdsp.gem_mmap_offset(b)
    assert oa >= 1 << 32 and ob >= 1 << 32 and oa % 4096 == 0 and ob % 4096 == 0 and oa != ob
    assert cdsp.gem_mmap_offset(a) == oa  # idempotent
    with pytest.raises(FileNotFoundError):
        cdsp.gem_mmap_offset(99)


def test_mmap_rules(soc, cdsp):
    h = cdsp.gem_create(4096)
    off = cdsp.gem_mmap_offset(h)
    with pytest.raises(OSError) as e:
        cdsp.mmap(off, 8192)
    assert errno_of(e) == errno.EINVAL
    with pytest.raises(OSError) as e:
        cdsp.mmap(off + 4096 * 100, 4096)
    assert errno_of(e) == errno.EINVAL
    with soc.open_device("cdsp") as other:  # no handle to the object in that file
        with pytest.raises(PermissionError):
            other.mmap(off, 4096)
    with soc.open_device("cdsp", os.O_RDONLY) as ro:
        fd = cdsp.prime_handle_to_fd(h)
        h2 = ro.prime_fd_to_handle(fd)
        os.close(fd)
        with pytest.raises(PermissionError):
            ro.mmap(ro.gem_mmap_offset(h2), 4096)
        ro.mmap(off, 4096, mmap.PROT_READ).release()


def test_cpu_mapping_shares_pages(cdsp):
    h = cdsp.gem_create(4096)
    off = cdsp.gem_mmap_offset(h)
    v1, v2 = cdsp.mmap(off, 4096), cdsp.mmap(off, 4096)
    v1[:5] = b"hello"
    assert bytes(v2[:5]) == b"hello"
    assert bytes(cdsp.lookup(h).backing.view[:5]) == b"hello"
    v1.release()
    v2.release()


def test_mapping_outlives_handle(cdsp):
    h = cdsp.gem_create(4096)
    view = cdsp.mmap(cdsp.gem_mmap_offset(h), 4096)
    cdsp.gem_close(h)
    view[0] = 7  # pages stay valid while mapped: no crash, no error
    assert view[0] == 7
    view.release()


# --- PRIME ----------------------------------------------------------------------------------------
def test_prime_export_is_a_real_fd_readable_by_a_child(cdsp):
    h = cdsp.gem_create(4096)
    view = cdsp.mmap(cdsp.gem_mmap_offset(h), 4096)
    view[:11] = b"from parent"
    fd = cdsp.prime_handle_to_fd(h, uapi.DRM_RDWR)  # inheritable: no DRM_CLOEXEC
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: map the dma-buf fd, read, write back
        try:
            m = mmap.mmap(fd, 4096)
            os.write(w, m[:11])
            m[100:105] = b"child"
            m.close()
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 64)
    os.waitpid(pid, 0)
    os.close(r)
    os.close(fd)
    assert got == b"from parent"
    assert bytes(view[100:105]) == b"child"
    view.release()


def test_prime_export_flags(cdsp):
    h = cdsp.gem_create(4096)
    fd = cdsp.prime_handle_to_fd(h, uapi.DRM_CLOEXEC)  # what LIB passes: a read-only dma-buf
    with pytest.raises(PermissionError):
        mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    assert not os.get_inheritable(fd)
    os.close(fd)
    with pytest.raises(OSError) as e:
        cdsp.prime_handle_to_fd(h, 0x4)
    assert errno_of(e) == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        cdsp.prime_handle_to_fd(77)


def test_prime_import_identity(soc, cdsp):
    h = cdsp.gem_create(4096)
    fd = cdsp.prime_handle_to_fd(h)
    assert cdsp.prime_fd_to_handle(fd) == h  # own export, same file: same handle
    with soc.open_device("cdsp") as other:
        h2 = other.prime_fd_to_handle(fd)
        assert other.prime_fd_to_handle(fd) == h2  # double import: same handle
        assert other.lookup(h2) is cdsp.lookup(h)  # same object: the exporter's CB and address
        assert other.lookup(h2).dma_addr >> 32 == cdsp.cb.sid
    os.close(fd)


def test_prime_import_foreign_memfd(cdsp):
    mfd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)  # importable: its size can be sealed
    os.write(mfd, b"x" * 5000)
    h = cdsp.prime_fd_to_handle(mfd)
    obj = cdsp.lookup(h)
    assert obj.imported and obj.size == 8192 and obj.dma_addr >> 32 == cdsp.cb.sid
    assert bytes(obj.backing.view[:3]) == b"xxx"
    with pytest.raises(OSError) as e:  # imported objects cannot be CPU-mapped through QDA
        cdsp.mmap(cdsp.gem_mmap_offset(h), 4096)
    assert errno_of(e) == errno.EINVAL
    os.close(mfd)


def test_prime_import_bad_fds(cdsp):
    r, w = os.pipe()
    with pytest.raises(OSError) as e:
        cdsp.prime_fd_to_handle(r)
    assert errno_of(e) == errno.EINVAL
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as e:
        cdsp.prime_fd_to_handle(r)
    assert errno_of(e) == errno.EBADF


# --- context banks ----------------------------------------------------------------------------
def test_cb_assignment_is_lazy_and_per_thread(soc):
    bus = soc.domain("cdsp").bus
    f1, f2 = soc.open_device("cdsp"), soc.open_device("cdsp")
    assert f1.cb is None and bus.free_count == 8
    f1.gem_create(4096)
    f2.gem_create(4096)
    assert f1.cb is f2.cb and f1.cb.refcount == 2  # same opener thread: shared CB
    result = {}

    def other_thread():
        g = soc.open_device("cdsp")
        g.gem_create(4096)
        result["cb"] = g.cb
        g.close()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert result["cb"] is not f1.cb
    obj_addr = f1.lookup(1).dma_addr
    assert obj_addr >> 32 == f1.cb.sid
    f1.close()
    assert bus.free_count == 7
    f2.close()
    assert bus.free_count == 8


def test_cb_exhaustion_is_enomem(fd_guard):
    soc = Soc("minimal")  # one cdsp with 2 context banks
    files, errors = [], []

    def worker():
        f = soc.open_device("cdsp")
        files.append(f)
        try:
            f.gem_create(4096)
        except OSError as exc:
            errors.append(exc.errno)

    for _ in range(3):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert errors == [errno.ENOMEM]
    last = files[-1]
    with pytest.raises(OSError) as e:
        last.init_attach()
    assert errno_of(e) == errno.ENOMEM
    for f in files:
        f.close()
    assert soc.domain("cdsp").bus.free_count == 2


def test_handles_are_per_file(soc, cdsp):
    h = cdsp.gem_create(4096)
    with soc.open_device("cdsp") as other:
        with pytest.raises(OSError) as e:
            other.gem_close(h)
        assert errno_of(e) == errno.EINVAL
        with pytest.raises(FileNotFoundError):
            other.gem_mmap_offset(h)


def test_close_releases_everything(soc):
    f = soc.open_device("cdsp")
    for _ in range(3):
        f.gem_create(8192)
    cb = f.ensure_cb()
    assert cb.mapped >= 3
    f.close()
    assert cb.mapped == 0 and cb.free
