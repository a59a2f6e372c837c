/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * AEEStdDef.h - the basic AEE types qaic-generated code, skels and SDK apps use.
 *
 * Mirrors qualcomm/fastrpc inc/AEEStdDef.h (development branch), written from its facts, plus
 * the legacy sized types (boolean, uint32, ..., TRUE/FALSE) that branch dropped in favour of
 * <stdint.h> but SDK-era code still spells; see docs/spec/legacy_fastrpc_api.md §2.3 for what
 * generated code expects. Each type has its _*_DEFINED guard, so headers that define the same
 * types (comdef.h and friends) can come first.
 */
#ifndef AEESTDDEF_H
#define AEESTDDEF_H

#include <stdbool.h>
#include <stdint.h>

/* --- legacy sized types ------------------------------------------------------------------- */
#ifndef _BOOLEAN_DEFINED
typedef unsigned char boolean;
#define _BOOLEAN_DEFINED
#endif
#ifndef _UINT64_DEFINED
typedef unsigned long long uint64; /* long long, as the SDK: "%llu" prints it */
#define _UINT64_DEFINED
#endif
#ifndef _UINT32_DEFINED
typedef uint32_t uint32;
#define _UINT32_DEFINED
#endif
#ifndef _UINT16_DEFINED
typedef unsigned short uint16;
#define _UINT16_DEFINED
#endif
#ifndef _UINT8_DEFINED
typedef unsigned char uint8;
#define _UINT8_DEFINED
#endif
#ifndef _INT64_DEFINED
typedef long long int64;
#define _INT64_DEFINED
#endif
#ifndef _INT32_DEFINED
typedef int32_t int32;
#define _INT32_DEFINED
#endif
#ifndef _INT16_DEFINED
typedef signed short int16;
#define _INT16_DEFINED
#endif
#ifndef _INT8_DEFINED
typedef signed char int8;
#define _INT8_DEFINED
#endif
#ifndef _BYTE_DEFINED
typedef unsigned char byte;
#define _BYTE_DEFINED
#endif

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/* --- AEE identifiers and results ---------------------------------------------------------- */
#ifndef _AEEUID_DEFINED
typedef uint32_t AEEUID;
#define _AEEUID_DEFINED
#endif
#ifndef _AEEIID_DEFINED
typedef uint32_t AEEIID;
#define _AEEIID_DEFINED
#endif
#ifndef _AEECLSID_DEFINED
typedef uint32_t AEECLSID;
#define _AEECLSID_DEFINED
#endif
#ifndef _AEEPRIVID_DEFINED
typedef uint32_t AEEPRIVID;
#define _AEEPRIVID_DEFINED
#endif
#ifndef _AECHAR_DEFINED
typedef uint16_t AECHAR;
#define _AECHAR_DEFINED
#endif

/* What IDL methods return: 0 on success, else an AEE code; out-parameters are then not copied back. */
#ifndef _AEERESULT_DEFINED
typedef int AEEResult;
#define _AEERESULT_DEFINED
#endif

#ifndef CDECL
#define CDECL
#endif

#ifndef MIN_AECHAR
#define MIN_AECHAR 0
#endif
#ifndef MAX_AECHAR
#define MAX_AECHAR 65535
#endif

/* --- preprocessor helpers ----------------------------------------------------------------- */
#define __STR__(x) #x
#define __TOSTR__(x) __STR__(x)
#define __FILE_LINE__ __FILE__ ":" __TOSTR__(__LINE__)

/* --- IDL types ---------------------------------------------------------------------------- */
#ifndef __QIDL_WCHAR_T_DEFINED__
#define __QIDL_WCHAR_T_DEFINED__
typedef uint16_t _wchar_t; /* IDL wchar */
#endif

/* An IDL string / wstring inside a sequence or union; lengths count the NUL. */
#if !defined(__QIDL_STRING_OBJECT_DEFINED__) && !defined(__STRING_OBJECT__)
#define __QIDL_STRING_OBJECT_DEFINED__
#define __STRING_OBJECT__
typedef struct _cstring_s {
	char *data;
	int dataLen;    /* capacity, set by the caller (also for rout) */
	int dataLenReq; /* rout: the length the full string needs */
} _cstring_t;

typedef struct _wstring_s {
	_wchar_t *data;
	int dataLen;
	int dataLenReq;
} _wstring_t;
#endif

#endif /* AEESTDDEF_H */
