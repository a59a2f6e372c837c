"""GEM objects: page-rounded buffers placed in a context bank's IOVA space.

Mirrors the RFC's ``qda_gem_obj``: backing pages, a SID-prefixed device address in the CB that
allocated (or imported) it, a fake mmap offset created on demand, and a reference count held by
handles, in-flight invokes and kernel-internal users (message buffers, init memory).
"""
from __future__ import annotations

import threading

from .. import debug
from ..errors import InternalError
from . import arena
from .backing import Backing, page_align
from .bus import ContextBank


class GemObject:
    """One buffer object. ``dma_addr`` is what the DSP sees: ``iova | sid << 32``."""

    __slots__ = ("backing", "size", "cb", "iova", "dma_addr", "imported", "mmap_offset",
                 "_refs", "_lock", "_on_free", "name", "exported", "__weakref__")

    def __init__(self, backing: Backing | arena.Slot, cb: ContextBank, *, iova: int | None = None,
                 imported: bool = False, name: str = "gem"):
        self.backing = backing
        self.size = page_align(backing.size)  # an imported file may end mid-page
        self.cb = cb
        self.iova = cb.reserve(self.size) if iova is None else iova  # ENOMEM if the CB is full
        cb.attach(self.iova, self)
        self.dma_addr = self.iova | (cb.sid << 32)
        self.imported = imported
        self.mmap_offset: int | None = None
        self.exported = False
        self.name = name
        self._refs = 1
        self._lock = threading.Lock()  # protects _refs
        self._on_free: list = []
        debug.created("gem")

    @classmethod
    def create(cls, cb: ContextBank, size: int, name: str = "gem", *, packed: bool = False) -> "GemObject":
        """Allocate zeroed shared memory (like dma_alloc_coherent) in ``cb``. The IOVA space is
        reserved first, so an impossible size fails with ``ENOMEM`` before any memory is touched.

        ``packed``: a small object goes into an arena slot (:mod:`qda_core.mem.arena`: no fd,
        no mapping, no page until used) and gets a file of its own only when :meth:`promote`
        is called or its ``backing.fd`` is read. Else it is a populated memfd of its own."""
        size = page_align(size)
        iova = cb.reserve(size)
        try:
            if packed and size <= arena.ARENA_MAX:
                backing = arena.alloc(size, name=f"qdarpc-{name}")
            else:
                backing = Backing(size, name=f"qdarpc-{name}")
        except BaseException:
            cb.unreserve(iova)
            raise
        return cls(backing, cb, iova=iova, name=name)

    def promote(self) -> None:
        """Give the object a file of its own now, if it has none (an arena slot): before any
        access that may write it from outside the emulator's own calls (a DSP mapping)."""
        self.backing.fd  # noqa: B018 - an arena slot's fd is made on first read

    def get(self) -> "GemObject":
        if self.try_get() is None:
            raise InternalError(f"get() on freed GEM object {self!r}")
        return self

    def try_get(self) -> "GemObject | None":
        """:meth:`get`, or None if the object is already freed (found through a table that
        holds no reference, such as the device's fake offsets)."""
        with self._lock:
            if self._refs <= 0:
                return None
            self._refs += 1
        return self

    def put(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
            if self._refs < 0:
                raise InternalError(f"put() underflow on GEM object {self!r}")
        if last:
            for cb in self._on_free:
                cb(self)
            self.cb.unmap(self)
            self.backing.close()
            debug.destroyed("gem")

    def on_free(self, fn) -> None:
        """Run ``fn(obj)`` when the last reference goes (e.g. drop the fake-offset node)."""
        self._on_free.append(fn)

    @property
    def refs(self) -> int:
        return self._refs

    def __repr__(self) -> str:
        kind = "imported " if self.imported else ""
        return f"<{kind}GEM {self.name} size={self.size:#x} dma={self.dma_addr:#x} refs={self._refs}>"
