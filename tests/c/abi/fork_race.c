/* fork() while other threads make their first call (the library gives each a Python thread
 * state then): every child must come out of fork() and work. A child forked while a thread
 * state was being made used to inherit CPython's runtime lock held and hang inside fork().
 * With "tracemalloc", Python traces allocations (its raw allocator hook takes the GIL while a
 * thread state is made): fork() must not wait for that thread while holding the GIL.
 * Usage: fork_race ROUNDS [tracemalloc] */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN
#define THREADS 8

static void *open_close(void *arg)
{
	remote_handle64 h = 0;

	(void)arg;
	if (remote_handle64_open(CALC, &h) == 0)
		remote_handle64_close(h);
	return NULL;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100, i, k, bad = 0;
	remote_handle64 h = 0;

	if (remote_handle64_open(CALC, &h))
		return 10;
	if (argc > 2 && strcmp(argv[2], "tracemalloc") == 0) {
		/* the interpreter the library started: reach it as an embedding host would */
		int (*ensure)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
		void (*release)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "PyGILState_Release");
		int (*run)(const char *, void *) =
			(int (*)(const char *, void *))dlsym(RTLD_DEFAULT, "PyRun_SimpleStringFlags");
		int g;

		if (!ensure || !release || !run)
			return 12;
		g = ensure();
		k = run("import tracemalloc; tracemalloc.start()", NULL);
		release(g);
		if (k)
			return 13;
	}
	for (i = 0; i < rounds; i++) {
		pthread_t t[THREADS];
		int status;
		pid_t pid;

		for (k = 0; k < THREADS; k++)
			pthread_create(&t[k], NULL, open_close, NULL);
		usleep((useconds_t)(i % 50)); /* sweep fork() across the threads' first calls */
		pid = fork();
		if (pid == 0) {
			remote_handle64 hc = 0;

			_exit(remote_handle64_open(CALC, &hc) || remote_handle64_close(hc));
		}
		for (k = 0; k < THREADS; k++)
			pthread_join(t[k], NULL);
		if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			bad++;
	}
	printf("bad children %d\n", bad);
	return remote_handle64_close(h) ? 11 : 0;
}
