"""Subsystem restart: both drivers lose their channel, the DSP loses every PD, nodes re-probe."""
import errno
import struct

import pytest

from libadsprpc_compat.remotectl import open_module

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def test_restart(soc):
    old_accel = soc.open_device("cdsp")
    old_accel.init_create(attrs=8)
    _, h = open_module(old_accel, TEST)
    legacy = soc.open("/dev/fastrpc-cdsp")
    legacy.init_create(attrs=8)
    dsp = soc.domain("cdsp").dsp
    assert {p.channel for p in dsp.processes()} == {"accel", "legacy"}

    new_path = soc.restart("cdsp")
    assert new_path == "/dev/accel/accel3" and old_accel.device.path == "/dev/accel/accel1"
    assert soc.accel_nodes() == ["/dev/accel/accel0", "/dev/accel/accel3", "/dev/accel/accel2"]
    assert dsp.processes() == []
    with pytest.raises(OSError) as e:
        old_accel.invoke(h, 0x02000000, [])
    assert e.value.errno == errno.ENODEV
    assert old_accel.query() == "cdsp"  # not FastRPC-backed: still answers
    with pytest.raises(OSError) as e:
        legacy.invoke(h, 0x02000000, [])
    assert e.value.errno == errno.EPIPE
    with pytest.raises(OSError) as e:
        old_accel.device.open()
    assert e.value.errno == errno.ENODEV
    old_accel.close()
    legacy.close()

    with soc.open(new_path) as f:  # the DSP is back: a fresh PD works
        f.init_create(attrs=8)
        _, h2 = open_module(f, TEST)
        out = bytearray(8)
        assert f.invoke(h2, 0x03010100, [struct.pack("<q", 7), out]) == 0 and out == struct.pack("<q", 7)
    with soc.open("/dev/fastrpc-cdsp") as g:
        assert g.init_create(attrs=8) == 0
    assert soc.domain("cdsp").bus.free_count == 8
