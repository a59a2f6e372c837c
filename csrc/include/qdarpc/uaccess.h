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
