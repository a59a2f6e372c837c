# Placeholder until the marshalling core lands.
cdef extern from *:
    const char *QDARPC_VERSION
__version__ = QDARPC_VERSION.decode()
