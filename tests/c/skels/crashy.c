/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libcrashy_skel.so - a native skel that faults on request (tests/test_native_skels.py).
 *
 * Handle style (crashy_skel_handle_invoke, _modver=1.0): 0 open (h64 = the open's number),
 * 1 close (counted per h64: crashy_closes), 2 null, 3 NULL write (SIGSEGV), 4 integer divide by
 * zero (SIGFPE), 5 unbounded recursion (stack overflow, SIGSEGV), 6 spin until the int32 at the
 * host address in in0 becomes non-zero (GIL test; gives up after 10 s and returns 1), 7 sum of
 * in0's bytes into out0 (u32), 8 h64 into out0 (u64), 9 (no arguments) count the call and wait
 * until crashy_gate is non-zero (10 s at most; tests/test_routes.py), 10 (no arguments) answer
 * 0x8000040e. Non-handle style (crashy_skel_invoke): 2 null, 3 NULL write.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "qdarpc/remote_abi.h"

#define MAX_OPENS 4096
static int opens;
static int closes[MAX_OPENS];

/* What the tests read through ctypes (the library is loaded once per process). */
int crashy_opens(void)
{
	return __atomic_load_n(&opens, __ATOMIC_SEQ_CST);
}

int crashy_closes(uint64_t h64)
{
	return h64 < MAX_OPENS ? __atomic_load_n(&closes[h64], __ATOMIC_SEQ_CST) : -1;
}

/* Method 9's gate and its callers so far, for tests through ctypes. */
int crashy_gate;
int crashy_gated;

volatile long crashy_depth_limit = 1L << 40;  /* never reached: the stack ends first */

static long recurse(long depth)
{
	volatile char frame[256];

	frame[0] = (char)depth;
	if (depth > crashy_depth_limit)
		return 0;
	return recurse(depth + 1) + frame[0];
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fault(uint32_t method)
{
	switch (method) {
	case 3:
		*(volatile int *)(uintptr_t)0 = 1;
		return 0;
	case 4: {
		volatile int zero = 0, one = 1;

		return one / zero;
	}
	case 5:
		return (int)recurse(0);
	}
	return -1;
}

int crashy_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	uint32_t m = REMOTE_SCALARS_METHOD(sc);

	switch (m) {
	case 0:
		pra[2].h64 = (remote_handle64)__atomic_add_fetch(&opens, 1, __ATOMIC_SEQ_CST);
		return 0;
	case 1:
		if (pra[0].h64 < MAX_OPENS)
			__atomic_add_fetch(&closes[pra[0].h64], 1, __ATOMIC_SEQ_CST);
		return 0;
	case 2:
		return 0;
	case 3:
	case 4:
	case 5:
		return fault(m);
	case 6: {
		volatile int32_t *flag;
		uint64_t addr;
		double end = now() + 10.0;

		if (pra[0].buf.nLen < 8)
			return 0x8000040e;
		memcpy(&addr, pra[0].buf.pv, 8);
		flag = (volatile int32_t *)(uintptr_t)addr;
		while (*flag == 0)
			if (now() > end)
				return 1;
		return 0;
	}
	case 7: {
		uint32_t s = 0;
		size_t i;

		if (pra[1].buf.nLen < 4)
			return 0x8000040e;
		for (i = 0; i < pra[0].buf.nLen; i++)
			s += ((const uint8_t *)pra[0].buf.pv)[i];
		memcpy(pra[1].buf.pv, &s, 4);
		return 0;
	}
	case 8:
		if (pra[0].buf.nLen < 8)
			return 0x8000040e;
		memcpy(pra[0].buf.pv, &h, 8);
		return 0;
	case 9: {
		double end = now() + 10.0;

		__atomic_add_fetch(&crashy_gated, 1, __ATOMIC_SEQ_CST);
		while (!__atomic_load_n(&crashy_gate, __ATOMIC_SEQ_CST))
			if (now() > end)
				return 1;
		return 0;
	}
	case 10:
		return 0x8000040e;
	}
	return 0x80000414;
}

int crashy_skel_invoke(uint32_t sc, remote_arg *pra)
{
	(void)pra;
	switch (REMOTE_SCALARS_METHOD(sc)) {
	case 2:
		return 0;
	case 3:
		return fault(3);
	}
	return 0x80000414;
}
