"""Single source of truth for the ioctl numbers and struct layouts of both emulated drivers.

Which kernel revision each driver follows is chosen per SoC (:mod:`qda_core.kernels`, the one
table of revisions); :data:`REVISION` is a read-only view of the revisions in force for the
process (``$QDARPC_KERNEL`` or the defaults). Each revision's tables are here:

* QDA accel driver, :data:`ACCEL_UAPI` (revision name -> :class:`AccelUapi`):

  - ``qda-rfc-2026-02``: the kernel RFC "[PATCH RFC 00/18] accel/qda" of 2026-02-24 (the
    **RFC** tag of docs/spec/qda_accel_uapi.md; module-level names without a suffix). Where the
    ``accel/staging`` user library ("LIB" below: the ``accel/staging`` branch of qualcomm/fastrpc
    at 759d6f8) disagrees, the kernel RFC layout is what the emulated driver implements;
    :data:`LIB_DIFFERENCES` lists every difference and how the emulator treats it.
  - ``qda-v1-2026-05``: "[PATCH 00/15]" of 2026-05-19 (docs/spec/kernel_revisions_2026.md §2.1):
    ``*_V1`` numbers, ``drm_qda_*`` layouts; :data:`LIB_DIFFERENCES_V1` says how LIB fares on it.
* Legacy driver: upstream ``include/uapi/misc/fastrpc.h`` / ``drivers/misc/fastrpc.c``
  (magic 'R'); the later revisions' tables follow its definitions below.

Layouts are declared as (field, C type) lists; offsets follow the C rules for natural alignment,
so a test can check every offset and size against the spec tables
(docs/spec/qda_accel_uapi.md §2.3, docs/spec/legacy_fastrpc_api.md §7.1,
docs/spec/kernel_revisions_2026.md §2.1 and §5).
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator

from . import kernels, wire


class _RevisionView(Mapping):
    """front end -> ``"frontend:name (title)"`` of the revision in force for the process
    (``$QDARPC_KERNEL``, else :data:`qda_core.kernels.DEFAULT`), read from the kernels table
    each time. A SoC's own choice is ``Soc.kernel``."""

    def __getitem__(self, front: str) -> str:
        try:
            rev = kernels.parse_kernel(None)[front]
        except kernels.KernelError as exc:
            return f"(invalid ${kernels.ENV}: {exc})"
        return f"{rev} ({rev.title})"

    def __iter__(self) -> Iterator[str]:
        return iter(kernels.FRONTENDS)

    def __len__(self) -> int:
        return len(kernels.FRONTENDS)


REVISION: Mapping[str, str] = _RevisionView()

# --- ioctl number encoding (include/uapi/asm-generic/ioctl.h) ------------------------------
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


def IOC_DIR(req: int) -> int:
    return (req >> 30) & 3


def IOC_TYPE(req: int) -> int:
    return (req >> 8) & 0xFF


def IOC_NR(req: int) -> int:
    return req & 0xFF


def IOC_SIZE(req: int) -> int:
    return (req >> 16) & 0x3FFF


# --- struct layouts -------------------------------------------------------------------------
_CTYPES = {"u8": ("B", 1), "u32": ("I", 4), "s32": ("i", 4), "u64": ("Q", 8)}


class Layout:
    """A C struct with natural alignment, as a compiler lays it out on LP64."""

    def __init__(self, name: str, fields: list[tuple[str, str]]):
        self.name = name
        self.fields: dict[str, tuple[int, str, int]] = {}  # name -> (offset, ctype, count)
        fmt, off, align = "<", 0, 1
        for fname, ctype in fields:
            base, _, count = ctype.partition("[")
            n = int(count.rstrip("]")) if count else 1
            code, size = _CTYPES[base]
            pad = -off % size
            if pad:
                fmt += f"{pad}x"
                off += pad
            self.fields[fname] = (off, ctype, n)
            fmt += f"{n}s" if base == "u8" else (code * n)
            off += size * n
            align = max(align, size)
        tail = -off % align
        if tail:
            fmt += f"{tail}x"
            off += tail
        self.size = off
        self._struct = struct.Struct(fmt)
        self._names = [f for f, _ in fields]
        self._counts = [self.fields[f][2] if not self.fields[f][1].startswith("u8") else 1 for f in self._names]

    def offset(self, field: str) -> int:
        return self.fields[field][0]

    def pack(self, **values: Any) -> bytearray:
        """Bytes of the struct; unnamed fields are zero."""
        flat: list[Any] = []
        for fname, n in zip(self._names, self._counts):
            v = values.get(fname, b"" if self.fields[fname][1].startswith("u8") else 0)
            if n > 1:
                flat.extend(v if isinstance(v, (list, tuple)) else [v] * n)
            else:
                flat.append(v)
        return bytearray(self._struct.pack(*flat))

    def unpack(self, buf) -> dict[str, Any]:
        raw = self._struct.unpack_from(buf)
        out, i = {}, 0
        for fname, n in zip(self._names, self._counts):
            out[fname] = raw[i] if n == 1 else tuple(raw[i:i + n])
            i += n
        return out

    def values(self, buf) -> tuple:
        """The fields in declaration order as a plain tuple (no dict): for hot paths."""
        return self._struct.unpack_from(buf)

    def get(self, buf, field: str) -> Any:
        off, ctype, n = self.fields[field]
        base = ctype.partition("[")[0]
        if base == "u8":
            return bytes(buf[off:off + n])
        return struct.unpack_from("<" + _CTYPES[base][0], buf, off)[0]

    def set(self, buf, field: str, value: Any) -> None:
        off, ctype, n = self.fields[field]
        base = ctype.partition("[")[0]
        if base == "u8":
            data = bytes(value)[:n]
            buf[off:off + n] = data.ljust(n, b"\0")
        else:
            struct.pack_into("<" + _CTYPES[base][0], buf, off, value)

    def __repr__(self) -> str:
        return f"<Layout {self.name} size={self.size}>"


@dataclass(frozen=True)
class Ioctl:
    """One ioctl: its name, number and argument layout (None for DRM_IO/_IO)."""

    name: str
    number: int
    layout: Layout | None

    @property
    def nr(self) -> int:
        return IOC_NR(self.number)


# --- QDA accel driver (include/uapi/drm/qda_accel.h, RFC) ---------------------------------
DRM_IOCTL_BASE = ord("d")
DRM_COMMAND_BASE = 0x40

drm_qda_query = Layout("drm_qda_query", [("dsp_name", "u8[16]")])
drm_qda_gem_create = Layout("drm_qda_gem_create", [("handle", "u32"), ("pad", "u32"), ("size", "u64")])
drm_qda_gem_mmap_offset = Layout("drm_qda_gem_mmap_offset", [("handle", "u32"), ("pad", "u32"), ("offset", "u64")])
qda_init_create = Layout("qda_init_create", [
    ("filelen", "u32"), ("filefd", "s32"), ("attrs", "u32"), ("siglen", "u32"), ("file", "u64")])
qda_mem_map = Layout("qda_mem_map", [
    ("request", "u32"), ("flags", "u32"), ("fd", "s32"), ("attrs", "u32"), ("offset", "u32"),
    ("reserved", "u32"), ("vaddrin", "u64"), ("size", "u64"), ("vaddrout", "u64")])
qda_mem_unmap = Layout("qda_mem_unmap", [
    ("request", "u32"), ("fd", "s32"), ("vaddr", "u64"), ("vaddrout", "u64"), ("size", "u64")])
qda_invoke_args = Layout("qda_invoke_args", [("handle", "u32"), ("sc", "u32"), ("args", "u64")])
fastrpc_invoke_args = Layout("fastrpc_invoke_args", [
    ("ptr", "u64"), ("length", "u64"), ("fd", "s32"), ("attr", "u32")])
drm_gem_close = Layout("drm_gem_close", [("handle", "u32"), ("pad", "u32")])
drm_prime_handle = Layout("drm_prime_handle", [("handle", "u32"), ("flags", "u32"), ("fd", "s32")])

QDA_MAP_REQUEST_LEGACY = 1
QDA_MAP_REQUEST_ATTR = 2
DRM_CLOEXEC = 0o2000000  # O_CLOEXEC
DRM_RDWR = 0o2           # O_RDWR
INIT_FILELEN_MAX = 4 << 20
INIT_MEM_SIZE = 4 << 20


def _drm(direction: int, nr: int, layout: Layout | None) -> int:
    return IOC(direction, DRM_IOCTL_BASE, nr, layout.size if layout else 0)


_RW = IOC_READ | IOC_WRITE
DRM_IOCTL_QDA_QUERY = _drm(IOC_READ, DRM_COMMAND_BASE + 0x00, drm_qda_query)
DRM_IOCTL_QDA_GEM_CREATE = _drm(_RW, DRM_COMMAND_BASE + 0x01, drm_qda_gem_create)
DRM_IOCTL_QDA_GEM_MMAP_OFFSET = _drm(_RW, DRM_COMMAND_BASE + 0x02, drm_qda_gem_mmap_offset)
DRM_IOCTL_QDA_INIT_ATTACH = _drm(IOC_NONE, DRM_COMMAND_BASE + 0x03, None)
DRM_IOCTL_QDA_INIT_CREATE = _drm(_RW, DRM_COMMAND_BASE + 0x04, qda_init_create)
DRM_IOCTL_QDA_MAP = _drm(_RW, DRM_COMMAND_BASE + 0x05, qda_mem_map)
DRM_IOCTL_QDA_MUNMAP = _drm(_RW, DRM_COMMAND_BASE + 0x06, qda_mem_unmap)
DRM_IOCTL_QDA_INVOKE = _drm(_RW, DRM_COMMAND_BASE + 0x07, qda_invoke_args)
DRM_IOCTL_GEM_CLOSE = _drm(IOC_WRITE, 0x09, drm_gem_close)
DRM_IOCTL_PRIME_HANDLE_TO_FD = _drm(_RW, 0x2D, drm_prime_handle)
DRM_IOCTL_PRIME_FD_TO_HANDLE = _drm(_RW, 0x2E, drm_prime_handle)

ACCEL_IOCTLS = {i.nr: i for i in (
    Ioctl("DRM_IOCTL_QDA_QUERY", DRM_IOCTL_QDA_QUERY, drm_qda_query),
    Ioctl("DRM_IOCTL_QDA_GEM_CREATE", DRM_IOCTL_QDA_GEM_CREATE, drm_qda_gem_create),
    Ioctl("DRM_IOCTL_QDA_GEM_MMAP_OFFSET", DRM_IOCTL_QDA_GEM_MMAP_OFFSET, drm_qda_gem_mmap_offset),
    Ioctl("DRM_IOCTL_QDA_INIT_ATTACH", DRM_IOCTL_QDA_INIT_ATTACH, None),
    Ioctl("DRM_IOCTL_QDA_INIT_CREATE", DRM_IOCTL_QDA_INIT_CREATE, qda_init_create),
    Ioctl("DRM_IOCTL_QDA_MAP", DRM_IOCTL_QDA_MAP, qda_mem_map),
    Ioctl("DRM_IOCTL_QDA_MUNMAP", DRM_IOCTL_QDA_MUNMAP, qda_mem_unmap),
    Ioctl("DRM_IOCTL_QDA_INVOKE", DRM_IOCTL_QDA_INVOKE, qda_invoke_args),
    Ioctl("DRM_IOCTL_GEM_CLOSE", DRM_IOCTL_GEM_CLOSE, drm_gem_close),
    Ioctl("DRM_IOCTL_PRIME_HANDLE_TO_FD", DRM_IOCTL_PRIME_HANDLE_TO_FD, drm_prime_handle),
    Ioctl("DRM_IOCTL_PRIME_FD_TO_HANDLE", DRM_IOCTL_PRIME_FD_TO_HANDLE, drm_prime_handle),
)}


# --- QDA accel v1 (docs/spec/kernel_revisions_2026.md §2.1: [PATCH 00/15] of 2026-05-19) ------
# GEM_CREATE and MMAP_OFFSET are size/offset first; MAP's `reserved` is a checked `pad`; the
# FastRPC ioctls are renamed REMOTE_*; nr 0x03 (INIT_ATTACH) is a hole. Same numbers otherwise.
drm_qda_gem_create_v1 = Layout("drm_qda_gem_create", [("size", "u64"), ("handle", "u32"), ("pad", "u32")])
drm_qda_gem_mmap_offset_v1 = Layout("drm_qda_gem_mmap_offset", [("offset", "u64"), ("handle", "u32"), ("pad", "u32")])
drm_qda_init_create = Layout("drm_qda_init_create", [
    ("filelen", "u32"), ("filefd", "s32"), ("attrs", "u32"), ("siglen", "u32"), ("file", "u64")])
drm_qda_mem_map = Layout("drm_qda_mem_map", [
    ("request", "u32"), ("flags", "u32"), ("fd", "s32"), ("attrs", "u32"), ("offset", "u32"),
    ("pad", "u32"), ("vaddrin", "u64"), ("size", "u64"), ("vaddrout", "u64")])
drm_qda_mem_unmap = Layout("drm_qda_mem_unmap", [
    ("request", "u32"), ("fd", "s32"), ("vaddr", "u64"), ("vaddrout", "u64"), ("size", "u64")])
drm_qda_invoke_args = Layout("drm_qda_invoke_args", [("handle", "u32"), ("sc", "u32"), ("args", "u64")])
drm_qda_fastrpc_invoke_args = Layout("drm_qda_fastrpc_invoke_args", [
    ("ptr", "u64"), ("length", "u64"), ("fd", "s32"), ("attr", "u32")])

QDA_MUNMAP_REQUEST_LEGACY = 1
QDA_MUNMAP_REQUEST_ATTR = 2

DRM_IOCTL_QDA_GEM_CREATE_V1 = _drm(_RW, DRM_COMMAND_BASE + 0x01, drm_qda_gem_create_v1)
DRM_IOCTL_QDA_GEM_MMAP_OFFSET_V1 = _drm(_RW, DRM_COMMAND_BASE + 0x02, drm_qda_gem_mmap_offset_v1)
DRM_IOCTL_QDA_REMOTE_SESSION_CREATE = _drm(_RW, DRM_COMMAND_BASE + 0x04, drm_qda_init_create)
DRM_IOCTL_QDA_REMOTE_MAP = _drm(_RW, DRM_COMMAND_BASE + 0x05, drm_qda_mem_map)
DRM_IOCTL_QDA_REMOTE_MUNMAP = _drm(_RW, DRM_COMMAND_BASE + 0x06, drm_qda_mem_unmap)
DRM_IOCTL_QDA_REMOTE_INVOKE = _drm(_RW, DRM_COMMAND_BASE + 0x07, drm_qda_invoke_args)

#: xa_alloc's 32-bit id range (XA_FLAGS_ALLOC1): the context ids a reply decoded as ``ctx >> 4``
#: can name.
XA_LIMIT_32B = 0xFFFF_FFFF


@dataclass(frozen=True)
class AccelUapi:
    """One accel revision's uapi, as data the one driver reads: the ioctl table ``drm_ioctl()``
    dispatches on (by nr), the layouts of the driver's structs, and the few behaviours that
    differ between revisions."""

    #: The revision's name in :data:`qda_core.kernels.REVISIONS` ``["accel"]``.
    revision: str
    #: nr -> Ioctl: what ``drm_ioctl()`` finds; a missing nr is a hole (EINVAL).
    ioctls: dict[int, Ioctl]
    gem_create: Layout
    gem_mmap_offset: Layout
    init_create: Layout
    mem_map: Layout
    mem_unmap: Layout
    invoke: Layout
    invoke_arg: Layout
    #: What every ``fd`` field names: ``"gem-handle"`` (a handle of the calling file, RFC) or
    #: ``"dma-buf"`` (a DMA-BUF fd, imported for the one call; v1). ``fd <= 0``: inline.
    fd_kind: str
    #: Layouts whose ``pad`` field must be zero (EINVAL otherwise).
    pad_checked: frozenset[str]
    #: GEM_MMAP_OFFSET refuses imported objects (``drm_gem_dumb_map_offset``: EINVAL).
    mmap_offset_refuses_imported: bool
    #: Bits of the reply's ctx word above the PD nibble that name the context: 8 (RFC:
    #: ``(ctx & 0xFF0) >> 4``) or 60 (v1: ``ctx >> 4``). The engine's ``CtxLayout.id_bits``.
    ctx_id_bits: int
    #: Most invoke context ids outstanding (the ids ``ctx_id_bits`` can tell apart).
    ctx_id_limit: int

    def reply_id(self, ctx: int) -> int:
        """The context id a reply's ctx word names."""
        return (ctx >> 4) & ((1 << self.ctx_id_bits) - 1)

    def by_name(self, name: str) -> Ioctl:
        """The ioctl called ``DRM_IOCTL_<name>`` in this revision (KeyError if it has none)."""
        for ioc in self.ioctls.values():
            if ioc.name == f"DRM_IOCTL_{name}":
                return ioc
        raise KeyError(f"{self.revision} has no DRM_IOCTL_{name}")


_CORE_IOCTLS = (
    Ioctl("DRM_IOCTL_GEM_CLOSE", DRM_IOCTL_GEM_CLOSE, drm_gem_close),
    Ioctl("DRM_IOCTL_PRIME_HANDLE_TO_FD", DRM_IOCTL_PRIME_HANDLE_TO_FD, drm_prime_handle),
    Ioctl("DRM_IOCTL_PRIME_FD_TO_HANDLE", DRM_IOCTL_PRIME_FD_TO_HANDLE, drm_prime_handle),
)

#: accel revision name -> its uapi. Keys are exactly ``kernels.REVISIONS["accel"]``.
ACCEL_UAPI: dict[str, AccelUapi] = {
    "qda-rfc-2026-02": AccelUapi(
        "qda-rfc-2026-02", ACCEL_IOCTLS, drm_qda_gem_create, drm_qda_gem_mmap_offset, qda_init_create,
        qda_mem_map, qda_mem_unmap, qda_invoke_args, fastrpc_invoke_args, fd_kind="gem-handle",
        pad_checked=frozenset(), mmap_offset_refuses_imported=False,
        # RFC 13's callback keeps 8 bits, so ids stop at 255 (qda_core.fastrpc.CTX_ID_LIMIT).
        ctx_id_bits=8, ctx_id_limit=255),
    "qda-v1-2026-05": AccelUapi(
        "qda-v1-2026-05",
        {i.nr: i for i in (
            Ioctl("DRM_IOCTL_QDA_QUERY", DRM_IOCTL_QDA_QUERY, drm_qda_query),
            Ioctl("DRM_IOCTL_QDA_GEM_CREATE", DRM_IOCTL_QDA_GEM_CREATE_V1, drm_qda_gem_create_v1),
            Ioctl("DRM_IOCTL_QDA_GEM_MMAP_OFFSET", DRM_IOCTL_QDA_GEM_MMAP_OFFSET_V1, drm_qda_gem_mmap_offset_v1),
            Ioctl("DRM_IOCTL_QDA_REMOTE_SESSION_CREATE", DRM_IOCTL_QDA_REMOTE_SESSION_CREATE, drm_qda_init_create),
            Ioctl("DRM_IOCTL_QDA_REMOTE_MAP", DRM_IOCTL_QDA_REMOTE_MAP, drm_qda_mem_map),
            Ioctl("DRM_IOCTL_QDA_REMOTE_MUNMAP", DRM_IOCTL_QDA_REMOTE_MUNMAP, drm_qda_mem_unmap),
            Ioctl("DRM_IOCTL_QDA_REMOTE_INVOKE", DRM_IOCTL_QDA_REMOTE_INVOKE, drm_qda_invoke_args),
            *_CORE_IOCTLS)},
        drm_qda_gem_create_v1, drm_qda_gem_mmap_offset_v1, drm_qda_init_create, drm_qda_mem_map,
        drm_qda_mem_unmap, drm_qda_invoke_args, drm_qda_fastrpc_invoke_args, fd_kind="dma-buf",
        pad_checked=frozenset({"drm_qda_gem_create", "drm_qda_gem_mmap_offset", "drm_qda_mem_map"}),
        mmap_offset_refuses_imported=True,
        ctx_id_bits=60, ctx_id_limit=XA_LIMIT_32B),
}

#: Where the accel/staging library (LIB 759d6f8) and the RFC kernel disagree. The emulated
#: driver follows the kernel column; the note says what a LIB-built caller observes.
LIB_DIFFERENCES = {
    "QUERY size": ("kernel 16 B (0x80106440)", "LIB 20 B with a trailing `capabilities` (0x80146440)",
                   "dispatch is by nr; the extra 4 bytes read back as 0"),
    "GEM_CREATE layout": ("kernel {u32 handle; u32 pad; u64 size}", "LIB {u64 size; u32 handle}",
                          "a LIB-layout caller has its size read as 0 -> EINVAL, as on the RFC"),
    "INVOKE command size": ("kernel 16 B (0xC0106447)", "LIB 24 B (0xC0186447)",
                            "dispatch is by nr; 8 extra bytes copied in and back out unchanged"),
    "INIT_CREATE filefd=-1": ("non-zero handle looked up -> EINVAL", "LIB passes -1 for static PDs",
                              "static PD creation through QDA fails with EINVAL"),
    "PRIME export flags": ("access follows DRM_RDWR", "LIB passes only O_CLOEXEC",
                           "LIB-style exports are read-only fds (mmap PROT_WRITE -> EACCES)"),
}

#: How the accel/staging library (LIB 759d6f8, which tracks the RFC) fares on the v1 kernel.
#: Found by running it through the device shim (tests/test_kernel_revisions.py): its own tests
#: pass, but a buffer rpcmem registers after the session is open goes by its GEM handle, which
#: v1 reads as a DMA-BUF fd. This is why the accel default stays the RFC (qda_core.kernels).
LIB_DIFFERENCES_V1 = {
    "GEM_CREATE layout": ("v1 {u64 size; u32 handle; u32 pad}", "LIB {u64 size; u32 handle}",
                          "the same bytes: LIB's GEM_CREATE works on v1 (it fails on the RFC)"),
    "GEM_MMAP_OFFSET layout": ("v1 {u64 offset; u32 handle; u32 pad}", "LIB {u32 handle; u32 pad; u64 offset}",
                               "v1 reads LIB's offset word as the handle (0) -> ENOENT"),
    "INIT_ATTACH": ("v1: nr 0x03 is a hole", "LIB calls it for root-PD sessions (daemons)",
                    "EINVAL, which LIB tolerates"),
    "fd fields": ("v1: DMA-BUF fds, imported per call", "LIB passes GEM handles of the session file",
                  "a registered rpcmem buffer's handle is read as an fd: EBADF/EINVAL (or another "
                  "open file); fastrpc_mmap of a dma-buf fd works on v1 (ENOENT on the RFC)"),
}

# --- legacy misc/fastrpc driver (include/uapi/misc/fastrpc.h) ------------------------------
FASTRPC_IOCTL_MAGIC = ord("R")

fastrpc_alloc_dma_buf = Layout("fastrpc_alloc_dma_buf", [("fd", "s32"), ("flags", "u32"), ("size", "u64")])
fastrpc_free_dma_buf = Layout("u32", [("value", "u32")])
fastrpc_invoke = Layout("fastrpc_invoke", [("handle", "u32"), ("sc", "u32"), ("args", "u64")])
fastrpc_init_create = Layout("fastrpc_init_create", [
    ("filelen", "u32"), ("filefd", "s32"), ("attrs", "u32"), ("siglen", "u32"), ("file", "u64")])
fastrpc_req_mmap = Layout("fastrpc_req_mmap", [
    ("fd", "s32"), ("flags", "u32"), ("vaddrin", "u64"), ("size", "u64"), ("vaddrout", "u64")])
fastrpc_req_munmap = Layout("fastrpc_req_munmap", [("vaddrout", "u64"), ("size", "u64")])
fastrpc_init_create_static = Layout("fastrpc_init_create_static", [
    ("namelen", "u32"), ("memlen", "u32"), ("name", "u64")])
fastrpc_mem_map = Layout("fastrpc_mem_map", [
    ("version", "s32"), ("fd", "s32"), ("offset", "s32"), ("flags", "u32"), ("vaddrin", "u64"),
    ("length", "u64"), ("vaddrout", "u64"), ("attrs", "s32"), ("reserved", "s32[4]")])
fastrpc_mem_unmap = Layout("fastrpc_mem_unmap", [
    ("vesion", "s32"), ("fd", "s32"), ("vaddr", "u64"), ("length", "u64"), ("reserved", "s32[5]")])
fastrpc_ioctl_capability = Layout("fastrpc_ioctl_capability", [
    ("domain", "u32"), ("attribute_id", "u32"), ("capability", "u32"), ("reserved", "u32[4]")])


def _r(direction: int, nr: int, layout: Layout | None) -> int:
    return IOC(direction, FASTRPC_IOCTL_MAGIC, nr, layout.size if layout else 0)


FASTRPC_IOCTL_ALLOC_DMA_BUFF = _r(_RW, 1, fastrpc_alloc_dma_buf)
FASTRPC_IOCTL_FREE_DMA_BUFF = _r(_RW, 2, fastrpc_free_dma_buf)
FASTRPC_IOCTL_INVOKE = _r(_RW, 3, fastrpc_invoke)
FASTRPC_IOCTL_INIT_ATTACH = _r(IOC_NONE, 4, None)
FASTRPC_IOCTL_INIT_CREATE = _r(_RW, 5, fastrpc_init_create)
FASTRPC_IOCTL_MMAP = _r(_RW, 6, fastrpc_req_mmap)
FASTRPC_IOCTL_MUNMAP = _r(_RW, 7, fastrpc_req_munmap)
FASTRPC_IOCTL_INIT_ATTACH_SNS = _r(IOC_NONE, 8, None)
FASTRPC_IOCTL_INIT_CREATE_STATIC = _r(_RW, 9, fastrpc_init_create_static)
FASTRPC_IOCTL_MEM_MAP = _r(_RW, 10, fastrpc_mem_map)
FASTRPC_IOCTL_MEM_UNMAP = _r(_RW, 11, fastrpc_mem_unmap)
FASTRPC_IOCTL_GET_DSP_INFO = _r(_RW, 13, fastrpc_ioctl_capability)

LEGACY_IOCTLS = {i.number: i for i in (
    Ioctl("FASTRPC_IOCTL_ALLOC_DMA_BUFF", FASTRPC_IOCTL_ALLOC_DMA_BUFF, fastrpc_alloc_dma_buf),
    Ioctl("FASTRPC_IOCTL_FREE_DMA_BUFF", FASTRPC_IOCTL_FREE_DMA_BUFF, fastrpc_free_dma_buf),
    Ioctl("FASTRPC_IOCTL_INVOKE", FASTRPC_IOCTL_INVOKE, fastrpc_invoke),
    Ioctl("FASTRPC_IOCTL_INIT_ATTACH", FASTRPC_IOCTL_INIT_ATTACH, None),
    Ioctl("FASTRPC_IOCTL_INIT_CREATE", FASTRPC_IOCTL_INIT_CREATE, fastrpc_init_create),
    Ioctl("FASTRPC_IOCTL_MMAP", FASTRPC_IOCTL_MMAP, fastrpc_req_mmap),
    Ioctl("FASTRPC_IOCTL_MUNMAP", FASTRPC_IOCTL_MUNMAP, fastrpc_req_munmap),
    Ioctl("FASTRPC_IOCTL_INIT_ATTACH_SNS", FASTRPC_IOCTL_INIT_ATTACH_SNS, None),
    Ioctl("FASTRPC_IOCTL_INIT_CREATE_STATIC", FASTRPC_IOCTL_INIT_CREATE_STATIC, fastrpc_init_create_static),
    Ioctl("FASTRPC_IOCTL_MEM_MAP", FASTRPC_IOCTL_MEM_MAP, fastrpc_mem_map),
    Ioctl("FASTRPC_IOCTL_MEM_UNMAP", FASTRPC_IOCTL_MEM_UNMAP, fastrpc_mem_unmap),
    Ioctl("FASTRPC_IOCTL_GET_DSP_INFO", FASTRPC_IOCTL_GET_DSP_INFO, fastrpc_ioctl_capability),
)}

#: Process attribute bits of INIT_CREATE (enum fastrpc_proc_attr).
FASTRPC_MODE_DEBUG = 0x1
FASTRPC_MODE_PTRACE = 0x2
FASTRPC_MODE_CRC = 0x4
FASTRPC_MODE_UNSIGNED_MODULE = wire.FASTRPC_MODE_UNSIGNED_MODULE
#: The legacy driver's domain table: ids below FASTRPC_DEV_MAX (no GDSP; upstream's probe fails
#: with EINVAL for that label).
FASTRPC_DEV_MAX = 5
LEGACY_DOMAINS = {name: i for name, i in wire.DOMAIN_IDS.items() if i < FASTRPC_DEV_MAX}
FASTRPC_MODE_ADAPTIVE_QOS = 0x10
FASTRPC_MODE_SYSTEM_PROCESS = 0x20
FASTRPC_MODE_PRIVILEGED = 0x40

# --- legacy uapi per kernel revision (qda_core.kernels "legacy:*") ---------------------------
# Linux 7.3 (commit 96e62cc0a84d; docs/spec/kernel_revisions_2026.md §5): ioctl 12.
fastrpc_ioctl_set_option = Layout("fastrpc_ioctl_set_option", [
    ("request_id", "u32"), ("value", "u32"), ("reserved", "s32[6]")])
FASTRPC_IOCTL_SET_OPTION = _r(_RW, 12, fastrpc_ioctl_set_option)
#: SET_OPTION request ids and the values of FASTRPC_POLL_MODE.
FASTRPC_POLL_MODE = 1
FASTRPC_POLL_MODE_DISABLE = 0
FASTRPC_POLL_MODE_ENABLE = 1
#: GET_DSP_INFO's first field as the 7.3 header names it: ``unused`` ("deprecated, ignored by
#: the kernel", d81c041ed5e4); same bytes as :data:`fastrpc_ioctl_capability`.
fastrpc_ioctl_capability_unused = Layout("fastrpc_ioctl_capability", [
    ("unused", "u32"), ("attribute_id", "u32"), ("capability", "u32"), ("reserved", "u32[4]")])

_LEGACY_73 = {**LEGACY_IOCTLS,
              FASTRPC_IOCTL_SET_OPTION: Ioctl("FASTRPC_IOCTL_SET_OPTION", FASTRPC_IOCTL_SET_OPTION,
                                              fastrpc_ioctl_set_option),
              FASTRPC_IOCTL_GET_DSP_INFO: Ioctl("FASTRPC_IOCTL_GET_DSP_INFO", FASTRPC_IOCTL_GET_DSP_INFO,
                                                fastrpc_ioctl_capability_unused)}

#: The ``/dev/fastrpc-*`` uapi of each legacy revision: number -> :class:`Ioctl`, in number
#: order. :data:`LEGACY_IOCTLS` is misc-7.2's. The QDA shim serves the full misc set of the
#: kernel it was posted against, 7.3's with SET_OPTION ("legacy FASTRPC_IOCTL_SET_OPTION",
#: docs/spec/kernel_revisions_2026.md §2.3); its own headers were not recoverable.
LEGACY_UAPI: dict[str, dict[int, Ioctl]] = {
    "misc-7.2": LEGACY_IOCTLS,
    "misc-7.3": dict(sorted(_LEGACY_73.items(), key=lambda kv: kv[1].nr)),
    "qda-shim": dict(sorted(_LEGACY_73.items(), key=lambda kv: kv[1].nr)),
}
