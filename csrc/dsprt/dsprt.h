/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dsprt.h - the emulated DSP's runtime for host-compiled native skels (libqdarpc_dsprt.so).
 *
 * What the DSP image gives a skel and qdarpc's Python side cannot: a call into skel code that
 * survives the skel faulting (the PD crashes, the host process does not), and the HAP_debug*
 * entry points FARF logs through (csrc/include/HAP_farf.h). Loaded once per process with
 * RTLD_GLOBAL before the first skel, so a skel's undefined HAP_* symbols resolve to it, as the
 * DSP's loader resolves them against the image on a device.
 *
 * Crash guard. Handlers for SIGSEGV, SIGBUS, SIGFPE and SIGILL are installed once per process
 * (SA_SIGINFO | SA_NODEFER | SA_ONSTACK). A guarded call keeps a sigjmp_buf in its own frame
 * and points a thread-local at it; a fault the kernel raises in that thread while the pointer is
 * set jumps back there. A thread gets an alternate signal stack on its first guarded call (kept
 * if it already has one; ours is freed when the thread exits), so a stack overflow is caught
 * too. Every other fault goes to the handler that was installed before ours, or to the default
 * action: faults outside skel code behave as without the runtime.
 */
#ifndef QDARPC_DSPRT_H
#define QDARPC_DSPRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What qdarpc_dsp_call returns after a caught fault (the DSP's PD-crashed code,
 * 0x8000040d). A skel may return the same value: *signo is what tells them apart. */
#define QDARPC_DSP_CALL_FAULTED ((int)0x8000040d)

/*
 * Call skel entry point `fn` under the crash guard: `int fn(remote_handle64 h64, uint32_t sc,
 * remote_arg *pra)` when handle_style is non-zero, else `int fn(uint32_t sc, remote_arg *pra)`.
 * Returns what the skel returns and sets *signo to 0, or after a fault in this thread returns
 * QDARPC_DSP_CALL_FAULTED and sets *signo to the signal (qdarpc_dsprt_last_fault has details).
 * `signo` may be NULL.
 */
int qdarpc_dsp_call(void *fn, int handle_style, uint64_t h64, uint32_t sc, void *pra, int *signo);

/*
 * Copy n bytes from src to dst under the same guard (the kernel's copy_from_user/copy_to_user,
 * whose exception table turns a fault in the copy into -EFAULT): 0, or -EFAULT when a byte of
 * either range faults (dst then holds an unspecified prefix). Any thread; nests inside a
 * guarded skel call. What the emulated kernel's user copies take for addresses nobody vouched
 * for (qda_uaccess_set_guarded), in place of a process_vm_readv/writev syscall.
 */
int qdarpc_guarded_copy(void *dst, const void *src, size_t n);

/*
 * Whether a guarded copy in the calling thread would catch its fault now: 1 if the handlers of
 * SIGSEGV and SIGBUS are the guard's and the thread does not block either, else 0 (a handler
 * installed after ours - a crash reporter's, Python's signal.signal or faulthandler.enable() -
 * or SIG_DFL would get the fault instead). Three syscalls: for once per batch of copies, not
 * per copy. Only a fault the kernel raises is caught by a copy (a SIGSEGV sent to the thread
 * is not).
 */
int qdarpc_guard_armed(void);

/*
 * The last fault qdarpc_dsp_call caught in the calling thread: returns its signal (0: none yet)
 * and stores the faulting address and si_code.
 */
int qdarpc_dsprt_last_fault(uint64_t *addr, int *code);

/*
 * Whether the calling thread's latest qdarpc_dsp_call faulted: its signal (0: the skel
 * returned) and, if it did, the address and si_code as qdarpc_dsprt_last_fault gives them. For
 * a caller that passes a NULL `signo` and asks only when the call returned
 * QDARPC_DSP_CALL_FAULTED, which a skel may also return (the Python side: no out-parameter to
 * allocate per call).
 */
int qdarpc_dsprt_call_fault(uint64_t *addr, int *code);

/*
 * Make sure the guard's handlers are the installed ones: installs them on first use, and
 * re-installs any that were replaced since (e.g. by Python's faulthandler.enable()), chaining to
 * the replacement for faults outside skel code. Returns how many it (re-)installed, -1 on error.
 * Cheap enough for every module load, not meant for every call.
 */
int qdarpc_dsprt_ensure(void);

/* The callback FARF messages go to: (level, file, line, text). NULL: write them to stderr. The
 * level keeps HAP_LEVEL_RUNTIME or'ed in for run-time FARFs. Guarded calls are not guarded
 * while it runs (a fault in the host's logger is the host's). */
typedef void (*qdarpc_dsprt_log_fn)(int level, const char *file, int line, const char *text);
void qdarpc_dsprt_set_log(qdarpc_dsprt_log_fn cb);

#ifdef __cplusplus
}
#endif

#endif /* QDARPC_DSPRT_H */
