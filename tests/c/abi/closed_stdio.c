/* A program that closed its stdout and stderr, then uses the library and keeps writing to
 * stderr (as a daemon's diagnostics would): every invoke must still see the data it was given.
 * Reports on the fd given as argv[1] (a dup of the original stdout): "bad N of M". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "remote.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

int main(void)
{
	int out = dup(1), bad = 0, k, rounds = 20;
	remote_handle64 h;

	close(1);
	close(2);
	if (remote_handle64_open(CALC, &h)) {
		dprintf(out, "open failed\n");
		return 1;
	}
	for (k = 0; k < rounds; k++) {
		int32_t n = 8, v[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
		int64_t o = -1;
		remote_arg pra[3];

		fprintf(stderr, "a diagnostic on the closed stderr %d\n", k);
		fflush(stderr);
		pra[0].buf.pv = &n;
		pra[0].buf.nLen = sizeof(n);
		pra[1].buf.pv = v;
		pra[1].buf.nLen = sizeof(v);
		pra[2].buf.pv = &o;
		pra[2].buf.nLen = sizeof(o);
		if (remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 2, 1), pra) || o != 8)
			bad++;
	}
	remote_handle64_close(h);
	dprintf(out, "bad %d of %d\n", bad, rounds);
	return 0;
}
