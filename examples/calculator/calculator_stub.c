/*
 * calculator_stub.c - the host side of the calculator interface, written by hand the way qaic
 * emits calculator_stub.c: each method packs its arguments into a remote_arg array (primitive
 * inputs in one in-buffer, primitive "rout" results in one out-buffer) and calls
 * remote_handle64_invoke() with the scalars word of the method. Link it into the application
 * with -lcdsprpc. Wire form: docs/spec/legacy_fastrpc_api.md §2.5.
 */
#include "calculator.h"

#include "AEEStdErr.h"

#include <stdint.h>
#include <string.h>

#ifndef _QAIC_ENV_H
#define _QAIC_ENV_H

#ifndef __QAIC_REMOTE
#define __QAIC_REMOTE(ff) ff
#endif //__QAIC_REMOTE

#ifndef __QAIC_STUB
#define __QAIC_STUB(ff) ff
#endif //__QAIC_STUB

#ifndef __QAIC_STUB_EXPORT
#define __QAIC_STUB_EXPORT
#endif // __QAIC_STUB_EXPORT

#ifndef __QAIC_STUB_ATTRIBUTE
#define __QAIC_STUB_ATTRIBUTE
#endif // __QAIC_STUB_ATTRIBUTE

#define _COPY(dst, dof, src, sof, sz) \
   memcpy((char*)(dst) + (dof), (const char*)(src) + (sof), (sz))

#define _TRY(ee, func) \
   do { \
      if (AEE_SUCCESS != ((ee) = (func))) { \
         goto ee##bail; \
      } \
   } while (0)

#define _CATCH(exception) exception##bail: if (exception != AEE_SUCCESS)

#endif // _QAIC_ENV_H

/* Method ids, as qaic numbers them: 0 and 1 are the implicit open/close of a remote_handle64
 * interface, then the IDL methods in order. */
#define _calculator_sum_mid 2
#define _calculator_max_mid 3

__QAIC_STUB_EXPORT int __QAIC_STUB(calculator_open)(const char* uri, remote_handle64* h) __QAIC_STUB_ATTRIBUTE {
   return __QAIC_REMOTE(remote_handle64_open)(uri, h);
}

__QAIC_STUB_EXPORT int __QAIC_STUB(calculator_close)(remote_handle64 h) __QAIC_STUB_ATTRIBUTE {
   return __QAIC_REMOTE(remote_handle64_close)(h);
}

/* long m(in sequence<long> in0, rout <8-byte primitive> rout1): sc 0x<mid>020100.
 * _pra[0] in:  primIn {uint32 in0Len}
 * _pra[1] in:  in0, 4 * in0Len bytes
 * _pra[2] out: primROut {rout1} */
static __inline int _stub_method(remote_handle64 _handle, uint32_t _mid, const void* _in0, uint32_t _in0Len, uint64_t _rout1[1]) {
   remote_arg _pra[3];
   uint32_t _primIn[1];
   uint64_t _primROut[1] = {0};
   remote_arg* _praIn;
   remote_arg* _praROut;
   int _nErr = 0;
   memset(_pra, 0, sizeof(_pra));
   _COPY(_primIn, 0, &_in0Len, 0, 4);
   _pra[0].buf.pv = (void*)_primIn;
   _pra[0].buf.nLen = sizeof(_primIn);
   _praIn = (_pra + 1);
   _praIn[0].buf.pv = (void*)(uintptr_t)_in0;
   _praIn[0].buf.nLen = (4 * _in0Len);
   _praROut = (_praIn + 1);
   _praROut[0].buf.pv = (void*)_primROut;
   _praROut[0].buf.nLen = sizeof(_primROut);
   _TRY(_nErr, __QAIC_REMOTE(remote_handle64_invoke)(_handle, REMOTE_SCALARS_MAKEX(0, _mid, 2, 1, 0, 0), _pra));
   _COPY(_rout1, 0, _primROut, 0, 8);
   _CATCH(_nErr) {}
   return _nErr;
}

/* The same with a 4-byte rout. */
static __inline int _stub_method_1(remote_handle64 _handle, uint32_t _mid, const void* _in0, uint32_t _in0Len, uint32_t _rout1[1]) {
   remote_arg _pra[3];
   uint32_t _primIn[1];
   uint32_t _primROut[1] = {0};
   remote_arg* _praIn;
   remote_arg* _praROut;
   int _nErr = 0;
   memset(_pra, 0, sizeof(_pra));
   _COPY(_primIn, 0, &_in0Len, 0, 4);
   _pra[0].buf.pv = (void*)_primIn;
   _pra[0].buf.nLen = sizeof(_primIn);
   _praIn = (_pra + 1);
   _praIn[0].buf.pv = (void*)(uintptr_t)_in0;
   _praIn[0].buf.nLen = (4 * _in0Len);
   _praROut = (_praIn + 1);
   _praROut[0].buf.pv = (void*)_primROut;
   _praROut[0].buf.nLen = sizeof(_primROut);
   _TRY(_nErr, __QAIC_REMOTE(remote_handle64_invoke)(_handle, REMOTE_SCALARS_MAKEX(0, _mid, 2, 1, 0, 0), _pra));
   _COPY(_rout1, 0, _primROut, 0, 4);
   _CATCH(_nErr) {}
   return _nErr;
}

__QAIC_STUB_EXPORT int __QAIC_STUB(calculator_sum)(remote_handle64 _handle, const int* vec, int vecLen, int64* res) __QAIC_STUB_ATTRIBUTE {
   uint64_t _res = 0;
   int _nErr = _stub_method(_handle, _calculator_sum_mid, vec, (uint32_t)vecLen, &_res);
   if (_nErr == AEE_SUCCESS) {
      _COPY(res, 0, &_res, 0, 8);
   }
   return _nErr;
}

__QAIC_STUB_EXPORT int __QAIC_STUB(calculator_max)(remote_handle64 _handle, const int* vec, int vecLen, int* res) __QAIC_STUB_ATTRIBUTE {
   uint32_t _res = 0;
   int _nErr = _stub_method_1(_handle, _calculator_max_mid, vec, (uint32_t)vecLen, &_res);
   if (_nErr == AEE_SUCCESS) {
      _COPY(res, 0, &_res, 0, 4);
   }
   return _nErr;
}
