# cython: language_level=3, boundscheck=False, wraparound=False
"""The SMMU view of one compute bus (re-exported by ``qda_core.mem.bus``), in C: the DSP
translates a device address on every message (docs/dataplane.md). It is the DSP's
``qda_core._cdev.DevMemory``: the DSP's lane asks it for a host address in C."""
from libc.stdint cimport uint64_t

from qda_core._cdev cimport DevMemory

from qda_core.errors import DeviceFault
from qda_core.mem.backing import Backing

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()

cdef class BankState:
    """A context bank's mapping generation (``ContextBank._st``), bumped on every attach and
    unmap: the SMMU's last translation in a bank holds while the generation it was made in does."""
    cdef public unsigned long long gen


cdef class _Entry:
    """One translation kept: the object at ``[start, start + size)`` of a bank's IOVA space,
    its backing's kernel-side address, and the bank generation it was made in; and the view
    a ``Backing`` keeps of its pages (its own attribute: no export of ours). Not an arena
    slot's: each view of a slot counts as a DSP-side view of it, holding the slot back."""
    cdef object obj
    cdef object view  # the Backing's view, or None (an arena slot: asked each time)
    cdef unsigned long long start, size, host, gen


cdef inline object _pages(_Entry e):
    """The kernel-side view of the entry's whole object (kept for a Backing)."""
    return e.view if e.view is not None else e.obj.backing.view


cdef enum:
    _KEPT = 4  # translations kept per bank: a call's message buffer and its by-reference buffers


cdef class _Bank:
    """What a translation reads of one context bank (its IOVA space's ``find``, its objects,
    its generation), and the last translations made there, most recent first (messages
    reuse their buffers, and by-reference calls reuse theirs)."""
    cdef object find, objects, name
    cdef BankState st
    cdef list kept


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
            b.kept = []
            self._banks[sid] = b
        self._last, self._last_sid = b, sid
        return b

    cdef _Entry _lookup(self, _Bank cb, unsigned long long iova):
        """The translation of ``iova`` in ``cb``: a kept one if it holds (the address lies in
        its object and nothing was mapped or unmapped in the bank since), else a new one, kept
        in place of the least recent; None if nothing is mapped there."""
        cdef _Entry e
        cdef Py_ssize_t i, n = len(cb.kept)
        cdef unsigned long long gen = cb.st.gen
        if n and (<_Entry>cb.kept[0]).gen != gen:  # all made before a (un)map: none holds again
            cb.kept = []
            n = 0
        for i in range(n):
            e = <_Entry>cb.kept[i]
            if e.gen == gen and e.start <= iova < e.start + e.size:
                if i:  # most recent first
                    del cb.kept[i]
                    cb.kept.insert(0, e)
                return e
        hit = cb.find(iova)  # ContextBank.lookup
        if hit is None:
            return None
        key = hit[0]
        obj = cb.objects.get(key)
        if obj is None:  # reserved, not attached yet (GemObject.create) or being unmapped
            return None
        backing = obj.backing
        e = _Entry.__new__(_Entry)
        # a backing's kernel-side address is fixed for its life (a promoted arena slot keeps it)
        e.obj, e.start, e.gen = obj, key, gen
        e.size, e.host = backing.size, backing.addr
        # (valid while the entry is: a Backing closes its view after its object's unmap,
        # which bumps the bank's generation)
        e.view = backing.view if type(backing) is Backing else None
        if n >= _KEPT:
            cb.kept.pop()
        cb.kept.insert(0, e)
        return e

    cdef _Entry _find(self, unsigned long long addr, unsigned long long length, int *why):
        """The translation holding device range ``[addr, addr + length)`` (``length`` > 0), or
        why not in ``*why``: 0 it does, 1 no context bank has the SID, 2 the IOVA is not mapped
        (None), 3 the range runs past the object (its translation returned)."""
        cdef _Bank cb = self._bank(addr >> 32)
        cdef _Entry e
        cdef unsigned long long iova = addr & <unsigned long long>0xFFFFFFFF, off
        if cb is None:
            why[0] = 1
            return None
        e = self._lookup(cb, iova)
        if e is None:
            why[0] = 2
            return None
        off = iova - e.start
        why[0] = 3 if off >= e.size or length > e.size - off else 0  # (off + length could wrap)
        return e

    cdef int span(self, uint64_t addr, uint64_t length, char **host) except -1:
        cdef int why
        cdef _Entry e
        if length == 0:
            host[0] = NULL
            return 0
        e = self._find(addr, length, &why)
        if why:
            return 1
        host[0] = <char *><size_t>(e.host + (addr & <unsigned long long>0xFFFFFFFF) - e.start)
        return 0

    cdef object base(self, uint64_t addr, uint64_t length, Py_ssize_t *off, char **host):
        cdef int why
        cdef _Entry e = self._find(addr, length, &why) if length else None
        if e is None or why:
            return None
        off[0] = <Py_ssize_t>((addr & <unsigned long long>0xFFFFFFFF) - e.start)
        host[0] = <char *><size_t>(e.host + <unsigned long long>off[0])
        return _pages(e)

    cpdef view(self, addr, length, bint writable):
        """A byte view of ``length`` bytes at device address ``addr``."""
        cdef unsigned long long a, n, off
        cdef int why
        cdef _Entry e
        self.views_made += 1  # (a route asks whether a skel made one during its call)
        if not (0 <= addr <= 0xFFFFFFFFFFFFFFFF and 0 <= length <= 0xFFFFFFFFFFFFFFFF):
            raise DeviceFault(addr, length, "not a 64-bit device range")
        a, n = addr, length
        if n == 0:
            return memoryview(b"")  # a fresh one each time: a view is its caller's to release
        e = self._find(a, n, &why)
        if why == 1:
            raise DeviceFault(a, n, f"no context bank with SID {a >> 32}")
        if why == 2:
            raise DeviceFault(a, n, f"{self._bank(a >> 32).name}: IOVA not mapped")
        if why == 3:
            raise DeviceFault(a, n, f"{self._bank(a >> 32).name}: range runs past a {e.size:#x}-byte buffer")
        off = (a & <unsigned long long>0xFFFFFFFF) - e.start
        mv = _pages(e)[off:off + n]
        return mv if writable else mv.toreadonly()
