/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * marshal_internal.h - helpers shared by marshal.c (host side) and decode.c (DSP side).
 * Not an ABI header: it lives beside the sources, not under include/.
 */
#ifndef QDARPC_MARSHAL_INTERNAL_H
#define QDARPC_MARSHAL_INTERNAL_H

#include <stdint.h>

#include "qdarpc/marshal.h"

/* Little-endian loads/stores on unaligned bytes (compile to plain moves on LE hosts). */
static inline uint64_t ld64(const uint8_t *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Record which argument failed and why; returns @err (a negative errno) for tail calls. */
static inline int fail(struct qda_marshal_status *st, int err, int arg, const char *why)
{
	if (st) {
		st->arg = arg;
		st->why = why;
	}
	return err;
}

#endif /* QDARPC_MARSHAL_INTERNAL_H */
