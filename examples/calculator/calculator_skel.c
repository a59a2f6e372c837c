/*
 * calculator_skel.c - the DSP side of the calculator interface: the dispatcher qaic would emit
 * (calculator_skel_handle_invoke) and the implementation (the SDK's calculator_imp.c) in one
 * file, built for the host as libcalculator_skel.so.
 *
 * The emulated DSP loads it from DSP_LIBRARY_PATH like the DSP's loader loads a Hexagon skel,
 * and calls the entry point with the _modver=1.0 convention: method 0 opens an instance (in0
 * {int32 len}, in1 the URI, out-handle 0 the instance's handle64), method 1 closes it
 * (in-handle 0), the IDL methods start at 2. It answers as the emulator's built-in Python
 * calculator does (qda_core/dsp/skels/calculator.py), error codes included; the wire form is
 * in docs/spec/legacy_fastrpc_api.md §2.5.
 *
 * Codes a DSP generates carry DSP_AEE_EOFFSET (AEE_EBADPARM reaches the application as
 * 0x8000040e). A Hexagon build gets that from AEEStdErr.h; this host build adds it itself.
 */
#define FARF_HIGH 1 /* compile FARF(HIGH, ...) in, as the SDK examples do */
#include "HAP_farf.h"

#include "AEEStdErr.h"
#include "calculator.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __hexagon__
#define CALC_DSP_ERR(e) (e)
#else
#define CALC_DSP_ERR(e) ((int)(DSP_AEE_EOFFSET + (uint32_t)(e)))
#endif

/* Method 31 is the escape: the method id is the first u32 of in-buffer 0. */
#define CALC_ESCAPE_MID 31
/* The buffer/handle counts of a scalars word (attributes and method masked off). */
#define CALC_COUNTS(sc) ((uint32_t)(sc) & 0x00ffffffu)

/* What an open hands out: the instance its handle64 points at. */
struct calculator_instance {
   uint32_t magic;
};
#define CALC_MAGIC 0x63616c63u /* "calc" */

/* The URI a qaic skel records for itself. */
const char calculator_skel_handle_invoke_uri[] = calculator_URI;

/* -- the implementation (the SDK's calculator_imp.c) ------------------------------------------ */

/* The value of the URI's last "_idlver" parameter: 1 if it is absent, has no "=", or is
 * calculator_IDL_VERSION. */
static int idlver_ok(const char* uri) {
   const char* p = strchr(uri, '?');
   int ok = 1;
   if (!p) {
      return 1;
   }
   p = strchr(p, '&'); /* past the symbol */
   while (p) {
      const char* key = p + 1;
      const char* end = strchr(key, '&');
      size_t len = end ? (size_t)(end - key) : strlen(key);
      const char* eq = memchr(key, '=', len);
      size_t klen = eq ? (size_t)(eq - key) : len;
      if (klen == strlen("_idlver") && !memcmp(key, "_idlver", klen)) {
         ok = !eq || (len - klen - 1 == strlen(calculator_IDL_VERSION) &&
                      !memcmp(eq + 1, calculator_IDL_VERSION, len - klen - 1));
      }
      p = end;
   }
   return ok;
}

static int calculator_impl_open(const char* uri, remote_handle64* h) {
   struct calculator_instance* inst;
   if (!idlver_ok(uri)) {
      FARF(HIGH, "calculator_open: %s: IDL version mismatch (skel has %s)", uri, calculator_IDL_VERSION);
      return CALC_DSP_ERR(AEE_ESTUBSKELVERMISMATCH);
   }
   inst = malloc(sizeof(*inst));
   if (!inst) {
      return CALC_DSP_ERR(AEE_ENOMEMORY);
   }
   inst->magic = CALC_MAGIC;
   *h = (remote_handle64)(uintptr_t)inst;
   FARF(HIGH, "calculator_open: native C skel, handle %p", (void*)inst);
   return AEE_SUCCESS;
}

static int calculator_impl_close(remote_handle64 h) {
   struct calculator_instance* inst = (struct calculator_instance*)(uintptr_t)h;
   if (!inst || inst->magic != CALC_MAGIC) {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   FARF(HIGH, "calculator_close: native C skel, handle %p", (void*)inst);
   inst->magic = 0;
   free(inst);
   return AEE_SUCCESS;
}

static int32_t vec_at(const unsigned char* vec, int i) {
   int32_t v;
   memcpy(&v, vec + 4 * (size_t)i, 4); /* a caller's buffer need not be aligned */
   return v;
}

static int64_t calculator_impl_sum(const unsigned char* vec, int n) {
   int64_t sum = 0;
   int i;
   for (i = 0; i < n; i++) {
      sum += vec_at(vec, i);
   }
   FARF(HIGH, "calculator_sum: native C skel, %d ints, sum %lld", n, (long long)sum);
   return sum;
}

static int32_t calculator_impl_max(const unsigned char* vec, int n) {
   int32_t max = 0; /* the SDK's max starts from 0: all-negative input gives 0 */
   int i;
   for (i = 0; i < n; i++) {
      int32_t v = vec_at(vec, i);
      if (v > max) {
         max = v;
      }
   }
   FARF(HIGH, "calculator_max: native C skel, %d ints, max %d", n, (int)max);
   return max;
}

/* -- the dispatcher (what qaic emits as calculator_skel.c) ------------------------------------ */

/* Method 0, sc 0x00020001: in0 {int32 len}, in1 the URI (len bytes with its NUL), out-handle 0. */
static int _skel_method_open(uint32_t _sc, remote_arg* _pra) {
   int32_t len;
   const char* uri;
   if (CALC_COUNTS(_sc) != CALC_COUNTS(REMOTE_SCALARS_MAKEX(0, 0, 2, 0, 0, 1)) || _pra[0].buf.nLen < 4) {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   memcpy(&len, _pra[0].buf.pv, 4);
   uri = (const char*)_pra[1].buf.pv;
   if (len <= 0 || (size_t)len > _pra[1].buf.nLen || uri[len - 1] != '\0') {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   return calculator_impl_open(uri, &_pra[2].h64);
}

/* Method 1, sc 0x01000010: in-handle 0 is the instance. */
static int _skel_method_close(uint32_t _sc, remote_arg* _pra) {
   if (CALC_COUNTS(_sc) != CALC_COUNTS(REMOTE_SCALARS_MAKEX(0, 1, 0, 0, 1, 0))) {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   return calculator_impl_close(_pra[0].h64);
}

/* sum and max, sc 0x0m020100: in0 primIn {int32 n}, in1 n int32s, out0 primROut of rout_size
 * bytes. Returns the vector and its length, or -1 for arguments that do not fit together. */
static int _skel_vec(uint32_t _sc, remote_arg* _pra, size_t rout_size, const unsigned char** vec) {
   int32_t n;
   if (CALC_COUNTS(_sc) != CALC_COUNTS(REMOTE_SCALARS_MAKEX(0, 2, 2, 1, 0, 0)) || _pra[0].buf.nLen < 4) {
      return -1;
   }
   memcpy(&n, _pra[0].buf.pv, 4);
   if (n < 0 || 4 * (uint64_t)n != (uint64_t)_pra[1].buf.nLen || _pra[2].buf.nLen < rout_size) {
      return -1;
   }
   *vec = (const unsigned char*)_pra[1].buf.pv;
   return n;
}

static int _skel_method_sum(uint32_t _sc, remote_arg* _pra) {
   const unsigned char* vec = NULL;
   int n = _skel_vec(_sc, _pra, 8, &vec);
   int64_t res;
   if (n < 0) {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   res = calculator_impl_sum(vec, n);
   memcpy(_pra[2].buf.pv, &res, 8);
   return AEE_SUCCESS;
}

static int _skel_method_max(uint32_t _sc, remote_arg* _pra) {
   const unsigned char* vec = NULL;
   int n = _skel_vec(_sc, _pra, 4, &vec);
   int32_t res;
   if (n < 0) {
      return CALC_DSP_ERR(AEE_EBADPARM);
   }
   res = calculator_impl_max(vec, n);
   memcpy(_pra[2].buf.pv, &res, 4);
   return AEE_SUCCESS;
}

int calculator_skel_handle_invoke(remote_handle64 _h, uint32_t _sc, remote_arg* _pra) {
   uint32_t _mid = REMOTE_SCALARS_METHOD(_sc);
   (void)_h; /* the methods keep no per-instance state */
   if (_mid == CALC_ESCAPE_MID) {
      if (REMOTE_SCALARS_INBUFS(_sc) < 1 || _pra[0].buf.nLen < 4) {
         return CALC_DSP_ERR(AEE_EBADPARM);
      }
      memcpy(&_mid, _pra[0].buf.pv, 4);
      if (_mid == 0 || _mid == 1) {
         return CALC_DSP_ERR(AEE_EUNSUPPORTED); /* open and close only as themselves */
      }
   }
   switch (_mid) {
   case 0:
      return _skel_method_open(_sc, _pra);
   case 1:
      return _skel_method_close(_sc, _pra);
   case 2:
      return _skel_method_sum(_sc, _pra);
   case 3:
      return _skel_method_max(_sc, _pra);
   default:
      return CALC_DSP_ERR(AEE_EUNSUPPORTED);
   }
}
