/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libcalculator_skel.so - a host-compiled calculator that answers differently from the built-in
 * one (tests/test_native_skels.py): sum (method 2, sc 0x02020100) is the sum plus 1000000.
 */
#include <stdint.h>
#include <string.h>

#include "qdarpc/remote_abi.h"

int calculator_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	(void)h;
	switch (REMOTE_SCALARS_METHOD(sc)) {
	case 0:
		pra[2].h64 = 0xca1c;
		return 0;
	case 1:
		return 0;
	case 2: {
		int32_t n;
		int64_t s = 1000000;

		if (sc != 0x02020100 || pra[0].buf.nLen < 4 || pra[2].buf.nLen < 8)
			return 0x8000040e;
		memcpy(&n, pra[0].buf.pv, 4);
		if (n < 0 || (size_t)n * 4 != pra[1].buf.nLen)
			return 0x8000040e;
		for (int32_t i = 0; i < n; i++) {
			int32_t v;

			memcpy(&v, (const char *)pra[1].buf.pv + 4 * i, 4);
			s += v;
		}
		memcpy(pra[2].buf.pv, &s, 8);
		return 0;
	}
	}
	return 0x80000414;
}
