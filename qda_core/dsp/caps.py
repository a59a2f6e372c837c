"""Per-domain capability tables answered on the kernel "DSP utilities" handle (2).

Attribute ids are ``enum remote_dsp_attributes`` (docs/spec/legacy_fastrpc_api.md §4.7). The values
describe the DSP this package emulates: a v68-class CDSP (four 128-byte HVX contexts, one
4 MiB VTCM page, no HMX) and v66-class ADSP/SDSP without HVX. ``ARCH_VER`` carries the Hexagon
version in its low byte (0x68 = v68); the real encoding is not public (docs/spec/legacy_fastrpc_api.md §11). Features the
emulator does not provide (async FastRPC, status notifications, dspqueue, ...) read 0.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ..wire import (ARCH_VER, ASYNC_FASTRPC_SUPPORT, DOMAIN_SUPPORT, DSP_IMAGE_CONFIG,  # noqa: F401
                    DSPQUEUE_SUPPORT, EXTENDED_MAP_SUPPORT, HANDLE_PRIORITY_SUPPORT, HMX_SUPPORT_DEPTH,
                    HMX_SUPPORT_SPATIAL, HVX_SUPPORT_64B, HVX_SUPPORT_128B, MCID_MULTICAST,
                    STATUS_NOTIFICATION_SUPPORT, UNSIGNED_PD_SUPPORT, VTCM_COUNT, VTCM_PAGE)

#: Highest attribute id + 1 the kernel asks for (FASTRPC_MAX_DSP_ATTRIBUTES).
MAX_ATTRIBUTES = 256

_CDSP = {
    DOMAIN_SUPPORT: 1,
    UNSIGNED_PD_SUPPORT: 1,
    HVX_SUPPORT_64B: 0,
    HVX_SUPPORT_128B: 4,
    VTCM_PAGE: 4 << 20,
    VTCM_COUNT: 1,
    ARCH_VER: 0x68,
}
_ADSP = {DOMAIN_SUPPORT: 1, ARCH_VER: 0x66}

DEFAULT_CAPABILITIES: Mapping[str, Mapping[int, int]] = MappingProxyType({
    "adsp": MappingProxyType(_ADSP),
    "mdsp": MappingProxyType({DOMAIN_SUPPORT: 1, ARCH_VER: 0x66}),
    "sdsp": MappingProxyType(_ADSP),
    "cdsp": MappingProxyType(_CDSP),
    "cdsp1": MappingProxyType(_CDSP),
    "gdsp0": MappingProxyType(_CDSP),
    "gdsp1": MappingProxyType(_CDSP),
})


def capability_table(domain: str, overrides: Mapping[int, int] | None = None) -> dict[int, int]:
    """The attribute -> value table of ``domain`` with ``overrides`` applied (missing ids = 0)."""
    base = DEFAULT_CAPABILITIES.get(domain)
    if base is None:
        raise ValueError(f"unknown DSP domain {domain!r}; known: {', '.join(DEFAULT_CAPABILITIES)}")
    table = dict(base)
    for attr, value in (overrides or {}).items():
        if not 0 <= attr < MAX_ATTRIBUTES:
            raise ValueError(f"capability attribute {attr} outside 0..{MAX_ATTRIBUTES - 1}")
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"capability {attr} value {value} is not a u32")
        table[attr] = value
    return table
