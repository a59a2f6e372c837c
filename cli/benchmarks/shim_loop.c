/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shim_loop.c - the C side of the shim benchmark (qdarpc_cli/benchmarks/shim.py): per round
 * (one line on stdin), time N open+close of a path the device shim does not own and N ioctls
 * on an fd it does not own, and write "ns-per-open ns-per-ioctl". Run once plain and once with
 * the shim preloaded: the shim must cost nothing measurable on what is not its own.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000, i;
	int fds[2], avail;
	char line[16];

	if (pipe(fds))
		return 1;
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		double t0 = now(), t1, t2;

		for (i = 0; i < n; i++)
			close(open("/dev/null", O_RDONLY | O_CLOEXEC));
		t1 = now();
		for (i = 0; i < n; i++)
			ioctl(fds[0], FIONREAD, &avail);
		t2 = now();
		printf("%.1f %.1f\n", (t1 - t0) / (double)n, (t2 - t1) / (double)n);
		fflush(stdout);
	}
	return 0;
}
