/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * multithreading_test.c - x86_64 stand-in for upstream fastrpc_test's libmultithreading.so (the
 * Hexagon SDK multithreading example's test), making the same library calls in the same order:
 *
 *   remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, {domain, 1}, 8)     (unsigned PD)
 *   remote_session_control(FASTRPC_RELATIVE_THREAD_PRIORITY, {domain, -50}, 8)
 *       (AEE_EUNSUPPORTED / AEE_EUNSUPPORTEDAPI: not supported, go on; other errors: fail)
 *   remote_handle64_open(multithreading URI); parallel_sum(h)     m2 sc 0x02000000
 *   remote_handle64_close(h)   (only when parallel_sum succeeded, as the example does)
 */
#include "standin.h"

#define MT_URI "file:///libmultithreading_skel.so?multithreading_skel_handle_invoke&_modver=1.0"
#define MT_PARALLEL_SUM 2

static int multithreading_test(int domain, bool unsigned_pd)
{
	remote_handle64 h = (remote_handle64)-1;
	const char *suffix = standin_domain_suffix(domain);
	char *uri = NULL;
	int nErr = AEE_SUCCESS;

	if (!suffix)
		return AEE_EBADPARM;
	if (unsigned_pd && (nErr = standin_unsigned_module(domain, 1)) != AEE_SUCCESS) {
		printf("multithreading: remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE): 0x%x\n", nErr);
		return nErr;
	}
	if (remote_session_control) {
		struct remote_rpc_relative_thread_priority prio = {domain, -50};

		nErr = remote_session_control(FASTRPC_RELATIVE_THREAD_PRIORITY, &prio, sizeof(prio));
		if (nErr == AEE_EUNSUPPORTED || nErr == AEE_EUNSUPPORTEDAPI) {
			printf("multithreading: relative thread priority not supported\n");
		} else if (nErr != AEE_SUCCESS) {
			printf("multithreading: remote_session_control(FASTRPC_RELATIVE_THREAD_PRIORITY): 0x%x\n", nErr);
			return nErr;
		}
	}
	if (!(uri = standin_uri(MT_URI, suffix)))
		return AEE_ENOMEMORY;
	if ((nErr = remote_handle64_open(uri, &h)) != AEE_SUCCESS) {
		printf("multithreading: open: 0x%x\n", nErr);
		goto bail;
	}
	nErr = remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, MT_PARALLEL_SUM, 0, 0, 0, 0), NULL);
	if (nErr != AEE_SUCCESS) {
		printf("multithreading: parallel_sum: 0x%x\n", nErr);
		goto bail;
	}
	remote_handle64_close(h);
bail:
	free(uri);
	printf("multithreading: %s\n", nErr == AEE_SUCCESS ? "PASSED" : "FAILED");
	return nErr;
}

int run_test(int domain_id, bool is_unsignedpd_enabled)
{
	return multithreading_test(domain_id, is_unsignedpd_enabled);
}
