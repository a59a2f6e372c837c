/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfarf_skel.so - FARF through HAP_farf.h with the SDK's default levels
 * (tests/test_native_skels.py). Built with -Wall -Wextra -Werror -pedantic.
 *
 * Method 2 logs: LOW and HIGH (off by default: not compiled in), MEDIUM (switched on after the
 * include), ERROR, ALWAYS, RUNTIME_HIGH and one message through the pre-v2 HAP_debug.
 */
#include <stdint.h>

#include "HAP_farf.h"
#include "qdarpc/remote_abi.h"

#undef FARF_MEDIUM
#define FARF_MEDIUM 1 /* FARF_x is read where FARF() expands */

int farf_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	int n = 7;

	(void)h;
	(void)pra;
	switch (REMOTE_SCALARS_METHOD(sc)) {
	case 0:
		pra[2].h64 = 1;
		FARF(ALWAYS, "farf open");
		return 0;
	case 1:
		return 0;
	case 2:
		FARF(LOW, "low %d", n);
		FARF(HIGH, "high %d", n);
		FARF(MEDIUM, "medium %d", n);
		FARF(ERROR, "error %d of %s", n, "seven");
		FARF(ALWAYS, "always");
		FARF(RUNTIME_HIGH, "runtime high %u", 42u);
		if (HAP_debug)
			HAP_debug("preformatted", HAP_LEVEL_FATAL, "farf.c", 99);
		return 0;
	}
	return 0x80000414;
}
