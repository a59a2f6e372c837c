/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * c_abi_loop.c - the C side of the c_abi and dataplane benchmarks (qdarpc_cli/benchmarks/): a C
 * program timing batches of remote_handle64_invoke on a null method and of a real ioctl
 * syscall (FIONREAD on a pipe), one round per line read from stdin, one line of results
 * (nanoseconds per call) written back, so the Python side can interleave its own batches.
 * A line "N_INV N_IO" sets that round's batch sizes (the caller sizes them from the last
 * round); any other line keeps the sizes given as arguments. Arguments: N_INV N_IO [URI [IN
 * OUT]]: the module whose method 2, a null method, is timed (default qdarpc_test's, a Python
 * skel), with IN in- and OUT out-buffers of 8 bytes each (default none; at most 8 each).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

#define URI "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n_inv = argc > 1 ? atol(argv[1]) : 1000, n_io = argc > 2 ? atol(argv[2]) : 100000, i;
	const char *uri = argc > 3 ? argv[3] : URI;
	int nin = argc > 4 ? atoi(argv[4]) : 0, nout = argc > 5 ? atoi(argv[5]) : 0;
	remote_handle64 h = 0;
	int fds[2], avail, rc;
	char line[64];
	uint64_t bufs[16] = {0};
	remote_arg pra[16];
	uint32_t sc;

	if (nin < 0 || nin > 8 || nout < 0 || nout > 8)
		return 5;
	for (int k = 0; k < nin + nout; k++) {
		pra[k].buf.pv = &bufs[k];
		pra[k].buf.nLen = sizeof(bufs[k]);
	}
	sc = REMOTE_SCALARS_MAKE(2, nin, nout);

	rc = remote_handle64_open(uri, &h);
	if (rc || pipe(fds)) {
		printf("error 0x%x\n", (unsigned)rc);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		double t0, t1, t2;
		long a, b;

		if (sscanf(line, "%ld %ld", &a, &b) == 2) {
			if (a < 1 || b < 1)
				return 4;
			n_inv = a;
			n_io = b;
		}
		t0 = now();
		for (i = 0; i < n_inv; i++)
			if (remote_handle64_invoke(h, sc, nin + nout ? pra : NULL))
				return 2;
		t1 = now();
		for (i = 0; i < n_io; i++)
			ioctl(fds[0], FIONREAD, &avail);
		t2 = now();
		printf("%.1f %.1f\n", (t1 - t0) / (double)n_inv, (t2 - t1) / (double)n_io);
		fflush(stdout);
	}
	return remote_handle64_close(h) ? 3 : 0;
}
