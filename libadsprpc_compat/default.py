"""The module-level API's Library: backend selection (``QDARPC_BACKEND`` / :func:`set_backend`),
the SoC every Library without its own runs on (:func:`use_soc`), and teardown at exit."""
from __future__ import annotations

import atexit

from . import process
from .cargs import A, fail
from .errors import AlreadyLoadedError
from .library import BACKENDS, Library
from .process import state


def default_library():
    """The Library behind the module-level functions (selected backend)."""
    b = state.backend
    if b not in BACKENDS:
        raise ValueError(f"QDARPC_BACKEND={b!r}: valid backends are {', '.join(BACKENDS)}")
    lib = state.libs.get(b)
    if lib is None:
        with process.lock:
            lib = state.libs.get(b)
            if lib is None:
                lib = state.libs[b] = Library(b)
    return lib


def set_backend(name: str) -> None:
    """Choose the backend of the module-level functions (``"accel"`` or ``"legacy"``); default
    ``$QDARPC_BACKEND`` or accel. Only before the first session is opened through them:
    afterwards a different choice raises AlreadyLoadedError (AEE_EALREADYLOADED). Use
    :class:`~libadsprpc_compat.Library` objects to drive both backends in one process."""
    if name not in BACKENDS:
        fail(A.AEE_EBADPARM, f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    with process.lock:
        if name != state.backend and state.used:
            raise AlreadyLoadedError(A.AEE_EALREADYLOADED,
                                     f"backend {state.backend!r} is in use; set_backend must precede the first open")
        state.backend = name


def use_soc(soc) -> None:
    """Run every Library without an own SoC on ``soc`` (None: back to ``default_soc()``).
    Tears down all sessions of those libraries first and unlocks :func:`set_backend`."""
    with process.lock:
        for lib in list(process.libraries):
            if lib._soc is None:
                lib.close_all()
        state.soc = soc
        state.used = False


def shutdown() -> None:
    """Tear down every session of every Library (also run at interpreter exit)."""
    with process.lock:
        for lib in list(process.libraries):
            lib.close_all()


atexit.register(shutdown)
