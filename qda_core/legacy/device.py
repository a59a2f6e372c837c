"""The legacy driver's per-DSP state: one channel (``fastrpc_channel_ctx``) and its device nodes.

Which nodes exist is decided by the channel's kernel revision (:mod:`.revisions`:
``MISC_NODES`` for upstream misc/fastrpc, ``SHIM_NODES`` for the QDA shim) and nowhere else;
:data:`NODE_POLICY` is misc's table, the one the SoC wires legacy channels for.

The channel owns what the kernel keeps per ``fastrpc_channel_ctx``: the rpmsg channel, one
invoke engine with context ids 1..255 shared by every file on both nodes (and, from Linux 7.3,
the sequence counter of the ctx word), the GET_DSP_INFO capability cache, the remote heap of
INIT_CREATE_STATIC, and whether the platform supports poll mode (``poll_mode_supported``: the
SoC's ``soc_data``/closed machine list upstream, the SoC profile's ``poll_mode`` here).
"""
from __future__ import annotations

import errno
import os
import threading
import weakref

import itertools

from .. import debug, kernels, wire
from ..errors import errno_error
from ..fastrpc import CTX_ID_LIMIT, FastRpc, IdAllocator
from ..mem.bus import ComputeBus
from ..mem.gem import GemObject
from ..rpmsg import Channel
from ..wire import DOMAIN_IDS
from .file import LegacyFile
from .revisions import MISC_NODES, LegacyPolicy, policy

#: misc/fastrpc's node table (domain -> (channel is secure, node suffixes registered)); the
#: domains the SoC gives a legacy channel. Each revision's own table: :mod:`.revisions`.
NODE_POLICY = MISC_NODES


class _OneShot:
    """A message buffer used once (the device's own messages are rare: no pool)."""

    __slots__ = ("obj", "backing", "dma_addr")

    def __init__(self, obj: GemObject):
        self.obj, self.backing, self.dma_addr = obj, obj.backing, obj.dma_addr

    def release(self) -> None:
        self.obj.put()


def node_path(dsp_name: str, secure: bool) -> str:
    """``/dev/fastrpc-<d>`` or ``/dev/fastrpc-<d>-secure`` (``"fastrpc-%s%s"`` upstream)."""
    return f"/dev/fastrpc-{dsp_name}{'-secure' if secure else ''}"


class LegacyChannel:
    """The legacy driver's state for one DSP (one ``fastrpc_channel_ctx``), following one
    legacy kernel revision (``revision``, a :class:`qda_core.kernels.Revision`; default
    :data:`qda_core.kernels.DEFAULT`). ``poll_mode``: the platform supports poll mode."""

    def __init__(self, dsp_name: str, bus: ComputeBus, channel: Channel,
                 revision: kernels.Revision | None = None, *, poll_mode: bool = False):
        if dsp_name not in DOMAIN_IDS:
            raise ValueError(f"no DSP domain {dsp_name!r}; known: {', '.join(DOMAIN_IDS)}")
        self.dsp_name = dsp_name
        self.domain_id = DOMAIN_IDS[dsp_name]
        self.bus = bus
        self.channel = channel
        #: The platform supports poll mode (SET_OPTION enable answers EOPNOTSUPP otherwise).
        self.poll_mode_supported = poll_mode
        self.lock = threading.Lock()  # protects dsp_attributes, remote_heap, files
        self.dsp_attributes: tuple[int, ...] | None = None
        self.remote_heap: GemObject | None = None
        self.files: weakref.WeakSet = weakref.WeakSet()
        self._client_ids = itertools.count(1)  # the QDA shim's client ids
        self._revision: kernels.Revision | None = None
        self.devices: dict[str, LegacyDevice] = {}
        self.revision = revision or kernels.REVISIONS["legacy"][kernels.DEFAULT["legacy"]]

    @property
    def revision(self) -> kernels.Revision:
        """The legacy kernel revision this channel follows (``legacy:<name>``)."""
        return self._revision

    @revision.setter
    def revision(self, rev: kernels.Revision) -> None:
        """Follow ``rev``: its node set (none where the revision has no node for this DSP),
        context ids and ctx layout. Only before any file is open (a probe-time choice);
        setting the same revision again changes nothing."""
        if getattr(rev, "frontend", None) != "legacy":
            raise ValueError(f"{rev} is not a legacy kernel revision")
        if rev == self._revision:
            return
        pol = policy(rev)
        with self.lock:
            if len(self.files):
                raise ValueError(f"{self.dsp_name}: cannot change the kernel revision with files open")
            self._revision, self.policy = rev, pol
            self.secure, suffixes = pol.nodes.get(self.dsp_name, (False, ()))
            # misc: "only supported on CDSP and CDSP1"; the shim: any domain (the DSP decides)
            self.unsigned_support = pol.unsigned_domains is None or self.dsp_name in pol.unsigned_domains
            self.fastrpc = FastRpc(self.channel, IdAllocator(limit=CTX_ID_LIMIT, cyclic=pol.cyclic_ids), pol.ctx)
            self.devices = {node_path(self.dsp_name, s): LegacyDevice(self, s) for s in suffixes}

    def device_query(self, handle: int, sc: int, descs) -> int:
        """A kernel message the device sends on its own, from no file: the QDA core's
        capability query, which fills the cache GET_DSP_INFO reads (shared by every file and
        by both nodes). Its payload lives in the rpmsg device's own bank (SID 0, no
        session's), so it needs no context bank of a file. ``descs``: buffers copied inline
        (fd -1). Returns the DSP retval; EPIPE once the channel is gone."""
        if not self.up:
            raise errno_error(errno.EPIPE, f"{self.dsp_name}: DSP channel is down")
        kcb = self.bus.kernel_cb
        try:
            return self.fastrpc.invoke(
                client_id=0, tid=threading.get_native_id(), handle=handle, sc=sc, pd=0, args=descs,
                refs=bytearray(16 * wire.sc_length(sc)),
                msg_alloc=lambda size: _OneShot(GemObject.create(kcb, size, name="msg")),
                origin=wire.Origin(0, frozenset((kcb.sid,)), True))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise errno_error(errno.EPIPE, f"{self.dsp_name}: DSP channel is down") from None
            raise

    def next_client_id(self) -> int:
        """The QDA shim's client id of a new file (a per-device counter, as the QDA core's)."""
        return next(self._client_ids)

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
            "revision": str(self.revision), "poll_mode_supported": self.poll_mode_supported,
        }

    def __repr__(self) -> str:
        return f"<LegacyChannel {self.dsp_name} {self.revision.name} secure={self.secure} up={self.up}>"


class LegacyDevice:
    """One misc device node (``struct fastrpc_device``); ``open()`` returns a LegacyFile."""

    def __init__(self, channel: LegacyChannel, secure: bool):
        self.channel = channel
        self.secure = secure
        self.path = node_path(channel.dsp_name, secure)

    @property
    def revision(self) -> kernels.Revision:
        """The legacy kernel revision in force (its channel's)."""
        return self.channel.revision

    @revision.setter
    def revision(self, rev: kernels.Revision) -> None:
        if rev != self.channel.revision:
            raise ValueError(f"{self.path} follows its channel's revision ({self.channel.revision}), not {rev}")

    @property
    def policy(self) -> LegacyPolicy:
        return self.channel.policy

    @property
    def registered(self) -> bool:
        return self.channel.up and self.channel.devices.get(self.path) is self

    def open(self, flags: int = os.O_RDWR):
        """``fastrpc_device_open``: misc takes one whole session (context bank) now, or
        ``EBUSY``; the QDA shim only makes the file (its first allocation takes the bank)."""
        if not self.registered:
            raise errno_error(errno.ENOENT, f"{self.path}: node deregistered (DSP channel removed)")
        cb = None
        if self.policy.cb_at_open:
            cb = self.channel.bus.take_session(threading.get_native_id())
        try:
            f = LegacyFile(self, cb, flags)
        except BaseException:
            if cb is not None:
                self.channel.bus.release(cb)
            raise
        with self.channel.lock:
            self.channel.files.add(f)
        if cb is not None:
            debug.dbg("legacy", "%s opened: session %d (SID %d)", self.path, cb.index, cb.sid)
        return f

    def info(self) -> dict:
        bus = self.channel.bus
        return {"path": self.path, "secure": self.secure, "dsp_name": self.channel.dsp_name,
                "domain_id": self.channel.domain_id, "registered": self.registered,
                "context_banks": len(bus.cbs), "free_context_banks": bus.free_count,
                "revision": str(self.revision)}

    def __repr__(self) -> str:
        return f"<LegacyDevice {self.path}>"
