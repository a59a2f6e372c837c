# cython: language_level=3, boundscheck=False, wraparound=False
"""The SMMU view of one compute bus (re-exported by ``qda_core.mem.bus``), in C: the DSP
translates a device address on every message (docs/dataplane.md)."""
from qda_core.errors import DeviceFault

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef object _EMPTY = memoryview(b"")


cdef class Smmu:
    """What the DSP sees of memory: device addresses translated through the context banks.

    Implements ``qda_core.dsp.DeviceMemory``. A range that no CB maps, or that runs past the
    end of the object it starts in, raises :class:`DeviceFault` (an SMMU fault on hardware).
    """
    cdef object _bus

    def __init__(self, bus):
        self._bus = bus

    cpdef view(self, addr_, length_, bint writable):
        """A byte view of ``length`` bytes at device address ``addr``."""
        cdef unsigned long long addr, length
        if not (0 <= addr_ <= 0xFFFFFFFFFFFFFFFF and 0 <= length_ <= 0xFFFFFFFFFFFFFFFF):
            raise DeviceFault(addr_, length_, "not a 64-bit device range")
        addr, length = addr_, length_
        if length == 0:
            return _EMPTY
        cb = self._bus._by_sid.get(addr >> 32)  # ComputeBus.by_sid
        if cb is None:
            raise DeviceFault(addr, length, f"no context bank with SID {addr >> 32}")
        iova = addr & 0xFFFFFFFF
        hit = cb._space.find(iova)  # ContextBank.lookup
        if hit is None:
            raise DeviceFault(addr, length, f"{cb.name}: IOVA not mapped")
        start = hit[0]
        obj = cb._objects[start]
        off = iova - start
        backing = obj.backing
        if off + length > backing.size:
            raise DeviceFault(addr, length, f"{cb.name}: range runs past a {backing.size:#x}-byte buffer")
        mv = backing.view[off:off + length]
        return mv if writable else mv.toreadonly()
