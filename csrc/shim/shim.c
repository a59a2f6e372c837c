/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shim.c - libqdarpc_shim.so, an LD_PRELOAD device shim (after Mesa's drm-shim): the FastRPC
 * and accel device nodes, and the dma-buf heap, exist inside the process and their ioctls
 * reach qdarpc's emulated drivers, so an unmodified user library (qualcomm/fastrpc) runs on
 * the emulator. See docs/shim.md.
 *
 * Owned paths: /dev/fastrpc-*, /dev/accel and /dev/accel/accel*, /dev/dma_heap/system and
 * /sys/class/accel. Everything else passes straight to libc after one prefix compare, and the
 * interpreter is only reached when an owned path or fd is touched. A device fd is a real memfd
 * (fstat, poll, fcntl, mmap behave); this file maps fds to the emulator's open files (keys),
 * following dup and close. Directory listings and sysfs files come from a small real tree
 * the Python side keeps (qda_core.vfs.tree), so readdir and inotify work unchanged.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE /* we define open() & co.: not the headers' inline checking wrappers */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vfs.h"

#define EXPORT __attribute__((visibility("default")))

/* -- libc ------------------------------------------------------------------------------ */
#define REAL_FUNCS(X) \
	X(open) X(open64) X(openat) X(openat64) X(close) X(ioctl) X(dup) X(dup2) X(dup3) \
	X(fcntl) X(mmap) X(mmap64) X(opendir) X(stat) X(stat64) X(lstat) X(lstat64) X(fstat) \
	X(fstat64) X(fstatat) X(fstatat64) X(access) X(faccessat) X(inotify_add_watch) \
	X(fopen) X(fopen64)

#define REAL_FIELD(name) __typeof__(name) *name;
static struct {
	REAL_FUNCS(REAL_FIELD)
	int (*close_range)(unsigned, unsigned, int); /* glibc 2.34+: NULL before */
	void (*closefrom)(int);
} real;
#undef REAL_FIELD

static void resolve_real(void)
{
#define REAL_RESOLVE(name) *(void **)&real.name = dlsym(RTLD_NEXT, #name);
	REAL_FUNCS(REAL_RESOLVE)
	REAL_RESOLVE(close_range)
	REAL_RESOLVE(closefrom)
#undef REAL_RESOLVE
}

static pthread_once_t real_once = PTHREAD_ONCE_INIT;
#define REAL(name) (pthread_once(&real_once, resolve_real), real.name)

/* -- the Python side (vfs.c) ----------------------------------------------------------- */
/* Set while this thread runs Python for the shim: the interpreter's own opens pass through. */
static __thread int busy;
static int debug = -1;

static void trace_call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace_call(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (debug < 0) {
		const char *e = getenv("QDARPC_SHIM_DEBUG");

		debug = e && *e && strcmp(e, "0") != 0;
	}
	if (!debug)
		return;
	/* One write per line: lines of threads calling at once do not interleave. */
	va_start(ap, fmt);
	n = vsnprintf(line + 13, sizeof(line) - 14, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = n < (int)sizeof(line) - 14 ? n : (int)sizeof(line) - 15;
	memcpy(line, "qdarpc-shim: ", 13);
	line[13 + n] = '\n';
	fwrite(line, 1, (size_t)n + 14, stderr);
}

/* qda_core.vfs.<f>(args) with the interposer's own calls passed through meanwhile. */
static long long vcall(enum vfs_func f, const char *fmt, ...)
{
	long long v;
	va_list ap;

	busy++;
	va_start(ap, fmt);
	v = vfs_vcall(f, fmt, ap);
	va_end(ap);
	busy--;
	return v;
}

/* -- fds of the emulator --------------------------------------------------------------- */
/*
 * NODE: an open node (key: its emulated file); HEAP: an open /dev/dma_heap/system; BUF: a
 * dma-buf the heap returned (key: its buffer); PATH: an O_PATH fd on a node (no emulated
 * file, key 0: the kernel does not open the device for O_PATH).
 */
enum kind { NONE, NODE, HEAP, BUF, PATH };
struct slot {
	int key;
	int kind;
	dev_t rdev; /* what fstat reports for a node */
	dev_t dev;  /* the identity of the memfd standing for it: an fd closed behind our */
	ino_t ino;  /* back (fclose, close_range, a raw syscall) is recognised by its number's reuse */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *fds;   /* indexed by fd */
static int nfds;
static int *refs;          /* indexed by key: fds sharing the open file description */
static int nrefs;
static int tracked;        /* fds in the table: while 0, no lookup takes the lock */

static int grow(void **arr, int *n, int want, size_t elem)
{
	int m = *n ? *n : 64;
	void *p;

	while (m <= want)
		m *= 2;
	p = realloc(*arr, (size_t)m * elem);
	if (!p)
		return -1;
	memset((char *)p + (size_t)*n * elem, 0, (size_t)(m - *n) * elem);
	*arr = p;
	*n = m;
	return 0;
}

/* Empty @fd's slot (table lock held); the key whose last fd it was, else 0. */
static int clear_locked(int fd)
{
	int key = fds[fd].key;

	if (fds[fd].kind == NONE)
		return 0;
	memset(&fds[fd], 0, sizeof(fds[fd]));
	__atomic_sub_fetch(&tracked, 1, __ATOMIC_RELEASE);
	return key && --refs[key] == 0 ? key : 0;
}

/* Tell the emulator the last fd of @key is gone. */
static void release_key(int key, int fd)
{
	if (key) {
		long long r = vcall(V_close, "(i)", key);

		trace_call("release key %d (fd %d) = %lld", key, fd, r);
	}
}

/* Whether @fd's number still names the memfd @s was made for (errno kept). */
static int same_file(int fd, const struct slot *s)
{
	struct stat st;
	int saved = errno, same = REAL(fstat)(fd, &st) == 0 && st.st_ino == s->ino && st.st_dev == s->dev;

	errno = saved;
	return same;
}

/* @fd's slot, table lock held; a stale one (see lookup) is cleared and the key whose last fd
 * it was added to @keys[*n] (released by the caller once unlocked). */
static struct slot peek_locked(int fd, int *keys, int *n)
{
	struct slot s = { 0, NONE, 0, 0, 0 };

	if (fd < 0 || fd >= nfds || fds[fd].kind == NONE)
		return s;
	s = fds[fd];
	if (!same_file(fd, &s)) {
		int key = clear_locked(fd);

		if (key)
			keys[(*n)++] = key;
		s.kind = NONE;
	}
	return s;
}

/* The slot @fd had (kind NONE for an fd that is not ours, or no longer: one whose number now
 * names another file was closed where we could not see it, and is forgotten here). */
static struct slot lookup(int fd)
{
	struct slot s = { 0, NONE, 0, 0, 0 };
	int last = 0;

	if (fd < 0 || __atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return s;
	pthread_mutex_lock(&table_lock);
	if (fd < nfds)
		s = fds[fd];
	pthread_mutex_unlock(&table_lock);
	if (s.kind == NONE || same_file(fd, &s))
		return s;
	pthread_mutex_lock(&table_lock);
	if (fds[fd].kind != NONE && fds[fd].ino == s.ino && fds[fd].dev == s.dev)
		last = clear_locked(fd);
	pthread_mutex_unlock(&table_lock);
	release_key(last, fd);
	s.kind = NONE;
	return s;
}

/*
 * Make @fd (just returned by the kernel) stand for @s - or for nothing, if @s is NONE -
 * forgetting what the number stood for before (a stale slot, or dup2's replaced fd) and
 * telling the emulator if that was the last fd of its file. 0, or -1 (ENOMEM: @fd is left
 * untracked).
 */
static int retrack(int fd, struct slot s)
{
	int rc = 0, last = 0;

	if (fd < 0)
		return 0;
	pthread_mutex_lock(&table_lock);
	if (fd < nfds)
		last = clear_locked(fd);
	if (s.kind != NONE) {
		if ((fd >= nfds && grow((void **)&fds, &nfds, fd, sizeof(*fds))) ||
		    (s.key >= nrefs && grow((void **)&refs, &nrefs, s.key, sizeof(*refs)))) {
			rc = -1;
		} else {
			fds[fd] = s;
			if (s.key)
				refs[s.key]++;
			__atomic_add_fetch(&tracked, 1, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&table_lock);
	release_key(last, fd);
	return rc;
}

/* Record the new fd @fd as one more fd of @key (its identity read now); 0 or -1 (errno). */
static int track(int fd, int key, int kind, dev_t rdev)
{
	struct slot s = { key, kind, rdev, 0, 0 };
	struct stat st;

	if (REAL(fstat)(fd, &st))
		return -1;
	s.dev = st.st_dev;
	s.ino = st.st_ino;
	if (retrack(fd, s)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* @fd is being closed: forget it, and release its file if it was the last fd. */
static void release(int fd)
{
	int last = 0;

	if (fd < 0)
		return;
	pthread_mutex_lock(&table_lock);
	if (fd < nfds)
		last = clear_locked(fd);
	pthread_mutex_unlock(&table_lock);
	release_key(last, fd);
}

/* fds [@lo, @hi] were closed (close_range, closefrom). */
static void release_range(unsigned lo, unsigned hi)
{
	unsigned fd;

	if (__atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return;
	for (fd = lo; fd <= hi && fd < (unsigned)nfds; fd++)
		release((int)fd);
}

/*
 * fork(): the child's fds stay open, as plain memfds - its emulator is a fresh one (docs/shim.md)
 * and the emulated files behind them belong to the parent. The table lock is held across
 * fork so the child does not inherit it locked.
 */
static void fork_prepare(void)
{
	pthread_mutex_lock(&table_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&table_lock);
}

static void tree_after_fork(void);

static void fork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	if (fds)
		memset(fds, 0, (size_t)nfds * sizeof(*fds));
	if (refs)
		memset(refs, 0, (size_t)nrefs * sizeof(*refs));
	__atomic_store_n(&tracked, 0, __ATOMIC_RELEASE);
	table_lock = fresh;
	tree_after_fork();
}

__attribute__((constructor)) static void shim_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* -- paths ----------------------------------------------------------------------------- */
static const char *const NODE_PREFIXES[] = { "/dev/fastrpc-", "/dev/accel/accel" };
static const char HEAP_PATH[] = "/dev/dma_heap/system"; /* exactly: system-uncached & co. are the host's */
static char tree[PATH_MAX];   /* the real tree behind /dev/accel and /sys/class/accel */
static pthread_once_t tree_once = PTHREAD_ONCE_INIT;
static int reaper_fd = -1;    /* the write end the tree's reaper waits on */

/*
 * Remove the tree once this process (and any child that did not exec) is gone: a detached
 * shell waits for EOF on a pipe whose write end only we hold (close-on-exec). Not from an
 * exit hook: changing the watched directory while the process exits would wake a library's
 * inotify thread - upstream's accel discovery thread, never joined, runs in unmapped code
 * once its library was dlclose'd. The shell gets nothing else of ours: its stdio is
 * /dev/null and every other fd is closed (holding a copy of a pipe's write end, it would keep
 * the program's own reader from ever seeing EOF), and our write end is kept off fds 0-2.
 */
static void reap_tree_at_exit(void)
{
	static const char script[] = "(cat <&3 >/dev/null 2>&1; rm -rf -- \"$0\") 3<&3 &";
	char *argv[] = { "sh", "-c", (char *)script, tree, NULL };
	char *envp[] = { "PATH=/usr/bin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	int p[2], status, i;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return;
	if (p[1] <= 2) {
		int hi = REAL(fcntl)(p[1], F_DUPFD_CLOEXEC, 3);

		REAL(close)(p[1]);
		p[1] = hi;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[0], 3);
	for (i = 0; i <= 2; i++)
		posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
#endif
	if (p[1] >= 0 && posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, envp) == 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			; /* the shell exits at once; the reaper is orphaned */
	posix_spawn_file_actions_destroy(&fa);
	REAL(close)(p[0]);
	reaper_fd = p[1]; /* stays open until we exit */
}

/* A forked child makes a tree of its own (its emulator is a fresh one) when it needs one, and
 * lets the parent's be removed when the parent is gone. */
static void tree_after_fork(void)
{
	pthread_once_t once = PTHREAD_ONCE_INIT;

	tree_once = once;
	tree[0] = '\0';
	if (reaper_fd >= 0)
		syscall(SYS_close, reaper_fd);
	reaper_fd = -1;
}

/*
 * A path pointer that cannot point at a string: NULL, the first 64 KiB (never mapped), or past
 * the user half of the address space. Such a path goes straight to libc, whose syscall
 * answers EFAULT; we must not read it. (A pointer to memory that was unmapped still faults.)
 */
static int wild(const void *path)
{
	uintptr_t p = (uintptr_t)path;

#if defined(__x86_64__)
	if (p >> 56) /* above even 5-level paging's user half */
		return 1;
#elif defined(__aarch64__)
	if ((p << 8) >> 60) /* bits 55..52 (the top byte may be a tag) */
		return 1;
#endif
	return p < 65536;
}

static void make_tree(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tree, sizeof(tree), "%s/qdarpc-shim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tree)) {
		tree[0] = '\0';
		return;
	}
	if (vcall(V_tree, "(s)", tree) < 0) { /* the host's /dev/accel, then */
		char sub[PATH_MAX + 32];

		snprintf(sub, sizeof(sub), "%s/dev/accel", tree);
		rmdir(sub);
		snprintf(sub, sizeof(sub), "%s/dev", tree);
		rmdir(sub);
		rmdir(tree);
		tree[0] = '\0';
		return;
	}
	reap_tree_at_exit();
}

/* 1 for a node the emulator serves (open answers through it). */
static int is_node(const char *path)
{
	size_t i;

	if (wild(path) || strncmp(path, "/dev/", 5) != 0)
		return 0;
	for (i = 0; i < sizeof(NODE_PREFIXES) / sizeof(*NODE_PREFIXES); i++)
		if (strncmp(path, NODE_PREFIXES[i], strlen(NODE_PREFIXES[i])) == 0)
			return 1;
	return strcmp(path, HEAP_PATH) == 0;
}

/*
 * A path answered from the tree (/dev/accel itself, /sys/class/accel...): its real path in
 * @out, or NULL. Node paths are not redirected (see is_node).
 */
static const char *redirect(const char *path, char *out, size_t n)
{
	const char *rest;

	if (busy || wild(path) || path[0] != '/')
		return NULL;
	if (strncmp(path, "/dev/accel", 10) == 0 && (path[10] == '\0' || strcmp(path + 10, "/") == 0))
		rest = "/dev/accel";
	else if (strncmp(path, "/sys/class/accel", 16) == 0 && (path[16] == '\0' || path[16] == '/'))
		rest = path;
	else
		return NULL;
	pthread_once(&tree_once, make_tree);
	if (!tree[0])
		return NULL;
	if ((size_t)snprintf(out, n, "%s%s", tree, rest) >= n)
		return NULL;
	return out;
}

/* open() of a node: a memfd standing for the open file description, or -1 with errno. (An
 * O_PATH open reaches no driver: qda_core.vfs.open answers key 0, and the fd is a PATH.) */
static int open_node(const char *path, int flags)
{
	long long key = vcall(V_open, "(si)", path, flags), dev;
	int fd, kind = key == 0 ? PATH : strcmp(path, HEAP_PATH) == 0 ? HEAP : NODE;

	if (key < 0) {
		trace_call("open(%s, %#x) = -1 (%s)", path, flags, strerror((int)-key));
		errno = (int)-key;
		return -1;
	}
	dev = vcall(V_stat_node, "(s)", path);
	fd = memfd_create(path + 5, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0 || track(fd, (int)key, kind, dev < 0 ? 0 : makedev((unsigned)(dev >> 20),
									     (unsigned)(dev & 0xFFFFF)))) {
		int e = errno;

		if (fd >= 0)
			REAL(close)(fd);
		if (key)
			vcall(V_close, "(i)", (int)key);
		errno = e;
		return -1;
	}
	trace_call("open(%s, %#x) = %d (key %lld)", path, flags, fd, key);
	return fd;
}

static int wants_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

#define OPEN_BODY(realfn, ...) \
	do { \
		char buf[PATH_MAX]; \
		const char *alt; \
		if (!busy && is_node(path)) \
			return open_node(path, flags); \
		alt = redirect(path, buf, sizeof(buf)); \
		return REAL(realfn)(__VA_ARGS__); \
	} while (0)

static mode_t mode_arg(int flags, va_list ap)
{
	return wants_mode(flags) ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	OPEN_BODY(open, alt ? alt : path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	OPEN_BODY(open64, alt ? alt : path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	OPEN_BODY(openat, dirfd, alt ? alt : path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	OPEN_BODY(openat64, dirfd, alt ? alt : path, flags, mode);
}

/* The _FORTIFY_SOURCE entry points: the checks are the compiler's; the open is ours. */
EXPORT int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return open64(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return openat64(dirfd, path, flags);
}

/* fopen() of a node: libc's fopen opens the path without going through open(), so the shim
 * opens it and hands the fd to fdopen (its fclose is a close the shim does not see: the
 * emulated file is released when the fd's number is reused, see lookup). */
static FILE *fopen_node(const char *path, const char *mode)
{
	int flags, fd;
	const char *m;
	FILE *f;

	if (!mode || wild(mode)) {
		errno = EINVAL;
		return NULL;
	}
	switch (mode[0]) {
	case 'r':
		flags = O_RDONLY;
		break;
	case 'w':
		flags = O_WRONLY | O_CREAT | O_TRUNC;
		break;
	case 'a':
		flags = O_WRONLY | O_CREAT | O_APPEND;
		break;
	default:
		errno = EINVAL;
		return NULL;
	}
	for (m = mode + 1; *m && *m != ','; m++) {
		if (*m == '+')
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		else if (*m == 'e')
			flags |= O_CLOEXEC;
		else if (*m == 'x')
			flags |= O_EXCL;
	}
	fd = open_node(path, flags);
	if (fd < 0)
		return NULL;
	f = fdopen(fd, mode);
	if (!f) {
		int e = errno;

		close(fd);
		errno = e;
	}
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	char buf[PATH_MAX];
	const char *alt;

	if (!busy && is_node(path))
		return fopen_node(path, mode);
	alt = redirect(path, buf, sizeof(buf));
	return REAL(fopen)(alt ? alt : path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	char buf[PATH_MAX];
	const char *alt;

	if (!busy && is_node(path))
		return fopen_node(path, mode);
	alt = redirect(path, buf, sizeof(buf));
	return REAL(fopen64)(alt ? alt : path, mode);
}

EXPORT DIR *opendir(const char *path)
{
	char buf[PATH_MAX];
	const char *alt = redirect(path, buf, sizeof(buf));

	if (alt)
		trace_call("opendir(%s) -> %s", path, alt);
	return REAL(opendir)(alt ? alt : path);
}

EXPORT int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
	char buf[PATH_MAX];
	const char *alt = redirect(path, buf, sizeof(buf));

	return REAL(inotify_add_watch)(fd, alt ? alt : path, mask);
}

/*
 * close() of one of our fds: forgotten, and its file released at its last fd. The table lock
 * is held across the real close (and across the real dup calls below), so a dup racing a
 * close either happens first - the file keeps an fd - or finds the fd closed.
 */
EXPORT int close(int fd)
{
	int keys[2], n = 0, mine = 0, r, e, i;
	struct slot s;

	if (busy || fd < 0 || __atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return REAL(close)(fd);
	pthread_mutex_lock(&table_lock);
	s = peek_locked(fd, keys, &n);
	if (s.kind != NONE) {
		int key = clear_locked(fd);

		mine = 1;
		if (key)
			keys[n++] = key;
	}
	r = REAL(close)(fd);
	e = errno;
	pthread_mutex_unlock(&table_lock);
	if (mine)
		trace_call("close(%d)", fd);
	for (i = 0; i < n; i++)
		release_key(keys[i], fd);
	errno = e;
	return r;
}

/* close_range(2) and closefrom(3) close fds without close(): what they closed is released. */
EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	int r = REAL(close_range) ? REAL(close_range)(first, last, flags)
				  : (int)syscall(SYS_close_range, first, last, flags);

	if (r == 0 && !busy && !(flags & CLOSE_RANGE_CLOEXEC))
		release_range(first, last);
	return r;
}

EXPORT void closefrom(int lowfd)
{
	if (REAL(closefrom))
		REAL(closefrom)(lowfd);
	else
		syscall(SYS_close_range, lowfd < 0 ? 0 : lowfd, ~0U, 0);
	if (!busy)
		release_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0U);
}

EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	struct slot s;
	long long r;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	s = busy ? (struct slot){ 0, NONE, 0, 0, 0 } : lookup(fd);
	/* The VFS answers these for any file before its driver sees them: the memfd's fd flags
	 * and status flags are the open file's. */
	if (s.kind == NONE || request == FIOCLEX || request == FIONCLEX || request == FIONBIO ||
	    request == FIOASYNC)
		return REAL(ioctl)(fd, request, arg);
	if (s.kind == PATH) { /* an O_PATH fd reaches no driver */
		errno = EBADF;
		return -1;
	}
	r = vcall(V_ioctl, "(ikK)", s.key, request, (unsigned long long)(uintptr_t)arg);
	trace_call("ioctl(%d, %#lx, %p) = %lld", fd, request, arg, r);
	if (r < 0 && r >= -4095) { /* what the syscall layer treats as an errno */
		errno = (int)-r;
		return -1;
	}
	if (s.kind == HEAP && arg && r == 0) {
		/* DMA_HEAP_IOCTL_ALLOC returned a dma-buf fd in the struct (written there, so
		 * readable): its last close frees the buffer. */
		int newfd = (int)((uint32_t *)arg)[2];
		long long key = vcall(V_claim_heap_fd, "(i)", newfd);

		if (key > 0 && track(newfd, (int)key, BUF, 0))
			trace_call("cannot track dma-buf fd %d (%s)", newfd, strerror(errno));
	}
	return (int)r;
}

enum dup_how { DUP, DUP2, DUP3, DUPFD };

static int real_dup(enum dup_how how, int oldfd, int arg, int flags)
{
	switch (how) {
	case DUP:
		return REAL(dup)(oldfd);
	case DUP2:
		return REAL(dup2)(oldfd, arg);
	case DUP3:
		return REAL(dup3)(oldfd, arg, flags);
	default:
		return REAL(fcntl)(oldfd, flags, arg);
	}
}

/*
 * dup, dup2, dup3, fcntl(F_DUPFD*): the new fd shares the old one's open file, so it stands
 * for what the old fd stands for, and no longer for whatever its number stood for before
 * (dup2's replaced fd, or a stale slot). A failed call changes nothing.
 */
static int do_dup(enum dup_how how, int oldfd, int arg, int flags)
{
	int keys[3], n = 0, r, e, i;

	if (busy || __atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return real_dup(how, oldfd, arg, flags);
	pthread_mutex_lock(&table_lock);
	r = real_dup(how, oldfd, arg, flags);
	e = errno;
	if (r >= 0 && r != oldfd) {
		struct slot s = peek_locked(oldfd, keys, &n);
		int key = r < nfds ? clear_locked(r) : 0;

		if (key)
			keys[n++] = key;
		if (s.kind != NONE) {
			if ((r >= nfds && grow((void **)&fds, &nfds, r, sizeof(*fds))) ||
			    (s.key >= nrefs && grow((void **)&refs, &nrefs, s.key, sizeof(*refs)))) {
				REAL(close)(r);
				r = -1;
				e = ENOMEM;
			} else {
				fds[r] = s;
				if (s.key)
					refs[s.key]++;
				__atomic_add_fetch(&tracked, 1, __ATOMIC_RELEASE);
			}
		}
	}
	pthread_mutex_unlock(&table_lock);
	for (i = 0; i < n; i++)
		release_key(keys[i], r);
	errno = e;
	return r;
}

EXPORT int dup(int oldfd)
{
	return do_dup(DUP, oldfd, 0, 0);
}

EXPORT int dup2(int oldfd, int newfd)
{
	return do_dup(DUP2, oldfd, newfd, 0);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return do_dup(DUP3, oldfd, newfd, flags);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return do_dup(DUPFD, fd, (int)(intptr_t)arg, cmd);
	return REAL(fcntl)(fd, cmd, arg);
}

/* mmap of a GEM fake offset on an accel node: the object's pages, as the DRM core maps them. */
static void *map_node(struct slot s, void *addr, size_t len, int prot, int flags, off_t off)
{
	long long src = vcall(V_mmap_source, "(iKKi)", s.key, (unsigned long long)off,
			      (unsigned long long)len, prot);
	void *p;
	int e;

	if (src < 0) {
		errno = (int)-src;
		return MAP_FAILED;
	}
	p = REAL(mmap)(addr, len, prot, flags, (int)src, 0);
	e = errno;
	REAL(close)((int)src);
	trace_call("mmap(fake offset %#llx, %zu) = %p", (unsigned long long)off, len, p);
	errno = e;
	return p;
}

/* What mmap of a node fd answers instead of mapping the memfd: an accel node maps a GEM
 * object; the heap and the FastRPC nodes have no mmap (ENODEV), an O_PATH fd none (EBADF). */
static void *map_special(struct slot s, void *addr, size_t len, int prot, int flags, off_t off)
{
	if (s.kind == NODE)
		return map_node(s, addr, len, prot, flags, off);
	errno = s.kind == PATH ? EBADF : ENODEV;
	return MAP_FAILED;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct slot s = (busy || fd < 0) ? (struct slot){ 0, NONE, 0, 0, 0 } : lookup(fd);

	if (s.kind != NONE && s.kind != BUF)
		return map_special(s, addr, len, prot, flags, off);
	return REAL(mmap)(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	struct slot s = (busy || fd < 0) ? (struct slot){ 0, NONE, 0, 0, 0 } : lookup(fd);

	if (s.kind != NONE && s.kind != BUF)
		return map_special(s, addr, len, prot, flags, (off_t)off);
	return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

/* -- metadata -------------------------------------------------------------------------- */
/* Copy to a caller's pointer that may be bad: 0, or -1 with errno EFAULT (where the kernel
 * would fault, we must not). */
static int put_user(void *dst, const void *src, size_t n)
{
	struct iovec local = { (void *)src, n }, remote = { dst, n };
	ssize_t w;

	if (wild(dst)) {
		errno = EFAULT;
		return -1;
	}
	w = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	if (w == (ssize_t)n)
		return 0;
	if (w < 0 && (errno == ENOSYS || errno == EPERM)) { /* a sandbox forbids the call */
		memcpy(dst, src, n);
		return 0;
	}
	errno = EFAULT;
	return -1;
}

/* A node's stat: a character device (accel major 261, misc 10), owned by root, mode 0666,
 * written to @out if @fill (a separate flag: stat's pointer is declared nonnull, so the
 * compiler may drop a comparison of it with NULL). */
static int node_stat(const char *path, struct stat *out, int fill)
{
	long long dev = vcall(V_stat_node, "(s)", path);
	struct stat st;

	if (dev < 0) {
		errno = (int)-dev;
		return -1;
	}
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFCHR | 0666;
	st.st_rdev = makedev((unsigned)(dev >> 20), (unsigned)(dev & 0xFFFFF));
	st.st_nlink = 1;
	st.st_blksize = 4096;
	return fill ? put_user(out, &st, sizeof(st)) : 0; /* a NULL out is EFAULT there */
}

/* access() of a node: it exists, and is read-write (mode 0666) but not executable. */
static int node_access(const char *path, int mode)
{
	if (node_stat(path, NULL, 0))
		return -1;
	if (mode & X_OK) {
		errno = EACCES;
		return -1;
	}
	return 0;
}

/* fstat of one of our fds: a node's metadata (an fd whose number was reused is not ours). */
static void patch_fstat(int fd, struct stat *st)
{
	struct slot s;

	if (__atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return;
	s = lookup(fd);
	if (s.kind == NODE || s.kind == HEAP || s.kind == PATH) {
		st->st_mode = S_IFCHR | 0666;
		st->st_rdev = s.rdev;
		st->st_size = 0;
	}
}

#define STAT_BODY(realfn, ...) \
	do { \
		char buf[PATH_MAX]; \
		const char *alt; \
		if (!busy && is_node(path)) \
			return node_stat(path, (struct stat *)st, 1); \
		alt = redirect(path, buf, sizeof(buf)); \
		return REAL(realfn)(__VA_ARGS__); \
	} while (0)

EXPORT int stat(const char *path, struct stat *st)
{
	STAT_BODY(stat, alt ? alt : path, st);
}

EXPORT int lstat(const char *path, struct stat *st)
{
	STAT_BODY(lstat, alt ? alt : path, st);
}

EXPORT int stat64(const char *path, struct stat64 *st)
{
	STAT_BODY(stat64, alt ? alt : path, st);
}

EXPORT int lstat64(const char *path, struct stat64 *st)
{
	STAT_BODY(lstat64, alt ? alt : path, st);
}

/* fstatat(fd, "", st, AT_EMPTY_PATH) is an fstat. */
static int empty_path(const char *path, int flags)
{
	return (flags & AT_EMPTY_PATH) && !wild(path) && !*path;
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	if (!busy && empty_path(path, flags)) {
		int r = REAL(fstatat)(dirfd, path, st, flags);

		if (r == 0)
			patch_fstat(dirfd, st);
		return r;
	}
	STAT_BODY(fstatat, dirfd, alt ? alt : path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	if (!busy && empty_path(path, flags)) {
		int r = REAL(fstatat64)(dirfd, path, st, flags);

		if (r == 0)
			patch_fstat(dirfd, (struct stat *)st);
		return r;
	}
	STAT_BODY(fstatat64, dirfd, alt ? alt : path, st, flags);
}

EXPORT int fstat(int fd, struct stat *st)
{
	int r = REAL(fstat)(fd, st);

	if (r == 0 && !busy)
		patch_fstat(fd, st);
	return r;
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	int r = REAL(fstat64)(fd, st);

	if (r == 0 && !busy)
		patch_fstat(fd, (struct stat *)st);
	return r;
}

EXPORT int access(const char *path, int mode)
{
	char buf[PATH_MAX];
	const char *alt;

	if (!busy && is_node(path))
		return node_access(path, mode);
	alt = redirect(path, buf, sizeof(buf));
	return REAL(access)(alt ? alt : path, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	char buf[PATH_MAX];
	const char *alt;

	if (!busy && is_node(path))
		return node_access(path, mode);
	alt = redirect(path, buf, sizeof(buf));
	return REAL(faccessat)(dirfd, alt ? alt : path, mode, flags);
}
