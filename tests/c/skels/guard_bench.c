/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * guard_bench - what the DSP runtime's crash guard costs per call: a null skel entry called
 * directly vs through qdarpc_dsp_call, N times each, three rounds.
 *
 *   cc -O2 -Icsrc/include -o guard_bench tests/c/skels/guard_bench.c tests/c/skels/crashy.c -ldl
 *   ./guard_bench qda_core/dsp/libqdarpc_dsprt.so [N]
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "qdarpc/remote_abi.h"

int crashy_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra);
typedef int (*dsp_call_fn)(void *, int, uint64_t, uint32_t, void *, int *);
typedef int (*handle_invoke_fn)(remote_handle64, uint32_t, remote_arg *);

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	void *rt;
	dsp_call_fn call;
	handle_invoke_fn volatile fn = crashy_skel_handle_invoke;  /* no inlining of the direct call */
	long n = argc > 2 ? atol(argv[2]) : 20000000;
	int sig = 0, rounds;
	volatile int acc = 0;
	double best = 1e9;

	if (argc < 2 || (rt = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) == NULL) {
		fprintf(stderr, "usage: %s libqdarpc_dsprt.so [N] (%s)\n", argv[0], dlerror());
		return 2;
	}
	*(void **)&call = dlsym(rt, "qdarpc_dsp_call");
	if (call == NULL)
		return 2;
	call((void *)fn, 1, 0, 2u << 24, NULL, &sig);  /* first call: handlers, alternate stack */
	for (rounds = 0; rounds < 3; rounds++) {
		double t0 = now_ns(), t1, t2;

		for (long i = 0; i < n; i++)
			acc += fn(0, 2u << 24, NULL);
		t1 = now_ns();
		for (long i = 0; i < n; i++)
			acc += call((void *)fn, 1, 0, 2u << 24, NULL, &sig);
		t2 = now_ns();
		printf("direct %.2f ns/call, guarded %.2f ns/call\n", (t1 - t0) / n, (t2 - t1) / n);
		if ((t2 - t1 - (t1 - t0)) / n < best)
			best = (t2 - t1 - (t1 - t0)) / n;
	}
	printf("guard cost %.2f ns/call\n", best);
	return acc != 0 || sig != 0;
}
