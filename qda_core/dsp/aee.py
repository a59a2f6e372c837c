"""Every result code the emulated DSP can put in an invoke response, in one place.

Codes produced by DSP code carry the DSP offset (``AEE_EOFFSET = 0x80000400`` on Hexagon, see
docs/spec/legacy_fastrpc_api.md §5.1), so ``dsp(AEE_EBADPARM) == 0x8000040e``. They travel as an int32
``retval``; :func:`to_int32` folds them into that range. Each ``ERR_*`` constant below is the
answer to one situation, with the reason for the choice next to it; where the spec names a
value we use it, where it does not the choice is ours and marked "(our choice)".
"""
from __future__ import annotations

from .._ext import load as _load

_abi = _load("_abi")  # the AEE table of csrc/include/qdarpc/aee_err.h: every value defined there once

DSP_AEE_EOFFSET = _abi.DSP_AEE_EOFFSET

# Bare AEE values (qualcomm/fastrpc inc/AEEStdErr.h), as the C header defines them.
AEE_SUCCESS = _abi.AEE_SUCCESS
AEE_EFAILED = _abi.AEE_EFAILED
AEE_ENOMEMORY = _abi.AEE_ENOMEMORY
AEE_EUNABLETOLOAD = _abi.AEE_EUNABLETOLOAD
AEE_EBADSTATE = _abi.AEE_EBADSTATE
AEE_EBADPARM = _abi.AEE_EBADPARM
AEE_EBADITEM = _abi.AEE_EBADITEM
AEE_EINVALIDFORMAT = _abi.AEE_EINVALIDFORMAT
AEE_EUNSUPPORTED = _abi.AEE_EUNSUPPORTED
AEE_EALREADY = _abi.AEE_EALREADY
AEE_ENOTOWNER = _abi.AEE_ENOTOWNER
AEE_ENOTALLOWED = _abi.AEE_ENOTALLOWED
AEE_EINVHANDLE = _abi.AEE_EINVHANDLE
AEE_ENOSUCHMOD = _abi.AEE_ENOSUCHMOD
AEE_ENOSUCHSYMBOL = _abi.AEE_ENOSUCHSYMBOL
AEE_ENOSUCHMAP = _abi.AEE_ENOSUCHMAP
AEE_ESTUBSKELVERMISMATCH = _abi.AEE_ESTUBSKELVERMISMATCH
AEE_ERPC = _abi.AEE_ERPC


def dsp(code: int) -> int:
    """The DSP form of a bare AEE code (``0x80000400 + code``), as an unsigned 32-bit value."""
    return (DSP_AEE_EOFFSET + code) & 0xFFFF_FFFF


def to_int32(value: int) -> int:
    """Fold a 32-bit result (e.g. ``0x8000040e``) into the signed ``retval`` field."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def to_u32(value: int) -> int:
    """The unsigned view of an int32 result, for messages and comparisons."""
    return value & 0xFFFF_FFFF


# -- Transport / dispatch ---------------------------------------------------------------------
# Payload metadata that does not decode (counts beyond the payload, buffers outside their
# pages). Kernel bug, never a user one; the DSP refuses the message like a bad argument.
ERR_MALFORMED = dsp(AEE_EBADPARM)  # (our choice)
# A message on a client that has no PD, or whose PD crashed or exited: the PD-exiting code of
# docs/spec/legacy_fastrpc_api.md §5.3 (the calculator test retries on it), kept until INIT_RELEASE clears the client.
ERR_NO_PD = dsp(AEE_EBADSTATE)  # (our choice, suggested by the brief)
# Also the answer when the payload itself is unreachable (SMMU fault): the PD named by the
# header client id crashes, except for kernel (INIT/utility) messages, which change nothing.
ERR_PD_CRASHED = dsp(AEE_EBADSTATE)  # docs/spec/legacy_fastrpc_api.md §5.1: "PD exiting/crashed, exception"
# A message that acts for a client other than its sender (an INIT request naming another
# client id, as a user INVOKE of handle 1 on the QDA RFC can), or one that arrives without
# the driver's sender stamp: refused, nothing changes.
ERR_NOT_OWNER = dsp(AEE_ENOTOWNER)  # (our choice: "not an owner authorized to perform the operation")
# A page descriptor (CREATE init memory, CREATE_STATIC heap, MMAP, MEM_MAP) outside the context
# banks the sender was granted: the DSP will not map another session's memory for it.
ERR_FOREIGN_PAGES = dsp(AEE_ENOTALLOWED)  # (our choice)
# Constant handle below 0x100 that nothing serves: docs/spec/legacy_fastrpc_api.md §5.3 (qualcomm/fastrpc PR #96).
ERR_UNKNOWN_CONST_HANDLE = dsp(AEE_ERPC)
# A known static interface (listener, perf, msgd, ...) that the emulator does not implement.
ERR_STATIC_UNSUPPORTED = dsp(AEE_EUNSUPPORTED)
# Dynamic handle not open in the calling process: mod-table lookup failure, docs/spec/legacy_fastrpc_api.md §5.3 [inferred].
ERR_NO_SUCH_HANDLE = dsp(AEE_ENOSUCHMOD)
# Wrong scalars (counts) or too-short buffers for a static or declared method: docs/spec/legacy_fastrpc_api.md §2.4. Also
# (our choice) INIT-handle requests that contradict themselves: CREATE name/file lengths that
# disagree with the buffers, MMAP/MEM_MAP of a zero-size page descriptor (QDA sends {0, 0}
# for fd <= 0, the kernel does not check, so the DSP refuses it).
ERR_BAD_PARM = dsp(AEE_EBADPARM)
# Unknown method of a skel or of a static handle: docs/spec/legacy_fastrpc_api.md §2.4 / §5.3.
ERR_UNKNOWN_METHOD = dsp(AEE_EUNSUPPORTED)

# -- Static services of a PD -------------------------------------------------------------------
# adsp_listener1 next2 when the PD it waits in ends (adsp_current_process1 exit, INIT_RELEASE, a
# crash) while it waits or before it is sent: the PD-exiting code, on
# which the library's listener thread leaves its loop at once (listener_android.c; any other
# error is retried once, AEE_EINTERRUPTED forever): docs/spec/legacy_fastrpc_api.md §6.4.
ERR_LISTENER_ENDED = dsp(AEE_EBADSTATE)

# -- Module loader (reported through remotectl's dlerr, the invoke itself returns 0) ---------
ERR_MOD_NOT_FOUND = dsp(AEE_ENOSUCHMOD)  # no skel of that file name anywhere (brief)
ERR_SYM_NOT_FOUND = dsp(AEE_ENOSUCHSYMBOL)  # file found, symbol missing (observed, qualcomm/fastrpc issue #379)
# A file exists but cannot be loaded: a Python skel that fails to import or defines no
# Skeleton, a .so that dlopen rejects (e.g. a real Hexagon skel on an x86 host).
ERR_MOD_UNLOADABLE = dsp(AEE_EUNABLETOLOAD)  # (our choice)
ERR_BAD_URI = dsp(AEE_EBADPARM)  # "file://" URI without "?symbol" (qualcomm/fastrpc parse_uri fails) (our choice)
ERR_IDL_VERSION = dsp(AEE_ESTUBSKELVERMISMATCH)  # calculator _idlver check, docs/spec/legacy_fastrpc_api.md §2.5 [inferred]
# remotectl close of a handle this process does not have open.
ERR_CLOSE_UNKNOWN = dsp(AEE_ENOSUCHMOD)  # (our choice, same as invoking it)

# -- INIT handle (1) ---------------------------------------------------------------------------
# Non-empty shell image that is not a 32-bit little-endian Hexagon (EM_QDSP6) ELF.
ERR_BAD_SHELL = dsp(AEE_EINVALIDFORMAT)  # (our choice)
# CREATE / CREATE_STATIC / ATTACH for a client that already has a different live PD.
ERR_PD_EXISTS = dsp(AEE_EALREADY)  # (our choice)
# Unsigned PD requested on a domain whose capability table says UNSIGNED_PD_SUPPORT = 0.
ERR_UNSIGNED_UNSUPPORTED = dsp(AEE_EUNSUPPORTED)  # (our choice)
# CREATE_STATIC with a name this domain has no static PD for ("bad PD type", docs/spec/legacy_fastrpc_api.md §5.1).
ERR_UNKNOWN_STATIC_PD = dsp(AEE_EBADITEM)  # (our choice)
# MMAP / MEM_MAP that does not fit the process's DSP virtual address space.
ERR_VA_EXHAUSTED = dsp(AEE_ENOMEMORY)
# MUNMAP / MEM_UNMAP with no matching mapping; also a skel's mapping lookup by fd that fails
# (HAP_mmap_get analogue).
ERR_NO_SUCH_MAP = dsp(AEE_ENOSUCHMAP)  # (our choice)

# -- Built-in skels --------------------------------------------------------------------------
# A built-in skel's check of its own work failed (multithreading: the threads' partial sums do
# not add up, a barrier broke or timed out): the generic failure.
ERR_SKEL_CHECK = dsp(AEE_EFAILED)  # (our choice)
