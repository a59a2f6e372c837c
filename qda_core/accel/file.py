"""An open ``/dev/accel/accelN`` file (DRM ``file_priv`` + ``qda_user``) and its ioctls.

``ioctl(request, arg)`` is the raw form: ``arg`` holds the uapi struct bytes (a writable buffer,
or an int user address) and the return value is what the kernel returns (0, ``-errno``, or the
DSP's retval verbatim). The typed methods build the same structs, go through the same
dispatch, and raise ``OSError`` for a negative return.

One driver serves every accel revision: the ioctl table, the struct layouts and the few
behaviours that differ are the device's :class:`qda_core.uapi.AccelUapi` (``device.uapi``), read
by the handlers below. What ``qda-v1-2026-05`` changes (docs/spec/kernel_revisions_2026.md §2.1):
the GEM_CREATE/MMAP_OFFSET field order, ``pad`` checks, MMAP_OFFSET refusing imported objects,
every ``fd`` a DMA-BUF fd imported for the one call (:meth:`QdaFile.buffer`), no INIT_ATTACH,
and the reply decode (the device's engine).
"""
from __future__ import annotations

import errno
import mmap as _mmap
import os
import threading

from .. import debug, fastrpc, init_msgs, trace, uapi, wire
from .. import faults as _faults
from ..driver_file import DriverFile, copy_in, copy_out
from ..errors import errno_error
from ..fastrpc import current_comm
from ..invoke_args import BufRef, HandleArg, pinned  # noqa: F401 - HandleArg re-exported
from ..mem import vma
from ..mem.backing import Backing
from ..mem.gem import GemObject
from ..mem.handles import HandleTable
from ..mem.msgpool import MessagePool
from ..uaccess import address, copy_from_user
from . import _invoke

_OUT = uapi.IOC_READ
_IN = uapi.IOC_WRITE


class GemRef(BufRef):
    """An invoke buffer passed by reference: a GEM ``handle`` of the file and the user mapping
    ``buf`` of it (or a slice of that mapping). The DSP reads and writes the shared pages
    directly. On a revision whose ``fd`` fields are DMA-BUF fds (v1) the typed methods export
    the handle for the call (PRIME_HANDLE_TO_FD, closed after it), as a v1 program does."""

    __slots__ = ()

    @property
    def handle(self) -> int:
        return self.ident


class QdaFile(DriverFile):
    """One open accel file. Not shared across processes; several threads may invoke at once."""

    def __init__(self, device, client_id: int, flags: int):
        super().__init__(device.uapi.ioctls[_INVOKE_NR].number)
        self.device = device
        #: The device's revision uapi (qda_core.uapi.AccelUapi).
        self.uapi = device.uapi
        self.client_id = client_id
        self.flags = flags
        self.pid = threading.get_native_id()  # current->pid of the opener: a thread id
        self.handles: HandleTable[GemObject] = HandleTable()
        self._handle_of: dict[int, int] = {}       # id(obj) -> handle (the file's PRIME cache)
        self._imports: dict[tuple, int] = {}       # foreign dma-buf identity -> handle
        self.cb = None
        self._pool: MessagePool | None = None
        self._origins: dict[tuple, wire.Origin] = {}  # (cb, kernel) -> Origin (see _origin)
        self._init_mem: list[GemObject] = []       # RFC overwrites (leaks) older ones; freed at close
        self._lock = threading.RLock()             # protects handles, PRIME caches, cb
        self.last_error: OSError | None = None
        ioc = self.uapi.ioctls[_INVOKE_NR]
        self._invoke_ioc = (ioc.number, ioc.layout)  # the typed invoke's request and struct
        debug.created("accel_file")

    # --- raw ioctl ------------------------------------------------------------------------
    #: The DRM core's ``drm_ioctl()``: ``ioctl(request, arg=None)``. INVOKE goes through the
    #: native lane (accel/_invoke.pyx) on the native data plane; everything else, and every
    #: call of a file on the Python data plane, through :meth:`_ioctl` (the reference).
    ioctl = _invoke.ioctl

    def _ioctl(self, request: int, arg) -> int:
        """The reference ``drm_ioctl()``: dispatch on nr, size the copies as DRM does."""
        ioc = self.uapi.ioctls.get(request & 0xFF)
        if ioc is None:  # beyond the table or a hole in it (drm_ioctl: no function -> EINVAL)
            self.last_error = errno_error(errno.EINVAL, f"ioctl {request:#x}: no such QDA/DRM ioctl "
                                                        f"in {self.device.revision}")
            return -errno.EINVAL
        tr = trace.RECORDER
        t0 = trace.now() if tr is not None else 0
        both = (request >> 30) & (ioc.number >> 30)  # directions the user and the driver share
        usize = (request >> 16) & 0x3FFF
        in_size = usize if both & _IN else 0
        out_size = usize if both & _OUT else 0
        kbuf = bytearray(max(in_size, out_size, ioc.layout.size if ioc.layout else 0))
        try:
            if in_size:
                copy_in(kbuf, arg, in_size, ioc.name)
            ret = _HANDLERS[ioc.nr](self, kbuf)
        except OSError as exc:
            ret = self._failed(exc)
        made = ret == 0 and ioc.nr in _UNDO
        if out_size:
            try:
                copy_out(arg, kbuf, out_size, ioc.name)
            except OSError as exc:
                ret = self._failed(exc)
        if made and (ret != 0 or out_size < ioc.layout.size):
            # The new fd never reached the caller (the copy-out failed, or the request number
            # lacks the read direction or is sized short of the fd field): the kernel would leave
            # it installed where nobody learns its number; we take it back.
            _UNDO[ioc.nr](self, kbuf)
        if tr is not None:
            copied, shared = fastrpc.take_traffic()
            if ioc.nr != _INVOKE_NR:
                copied = shared = 0  # kernel messages of other ioctls are not user traffic
            fields = ioc.layout.unpack(kbuf) if ioc.layout else {}
            fields = {k: (v.split(b"\0")[0].decode(errors="replace") if isinstance(v, bytes) else v)
                      for k, v in fields.items()}
            tr.ioctl("accel", self.device.path, ioc.name, request, fields, ret, t0, trace.now(),
                     copied=copied, shared=shared)
        return ret

    def _call(self, request: int, buf=None) -> bytearray | None:
        ret = self.ioctl(request, buf)
        if ret < 0:
            raise self._error(ret)
        return buf

    # --- state helpers --------------------------------------------------------------------
    def ensure_cb(self):
        """The RFC's lazy CB assignment on first memory use (``ENOMEM`` if none is free)."""
        with self._lock:
            if self.cb is None:
                cb = self.device.bus.assign(self.pid)
                self._pool = MessagePool(cb)  # the pool first: a lock-free reader keys on cb
                self.cb = cb
            return self.cb

    def _origin(self, kernel: bool) -> wire.Origin:
        """This file as the DSP knows a message's sender (made once per CB and kind: every
        invoke sends one)."""
        key = (self.cb, kernel)
        o = self._origins.get(key)
        if o is None:
            o = self._origins[key] = wire.Origin(self.client_id, frozenset((self.cb.sid,)), kernel)
        return o

    def lookup(self, handle: int) -> GemObject | None:
        return self.handles.get(handle)

    def buffer(self, fd: int, what: str) -> GemObject:
        """The buffer object an ``fd`` field (> 0) names, with a reference the caller puts.
        RFC: a GEM handle of this file (``ENOENT``). v1: a DMA-BUF fd, imported on every call
        through the PRIME path (:meth:`prime_import`, as PRIME_FD_TO_HANDLE: the file's PRIME
        cache finds a dma-buf imported before, and the import stays with the file); ``EBADF``
        for a closed fd, ``EINVAL`` for one that is not a dma-buf."""
        with self._lock:
            h = fd if self.uapi.fd_kind == "gem-handle" else self.prime_import(fd, what)
            obj = self.handles.get(h)
            if obj is None:
                raise errno_error(errno.ENOENT, f"{what}: no GEM handle {fd} in this file")
            obj.get()
        try:
            # The DSP gets its device address (a MAP, a handle argument): it may write it from
            # now on, so not into an arena slot a promotion could move under it.
            obj.promote()
        except BaseException:
            obj.put()
            raise
        return obj

    def prime_import(self, fd: int, what: str = "PRIME_FD_TO_HANDLE") -> int:
        """``drm_gem_prime_fd_to_handle()``: the handle of dma-buf ``fd`` in this file."""
        try:
            key = vma.file_key(fd)
        except OSError as exc:
            raise errno_error(exc.errno or errno.EBADF, f"{what}: fd {fd}") from exc
        with self._lock:
            own = self.device.objects_by_key.get(key)
            # The RFC hands back the exporter's own object, whose IOVA lies in the exporter's
            # context bank. A PD reaches only its own bank, so a file on another bank gets its
            # own attachment of the same pages below, as a second importing device would.
            if own is not None and own.refs > 0 and own.cb is self.ensure_cb():
                h = self._handle_of.get(id(own))
                if h is None:
                    h = self._add_handle(own.get())
            elif key in self._imports:
                h = self._imports[key]
            else:
                cb = self.ensure_cb()
                backing = Backing.import_fd(fd)
                try:
                    obj = GemObject(backing, cb, imported=True, name="import")
                except BaseException:
                    backing.close()
                    raise
                h = self._add_handle(obj)
                self._imports[key] = h
        return h

    def _add_handle(self, obj: GemObject) -> int:
        h = self.handles.add(obj)
        self._handle_of[id(obj)] = h
        return h

    # --- FastRPC-backed ioctls ------------------------------------------------------------
    def fastrpc(self, handle: int, sc: int, descs, pd: int = wire.ROOT_PD, *, kernel: bool = False) -> int:
        """``fastrpc_invoke()``: CB + message buffer, the buffers the fds name (:meth:`buffer`),
        send, wait. ``kernel``: the driver built this message (else it relays a user INVOKE)."""
        if self._pool is None:
            self.ensure_cb()
        n = wire.sc_length(sc)
        nbufs = ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF)
        refs = bytearray(16 * n)
        held = []
        try:
            for i, (ptr, length, fd, _attr) in enumerate(wire.INVOKE_ARG.iter_unpack(descs) if n else ()):
                if fd <= 0 or (i < nbufs and not length):
                    continue  # copied inline / nothing to map
                obj = self.buffer(fd, f"argument {i}")
                held.append(obj)
                addr = vma.ref_address(i, ptr, length, obj) if i < nbufs else obj.dma_addr
                wire.PHY_PAGE.pack_into(refs, 16 * i, addr, obj.size)
            return self.device.fastrpc.invoke(
                client_id=0 if handle == wire.FASTRPC_INIT_HANDLE else self.client_id,
                tid=threading.get_native_id(), handle=handle, sc=sc, pd=pd,
                args=descs, refs=refs, msg_alloc=self._pool.alloc,
                origin=self._origin(kernel))
        finally:
            for obj in held:
                obj.put()

    def _kernel_call(self, msg: init_msgs.KernelMsg, pd: int = wire.ROOT_PD) -> int:
        """Send a kernel-originated INIT-handle message (kernel buffers carry fd 0)."""
        return self.fastrpc(wire.FASTRPC_INIT_HANDLE, msg.sc, msg.descriptors(0), pd, kernel=True)

    # --- typed API ------------------------------------------------------------------------
    def query(self) -> str:
        """DRM_IOCTL_QDA_QUERY: the DSP name."""
        buf = self._call(uapi.DRM_IOCTL_QDA_QUERY, bytearray(uapi.drm_qda_query.size))
        return uapi.drm_qda_query.get(buf, "dsp_name").split(b"\0")[0].decode()

    def init_attach(self) -> int:
        """DRM_IOCTL_QDA_INIT_ATTACH: join the DSP's root PD. Returns the DSP retval. v1 has no
        such ioctl (nr 0x03 is a hole): ``EINVAL``."""
        return self._check_dsp(self.ioctl(uapi.DRM_IOCTL_QDA_INIT_ATTACH))

    def init_create(self, image: bytes | None = None, *, attrs: int = 0, siglen: int = 0,
                    gem: GemRef | None = None) -> int:
        """DRM_IOCTL_QDA_INIT_CREATE (v1: REMOTE_SESSION_CREATE): spawn a user PD. ``image`` is
        copied inline; ``gem`` passes an image held in a buffer object by reference. Returns
        the DSP retval."""
        ioc = self.uapi.ioctls[_SESSION_CREATE_NR]
        L = ioc.layout
        buf = L.pack(attrs=attrs, siglen=siglen)
        keep, exported = image, []
        try:
            if gem is not None:
                L.set(buf, "filefd", self._fd_field(gem.handle, exported))
                L.set(buf, "filelen", memoryview(gem.buf).nbytes)
                L.set(buf, "file", address(gem.buf))
            elif image:
                L.set(buf, "filelen", len(image))
                L.set(buf, "file", address(image))
            ret = self.ioctl(ioc.number, buf)
        finally:
            for fd in exported:
                os.close(fd)
        del keep
        return self._check_dsp(ret)

    def _fd_field(self, handle: int, exported: list[int]) -> int:
        """What an ``fd`` field carries for GEM ``handle``: the handle (RFC), or a dma-buf fd
        exported for the call and appended to ``exported`` for the caller to close (v1)."""
        if self.uapi.fd_kind == "gem-handle":
            return handle
        fd = self.prime_handle_to_fd(handle)
        exported.append(fd)
        return fd

    def gem_create(self, size: int) -> int:
        """DRM_IOCTL_QDA_GEM_CREATE: a zeroed buffer of ``size`` (page-rounded); its handle."""
        ioc = self.uapi.ioctls[_GEM_CREATE_NR]
        buf = ioc.layout.pack(size=size)
        self._call(ioc.number, buf)
        return ioc.layout.get(buf, "handle")

    def gem_mmap_offset(self, handle: int) -> int:
        """DRM_IOCTL_QDA_GEM_MMAP_OFFSET: the fake offset to ``mmap`` the object at."""
        ioc = self.uapi.ioctls[_MMAP_OFFSET_NR]
        buf = ioc.layout.pack(handle=handle)
        self._call(ioc.number, buf)
        return ioc.layout.get(buf, "offset")

    def gem_close(self, handle: int) -> None:
        """DRM_IOCTL_GEM_CLOSE."""
        self._call(uapi.DRM_IOCTL_GEM_CLOSE, uapi.drm_gem_close.pack(handle=handle))

    def prime_handle_to_fd(self, handle: int, flags: int = uapi.DRM_CLOEXEC | uapi.DRM_RDWR) -> int:
        """DRM_IOCTL_PRIME_HANDLE_TO_FD: a real dma-buf-like fd of the object (caller closes it)."""
        buf = uapi.drm_prime_handle.pack(handle=handle, flags=flags)
        self._call(uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD, buf)
        return uapi.drm_prime_handle.get(buf, "fd")

    def prime_fd_to_handle(self, fd: int) -> int:
        """DRM_IOCTL_PRIME_FD_TO_HANDLE: the handle of a dma-buf fd in this file."""
        buf = uapi.drm_prime_handle.pack(fd=fd)
        self._call(uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE, buf)
        return uapi.drm_prime_handle.get(buf, "handle")

    def mmap(self, offset: int, size: int, prot: int = _mmap.PROT_READ | _mmap.PROT_WRITE) -> memoryview:
        """``mmap(NULL, size, prot, MAP_SHARED, fd, offset)`` on this file: a CPU mapping."""
        obj = self._mmap_object(offset, size, prot)
        try:
            mm = _mmap.mmap(obj.backing.fd, size, _mmap.MAP_SHARED, prot)
            view = memoryview(mm)
            vma.register(mm, address(view), size, obj.backing.key)
        finally:
            obj.put()
        return view

    def mmap_fd(self, offset: int, size: int, prot: int) -> int:
        """What the device shim maps for :meth:`mmap`'s arguments: a new fd on the object's
        pages (the caller maps it at file offset 0 and closes it)."""
        obj = self._mmap_object(offset, size, prot)
        try:
            return os.dup(obj.backing.fd)
        finally:
            obj.put()

    def _mmap_object(self, offset: int, size: int, prot: int) -> GemObject:
        """The object at fake ``offset`` after every check ``mmap`` makes, with its own file
        (promoted) and a reference the caller puts: a GEM_CLOSE meanwhile must not free it
        (its arena slot would go to another object while it is promoted or mapped)."""
        with self.device.lock:
            obj = self.device.offset_objects.get(offset)
            obj = obj.try_get() if obj is not None else None
        if obj is None:
            raise errno_error(errno.EINVAL, f"mmap: no object at fake offset {offset:#x}")
        try:
            if size <= 0 or size > obj.size:
                raise errno_error(errno.EINVAL, f"mmap: length {size:#x} exceeds the {obj.size:#x}-byte object")
            if id(obj) not in self._handle_of:
                raise errno_error(errno.EACCES, "mmap: this file holds no handle to the object")
            if obj.imported:
                raise errno_error(errno.EINVAL, "mmap: imported (PRIME) objects must be mapped through their exporter")
            if prot & _mmap.PROT_WRITE and (self.flags & os.O_ACCMODE) == os.O_RDONLY:
                raise errno_error(errno.EACCES, "mmap: PROT_WRITE on a file opened read-only")
            obj.promote()
        except BaseException:
            obj.put()
            raise
        return obj

    def map(self, request: int, fd: int, *, flags: int = 0, vaddrin: int = 0, size: int = 0,
            attrs: int = 0, offset: int = 0) -> int:
        """DRM_IOCTL_QDA_MAP (v1: REMOTE_MAP); returns the DSP-chosen ``vaddrout``. ``fd``: a
        GEM handle (RFC) or a DMA-BUF fd (v1)."""
        ioc = self.uapi.ioctls[_MAP_NR]
        buf = ioc.layout.pack(request=request, flags=flags, fd=fd, attrs=attrs, offset=offset,
                              vaddrin=vaddrin, size=size)
        self._check_dsp(self.ioctl(ioc.number, buf), raise_dsp=True)
        return ioc.layout.get(buf, "vaddrout")

    def munmap(self, request: int, *, fd: int = 0, vaddr: int = 0, vaddrout: int = 0, size: int = 0) -> None:
        """DRM_IOCTL_QDA_MUNMAP (v1: REMOTE_MUNMAP)."""
        ioc = self.uapi.ioctls[_MUNMAP_NR]
        buf = ioc.layout.pack(request=request, fd=fd, vaddr=vaddr, vaddrout=vaddrout, size=size)
        self._check_dsp(self.ioctl(ioc.number, buf), raise_dsp=True)

    #: ``invoke(handle, sc, args=())``: DRM_IOCTL_QDA_INVOKE with ``args`` in ``[inbufs,
    #: outbufs, inhandles, outhandles]`` order: plain buffers are copied, :class:`GemRef` buffers
    #: shared, :class:`HandleArg` entries are handles. Returns the DSP retval (0 or an AEE code,
    #: as unsigned 32-bit). The native lane (accel/_invoke.pyx, no Python frame of its own)
    #: serves the common call; :meth:`_invoke_reference` every other, with the same results.
    invoke = _invoke.invoke

    def route(self, handle: int):
        """A route for user calls without arguments to DSP handle ``handle``: an
        ``EngineRoute`` whose ``call(sc)`` a C caller makes without the GIL, or None where the
        lanes serve every call (docs/dataplane.md "Routes")."""
        return self._open_route(handle) if type(self) is QdaFile else None

    def _invoke_reference(self, handle: int, sc: int, args=()) -> int:
        """The typed invoke's reference: the descriptors pinned, the INVOKE struct built and
        issued through :meth:`ioctl`, the result checked; a :class:`GemRef` on a revision whose
        ``fd`` fields are DMA-BUF fds is exported for the call (closed after it)."""
        exported: list[int] = []
        try:
            if self.uapi.fd_kind != "gem-handle" and args:
                args = [GemRef(self._fd_field(a.handle, exported), a.buf) if isinstance(a, GemRef) else a
                        for a in args]
            with pinned(sc, args, GemRef) as descs:  # the buffers stay held for the ioctl
                request, layout = self._invoke_ioc
                kbuf = bytearray(layout.size)
                layout._struct.pack_into(kbuf, 0, handle, sc, address(descs) if descs else 0)  # Layout.pack
                ret = self.ioctl(request, kbuf)
            return self._check_dsp(ret)
        finally:
            for fd in exported:
                os.close(fd)

    # --- release --------------------------------------------------------------------------
    def _release(self) -> None:
        """Release in the kernel's order: GEM handles (and PRIME caches), then the DSP release
        message (always, unless the device is going away), init memory, the CB reference."""
        with self._lock:
            objs = [obj for _, obj in self.handles.items()]
            self.handles = HandleTable()
            self._handle_of.clear()
            self._imports.clear()
        for obj in objs:
            obj.put()
        if not self.device.removing and self.device.channel.up:
            try:
                self._kernel_call(init_msgs.release(self.client_id))
            except OSError as exc:  # errors are ignored by postclose, but worth a debug line
                debug.dbg("accel", "release of client %d failed: %s", self.client_id, exc)
        for obj in self._init_mem:
            obj.put()
        self._init_mem.clear()
        if self._pool is not None:
            self._pool.close()
        if self.cb is not None:
            self.device.bus.release(self.cb)
            self.cb = None
            self._origins.clear()
        debug.destroyed("accel_file")

    def _describe(self) -> str:
        return f"QDA file {self.device.path} (client {self.client_id})"

    def __repr__(self) -> str:
        return f"<QdaFile {self.device.path} client={self.client_id}{' closed' if self.closed else ''}>"


# --- ioctl handlers: (file, kbuf) -> int; raise OSError for -errno ----------------------------
def _query(f: QdaFile, k: bytearray) -> int:
    uapi.drm_qda_query.set(k, "dsp_name", f.device.dsp_name.encode()[:15])
    return 0


def _check_pad(f: QdaFile, L: uapi.Layout, k: bytearray, what: str) -> None:
    if L.name in f.uapi.pad_checked and L.get(k, "pad"):
        raise errno_error(errno.EINVAL, f"{what}: pad is {L.get(k, 'pad'):#x}, must be 0")


def _gem_create(f: QdaFile, k: bytearray) -> int:
    L = f.uapi.gem_create
    _check_pad(f, L, k, "GEM_CREATE")
    size = L.get(k, "size")
    if size == 0:
        raise errno_error(errno.EINVAL, "GEM_CREATE: size is 0")
    _faults.fail_request(f.device.bus.faults, "alloc", "gem", f"GEM_CREATE size {size:#x}")
    cb = f.ensure_cb()
    obj = GemObject.create(cb, size, packed=True)
    with f._lock:
        L.set(k, "handle", f._add_handle(obj))
    return 0


def _gem_mmap_offset(f: QdaFile, k: bytearray) -> int:
    L = f.uapi.gem_mmap_offset
    _check_pad(f, L, k, "GEM_MMAP_OFFSET")
    h = L.get(k, "handle")
    obj = f.lookup(h)
    if obj is None:
        raise errno_error(errno.ENOENT, f"GEM_MMAP_OFFSET: no handle {h}")
    if obj.imported and f.uapi.mmap_offset_refuses_imported:
        # drm_gem_dumb_map_offset(): imported objects are mapped through their exporter.
        raise errno_error(errno.EINVAL, f"GEM_MMAP_OFFSET: handle {h} is an imported (PRIME) object")
    L.set(k, "offset", f.device.offset_for(obj))
    return 0


def _init_attach(f: QdaFile, k: bytearray) -> int:
    return f._kernel_call(init_msgs.attach(f.client_id), pd=wire.ROOT_PD)


def _init_create(f: QdaFile, k: bytearray) -> int:
    a = f.uapi.init_create.unpack(k)
    cb = f.ensure_cb()
    init_mem = GemObject.create(cb, uapi.INIT_MEM_SIZE, name="initmem")
    f._init_mem.append(init_mem)  # the RFC overwrites (leaks) an earlier one; we free all at close
    if a["filelen"] > uapi.INIT_FILELEN_MAX:
        raise errno_error(errno.EINVAL, f"INIT_CREATE: filelen {a['filelen']:#x} > 4 MiB")
    fd = a["filefd"]
    if a["filelen"] and fd != 0 and f.uapi.fd_kind == "gem-handle":
        if f.lookup(fd) is None:
            raise errno_error(errno.EINVAL, f"INIT_CREATE: filefd {fd} is not a GEM handle of this file")
    # v1: a DMA-BUF filefd > 0 is imported with the message's other buffers (QdaFile.buffer).
    image = (a["file"], a["filelen"], fd if fd > 0 else -1)
    msg = init_msgs.create(f.client_id, current_comm(), image, a["filelen"], a["attrs"], a["siglen"],
                           (init_mem.dma_addr, init_mem.size))
    return f._kernel_call(msg, pd=wire.USER_PD)


def _map(f: QdaFile, k: bytearray) -> int:
    L = f.uapi.mem_map
    a = L.unpack(k)
    if a["request"] not in (uapi.QDA_MAP_REQUEST_LEGACY, uapi.QDA_MAP_REQUEST_ATTR):
        raise errno_error(errno.EINVAL, f"MAP: unknown request {a['request']}")
    _check_pad(f, L, k, "MAP")
    _faults.fail_request(f.device.bus.faults, "map", "accel", f"MAP fd {a['fd']} size {a['size']:#x}")
    f.ensure_cb()
    page, held = (0, 0), None
    if a["fd"] > 0:
        held = f.buffer(a["fd"], "MAP")  # promoted: the DSP may write it at any time from now on
        page = (held.dma_addr, held.size)  # the whole object
        if f.uapi.fd_kind == "gem-handle":
            held.put()  # RFC: the reference is dropped right away (the map does not pin it)
            held = None
    try:
        if a["request"] == uapi.QDA_MAP_REQUEST_LEGACY:
            msg = init_msgs.mmap(f.client_id, a["flags"], a["vaddrin"], page)
        else:
            msg = init_msgs.mem_map(f.client_id, a["fd"], a["offset"], a["flags"], a["vaddrin"], page)
        ret = f._kernel_call(msg)
    finally:
        if held is not None:
            held.put()  # v1: the call's reference (the import stays with the file)
    if ret == 0:
        L.set(k, "vaddrout", msg.vaddr())
    return ret


def _munmap(f: QdaFile, k: bytearray) -> int:
    # The fd of an ATTR request is forwarded to the DSP, never looked up (no pages travel).
    a = f.uapi.mem_unmap.unpack(k)
    if a["request"] == uapi.QDA_MAP_REQUEST_LEGACY:
        return f._kernel_call(init_msgs.munmap(f.client_id, a["vaddrout"], a["size"]))
    if a["request"] == uapi.QDA_MAP_REQUEST_ATTR:
        return f._kernel_call(init_msgs.mem_unmap(f.client_id, a["fd"], a["vaddr"], a["size"]))
    raise errno_error(errno.EINVAL, f"MUNMAP: unknown request {a['request']}")


def _invoke(f: QdaFile, k: bytearray) -> int:
    handle, sc, args = f.uapi.invoke.values(k)
    n = wire.sc_length(sc)
    descs = bytearray(24 * n)
    if n:
        copy_from_user(descs, args, "invoke argument descriptors")
    return f.fastrpc(handle, sc, descs)


def _gem_close(f: QdaFile, k: bytearray) -> int:
    h = uapi.drm_gem_close.get(k, "handle")
    with f._lock:
        obj = f.handles.remove(h)
        if obj is None:
            raise errno_error(errno.EINVAL, f"GEM_CLOSE: no handle {h}")
        f._handle_of.pop(id(obj), None)
        for key, hh in list(f._imports.items()):
            if hh == h:
                del f._imports[key]
    obj.put()
    return 0


def _prime_handle_to_fd(f: QdaFile, k: bytearray) -> int:
    a = uapi.drm_prime_handle.unpack(k)
    if a["flags"] & ~(uapi.DRM_CLOEXEC | uapi.DRM_RDWR):
        raise errno_error(errno.EINVAL, f"PRIME_HANDLE_TO_FD: bad flags {a['flags']:#x}")
    with f._lock:  # a handle holds a reference while it is in the table
        obj = f.lookup(a["handle"])
        if obj is None:
            raise errno_error(errno.ENOENT, f"PRIME_HANDLE_TO_FD: no handle {a['handle']}")
        obj.get()  # a GEM_CLOSE meanwhile must not free it while it is promoted (see _mmap_object)
    try:
        # An fd of the same pages with the access mode the flags ask for; a read-only one cannot
        # be reopened read-write (Backing.export_fd).
        fd = obj.backing.export_fd(writable=bool(a["flags"] & uapi.DRM_RDWR),
                                   cloexec=bool(a["flags"] & uapi.DRM_CLOEXEC))
        obj.exported = True
        if not obj.imported:
            # Its file is known from now on (an arena slot got one just now): an import of it
            # finds the object. A re-exported import is a foreign dma-buf: imported anew.
            f.device.objects_by_key[obj.backing.key] = obj
    finally:
        obj.put()
    uapi.drm_prime_handle.set(k, "fd", fd)
    return 0


def _prime_fd_to_handle(f: QdaFile, k: bytearray) -> int:
    uapi.drm_prime_handle.set(k, "handle", f.prime_import(uapi.drm_prime_handle.get(k, "fd")))
    return 0


_HANDLERS = {
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_QUERY): _query,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_GEM_CREATE): _gem_create,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_GEM_MMAP_OFFSET): _gem_mmap_offset,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INIT_ATTACH): _init_attach,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INIT_CREATE): _init_create,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_MAP): _map,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_MUNMAP): _munmap,
    uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INVOKE): _invoke,
    uapi.IOC_NR(uapi.DRM_IOCTL_GEM_CLOSE): _gem_close,
    uapi.IOC_NR(uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD): _prime_handle_to_fd,
    uapi.IOC_NR(uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE): _prime_fd_to_handle,
}


def _undo_prime_export(f: QdaFile, k: bytearray) -> None:
    # drm_prime_handle_to_fd_ioctl: a failed copy-out puts the new fd back (put_unused_fd).
    os.close(uapi.drm_prime_handle.get(k, "fd"))


#: Handlers whose result is an fd the caller learns only through the copy-out: undone if it fails.
_UNDO = {uapi.IOC_NR(uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD): _undo_prime_export}

_INVOKE_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INVOKE)
_GEM_CREATE_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_GEM_CREATE)
_MMAP_OFFSET_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_GEM_MMAP_OFFSET)
_SESSION_CREATE_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_INIT_CREATE)
_MAP_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_MAP)
_MUNMAP_NR = uapi.IOC_NR(uapi.DRM_IOCTL_QDA_MUNMAP)
