/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libequivn_skel.so - a native skel whose results depend on every byte it is given
 * (tests/test_native_skel_equiv.py drives it on the native data plane and the Python reference).
 *
 * Handle style (equivn_skel_handle_invoke, _modver=1.0): 0 open, 1 close; any other method
 * hashes its in-buffers (lengths and bytes) and handle slots (fd and offset), writes a pattern
 * derived from the hash into every out-buffer, and answers by the first byte of in-buffer 0:
 * % 8 == 5 -> AEE_EBADPARM-like 0x8000040e, == 6 -> a NULL write (the PD crashes), else 0.
 */
#include <stdint.h>
#include <string.h>

#include "qdarpc/remote_abi.h"

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h;
}

int equivn_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	uint32_t m = REMOTE_SCALARS_METHOD(sc);
	uint32_t nin = REMOTE_SCALARS_INBUFS(sc), nout = REMOTE_SCALARS_OUTBUFS(sc);
	uint32_t nh = REMOTE_SCALARS_INHANDLES(sc) + REMOTE_SCALARS_OUTHANDLES(sc);
	uint64_t x = sc;
	uint32_t i, k;
	int op = 0;

	(void)h;
	if (m == 0) {
		pra[2].h64 = 1;
		return 0;
	}
	if (m == 1)
		return 0;
	for (i = 0; i < nin; i++) {
		const uint8_t *p = pra[i].buf.pv;

		x = mix(x, pra[i].buf.nLen);
		for (k = 0; k < pra[i].buf.nLen; k++)
			x = mix(x, p[k]);
	}
	for (i = 0; i < nh; i++)
		x = mix(mix(x, (uint32_t)pra[nin + nout + i].dma.fd), pra[nin + nout + i].dma.offset);
	for (i = 0; i < nout; i++) {
		uint8_t *q = pra[nin + i].buf.pv;

		for (k = 0; k < pra[nin + i].buf.nLen; k++)
			q[k] = (uint8_t)(mix(x, i * 131 + k) >> 13);
	}
	if (nin && pra[0].buf.nLen)
		op = ((const uint8_t *)pra[0].buf.pv)[0] % 8;
	if (op == 5)
		return (int)0x8000040e;
	if (op == 6)
		*(volatile int *)(uintptr_t)0 = 1;
	return 0;
}
