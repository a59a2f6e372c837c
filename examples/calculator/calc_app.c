/*
 * calc_app.c - the Hexagon SDK calculator example's host application: sums and takes the max
 * of the vector 0..n-1 on the cDSP through the calculator interface (calculator_stub.c).
 *
 *     usage: calc_app [n]        (n: the vector length, default 1000)
 *
 * Prints "sum = n(n-1)/2" and "max = n-1" and exits 0; on an error prints the failing call
 * with its AEE code in hex (docs/spec/legacy_fastrpc_api.md §5) and exits 1. Under qdarpc:
 * `qdarpc run -- ./calc_app` (see README.md).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "AEEStdErr.h"
#include "calculator.h"
#include "remote.h"
#include "rpcmem.h"

#define DEFAULT_LEN 1000

static int parse_len(const char* arg, int* n) {
   char* end;
   long v;
   errno = 0;
   v = strtol(arg, &end, 10);
   if (errno || end == arg || *end || v < 0 || v > INT_MAX / (long)sizeof(int)) {
      return -1;
   }
   *n = (int)v;
   return 0;
}

int main(int argc, char** argv) {
   int nErr = AEE_SUCCESS;
   int n = DEFAULT_LEN;
   int i, max = 0;
   int64 sum = 0;
   int* vec = NULL;
   remote_handle64 h = (remote_handle64)-1;
   const char* uri = calculator_URI CDSP_DOMAIN;

   if (argc > 2 || (argc == 2 && parse_len(argv[1], &n))) {
      fprintf(stderr, "usage: %s [n]   (n: vector length, 0..%d, default %d)\n", argv[0],
              INT_MAX / (int)sizeof(int), DEFAULT_LEN);
      return 2;
   }

   /* The emulated cDSP, like a device without a signed skel, runs the skel in an unsigned PD:
    * ask for one before the session exists. */
   nErr = remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE,
                                 &(struct remote_rpc_control_unsigned_module){CDSP_DOMAIN_ID, 1},
                                 sizeof(struct remote_rpc_control_unsigned_module));
   if (nErr != AEE_SUCCESS) {
      fprintf(stderr, "ERROR 0x%x: remote_session_control(DSPRPC_CONTROL_UNSIGNED_MODULE) failed\n", (unsigned)nErr);
      goto bail;
   }

   /* ION/dma-buf memory the DSP maps instead of the library copying it (n = 0: one spare int). */
   vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, (int)sizeof(int) * (n ? n : 1));
   if (!vec) {
      nErr = AEE_ENORPCMEMORY;
      fprintf(stderr, "ERROR 0x%x: rpcmem_alloc of %d ints failed\n", (unsigned)nErr, n);
      goto bail;
   }
   for (i = 0; i < n; i++) {
      vec[i] = i;
   }

   nErr = calculator_open(uri, &h);
   if (nErr != AEE_SUCCESS) {
      fprintf(stderr, "ERROR 0x%x: calculator_open(%s) failed\n", (unsigned)nErr, uri);
      h = (remote_handle64)-1;
      goto bail;
   }
   nErr = calculator_sum(h, vec, n, &sum);
   if (nErr != AEE_SUCCESS) {
      fprintf(stderr, "ERROR 0x%x: calculator_sum failed\n", (unsigned)nErr);
      goto bail;
   }
   printf("sum = %lld\n", (long long)sum);
   nErr = calculator_max(h, vec, n, &max);
   if (nErr != AEE_SUCCESS) {
      fprintf(stderr, "ERROR 0x%x: calculator_max failed\n", (unsigned)nErr);
      goto bail;
   }
   printf("max = %d\n", max);

bail:
   if (h != (remote_handle64)-1) {
      int err = calculator_close(h);
      if (err != AEE_SUCCESS) {
         fprintf(stderr, "ERROR 0x%x: calculator_close failed\n", (unsigned)err);
         if (nErr == AEE_SUCCESS) {
            nErr = err;
         }
      }
   }
   if (vec) {
      rpcmem_free(vec);
   }
   return nErr == AEE_SUCCESS ? 0 : 1;
}
