"""Constants and C types of remote.h / rpcmem.h (qualcomm/fastrpc; docs/spec/legacy_fastrpc_api.md §2-§4).

AEE codes and the ``REMOTE_SCALARS_*`` helpers are not repeated here: they come from the
compiled ``qda_core._abi`` tables (re-exported by the package).
"""
from __future__ import annotations

import ctypes
import enum

# --- domains (remote.h) ---------------------------------------------------------------------
# The library's one domain table. The ids are remote.h's; tests/test_contracts.py ties them and
# the names to the emulator's (``qda_core.soc.DOMAINS``).
ADSP_DOMAIN_ID = 0
MDSP_DOMAIN_ID = 1
SDSP_DOMAIN_ID = 2
CDSP_DOMAIN_ID = 3
CDSP1_DOMAIN_ID = 4
GDSP0_DOMAIN_ID = 5
GDSP1_DOMAIN_ID = 6
#: This library is libcdsprpc: non-domain calls default to the compute DSP.
DEFAULT_DOMAIN_ID = CDSP_DOMAIN_ID

MAX_DOMAIN_URI_SIZE = 12
NUM_DOMAINS = 8
NUM_SESSIONS = 4
NUM_DOMAINS_EXTEND = NUM_DOMAINS * NUM_SESSIONS
FASTRPC_SESSION_URI = "&_session="
FASTRPC_DOMAIN_URI = "&_dom="

#: Domain names by id, in the order the library matches them in a URI (cdsp1 before cdsp).
DOMAIN_NAMES = {ADSP_DOMAIN_ID: "adsp", MDSP_DOMAIN_ID: "mdsp", SDSP_DOMAIN_ID: "sdsp", CDSP1_DOMAIN_ID: "cdsp1",
                CDSP_DOMAIN_ID: "cdsp", GDSP0_DOMAIN_ID: "gdsp0", GDSP1_DOMAIN_ID: "gdsp1"}

ADSP_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[ADSP_DOMAIN_ID]
MDSP_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[MDSP_DOMAIN_ID]
SDSP_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[SDSP_DOMAIN_ID]
CDSP_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[CDSP_DOMAIN_ID]
CDSP1_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[CDSP1_DOMAIN_ID]
GDSP0_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[GDSP0_DOMAIN_ID]
GDSP1_DOMAIN = FASTRPC_DOMAIN_URI + DOMAIN_NAMES[GDSP1_DOMAIN_ID]

# --- remote_set_mode ------------------------------------------------------------------------
REMOTE_MODE_PARALLEL = 0
REMOTE_MODE_SERIAL = 1

# --- FastRPC buffer attributes --------------------------------------------------------------
FASTRPC_ATTR_NONE = 0
FASTRPC_ATTR_NON_COHERENT = 2
FASTRPC_ATTR_COHERENT = 4
FASTRPC_ATTR_KEEP_MAP = 8
FASTRPC_ATTR_NOMAP = 16
FASTRPC_ATTR_FORCE_NOFLUSH = 32
FASTRPC_ATTR_FORCE_NOINVALIDATE = 64
FASTRPC_ATTR_TRY_MAP_STATIC = 128
FASTRPC_ATTR_NOVA = 256  # library-internal: handle slot descriptors


class fastrpc_map_flags(enum.IntEnum):
    """``enum fastrpc_map_flags`` (remote.h; SDK adds 17/18)."""

    FASTRPC_MAP_STATIC = 0
    FASTRPC_MAP_RESERVED = 1
    FASTRPC_MAP_FD = 2
    FASTRPC_MAP_FD_DELAYED = 3
    FASTRPC_MAP_FD_NOMAP = 16
    FASTRPC_MAP_FD_EXTENDED = 17
    FASTRPC_MAP_FD_DELAYED_EXTENDED = 18


FASTRPC_MAP_STATIC = fastrpc_map_flags.FASTRPC_MAP_STATIC
FASTRPC_MAP_RESERVED = fastrpc_map_flags.FASTRPC_MAP_RESERVED
FASTRPC_MAP_FD = fastrpc_map_flags.FASTRPC_MAP_FD
FASTRPC_MAP_FD_DELAYED = fastrpc_map_flags.FASTRPC_MAP_FD_DELAYED
FASTRPC_MAP_FD_NOMAP = fastrpc_map_flags.FASTRPC_MAP_FD_NOMAP
FASTRPC_MAP_MAX = 17  # the library accepts flags < 17 (QF fastrpc_mmap)

REMOTE_MAP_MEM_STATIC = 0

# --- rpcmem.h -------------------------------------------------------------------------------
RPCMEM_HEAP_ID_SECURE = 9
RPCMEM_HEAP_ID_CONTIG = 22
RPCMEM_HEAP_ID_SYSTEM = 25
RPCMEM_DEFAULT_HEAP = -1
RPCMEM_DEFAULT_FLAGS = 1
RPCMEM_FLAG_UNCACHED = 0
RPCMEM_FLAG_CACHED = 1
RPCMEM_HEAP_DEFAULT = 0x80000000
RPCMEM_HEAP_NOREG = 0x40000000
RPCMEM_HEAP_UNCACHED = 0x20000000
RPCMEM_HEAP_NOVA = 0x10000000
RPCMEM_HEAP_NONCOHERENT = 0x08000000
RPCMEM_TRY_MAP_STATIC = 0x04000000
RPCMEM_FORCE_NOINVALIDATE = 0x02000000
RPCMEM_FORCE_NOFLUSH = 0x01000000

# --- remote_handle_control requests (docs/spec/legacy_fastrpc_api.md §4.7) ------------------------
DSPRPC_RESERVED = 0
DSPRPC_CONTROL_LATENCY = 1
DSPRPC_GET_DSP_INFO = 2
DSPRPC_CONTROL_WAKELOCK = 3
DSPRPC_GET_DOMAIN = 4
DSPRPC_SET_PATH = 5
DSPRPC_GET_PATH = 6

RPC_DISABLE_QOS = 0
RPC_PM_QOS = 1
RPC_ADAPTIVE_QOS = 2
RPC_POLL_QOS = 3

# enum remote_dsp_attributes: one definition, in the wire module (the DSP answers these ids)
from qda_core.wire import (ARCH_VER, ASYNC_FASTRPC_SUPPORT, DOMAIN_SUPPORT, DRIVER_ERROR_CODE_CHANGE,  # noqa: E402,F401
                           DSP_IMAGE_CONFIG, DSPQUEUE_SUPPORT, DSPSIGNAL_DRIVER_SUPPORT, EXTENDED_MAP_SUPPORT,
                           HANDLE_PRIORITY_SUPPORT, HMX_SUPPORT_DEPTH, HMX_SUPPORT_SPATIAL, HVX_SUPPORT_64B,
                           HVX_SUPPORT_128B, MCID_MULTICAST, PERF_V2_DRIVER_SUPPORT, STATUS_NOTIFICATION_SUPPORT,
                           UNSIGNED_PD_SUPPORT, USERSPACE_ALLOCATION_SUPPORT, VTCM_COUNT, VTCM_PAGE)
#: Attribute ids DSPRPC_GET_DSP_INFO accepts are below this.
FASTRPC_MAX_ATTRIBUTES = DSPSIGNAL_DRIVER_SUPPORT + 1

# --- remote_session_control requests (docs/spec/legacy_fastrpc_api.md §4.8) -----------------------
FASTRPC_RESERVED_1 = 0
FASTRPC_THREAD_PARAMS = 1
DSPRPC_CONTROL_UNSIGNED_MODULE = 2
FASTRPC_RESERVED_2 = 3
FASTRPC_RELATIVE_THREAD_PRIORITY = 4
FASTRPC_RESERVED_3 = 5
FASTRPC_REMOTE_PROCESS_KILL = 6
FASTRPC_SESSION_CLOSE = 7
FASTRPC_CONTROL_PD_DUMP = 8
FASTRPC_REMOTE_PROCESS_EXCEPTION = 9
FASTRPC_REMOTE_PROCESS_TYPE = 10
FASTRPC_REGISTER_STATUS_NOTIFICATIONS = 11
FASTRPC_PD_INITMEM_SIZE = 12
FASTRPC_RESERVE_NEW_SESSION = 13
FASTRPC_GET_EFFECTIVE_DOMAIN_ID = 14
FASTRPC_GET_URI = 15
FASTRPC_MAX_THREAD_PARAM = 16
FASTRPC_CONTEXT_CREATE = 17
FASTRPC_CONTEXT_DESTROY = 18
FASTRPC_REMOTE_PROCESS_STATE_DUMP = 19
FASTRPC_MANAGE_DSP_LIBRARY_PATH = 20

# --- C structs (LP64 layouts of remote.h; sizes checked by the contract tests) --------------
_u32, _i32, _u64, _p = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_void_p


def _struct(name: str, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields, "__doc__": f"``struct {name}`` of remote.h."})


remote_dma_handle = _struct("remote_dma_handle", [("fd", _i32), ("offset", _u32)])
remote_rpc_control_latency = _struct("remote_rpc_control_latency", [("enable", _u32), ("latency", _u32)])
remote_dsp_capability = _struct("remote_dsp_capability", [("domain", _u32), ("attribute_ID", _u32), ("capability", _u32)])
remote_rpc_control_wakelock = _struct("remote_rpc_control_wakelock", [("enable", _u32)])
remote_rpc_get_domain = _struct("remote_rpc_get_domain", [("domain", _i32)])
remote_control_custom_path = _struct("remote_control_custom_path", [("value_size", _i32), ("path", _p), ("value", _p)])
remote_rpc_thread_params = _struct("remote_rpc_thread_params", [("domain", _i32), ("prio", _i32), ("stack_size", _i32)])
remote_rpc_control_unsigned_module = _struct("remote_rpc_control_unsigned_module", [("domain", _i32), ("enable", _i32)])
remote_rpc_relative_thread_priority = _struct("remote_rpc_relative_thread_priority", [("domain", _i32), ("relative_thread_priority", _i32)])
remote_rpc_process_clean_params = _struct("remote_rpc_process_clean_params", [("domain", _i32)])
remote_rpc_session_close = _struct("remote_rpc_session_close", [("domain", _i32)])
remote_rpc_control_pd_dump = _struct("remote_rpc_control_pd_dump", [("domain", _i32), ("enable", _i32)])
remote_rpc_process_exception = _struct("remote_rpc_process_exception", [("domain", _i32)])
remote_process_type = _struct("remote_process_type", [("domain", _i32), ("process_type", _i32)])
remote_rpc_notif_register = _struct("remote_rpc_notif_register", [("context", _p), ("domain", _i32), ("notifier_fn", _p)])
remote_rpc_pd_initmem_size = _struct("remote_rpc_pd_initmem_size", [("domain", _i32), ("pd_initmem_size", _u32)])
remote_rpc_reserve_new_session = _struct("remote_rpc_reserve_new_session", [
    ("domain_name", _p), ("domain_name_len", _u32), ("session_name", _p), ("session_name_len", _u32),
    ("effective_domain_id", _u32), ("session_id", _u32)])
remote_rpc_effective_domain_id = _struct("remote_rpc_effective_domain_id", [
    ("domain_name", _p), ("domain_name_len", _u32), ("session_id", _u32), ("effective_domain_id", _u32)])
remote_rpc_get_uri = _struct("remote_rpc_get_uri", [
    ("domain_name", _p), ("domain_name_len", _u32), ("session_id", _u32), ("module_uri", _p),
    ("module_uri_len", _u32), ("uri", _p), ("uri_len", _u32)])
fastrpc_context_create = _struct("fastrpc_context_create", [
    ("effec_domain_ids", _p), ("num_domain_ids", _u32), ("flags", _u64), ("ctx", _u64)])
fastrpc_context_destroy = _struct("fastrpc_context_destroy", [("ctx", _u64), ("flags", _u64)])

#: ``remote_handle_control`` request -> its struct (datalen must equal its size, except
#: GET_DSP_INFO whose datalen QF does not check).
HANDLE_CONTROL_STRUCTS = {
    DSPRPC_CONTROL_LATENCY: remote_rpc_control_latency,
    DSPRPC_GET_DSP_INFO: remote_dsp_capability,
    DSPRPC_CONTROL_WAKELOCK: remote_rpc_control_wakelock,
    DSPRPC_GET_DOMAIN: remote_rpc_get_domain,
    DSPRPC_SET_PATH: remote_control_custom_path,
    DSPRPC_GET_PATH: remote_control_custom_path,
}

#: ``remote_session_control`` request -> its struct (datalen must equal its size).
SESSION_CONTROL_STRUCTS = {
    FASTRPC_THREAD_PARAMS: remote_rpc_thread_params,
    DSPRPC_CONTROL_UNSIGNED_MODULE: remote_rpc_control_unsigned_module,
    FASTRPC_RELATIVE_THREAD_PRIORITY: remote_rpc_relative_thread_priority,
    FASTRPC_REMOTE_PROCESS_KILL: remote_rpc_process_clean_params,
    FASTRPC_SESSION_CLOSE: remote_rpc_session_close,
    FASTRPC_CONTROL_PD_DUMP: remote_rpc_control_pd_dump,
    FASTRPC_REMOTE_PROCESS_EXCEPTION: remote_rpc_process_exception,
    FASTRPC_REMOTE_PROCESS_TYPE: remote_process_type,
    FASTRPC_REGISTER_STATUS_NOTIFICATIONS: remote_rpc_notif_register,
    FASTRPC_PD_INITMEM_SIZE: remote_rpc_pd_initmem_size,
    FASTRPC_RESERVE_NEW_SESSION: remote_rpc_reserve_new_session,
    FASTRPC_GET_EFFECTIVE_DOMAIN_ID: remote_rpc_effective_domain_id,
    FASTRPC_GET_URI: remote_rpc_get_uri,
    FASTRPC_CONTEXT_CREATE: fastrpc_context_create,
    FASTRPC_CONTEXT_DESTROY: fastrpc_context_destroy,
}
