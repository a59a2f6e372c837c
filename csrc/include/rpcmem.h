/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * rpcmem.h - shared-memory allocation for FastRPC buffers (zero copy to the DSP).
 *
 * Mirrors qualcomm/fastrpc inc/rpcmem.h (development branch), written from its facts; behaviour
 * in docs/spec/legacy_fastrpc_api.md §4.11. Values shared with Python live in
 * libadsprpc_compat/constants.py; tests/test_sdk_headers.py keeps the two equal.
 * The library ignores heap ids and flags (as upstream on Linux): every buffer is a dma-buf.
 */
#ifndef RPCMEM_H
#define RPCMEM_H

#include <stddef.h>
#include <stdint.h>

/* Cached memory; follows ION_FLAG_CACHED where an ION header defines it. */
#ifdef ION_FLAG_CACHED
#define RPCMEM_DEFAULT_FLAGS ION_FLAG_CACHED
#else
#define RPCMEM_DEFAULT_FLAGS 1
#endif

/* Premap the buffer into every current and future session (errors ignored). */
#define RPCMEM_TRY_MAP_STATIC 0x04000000

/* Heap ids (ION heaps on Android). */
enum rpc_heap_ids {
	RPCMEM_HEAP_ID_SECURE = 9,
	RPCMEM_HEAP_ID_SYSTEM_CONTIG = 21, /* older SDK rpcmem.h; upstream dropped it */
	RPCMEM_HEAP_ID_CONTIG = 22,
	RPCMEM_HEAP_ID_SYSTEM = 25,        /* the one to use */
};

#define RPCMEM_FLAG_UNCACHED 0
#define RPCMEM_FLAG_CACHED   RPCMEM_DEFAULT_FLAGS

#ifdef __cplusplus
extern "C" {
#endif

/* Optional: the library initialises itself on first use. Not thread safe. */
void rpcmem_init(void);
void rpcmem_deinit(void);

/* A buffer of size bytes (< 2 GiB), or NULL. */
void *rpcmem_alloc(int heapid, uint32_t flags, int size);
/* The same for any size_t. */
void *rpcmem_alloc2(int heapid, uint32_t flags, size_t size);
/* Ignores pointers rpcmem_alloc did not return. */
void rpcmem_free(void *po);
/* The buffer's dma-buf fd, or -1 if po is not the start of an rpcmem buffer. */
int rpcmem_to_fd(void *po);

/* A buffer from the system heap with the default flags. */
__attribute__((unused))
static __inline void *rpcmem_alloc_def(int size)
{
	return rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, size);
}

#ifdef __cplusplus
}
#endif

/* Deprecated upstream; kept so that old code builds. */
#define RPCMEM_DEFAULT_HEAP       -1
#define RPCMEM_HEAP_DEFAULT       0x80000000
#define RPCMEM_HEAP_NOREG         0x40000000
#define RPCMEM_HEAP_UNCACHED      0x20000000
#define RPCMEM_HEAP_NOVA          0x10000000
#define RPCMEM_HEAP_NONCOHERENT   0x08000000
#define RPCMEM_FORCE_NOINVALIDATE 0x02000000
#define RPCMEM_FORCE_NOFLUSH      0x01000000
/* ION's secure flags (bits 31 and 19); libion's own macro wins where it exists. */
#ifndef ION_SECURE_FLAGS
#define ION_SECURE_FLAGS ((1u << 31) | (1u << 19))
#endif

#endif /* RPCMEM_H */
