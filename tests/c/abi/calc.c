/* The calculator through the C ABI: sum and max of 0..n-1 from an rpcmem vector, as an SDK
 * app does it. Prints "sum S", "max M", "closed"; on an error "<call>: 0x<code>", exit 1.
 * Usage: calc [N] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

static int check(const char *what, int rc)
{
	if (rc) {
		printf("%s: 0x%x\n", what, (unsigned)rc);
		exit(1);
	}
	return rc;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1000, i;
	remote_handle64 h = 0;
	int64_t sum = -1;
	int32_t max = -1, *vec;
	remote_arg pra[3];

	check("remote_handle64_open", remote_handle64_open(CALC, &h));
	vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, (int)sizeof(*vec) * n);
	if (!vec)
		check("rpcmem_alloc", -1);
	for (i = 0; i < n; i++)
		vec[i] = i;
	pra[0].buf.pv = &n;
	pra[0].buf.nLen = sizeof(n);
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = sizeof(*vec) * (size_t)n;
	pra[2].buf.pv = &sum;
	pra[2].buf.nLen = sizeof(sum);
	check("sum", remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(2, 2, 1), pra));
	pra[2].buf.pv = &max;
	pra[2].buf.nLen = sizeof(max);
	check("max", remote_handle64_invoke(h, REMOTE_SCALARS_MAKE(3, 2, 1), pra));
	printf("sum %lld\nmax %d\n", (long long)sum, max);
	rpcmem_free(vec);
	check("remote_handle64_close", remote_handle64_close(h));
	puts("closed");
	return 0;
}
