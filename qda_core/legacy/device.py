"""The legacy driver's per-DSP state: one channel (``fastrpc_channel_ctx``) and its device nodes.

Which nodes exist is decided here, in :data:`NODE_POLICY`, and nowhere else. Upstream
(``fastrpc_rpmsg_probe``) registers, per rpmsg channel:

* ADSP/MDSP/SDSP: one node, ``fastrpc-<d>-secure`` unless the DT node carries
  ``qcom,non-secure-domain``, else ``fastrpc-<d>``. Every upstream DT marks these domains
  non-secure, so we do too: one node ``/dev/fastrpc-<d>`` on a non-secure channel.
* CDSP/CDSP1: both ``fastrpc-<d>-secure`` and ``fastrpc-<d>``. Recent DTs drop
  ``qcom,non-secure-domain`` for the CDSP, so the channel is secure and the non-secure node may
  only create unsigned PDs (``INIT_CREATE`` -> ``ECONNREFUSED`` otherwise).
* GDSP0/GDSP1: the upstream driver's domain table has no GDSP (probe fails with ``EINVAL`` for
  that label), so no legacy node exists; those DSPs are reachable through QDA only.

The channel owns what the kernel keeps per ``fastrpc_channel_ctx``: the rpmsg channel, one
invoke engine with cyclic context ids 1..255 shared by every file on both nodes, the
GET_DSP_INFO capability cache, and the remote heap of INIT_CREATE_STATIC.
"""
from __future__ import annotations

import errno
import os
import threading
import weakref

from .. import debug
from ..errors import errno_error
from ..fastrpc import CTX_ID_LIMIT, FastRpc, IdAllocator
from ..mem.bus import ComputeBus
from ..mem.gem import GemObject
from ..rpmsg import Channel
from ..uapi import LEGACY_DOMAINS
from .file import LegacyFile


#: domain -> (channel is secure, node suffixes registered). The one place the node set is chosen.
NODE_POLICY: dict[str, tuple[bool, tuple[bool, ...]]] = {
    "adsp": (False, (False,)),
    "mdsp": (False, (False,)),
    "sdsp": (False, (False,)),
    "cdsp": (True, (True, False)),
    "cdsp1": (True, (True, False)),
}


def node_path(dsp_name: str, secure: bool) -> str:
    """``/dev/fastrpc-<d>`` or ``/dev/fastrpc-<d>-secure`` (``"fastrpc-%s%s"`` upstream)."""
    return f"/dev/fastrpc-{dsp_name}{'-secure' if secure else ''}"


class LegacyChannel:
    """The legacy driver's state for one DSP (one ``fastrpc_channel_ctx``)."""

    def __init__(self, dsp_name: str, bus: ComputeBus, channel: Channel):
        if dsp_name not in NODE_POLICY:
            raise ValueError(f"the legacy fastrpc driver has no domain {dsp_name!r}; "
                             f"known: {', '.join(NODE_POLICY)}")
        self.dsp_name = dsp_name
        self.domain_id = LEGACY_DOMAINS[dsp_name]
        self.bus = bus
        self.channel = channel
        self.secure, suffixes = NODE_POLICY[dsp_name]
        self.unsigned_support = dsp_name in ("cdsp", "cdsp1")  # "only supported on CDSP and CDSP1"
        self.fastrpc = FastRpc(channel, IdAllocator(limit=CTX_ID_LIMIT, cyclic=True))
        self.lock = threading.Lock()  # protects dsp_attributes, remote_heap, files
        self.dsp_attributes: tuple[int, ...] | None = None
        self.remote_heap: GemObject | None = None
        self.files: weakref.WeakSet = weakref.WeakSet()
        self.devices = {node_path(dsp_name, s): LegacyDevice(self, s) for s in suffixes}

    @property
    def up(self) -> bool:
        """False once the rpmsg channel is removed (DSP restart): nodes gone, invokes EPIPE."""
        return self.channel.up

    def remove(self) -> None:
        """``fastrpc_rpmsg_remove``: no invocations past this point, nodes deregistered, the
        remote heap freed. Open files stay usable only for ``close()`` (everything else EPIPE)."""
        self.channel.remove()
        with self.lock:
            heap, self.remote_heap = self.remote_heap, None
        if heap is not None:
            heap.put()

    def info(self) -> dict:
        return {
            "dsp_name": self.dsp_name, "domain_id": self.domain_id, "secure": self.secure,
            "unsigned_support": self.unsigned_support, "up": self.up, "nodes": list(self.devices),
            "open_files": len(self.files), "attributes_cached": self.dsp_attributes is not None,
            "remote_heap": self.remote_heap.size if self.remote_heap is not None else 0,
        }

    def __repr__(self) -> str:
        return f"<LegacyChannel {self.dsp_name} secure={self.secure} up={self.up}>"


class LegacyDevice:
    """One misc device node (``struct fastrpc_device``); ``open()`` returns a LegacyFile."""

    def __init__(self, channel: LegacyChannel, secure: bool):
        self.channel = channel
        self.secure = secure
        self.path = node_path(channel.dsp_name, secure)

    @property
    def registered(self) -> bool:
        return self.channel.up

    def open(self, flags: int = os.O_RDWR):
        """``fastrpc_device_open``: takes one whole session (context bank) now, or ``EBUSY``."""
        if not self.registered:
            raise errno_error(errno.ENOENT, f"{self.path}: node deregistered (DSP channel removed)")
        cb = self.channel.bus.take_session(threading.get_native_id())
        try:
            f = LegacyFile(self, cb, flags)
        except BaseException:
            self.channel.bus.release(cb)
            raise
        with self.channel.lock:
            self.channel.files.add(f)
        debug.dbg("legacy", "%s opened: session %d (SID %d)", self.path, cb.index, cb.sid)
        return f

    def info(self) -> dict:
        bus = self.channel.bus
        return {"path": self.path, "secure": self.secure, "dsp_name": self.channel.dsp_name,
                "domain_id": self.channel.domain_id, "registered": self.registered,
                "context_banks": len(bus.cbs), "free_context_banks": bus.free_count}

    def __repr__(self) -> str:
        return f"<LegacyDevice {self.path}>"
