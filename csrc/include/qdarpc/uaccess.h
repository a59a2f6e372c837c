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
 * qda_copy_from_user() - copy from a raw address of this process, never faulting
 * @dst: local destination (must be valid for @len bytes)
 * @uaddr: source address; may be anything, including unmapped or PROT_NONE memory
 * @len: bytes; 0 always succeeds
 *
 * Uses process_vm_readv() on our own pid, looping on partial transfers. Copies of at least
 * QDA_UACCESS_FAST_MIN bytes whose source lies entirely in private anonymous mappings with
 * read permission (checked against /proc/self/maps) use memcpy() instead, which is faster;
 * that check cannot see a concurrent munmap() by another thread, so a caller that frees the
 * memory while the copy runs may crash just as it would with any native copy.
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
 * process_vm_writev() on our own pid (so read-only pages fail, unlike /proc/self/mem), with
 * the same memcpy() fast path as qda_copy_from_user() for large copies into writable
 * private anonymous memory.
 *
 * Return: 0, or -EFAULT if any byte of the destination is not writable.
 */
int qda_copy_to_user(uint64_t uaddr, const void *src, size_t len);

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

/** Smallest copy that may take the validated memcpy() fast path (bytes). */
#define QDA_UACCESS_FAST_MIN ((size_t)4 << 20)

/**
 * qda_uaccess_range_ok() - whether [@uaddr, @uaddr + @len) is covered by private anonymous
 * mappings with the needed permission, per /proc/self/maps
 * @uaddr: start address
 * @len: bytes (> 0)
 * @write: nonzero to require write permission, else read permission
 *
 * A conservative test: anything it cannot prove (file mappings, special mappings, a maps
 * read error) answers 0, and the caller then uses the always-safe syscall path.
 *
 * Return: 1 if the range qualifies for memcpy(), else 0.
 */
int qda_uaccess_range_ok(uint64_t uaddr, size_t len, int write);

#ifdef __cplusplus
}
#endif

#endif /* QDARPC_UACCESS_H */
