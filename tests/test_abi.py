"""qda_core._abi: AEE table, errno -> AEE, DSP encoding, scalars macros, wire struct facts.

Expected values are written out from the spec (legacy_fastrpc_api.md sections 2 and 5) and from
qualcomm/fastrpc inc/AEEStdErr.h, never read back from the module under test.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qda_core import _ext, wire

abi = _ext.load("_abi")

OFF = 0x80000400

# --- spec 5.2: convert_kernel_to_user_error -----------------------------------------------

AEE_ERPC, AEE_EBADPARM, AEE_ENOSUCHDEVICE, AEE_ENOMEMORY = 0x200, 0x0E, 0x43, 0x02
AEE_EEXPIRED, AEE_ECONNREFUSED, AEE_ECONNRESET, AEE_EUNSUPPORTED = 0x0C, 0x72, 104, 0x14
AEE_EFILE, AEE_EBADPERMS = 0x201, 0x4E

ERRNO_TABLE = [
    *[(e, AEE_ERPC) for e in ("EIO", "ETOOMANYREFS", "EADDRNOTAVAIL", "ENOTTY", "EBADRQC")],
    *[(e, AEE_EBADPARM) for e in ("EFAULT", "ECHRNG", "EBADFD", "EINVAL", "EBADF", "EBADE", "EBADR",
                                  "EOVERFLOW", "EHOSTDOWN", "EEXIST", "EBADMSG")],
    *[(e, AEE_ENOSUCHDEVICE) for e in ("ENXIO", "ENODEV", "ENOKEY")],
    *[(e, AEE_ENOMEMORY) for e in ("ENOBUFS", "ENOMEM")],
    ("EFBIG", AEE_EFILE),
    *[(e, AEE_ERPC) for e in ("ENOENT", "EBUSY")],  # fall through to the default
    *[(e, AEE_EEXPIRED) for e in ("ENOSR", "EDQUOT", "ETIMEDOUT", "EUSERS", "ESHUTDOWN")],
    *[(e, AEE_ECONNREFUSED) for e in ("ENOTCONN", "ECONNREFUSED")],
    *[(e, AEE_ECONNRESET) for e in ("ECONNRESET", "EPIPE")],
    ("EPROTONOSUPPORT", AEE_EUNSUPPORTED),
    *[(e, AEE_EBADPERMS) for e in ("EACCES", "EPERM")],
]


@pytest.mark.parametrize("name,aee", ERRNO_TABLE, ids=[n for n, _ in ERRNO_TABLE])
def test_errno_to_aee_table(name, aee):
    err = getattr(errno, name)
    assert abi.errno_to_aee(err) == aee
    assert abi.errno_to_aee(-err) == aee  # kernel-style -errno


@pytest.mark.parametrize("name", ["EAGAIN", "EINTR", "ENOSPC", "ESRCH", "ERFKILL"])
def test_errno_unlisted_in_range_is_erpc(name):
    assert abi.errno_to_aee(getattr(errno, name)) == AEE_ERPC


@pytest.mark.parametrize("err", [0, 136, 4095, 2**31 - 1])
def test_errno_outside_library_range_stays_unknown(err):
    assert abi.errno_to_aee(err) == -1


@pytest.mark.parametrize("bad,exc", [(2**31, ValueError), (-(2**31), ValueError), ("5", TypeError), (5.0, TypeError)])
def test_errno_to_aee_rejects_bad_input(bad, exc):
    with pytest.raises(exc, match="errno"):
        abi.errno_to_aee(bad)


# --- spec 5.1: AEE values and DSP forms ---------------------------------------------------

# (name, bare value, DSP form, what aee_name(bare value) answers when the value is shared)
AEE_ROWS = [
    ("AEE_SUCCESS", 0, 0, None),
    ("AEE_EUNKNOWN", -1, 0xFFFFFFFF, None),
    ("AEE_EFAILED", 0x01, 0x80000401, None),
    ("AEE_ENOMEMORY", 0x02, 0x80000402, None),
    ("AEE_EALREADYLOADED", 0x05, 0x80000405, None),
    ("AEE_EUNABLETOLOAD", 0x06, 0x80000406, None),
    ("AEE_EEXPIRED", 0x0C, 0x8000040C, None),
    ("AEE_EBADSTATE", 0x0D, 0x8000040D, None),
    ("AEE_EBADPARM", 0x0E, 0x8000040E, None),
    ("AEE_EBADITEM", 0x10, 0x80000410, None),
    ("AEE_EINVALIDFORMAT", 0x11, 0x80000411, None),
    ("AEE_EUNSUPPORTED", 0x14, 0x80000414, None),
    ("AEE_ERESOURCENOTFOUND", 0x16, 0x80000416, None),
    ("AEE_EALREADY", 0x1A, 0x8000041A, None),
    ("AEE_EITEMBUSY", 0x20, 0x80000420, None),
    ("AEE_EINVHANDLE", 0x2C, 0x8000042C, None),
    ("AEE_EBADHANDLE", 0x2C, 0x8000042C, "AEE_EINVHANDLE"),
    ("AEE_ENOSUCHMOD", 0x3E, 0x8000043E, None),
    ("AEE_ENOSUCHSYMBOL", 0x42, 0x80000442, None),
    ("AEE_ENOSUCHDEVICE", 0x43, 0x80000443, None),
    ("AEE_ENOSUCHMAP", 0x48, 0x80000448, None),
    ("AEE_EBADDOMAIN", 0x4B, 0x8000044B, None),
    ("AEE_EBADSIZE", 0x4D, 0x8000044D, None),
    ("AEE_EBADPERMS", 0x4E, 0x8000044E, None),
    # Bare 0x68 == 104 is read as the no-offset AEE_ECONNRESET (see test_dsp_forms_of_shared_values).
    ("AEE_ENORPCMEMORY", 0x68, 104, "AEE_ECONNRESET"),
    ("AEE_ENOTINITIALIZED", 0x6B, 0x8000046B, None),
    ("AEE_EUNSUPPORTEDAPI", 0x6C, 0x8000046C, None),
    ("AEE_ECONNREFUSED", 0x72, 0x80000472, None),
    ("AEE_ENOSESSION", 0x8A, 0x8000048A, None),
    ("AEE_EBUSY", 0x183, 0x80000583, None),
    ("AEE_ESTUBSKELVERMISMATCH", 0x194, 0x80000594, None),
    ("AEE_ERPC", 0x200, 0x80000600, None),
    ("AEE_EFILE", 0x201, 0x80000601, None),
    ("AEE_ENOSUCH", 39, 39, None),
    ("AEE_EINTERRUPTED", 46, 46, None),
    ("AEE_ECONNRESET", 104, 104, None),
    # AEEStdErr.h writes AEE_EWOULDBLOCK as a bare (516), like the three above: no offset.
    ("AEE_EWOULDBLOCK", 516, 516, None),
]


@pytest.mark.parametrize("name,value,dsp,bare_name", AEE_ROWS, ids=[r[0] for r in AEE_ROWS])
def test_aee_row(name, value, dsp, bare_name):
    assert getattr(abi, name) == value
    assert abi.aee_name(value) == (bare_name or name)
    assert abi.aee_to_dsp(value) == dsp
    if dsp != value and value > 0:
        assert abi.is_dsp_error(dsp)
        assert abi.aee_name(dsp) == (name if name != "AEE_EBADHANDLE" else "AEE_EINVHANDLE")
        assert abi.aee_to_retval(value) == dsp - 2**32  # what an int32 retval carries
        assert abi.aee_name(dsp - 2**32) == abi.aee_name(dsp)
        assert abi.aee_to_dsp(dsp) == dsp  # already DSP form: unchanged
    else:
        assert not abi.is_dsp_error(dsp)


@pytest.mark.parametrize("name,value", [
    ("AEE_ECLASSNOTSUPPORT", 0x03), ("AEE_EREADONLY", 0x31), ("AEE_EINVALIDMSG", 0x32),
    ("AEE_ENOSUCHCLIENT", 0x4A), ("AEE_EIOCTL", 0x56), ("AEE_EINVARGS", 0x71), ("AEE_EUNSIGNEDMOD", 0x81),
    ("AEE_ENOSUCHJOB", 0x84), ("AEE_ENOSUCHGROUP", 0x84), ("AEE_U2GCLIENT_OPEN", 0x89),
    ("AEE_ESMD_OFFSET", 0x100), ("AEE_ESMDOPENFAILED", 0x103), ("AEE_EGLINK_OFFSET", 0x100),
    ("AEE_EGLINKWRITE", 0x104), ("AEE_EGLINKREGISTER", 0x105), ("AEE_EDAL_OFFSET", 0x120),
    ("AEE_EDCVSREQUEST", 0x126), ("AEE_EQURT_OFFSET", 0x140), ("AEE_EQURTMIGRATESECURE", 0x159),
    ("AEE_EQURTQDIOPEN", 0x160), ("AEE_EQURTWAIT", 0x163), ("AEE_EMMPM_OFFSET", 0x170),
    ("AEE_PDRREGFAIL", 0x178), ("AEE_DEFAULT_PROCESS", 0x180), ("AEE_ENULLCONTEXT", 0x181),
    ("AEE_EINVALIDJOB", 0x182), ("E_APPS_BUSY_RETRY_LATER", 0x190), ("E_NO_MORE_FREE_SECTIONS", 0x193),
])
def test_header_ranges(name, value):
    """Spot checks across the AEEStdErr.h ranges beyond the spec's table."""
    assert getattr(abi, name) == value


def test_dsp_forms_of_shared_values():
    # Side-specific names: CPU calls 0x100 SMD, the DSP calls it GLINK.
    assert abi.aee_name(0x100) == "AEE_ESMD_OFFSET"
    assert abi.aee_name(OFF + 0x100) == "AEE_EGLINK_OFFSET"
    assert abi.aee_name(0x104) == "AEE_EGLINKWRITE"  # only name of this value
    # 0x68 with the offset can only be AEE_ENORPCMEMORY; 39/46 have no offset form at all.
    assert abi.aee_name(OFF + 0x68) == "AEE_ENORPCMEMORY"
    assert abi.aee_name(OFF + 39) is None
    assert abi.aee_name(OFF + 46) is None
    assert abi.aee_name(OFF + 0x84) == "AEE_ENOSUCHJOB"


@pytest.mark.parametrize("code", [0x73, 0x80, 0x202, 1025, 0x7FFFFFFF, OFF + 0x27, OFF + 0x3FF, 0xDEADBEEF])
def test_unknown_codes_have_no_name(code):
    assert abi.aee_name(code) is None
    assert abi.aee_describe(code) is None


@pytest.mark.parametrize("code,dsp", [
    (OFF, False), (OFF + 1, True), (OFF + 1024, True), (OFF + 1025, False), (OFF - 1, False),
    (0x8000040E - 2**32, True), (14, False), (-1, False), (0, False), (0xFFFFFFFF, False),
])
def test_is_dsp_error_bounds(code, dsp):
    """DSP form is (DSP_AEE_EOFFSET, DSP_AEE_EOFFSET + 1024], as the library's check_rpc_error."""
    assert abi.is_dsp_error(code) is dsp


@pytest.mark.parametrize("code", [0, -5, 1025, 0x7FFFFFFF, OFF + 0xE])
def test_aee_to_dsp_passes_non_codes_through(code):
    assert abi.aee_to_dsp(code) == code & 0xFFFFFFFF


@pytest.mark.parametrize("fn", [abi.aee_name, abi.aee_to_dsp, abi.is_dsp_error, abi.aee_describe])
@pytest.mark.parametrize("bad,exc", [(2**32, ValueError), (-(2**31) - 1, ValueError), (None, TypeError), ("14", TypeError)])
def test_code_functions_reject_bad_input(fn, bad, exc):
    with pytest.raises(exc, match="AEE code"):
        fn(bad)


def test_dsp_offset_and_descriptions():
    assert abi.DSP_AEE_EOFFSET == OFF
    assert abi.aee_describe(0x8000040E) == "Invalid parameter"
    assert abi.aee_describe(abi.AEE_ERPC) == "Error in the FastRPC implementation"


def test_table_is_consistent():
    names = [n for n, _, _ in abi.AEE_TABLE]
    assert len(names) == len(set(names))
    by_value: dict[int, set[str]] = {}
    for name, value, desc in abi.AEE_TABLE:
        assert re.fullmatch(r"(AEE|E)_[A-Z0-9_]+", name)
        assert getattr(abi, name) == value
        assert desc
        by_value.setdefault(value, set()).add(name)
    for value, group in by_value.items():
        assert abi.aee_name(value) in group
        dsp = abi.aee_to_dsp(value)
        if dsp != value & 0xFFFFFFFF:
            assert abi.aee_name(dsp) in group


def test_stub_lists_every_code():
    stub = (Path(abi.__file__).parent / "_abi.pyi").read_text()
    listed = set(re.findall(r"^((?:AEE|E)_[A-Z0-9_]+): int$", stub, re.M)) - {"AEE_CODE_MAX", "AEE_TABLE"}
    assert listed == {n for n, _, _ in abi.AEE_TABLE}


# --- scalars ------------------------------------------------------------------------------

@pytest.mark.parametrize("sc,attr,method,nin,nout,ninh,nouth", [
    (0x02020100, 0, 2, 2, 1, 0, 0),  # calculator_sum
    (0x03020100, 0, 3, 2, 1, 0, 0),  # calculator_max
    (0x00020001, 0, 0, 2, 0, 0, 1),  # implicit open
    (0x01000010, 0, 1, 0, 0, 1, 0),  # implicit close
    (0xFFFFFFFF, 7, 31, 255, 255, 15, 15),
])
def test_scalars_spec_examples(sc, attr, method, nin, nout, ninh, nouth):
    assert abi.REMOTE_SCALARS_MAKEX(attr, method, nin, nout, ninh, nouth) == sc
    assert abi.REMOTE_SCALARS_METHOD_ATTR(sc) == attr
    assert abi.REMOTE_SCALARS_METHOD(sc) == method
    assert abi.REMOTE_SCALARS_INBUFS(sc) == nin
    assert abi.REMOTE_SCALARS_OUTBUFS(sc) == nout
    assert abi.REMOTE_SCALARS_INHANDLES(sc) == ninh
    assert abi.REMOTE_SCALARS_OUTHANDLES(sc) == nouth
    assert abi.REMOTE_SCALARS_LENGTH(sc) == nin + nout + ninh + nouth
    if attr == ninh == nouth == 0:
        assert abi.REMOTE_SCALARS_MAKE(method, nin, nout) == sc


def test_scalars_make_masks_fields():
    assert abi.REMOTE_SCALARS_MAKEX(8, 32, 256, 256, 16, 16) == 0
    assert abi.REMOTE_SCALARS_MAKEX(9, 33, 257, 258, 17, 18) == 0x21010212
    assert abi.REMOTE_SCALARS_MAKE(0x22, 0x101, 0x1FF) == 0x0201FF00
    assert abi.REMOTE_SCALARS_LENGTH(0xFFFFFFFF) == abi.REMOTE_SCALARS_MAX_LENGTH == 540


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_scalars_reject_out_of_range(bad):
    with pytest.raises(OverflowError):
        abi.REMOTE_SCALARS_METHOD(bad)
    with pytest.raises(OverflowError):
        abi.REMOTE_SCALARS_MAKEX(0, bad, 0, 0, 0, 0)


@given(attr=st.integers(0, 7), method=st.integers(0, 31), nin=st.integers(0, 255),
       nout=st.integers(0, 255), ninh=st.integers(0, 15), nouth=st.integers(0, 15))
def test_scalars_roundtrip(attr, method, nin, nout, ninh, nouth):
    sc = abi.REMOTE_SCALARS_MAKEX(attr, method, nin, nout, ninh, nouth)
    assert sc == wire.scalars(method, nin, nout, ninh, nouth, attr)
    got = (abi.REMOTE_SCALARS_METHOD_ATTR(sc), abi.REMOTE_SCALARS_METHOD(sc), abi.REMOTE_SCALARS_INBUFS(sc),
           abi.REMOTE_SCALARS_OUTBUFS(sc), abi.REMOTE_SCALARS_INHANDLES(sc), abi.REMOTE_SCALARS_OUTHANDLES(sc))
    assert got == (attr, method, nin, nout, ninh, nouth)
    assert abi.REMOTE_SCALARS_LENGTH(sc) == wire.sc_length(sc) == nin + nout + ninh + nouth


@given(st.integers(0, 2**32 - 1))
def test_scalars_word_roundtrip(sc):
    f = (abi.REMOTE_SCALARS_METHOD_ATTR(sc), abi.REMOTE_SCALARS_METHOD(sc), abi.REMOTE_SCALARS_INBUFS(sc),
         abi.REMOTE_SCALARS_OUTBUFS(sc), abi.REMOTE_SCALARS_INHANDLES(sc), abi.REMOTE_SCALARS_OUTHANDLES(sc))
    assert abi.REMOTE_SCALARS_MAKEX(*f) == sc


# --- wire structs -------------------------------------------------------------------------

@pytest.mark.parametrize("cname,pystruct,size", [
    ("fastrpc_msg", wire.MSG, 40),
    ("fastrpc_invoke_rsp", wire.RSP, 16),
    ("fastrpc_invoke_args", wire.INVOKE_ARG, 24),
    ("fastrpc_phy_page", wire.PHY_PAGE, 16),
    ("fastrpc_remote_arg", wire.BUF_ARG, 16),
    ("fastrpc_remote_arg", wire.DMA_ARG, 16),
    ("fastrpc_invoke_buf", wire.INVOKE_BUF, 8),
    ("fastrpc_buf_arg", wire.BUF_ARG, 16),
    ("remote_arg", None, 16),
    ("remote_buf", None, 16),
    ("remote_dma_handle", None, 8),
])
def test_struct_sizes(cname, pystruct, size):
    assert getattr(abi, f"sizeof_{cname}") == size
    if pystruct is not None:
        assert pystruct.size == size


def test_fastrpc_msg_offsets_match_wire_format():
    expect = {"client_id": 0, "tid": 4, "ctx": 8, "handle": 16, "sc": 20, "addr": 24, "size": 32}
    assert abi.OFFSETOF["fastrpc_msg"] == expect
    # The Python struct puts each field at the same place: pack one distinct byte per field.
    fields = list(expect)
    sizes = abi.FIELD_SIZEOF["fastrpc_msg"]
    values = [(i + 1) * 0x11 for i in range(len(fields))]
    raw = wire.MSG.pack(*values)
    for name, v in zip(fields, values):
        off, n = expect[name], sizes[name]
        assert int.from_bytes(raw[off:off + n], "little") == v


@pytest.mark.parametrize("cname,expect", [
    ("fastrpc_invoke_rsp", {"ctx": 0, "retval": 8}),
    ("fastrpc_invoke_args", {"ptr": 0, "length": 8, "fd": 16, "attr": 20}),
    ("fastrpc_phy_page", {"addr": 0, "size": 8}),
    ("fastrpc_invoke_buf", {"num": 0, "pgidx": 4}),
    ("fastrpc_dma_arg", {"fd": 0, "offset": 4, "len": 8}),
    ("remote_buf", {"pv": 0, "nLen": 8}),
    ("remote_dma_handle", {"fd": 0, "offset": 4}),
])
def test_other_offsets(cname, expect):
    assert abi.OFFSETOF[cname] == expect


def test_metadata_layout_from_sizes():
    """The payload metadata size follows from the struct sizes (fastrpc_wire.h header comment)."""
    per_arg = abi.sizeof_fastrpc_remote_arg + abi.sizeof_fastrpc_invoke_buf + abi.sizeof_fastrpc_phy_page
    assert [per_arg * n + 8 * wire.FASTRPC_MAX_FDLIST + 4 * wire.FASTRPC_MAX_CRCLIST for n in (0, 3)] == \
        [wire.metadata_size(0), wire.metadata_size(3)]
