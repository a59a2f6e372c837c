/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vfs.h - the shim's calls into qda_core.vfs (vfs.c), kept apart from shim.c: Python.h sets
 * _FILE_OFFSET_BITS=64, under which glibc's open/open64 (and friends) are one symbol, and the
 * interposer must define each of them.
 */
#ifndef QDARPC_SHIM_VFS_H
#define QDARPC_SHIM_VFS_H

#include <stdarg.h>

/* The qda_core.vfs functions the shim calls, in one list. */
#define VFS_FUNCS(X) X(open) X(ioctl) X(close) X(mmap_source) X(stat_node) X(claim_heap_fd) X(tree)
#define VFS_ENUM(name) V_##name,
enum vfs_func { VFS_FUNCS(VFS_ENUM) V_COUNT };
#undef VFS_ENUM

/**
 * vfs_vcall() - call qda_core.vfs.<f> with Py_BuildValue(@fmt, @ap) arguments
 *
 * Return: its int result (>= 0, or -errno), -ENODEV when the emulator cannot be reached, -EIO
 * on an internal error (printed). errno is left as the caller had it.
 */
long long vfs_vcall(enum vfs_func f, const char *fmt, va_list ap);

#endif /* QDARPC_SHIM_VFS_H */
