/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * uaccess.c - copies to/from raw addresses of our own process that return -EFAULT on a bad
 * pointer instead of crashing (see uaccess.h): memcpy() for ranges the calling thread pinned
 * as known-valid, process_vm_readv/writev (or a private pipe, for batches) for the rest.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* process_vm_readv/writev; setup.py does not pass -D_GNU_SOURCE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qdarpc/uaccess.h"

/* process_vm_* are limited to MAX_RW_COUNT per call; stay far below it. */
#define PVM_CHUNK ((size_t)1 << 30)

static int range_wraps(uint64_t uaddr, size_t len)
{
	return len && (uint64_t)len - 1 > UINT64_MAX - uaddr;
}

/*
 * Known-valid ranges of the calling thread (see qda_uaccess_pin()). Thread-local: a range is
 * valid only while the call that pinned it runs, and only that call's thread may rely on it.
 * A stack, so nested calls pop what they pushed.
 */
struct pin {
	uint64_t start, end;
	int writable;
};

static __thread struct pin pins[QDA_UACCESS_PINS_MAX];
static __thread size_t npins;

/* Copy counters: relaxed atomics, read only by tests and benchmarks. */
static unsigned long long stat_memcpy, stat_checked, stat_guarded;

static void count(unsigned long long *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

/* The copier for ranges nobody pinned (qda_uaccess_set_guarded) and its readiness check, or
 * NULL: acquire/release (set: armed before fn; cleared: fn first). */
static qda_guarded_copy_fn guarded;
static qda_guard_armed_fn guard_armed;
static unsigned long long stat_checks, stat_refused;

/* The calling thread's user-copy scopes (qda_uaccess_begin) and, inside one, the verdict of
 * guard_armed for it: 0 not asked yet, 1 armed, -1 not. The DSP's side drops it around every
 * call of skel code (qda_uaccess_recheck), so a call's copies back, and any copy skel code
 * makes itself, ask again. */
static __thread unsigned scope_depth;
static __thread signed char verdict;

void qda_uaccess_set_guarded(qda_guarded_copy_fn fn, qda_guard_armed_fn armed)
{
	__atomic_store_n(&guarded, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&guard_armed, armed, __ATOMIC_RELEASE);
	__atomic_store_n(&guarded, fn, __ATOMIC_RELEASE);
}

unsigned long long qda_uaccess_guarded_count(void)
{
	return __atomic_load_n(&stat_guarded, __ATOMIC_RELAXED);
}

unsigned long long qda_uaccess_guard_checks(unsigned long long *refused)
{
	if (refused)
		*refused = __atomic_load_n(&stat_refused, __ATOMIC_RELAXED);
	return __atomic_load_n(&stat_checks, __ATOMIC_RELAXED);
}

/* The guarded copier if one is set and it can catch a fault in this thread now, else NULL. */
static qda_guarded_copy_fn guarded_copier(void)
{
	qda_guarded_copy_fn fn = __atomic_load_n(&guarded, __ATOMIC_ACQUIRE);

	if (fn == NULL)
		return NULL;
	if (verdict == 0 || scope_depth == 0) {
		qda_guard_armed_fn armed = __atomic_load_n(&guard_armed, __ATOMIC_ACQUIRE);

		verdict = armed == NULL || armed() ? 1 : -1;
		if (armed != NULL) {
			count(&stat_checks);
			if (verdict < 0)
				count(&stat_refused);
		}
	}
	return verdict > 0 ? fn : NULL;
}

/* Through the guarded copier, if it can be used: 1 and *rc (0 or -EFAULT), else 0. */
static int try_guarded(void *dst, const void *src, size_t len, int *rc)
{
	qda_guarded_copy_fn fn = guarded_copier();

	if (fn == NULL)
		return 0;
	count(&stat_checked);
	count(&stat_guarded);
	*rc = fn(dst, src, len) ? -EFAULT : 0;
	return 1;
}

size_t qda_uaccess_begin(void)
{
	if (scope_depth++ == 0)
		verdict = 0;
	return npins;
}

void qda_uaccess_recheck(void)
{
	verdict = 0;
}

void qda_uaccess_end(size_t mark)
{
	qda_uaccess_unpin(mark);
	if (scope_depth > 0 && --scope_depth == 0)
		verdict = 0;
}

size_t qda_uaccess_pin_mark(void)
{
	return npins;
}

int qda_uaccess_pin(const void *base, size_t len, int writable)
{
	uint64_t start = (uint64_t)(uintptr_t)base;

	if (!len)
		return 0;
	if (range_wraps(start, len))
		return -EINVAL;
	if (npins == QDA_UACCESS_PINS_MAX)
		return -ENOSPC;	/* not pinned: its copies take the checked path */
	pins[npins].start = start;
	pins[npins].end = start + (uint64_t)(len - 1);
	pins[npins].writable = writable;
	npins++;
	return 0;
}

void qda_uaccess_unpin(size_t mark)
{
	if (mark < npins)
		npins = mark;
}

int qda_uaccess_pinned(uint64_t uaddr, size_t len, int write)
{
	uint64_t last;
	size_t i;

	if (!len || range_wraps(uaddr, len))
		return 0;
	last = uaddr + (uint64_t)(len - 1);
	/* newest first: the innermost call's buffers are the likeliest */
	for (i = npins; i-- > 0;) {
		const struct pin *p = &pins[i];

		if (uaddr >= p->start && last <= p->end && (!write || p->writable))
			return 1;
	}
	return 0;
}

void qda_uaccess_stats(unsigned long long *memcpys, unsigned long long *checked)
{
	*memcpys = __atomic_load_n(&stat_memcpy, __ATOMIC_RELAXED);
	*checked = __atomic_load_n(&stat_checked, __ATOMIC_RELAXED);
}

/*
 * One direction of process_vm_{read,write}v on ourselves. @local is our buffer, @remote the
 * user address. Partial transfers stop at the first bad page; retry from there so a
 * transient short count is not mistaken for a fault, and report -EFAULT when no progress.
 */
static int pvm_copy(void *local, uint64_t remote, size_t len, int write)
{
	pid_t self = getpid();

	while (len) {
		size_t n = len < PVM_CHUNK ? len : PVM_CHUNK;
		struct iovec l = { .iov_base = local, .iov_len = n };
		struct iovec r = { .iov_base = (void *)(uintptr_t)remote, .iov_len = n };
		ssize_t got = write ? process_vm_writev(self, &l, 1, &r, 1, 0)
				    : process_vm_readv(self, &l, 1, &r, 1, 0);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			/* EFAULT, or EPERM/ENOSYS under a sandbox that forbids the call */
			return -EFAULT;
		}
		if (got == 0)
			return -EFAULT;
		local = (char *)local + got;
		remote += (uint64_t)got;
		len -= (size_t)got;
	}
	return 0;
}

/* Parse a hex number; advances *p. */
static uint64_t parse_hex(const char **p, const char *end)
{
	uint64_t v = 0;
	const char *s = *p;

	for (; s < end; s++) {
		char c = *s;
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			break;
		v = (v << 4) | d;
	}
	*p = s;
	return v;
}

/*
 * One maps line "start-end perms offset dev inode [path]". A mapping qualifies for a plain
 * memcpy when it is private, anonymous (inode 0) and not a kernel special mapping: only
 * then can an access within its permissions not fault (file mappings SIGBUS past EOF).
 */
static int line_qualifies(const char *s, const char *end, uint64_t *start, uint64_t *stop,
			  int write)
{
	const char *p = s;
	int field;

	*start = parse_hex(&p, end);
	if (p >= end || *p != '-')
		return -1;
	p++;
	*stop = parse_hex(&p, end);
	if (end - p < 5 || p[0] != ' ')
		return -1;
	if (p[1] != 'r' || (write && p[2] != 'w') || p[4] != 'p')
		return 0;
	p += 5;
	/* skip offset and dev, then read inode */
	for (field = 0; field < 2; field++) {
		while (p < end && *p == ' ')
			p++;
		while (p < end && *p != ' ')
			p++;
	}
	while (p < end && *p == ' ')
		p++;
	if (p >= end || *p != '0' || (p + 1 < end && p[1] != ' '))
		return 0;
	p++;
	while (p < end && *p == ' ')
		p++;
	if (p == end)
		return 1;
	if (end - p >= 6 && memcmp(p, "[heap]", 6) == 0)
		return 1;
	if (end - p >= 6 && memcmp(p, "[stack", 6) == 0)
		return 1;
	if (end - p >= 6 && memcmp(p, "[anon:", 6) == 0)
		return 1;
	return 0;
}

int qda_uaccess_range_ok(uint64_t uaddr, size_t len, int write)
{
	char buf[4096];
	size_t have = 0;
	uint64_t cur = uaddr, want;
	int fd, ok = 0, done = 0;

	if (!len || range_wraps(uaddr, len))
		return 0;
	want = uaddr + (uint64_t)(len - 1);	/* last byte */
	fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while (!done) {
		ssize_t got = read(fd, buf + have, sizeof(buf) - have);
		const char *s = buf, *end;

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
		end = buf + have;
		for (;;) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			uint64_t a, b;
			int q;

			if (!nl)
				break;
			q = line_qualifies(s, nl, &a, &b, write);
			s = nl + 1;
			if (q < 0 || b <= cur)
				continue;
			if (a > cur || !q) {	/* a hole or a mapping we cannot vouch for */
				done = 1;
				break;
			}
			if (b - 1 >= want) {
				ok = 1;
				done = 1;
				break;
			}
			cur = b;
		}
		/* keep the unfinished line; a line longer than the buffer ends the scan */
		have = (size_t)(end - s);
		if (have == sizeof(buf))
			break;
		memmove(buf, s, have);
	}
	close(fd);
	return ok;
}

int qda_copy_from_user_checked(void *dst, uint64_t uaddr, size_t len)
{
	if (!len)
		return 0;
	if (range_wraps(uaddr, len))
		return -EFAULT;
	count(&stat_checked);
	return pvm_copy(dst, uaddr, len, 0);
}

int qda_copy_to_user_checked(uint64_t uaddr, const void *src, size_t len)
{
	if (!len)
		return 0;
	if (range_wraps(uaddr, len))
		return -EFAULT;
	count(&stat_checked);
	/* process_vm_writev only reads from the local iovec; the cast drops const for iovec. */
	return pvm_copy((void *)(uintptr_t)src, uaddr, len, 1);
}

/* memmove, not memcpy: a caller's pinned buffer may overlap the local one */
int qda_copy_from_user(void *dst, uint64_t uaddr, size_t len)
{
	int rc;

	if (qda_uaccess_pinned(uaddr, len, 0)) {
		count(&stat_memcpy);
		memmove(dst, (const void *)(uintptr_t)uaddr, len);
		return 0;
	}
	if (len && !range_wraps(uaddr, len) && try_guarded(dst, (const void *)(uintptr_t)uaddr, len, &rc))
		return rc;
	return qda_copy_from_user_checked(dst, uaddr, len);
}

int qda_copy_to_user(uint64_t uaddr, const void *src, size_t len)
{
	int rc;

	if (qda_uaccess_pinned(uaddr, len, 1)) {
		count(&stat_memcpy);
		memmove((void *)(uintptr_t)uaddr, src, len);
		return 0;
	}
	if (len && !range_wraps(uaddr, len) && try_guarded((void *)(uintptr_t)uaddr, src, len, &rc))
		return rc;
	return qda_copy_to_user_checked(uaddr, src, len);
}

/*
 * Vectored copies through a private pipe. The kernel's copy_{from,to}_user() behind
 * writev()/readv() turn a bad user pointer into EFAULT (or a short count), so a pipe is a
 * safe copy engine that handles many buffers in two syscalls. Raw syscall() bypasses
 * sanitizer interceptors, which would otherwise inspect the (possibly bad) user ranges.
 */
#define PIPE_COPY_MAX   ((size_t)16 << 10)	/* larger copies go alone */
#define PIPE_BATCH_MAX  ((size_t)32 << 10)	/* stays below the 64 KiB pipe capacity */
#define PIPE_IOV_MAX    64

static pthread_mutex_t pipe_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;
static int pipe_fd[2] = { -1, -1 };

static void pipe_reset(void)
{
	if (pipe_fd[0] >= 0)
		close(pipe_fd[0]);
	if (pipe_fd[1] >= 0)
		close(pipe_fd[1]);
	pipe_fd[0] = pipe_fd[1] = -1;
}

/* A forked child must not share the parent's pipe (their data would interleave). */
static void pipe_atfork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	pipe_lock = fresh;
	pipe_reset();
}

static void pipe_register(void)
{
	pthread_atfork(NULL, NULL, pipe_atfork_child);
}

static int pipe_ready_locked(void)
{
	pthread_once(&pipe_once, pipe_register);
	if (pipe_fd[0] >= 0)
		return 0;
	if (pipe2(pipe_fd, O_CLOEXEC | O_NONBLOCK)) {
		pipe_fd[0] = pipe_fd[1] = -1;
		return -errno;
	}
	/* Never on fds 0-2: in a program that closed stdout/stderr the pipe would take them,
	 * and what the program prints would be read back as copied data. */
	for (int i = 0; i < 2; i++) {
		if (pipe_fd[i] > 2)
			continue;
		int fd = fcntl(pipe_fd[i], F_DUPFD_CLOEXEC, 3);

		if (fd < 0) {
			int err = errno;

			close(pipe_fd[0]);
			close(pipe_fd[1]);
			pipe_fd[0] = pipe_fd[1] = -1;
			return -err;
		}
		close(pipe_fd[i]);
		pipe_fd[i] = fd;
	}
	return 0;
}

int qda_uaccess_prepare(void)
{
	int err;

	pthread_mutex_lock(&pipe_lock);
	err = pipe_ready_locked();
	pthread_mutex_unlock(&pipe_lock);
	return err;
}

/* Read exactly @len queued bytes into the first iovecs of @lv (NULL: discard); 0 or -1. */
static int pipe_take(const struct qda_ucopy *v, size_t n, size_t len)
{
	struct iovec lv[PIPE_IOV_MAX];
	size_t k = 0;
	long r;

	if (!v) {
		char sink[4096];

		while (len) {
			r = syscall(SYS_read, pipe_fd[0], sink, len < sizeof(sink) ? len : sizeof(sink));
			if (r <= 0)
				return -1;
			len -= (size_t)r;
		}
		return 0;
	}
	{
		size_t left = len;

		while (left && k < n) {
			lv[k].iov_base = v[k].local;
			lv[k].iov_len = v[k].len < left ? v[k].len : left;
			left -= lv[k].iov_len;
			k++;
		}
	}
	r = len ? syscall(SYS_readv, pipe_fd[0], lv, (int)k) : 0;
	return r == (long)len ? 0 : -1;
}

/*
 * One batch (n <= PIPE_IOV_MAX small copies) through the pipe, pipe lock held. Returns the
 * number of leading copies fully done (n on success); a short transfer stops at the copy
 * that was cut, which the caller then redoes alone. -1: the pipe misbehaved (reset).
 */
static long pipe_batch(const struct qda_ucopy *v, size_t n, int to_user)
{
	struct iovec uv[PIPE_IOV_MAX], lv[PIPE_IOV_MAX];
	size_t i, total = 0, done = 0;
	long w, r;

	for (i = 0; i < n; i++) {
		uv[i].iov_base = (void *)(uintptr_t)v[i].user;
		uv[i].iov_len = v[i].len;
		lv[i].iov_base = v[i].local;
		lv[i].iov_len = v[i].len;
		total += v[i].len;
	}
	if (!to_user) {
		w = syscall(SYS_writev, pipe_fd[1], uv, (int)n);
		if (w < 0)
			w = 0;	/* EFAULT before the first byte: nothing queued */
		if (pipe_take(v, n, (size_t)w))
			goto broken;
		done = (size_t)w;
	} else {
		w = syscall(SYS_writev, pipe_fd[1], lv, (int)n);
		if (w != (long)total) {
			if (w > 0)
				pipe_take(NULL, 0, (size_t)w);
			goto broken;
		}
		r = syscall(SYS_readv, pipe_fd[0], uv, (int)n);
		if (r < 0)
			r = 0;
		if ((size_t)r < total && pipe_take(NULL, 0, total - (size_t)r))
			goto broken;
		done = (size_t)r;
	}
	/* count the copies wholly inside the transferred prefix */
	for (i = 0; i < n && done >= v[i].len; i++)
		done -= v[i].len;
	return (long)i;
broken:
	pipe_reset();
	return -1;
}

static int copy_vec(const struct qda_ucopy *v, size_t n, size_t *bad, int to_user)
{
	size_t i = 0, mark = qda_uaccess_begin();	/* the copies share one look at the guard */
	int guard = -1, rc = 0;	/* asked at the first copy not pinned */

	while (i < n) {
		size_t k = 0, bytes = 0;
		long done = -1;

		if (qda_uaccess_pinned(v[i].user, v[i].len, to_user)) {
			/* known-valid: a plain memmove, no syscall (no second look at the pins) */
			count(&stat_memcpy);
			if (to_user)
				memmove((void *)(uintptr_t)v[i].user, v[i].local, v[i].len);
			else
				memmove(v[i].local, (const void *)(uintptr_t)v[i].user, v[i].len);
			i++;
			continue;
		}
		/* a run of unpinned small copies goes through the pipe together (unless a guarded
		 * copier takes each: no syscall at all) */
		if (guard < 0)
			guard = guarded_copier() != NULL;
		while (!guard && i + k < n && k < PIPE_IOV_MAX &&
		       v[i + k].len <= PIPE_COPY_MAX &&
		       bytes + v[i + k].len <= PIPE_BATCH_MAX &&
		       !qda_uaccess_pinned(v[i + k].user, v[i + k].len, to_user)) {
			bytes += v[i + k].len;
			k++;
		}
		if (k > 1) {
			pthread_mutex_lock(&pipe_lock);
			if (pipe_ready_locked() == 0)
				done = pipe_batch(v + i, k, to_user);
			pthread_mutex_unlock(&pipe_lock);
		}
		if (done > 0) {
			__atomic_fetch_add(&stat_checked, (unsigned long long)done, __ATOMIC_RELAXED);
			i += (size_t)done;
			continue;
		}
		/* alone: a large copy, a single one, the copy a batch was cut at, or no pipe */
		if (to_user ? qda_copy_to_user(v[i].user, v[i].local, v[i].len)
			    : qda_copy_from_user(v[i].local, v[i].user, v[i].len)) {
			if (bad)
				*bad = i;
			rc = -EFAULT;
			break;
		}
		i++;
	}
	qda_uaccess_end(mark);
	return rc;
}

int qda_copy_from_user_vec(const struct qda_ucopy *v, size_t n, size_t *bad)
{
	return copy_vec(v, n, bad, 0);
}

int qda_copy_to_user_vec(const struct qda_ucopy *v, size_t n, size_t *bad)
{
	return copy_vec(v, n, bad, 1);
}

static int self_from(void *ctx, void *dst, uint64_t src, size_t n)
{
	(void)ctx;
	return qda_copy_from_user(dst, src, n);
}

static int self_to(void *ctx, uint64_t dst, const void *src, size_t n)
{
	(void)ctx;
	return qda_copy_to_user(dst, src, n);
}

const struct qda_uaccess qda_uaccess_self = { self_from, self_to, NULL };

static int held_from(void *ctx, void *dst, uint64_t src, size_t n)
{
	(void)ctx;
	memmove(dst, (const void *)(uintptr_t)src, n);
	return 0;
}

static int held_to(void *ctx, uint64_t dst, const void *src, size_t n)
{
	(void)ctx;
	memmove((void *)(uintptr_t)dst, src, n);
	return 0;
}

const struct qda_uaccess qda_uaccess_held = { held_from, held_to, NULL };
