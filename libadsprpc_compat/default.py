"""The module-level API's Library: backend selection (``QDARPC_BACKEND`` / :func:`set_backend`),
a given Library for a block (:func:`use_library`), the SoC every Library without its own runs on
(:func:`use_soc`), and teardown at exit."""
from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager

from . import process
from .cargs import A, fail
from .errors import AlreadyLoadedError
from .library import BACKENDS, Library
from .process import state

#: The Library the innermost :func:`use_library` block pins the module-level functions to.
_pinned: Library | None = None
#: Counts :func:`use_soc` calls: a block that saw one does not bring back the ``state.used`` it saved.
_soc_epoch = 0


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
        if _pinned is not None and name != _pinned.backend:
            raise AlreadyLoadedError(A.AEE_EALREADYLOADED, f"the module-level functions act on {_pinned!r} "
                                     f"(use_library) until its block ends")
        if name != state.backend and state.used:
            raise AlreadyLoadedError(A.AEE_EALREADYLOADED,
                                     f"backend {state.backend!r} is in use; set_backend must precede the first open")
        state.backend = name


@contextmanager
def use_library(lib: Library) -> Iterator[Library]:
    """``with use_library(lib):`` the module-level functions (and libcdsprpc's C functions, which
    share them) act on ``lib`` inside the block: its backend is theirs and ``lib`` is that
    backend's default Library. Process-wide, not per thread. Inside, :func:`set_backend` accepts
    only ``lib.backend`` (else AlreadyLoadedError); sessions that ``lib`` opens are ``lib``'s,
    never closed by the block. After it the previous backend, default Library and
    :func:`set_backend` lock come back (the lock stays off if :func:`use_soc` ran inside).
    Blocks nest."""
    global _pinned
    if not isinstance(lib, Library):
        raise TypeError(f"use_library takes a Library, not {type(lib).__name__}")
    with process.lock:
        saved = (_pinned, state.backend, state.libs.get(lib.backend), state.used, _soc_epoch)
        _pinned, state.backend, state.libs[lib.backend] = lib, lib.backend, lib
    try:
        yield lib
    finally:
        with process.lock:
            _pinned, state.backend, prev_lib, used, epoch = saved
            if prev_lib is None:
                state.libs.pop(lib.backend, None)
            else:
                state.libs[lib.backend] = prev_lib
            state.used = used and epoch == _soc_epoch


def use_soc(soc) -> None:
    """Run every Library without an own SoC on ``soc`` (None: back to ``default_soc()``).
    Tears down all sessions of those libraries first and unlocks :func:`set_backend`."""
    global _soc_epoch
    with process.lock:
        _soc_epoch += 1
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
