# cython: language_level=3, boundscheck=False, wraparound=False
"""The SMMU view of one compute bus (re-exported by ``qda_core.mem.bus``), in C: the DSP
translates a device address on every message (docs/dataplane.md)."""
from qda_core.errors import DeviceFault

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef class _Bank:
    """What a translation reads of one context bank (its IOVA space's ``find``, its objects),
    and the object the last translation found there (messages reuse their buffers)."""
    cdef object find, objects, name
    cdef object last_obj, last_view
    cdef unsigned long long last_start, last_size


cdef class Smmu:
    """What the DSP sees of memory: device addresses translated through the context banks.

    Implements ``qda_core.dsp.DeviceMemory``. A range that no CB maps, or that runs past the
    end of the object it starts in, raises :class:`DeviceFault` (an SMMU fault on hardware).
    """
    cdef object _bus
    cdef dict _banks  # SID -> _Bank (a bus's banks are fixed when it is made)

    def __init__(self, bus):
        self._bus = bus
        self._banks = {}

    cdef _Bank _bank(self, unsigned long long sid):
        cdef _Bank b = self._banks.get(sid)
        if b is None:
            cb = self._bus.by_sid(sid)
            if cb is None:
                return None
            b = _Bank.__new__(_Bank)
            b.find, b.objects, b.name = cb._space.find, cb._objects, cb.name
            self._banks[sid] = b
        return b

    cpdef view(self, addr_, length_, bint writable):
        """A byte view of ``length`` bytes at device address ``addr``."""
        cdef unsigned long long addr, length
        cdef _Bank cb
        if not (0 <= addr_ <= 0xFFFFFFFFFFFFFFFF and 0 <= length_ <= 0xFFFFFFFFFFFFFFFF):
            raise DeviceFault(addr_, length_, "not a 64-bit device range")
        addr, length = addr_, length_
        if length == 0:
            return memoryview(b"")  # a fresh one each time: a view is its caller's to release
        cb = self._bank(addr >> 32)
        if cb is None:
            raise DeviceFault(addr, length, f"no context bank with SID {addr >> 32}")
        cdef unsigned long long iova = addr & 0xFFFFFFFF, start, size, off
        # the object of the last translation, if this address lies in it and it is still the
        # one mapped at its start (an unmapped object leaves the table; another mapped at the
        # same IOVA is another object)
        if (cb.last_obj is not None and cb.last_start <= iova < cb.last_start + cb.last_size
                and cb.objects.get(cb.last_start) is cb.last_obj):
            start, size, view = cb.last_start, cb.last_size, cb.last_view
        else:
            hit = cb.find(iova)  # ContextBank.lookup
            if hit is None:
                raise DeviceFault(addr, length, f"{cb.name}: IOVA not mapped")
            start = hit[0]
            obj = cb.objects[start]
            backing = obj.backing
            size, view = backing.size, backing.view
            cb.last_obj, cb.last_start, cb.last_size, cb.last_view = obj, start, size, view
        off = iova - start
        if off + length > size:
            raise DeviceFault(addr, length, f"{cb.name}: range runs past a {size:#x}-byte buffer")
        mv = view[off:off + length]
        return mv if writable else mv.toreadonly()
