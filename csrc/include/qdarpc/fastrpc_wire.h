/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fastrpc_wire.h - what crosses the kernel <-> DSP transport, as in drivers/misc/fastrpc.c
 * and the QDA RFC (drivers/accel/qda). All structures are little-endian, naturally aligned.
 *
 * Invoke payload ("metadata" then inline data), for N = REMOTE_SCALARS_LENGTH(sc):
 *
 *   offset 0      union fastrpc_remote_arg rpra[N]     16 B each
 *   offset 16N    struct fastrpc_invoke_buf list[N]    8 B each
 *   offset 24N    struct fastrpc_phy_page pages[N]     16 B each
 *   offset 40N    u64 fdlist[FASTRPC_MAX_FDLIST]       filled by the DSP: maps to drop
 *   offset 40N+128 u32 crclist[FASTRPC_MAX_CRCLIST]
 *   metalen = 40N + 384; inline buffers follow, each copied region 128-byte aligned.
 */
#ifndef QDARPC_FASTRPC_WIRE_H
#define QDARPC_FASTRPC_WIRE_H

#include <stdint.h>

#define FASTRPC_ALIGN        128
#define FASTRPC_MAX_FDLIST   16
#define FASTRPC_MAX_CRCLIST  64
#define FASTRPC_PAGE_SIZE    4096u
#define FASTRPC_PAGE_MASK    (~(uint64_t)(FASTRPC_PAGE_SIZE - 1))

#define FASTRPC_INIT_HANDLE  1  /* kernel-reserved handle of the init/process methods */
#define FASTRPC_DSP_UTILITIES_HANDLE 2

/* Methods of FASTRPC_INIT_HANDLE. */
#define FASTRPC_RMID_INIT_ATTACH        0
#define FASTRPC_RMID_INIT_RELEASE       1
#define FASTRPC_RMID_INIT_MMAP          4
#define FASTRPC_RMID_INIT_MUNMAP        5
#define FASTRPC_RMID_INIT_CREATE        6
#define FASTRPC_RMID_INIT_CREATE_ATTR   7
#define FASTRPC_RMID_INIT_CREATE_STATIC 8
#define FASTRPC_RMID_INIT_MEM_MAP       10
#define FASTRPC_RMID_INIT_MEM_UNMAP     11

/* Protection-domain tag in the low 4 bits of the message ctx. */
#define FASTRPC_ROOT_PD    0
#define FASTRPC_USER_PD    1
#define FASTRPC_SENSORS_PD 2

/**
 * struct fastrpc_buf_arg - remote arg of a buffer
 * @pv: buffer address (kernel VA of the inline copy, or the user VA of a mapped buffer)
 * @len: length in bytes
 */
struct fastrpc_buf_arg {
	uint64_t pv;
	uint64_t len;
};

/**
 * struct fastrpc_dma_arg - remote arg of a handle
 * @fd: the buffer identity the DSP sees (dma-buf fd on legacy, GEM handle on QDA)
 * @offset: offset into the buffer (the descriptor's ptr field)
 * @len: length in bytes
 */
struct fastrpc_dma_arg {
	int32_t fd;
	uint32_t offset;
	uint32_t len;
};

union fastrpc_remote_arg {
	struct fastrpc_buf_arg buf;
	struct fastrpc_dma_arg dma;
};

/**
 * struct fastrpc_invoke_buf - page list of one argument
 * @num: number of pages entries (1 when the argument has a length, else 0)
 * @pgidx: index into pages[] (the argument's own index)
 */
struct fastrpc_invoke_buf {
	uint32_t num;
	uint32_t pgidx;
};

/**
 * struct fastrpc_phy_page - a device-address range
 * @addr: device address (IOVA with the context bank SID in bits 63..32)
 * @size: bytes
 */
struct fastrpc_phy_page {
	uint64_t addr;
	uint64_t size;
};

/**
 * struct fastrpc_invoke_args - the user's per-argument descriptor (ioctl uapi, 24 B)
 * @ptr: user VA of a buffer, or the offset of a dma handle
 * @length: bytes
 * @fd: buffer identity: dma-buf fd (legacy) or GEM handle (QDA RFC); <= 0 means copy inline
 * @attr: FASTRPC_ATTR_* bits (ignored by both kernels)
 */
struct fastrpc_invoke_args {
	uint64_t ptr;
	uint64_t length;
	int32_t fd;
	uint32_t attr;
};

/**
 * struct fastrpc_msg - kernel -> DSP request (40 B)
 * @client_id: per-open process id (0 on kernel-originated handle-1 messages on QDA)
 * @tid: caller thread id
 * @ctx: (context id << 4) | pd
 * @handle: remote handle
 * @sc: scalars
 * @addr: device address of the payload
 * @size: payload size rounded up to a page
 */
struct fastrpc_msg {
	int32_t client_id;
	int32_t tid;
	uint64_t ctx;
	uint32_t handle;
	uint32_t sc;
	uint64_t addr;
	uint64_t size;
};

/**
 * struct fastrpc_invoke_rsp - DSP -> kernel reply (16 B)
 * @ctx: the request's ctx
 * @retval: the remote method's return value, passed to user space verbatim
 */
struct fastrpc_invoke_rsp {
	uint64_t ctx;
	int32_t retval;
};

#endif /* QDARPC_FASTRPC_WIRE_H */
