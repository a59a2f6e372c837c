# cython: language_level=3, boundscheck=False, wraparound=False
"""The accel driver's native INVOKE: ``QdaFile.ioctl`` with DRM_IOCTL_QDA_INVOKE served in C.

Same steps, results and errors as the reference (``QdaFile._ioctl`` and ``QdaFile.fastrpc``):
DRM's size and direction rules, the struct copied in, the descriptors read, every ``fd``
argument resolved to a buffer object of the file (``QdaFile.buffer``, ``vma.ref_address``:
the same Python helpers, so the isolation checks have one source), the engine's lane called
with C values. Every other ioctl, a traced one, an ``arg`` given as a user address, and a file
on the Python data plane take the reference. docs/dataplane.md.

:func:`invoke` is ``QdaFile.invoke`` on the same lane: the arguments held and pinned by
``ArgPins``' C methods, the struct in C, no ``ioctl()`` in between.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from qda_core._cwire cimport sc_nbufs
from qda_core._marshal cimport _user_copy, scope_begin, scope_end
from qda_core._engine cimport (FileLane, current_tid, invoke_fields, lane_of, new_refs, serve_invoke, tracing,
                               typed_invoke, u32_of)

import errno as _errno

from qda_core import uapi as _uapi
from qda_core.errors import errno_error as _errno_error
from qda_core import wire as _wire
from qda_core.invoke_args import BufRef as _BufRef
from qda_core.invoke_args import HandleArg as _HandleArg
from qda_core.mem.vma import ref_address as _ref_address


cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef int INVOKE_NR = _uapi.IOC_NR(_uapi.DRM_IOCTL_QDA_INVOKE)
cdef uint32_t _INIT_HANDLE = _wire.FASTRPC_INIT_HANDLE
cdef int _ROOT_PD = _wire.ROOT_PD
cdef int _IN = _uapi.IOC_WRITE
cdef int _OUT = _uapi.IOC_READ


def _check_layouts():
    # every revision's INVOKE struct is {u32 handle, u32 sc, u64 args}: read at fixed offsets
    for u in _uapi.ACCEL_UAPI.values():
        L = u.ioctls[INVOKE_NR].layout
        assert (L.size, L.offset("handle"), L.offset("sc"), L.offset("args")) == (16, 0, 4, 8), L.name


_check_layouts()


def ioctl(f, request, arg=None):
    """``QdaFile.ioctl`` (the DRM core's ``drm_ioctl()``)."""
    cdef FileLane fl = lane_of(f)
    cdef uint32_t req
    if not fl.enter():
        return -_errno.EBADF
    try:
        if fl.native and u32_of(request, &req) and (req & 0xFF) == INVOKE_NR and not tracing():
            ret = _invoke(f, fl, req, arg)
            if ret is not None:
                return ret
        return f._ioctl(request, arg)
    finally:
        if fl.leave():
            f._release_now()


cdef object _invoke(f, FileLane fl, uint32_t request, arg):
    """INVOKE, or None when the reference must serve it (decided before anything happens)."""
    cdef Py_buffer view
    cdef unsigned char kbuf[16]
    cdef uint32_t both, usize, in_size, out_size, handle, sc, n
    cdef uint64_t args
    cdef bint writable
    cdef size_t mark
    if arg is None:
        return None
    both = (request >> 30) & (<uint32_t>fl.invoke_nr >> 30)  # the revision's INVOKE number
    usize = (request >> 16) & 0x3FFF
    in_size = usize if both & _IN else 0
    out_size = usize if both & _OUT else 0
    if in_size > 16 or out_size > 16:
        return None
    if type(arg) is int:  # a C program's own address (the device shim): drm_ioctl's copies
        if not 0 < arg < (1 << 64):
            return None
        mark = scope_begin()  # (the struct's copies and the invoke's: one look at the guard)
        try:
            memset(kbuf, 0, 16)
            if in_size and _user_copy(kbuf, <uint64_t>arg, in_size, 0, False) != 0:
                return None  # the reference's EFAULT, with its message
            invoke_fields(kbuf, &handle, &sc, &args)
            ret = serve_invoke(f, fl, handle, sc, args, _serve)
            if out_size and _user_copy(kbuf, <uint64_t>arg, out_size, 1, False) != 0:
                # (drm_ioctl: the copy back fails the call, whatever it answered; as copy_out)
                return f._failed(_errno_error(_errno.EFAULT, f"cannot write {out_size} bytes of "
                                                             f"{f.uapi.ioctls[INVOKE_NR].name} at {arg:#x}"))
            return ret
        finally:
            scope_end(mark)
    writable = True
    try:
        PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE)
    except (BufferError, TypeError, ValueError):
        writable = False
        try:
            PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)
        except (BufferError, TypeError, ValueError):
            return None
    try:
        if view.len < in_size or (out_size and not writable) or view.len < out_size:
            return None  # the reference's EFAULT, with its message
        memset(kbuf, 0, 16)
        memcpy(kbuf, view.buf, in_size)
        invoke_fields(kbuf, &handle, &sc, &args)
        ret = serve_invoke(f, fl, handle, sc, args, _serve)
        if out_size:
            memcpy(view.buf, kbuf, out_size)
        return ret
    finally:
        PyBuffer_Release(&view)


cdef object _serve(f, FileLane fl, uint32_t handle, uint32_t sc, uint32_t n, descs):
    """The INVOKE handler once the descriptors are read: its errors as ``-errno``."""
    try:
        return _fastrpc(f, fl, handle, sc, n, descs)
    except OSError as exc:
        return f._failed(exc)


cdef object _fastrpc(f, FileLane fl, uint32_t handle, uint32_t sc, uint32_t n, descs):
    """``QdaFile.fastrpc`` for a user INVOKE (not a kernel message, root PD)."""
    cdef uint32_t nbufs = sc_nbufs(sc)
    cdef uint32_t i
    cdef const char *d
    cdef uint64_t ptr, length
    cdef int32_t fd
    cdef uint64_t *r
    cdef int client_id, tid
    if not fl.ready:
        f.ensure_cb()
        fl.fill(f.cb, f._origin(False), f._pool.alloc, f.client_id, f.device.fastrpc.invoke)
    refs = new_refs(n)
    held = None
    try:
        for i in range(n):
            d = PyByteArray_AS_STRING(descs) + 24 * i
            memcpy(&ptr, d, 8)
            memcpy(&length, d + 8, 8)
            memcpy(&fd, d + 16, 4)
            if fd <= 0 or (i < nbufs and not length):
                continue  # copied inline / nothing to map
            obj = f.buffer(fd, f"argument {i}")
            if held is None:
                held = []
                refs = bytearray(refs)  # new_refs' page list is shared: fill a copy
            held.append(obj)
            addr = _ref_address(i, ptr, length, obj) if i < nbufs else obj.dma_addr
            r = <uint64_t *>(PyByteArray_AS_STRING(refs) + 16 * i)
            r[0] = addr
            r[1] = obj.size
        client_id = 0 if handle == _INIT_HANDLE else fl.client_id
        tid = current_tid()
        if fl.engine is not None:
            return fl.engine.invoke(client_id, tid, handle, sc, _ROOT_PD, descs, refs, fl.pool_alloc, fl.origin,
                                    None, False)
        return fl.engine_invoke(client_id=client_id, tid=tid, handle=handle, sc=sc, pd=_ROOT_PD, args=descs,
                                refs=refs, msg_alloc=fl.pool_alloc, origin=fl.origin)
    finally:
        if held is not None:
            for obj in held:
                obj.put()


# --- QdaFile.invoke ------------------------------------------------------------------------
# qda_core.accel.file's QdaFile and GemRef, taken on first use (that module imports this one)
cdef object _QdaFile = None
cdef object _GemRef = None


def invoke(f, handle, sc, args=()):
    """DRM_IOCTL_QDA_INVOKE with ``args`` in ``[inbufs, outbufs, inhandles, outhandles]``
    order: plain buffers are copied, :class:`GemRef` buffers shared, :class:`HandleArg`
    entries are handles. Returns the DSP retval (0 or an AEE code, as unsigned 32-bit).

    ``QdaFile.invoke``, served here with the reference's steps, results and errors (the
    arguments checked, held and the copied ones pinned by ``ArgPins``; INVOKE as ``ioctl()``
    serves it, EBADF once closed; the pins and holds dropped; the result checked as
    ``_check_dsp`` does); a traced call issues the struct through ``f.ioctl`` as before.
    ``QdaFile._invoke_reference`` serves a subclass's file, one on the Python data plane, a
    ``handle`` or ``sc`` not an int in 0..2**32-1, ``args`` neither a tuple nor a list, a
    :class:`GemRef` on a revision whose ``fd`` fields are DMA-BUF fds (exported for the call),
    and an INVOKE number whose size or direction is not the 16-byte struct's in."""
    global _QdaFile, _GemRef
    cdef FileLane fl = lane_of(f)
    cdef uint32_t h, s, req, usize
    if _QdaFile is None:
        from qda_core.accel.file import GemRef, QdaFile
        _QdaFile, _GemRef = QdaFile, GemRef
    # a subclass may have its own ioctl() or _check_dsp(), which the reference calls
    if type(f) is not _QdaFile or not fl.native or not u32_of(handle, &h) or not u32_of(sc, &s):
        return f._invoke_reference(handle, sc, args)
    if type(args) is not tuple and type(args) is not list:
        return f._invoke_reference(handle, sc, args)
    req = <uint32_t>fl.invoke_nr  # this revision's INVOKE: the struct copied in whole
    usize = (req >> 16) & 0x3FFF
    if not (req >> 30) & _IN or usize != 16:
        return f._invoke_reference(handle, sc, args)
    for x in args:
        # (a failed isinstance() also asks for __class__: skip the plain builtin buffers)
        if type(x) is bytes or type(x) is bytearray or type(x) is memoryview:
            continue
        if isinstance(x, _GemRef) and f.uapi.fd_kind != "gem-handle":
            return f._invoke_reference(handle, sc, args)  # exported for the call there
    return typed_invoke(f, fl, h, s, args, _GemRef, _BufRef, _HandleArg, _serve)
