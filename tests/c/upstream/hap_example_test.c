/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hap_example_test.c - x86_64 stand-in for upstream fastrpc_test's libhap_example.so (the
 * Hexagon SDK hap_example's test), making the same library calls in the same order. run_test
 * runs three selectors, each a full open/close cycle:
 *
 *   every cycle: remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, {domain, unsigned}, 8);
 *                remote_handle64_open(hap_example URI)
 *   0 FARF_RUNTIME: farf_runtime(h, 0), farf_runtime(h, 1)          m4 sc 0x04010000 (results unused)
 *   1 MEM:          rpcmem_alloc(25, 1, 4096); rpcmem_to_fd;
 *                   fastrpc_mmap(domain, fd, buf, 0, 4096, FASTRPC_MAP_FD);
 *                   mem_fastrpc_mmap(h, fd, 4096)                    m7 sc 0x07010000
 *                   fastrpc_munmap(domain, fd, NULL, 0);
 *                   remote_register_dma_handle(fd, 4096);
 *                   mem_dmahandle(h, dma {fd, offset 0})              m5 sc 0x05000010 (1 in-handle)
 *                   rpcmem_free
 *   2 PERF:         perf(h)                                          m10 sc 0x0a000000
 *   every cycle: remote_handle64_close(h) (result unused)
 *
 * A cycle's result is that of its last call counted above (the MEM cycle's is mem_dmahandle's);
 * run_test returns the last failing cycle's, AEE_EUNSUPPORTED cycles being skipped.
 */
#include "standin.h"

#pragma weak fastrpc_mmap

#define HAP_URI "file:///libhap_example_skel.so?hap_example_skel_handle_invoke&_modver=1.0"
#define HAP_FARF_RUNTIME 4
#define HAP_MEM_DMAHANDLE 5
#define HAP_MEM_FASTRPC_MMAP 7
#define HAP_PERF 10
#define HAP_BUF_LEN 4096

static const char *const selectors[] = {"FARF_RUNTIME", "MEM", "PERF"};

/* m(in <n words>): the words in one input buffer. */
static int hap_words(remote_handle64 h, uint32_t mid, uint32_t *words, uint32_t n)
{
	remote_arg pra[1];

	pra[0].buf.pv = words;
	pra[0].buf.nLen = 4 * n;
	return remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, mid, 1, 0, 0, 0), pra);
}

static int hap_farf_runtime(remote_handle64 h, int enable)
{
	uint32_t w[1] = {(uint32_t)enable};

	return hap_words(h, HAP_FARF_RUNTIME, w, 1);
}

static int hap_mem_fastrpc_mmap(remote_handle64 h, int fd, int len)
{
	uint32_t w[2] = {(uint32_t)fd, (uint32_t)len};

	return hap_words(h, HAP_MEM_FASTRPC_MMAP, w, 2);
}

/* m(in dmahandle buf): registered first, then passed as one input handle. */
static int hap_mem_dmahandle(remote_handle64 h, int fd, uint32_t offset, uint32_t len)
{
	remote_arg pra[1];

	if (remote_register_dma_handle(fd, len) != 0) {
		printf("hap_example: remote_register_dma_handle failed\n");
		return AEE_EBADPARM;
	}
	memset(pra, 0, sizeof(pra));
	pra[0].dma.fd = fd;
	pra[0].dma.offset = offset;
	return remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, HAP_MEM_DMAHANDLE, 0, 0, 1, 0), pra);
}

static int hap_perf(remote_handle64 h)
{
	return remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, HAP_PERF, 0, 0, 0, 0), NULL);
}

static int hap_mem(int domain, remote_handle64 h)
{
	int nErr, fd;
	void *buf = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, HAP_BUF_LEN);

	if (!buf) {
		printf("hap_example: rpcmem_alloc failed\n");
		return AEE_ENORPCMEMORY;
	}
	fd = rpcmem_to_fd(buf);
	if (fd == -1) {
		rpcmem_free(buf);
		return AEE_SUCCESS;
	}
	if (fastrpc_mmap) {
		nErr = fastrpc_mmap(domain, fd, buf, 0, HAP_BUF_LEN, FASTRPC_MAP_FD);
		if (nErr == AEE_SUCCESS) {
			int r;

			if ((nErr = hap_mem_fastrpc_mmap(h, fd, HAP_BUF_LEN)) != AEE_SUCCESS)
				printf("hap_example: mem_fastrpc_mmap: 0x%x\n", nErr);
			if ((r = fastrpc_munmap(domain, fd, NULL, 0)) != AEE_SUCCESS)
				printf("hap_example: fastrpc_munmap: 0x%x\n", r);
		} else if (nErr == AEE_EUNSUPPORTED) {
			printf("hap_example: fastrpc_mmap not supported\n");
		} else {
			printf("hap_example: fastrpc_mmap: 0x%x\n", nErr);
		}
	} else {
		printf("hap_example: fastrpc_mmap not supported\n");
	}
	if ((nErr = hap_mem_dmahandle(h, fd, 0, HAP_BUF_LEN)) != AEE_SUCCESS)
		printf("hap_example: mem_dmahandle: 0x%x\n", nErr);
	rpcmem_free(buf);
	return nErr;
}

static int hap_example(int domain, bool unsigned_pd, int selector)
{
	remote_handle64 h = (remote_handle64)-1;
	const char *suffix = standin_domain_suffix(domain);
	char *uri;
	int nErr;

	if (!suffix)
		return AEE_EBADPARM;
	if ((nErr = standin_unsigned_module(domain, unsigned_pd ? 1 : 0)) != AEE_SUCCESS) {
		printf("hap_example: remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE): 0x%x\n", nErr);
		return nErr;
	}
	if (!(uri = standin_uri(HAP_URI, suffix)))
		return AEE_ENOMEMORY;
	if ((nErr = remote_handle64_open(uri, &h)) != AEE_SUCCESS) {
		printf("hap_example: open: 0x%x\n", nErr);
		free(uri);
		return nErr;
	}
	printf("hap_example: %s\n", selectors[selector]);
	switch (selector) {
	case 0:
		hap_farf_runtime(h, 0);
		hap_farf_runtime(h, 1);
		break;
	case 1:
		nErr = hap_mem(domain, h);
		break;
	case 2:
		nErr = hap_perf(h);
		break;
	}
	remote_handle64_close(h);
	free(uri);
	printf("hap_example: %s %s\n", selectors[selector], nErr == AEE_SUCCESS ? "PASSED" : "FAILED");
	return nErr;
}

int run_test(int domain_id, bool is_unsignedpd_enabled)
{
	int result = AEE_SUCCESS;

	for (int sel = 0; sel < 3; sel++) {
		int nErr = hap_example(domain_id, is_unsignedpd_enabled, sel);

		if (nErr == AEE_EUNSUPPORTED) {
			fprintf(stderr, "hap_example: skipping unsupported selector %s (id: %d)\n", selectors[sel], sel);
		} else if (nErr != AEE_SUCCESS) {
			fprintf(stderr, "hap_example: error with selector %s (id: %d): %d\n", selectors[sel], sel, nErr);
			result = nErr;
		}
	}
	return result;
}
