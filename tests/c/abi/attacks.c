/* Hostile uses of the C ABI that must end in a code, never a crash (docs/c_abi.md): pra[] and
 * buffers straddling an inaccessible page, unaligned pra, lengths that wrap the address space,
 * scalars with every count at its maximum, rpcmem used after free, calls from threads in their
 * TLS destructors; and the program's signal dispositions and handlers survive the interpreter.
 * One line per check, "<name> <value>". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "AEEStdErr.h"
#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN
#define SUM REMOTE_SCALARS_MAKE(2, 2, 1)

static remote_handle64 h;
static int32_t n4 = 4;
static int64_t out;

static void line(const char *name, long v)
{
	printf("%s %ld\n", name, v);
}

/* code and errno as one value: "<code hex>/<errno>" */
static void code(const char *name, int rc)
{
	printf("%s 0x%x/%d\n", name, (unsigned)rc, rc ? errno : 0);
	errno = 0;
}

static void set(remote_arg *pra, void *vec, size_t len)
{
	pra[0].buf.pv = &n4;
	pra[0].buf.nLen = sizeof(n4);
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = len;
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = sizeof(out);
}

/* -- calls from a thread that is exiting --------------------------------------------------- */
static pthread_key_t key;
static int dtor_ok;

static void dtor(void *p)
{
	remote_handle64 mine = 0;
	int32_t v[4] = { 1, 2, 3, 4 };
	int64_t sum = -1;	/* this thread's own (the four threads' calls overlap) */
	remote_arg pra[3];

	(void)p;
	set(pra, v, sizeof(v));
	pra[2].buf.pv = &sum;
	if (remote_handle64_open(CALC, &mine) == 0 && remote_handle64_invoke(mine, SUM, pra) == 0 && sum == 10 &&
	    remote_handle64_close(mine) == 0)
		__sync_fetch_and_add(&dtor_ok, 1);
}

static void *exiting(void *arg)
{
	pthread_setspecific(key, arg); /* the first call of this thread is in its destructor */
	return NULL;
}

/* -- signals ------------------------------------------------------------------------------- */
static volatile sig_atomic_t got_int, got_pipe;

static void on_int(int sig)
{
	(void)sig;
	got_int++;
}

static void on_pipe(int sig)
{
	(void)sig;
	got_pipe++;
}

int main(void)
{
	struct sigaction before[NSIG], now;
	long page = sysconf(_SC_PAGESIZE);
	char *pg, *edge;
	int32_t *vec;
	remote_arg pra[3], *p;
	int s, changed = 0, i, fds[2];
	pthread_t t[4];

	signal(SIGINT, on_int);
	signal(SIGPIPE, on_pipe);
	for (s = 1; s < NSIG; s++)
		sigaction(s, NULL, &before[s]);

	/* a page followed by an inaccessible one (kept reserved: no later mapping lands there) */
	pg = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mprotect(pg + page, (size_t)page, PROT_NONE);
	edge = pg + page;

	code("open", remote_handle64_open(CALC, &h));
	vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096);
	for (i = 0; i < 4; i++)
		vec[i] = i + 1;
	set(pra, vec, 16);
	code("ok", remote_handle64_invoke(h, SUM, pra));
	line("ok_out", (long)out);

	p = (remote_arg *)(void *)(edge - sizeof(remote_arg)); /* pra[1], pra[2] inaccessible */
	memcpy(p, pra, sizeof(remote_arg));
	code("pra_straddles_inaccessible", remote_handle64_invoke(h, SUM, p));
	p = (remote_arg *)(void *)(edge - 4 * sizeof(remote_arg) + 3); /* misaligned, all mapped */
	memcpy(p, pra, sizeof(pra));
	out = -1;
	code("pra_unaligned", remote_handle64_invoke(h, SUM, p));
	line("pra_unaligned_out", (long)out);
	set(pra, edge - 8, 16);
	code("buf_straddles_inaccessible", remote_handle64_invoke(h, SUM, pra));
	set(pra, vec + 2, (size_t)0 - 8); /* inside rpcmem, wrapping the address space */
	code("rpcmem_len_wraps", remote_handle64_invoke(h, SUM, pra));
	set(pra, vec, SIZE_MAX);
	code("rpcmem_len_size_max", remote_handle64_invoke(h, SUM, pra));
	set(pra, vec, 8192);
	code("rpcmem_overrun", remote_handle64_invoke(h, SUM, pra));
	set(pra, (void *)(uintptr_t)-16, 16);
	code("buf_top_of_memory", remote_handle64_invoke(h, SUM, pra));
	code("sc_max_counts_null_pra", remote_handle64_invoke(h, 0x1fffffff, NULL));
	/* 540 entries read from a 3-entry array: garbage the driver refuses, whatever its code */
	line("sc_max_counts_short_pra_fails", remote_handle64_invoke(h, 0x1fffffff, pra) != 0);
	set(pra, vec, 16);
	rpcmem_free(vec);
	code("rpcmem_use_after_free", remote_handle64_invoke(h, SUM, pra));
	rpcmem_free(vec);
	line("rpcmem_to_fd_after_free", rpcmem_to_fd(vec));
	code("close", remote_handle64_close(h));
	code("invoke_after_close", remote_handle64_invoke(h, SUM, pra));
	memcpy(edge - 5, "calcu", 5); /* a name running into the inaccessible page */
	code("name_straddles_inaccessible", remote_handle64_open(edge - 5, &h));

	pthread_key_create(&key, dtor);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, exiting, (void *)1);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	line("calls_in_tls_destructors", dtor_ok);

	/* the interpreter the library started installed no handler and changed no disposition */
	for (s = 1; s < NSIG; s++) {
		if (sigaction(s, NULL, &now) == 0 &&
		    (now.sa_handler != before[s].sa_handler || now.sa_flags != before[s].sa_flags)) {
			fprintf(stderr, "signal %d changed\n", s);
			changed++;
		}
	}
	line("signal_dispositions_changed", changed);
	raise(SIGINT);
	if (pipe(fds) == 0) {
		close(fds[0]);
		if (write(fds[1], "x", 1) < 0 && errno != EPIPE)
			got_pipe = -100;
		close(fds[1]);
	}
	line("sigint_handler_ran", got_int);
	line("sigpipe_handler_ran", got_pipe);
	puts("done");
	return 0;
}
