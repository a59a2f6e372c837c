"""fork(): a child starts over, with no sessions, on a fresh emulated SoC.

A real child shares its parent's open device files, hence its DSP sessions. The emulator's
drivers and DSP are Python objects: after fork() the child holds a copy-on-write copy of them
that shares only the memfd pages with the parent, so using it would act on device memory the
parent's DSP owns, and closing it would send INIT_RELEASE for the parent's PDs. So in the child
every Library forgets its inherited sessions and handles without talking to them, and each SoC
it held is replaced, on first use, by a fresh one of the same profile (:func:`current`).

qda_core handles its own half (its locks, and a fresh ``default_soc()`` in the child); this
module handles the library's: its lock, its sessions and records, and the SoCs it was given.
"""
from __future__ import annotations

import os

from qda_core import soc as _socmod

from . import _remote, process

_inherited: list = []             # child: the parent's emulator objects, kept alive, never used
_parents_socs: set[int] = set()   # child: ids of inherited Socs (alive in _inherited)
_reborn: dict[int, object] = {}   # child: id(inherited Soc) -> its fresh replacement


def current(soc):
    """``soc``, or in a forked child the fresh SoC standing for the inherited ``soc`` (one per
    inherited SoC, built on first use)."""
    if id(soc) not in _parents_socs:
        return soc
    with process.lock:
        new = _reborn.get(id(soc))
        if new is None:
            new = _reborn[id(soc)] = _socmod.Soc(list(soc.specs))
        return new


def _before_fork() -> None:
    # The Library tables are consistent in the child: no thread is mid-change.
    process.lock.acquire()


def _after_fork_in_parent() -> None:
    process.lock.release()


def _after_fork_in_child() -> None:
    try:
        # Socs this process built after its own fork are inherited ones now, too.
        _inherited.append(_reborn.copy())
        _parents_socs.update(id(v) for v in _reborn.values())
        _reborn.clear()
        for soc in (process.state.soc, *(lib._soc for lib in process.libraries)):
            if soc is not None and id(soc) not in _parents_socs:
                _inherited.append(soc)
                _parents_socs.add(id(soc))
        for lib in list(process.libraries):
            # Dropped, not closed: closing would message the parent's DSP state. Kept
            # referenced so no driver file is collected (and warns, and closes) in the child.
            _inherited.append(lib._forget_inherited())
        _inherited.append(dict(process._records))
        process._records.clear()  # inherited handles are invalid: AEE_EINVHANDLE
        _remote.routes.after_fork()  # and so are their routes
        process.REGS.after_fork()  # (its lock, which a C thread of the parent's may have held)
    finally:
        process.lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
