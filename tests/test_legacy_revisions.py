"""The legacy front end's kernel revisions: ``legacy:misc-7.2`` (today's emulation),
``legacy:misc-7.3`` (upstream Linux 7.3) and ``legacy:qda-shim`` (``/dev/fastrpc-*`` served by the
QDA core, latest posting).

Fidelity first: every ioctl number, struct size and field offset of every revision against the
spec tables (docs/spec/legacy_fastrpc_api.md §7.1, docs/spec/kernel_revisions_2026.md §5), the ctx
word on the wire, the payload metadata with and without the poll word. Then behaviour, on the
calculator flow and on error paths, on each revision: SET_OPTION and poll mode, GET_DSP_INFO's
``domain``, and the shim's node policy, ALLOC/FREE_DMA_BUFF, per-call fd imports with the offset
from the caller's mapping (no size check), INIT_CREATE without an fd, the non-secure node, the
shared capability cache, per-file exclusive context banks and EPIPE at SSR.
"""
import errno
import os
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.remotectl import close_module, open_module
from qda_core import fastrpc, kernels, marshal, trace, uapi, wire
from qda_core.dsp import aee
from qda_core.fastrpc import CTX_ID4, CTX_ID8_SEQ
from qda_core.legacy import DmaBufRef, HandleArg, dmabuf_mmap
from qda_core.legacy.revisions import MISC_NODES, POLICIES, SHIM_NODES
from qda_core.soc import POLL_MODE, Soc
from qda_core.uaccess import address

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import (CALC, SC_CHECKSUM, SC_MAX, SC_NULL, SC_SUM, TEST, UNSIGNED,  # noqa: E402
                            hexagon_elf, raises_errno)

REVS = ["misc-7.2", "misc-7.3", "qda-shim"]
NEW = ["misc-7.3", "qda-shim"]           # the revisions with SET_OPTION and the 7.3 ctx word
CDSP, CDSP_SECURE = "/dev/fastrpc-cdsp", "/dev/fastrpc-cdsp-secure"
POLL = struct.pack("<II", 1, 1000)       # adsp_current_process1 poll_mode(enable=1, timeout=1000)
by_rev = pytest.mark.parametrize("rev", REVS)
by_new = pytest.mark.parametrize("rev", NEW)


# --- the spec tables ------------------------------------------------------------------------------
#: docs/spec/legacy_fastrpc_api.md §7.1: name -> (number, struct size or None, field offsets).
SPEC_72 = {
    "FASTRPC_IOCTL_ALLOC_DMA_BUFF": (0xC0105201, 16, {"fd": 0, "flags": 4, "size": 8}),
    "FASTRPC_IOCTL_FREE_DMA_BUFF": (0xC0045202, 4, {}),
    "FASTRPC_IOCTL_INVOKE": (0xC0105203, 16, {"handle": 0, "sc": 4, "args": 8}),
    "FASTRPC_IOCTL_INIT_ATTACH": (0x00005204, None, {}),
    "FASTRPC_IOCTL_INIT_CREATE": (0xC0185205, 24, {"filelen": 0, "filefd": 4, "attrs": 8, "siglen": 12, "file": 16}),
    "FASTRPC_IOCTL_MMAP": (0xC0205206, 32, {"fd": 0, "flags": 4, "vaddrin": 8, "size": 16, "vaddrout": 24}),
    "FASTRPC_IOCTL_MUNMAP": (0xC0105207, 16, {"vaddrout": 0, "size": 8}),
    "FASTRPC_IOCTL_INIT_ATTACH_SNS": (0x00005208, None, {}),
    "FASTRPC_IOCTL_INIT_CREATE_STATIC": (0xC0105209, 16, {"namelen": 0, "memlen": 4, "name": 8}),
    "FASTRPC_IOCTL_MEM_MAP": (0xC040520A, 64, {"version": 0, "fd": 4, "offset": 8, "flags": 12, "vaddrin": 16,
                                               "length": 24, "vaddrout": 32, "attrs": 40, "reserved": 44}),
    "FASTRPC_IOCTL_MEM_UNMAP": (0xC030520B, 48, {"vesion": 0, "fd": 4, "vaddr": 8, "length": 16, "reserved": 24}),
    "FASTRPC_IOCTL_GET_DSP_INFO": (0xC01C520D, 28, {"domain": 0, "attribute_id": 4, "capability": 8,
                                                    "reserved": 12}),
}
#: docs/spec/kernel_revisions_2026.md §5: Linux 7.3 adds SET_OPTION (0xC020520C, 32 bytes) and
#: renames GET_DSP_INFO's ``domain`` to ``unused``.
SPEC_73 = {
    **SPEC_72,
    "FASTRPC_IOCTL_SET_OPTION": (0xC020520C, 32, {"request_id": 0, "value": 4, "reserved": 8}),
    "FASTRPC_IOCTL_GET_DSP_INFO": (0xC01C520D, 28, {"unused": 0, "attribute_id": 4, "capability": 8,
                                                    "reserved": 12}),
}
SPEC = {"misc-7.2": SPEC_72, "misc-7.3": SPEC_73, "qda-shim": SPEC_73}


@by_rev
def test_every_number_and_layout_of_the_uapi(rev):
    table = uapi.LEGACY_UAPI[rev]
    assert table is POLICIES[rev].ioctls
    assert {i.name: i.number for i in table.values()} == {n: v[0] for n, v in SPEC[rev].items()}
    assert list(table) == sorted(table, key=uapi.IOC_NR)  # in number order
    for ioc in table.values():
        number, size, offsets = SPEC[rev][ioc.name]
        assert (uapi.IOC_TYPE(number), uapi.IOC_NR(number)) == (ord("R"), ioc.nr)
        if size is None:
            assert ioc.layout is None and uapi.IOC_DIR(number) == uapi.IOC_NONE
            continue
        assert ioc.layout.size == size == uapi.IOC_SIZE(number)
        assert {f: ioc.layout.offset(f) for f in offsets} == offsets
    if rev != "misc-7.2":
        opt = table[uapi.FASTRPC_IOCTL_SET_OPTION].layout
        assert opt.fields["reserved"] == (8, "s32[6]", 6)


def test_constants_of_7_3():
    # include/uapi/misc/fastrpc.h and drivers/misc/fastrpc.c of Linux 7.3 (commit 96e62cc0a84d)
    assert uapi.FASTRPC_IOCTL_SET_OPTION == 0xC020520C
    assert (uapi.FASTRPC_POLL_MODE, uapi.FASTRPC_POLL_MODE_DISABLE, uapi.FASTRPC_POLL_MODE_ENABLE) == (1, 0, 1)
    assert (wire.FASTRPC_POLL_RESPONSE, wire.FASTRPC_MAX_STATIC_HANDLE, wire.CTX_ASYNC_BIT) == (0xDECAF, 20, 0x10)
    assert wire.CURRENT_PROCESS1_POLL_MODE == wire.scalars(9, 1, 0)  # poll_mode(uint32, uint32)
    # FASTRPC_CTXID_MASK GENMASK(11, 4) up to 7.2; GENMASK(15, 8) and seq << 16 from 7.3
    assert (CTX_ID4.id_mask, CTX_ID4.seq_shift, CTX_ID4.poll_word) == (0xFF0, None, False)
    assert (CTX_ID8_SEQ.id_mask, CTX_ID8_SEQ.seq_shift, CTX_ID8_SEQ.poll_word) == (0xFF00, 16, True)
    assert {r: POLICIES[r].ctx for r in REVS} == {"misc-7.2": CTX_ID4, "misc-7.3": CTX_ID8_SEQ,
                                                  "qda-shim": CTX_ID8_SEQ}


def test_ctx_word_encoding_and_the_sequence_wrap():
    assert CTX_ID4.encode(7, 99, 1) == 0x71
    assert CTX_ID8_SEQ.encode(7, 1, 1) == 0x1_0701
    assert CTX_ID8_SEQ.encode(255, 0xFFFF, 2) == 0xFFFF_FF02
    # atomic_inc_return on an int: past INT_MAX the sequence is negative, (u64) sign-extends it
    # and FIELD_PREP(GENMASK_ULL(63, 16)) keeps its low 48 bits
    assert fastrpc._s32_inc(2**31 - 1) == -2**31
    assert CTX_ID8_SEQ.encode(1, -2**31, 1) == 0xFFFF_8000_0000_0101
    assert CTX_ID8_SEQ.encode(1, -1, 0) == 0xFFFF_FFFF_FFFF_0100
    assert CTX_ID8_SEQ.slot(0xFFFF_8000_0000_0101) == 1 and CTX_ID4.slot(0x71) == 7


def test_kernel_table_entries_are_the_policies():
    assert set(kernels.REVISIONS["legacy"]) == set(POLICIES) == set(REVS)
    for name, rev in kernels.REVISIONS["legacy"].items():
        assert rev.frontend == "legacy" and rev.source and rev.title
    assert kernels.REVISIONS["legacy"]["misc-7.3"].exact and not kernels.REVISIONS["legacy"]["qda-shim"].exact
    topics = {t for t, _ in kernels.REVISIONS["legacy"]["qda-shim"].choices}
    for topic in ("nodes", "context bank", "INVOKE fds", "INIT_CREATE ELF by pointer", "non-secure node",
                  "GET_DSP_INFO", "ctx word and ids"):
        assert topic in topics, topic
    assert "poll completion" in {t for t, _ in kernels.REVISIONS["legacy"]["misc-7.3"].choices}


def test_default_is_the_newest_exactly_known_revision(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    assert kernels.DEFAULT["legacy"] == "misc-7.3"
    soc = Soc("minimal")
    assert soc.domain("cdsp").legacy_channel.revision.name == "misc-7.3"
    assert soc.domain("cdsp").legacy[CDSP].revision.name == "misc-7.3"


# --- nodes ------------------------------------------------------------------------------------------
def test_node_policy_of_each_revision():
    misc = ["/dev/fastrpc-adsp", "/dev/fastrpc-mdsp", "/dev/fastrpc-sdsp", CDSP_SECURE, CDSP,
            "/dev/fastrpc-cdsp1-secure", "/dev/fastrpc-cdsp1"]
    gdsp = ["/dev/fastrpc-gdsp0-secure", "/dev/fastrpc-gdsp0", "/dev/fastrpc-gdsp1-secure", "/dev/fastrpc-gdsp1"]
    for rev in REVS:
        soc = Soc("full", kernel=f"legacy:{rev}")
        assert soc.legacy_nodes() == misc + (gdsp if rev == "qda-shim" else []), rev
        for d in ("adsp", "mdsp", "sdsp"):              # one node, non-secure channel
            assert not soc.domain(d).legacy_channel.secure
        for d in ("cdsp", "cdsp1") + (("gdsp0", "gdsp1") if rev == "qda-shim" else ()):
            ch = soc.domain(d).legacy_channel
            assert ch.secure and [dev.secure for dev in ch.devices.values()] == [True, False]
        if rev != "qda-shim":
            assert soc.domain("gdsp0").legacy_channel is None
    assert set(SHIM_NODES) - set(MISC_NODES) == {"gdsp0", "gdsp1"}


@by_rev
def test_revision_survives_a_restart(make_soc, rev):
    soc = make_soc("minimal", kernel=f"legacy:{rev}")
    soc.restart("cdsp")
    ch = soc.domain("cdsp").legacy_channel
    assert ch.revision.name == rev and ch.info()["revision"] == f"legacy:{rev}"
    assert soc.domain("cdsp").legacy[CDSP].info()["revision"] == f"legacy:{rev}"


def test_a_channel_changes_revision_only_without_files(make_soc):
    soc = make_soc("minimal", kernel="legacy:misc-7.2")
    ch = soc.domain("cdsp").legacy_channel
    with soc.open(CDSP):
        with pytest.raises(ValueError, match="files open"):
            ch.revision = kernels.REVISIONS["legacy"]["qda-shim"]
        with pytest.raises(ValueError, match="follows its channel"):
            soc.domain("cdsp").legacy[CDSP].revision = kernels.REVISIONS["legacy"]["qda-shim"]
    with pytest.raises(ValueError, match="not a legacy"):
        ch.revision = kernels.REVISIONS["accel"]["qda-rfc-2026-02"]


# --- helpers -----------------------------------------------------------------------------------------
class PayloadTap:
    """Wraps a DSP's ``receive`` on the legacy channel: each message, its payload before the DSP
    ran and after (when it replies), and the reply."""

    def __init__(self, dsp):
        self.dsp = dsp
        self.seen: list[tuple[wire.Msg, bytes, bytes, wire.Rsp]] = []
        self._orig = dsp.receive

    def __call__(self, msg, reply, channel="", origin=None):
        if channel != "legacy":
            return self._orig(msg, reply, channel, origin)
        m = wire.Msg.unpack(msg)
        before = bytes(self.dsp.memory.view(m.addr, m.size, False))

        def tapped(data):
            self.seen.append((m, before, bytes(self.dsp.memory.view(m.addr, m.size, False)), wire.Rsp.unpack(data)))
            reply(data)
        self._orig(msg, tapped, channel, origin)

    def on(self, handle):
        return [s for s in self.seen if s[0].handle == handle]


@pytest.fixture
def tap(monkeypatch):
    def attach(soc, domain="cdsp"):
        dsp = soc.domain(domain).dsp
        t = PayloadTap(dsp)
        monkeypatch.setattr(dsp, "receive", t)
        return t
    return attach


def new_soc(make_soc, rev, profile="default", poll=None):
    soc = make_soc(profile, kernel=f"legacy:{rev}")
    if poll is not None:
        for d in soc.domains.values():
            if d.legacy_channel is not None:
                d.legacy_channel.poll_mode_supported = poll
    return soc


def unsigned_pd(soc, path=CDSP):
    f = soc.open(path)
    assert f.init_create(attrs=UNSIGNED) == 0
    return f


def calc(f, h, vec):
    """calculator sum and max (docs/spec/legacy_fastrpc_api.md §2.5) of ``vec``: plain memory or a
    DmaBufRef."""
    prim = struct.pack("<i", 1000)
    arg = vec.tobytes() if isinstance(vec, np.ndarray) else vec
    out8, out4 = bytearray(8), bytearray(4)
    assert f.invoke(h, SC_SUM, [prim, arg, out8]) == 0
    assert f.invoke(h, SC_MAX, [prim, arg, out4]) == 0
    return struct.unpack("<q", out8)[0], struct.unpack("<i", out4)[0]


def invoke_fields(rec):
    return [e["fields"] for e in rec.events if e["kind"] == "ioctl" and e["name"] == "FASTRPC_IOCTL_INVOKE"]


def meta(n):
    return 40 * n + 384


# --- the calculator flow on every revision -----------------------------------------------------------
@by_rev
def test_calculator_flow_raw(make_soc, rev):
    soc = new_soc(make_soc, rev)
    vec = np.arange(1000, dtype=np.int32)
    with unsigned_pd(soc) as f:
        assert f.revision.name == rev
        _, h = open_module(f, CALC)
        assert calc(f, h, vec) == (499500, 999)
        fd = f.alloc_dma_buff(8192)
        view = dmabuf_mmap(fd)
        np.frombuffer(view, np.int32, 1000, offset=4096)[:] = vec       # second page: offset from the VMA
        assert calc(f, h, DmaBufRef(fd, view[4096:8096])) == (499500, 999)
        assert f.maps == {}
        assert close_module(f, h) == 0
        view.release()
        os.close(fd)


@by_rev
def test_calculator_flow_through_the_library(make_soc, rev):
    soc = new_soc(make_soc, rev)
    lib = rpc.Library("legacy", soc)
    try:
        lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE,
                                   rpc.remote_rpc_control_unsigned_module(rpc.CDSP_DOMAIN_ID, 1), 8)
        uri = CALC.replace("&_dom=cdsp", "") + rpc.CDSP_DOMAIN
        vec = np.arange(1000, dtype=np.int32).tobytes()
        h = lib.remote_handle64_open(uri)
        res, m = bytearray(8), bytearray(4)
        lib.remote_handle64_invoke(h, SC_SUM, [struct.pack("<i", 1000), vec, res])
        lib.remote_handle64_invoke(h, SC_MAX, [struct.pack("<i", 1000), vec, m])
        lib.remote_handle64_close(h)
        assert (struct.unpack("<q", res)[0], struct.unpack("<i", m)[0]) == (499500, 999)
    finally:
        lib.close_all()


# --- the ctx word on the wire ---------------------------------------------------------------------------
@by_rev
def test_ctx_word_on_the_wire_and_in_the_trace(make_soc, tap, rev):
    soc = new_soc(make_soc, rev)
    with unsigned_pd(soc) as f, unsigned_pd(soc) as g:
        _, h = open_module(f, TEST)
        t = tap(soc)
        with trace.recording() as rec:
            for _ in range(3):
                assert f.invoke(h, SC_NULL, []) == 0
                assert g.invoke(wire.REMOTECTL1_HANDLE, 0x03010200, [struct.pack("<II", 1, 8), bytearray(4),
                                                                          bytearray(8)]) == 0
        ctxs = [s[0].ctx for s in t.seen]
        assert [fl["ctx"] for fl in invoke_fields(rec)] == ctxs
        assert {fl["completion"] for fl in invoke_fields(rec)} == {"rpmsg"}
    assert all(c & 0xF == wire.USER_PD for c in ctxs)
    if rev == "misc-7.2":                 # id << 4 | pd, cyclic ids, nothing above bit 11
        ids = [(c >> 4) & 0xFF for c in ctxs]
        assert all(c >> 12 == 0 for c in ctxs)
        assert ids == [ids[0] + k for k in range(6)]
    else:                                 # seq << 16 | id << 8 | pd, bits 7:4 clear
        ids, seqs = [(c >> 8) & 0xFF for c in ctxs], [c >> 16 for c in ctxs]
        assert all(c & 0xF0 == 0 for c in ctxs)
        assert seqs == [seqs[0] + k for k in range(6)]       # one channel-wide counter, +1 a context
        if rev == "misc-7.3":
            assert ids == [ids[0] + k for k in range(6)]     # cyclic IDR
        else:
            assert set(ids) == {1}                           # the QDA core's lowest free id


@by_new
def test_sequence_counts_every_context_and_wraps_like_an_int(make_soc, tap, rev):
    soc = new_soc(make_soc, rev)
    ch = soc.domain("cdsp").legacy_channel
    with soc.open(CDSP) as f:
        t = tap(soc)
        assert f.init_create(attrs=UNSIGNED) == 0            # a kernel message counts too
        assert ch.fastrpc._seq == 1
        _, h = open_module(f, TEST)
        ch.fastrpc._seq = 2**31 - 1                          # the next atomic_inc_return is INT_MIN
        assert f.invoke(h, SC_NULL, []) == 0                 # and its reply still matches
        m = t.on(h)[-1][0]
        assert m.ctx >> 16 == 0xFFFF_8000_0000 and (m.ctx >> 8) & 0xFF and m.ctx & 0xFF == wire.USER_PD
        assert f.invoke(h, SC_NULL, []) == 0
        assert t.on(h)[-1][0].ctx >> 16 == 0xFFFF_8000_0001


@by_new
def test_a_reply_with_another_sequence_number_is_dropped(make_soc, monkeypatch, rev):
    """Linux 7.3's rpmsg callback drops a reply whose sequence number is not the context's (a late
    reply for a recycled id): the call gets no reply (EIO here, where the kernel would wait)."""
    soc = new_soc(make_soc, rev)
    dsp = soc.domain("cdsp").dsp
    orig = dsp.receive

    def stale(msg, reply, channel="", origin=None):
        m = wire.Msg.unpack(msg)
        if m.handle >= wire.CONST_HANDLE_LIMIT:
            return orig(msg, lambda data: reply(wire.Rsp(m.ctx ^ (1 << 16), 0).pack()), channel, origin)
        return orig(msg, reply, channel, origin)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, TEST)
        monkeypatch.setattr(dsp, "receive", stale)
        before = soc.domain("cdsp").legacy_channel.fastrpc.dropped_replies
        with raises_errno(errno.EIO):
            f.invoke(h, SC_NULL, [])
        assert soc.domain("cdsp").legacy_channel.fastrpc.dropped_replies == before + 1


# --- the payload metadata ------------------------------------------------------------------------------
@by_rev
@pytest.mark.parametrize("n", [3, 16, 32])
def test_metadata_and_data_area(make_soc, tap, rev, n):
    """7.3's metadata is 40n + 388 bytes: the poll word follows the CRC list. The data area starts
    at the next 128-byte boundary, which moves by 128 when 40n + 384 is one (n % 16 == 0)."""
    soc = new_soc(make_soc, rev)
    bufs = [bytes([0xA0 + i]) * 8 for i in range(n)]
    sc = wire.scalars(2, n, 0)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, TEST)
        t = tap(soc)
        f.invoke(h, sc, bufs)                 # the skel refuses the counts; the layout is what we look at
    m, before, _, _ = t.on(h)[-1]
    shifted = rev != "misc-7.2" and n % 16 == 0
    first = (meta(n) + 127) // 128 * 128 + (128 if shifted else 0)
    # buffers are laid out in address order (the kernel sorts them for its overlap check), one
    # 128-byte slot each
    at = {i: before.find(buf) for i, buf in enumerate(bufs)}
    assert sorted(at.values()) == [first + 128 * k for k in range(n)]
    if rev != "misc-7.2":
        assert before[meta(n):meta(n) + 4] == bytes(4)                        # the poll word, 0 before the call
    for i, buf in enumerate(bufs):                                               # where the DSP finds each one
        pv, length = struct.unpack_from("<QQ", before, 16 * i)
        page, span = struct.unpack_from("<QQ", before, 24 * n + 16 * i)
        assert length == 8
        assert page == (m.addr + at[i]) & wire.PAGE_MASK and pv & 0xFFF == at[i] & 0xFFF and span == wire.PAGE_SIZE
    decoded, _ = marshal.decode(sc, before)                    # the DSP's own reading of it
    assert [before[a - m.addr:a - m.addr + ln] for a, ln in decoded] == bufs
    total = first + 128 * (n - 1) + 8
    assert m.size == (total + 4095) // 4096 * 4096


@by_rev
def test_no_argument_payload(make_soc, tap, rev):
    soc = new_soc(make_soc, rev)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, TEST)
        t = tap(soc)
        assert f.invoke(h, SC_NULL, []) == 0
    m, before, _, _ = t.on(h)[-1]
    assert m.size == 4096 and before[:meta(0) + 4] == bytes(meta(0) + 4)


# --- SET_OPTION ------------------------------------------------------------------------------------------
def test_set_option_is_not_a_7_2_command(make_soc):
    soc = new_soc(make_soc, "misc-7.2", poll=True)
    with soc.open(CDSP) as f:
        opt = uapi.fastrpc_ioctl_set_option.pack(request_id=1, value=1)
        assert f.ioctl(uapi.FASTRPC_IOCTL_SET_OPTION, opt) == -errno.ENOTTY
        with raises_errno(errno.ENOTTY):
            f.set_option(uapi.FASTRPC_POLL_MODE, 1)


@by_new
def test_set_option_rules_in_their_order(make_soc, rev):
    """fastrpc_set_option: copy_from_user (EFAULT), any reserved word (EINVAL), request id
    (EINVAL), platform support (EOPNOTSUPP, for disable too), value 0/1 (EINVAL)."""
    L = uapi.fastrpc_ioctl_set_option
    req = uapi.FASTRPC_IOCTL_SET_OPTION
    for supported in (False, True):
        soc = new_soc(make_soc, rev, poll=supported)
        with soc.open(CDSP) as f:
            assert f.ioctl(req, bytearray(31)) == -errno.EFAULT
            for k in range(6):
                reserved = [0] * 6
                reserved[k] = -1
                assert f.ioctl(req, L.pack(request_id=1, value=1, reserved=reserved)) == -errno.EINVAL
            assert f.ioctl(req, L.pack(request_id=2, value=1, reserved=[0, 0, 0, 0, 0, 1])) == -errno.EINVAL
            for bad_req in (0, 2, 0xFFFF_FFFF):
                assert f.ioctl(req, L.pack(request_id=bad_req, value=1)) == -errno.EINVAL
            for value in (0, 1, 2, 0xFFFF_FFFF):
                ret = f.ioctl(req, L.pack(request_id=1, value=value))
                if not supported:
                    assert ret == -errno.EOPNOTSUPP
                else:
                    assert ret == (0 if value in (0, 1) else -errno.EINVAL)
            assert f.poll_mode is supported                  # the last valid value was 1; 2 and -1 failed
            with soc.open(CDSP_SECURE) as g:
                assert g.poll_mode is False                  # per file: a new file starts off


def test_poll_mode_platform_flag_of_the_profiles(make_soc, tmp_path, monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    assert POLL_MODE == {"default": False, "full": True, "minimal": False}
    assert not Soc("default").domain("cdsp").legacy_channel.poll_mode_supported
    assert Soc("full").domain("cdsp").legacy_channel.info()["poll_mode_supported"]
    prof = tmp_path / "p.json"
    prof.write_text('{"kernel": "legacy:misc-7.3", "poll_mode": true, "domains": [{"name": "cdsp", '
                    '"context_banks": 2}, {"name": "adsp", "context_banks": 1, "poll_mode": false}]}')
    soc = make_soc(str(prof))
    assert soc.domain("cdsp").legacy_channel.poll_mode_supported
    assert not soc.domain("adsp").legacy_channel.poll_mode_supported
    assert Soc(soc.specs).domain("cdsp").legacy_channel.poll_mode_supported   # a twin keeps it
    with soc.open(CDSP) as f:
        f.set_option(uapi.FASTRPC_POLL_MODE, 1)
    with soc.open("/dev/fastrpc-adsp") as f, raises_errno(errno.EOPNOTSUPP):
        f.set_option(uapi.FASTRPC_POLL_MODE, 1)
    prof.write_text('{"poll_mode": "yes", "domains": [{"name": "cdsp", "context_banks": 2}]}')
    with pytest.raises(ValueError, match="poll_mode"):
        Soc(str(prof))


# --- poll mode ---------------------------------------------------------------------------------------------
def polled_calculator(soc, t, *, kernel_poll, dsp_poll, path=CDSP):
    """The calculator with poll mode on in the kernel (SET_OPTION) and/or the DSP (the library's
    adsp_current_process1 poll_mode); returns (results, INVOKE trace fields, sum's payload after)."""
    vec = np.arange(1000, dtype=np.int32)
    with unsigned_pd(soc, path) as f:
        _, h = open_module(f, CALC)
        if kernel_poll:
            f.set_option(uapi.FASTRPC_POLL_MODE, 1)
        if dsp_poll:
            assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [POLL]) == 0
        with trace.recording() as rec:
            got = calc(f, h, vec)
        close_module(f, h)
    return got, invoke_fields(rec), t.on(h)[0][2]


@by_new
def test_poll_mode_completes_the_calculator_by_the_poll_word(make_soc, tap, rev):
    soc = new_soc(make_soc, rev, poll=True)
    t = tap(soc)
    got, fields, after = polled_calculator(soc, t, kernel_poll=True, dsp_poll=True)
    assert got == (499500, 999)
    assert [fl["completion"] for fl in fields] == ["poll", "poll"]
    assert struct.unpack_from("<I", after, meta(3))[0] == 0xDECAF    # the DSP's word, after the metadata


@by_new
def test_poll_mode_needs_both_halves(make_soc, tap, rev):
    soc = new_soc(make_soc, rev, poll=True)
    t = tap(soc)
    # the kernel polls, the DSP writes no word: the reply completes the call (the fallback)
    got, fields, after = polled_calculator(soc, t, kernel_poll=True, dsp_poll=False)
    assert got == (499500, 999) and {fl["completion"] for fl in fields} == {"rpmsg"}
    assert struct.unpack_from("<I", after, meta(3))[0] == 0
    # the DSP writes the word, the kernel does not look at it
    got, fields, after = polled_calculator(soc, t, kernel_poll=False, dsp_poll=True)
    assert got == (499500, 999) and {fl["completion"] for fl in fields} == {"rpmsg"}
    assert struct.unpack_from("<I", after, meta(3))[0] == 0xDECAF


@by_new
def test_poll_mode_error_paths(make_soc, tap, rev):
    """A failing call completes by its reply with its code (the DSP writes the word only for a
    success); static handles and kernel messages are never polled; disabling switches back."""
    soc = new_soc(make_soc, rev, poll=True)
    t = tap(soc)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, CALC)
        f.set_option(uapi.FASTRPC_POLL_MODE, 1)
        assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [POLL]) == 0
        with trace.recording() as rec:
            # sum over 1000 ints given 4 bytes: the skel answers AEE_EBADPARM through the reply
            assert f.invoke(h, SC_SUM, [struct.pack("<i", 1000), b"\0" * 4, bytearray(8)]) == 0x8000040E
            _, h2 = open_module(f, TEST)                     # remotectl1 (handle 8 <= 20)
            assert f.invoke(h2, SC_NULL, []) == 0
            f.set_option(uapi.FASTRPC_POLL_MODE, 0)
            assert f.invoke(h2, SC_NULL, []) == 0
            assert f.get_dsp_info(3, 1) == 1                  # a kernel message (handle 2)
        assert [fl["completion"] for fl in invoke_fields(rec)] == ["rpmsg", "rpmsg", "poll", "rpmsg"]
        assert struct.unpack_from("<I", t.on(h)[-1][2], meta(3))[0] == 0
    # a root PD (INIT_ATTACH) is not a user PD: never polled, and the DSP writes nothing
    with soc.open(CDSP_SECURE) as r:
        assert r.init_attach() == 0
        r.set_option(uapi.FASTRPC_POLL_MODE, 1)
        with trace.recording() as rec:
            r.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [POLL])
        assert {fl["completion"] for fl in invoke_fields(rec)} == {"rpmsg"}


def test_dsp_poll_mode_method_checks_its_arguments(make_soc):
    soc = new_soc(make_soc, "misc-7.3")
    with unsigned_pd(soc) as f:
        assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [b"\1\0\0\0"]) \
            == aee.ERR_BAD_PARM
        assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.scalars(9, 0, 0), []) == aee.ERR_BAD_PARM
        assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [POLL]) == 0
        pd = next(p for p in soc.domain("cdsp").dsp._procs.values() if p.client_id == f.client_id)
        assert (pd.poll_mode, pd.poll_timeout) == (True, 1000)


def test_7_2_ctx_layout_is_why_the_ids_moved(make_soc, tap):
    """Under 7.2's id << 4 an odd context id sets bit 4, the DSP's "async" bit: a poll-mode DSP
    writes no word for it. For an even id it writes one where 7.3 keeps the poll word: at 40n+384,
    which a 7.2 kernel never reserved (the calculator's n = 3: alignment padding; the call's
    results are unaffected)."""
    soc = new_soc(make_soc, "misc-7.2")
    t = tap(soc)
    vec = np.arange(1000, dtype=np.int32)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, CALC)
        assert f.invoke(wire.ADSP_CURRENT_PROCESS1_HANDLE, wire.CURRENT_PROCESS1_POLL_MODE, [POLL]) == 0
        with trace.recording() as rec:
            for _ in range(2):
                assert calc(f, h, vec) == (499500, 999)
        assert {fl["completion"] for fl in invoke_fields(rec)} == {"rpmsg"}
    calls = t.on(h)
    assert {(m.ctx >> 4) & 1 for m, *_ in calls} == {0, 1}
    for m, _, after, _ in calls:
        word = struct.unpack_from("<I", after, meta(3))[0]
        assert word == (0 if m.ctx & wire.CTX_ASYNC_BIT else 0xDECAF)


# --- GET_DSP_INFO --------------------------------------------------------------------------------------
@by_rev
def test_get_dsp_info_domain_field(make_soc, rev):
    soc = new_soc(make_soc, rev)
    with soc.open(CDSP) as f:
        for domain in (0, 2, 3, 4):
            assert f.get_dsp_info(domain, 1) == 1
        for domain in (1, 5, 7, 0xFFFF_FFFF):               # MDSP, out of range
            if rev == "misc-7.2":
                with raises_errno(errno.ECHRNG):
                    f.get_dsp_info(domain, 1)
            else:
                assert f.get_dsp_info(domain, 1) == 1       # "unused", ignored by the kernel
        with raises_errno(errno.EOVERFLOW):
            f.get_dsp_info(3, 256)
        with trace.recording() as rec:
            f.get_dsp_info(3, 1)
        ev = [e for e in rec.events if e["kind"] == "ioctl"][0]
        assert ("domain" if rev == "misc-7.2" else "unused") in ev["fields"]


@by_rev
def test_capability_cache_and_where_the_query_comes_from(make_soc, tap, rev):
    """One query per channel, shared by both nodes and every file. misc sends it from the calling
    file's session; the shim from the device's own bank (SID 0), so a file needs no context bank."""
    soc = new_soc(make_soc, rev, profile="minimal")
    t = tap(soc)
    with soc.open(CDSP) as f, soc.open(CDSP_SECURE) as g:
        assert f.get_dsp_info(3, 1) == 1 and g.get_dsp_info(3, 1) == 1
        queries = t.on(wire.FASTRPC_DSP_UTILITIES_HANDLE)
        assert len(queries) == 1 and queries[0][0].client_id == 0
        sid = queries[0][0].addr >> 32
        if rev == "qda-shim":
            assert sid == 0 and f.cb is None and g.cb is None
        else:
            assert sid == f.cb.sid
    assert soc.domain("cdsp").legacy_channel.info()["attributes_cached"]


@by_rev
def test_capability_query_unsupported_is_eopnotsupp(make_soc, monkeypatch, rev):
    soc = new_soc(make_soc, rev)
    dsp = soc.domain("cdsp").dsp
    orig = dsp.receive

    def old_firmware(msg, reply, channel="", origin=None):
        m = wire.Msg.unpack(msg)
        if m.handle == wire.FASTRPC_DSP_UTILITIES_HANDLE:
            return reply(wire.Rsp(m.ctx, aee.to_int32(0x80000414)).pack())
        return orig(msg, reply, channel, origin)
    monkeypatch.setattr(dsp, "receive", old_firmware)
    with soc.open(CDSP) as f, raises_errno(errno.EOPNOTSUPP):
        f.get_dsp_info(3, 1)


# --- context banks ------------------------------------------------------------------------------------
@by_rev
def test_context_banks_per_file_and_ebusy(make_soc, rev):
    soc = new_soc(make_soc, rev, profile="minimal")      # two banks
    if rev != "qda-shim":
        a, b = soc.open(CDSP), soc.open(CDSP_SECURE)
        assert (a.cb.sid, b.cb.sid) == (1, 2) and (a.client_id, b.client_id) == (1, 2)
        with raises_errno(errno.EBUSY):
            soc.open(CDSP)                                # misc: open takes the bank
        a.close()
        b.close()
        return
    a, b, c = soc.open(CDSP), soc.open(CDSP), soc.open(CDSP_SECURE)   # the shim: opens take none
    assert (a.cb, b.cb, c.cb) == (None, None, None) and [x.client_id for x in (a, b, c)] == [1, 2, 3]
    fd = a.alloc_dma_buff(4096)                           # first allocation: a bank, for this file only
    assert b.init_create(attrs=UNSIGNED) == 0
    assert (a.cb.sid, b.cb.sid) == (1, 2)                 # one thread, two files, two banks (no sharing)
    with raises_errno(errno.EBUSY):
        c.alloc_dma_buff(4096)
    with raises_errno(errno.EBUSY):
        c.init_attach()
    assert c.cb is None
    os.close(fd)
    a.close()
    assert c.init_create(attrs=UNSIGNED) == 0 and c.cb.sid == 1
    b.close()
    c.close()


def test_shim_file_that_never_allocated_sends_no_release(make_soc, tap):
    soc = new_soc(make_soc, "qda-shim")
    t = tap(soc)
    soc.open(CDSP).close()
    assert t.seen == []
    with soc.open(CDSP) as f:
        assert f.init_create(attrs=UNSIGNED) == 0
    assert [sc for sc in (s[0].sc for s in t.on(wire.FASTRPC_INIT_HANDLE))] == [wire.scalars(7, 4, 0),
                                                                              wire.scalars(1, 1, 0)]


# --- ALLOC_DMA_BUFF / FREE_DMA_BUFF ---------------------------------------------------------------------
@by_rev
def test_alloc_returns_a_dmabuf_fd_and_free_is_enotty(make_soc, rev):
    soc = new_soc(make_soc, rev)
    with soc.open(CDSP) as f:
        fd = f.alloc_dma_buff(8192)
        assert os.fstat(fd).st_size == 8192
        view = dmabuf_mmap(fd)
        assert bytes(view[:16]) == bytes(16)
        view.release()
        assert f.ioctl(uapi.FASTRPC_IOCTL_FREE_DMA_BUFF, struct.pack("<I", fd)) == -errno.ENOTTY
        os.close(fd)


# --- INVOKE fd arguments --------------------------------------------------------------------------------
@by_rev
def test_fd_arguments_are_mapped_or_imported(make_soc, rev):
    """misc keeps a handle argument's map until the DSP lists it (or close); the shim imports
    every fd for the one call and keeps nothing."""
    soc = new_soc(make_soc, rev)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, TEST)
        fd = f.alloc_dma_buff(4096)
        f.invoke(h, wire.scalars(2, 0, 0, 1), [HandleArg(fd, 0, 4096)])
        assert (f.map_of(fd) is None) == (rev == "qda-shim")
        os.close(fd)


@by_rev
def test_bad_fd_is_einval_and_handle_1_eperm(make_soc, rev):
    soc = new_soc(make_soc, rev)
    with unsigned_pd(soc) as f:
        _, h = open_module(f, TEST)
        r, w = os.pipe()
        with raises_errno(errno.EINVAL):
            f.invoke(h, SC_CHECKSUM, [DmaBufRef(r, bytearray(8)), bytearray(8)])
        os.close(r)
        os.close(w)
        with raises_errno(errno.EPERM):
            f.invoke(wire.FASTRPC_INIT_HANDLE, wire.scalars(0, 1, 0), [b"\1\0\0\0"])
        assert f.ioctl(0xC0185203, bytearray(24)) == -errno.ENOTTY


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF_FFFF


def raw_invoke(f, handle, sc, items):
    """FASTRPC_IOCTL_INVOKE with hand-made descriptors ``(ptr, length, fd)``: the raw return."""
    descs = bytearray(24 * len(items))
    for i, (ptr, length, fd) in enumerate(items):
        wire.INVOKE_ARG.pack_into(descs, 24 * i, ptr, length, fd, 0)
    return f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, uapi.fastrpc_invoke.pack(handle=handle, sc=sc, args=address(descs)))


@by_rev
def test_offset_from_the_callers_mapping_without_checks(make_soc, rev):
    """The pointer's mapping gives the offset. misc (our emulation) insists the mapping is of the
    buffer named and the pages lie inside it (EFAULT); the shim checks neither: a pointer into
    buffer B's mapping with buffer A's fd reads A at that offset, and a length past A's end runs
    off the buffer: the DSP faults and the file's PD crashes; nothing of another file is read."""
    soc = new_soc(make_soc, rev)
    with unsigned_pd(soc) as f, unsigned_pd(soc) as other:
        _, h = open_module(f, TEST)
        _, h2 = open_module(other, TEST)
        a, b = f.alloc_dma_buff(8192), f.alloc_dma_buff(8192)
        va, vb = dmabuf_mmap(a), dmabuf_mmap(b)
        va[:] = bytes(range(256)) * 32
        vb[:] = b"\xEE" * 8192
        out = bytearray(8)
        wrong_mapping = [(address(vb) + 4096, 64, a), (address(out), 8, -1)]
        too_long = [(address(va) + 4096, 8192, a), (address(out), 8, -1)]
        if rev != "qda-shim":
            assert raw_invoke(f, h, SC_CHECKSUM, wrong_mapping) == -errno.EFAULT
            assert raw_invoke(f, h, SC_CHECKSUM, too_long) == -errno.EFAULT
        else:
            assert raw_invoke(f, h, SC_CHECKSUM, wrong_mapping) == 0
            assert struct.unpack("<Q", out)[0] == _checksum(bytes(va[4096:4160]))   # A's bytes at B's offset
            with trace.recording() as rec:
                assert raw_invoke(f, h, SC_CHECKSUM, too_long) & 0xFFFF_FFFF == aee.ERR_PD_CRASHED
            assert [e["fault"] for e in rec.events if e["kind"] == "fault"] == ["smmu"]
            assert raw_invoke(f, h, SC_CHECKSUM, [(8, 64, a), (address(out), 8, -1)]) == -errno.EFAULT  # no mapping
        assert other.invoke(h2, SC_NULL, []) == 0             # the other file's PD is untouched
        va.release()
        vb.release()
        os.close(a)
        os.close(b)


# --- INIT_CREATE ------------------------------------------------------------------------------------
@by_rev
def test_init_create_elf_by_pointer(make_soc, rev):
    """misc copies a shell ELF given by pointer only (filefd 0) into the message; the shim takes
    it only as a dma-buf fd (EINVAL). Without a shell (filelen 0) both create the PD; with an fd
    both take it."""
    soc = new_soc(make_soc, rev)
    img = hexagon_elf(4096)
    bare = uapi.fastrpc_init_create.pack(filelen=len(img), filefd=0, attrs=UNSIGNED, file=address(img))
    with soc.open(CDSP) as f:
        if rev == "qda-shim":
            assert f.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, bare) == -errno.EINVAL
            assert "bare pointer" in f.last_error.strerror
            neg = uapi.fastrpc_init_create.pack(filelen=len(img), filefd=-1, attrs=UNSIGNED, file=address(img))
            assert f.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, neg) == -errno.EINVAL
            assert f.init_create(attrs=UNSIGNED) == 0                 # no shell at all: fine
        else:
            assert f.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, bare) == 0
    with soc.open(CDSP) as f:
        assert f.init_create(img, attrs=UNSIGNED) == 0                # through an ALLOC_DMA_BUFF fd


@by_rev
def test_non_secure_node_creates_only_unsigned_pds(make_soc, rev):
    soc = new_soc(make_soc, rev, profile="full")
    with soc.open(CDSP) as f, raises_errno(errno.ECONNREFUSED):
        f.init_create(attrs=0)
    with soc.open(CDSP) as f:
        assert f.init_create(attrs=UNSIGNED) == 0
    with soc.open(CDSP_SECURE) as f:
        assert f.init_create(attrs=0) == 0                            # the secure node: signed too
    with soc.open("/dev/fastrpc-adsp") as f:
        assert f.init_create(attrs=0) == 0                            # a non-secure channel's one node
    if rev == "qda-shim":                                             # GDSP: both nodes, same rule
        with soc.open("/dev/fastrpc-gdsp0") as f, raises_errno(errno.ECONNREFUSED):
            f.init_create(attrs=0)
        with soc.open("/dev/fastrpc-gdsp0") as f:
            assert f.init_create(attrs=UNSIGNED) == 0
        with soc.open("/dev/fastrpc-gdsp1-secure") as f:
            assert f.init_create(attrs=0) == 0
    else:
        with raises_errno(errno.ENOENT):
            soc.open("/dev/fastrpc-gdsp0")


# --- SSR ----------------------------------------------------------------------------------------------
@by_rev
def test_ssr_fails_waiters_and_later_calls_with_epipe(make_soc, rev):
    """A subsystem restart: a call waiting on the DSP (a listener's next2) fails with EPIPE, as
    does every later ioctl on the old file; close still works; the nodes come back."""
    soc = new_soc(make_soc, rev)
    f = unsigned_pd(soc)
    _, h = open_module(f, CALC)
    assert f.invoke(wire.ADSP_LISTENER1_HANDLE, wire.LISTENER1_INIT2, []) == 0
    result: list = []

    def listen():
        args = [struct.pack("<4I", 0, 0xFFFF_FFFF, 0, 64), b"", bytearray(16), bytearray(64)]
        try:
            result.append(f.invoke(wire.ADSP_LISTENER1_HANDLE, wire.LISTENER1_NEXT2, args))
        except OSError as exc:
            result.append(exc.errno)
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    pd = lambda: next(p for p in soc.domain("cdsp").dsp.processes() if p.channel == "legacy")  # noqa: E731
    for _ in range(10000):
        if pd().listeners:
            break
        t.join(0.001)
    assert pd().listeners == 1
    soc.restart("cdsp")
    t.join(10)
    assert not t.is_alive() and result == [errno.EPIPE]
    with raises_errno(errno.EPIPE):
        calc(f, h, np.arange(1000, dtype=np.int32))
    with raises_errno(errno.EPIPE):
        f.init_attach()
    f.close()
    with unsigned_pd(soc) as g:                                       # the node is back, same revision
        assert g.revision.name == rev
        _, h = open_module(g, CALC)
        assert calc(g, h, np.arange(1000, dtype=np.int32)) == (499500, 999)
