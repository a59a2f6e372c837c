/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataplane_loop.c - the C side of the dataplane benchmark (qdarpc_cli/benchmarks/dataplane.py):
 * one program timing a batch of remote_handle64_invoke on the qdarpc_test null method and a
 * batch of a real ioctl syscall (FIONREAD on a pipe). Each line read from stdin, "N_INV N_IO",
 * runs one round of those batch sizes (the Python side sizes them from the previous round) and
 * writes back one line: nanoseconds per call of each. The backend is the library's
 * (QDARPC_BACKEND in the environment).
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

int main(void)
{
	remote_handle64 h = 0;
	long n_inv, n_io, i;
	int fds[2], avail, rc;
	char line[64];

	rc = remote_handle64_open(URI, &h);
	if (rc || pipe(fds)) {
		printf("error 0x%x\n", (unsigned)rc);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		double t0, t1, t2;

		if (sscanf(line, "%ld %ld", &n_inv, &n_io) != 2 || n_inv < 1 || n_io < 1)
			return 4;
		t0 = now();
		for (i = 0; i < n_inv; i++)
			if (remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 0, 0), NULL))
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
