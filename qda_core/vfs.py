"""The emulated device nodes as paths and fds of a process: what the LD_PRELOAD device shim
(``libqdarpc_shim.so``, docs/shim.md) serves to C code that opens ``/dev/...`` itself.

The shim owns these paths while it is loaded, whatever the host has there:

- ``/dev/fastrpc-<dom>[-secure]`` and ``/dev/accel/accelN``: the emulated drivers' nodes of the
  SoC (``QDARPC_SOC``), by the SoC's node policy;
- ``/dev/dma_heap/system``: the dma-buf heap; ``DMA_HEAP_IOCTL_ALLOC`` returns a real fd on
  a sealed memfd charged to the emulated DMA pool, which both drivers accept by reference;
- ``/dev/accel`` (a directory listing) and ``/sys/class/accel/accelN/dev``.

The C side keeps the process's fds (real memfds, so ``fstat``/``poll``/``fcntl``/``dup``
behave) and calls :func:`open`, :func:`ioctl`, :func:`close` and :func:`mmap_source` here
with a *key* per open file description; ioctl arguments are the caller's raw addresses, which
the drivers read and write with their checked user copies. Every function returns an int:
``>= 0`` or ``-errno``, as the kernel does; nothing raises.
"""
from __future__ import annotations

import builtins
import errno
import itertools
import os
import shutil
import struct
import threading
import weakref

from . import soc as _soc
from . import trace as _trace
from .mem import backing as _backing
from .uaccess import copy_from_user, copy_to_user

__all__ = ["DMA_HEAP", "DMA_HEAP_IOCTL_ALLOC", "ACCEL_MAJOR", "MISC_MAJOR", "nodes", "open", "ioctl",
           "close", "mmap_source", "stat_node", "claim_heap_fd", "tree"]

DMA_HEAP = "/dev/dma_heap/system"
#: ``DMA_HEAP_IOCTL_ALLOC``: ``_IOWR('H', 0x0, struct dma_heap_allocation_data)`` (include/uapi/
#: linux/dma-heap.h): ``{u64 len; u32 fd; u32 fd_flags; u64 heap_flags}``.
DMA_HEAP_IOCTL_ALLOC = 0xC0184800
_HEAP_ALLOC = struct.Struct("<QIIQ")
#: Character-device majors: the accel subsystem's (ACCEL_MAJOR, include/drm/drm_accel.h) and
#: misc's, which the FastRPC char driver registers under; misc minors are dynamic (we number
#: them from 64 in node order), the dma-heap's class device gets a dynamic major (we use 250).
ACCEL_MAJOR = 261
MISC_MAJOR = 10
DMA_HEAP_MAJOR = 250

_lock = threading.Lock()
_files: dict[int, object] = {}      # key -> driver file (or _Heap)
_heap_buffers: dict[int, object] = {}  # key -> Backing of a heap allocation, until its last fd closes
_keys = itertools.count(1)
#: key -> ioctls in flight on it; a file whose last fd is closed meanwhile is released when the
#: last of them returns (as the kernel holds a file reference across an ioctl).
_in_flight: dict[int, int] = {}
_closing: dict[int, object] = {}    # key -> file closed during an ioctl, released after it


class _Heap:
    """An open ``/dev/dma_heap/system``."""

    def close(self) -> None:
        pass


def _soc_now():
    return _soc.default_soc()


_tree: str | None = None          # the real directory tree behind /dev/accel and /sys/class/accel
_tree_nodes: tuple[str, ...] = ()
_tree_seen: tuple = (None, -1)  # (a weak reference to the SoC, soc.NODES_GENERATION) of _tree_nodes


def tree(root: str) -> int:
    """Keep the directories the shim serves from under ``root`` (which it created, and removes
    after the process is gone): ``dev/accel`` with an entry per accel node,
    ``sys/class/accel/accelN/dev`` (``major:minor``). Kept in step with the SoC (an SSR moves a
    node to a new minor: an inotify watch on the directory sees it)."""
    global _tree
    with _lock:
        _tree = root
    if not _sync_tree():
        with _lock:
            _tree = None
        return -errno.EIO
    return 0


def _sync_tree() -> bool:
    """Bring the tree up to date with the SoC; False if the filesystem refused (the tree is
    then left as it was, and tried again next time: keeping it never fails a device call)."""
    global _tree_nodes, _tree_seen
    root = _tree
    if root is None:
        return True
    # (every ioctl asks: the SoC and its re-probes' count first, the paths only when they moved)
    ref, seen_gen = _tree_seen
    if ref is not None and seen_gen == _soc.NODES_GENERATION:
        seen = ref()
        if seen is not None and seen is _soc._default:
            return True
    gen = _soc.NODES_GENERATION  # (read first: a re-probe meanwhile is seen next time)
    s = _soc_now()
    now = tuple(d.accel.path for d in s.domains.values())
    with _lock:
        if now == _tree_nodes:
            _tree_seen = (weakref.ref(s), gen)
            return True
        old, _tree_nodes = _tree_nodes, now
    try:
        _write_tree(root, s, old, now)
    except OSError:
        with _lock:
            if _tree_nodes == now:
                _tree_nodes = old
        return False
    with _lock:
        if _tree_nodes == now:
            _tree_seen = (weakref.ref(s), gen)
    return True


def _write_tree(root: str, s, old: tuple[str, ...], now: tuple[str, ...]) -> None:
    devdir = os.path.join(root, "dev", "accel")
    sysdir = os.path.join(root, "sys", "class", "accel")
    os.makedirs(devdir, exist_ok=True)
    os.makedirs(sysdir, exist_ok=True)
    for path in set(old) - set(now):
        name = os.path.basename(path)
        with _quiet():
            os.unlink(os.path.join(devdir, name))
        shutil.rmtree(os.path.join(sysdir, name), ignore_errors=True)
    for d in s.domains.values():
        name = os.path.basename(d.accel.path)
        os.makedirs(os.path.join(sysdir, name), exist_ok=True)
        with builtins.open(os.path.join(sysdir, name, "dev"), "w") as f:
            f.write(f"{ACCEL_MAJOR}:{d.accel.minor}\n")
        with builtins.open(os.path.join(devdir, name), "a"):
            pass


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def nodes() -> list[str]:
    """Every node path the shim serves now (changes after an SSR: a new accel minor)."""
    s = _soc_now()
    return [*s.legacy_nodes(), *s.accel_nodes(), DMA_HEAP]


def stat_node(path: str) -> int:
    """``(major << 20) | minor`` of a node path (a character device), or ``-ENOENT``."""
    s = _soc_now()
    if path == DMA_HEAP:
        return DMA_HEAP_MAJOR << 20
    for i, p in enumerate(s.legacy_nodes()):
        if p == path:
            return MISC_MAJOR << 20 | (64 + i)
    for d in s.domains.values():
        if d.accel.path == path:
            return ACCEL_MAJOR << 20 | d.accel.minor
    return -errno.ENOENT


def open(path: str, flags: int) -> int:  # noqa: A001 - the syscall's name
    """Open a node: a key for the new open file description, or ``-errno``. As the kernel for
    a character device: ``O_CREAT|O_EXCL`` is EEXIST and ``O_DIRECTORY`` ENOTDIR; ``O_PATH``
    opens no device (key 0: the shim keeps an fd that only fstat, dup and close work on)."""
    _sync_tree()
    if flags & (os.O_DIRECTORY | os.O_PATH) or flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL:
        if stat_node(path) < 0:
            return -errno.ENOENT
        if flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL:
            return -errno.EEXIST
        if flags & os.O_DIRECTORY:
            return -errno.ENOTDIR
        return 0  # O_PATH
    try:
        f = _Heap() if path == DMA_HEAP else _soc_now().open(path, flags)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    with _lock:
        key = next(_keys)
        _files[key] = f
    return key


def ioctl(key: int, request: int, arg: int) -> int:
    """The ioctl of an open node with the caller's raw argument address."""
    with _lock:
        f = _files.get(key)
        if f is not None:
            _in_flight[key] = _in_flight.get(key, 0) + 1
    if f is None:
        return _buffer_ioctl(key, request)
    try:
        if isinstance(f, _Heap):
            return _heap_ioctl(request, arg)
        return f.ioctl(request, arg)
    except OSError as exc:  # the drivers return -errno; this is only a safety net
        return -(exc.errno or errno.EIO)
    finally:
        with _lock:
            n = _in_flight[key] - 1
            if n:
                _in_flight[key] = n
                late = None
            else:
                del _in_flight[key]
                late = _closing.pop(key, None)
        if late is not None:
            _release(late)
        if not isinstance(f, _Heap):
            _sync_tree()  # an SSR during the call moved a node


def close(key: int) -> int:
    """The last fd of an open file description is closed (the shim counts dups). A file with
    an ioctl still running is released when that ioctl returns."""
    with _lock:
        f = _files.pop(key, None)
        buf = _heap_buffers.pop(key, None)
        if f is not None and _in_flight.get(key):
            _closing[key] = f
            return 0
    if buf is not None:
        buf.close()
        return 0
    if f is None:
        return -errno.EBADF
    return _release(f)


def _release(f) -> int:
    try:
        f.close()
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    return 0


def mmap_source(key: int, offset: int, length: int, prot: int) -> int:
    """``mmap`` of an accel node at a GEM fake offset: a new fd on the object's pages (the
    caller maps it at file offset 0 and closes it), or ``-errno``."""
    f = _files.get(key)
    if f is None or isinstance(f, _Heap) or not hasattr(f, "mmap_fd"):
        return -errno.ENODEV
    try:
        # Every check the driver's mmap makes, on the object it then dups (no second lookup of
        # the offset: after a GEM_CLOSE it may name another file's object).
        return f.mmap_fd(offset, length, prot)
    except OSError as exc:  # as mmap's; EMFILE
        return -(exc.errno or errno.EINVAL)


#: ``DMA_BUF_IOCTL_SYNC``: ``_IOW('b', 0, struct dma_buf_sync)`` (include/uapi/linux/dma-buf.h).
DMA_BUF_IOCTL_SYNC = 0x40086200


def _buffer_ioctl(key: int, request: int) -> int:
    """An ioctl on a heap dma-buf fd: CPU-access sync brackets succeed (memory is coherent
    here); anything else is not a dma-buf ioctl."""
    if key not in _heap_buffers:
        return -errno.EBADF
    return 0 if request == DMA_BUF_IOCTL_SYNC else -errno.ENOTTY


def _heap_ioctl(request: int, arg: int) -> int:
    if request != DMA_HEAP_IOCTL_ALLOC:
        return -errno.ENOTTY
    tr = _trace.RECORDER
    t0 = _trace.now() if tr is not None else 0
    raw = bytearray(_HEAP_ALLOC.size)
    try:
        copy_from_user(raw, arg, "DMA_HEAP_IOCTL_ALLOC")
    except OSError:
        return -errno.EFAULT
    length, _fd, fd_flags, heap_flags = _HEAP_ALLOC.unpack(raw)
    ret, fd = _heap_alloc(length, fd_flags, heap_flags)
    if ret == 0:
        try:
            copy_to_user(arg, _HEAP_ALLOC.pack(length, fd, fd_flags, heap_flags), "DMA_HEAP_IOCTL_ALLOC")
        except OSError:  # the caller never learns the fd: the buffer goes with it
            os.close(fd)
            close(_owners.pop(fd, 0))
            ret = -errno.EFAULT
    if tr is not None:
        tr.ioctl("dma_heap", DMA_HEAP, "DMA_HEAP_IOCTL_ALLOC", request & 0xFF,
                 {"len": length, "fd_flags": fd_flags}, ret, t0, _trace.now())
    return ret


def _heap_alloc(length: int, fd_flags: int, heap_flags: int) -> tuple[int, int]:
    """A dma-buf of ``length`` bytes: ``(0, fd)`` or ``(-errno, -1)`` (the heap's rules:
    EINVAL for length 0, unknown fd or heap flags; ENOMEM beyond the DMA pool)."""
    if length == 0 or heap_flags or fd_flags & ~(os.O_RDWR | os.O_WRONLY | os.O_CLOEXEC):
        return -errno.EINVAL, -1
    try:
        buf = _backing.Backing(length, name="dmabuf")
    except OSError as exc:
        return -(exc.errno or errno.ENOMEM), -1
    try:
        fd = buf.export_fd(writable=True, cloexec=bool(fd_flags & os.O_CLOEXEC))
    except OSError as exc:  # EMFILE: the buffer is not kept
        buf.close()
        return -(exc.errno or errno.ENOMEM), -1
    with _lock:
        key = next(_keys)
        _heap_buffers[key] = buf
    _owners[fd] = key
    return 0, fd


#: dma-buf fds just handed out by the heap -> their key; the shim claims them (see
#: :func:`claim_heap_fd`) so their last close releases the buffer.
_owners: dict[int, int] = {}


def claim_heap_fd(fd: int) -> int:
    """The key of a heap buffer whose fd was just returned by ``DMA_HEAP_IOCTL_ALLOC`` (the
    shim tracks its dups and calls :func:`close` with it at the last close), else 0."""
    return _owners.pop(fd, 0)


#: A forked child's view of its parent's files: kept referenced (so nothing in them is closed or
#: collected in the child), never used.
_inherited: list = []


def _after_fork_in_child() -> None:
    """fork(): the child's device fds are plain memfds to its fresh emulator (the shim forgets
    them in the child too); the parent's files stay the parent's, and the child makes its own
    /dev/accel tree when it needs one."""
    global _tree, _tree_nodes, _tree_seen
    _lock._at_fork_reinit()
    _inherited.append((dict(_files), dict(_heap_buffers), dict(_closing)))
    for table in (_files, _heap_buffers, _closing, _in_flight, _owners):
        table.clear()
    _tree, _tree_nodes, _tree_seen = None, (), (None, -1)


os.register_at_fork(after_in_child=_after_fork_in_child)
