/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_marshal.c - unit checks of the C marshalling core, independent of Python.
 * Exit status 0 when every check passes; each failure prints its line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qdarpc/marshal.h"

static int failures;

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, \
				__LINE__, #cond);                               \
			failures++;                                             \
		}                                                               \
	} while (0)

#define VA  0x7f1234500000ull
#define DEV 0x580000000ull

static void put_arg(uint8_t *a, int i, uint64_t ptr, uint64_t len, int32_t fd)
{
	struct fastrpc_invoke_args d = { ptr, len, fd, 0 };

	memcpy(a + 24 * i, &d, sizeof(d));
}

static void put_ref(uint8_t *r, int i, uint64_t addr, uint64_t size)
{
	struct qda_marshal_ref x = { addr, size };

	memcpy(r + 16 * i, &x, sizeof(x));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void test_layout_sizes(void)
{
	CHECK(sizeof(struct fastrpc_invoke_args) == QDA_ARG_SIZE);
	CHECK(sizeof(struct qda_marshal_ref) == QDA_REF_SIZE);
	CHECK(sizeof(union fastrpc_remote_arg) == 16);
	CHECK(qda_metadata_size(0) == 384);
	CHECK(qda_metadata_size(3) == 504);
}

static void test_calculator(void)
{
	static uint8_t arena[16384];
	static uint8_t payload[8192];
	uint8_t args[72], refs[48];
	uint64_t size = 0, fds[FASTRPC_MAX_FDLIST];
	uintptr_t b = (uintptr_t)arena;
	struct qda_dec_buf bufs[3];
	struct qda_dec_handle hs[1];
	int32_t n = 1000, i;
	int64_t sum = 0;
	uint32_t sc = REMOTE_SCALARS_MAKE(2, 2, 1);

	CHECK(sc == 0x02020100);
	memcpy(arena, &n, 4);
	for (i = 0; i < n; i++)
		memcpy(arena + 64 + 4 * i, &i, 4);
	put_arg(args, 0, b, 4, -1);
	put_arg(args, 1, b + 64, 4000, -1);
	put_arg(args, 2, b + 8192, 8, -1);
	memset(refs, 0, sizeof(refs));
	CHECK(qda_payload_size(sc, args, sizeof(args), refs, sizeof(refs), &size, NULL) == 0);
	CHECK(size == 4744);
	CHECK(qda_pack(sc, args, sizeof(args), refs, sizeof(refs), payload, sizeof(payload), VA, DEV,
		       NULL, &size, NULL) == 0);
	CHECK(get64(payload + 0) == VA + 512 && get64(payload + 8) == 4);
	CHECK(get64(payload + 16) == VA + 640 && get64(payload + 24) == 4000);
	CHECK(get64(payload + 32) == VA + 4736 && get64(payload + 40) == 8);
	CHECK(get64(payload + 72 + 16) == DEV && get64(payload + 72 + 24) == 8192);
	CHECK(memcmp(payload + 640, arena + 64, 4000) == 0);
	{	/* planned once, packed with the plan: the same packet */
		static uint8_t again[8192];
		struct qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH];
		uint64_t planned = 0;

		CHECK(qda_plan(sc, args, sizeof(args), refs, sizeof(refs), olaps, &planned, NULL) == 0);
		CHECK(planned == 4744);
		CHECK(qda_pack_planned(sc, args, refs, olaps, planned, again, 4743, VA, DEV, NULL, NULL) ==
		      -EINVAL);
		CHECK(qda_pack_planned(sc, args, refs, olaps, planned, again, sizeof(again), VA, DEV, NULL,
				       NULL) == 0);
		CHECK(memcmp(again, payload, 4744) == 0);
	}

	CHECK(qda_decode(sc, payload, size, bufs, 3, hs, 1, NULL) == 0);
	CHECK(bufs[1].addr == DEV + 640 && bufs[1].len == 4000);
	for (i = 0; i < n; i++) {
		int32_t v;

		memcpy(&v, payload + (bufs[1].addr - DEV) + 4 * i, 4);
		sum += v;
	}
	memcpy(payload + (bufs[2].addr - DEV), &sum, 8);
	CHECK(qda_unpack(sc, args, sizeof(args), refs, sizeof(refs), payload, size, VA, NULL, fds,
			 NULL) == 0);
	memcpy(&sum, arena + 8192, 8);
	CHECK(sum == 499500);
}

static void test_overlap_and_errors(void)
{
	static uint8_t arena[256], payload[1024];
	uint8_t args[96], refs[64];
	uint64_t size = 0, fds[FASTRPC_MAX_FDLIST];
	uintptr_t b = (uintptr_t)arena;
	struct qda_marshal_status st;
	uint32_t sc = REMOTE_SCALARS_MAKE(0, 3, 1);
	int i;

	for (i = 0; i < 256; i++)
		arena[i] = (uint8_t)i;
	put_arg(args, 0, b, 100, -1);
	put_arg(args, 1, b, 100, -1);
	put_arg(args, 2, b + 50, 150, -1);
	put_arg(args, 3, b + 10, 10, -1);
	memset(refs, 0, sizeof(refs));
	CHECK(qda_pack(sc, args, sizeof(args), refs, sizeof(refs), payload, sizeof(payload), VA, DEV,
		       NULL, &size, &st) == 0);
	CHECK(size == 840 && st.arg == -1);
	CHECK(get64(payload + 16) == VA + 640 && get64(payload + 32) == VA + 690);
	CHECK(get64(payload + 48) == VA + 650);
	CHECK(memcmp(payload + 640, arena, 200) == 0);

	/* errors */
	CHECK(qda_payload_size(sc, args, 95, refs, 64, &size, &st) == -EINVAL);
	CHECK(qda_payload_size(sc, args, 96, refs, 63, &size, &st) == -EINVAL);
	CHECK(qda_pack(sc, args, 96, refs, 64, payload, 839, VA, DEV, NULL, NULL, &st) == -EINVAL);
	put_arg(args, 2, 0, 150, -1);
	CHECK(qda_payload_size(sc, args, 96, refs, 64, &size, &st) == -EFAULT && st.arg == 2);
	put_ref(refs, 2, 0x1000, 1);	/* by reference: NULL is the driver's business */
	CHECK(qda_payload_size(sc, args, 96, refs, 64, &size, &st) == 0);
	put_arg(args, 2, UINT64_MAX - 10, 11, -1);
	CHECK(qda_payload_size(sc, args, 96, refs, 64, &size, &st) == -EFAULT);
	put_ref(refs, 2, 0, 0);
	put_arg(args, 0, 1, 1ull << 63, -1);
	put_arg(args, 1, (1ull << 63) + 1, (1ull << 63) - 2, -1);
	put_arg(args, 2, 1, 0, -1);
	CHECK(qda_payload_size(sc, args, 96, refs, 64, &size, &st) == -ENOMEM);
	/* a bad user pointer is -EFAULT, not a crash */
	put_arg(args, 0, 8, 100, -1);
	put_arg(args, 1, b, 4, -1);
	put_arg(args, 2, b, 4, -1);
	CHECK(qda_pack(sc, args, 96, refs, 64, payload, sizeof(payload), VA, DEV, NULL, NULL, &st) ==
	      -EFAULT);
	/* unpack of a lying DSP */
	put_arg(args, 0, b, 4, -1);
	CHECK(qda_pack(sc, args, 96, refs, 64, payload, sizeof(payload), VA, DEV, NULL, &size, &st) ==
	      0);
	memcpy(payload + 48 + 8, &(uint64_t){ 11 }, 8);
	CHECK(qda_unpack(sc, args, 96, refs, 64, payload, size, VA, NULL, fds, &st) == -EFAULT);
	memcpy(payload + 48, &(uint64_t){ VA + 2000 }, 8);
	memcpy(payload + 48 + 8, &(uint64_t){ 4 }, 8);
	CHECK(qda_unpack(sc, args, 96, refs, 64, payload, size, VA, NULL, fds, &st) == -EFAULT);
	CHECK(qda_unpack(sc, args, 96, refs, 64, payload, 543, VA, NULL, fds, &st) == -EINVAL);
	memset(payload + 48, 0, 16);
	memcpy(payload + 160, &(uint64_t){ 9 }, 8);
	CHECK(qda_unpack(sc, args, 96, refs, 64, payload, size, VA, NULL, fds, &st) == 1 &&
	      fds[0] == 9);
}

static void test_decode_bounds(void)
{
	uint8_t p[464];
	struct qda_dec_buf bufs[2];
	struct qda_dec_handle hs[1];
	uint32_t sc = REMOTE_SCALARS_MAKEX(0, 0, 1, 0, 1, 0);

	memset(p, 0, sizeof(p));
	CHECK(qda_decode(sc, p, 463, bufs, 2, hs, 1, NULL) == -EINVAL);
	CHECK(qda_decode(sc, p, 464, bufs, 0, hs, 1, NULL) == -ENOSPC);
	CHECK(qda_decode(sc, p, 464, bufs, 1, hs, 1, NULL) == 0);
	p[32] = 2;
	CHECK(qda_decode(sc, p, 464, bufs, 1, hs, 1, NULL) == -EINVAL);
	p[32] = 1;
	p[36] = 2;
	CHECK(qda_decode(sc, p, 464, bufs, 1, hs, 1, NULL) == -EINVAL);
	p[36] = 1;
	memcpy(p + 48 + 16, &(uint64_t){ DEV }, 8);
	memcpy(p, &(uint64_t){ VA + 0x234 }, 8);
	memcpy(p + 8, &(uint64_t){ 5 }, 8);
	CHECK(qda_decode(sc, p, 464, bufs, 1, hs, 1, NULL) == 0);
	CHECK(bufs[0].addr == DEV + 0x234 && bufs[0].len == 5);
}

static void test_heapsort_order(void)
{
	/* more than 16 buffers takes the heapsort path; check the total order */
	enum { N = 200 };
	static uint8_t args[24 * N], refs[16 * N];
	struct qda_olap olaps[REMOTE_SCALARS_MAX_LENGTH];
	uint64_t size, x = 12345;
	int i;

	memset(refs, 0, sizeof(refs));
	for (i = 0; i < N; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		put_arg(args, i, 0x10000 + ((x >> 33) % 64) * 16, (x >> 20) % 5 * 16, -1);
	}
	CHECK(qda_plan(REMOTE_SCALARS_MAKE(0, N, 0), args, sizeof(args), refs, sizeof(refs), olaps,
		       &size, NULL) == 0);
	for (i = 1; i < N; i++) {
		const struct qda_olap *a = &olaps[i - 1], *c = &olaps[i];

		CHECK(a->start < c->start ||
		      (a->start == c->start && (a->end > c->end ||
						(a->end == c->end && a->raix < c->raix))));
	}
}

static void test_uaccess(void)
{
	size_t big = QDA_UACCESS_FAST_MIN + 8192;
	uint8_t *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *local = malloc(big);
	uintptr_t u = (uintptr_t)m;
	uint8_t c = 0x42;

	CHECK(m != MAP_FAILED && local);
	if (m == MAP_FAILED || !local)
		return;
	memset(m, 0x7e, big);
	CHECK(qda_uaccess_range_ok(u, big, 0) == 1);
	CHECK(qda_uaccess_range_ok(u, big, 1) == 1);
	CHECK(qda_copy_from_user(local, u, big) == 0 && local[big - 1] == 0x7e);
	CHECK(qda_copy_to_user(u + 5, &c, 1) == 0 && m[5] == 0x42);
	CHECK(qda_copy_from_user(local, 8, 16) == -EFAULT);
	CHECK(qda_copy_from_user(local, UINT64_MAX - 3, 16) == -EFAULT);
	CHECK(qda_copy_to_user(8, &c, 1) == -EFAULT);
	CHECK(qda_copy_from_user(local, 8, 0) == 0);

	mprotect(m + big - 4096, 4096, PROT_READ);
	CHECK(qda_uaccess_range_ok(u, big, 0) == 1);
	CHECK(qda_uaccess_range_ok(u, big, 1) == 0);
	CHECK(qda_copy_to_user(u, local, big) == -EFAULT);
	mprotect(m + big - 4096, 4096, PROT_NONE);
	CHECK(qda_uaccess_range_ok(u, big, 0) == 0);
	CHECK(qda_copy_from_user(local, u, big) == -EFAULT);
	munmap(m + 4096, 4096);	/* a hole */
	CHECK(qda_uaccess_range_ok(u, 8192, 0) == 0);
	CHECK(qda_copy_from_user(local, u + 8192, big - 16384) == 0);
	CHECK(qda_copy_from_user(local, u, big - 8192) == -EFAULT);
	munmap(m, 4096);
	munmap(m + 8192, big - 8192);
	free(local);
}

static void test_uaccess_vec(void)
{
	static uint8_t src[8][100], dst[8][100];
	struct qda_ucopy v[8];
	uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t bad = 99;
	int k;

	CHECK(ro != MAP_FAILED);
	CHECK(qda_uaccess_prepare() == 0);
	for (k = 0; k < 8; k++) {
		memset(src[k], 'a' + k, sizeof(src[k]));
		v[k].local = dst[k];
		v[k].user = (uintptr_t)src[k];
		v[k].len = sizeof(src[k]);
	}
	CHECK(qda_copy_from_user_vec(v, 8, &bad) == 0 && dst[7][99] == 'h' && dst[0][0] == 'a');
	memset(dst, 0, sizeof(dst));
	v[4].user = 8;	/* a bad pointer in the middle of a batch */
	CHECK(qda_copy_from_user_vec(v, 8, &bad) == -EFAULT && bad == 4);
	CHECK(dst[3][99] == 'd' && dst[5][0] == 0);
	v[4].user = (uintptr_t)src[4];
	CHECK(qda_copy_from_user_vec(v, 8, &bad) == 0 && dst[7][0] == 'h');	/* pipe is clean */

	for (k = 0; k < 8; k++) {	/* to user: local dst[] -> user src[] */
		memset(dst[k], 'A' + k, sizeof(dst[k]));
		v[k].user = (uintptr_t)src[k];
	}
	if (ro != MAP_FAILED)
		v[2].user = (uintptr_t)ro + 100;	/* read-only destination */
	CHECK(qda_copy_to_user_vec(v, 8, &bad) == -EFAULT && bad == 2);
	CHECK(src[1][0] == 'B' && src[3][0] == 'd');
	v[2].user = (uintptr_t)src[2];
	CHECK(qda_copy_to_user_vec(v, 8, &bad) == 0 && src[7][99] == 'H');
	if (ro != MAP_FAILED)
		munmap(ro, 4096);
}

int main(void)
{
	test_layout_sizes();
	test_calculator();
	test_overlap_and_errors();
	test_decode_bounds();
	test_heapsort_order();
	test_uaccess();
	test_uaccess_vec();
	if (failures) {
		fprintf(stderr, "test_marshal: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_marshal: all checks passed\n");
	return 0;
}
