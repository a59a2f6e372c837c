"""The emulated DSP behind the real QDA accel driver and SMMU model (end to end)."""
import struct

import numpy as np
import pytest

pytest.importorskip("qda_core.soc")
from libadsprpc_compat.remotectl import ModuleOpenError, close_module, open_module  # noqa: E402
from qda_core import uapi  # noqa: E402
from qda_core.accel import GemRef  # noqa: E402
from qda_core.soc import Soc  # noqa: E402

TEST_URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


@pytest.fixture
def session():
    soc = Soc()
    with soc.open_device("cdsp") as f:
        assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        ret, h = open_module(f, TEST_URI)
        assert ret == 0 and h > 0x200
        yield soc, f, h
    assert soc.domain("cdsp").dsp.processes() == []  # close sent INIT_RELEASE


def test_copy_vs_shared_through_the_driver(session):
    soc, f, h = session
    caller = bytearray(b"\x10\x20\x30\xff" * 4)
    assert f.invoke(h, 0x04000100, [caller]) == 0
    assert caller == b"\x01" * 16  # by copy: the DSP saw a zeroed buffer, result copied back
    gem = f.gem_create(4096)
    view = f.mmap(f.gem_mmap_offset(gem), 4096)
    view[:16] = b"\x10\x20\x30\xff" * 4
    assert f.invoke(h, 0x04000100, [GemRef(gem, view[:16])]) == 0
    assert bytes(view[:16]) == b"\x11\x21\x31\x00" * 4  # shared: caller bytes + 1, in place
    view.release()
    f.gem_close(gem)


def test_mem_map_then_mapped_read(session):
    soc, f, h = session
    gem = f.gem_create(8192)
    view = f.mmap(f.gem_mmap_offset(gem), 8192)
    view[4096:4104] = b"mapped!!"
    vaddr = f.map(uapi.QDA_MAP_REQUEST_ATTR, gem, size=8192)
    assert vaddr and vaddr % 4096 == 0
    out = bytearray(8)
    assert f.invoke(h, 0x08010100, [struct.pack("<iII", gem, 4096, 8), out]) == 0
    assert out == b"mapped!!"
    f.munmap(uapi.QDA_MAP_REQUEST_ATTR, fd=gem, vaddr=vaddr, size=8192)
    assert f.invoke(h, 0x08010100, [struct.pack("<iII", gem, 0, 8), out]) == 0x80000448
    view.release()
    f.gem_close(gem)


def test_calculator_and_crash_through_the_driver(session):
    soc, f, h = session
    ret, calc = open_module(f, "file:///libcalculator_skel.so?calculator_skel_handle_invoke"
                               "&_modver=1.0&_idlver=1.2.3&_dom=cdsp")
    vec = np.arange(1000, dtype=np.int32)
    res = bytearray(8)
    assert f.invoke(calc, 0x02020100, [struct.pack("<i", 1000), vec, res]) == 0
    assert struct.unpack("<q", res)[0] == 499500
    with pytest.raises(ModuleOpenError) as ei:
        open_module(f, "file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    assert ei.value.code == 0x8000043E
    assert f.invoke(h, 0x06000000, []) == 0x8000040D
    assert f.invoke(calc, 0x02020100, [struct.pack("<i", 1000), vec, res]) == 0x8000040D
    assert close_module(f, h) == 0x8000040D
    (info,) = soc.domain("cdsp").dsp.processes()
    assert info.state == "crashed" and not info.signed
