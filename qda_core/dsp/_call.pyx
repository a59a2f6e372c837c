# cython: language_level=3, boundscheck=False, wraparound=False
"""``Call``: one invocation as a skel method sees it (re-exported by ``qda_core.dsp.skel``).

A C type: one is made per invoke on the data plane's hot path (docs/dataplane.md)."""

cimport cython

cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()


@cython.freelist(8)  # one per call: the allocator skipped (a few live at once: threads, nesting)
cdef class Call:
    """One invocation as a skel method sees it.

    Attributes: ``sc`` (the scalars word as sent), ``method`` (the real method id, after the
    escape), ``inbufs`` (read-only memoryviews), ``outbufs`` (writable memoryviews; for shared
    buffers these are views of the caller's memory), ``inhandles`` / ``outhandles``
    (:class:`DmaHandle`), ``process`` (the calling PD), ``handle`` (the DSP handle invoked).
    """

    def __init__(self, sc, method, inbufs, outbufs, inhandles, outhandles, process, handle):
        _fill(self, sc, method, inbufs, outbufs, inhandles, outhandles, process, handle)

    def add_cost(self, ns):
        """Charge data-dependent modeled time to this call (on top of the cost model)."""
        self.extra_ns += int(ns)

    def mapping(self, fd):
        """The MEM_MAP mapping of ``fd`` in this process, like ``HAP_mmap_get``; None if none."""
        return self.process.find_mapping(fd)

    def mapped_view(self, fd, offset, length, writable=False):
        """View ``length`` bytes at ``offset`` inside the mapping of ``fd``.

        Raises ``LookupError`` if ``fd`` is not mapped and ``ValueError`` if the range leaves
        the mapping; a :class:`~qda_core.errors.DeviceFault` (mapping of freed memory)
        propagates and crashes the PD, as the access would on hardware.
        """
        return self.process.mapped_view(fd, offset, length, writable)


cdef Call new_call(object sc, object method, tuple inbufs, tuple outbufs, tuple inhandles, tuple outhandles,
                   object process, object handle):
    """A Call, made without the Python-level ``__init__`` call (the native lane's)."""
    cdef Call c = Call.__new__(Call)
    _fill(c, sc, method, inbufs, outbufs, inhandles, outhandles, process, handle)
    return c


cdef inline void _fill(Call c, sc, method, inbufs, outbufs, inhandles, outhandles, process, handle):
    c.sc, c.method, c.inbufs, c.outbufs = sc, method, inbufs, outbufs
    c.inhandles, c.outhandles, c.process, c.handle, c.extra_ns = inhandles, outhandles, process, handle, 0
