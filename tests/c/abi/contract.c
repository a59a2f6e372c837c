/* Every exported function of the C ABI with bad input: NULL pointers, bad handles, bad
 * lengths, wild pointers. Prints "<call> <code> <errno>" per line; must never crash. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "AEEStdErr.h"
#include "remote.h"
#include "rpcmem.h"

#define WILD ((void *)8) /* an unmapped address */
#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"

static void show(const char *what, int rc)
{
	printf("%s 0x%x %d\n", what, (unsigned)rc, rc ? errno : 0);
	errno = 0;
}

int main(void)
{
	remote_handle h32 = 0;
	remote_handle64 h64 = 0;
	remote_arg pra[3];
	uint32_t v32 = 0;
	uint64_t v64 = 0;
	struct remote_rpc_control_latency lat = {1, 100};
	void *p;

	show("remote_handle_open(NULL)", remote_handle_open(NULL, &h32));
	show("remote_handle_open(ph=NULL)", remote_handle_open("calculator", NULL));
	show("remote_handle_open(wild name)", remote_handle_open(WILD, &h32));
	show("remote_handle_open(missing)", remote_handle_open("nosuchmodule", &h32));
	show("remote_handle_invoke(-1)", remote_handle_invoke((remote_handle)-1, 0, NULL));
	show("remote_handle_close(-1)", remote_handle_close((remote_handle)-1));
	show("remote_handle64_open(NULL)", remote_handle64_open(NULL, &h64));
	show("remote_handle64_open(ph=NULL)", remote_handle64_open(CALC CDSP_DOMAIN, NULL));
	show("remote_handle64_open(ph=wild)", remote_handle64_open(CALC CDSP_DOMAIN, WILD));
	show("remote_handle64_open(no _dom)", remote_handle64_open(CALC, &h64));
	show("remote_handle64_invoke(0)", remote_handle64_invoke(0, 0, NULL));
	show("remote_handle64_invoke(bad)", remote_handle64_invoke(0xdead, 0, NULL));
	show("remote_handle64_close(bad)", remote_handle64_close(0xdead));
	show("remote_handle64_open(ok)", remote_handle64_open(CALC CDSP_DOMAIN, &h64));
	show("remote_handle64_invoke(pra=NULL)", remote_handle64_invoke(h64, REMOTE_SCALARS_MAKE(2, 2, 1), NULL));
	show("remote_handle64_invoke(pra=wild)", remote_handle64_invoke(h64, REMOTE_SCALARS_MAKE(2, 2, 1), WILD));
	memset(pra, 0, sizeof(pra));
	pra[0].buf.pv = WILD;
	pra[0].buf.nLen = 4;
	show("remote_handle64_invoke(buf=wild)", remote_handle64_invoke(h64, REMOTE_SCALARS_MAKE(2, 2, 1), pra));
	pra[0].buf.pv = &v32;
	pra[0].buf.nLen = (size_t)-1;
	show("remote_handle64_invoke(nLen=huge)", remote_handle64_invoke(h64, REMOTE_SCALARS_MAKE(2, 2, 1), pra));
	show("remote_handle64_invoke(method 31, no args)", remote_handle64_invoke(h64, REMOTE_SCALARS_MAKE(30, 0, 0), pra));
	show("remote_handle64_control(bad)", remote_handle64_control(0xdead, DSPRPC_CONTROL_LATENCY, &lat, sizeof(lat)));
	show("remote_handle64_control(data=NULL)", remote_handle64_control(h64, DSPRPC_CONTROL_LATENCY, NULL, sizeof(lat)));
	show("remote_handle64_control(data=wild)", remote_handle64_control(h64, DSPRPC_CONTROL_LATENCY, WILD, sizeof(lat)));
	show("remote_handle64_control(len=1)", remote_handle64_control(h64, DSPRPC_CONTROL_LATENCY, &lat, 1));
	show("remote_handle64_control(len=huge)", remote_handle64_control(h64, DSPRPC_CONTROL_LATENCY, &lat, 0xffffffffu));
	show("remote_handle64_control(req=999)", remote_handle64_control(h64, 999, &lat, sizeof(lat)));
	show("remote_handle64_close(ok)", remote_handle64_close(h64));
	show("remote_handle64_close(again)", remote_handle64_close(h64));
	show("remote_handle_control(data=NULL)", remote_handle_control(DSPRPC_CONTROL_LATENCY, NULL, 8));
	show("remote_session_control(data=NULL)", remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE, NULL, 8));
	show("remote_session_control(req=999)", remote_session_control(999, &lat, sizeof(lat)));
	show("remote_mmap(no session)", remote_mmap(-1, 0, 0, 4096, &v32));
	show("remote_mmap(vaddrout=NULL)", remote_mmap(3, 0, 0, 4096, NULL));
	show("remote_munmap(no session)", remote_munmap(0x1000, 4096));
	show("remote_mmap64(vaddrout=NULL)", remote_mmap64(3, 0, 0, 4096, NULL));
	show("remote_mmap64(size<0)", remote_mmap64(3, 0, 0, -1, &v64));
	show("remote_munmap64(size<0)", remote_munmap64(0x1000, -1));
	show("remote_mem_map(out=NULL)", remote_mem_map(CDSP_DOMAIN_ID, 3, 0, 0, 4096, NULL));
	show("remote_mem_map(domain=99)", remote_mem_map(99, 3, 0, 0, 4096, &v64));
	show("remote_mem_unmap(addr=0)", remote_mem_unmap(CDSP_DOMAIN_ID, 0, 4096));
	show("fastrpc_mmap(domain=99)", fastrpc_mmap(99, 3, NULL, 0, 4096, FASTRPC_MAP_FD));
	show("fastrpc_mmap(no session)", fastrpc_mmap(CDSP_DOMAIN_ID, 3, NULL, 0, 4096, FASTRPC_MAP_FD));
	show("fastrpc_munmap(domain=99)", fastrpc_munmap(99, 3, NULL, 4096));
	remote_register_buf(NULL, 4096, 3);
	remote_register_buf(WILD, -1, 3);
	remote_register_buf_attr(NULL, 0, -1, 0);
	show("remote_register_buf(...)", 0);
	show("remote_register_dma_handle(fd=-1)", remote_register_dma_handle(-1, 4096));
	show("remote_register_dma_handle_attr(attr=77)", remote_register_dma_handle_attr(3, 4096, 77));
	rpcmem_init();
	p = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 0);
	printf("rpcmem_alloc(0) %s\n", p ? "ptr" : "NULL");
	p = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, -5);
	printf("rpcmem_alloc(-5) %s\n", p ? "ptr" : "NULL");
	p = rpcmem_alloc2(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, (size_t)1 << 62);
	printf("rpcmem_alloc2(2^62) %s\n", p ? "ptr" : "NULL");
	printf("rpcmem_to_fd(NULL) %d\n", rpcmem_to_fd(NULL));
	printf("rpcmem_to_fd(wild) %d\n", rpcmem_to_fd(WILD));
	rpcmem_free(NULL);
	rpcmem_free(WILD);
	p = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4096);
	printf("rpcmem_alloc(4096) %s fd %s\n", p ? "ptr" : "NULL", rpcmem_to_fd(p) >= 0 ? "ok" : "bad");
	printf("rpcmem_to_fd(inside) %d\n", rpcmem_to_fd((char *)p + 8));
	rpcmem_free(p);
	printf("rpcmem_to_fd(freed) %d\n", rpcmem_to_fd(p));
	rpcmem_deinit();
	show("remote_set_mode(7)", remote_set_mode(7));
	puts("done");
	return 0;
}
