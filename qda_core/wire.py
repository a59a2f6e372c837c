"""Python views of what crosses the kernel <-> DSP transport (csrc/include/qdarpc/fastrpc_wire.h).

Shared by the host side (``qda_core.fastrpc``) and the DSP side (``qda_core.dsp``). A test
checks these sizes against the C header through ``qda_core._abi``.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

FASTRPC_ALIGN = 128
FASTRPC_MAX_FDLIST = 16
FASTRPC_MAX_CRCLIST = 64
PAGE_SIZE = 4096
PAGE_MASK = ~(PAGE_SIZE - 1) & 0xFFFF_FFFF_FFFF_FFFF

FASTRPC_INIT_HANDLE = 1
FASTRPC_DSP_UTILITIES_HANDLE = 2

# Poll mode (Linux 7.3, commit 96e62cc0a84d; docs/spec/kernel_revisions_2026.md §5): the DSP
# completes a polled call by writing FASTRPC_POLL_RESPONSE into the u32 that follows the payload
# metadata (at metadata_size(n)); the kernel polls only dynamic handles above
# FASTRPC_MAX_STATIC_HANDLE of a user PD. Bit 4 of the ctx word is the DSP's "async" bit: set,
# the DSP writes no poll word (why 7.3 moved the context id to bits 15:8).
FASTRPC_POLL_RESPONSE = 0xDECAF
FASTRPC_MAX_STATIC_HANDLE = 20
CTX_ASYNC_BIT = 0x10

# Static (constant) handles served inside a PD (docs/spec/legacy_fastrpc_api.md §6.2), and their interface names.
REMOTECTL_HANDLE = 0
ADSP_LISTENER_HANDLE = 3
ADSP_CURRENT_PROCESS1_HANDLE = 4
ADSPMSGD_ADSP1_HANDLE = 5
ADSP_PERF_HANDLE = 6
ADSP_LISTENER1_HANDLE = 7
REMOTECTL1_HANDLE = 8
ADSP_PERF1_HANDLE = 9
STATIC_HANDLES = {
    REMOTECTL_HANDLE: "remotectl", ADSP_LISTENER_HANDLE: "adsp_listener",
    ADSP_CURRENT_PROCESS1_HANDLE: "adsp_current_process1", ADSPMSGD_ADSP1_HANDLE: "adspmsgd_adsp1",
    ADSP_PERF_HANDLE: "adsp_perf", ADSP_LISTENER1_HANDLE: "adsp_listener1", REMOTECTL1_HANDLE: "remotectl1",
    ADSP_PERF1_HANDLE: "adsp_perf1",
}
#: Handles below this are constant (IS_CONST_HANDLE); above, dynamic handles from remotectl open.
CONST_HANDLE_LIMIT = 0x100

# The remotectl interfaces' methods (name -> scalars), as their stubs send them.
REMOTECTL_METHODS = {
    REMOTECTL_HANDLE: {"open": 0x00020200, "close": 0x01010200, "grow_heap": 0x02010000, "set_param": 0x03020000},
    REMOTECTL1_HANDLE: {"open": 0x02020200, "close": 0x03010200, "grow_heap": 0x04010000, "set_param": 0x05020000},
}
# adsp_current_process1 methods the library sends on its own.
CURRENT_PROCESS1_EXIT = 0x02000000
CURRENT_PROCESS1_THREAD_EXIT = 0x03000000
CURRENT_PROCESS1_EXCEPTION = 0x07000000
# adsp_current_process1 poll_mode(uint32 enable, uint32 timeout): the library's DSP half of
# DSPRPC_CONTROL_LATENCY RPC_POLL_QOS (QF fastrpc_apps_user.c, after the kernel's SET_OPTION).
CURRENT_PROCESS1_POLL_MODE = 0x09010000
# adsp_listener1 methods the library's listener thread sends (docs/spec/legacy_fastrpc_api.md §6.4).
LISTENER1_INIT2 = 0x05000000
LISTENER1_NEXT2 = 0x06020200
# remotectl set_param request ids.
RPC_PARAM_THREAD = 1
RPC_PARAM_ADAPTIVE_QOS = 2

# Methods of FASTRPC_INIT_HANDLE and the scalars the kernels send with them.
RMID_INIT_ATTACH = 0
RMID_INIT_RELEASE = 1
RMID_INIT_MMAP = 4
RMID_INIT_MUNMAP = 5
RMID_INIT_CREATE = 6
RMID_INIT_CREATE_ATTR = 7
RMID_INIT_CREATE_STATIC = 8
RMID_INIT_MEM_MAP = 10
RMID_INIT_MEM_UNMAP = 11

# enum remote_dsp_attributes (remote.h; docs/spec/legacy_fastrpc_api.md §4.7): the attribute ids whose values the
# DSP answers on FASTRPC_DSP_UTILITIES_HANDLE and the library reports through DSPRPC_GET_DSP_INFO.
DOMAIN_SUPPORT = 0
UNSIGNED_PD_SUPPORT = 1
HVX_SUPPORT_64B = 2
HVX_SUPPORT_128B = 3
VTCM_PAGE = 4
VTCM_COUNT = 5
ARCH_VER = 6
HMX_SUPPORT_DEPTH = 7
HMX_SUPPORT_SPATIAL = 8
ASYNC_FASTRPC_SUPPORT = 9
STATUS_NOTIFICATION_SUPPORT = 10
MCID_MULTICAST = 11
EXTENDED_MAP_SUPPORT = 12
HANDLE_PRIORITY_SUPPORT = 13
DSP_IMAGE_CONFIG = 14
DSPQUEUE_SUPPORT = 15
# answered by the driver/library, never by the DSP
PERF_V2_DRIVER_SUPPORT = 256
DRIVER_ERROR_CODE_CHANGE = 257
USERSPACE_ALLOCATION_SUPPORT = 258
DSPSIGNAL_DRIVER_SUPPORT = 259

ROOT_PD = 0
USER_PD = 1
SENSORS_PD = 2

#: CREATE ``attrs`` bit asking for an unsigned user PD (also the INIT_CREATE ioctls' ``attrs``).
FASTRPC_MODE_UNSIGNED_MODULE = 0x8

#: DSP domain ids and names (``inc/remote.h`` ``*_DOMAIN_ID``; docs/spec/legacy_fastrpc_api.md §3.1). The one table.
DOMAIN_IDS = {"adsp": 0, "mdsp": 1, "sdsp": 2, "cdsp": 3, "cdsp1": 4, "gdsp0": 5, "gdsp1": 6}

MSG = struct.Struct("<iiQIIQQ")        # struct fastrpc_msg, 40 B
RSP = struct.Struct("<Qi4x")           # struct fastrpc_invoke_rsp, 16 B
INVOKE_ARG = struct.Struct("<QQiI")    # struct fastrpc_invoke_args (uapi descriptor), 24 B
PHY_PAGE = struct.Struct("<QQ")        # struct fastrpc_phy_page, 16 B
BUF_ARG = struct.Struct("<QQ")         # struct fastrpc_buf_arg, 16 B
DMA_ARG = struct.Struct("<iII4x")      # struct fastrpc_dma_arg in its 16-B union slot
INVOKE_BUF = struct.Struct("<II")      # struct fastrpc_invoke_buf, 8 B

# Payloads of the init-handle methods (drivers/misc/fastrpc.c, QDA RFC 13/15/16).
CREATE_INBUF = struct.Struct("<iIIIII")     # client_id, namelen, filelen, pageslen, attrs, siglen
CREATE_STATIC_INBUF = struct.Struct("<iII")  # client_id, namelen, pageslen
MMAP_REQ = struct.Struct("<iIQi4x")          # client_id, flags, vaddr, num
MUNMAP_REQ = struct.Struct("<i4xQQ")         # client_id, vaddr, size
MEM_MAP_REQ = struct.Struct("<iiiIQii")      # client_id, fd, offset, flags, vaddrin, num, data_len
MEM_UNMAP_REQ = struct.Struct("<iiQQ")       # client_id, fd, vaddrin, len
U64 = struct.Struct("<Q")
S32 = struct.Struct("<i")


def s32(value: int) -> int:
    """``value`` stored into a C ``int`` (two's-complement truncation), as the kernel's struct
    assignments do when a wider uapi field lands in a 32-bit wire field."""
    return ((value + (1 << 31)) & 0xFFFF_FFFF) - (1 << 31)


def scalars(method: int, nin: int, nout: int, ninh: int = 0, nouth: int = 0, attr: int = 0) -> int:
    """REMOTE_SCALARS_MAKEX: pack a scalars word."""
    return ((attr & 7) << 29) | ((method & 0x1F) << 24) | ((nin & 0xFF) << 16) | ((nout & 0xFF) << 8) \
        | ((ninh & 0xF) << 4) | (nouth & 0xF)


def sc_method(sc: int) -> int:
    return (sc >> 24) & 0x1F


def sc_counts(sc: int) -> tuple[int, int, int, int]:
    """(inbufs, outbufs, inhandles, outhandles) of a scalars word."""
    return (sc >> 16) & 0xFF, (sc >> 8) & 0xFF, (sc >> 4) & 0xF, sc & 0xF


def sc_length(sc: int) -> int:
    """Arguments of a scalars word: buffers and handles (every invoke asks: no tuple made)."""
    return ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF) + ((sc >> 4) & 0xF) + (sc & 0xF)


def metadata_size(nscalars: int) -> int:
    """Bytes of payload metadata for ``nscalars`` arguments: 40n + 384."""
    return 40 * nscalars + 8 * FASTRPC_MAX_FDLIST + 4 * FASTRPC_MAX_CRCLIST


class Origin(NamedTuple):
    """Who sent a message, as the host kernel knows it; travels beside the message, never in it.

    On hardware the DSP can trust what arrives on the channel because only the kernel writes
    there. The emulated QDA RFC passes a user's INVOKE of handle 1 through, and its header
    carries ``client_id`` 0 for every handle-1 message, so the DSP cannot tell from the bytes
    whose message it is. The driver stamps this record instead (as rpmsg stamps a source
    address): ``client_id`` is the sending file's, ``sids`` the context banks the kernel
    granted it (its session's), ``kernel`` is true when the driver built the message itself
    rather than relaying a user INVOKE, ``ranges`` extra ``(device address, size)`` ranges a
    kernel message hands over (a static PD's remote heap, which lives in no session's bank).
    """

    client_id: int
    sids: frozenset
    kernel: bool
    ranges: tuple = ()


class Msg(NamedTuple):
    """struct fastrpc_msg."""

    client_id: int
    tid: int
    ctx: int
    handle: int
    sc: int
    addr: int
    size: int

    def pack(self) -> bytes:
        return MSG.pack(*self)

    @classmethod
    def unpack(cls, data) -> "Msg":
        return cls._make(MSG.unpack(data))

    @property
    def pd(self) -> int:
        return self.ctx & 0xF


class Rsp(NamedTuple):
    """struct fastrpc_invoke_rsp."""

    ctx: int
    retval: int

    def pack(self) -> bytes:
        return RSP.pack(*self)

    @classmethod
    def unpack(cls, data) -> "Rsp":
        return cls._make(RSP.unpack(data))
