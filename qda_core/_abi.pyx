# Placeholder until the ABI tables land.
cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()
