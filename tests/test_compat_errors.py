"""The AEE code -> exception class table, row by row, bare and DSP form."""
import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.errors import ERROR_CLASSES, error_class, raise_for
from qda_core._ext import load

abi = load("_abi")

EXPECTED = {
    "AEE_EBADPARM": rpc.BadParameterError, "AEE_EINVARGS": rpc.BadParameterError,
    "AEE_EBADSIZE": rpc.BadParameterError, "AEE_EBADDOMAIN": rpc.BadParameterError,
    "AEE_ENOMEMORY": rpc.NoMemoryError, "AEE_EINVHANDLE": rpc.InvalidHandleError,
    "AEE_EUNSUPPORTED": rpc.UnsupportedError, "AEE_EUNSUPPORTEDAPI": rpc.UnsupportedError,
    "AEE_EALREADYLOADED": rpc.AlreadyLoadedError, "AEE_EUNABLETOLOAD": rpc.UnableToLoadError,
    "AEE_EEXPIRED": rpc.ExpiredError, "AEE_EBADSTATE": rpc.BadStateError, "AEE_EALREADY": rpc.AlreadyError,
    "AEE_ENOSUCHMOD": rpc.NoSuchModuleError, "AEE_ENOSUCHSYMBOL": rpc.NoSuchModuleError,
    "AEE_ENOSUCHDEVICE": rpc.NoSuchDeviceError, "AEE_ENOSUCHMAP": rpc.NoSuchMapError,
    "AEE_EBADPERMS": rpc.BadPermissionsError, "AEE_ENOTINITIALIZED": rpc.NotInitializedError,
    "AEE_ECONNRESET": rpc.ConnectionResetFastRpcError, "AEE_ECONNREFUSED": rpc.ConnectionRefusedFastRpcError,
    "AEE_ENOSESSION": rpc.NoSessionError, "AEE_ERPC": rpc.RpcError, "AEE_ENOSUCH": rpc.ProcessRestartError,
    "AEE_EINTERRUPTED": rpc.InterruptedFastRpcError, "AEE_ESTUBSKELVERMISMATCH": rpc.VersionMismatchError,
}


def test_table_is_exactly_the_expected_rows():
    assert {abi.aee_name(c) if abi.aee_name(c) != "AEE_EBADHANDLE" else "AEE_EINVHANDLE": cls
            for c, cls in ERROR_CLASSES.items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_row(name):
    code = getattr(abi, name)
    cls = EXPECTED[name]
    with pytest.raises(cls) as e:
        raise_for(code)
    assert type(e.value) is cls and e.value.aee == code and e.value.origin == "host"
    assert isinstance(e.value, rpc.FastRpcError)
    dsp = abi.aee_to_dsp(code)
    if dsp != code:  # codes with a DSP form map to the same class, origin dsp, code unchanged
        with pytest.raises(cls) as e:
            raise_for(dsp)
        assert e.value.aee == dsp and e.value.origin == "dsp"
        with pytest.raises(cls) as e:  # the int32 retval spelling of the same code
            raise_for(dsp - (1 << 32))
        assert e.value.aee == dsp
    assert error_class(code) is cls


def test_python_bases():
    assert issubclass(rpc.BadParameterError, ValueError)
    assert issubclass(rpc.NoMemoryError, MemoryError)
    assert issubclass(rpc.UnsupportedError, NotImplementedError)
    assert issubclass(rpc.InvalidHandleError, LookupError)
    assert issubclass(rpc.ExpiredError, TimeoutError)


@pytest.mark.parametrize("code", [abi.AEE_EFAILED, abi.AEE_EUNKNOWN, abi.AEE_EFILE, 0x8000_0401, 0x7777])
def test_unlisted_codes_raise_the_base_class(code):
    with pytest.raises(rpc.FastRpcError) as e:
        raise_for(code, "ctx", errno=5, origin="driver")
    assert type(e.value) is rpc.FastRpcError and e.value.errno == 5 and e.value.origin == "driver"
    assert "ctx" in str(e.value)


def test_driver_errno_conversion_is_the_library_table():
    assert rpc.errno_to_aee(22) == rpc.AEE_EBADPARM and rpc.errno_to_aee(32) == rpc.AEE_ECONNRESET
    assert rpc.errno_to_aee is abi.errno_to_aee
