cdef class Call:
    cdef public object sc, method, inbufs, outbufs, inhandles, outhandles, process, handle, extra_ns

cdef Call new_call(object sc, object method, tuple inbufs, tuple outbufs, tuple inhandles, tuple outhandles,
                   object process, object handle)
