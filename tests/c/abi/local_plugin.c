/* The plugin local_host.c loads: one calculator call through libcdsprpc (numpy and our
 * extension modules must import although the host loaded us RTLD_LOCAL). */
#include <stdint.h>

#include "remote.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

int plugin_run(void);

int plugin_run(void)
{
	remote_handle64 h = 0;
	int32_t vec[4] = {4, 9, 2, 7}, n = 4, out = -1;
	remote_arg pra[3];
	int rc = remote_handle64_open(CALC, &h);

	if (rc)
		return rc;
	pra[0].buf.pv = &n;
	pra[0].buf.nLen = 4;
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = sizeof(vec);
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = 4;
	rc = remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(3, 2, 1), pra);
	remote_handle64_close(h);
	return rc ? rc : out;
}
