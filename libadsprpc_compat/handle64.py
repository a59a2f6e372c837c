"""The ``remote_handle64`` functions that need no Library: a handle64 value routes itself.

``remote_handle64_open`` is a :class:`~libadsprpc_compat.Library` method (it picks the backend);
the handle it returns names a :class:`~libadsprpc_compat.session.Record` in the process-wide
table, so invoke and close find their session, and its Library, from the value alone.
"""
from __future__ import annotations

from qda_core import trace as _trace

from . import _remote, process
from .cargs import A, fail, sc_text
from .tracing import summary, traced

#: Handles of static PDs (QF's audio/sensors PD handles): nothing to close.
STATICPD_LO, STATICPD_HI = 0x100, 0x200
#: Where an invoke's error came from (the invoker records it), as FastRpcError.origin names it.
ORIGINS = {_remote.ORIGIN_DSP: "dsp", _remote.ORIGIN_HOST: "host", _remote.ORIGIN_DRIVER: "driver"}


def raise_invoke(code: int, what: str):
    """Raise the error of a failed invoke, with the errno and origin the invoker recorded."""
    fail(code, what, errno=_remote.last_errno() or None, origin=ORIGINS[_remote.last_origin()])


def _invoke_py(h: int, sc: int, args=()) -> None:
    """remote_handle64_invoke in Python: with a trace on, and the cases the Cython function
    (:func:`libadsprpc_compat._remote.remote_handle64_invoke`) hands over (an unknown handle,
    an odd ``sc``, a session whose invoker is the Python reference's)."""
    tr = _trace.RECORDER
    if tr is not None:
        return _invoke_traced(tr, h, sc, args)
    rec = process._records.get(h)
    if rec is None:
        fail(A.AEE_EINVHANDLE, f"remote_handle64_invoke: {h!r} is not an open handle")
    try:
        code = rec.invoker.invoke(rec.dsp_handle, sc, args)
    except OverflowError:
        fail(A.AEE_EBADPARM, f"remote_handle64_invoke: sc {sc_text(sc)} is not a uint32_t")
    if code:
        invoke_failed(rec, sc, code)


def invoke_failed(rec, sc: int, code: int) -> None:
    """Raise the error of an invoke through record ``rec`` that returned ``code``
    (``AEE_ECONNRESET`` if its session was closed meanwhile)."""
    rec.session.fail_if_closed("remote_handle64_invoke")
    raise_invoke(code, f"remote_handle64_invoke({sc:#010x})")


#: The public function (docstring there): the Cython one, which serves the usual call itself.
remote_handle64_invoke = _remote.remote_handle64_invoke


def _invoke_traced(tr, h, sc, args) -> None:
    t0 = _trace.now()
    ret = 0
    try:
        rec = process._records.get(h)
        if rec is None:
            ret = A.AEE_EINVHANDLE
            fail(ret, f"remote_handle64_invoke: {h!r} is not an open handle")
        try:
            ret = rec.invoker.invoke(rec.dsp_handle, sc, args)
        except OverflowError:
            ret = A.AEE_EBADPARM
            fail(ret, f"remote_handle64_invoke: sc {sc_text(sc)} is not a uint32_t")
        if ret and rec.session.dead:
            ret = A.AEE_ECONNRESET  # what the trace shows for the failure raised next
            rec.session.fail_if_closed("remote_handle64_invoke")
        if ret:
            raise_invoke(ret, f"remote_handle64_invoke({sc:#010x})")
    finally:
        # (whatever the arguments are: an error here would replace the call's own)
        shown = (f"{h:#x}, {sc:#010x}, {'[0 args]' if args is None else summary((args,))}"
                 if isinstance(h, int) and isinstance(sc, int) else summary((h, sc, args)))
        tr.api("remote_handle64_invoke", shown, ret, t0, _trace.now())


@traced("remote_handle64_close")
def remote_handle64_close(h: int) -> None:
    """Close a multi-domain handle. The last one of a session (with no non-domain handles)
    tears the session down (the DSP process exits; no remotectl close, docs/spec/legacy_fastrpc_api.md §4.6).

    @param[in] h  handle from remote_handle64_open
    AEE codes: AEE_EINVHANDLE, AEE_ECONNRESET (the session was closed during the call; the
    handle is closed all the same), DSP dlerr codes, invoke errors
    """
    if isinstance(h, int) and STATICPD_LO <= h < STATICPD_HI:
        return  # static-PD handles: nothing to close (QF)
    with process.lock:
        rec = process._records.pop(h, None)
        if rec is None:
            fail(A.AEE_EINVHANDLE, f"remote_handle64_close: {h!r} is not an open handle")
        _remote.routes.forget(h)  # (never waits: a call in its route closes it on its way out)
        s = rec.session
        s.records.discard(h)
        lib = s.lib
        lib._tls.domain = s.eff
        if s.idle():
            lib._drop(s)
            return
        if not s.records and not s.nondomain:
            # Another thread is inside an open on this session: the teardown waits for it.
            s.closing = True
        s.users += 1
    try:
        code = s.close_module(rec.dsp_handle)
        if code:
            s.fail_if_closed("remote_handle64_close")
    finally:
        lib._release(s)
    if code:
        fail(code, "remote_handle64_close", origin="dsp" if code & 0x8000_0000 else None)


_remote.bind_h64(process._records, _invoke_py, invoke_failed)
