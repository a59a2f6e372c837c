"""Issue #8 items 6-8: what backing memory keeps of a dma-buf's guarantees.

6. a read-only PRIME export cannot be reopened read-write through ``/proc/self/fd``;
7. an imported buffer cannot be truncated under the DSP (SIGBUS), and fds whose size is not
   fixed are refused by both drivers;
8. imports count against ``QDARPC_DMA_LIMIT``, are sized before anything is touched and are not
   populated.

Whatever could kill the process on a regression (SIGBUS, filling the host's memory) runs in a
child process.
"""
import errno
import fcntl
import json
import mmap
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import uapi
from qda_core.accel import GemRef
from qda_core.legacy import DmaBufRef, dmabuf_mmap
from qda_core.mem import backing
from qda_core.mem.backing import Backing

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import SC_CHECKSUM, TEST, UNSIGNED, raises_errno  # noqa: E402

CDSP = "/dev/fastrpc-cdsp"
MiB = 1 << 20


def _child(script: str, *args: str, env: dict | None = None) -> dict:
    p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, f"child died ({p.returncode}): {p.stderr[-3000:]}"
    return json.loads(p.stdout.splitlines()[-1])


def _sealable(size: int, name: str = "foreign") -> int:
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    return fd


# -- item 6: read-only exports ------------------------------------------------------------------

# Imports everything first, then (as root) becomes nobody: root's CAP_DAC_OVERRIDE ignores the
# inode's mode bits, which is the documented limit of the guarantee.
CHILD_RO = r"""
import errno, fcntl, json, mmap, os
from qda_core import uapi
from qda_core.soc import Soc
import qda_core.accel, qda_core.legacy  # noqa: F401 - loaded before dropping privileges
soc = Soc()  # imports the rest (skels) while the package is still readable (a tox env dir is 0700)
if os.geteuid() == 0:
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)

def reopen(fd, mode):
    try:
        os.close(os.open(f"/proc/self/fd/{fd}", mode))
        return 0
    except OSError as e:
        return e.errno

def mmap_write(fd):
    try:
        m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        return e.errno
    m[:5] = b"hello"
    m.close()
    return 0

res = {"uid": os.getuid()}
with soc.open_device("cdsp") as f:
    h = f.gem_create(4096)
    ro = f.prime_handle_to_fd(h, flags=uapi.DRM_CLOEXEC)
    rw = f.prime_handle_to_fd(h)
    res["ro_mode"] = fcntl.fcntl(ro, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    res["ro_reopen_rw"] = reopen(ro, os.O_RDWR)
    res["ro_reopen_wr"] = reopen(ro, os.O_WRONLY)
    res["ro_reopen_ro"] = reopen(ro, os.O_RDONLY)
    res["ro_mmap_write"] = mmap_write(ro)
    res["rw_mmap_write"] = mmap_write(rw)
    res["rw_visible"] = bytes(f.lookup(h).backing.view[:5]) == b"hello"
    os.close(ro)
    os.close(rw)
l = soc.open("/dev/fastrpc-cdsp")
fd = l.alloc_dma_buff(4096)
res["dmabuf_mmap_write"] = mmap_write(fd)
os.close(fd)
l.close()
print(json.dumps(res))
"""


def test_readonly_prime_export_cannot_be_reopened_writable():
    """The fd of a PRIME export without DRM_RDWR grants no write access to an unprivileged
    process: no ``/proc/self/fd`` reopen for writing, no writable mapping; writable exports
    (DRM_RDWR, ALLOC_DMA_BUFF) still write the buffer's pages."""
    res = _child(CHILD_RO)
    assert os.geteuid() != 0 or res["uid"] == 65534
    assert res["ro_mode"]
    assert res["ro_reopen_rw"] == errno.EACCES and res["ro_reopen_wr"] == errno.EACCES
    assert res["ro_reopen_ro"] == 0
    assert res["ro_mmap_write"] == errno.EACCES
    assert res["rw_mmap_write"] == 0 and res["rw_visible"]
    assert res["dmabuf_mmap_write"] == 0


def test_export_fd_modes_and_cloexec(soc, cdsp, upd):
    h = cdsp.gem_create(4096)
    obj = cdsp.lookup(h)
    assert stat.S_IMODE(os.fstat(obj.backing.fd).st_mode) == 0o400  # the kernel-side fd stays O_RDWR
    cases = {(uapi.DRM_CLOEXEC, os.O_RDONLY, False), (0, os.O_RDONLY, True),
             (uapi.DRM_CLOEXEC | uapi.DRM_RDWR, os.O_RDWR, False), (uapi.DRM_RDWR, os.O_RDWR, True)}
    for flags, mode, inheritable in cases:
        fd = cdsp.prime_handle_to_fd(h, flags=flags)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == mode
        assert os.get_inheritable(fd) == inheritable
        assert cdsp.prime_fd_to_handle(fd) == h  # still the same buffer
        os.close(fd)
    fd = upd.alloc_dma_buff(4096)  # O_RDWR, no O_CLOEXEC
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR and os.get_inheritable(fd)
    os.close(fd)


# -- item 7: imports cannot shrink under the DSP ------------------------------------------------

CHILD_TRUNCATE = r"""
import errno, json, os, struct, sys
from libadsprpc_compat.remotectl import open_module
from qda_core.accel import GemRef
from qda_core.legacy import DmaBufRef, dmabuf_mmap
from qda_core.soc import Soc
TEST, SC_CHECKSUM = sys.argv[1], int(sys.argv[2])
soc = Soc()
mfd = os.memfd_create("victim", os.MFD_ALLOW_SEALING)
os.ftruncate(mfd, 8192)
view = dmabuf_mmap(mfd)
view[4096:4100] = b"\x05\x06\x07\x08"
acc = soc.open_device("cdsp")
acc.init_create(attrs=8)
ha = open_module(acc, TEST)[1]
gh = acc.prime_fd_to_handle(mfd)          # imported: lives until GEM_CLOSE
leg = soc.open("/dev/fastrpc-cdsp")
leg.init_create(attrs=8)
hl = open_module(leg, TEST)[1]
vaddr = leg.mem_map(mfd, 8192)            # imported: lives until MEM_UNMAP
res = {}
try:
    os.ftruncate(mfd, 0)                  # the owner shrinks it under both imports
    res["truncate"] = 0
except OSError as e:
    res["truncate"] = e.errno
sys.stdout.flush()
out = bytearray(8)
res["accel"] = [acc.invoke(ha, SC_CHECKSUM, [GemRef(gh, view[4096:4100]), out]), struct.unpack("<Q", out)[0]]
out = bytearray(8)
res["legacy"] = [leg.invoke(hl, SC_CHECKSUM, [DmaBufRef(mfd, view[4096:4100]), out]), struct.unpack("<Q", out)[0]]
leg.mem_unmap(mfd, vaddr, 8192)
view.release()
leg.close()
acc.close()
os.close(mfd)
print(json.dumps(res))
"""


def test_truncating_an_imported_memfd_cannot_sigbus():
    """The reported crash: the owner truncates an imported memfd, the next DSP access faulted
    (SIGBUS). The import seals it, so the truncate fails and the process lives."""
    res = _child(CHILD_TRUNCATE, TEST, str(SC_CHECKSUM))
    assert res == {"truncate": errno.EPERM, "accel": [0, 26], "legacy": [0, 26]}


def test_import_seals_a_sealable_memfd(cdsp, upd):
    for importer in (cdsp.prime_fd_to_handle, lambda fd: upd.mem_map(fd, 4096)):
        mfd = _sealable(4096)
        assert fcntl.fcntl(mfd, fcntl.F_GET_SEALS) == 0
        importer(mfd)
        seals = fcntl.fcntl(mfd, fcntl.F_GET_SEALS)
        assert seals & (fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW) == fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
        with pytest.raises(PermissionError):
            os.ftruncate(mfd, 0)
        os.close(mfd)


def test_already_shrink_sealed_fd_is_accepted(cdsp):
    """Sealed by its owner and closed to further seals: nothing left to add, and none needed."""
    mfd = _sealable(4096)
    fcntl.fcntl(mfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    h = cdsp.prime_fd_to_handle(mfd)
    assert cdsp.lookup(h).imported
    os.close(mfd)


def _unsealable(kind: str, tmp_path) -> int:
    if kind == "memfd":          # memfd_create without MFD_ALLOW_SEALING: born F_SEAL_SEAL
        fd = os.memfd_create("plain")
    elif kind == "file":         # a regular file on disk: no seals at all
        fd = os.open(tmp_path / "plain.bin", os.O_RDWR | os.O_CREAT, 0o600)
    else:                        # a tmpfs file (shm_open): sealing not allowed
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        path = f"/dev/shm/qdarpc-test-{os.getpid()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(path)
    os.ftruncate(fd, 8192)
    return fd


@pytest.mark.parametrize("kind", ["memfd", "file", "shm"])
def test_fds_that_can_shrink_are_refused_by_both_drivers(kind, tmp_path, cdsp, upd):
    fd = _unsealable(kind, tmp_path)
    try:
        before = backing.pool_used()
        buf = uapi.drm_prime_handle.pack(fd=fd)
        assert cdsp.ioctl(uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE, buf) == -errno.EINVAL
        with raises_errno(errno.EINVAL) as e:
            cdsp.prime_fd_to_handle(fd)
        assert "can be truncated" in str(e.value) and "MFD_ALLOW_SEALING" in str(e.value)
        with raises_errno(errno.EINVAL):
            upd.mem_map(fd, 8192)
        _, h = open_module(upd, TEST)
        view = dmabuf_mmap(fd)
        try:
            with raises_errno(errno.EINVAL):
                upd.invoke(h, SC_CHECKSUM, [DmaBufRef(fd, view[:4]), bytearray(8)])
        finally:
            view.release()
        assert upd.maps == {} and backing.pool_used() == before
        assert os.fstat(fd).st_size == 8192  # untouched, still the owner's to resize
        os.ftruncate(fd, 4096)
    finally:
        os.close(fd)


def test_readonly_and_empty_fds_still_refused(cdsp):
    mfd = _sealable(4096)
    ro = os.open(f"/proc/self/fd/{mfd}", os.O_RDONLY)
    with raises_errno(errno.EACCES):
        cdsp.prime_fd_to_handle(ro)
    assert fcntl.fcntl(mfd, fcntl.F_GET_SEALS) == 0  # refused before sealing anything
    empty = _sealable(0)
    with raises_errno(errno.EINVAL):
        cdsp.prime_fd_to_handle(empty)
    for fd in (ro, mfd, empty):
        os.close(fd)


# -- item 8: imports are charged to the DMA pool and not populated -------------------------------

CHILD_SPARSE = r"""
import errno, json, os, resource
from qda_core import uapi
from qda_core.mem import backing
from qda_core.soc import Soc

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

soc = Soc()
acc = soc.open_device("cdsp")
acc.ensure_cb()                            # the file's own message memory, before measuring
leg = soc.open("/dev/fastrpc-cdsp")
assert leg.init_create(attrs=8) == 0
start = backing.pool_used()
# Safety net: a regression that maps and populates 4.5 GiB fails here instead of filling the
# host (it then fails without QDARPC_DMA_LIMIT in the message, which the parent checks).
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + (2 << 30), resource.RLIM_INFINITY))
res = {"limit": backing.DMA_LIMIT}
rss = status("VmRSS")
for size in (256 << 20, 9 << 29):          # 256 MiB and 4.5 GiB, both sparse
    mfd = os.memfd_create("sparse", os.MFD_ALLOW_SEALING)
    os.ftruncate(mfd, size)
    r = res[str(size)] = {}
    r["accel"] = acc.ioctl(uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE, uapi.drm_prime_handle.pack(fd=mfd))
    try:
        leg.mem_map(mfd, size)
        r["legacy"] = 0
    except OSError as e:
        r["legacy"] = -e.errno
    try:
        backing.Backing.import_fd(mfd).close()
        r["backing"] = [0, ""]
    except OSError as e:
        r["backing"] = [-e.errno, str(e)]
    os.close(mfd)
res["rss_growth"] = status("VmRSS") - rss
res["pool_delta"] = backing.pool_used() - start
leg.close()
acc.close()
res["pool_end"] = backing.pool_used()
print(json.dumps(res))
"""


def test_sparse_import_beyond_dma_limit_is_enomem_without_touching_memory():
    """The reported case: a sparse 4.5 GiB memfd under a 64M limit filled 4.6 GiB of memory."""
    res = _child(CHILD_SPARSE, env={"QDARPC_DMA_LIMIT": "64M"})
    assert res["limit"] == 64 * MiB
    for size in (256 << 20, 9 << 29):
        r = res[str(size)]
        assert r["accel"] == -errno.ENOMEM and r["legacy"] == -errno.ENOMEM, (size, r)
        assert r["backing"][0] == -errno.ENOMEM and "QDARPC_DMA_LIMIT" in r["backing"][1], (size, r)
    assert res["rss_growth"] < 16 * MiB, res
    assert res["pool_delta"] == 0 and res["pool_end"] == 0, res


def test_imports_are_charged_once_per_file_and_uncharged_at_close(soc, cdsp, upd, monkeypatch):
    start = backing.pool_used()
    monkeypatch.setattr(backing, "DMA_LIMIT", start + 3 * MiB)
    a = _sealable(MiB + 1)                          # charged by the page
    h = cdsp.prime_fd_to_handle(a)
    assert backing.pool_used() == start + MiB + 4096
    vaddr = upd.mem_map(a, MiB + 1)                 # the same file imported again: counted once
    with soc.open_device("cdsp") as other:
        other.prime_fd_to_handle(a)
        assert backing.pool_used() == start + MiB + 4096
    b = _sealable(2 * MiB)                          # does not fit what is left
    with raises_errno(errno.ENOMEM) as e:
        cdsp.prime_fd_to_handle(b)
    assert "QDARPC_DMA_LIMIT" in str(e.value)
    with raises_errno(errno.ENOMEM):
        upd.mem_map(b, 2 * MiB)
    # own buffers exported and imported elsewhere are not counted twice either
    g = cdsp.gem_create(MiB)
    assert backing.pool_used() == start + 2 * MiB + 4096
    fd = cdsp.prime_handle_to_fd(g)
    vaddr2 = upd.mem_map(fd, MiB)
    assert backing.pool_used() == start + 2 * MiB + 4096
    upd.mem_unmap(fd, vaddr2, MiB)
    upd.mem_unmap(a, vaddr, MiB + 1)
    cdsp.gem_close(h)
    cdsp.gem_close(g)
    assert backing.pool_used() == start
    for fd_ in (a, b, fd):
        os.close(fd_)


def test_imports_are_not_populated(cdsp):
    """Only the pages the DSP touches come in; a created buffer is populated (charged first)."""
    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    mfd = _sealable(256 * MiB)
    view = dmabuf_mmap(mfd, 4096)
    view[:4] = b"\x01\x02\x03\x04"
    before = rss()
    h = cdsp.prime_fd_to_handle(mfd)
    assert rss() - before < 16 * MiB
    assert cdsp.init_create(attrs=UNSIGNED) == 0
    _, th = open_module(cdsp, TEST)
    out = bytearray(8)
    assert cdsp.invoke(th, SC_CHECKSUM, [GemRef(h, view[:4]), out]) == 0 and out[0] == 10
    assert rss() - before < 16 * MiB
    view.release()
    cdsp.gem_close(h)
    os.close(mfd)


def test_pool_api():
    """The pool API the library layer (rpcmem) shares with the drivers."""
    start = backing.pool_used()
    backing.charge(8192)
    assert backing.pool_used() == start + 8192
    backing.uncharge(8192)
    key = ("test", 1)
    backing.charge(4096, key)
    backing.charge(4096, key)                       # a second holder of the same file: no bytes
    assert backing.pool_used() == start + 4096
    backing.uncharge(4096, key)
    assert backing.pool_used() == start + 4096
    backing.uncharge(4096, key)
    assert backing.pool_used() == start
    with raises_errno(errno.ENOMEM):
        backing.charge(backing.DMA_LIMIT - start + 1)
    with raises_errno(errno.EINVAL):
        backing.charge(-1)
    assert backing.pool_used() == start


def test_created_backing_is_sealed_and_charged(fd_guard):
    start = backing.pool_used()
    b = Backing(5000)
    try:
        assert backing.pool_used() == start + 8192
        seals = fcntl.fcntl(b.fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW
        with pytest.raises(PermissionError):
            os.ftruncate(b.fd, 0)
    finally:
        b.close()
    assert backing.pool_used() == start
    with pytest.raises(OSError):
        Backing(0)                                  # mmap of nothing: EINVAL, nothing kept
    assert backing.pool_used() == start


def test_mmap_of_readonly_export_is_readonly(cdsp):
    h = cdsp.gem_create(4096)
    fd = cdsp.prime_handle_to_fd(h, flags=uapi.DRM_CLOEXEC)
    with pytest.raises(PermissionError):
        mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    m.close()
    os.close(fd)
