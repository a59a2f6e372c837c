"""The C library's fast entry (qdarpc/face.h, libadsprpc_compat._remote.Face): a C caller's
remote_handle64_invoke goes straight into the Invoker, and answers exactly what the C face's
Python function answers, for every outcome; whatever it does not serve goes to that function."""
from __future__ import annotations

import ctypes
import errno

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import _cabi, _remote, process
from libadsprpc_compat.cargs import A
from qda_core import trace

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL = 0x02000000       # qdarpc_test.null
SC_ECHO = 0x03010100       # qdarpc_test.echo: in0 -> out0
SC_FAIL = 0x05010000       # qdarpc_test.fail: returns the int it is given


class Faces:
    """A face built as _cabi.face builds it, and the Python function it stands in for, both
    for libcdsprpc; the face's calls to that function are counted."""

    def __init__(self):
        _cabi.bind("libcdsprpc", 3, "remote_handle64_invoke")
        self.slow = slow = _cabi._bound("libcdsprpc")["remote_handle64_invoke"]
        self.calls = []

        def counted(*args):
            self.calls.append(args)
            return slow(*args)

        self.face = _remote.Face(process._records, _cabi._flavours, trace, counted, _cabi._h64_failed_code,
                                 _cabi._h64_error_code)

    def both(self, h, sc, pra):
        """(the face's int, the Python function's int) for the same call."""
        return self.face(h, sc, pra), self.slow(h, sc, pra)


@pytest.fixture
def faces(soc_default):
    # Only libcdsprpc loaded (other tests of this process may have loaded more flavours).
    saved = dict(_cabi._flavours)
    _cabi._flavours.clear()
    yield Faces()
    _cabi._flavours.clear()
    _cabi._flavours.update(saved)


@pytest.fixture
def soc_default(make_soc):
    rpc.use_soc(make_soc("default"))
    yield
    rpc.use_soc(None)


def _pra(*bufs) -> tuple[ctypes.Array, list]:
    """A remote_arg array over ``bufs`` (ctypes buffers), and what keeps it alive."""
    arr = (ctypes.c_uint64 * (2 * max(len(bufs), 1)))()
    for i, b in enumerate(bufs):
        arr[2 * i], arr[2 * i + 1] = ctypes.addressof(b), ctypes.sizeof(b)
    return arr, list(bufs)


def test_the_capsule_is_the_entry_c_gets():
    _cabi.bind("libcdsprpc", 3, "remote_handle64_invoke")
    cap = _cabi.face("libcdsprpc")
    assert type(cap).__name__ == "PyCapsule" and "libadsprpc_compat.face" in repr(cap)


def test_success_and_every_failure_answer_as_the_python_function(faces):
    h = rpc.remote_handle64_open(TEST)
    try:
        assert faces.both(h, SC_NULL, 0) == (0, 0)
        src, dst = ctypes.create_string_buffer(b"12345678", 8), ctypes.create_string_buffer(8)
        arr, _keep = _pra(src, dst)
        assert faces.face(h, SC_ECHO, ctypes.addressof(arr)) == 0 and dst.raw == b"12345678"
        for code in (0x4E, 0x8000040E):  # a method failing with an AEE code, with a DSP code
            arr, _keep = _pra(ctypes.c_uint32(code))
            assert faces.both(h, SC_FAIL, ctypes.addressof(arr)) == (code, code)
        # a bad pra: AEE_EBADPARM with errno EFAULT, both ways
        bad = A.AEE_EBADPARM | errno.EFAULT << 32
        assert faces.both(h, SC_ECHO, 8) == (bad, bad)
        # buffers with a NULL pra
        got = faces.both(h, SC_ECHO, 0)
        assert got[0] == got[1] != 0
        assert faces.calls == []  # every one of these was served by the entry itself
    finally:
        rpc.remote_handle64_close(h)


def test_unknown_and_closed_handles_go_to_the_python_function(faces):
    code = faces.face(0xDEAD, SC_NULL, 0)
    assert code == A.AEE_EINVHANDLE and faces.calls == [(0xDEAD, SC_NULL, 0)]
    h = rpc.remote_handle64_open(TEST)
    rpc.remote_handle64_close(h)
    assert faces.both(h, SC_NULL, 0) == (A.AEE_EINVHANDLE, A.AEE_EINVHANDLE)


def test_a_trace_or_a_second_flavour_takes_the_python_function(faces):
    h = rpc.remote_handle64_open(TEST)
    try:
        with trace.recording() as rec:
            assert faces.face(h, SC_NULL, 0) == 0
        assert len(faces.calls) == 1
        assert any("remote_handle64_invoke" in str(e) for e in rec.events)
        _cabi._flavours.setdefault("libadsprpc-test", None)
        try:
            assert faces.face(h, SC_NULL, 0) == 0 and len(faces.calls) == 2
        finally:
            del _cabi._flavours["libadsprpc-test"]
    finally:
        rpc.remote_handle64_close(h)


def test_an_internal_error_is_a_code_and_a_message_never_an_exception(faces, capfd):
    h = rpc.remote_handle64_open(TEST)
    real = process._records[h]

    class Broken:
        invoker = real.invoker
        session = real.session

        @property
        def dsp_handle(self):
            raise RuntimeError("broken record")

    process._records[h] = Broken()
    try:
        assert faces.face(h, SC_NULL, 0) == A.AEE_EFAILED
    finally:
        process._records[h] = real
        rpc.remote_handle64_close(h)
    err = capfd.readouterr().err
    assert "internal error in the C ABI's remote_handle64_invoke" in err and "broken record" in err
