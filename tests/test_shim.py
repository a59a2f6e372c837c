"""The LD_PRELOAD device shim (docs/shim.md): a C program's own opens and ioctls of the device
nodes reach the emulated drivers; everything else in the process is untouched."""
from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import time

import pytest

from qda_core import uapi, vfs
from qda_core.soc import Soc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import compile_c, needs_c_abi  # noqa: E402


@pytest.fixture(scope="module")
def nodes_prog(tmp_path_factory):
    return compile_c("shim/nodes.c", tmp_path_factory.mktemp("shim") / "nodes", link_abi=False)


def _shim_run(argv, *, timeout=60, **env):
    from libadsprpc_compat import native

    base = {k: v for k, v in os.environ.items() if not k.startswith(("QDARPC_", "LD_PRELOAD"))}
    e = native.run_env(base, with_shim=True)
    e.update({k: str(v) for k, v in env.items()})
    return subprocess.run([str(a) for a in argv], env=e, capture_output=True, text=True, timeout=timeout)


class TestInAProcess:
    pytestmark = needs_c_abi

    def test_the_process_sees_the_nodes_of_the_soc(self, nodes_prog):
        res = _shim_run([nodes_prog])
        assert res.returncode == 0, res.stderr
        got = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
        expected = {
            "open_legacy": "1", "fstat_chr": "1", "fstat_major": str(vfs.MISC_MAJOR),
            "get_dsp_info": "0", "get_dsp_info_cap_written": "1",
            "bad_ioctl": "-1", "bad_ioctl_errno": str(errno.ENOTTY),
            # handle 1 (the kernel's INIT handle) from user space: EPERM, as the legacy driver says
            "invoke_handle1_without_pd": "-1", "invoke_handle1_errno": str(errno.EPERM),
            "dup_survives_close": "0", "fcntl_dupfd_works": "0",
            "closed_fd_ioctl": "-1", "closed_fd_errno": str(errno.EBADF),
            "stat_accel1": "1", "stat_accel1_major": str(vfs.ACCEL_MAJOR), "stat_accel1_minor": "1",
            "access_missing_node": "1", "accel_entries": str(len(Soc().accel_nodes())),
            "sysfs_dev_read": "1", "sysfs_dev": f"{vfs.ACCEL_MAJOR}:1",
            "heap_alloc": "0", "heap_fd_valid": "1", "heap_mmap": "1",
            "heap_alloc_zero": "-1", "heap_alloc_zero_errno": str(errno.EINVAL),
            "gem_create": "0", "gem_mmap_offset": "0", "gem_mmap": "1", "gem_mmap_rw": "1",
            "gem_mmap_bad_offset": "1",
            "other_path_untouched": "1", "other_fd_ioctl_enotty": "1",
        }
        assert {k: got.get(k) for k in expected} == expected
        assert res.stdout.endswith("done\n")

    def test_the_c_program_uses_the_numbers_of_the_uapi(self):
        """tests/c/shim/nodes.c writes the ioctl numbers out; they are the emulator's."""
        src = (pathlib.Path(__file__).parent / "c" / "shim" / "nodes.c").read_text()
        for number in (uapi.DRM_IOCTL_QDA_GEM_CREATE, uapi.DRM_IOCTL_QDA_GEM_MMAP_OFFSET, vfs.DMA_HEAP_IOCTL_ALLOC,
                       uapi.FASTRPC_IOCTL_GET_DSP_INFO, uapi.FASTRPC_IOCTL_INVOKE):
            assert f"{number:#x}" in src

    def test_debug_output_names_every_intercepted_call(self, nodes_prog):
        res = _shim_run([nodes_prog], QDARPC_SHIM_DEBUG=1)
        assert res.returncode == 0
        assert "qdarpc-shim: open(/dev/fastrpc-cdsp-secure" in res.stderr
        assert "qdarpc-shim: ioctl(" in res.stderr
        assert "qdarpc-shim: opendir(/dev/accel)" in res.stderr
        # every node fd opened was released by the end (no leaked emulated file)
        opened = res.stderr.count(" (key ")
        assert opened == res.stderr.count("qdarpc-shim: release key"), res.stderr

    def test_a_program_that_touches_no_node_never_starts_python(self, tmp_path):
        """A shell started under the shim pays one prefix compare per open, not an interpreter."""
        t0 = time.perf_counter()
        res = _shim_run(["/bin/sh", "-c", "cat /proc/self/maps"], QDARPC_SHIM_DEBUG=1, TMPDIR=tmp_path)
        elapsed = time.perf_counter() - t0
        assert res.returncode == 0
        assert "libqdarpc_shim.so" in res.stdout  # it was loaded
        assert "libpython" not in res.stdout      # ... and nothing more
        assert res.stderr == "" and list(tmp_path.iterdir()) == []
        assert elapsed < 30  # sanity only: the figure is in the benchmark, not here

    def test_trace_covers_shim_runs(self, nodes_prog, tmp_path):
        trace = tmp_path / "t.jsonl"
        res = _shim_run([nodes_prog], QDARPC_TRACE=trace)
        assert res.returncode == 0
        import json

        names = [json.loads(line)["name"] for line in trace.read_text().splitlines()
                 if json.loads(line)["kind"] == "ioctl"]
        assert "FASTRPC_IOCTL_GET_DSP_INFO" in names and "DMA_HEAP_IOCTL_ALLOC" in names
        assert "DRM_IOCTL_QDA_GEM_CREATE" in names


    def test_ab_exec_shim_runs_one_program_per_side(self, nodes_prog):
        """qdarpc ab --exec --shim -- A ::: B: two builds of one source, compared (here the same
        program twice, so everything agrees)."""
        import json

        from libadsprpc_compat import native

        qdarpc = pathlib.Path(sys.executable).parent / "qdarpc"
        env = native.sanitizer_preload({k: v for k, v in os.environ.items()
                                        if not k.startswith(("QDARPC_", "LD_PRELOAD"))})
        native.libdir()  # built
        res = subprocess.run([str(qdarpc), "ab", "--exec", "--shim", "--json", "--", str(nodes_prog), ":::",
                              str(nodes_prog)], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        rep = json.loads(res.stdout)
        assert rep["agree"] and rep["separate_dsps"]
        assert rep["runs"]["legacy"]["totals"]["ioctls"] == rep["runs"]["accel"]["totals"]["ioctls"] > 5

# -- qda_core.vfs, the Python side, in this process ----------------------------------------------
@pytest.fixture
def fresh_default_soc():
    from qda_core import soc as soc_mod

    soc_mod.reset_default()
    yield soc_mod.default_soc()
    soc_mod.reset_default()


def test_vfs_opens_ioctls_and_closes_like_the_kernel(fresh_default_soc):
    assert vfs.open("/dev/fastrpc-nosuch", os.O_RDONLY) == -errno.ENOENT
    key = vfs.open("/dev/fastrpc-cdsp-secure", os.O_RDONLY)
    assert key > 0
    assert vfs.ioctl(key, 0xC0FF52FF, 0) == -errno.ENOTTY
    assert vfs.ioctl(key + 1000, 0, 0) == -errno.EBADF
    assert vfs.close(key) == 0
    assert vfs.close(key) == -errno.EBADF
    assert vfs.stat_node("/dev/nope") == -errno.ENOENT
    assert vfs.stat_node(vfs.DMA_HEAP) >> 20 == vfs.DMA_HEAP_MAJOR


def test_vfs_heap_buffers_are_sealed_dma_bufs_released_at_last_close(fresh_default_soc):
    import ctypes
    import fcntl

    from qda_core.mem import backing

    heap = vfs.open(vfs.DMA_HEAP, os.O_RDONLY)
    arg = (ctypes.c_uint64 * 3)(1 << 16, (os.O_RDWR | os.O_CLOEXEC) << 32, 0)
    before = backing.pool_used()
    assert vfs.ioctl(heap, vfs.DMA_HEAP_IOCTL_ALLOC, ctypes.addressof(arg)) == 0
    fd = arg[1] & 0xFFFF_FFFF
    assert backing.pool_used() == before + (1 << 16)
    assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
    key = vfs.claim_heap_fd(fd)
    assert key and vfs.claim_heap_fd(fd) == 0
    assert vfs.ioctl(key, vfs.DMA_BUF_IOCTL_SYNC, 0) == 0
    os.close(fd)
    assert vfs.close(key) == 0
    assert backing.pool_used() == before
    # bad heap requests
    assert vfs.ioctl(heap, vfs.DMA_HEAP_IOCTL_ALLOC, 8) == -errno.EFAULT
    assert vfs.ioctl(heap, 0x1234, ctypes.addressof(arg)) == -errno.ENOTTY
    arg[0], arg[2] = 4096, 1  # heap_flags must be 0
    assert vfs.ioctl(heap, vfs.DMA_HEAP_IOCTL_ALLOC, ctypes.addressof(arg)) == -errno.EINVAL
    assert vfs.close(heap) == 0


def _listing(root):
    return sorted(p.name for p in (root / "dev" / "accel").iterdir())


def _inotify(path):
    """An inotify fd watching ``path`` for entries created and deleted (libc through ctypes)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    assert libc.inotify_add_watch(fd, str(path).encode(), 0x100 | 0x200) >= 0  # IN_CREATE | IN_DELETE
    return fd


def test_vfs_tree_follows_an_ssr(fresh_default_soc, tmp_path, monkeypatch):
    """An SSR moves the accel node to a new minor: the directory behind /dev/accel changes, and
    an inotify watch on it (as the accel library keeps) sees the change."""
    monkeypatch.setattr(vfs, "_tree", None)
    monkeypatch.setattr(vfs, "_tree_nodes", ())
    soc = fresh_default_soc
    assert vfs.tree(str(tmp_path)) == 0
    watch = _inotify(tmp_path / "dev" / "accel")
    before = _listing(tmp_path)
    assert before == sorted(os.path.basename(p) for p in soc.accel_nodes())
    new = soc.restart("cdsp")
    key = vfs.open(soc.legacy_nodes()[0], os.O_RDONLY)  # any vfs call brings the tree up to date
    vfs.close(key)
    after = _listing(tmp_path)
    assert os.path.basename(new) in after and after != before
    try:
        events = os.read(watch, 4096)
    finally:
        os.close(watch)
    assert os.path.basename(new).encode() in events
    dev = (tmp_path / "sys" / "class" / "accel" / os.path.basename(new) / "dev").read_text()
    assert dev == f"{vfs.ACCEL_MAJOR}:{soc.domain('cdsp').accel.minor}\n"


def test_split_programs():
    from cli_helpers import load

    split_programs, CliError = load("native").split_programs, load("errors").CliError

    order = ["legacy", "accel"]
    assert split_programs(["a", "1"], order) == {"legacy": ["a", "1"], "accel": ["a", "1"]}
    assert split_programs(["a", "1", ":::", "b"], order) == {"legacy": ["a", "1"], "accel": ["b"]}
    for bad in (["a", ":::"], [":::", "b"], ["a", ":::", "b", ":::", "c"]):
        with pytest.raises(CliError):
            split_programs(bad, order)


def test_run_env_puts_the_shim_first_after_any_sanitizer_runtime():
    """ASan aborts a program whose preload list does not start with its runtime (tox -e asan)."""
    from libadsprpc_compat import native

    try:
        shim = str(native.shim())
    except native.NotBuiltError:
        pytest.skip("the device shim is not built")
    mine = native._loaded_runtimes()  # this process's own sanitizer runtimes (tox -e asan), passed on
    assert native.run_env({}, with_shim=True)["LD_PRELOAD"].split() == [*mine, shim]
    got = native.run_env({"LD_PRELOAD": "/lib/libasan.so.8 /opt/libfoo.so:/lib/libubsan.so.1"},
                         with_shim=True)["LD_PRELOAD"].split()
    assert got == ["/lib/libasan.so.8", "/lib/libubsan.so.1", *mine, shim, "/opt/libfoo.so"]
