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
#include <sys/sysmacros.h>
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
static struct { REAL_FUNCS(REAL_FIELD) } real;
#undef REAL_FIELD

static void resolve_real(void)
{
#define REAL_RESOLVE(name) *(void **)&real.name = dlsym(RTLD_NEXT, #name);
	REAL_FUNCS(REAL_RESOLVE)
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
	va_list ap;

	if (debug < 0) {
		const char *e = getenv("QDARPC_SHIM_DEBUG");

		debug = e && *e && strcmp(e, "0") != 0;
	}
	if (!debug)
		return;
	va_start(ap, fmt);
	fputs("qdarpc-shim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
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
enum kind { NONE, NODE, HEAP, BUF };
struct slot {
	int key;
	int kind;
	dev_t rdev; /* what fstat reports for a node */
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

/* The slot of @fd (kind NONE for an fd that is not ours). */
static struct slot lookup(int fd)
{
	struct slot s = { 0, NONE, 0 };

	if (fd < 0 || __atomic_load_n(&tracked, __ATOMIC_ACQUIRE) == 0)
		return s;
	pthread_mutex_lock(&table_lock);
	if (fd < nfds)
		s = fds[fd];
	pthread_mutex_unlock(&table_lock);
	return s;
}

/* Record @fd as one more fd of @key; 0 or -1 (ENOMEM). */
static int track(int fd, int key, int kind, dev_t rdev)
{
	int rc = 0;

	pthread_mutex_lock(&table_lock);
	if ((fd >= nfds && grow((void **)&fds, &nfds, fd, sizeof(*fds))) ||
	    (key >= nrefs && grow((void **)&refs, &nrefs, key, sizeof(*refs))))
		rc = -1;
	else {
		fds[fd].key = key;
		fds[fd].kind = kind;
		fds[fd].rdev = rdev;
		refs[key]++;
		__atomic_add_fetch(&tracked, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&table_lock);
	return rc;
}

/* Forget @fd; the key whose last fd it was (the caller tells the emulator), else 0. */
static int untrack(int fd)
{
	int last = 0;

	pthread_mutex_lock(&table_lock);
	if (fd >= 0 && fd < nfds && fds[fd].kind != NONE) {
		int key = fds[fd].key;

		fds[fd].kind = NONE;
		fds[fd].key = 0;
		__atomic_sub_fetch(&tracked, 1, __ATOMIC_RELEASE);
		if (--refs[key] == 0)
			last = key;
	}
	pthread_mutex_unlock(&table_lock);
	return last;
}

static void release(int fd)
{
	int key = untrack(fd);

	if (key) {
		long long r = vcall(V_close, "(i)", key);

		trace_call("release key %d (fd %d) = %lld", key, fd, r);
	}
}

/* -- paths ----------------------------------------------------------------------------- */
static const char *const NODE_PREFIXES[] = { "/dev/fastrpc-", "/dev/accel/accel", "/dev/dma_heap/system" };
static char tree[PATH_MAX];   /* the real tree behind /dev/accel and /sys/class/accel */
static pthread_once_t tree_once = PTHREAD_ONCE_INIT;

/*
 * Remove the tree once this process (and any child that did not exec) is gone: a detached
 * shell waits for EOF on a pipe whose write end only we hold (close-on-exec). Not from an
 * exit hook: changing the watched directory while the process exits would wake a library's
 * inotify thread - upstream's accel discovery thread, never joined, runs in unmapped code
 * once its library was dlclose'd.
 */
static void reap_tree_at_exit(void)
{
	static const char script[] = "(cat <&3 >/dev/null 2>&1; rm -rf -- \"$0\") 3<&3 &";
	char *argv[] = { "sh", "-c", (char *)script, tree, NULL };
	char *envp[] = { "PATH=/usr/bin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	int p[2], status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[0], 3);
	if (posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, envp) == 0)
		waitpid(pid, &status, 0); /* the shell exits at once; the reaper is orphaned */
	posix_spawn_file_actions_destroy(&fa);
	REAL(close)(p[0]); /* p[1] stays open until we exit */
}

static void make_tree(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tree, sizeof(tree), "%s/qdarpc-shim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tree) || vcall(V_tree, "(s)", tree) < 0) {
		tree[0] = '\0';
		return;
	}
	reap_tree_at_exit();
}

/* 1 for a node the emulator serves (open answers through it). */
static int is_node(const char *path)
{
	size_t i;

	if (!path || strncmp(path, "/dev/", 5) != 0)
		return 0;
	for (i = 0; i < sizeof(NODE_PREFIXES) / sizeof(*NODE_PREFIXES); i++)
		if (strncmp(path, NODE_PREFIXES[i], strlen(NODE_PREFIXES[i])) == 0)
			return 1;
	return 0;
}

/*
 * A path answered from the tree (/dev/accel itself, /sys/class/accel...): its real path in
 * @out, or NULL. Node paths are not redirected (see is_node).
 */
static const char *redirect(const char *path, char *out, size_t n)
{
	const char *rest;

	if (!path || path[0] != '/' || busy)
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

/* open() of a node: a memfd standing for the open file description, or -1 with errno. */
static int open_node(const char *path, int flags)
{
	long long key = vcall(V_open, "(si)", path, flags), dev;
	int fd, kind = strcmp(path, "/dev/dma_heap/system") == 0 ? HEAP : NODE;

	if (key < 0) {
		trace_call("open(%s, %#x) = -1 (%s)", path, flags, strerror((int)-key));
		errno = (int)-key;
		return -1;
	}
	dev = vcall(V_stat_node, "(s)", path);
	fd = memfd_create(path + 5, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0 || track(fd, (int)key, kind, dev < 0 ? 0 : makedev((unsigned)(dev >> 20),
									     (unsigned)(dev & 0xFFFFF)))) {
		int e = fd < 0 ? errno : ENOMEM;

		if (fd >= 0)
			REAL(close)(fd);
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

EXPORT FILE *fopen(const char *path, const char *mode)
{
	char buf[PATH_MAX];
	const char *alt = redirect(path, buf, sizeof(buf));

	return REAL(fopen)(alt ? alt : path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	char buf[PATH_MAX];
	const char *alt = redirect(path, buf, sizeof(buf));

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

EXPORT int close(int fd)
{
	if (!busy && lookup(fd).kind != NONE) {
		trace_call("close(%d)", fd);
		release(fd);
	}
	return REAL(close)(fd);
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
	s = busy ? (struct slot){ 0, NONE, 0 } : lookup(fd);
	if (s.kind == NONE)
		return REAL(ioctl)(fd, request, arg);
	r = vcall(V_ioctl, "(ikK)", s.key, request, (unsigned long long)(uintptr_t)arg);
	trace_call("ioctl(%d, %#lx, %p) = %lld", fd, request, arg, r);
	if (r < 0 && r >= -4095) { /* what the syscall layer treats as an errno */
		errno = (int)-r;
		return -1;
	}
	if (s.kind == HEAP && arg && r == 0) {
		/* DMA_HEAP_IOCTL_ALLOC returned a dma-buf fd in the struct: its last close frees it. */
		int newfd = (int)((uint32_t *)arg)[2];
		long long key = vcall(V_claim_heap_fd, "(i)", newfd);

		if (key > 0)
			track(newfd, (int)key, BUF, 0);
	}
	return (int)r;
}

static int dup_of(int oldfd, int newfd)
{
	struct slot s = lookup(oldfd);

	if (newfd >= 0 && s.kind != NONE && track(newfd, s.key, s.kind, s.rdev)) {
		REAL(close)(newfd);
		errno = ENOMEM;
		return -1;
	}
	return newfd;
}

EXPORT int dup(int oldfd)
{
	return dup_of(oldfd, REAL(dup)(oldfd));
}

EXPORT int dup2(int oldfd, int newfd)
{
	int r;

	if (oldfd == newfd)
		return REAL(dup2)(oldfd, newfd);
	release(newfd);
	r = REAL(dup2)(oldfd, newfd);
	return r < 0 ? r : dup_of(oldfd, r);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int r;

	if (oldfd != newfd)
		release(newfd);
	r = REAL(dup3)(oldfd, newfd, flags);
	return r < 0 ? r : dup_of(oldfd, r);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = REAL(fcntl)(fd, cmd, arg);
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
		return dup_of(fd, r);
	return r;
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
	errno = e;
	trace_call("mmap(fake offset %#llx, %zu) = %p", (unsigned long long)off, len, p);
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct slot s = (busy || fd < 0) ? (struct slot){ 0, NONE, 0 } : lookup(fd);

	if (s.kind == NODE)
		return map_node(s, addr, len, prot, flags, off);
	return REAL(mmap)(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	struct slot s = (busy || fd < 0) ? (struct slot){ 0, NONE, 0 } : lookup(fd);

	if (s.kind == NODE)
		return map_node(s, addr, len, prot, flags, (off_t)off);
	return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

/* -- metadata -------------------------------------------------------------------------- */
/* A node's stat: a character device (accel major 261, misc 10), owned by root, mode 0666. */
static int node_stat(const char *path, struct stat *st)
{
	long long dev = vcall(V_stat_node, "(s)", path);

	if (dev < 0) {
		errno = (int)-dev;
		return -1;
	}
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFCHR | 0666;
	st->st_rdev = makedev((unsigned)(dev >> 20), (unsigned)(dev & 0xFFFFF));
	st->st_nlink = 1;
	st->st_blksize = 4096;
	return 0;
}

static void patch_fstat(int fd, struct stat *st)
{
	struct slot s = lookup(fd);

	if (s.kind == NODE || s.kind == HEAP) {
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
			return node_stat(path, (struct stat *)st); \
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

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	STAT_BODY(fstatat, dirfd, alt ? alt : path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
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
	struct stat st;

	if (!busy && is_node(path))
		return node_stat(path, &st);
	{
		char buf[PATH_MAX];
		const char *alt = redirect(path, buf, sizeof(buf));

		return REAL(access)(alt ? alt : path, mode);
	}
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	struct stat st;

	if (!busy && is_node(path))
		return node_stat(path, &st);
	{
		char buf[PATH_MAX];
		const char *alt = redirect(path, buf, sizeof(buf));

		return REAL(faccessat)(dirfd, alt ? alt : path, mode, flags);
	}
}
