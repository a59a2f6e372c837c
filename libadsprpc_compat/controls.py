"""The control requests ``remote_handle_control`` and ``remote_session_control``
(docs/spec/legacy_fastrpc_api.md §4.7, §4.8), one handler per request, in tables keyed by the
request's named constant.

A handler gets the :class:`~libadsprpc_compat.Library` and a ctypes copy of the request's struct
(:data:`~libadsprpc_compat.constants.HANDLE_CONTROL_STRUCTS` /
:data:`~libadsprpc_compat.constants.SESSION_CONTROL_STRUCTS`), reads its inputs from it and writes
its outputs into it; the Library copies the outputs back to the caller. A request with no entry
is AEE_EUNSUPPORTED, as in QF.
"""
from __future__ import annotations

from typing import Callable

from qda_core.wire import (ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXCEPTION, DOMAIN_SUPPORT,
                           RPC_PARAM_ADAPTIVE_QOS, RPC_PARAM_THREAD,
                           STATUS_NOTIFICATION_SUPPORT)

from .cargs import A, cstr, fail, put_cstr
from .constants import (DOMAIN_NAMES, DSPRPC_CONTROL_LATENCY, DSPRPC_CONTROL_UNSIGNED_MODULE,
                        DSPRPC_CONTROL_WAKELOCK, DSPRPC_GET_DOMAIN, DSPRPC_GET_DSP_INFO, FASTRPC_CONTEXT_CREATE,
                        FASTRPC_CONTEXT_DESTROY, FASTRPC_CONTROL_PD_DUMP, FASTRPC_DOMAIN_URI,
                        FASTRPC_GET_EFFECTIVE_DOMAIN_ID, FASTRPC_GET_URI, FASTRPC_MAX_ATTRIBUTES,
                        FASTRPC_PD_INITMEM_SIZE, FASTRPC_REGISTER_STATUS_NOTIFICATIONS,
                        FASTRPC_RELATIVE_THREAD_PRIORITY, FASTRPC_REMOTE_PROCESS_EXCEPTION,
                        FASTRPC_REMOTE_PROCESS_KILL, FASTRPC_REMOTE_PROCESS_TYPE, FASTRPC_RESERVE_NEW_SESSION,
                        FASTRPC_SESSION_CLOSE, FASTRPC_SESSION_URI, FASTRPC_THREAD_PARAMS, NUM_DOMAINS,
                        NUM_DOMAINS_EXTEND, NUM_SESSIONS, RPC_ADAPTIVE_QOS, RPC_DISABLE_QOS, RPC_PM_QOS,
                        RPC_POLL_QOS)
from .uri import domain_by_prefix

#: Thread parameters a user PD starts with, and the bounds FASTRPC_THREAD_PARAMS accepts.
DEFAULT_PRIO, DEFAULT_STACK = 192, 16 * 1024
MIN_STACK, MAX_STACK = 16 * 1024, 8 * 1024 * 1024
#: RPC_POLL_QOS latency bound (us), and FASTRPC_PD_INITMEM_SIZE bounds (bytes).
POLL_QOS_MAX_LATENCY = 10000
INITMEM_MIN, INITMEM_MAX = 3 << 20, 200 << 20


# --- helpers over a Library's per-domain state --------------------------------------------
def _domains(domain: int) -> list[int]:
    """The effective domains a request names: -1 = all of them."""
    if domain == -1:
        return list(range(NUM_DOMAINS_EXTEND))
    if not 0 <= domain < NUM_DOMAINS_EXTEND:
        fail(A.AEE_EBADPARM, f"invalid domain {domain}")
    return [domain]


def _open_session(lib, domain: int):
    """The open session of ``domain``: AEE_EBADPARM for a bad domain, AEE_ERPC if none is open."""
    if not 0 <= domain < NUM_DOMAINS_EXTEND:
        fail(A.AEE_EBADPARM, f"invalid domain {domain}")
    s = lib._sessions.get(domain)
    if s is None:
        fail(A.AEE_ERPC, f"no session open on domain {domain}")
    return s


def _set_thread(lib, eff: int, prio, stack) -> None:
    """Record thread params for ``eff`` (None keeps the current value) and send them to its
    session if one is open."""
    opts = lib._opts.setdefault(eff, {})
    old = opts.get("thread", (DEFAULT_PRIO, DEFAULT_STACK))
    params = (prio if prio is not None else old[0], stack if stack is not None else old[1])
    opts["thread"] = params
    s = lib._sessions.get(eff)
    if s is not None:
        code = s.set_param(RPC_PARAM_THREAD, params)
        if code:
            fail(code, "remotectl set_param(thread params)")


def _has_domain(soc, dom: int) -> bool:
    try:
        soc.domain(dom)
        return True
    except OSError:
        return False


# --- remote_handle_control ----------------------------------------------------------------
def _latency(lib, eff: int, o) -> None:
    if o.enable == RPC_PM_QOS:
        return
    if o.enable == RPC_ADAPTIVE_QOS:
        lib._opts.setdefault(eff, {})["qos"] = (RPC_ADAPTIVE_QOS,)
        s = lib._session(eff, create=False)
        if s is not None:
            code = s.set_param(RPC_PARAM_ADAPTIVE_QOS, (RPC_ADAPTIVE_QOS,))
            if code:
                fail(code, "adaptive QoS")
        return
    if o.enable == RPC_POLL_QOS and o.latency >= POLL_QOS_MAX_LATENCY:
        fail(A.AEE_EBADPARM, f"RPC_POLL_QOS latency {o.latency} us must be < {POLL_QOS_MAX_LATENCY}")
    # Needs the kernel's control ioctl: not upstream (docs/spec/legacy_fastrpc_api.md §10 item 6).
    if o.enable in (RPC_DISABLE_QOS, RPC_POLL_QOS):
        fail(A.AEE_EUNSUPPORTED, "the driver has no QoS control")
    fail(A.AEE_EBADPARM, f"latency control enable={o.enable}")


def _get_dsp_info(lib, eff: int, o) -> None:
    if not 0 <= o.domain < NUM_DOMAINS_EXTEND or o.attribute_ID >= FASTRPC_MAX_ATTRIBUTES:
        fail(A.AEE_EBADPARM, f"GET_DSP_INFO domain {o.domain} attribute {o.attribute_ID}")
    dom = o.domain & 7
    if o.attribute_ID == DOMAIN_SUPPORT:
        o.capability = int(dom in DOMAIN_NAMES and _has_domain(lib.soc, dom))
        return
    s = lib._session(o.domain, create=False)
    b = s.backend if s is not None else lib._backend_cls(lib.soc)  # QF: a temporary file
    code, value = b.dsp_info(dom, o.attribute_ID)
    if code:
        fail(A.AEE_EUNKNOWN, "GET_DSP_INFO ioctl failed", errno=b.errno or None, origin="driver")
    if value is not None:
        if o.attribute_ID == STATUS_NOTIFICATION_SUPPORT:
            value = int(value == 3)  # reported as 1 only for the V2 raw value 3
        o.capability = value


def _wakelock(lib, eff: int, o) -> None:
    if o.enable not in (0, 1):
        fail(A.AEE_EBADPARM, f"wakelock enable={o.enable}")
    # the emulated SoC never suspends: nothing to hold


def _get_domain(lib, eff: int, o) -> None:
    o.domain = eff


#: ``remote_handle_control`` request -> handler(lib, effective domain, struct). DSPRPC_SET_PATH
#: and DSPRPC_GET_PATH have structs but no handler: AEE_EUNSUPPORTED, as upstream.
HANDLE_CONTROLS: dict[int, Callable] = {
    DSPRPC_CONTROL_LATENCY: _latency,
    DSPRPC_GET_DSP_INFO: _get_dsp_info,
    DSPRPC_CONTROL_WAKELOCK: _wakelock,
    DSPRPC_GET_DOMAIN: _get_domain,
}
#: Requests whose ``datalen`` QF does not check against the struct size.
HANDLE_CONTROL_ANY_LEN = frozenset({DSPRPC_GET_DSP_INFO})


# --- remote_session_control ---------------------------------------------------------------
def _thread_params(lib, o) -> None:
    if not (o.prio == -1 or 1 <= o.prio <= 255):
        fail(A.AEE_EBADPARM, f"thread priority {o.prio} (valid: -1, 1..255)")
    if not (o.stack_size == -1 or MIN_STACK <= o.stack_size <= MAX_STACK):
        fail(A.AEE_EBADPARM, f"stack size {o.stack_size} (valid: -1, 16 KiB..8 MiB)")
    for d in _domains(o.domain):
        _set_thread(lib, d, o.prio if o.prio != -1 else None, o.stack_size if o.stack_size != -1 else None)


def _unsigned_module(lib, o) -> None:
    for d in _domains(o.domain):
        s = lib._sessions.get(d)
        if s is not None and s.unsigned != bool(o.enable):
            fail(A.AEE_EALREADYLOADED, f"a {'un' if s.unsigned else ''}signed session is open on domain {d}")
        lib._opts.setdefault(d, {})["unsigned"] = bool(o.enable)


def _relative_thread_priority(lib, o) -> None:
    prio = min(255, max(1, DEFAULT_PRIO + o.relative_thread_priority))
    for d in _domains(o.domain):
        _set_thread(lib, d, prio, None)


def _process_kill(lib, o) -> None:
    _open_session(lib, o.domain)
    fail(A.AEE_EUNSUPPORTED, "the driver has no process-kill control")


def _session_close(lib, o) -> None:
    for d in _domains(o.domain):
        s = lib._sessions.get(d)
        # QF: -1 for a closed domain; with -1 it stops at the first one (docs/spec/legacy_fastrpc_api.md §10 item 8).
        if s is None:
            fail(A.AEE_EUNKNOWN, f"no session open on domain {d}")
        lib._drop(s)


def _pd_dump(lib, o) -> None:
    for d in _domains(o.domain):
        if d in lib._sessions:
            fail(A.AEE_ERPC, f"PD dump must be set before the session on domain {d} opens")
        lib._opts.setdefault(d, {})["pd_dump"] = bool(o.enable)


def _process_exception(lib, o) -> None:
    s = _open_session(lib, o.domain)
    code = s.invoker.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXCEPTION, ())
    if code == A.aee_to_dsp(A.AEE_EBADSTATE):  # the DSP's answer once the exception is raised
        return
    fail(A.AEE_ERPC if code == 0 else code, "process exception", origin="dsp" if code else None)


def _process_type(lib, o) -> None:
    if not 0 <= o.domain < NUM_DOMAINS_EXTEND:
        fail(A.AEE_EBADPARM, f"invalid domain {o.domain}")
    s = lib._sessions.get(o.domain)
    o.process_type = int(s.unsigned if s is not None else lib._opts.get(o.domain, {}).get("unsigned", False))


def _status_notifications(lib, o) -> None:
    fail(A.AEE_EUNSUPPORTED, "status notifications are not supported by the upstream drivers")


def _pd_initmem_size(lib, o) -> None:
    if not INITMEM_MIN <= o.pd_initmem_size <= INITMEM_MAX:
        fail(A.AEE_EBADPARM, f"PD init memory {o.pd_initmem_size} (valid: 3 MiB..200 MiB)")
    for d in _domains(o.domain):
        if lib._opts.get(d, {}).get("unsigned"):
            fail(A.AEE_EUNSUPPORTED, "unsigned PDs have a fixed init memory size")
        lib._opts.setdefault(d, {})["initmem"] = o.pd_initmem_size  # no driver field: ignored


def _reserve_new_session(lib, o) -> None:
    dom = domain_by_prefix(cstr(o.domain_name, o.domain_name_len, "RESERVE_NEW_SESSION domain_name"))
    o.effective_domain_id, o.session_id = NUM_DOMAINS_EXTEND, NUM_SESSIONS
    for sid in range(1, NUM_SESSIONS):
        eff = dom + NUM_DOMAINS * sid
        if eff not in lib._reserved and eff not in lib._sessions:
            lib._reserved.add(eff)
            o.effective_domain_id, o.session_id = eff, sid
            return
    fail(A.AEE_ENOSESSION, f"no free session on {DOMAIN_NAMES[dom]}")


def _get_effective_domain_id(lib, o) -> None:
    dom = domain_by_prefix(cstr(o.domain_name, o.domain_name_len, "GET_EFFECTIVE_DOMAIN_ID domain_name"))
    if o.session_id >= NUM_SESSIONS:
        fail(A.AEE_EBADPARM, f"session {o.session_id} (valid: 0..{NUM_SESSIONS - 1})")
    o.effective_domain_id = dom + NUM_DOMAINS * o.session_id


def _get_uri(lib, o) -> None:
    dom = domain_by_prefix(cstr(o.domain_name, o.domain_name_len, "GET_URI domain_name"))
    if o.session_id >= NUM_SESSIONS or not o.uri or not o.module_uri:
        fail(A.AEE_EBADPARM, "GET_URI: bad session id or NULL buffer")
    module = cstr(o.module_uri, o.module_uri_len, "GET_URI module_uri")
    if o.uri_len <= o.module_uri_len:
        fail(A.AEE_EBADSIZE, f"GET_URI: uri_len {o.uri_len} must exceed module_uri_len {o.module_uri_len}")
    text = f"{module}{FASTRPC_DOMAIN_URI}{DOMAIN_NAMES[dom]}{FASTRPC_SESSION_URI}{o.session_id}".encode()
    n = min(len(text), o.uri_len - 1)
    put_cstr(o.uri, text[:n] + b"\0", "GET_URI uri")
    if len(text) >= o.uri_len:
        fail(A.AEE_EBADSIZE, f"GET_URI: {len(text) + 1} bytes needed, uri_len is {o.uri_len}")


def _context_create(lib, o) -> None:
    fail(A.AEE_EUNSUPPORTED, "multi-domain contexts need a driver control the upstream drivers lack")


def _context_destroy(lib, o) -> None:
    if o.flags:
        fail(A.AEE_EBADPARM, f"CONTEXT_DESTROY flags {o.flags:#x} must be 0")
    fail(A.AEE_EBADPARM, f"no context {o.ctx:#x}")


#: ``remote_session_control`` request -> handler(lib, struct). Reserved ids have no entry.
SESSION_CONTROLS: dict[int, Callable] = {
    FASTRPC_THREAD_PARAMS: _thread_params,
    DSPRPC_CONTROL_UNSIGNED_MODULE: _unsigned_module,
    FASTRPC_RELATIVE_THREAD_PRIORITY: _relative_thread_priority,
    FASTRPC_REMOTE_PROCESS_KILL: _process_kill,
    FASTRPC_SESSION_CLOSE: _session_close,
    FASTRPC_CONTROL_PD_DUMP: _pd_dump,
    FASTRPC_REMOTE_PROCESS_EXCEPTION: _process_exception,
    FASTRPC_REMOTE_PROCESS_TYPE: _process_type,
    FASTRPC_REGISTER_STATUS_NOTIFICATIONS: _status_notifications,
    FASTRPC_PD_INITMEM_SIZE: _pd_initmem_size,
    FASTRPC_RESERVE_NEW_SESSION: _reserve_new_session,
    FASTRPC_GET_EFFECTIVE_DOMAIN_ID: _get_effective_domain_id,
    FASTRPC_GET_URI: _get_uri,
    FASTRPC_CONTEXT_CREATE: _context_create,
    FASTRPC_CONTEXT_DESTROY: _context_destroy,
}
