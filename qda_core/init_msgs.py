"""The messages both kernels send on the DSP's INIT handle (handle 1), built in one place.

Each builder returns a :class:`KernelMsg`: the method, the in-buffers and the out-buffers, in
the order and layout of ``drivers/misc/fastrpc.c`` and the QDA RFC
(docs/spec/legacy_fastrpc_api.md §7.5, docs/spec/qda_accel_uapi.md §3). A driver turns it into
invoke descriptors with its own notion of "no fd" and sends it from the kernel side
(``_kernel_call``); :meth:`KernelMsg.vaddr` reads the DSP address MMAP and MEM_MAP answer.
"""
from __future__ import annotations

from typing import NamedTuple

from . import wire
from .uaccess import address

__all__ = ["KernelMsg", "attach", "release", "create", "create_static", "mmap", "munmap", "mem_map",
           "mem_unmap"]


class KernelMsg(NamedTuple):
    """One INIT-handle request. ``ins``/``outs`` hold buffers the kernel owns, or, for data the
    user passed by reference (a shell image in a dma-buf), a ready ``(ptr, len, fd)`` entry."""

    method: int
    ins: tuple
    outs: tuple = ()

    @property
    def sc(self) -> int:
        return wire.scalars(self.method, len(self.ins), len(self.outs))

    def descriptors(self, no_fd: int) -> bytearray:
        """The invoke descriptor array; kernel buffers carry ``no_fd`` (the driver's "copy
        me"). The caller keeps this message alive while the descriptors are in use."""
        items = (*self.ins, *self.outs)
        descs = bytearray(wire.INVOKE_ARG.size * len(items))
        for i, item in enumerate(items):
            ptr, length, fd = item if isinstance(item, tuple) else (address(item), len(item), no_fd)
            wire.INVOKE_ARG.pack_into(descs, wire.INVOKE_ARG.size * i, ptr, length, fd, 0)
        return descs

    def vaddr(self) -> int:
        """The ``{u64 vaddr}`` the DSP wrote into the first out-buffer (MMAP, MEM_MAP)."""
        return wire.U64.unpack_from(self.outs[0])[0]


def _cid(client_id: int) -> bytes:
    return wire.S32.pack(client_id)


def attach(client_id: int) -> KernelMsg:
    """INIT_ATTACH: join the root (or, with the sensors pd bits, the sensors) PD."""
    return KernelMsg(wire.RMID_INIT_ATTACH, (_cid(client_id),))


def release(client_id: int) -> KernelMsg:
    """INIT_RELEASE, sent when the file is released."""
    return KernelMsg(wire.RMID_INIT_RELEASE, (_cid(client_id),))


def create(client_id: int, name: bytes, image, filelen: int, attrs: int, siglen: int,
           init_mem: tuple[int, int]) -> KernelMsg:
    """INIT_CREATE(_ATTR): a user PD named ``name`` (``current->comm`` with its NUL), shell
    ``image`` (a ``(ptr, len, fd)`` entry), one page descriptor of init memory. Only four
    in-buffers go, although the kernels also prepare attrs and siglen as arguments 4 and 5."""
    inbuf = wire.CREATE_INBUF.pack(client_id, len(name), filelen, 1, attrs, siglen)
    method = wire.RMID_INIT_CREATE_ATTR if attrs else wire.RMID_INIT_CREATE
    return KernelMsg(method, (inbuf, name, image, wire.PHY_PAGE.pack(*init_mem)))


def create_static(client_id: int, name: bytes, heap: tuple[int, int]) -> KernelMsg:
    """INIT_CREATE_STATIC: the static PD ``name`` (as the user passed it), its remote heap."""
    inbuf = wire.CREATE_STATIC_INBUF.pack(client_id, len(name), 0)
    return KernelMsg(wire.RMID_INIT_CREATE_STATIC, (inbuf, bytes(name), wire.PHY_PAGE.pack(*heap)))


def mmap(client_id: int, flags: int, vaddrin: int, page: tuple[int, int]) -> KernelMsg:
    """INIT_MMAP of one page descriptor; answers ``{u64 vaddr}``."""
    req = wire.MMAP_REQ.pack(client_id, flags, vaddrin, wire.PHY_PAGE.size)
    return KernelMsg(wire.RMID_INIT_MMAP, (req, wire.PHY_PAGE.pack(*page)), (bytearray(8),))


def munmap(client_id: int, vaddr: int, size: int) -> KernelMsg:
    """INIT_MUNMAP of an earlier MMAP, by DSP address and size."""
    return KernelMsg(wire.RMID_INIT_MUNMAP, (wire.MUNMAP_REQ.pack(client_id, vaddr, size),))


def mem_map(client_id: int, fd: int, offset: int, flags: int, vaddrin: int, page: tuple[int, int]) -> KernelMsg:
    """INIT_MEM_MAP of buffer ``fd``; the third in-buffer is the empty ``data`` the kernels send.
    ``offset`` lands in an ``int`` field: C truncation, as the kernels' assignment does."""
    req = wire.MEM_MAP_REQ.pack(client_id, fd, wire.s32(offset), flags, vaddrin, wire.PHY_PAGE.size, 0)
    return KernelMsg(wire.RMID_INIT_MEM_MAP, (req, wire.PHY_PAGE.pack(*page), b""), (bytearray(8),))


def mem_unmap(client_id: int, fd: int, vaddr: int, size: int) -> KernelMsg:
    """INIT_MEM_UNMAP of the mapping of ``fd`` at DSP address ``vaddr``."""
    return KernelMsg(wire.RMID_INIT_MEM_UNMAP, (wire.MEM_UNMAP_REQ.pack(client_id, fd, vaddr, size),))
