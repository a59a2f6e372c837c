/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_dsprt.c - the DSP runtime's crash guard against the rest of the process's signals
 * (built with dsprt.c itself, so it can reach the handler chain): a SIGSEGV someone sends the
 * thread is not a copy fault, a fault that reaches the guard through a handler that blocked
 * the signal leaves the thread's mask as it was, qdarpc_guard_armed() says when a copy could
 * not catch its fault, and a guarded copy goes forwards byte by byte like the kernel's.
 */
#undef _GNU_SOURCE	/* (dsprt.c defines it) */
#include "../dsprt/dsprt.c"

#include <sys/mman.h>

static int failures;

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                     \
		}                                                                       \
	} while (0)

static volatile int chained;

static void recorder(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si, (void)uc;
	chained++;
}

/* The handler a program installs after the runtime: no SA_NODEFER (the signal is blocked while
 * it runs), hands the fault to the guard's handler it replaced. */
static struct sigaction guards[2];

static void chainer(int sig, siginfo_t *si, void *uc)
{
	guards[sig == SIGBUS].sa_sigaction(sig, si, uc);
}

static void put(void (*fn)(int, siginfo_t *, void *), struct sigaction *old)
{
	static const int sigs[2] = {SIGSEGV, SIGBUS};

	for (int i = 0; i < 2; i++) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = fn;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, old ? &old[i] : NULL);
	}
}

static void restore(const struct sigaction *old)
{
	sigaction(SIGSEGV, &old[0], NULL);
	sigaction(SIGBUS, &old[1], NULL);
}

static int blocked(int sig)
{
	sigset_t m;

	pthread_sigmask(SIG_BLOCK, NULL, &m);
	return sigismember(&m, sig);
}

static char *bad_page(void)
{
	char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* pthread_kill(self, SIGSEGV) while a guard of `kind` is active: does it jump? */
static int tkill_jumps(int kernel_only)
{
	struct guard g;
	volatile int jumped = 0;

	g.signo = 0;
	g.kernel_only = kernel_only;
	g.has_mask = 0;
	if (sigsetjmp(g.jb, 0) != 0) {
		restore_mask(&g);
		jumped = 1;
	} else {
		active = &g;
		pthread_kill(pthread_self(), SIGSEGV);  /* delivered before it returns */
		active = NULL;
	}
	return jumped;
}

static void test_sent_sigsegv_is_not_a_copy_fault(void)
{
	struct sigaction saved;
	int live;

	CHECK(qdarpc_dsprt_ensure() >= 0);
	live = __atomic_load_n(&previous_live, __ATOMIC_ACQUIRE);
	saved = previous[live][0];
	memset(&previous[live][0], 0, sizeof(previous[live][0]));
	previous[live][0].sa_sigaction = recorder;
	previous[live][0].sa_flags = SA_SIGINFO;
	chained = 0;
	CHECK(tkill_jumps(1) == 0);	/* a copy: the sent signal goes where it would have */
	CHECK(chained == 1);
	CHECK(tkill_jumps(0) == 1);	/* a skel call: its own raise() is the skel's fault */
	CHECK(chained == 1);
	previous[live][0] = saved;
}

static int bad_write(uint32_t sc, remote_arg *pra)
{
	(void)sc;
	*(volatile int *)pra = 1;	/* pra is an inaccessible page */
	return 0;
}

static void test_mask_after_a_fault_through_a_chaining_handler(void)
{
	char *bad = bad_page(), dst[16];
	int signo = 0;

	CHECK(bad != NULL);
	CHECK(qdarpc_dsprt_ensure() >= 0);
	put(chainer, guards);
	CHECK(qdarpc_guard_armed() == 0);	/* someone else's handler is first: copies must not */
	CHECK(qdarpc_guarded_copy(dst, bad, sizeof(dst)) == -EFAULT);
	CHECK(!blocked(SIGSEGV));
	CHECK(qdarpc_dsp_call((void *)bad_write, 0, 0, 0, bad, &signo) == QDARPC_DSP_CALL_FAULTED);
	CHECK(signo == SIGSEGV);
	CHECK(!blocked(SIGSEGV));
	restore(guards);
	CHECK(qdarpc_guard_armed() == 1);
	munmap(bad, 4096);
}

static void test_armed(void)
{
	struct sigaction old[2];
	sigset_t s;

	CHECK(qdarpc_dsprt_ensure() >= 0);
	CHECK(qdarpc_guard_armed() == 1);
	put(recorder, old);
	CHECK(qdarpc_guard_armed() == 0);
	restore(old);
	CHECK(qdarpc_guard_armed() == 1);
	signal(SIGBUS, SIG_DFL);
	CHECK(qdarpc_guard_armed() == 0);
	CHECK(qdarpc_dsprt_ensure() == 1);	/* put back (chaining to SIG_DFL) */
	CHECK(qdarpc_guard_armed() == 1);
	sigemptyset(&s);
	sigaddset(&s, SIGBUS);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	CHECK(qdarpc_guard_armed() == 0);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	CHECK(qdarpc_guard_armed() == 1);
}

static void test_copies_go_forwards(void)
{
	unsigned char buf[512], want[512];

	for (int d = -80; d <= 80; d++) {
		for (int n = 0; n <= 200; n += 7) {
			for (int i = 0; i < 512; i++)
				buf[i] = want[i] = (unsigned char)(i * 7 + 3);
			for (int i = 0; i < n; i++)	/* the reference: byte by byte, forwards */
				want[200 + d + i] = want[200 + i];
			CHECK(qdarpc_guarded_copy(buf + 200 + d, buf + 200, (size_t)n) == 0);
			if (memcmp(buf, want, sizeof(buf)) != 0) {
				fprintf(stderr, "overlap d=%d n=%d differs\n", d, n);
				failures++;
				return;
			}
		}
	}
}

static void test_fault_stops_at_the_bad_page(void)
{
	char *m = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char dst[200];

	CHECK(m != MAP_FAILED);
	memset(m, 'a', 4096);
	CHECK(mprotect(m + 4096, 4096, PROT_NONE) == 0);
	memset(dst, 'z', sizeof(dst));
	CHECK(qdarpc_guarded_copy(dst, m + 4096 - 100, sizeof(dst)) == -EFAULT);
	CHECK(memchr(dst, 'z', 100) == NULL && dst[100] == 'z');	/* exactly the good prefix */
	CHECK(!blocked(SIGSEGV));
	munmap(m, 2 * 4096);
}

int main(void)
{
	char a = 1, b = 0;

	/* the handlers and this thread's alternate stack, as the runtime's load and its first
	 * guarded copy leave them (a thread's first one installs them if nobody did) */
	CHECK(qdarpc_dsprt_ensure() >= 0);
	CHECK(qdarpc_guarded_copy(&b, &a, 1) == 0 && b == 1);
	test_sent_sigsegv_is_not_a_copy_fault();
	test_mask_after_a_fault_through_a_chaining_handler();
	test_armed();
	test_copies_go_forwards();
	test_fault_stops_at_the_bad_page();
	if (failures) {
		fprintf(stderr, "test_dsprt: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_dsprt: ok\n");
	return 0;
}
