"""Testing FastRPC code with the qdarpc pytest plugin: `pytest test_example.py` after `pip install qdarpc`."""
import struct

import pytest

import libadsprpc_compat as rpc

CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" + rpc.CDSP_DOMAIN
SUM = rpc.REMOTE_SCALARS_MAKE(2, 2, 1)  # calculator_sum(vec in, int64 out)


def dsp_sum(values):
    """The code under test, ported from C: sums ``values`` on the compute DSP through an rpcmem
    buffer, with the module-level API (in a test: on the ``fastrpc`` fixture's backend)."""
    buf = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4 * len(values))
    try:
        buf[:] = struct.pack(f"<{len(values)}i", *values)
        h = rpc.remote_handle64_open(CALC)
        try:
            res = bytearray(8)
            rpc.remote_handle64_invoke(h, SUM, [struct.pack("<i", len(values)), buf, res])
            return struct.unpack("<q", res)[0]
        finally:
            rpc.remote_handle64_close(h)
    finally:
        rpc.rpcmem_free(buf)


@pytest.mark.qdarpc(backends=["accel", "legacy"])      # test_sum[accel], test_sum[legacy]
def test_sum(fastrpc):                                  # dsp_sum runs on fastrpc: each backend
    assert dsp_sum(range(100)) == 4950


@pytest.mark.qdarpc(faults="alloc:rpcmem@1")            # the 1st rpcmem_alloc fails
def test_sum_without_memory(fastrpc, qdarpc_soc):
    with pytest.raises(rpc.NoMemoryError):
        dsp_sum([1, 2, 3])
    assert [f.rule for f in qdarpc_soc.faults.fired] == ["alloc:rpcmem@1"]
    assert dsp_sum([1, 2, 3]) == 6


@pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal")
def test_sum_across_a_dsp_restart(fastrpc, qdarpc_soc):
    with qdarpc_soc.faults.inject("ssr:cdsp@invoke=1"):  # cdsp restarts during the next call
        with pytest.raises(rpc.FastRpcError) as e:
            dsp_sum([1, 2, 3])
    # each driver's code: accel ENODEV, legacy EPIPE (AEE_ECONNRESET)
    assert e.value.aee == {"accel": rpc.AEE_ENOSUCHDEVICE, "legacy": rpc.AEE_ECONNRESET}[fastrpc.backend]
    assert dsp_sum([1, 2, 3]) == 6                      # a new session on the restarted DSP
