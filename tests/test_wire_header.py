"""fastrpc_wire.h and qda_core.wire define the kernel<->DSP protocol twice (C for the C core,
Python for the emulator): every numeric #define of the header must equal its wire constant."""
import pathlib
import re

from qda_core import wire

HEADER = pathlib.Path(__file__).resolve().parents[1] / "csrc/include/qdarpc/fastrpc_wire.h"
# header name -> wire name, where they differ beyond the FASTRPC_ prefix
RENAMES = {"FASTRPC_PAGE_SIZE": "PAGE_SIZE", "FASTRPC_ALIGN": "FASTRPC_ALIGN",
           "FASTRPC_MAX_FDLIST": "FASTRPC_MAX_FDLIST", "FASTRPC_MAX_CRCLIST": "FASTRPC_MAX_CRCLIST",
           "FASTRPC_INIT_HANDLE": "FASTRPC_INIT_HANDLE",
           "FASTRPC_DSP_UTILITIES_HANDLE": "FASTRPC_DSP_UTILITIES_HANDLE"}


def numeric_defines():
    for name, value in re.findall(r"^#define\s+(\w+)\s+(\d+)u?\b", HEADER.read_text(), re.M):
        yield name, int(value)


def test_every_numeric_define_matches_wire():
    seen = 0
    for name, value in numeric_defines():
        py = RENAMES.get(name) or name.removeprefix("FASTRPC_")
        assert hasattr(wire, py), f"{name} ({value}) has no counterpart in qda_core.wire"
        assert getattr(wire, py) == value, f"{name} = {value} in the header, wire.{py} = {getattr(wire, py)}"
        seen += 1
    assert seen >= 16  # the parse found the table, not nothing


def test_page_mask_matches():
    assert "(~(uint64_t)(FASTRPC_PAGE_SIZE - 1))" in HEADER.read_text()
    assert wire.PAGE_MASK == ~(wire.PAGE_SIZE - 1) & (2**64 - 1)
