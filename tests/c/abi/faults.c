/* A program meeting injected faults (QDARPC_FAULTS) through the C ABI: prints the code of each
 * call, then shows it recovered and left nothing behind: two sessions at once (on the minimal
 * SoC, one per context bank of cdsp), each invoking, and every close returning 0.
 * Usage: faults NINVOKES */
#include <stdio.h>
#include <stdlib.h>

#include "remote.h"
#include "rpcmem.h"

#define TEST "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0" CDSP_DOMAIN
#define NULL_SC REMOTE_SCALARS_MAKE(2, 0, 0)

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 3, i, rc;
	remote_handle64 h = 0, h1 = 0, h2 = 0;
	void *mem;

	rc = remote_handle64_open(TEST, &h);
	printf("open 0x%x\n", (unsigned)rc);
	for (i = 0; !rc && i < n; i++)
		printf("invoke %d 0x%x\n", i + 1, (unsigned)remote_handle64_invoke(h, NULL_SC, NULL));
	if (!rc)
		printf("close 0x%x\n", (unsigned)remote_handle64_close(h));
	mem = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096);
	printf("rpcmem %s\n", mem ? "ok" : "NULL");
	rpcmem_free(mem);

	/* recovery: both context banks free again */
	rc = remote_handle64_open(TEST, &h1);
	rc |= remote_handle64_open(TEST, &h2);
	rc |= remote_handle64_invoke(h1, NULL_SC, NULL);
	rc |= remote_handle64_invoke(h2, NULL_SC, NULL);
	rc |= remote_handle64_close(h1);
	rc |= remote_handle64_close(h2);
	printf("recovered 0x%x\n", (unsigned)rc);
	return rc != 0;
}
