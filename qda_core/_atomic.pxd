# The atomic operations of csrc/include/qdarpc/atomic.h, for the lanes' C state (docs/dataplane.md
# "Routes": a route updates it without the GIL).
cdef extern from "qdarpc/atomic.h" nogil:
    void qda_add_ll(long long *p, long long v)
    void qda_add_ull(unsigned long long *p, unsigned long long v)
    unsigned long long qda_fetch_add_ull(unsigned long long *p, unsigned long long v)
    void qda_store_ull(unsigned long long *p, unsigned long long v)
    long long qda_xchg_ll(long long *p, long long v)
    long long qda_load_ll(const long long *p)
    long qda_inc_long(long *p, long v)
    long qda_load_long(const long *p)
    int qda_load_int(const int *p)
    void qda_store_int(int *p, int v)
    int qda_cas_int(int *p, int expect, int v)
    unsigned long long qda_load_ull(const unsigned long long *p)
    void qda_cpu_relax()
    void qda_spin_lock(int *l)
    void qda_spin_unlock(int *l)
