/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dsprt.c - the emulated DSP's runtime: the crash-guarded skel call and FARF (see dsprt.h).
 *
 * Design notes (measured on the reference machine, see tests/test_native_skels.py):
 *  - handlers are installed once per process: a per-call sigaction save/restore is not thread
 *    safe (two threads' calls interleave their restores) and costs two syscalls;
 *  - sigsetjmp(jb, 0) does not save the signal mask (no syscall): our handlers run with
 *    SA_NODEFER, so the fault's signal is not blocked when we jump out of the handler; a handler
 *    that chains to ours may have blocked it, so the landing restores the faulting context's
 *    mask (one syscall, on the fault path: without it the next fault in that thread is fatal);
 *  - a guarded user copy is only as safe as the handlers that are installed when it runs:
 *    qdarpc_guard_armed() looks (three syscalls), and the emulated kernel's copies look once per
 *    user-copy scope (qda_uaccess_begin) and again after skel code ran (qda_uaccess_recheck),
 *    taking the syscalls while someone else's handler is in;
 *  - without an alternate signal stack a stack overflow has nowhere to run the handler and the
 *    kernel kills the process;
 *  - Python's faulthandler.enable() replaces our handlers; qdarpc_dsprt_ensure() (run for every
 *    native module the DSP opens) puts them back, chaining to faulthandler.
 *
 * Thread-locals use the initial-exec model: the handler reads them, and a dynamic TLS access can
 * allocate, which a signal handler must not.
 */
#define _GNU_SOURCE
#define QDARPC_DSPRT_BUILD
#include "dsprt.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "HAP_farf.h"
#include "qdarpc/remote_abi.h"

#define API __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))

/* The signals a skel fault raises, and the handler each had before ours (double-buffered:
 * qdarpc_dsprt_ensure writes the idle copy and publishes it, a handler reads the live one). */
static const int guarded_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#define NSIG_GUARDED ((int)(sizeof(guarded_signals) / sizeof(guarded_signals[0])))
static struct sigaction previous[2][NSIG_GUARDED];
static int previous_live;                  /* index into previous[], atomic */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t altstack_key;
static int altstack_key_ok;

/* 64 KiB: our handler needs little, but a chained handler (faulthandler dumping tracebacks)
 * runs on this stack too. */
#define ALTSTACK_SIZE (64 * 1024)

struct guard {
	sigjmp_buf jb;
	volatile int signo;
	volatile int code;
	void *volatile addr;
	int kernel_only;	/* catch only faults the kernel raised (a copy), not raise() (a skel) */
	volatile int has_mask;	/* mask: the thread's signal mask when the fault hit */
	sigset_t mask;
};

static TLS struct guard *volatile active;   /* set only while skel code runs in this thread */
static TLS int chaining;                     /* inside a chained handler (loop breaker) */
static TLS int thread_ready;                 /* alternate stack checked for this thread */
static TLS int last_signo, last_code;
static TLS int call_signo;                   /* the fault of this thread's latest call, 0: none */
static TLS uint64_t last_addr;

static qdarpc_dsprt_log_fn log_cb;           /* atomic */

static void on_fault(int sig, siginfo_t *si, void *uc);

static int slot_of(int sig)
{
	for (int i = 0; i < NSIG_GUARDED; i++)
		if (guarded_signals[i] == sig)
			return i;
	return -1;
}

static int is_ours(const struct sigaction *sa)
{
	return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_fault;
}

static void reset_default(int sig)
{
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
}

/* The default action for `sig`, now: for a fault the kernel raised, returning re-executes the
 * faulting instruction under it (the core dump shows the real place); anything else is raised. */
static void die_by_default(int sig, const siginfo_t *si)
{
	reset_default(sig);
	if (si == NULL || si->si_code <= 0)
		raise(sig);
}

/* A fault that is not a skel's: do what the handler before ours would have done. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	int i = slot_of(sig);
	const struct sigaction *old;

	if (i < 0 || chaining) {
		/* A chained handler raised the signal again and it came back to us (faulthandler
		 * re-raises after restoring what it replaced, which may be us): end it. */
		die_by_default(sig, si);
		return;
	}
	old = &previous[__atomic_load_n(&previous_live, __ATOMIC_ACQUIRE)][i];
	if (old->sa_flags & SA_SIGINFO) {
		if (old->sa_sigaction == NULL || old->sa_sigaction == on_fault) {
			die_by_default(sig, si);
			return;
		}
		if (old->sa_flags & SA_RESETHAND)
			reset_default(sig);
		chaining = 1;
		old->sa_sigaction(sig, si, uc);
		chaining = 0;
		return;
	}
	if (old->sa_handler == SIG_IGN) {
		if (si != NULL && si->si_code > 0)
			die_by_default(sig, si);  /* the kernel does not let a fault be ignored */
		return;
	}
	if (old->sa_handler == SIG_DFL) {
		die_by_default(sig, si);
		return;
	}
	if (old->sa_flags & SA_RESETHAND)
		reset_default(sig);
	chaining = 1;
	old->sa_handler(sig);
	chaining = 0;
}

/* Raised for this thread by the kernel (a fault) or by the process itself (raise()): a skel's
 * own doing. kill() and sigqueue() from anywhere are not. */
static int synchronous(const siginfo_t *si)
{
	return si != NULL && (si->si_code > 0 || (si->si_code == SI_TKILL && si->si_pid == getpid()));
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	struct guard *g = active;

	if (g != NULL && (g->kernel_only ? si != NULL && si->si_code > 0 : synchronous(si))) {
		active = NULL;
		g->signo = sig;
		g->code = si->si_code;
		g->addr = si->si_addr;
		if (uc != NULL) {
			/* a handler that chained to us may have run with the signal blocked: the
			 * landing puts back the mask of the faulting context (see restore_mask) */
			g->mask = ((ucontext_t *)uc)->uc_sigmask;
			g->has_mask = 1;
		}
		siglongjmp(g->jb, 1);
	}
	chain(sig, si, uc);
}

/* Install our handler for every guarded signal it is not installed for; the replaced handler
 * becomes the chain target. Returns how many were installed, -1 on error. */
static int install(void)
{
	int n = 0, rc = 0;

	pthread_mutex_lock(&install_lock);
	int live = __atomic_load_n(&previous_live, __ATOMIC_ACQUIRE);
	int idle = 1 - live;
	struct sigaction cur[NSIG_GUARDED];

	memcpy(previous[idle], previous[live], sizeof(previous[idle]));
	for (int i = 0; i < NSIG_GUARDED; i++) {
		if (sigaction(guarded_signals[i], NULL, &cur[i]) != 0) {
			rc = -1;
			goto out;
		}
		if (!is_ours(&cur[i])) {
			previous[idle][i] = cur[i];
			n++;
		}
	}
	if (n == 0)
		goto out;
	__atomic_store_n(&previous_live, idle, __ATOMIC_RELEASE);
	for (int i = 0; i < NSIG_GUARDED; i++) {
		struct sigaction sa;

		if (is_ours(&cur[i]))
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_fault;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		if (sigaction(guarded_signals[i], &sa, NULL) != 0)
			rc = -1;
	}
out:
	pthread_mutex_unlock(&install_lock);
	return rc ? rc : n;
}

static void free_altstack(void *mem)
{
	stack_t cur;

	if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem && !(cur.ss_flags & SS_DISABLE)) {
		stack_t off;

		memset(&off, 0, sizeof(off));
		off.ss_flags = SS_DISABLE;
		if (sigaltstack(&off, NULL) != 0)
			return;  /* still in use: leak it rather than free a live stack */
	}
	free(mem);
}

static void make_key(void)
{
	altstack_key_ok = pthread_key_create(&altstack_key, free_altstack) == 0;
}

static void install_first(void)
{
	pthread_once(&key_once, make_key);
	install();
}

/* First guarded call of a thread: handlers installed, an alternate signal stack in place. */
static void prepare_thread(void)
{
	stack_t cur;

	pthread_once(&install_once, install_first);
	thread_ready = 1;
	if (sigaltstack(NULL, &cur) != 0)
		return;
	if (!(cur.ss_flags & SS_DISABLE) && cur.ss_size >= (size_t)MINSIGSTKSZ)
		return;  /* the thread has one (Python's faulthandler gives the main thread one) */
	if (!altstack_key_ok)
		return;
	void *mem = malloc(ALTSTACK_SIZE);
	if (mem == NULL)
		return;
	stack_t ss;

	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = mem;
	ss.ss_size = ALTSTACK_SIZE;
	if (sigaltstack(&ss, NULL) != 0 || pthread_setspecific(altstack_key, mem) != 0) {
		free_altstack(mem);
		return;
	}
}

/* After a jump out of the handler. sigsetjmp(jb, 0) keeps no mask, and SA_NODEFER leaves ours
 * unblocked; but a handler installed after ours that chains to it runs with the signal blocked
 * (no SA_NODEFER), and jumping out of it would leave the signal blocked in this thread: the next
 * fault would kill the process. One syscall, on the fault path only. */
static void restore_mask(const struct guard *g)
{
	sigset_t s;

	if (g->has_mask) {
		pthread_sigmask(SIG_SETMASK, &g->mask, NULL);
		return;
	}
	sigemptyset(&s);
	sigaddset(&s, g->signo);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

typedef int (*handle_invoke_fn)(remote_handle64, uint32_t, remote_arg *);
typedef int (*invoke_fn)(uint32_t, remote_arg *);

API int qdarpc_dsp_call(void *fn, int handle_style, uint64_t h64, uint32_t sc, void *pra, int *signo)
{
	struct guard g;
	int rv;

	if (!thread_ready)
		prepare_thread();
	chaining = 0;
	call_signo = 0;
	g.signo = 0;
	g.kernel_only = 0;
	g.has_mask = 0;
	if (sigsetjmp(g.jb, 0) != 0) {
		active = NULL;
		restore_mask(&g);
		call_signo = g.signo;
		last_signo = g.signo;
		last_code = g.code;
		last_addr = (uint64_t)(uintptr_t)g.addr;
		if (signo != NULL)
			*signo = g.signo;
		return QDARPC_DSP_CALL_FAULTED;
	}
	active = &g;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (handle_style)
		rv = ((handle_invoke_fn)fn)(h64, sc, (remote_arg *)pra);
	else
		rv = ((invoke_fn)fn)(sc, (remote_arg *)pra);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	active = NULL;
	if (signo != NULL)
		*signo = 0;
	return rv;
}

/* The copy itself, out of the sanitizers' sight (a fault in it is expected, and caught).
 * Always forwards, byte order as the kernel's copy_user and process_vm_readv/writev go (an
 * overlapping pair of ranges then reads bytes it already wrote, as the syscalls do), and never
 * a libc call: a sanitizer intercepts those and checks the ranges itself. */
__attribute__((no_sanitize_address, noinline)) static void raw_copy(void *dst, const void *src, size_t n)
{
#if defined(__x86_64__)
	/* what the kernel's copy_user uses with ERMS; a fault stops it where it is */
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
#else
	volatile char *d = dst;
	const volatile char *s = src;

	while (n--)
		*d++ = *s++;
#endif
}

/* One guarded copy: 0, or -EFAULT after a fault (then an unspecified part of it is done). Only
 * a fault the kernel raises counts: a SIGSEGV someone sends this thread (pthread_kill, tgkill)
 * meanwhile goes where it would without the guard. */
static int guarded_once(void *dst, const void *src, size_t n)
{
	struct guard g;
	struct guard *volatile prev = active;

	g.signo = 0;
	g.kernel_only = 1;
	g.has_mask = 0;
	if (sigsetjmp(g.jb, 0) != 0) {
		active = prev;
		restore_mask(&g);
		return -EFAULT;
	}
	active = &g;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	raw_copy(dst, src, n);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	active = prev;
	return 0;
}

#define COPY_CHUNK 4096u	/* the smallest page: a chunk never spans two pages of either side */

API int qdarpc_guarded_copy(void *dst, const void *src, size_t n)
{
	char *d = dst;
	const char *s = src;

	if (n == 0)
		return 0;
	if (!thread_ready)
		prepare_thread();
	if (guarded_once(dst, src, n) == 0)
		return 0;
	/* A fault: again page by page, so that exactly the bytes before the first bad page of
	 * either side are copied (what the kernel's copy_user fixup and process_vm_writev leave;
	 * a fast string copy may stop short of the fault). A chunk on a bad page faults on its
	 * first access, so it writes nothing. */
	while (n) {
		size_t a = COPY_CHUNK - ((uintptr_t)d & (COPY_CHUNK - 1));
		size_t b = COPY_CHUNK - ((uintptr_t)s & (COPY_CHUNK - 1));
		size_t k = a < b ? a : b;

		if (k > n)
			k = n;
		if (guarded_once(d, s, k))
			return -EFAULT;
		d += k;
		s += k;
		n -= k;
	}
	return 0;	/* (the fault was transient: the memory is there now) */
}

API int qdarpc_guard_armed(void)
{
	static const int copy_signals[] = {SIGSEGV, SIGBUS};
	struct sigaction sa;
	sigset_t blocked;

	if (!thread_ready)
		prepare_thread();
	/* a blocked fault signal is not delivered: the kernel resets it to the default and kills */
	if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
		return 0;
	for (int i = 0; i < 2; i++)
		if (sigismember(&blocked, copy_signals[i]) || sigaction(copy_signals[i], NULL, &sa) != 0 ||
		    !is_ours(&sa))
			return 0;
	return 1;
}

API int qdarpc_dsprt_last_fault(uint64_t *addr, int *code)
{
	if (addr != NULL)
		*addr = last_addr;
	if (code != NULL)
		*code = last_code;
	return last_signo;
}

API int qdarpc_dsprt_call_fault(uint64_t *addr, int *code)
{
	return call_signo ? qdarpc_dsprt_last_fault(addr, code) : 0;
}

API int qdarpc_dsprt_ensure(void)
{
	pthread_once(&key_once, make_key);
	return install();
}

API void qdarpc_dsprt_set_log(qdarpc_dsprt_log_fn cb)
{
	__atomic_store_n(&log_cb, cb, __ATOMIC_RELEASE);
}

/* -- FARF ----------------------------------------------------------------------------------- */
#define FARF_BUF 1024

static void emit(int level, const char *file, int line, const char *text)
{
	qdarpc_dsprt_log_fn cb = __atomic_load_n(&log_cb, __ATOMIC_ACQUIRE);
	struct guard *g = active;

	active = NULL;  /* the logger is host code: a fault in it is not the skel's */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (cb != NULL)
		cb(level, file != NULL ? file : "", line, text);
	else
		fprintf(stderr, "FARF %d %s:%d: %s\n", level, file != NULL ? file : "", line, text);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	active = g;
}

static void vemit(int level, const char *file, int line, const char *format, va_list ap)
{
	char buf[FARF_BUF];
	int saved = errno;

	if (format == NULL)
		format = "(null)";
	vsnprintf(buf, sizeof(buf), format, ap);
	emit(level, file, line, buf);
	errno = saved;
}

API void HAP_debug_v2(int level, const char *file, int line, const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	vemit(level, file, line, format, ap);
	va_end(ap);
}

API void HAP_debug_runtime(int level, const char *file, int line, const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	vemit(level | HAP_LEVEL_RUNTIME, file, line, format, ap);
	va_end(ap);
}

API void HAP_debug(const char *msg, int level, const char *filename, int line)
{
	int saved = errno;

	emit(level, filename, line, msg != NULL ? msg : "(null)");
	errno = saved;
}
