"""An open ``/dev/fastrpc-*`` file (``struct fastrpc_user``) and its ioctls.

``ioctl(request, arg)`` is the raw form, dispatched like ``fastrpc_device_ioctl``: a switch on
the full command number (anything else -> ``-ENOTTY``); each handler copies in the struct size
of its command from ``arg`` (a buffer, or an int user address) and copies it back only where the
kernel does (ALLOC_DMA_BUFF, MMAP, MEM_MAP, GET_DSP_INFO, on success). A bad pointer gives
``-EFAULT``. The return value is the kernel's: 0, ``-errno``, or the DSP retval verbatim (a
signed 32-bit value). Typed methods go through the same dispatch and raise ``OSError``.

The kernel revision (misc-7.2, misc-7.3, the QDA shim) is the channel's, fixed at open; where
revisions differ a handler asks ``self.policy`` (:mod:`.revisions`).

Where this differs from the QDA driver is the point of having both (docs/spec/qda_accel_uapi.md §8):
one session per open (EBUSY), ``fd`` fields are dma-buf fds mapped into the session and cached
per file by fd number and buffer (``fastrpc_map_lookup`` compares the dma-buf too), handle 1 is
refused to users, MMAP allocates kernel memory, MUNMAP and MEM_UNMAP must match a kernel list, INIT_CREATE_STATIC / INIT_ATTACH_SNS are real, a removed
channel gives EPIPE, context ids are cyclic 1..255.
"""
from __future__ import annotations

import errno
import mmap as _mmap
import os
import struct
import threading

from .. import debug, fastrpc, init_msgs, trace, uapi, wire
from .. import faults as _faults
from ..driver_file import DriverFile, copy_in, copy_out
from ..errors import errno_error
from ..fastrpc import current_comm
from ..invoke_args import BufRef, HandleArg, pinned  # noqa: F401 - HandleArg re-exported
from ..mem import vma
from ..mem.backing import Backing
from ..mem.bus import IOVA_END, IOVA_START
from ..mem.gem import GemObject
from ..mem.msgpool import MessagePool
from ..uaccess import address, copy_from_user
from ..uapi import FASTRPC_DEV_MAX, LEGACY_DOMAINS
from . import _invoke
from .revisions import LegacyPolicy

ADSP_MMAP_REMOTE_HEAP_ADDR = 8
ADSP_MMAP_ADD_PAGES = 0x1000
INIT_FILELEN_MAX = 2 << 20
INIT_FILE_NAMELEN_MAX = 128
FASTRPC_MAX_DSP_ATTRIBUTES = 256
DSP_UNSUPPORTED_API = 0x80000414
_MDSP = LEGACY_DOMAINS["mdsp"]
_MIB = 1 << 20


class DmaBufRef(BufRef):
    """An invoke buffer passed by reference: ``buf`` lies inside a CPU mapping of dma-buf ``fd``
    (e.g. from :func:`dmabuf_mmap`). The kernel maps the fd into the session; nothing is copied."""

    __slots__ = ()

    @property
    def fd(self) -> int:
        return self.ident


def dmabuf_mmap(fd: int, length: int | None = None,
                prot: int = _mmap.PROT_READ | _mmap.PROT_WRITE) -> memoryview:
    """``mmap(NULL, length, prot, MAP_SHARED, fd, 0)`` of a dma-buf fd, registered so the
    driver finds the mapping's start quickly (``find_vma``). The fd may be closed afterwards."""
    if length is None:
        length = os.fstat(fd).st_size
    mm = _mmap.mmap(fd, length, _mmap.MAP_SHARED, prot)
    view = memoryview(mm)
    vma.register(mm, address(view), length, vma.file_key(fd), pinnable=vma.shrink_sealed(fd))
    return view


class _Map:
    """``struct fastrpc_map``: one dma-buf fd mapped into the session's context bank."""

    __slots__ = ("fd", "obj", "phys", "size", "raddr", "refs")

    def __init__(self, fd: int, obj: GemObject, size: int):
        self.fd = fd
        self.obj = obj
        self.phys = obj.dma_addr
        self.size = size   # the length of the first use, as the kernel records it
        self.raddr = 0     # DSP address after MEM_MAP
        self.refs = 1


class _MmapBuf:
    """A kernel-allocated MMAP buffer on the file's ``mmaps`` list."""

    __slots__ = ("obj", "size", "raddr")

    def __init__(self, obj: GemObject, size: int):
        self.obj, self.size, self.raddr = obj, size, 0


class LegacyFile(DriverFile):
    """One open legacy node. Owns one session (context bank) from open (misc) or from its
    first allocation (QDA shim: ``cb`` is None until then) to close."""

    def __init__(self, device, cb, flags: int):
        # INVOKE's number for the native lane: None where the revision has none (its ENOTTY)
        super().__init__(uapi.FASTRPC_IOCTL_INVOKE if uapi.FASTRPC_IOCTL_INVOKE in device.channel.policy.ioctls
                         else None)
        self.device = device
        self.channel = device.channel
        #: The channel's revision and its policy, as of open.
        self.revision = self.channel.revision
        self.policy: LegacyPolicy = self.channel.policy
        self.path = device.path
        self.cb = cb
        self.flags = flags
        self.is_secure_dev = device.secure
        # misc: "session_idx + 1 is the simplest one"; the shim: the QDA core's device counter
        self.client_id = cb.index + 1 if cb is not None else self.channel.next_client_id()
        self.pd = wire.ROOT_PD
        self.poll_mode = False
        self.maps: dict[tuple, _Map] = {}      # (fd, dma-buf identity) -> map
        self.mmaps: list[_MmapBuf] = []
        self._init_mem: list[GemObject] = []    # the kernel overwrites (leaks) older ones; we free all at close
        self._dma_bufs: list[GemObject] = []   # ALLOC_DMA_BUFF buffers' CB mappings, until close
        self._pool = MessagePool(cb) if cb is not None else None
        self._lock = threading.RLock()  # protects maps, mmaps, _init_mem, _dma_bufs, pd, cb, _pool
        self._origins: dict[tuple, wire.Origin] = {}  # (cb, kernel) -> Origin (see _origin)
        self.last_error: OSError | None = None
        debug.created("legacy_file")

    # The PD and the poll mode live in the file's FileLane (C fields its INVOKE lane reads).
    @property
    def pd(self) -> int:
        """The PD this file's user messages go to (``fl->pd``)."""
        return self._lane.pd

    @pd.setter
    def pd(self, value: int) -> None:
        self._lane.pd = value

    @property
    def poll_mode(self) -> bool:
        """FASTRPC_IOCTL_SET_OPTION FASTRPC_POLL_MODE (Linux 7.3, the shim): poll this file's
        invokes of dynamic handles in a user PD."""
        return self._lane.poll_mode

    @poll_mode.setter
    def poll_mode(self, value: bool) -> None:
        self._lane.poll_mode = value

    def ensure_cb(self):
        """The file's context bank: misc's, taken at open; the QDA shim's, taken now on first
        use, exclusively until close (``EBUSY`` when none is free)."""
        with self._lock:
            if self.cb is None:
                cb = self.channel.bus.take_session(threading.get_native_id())
                self._pool = MessagePool(cb)  # the pool first: a lock-free reader keys on cb
                self.cb = cb
                debug.dbg("legacy", "%s: client %d takes session %d (SID %d)", self.path, self.client_id,
                          self.cb.index, self.cb.sid)
            return self.cb

    def _origin(self, cb, kernel: bool) -> wire.Origin:
        """This file as the DSP knows a message's sender, made once per CB and kind (every
        invoke sends one; a kernel message that grants ranges makes its own)."""
        key = (cb, kernel)
        o = self._origins.get(key)
        if o is None:
            o = self._origins[key] = wire.Origin(self.client_id, frozenset((cb.sid,)), kernel)
        return o

    # --- raw ioctl ------------------------------------------------------------------------
    #: ``fastrpc_device_ioctl``: ``ioctl(request, arg=None)``, switching on the full command
    #: number. INVOKE goes through the native lane (legacy/_invoke.pyx) on the native data
    #: plane; everything else, and every call of a file on the Python data plane, through
    #: :meth:`_ioctl_reference`.
    ioctl = _invoke.ioctl

    def _ioctl_reference(self, request: int, arg=None) -> int:
        """The reference ``fastrpc_device_ioctl``, and its trace event."""
        tr = trace.RECORDER
        if tr is None:
            return self._ioctl(request, arg)[0]
        t0 = trace.now()
        ret, kbuf = self._ioctl(request, arg)
        copied, shared = fastrpc.take_traffic()
        context = fastrpc.take_context()
        t1 = trace.now()
        ioc = self.policy.ioctls.get(request)
        name = ioc.name if ioc is not None else f"{request:#010x}"
        fields = ioc.layout.unpack(kbuf) if ioc is not None and ioc.layout is not None and kbuf else {}
        if request != uapi.FASTRPC_IOCTL_INVOKE:
            copied = shared = 0  # kernel messages of other ioctls are not user traffic
        elif context is not None:
            # the ctx word the context went out with (its layout is the revision's) and what
            # completed it: the DSP's reply, or (poll mode) the poll word
            fields["ctx"], fields["completion"] = context
        tr.ioctl("legacy", self.path, name, request, fields, ret, t0, t1, copied=copied, shared=shared)
        return ret

    def _ioctl(self, request: int, arg) -> tuple[int, bytearray | None]:
        if not self._enter():
            return -errno.EBADF, None
        try:
            return self._dispatch(request, arg)
        finally:
            self._leave()

    def _dispatch(self, request: int, arg) -> tuple[int, bytearray | None]:
        ioc = self.policy.ioctls.get(request)
        handler = _HANDLERS.get(request) if ioc is not None else None
        if handler is None:
            self.last_error = errno_error(errno.ENOTTY, f"ioctl {request:#x}: not a fastrpc command "
                                                        f"({self.revision})")
            return -errno.ENOTTY, None
        kbuf = bytearray(ioc.layout.size) if ioc.layout is not None else None
        try:
            if kbuf is not None:
                copy_in(kbuf, arg, len(kbuf), ioc.name)
            ret = handler(self, kbuf)
            if ret == 0 and request in _COPY_OUT:
                try:
                    copy_out(arg, kbuf, len(kbuf), ioc.name)
                except OSError:
                    _COPY_OUT[request](self, kbuf)  # undo what the kernel undoes, then EFAULT
                    raise
        except OSError as exc:
            ret = self._failed(exc)
        return ret, kbuf

    def _call(self, request: int, buf=None) -> int:
        ret = self.ioctl(request, buf)
        if -4096 < ret < 0:
            raise self._error(ret)
        return ret

    # --- maps (fastrpc_map_create / _lookup / _put) ---------------------------------------
    def map_of(self, fd: int) -> "_Map | None":
        """This session's map of the buffer ``fd`` refers to now (``fastrpc_map_lookup``)."""
        return self._map_lookup(fd)

    def _map_lookup(self, fd: int) -> _Map | None:
        """This file's map of ``fd``: same fd number *and* the same buffer behind it now, so a
        closed fd whose number came back for another buffer never reaches the old pages."""
        try:
            key = (fd, vma.file_key(fd))
        except (OSError, OverflowError):
            return None
        with self._lock:
            return self.maps.get(key)

    def _map_create(self, fd: int, length: int) -> _Map:
        """Reuse this file's map of ``fd`` (see :meth:`_map_lookup`) or import the dma-buf into
        the session's context bank. Errors are the import's errno. The import reuses the
        process's mapping of the buffer if it has one (``Backing.import_fd``): a map made and
        dropped per invoke then costs the same for any buffer size."""
        with self._lock:
            m = self._map_lookup(fd)
            if m is not None:
                m.refs += 1
                return m
            try:
                backing = Backing.import_fd(fd)
            except OSError as exc:
                raise errno_error(exc.errno or errno.EINVAL, f"fd {fd} is not a usable dma-buf") from None
            try:
                obj = GemObject(backing, self.ensure_cb(), imported=True, name="map")
            except BaseException:
                backing.close()
                raise
            m = self.maps[fd, backing.key] = _Map(fd, obj, length)
            return m

    def _map_put(self, m: _Map) -> None:
        with self._lock:
            m.refs -= 1
            if m.refs > 0:
                return
            key = (m.fd, m.obj.backing.key)
            if self.maps.get(key) is m:
                del self.maps[key]
        m.obj.put()

    # --- fastrpc_internal_invoke ------------------------------------------------------------
    def internal_invoke(self, kernel: bool, handle: int, sc: int, descs, grant=()) -> int:
        """One invoke context: maps, payload, send, wait, copy back, fdlist, retval. ``grant``:
        ``(device address, size)`` ranges outside the session's bank that a kernel message
        hands the DSP (a remote heap)."""
        if not self.channel.up:
            raise errno_error(errno.EPIPE, f"{self.path}: DSP channel is down")
        if handle == wire.FASTRPC_INIT_HANDLE and not kernel:
            raise errno_error(errno.EPERM, "user app trying to send a kernel RPC message (handle 1)")
        cb = self.ensure_cb()
        n = wire.sc_length(sc)
        nin, nout, _, _ = wire.sc_counts(sc)
        nbufs = nin + nout
        refs = bytearray(16 * n)
        maps: list[_Map | None] = [None] * n
        imports: list[GemObject] = []
        try:
            for i in range(n):
                ptr, length, fd, _attr = wire.INVOKE_ARG.unpack_from(descs, 24 * i)
                if fd in (0, -1) or length == 0:
                    continue
                if self.policy.import_per_call and not kernel:
                    obj = _import_fd(self, i, fd)
                    imports.append(obj)
                    addr = _vma_offset_address(i, ptr, obj) if i < nbufs else obj.dma_addr
                    wire.PHY_PAGE.pack_into(refs, 16 * i, addr, obj.size)
                    continue
                try:
                    m = maps[i] = self._map_create(fd, length)
                except OSError as exc:  # fastrpc_create_maps turns every failure into EINVAL
                    raise errno_error(errno.EINVAL, f"argument {i}: cannot map fd {fd}: {exc.strerror}") from None
                if i < nbufs:
                    wire.PHY_PAGE.pack_into(refs, 16 * i, vma.ref_address(i, ptr, length, m.obj), m.size)
                else:
                    wire.PHY_PAGE.pack_into(refs, 16 * i, m.phys, m.size)
            fdlist: list[int] = []
            # Linux 7.3: "Set message context as polled if the call is for a user PD dynamic
            # module and user has enabled poll mode."
            poll = self.poll_mode and handle > wire.FASTRPC_MAX_STATIC_HANDLE and self.pd == wire.USER_PD
            try:
                ret = self.channel.fastrpc.invoke(
                    client_id=0 if kernel else self.client_id, tid=threading.get_native_id(),
                    handle=handle, sc=sc, pd=self.pd, args=descs, refs=refs,
                    msg_alloc=self._pool.alloc, fdlist=fdlist, poll=poll,
                    origin=self._origin(cb, kernel) if not grant else
                    wire.Origin(self.client_id, frozenset((cb.sid,)), kernel, tuple(grant)))
            except OSError as exc:
                if exc.errno == errno.ENODEV:  # the channel went away under us
                    raise errno_error(errno.EPIPE, f"{self.path}: DSP channel is down") from None
                raise
            self.drop_listed_maps(fdlist)
            return ret
        finally:
            # context free: maps taken for buffers go, maps for handles stay (kernel quirk);
            # the shim's per-call imports all go
            for m in maps[:nbufs]:
                if m is not None:
                    self._map_put(m)
            for obj in imports:
                obj.put()

    def drop_listed_maps(self, fdlist) -> None:
        """put_args: the DSP lists fds whose maps the kernel must drop (handle maps)."""
        for raw in fdlist:
            fd = raw & 0xFFFF_FFFF  # the kernel looks up (int)fdlist[i]
            fd = fd - (1 << 32) if fd >= (1 << 31) else fd
            m = self._map_lookup(fd)
            if m is not None:
                self._map_put(m)

    def _kernel_call(self, msg: init_msgs.KernelMsg, grant=()) -> int:
        """Send a kernel-originated INIT-handle message (kernel buffers carry fd -1)."""
        return self.internal_invoke(True, wire.FASTRPC_INIT_HANDLE, msg.sc, msg.descriptors(-1), grant=grant)

    # --- typed API ------------------------------------------------------------------------
    def init_attach(self) -> int:
        """FASTRPC_IOCTL_INIT_ATTACH: join the root (guest OS) PD. Returns the DSP retval."""
        return self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_INIT_ATTACH))

    def init_attach_sns(self) -> int:
        """FASTRPC_IOCTL_INIT_ATTACH_SNS: join the sensors PD. Returns the DSP retval."""
        return self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_INIT_ATTACH_SNS))

    def init_create(self, image=None, *, fd: int = -1, attrs: int = 0, siglen: int = 0) -> int:
        """FASTRPC_IOCTL_INIT_CREATE: spawn a user PD. The shell ``image`` travels in a dma-buf:
        with ``fd`` given, ``image`` (optional) is the caller's mapping of it; without, the image
        is put in a fresh ALLOC_DMA_BUFF buffer the way libadsprpc does. Returns the DSP retval."""
        buf = uapi.fastrpc_init_create.pack(attrs=attrs, siglen=siglen, filefd=fd)
        own_fd, view = -1, None
        try:
            if fd >= 0:
                n = memoryview(image).nbytes if image is not None else os.fstat(fd).st_size
                uapi.fastrpc_init_create.set(buf, "filelen", n)
                uapi.fastrpc_init_create.set(buf, "file", address(image) if image is not None else 0)
            elif image is not None and memoryview(image).nbytes:
                n = memoryview(image).nbytes
                own_fd = self.alloc_dma_buff(n)
                view = dmabuf_mmap(own_fd, n)
                view[:n] = memoryview(image).cast("B")
                uapi.fastrpc_init_create.set(buf, "filefd", own_fd)
                uapi.fastrpc_init_create.set(buf, "filelen", n)
                uapi.fastrpc_init_create.set(buf, "file", address(view))
            return self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, buf))
        finally:
            if view is not None:
                view.release()
            if own_fd >= 0:
                os.close(own_fd)  # the kernel's map keeps the buffer until close

    def init_create_static(self, name: str, memlen: int) -> int:
        """FASTRPC_IOCTL_INIT_CREATE_STATIC: start a static PD (``audiopd``, ``sensorspd``...);
        ``memlen`` sizes the channel's remote heap on first use. Returns the DSP retval."""
        raw = name.encode() + b"\0"
        buf = uapi.fastrpc_init_create_static.pack(namelen=len(raw), memlen=memlen, name=address(raw))
        return self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE_STATIC, buf))

    #: ``invoke(handle, sc, args=())``: FASTRPC_IOCTL_INVOKE with ``args`` in ``[inbufs,
    #: outbufs, inhandles, outhandles]`` order: plain buffers are copied, :class:`DmaBufRef`
    #: buffers shared by fd, :class:`HandleArg` entries are handles. Returns the DSP retval as
    #: unsigned 32-bit. The native lane (legacy/_invoke.pyx, no Python frame of its own) serves
    #: the common call; :meth:`_invoke_reference` every other, with the same results.
    invoke = _invoke.invoke

    _ROUTE_LOST = errno.EPIPE  # (_internal_invoke: "DSP channel is down")

    def route(self, handle: int):
        """A route for user calls without arguments to DSP handle ``handle``: an
        ``EngineRoute`` whose ``call(sc)`` a C caller makes without the GIL, or None where the
        lanes serve every call (docs/dataplane.md "Routes")."""
        return self._open_route(handle) if type(self) is LegacyFile else None

    def _invoke_reference(self, handle: int, sc: int, args=()) -> int:
        """The typed invoke's reference: the descriptors pinned, the INVOKE struct built and
        issued through :meth:`ioctl`, the result checked."""
        with pinned(sc, args, DmaBufRef) as descs:  # the buffers stay held for the ioctl
            kbuf = bytearray(16)
            _INVOKE_STRUCT.pack_into(kbuf, 0, handle, sc, address(descs) if descs else 0)  # fastrpc_invoke.pack
            ret = self.ioctl(uapi.FASTRPC_IOCTL_INVOKE, kbuf)
        return self._check_dsp(ret)

    def req_mmap(self, flags: int, size: int, vaddrin: int = 0) -> int:
        """FASTRPC_IOCTL_MMAP: the kernel allocates ``size`` bytes and maps them on the DSP;
        returns ``vaddrout``."""
        buf = uapi.fastrpc_req_mmap.pack(fd=-1, flags=flags, vaddrin=vaddrin, size=size)
        self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_MMAP, buf), raise_dsp=True)
        return uapi.fastrpc_req_mmap.get(buf, "vaddrout")

    def req_munmap(self, vaddrout: int, size: int) -> None:
        """FASTRPC_IOCTL_MUNMAP of an earlier MMAP, by exact (vaddrout, size)."""
        buf = uapi.fastrpc_req_munmap.pack(vaddrout=vaddrout, size=size)
        self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_MUNMAP, buf), raise_dsp=True)

    def mem_map(self, fd: int, length: int, *, offset: int = 0, flags: int = 0, vaddrin: int = 0,
                attrs: int = 0) -> int:
        """FASTRPC_IOCTL_MEM_MAP: map dma-buf ``fd`` on the DSP (held until MEM_UNMAP/close);
        returns ``vaddrout``."""
        buf = uapi.fastrpc_mem_map.pack(fd=fd, offset=offset, flags=flags, vaddrin=vaddrin,
                                        length=length, attrs=attrs)
        self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_MEM_MAP, buf), raise_dsp=True)
        return uapi.fastrpc_mem_map.get(buf, "vaddrout")

    def mem_unmap(self, fd: int, vaddr: int, length: int) -> None:
        """FASTRPC_IOCTL_MEM_UNMAP of the map with (fd, vaddr) (``fd < 0``: any fd)."""
        buf = uapi.fastrpc_mem_unmap.pack(fd=fd, vaddr=vaddr, length=length)
        self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_MEM_UNMAP, buf), raise_dsp=True)

    def get_dsp_info(self, domain: int, attribute_id: int) -> int:
        """FASTRPC_IOCTL_GET_DSP_INFO: one DSP capability attribute."""
        buf = uapi.fastrpc_ioctl_capability.pack(domain=domain, attribute_id=attribute_id)
        self._check_dsp(self.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, buf), raise_dsp=True)
        return uapi.fastrpc_ioctl_capability.get(buf, "capability")

    def set_option(self, request_id: int, value: int) -> None:
        """FASTRPC_IOCTL_SET_OPTION (Linux 7.3, the QDA shim): ``FASTRPC_POLL_MODE`` 0/1."""
        buf = uapi.fastrpc_ioctl_set_option.pack(request_id=request_id, value=value)
        self._call(uapi.FASTRPC_IOCTL_SET_OPTION, buf)

    def alloc_dma_buff(self, size: int, flags: int = 0) -> int:
        """FASTRPC_IOCTL_ALLOC_DMA_BUFF: a zeroed buffer in this session, as a dma-buf fd
        (O_RDWR; the caller mmaps and closes it)."""
        buf = uapi.fastrpc_alloc_dma_buf.pack(fd=-1, flags=flags, size=size)
        self._call(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, buf)
        return uapi.fastrpc_alloc_dma_buf.get(buf, "fd")

    # --- release --------------------------------------------------------------------------
    def _release(self) -> None:
        """``fastrpc_device_release``: INIT_RELEASE to the DSP (errors ignored, e.g. EPIPE
        after a DSP restart), then init memory, maps, mmaps, the session. A QDA-shim file that
        never took a bank never reached the DSP: nothing to release there."""
        if self.cb is not None:
            try:
                self._kernel_call(init_msgs.release(self.client_id))
            except OSError as exc:
                debug.dbg("legacy", "release of client %d failed: %s", self.client_id, exc)
        with self._lock:
            objs = list(self._init_mem) + [m.obj for m in self.maps.values()] \
                + [b.obj for b in self.mmaps] + list(self._dma_bufs)
            self._init_mem.clear()
            self.maps.clear()
            self.mmaps.clear()
            self._dma_bufs.clear()
        for obj in objs:
            obj.put()
        if self._pool is not None:
            self._pool.close()
        with self.channel.lock:
            self.channel.files.discard(self)
        if self.cb is not None:
            self.channel.bus.release(self.cb)
        self._origins.clear()
        debug.destroyed("legacy_file")

    def _describe(self) -> str:
        return f"legacy fastrpc file {self.path} (client {self.client_id})"

    def __repr__(self) -> str:
        return f"<LegacyFile {self.path} client={self.client_id}{' closed' if self.closed else ''}>"


# --- the QDA shim's INVOKE fd arguments ------------------------------------------------------
_INVOKE_STRUCT = uapi.fastrpc_invoke._struct


def _import_fd(f: LegacyFile, i: int, fd: int) -> GemObject:
    """The shim "imports each fd" (docs/spec/kernel_revisions_2026.md §3): a dma-buf attached to
    the file's context bank for this call only. Not a dma-buf -> EINVAL, as misc's map."""
    try:
        backing = Backing.import_fd(fd)
    except OSError as exc:
        raise errno_error(errno.EINVAL, f"argument {i}: cannot import fd {fd}: {exc.strerror}") from None
    try:
        return GemObject(backing, f.ensure_cb(), imported=True, name="import")
    except BaseException:
        backing.close()
        raise


def _vma_offset_address(i: int, ptr: int, obj: GemObject) -> int:
    """The shim "recovers the offset from the caller's VMA, with no size check": the page of
    ``ptr`` in whatever mapping holds it, added to the imported buffer's address. Reproduced,
    unbounded: neither the length nor the mapping's file is checked (the Sashiko review's open
    "missing VMA/size checks"), so a range past the buffer reaches the rest of the file's own
    context bank, or faults on the DSP (the SMMU view): it never reaches another file's, the
    bank being the file's alone. No mapping at all -> EFAULT (our choice: upstream would
    dereference find_vma()'s NULL)."""
    m = vma.find(ptr)
    if m is None:
        raise errno_error(errno.EFAULT, f"argument {i}: pointer {ptr:#x} is in no mapping")
    return obj.dma_addr + (ptr & wire.PAGE_MASK) - m.start + m.pgoff


# --- ioctl handlers: (file, kbuf) -> int; raise OSError for -errno ----------------------------
def _invoke(f: LegacyFile, k: bytearray) -> int:
    handle, sc, args = uapi.fastrpc_invoke.values(k)
    n = wire.sc_length(sc)
    descs = bytearray(24 * n)
    if n:
        copy_from_user(descs, args, "invoke argument descriptors")
    return f.internal_invoke(False, handle, sc, descs)


def _attach(pd: int):
    def handler(f: LegacyFile, k) -> int:
        with f._lock:
            f.pd = pd
        return f._kernel_call(init_msgs.attach(f.client_id))
    return handler


def _init_create(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_init_create.unpack(k)
    unsigned = bool(a["attrs"] & uapi.FASTRPC_MODE_UNSIGNED_MODULE)
    ch = f.channel
    if not f.is_secure_dev and ch.secure and not (ch.unsigned_support and unsigned):
        where = "" if f.policy.unsigned_domains is None else ", on " + "/".join(
            d.upper() for d in sorted(f.policy.unsigned_domains))
        raise errno_error(errno.ECONNREFUSED, f"{f.path}: untrusted application trying to offload to a signed PD "
                          f"(the non-secure node may only create unsigned PDs{where})")
    if a["filelen"] > INIT_FILELEN_MAX:
        raise errno_error(errno.EINVAL, f"INIT_CREATE: filelen {a['filelen']:#x} > 2 MiB")
    if a["filelen"] and a["filefd"] <= 0 and not f.policy.elf_by_pointer:
        raise errno_error(errno.EINVAL, f"INIT_CREATE: the shell ELF must come as a dma-buf fd "
                          f"({f.revision}: a bare pointer is unsupported)")
    with f._lock:
        f.pd = wire.USER_PD
    image_map = None
    if a["filelen"] and a["filefd"]:
        image_map = f._map_create(a["filefd"], a["filelen"])  # kept until close on success
    try:
        memlen = -(-max(INIT_FILELEN_MAX, a["filelen"] * 4) // _MIB) * _MIB
        imem = GemObject.create(f.ensure_cb(), memlen, name="initmem")
    except BaseException:
        if image_map is not None:
            f._map_put(image_map)
        raise
    image = (a["file"], a["filelen"], a["filefd"])
    msg = init_msgs.create(f.client_id, current_comm(), image, a["filelen"], a["attrs"], a["siglen"],
                           (imem.dma_addr, imem.size))
    ret = -1
    try:
        ret = f._kernel_call(msg)
    finally:
        if ret != 0:
            imem.put()
            if image_map is not None:
                f._map_put(image_map)
    if ret == 0:
        with f._lock:
            f._init_mem.append(imem)
    return ret


def _init_create_static(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_init_create_static.unpack(k)
    if a["namelen"] > INIT_FILE_NAMELEN_MAX:
        raise errno_error(errno.EINVAL, f"INIT_CREATE_STATIC: namelen {a['namelen']} > {INIT_FILE_NAMELEN_MAX}")
    name = bytearray(a["namelen"])
    copy_from_user(name, a["name"], "static PD name")
    ch = f.channel
    with ch.lock:
        if ch.remote_heap is None:
            if a["memlen"] == 0:
                raise errno_error(errno.ENOMEM, "INIT_CREATE_STATIC: cannot allocate a 0-byte remote heap")
            # Allocated on the rpmsg device, as upstream does: in the bank no session holds. It
            # belongs to the channel; each static PD's creation hands the DSP its range.
            ch.remote_heap = GemObject.create(ch.bus.kernel_cb, a["memlen"], name="remoteheap")
        heap = ch.remote_heap
    with f._lock:
        f.pd = wire.USER_PD
    heap_range = (heap.dma_addr, heap.size)
    ret = f._kernel_call(init_msgs.create_static(f.client_id, name, heap_range), grant=(heap_range,))
    if ret != 0:
        # The kernel frees the heap on any failure (and keeps a dangling pointer); we forget it.
        with ch.lock:
            if ch.remote_heap is heap:
                ch.remote_heap = None
                heap.put()
    return ret


def _alloc_dma_buff(f: LegacyFile, k: bytearray) -> int:
    size = uapi.fastrpc_alloc_dma_buf.get(k, "size")
    if size == 0 or size > IOVA_END - IOVA_START:
        raise errno_error(errno.ENOMEM, f"ALLOC_DMA_BUFF: cannot allocate {size:#x} bytes in a 32-bit session")
    _faults.fail_request(f.channel.bus.faults, "alloc", "dma", f"ALLOC_DMA_BUFF size {size:#x}")
    obj = GemObject.create(f.ensure_cb(), size, name="dmabuf")
    try:
        # The dma-buf fd of the pages (O_RDWR, no O_CLOEXEC).
        fd = obj.backing.export_fd(writable=True, cloexec=False)
    except BaseException:
        obj.put()
        raise
    with f._lock:
        f._dma_bufs.append(obj)
    uapi.fastrpc_alloc_dma_buf.set(k, "fd", fd)
    return 0


def _undo_alloc(f: LegacyFile, k: bytearray) -> None:
    # The kernel leaves the installed fd to process exit; nobody could learn its number, so we close it.
    os.close(uapi.fastrpc_alloc_dma_buf.get(k, "fd"))


def _req_mmap(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_req_mmap.unpack(k)
    if a["flags"] not in (ADSP_MMAP_ADD_PAGES, ADSP_MMAP_REMOTE_HEAP_ADDR):
        raise errno_error(errno.EINVAL, f"MMAP: flag {a['flags']:#x} not supported "
                          "(only ADSP_MMAP_ADD_PAGES 0x1000 or ADSP_MMAP_REMOTE_HEAP_ADDR 8)")
    if a["vaddrin"]:
        raise errno_error(errno.EINVAL, "MMAP: adding user allocated pages (vaddrin != 0) is not supported")
    size = a["size"]
    if size == 0 or size > IOVA_END - IOVA_START:
        raise errno_error(errno.ENOMEM, f"MMAP: cannot allocate {size:#x} bytes")
    _faults.fail_request(f.channel.bus.faults, "map", "legacy", f"MMAP size {size:#x}")
    buf = _MmapBuf(GemObject.create(f.ensure_cb(), size, name="mmap"), size)
    msg = init_msgs.mmap(f.client_id, a["flags"], a["vaddrin"], (buf.obj.dma_addr, size))
    ret = -1
    try:
        ret = f._kernel_call(msg)
    finally:
        if ret != 0:
            buf.obj.put()
    if ret != 0:
        return ret
    buf.raddr = msg.vaddr()
    with f._lock:
        f.mmaps.append(buf)
    uapi.fastrpc_req_mmap.set(k, "vaddrout", buf.raddr)
    return 0


def _munmap_impl(f: LegacyFile, buf: _MmapBuf) -> int:
    ret = f._kernel_call(init_msgs.munmap(f.client_id, buf.raddr, buf.size))
    if ret == 0:
        with f._lock:
            if buf in f.mmaps:
                f.mmaps.remove(buf)
        buf.obj.put()
    return ret


def _undo_mmap(f: LegacyFile, k: bytearray) -> None:
    vaddr = uapi.fastrpc_req_mmap.get(k, "vaddrout")
    with f._lock:
        buf = next((b for b in f.mmaps if b.raddr == vaddr), None)
    if buf is not None:
        _munmap_impl(f, buf)


def _req_munmap(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_req_munmap.unpack(k)
    with f._lock:
        buf = next((b for b in f.mmaps if b.raddr == a["vaddrout"] and b.size == a["size"]), None)
    if buf is None:
        raise errno_error(errno.EINVAL, f"MUNMAP: {a['vaddrout']:#x} [len {a['size']:#x}] not in list")
    return _munmap_impl(f, buf)


def _mem_map(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_mem_map.unpack(k)
    _faults.fail_request(f.channel.bus.faults, "map", "legacy", f"MEM_MAP fd {a['fd']} length {a['length']:#x}")
    m = f._map_create(a["fd"], a["length"])  # upstream passes attr 0: `attrs` does not reach the SMMU
    msg = init_msgs.mem_map(f.client_id, a["fd"], a["offset"], a["flags"], a["vaddrin"], (m.phys, m.size))
    ret = -1
    try:
        ret = f._kernel_call(msg)
    finally:
        if ret != 0:
            f._map_put(m)
    if ret != 0:
        return ret
    m.raddr = msg.vaddr()
    uapi.fastrpc_mem_map.set(k, "vaddrout", m.raddr)
    return 0


def _mem_unmap_impl(f: LegacyFile, fd: int, vaddr: int) -> int:
    with f._lock:
        m = next((m for m in f.maps.values() if (fd < 0 or m.fd == fd) and m.raddr == vaddr), None)
    if m is None:
        raise errno_error(errno.EINVAL, f"MEM_UNMAP: fd {fd} at {vaddr:#x}: map not in list")
    ret = f._kernel_call(init_msgs.mem_unmap(f.client_id, m.fd, m.raddr, m.size))
    if ret == 0:
        f._map_put(m)
    return ret


def _mem_unmap(f: LegacyFile, k: bytearray) -> int:
    a = uapi.fastrpc_mem_unmap.unpack(k)
    return _mem_unmap_impl(f, a["fd"], a["vaddr"])


def _undo_mem_map(f: LegacyFile, k: bytearray) -> None:
    _mem_unmap_impl(f, -1, uapi.fastrpc_mem_map.get(k, "vaddrout"))


def _get_dsp_info(f: LegacyFile, k: bytearray) -> int:
    L = uapi.fastrpc_ioctl_capability
    a = L.unpack(k)
    L.set(k, "capability", 0)
    if f.policy.dsp_info_checks_domain and (a["domain"] >= FASTRPC_DEV_MAX or a["domain"] == _MDSP):
        raise errno_error(errno.ECHRNG, f"GET_DSP_INFO: domain {a['domain']} invalid or modem (not supported)")
    # from Linux 7.3 (d81c041ed5e4) the field is "unused", ignored by the kernel
    if a["attribute_id"] >= FASTRPC_MAX_DSP_ATTRIBUTES:
        raise errno_error(errno.EOVERFLOW, f"GET_DSP_INFO: attribute {a['attribute_id']} >= 256")
    ch = f.channel
    with ch.lock:
        attrs = ch.dsp_attributes
    if attrs is None:
        # Handle 2 method 0: in u32 count (255), out u32[255] = attributes 1..255. Attribute 0
        # is left 0 by the kernel (libadsprpc fills DOMAIN_SUPPORT itself).
        count = struct.pack("<I", FASTRPC_MAX_DSP_ATTRIBUTES - 1)
        out = bytearray(4 * (FASTRPC_MAX_DSP_ATTRIBUTES - 1))
        descs = bytearray(48)
        wire.INVOKE_ARG.pack_into(descs, 0, address(count), len(count), -1, 0)
        wire.INVOKE_ARG.pack_into(descs, 24, address(out), len(out), -1, 0)
        if f.policy.dsp_info_from_device:
            ret = ch.device_query(wire.FASTRPC_DSP_UTILITIES_HANDLE, wire.scalars(0, 1, 1), descs)
        else:
            ret = f.internal_invoke(True, wire.FASTRPC_DSP_UTILITIES_HANDLE, wire.scalars(0, 1, 1), descs)
        if ret & 0xFFFF_FFFF == DSP_UNSUPPORTED_API:
            raise errno_error(errno.EOPNOTSUPP, f"GET_DSP_INFO: DSP capabilities not supported on {ch.dsp_name}")
        if ret:
            return ret
        attrs = (0, *struct.unpack(f"<{FASTRPC_MAX_DSP_ATTRIBUTES - 1}I", out))
        with ch.lock:
            ch.dsp_attributes = attrs
    L.set(k, "capability", attrs[a["attribute_id"]])
    return 0


def _set_option(f: LegacyFile, k: bytearray) -> int:
    """``fastrpc_set_option`` (Linux 7.3, commit 96e62cc0a84d), checks in its order: reserved
    words, request id, platform support, value."""
    a = uapi.fastrpc_ioctl_set_option.unpack(k)
    if any(a["reserved"]):
        raise errno_error(errno.EINVAL, "SET_OPTION: reserved words must be 0")
    if a["request_id"] != uapi.FASTRPC_POLL_MODE:
        raise errno_error(errno.EINVAL, f"SET_OPTION: unknown request {a['request_id']}")
    if not f.channel.poll_mode_supported:
        raise errno_error(errno.EOPNOTSUPP, f"SET_OPTION: poll mode is not supported on this SoC "
                                            f"({f.channel.dsp_name})")
    if a["value"] not in (uapi.FASTRPC_POLL_MODE_ENABLE, uapi.FASTRPC_POLL_MODE_DISABLE):
        raise errno_error(errno.EINVAL, f"SET_OPTION: poll mode value {a['value']} is not 0 or 1")
    with f._lock:
        f.poll_mode = a["value"] == uapi.FASTRPC_POLL_MODE_ENABLE
    return 0


_HANDLERS = {
    uapi.FASTRPC_IOCTL_INVOKE: _invoke,
    uapi.FASTRPC_IOCTL_INIT_ATTACH: _attach(wire.ROOT_PD),
    uapi.FASTRPC_IOCTL_INIT_ATTACH_SNS: _attach(wire.SENSORS_PD),
    uapi.FASTRPC_IOCTL_INIT_CREATE_STATIC: _init_create_static,
    uapi.FASTRPC_IOCTL_INIT_CREATE: _init_create,
    uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF: _alloc_dma_buff,
    uapi.FASTRPC_IOCTL_MMAP: _req_mmap,
    uapi.FASTRPC_IOCTL_MUNMAP: _req_munmap,
    uapi.FASTRPC_IOCTL_MEM_MAP: _mem_map,
    uapi.FASTRPC_IOCTL_MEM_UNMAP: _mem_unmap,
    uapi.FASTRPC_IOCTL_SET_OPTION: _set_option,  # served where the revision's uapi has it
    uapi.FASTRPC_IOCTL_GET_DSP_INFO: _get_dsp_info,
    # FASTRPC_IOCTL_FREE_DMA_BUFF has a number in the uapi but no case in the driver: ENOTTY.
}

#: Commands whose struct the kernel copies back (on success), with what it undoes if that fails.
_COPY_OUT = {
    uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF: _undo_alloc,
    uapi.FASTRPC_IOCTL_MMAP: _undo_mmap,
    uapi.FASTRPC_IOCTL_MEM_MAP: _undo_mem_map,
    uapi.FASTRPC_IOCTL_GET_DSP_INFO: lambda f, k: None,
}
