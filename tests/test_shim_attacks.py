"""Attacks on the LD_PRELOAD device shim (docs/shim.md): C programs that pass it bad pointers and
odd open flags, close and replace device fds behind its back or from other threads, fork, and
keep pipes of their own; and qda_core.vfs, its Python side, with the same in-process. Everything
must answer as the kernel would, never crash, and leave what is not the shim's untouched."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pathlib
import struct
import sys
import threading
import time

import pytest

from qda_core import vfs

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import compile_c, needs_c_abi  # noqa: E402
from test_shim import _shim_run  # noqa: E402


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    d = tmp_path_factory.mktemp("shim_attacks")
    return {name: compile_c(f"shim/{name}.c", d / name, link_abi=False, flags=["-lpthread"])
            for name in ("attacks", "fork", "threads")}


def _lines(stdout: str) -> dict[str, str]:
    assert stdout.endswith("done\n"), stdout
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


def _host_errno(path: str) -> str:
    """What opening a path the shim does not own answers without the shim."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return str(-exc.errno)
    return "0"


def _tree_gone(tmp: pathlib.Path, timeout: float = 10) -> bool:
    """The /dev/accel trees the shim made under ``tmp`` are removed once their process is gone
    (by a helper that notices asynchronously)."""
    deadline = time.monotonic() + timeout
    while any(tmp.iterdir()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class TestPrograms:
    pytestmark = needs_c_abi

    def test_bad_pointers_odd_flags_and_fds_closed_behind_its_back(self, progs, tmp_path):
        res = _shim_run([progs["attacks"]], TMPDIR=tmp_path)
        assert res.returncode == 0, res.stderr
        e = {name: str(-getattr(errno, name)) for name in
             ("EFAULT", "EEXIST", "ENOTDIR", "ENOENT", "EBADF", "EACCES", "ENODEV", "EINVAL", "ENOTTY")}
        assert _lines(res.stdout) == {
            # pointers nothing can be at: the kernel's EFAULT, not a crash in the shim
            "open_wild_path": e["EFAULT"], "stat_wild_path": e["EFAULT"], "access_wild_path": e["EFAULT"],
            "stat_node_wild_buf": e["EFAULT"], "stat_node_top_buf": e["EFAULT"],
            "lstat_node_readonly_buf": e["EFAULT"],
            # open flags as for a character device; O_PATH opens no device
            "open_creat_excl_node": e["EEXIST"], "open_directory_node": e["ENOTDIR"],
            "open_path_missing": e["ENOENT"], "open_path_node": "1", "open_path_fstat": "chr",
            "open_path_ioctl": e["EBADF"], "open_path_mmap": e["EBADF"],
            "access_node_exec": e["EACCES"], "access_node_rw": "0",
            # fopen of a node is the shim's too
            "fopen_node": "1", "fopen_node_ioctl": "0", "fopen_node_cloexec": "1",
            "fopen_node_excl": e["EEXIST"], "fopen_missing_node": e["ENOENT"],
            # a heap that is not /dev/dma_heap/system is the host's business
            "open_other_heap": _host_errno("/dev/dma_heap/system-uncached"),
            "mmap_heap_node": e["ENODEV"],
            # a failed dup2/dup3 leaves the device fd open and working
            "dup2_bad_oldfd": e["EBADF"], "dup2_bad_oldfd_device_works": "0",
            "dup3_bad_flags": e["EINVAL"], "dup3_bad_oldfd": e["EBADF"], "dup3_bad_oldfd_device_works": "0",
            "dup2_plain_onto_device": "1", "dup2_replaced_device_works": "0",
            "dup2_plain_fstat": "reg", "dup2_plain_ioctl": e["ENOTTY"],
            # FIOCLEX & co. are the VFS's, for any file
            "fioclex": "0", "fioclex_set": "1", "fionbio": "0", "fionbio_set": "1",
            "fstatat_empty_path": "1",
            # closed by fclose, a raw syscall, close_range, closefrom: the number's next file is plain
            "fclose_reused": "1", "fclose_reused_fstat": "reg", "fclose_reused_ioctl": e["ENOTTY"],
            "raw_close_reused": "1", "raw_close_reused_fstat": "reg", "raw_close_reused_ioctl": e["ENOTTY"],
            "close_range": "0", "close_range_reused_fstat": "reg", "close_range_reused_ioctl": e["ENOTTY"],
            "closefrom_reused_fstat": "reg",
            # the helper removing the /dev/accel tree holds none of the program's fds
            "own_pipe_eof": "1",
        }
        assert "internal error" not in res.stderr
        assert _tree_gone(tmp_path)

    def test_forked_children_get_their_own_emulator_and_leave_the_parent_alone(self, progs, tmp_path):
        res = _shim_run([progs["fork"], 4], TMPDIR=tmp_path)
        assert res.returncode == 0, res.stderr
        assert _lines(res.stdout) == {
            "bad_children": "0", "parent_gem_handle_survives": "1", "parent_mapping_untouched": "1",
            "parent_listing_survives": "1", "parent_works_after": "0",
        }
        assert _tree_gone(tmp_path)

    def test_fds_closed_and_replaced_while_other_threads_ioctl_them(self, progs):
        res = _shim_run([progs["threads"], 4, 100], QDARPC_SHIM_DEBUG=1)
        assert (res.returncode, res.stdout) == (0, "unexpected 0\n"), res.stderr
        lines = res.stderr.splitlines()
        # one write per debug line: threads' lines never interleave
        assert lines and all(line.startswith("qdarpc-shim: ") for line in lines), \
            [line for line in lines if not line.startswith("qdarpc-shim: ")][:5]
        opened = [int(k) for k in _re_all(r"\(key (\d+)\)$", lines)]
        released = [int(k) for k in _re_all(r"^qdarpc-shim: release key (\d+) \(fd \d+\) = 0$", lines)]
        # every file released once, at its last fd (a dup racing a close keeps it alive)
        assert len(opened) == 101 and sorted(opened) == sorted(released)
        assert not [line for line in lines if "release key" in line and not line.endswith(" = 0")]


def _re_all(pattern: str, lines: list[str]) -> list[str]:
    import re

    return [m.group(1) for line in lines if (m := re.search(pattern, line))]


# -- qda_core.vfs in this process ----------------------------------------------------------------
@pytest.fixture
def fresh_default_soc():
    from qda_core import soc as soc_mod

    soc_mod.reset_default()
    yield soc_mod.default_soc()
    soc_mod.reset_default()


def test_vfs_open_flags_of_a_character_device(fresh_default_soc):
    node = fresh_default_soc.legacy_nodes()[0]
    assert vfs.open(node, os.O_RDWR | os.O_CREAT | os.O_EXCL) == -errno.EEXIST
    assert vfs.open(node, os.O_RDONLY | os.O_DIRECTORY) == -errno.ENOTDIR
    assert vfs.open(node, os.O_PATH) == 0  # no device opened: the shim keeps a PATH fd
    assert vfs.open("/dev/fastrpc-nosuch", os.O_PATH) == -errno.ENOENT
    assert vfs.open("/dev/fastrpc-nosuch", os.O_CREAT | os.O_EXCL) == -errno.ENOENT


def _read_only_alloc_arg(length: int):
    """A DMA_HEAP_IOCTL_ALLOC argument the heap can read but not write back."""
    m = mmap.mmap(-1, 4096)
    m[:24] = struct.pack("<QIIQ", length, 0, os.O_RDWR, 0)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr, 4096, mmap.PROT_READ) == 0
    return m, addr


def test_vfs_heap_failures_leave_the_pool_as_it_was(fresh_default_soc):
    from qda_core.mem import backing

    heap = vfs.open(vfs.DMA_HEAP, os.O_RDONLY)
    before, owners = backing.pool_used(), dict(vfs._owners)
    # allocated, but the fd cannot be written back: the caller never learns it, the buffer goes
    keep, addr = _read_only_alloc_arg(1 << 16)
    assert vfs.ioctl(heap, vfs.DMA_HEAP_IOCTL_ALLOC, addr) == -errno.EFAULT
    # sizes no pool holds
    for length in ((1 << 64) - 1, 1 << 62, 1 << 40):
        arg = (ctypes.c_uint64 * 3)(length, os.O_RDWR << 32, 0)
        assert vfs.ioctl(heap, vfs.DMA_HEAP_IOCTL_ALLOC, ctypes.addressof(arg)) == -errno.ENOMEM
    assert backing.pool_used() == before
    assert vfs._owners == owners
    assert vfs.close(heap) == 0
    del keep


def test_vfs_close_during_an_ioctl_releases_the_file_after_it(monkeypatch):
    """The kernel holds a file across an ioctl: a close of its last fd meanwhile releases it
    when the ioctl returns, not under it."""
    class Slow:
        def __init__(self):
            self.entered, self.go = threading.Event(), threading.Event()
            self.closed_during_ioctl = None
            self.closed = False

        def ioctl(self, request, arg):
            self.entered.set()
            assert self.go.wait(10)
            self.closed_during_ioctl = self.closed
            return 0

        def close(self):
            self.closed = True

    f, key = Slow(), 10**9
    monkeypatch.setitem(vfs._files, key, f)
    result = []
    t = threading.Thread(target=lambda: result.append(vfs.ioctl(key, 0, 0)))
    t.start()
    assert f.entered.wait(10)
    assert vfs.close(key) == 0
    assert not f.closed
    assert vfs.ioctl(key, 0, 0) == -errno.EBADF  # the fd is gone for new calls
    f.go.set()
    t.join(10)
    assert result == [0] and f.closed_during_ioctl is False and f.closed
    assert key not in vfs._in_flight and key not in vfs._closing


def test_vfs_device_calls_never_fail_on_the_tree(fresh_default_soc, tmp_path, monkeypatch):
    """The /dev/accel tree is a view: a filesystem that refuses it (here its root is under a
    regular file) fails neither an open nor an ioctl after an SSR, and vfs.tree says so."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(vfs, "_tree", None)
    monkeypatch.setattr(vfs, "_tree_nodes", ())
    assert vfs.tree(str(blocker / "tree")) == -errno.EIO
    assert vfs._tree is None
    monkeypatch.setattr(vfs, "_tree", str(blocker / "tree"))
    fresh_default_soc.restart("cdsp")  # the accel node moves: the tree would change
    key = vfs.open(fresh_default_soc.legacy_nodes()[0], os.O_RDONLY)
    assert key > 0
    assert vfs.ioctl(key, 0xC0FF52FF, 0) == -errno.ENOTTY
    assert vfs.close(key) == 0
