/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * marshal.h - the kernel's invoke marshalling (drivers/misc/fastrpc.c get_args/put_args; the
 * QDA RFC is identical) and the DSP-side decode of the resulting payload.
 *
 * Inputs are raw little-endian records exactly as they cross the uapi:
 *   args: N x struct fastrpc_invoke_args (24 B: u64 ptr, u64 length, s32 fd, u32 attr)
 *   refs: N x struct qda_marshal_ref (16 B: u64 addr, u64 size), filled by the driver:
 *         for a buffer, size != 0 means "by reference" (addr = pages[i].addr to use) and
 *         size == 0 means "copy inline"; for a handle, (addr, size) go to pages[i] verbatim.
 * The core never interprets fd (the legacy and QDA drivers differ on which fds map).
 * Records need no alignment. Nothing here allocates; all functions return 0 or -errno.
 *
 * Payload layout for N = REMOTE_SCALARS_LENGTH(sc) is in fastrpc_wire.h; metalen = 40N + 384.
 *
 * Overlap order: buffers are sorted by start ascending, then end descending (as the kernel's
 * olaps_cmp), then by argument index ascending. The kernel's heapsort is unstable, so for
 * exact-duplicate ranges its order is arbitrary; ours is the deterministic index order.
 */
#ifndef QDARPC_MARSHAL_H
#define QDARPC_MARSHAL_H

#include <stddef.h>
#include <stdint.h>

#include "qdarpc/fastrpc_wire.h"
#include "qdarpc/remote_abi.h"
#include "qdarpc/uaccess.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QDA_ARG_SIZE 24u  /* struct fastrpc_invoke_args */
#define QDA_REF_SIZE 16u  /* struct qda_marshal_ref */

/**
 * struct qda_marshal_ref - what the driver resolved for one argument (16 B record)
 * @addr: buffer: device address for pages[i] of a by-reference buffer; handle: map address
 * @size: buffer: nonzero = by reference, 0 = copy inline; handle: map size
 */
struct qda_marshal_ref {
	uint64_t addr;
	uint64_t size;
};

/**
 * struct qda_olap - one buffer in overlap order (the kernel's struct fastrpc_buf_overlap)
 * @start: ptr
 * @end: ptr + length
 * @mstart: start of the part not covered by earlier buffers (0 when fully covered)
 * @mend: end of that part (0 when fully covered)
 * @offset: bytes between @start and the running max end when it overlaps, else 0
 * @raix: argument index
 */
struct qda_olap {
	uint64_t start;
	uint64_t end;
	uint64_t mstart;
	uint64_t mend;
	uint64_t offset;
	uint32_t raix;
};

/**
 * struct qda_marshal_status - where an error came from (optional out-parameter)
 * @arg: offending argument index, or -1 when not tied to one argument
 * @why: static description of the problem (never NULL after a failure, "" on success)
 */
struct qda_marshal_status {
	int arg;
	const char *why;
};

/**
 * struct qda_dec_buf - a buffer argument as the DSP sees it
 * @addr: device address: pages[pgidx].addr + (rpra.buf.pv & 0xfff); 0 when list.num == 0
 * @len: rpra.buf.len; 0 when list.num == 0
 */
struct qda_dec_buf {
	uint64_t addr;
	uint64_t len;
};

/**
 * struct qda_dec_handle - a handle argument as the DSP sees it
 * @fd: rpra.dma.fd (dma-buf fd on legacy, GEM handle on QDA)
 * @offset: rpra.dma.offset
 * @len: rpra.dma.len
 * @map_addr: pages[pgidx].addr
 * @map_size: pages[pgidx].size
 */
struct qda_dec_handle {
	int32_t fd;
	uint32_t offset;
	uint32_t len;
	uint64_t map_addr;
	uint64_t map_size;
};

/**
 * qda_metadata_size() - bytes of payload metadata for @n arguments
 * @n: REMOTE_SCALARS_LENGTH(sc)
 *
 * Return: 40 * @n + 384.
 */
uint64_t qda_metadata_size(uint32_t n);

/**
 * qda_plan() - validate the descriptors, compute the overlap order and the payload size
 * @sc: scalars word
 * @args: N uapi descriptors (24 B each)
 * @args_len: bytes at @args (must be >= 24N)
 * @refs: N driver records (16 B each)
 * @refs_len: bytes at @refs (must be >= 16N)
 * @olaps: caller scratch of REMOTE_SCALARS_MAX_LENGTH entries; on success its first
 *         inbufs+outbufs entries are the buffers in overlap order
 * @pkt_size: out: payload size (the kernel's fastrpc_get_payload_size())
 * @st: optional error location
 *
 * Checks, in argument order: ptr + length overflowing u64 -> -EFAULT; an inline buffer with
 * length > 0 and ptr 0 -> -EFAULT. A size overflowing u64 -> -ENOMEM.
 *
 * Return: 0, -EINVAL (short @args/@refs), -EFAULT, or -ENOMEM.
 */
int qda_plan(uint32_t sc, const void *args, size_t args_len, const void *refs, size_t refs_len,
	     struct qda_olap *olaps, uint64_t *pkt_size, struct qda_marshal_status *st);

/**
 * qda_payload_size() - qda_plan() without exposing the overlap order
 * @sc: scalars word
 * @args: N uapi descriptors
 * @args_len: bytes at @args
 * @refs: N driver records
 * @refs_len: bytes at @refs
 * @pkt_size: out: payload size
 * @st: optional error location
 *
 * Return: as qda_plan().
 */
int qda_payload_size(uint32_t sc, const void *args, size_t args_len, const void *refs,
		     size_t refs_len, uint64_t *pkt_size, struct qda_marshal_status *st);

/**
 * qda_pack() - build the invoke payload (the kernel's fastrpc_get_args())
 * @sc: scalars word
 * @args: N uapi descriptors
 * @args_len: bytes at @args
 * @refs: N driver records
 * @refs_len: bytes at @refs
 * @payload: the payload buffer (the caller zeroes it, as the kernel does)
 * @payload_len: bytes at @payload (must be >= the plan's size, else -EINVAL)
 * @payload_va: "kernel VA" of @payload, written into rpra[].buf.pv of inline buffers
 * @payload_dev: device address of @payload, used for pages[] of inline buffers
 * @ua: user-memory accessors (NULL = &qda_uaccess_self)
 * @pkt_size: optional out: payload size
 * @st: optional error location
 *
 * Zeroes the first pkt_size bytes (like the kernel's fresh coherent buffer: inline out-buffers
 * reach the DSP as zeros), writes the whole metadata block (rpra, list, pages, fdlist and
 * crclist) and copies inline in-buffers from user memory; the in-buffer copies run after the
 * metadata is written, in overlap order
 * (batched when @ua is &qda_uaccess_self). An in-buffer copy that would land outside the
 * data area [metalen, pkt_size) fails with -EFAULT: that happens only when a by-reference
 * buffer overlaps a later inline one, where the kernel (which offsets from the by-reference
 * buffer's end) would overwrite its own metadata or memory before its buffer. On failure
 * the payload contents are unspecified.
 *
 * Return: 0, or the errors of qda_plan(), -EINVAL (payload too small), -EFAULT (copy).
 */
int qda_pack(uint32_t sc, const void *args, size_t args_len, const void *refs, size_t refs_len,
	     void *payload, size_t payload_len, uint64_t payload_va, uint64_t payload_dev,
	     const struct qda_uaccess *ua, uint64_t *pkt_size, struct qda_marshal_status *st);

/**
 * qda_pack_planned() - qda_pack() with the plan qda_plan() made of the same descriptors
 * @sc: scalars word
 * @args: N uapi descriptors, as given to qda_plan()
 * @refs: N driver records, as given to qda_plan()
 * @olaps: the overlap order qda_plan() filled
 * @pkt_size: the payload size qda_plan() returned
 * @payload: the payload buffer
 * @payload_len: bytes at @payload (must be >= @pkt_size, else -EINVAL)
 * @payload_va: as for qda_pack()
 * @payload_dev: as for qda_pack()
 * @ua: as for qda_pack()
 * @st: optional error location
 *
 * For a caller that sizes the payload first (qda_plan()), then allocates it: the descriptors
 * are planned once. @args and @refs must be unchanged since the plan.
 *
 * Return: 0, -EINVAL (payload too small), -EFAULT (copy).
 */
int qda_pack_planned(uint32_t sc, const void *args, const void *refs, const struct qda_olap *olaps,
		     uint64_t pkt_size, void *payload, size_t payload_len, uint64_t payload_va,
		     uint64_t payload_dev, const struct qda_uaccess *ua, struct qda_marshal_status *st);

/**
 * qda_unpack() - copy inline out-buffers back after the reply (the kernel's fastrpc_put_args())
 * @sc: scalars word
 * @args: N uapi descriptors
 * @args_len: bytes at @args
 * @refs: N driver records
 * @refs_len: bytes at @refs
 * @payload: the payload after the DSP wrote its results
 * @payload_len: bytes at @payload (>= metalen, else -EINVAL)
 * @payload_va: the value given to qda_pack()
 * @ua: user-memory accessors (NULL = &qda_uaccess_self)
 * @fdlist: out: the payload's fdlist entries before the first 0
 * @st: optional error location
 *
 * For each inline out-buffer in index order, reads rpra[i].buf.{pv,len} from the payload
 * (the DSP may have changed them) and copies len bytes from payload offset pv - @payload_va
 * to args[i].ptr. len 0 copies nothing; len > args[i].length or a source outside the
 * payload -> -EFAULT (the kernel does not check; we must not read out of bounds). All
 * entries are validated before the first copy, so a rejected reply writes no user memory;
 * a faulting user pointer stops the copies there (earlier ones are done).
 *
 * Return: number of fdlist entries (0..16), or -EINVAL / -EFAULT.
 */
int qda_unpack(uint32_t sc, const void *args, size_t args_len, const void *refs,
	       size_t refs_len, const void *payload, size_t payload_len, uint64_t payload_va,
	       const struct qda_uaccess *ua, uint64_t fdlist[FASTRPC_MAX_FDLIST],
	       struct qda_marshal_status *st);

/**
 * qda_decode() - the DSP's view of an invoke payload
 * @sc: scalars word
 * @payload: payload bytes (any contents)
 * @payload_len: bytes at @payload
 * @bufs: out: inbufs + outbufs entries
 * @bufs_cap: entries available at @bufs
 * @handles: out: inhandles + outhandles entries
 * @handles_cap: entries available at @handles
 * @st: optional error location
 *
 * Every list[i] is checked (num <= 1 and pgidx < N, whatever num is). Reads nothing outside
 * [@payload, @payload + @payload_len).
 *
 * Return: 0; -EINVAL if @payload_len < metalen or a list entry is invalid; -ENOSPC if the
 * output arrays are too small.
 */
int qda_decode(uint32_t sc, const void *payload, size_t payload_len, struct qda_dec_buf *bufs,
	       size_t bufs_cap, struct qda_dec_handle *handles, size_t handles_cap,
	       struct qda_marshal_status *st);

#ifdef __cplusplus
}
#endif

#endif /* QDARPC_MARSHAL_H */
