"""The emulated legacy FastRPC char driver (upstream ``drivers/misc/fastrpc.c``):
``/dev/fastrpc-<dom>[-secure]`` nodes, one session per open, dma-buf fds as buffer identity."""
from .device import NODE_POLICY, LegacyChannel, LegacyDevice, node_path
from .file import DmaBufRef, HandleArg, LegacyFile, dmabuf_mmap

__all__ = ["LegacyChannel", "LegacyDevice", "LegacyFile", "DmaBufRef", "HandleArg", "dmabuf_mmap",
           "NODE_POLICY", "node_path"]
