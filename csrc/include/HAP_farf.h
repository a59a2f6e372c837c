/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * HAP_farf.h - FARF logging for skels, source-compatible with the Hexagon SDK's HAP_farf.h.
 *
 * Written for qdarpc from the SDK's documented interface (the FARF macro, its compile-time
 * switches, the HAP_LEVEL_* values and the HAP_debug* entry points, as qualcomm/fastrpc
 * inc/HAP_farf.h and inc/HAP_debug.h publish them). On a device the DSP image provides the
 * HAP_debug* functions; under qdarpc the emulated DSP's runtime (libqdarpc_dsprt.so) does,
 * and hands every message to the host's logging (logger "qdarpc.dsp") and trace.
 *
 * Usage, as on the DSP:
 *
 *     #define FARF_LOW 1            // optional: compile LOW messages in
 *     #include "HAP_farf.h"
 *     FARF(HIGH, "sum of %d items is %lld", n, (long long)s);
 *     FARF(RUNTIME_HIGH, "compiled in, enabled at run time");
 *
 * Compile-time levels: FARF(x, ...) is compiled in when FARF_x is 1 when the macro is expanded
 * (define it before or after this include). Defaults follow the SDK: LOW, MEDIUM and HIGH off
 * (HIGH on when _DEBUG is defined), ERROR, FATAL and ALWAYS on (ALWAYS logs at the HIGH level).
 * A custom level FOO needs FARF_FOO (0/1) and FARF_FOO_LEVEL. RUNTIME_* levels are always
 * compiled in and go through HAP_debug_runtime; qdarpc logs them (filter with logging).
 *
 * The HAP_debug* functions are weak references, as in the SDK: a skel linked without a runtime
 * that provides them loads, and its FARFs are dropped. Host note: messages are formatted with
 * the host's printf on an LP64 machine, where a format that is right on the 32-bit DSP may not
 * be (%d for a size_t): the functions carry printf format checking unless the skel defines
 * QDARPC_FARF_NO_FORMAT_CHECK.
 */
#ifndef HAP_FARF_H
#define HAP_FARF_H

#ifdef __cplusplus
extern "C" {
#endif

/* Message levels (the diag levels a FARF is logged at). */
#define HAP_LEVEL_LOW 0
#define HAP_LEVEL_MEDIUM 1
#define HAP_LEVEL_HIGH 2
#define HAP_LEVEL_ERROR 3
#define HAP_LEVEL_FATAL 4
#define HAP_LEVEL_CRITICAL 5
#define HAP_LEVEL_RPC_LOW 16
#define HAP_LEVEL_RPC_MEDIUM 17
#define HAP_LEVEL_RPC_HIGH 18
#define HAP_LEVEL_RPC_ERROR 19
#define HAP_LEVEL_RPC_FATAL 20
#define HAP_LEVEL_RPC_CRITICAL 21
/* Or'ed into a level: the message is a run-time FARF. */
#define HAP_LEVEL_RUNTIME (1 << 5)

/* The SDK's message buffer size (qdarpc's runtime keeps up to 1023 bytes of a message). */
#define MAX_FARF_LEN 256

#if defined(__GNUC__) && !defined(QDARPC_DSPRT_BUILD)
#define QDARPC_FARF_WEAK_ __attribute__((weak))
#else
#define QDARPC_FARF_WEAK_
#endif
#if defined(__GNUC__) && !defined(QDARPC_FARF_NO_FORMAT_CHECK)
#define QDARPC_FARF_PRINTF_(f, a) __attribute__((format(printf, f, a)))
#else
#define QDARPC_FARF_PRINTF_(f, a)
#endif

/* Not called directly: use FARF(). */
QDARPC_FARF_WEAK_ void HAP_debug_v2(int level, const char *file, int line, const char *format, ...)
	QDARPC_FARF_PRINTF_(4, 5);
QDARPC_FARF_WEAK_ void HAP_debug_runtime(int level, const char *file, int line, const char *format, ...)
	QDARPC_FARF_PRINTF_(4, 5);
/* The pre-v2 entry point: an already formatted message. */
QDARPC_FARF_WEAK_ void HAP_debug(const char *msg, int level, const char *filename, int line);

/* -- compile-time switches ------------------------------------------------------------------ */
#ifdef _DEBUG
#ifndef FARF_HIGH
#define FARF_HIGH 1
#endif
#endif
#ifndef FARF_ALWAYS
#define FARF_ALWAYS 1
#endif
#ifndef FARF_LOW
#define FARF_LOW 0
#endif
#ifndef FARF_MEDIUM
#define FARF_MEDIUM 0
#endif
#ifndef FARF_HIGH
#define FARF_HIGH 0
#endif
#ifndef FARF_ERROR
#define FARF_ERROR 1
#endif
#ifndef FARF_FATAL
#define FARF_FATAL 1
#endif
#ifndef FARF_CRITICAL
#define FARF_CRITICAL 0
#endif

#define FARF_ALWAYS_LEVEL HAP_LEVEL_HIGH
#define FARF_LOW_LEVEL HAP_LEVEL_LOW
#define FARF_MEDIUM_LEVEL HAP_LEVEL_MEDIUM
#define FARF_HIGH_LEVEL HAP_LEVEL_HIGH
#define FARF_ERROR_LEVEL HAP_LEVEL_ERROR
#define FARF_FATAL_LEVEL HAP_LEVEL_FATAL
#define FARF_CRITICAL_LEVEL HAP_LEVEL_CRITICAL

/* -- run-time levels: compiled in, routed through HAP_debug_runtime ------------------------- */
#ifndef FARF_RUNTIME_LOW
#define FARF_RUNTIME_LOW 1
#endif
#ifndef FARF_RUNTIME_MEDIUM
#define FARF_RUNTIME_MEDIUM 1
#endif
#ifndef FARF_RUNTIME_HIGH
#define FARF_RUNTIME_HIGH 1
#endif
#ifndef FARF_RUNTIME_ERROR
#define FARF_RUNTIME_ERROR 1
#endif
#ifndef FARF_RUNTIME_FATAL
#define FARF_RUNTIME_FATAL 1
#endif
#ifndef FARF_RUNTIME_RPC_LOW
#define FARF_RUNTIME_RPC_LOW 1
#endif
#ifndef FARF_RUNTIME_RPC_MEDIUM
#define FARF_RUNTIME_RPC_MEDIUM 1
#endif
#ifndef FARF_RUNTIME_RPC_HIGH
#define FARF_RUNTIME_RPC_HIGH 1
#endif
#ifndef FARF_RUNTIME_RPC_ERROR
#define FARF_RUNTIME_RPC_ERROR 1
#endif
#ifndef FARF_RUNTIME_RPC_FATAL
#define FARF_RUNTIME_RPC_FATAL 1
#endif
#ifndef FARF_RUNTIME_RPC_CRITICAL
#define FARF_RUNTIME_RPC_CRITICAL 1
#endif

#define FARF_RUNTIME_LOW_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_LOW)
#define FARF_RUNTIME_MEDIUM_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_MEDIUM)
#define FARF_RUNTIME_HIGH_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_HIGH)
#define FARF_RUNTIME_ERROR_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_ERROR)
#define FARF_RUNTIME_FATAL_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_FATAL)
#define FARF_RUNTIME_RPC_LOW_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_LOW)
#define FARF_RUNTIME_RPC_MEDIUM_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_MEDIUM)
#define FARF_RUNTIME_RPC_HIGH_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_HIGH)
#define FARF_RUNTIME_RPC_ERROR_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_ERROR)
#define FARF_RUNTIME_RPC_FATAL_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_FATAL)
#define FARF_RUNTIME_RPC_CRITICAL_LEVEL (HAP_LEVEL_RUNTIME | HAP_LEVEL_RPC_CRITICAL)

#ifndef __FILENAME__
#define __FILENAME__ __FILE__
#endif

/*
 * FARF(x, format, ...): FARF_x selects _QDARPC_FARF_0 (compiled out) or _QDARPC_FARF_1. The
 * format is part of __VA_ARGS__, so the macro is plain C99 (no ", ##__VA_ARGS__").
 */
#define FARF(x, ...) QDARPC_FARF_PASTE_(QDARPC_FARF_, QDARPC_FARF_VAL_(FARF_##x))(x, __VA_ARGS__)
#define QDARPC_FARF_PASTE_(a, b) QDARPC_FARF_PASTE2_(a, b)
#define QDARPC_FARF_PASTE2_(a, b) a##b
#define QDARPC_FARF_VAL_(a) a

#define QDARPC_FARF_0(x, ...) ((void)0)
#define QDARPC_FARF_1(x, ...)                                                                   \
	do {                                                                                    \
		if ((FARF_##x##_LEVEL) & HAP_LEVEL_RUNTIME) {                                   \
			if (HAP_debug_runtime)                                                  \
				HAP_debug_runtime((FARF_##x##_LEVEL) ^ HAP_LEVEL_RUNTIME,       \
						  __FILENAME__, __LINE__, __VA_ARGS__);          \
		} else if (HAP_debug_v2) {                                                      \
			HAP_debug_v2((FARF_##x##_LEVEL), __FILENAME__, __LINE__, __VA_ARGS__);  \
		}                                                                               \
	} while (0)

#ifdef __cplusplus
}
#endif

#endif /* HAP_FARF_H */
