/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * remote64.h - an alias of remote.h, which now declares the 64-bit API too.
 *
 * Mirrors qualcomm/fastrpc inc/remote64.h (development branch); older qaic stubs include it.
 * See docs/spec/legacy_fastrpc_api.md §2.
 */
#ifndef REMOTE64_H
#define REMOTE64_H

#include "remote.h"

#endif /* REMOTE64_H */
