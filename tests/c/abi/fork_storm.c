/* fork() again and again while other threads allocate and free rpcmem and invoke: whatever
 * lock a thread of the parent held at the fork, each child allocates, opens, invokes and
 * closes on its own emulator (a hang is killed by alarm). Prints "bad children N".
 * Usage: fork_storm THREADS FORKS */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

static volatile int stop;

static int sum(remote_handle64 h, int32_t *v, int n)
{
	int64_t out = -1;
	remote_arg pra[3];

	pra[0].buf.pv = &n;
	pra[0].buf.nLen = sizeof(n);
	pra[1].buf.pv = v;
	pra[1].buf.nLen = sizeof(*v) * (size_t)n;
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = sizeof(out);
	return remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 2, 1), pra) ? -1 : (int)out;
}

static void *churn(void *arg)
{
	remote_handle64 h = 0;

	(void)arg;
	if (remote_handle64_open(CALC, &h))
		return NULL;
	while (!stop) {
		int32_t *v = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 64);

		if (v) {
			v[0] = 1;
			v[1] = 2;
			sum(h, v, 2);
			rpcmem_free(v);
		}
	}
	remote_handle64_close(h);
	return NULL;
}

static int child(void)
{
	remote_handle64 h = 0;
	int32_t *v;
	int ok;

	alarm(10);
	v = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 64);
	if (!v || remote_handle64_open(CALC, &h))
		return 1;
	v[0] = 3;
	v[1] = 4;
	ok = sum(h, v, 2) == 7;
	rpcmem_free(v);
	return ok && remote_handle64_close(h) == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4, forks = argc > 2 ? atoi(argv[2]) : 20, i, bad = 0;
	pthread_t *t = calloc((size_t)n, sizeof(*t));

	rpcmem_to_fd(NULL); /* the interpreter is up before the threads start */
	for (i = 0; i < n; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	usleep(20000);
	for (i = 0; i < forks; i++) {
		pid_t pid = fork();
		int st;

		if (pid == 0)
			_exit(child());
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
			bad++;
			fprintf(stderr, "child %d: status %#x\n", i, st);
		}
	}
	stop = 1;
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	free(t);
	printf("bad children %d\n", bad);
	return bad != 0;
}
