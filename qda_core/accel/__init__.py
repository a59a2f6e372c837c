"""The emulated QDA DRM accel driver (``drivers/accel/qda``, RFC of Feb 2026)."""
from .device import QdaDevice
from .file import HandleArg, GemRef, QdaFile

__all__ = ["QdaDevice", "QdaFile", "GemRef", "HandleArg"]
