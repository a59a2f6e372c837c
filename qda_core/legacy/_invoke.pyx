# cython: language_level=3, boundscheck=False, wraparound=False
"""The legacy driver's native INVOKE: ``LegacyFile.ioctl`` with FASTRPC_IOCTL_INVOKE served in C.

Same steps, results and errors as the reference (``LegacyFile._dispatch`` and
``internal_invoke``): the struct copied in, the descriptors read, the engine's lane called
with C values. A call with a buffer to map (an ``fd`` argument) runs ``internal_invoke``
itself, whose map cache and isolation checks have one source; the engine's lane still serves
its message. Every other ioctl, a traced one, an ``arg`` given as a user address, and a file
on the Python data plane take the reference. docs/dataplane.md.

:func:`invoke` is ``LegacyFile.invoke`` on the same lane: the arguments held and pinned
by ``ArgPins``' C methods, the struct in C, no ``ioctl()`` in between.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memcpy

from qda_core._cwire cimport sc_length
from qda_core._marshal cimport _user_copy, scope_begin, scope_end
from qda_core._engine cimport (FileLane, current_tid, invoke_fields, lane_of, new_refs, serve_invoke, tracing,
                               typed_invoke, u32_of)

import errno as _errno

from qda_core import uapi as _uapi
from qda_core import wire as _wire
from qda_core.errors import errno_error
from qda_core.invoke_args import BufRef as _BufRef
from qda_core.invoke_args import HandleArg as _HandleArg


cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef uint32_t _INIT_HANDLE = _wire.FASTRPC_INIT_HANDLE
cdef uint32_t _MAX_STATIC = _wire.FASTRPC_MAX_STATIC_HANDLE
cdef int _USER_PD = _wire.USER_PD
# {u32 handle, u32 sc, u64 args}, on every revision: read at fixed offsets
assert (_uapi.fastrpc_invoke.size, _uapi.fastrpc_invoke.offset("handle"), _uapi.fastrpc_invoke.offset("sc"),
        _uapi.fastrpc_invoke.offset("args")) == (16, 0, 4, 8)


def ioctl(f, request, arg=None):
    """``LegacyFile.ioctl`` (``fastrpc_device_ioctl``: switch on the full command number)."""
    cdef FileLane fl = lane_of(f)
    cdef uint32_t req
    # invoke_nr: FASTRPC_IOCTL_INVOKE, or -1 on a revision without it (decided at open)
    if (fl.native and fl.invoke_nr >= 0 and u32_of(request, &req) and req == fl.invoke_nr
            and not tracing()):
        if not fl.enter():
            return -_errno.EBADF
        try:
            ret = _invoke(f, fl, arg)
            if ret is not None:
                return ret
            return f._dispatch(request, arg)[0]
        finally:
            if fl.leave():
                f._release_now()
    return f._ioctl_reference(request, arg)


cdef object _invoke(f, FileLane fl, arg):
    """INVOKE, or None when the reference must serve it (decided before anything happens)."""
    cdef Py_buffer view
    cdef unsigned char kbuf[16]
    cdef uint32_t handle, sc
    cdef uint64_t args
    cdef size_t mark
    if arg is None:
        return None
    if type(arg) is int:  # a C program's own address (the device shim): copy_from_user
        if not 0 < arg < (1 << 64):
            return None
        mark = scope_begin()  # (the struct's copy and the invoke's: one look at the guard)
        try:
            if _user_copy(kbuf, <uint64_t>arg, 16, 0, False) != 0:
                return None  # the reference's EFAULT, with its message
            invoke_fields(kbuf, &handle, &sc, &args)
            return serve_invoke(f, fl, handle, sc, args, _serve)
        finally:
            scope_end(mark)
    try:
        PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)
    except (BufferError, TypeError, ValueError):
        return None
    try:
        if view.len < 16:
            return None  # the reference's EFAULT, with its message
        memcpy(kbuf, view.buf, 16)
    finally:
        PyBuffer_Release(&view)
    invoke_fields(kbuf, &handle, &sc, &args)
    return serve_invoke(f, fl, handle, sc, args, _serve)


cdef object _serve(f, FileLane fl, uint32_t handle, uint32_t sc, uint32_t n, descs):
    """The INVOKE handler once the descriptors are read: its errors as ``-errno``."""
    cdef uint32_t i
    cdef int32_t fd
    cdef uint64_t length
    cdef const char *d
    try:
        for i in range(n):
            d = PyByteArray_AS_STRING(descs) + 24 * i
            memcpy(&length, d + 8, 8)
            memcpy(&fd, d + 16, 4)
            if fd != 0 and fd != -1 and length != 0:  # a buffer to map: the reference's maps
                return f.internal_invoke(False, handle, sc, descs)
        return _internal_invoke(f, fl, handle, sc, descs)
    except OSError as exc:
        return f._failed(exc)


cdef object _internal_invoke(f, FileLane fl, uint32_t handle, uint32_t sc, descs):
    """``LegacyFile.internal_invoke`` of a user INVOKE with no buffer to map."""
    # LegacyChannel.up is its rpmsg channel's, the engine's channel once the lane is filled
    if not (fl.engine.channel_up() if fl.engine is not None else f.channel.up):
        raise errno_error(_errno.EPIPE, f"{f.path}: DSP channel is down")
    if handle == _INIT_HANDLE:
        raise errno_error(_errno.EPERM, "user app trying to send a kernel RPC message (handle 1)")
    if not fl.ready:
        cb = f.ensure_cb()
        fl.fill(cb, f._origin(cb, False), f._pool.alloc, f.client_id, f.channel.fastrpc.invoke)
    refs = new_refs(sc_length(sc))
    fdlist = []
    cdef int pd = fl.pd
    cdef bint poll = fl.poll_mode and handle > _MAX_STATIC and pd == _USER_PD
    cdef int tid = current_tid()
    try:
        if fl.engine is not None:
            ret = fl.engine.invoke(fl.client_id, tid, handle, sc, pd, descs, refs, fl.pool_alloc, fl.origin,
                                   fdlist, poll)
        else:
            ret = fl.engine_invoke(client_id=fl.client_id, tid=tid, handle=handle, sc=sc, pd=pd, args=descs,
                                   refs=refs, msg_alloc=fl.pool_alloc, fdlist=fdlist, poll=poll, origin=fl.origin)
    except OSError as exc:
        if exc.errno == _errno.ENODEV:  # the channel went away under us
            raise errno_error(_errno.EPIPE, f"{f.path}: DSP channel is down") from None
        raise
    if fdlist:
        f.drop_listed_maps(fdlist)
    return ret


# --- LegacyFile.invoke ---------------------------------------------------------------------
# qda_core.legacy.file's LegacyFile and DmaBufRef, taken on first use (that module imports this one)
cdef object _LegacyFile = None
cdef object _DmaBufRef = None


def invoke(f, handle, sc, args=()):
    """FASTRPC_IOCTL_INVOKE with ``args`` in ``[inbufs, outbufs, inhandles, outhandles]``
    order: plain buffers are copied, :class:`DmaBufRef` buffers shared by fd,
    :class:`HandleArg` entries are handles. Returns the DSP retval as unsigned 32-bit.

    ``LegacyFile.invoke``, served here with the reference's steps, results and errors (the
    arguments checked, held and the copied ones pinned by ``ArgPins``; INVOKE as ``ioctl()``
    serves it, EBADF once closed; the pins and holds dropped; the result checked as
    ``_check_dsp`` does); a traced call issues the struct through ``f.ioctl`` as before.
    ``LegacyFile._invoke_reference`` serves a subclass's file, one on the Python data plane or
    of a revision without INVOKE, a ``handle`` or ``sc`` not an int in 0..2**32-1, and ``args``
    neither a tuple nor a list."""
    global _LegacyFile, _DmaBufRef
    cdef FileLane fl = lane_of(f)
    cdef uint32_t h, s
    if _LegacyFile is None:
        from qda_core.legacy.file import DmaBufRef, LegacyFile
        _LegacyFile, _DmaBufRef = LegacyFile, DmaBufRef
    # a subclass may have its own ioctl() or _check_dsp(), which the reference calls
    if (type(f) is not _LegacyFile or not fl.native or fl.invoke_nr < 0 or not u32_of(handle, &h)
            or not u32_of(sc, &s)):
        return f._invoke_reference(handle, sc, args)
    if type(args) is not tuple and type(args) is not list:
        return f._invoke_reference(handle, sc, args)
    return typed_invoke(f, fl, h, s, args, _DmaBufRef, _BufRef, _HandleArg, _serve)
