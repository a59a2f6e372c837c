/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * calculator.h - what qaic generates from the SDK's calculator.idl, written in its style to check
 * that generated code builds against qdarpc's SDK headers (docs/spec/legacy_fastrpc_api.md §2.5).
 */
#ifndef _CALCULATOR_H
#define _CALCULATOR_H
#include <AEEStdDef.h>
#include <remote.h>
#include <string.h>
#include <stdlib.h>

#ifndef __QAIC_HEADER
#define __QAIC_HEADER(ff) ff
#endif //__QAIC_HEADER

#ifndef __QAIC_HEADER_EXPORT
#define __QAIC_HEADER_EXPORT
#endif // __QAIC_HEADER_EXPORT

#ifndef __QAIC_HEADER_ATTRIBUTE
#define __QAIC_HEADER_ATTRIBUTE
#endif // __QAIC_HEADER_ATTRIBUTE

#ifndef __QAIC_IMPL
#define __QAIC_IMPL(ff) ff
#endif //__QAIC_IMPL

#ifndef __QAIC_IMPL_EXPORT
#define __QAIC_IMPL_EXPORT
#endif // __QAIC_IMPL_EXPORT

#ifndef __QAIC_IMPL_ATTRIBUTE
#define __QAIC_IMPL_ATTRIBUTE
#endif // __QAIC_IMPL_ATTRIBUTE
#ifdef __cplusplus
extern "C" {
#endif
#define _const_calculator_handle 0
/**
    * Opens the handle in the specified domain: uri is calculator_URI followed by a *_DOMAIN
    * suffix (and optionally "&_session=N").
    */
__QAIC_HEADER_EXPORT int __QAIC_HEADER(calculator_open)(const char* uri, remote_handle64* h) __QAIC_HEADER_ATTRIBUTE;
/**
    * Closes a handle; the last close of a session ends it.
    */
__QAIC_HEADER_EXPORT int __QAIC_HEADER(calculator_close)(remote_handle64 h) __QAIC_HEADER_ATTRIBUTE;
__QAIC_HEADER_EXPORT AEEResult __QAIC_HEADER(calculator_sum)(remote_handle64 _h, const int* vec, int vecLen, int64_t* res) __QAIC_HEADER_ATTRIBUTE;
__QAIC_HEADER_EXPORT AEEResult __QAIC_HEADER(calculator_max)(remote_handle64 _h, const int* vec, int vecLen, int* res) __QAIC_HEADER_ATTRIBUTE;
#ifndef calculator_URI
#define calculator_URI "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"
#endif /*calculator_URI*/
#ifdef __cplusplus
}
#endif
#endif //_CALCULATOR_H
