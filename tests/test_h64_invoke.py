"""``remote_handle64_invoke`` is a Cython function (``libadsprpc_compat._remote``) that serves
the usual call itself and hands the rest to handle64's Python implementation: both must answer
every call alike (the same exception, code, errno, origin and message, the same out-buffers),
and ``Record`` is the C type the fast path reads."""
import enum

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import libadsprpc_compat as rpc
from libadsprpc_compat import _remote, handle64, process
from libadsprpc_compat.session import Record
from qda_core import trace

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_NULL, SC_ECHO, SC_FAIL = 0x02000000, 0x03010100, 0x05010000


class Sc(enum.IntEnum):
    NULL = SC_NULL


@pytest.fixture(params=["accel", "legacy"])
def lib(request, soc):
    rpc.use_soc(soc)
    yield rpc.Library(request.param)
    rpc.use_soc(None)
    rpc.set_backend("accel")


def outcome(fn, h, sc, args):
    """What a call did: ("ok", out-buffers) or (exception type, code, errno, origin, message)."""
    try:
        fn(h, sc, args)
    except rpc.FastRpcError as e:
        return type(e), e.aee, e.errno, e.origin, str(e)
    except Exception as e:  # noqa: BLE001 - any other error must match too
        return type(e), str(e)
    return "ok", [bytes(a) for a in (args if isinstance(args, list) else ()) if isinstance(a, bytearray)]


def test_the_public_function_is_the_cython_one():
    assert rpc.remote_handle64_invoke is _remote.remote_handle64_invoke
    assert handle64.remote_handle64_invoke is _remote.remote_handle64_invoke
    assert rpc.Library.remote_handle64_invoke.__doc__ == _remote.remote_handle64_invoke.__doc__
    assert Record is _remote.Record


def test_record_is_read_only(lib):
    h = lib.remote_handle64_open(TEST)
    rec = process._records[h]
    assert type(rec) is Record and rec.h64 == h and rec.uri == TEST
    assert rec.invoker is rec.session.invoker and f"{rec.dsp_handle:#x}" in repr(rec)
    with pytest.raises(AttributeError):
        rec.invoker = None
    lib.remote_handle64_close(h)


def test_bind_h64_takes_a_dict():
    with pytest.raises(TypeError):
        _remote.bind_h64([], handle64._invoke_py, handle64.invoke_failed)


HANDLES = st.sampled_from(["open", "closed", 0, -1, 1 << 64, "x", None, 1.5, True, (1,), [1]])
SCS = st.one_of(st.sampled_from([SC_NULL, SC_ECHO, SC_FAIL, Sc.NULL, True, 1.0, "0x2000000", None]),
                st.integers(min_value=-(1 << 40), max_value=1 << 40),
                st.integers(min_value=0, max_value=0xFFFFFFFF))
ARGS = st.sampled_from(["none", "empty-tuple", "empty-list", "echo", "echo-short-out", "echo-ro-out",
                        "fail-7", "one", "str", "int", "numpy"])


def make_args(kind):
    return {"none": None, "empty-tuple": (), "empty-list": [], "echo": [b"hello", bytearray(8)],
            "echo-short-out": [b"hello", bytearray(2)], "echo-ro-out": [b"hello", b"12345678"],
            "fail-7": [(7).to_bytes(4, "little")], "one": [b"x"], "str": "ab", "int": 5,
            "numpy": np.zeros(2)}[kind]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=HANDLES, sc=SCS, kind=ARGS, traced=st.booleans())
def test_cython_and_python_answer_alike(lib, h, sc, kind, traced):
    """Each call twice, once through each function, with fresh arguments: the same outcome.
    Under a trace the Cython function hands every call over (the trace's own record)."""
    opened, closed = lib.remote_handle64_open(TEST), lib.remote_handle64_open(TEST)
    lib.remote_handle64_close(closed)
    handle = {"open": opened, "closed": closed}.get(h, h) if isinstance(h, str) else h
    try:
        if traced:
            with trace.recording():
                got = outcome(rpc.remote_handle64_invoke, handle, sc, make_args(kind))
        else:
            got = outcome(rpc.remote_handle64_invoke, handle, sc, make_args(kind))
        want = outcome(handle64._invoke_py, handle, sc, make_args(kind))
        assert got == want
    finally:
        lib.remote_handle64_close(opened)


def test_a_dsp_error_keeps_its_code_errno_and_origin(lib):
    h = lib.remote_handle64_open(TEST)
    try:
        with pytest.raises(rpc.FastRpcError) as e:
            rpc.remote_handle64_invoke(h, SC_FAIL, [(0x8000_0403).to_bytes(4, "little")])
        assert e.value.aee == 0x8000_0403 and e.value.origin == "dsp"
        with pytest.raises(rpc.BadParameterError, match="is not a uint32_t"):
            rpc.remote_handle64_invoke(h, 1 << 32, ())
        with pytest.raises(rpc.BadParameterError, match="is not a uint32_t"):
            rpc.remote_handle64_invoke(h, -1, ())
        for odd in (float(SC_NULL), "0x2000000", None, SC_NULL + 0j):  # (a float once converted)
            with pytest.raises(rpc.BadParameterError, match=r"sc .* is not a uint32_t"):
                rpc.remote_handle64_invoke(h, odd, ())
            with pytest.raises(rpc.BadParameterError, match=r"sc .* is not a uint32_t"):
                handle64._invoke_py(h, odd, ())
    finally:
        lib.remote_handle64_close(h)
