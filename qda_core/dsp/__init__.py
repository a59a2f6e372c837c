"""The emulated Hexagon DSP: protection domains, static handles, module loader, skeletons.

It sees only what crosses the transport: ``fastrpc_msg`` requests, payloads and device memory
reached through a :class:`DeviceMemory`. Public API: :class:`EmulatedDsp`, the skeleton API
(:class:`Skeleton`, :func:`method`, :class:`Call`), the result codes in :mod:`.aee`.
"""
from __future__ import annotations

from . import aee, caps
from .core import STATIC_PDS, DeviceMemory, EmulatedDsp, Endpoint
from .cost import CostModel, DspStats
from .loader import ENTRY_POINT_GROUP, LoadError, ModuleUri, parse_uri
from .process import MemMapping, ProcessInfo
from .skel import Call, DmaHandle, Skeleton, method

__all__ = [
    "EmulatedDsp", "Endpoint", "DeviceMemory", "STATIC_PDS", "CostModel", "DspStats", "ProcessInfo",
    "MemMapping", "Skeleton", "method", "Call", "DmaHandle", "ModuleUri", "parse_uri", "LoadError",
    "ENTRY_POINT_GROUP", "aee", "caps",
]
