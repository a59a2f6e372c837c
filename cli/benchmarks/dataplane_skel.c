/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataplane_skel.c - libqdarpc_bench_skel.so, the native skel of the dataplane benchmark
 * (qdarpc_cli/benchmarks/dataplane.py compiles it with the SDK headers and puts it on
 * DSP_LIBRARY_PATH). The emulated DSP calls it through its runtime with the GIL released.
 *
 * Handle style (qdarpc_bench_skel_handle_invoke, _modver=1.0): 0 open, 1 close, 2 null (any
 * buffer counts), 3 work: in0 {u32 rounds}, out0 {u64} = a xorshift chain of that many rounds,
 * pure CPU work that touches no memory. qdarpc_bench_work() is the same work, called directly
 * by the benchmark to size it.
 */
#include <stdint.h>
#include <string.h>

#include "qdarpc/remote_abi.h"

uint64_t qdarpc_bench_work(uint32_t rounds)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;
	uint32_t i;

	for (i = 0; i < rounds; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

int qdarpc_bench_skel_handle_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	(void)h;
	switch (REMOTE_SCALARS_METHOD(sc)) {
	case 0:
		pra[2].h64 = 1;
		return 0;
	case 1:
	case 2:
		return 0;
	case 3: {
		uint32_t rounds;
		uint64_t x;

		if (REMOTE_SCALARS_INBUFS(sc) != 1 || REMOTE_SCALARS_OUTBUFS(sc) != 1 ||
		    pra[0].buf.nLen < 4 || pra[1].buf.nLen < 8)
			return 0x8000040e;
		memcpy(&rounds, pra[0].buf.pv, 4);
		x = qdarpc_bench_work(rounds);
		memcpy(pra[1].buf.pv, &x, 8);
		return 0;
	}
	}
	return 0x80000414;
}
