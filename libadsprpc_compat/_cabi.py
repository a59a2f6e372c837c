"""The Python side of the C ABI library (``libcdsprpc.so.1`` and siblings, docs/c_abi.md).

The C library (csrc/bridge/bridge.c) calls :func:`bind` once per flavour and then, for every
API call, the function of the same name here with C-typed integers: pointers are raw
addresses. Each function maps onto this package's API, so a C caller and a Python caller get
one implementation of the semantics:

- strings and control structs are read from, and outputs written to, the caller's memory
  with the emulator's checked user copies (a bad pointer is AEE_EBADPARM with errno EFAULT,
  never a crash);
- an invoke's ``remote_arg pra[]`` goes to the invoker as a :class:`~._remote.CArgs`: buffers
  inside an rpcmem allocation or a registered range go by reference, others are copied;
- ``rpcmem_alloc`` keeps the allocation alive here until ``rpcmem_free``.

Every function returns an int and never raises: an AEE code with the errno the real library
would leave in bits 47:32 (see :func:`_code`), or the pointer/fd the C function returns.
"""
from __future__ import annotations

import atexit
import os
import struct
import sys
import threading

from qda_core import trace as _trace
from qda_core.errors import ConfigError, report_internal

from . import default, rpcmem
from . import process as _process
from . import buffers as _buffers
from . import _remote
from ._remote import CArgs, Face
from .cargs import A, cstr, put_cstr
from .constants import DOMAIN_NAMES
from .errors import FastRpcError
from .handle64 import remote_handle64_close as _h64_close
from .handle64 import invoke_failed as _h64_failed
from .handle64 import remote_handle64_invoke as _h64_invoke
from .library import Library
from .process import state
from .uri import domain_from_uri  # noqa: F401 - re-exported for the C tests

#: Longest module name read from a C string (the library's own URI limit is far below).
NAME_MAX = 4096
#: Largest control struct copied in; datalen beyond it cannot match any request's struct.
CONTROL_MAX = 4096

_flavours: dict[str, Library | None] = {}
_lock = threading.Lock()
# A thread of the parent may hold it at fork() (C programs fork while other threads call).
os.register_at_fork(after_in_child=_lock._at_fork_reinit)
#: rpcmem allocations made through C, by address: C has no object to keep them alive.
_allocations: dict[int, rpcmem.RpcMem] = {}


def _library(flavour: str):
    """The Library of a flavour: libcdsprpc is the module-level default library, so C and
    Python callers in one process share sessions; libadsprpc/libsdsprpc get their own with
    their default domain, as the upstream libraries are separate instances."""
    lib = _flavours.get(flavour)
    return lib if lib is not None else default.default_library()


def _code(fn):
    """Run an API call: None -> 0, FastRpcError -> its code (+ errno << 32); any other
    exception is a bug in qdarpc, printed once and answered AEE_EFAILED."""
    def call(*args):
        try:
            fn(*args)
            return 0
        except Exception:
            return _error_code(fn.__name__)
    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def _error_code(name: str) -> int:
    """The int of API call ``name`` for the exception being handled (see :func:`_code`)."""
    exc = sys.exc_info()[1]
    if isinstance(exc, FastRpcError):
        return (exc.aee & 0xFFFF_FFFF) | ((exc.errno or 0) & 0xFFFF) << 32
    if isinstance(exc, ConfigError):
        _config_error(exc)
    else:
        _internal_error(name)
    return A.AEE_EFAILED


_reported: set[str] = set()


def _config_error(exc: ConfigError) -> None:
    """The emulator cannot be built as configured (a bad $QDARPC_SOC/KERNEL/FAULTS, a profile):
    the user's to fix, said once per message, not a traceback per call."""
    msg = str(exc)
    if msg not in _reported:
        _reported.add(msg)
        sys.stderr.write(f"qdarpc: cannot start the emulated DSP: {msg}\n")


def _internal_error(name: str) -> None:
    report_internal(f"the C ABI's {name}")


def _checked(fn, *args, fallback):
    try:
        return fn(*args)
    except FastRpcError:
        return fallback
    except ConfigError as exc:
        _config_error(exc)
        return fallback
    except Exception:
        _internal_error(fn.__name__)
        return fallback


def _put(ptr: int, fmt: str, value: int, what: str) -> None:
    if not ptr:
        raise_badparm(f"{what}: NULL out-pointer")
    put_cstr(ptr, struct.pack(fmt, value), what)


def raise_badparm(message: str):
    from .cargs import fail

    fail(A.AEE_EBADPARM, message)


def raise_badhandle(message: str):
    from .cargs import fail

    fail(A.AEE_EINVHANDLE, message)


def _name(ptr: int, what: str) -> str:
    return cstr(ptr, NAME_MAX, what)


def _nargs(sc: int) -> int:
    return ((sc >> 16) & 0xFF) + ((sc >> 8) & 0xFF) + ((sc >> 4) & 0xF) + (sc & 0xF)


def _struct_io(ptr: int, datalen: int, what: str, call) -> None:
    """Run a control request on a copy of the caller's struct, then copy back what changed."""
    if not ptr:
        call(None, datalen)
        return
    from qda_core.uaccess import copy_from_user

    if datalen > CONTROL_MAX:
        raise_badparm(f"{what}: datalen {datalen} fits no request's struct")
    data = bytearray(datalen)
    try:
        copy_from_user(data, ptr, what)
    except OSError as exc:
        from .cargs import fail

        fail(A.AEE_EBADPARM, f"{what}: {exc.strerror}", errno=exc.errno)
    before = bytes(data)
    call(data, datalen)
    if data != before:
        put_cstr(ptr, bytes(data), what)


def bind(flavour: str, default_domain: int, names: str) -> tuple:
    """The C library of ``flavour`` (``"libcdsprpc"``...) asks for its functions, in the order
    of the space-separated ``names`` (its own list, so the two sides cannot drift)."""
    with _lock:
        if flavour not in _flavours:
            if default_domain not in DOMAIN_NAMES:
                raise ValueError(f"{flavour}: no DSP domain {default_domain}")
            _flavours[flavour] = (None if flavour == "libcdsprpc"
                                  else Library(state.backend, default_domain=default_domain))
            if len(_flavours) > 1:  # handles must now be told apart by flavour: the Python path
                _remote.routes.turn_off()
    table = _bound(flavour)
    return tuple(table[n] for n in names.split())


def face(flavour: str):
    """The capsule of ``flavour``'s fast entry (``qdarpc/face.h``), after :func:`bind`: its
    ``remote_handle64_invoke`` from C without a Python frame of the C face; the cases the
    entry does not serve go to the function :func:`bind` gave for that name."""
    return Face(_process._records, _flavours, _trace, _bound(flavour)["remote_handle64_invoke"],
                _h64_failed_code, _h64_error_code).capsule()


def _h64_failed_code(rec, sc: int, code: int) -> int:
    """The int of an invoke through ``rec`` that returned ``code`` (the Python API's ending)."""
    try:
        _h64_failed(rec, sc, code)
    except Exception:
        return _error_code("remote_handle64_invoke")
    raise AssertionError("invoke_failed returned")


def _h64_error_code() -> int:
    return _error_code("remote_handle64_invoke")


def _foreign(flavour: str, h: int) -> bool:
    """Whether ``h`` is a handle64 that another flavour's library opened. Upstream's libraries
    are separate instances, each checking a handle against its own list (AEE_EINVHANDLE for
    another's); libcdsprpc, the module-level API, takes any handle but another flavour's."""
    if len(_flavours) < 2:
        return False  # one flavour loaded: nothing to confuse
    rec = _process._records.get(h)
    if rec is None:
        return False  # the API answers AEE_EINVHANDLE itself
    owner, own = rec.session.lib, _flavours.get(flavour)
    if own is not None:
        return owner is not own
    return any(owner is lib for lib in _flavours.values() if lib is not None)


def _bound(flavour: str) -> dict:
    """This flavour's functions by C name."""
    lib = lambda: _library(flavour)  # noqa: E731 - resolved per call: use_soc/set_backend may change it

    def own(h, what):
        if _foreign(flavour, h):
            raise_badhandle(f"{what}: {h:#x} was opened by another library instance, not {flavour}")

    @_code
    def remote_handle_open(name, ph):
        _put(ph, "<I", 0, "remote_handle_open: ph")  # writable, before anything is opened
        _put(ph, "<I", lib().remote_handle_open(_name(name, "remote_handle_open: name")), "remote_handle_open: ph")

    @_code
    def remote_handle_invoke(h, sc, pra):
        lib().remote_handle_invoke(h, sc, CArgs(pra, _nargs(sc)))

    @_code
    def remote_handle_close(h):
        lib().remote_handle_close(h)

    @_code
    def remote_handle64_open(name, ph):
        _put(ph, "<Q", 0, "remote_handle64_open: ph")
        _put(ph, "<Q", lib().remote_handle64_open(_name(name, "remote_handle64_open: name")), "remote_handle64_open: ph")

    @_code
    def remote_handle64_invoke(h, sc, pra):
        own(h, "remote_handle64_invoke")
        _h64_invoke(h, sc, CArgs(pra, _nargs(sc)))

    @_code
    def remote_handle64_close(h):
        own(h, "remote_handle64_close")
        _h64_close(h)

    @_code
    def remote_handle_control(req, data, datalen):
        _struct_io(data, datalen, "remote_handle_control", lambda d, n: lib().remote_handle_control(req, d, n))

    @_code
    def remote_handle64_control(h, req, data, datalen):
        own(h, "remote_handle64_control")
        _struct_io(data, datalen, "remote_handle64_control",
                   lambda d, n: lib().remote_handle64_control(h, req, d, n))

    @_code
    def remote_session_control(req, data, datalen):
        _struct_io(data, datalen, "remote_session_control", lambda d, n: lib().remote_session_control(req, d, n))

    @_code
    def remote_mmap(fd, flags, vaddrin, size, vaddrout):
        _put(vaddrout, "<I", 0, "remote_mmap: vaddrout")
        _put(vaddrout, "<I", lib().remote_mmap(fd, flags, vaddrin, size), "remote_mmap: vaddrout")

    @_code
    def remote_munmap(vaddrout, size):
        lib().remote_munmap(vaddrout, size)

    @_code
    def remote_mmap64(fd, flags, vaddrin, size, vaddrout):
        _put(vaddrout, "<Q", 0, "remote_mmap64: vaddrout")
        _put(vaddrout, "<Q", lib().remote_mmap64(fd, flags, vaddrin, size), "remote_mmap64: vaddrout")

    @_code
    def remote_munmap64(vaddrout, size):
        lib().remote_munmap64(vaddrout, size)

    @_code
    def remote_mem_map(domain, fd, flags, virt, size, remote_virt):
        _put(remote_virt, "<Q", 0, "remote_mem_map: remoteVirtAddr")
        _put(remote_virt, "<Q", lib().remote_mem_map(domain, fd, flags, virt, size), "remote_mem_map: remoteVirtAddr")

    @_code
    def remote_mem_unmap(domain, remote_virt, size):
        lib().remote_mem_unmap(domain, remote_virt, size)

    @_code
    def fastrpc_mmap(domain, fd, addr, offset, length, flags):
        lib().fastrpc_mmap(domain, fd, addr, offset, length, flags)

    @_code
    def fastrpc_munmap(domain, fd, addr, length):
        lib().fastrpc_munmap(domain, fd, addr, length)

    @_code
    def remote_register_buf(buf, size, fd):
        _buffers.remote_register_buf(buf, size, fd)

    @_code
    def remote_register_buf_attr(buf, size, fd, attr):
        _buffers.remote_register_buf_attr(buf, size, fd, attr)

    @_code
    def remote_register_dma_handle(fd, length):
        _buffers.remote_register_dma_handle(fd, length)

    @_code
    def remote_register_dma_handle_attr(fd, length, attr):
        _buffers.remote_register_dma_handle_attr(fd, length, attr)

    @_code
    def remote_set_mode(mode):
        lib().remote_set_mode(mode)

    @_code
    def rpcmem_init():
        rpcmem.rpcmem_init()

    @_code
    def rpcmem_deinit():
        rpcmem.rpcmem_deinit()

    def rpcmem_alloc(heapid, flags, size):
        """The allocation's address, 0 (NULL) on failure."""
        return _alloc(rpcmem.rpcmem_alloc, heapid, flags, size)

    def rpcmem_alloc2(heapid, flags, size):
        """The allocation's address, 0 (NULL) on failure."""
        return _alloc(rpcmem.rpcmem_alloc2, heapid, flags, size)

    def rpcmem_free(po):
        """Free an allocation made through C (or Python); unknown pointers are ignored."""
        # Taken out of the table first, then that very object freed: popping the address after
        # the free could drop another thread's new allocation at the same (reused) address,
        # which the collector would then unmap under it.
        with _lock:
            mm = _allocations.pop(po, None)
        _checked(rpcmem.rpcmem_free, po if mm is None else mm, fallback=None)
        return 0

    def rpcmem_to_fd(po):
        """The allocation's fd, -1 for an unknown pointer."""
        return _checked(rpcmem.rpcmem_to_fd, po, fallback=-1)

    return {fn.__name__: fn for fn in (
        remote_handle_open, remote_handle_invoke, remote_handle_close, remote_handle64_open,
        remote_handle64_invoke, remote_handle64_close, remote_handle_control,
        remote_handle64_control, remote_session_control, remote_mmap, remote_munmap,
        remote_mmap64, remote_munmap64, remote_mem_map, remote_mem_unmap, fastrpc_mmap,
        fastrpc_munmap, remote_register_buf, remote_register_buf_attr, remote_register_dma_handle,
        remote_register_dma_handle_attr, remote_set_mode, rpcmem_init, rpcmem_deinit,
        rpcmem_alloc, rpcmem_alloc2, rpcmem_free, rpcmem_to_fd)}


def _alloc(fn, heapid, flags, size) -> int:
    mm = _checked(fn, heapid, flags, size, fallback=None)
    if mm is None:
        return 0
    with _lock:
        _allocations[mm.address] = mm
    return mm.address


def close_all() -> None:
    """Tear down the flavour libraries' sessions (at exit). rpcmem allocations made through C
    stay mapped: threads of the exiting program may still be using them."""
    with _lock:
        libs = [lib for lib in _flavours.values() if lib is not None]
    for lib in libs:
        lib.close_all()


atexit.register(close_all)
