/* fork() and exit() in a program using the C ABI with threads still calling: the child gets
 * its own emulator and works; the parent's threads are unaffected; exit() while threads are
 * inside a call is clean. Usage: fork_exit CHILDREN */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

static int call_max(remote_handle64 h, int n)
{
	int32_t *vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4 * n), out = -1;
	remote_arg pra[3];
	int i, rc;

	if (!vec)
		return -2;
	for (i = 0; i < n; i++)
		vec[i] = i;
	pra[0].buf.pv = &n;
	pra[0].buf.nLen = 4;
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = 4 * (size_t)n;
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = 4;
	rc = remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(3, 2, 1), pra);
	rpcmem_free(vec);
	return rc ? -1 : out;
}

static void *spinner(void *arg)
{
	remote_handle64 h = 0;

	(void)arg;
	if (remote_handle64_open(CALC, &h))
		return NULL;
	/* Runs until the process exits; once exit() has begun, calls may fail (sessions are
	 * torn down), but they never return a wrong result. */
	for (;;) {
		int got = call_max(h, 64);

		if (got >= 0 && got != 63) {
			fprintf(stderr, "spinner: got %d\n", got);
			_exit(3);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int children = argc > 1 ? atoi(argv[1]) : 4, i, bad = 0;
	remote_handle64 h = 0;
	pthread_t t[2];

	if (remote_handle64_open(CALC, &h) || call_max(h, 10) != 9)
		return 10;
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, spinner, NULL);
	for (i = 0; i < children; i++) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			remote_handle64 hc = 0;
			/* The parent's handle is not the child's (a fresh emulator)... */
			int stale = remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(3, 2, 1), NULL) == 0;
			/* ...but the child opens and calls its own. */
			if (stale || remote_handle64_open(CALC, &hc) || call_max(hc, 100) != 99 ||
			    remote_handle64_close(hc))
				_exit(1);
			exit(0);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			bad++;
	}
	if (call_max(h, 1000) != 999)
		bad += 100;
	printf("bad children %d\n", bad);
	fflush(stdout);
	exit(bad ? 1 : 0); /* with the spinners still inside calls */
}
