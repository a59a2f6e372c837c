"""Which invoke data plane new objects use: the native lanes (default) or the Python reference.

``QDARPC_DATAPLANE`` (read when a DSP endpoint, an invoke engine or a driver file is made, so a
test can switch it for the objects it creates next):

* ``native`` (default): INVOKE runs through the Cython lanes - the drivers' INVOKE entry
  (``accel/_invoke.pyx``, ``legacy/_invoke.pyx``), the engine (``_engine.pyx``) and the DSP's
  receive (``dsp/_lane.pyx``) - which serve the common call in C and hand anything unusual to
  the reference, step by step (docs/dataplane.md);
* ``py``: the pure-Python reference path only (the oracle of tests/test_dataplane_equiv.py).

The native lanes marshal with the C core, so ``QDARPC_MARSHAL=py`` selects the reference too.
"""
from __future__ import annotations

import os

ENV = "QDARPC_DATAPLANE"
CHOICES = ("native", "py")


def native() -> bool:
    """Whether objects made now use the native lanes (see the module docstring)."""
    choice = os.environ.get(ENV, "native")
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r} is not a data plane; valid values: {', '.join(CHOICES)}")
    return choice == "native" and os.environ.get("QDARPC_MARSHAL", "c") == "c"


__all__ = ["ENV", "CHOICES", "native"]
