"""Buffer registration (``remote_register_buf*``, ``remote_register_dma_handle*``), process-wide.

A registered range ``[buf, buf+size)`` of dma-buf ``fd`` makes any invoke buffer inside it go to
the DSP by reference (the invoker looks it up in :data:`process.REGS`); a dma-handle registration
gives the length and attributes of the next handle argument passing that fd.
"""
from __future__ import annotations

from . import process
from .cargs import C_BITS32, C_INT, C_INT64, C_UINT32, C_UINT64, A, addr, c_arg, fail
from .constants import FASTRPC_ATTR_NOMAP
from .tracing import traced

#: Most dma-handle registrations pending at once (QF's table size).
DMA_HANDLE_TABLE = 256


def deregister(start: int, size: int) -> None:
    """Remove the range registered at ``[start, start+size)``; when it was the last range of its
    fd, every session forgets the fd. A size other than the registered one is AEE_EBADPARM (QF
    ``raise(SIGABRT)``s here; a Python library raises instead)."""
    with process.lock:
        try:
            fd, left = process.REGS.remove(start, size)
        except ValueError as exc:
            fail(A.AEE_EBADPARM, f"remote_register_buf: {exc}")
        if fd is None or left:
            return
        if any(r[2] == fd for r in process.REGS.ranges()):
            return
        process.forget_fd(fd)


def take_dma_registration(fd: int) -> tuple[int, int]:
    """``(len, attr)`` of the oldest pending dma-handle registration of ``fd``, consumed (one per
    invoke, docs/spec/legacy_fastrpc_api.md §2.2); ``(0, 0)`` if there is none."""
    with process.lock:
        uses = process._dma_regs.get(fd)
        if not uses:
            return 0, 0
        length, attr = uses.pop(0)
        if not uses:
            del process._dma_regs[fd]
        return length, attr


@traced("remote_register_buf_attr")
def remote_register_buf_attr(buf, size: int, fd: int, attr: int) -> None:
    """Register (``fd != -1``) or deregister (``fd == -1``) ``[buf, buf+size)`` as memory of
    dma-buf ``fd``: invoke buffers lying inside it then go by reference. NULL ``buf`` or size
    0 is ignored (as in C).

    @param[in] buf   buffer object or address
    @param[in] size  bytes (up to ``size_t``, as remote_register_buf_attr2)
    @param[in] fd    dma-buf fd, -1 to deregister
    @param[in] attr  FASTRPC_ATTR_* bits passed with the buffer
    AEE codes: AEE_EBADPARM (deregistering with another size: QF aborts the process instead; an
    argument outside its C type; a range wrapping past the end of the address space)
    """
    start = addr(buf)
    # size as remote_register_buf_attr2 takes it (size_t): ranges beyond 2 GiB are legal.
    size = c_arg(size, (C_INT64[0], C_UINT64[1]), "remote_register_buf: size")
    fd = c_arg(fd, C_INT, "remote_register_buf: fd")
    attr = c_arg(attr, C_BITS32, "remote_register_buf: attr") & 0xFFFF_FFFF
    if not start or size <= 0:
        return
    if start + size > C_UINT64[1] + 1:
        fail(A.AEE_EBADPARM, f"remote_register_buf: [{start:#x}, +{size:#x}) wraps around")
    if fd == -1:
        deregister(start, size)
        return
    with process.lock:
        try:
            process.REGS.add(start, size, fd, attr)
        except ValueError as exc:  # a range ending at 2^64: its end is no address
            fail(A.AEE_EBADPARM, f"remote_register_buf: {exc}")


@traced("remote_register_buf")
def remote_register_buf(buf, size: int, fd: int) -> None:
    """remote_register_buf_attr with attr 0.

    AEE codes: AEE_EBADPARM
    """
    remote_register_buf_attr.__wrapped__(buf, size, fd, 0)


_len = len  # the C parameter name ``len`` shadows the builtin below


@traced("remote_register_dma_handle_attr")
def remote_register_dma_handle_attr(fd: int, len: int, attr: int) -> None:  # noqa: A002 - C name
    """Register one use of dma-buf ``fd`` (``len`` bytes) as a handle argument: the next invoke
    passing ``fd`` in a handle slot consumes it.

    @param[in] fd    dma-buf fd (>= 0)
    @param[in] len   length of the buffer
    @param[in] attr  0 or FASTRPC_ATTR_NOMAP
    AEE codes: AEE_EBADPARM, AEE_EINVHANDLE (table of 256 registrations full)
    """
    fd, len = c_arg(fd, C_INT, "remote_register_dma_handle: fd"), c_arg(len, C_UINT32, "remote_register_dma_handle: len")
    if fd < 0 or attr not in (0, FASTRPC_ATTR_NOMAP):
        fail(A.AEE_EBADPARM, f"remote_register_dma_handle: fd {fd} attr {attr}")
    with process.lock:
        if sum(map(_len, process._dma_regs.values())) >= DMA_HANDLE_TABLE:
            fail(A.AEE_EINVHANDLE, "remote_register_dma_handle: table full")
        process._dma_regs.setdefault(fd, []).append((len, attr))


@traced("remote_register_dma_handle")
def remote_register_dma_handle(fd: int, len: int) -> None:  # noqa: A002 - C name
    """remote_register_dma_handle_attr with attr 0.

    AEE codes: AEE_EBADPARM, AEE_EINVHANDLE
    """
    remote_register_dma_handle_attr.__wrapped__(fd, len, 0)
