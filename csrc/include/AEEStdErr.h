/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * AEEStdErr.h - the AEE error codes FastRPC calls return.
 *
 * Mirrors the names of qualcomm/fastrpc inc/AEEStdErr.h (development branch); meaning and origin
 * of each code in docs/spec/legacy_fastrpc_api.md §5. No value is written here: they all come
 * from the one list QDA_AEE_CODES in qdarpc/aee_err.h, which also feeds the library's name table
 * and Python's qda_core._abi. A preprocessor cannot emit #define lines, so the codes are
 * enumerators where upstream has macros: they work in expressions, switch labels and static
 * initializers, but not in #if, and `#ifndef AEE_EFOO` fallbacks in old code always fire (harmless:
 * the fallback then shadows the enumerator with the same value).
 *
 * CPU build (default): AEE_EOFFSET is 0 and each code is its bare value. The enum is aee_err.h's
 * own, so this header and qdarpc/aee_err.h mix freely. It also carries the DSP-side names
 * AEE_EGLINK* (same values as AEE_ESMD*), which upstream's CPU build lacks.
 *
 * __hexagon__ build: AEE_EOFFSET is DSP_AEE_EOFFSET and each code except the four that are the
 * same on both sides (AEE_ENOSUCH, AEE_EINTERRUPTED, AEE_ECONNRESET, AEE_EWOULDBLOCK) carries it;
 * only DSP-side names exist. The values are int enumerators (0x8000040e is -2147482610), which
 * compare equal to an int result as upstream's unsigned macros do.
 */
#ifndef AEESTDERR_H
#define AEESTDERR_H

#include <stdint.h>

#if !defined(__hexagon__)

#include "qdarpc/aee_err.h"

#define AEE_EOFFSET 0

#else /* __hexagon__ */

#ifdef QDARPC_AEE_ERR_H
#error "in a __hexagon__ build include AEEStdErr.h before qdarpc/aee_err.h (whose codes are CPU-side)"
#endif

/*
 * aee_err.h's enum holds the CPU values under the same names, so it is kept in a block scope
 * where it cannot clash; its macros (QDA_AEE_CODES, DSP_AEE_EOFFSET) still apply file-wide.
 */
__attribute__((unused))
static __inline void aeestderr_cpu_codes_(void)
{
#include "qdarpc/aee_err.h"
	(void)sizeof(&qda_aee_table); /* block-scope declarations, otherwise "unused" */
	(void)sizeof(qda_aee_count);
}

#define AEE_EOFFSET DSP_AEE_EOFFSET

/* One row of QDA_AEE_CODES on the DSP, picked by its flags token. */
#define AEESTDERR_DSP_ROW(name, value, flags, desc) AEESTDERR_DSP_##flags(name, value)
#define AEESTDERR_DSP_QDA_AEE_FIXED(name, value) name = (value),
#define AEESTDERR_DSP_QDA_AEE_BOTH(name, value)  name = (int)(DSP_AEE_EOFFSET + (uint32_t)(value)),
#define AEESTDERR_DSP_QDA_AEE_ALIAS(name, value) AEESTDERR_DSP_QDA_AEE_BOTH(name, value)
#define AEESTDERR_DSP_QDA_AEE_DSP(name, value)   AEESTDERR_DSP_QDA_AEE_BOTH(name, value)
#define AEESTDERR_DSP_QDA_AEE_HLOS(name, value)  /* a CPU-side name */

enum aee_dsp_code { QDA_AEE_CODES(AEESTDERR_DSP_ROW) };

#endif /* __hexagon__ */

/* Ranges of the library's check on results: AEE codes are 1..HLOS_ERR_END (plus the offset). */
#define KERNEL_ERRNO_START -1024
#define HLOS_ERR_END QDA_AEE_CODE_MAX

#endif /* AEESTDERR_H */
