/* A program whose own exit handler - registered before the library's first call, so it runs
 * after the library's - stops and joins worker threads that are calling the library (as a
 * thread pool's destructor does). Exit must finish: the workers' calls end, later ones answer
 * AEE_ECONNREFUSED. Prints "joined <calls after exit began that were refused>" from the handler. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "AEEStdErr.h"
#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN
#define WORKERS 3

static volatile int stop;
static pthread_t t[WORKERS];
static int refused[WORKERS];

static void *worker(void *arg)
{
	int i = (int)(long)arg;
	remote_handle64 h = 0;

	if (remote_handle64_open(CALC, &h))
		return NULL;
	while (!stop) {
		void *p = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 64);

		if (p)
			rpcmem_free(p);
	}
	refused[i] = remote_handle64_close(h) == AEE_ECONNREFUSED;
	return NULL;
}

static void join_workers(void)
{
	int i, n = 0;

	stop = 1;
	for (i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < WORKERS; i++)
		n += refused[i];
	printf("joined %d\n", n);
	fflush(stdout);
}

int main(void)
{
	long i;

	atexit(join_workers);
	rpcmem_to_fd(NULL); /* starts the interpreter: its exit hook runs before join_workers */
	for (i = 0; i < WORKERS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	usleep(50000);
	return 0;
}
