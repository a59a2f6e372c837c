/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * marshal.c - host side of the invoke payload: plan (overlaps + size), pack, unpack.
 * Mirrors the kernel's fastrpc_get_buff_overlaps / get_payload_size / get_args / put_args;
 * see marshal.h for the contract and qda_core/marshal_ref.py for the Python twin.
 */
#include <errno.h>
#include <string.h>

#include "marshal_internal.h"

#define ALIGN_MASK ((uint64_t)FASTRPC_ALIGN - 1)
#define PAGE_SHIFT 12

/* Little-endian stores at any alignment: one move on a little-endian host. */
static void st64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 8);
#else
	int k;

	for (k = 0; k < 8; k++)
		p[k] = (uint8_t)(v >> (8 * k));
#endif
}

static void st32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 4);
#else
	int k;

	for (k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
#endif
}

static void ok(struct qda_marshal_status *st)
{
	if (st) {
		st->arg = -1;
		st->why = "";
	}
}

uint64_t qda_metadata_size(uint32_t n)
{
	return (uint64_t)n * (16 + 8 + 16) + 8 * FASTRPC_MAX_FDLIST + 4 * FASTRPC_MAX_CRCLIST;
}

/* Overlap order: start asc, end desc, index asc (a strict total order, so any sort agrees). */
static int olap_before(const struct qda_olap *a, const struct qda_olap *b)
{
	if (a->start != b->start)
		return a->start < b->start;
	if (a->end != b->end)
		return a->end > b->end;
	return a->raix < b->raix;
}

static void sift_down(struct qda_olap *v, size_t root, size_t n)
{
	for (;;) {
		size_t child = 2 * root + 1;
		struct qda_olap tmp;

		if (child >= n)
			return;
		if (child + 1 < n && olap_before(&v[child], &v[child + 1]))
			child++;
		if (!olap_before(&v[root], &v[child]))
			return;
		tmp = v[root];
		v[root] = v[child];
		v[child] = tmp;
		root = child;
	}
}

static void sort_olaps(struct qda_olap *v, size_t n)
{
	size_t i;

	if (n <= 16) {	/* the common case: a handful of buffers */
		for (i = 1; i < n; i++) {
			struct qda_olap x = v[i];
			size_t j = i;

			while (j > 0 && olap_before(&x, &v[j - 1])) {
				v[j] = v[j - 1];
				j--;
			}
			v[j] = x;
		}
		return;
	}
	for (i = n / 2; i-- > 0;)
		sift_down(v, i, n);
	for (i = n; i-- > 1;) {
		struct qda_olap tmp = v[0];

		v[0] = v[i];
		v[i] = tmp;
		sift_down(v, 0, i);
	}
}

static int align_up(uint64_t *v)
{
	if (*v > UINT64_MAX - ALIGN_MASK)
		return -1;
	*v = (*v + ALIGN_MASK) & ~ALIGN_MASK;
	return 0;
}

int qda_plan(uint32_t sc, const void *args_, size_t args_len, const void *refs_, size_t refs_len,
	     struct qda_olap *olaps, uint64_t *pkt_size, struct qda_marshal_status *st)
{
	const uint8_t *args = args_, *refs = refs_;
	uint32_t n = REMOTE_SCALARS_LENGTH(sc);
	uint32_t nbufs = REMOTE_SCALARS_INBUFS(sc) + REMOTE_SCALARS_OUTBUFS(sc);
	uint64_t max_end = 0, size;
	uint32_t i;

	if (args_len / QDA_ARG_SIZE < n)
		return fail(st, -EINVAL, -1, "args holds fewer than N descriptors");
	if (refs_len / QDA_REF_SIZE < n)
		return fail(st, -EINVAL, -1, "refs holds fewer than N records");

	for (i = 0; i < nbufs; i++) {
		const uint8_t *a = args + (size_t)i * QDA_ARG_SIZE;
		uint64_t ptr = ld64(a), len = ld64(a + 8);
		int inline_ = ld64(refs + (size_t)i * QDA_REF_SIZE + 8) == 0;

		if (len > UINT64_MAX - ptr)
			return fail(st, -EFAULT, (int)i, "buffer ptr + length overflows");
		if (inline_ && len && !ptr)
			return fail(st, -EFAULT, (int)i, "inline buffer has a NULL ptr");
		olaps[i].start = ptr;
		olaps[i].end = ptr + len;
		olaps[i].raix = i;
	}
	sort_olaps(olaps, nbufs);

	for (i = 0; i < nbufs; i++) {
		struct qda_olap *o = &olaps[i];

		if (o->start < max_end) {	/* falls inside an earlier range */
			o->offset = max_end - o->start;
			if (o->end > max_end) {
				o->mstart = max_end;
				o->mend = o->end;
				max_end = o->end;
			} else {
				o->mstart = 0;
				o->mend = 0;
			}
		} else {
			o->mstart = o->start;
			o->mend = o->end;
			o->offset = 0;
			max_end = o->end;
		}
	}

	size = qda_metadata_size(n);
	align_up(&size);	/* cannot overflow: metalen < 2^15 */
	for (i = 0; i < nbufs; i++) {
		const struct qda_olap *o = &olaps[i];
		uint64_t m = o->mend - o->mstart;

		if (ld64(refs + (size_t)o->raix * QDA_REF_SIZE + 8) != 0)
			continue;	/* by reference: not in the payload */
		if (o->offset == 0 && align_up(&size))
			return fail(st, -ENOMEM, (int)o->raix, "payload size overflows");
		if (m > UINT64_MAX - size)
			return fail(st, -ENOMEM, (int)o->raix, "payload size overflows");
		size += m;
	}
	*pkt_size = size;
	ok(st);
	return 0;
}

int qda_payload_size(uint32_t sc, const void *args, size_t args_len, const void *refs,
		     size_t refs_len, uint64_t *pkt_size, struct qda_marshal_status *st)
{
	struct qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH];

	return qda_plan(sc, args, args_len, refs, refs_len, olaps, pkt_size, st);
}

/* Bytes of the 4 KiB pages spanned by [addr, addr + len), len > 0, wrapping like the kernel. */
static uint64_t page_span(uint64_t addr, uint64_t len)
{
	uint64_t pg_start = (addr & FASTRPC_PAGE_MASK) >> PAGE_SHIFT;
	uint64_t pg_end = ((addr + len - 1) & FASTRPC_PAGE_MASK) >> PAGE_SHIFT;

	return (pg_end - pg_start + 1) * FASTRPC_PAGE_SIZE;
}

#define MAX_BUFS_ONE_WAY 255	/* inbufs or outbufs: an 8-bit field */

/*
 * Run the user copies in order; -1 when all succeeded, else the index of the first that
 * faulted. Our own accessors batch them (two syscalls for any number of small buffers);
 * substituted ones are called once per copy.
 */
static long run_copies(const struct qda_uaccess *ua, const struct qda_ucopy *v, size_t n,
		       int to_user)
{
	size_t k;

	if (ua == &qda_uaccess_self) {
		if ((to_user ? qda_copy_to_user_vec(v, n, &k) : qda_copy_from_user_vec(v, n, &k)))
			return (long)k;
		return -1;
	}
	for (k = 0; k < n; k++) {
		int e = to_user ? ua->to(ua->ctx, v[k].user, v[k].local, v[k].len)
				: ua->from(ua->ctx, v[k].local, v[k].user, v[k].len);

		if (e)
			return (long)k;
	}
	return -1;
}

/*
 * Zero [from, to) of @payload except where the @n copies (destinations in [from, to)) will
 * write: each byte is written once, which halves the cost of large in-buffers. The copies
 * come in overlap order, where destinations only grow; a merged group may hold a range
 * inside an earlier one, which the running end covers.
 */
static void zero_uncopied(uint8_t *payload, uint64_t from, uint64_t to,
			  const struct qda_ucopy *v, size_t n)
{
	uint64_t cur = from;
	size_t k;

	for (k = 0; k < n; k++) {
		uint64_t dst = (uint64_t)((uint8_t *)v[k].local - payload), end = dst + v[k].len;

		if (dst > cur)
			memset(payload + cur, 0, (size_t)(dst - cur));
		if (end > cur)
			cur = end;
	}
	if (to > cur)
		memset(payload + cur, 0, (size_t)(to - cur));
}

int qda_pack(uint32_t sc, const void *args, size_t args_len, const void *refs, size_t refs_len,
	     void *payload, size_t payload_len, uint64_t payload_va, uint64_t payload_dev,
	     const struct qda_uaccess *ua, uint64_t *pkt_size_out, struct qda_marshal_status *st)
{
	struct qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH];
	uint64_t pkt_size;
	int err = qda_plan(sc, args, args_len, refs, refs_len, olaps, &pkt_size, st);

	if (err)
		return err;
	err = qda_pack_planned(sc, args, refs, olaps, pkt_size, payload, payload_len, payload_va,
			       payload_dev, ua, st);
	if (!err && pkt_size_out)
		*pkt_size_out = pkt_size;
	return err;
}

int qda_pack_planned(uint32_t sc, const void *args_, const void *refs_, const struct qda_olap *olaps,
		     uint64_t pkt_size, void *payload_, size_t payload_len, uint64_t payload_va,
		     uint64_t payload_dev, const struct qda_uaccess *ua, struct qda_marshal_status *st)
{
	struct qda_ucopy copies[MAX_BUFS_ONE_WAY];
	uint32_t copy_arg[MAX_BUFS_ONE_WAY];
	size_t ncopies = 0;
	const uint8_t *args = args_, *refs = refs_;
	uint8_t *payload = payload_, *rpra, *list, *pages;
	uint32_t n = REMOTE_SCALARS_LENGTH(sc);
	uint32_t inbufs = REMOTE_SCALARS_INBUFS(sc);
	uint32_t nbufs = inbufs + REMOTE_SCALARS_OUTBUFS(sc);
	uint64_t metalen = qda_metadata_size(n), pos;
	uint32_t k;
	long err;

	if (payload_len < pkt_size)
		return fail(st, -EINVAL, -1, "payload is smaller than the packet size");
	if (!ua)
		ua = &qda_uaccess_self;

	rpra = payload;
	list = payload + 16 * (size_t)n;
	pages = payload + 24 * (size_t)n;
	/* The whole packet starts zeroed, as the kernel's fresh coherent buffer does: copied
	 * out-buffers reach the DSP as zeros, gaps carry nothing from an earlier call. The data
	 * area is zeroed below, around what the in-buffer copies will overwrite anyway. */
	memset(payload, 0, (size_t)metalen);
	pos = metalen;

	for (k = 0; k < nbufs; k++) {
		const struct qda_olap *o = &olaps[k];
		uint32_t i = o->raix;
		const uint8_t *a = args + (size_t)i * QDA_ARG_SIZE;
		const uint8_t *r = refs + (size_t)i * QDA_REF_SIZE;
		uint64_t ptr = ld64(a), len = ld64(a + 8);
		uint64_t at, dst;

		st64(rpra + 16 * (size_t)i, 0);
		st64(rpra + 16 * (size_t)i + 8, len);
		st32(list + 8 * (size_t)i, len ? 1 : 0);
		st32(list + 8 * (size_t)i + 4, i);
		if (!len)
			continue;

		if (ld64(r + 8) != 0) {	/* by reference: the DSP reads the mapping itself */
			st64(rpra + 16 * (size_t)i, ptr);
			st64(pages + 16 * (size_t)i, ld64(r));
			st64(pages + 16 * (size_t)i + 8, page_span(ptr, len));
			continue;
		}

		if (o->offset == 0)
			pos = (pos + ALIGN_MASK) & ~ALIGN_MASK;	/* <= pkt_size by the plan */
		at = pos;
		pos += o->mend - o->mstart;
		st64(rpra + 16 * (size_t)i, payload_va + at - o->offset);
		st64(pages + 16 * (size_t)i, (payload_dev + at - o->offset) & FASTRPC_PAGE_MASK);
		/* the kernel spans from the running position, not from pv */
		st64(pages + 16 * (size_t)i + 8, page_span(payload_va + at, len));

		if (i >= inbufs)
			continue;	/* out-buffer: left for the DSP to fill */
		/* only a by-ref buffer overlapping this one gets here; the kernel would write
		 * over its metadata or before its buffer */
		if (o->offset > at - metalen)
			return fail(st, -EFAULT, (int)i, "inline copy would land before the data area");
		dst = at - o->offset;
		if (len > pkt_size - dst)
			return fail(st, -EFAULT, (int)i, "inline copy would run past the payload");
		/* copies only touch the data area, so deferring them keeps the kernel's result */
		copies[ncopies].local = payload + dst;
		copies[ncopies].user = ptr;
		copies[ncopies].len = (size_t)len;
		copy_arg[ncopies++] = i;
	}
	zero_uncopied(payload, metalen, pkt_size, copies, ncopies);
	err = run_copies(ua, copies, ncopies, 0);
	if (err >= 0)
		return fail(st, -EFAULT, (int)copy_arg[err], "cannot read the in-buffer");

	for (k = nbufs; k < n; k++) {
		const uint8_t *a = args + (size_t)k * QDA_ARG_SIZE;
		const uint8_t *r = refs + (size_t)k * QDA_REF_SIZE;
		uint64_t len = ld64(a + 8);

		st32(list + 8 * (size_t)k, len ? 1 : 0);
		st32(list + 8 * (size_t)k + 4, k);
		st64(pages + 16 * (size_t)k, ld64(r));
		st64(pages + 16 * (size_t)k + 8, ld64(r + 8));
		st32(rpra + 16 * (size_t)k, ld32(a + 16));		/* fd */
		st32(rpra + 16 * (size_t)k + 4, (uint32_t)ld64(a));	/* offset = ptr */
		st32(rpra + 16 * (size_t)k + 8, (uint32_t)len);
	}
	ok(st);
	return 0;
}

int qda_unpack(uint32_t sc, const void *args_, size_t args_len, const void *refs_,
	       size_t refs_len, const void *payload_, size_t payload_len, uint64_t payload_va,
	       const struct qda_uaccess *ua, uint64_t fdlist[FASTRPC_MAX_FDLIST],
	       struct qda_marshal_status *st)
{
	const uint8_t *args = args_, *refs = refs_, *payload = payload_;
	struct qda_ucopy copies[MAX_BUFS_ONE_WAY];
	uint32_t copy_arg[MAX_BUFS_ONE_WAY];
	size_t ncopies = 0;
	long bad;
	uint32_t n = REMOTE_SCALARS_LENGTH(sc);
	uint32_t inbufs = REMOTE_SCALARS_INBUFS(sc);
	uint32_t nbufs = inbufs + REMOTE_SCALARS_OUTBUFS(sc);
	uint64_t metalen = qda_metadata_size(n);
	const uint8_t *fdl;
	uint32_t i;
	int cnt;

	if (args_len / QDA_ARG_SIZE < n)
		return fail(st, -EINVAL, -1, "args holds fewer than N descriptors");
	if (refs_len / QDA_REF_SIZE < n)
		return fail(st, -EINVAL, -1, "refs holds fewer than N records");
	if (payload_len < metalen)
		return fail(st, -EINVAL, -1, "payload is shorter than its metadata");
	if (!ua)
		ua = &qda_uaccess_self;

	for (i = inbufs; i < nbufs; i++) {
		const uint8_t *a = args + (size_t)i * QDA_ARG_SIZE;
		uint64_t pv, len, off;

		if (ld64(refs + (size_t)i * QDA_REF_SIZE + 8) != 0)
			continue;	/* by reference: the DSP wrote user memory directly */
		pv = ld64(payload + 16 * (size_t)i);
		len = ld64(payload + 16 * (size_t)i + 8);
		if (!len)
			continue;
		if (len > ld64(a + 8))
			return fail(st, -EFAULT, (int)i, "DSP returned a length beyond the out-buffer");
		off = pv - payload_va;
		if (off > payload_len || len > payload_len - off)
			return fail(st, -EFAULT, (int)i, "DSP returned an out-buffer outside the payload");
		copies[ncopies].local = (void *)(uintptr_t)(payload + off);	/* only read */
		copies[ncopies].user = ld64(a);
		copies[ncopies].len = (size_t)len;
		copy_arg[ncopies++] = i;
	}
	/* all replies validated first: a lying DSP gets nothing written */
	bad = run_copies(ua, copies, ncopies, 1);
	if (bad >= 0)
		return fail(st, -EFAULT, (int)copy_arg[bad], "cannot write the out-buffer");

	fdl = payload + 40 * (size_t)n;
	for (cnt = 0; cnt < FASTRPC_MAX_FDLIST; cnt++) {
		uint64_t fd = ld64(fdl + 8 * (size_t)cnt);

		if (!fd)
			break;
		fdlist[cnt] = fd;
	}
	ok(st);
	return cnt;
}
