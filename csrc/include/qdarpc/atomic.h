/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The few atomic operations the data plane's C state needs now that a route (docs/dataplane.md
 * "Routes") updates it without the GIL: a count added to by a GIL-free caller and by a Python
 * lane at once must not lose either update. Relaxed order: these are counts and flags whose
 * readers need no ordering with other memory, except where a caller says otherwise.
 */
#ifndef QDARPC_ATOMIC_H
#define QDARPC_ATOMIC_H

static inline void qda_add_ll(long long *p, long long v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline void qda_add_ull(unsigned long long *p, unsigned long long v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline unsigned long long qda_fetch_add_ull(unsigned long long *p, unsigned long long v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline void qda_store_ull(unsigned long long *p, unsigned long long v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST); /* (ordered against a later load of a count) */
}

static inline long long qda_xchg_ll(long long *p, long long v)
{
	return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}

static inline long long qda_load_ll(const long long *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* a file's ioctls in flight and its closed flag, ordered against each other (seq_cst): a
 * closer that sees no ioctl in flight and an ioctl that sees the file open cannot both happen */
static inline long qda_inc_long(long *p, long v)
{
	return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}

static inline long qda_load_long(const long *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static inline int qda_load_int(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static inline void qda_store_int(int *p, int v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

static inline int qda_cas_int(int *p, int expect, int v)
{
	return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline unsigned long long qda_load_ull(const unsigned long long *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void qda_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* a lock held for a few instructions (an id allocator's take or give), never across a call */
static inline void qda_spin_lock(int *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			qda_cpu_relax();
}

static inline void qda_spin_unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

#endif /* QDARPC_ATOMIC_H */
