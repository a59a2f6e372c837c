/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * sdk_app.c - a host application in the style of the Hexagon SDK examples (calculator,
 * multi-session, capability queries), checking that such code builds against qdarpc's SDK
 * headers as C and as C++. Calls and their contracts: docs/spec/legacy_fastrpc_api.md §3-§4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "AEEStdErr.h"
#include "calculator.h"
#include "remote.h"
#include "remote64.h"
#include "rpcmem.h"

/* Some libcdsprpc versions lack these: the SDK examples test them for NULL. */
#pragma weak remote_session_control
#pragma weak remote_handle_control

#define VEC_LEN 1000

static const domain_t supported_domains[] = {
	{ADSP_DOMAIN_ID, ADSP_DOMAIN}, {MDSP_DOMAIN_ID, MDSP_DOMAIN}, {SDSP_DOMAIN_ID, SDSP_DOMAIN},
	{CDSP_DOMAIN_ID, CDSP_DOMAIN}, {CDSP1_DOMAIN_ID, CDSP1_DOMAIN},
};

static int dsp_error(int nErr)
{
	/* DSP-side codes arrive with DSP_AEE_EOFFSET added. */
	return (uint32_t)nErr > DSP_AEE_EOFFSET && (uint32_t)nErr <= DSP_AEE_EOFFSET + HLOS_ERR_END;
}

static int is_unsupported(int nErr)
{
	return nErr == AEE_EUNSUPPORTED || (uint32_t)nErr == (uint32_t)AEE_EUNSUPPORTED + DSP_AEE_EOFFSET
	       || (nErr & 0xff) == AEE_EUNSUPPORTEDAPI;
}

static int status_cb(void *context, int domain, int session, remote_rpc_status_flags_t status)
{
	(void)context;
	switch (status) {
	case FASTRPC_USER_PD_UP:
		break;
	case FASTRPC_USER_PD_EXIT:
	case FASTRPC_USER_PD_FORCE_KILL:
	case FASTRPC_USER_PD_EXCEPTION:
	case FASTRPC_DSP_SSR:
		printf("domain %d session %d: PD down (%d)\n", domain, session, (int)status);
		break;
	}
	return 0;
}

static int query_capability(int domain, uint32_t attr, uint32_t *value)
{
	struct remote_dsp_capability cap;
	int nErr;

	if (!remote_handle_control)
		return AEE_EUNSUPPORTEDAPI;
	cap.domain = (uint32_t)domain;
	cap.attribute_ID = attr;
	cap.capability = 0;
	nErr = remote_handle_control(DSPRPC_GET_DSP_INFO, &cap, sizeof(cap));
	if (nErr == AEE_SUCCESS)
		*value = cap.capability;
	return nErr;
}

static int setup_session(int domain, int unsigned_pd)
{
	struct remote_rpc_control_unsigned_module um;
	struct remote_rpc_thread_params tp;
	remote_rpc_notif_register_t notif;
	int nErr = AEE_SUCCESS;

	if (!remote_session_control)
		return AEE_EUNSUPPORTEDAPI;
	um.domain = domain;
	um.enable = unsigned_pd;
	if ((nErr = remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, &um, sizeof(um))) != AEE_SUCCESS)
		return nErr;
	tp.domain = domain;
	tp.prio = -1;
	tp.stack_size = 64 * 1024;
	if ((nErr = remote_session_control(FASTRPC_THREAD_PARAMS, &tp, sizeof(tp))) != AEE_SUCCESS)
		return nErr;
	notif.context = NULL;
	notif.domain = domain;
	notif.notifier_fn = status_cb;
	nErr = remote_session_control(FASTRPC_REGISTER_STATUS_NOTIFICATIONS, &notif, sizeof(notif));
	return is_unsupported(nErr) ? AEE_SUCCESS : nErr;
}

/* The URI of a second session on the domain (SDK multi-session example). */
static int session_uri(const char *domain_name, char *uri, uint32_t uri_len, uint32_t *effective_domain)
{
	remote_rpc_reserve_new_session_t rs;
	remote_rpc_get_uri_t gu;
	char name[] = "calc-session";
	int nErr;

	memset(&rs, 0, sizeof(rs));
	rs.domain_name = (char *)domain_name;
	rs.domain_name_len = (uint32_t)strlen(domain_name);
	rs.session_name = name;
	rs.session_name_len = (uint32_t)strlen(name);
	if ((nErr = remote_session_control(FASTRPC_RESERVE_NEW_SESSION, &rs, sizeof(rs))) != AEE_SUCCESS)
		return nErr;
	*effective_domain = rs.effective_domain_id;
	memset(&gu, 0, sizeof(gu));
	gu.domain_name = (char *)domain_name;
	gu.domain_name_len = (uint32_t)strlen(domain_name);
	gu.session_id = rs.session_id;
	gu.module_uri = (char *)calculator_URI;
	gu.module_uri_len = (uint32_t)strlen(calculator_URI);
	gu.uri = uri;
	gu.uri_len = uri_len;
	return remote_session_control(FASTRPC_GET_URI, &gu, sizeof(gu));
}

static int run_calculator(const char *uri, int domain)
{
	remote_handle64 h = (remote_handle64)-1;
	struct remote_rpc_control_latency lat;
	remote_rpc_get_domain_t gd;
	int *vec = NULL;
	int64_t sum = 0;
	int max = 0, i, fd, nErr = AEE_SUCCESS;

	vec = (int *)rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, VEC_LEN * (int)sizeof(int));
	if (!vec)
		return AEE_ENORPCMEMORY;
	for (i = 0; i < VEC_LEN; i++)
		vec[i] = i;
	fd = rpcmem_to_fd(vec);
	if ((nErr = fastrpc_mmap(domain, fd, vec, 0, VEC_LEN * sizeof(int), FASTRPC_MAP_FD)) != AEE_SUCCESS
	    && !is_unsupported(nErr))
		goto bail;

	if ((nErr = calculator_open(uri, &h)) != AEE_SUCCESS)
		goto bail;
	lat.enable = RPC_PM_QOS;
	lat.latency = 100;
	(void)remote_handle64_control(h, DSPRPC_CONTROL_LATENCY, &lat, sizeof(lat));
	if (remote_handle64_control(h, DSPRPC_GET_DOMAIN, &gd, sizeof(gd)) == AEE_SUCCESS
	    && (gd.domain & DOMAIN_ID_MASK) != domain)
		printf("opened on domain %d\n", gd.domain);

	if ((nErr = calculator_sum(h, vec, VEC_LEN, &sum)) != AEE_SUCCESS)
		goto bail;
	if ((nErr = calculator_max(h, vec, VEC_LEN, &max)) != AEE_SUCCESS)
		goto bail;
	printf("sum %lld max %d\n", (long long)sum, max);

bail:
	if (nErr != AEE_SUCCESS)
		printf("ERROR 0x%x%s\n", (unsigned)nErr, dsp_error(nErr) ? " (from the DSP)" : "");
	if (h != (remote_handle64)-1)
		calculator_close(h);
	(void)fastrpc_munmap(domain, fd, vec, VEC_LEN * sizeof(int));
	rpcmem_free(vec);
	return nErr;
}

/* Older apps: non-domain handles, the 32-bit calls, registration by hand. */
static int legacy_calls(void)
{
	remote_handle h = 0;
	remote_arg args[1];
	uint32_t scalar = 7;
	uint64_t raddr = 0;
	void *buf = rpcmem_alloc2(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS | RPCMEM_TRY_MAP_STATIC, 4096);
	void *dflt = rpcmem_alloc_def(4096);
	int fd = rpcmem_to_fd(buf), nErr;

	remote_register_buf(buf, 4096, fd);
	remote_register_buf_attr(buf, 4096, fd, FASTRPC_ATTR_NON_COHERENT | FASTRPC_ATTR_KEEP_MAP);
	(void)remote_register_dma_handle(fd, 4096);
	(void)remote_register_dma_handle_attr(fd, 4096, FASTRPC_ATTR_NOMAP);
	(void)remote_set_mode(REMOTE_MODE_PARALLEL);
	if (remote_mem_map(CDSP_DOMAIN_ID, fd, REMOTE_MAP_MEM_STATIC, (uint64_t)(uintptr_t)buf, 4096, &raddr)
	    == AEE_SUCCESS)
		(void)remote_mem_unmap(CDSP_DOMAIN_ID, raddr, 4096);

	if ((nErr = remote_handle_open("calculator", &h)) == AEE_SUCCESS) {
		args[0].buf.pv = &scalar;
		args[0].buf.nLen = sizeof(scalar);
		nErr = remote_handle_invoke(h, REMOTE_SCALARS_MAKE(2, 1, 0), args);
		(void)remote_handle_close(h);
	}
	remote_register_buf(buf, 4096, -1);
	rpcmem_free(dflt);
	rpcmem_free(buf);
	return nErr;
}

int main(int argc, char **argv)
{
	int domain = argc > 1 ? atoi(argv[1]) : CDSP_DOMAIN_ID;
	uint32_t supported = 0, eff = 0;
	char uri[sizeof(calculator_URI) + 30];
	size_t i;
	int nErr;

	rpcmem_init();
	for (i = 0; i < sizeof(supported_domains) / sizeof(supported_domains[0]); i++) {
		if (supported_domains[i].id != domain)
			continue;
		if (query_capability(domain, DOMAIN_SUPPORT, &supported) != AEE_SUCCESS || !supported) {
			printf("domain %d is not supported\n", domain);
			return 1;
		}
		if ((nErr = setup_session(domain, 1)) != AEE_SUCCESS && !is_unsupported(nErr))
			return 1;
		snprintf(uri, sizeof(uri), "%s%s", calculator_URI, supported_domains[i].uri);
		nErr = run_calculator(uri, domain);
		if (nErr == AEE_SUCCESS && session_uri(CDSP_DOMAIN_NAME, uri, sizeof(uri), &eff) == AEE_SUCCESS)
			nErr = run_calculator(uri, (int)eff);
		if (nErr == AEE_SUCCESS)
			nErr = legacy_calls();
		rpcmem_deinit();
		return nErr == AEE_SUCCESS ? 0 : 1;
	}
	printf("unknown domain %d\n", domain);
	return 1;
}
