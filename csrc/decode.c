/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * decode.c - the DSP's reading of an invoke payload: where each buffer argument lives in
 * device address space and what each handle carries. The payload is untrusted bytes, so
 * every index is checked before use.
 */
#include <errno.h>

#include "marshal_internal.h"

int qda_decode(uint32_t sc, const void *payload_, size_t payload_len, struct qda_dec_buf *bufs,
	       size_t bufs_cap, struct qda_dec_handle *handles, size_t handles_cap,
	       struct qda_marshal_status *st)
{
	const uint8_t *payload = payload_, *rpra, *list, *pages;
	uint32_t n = REMOTE_SCALARS_LENGTH(sc);
	uint32_t nbufs = REMOTE_SCALARS_INBUFS(sc) + REMOTE_SCALARS_OUTBUFS(sc);
	uint32_t i;

	if (payload_len < qda_metadata_size(n))
		return fail(st, -EINVAL, -1, "payload is shorter than its metadata");
	if (bufs_cap < nbufs || handles_cap < n - nbufs)
		return fail(st, -ENOSPC, -1, "output arrays are too small");
	rpra = payload;
	list = payload + 16 * (size_t)n;
	pages = payload + 24 * (size_t)n;

	for (i = 0; i < n; i++) {
		uint32_t num = ld32(list + 8 * (size_t)i);
		uint32_t pgidx = ld32(list + 8 * (size_t)i + 4);
		const uint8_t *ra = rpra + 16 * (size_t)i;
		const uint8_t *pg;

		if (num > 1)
			return fail(st, -EINVAL, (int)i, "page list has more than one entry");
		if (pgidx >= n)
			return fail(st, -EINVAL, (int)i, "page index out of range");
		pg = pages + 16 * (size_t)pgidx;
		if (i < nbufs) {
			if (num) {
				/* the DSP rebuilds the address from the page and pv's page offset */
				bufs[i].addr = ld64(pg) + (ld64(ra) & (FASTRPC_PAGE_SIZE - 1));
				bufs[i].len = ld64(ra + 8);
			} else {
				bufs[i].addr = 0;
				bufs[i].len = 0;
			}
		} else {
			struct qda_dec_handle *h = &handles[i - nbufs];

			h->fd = (int32_t)ld32(ra);
			h->offset = ld32(ra + 4);
			h->len = ld32(ra + 8);
			h->map_addr = ld64(pg);
			h->map_size = ld64(pg + 8);
		}
	}
	if (st) {
		st->arg = -1;
		st->why = "";
	}
	return 0;
}
