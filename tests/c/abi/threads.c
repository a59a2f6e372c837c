/* Many C threads on the C ABI at once: each opens the calculator, invokes sum on an rpcmem
 * vector (by reference) and on a stack vector (copied), and closes, ITERS times; one shared
 * handle stays open meanwhile in half of the rounds. Prints "failures N" and exits non-zero
 * on any wrong result. Usage: threads NTHREADS ITERS */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN
#define N 256

static int iters;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int rc)
{
	pthread_mutex_lock(&lock);
	failures++;
	fprintf(stderr, "%s: 0x%x\n", what, (unsigned)rc);
	pthread_mutex_unlock(&lock);
}

static int64_t sum(remote_handle64 h, int32_t *vec, int n)
{
	int64_t out = -1;
	remote_arg pra[3];
	int rc;

	pra[0].buf.pv = &n;
	pra[0].buf.nLen = sizeof(n);
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = sizeof(*vec) * (size_t)n;
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = sizeof(out);
	rc = remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 2, 1), pra);
	if (rc)
		fail("invoke", rc);
	return out;
}

static void *worker(void *arg)
{
	int32_t local[N], *shared = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, sizeof(local));
	int i, k, seed = (int)(intptr_t)arg;

	if (!shared) {
		fail("rpcmem_alloc", 0);
		return NULL;
	}
	for (k = 0; k < iters; k++) {
		remote_handle64 h = 0;
		int64_t want = 0;
		int rc = remote_handle64_open(CALC, &h);

		if (rc) {
			fail("open", rc);
			continue;
		}
		for (i = 0; i < N; i++) {
			local[i] = shared[i] = seed + i + k;
			want += seed + i + k;
		}
		if (sum(h, local, N) != want || sum(h, shared, N) != want)
			fail("wrong sum", 0);
		rc = remote_handle64_close(h);
		if (rc)
			fail("close", rc);
	}
	rpcmem_free(shared);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 8, i;
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	remote_handle64 keep = 0;

	iters = argc > 2 ? atoi(argv[2]) : 20;
	for (int round = 0; round < 2; round++) {
		if (round == 1 && remote_handle64_open(CALC, &keep))
			fail("open keep", 0);
		for (i = 0; i < n; i++)
			pthread_create(&t[i], NULL, worker, (void *)(intptr_t)(i * 1000));
		for (i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		if (keep && remote_handle64_close(keep))
			fail("close keep", 0);
	}
	free(t);
	printf("failures %d\n", failures);
	return failures != 0;
}
