"""Domains named in strings: a module URI's ``&_dom=``/``&_session=`` (docs/spec/legacy_fastrpc_api.md §3.2) and
the domain names ``remote_session_control`` requests pass."""
from __future__ import annotations

from .cargs import A, fail
from .constants import DOMAIN_NAMES, FASTRPC_DOMAIN_URI, FASTRPC_SESSION_URI, NUM_DOMAINS, NUM_SESSIONS


def domain_from_uri(uri: str) -> int:
    """Effective domain of a multi-domain URI (docs/spec/legacy_fastrpc_api.md §3.2): ``&_dom=`` (cdsp1 before cdsp),
    ``&_session=N`` with N < 4. AEE_EBADPARM if there is no ``&_dom=`` or N is invalid."""
    for dom_id, name in DOMAIN_NAMES.items():
        if FASTRPC_DOMAIN_URI + name in uri:
            break
    else:
        fail(A.AEE_EBADPARM, f"URI {uri!r} names no domain (&_dom=...)")
    i = uri.find(FASTRPC_SESSION_URI)
    session = 0
    if i >= 0:
        digits = uri[i + len(FASTRPC_SESSION_URI):]
        j = 0  # QF parses with atoi: an optional sign, then digits
        while j < len(digits) and (digits[j].isdigit() or (j == 0 and digits[j] in "+-")):
            j += 1
        try:
            session = int(digits[:j]) if j else 0
        except ValueError:
            session = -1
        if not 0 <= session < NUM_SESSIONS:
            fail(A.AEE_EBADPARM, f"URI {uri!r}: session must be 0..{NUM_SESSIONS - 1}")
    return dom_id + NUM_DOMAINS * session


def domain_by_prefix(name: str) -> int:
    """The domain id whose name ``name`` starts with (cdsp1 before cdsp), else AEE_EBADPARM."""
    for dom_id, dname in DOMAIN_NAMES.items():
        if name.startswith(dname):
            return dom_id
    fail(A.AEE_EBADPARM, f"unknown domain name {name!r}")
