/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * remote_abi.h - the FastRPC user ABI subset qdarpc mirrors: scalars word, remote_arg types.
 *
 * Layouts follow qualcomm/fastrpc inc/remote.h (LP64); see
 * docs/spec/legacy_fastrpc_api.md §2.
 */
#ifndef QDARPC_REMOTE_ABI_H
#define QDARPC_REMOTE_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef uint32_t remote_handle;
typedef uint64_t remote_handle64;

/**
 * struct remote_buf - a buffer argument
 * @pv: start of the buffer in the caller's address space
 * @nLen: length in bytes
 */
typedef struct {
	void *pv;
	size_t nLen;
} remote_buf;

/**
 * struct remote_dma_handle - a dma-buf handle argument
 * @fd: dma-buf file descriptor
 * @offset: offset into the buffer
 */
typedef struct {
	int32_t fd;
	uint32_t offset;
} remote_dma_handle;

/** union remote_arg - one entry of the pra[] array: [inbufs, outbufs, inhandles, outhandles] */
typedef union {
	remote_buf buf;
	remote_handle h;
	remote_handle64 h64;
	remote_dma_handle dma;
} remote_arg;

/*
 * The scalars word: attr[31:29] method[28:24] inbufs[23:16] outbufs[15:8]
 * inhandles[7:4] outhandles[3:0].
 */
#define REMOTE_SCALARS_METHOD_ATTR(sc) (((sc) >> 29) & 0x7)
#define REMOTE_SCALARS_METHOD(sc)      (((sc) >> 24) & 0x1f)
#define REMOTE_SCALARS_INBUFS(sc)      (((sc) >> 16) & 0xff)
#define REMOTE_SCALARS_OUTBUFS(sc)     (((sc) >> 8) & 0xff)
#define REMOTE_SCALARS_INHANDLES(sc)   (((sc) >> 4) & 0x0f)
#define REMOTE_SCALARS_OUTHANDLES(sc)  ((sc) & 0x0f)
#define REMOTE_SCALARS_LENGTH(sc) \
	(REMOTE_SCALARS_INBUFS(sc) + REMOTE_SCALARS_OUTBUFS(sc) + \
	 REMOTE_SCALARS_INHANDLES(sc) + REMOTE_SCALARS_OUTHANDLES(sc))
#define REMOTE_SCALARS_MAKEX(attr, method, nin, nout, noin, noout) \
	((((uint32_t)(attr) & 0x7) << 29) | (((uint32_t)(method) & 0x1f) << 24) | \
	 (((uint32_t)(nin) & 0xff) << 16) | (((uint32_t)(nout) & 0xff) << 8) | \
	 (((uint32_t)(noin) & 0x0f) << 4) | ((uint32_t)(noout) & 0x0f))
#define REMOTE_SCALARS_MAKE(method, nin, nout) REMOTE_SCALARS_MAKEX(0, method, nin, nout, 0, 0)

/** Largest REMOTE_SCALARS_LENGTH(): 255 + 255 + 15 + 15. */
#define REMOTE_SCALARS_MAX_LENGTH 540

#endif /* QDARPC_REMOTE_ABI_H */
