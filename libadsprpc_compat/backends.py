"""The two ways down to the DSP: QDA accel ioctls (as ``accel/staging`` LIB 759d6f8 issues them)
and the legacy misc/fastrpc ioctls (as ``src/fastrpc_ioctl.c`` issues them).

A backend opens the session node, creates the user PD, and performs the memory ioctls. Every
method returns ``0`` or an AEE code and never raises for a driver failure; the code of a
failed ioctl is ``errno_to_aee(errno)`` and the errno is kept in ``self.errno``.

Buffer identity: the legacy driver takes dma-buf fds as they are; QDA takes GEM handles of the
session file, so the accel backend imports each fd once per session with PRIME_FD_TO_HANDLE
(:meth:`AccelBackend.ref`). The DSP then knows a buffer by that handle (what ``HAP_mmap_get``
and dma-handle arguments see), exactly as with the real QDA library.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Callable, ClassVar, Mapping, Protocol

from qda_core import uapi
from qda_core._ext import load as _load
from qda_core.wire import PERF_V2_DRIVER_SUPPORT, USERSPACE_ALLOCATION_SUPPORT

from .constants import DOMAIN_NAMES

_abi = _load("_abi")

#: The QUERY size LIB 759d6f8 encodes (20 B, trailing ``capabilities``): dispatch is by nr.
LIB_QUERY = uapi.IOC(uapi.IOC_READ, uapi.DRM_IOCTL_BASE, uapi.DRM_COMMAND_BASE, 20)


def _os_error_code(exc: OSError) -> tuple[int, int]:
    err = exc.errno or _errno.EIO
    return _abi.errno_to_aee(err), err


class Backend(Protocol):
    """What a session needs from a way down to the DSP; :class:`LegacyBackend` and
    :class:`AccelBackend` implement it (as pyzmq's backends implement one declared API).

    Methods return ``0`` or an AEE code (the pair methods ``(code, value)``) and keep the errno
    of a failed ioctl in :attr:`errno`; they never raise for a driver failure.
    """

    #: ``"accel"`` or ``"legacy"``: the name callers choose the backend by.
    name: ClassVar[str]
    #: The INVOKE request number the invoker's fast path issues on :attr:`file`.
    invoke_request: ClassVar[int]
    #: The open session file (None before :meth:`open` and after :meth:`close`).
    file: object
    #: errno of the last failed ioctl or open (0 after a success).
    errno: int

    def __init__(self, soc) -> None: ...

    @classmethod
    def discover(cls, soc) -> dict[str, str]:
        """Domain name -> device node, as the library's discovery finds them (may be empty)."""

    @property
    def translate(self) -> Callable[[int], int] | None:
        """``fd -> number the driver knows the dma-buf by`` for the invoker, or None when the
        driver takes fds as they are."""

    def open(self, domain: int, nodes: Mapping[str, str]) -> int:
        """Open the session node of ``domain`` (``nodes``: the result of :meth:`discover`)."""

    def init_create(self, attrs: int) -> int:
        """Create the user PD on the open session (``attrs``: FASTRPC_MODE_* bits)."""

    def ref(self, fd: int) -> int:
        """The number the driver (and the DSP) knows dma-buf ``fd`` by in this session."""

    def forget(self, fd: int) -> None:
        """``fd`` is no longer registered: drop what this session holds for it."""

    def mem_map(self, fd: int, offset: int, flags: int, vaddrin: int, length: int) -> tuple[int, int]:
        """fastrpc_mmap's map ioctl: ``(code, DSP address)``."""

    def mem_unmap(self, fd: int, vaddr: int, length: int) -> int:
        """fastrpc_munmap's unmap ioctl."""

    def mmap(self, fd: int, flags: int, vaddrin: int, size: int) -> tuple[int, int]:
        """The driver's MMAP request (remote_mem_map): ``(code, DSP address)``."""

    def munmap(self, vaddr: int, size: int) -> int:
        """The driver's MUNMAP request."""

    def dsp_info(self, domain: int, attribute: int) -> tuple[int, int | None]:
        """A DSP capability: ``(code, value)``; value None leaves the caller's value as it is."""

    def close(self) -> None:
        """Close the session file (the driver releases the PD)."""


class _Base:
    """What both backends share: the ioctl-to-AEE convention and the file's lifetime."""

    name = ""
    #: the INVOKE request number used by the fast path
    invoke_request = 0

    def __init__(self, soc):
        self.soc = soc
        self.file = None
        self.errno = 0

    def _ioctl(self, request: int, buf) -> int:
        """Raw ioctl; returns 0, an AEE code converted from -errno, or the DSP's code."""
        ret = self.file.ioctl(request, buf)
        if ret == 0:
            self.errno = 0
            return 0
        if -4096 < ret < 0:
            self.errno = -ret
            return _abi.errno_to_aee(-ret)
        self.errno = 0
        return ret & 0xFFFF_FFFF

    @classmethod
    def discover(cls, soc) -> dict[str, str]:
        """No discovery: the node names are fixed."""
        return {}

    @property
    def translate(self):
        """None: the driver takes dma-buf fds as they are."""
        return None

    def close(self) -> None:
        """Close the session file, if open."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def ref(self, fd: int) -> int:
        """The number the driver (and the DSP) knows dma-buf ``fd`` by in this session."""
        return fd

    def forget(self, fd: int) -> None:
        """``fd`` is no longer registered: drop what this session holds for it."""


class LegacyBackend(_Base):
    """``/dev/fastrpc-<dom>[-secure]`` with the upstream misc/fastrpc uapi."""

    name = "legacy"
    invoke_request = uapi.FASTRPC_IOCTL_INVOKE

    def open(self, domain: int, nodes: Mapping[str, str]) -> int:
        """Open ``/dev/fastrpc-<dom>-secure``, else ``/dev/fastrpc-<dom>``, as QF does (``nodes``
        is unused: the legacy library has no discovery)."""
        dom = DOMAIN_NAMES[domain]
        flags = os.O_RDWR | os.O_NONBLOCK
        for path in (f"/dev/fastrpc-{dom}-secure", f"/dev/fastrpc-{dom}"):
            try:
                self.file = self.soc.open(path, flags)
                return 0
            except OSError as exc:
                self.errno = exc.errno or 0
                if exc.errno not in (_errno.ENOENT, _errno.EACCES):
                    break
        return _abi.AEE_ECONNREFUSED

    def init_create(self, attrs: int) -> int:
        """FASTRPC_IOCTL_INIT_CREATE."""
        # No shell image: QF sends filelen 0 when fastrpc_shell_<d> is not found
        # (docs/spec/legacy_fastrpc_api.md §6.1).
        buf = uapi.fastrpc_init_create.pack(filelen=0, filefd=-1, attrs=attrs, siglen=0, file=0)
        return self._ioctl(uapi.FASTRPC_IOCTL_INIT_CREATE, buf)

    def mem_map(self, fd: int, offset: int, flags: int, vaddrin: int, length: int) -> tuple[int, int]:
        """FASTRPC_IOCTL_MEM_MAP: ``(code, DSP address)``."""
        buf = uapi.fastrpc_mem_map.pack(version=0, fd=fd, offset=offset, flags=flags, vaddrin=vaddrin,
                                        length=length, attrs=0)
        code = self._ioctl(uapi.FASTRPC_IOCTL_MEM_MAP, buf)
        return code, (uapi.fastrpc_mem_map.get(buf, "vaddrout") if code == 0 else 0)

    def mem_unmap(self, fd: int, vaddr: int, length: int) -> int:
        """FASTRPC_IOCTL_MEM_UNMAP."""
        buf = uapi.fastrpc_mem_unmap.pack(fd=fd, vaddr=vaddr, length=length)
        return self._ioctl(uapi.FASTRPC_IOCTL_MEM_UNMAP, buf)

    def mmap(self, fd: int, flags: int, vaddrin: int, size: int) -> tuple[int, int]:
        """FASTRPC_IOCTL_MMAP (the DSP map request, not CPU mmap): ``(code, DSP address)``."""
        buf = uapi.fastrpc_req_mmap.pack(fd=fd, flags=flags, vaddrin=vaddrin, size=size)
        code = self._ioctl(uapi.FASTRPC_IOCTL_MMAP, buf)
        return code, (uapi.fastrpc_req_mmap.get(buf, "vaddrout") if code == 0 else 0)

    def munmap(self, vaddr: int, size: int) -> int:
        """FASTRPC_IOCTL_MUNMAP."""
        return self._ioctl(uapi.FASTRPC_IOCTL_MUNMAP, uapi.fastrpc_req_munmap.pack(vaddrout=vaddr, size=size))

    def dsp_info(self, domain: int, attribute: int) -> tuple[int, int | None]:
        """GET_DSP_INFO on the session file (or a temporary one, as QF does without a session).
        The library-side attributes (PERF_V2_DRIVER_SUPPORT and up) are 0 without an ioctl."""
        if attribute >= PERF_V2_DRIVER_SUPPORT:
            return 0, 0
        tmp = None
        if self.file is None:
            code = self.open(domain, {})
            if code:
                return code, None
            tmp = self.file
        try:
            buf = uapi.fastrpc_ioctl_capability.pack(domain=domain, attribute_id=attribute)
            code = self._ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, buf)
            return code, (uapi.fastrpc_ioctl_capability.get(buf, "capability") if code == 0 else None)
        finally:
            if tmp is not None:
                self.close()


class AccelBackend(_Base):
    """``/dev/accel/accelN`` found by QUERY, with the QDA RFC uapi."""

    name = "accel"
    # LIB encodes 24 B; the kernel's 16-B number dispatches identically and copies no more
    # than the 16-B header we pass.
    invoke_request = uapi.DRM_IOCTL_QDA_INVOKE

    def __init__(self, soc):
        super().__init__(soc)
        self._refs: dict[int, int] = {}  # dma-buf fd -> GEM handle in the session file

    @classmethod
    def discover(cls, soc) -> dict[str, str]:
        """LIB ``fastrpc_discovery_init``: QUERY every accel node; later nodes win a name."""
        found: dict[str, str] = {}
        for path in soc.accel_nodes():
            try:
                f = soc.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                buf = bytearray(20)
                if f.ioctl(LIB_QUERY, buf) == 0:
                    found[bytes(buf[:16]).split(b"\0", 1)[0].decode(errors="replace")] = path
            finally:
                f.close()
        return found

    @property
    def translate(self):
        """:meth:`ref`: the invoker passes registered buffers by their GEM handle."""
        return self.ref

    def open(self, domain: int, nodes: Mapping[str, str]) -> int:
        """Open the accel node ``nodes`` names for ``domain`` (read-only, as LIB does)."""
        path = nodes.get(DOMAIN_NAMES[domain])
        if path is None:  # LIB would open accel0 (any DSP); refusing is the honest answer
            return _abi.AEE_ECONNREFUSED
        try:
            # LIB opens the session node with O_NONBLOCK only, i.e. read-only.
            self.file = self.soc.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self.errno = exc.errno or 0
            return _abi.AEE_ECONNREFUSED
        return 0

    def init_create(self, attrs: int) -> int:
        """DRM_IOCTL_QDA_INIT_CREATE with no shell image."""
        buf = uapi.qda_init_create.pack(filelen=0, filefd=0, attrs=attrs, siglen=0, file=0)
        return self._ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, buf)

    def ref(self, fd: int) -> int:
        """The GEM handle of dma-buf ``fd`` in the session file, imported with PRIME_FD_TO_HANDLE
        on first use (ValueError if the driver refuses the fd)."""
        h = self._refs.get(fd)
        if h is None:
            buf = uapi.drm_prime_handle.pack(fd=fd)
            code = self._ioctl(uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE, buf)
            if code:
                raise ValueError(f"fd {fd} cannot be imported into the session: errno {self.errno}")
            h = self._refs[fd] = uapi.drm_prime_handle.get(buf, "handle")
        return h

    def forget(self, fd: int) -> None:
        """GEM_CLOSE the handle ``fd`` was imported as, if any."""
        h = self._refs.pop(fd, None)
        if h is not None and self.file is not None:
            self._ioctl(uapi.DRM_IOCTL_GEM_CLOSE, uapi.drm_gem_close.pack(handle=h))

    def _ref_or_code(self, fd: int) -> tuple[int, int]:
        try:
            return 0, self.ref(fd)
        except ValueError:
            return _abi.errno_to_aee(self.errno or _errno.EBADF), -1

    def mem_map(self, fd: int, offset: int, flags: int, vaddrin: int, length: int) -> tuple[int, int]:
        """DRM_IOCTL_QDA_MAP (ATTR request) of the fd's GEM handle: ``(code, DSP address)``."""
        code, ref = self._ref_or_code(fd)
        if code:
            return code, 0
        buf = uapi.qda_mem_map.pack(request=uapi.QDA_MAP_REQUEST_ATTR, flags=flags, fd=ref, attrs=0,
                                    offset=offset, vaddrin=vaddrin, size=length)
        code = self._ioctl(uapi.DRM_IOCTL_QDA_MAP, buf)
        return code, (uapi.qda_mem_map.get(buf, "vaddrout") if code == 0 else 0)

    def mem_unmap(self, fd: int, vaddr: int, length: int) -> int:
        """DRM_IOCTL_QDA_MUNMAP (ATTR request)."""
        ref = self._refs.get(fd, fd)
        buf = uapi.qda_mem_unmap.pack(request=uapi.QDA_MAP_REQUEST_ATTR, fd=ref, vaddr=vaddr, size=length)
        return self._ioctl(uapi.DRM_IOCTL_QDA_MUNMAP, buf)

    def mmap(self, fd: int, flags: int, vaddrin: int, size: int) -> tuple[int, int]:
        """DRM_IOCTL_QDA_MAP (LEGACY request): ``(code, DSP address)``."""
        code, ref = self._ref_or_code(fd) if fd > 0 else (0, fd)
        if code:
            return code, 0
        buf = uapi.qda_mem_map.pack(request=uapi.QDA_MAP_REQUEST_LEGACY, flags=flags, fd=ref,
                                    vaddrin=vaddrin, size=size)
        code = self._ioctl(uapi.DRM_IOCTL_QDA_MAP, buf)
        return code, (uapi.qda_mem_map.get(buf, "vaddrout") if code == 0 else 0)

    def munmap(self, vaddr: int, size: int) -> int:
        """DRM_IOCTL_QDA_MUNMAP (LEGACY request)."""
        buf = uapi.qda_mem_unmap.pack(request=uapi.QDA_MAP_REQUEST_LEGACY, vaddrout=vaddr, size=size)
        return self._ioctl(uapi.DRM_IOCTL_QDA_MUNMAP, buf)

    def dsp_info(self, domain: int, attribute: int) -> tuple[int, int | None]:
        """LIB's QDA ``ioctl_getdspinfo`` stub: only USERSPACE_ALLOCATION_SUPPORT is answered;
        every other attribute leaves the caller's value untouched (no QDA capability ioctl)."""
        if attribute == USERSPACE_ALLOCATION_SUPPORT:
            return 0, 1
        return 0, None

    def close(self) -> None:
        """Close the session file; its GEM handles go with it."""
        self._refs.clear()  # the handles go with the file
        super().close()


#: Backend name -> class: the names ``Library(backend=...)`` and ``QDARPC_BACKEND`` accept.
BACKENDS: dict[str, type[Backend]] = {"accel": AccelBackend, "legacy": LegacyBackend}

