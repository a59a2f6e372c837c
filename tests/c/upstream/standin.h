/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * standin.h - shared by the x86_64 stand-ins for the test libraries of upstream fastrpc_test
 * (calculator_test.c, hap_example_test.c, multithreading_test.c) and by calc_client.c.
 *
 * The upstream tarballs carry those libraries only as aarch64 binaries built from Hexagon SDK
 * examples. The stand-ins are written from scratch: they make the same calls into libcdsprpc,
 * in the same order and with the same arguments, as those binaries do, so that the upstream
 * library sees the same traffic. They are built against the upstream headers
 * (<prefix>/include/fastrpc) and linked to the upstream libcdsprpc.so (tests/upstream/build.py).
 */
#ifndef QDARPC_UPSTREAM_STANDIN_H
#define QDARPC_UPSTREAM_STANDIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "AEEStdErr.h"
#include "remote.h"
#include "rpcmem.h"

/* The SDK examples test these for NULL: older libraries lack them. */
#pragma weak remote_session_control
#pragma weak remote_handle_control

/* fastrpc_test's entry point (upstream test/fastrpc_test.c: run_test_t). */
int run_test(int domain_id, bool is_unsignedpd_enabled);

/* The URI suffix of a domain id, as the SDK's get_domain() gives it; NULL for an unknown id. */
static inline const char *standin_domain_suffix(int domain)
{
	switch (domain) {
	case ADSP_DOMAIN_ID: return ADSP_DOMAIN;
	case MDSP_DOMAIN_ID: return MDSP_DOMAIN;
	case SDSP_DOMAIN_ID: return SDSP_DOMAIN;
	case CDSP_DOMAIN_ID: return CDSP_DOMAIN;
	default: return NULL;
	}
}

/* malloc'd "<module URI><domain suffix>", NULL when out of memory. */
static inline char *standin_uri(const char *module_uri, const char *suffix)
{
	size_t len = strlen(module_uri) + strlen(suffix) + 1;
	char *uri = malloc(len);

	if (uri)
		snprintf(uri, len, "%s%s", module_uri, suffix);
	return uri;
}

/* remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, {domain, enable}): AEE_EUNSUPPORTED
 * when the library has no remote_session_control. */
static inline int standin_unsigned_module(int domain, int enable)
{
	struct remote_rpc_control_unsigned_module um;

	if (!remote_session_control)
		return AEE_EUNSUPPORTED;
	um.domain = domain;
	um.enable = enable;
	return remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, &um, sizeof(um));
}

#endif /* QDARPC_UPSTREAM_STANDIN_H */
