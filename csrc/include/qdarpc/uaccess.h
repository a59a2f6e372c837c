/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * uaccess.h - "user memory" access for the emulated kernel: copies to/from raw addresses of
 * our own process that fail with -EFAULT instead of crashing on a bad pointer.
 *
 * The marshalling core never dereferences a user address itself; it goes through a
 * struct qda_uaccess so tests and fuzzers can substitute their own accessors.
 */
#ifndef QDARPC_UACCESS_H
#define QDARPC_UACCESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct qda_uaccess - user-memory accessors
 * @from: copy @n bytes from user address @src to local memory @dst; 0 or -EFAULT
 * @to: copy @n bytes from local memory @src to user address @dst; 0 or -EFAULT
 * @ctx: passed verbatim as the first argument of @from and @to
 */
struct qda_uaccess {
	int (*from)(void *ctx, void *dst, uint64_t src, size_t n);
	int (*to)(void *ctx, uint64_t dst, const void *src, size_t n);
	void *ctx;
};

/** qda_uaccess_self - accessors over this process' own memory (qda_copy_from/to_user). */
extern const struct qda_uaccess qda_uaccess_self;

/**
 * qda_uaccess_held - plain memmove() both ways, no check: only for copies whose every user range
 * lies in memory the caller itself holds for the whole copy (a Py_buffer whose exporter vouches
 * for it, as qda_uaccess_pin() requires of a pinned range). A bad address crashes.
 */
extern const struct qda_uaccess qda_uaccess_held;

/**
 * qda_copy_from_user() - copy from a raw address of this process, never faulting
 * @dst: local destination (must be valid for @len bytes)
 * @uaddr: source address; may be anything, including unmapped or PROT_NONE memory
 * @len: bytes; 0 always succeeds
 *
 * A range inside one the calling thread pinned (qda_uaccess_pin()) is copied with memcpy();
 * anything else goes through the guarded copier when one is set (qda_uaccess_set_guarded()),
 * else through process_vm_readv() on our own pid, looping on partial transfers, which reports
 * a bad pointer as EFAULT instead of faulting.
 *
 * Return: 0, or -EFAULT if any byte of [@uaddr, @uaddr + @len) is not readable (then @dst
 * holds an unspecified prefix of the data).
 */
int qda_copy_from_user(void *dst, uint64_t uaddr, size_t len);

/**
 * qda_copy_to_user() - copy to a raw address of this process, never faulting
 * @uaddr: destination address; may be anything
 * @src: local source (must be valid for @len bytes)
 * @len: bytes; 0 always succeeds
 *
 * memcpy() into a range pinned writable by the calling thread, else the guarded copier when
 * one is set, else process_vm_writev() on our own pid (either way read-only pages fail, unlike
 * /proc/self/mem).
 *
 * Return: 0, or -EFAULT if any byte of the destination is not writable.
 */
int qda_copy_to_user(uint64_t uaddr, const void *src, size_t len);

/**
 * qda_uaccess_set_guarded() - a copier for the ranges nobody pinned, or NULL (the default)
 * @fn: copies @n bytes from @src to @dst and returns 0, or -EFAULT when a byte of either range
 *      faults, never crashing (the DSP runtime's qdarpc_guarded_copy: the kernel's exception
 *      table fixup, without a syscall)
 * @armed: 1 if @fn would catch a fault in the calling thread now, else 0 (the DSP runtime's
 *         qdarpc_guard_armed: its handlers still installed, the signals not blocked); NULL:
 *         always
 *
 * While one is set, qda_copy_from_user(), qda_copy_to_user() and the vectored copies use it for
 * every range not pinned, in place of process_vm_readv/writev and the pipe, whenever @armed
 * says so. @armed is asked once per outermost qda_uaccess_begin() scope of a thread (by its
 * first copy not pinned), again after each qda_uaccess_recheck() (the DSP's side calls it
 * around skel code), and for every copy made outside a scope.
 */
typedef int (*qda_guarded_copy_fn)(void *dst, const void *src, size_t n);
typedef int (*qda_guard_armed_fn)(void);
void qda_uaccess_set_guarded(qda_guarded_copy_fn fn, qda_guard_armed_fn armed);

/** qda_uaccess_guarded_count() - process-wide count of copies done by the guarded copier (a
 * part of qda_uaccess_stats()'s @checked). */
unsigned long long qda_uaccess_guarded_count(void);

/** qda_uaccess_guard_checks() - process-wide count of the guarded copier's @armed asked, and
 * (@refused) how many of those said no (the copies then took the syscalls). */
unsigned long long qda_uaccess_guard_checks(unsigned long long *refused);

/** qda_copy_from_user_checked(), qda_copy_to_user_checked() - the same copies, always through
 * process_vm_readv/writev whatever is pinned or set (the reference the fast path is tested
 * against). */
int qda_copy_from_user_checked(void *dst, uint64_t uaddr, size_t len);
int qda_copy_to_user_checked(uint64_t uaddr, const void *src, size_t len);

/** Most ranges one thread can have pinned at once (more are simply not pinned). */
#define QDA_UACCESS_PINS_MAX 600

/**
 * qda_uaccess_pin() - declare [@base, @base + @len) known-valid for the calling thread
 * @base: start of memory that stays mapped, readable (and writable if @writable) until the
 *        matching qda_uaccess_unpin(): e.g. a Py_buffer the caller holds
 * @len: bytes (0: nothing to pin)
 * @writable: nonzero if copies may also write into it
 *
 * Copies on this thread that lie wholly inside a pinned range use memcpy(); the result is
 * the same as the checked path would give for valid memory. Pinning memory that is not valid
 * for the whole time is a bug of the caller (the copy may then crash), so only pin what the
 * caller itself holds.
 *
 * Return: 0; -ENOSPC when QDA_UACCESS_PINS_MAX ranges are pinned (the range then takes the
 * checked path); -EINVAL if the range wraps.
 */
int qda_uaccess_pin(const void *base, size_t len, int writable);

/** qda_uaccess_pin_mark() - the calling thread's pin depth, for qda_uaccess_unpin(). */
size_t qda_uaccess_pin_mark(void);

/** qda_uaccess_unpin() - drop the calling thread's pins made since @mark was taken. */
void qda_uaccess_unpin(size_t mark);

/**
 * qda_uaccess_begin() - open a user-copy scope of the calling thread: what one emulated
 * syscall copies (an invoke's argument array, its buffers, its out-copies)
 *
 * The copies in a scope share one look at whether the guarded copier can be used, taken again
 * after skel code ran (qda_uaccess_recheck(): handlers a program installs while the skel runs
 * count for the copies back). Scopes nest: only the outermost one looks.
 *
 * Return: the pin mark, for qda_uaccess_end().
 */
size_t qda_uaccess_begin(void);

/** qda_uaccess_end() - close the scope qda_uaccess_begin() returned @mark for, and drop the
 * pins made since (qda_uaccess_unpin()). */
void qda_uaccess_end(size_t mark);

/** qda_uaccess_recheck() - the calling thread's next copy asks the guarded copier's @armed
 * again, whatever scope it is in: for the DSP's side, around each call of skel code (which may
 * change the signal handlers, and may make its own nested calls while it runs). */
void qda_uaccess_recheck(void);

/** qda_uaccess_pinned() - 1 if [@uaddr, @uaddr + @len) lies inside one range the calling
 * thread pinned (writable if @write), else 0 (also for @len 0). */
int qda_uaccess_pinned(uint64_t uaddr, size_t len, int write);

/** qda_uaccess_stats() - process-wide counts of copies done by memcpy() (pinned) and through
 * the checked path (process_vm_*, the pipe), for tests and benchmarks. */
void qda_uaccess_stats(unsigned long long *memcpys, unsigned long long *checked);

/**
 * struct qda_pin_api - the pin functions of the one copy of this code that the marshaller
 * uses (qda_core._marshal exports it as a capsule): another extension that links its own
 * uaccess.c must pin through these, since pins are per copy of the code and per thread.
 * @pin_view: pin a Py_buffer (a ``Py_buffer *``) if its exporter vouches for its memory
 *            (bytes, bytearray, array, writable anonymous mmap, numpy over those;
 *            not ctypes, nor a file's mapping: the file may shrink during the call);
 *            1 pinned, 0 not. Needs the GIL; never raises.
 * @vouches: 1 if pin_view() would pin that Py_buffer (copies of it may use qda_uaccess_held
 *           while it is held), 0 if not; pins nothing. Needs the GIL; never raises.
 * @copy_from_user: that copy's qda_copy_from_user() (its pins, its guarded copier).
 * @begin, @end: that copy's qda_uaccess_begin() and qda_uaccess_end().
 */
struct qda_pin_api {
	size_t (*mark)(void);
	int (*pin)(const void *base, size_t len, int writable);
	void (*unpin)(size_t mark);
	int (*pin_view)(void *view, int writable);
	int (*vouches)(void *view);
	int (*copy_from_user)(void *dst, uint64_t uaddr, size_t len);
	size_t (*begin)(void);
	void (*end)(size_t mark);
};

/**
 * struct qda_ucopy - one copy of a vectored user-memory transfer
 * @local: our side (destination of a read, source of a write)
 * @user: the user address
 * @len: bytes
 */
struct qda_ucopy {
	void *local;
	uint64_t user;
	size_t len;
};

/**
 * qda_copy_from_user_vec() - qda_copy_from_user() for each of @n copies, in order
 * @v: the copies
 * @n: number of copies
 * @bad: out: on failure, index of the first copy that faulted
 *
 * Small copies are batched through a private pipe (one writev() from the user ranges, one
 * readv() into ours: the kernel's copy_from_user() reports bad pointers as EFAULT), which
 * costs two syscalls for any number of buffers instead of one process_vm_readv() each. The
 * pipe is created on first use (or by qda_uaccess_prepare()), is close-on-exec, guarded by
 * a mutex and recreated after fork(). Large copies go through qda_copy_from_user(). Any
 * short transfer is retried through process_vm_readv() alone, so a fault is attributed to
 * the right copy. Copies before @bad are complete.
 *
 * Return: 0 or -EFAULT.
 */
int qda_copy_from_user_vec(const struct qda_ucopy *v, size_t n, size_t *bad);

/**
 * qda_copy_to_user_vec() - qda_copy_to_user() for each of @n copies, in order
 * @v: the copies (@local is read)
 * @n: number of copies
 * @bad: out: on failure, index of the first copy that faulted
 *
 * As qda_copy_from_user_vec() in the other direction (readv() into the user ranges).
 *
 * Return: 0 or -EFAULT.
 */
int qda_copy_to_user_vec(const struct qda_ucopy *v, size_t n, size_t *bad);

/**
 * qda_uaccess_prepare() - create the batching pipe now (e.g. at module import), so the
 * two descriptors do not appear in the middle of a caller's fd accounting
 *
 * Return: 0, or -errno if the pipe cannot be created (the vectored copies then fall back
 * to one process_vm_* call per copy).
 */
int qda_uaccess_prepare(void);

/** Size from which copies once asked qda_uaccess_range_ok() (its unit test still uses it). */
#define QDA_UACCESS_FAST_MIN ((size_t)4 << 20)

/**
 * qda_uaccess_range_ok() - whether [@uaddr, @uaddr + @len) is covered by private anonymous
 * mappings with the needed permission, per /proc/self/maps
 * @uaddr: start address
 * @len: bytes (> 0)
 * @write: nonzero to require write permission, else read permission
 *
 * A conservative test: anything it cannot prove (file mappings, special mappings, a maps
 * read error) answers 0. The copies above no longer use it (reading /proc/self/maps per copy
 * cost more than it saved once a process has many mappings); kept for callers that ask.
 *
 * Return: 1 if the range qualifies for memcpy(), else 0.
 */
int qda_uaccess_range_ok(uint64_t uaddr, size_t len, int write);

#ifdef __cplusplus
}
#endif

#endif /* QDARPC_UACCESS_H */
