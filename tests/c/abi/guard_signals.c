/* A porter's program that changes its fault signals after the DSP runtime loaded (its first
 * native skel), then hands the library bad pointers and makes a skel fault: each must still end
 * in a code, with the program's own handler never run for it (tests/test_c_abi_attacks.py).
 *
 * guard_signals MODE: MODE is what the program does once a native calculator call went through
 *   reporter  a crash reporter's SIGSEGV/SIGBUS handler (reports and exits 97; not chaining)
 *   default   SIGSEGV/SIGBUS back to SIG_DFL
 *   blocked   SIGSEGV/SIGBUS blocked in the calling thread
 *   chain     a handler without SA_NODEFER that chains to the one it replaced (the guard's)
 * Then: a call whose in-buffer is on an inaccessible page ("bad"), a good call ("good", "sum"),
 * and, in mode chain, a fault in the crashy skel through the chaining handler ("crash": caught,
 * "segv_blocked_after": the mask of the thread the skel ran in, as before the fault). One line per check, "<name> <value>". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "AEEStdErr.h"
#include "remote.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN
#define CRASHY "file:///libcrashy_skel.so?crashy_skel_handle_invoke&_modver=1.0&_dom=cdsp"
#define SUM REMOTE_SCALARS_MAKE(2, 2, 1)
#define NULL_WRITE REMOTE_SCALARS_MAKE(3, 0, 0)

static struct sigaction replaced[2];
static const int sigs[2] = {SIGSEGV, SIGBUS};

static void reporter(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "crash reporter ran\n";

	(void)sig, (void)si, (void)uc;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(98);
	_exit(97);
}

/* What a crash reporter that plays well does: note the fault, hand it to the handler it
 * replaced. Runs with the signal blocked (no SA_NODEFER). */
static void chainer(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *old = &replaced[sig == SIGBUS];

	if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction != NULL)
		old->sa_sigaction(sig, si, uc);
	else
		reporter(sig, si, uc);
}

static void install(void (*fn)(int, siginfo_t *, void *))
{
	for (int i = 0; i < 2; i++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = fn;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, &replaced[i]);
	}
}

static void code(const char *name, int rc)
{
	printf("%s 0x%x/%d\n", name, (unsigned)rc, rc ? errno : 0);
	fflush(stdout);
	errno = 0;
}

static int sum(remote_handle64 h, const void *vec, size_t len, int64_t *out)
{
	int32_t n = (int32_t)(len / 4);
	remote_arg pra[3];

	pra[0].buf.pv = &n;
	pra[0].buf.nLen = sizeof(n);
	pra[1].buf.pv = (void *)vec;
	pra[1].buf.nLen = len;
	pra[2].buf.pv = out;
	pra[2].buf.nLen = sizeof(*out);
	return remote_handle64_invoke(h, SUM, pra);
}

/* Method 3 of the crashy skel: a NULL write. */
static void crash(const char *name, remote_handle64 *c)
{
	code(name, remote_handle64_invoke(*c, NULL_WRITE, NULL));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int32_t v[4] = {1, 2, 3, 4};
	int64_t out = 0;
	remote_handle64 h = 0, c = 0;
	long page = sysconf(_SC_PAGESIZE);
	char *mem;

	code("open", remote_handle64_open(CALC, &h));
	code("first", sum(h, v, sizeof(v), &out));  /* the runtime is loaded now */
	if (!strcmp(mode, "chain"))
		code("crashy", remote_handle64_open(CRASHY, &c));  /* (a module load puts the guard back) */
	if (!strcmp(mode, "reporter")) {
		install(reporter);
	} else if (!strcmp(mode, "chain")) {
		install(chainer);
	} else if (!strcmp(mode, "default")) {
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
	} else if (!strcmp(mode, "blocked")) {
		sigset_t s;

		sigemptyset(&s);
		sigaddset(&s, SIGSEGV);
		sigaddset(&s, SIGBUS);
		sigprocmask(SIG_BLOCK, &s, NULL);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || mprotect(mem + page, page, PROT_NONE))
		return 3;
	memcpy(mem + page - 8, v, 8);
	code("bad", sum(h, mem + page - 8, 16, &out));  /* 8 readable bytes, 8 on the next page */
	code("bad_out", sum(h, v, sizeof(v), (int64_t *)(mem + page)));
	out = 0;
	code("good", sum(h, v, sizeof(v), &out));
	printf("sum %lld\n", (long long)out);
	code("close", remote_handle64_close(h));
	if (!strcmp(mode, "chain")) {
		sigset_t m;

		crash("crash", &c);  /* through chainer, which runs with SIGSEGV blocked */
		sigprocmask(SIG_BLOCK, NULL, &m);
		printf("segv_blocked_after %d\n", sigismember(&m, SIGSEGV));
	}
	printf("done\n");
	return 0;
}
