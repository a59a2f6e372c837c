# cython: language_level=3, boundscheck=False, wraparound=False
"""The SMMU view of one compute bus (re-exported by ``qda_core.mem.bus``), in C: the DSP
translates a device address on every message (docs/dataplane.md). It is the DSP's
``qda_core._cdev.DevMemory``: the DSP's lane asks it for a host address in C."""
from libc.stdint cimport uint64_t

from qda_core._cdev cimport DevMemory

from qda_core.errors import DeviceFault

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef class BankState:
    """A context bank's mapping generation (``ContextBank._st``), bumped on every attach and
    unmap: the SMMU's last translation in a bank holds while the generation it was made in does."""
    cdef public unsigned long long gen


cdef class _Bank:
    """What a translation reads of one context bank (its IOVA space's ``find``, its objects,
    its generation), and what the last translation found there (messages reuse their buffers)."""
    cdef object find, objects, name
    cdef BankState st
    cdef object last_obj, last_view
    cdef unsigned long long last_start, last_size, last_host, last_gen


cdef class Smmu(DevMemory):
    """What the DSP sees of memory: device addresses translated through the context banks.

    Implements ``qda_core.dsp.DeviceMemory``. A range that no CB maps, or that runs past the
    end of the object it starts in, raises :class:`DeviceFault` (an SMMU fault on hardware).
    """
    cdef object _bus
    cdef dict _banks  # SID -> _Bank (a bus's banks are fixed when it is made)
    cdef _Bank _last  # the bank of the last translation, and its SID
    cdef unsigned long long _last_sid

    def __init__(self, bus):
        self._bus = bus
        self._banks = {}
        self._last = None

    cdef _Bank _bank(self, unsigned long long sid):
        if self._last is not None and sid == self._last_sid:
            return self._last
        cdef _Bank b = self._banks.get(sid)
        if b is None:
            cb = self._bus.by_sid(sid)
            if cb is None:
                return None
            b = _Bank.__new__(_Bank)
            b.find, b.objects, b.name, b.st = cb._space.find, cb._objects, cb.name, cb._st
            self._banks[sid] = b
        self._last, self._last_sid = b, sid
        return b

    cdef bint _lookup(self, _Bank cb, unsigned long long iova) except -1:
        """Make ``cb``'s last translation the object mapped at ``iova``; False if none is."""
        # the object of the last translation, if this address lies in it and nothing was mapped
        # or unmapped in the bank since
        if cb.last_obj is not None and cb.last_gen == cb.st.gen and cb.last_start <= iova < cb.last_start + cb.last_size:
            return True
        hit = cb.find(iova)  # ContextBank.lookup
        if hit is None:
            return False
        key = hit[0]
        obj = cb.objects[key]
        backing = obj.backing
        # a backing's kernel-side address is fixed for its life (a promoted arena slot keeps it)
        cb.last_obj, cb.last_start, cb.last_gen = obj, key, cb.st.gen
        cb.last_size, cb.last_view, cb.last_host = backing.size, backing.view, backing.addr
        return True

    cdef int span(self, uint64_t addr, uint64_t length, char **host) except -1:
        cdef _Bank cb
        cdef unsigned long long iova = addr & <unsigned long long>0xFFFFFFFF, off
        if length == 0:
            host[0] = NULL
            return 0
        cb = self._bank(addr >> 32)
        if cb is None or not self._lookup(cb, iova):
            return 1
        off = iova - cb.last_start
        if off >= cb.last_size or length > cb.last_size - off:  # (off + length could wrap)
            return 1
        host[0] = <char *><size_t>(cb.last_host + off)
        return 0

    cpdef view(self, addr, length, bint writable):
        """A byte view of ``length`` bytes at device address ``addr``."""
        cdef unsigned long long a, n
        cdef _Bank cb
        if not (0 <= addr <= 0xFFFFFFFFFFFFFFFF and 0 <= length <= 0xFFFFFFFFFFFFFFFF):
            raise DeviceFault(addr, length, "not a 64-bit device range")
        a, n = addr, length
        if n == 0:
            return memoryview(b"")  # a fresh one each time: a view is its caller's to release
        cb = self._bank(a >> 32)
        if cb is None:
            raise DeviceFault(a, n, f"no context bank with SID {a >> 32}")
        cdef unsigned long long iova = a & <unsigned long long>0xFFFFFFFF, off
        if not self._lookup(cb, iova):
            raise DeviceFault(a, n, f"{cb.name}: IOVA not mapped")
        off = iova - cb.last_start
        if off >= cb.last_size or n > cb.last_size - off:  # (off + n could wrap)
            raise DeviceFault(a, n, f"{cb.name}: range runs past a {cb.last_size:#x}-byte buffer")
        mv = cb.last_view[off:off + n]
        return mv if writable else mv.toreadonly()
