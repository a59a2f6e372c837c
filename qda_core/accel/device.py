"""One emulated QDA device (``/dev/accel/accelN``) per DSP domain.

Holds what the RFC keeps in ``qda_dev``: the DSP name returned by QUERY, the compute bus, the
client-id counter (1, 2, 3, ... never reused), the DRM fake-offset space (page-granular, from
4 GiB), the invoke engine on the device's rpmsg channel, and the dma-buf identities of the
objects it created (so PRIME import of its own export finds the same object).

The device follows one kernel revision (``revision``, :mod:`qda_core.kernels`); ``uapi`` is that
revision's table (:data:`qda_core.uapi.ACCEL_UAPI`), which its files read.
"""
from __future__ import annotations

import errno
import itertools
import os
import threading
import weakref

from .._ext import load
from ..errors import errno_error
from ..fastrpc import CTX_ID4, CtxLayout, FastRpc, IdAllocator
from ..kernels import DEFAULT, REVISIONS, Revision
from ..mem.bus import ComputeBus
from ..rpmsg import Channel
from ..uapi import ACCEL_UAPI, AccelUapi

_iova = load("_iova")

FAKE_OFFSET_START = 1 << 32  # DRM_FILE_PAGE_OFFSET_START on 64-bit
FAKE_OFFSET_END = 1 << 48


#: The v1 ctx word: ``id << 4 | pd`` as the RFC's, a reply decoded as ``ctx >> 4`` whole.
CTX_ID4_WHOLE = CtxLayout("id<<4, ctx>>4", 4, id_bits=60)


class QdaDevice:
    """The driver instance of one DSP; ``open()`` returns a :class:`QdaFile`."""

    def __init__(self, minor: int, dsp_name: str, domain_id: int, bus: ComputeBus, channel: Channel,
                 revision: Revision | None = None):
        self.minor = minor
        #: The kernel revision this driver instance follows (qda_core.kernels).
        self.revision: Revision = revision or REVISIONS["accel"][DEFAULT["accel"]]
        if self.revision.frontend != "accel":
            raise ValueError(f"{self.revision} is not an accel revision")
        #: The revision's uapi: ioctl table, layouts, and the behaviours that differ.
        self.uapi: AccelUapi = ACCEL_UAPI[self.revision.name]
        self.path = f"/dev/accel/accel{minor}"
        self.dsp_name = dsp_name
        self.domain_id = domain_id
        self.bus = bus
        self.channel = channel
        layout = {lo.id_bits: lo for lo in (CTX_ID4, CTX_ID4_WHOLE)}[self.uapi.ctx_id_bits]
        self.fastrpc = FastRpc(channel, IdAllocator(limit=self.uapi.ctx_id_limit, cyclic=False), layout)
        self._client_ids = itertools.count(1)
        self._offsets = _iova.RangeAllocator(FAKE_OFFSET_START, FAKE_OFFSET_END - FAKE_OFFSET_START)
        self.offset_objects: dict[int, object] = {}  # fake offset -> GemObject
        self.objects_by_key: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.lock = threading.Lock()  # protects the offset space, offset_objects and the open-file set
        self.files: weakref.WeakSet = weakref.WeakSet()
        self.removing = False

    def open(self, flags: int = os.O_RDWR):
        """``open(/dev/accel/accelN)``: a new DRM file; no CB and no DSP traffic yet."""
        from .file import QdaFile

        if self.removing:
            raise errno_error(errno.ENODEV, f"{self.path}: device is being removed")
        f = QdaFile(self, next(self._client_ids), flags)
        with self.lock:
            self.files.add(f)
        return f

    def remove(self) -> None:
        """rpmsg remove: FastRPC-backed ioctls of open files fail with ENODEV from now on, new
        opens fail, and closing a file skips the release message (RFC 03/13)."""
        self.removing = True
        self.channel.remove()

    def offset_for(self, obj) -> int:
        """Create (idempotently) the object's fake mmap offset."""
        with self.lock:
            if obj.mmap_offset is None:
                off = self._offsets.alloc(obj.size)
                obj.mmap_offset = off
                self.offset_objects[off] = obj
                obj.on_free(self._drop_offset)
            return obj.mmap_offset

    def _drop_offset(self, obj) -> None:
        with self.lock:
            self._offsets.free(obj.mmap_offset)
            del self.offset_objects[obj.mmap_offset]

    def info(self) -> dict:
        return {
            "path": self.path, "dsp_name": self.dsp_name, "domain_id": self.domain_id,
            "context_banks": len(self.bus.cbs), "free_context_banks": self.bus.free_count,
            "open_files": len(self.files), "revision": str(self.revision),
        }

    def __repr__(self) -> str:
        return f"<QdaDevice {self.path} {self.dsp_name} {self.revision.name}>"
