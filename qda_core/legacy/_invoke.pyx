# cython: language_level=3, boundscheck=False, wraparound=False
"""The legacy driver's native INVOKE: ``LegacyFile.ioctl`` with FASTRPC_IOCTL_INVOKE served in C.

Same steps, results and errors as the reference (``LegacyFile._dispatch`` and
``internal_invoke``): the struct copied in, the descriptors read, the engine's lane called
with C values. A call with a buffer to map (an ``fd`` argument) runs ``internal_invoke``
itself, whose map cache and isolation checks have one source; the engine's lane still serves
its message. Every other ioctl, a traced one, an ``arg`` given as a user address, and a file
on the Python data plane take the reference. docs/dataplane.md.
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.string cimport memcpy

from qda_core._engine cimport FileLane, current_tid, invoke_fields, new_refs, read_descs, sc_length, tracing

import errno as _errno

from qda_core import uapi as _uapi
from qda_core import wire as _wire
from qda_core.errors import errno_error


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
    cdef FileLane fl = f._lane
    # invoke_nr: FASTRPC_IOCTL_INVOKE, or -1 on a revision without it (decided at open)
    if (fl.native and fl.invoke_nr >= 0 and type(request) is int and request == fl.invoke_request
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
    cdef uint32_t handle, sc, n, i
    cdef uint64_t args
    cdef int32_t fd
    cdef uint64_t length
    cdef const char *d
    if arg is None or type(arg) is int:
        return None
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
    n = sc_length(sc)
    try:
        descs = read_descs(args, n)
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
    tid = current_tid()
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
