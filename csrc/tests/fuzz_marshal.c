/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_marshal.c - deterministic fuzzing of qda_decode() and qda_plan()/qda_pack()/qda_unpack().
 *
 *   fuzz_marshal [iterations [seed]]
 *
 * Payloads are heap-allocated at their exact size so ASan sees any out-of-bounds access.
 * User memory is simulated by a substitute struct qda_uaccess over a synthetic address
 * range: "user byte at address a" is a function of a, so aliasing can be checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdarpc/marshal.h"

#define VA  0x7f0000000000ull
#define DEV 0x300000000ull
#define UBASE 0x10000000ull	/* synthetic user arena */
#define USPAN 0x40000ull

static uint64_t rng;
static unsigned long n_decoded, n_planned, n_checked, n_unpacked;

static uint64_t next(void)
{
	/* splitmix64 */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return n ? next() % n : 0;
}

static void die(const char *what, unsigned long iter)
{
	fprintf(stderr, "fuzz_marshal: iteration %lu: %s\n", iter, what);
	exit(1);
}

static uint8_t user_byte(uint64_t a)
{
	return (uint8_t)(a * 131 + (a >> 8));
}

/* Fake user memory: readable iff inside the synthetic arena, with content user_byte(). */
static int fake_from(void *ctx, void *dst, uint64_t src, size_t n)
{
	uint8_t *d = dst;
	size_t k;

	(void)ctx;
	if (src < UBASE || src - UBASE > USPAN || n > USPAN - (src - UBASE))
		return -EFAULT;
	for (k = 0; k < n; k++)
		d[k] = user_byte(src + k);
	return 0;
}

struct out_window {
	const uint8_t *args;	/* the descriptors: writes must land inside an out-buffer */
	uint32_t nin, nbufs;
	unsigned long bytes;
};

static int fake_to(void *ctx, uint64_t dst, const void *src, size_t n)
{
	struct out_window *w = ctx;
	const volatile uint8_t *s = src;
	uint32_t i;
	size_t k;

	for (i = w->nin; i < w->nbufs; i++) {
		struct fastrpc_invoke_args d;

		memcpy(&d, w->args + 24 * (size_t)i, 24);
		if (dst >= d.ptr && n <= d.length && dst - d.ptr <= d.length - n)
			break;
	}
	if (i == w->nbufs)
		return -EFAULT;
	for (k = 0; k < n; k++)	/* touch every source byte so ASan checks the range */
		w->bytes += s[k];
	return 0;
}

static void fuzz_decode(unsigned long iter)
{
	uint32_t sc = (uint32_t)next();
	uint32_t n, nbufs, i;
	size_t len, meta;
	uint8_t *p;
	struct qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH];
	struct qda_dec_handle hs[30];
	int ret;

	if (below(2))	/* keep N small half the time so payloads stay cheap */
		sc &= 0xff0f0f33u;
	n = REMOTE_SCALARS_LENGTH(sc);
	nbufs = REMOTE_SCALARS_INBUFS(sc) + REMOTE_SCALARS_OUTBUFS(sc);
	meta = (size_t)qda_metadata_size(n);
	len = below(4) ? meta + below(256) : below(meta + 1);
	p = malloc(len ? len : 1);
	if (!p)
		die("out of memory", iter);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)next();
	/* mostly-valid list entries so decoding gets past the checks */
	if (len >= meta && below(4)) {
		for (i = 0; i < n; i++) {
			uint32_t e[2] = { (uint32_t)below(2), (uint32_t)below(n) };

			if (!below(64))
				e[below(2)] = (uint32_t)next();
			memcpy(p + 16 * (size_t)n + 8 * i, e, 8);
		}
	}
	ret = qda_decode(sc, p, len, bufs, REMOTE_SCALARS_MAX_LENGTH, hs, 30, NULL);
	if (ret != 0 && ret != -EINVAL)
		die("decode returned an unexpected error", iter);
	if (len < meta && ret != -EINVAL)
		die("decode accepted a short payload", iter);
	if (ret == 0) {	/* num == 0 entries must decode as empty */
		n_decoded++;
		for (i = 0; i < nbufs; i++) {
			uint32_t num;

			memcpy(&num, p + 16 * (size_t)n + 8 * i, 4);
			if (!num && (bufs[i].addr || bufs[i].len))
				die("empty buffer decoded with contents", iter);
		}
	}
	free(p);
}

static uint64_t align128(uint64_t v)
{
	return (v + 127) & ~127ull;
}

static void fuzz_plan_pack(unsigned long iter)
{
	static uint8_t args[24 * REMOTE_SCALARS_MAX_LENGTH], refs[16 * REMOTE_SCALARS_MAX_LENGTH];
	struct qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH];
	struct qda_dec_buf bufs[REMOTE_SCALARS_MAX_LENGTH];
	struct qda_dec_handle hs[30];
	struct qda_uaccess ua;
	struct out_window w = { args, 0, 0, 0 };
	uint32_t nin = (uint32_t)(below(8) ? below(6) : below(256));
	uint32_t nout = (uint32_t)(below(8) ? below(6) : below(256));
	uint32_t nih = (uint32_t)below(16), noh = (uint32_t)below(16);
	uint32_t sc = REMOTE_SCALARS_MAKEX(0, below(32), nin, nout, nih, noh);
	uint32_t n = REMOTE_SCALARS_LENGTH(sc), nbufs = nin + nout, i;
	uint64_t size, check, max_end = 0, fds[FASTRPC_MAX_FDLIST];
	int any_ref = 0, lied = 0, wild = 0, ret;
	size_t arglen = 24 * (size_t)n, reflen = 16 * (size_t)n;
	uint8_t *payload;

	for (i = 0; i < n; i++) {
		struct fastrpc_invoke_args d;
		struct qda_marshal_ref r = { 0, 0 };

		d.ptr = UBASE + below(USPAN / 2);
		d.length = below(4) ? below(64) : below(USPAN / 4);
		d.fd = -1;
		d.attr = 0;
		if (!below(16))
			d.length = 0;
		if (!below(200)) {	/* invalid pointers: pack may then fail with -EFAULT */
			d.ptr = below(3) ? 0 : UINT64_MAX - below(64);
			wild = 1;
		}
		if (!below(300))
			d.length = UINT64_MAX - below(64);
		if (i >= nbufs || !below(5)) {
			r.addr = next();
			r.size = i >= nbufs ? next() : 1 + below(1u << 20);
			d.fd = (int32_t)below(100);
			if (i < nbufs)
				any_ref = 1;
		}
		memcpy(args + 24 * (size_t)i, &d, 24);
		memcpy(refs + 16 * (size_t)i, &r, 16);
	}
	if (!below(100))
		arglen -= 1 + below(24);

	ret = qda_plan(sc, args, arglen, refs, reflen, olaps, &size, NULL);
	if (ret == -EINVAL || ret == -EFAULT || ret == -ENOMEM)
		return;
	if (ret != 0)
		die("plan returned an unexpected error", iter);

	/* invariants of the overlap plan, and an independent recomputation of the size */
	check = align128(qda_metadata_size(n));
	for (i = 0; i < nbufs; i++) {
		const struct qda_olap *o = &olaps[i];
		struct qda_marshal_ref r;

		if (i && !(olaps[i - 1].start < o->start ||
			   (olaps[i - 1].start == o->start &&
			    (olaps[i - 1].end > o->end ||
			     (olaps[i - 1].end == o->end && olaps[i - 1].raix < o->raix)))))
			die("overlap order broken", iter);
		if (o->mstart > o->mend || (o->offset && o->offset != max_end - o->start))
			die("overlap entry inconsistent", iter);
		if (o->end > max_end)
			max_end = o->end;
		memcpy(&r, refs + 16 * (size_t)o->raix, 16);
		if (!r.size) {
			if (!o->offset)
				check = align128(check);
			check += o->mend - o->mstart;
		}
	}
	if (check != size)
		die("payload size mismatch", iter);
	n_planned++;
	if (size > (64u << 20))
		return;

	payload = calloc(1, size);
	if (!payload)
		die("out of memory", iter);
	ua.from = fake_from;
	ua.to = fake_to;
	ua.ctx = &w;
	if (size > 0 && qda_pack(sc, args, arglen, refs, reflen, payload, size - 1, VA, DEV, &ua,
				 NULL, NULL) != -EINVAL)
		die("pack into a short payload did not fail", iter);
	ret = qda_pack(sc, args, arglen, refs, reflen, payload, size, VA, DEV, &ua, NULL, NULL);
	if (ret == -EFAULT && (any_ref || wild)) {
		free(payload);
		return;	/* a wild pointer, or a by-ref buffer pushed an inline copy out */
	}
	if (ret != 0)
		die("pack failed", iter);
	{	/* with the plan made above (qda_pack_planned): the same payload */
		uint8_t *again = malloc(size ? size : 1);

		if (!again)
			die("out of memory", iter);
		if (size > 0 && qda_pack_planned(sc, args, refs, olaps, size, again, size - 1, VA, DEV, &ua,
						 NULL) != -EINVAL)
			die("planned pack into a short payload did not fail", iter);
		if (qda_pack_planned(sc, args, refs, olaps, size, again, size, VA, DEV, &ua, NULL) != 0 ||
		    (size && memcmp(again, payload, size) != 0))
			die("planned pack differs from qda_pack", iter);
		free(again);
	}

	if (qda_decode(sc, payload, size, bufs, REMOTE_SCALARS_MAX_LENGTH, hs, 30, NULL) != 0)
		die("decode of a packed payload failed", iter);
	n_checked++;
	for (i = 0; i < n; i++) {
		struct fastrpc_invoke_args d;
		struct qda_marshal_ref r;

		memcpy(&d, args + 24 * (size_t)i, 24);
		memcpy(&r, refs + 16 * (size_t)i, 16);
		if (i >= nbufs) {
			const struct qda_dec_handle *h = &hs[i - nbufs];

			if (h->fd != d.fd || h->offset != (uint32_t)d.ptr ||
			    h->len != (uint32_t)d.length || h->map_addr != r.addr ||
			    h->map_size != r.size)
				die("handle did not round-trip", iter);
			continue;
		}
		if (bufs[i].len != d.length || (!d.length && bufs[i].addr))
			die("buffer length did not round-trip", iter);
		if (!d.length)
			continue;
		if (r.size) {
			if (bufs[i].addr != r.addr + (d.ptr & 0xfff))
				die("by-ref address did not round-trip", iter);
		} else if (!any_ref) {
			uint64_t off = bufs[i].addr - DEV, k;

			if (off < qda_metadata_size(n) || off + d.length > size)
				die("inline buffer outside the payload", iter);
			if (i < nin)
				for (k = 0; k < d.length; k += 1 + d.length / 16)
					if (payload[off + k] != user_byte(d.ptr + k))
						die("inline data mismatch", iter);
		}
	}

	/* unpack: every out-buffer write must stay inside that buffer */
	for (i = nin; i < nbufs; i++) {
		struct fastrpc_invoke_args d;
		struct qda_marshal_ref r;

		memcpy(&d, args + 24 * (size_t)i, 24);
		memcpy(&r, refs + 16 * (size_t)i, 16);
		if (r.size || !d.length)
			continue;
		if (below(8) == 0) {	/* the DSP lies about the length */
			uint64_t l = d.length + 1 + below(8);

			memcpy(payload + 16 * (size_t)i + 8, &l, 8);
			lied = 1;
		}
	}
	w.nin = nin;
	w.nbufs = nbufs;
	ret = qda_unpack(sc, args, arglen, refs, reflen, payload, size, VA, &ua, fds, NULL);
	if (ret < 0 && ret != -EFAULT)
		die("unpack returned an unexpected error", iter);
	if (ret < 0 && !any_ref && !lied)
		die("unpack of an honest reply failed", iter);
	if (ret >= 0)
		n_unpacked++;
	free(payload);
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 200000;
	unsigned long i;

	rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x5eed;
	for (i = 0; i < iters; i++) {
		fuzz_decode(i);
		if (i % 4 == 0)
			fuzz_plan_pack(i);
	}
	printf("fuzz_marshal: %lu iterations OK (decoded %lu, planned %lu, round-tripped %lu, "
	       "unpacked %lu)\n", iters, n_decoded, n_planned, n_checked, n_unpacked);
	return 0;
}
