"""Test doubles for driving ``qda_core.dsp.EmulatedDsp`` without the host side.

``FakeMemory`` is a dict of device address -> bytearray standing in for the SMMU model;
``build_payload`` lays out a payload exactly as the kernel's ``get_args`` does (metadata then
128-byte aligned inline copies; shared buffers referenced in place); ``Client`` wraps the
messages a kernel would send for one client id.
"""
from __future__ import annotations

import itertools
import os
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from qda_core.errors import DeviceFault
from qda_core.wire import (CREATE_INBUF, CREATE_STATIC_INBUF, FASTRPC_ALIGN, MEM_MAP_REQ,
                           MEM_UNMAP_REQ, MMAP_REQ, MUNMAP_REQ, PAGE_SIZE, PHY_PAGE, Msg, Origin, Rsp,
                           metadata_size, scalars)

PAGE_MASK = ~(PAGE_SIZE - 1)


class FakeMemory:
    """Device memory: non-overlapping regions, each a bytearray at a device address."""

    def __init__(self, base: int = 0x1_0000_0000):
        self.regions: dict[int, bytearray] = {}
        self._next = base
        self._lock = threading.Lock()  # Protects regions and _next (tests call from threads).

    def alloc(self, size: int, data: bytes | None = None) -> int:
        buf = bytearray(max(size, 1))
        if data is not None:
            buf[: len(data)] = data
        with self._lock:
            addr = self._next
            self._next += max(PAGE_SIZE, -(-size // PAGE_SIZE) * PAGE_SIZE) + PAGE_SIZE  # guard gap
            self.regions[addr] = buf
        return addr

    def free(self, addr: int) -> None:
        with self._lock:
            del self.regions[addr]

    def view(self, addr: int, length: int, writable: bool) -> memoryview:
        with self._lock:
            regions = list(self.regions.items())
        for base, buf in regions:
            if base <= addr and addr + length <= base + len(buf):
                mv = memoryview(buf)[addr - base: addr - base + length]
                return mv if writable else mv.toreadonly()
        raise DeviceFault(addr, length)

    def read(self, addr: int, length: int) -> bytes:
        return bytes(self.view(addr, length, False))


@dataclass(frozen=True)
class Shared:
    """A by-reference (fd-backed) buffer argument at a device address."""

    addr: int
    length: int
    fd: int = 7


def _span(addr: int, length: int) -> tuple[int, int]:
    start = addr & PAGE_MASK
    end = -(-(addr + length) // PAGE_SIZE) * PAGE_SIZE
    return start, end - start


def build_payload(mem: FakeMemory, ins, outs, inhandles=(), outhandles=()):
    """Place a payload in ``mem``; returns (addr, size, [out buffer device addresses]).

    ``ins``: bytes (copied inline) or :class:`Shared`. ``outs``: int length (inline, zeroed)
    or :class:`Shared`. Handles: ``(fd, offset, length, map_addr, map_size)`` tuples.
    """
    bufs = list(ins) + list(outs)
    handles = list(inhandles) + list(outhandles)
    n = len(bufs) + len(handles)
    meta = metadata_size(n)
    inline = []
    off = meta
    for b in bufs:
        if isinstance(b, Shared):
            inline.append(None)
            continue
        length = len(b) if isinstance(b, (bytes, bytearray)) else b
        off = -(-off // FASTRPC_ALIGN) * FASTRPC_ALIGN
        inline.append(off)
        off += length
    size = -(-off // PAGE_SIZE) * PAGE_SIZE
    addr = mem.alloc(size)
    pl = mem.view(addr, size, True)
    out_addrs = []
    for i, b in enumerate(bufs):
        if isinstance(b, Shared):
            dev, length = b.addr, b.length
        else:
            length = len(b) if isinstance(b, (bytes, bytearray)) else b
            dev = addr + inline[i]
            if isinstance(b, (bytes, bytearray)):
                pl[inline[i]: inline[i] + length] = b
        struct.pack_into("<QQ", pl, 16 * i, dev, length)   # pv = device address here
        struct.pack_into("<II", pl, 16 * n + 8 * i, 1 if length else 0, i)
        struct.pack_into("<QQ", pl, 24 * n + 16 * i, *(_span(dev, length) if length else (0, 0)))
        if i >= len(ins):
            out_addrs.append(dev)
    for j, (fd, offset, length, map_addr, map_size) in enumerate(handles, start=len(bufs)):
        struct.pack_into("<iII", pl, 16 * j, fd, offset, length)
        struct.pack_into("<QQ", pl, 24 * n + 16 * j, map_addr, map_size)
    return addr, size, out_addrs


_ctx = itertools.count(1)


#: The streams a test client is granted: FakeMemory allocates at SID 1, the page descriptors
#: the helpers below send (init memory, heaps) sit at SID 0.
SIDS = frozenset({0, 1})


class Client:
    """The messages one kernel client (file) sends to the DSP, stamped with its origin."""

    def __init__(self, dsp, mem: FakeMemory, client_id: int = 1):
        self.dsp, self.mem, self.cid = dsp, mem, client_id

    def send(self, handle, sc, ins=(), outs=(), inhandles=(), outhandles=(), pd=1, client_id=None,
             raw_payload=None, origin=None):
        """One message; returns (retval, [bytes of each out-buffer]). ``origin`` overrides the
        sender stamp (default: this client, :data:`SIDS`, kernel for handles 1 and 2)."""
        if raw_payload is None:
            addr, size, out_addrs = build_payload(self.mem, ins, outs, inhandles, outhandles)
        else:
            addr, size, out_addrs = raw_payload
        ctx = (next(_ctx) & 0xFF) << 4 | pd
        cid = self.cid if client_id is None else client_id
        replies = []
        if origin is None:
            origin = Origin(self.cid, SIDS, handle in (1, 2))
        self.dsp.receive(Msg(cid, 0, ctx, handle, sc, addr, size).pack(), replies.append, origin=origin)
        assert len(replies) == 1
        rsp = Rsp.unpack(replies[0])
        assert rsp.ctx == ctx
        lens = [o.length if isinstance(o, Shared) else o for o in outs]
        out_data = [self.mem.read(a, n) if n else b"" for a, n in zip(out_addrs, lens)]
        if raw_payload is None:
            self.mem.free(addr)
        return rsp.retval, out_data

    # -- the INIT handle, as the kernel sends it (header client_id 0) ------------------------
    def init(self, method, ins, outs=(), pd=1):
        nin, nout = len(ins), len(outs)
        return self.send(1, scalars(method, nin, nout), ins, outs, pd=pd, client_id=0)

    def attach(self, pd=0):
        return self.init(0, [struct.pack("<i", self.cid)], pd=pd)[0]

    def release(self):
        return self.init(1, [struct.pack("<i", self.cid)])[0]

    def create(self, name=b"app\0", shell=b"", attrs=0, init_mem=(0x8000_0000, 4 << 20)):
        inbuf = CREATE_INBUF.pack(self.cid, len(name), len(shell), 1, attrs, 0)
        return self.init(7 if attrs else 6, [inbuf, name, shell, PHY_PAGE.pack(*init_mem)])[0]

    def create_static(self, name: bytes):
        inbuf = CREATE_STATIC_INBUF.pack(self.cid, len(name), 0)
        return self.init(8, [inbuf, name, PHY_PAGE.pack(0x9000_0000, 3 << 20)])[0]

    def mmap(self, pages, flags=0x1000):
        req = MMAP_REQ.pack(self.cid, flags, 0, 16 * len(pages))
        rv, (out,) = self.init(4, [req, b"".join(PHY_PAGE.pack(*p) for p in pages)], [8])
        return rv, struct.unpack("<Q", out)[0]

    def munmap(self, vaddr, size):
        return self.init(5, [MUNMAP_REQ.pack(self.cid, vaddr, size)])[0]

    def mem_map(self, fd, dev_addr, size, offset=0, flags=0, vaddrin=0x7F00_0000_0000):
        req = MEM_MAP_REQ.pack(self.cid, fd, offset, flags, vaddrin, 16, 0)
        rv, (out,) = self.init(10, [req, PHY_PAGE.pack(dev_addr, size), b""], [8])
        return rv, struct.unpack("<Q", out)[0]

    def mem_unmap(self, fd, vaddr, length=0):
        return self.init(11, [MEM_UNMAP_REQ.pack(self.cid, fd, vaddr, length)])[0]

    # -- remotectl ------------------------------------------------------------------------
    def open(self, uri: str, via: int = 0, dlerror_len: int = 255):
        """remotectl open (handle 0) or remotectl1 open1 (handle 8): (retval, handle, dlerr, text)."""
        name = uri.encode() + b"\0"
        sc = 0x00020200 if via == 0 else 0x02020200
        rv, (out0, text) = self.send(via, sc, [struct.pack("<II", len(name), dlerror_len), name],
                                     [8, dlerror_len])
        handle, dlerr = struct.unpack("<II", out0)
        return rv, handle, dlerr, text.split(b"\0", 1)[0].decode()

    def close(self, handle: int, via: int = 0):
        sc = 0x01010200 if via == 0 else 0x03010200
        rv, (out0, text) = self.send(via, sc, [struct.pack("<II", handle, 255)], [4, 255])
        return rv, struct.unpack("<I", out0)[0], text.split(b"\0", 1)[0].decode()


def u32(v: int) -> int:
    """A retval as the unsigned code the spec writes (0x8000040e, ...)."""
    return v & 0xFFFF_FFFF


CALC_URI = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom=cdsp"
TEST_URI = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


@contextmanager
def plane(name: str):
    """Files, engines and DSP endpoints made inside the block use data plane ``name``
    (``QDARPC_DATAPLANE``: ``native`` or ``py``)."""
    from qda_core import dataplane

    old = os.environ.get(dataplane.ENV)
    os.environ[dataplane.ENV] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ[dataplane.ENV]
        else:
            os.environ[dataplane.ENV] = old


class RefBuffers:
    """Two 8 KiB buffers for by-reference arguments, mapped: a GEM object of accel file ``fa``
    and an ALLOC_DMA_BUFF dma-buf of legacy file ``fl``. ``ref(drv, off, n)`` is the argument
    (``GemRef`` / ``DmaBufRef``) of ``[off, off + n)``, ``view(drv)`` the whole mapping."""

    SIZE = 8192

    def __init__(self, fa, fl):
        from qda_core.legacy.file import dmabuf_mmap

        self.gem = fa.gem_create(self.SIZE)
        self.gem_view = fa.mmap(fa.gem_mmap_offset(self.gem), self.SIZE)
        self.dma_fd = fl.alloc_dma_buff(self.SIZE)
        self.dma_view = dmabuf_mmap(self.dma_fd)

    def view(self, drv: str) -> memoryview:
        return self.gem_view if drv == "accel" else self.dma_view

    def ref(self, drv: str, off: int, n: int):
        from qda_core.accel.file import GemRef
        from qda_core.legacy.file import DmaBufRef

        if drv == "accel":
            return GemRef(self.gem, self.gem_view[off:off + n])
        return DmaBufRef(self.dma_fd, self.dma_view[off:off + n])

    def close(self) -> None:
        """Let go of the mappings and the dma-buf fd (the GEM object goes with its file)."""
        self.gem_view.release()
        self.dma_view.release()
        os.close(self.dma_fd)


#: The start of a Python test skel's source: ``_addr`` (a buffer's address), ``_offset`` (a
#: view's exporter, the message buffer's mapping, as a view, and the view's offset in it) and
#: ``_tail`` (that mapping and the range from the view's end to its page's end).
VIEW_PRELUDE = '''
import ctypes


def _addr(v):
    return ctypes.addressof(ctypes.c_char.from_buffer(v))


def _offset(view):
    whole = memoryview(view.obj)
    return whole, _addr(view) - _addr(whole)


def _tail(view):
    page, off = _offset(view)
    return page, off + len(view), off - off % 4096 + 4096
'''

#: The start of a Python skel's source for RouteSide: ``VIEW_PRELUDE``, ``EE`` and ``PageSkel``,
#: a Skeleton whose method 2 fills its out-buffer with its in-buffer's first byte and whose
#: method 5 (``RouteSide.peek``) counts the bytes past its out-buffer that are not zero.
PAGE_SKEL_PRELUDE = VIEW_PRELUDE + '''
import struct, weakref
from qda_core.dsp import Skeleton, method

EE = 0xEE


class PageSkel(Skeleton):
    @method(2)
    def plain(self, call):
        out = call.outbufs[0]
        out[:] = bytes([call.inbufs[0][0]]) * len(out)
        return 0

    @method(5)
    def peek(self, call):
        out = call.outbufs[0]
        page, lo, hi = _tail(out)
        n = (hi - lo) - bytes(page[lo:hi]).count(0)
        page.release()
        struct.pack_into("<Q", out, 0, n)
        return 0
'''


class RouteSide:
    """A file of driver ``drv`` on a SoC of data plane ``name`` with a Python skel open (its
    source ``skel`` saved as ``lib<lib>_skel.py``): calls of one in- and one out-buffer to it,
    its route (None on the reference plane), and the skel module's globals (``g``). ``peek``
    asks method 5 (the skel's) how many bytes past its packet are not zero."""

    def __init__(self, make_soc, tmp_path, monkeypatch, drv, name, skel, lib):
        from libadsprpc_compat.remotectl import open_module
        from qda_core import uapi

        (tmp_path / f"lib{lib}_skel.py").write_text(skel)
        monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
        with plane(name):
            soc = make_soc("default")
            self.f = soc.open_device("cdsp") if drv == "accel" else soc.open("/dev/fastrpc-cdsp")
        assert self.f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
        rv, self.h = open_module(self.f, f"file:///lib{lib}_skel.so?{lib}_skel_handle_invoke&_modver=1.0&_dom=cdsp")
        assert rv == 0
        proc = next(p for p in soc.domain("cdsp").dsp._procs.values() if self.h in p.modules)
        self.g = next(f.__globals__ for f in vars(type(proc.modules[self.h].impl.skel)).values()
                      if hasattr(f, "__globals__"))
        self.name = name

    def call(self, method, how=0, nout=8):
        out = bytearray(nout)
        assert self.f.invoke(self.h, method << 24 | 1 << 16 | 1 << 8, [bytes([how]) * 8, out]) == 0
        return out

    def call0(self, method):
        assert self.f.invoke(self.h, method << 24, []) == 0

    def route(self):
        return self.f._lane.route_for(self.h) if self.name == "native" else None

    def start(self):
        """Two plain calls (the lanes, then a route); the route (None on the reference plane),
        its page's device address in the skel's ``DEV[0]``."""
        self.call(2, 1)
        self.call(2, 1)
        r = self.route()
        if r is not None:
            assert r.buffer[1] == 4096
            self.g["DEV"][0] = r.buffer[0]
        return r

    def peek(self):
        return struct.unpack_from("<Q", self.call(5))[0]
