/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * calc_client.c - a calculator host program in the style of the Hexagon SDK's calculator app,
 * built against the upstream library's headers and linked to its libcdsprpc.so
 * (tests/upstream/build.py): an unsigned PD on CDSP, the vector 0..n-1 in rpcmem, one handle for
 * sum and max. Prints "sum = <n(n-1)/2>" and "max = <n-1>"; exits 0 when every call succeeded.
 *
 *   calc_client [n]        (default 1000)
 *
 * On stderr it names the libcdsprpc that answered its first call (dladdr), so a test can tell
 * the upstream library from another one found first on the search path.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "standin.h"

#define CALC_URI "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"

static int calc_method(remote_handle64 h, uint32_t mid, const int *vec, uint32_t n, void *res, uint32_t res_len)
{
	remote_arg pra[3];
	uint32_t prim_in = n;
	uint64_t prim_rout = 0;
	int nErr;

	memset(pra, 0, sizeof(pra));
	pra[0].buf.pv = &prim_in;
	pra[0].buf.nLen = sizeof(prim_in);
	pra[1].buf.pv = (void *)vec;
	pra[1].buf.nLen = 4 * n;
	pra[2].buf.pv = &prim_rout;
	pra[2].buf.nLen = res_len;
	nErr = remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, mid, 2, 1, 0, 0), pra);
	if (nErr == AEE_SUCCESS)
		memcpy(res, &prim_rout, res_len);
	return nErr;
}

int main(int argc, char **argv)
{
	remote_handle64 h = (remote_handle64)-1;
	int n = argc > 1 ? atoi(argv[1]) : 1000;
	int64_t sum = 0;
	int32_t max = 0;
	int nErr, *vec;
	Dl_info info;

	if (n <= 0) {
		fprintf(stderr, "usage: %s [n > 0]\n", argv[0]);
		return 2;
	}
	if (dladdr((void *)remote_handle64_open, &info) && info.dli_fname)
		fprintf(stderr, "libcdsprpc: %s\n", info.dli_fname);
	vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, n * 4);
	if (!vec) {
		fprintf(stderr, "rpcmem_alloc failed\n");
		return 1;
	}
	for (int i = 0; i < n; i++)
		vec[i] = i;
	if ((nErr = standin_unsigned_module(CDSP_DOMAIN_ID, 1)) != AEE_SUCCESS) {
		fprintf(stderr, "remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE) failed: 0x%x\n", nErr);
		goto bail;
	}
	if ((nErr = remote_handle64_open(CALC_URI CDSP_DOMAIN, &h)) != AEE_SUCCESS) {
		fprintf(stderr, "remote_handle64_open failed: 0x%x\n", nErr);
		goto bail;
	}
	if ((nErr = calc_method(h, 2, vec, (uint32_t)n, &sum, sizeof(sum))) != AEE_SUCCESS) {
		fprintf(stderr, "sum failed: 0x%x\n", nErr);
		goto close;
	}
	printf("sum = %lld\n", (long long)sum);
	if ((nErr = calc_method(h, 3, vec, (uint32_t)n, &max, sizeof(max))) != AEE_SUCCESS) {
		fprintf(stderr, "max failed: 0x%x\n", nErr);
		goto close;
	}
	printf("max = %d\n", max);
close:
	{
		int r = remote_handle64_close(h);

		if (r != AEE_SUCCESS) {
			fprintf(stderr, "remote_handle64_close failed: 0x%x\n", r);
			if (nErr == AEE_SUCCESS)
				nErr = r;
		}
	}
bail:
	rpcmem_free(vec);
	fflush(stdout);
	return nErr == AEE_SUCCESS ? 0 : 1;
}
