"""The legacy FastRPC user API (libadsprpc / libcdsprpc) over qdarpc's emulated drivers.

Names are the C names of ``remote.h`` and ``rpcmem.h``. Where C returns an AEE code this
raises a :class:`FastRpcError` subclass (``.aee`` is the code C would return); where C has an
out-parameter it is the return value. Module-level functions run on the default
:class:`Library` of the backend chosen by ``QDARPC_BACKEND`` (``accel``, default, or
``legacy``) or :func:`set_backend`; ``Library(backend=...)`` objects drive either backend
explicitly, side by side in one process. ``remote_handle64`` values route themselves.

Comments in this package name two reference implementations: **QF**, the ``qualcomm/fastrpc``
user library (``development`` branch), and **LIB**, its ``accel/staging`` branch (the QDA
backend). Section numbers cite ``docs/spec/legacy_fastrpc_api.md``.

>>> import libadsprpc_compat as rpc
>>> buf = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4000)
>>> h = rpc.remote_handle64_open("file:///libcalculator_skel.so?calculator_skel_handle_invoke"
...                              "&_modver=1.0&_idlver=1.2.3" + rpc.CDSP_DOMAIN)
"""
from __future__ import annotations

import inspect as _inspect

from qda_core._ext import load as _load

from . import constants as _c
from . import errors as _errors
from . import default as _default
from . import fork as _fork  # noqa: F401 - registers the library's fork handlers
from .buffers import (remote_register_buf, remote_register_buf_attr, remote_register_dma_handle,  # noqa: F401
                      remote_register_dma_handle_attr)
from .constants import *  # noqa: F401,F403 - the C constants
from .default import set_backend, shutdown, use_library, use_soc  # noqa: F401
from .errors import *  # noqa: F401,F403 - the exception classes
from .handle64 import remote_handle64_close, remote_handle64_invoke  # noqa: F401
from .library import Library  # noqa: F401
from .rpcmem import RpcMem, rpcmem_alloc, rpcmem_alloc2, rpcmem_deinit, rpcmem_free, rpcmem_init, rpcmem_to_fd  # noqa: F401

_abi = _load("_abi")

#: Every AEE_* code, from the compiled table (never re-typed here).
AEE_NAMES = tuple(name for name, _value, _desc in _abi.AEE_TABLE if name.startswith("AEE_"))
globals().update({name: getattr(_abi, name) for name in AEE_NAMES})
DSP_AEE_EOFFSET = _abi.DSP_AEE_EOFFSET
errno_to_aee = _abi.errno_to_aee
aee_name = _abi.aee_name
aee_to_dsp = _abi.aee_to_dsp
is_dsp_error = _abi.is_dsp_error
REMOTE_SCALARS_METHOD_ATTR = _abi.REMOTE_SCALARS_METHOD_ATTR
REMOTE_SCALARS_METHOD = _abi.REMOTE_SCALARS_METHOD
REMOTE_SCALARS_INBUFS = _abi.REMOTE_SCALARS_INBUFS
REMOTE_SCALARS_OUTBUFS = _abi.REMOTE_SCALARS_OUTBUFS
REMOTE_SCALARS_INHANDLES = _abi.REMOTE_SCALARS_INHANDLES
REMOTE_SCALARS_OUTHANDLES = _abi.REMOTE_SCALARS_OUTHANDLES
REMOTE_SCALARS_LENGTH = _abi.REMOTE_SCALARS_LENGTH
REMOTE_SCALARS_MAKEX = _abi.REMOTE_SCALARS_MAKEX
REMOTE_SCALARS_MAKE = _abi.REMOTE_SCALARS_MAKE

#: Library methods exposed as module-level functions on the default library.
_BOUND = (
    "remote_handle_open", "remote_handle_invoke", "remote_handle_close", "remote_handle64_open",
    "remote_handle_control", "remote_handle64_control", "remote_session_control",
    "fastrpc_mmap", "fastrpc_munmap", "remote_mmap", "remote_munmap", "remote_mmap64",
    "remote_munmap64", "remote_mem_map", "remote_mem_unmap", "remote_set_mode",
)


def _bind(name: str):
    """Module-level ``name``: the Library method of that name, on the default library."""
    method = getattr(Library, name)
    default_library = _default.default_library

    def fn(*args, **kw):
        return getattr(default_library(), name)(*args, **kw)

    sig = _inspect.signature(method)
    fn.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = method.__doc__
    fn.__module__ = __name__
    return fn


globals().update({_n: _bind(_n) for _n in _BOUND})

#: The legacy C API functions this package provides (the contract tests walk this list).
LEGACY_FUNCTIONS = (
    *_BOUND, "remote_handle64_invoke", "remote_handle64_close", "remote_register_buf",
    "remote_register_buf_attr", "remote_register_dma_handle", "remote_register_dma_handle_attr",
    "rpcmem_init", "rpcmem_deinit", "rpcmem_alloc", "rpcmem_alloc2", "rpcmem_free", "rpcmem_to_fd",
    "REMOTE_SCALARS_METHOD_ATTR", "REMOTE_SCALARS_METHOD", "REMOTE_SCALARS_INBUFS",
    "REMOTE_SCALARS_OUTBUFS", "REMOTE_SCALARS_INHANDLES", "REMOTE_SCALARS_OUTHANDLES",
    "REMOTE_SCALARS_LENGTH", "REMOTE_SCALARS_MAKEX", "REMOTE_SCALARS_MAKE",
)

_CONSTANTS = tuple(n for n in dir(_c) if n.isupper() or n in (
    "fastrpc_map_flags",) or n.startswith(("remote_", "fastrpc_context")))

__all__ = [
    *LEGACY_FUNCTIONS, *AEE_NAMES, *_CONSTANTS, *_errors.__all__,
    "DSP_AEE_EOFFSET", "errno_to_aee", "aee_name", "aee_to_dsp", "is_dsp_error",
    "Library", "RpcMem", "set_backend", "use_library", "use_soc", "shutdown", "LEGACY_FUNCTIONS", "AEE_NAMES",
]
