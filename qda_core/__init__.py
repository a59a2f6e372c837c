"""qda_core: the emulated kernel side of qdarpc.

Two emulated drivers (the QDA accel driver and the legacy misc/fastrpc char driver) over one
emulated Hexagon DSP per domain. See ``docs/ARCHITECTURE.md`` for the layering.

>>> import qda_core
>>> f = qda_core.open_device("cdsp")     # /dev/accel/accelN of the compute DSP
>>> f.query()
'cdsp'
>>> f.close()
"""
from ._version import __version__

__all__ = ["__version__", "open", "open_device", "default_soc", "Soc"]


def open(path: str, flags: int | None = None):  # noqa: A001 - mirrors open(2)
    """Open an emulated device node (e.g. ``/dev/accel/accel0``) of the default SoC."""
    import os

    from .soc import default_soc

    return default_soc().open(path, os.O_RDWR if flags is None else flags)


def open_device(domain: str | int, flags: int | None = None):
    """Open the accel node of a DSP domain (``"cdsp"`` or 3) of the default SoC."""
    import os

    from .soc import default_soc

    return default_soc().open_device(domain, os.O_RDWR if flags is None else flags)


def __getattr__(name: str):
    if name in ("Soc", "default_soc"):
        from . import soc

        return getattr(soc, name)
    raise AttributeError(f"module 'qda_core' has no attribute {name!r}")
