"""qda_core: the emulated kernel side of qdarpc.

Two emulated drivers (the QDA accel driver and the legacy misc/fastrpc char driver) over one
emulated Hexagon DSP. See ``../shared/docs/ARCHITECTURE.md`` for the layering.
"""
from ._version import __version__

__all__ = ["__version__"]
