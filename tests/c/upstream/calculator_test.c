/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * calculator_test.c - x86_64 stand-in for upstream fastrpc_test's libcalculator.so (the Hexagon
 * SDK calculator example's test, n = 1000), making the same library calls in the same order:
 *
 *   rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM 25, RPCMEM_DEFAULT_FLAGS 1, 4000)
 *   remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, {domain, 1}, 8)      (unsigned PD)
 *   remote_handle_control(DSPRPC_GET_DSP_INFO, {domain, STATUS_NOTIFICATION_SUPPORT 10}, 12)
 *   [remote_session_control(FASTRPC_REGISTER_STATUS_NOTIFICATIONS, ...) if that says 1]
 *   remote_handle64_open(calculator URI) -> h1; sum(h1)      sc 0x02020100
 *       (on AEE_ECONNRESET with errno ECONNRESET: close h1, sleep 5 s, retry, 10 tries)
 *   remote_handle64_open(calculator URI) -> h2; max(h2)      sc 0x03020100
 *   remote_handle64_close(h1); remote_handle64_close(h2); rpcmem_free
 */
#include <errno.h>
#include <unistd.h>

#include "standin.h"

#define CALC_URI "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"
#define CALC_SUM 2
#define CALC_MAX 3
#define VEC_LEN 1000
/* What the DSP returns for a module it has not (yet) got: the example retries on it too. */
#define DSP_EBADSTATE ((int)(DSP_AEE_EOFFSET + 0x00D))

/* long m(in sequence<long> vec, rout <size> res): the qaic stub's marshalling. */
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

static int notif_cb(void *context, int domain, int session, remote_rpc_status_flags_t status)
{
	(void)context;
	printf("calculator: domain %d session %d status %d\n", domain, session, (int)status);
	return 0;
}

/* The SDK's request_status_notifications_enable(): AEE_EUNSUPPORTEDAPI when not supported. */
static int status_notifications(int domain, void *context)
{
	struct remote_dsp_capability cap = {(uint32_t)domain, STATUS_NOTIFICATION_SUPPORT, 0};
	remote_rpc_notif_register_t reg;

	if (!remote_handle_control || remote_handle_control(DSPRPC_GET_DSP_INFO, &cap, sizeof(cap)) != AEE_SUCCESS
	    || cap.capability != 1)
		return AEE_EUNSUPPORTEDAPI;
	reg.context = context;
	reg.domain = domain;
	reg.notifier_fn = notif_cb;
	return remote_session_control(FASTRPC_REGISTER_STATUS_NOTIFICATIONS, &reg, sizeof(reg));
}

static int calculator_test(int domain, int n, bool unsigned_pd)
{
	remote_handle64 h1 = (remote_handle64)-1, h2 = (remote_handle64)-1;
	const char *suffix = standin_domain_suffix(domain);
	int64_t sum = 0;
	int32_t max = 0;
	int retries = 10, nErr, *vec;
	char *uri = NULL;

	vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, n * 4);
	if (!vec) {
		printf("calculator: rpcmem_alloc failed\n");
		return AEE_ENORPCMEMORY;
	}
	for (int i = 0; i < n; i++)
		vec[i] = i;
	if (!suffix) {
		nErr = AEE_EBADPARM;
		goto bail;
	}
	if (unsigned_pd && (nErr = standin_unsigned_module(domain, 1)) != AEE_SUCCESS) {
		printf("calculator: remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE): 0x%x\n", nErr);
		goto bail;
	}
	if (!(uri = standin_uri(CALC_URI, suffix))) {
		nErr = AEE_ENOMEMORY;
		goto bail;
	}
	nErr = status_notifications(domain, (void *)(uintptr_t)0x12345678);
	if (nErr != AEE_SUCCESS && nErr != AEE_EUNSUPPORTEDAPI)
		printf("calculator: status notifications: 0x%x\n", nErr);
	do {
		nErr = remote_handle64_open(uri, &h1);
		if (nErr == AEE_SUCCESS)
			nErr = calc_method(h1, CALC_SUM, vec, (uint32_t)n, &sum, sizeof(sum));
		if (nErr == AEE_SUCCESS) {
			printf("calculator: sum = %lld\n", (long long)sum);
			break;
		}
		if (nErr == AEE_ECONNRESET && errno == ECONNRESET) {
			retries--;
			sleep(5);
		} else if (nErr == AEE_ENOSUCH || nErr == DSP_EBADSTATE) {
			retries -= 2;
		} else {
			break;
		}
		if (h1 != (remote_handle64)-1 && (nErr = remote_handle64_close(h1)) != AEE_SUCCESS)
			printf("calculator: close: 0x%x\n", nErr);
	} while (retries > 0);
	if (nErr != AEE_SUCCESS)
		printf("calculator: sum failed: 0x%x\n", nErr);
	nErr = remote_handle64_open(uri, &h2);
	if (nErr == AEE_SUCCESS)
		nErr = calc_method(h2, CALC_MAX, vec, (uint32_t)n, &max, sizeof(max));
	if (nErr == AEE_SUCCESS)
		printf("calculator: max = %d\n", max);
	else
		printf("calculator: max failed: 0x%x\n", nErr);
	if (h1 != (remote_handle64)-1 && (nErr = remote_handle64_close(h1)) != AEE_SUCCESS)
		printf("calculator: close: 0x%x\n", nErr);
	if (h2 != (remote_handle64)-1 && (nErr = remote_handle64_close(h2)) != AEE_SUCCESS)
		printf("calculator: close: 0x%x\n", nErr);
bail:
	free(uri);
	rpcmem_free(vec);
	return nErr;
}

int run_test(int domain_id, bool is_unsignedpd_enabled)
{
	return calculator_test(domain_id, VEC_LEN, is_unsignedpd_enabled);
}
