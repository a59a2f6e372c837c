/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bridge.c - the C ABI of the FastRPC user library (libcdsprpc.so.1 and its siblings) over
 * libadsprpc_compat, the Python implementation of the same API: one implementation of the
 * semantics, two faces. See docs/c_abi.md.
 *
 * Every exported function forwards its arguments, as integers and raw addresses, to the
 * function of the same name in libadsprpc_compat._cabi and returns what it returns; the
 * Python side reads and writes the caller's memory with the emulator's checked user copies.
 * Nothing but return codes (and errno) crosses back: Python errors are codes there.
 *
 * The library never links libpython, so it loads into any process:
 *  - inside a running Python (a ctypes caller, pytest) it joins that interpreter;
 *  - in a plain C process it loads the libpython of the interpreter qdarpc is installed in
 *    (RTLD_GLOBAL, so our extension modules resolve against it even when the host loaded us
 *    RTLD_LOCAL) and starts it isolated, without signal handlers, pointing it at that
 *    interpreter's environment so the installed package imports with no PYTHONPATH.
 * Python API functions are called through a table filled by dlsym; `--no-undefined` at link
 * time proves no direct reference slipped in.
 */
#define _GNU_SOURCE
#include "embed.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "remote.h"
#include "rpcmem.h"
#include "qdarpc/aee_err.h"
#include "qdarpc/face.h"

#define API __attribute__((visibility("default")))
#define py qdarpc_py

#ifndef QDARPC_DEFAULT_DOMAIN
#define QDARPC_DEFAULT_DOMAIN 3
#endif
#ifndef QDARPC_LIBNAME
#define QDARPC_LIBNAME "libcdsprpc"
#endif

/* The exported functions, in the order the Python side binds them (the one list). */
#define ABI_FUNCS(X) \
	X(remote_handle_open) X(remote_handle_invoke) X(remote_handle_close) \
	X(remote_handle64_open) X(remote_handle64_invoke) X(remote_handle64_close) \
	X(remote_handle_control) X(remote_handle64_control) X(remote_session_control) \
	X(remote_mmap) X(remote_munmap) X(remote_mmap64) X(remote_munmap64) \
	X(remote_mem_map) X(remote_mem_unmap) X(fastrpc_mmap) X(fastrpc_munmap) \
	X(remote_register_buf) X(remote_register_buf_attr) X(remote_register_dma_handle) \
	X(remote_register_dma_handle_attr) X(remote_set_mode) X(rpcmem_init) X(rpcmem_deinit) \
	X(rpcmem_alloc) X(rpcmem_alloc2) X(rpcmem_free) X(rpcmem_to_fd)

#define ABI_ENUM(name) F_##name,
enum abi_func { ABI_FUNCS(ABI_ENUM) F_COUNT };
#undef ABI_ENUM
#define ABI_STR(name) #name " "
static const char abi_names[] = ABI_FUNCS(ABI_STR);
#undef ABI_STR
#define ABI_NAME(name) #name,
static const char *const abi_name[F_COUNT] = { ABI_FUNCS(ABI_NAME) };
#undef ABI_NAME

static PyObject *funcs[F_COUNT];     /* borrowed from a tuple kept for the process' life */
static const struct qdarpc_face *face; /* remote_handle64_invoke's fast entry, or NULL */

/* The fast entry (qdarpc/face.h), kept for the process' life with its capsule. Without one (a
 * package of another layout) every call takes the Python function: slower, the same result. */
static void bind_face(PyObject *mod)
{
	PyObject *cap = py.PyObject_CallMethod(mod, "face", "s", QDARPC_LIBNAME);
	const struct qdarpc_face *f = cap ? py.PyCapsule_GetPointer(cap, QDARPC_FACE_CAPSULE) : NULL;

	if (f && f->abi == QDARPC_FACE_ABI)
		face = f;
	else
		py.PyErr_Clear();
}

/* Import libadsprpc_compat._cabi and bind this flavour's functions. With the GIL held. A
 * host Python without the package on sys.path gets the directory that holds it. */
static int bind(void)
{
	PyObject *mod = embed_import("libadsprpc_compat._cabi"), *bound;
	int i;

	if (!mod)
		return -1;
	bound = py.PyObject_CallMethod(mod, "bind", "sis", QDARPC_LIBNAME, QDARPC_DEFAULT_DOMAIN,
				       abi_names);
	if (!bound) {
		embed_note("cannot bind the C ABI:");
		py.PyErr_Print();
		return -1;
	}
	for (i = 0; i < F_COUNT; i++) {
		funcs[i] = py.PyTuple_GetItem(bound, i);
		if (!funcs[i]) { /* the two lists disagree: no call may reach a NULL */
			embed_note("cannot bind the C ABI's %s:", abi_name[i]);
			py.PyErr_Print();
			return -1;
		}
	}
	bind_face(mod);
	return 0;
}

/*
 * Call the Python side of @f with arguments built by Py_BuildValue @fmt. It returns an int:
 * for functions returning an AEE code, the code in bits 31:0 and the errno the real library
 * would leave in bits 47:32; for rpcmem_alloc(2) the address; for rpcmem_to_fd the fd.
 */
static long long call(enum abi_func f, long long unavailable, const char *fmt, ...)
{
	PyGILState_STATE g;
	PyObject *args, *r;
	long long v = AEE_EFAILED;
	va_list ap;
	int fresh, saved = errno; /* the caller's errno, unless the call sets one */

	if (embed_ready(bind)) {
		errno = saved;
		return unavailable;
	}
	g = embed_enter(&fresh);
	va_start(ap, fmt);
	args = py.Py_VaBuildValue(fmt, ap);
	va_end(ap);
	r = args ? py.PyObject_CallObject(funcs[f], args) : NULL;
	if (r) {
		v = py.PyLong_AsLongLong(r);
		py.Py_DecRef(r);
	}
	if (!r || (v == -1 && py.PyErr_Occurred())) {
		embed_note("internal error in %s:", abi_name[f]);
		py.PyErr_Print();
		v = unavailable;
	}
	if (args)
		py.Py_DecRef(args);
	embed_leave(g, fresh);
	errno = saved;
	return v;
}

/* An AEE code result: the code as int, and errno where the real library sets one (else the
 * caller's errno is left as it was). */
static int code(long long v)
{
	int err = (int)((unsigned long long)v >> 32 & 0xFFFF);

	if (err)
		errno = err;
	return (int)(uint32_t)v;
}

#define P(ptr) ((unsigned long long)(uintptr_t)(ptr))

/* -- remote.h ------------------------------------------------------------------------ */

API int remote_handle_open(const char *name, remote_handle *ph)
{
	return code(call(F_remote_handle_open, AEE_ECONNREFUSED, "(KK)", P(name), P(ph)));
}

API int remote_handle_invoke(remote_handle h, uint32_t sc, remote_arg *pra)
{
	return code(call(F_remote_handle_invoke, AEE_ECONNREFUSED, "(IIK)", h, sc, P(pra)));
}

API int remote_handle_close(remote_handle h)
{
	return code(call(F_remote_handle_close, AEE_ECONNREFUSED, "(I)", h));
}

API int remote_handle64_open(const char *name, remote_handle64 *ph)
{
	return code(call(F_remote_handle64_open, AEE_ECONNREFUSED, "(KK)", P(name), P(ph)));
}

API int remote_handle64_invoke(remote_handle64 h, uint32_t sc, remote_arg *pra)
{
	PyGILState_STATE g;
	long long v;
	int fresh, saved = errno;

	if (embed_ready(bind)) {
		errno = saved;
		return AEE_ECONNREFUSED;
	}
	if (!face)
		return code(call(F_remote_handle64_invoke, AEE_ECONNREFUSED, "(KIK)",
				 (unsigned long long)h, sc, P(pra)));
	/* the handle's route, without the GIL, for a thread that has a Python thread state (its
	 * first call made one: a route's rare steps take the GIL through it) */
	if (face->abi >= 2 && py.PyGILState_GetThisThreadState()) {
		v = face->route_invoke(face->ctx, (unsigned long long)h, sc, P(pra));
		if (v != QDARPC_FACE_DECLINED) {
			errno = saved;
			return code(v);
		}
	}
	g = embed_enter(&fresh);
	v = face->h64_invoke(face->ctx, (unsigned long long)h, sc, P(pra));
	embed_leave(g, fresh);
	errno = saved;
	return code(v);
}

API int remote_handle64_close(remote_handle64 h)
{
	return code(call(F_remote_handle64_close, AEE_ECONNREFUSED, "(K)", (unsigned long long)h));
}

API int remote_handle_control(uint32_t req, void *data, uint32_t datalen)
{
	return code(call(F_remote_handle_control, AEE_ECONNREFUSED, "(IKI)", req, P(data), datalen));
}

API int remote_handle64_control(remote_handle64 h, uint32_t req, void *data, uint32_t datalen)
{
	return code(call(F_remote_handle64_control, AEE_ECONNREFUSED, "(KIKI)",
			 (unsigned long long)h, req, P(data), datalen));
}

API int remote_session_control(uint32_t req, void *data, uint32_t datalen)
{
	return code(call(F_remote_session_control, AEE_ECONNREFUSED, "(IKI)", req, P(data), datalen));
}

API int remote_mmap(int fd, uint32_t flags, uint32_t vaddrin, int size, uint32_t *vaddrout)
{
	return code(call(F_remote_mmap, AEE_ECONNREFUSED, "(iIIiK)", fd, flags, vaddrin, size,
			 P(vaddrout)));
}

API int remote_munmap(uint32_t vaddrout, int size)
{
	return code(call(F_remote_munmap, AEE_ECONNREFUSED, "(Ii)", vaddrout, size));
}

API int remote_mmap64(int fd, uint32_t flags, uint64_t vaddrin, int64_t size, uint64_t *vaddrout)
{
	return code(call(F_remote_mmap64, AEE_ECONNREFUSED, "(iIKLK)", fd, flags,
			 (unsigned long long)vaddrin, (long long)size, P(vaddrout)));
}

API int remote_munmap64(uint64_t vaddrout, int64_t size)
{
	return code(call(F_remote_munmap64, AEE_ECONNREFUSED, "(KL)", (unsigned long long)vaddrout,
			 (long long)size));
}

API int remote_mem_map(int domain, int fd, int flags, uint64_t virtAddr, size_t size,
		       uint64_t *remoteVirtAddr)
{
	return code(call(F_remote_mem_map, AEE_ECONNREFUSED, "(iiiKKK)", domain, fd, flags,
			 (unsigned long long)virtAddr, (unsigned long long)size, P(remoteVirtAddr)));
}

API int remote_mem_unmap(int domain, uint64_t remoteVirtAddr, size_t size)
{
	return code(call(F_remote_mem_unmap, AEE_ECONNREFUSED, "(iKK)", domain,
			 (unsigned long long)remoteVirtAddr, (unsigned long long)size));
}

API int fastrpc_mmap(int domain, int fd, void *addr, int offset, size_t length,
		     enum fastrpc_map_flags flags)
{
	return code(call(F_fastrpc_mmap, AEE_ECONNREFUSED, "(iiKiKi)", domain, fd, P(addr), offset,
			 (unsigned long long)length, (int)flags));
}

API int fastrpc_munmap(int domain, int fd, void *addr, size_t length)
{
	return code(call(F_fastrpc_munmap, AEE_ECONNREFUSED, "(iiKK)", domain, fd, P(addr),
			 (unsigned long long)length));
}

API void remote_register_buf(void *buf, int size, int fd)
{
	code(call(F_remote_register_buf, 0, "(Kii)", P(buf), size, fd));
}

API void remote_register_buf_attr(void *buf, int size, int fd, int attr)
{
	code(call(F_remote_register_buf_attr, 0, "(Kiii)", P(buf), size, fd, attr));
}

API int remote_register_dma_handle(int fd, uint32_t len)
{
	return code(call(F_remote_register_dma_handle, AEE_ECONNREFUSED, "(iI)", fd, len));
}

API int remote_register_dma_handle_attr(int fd, uint32_t len, uint32_t attr)
{
	return code(call(F_remote_register_dma_handle_attr, AEE_ECONNREFUSED, "(iII)", fd, len, attr));
}

API int remote_set_mode(uint32_t mode)
{
	return code(call(F_remote_set_mode, AEE_ECONNREFUSED, "(I)", mode));
}

/* -- rpcmem.h ------------------------------------------------------------------------ */

API void rpcmem_init(void)
{
	call(F_rpcmem_init, 0, "()");
}

API void rpcmem_deinit(void)
{
	call(F_rpcmem_deinit, 0, "()");
}

API void *rpcmem_alloc(int heapid, uint32_t flags, int size)
{
	return (void *)(uintptr_t)call(F_rpcmem_alloc, 0, "(iIi)", heapid, flags, size);
}

API void *rpcmem_alloc2(int heapid, uint32_t flags, size_t size)
{
	return (void *)(uintptr_t)call(F_rpcmem_alloc2, 0, "(iIK)", heapid, flags,
				       (unsigned long long)size);
}

API void rpcmem_free(void *po)
{
	call(F_rpcmem_free, 0, "(K)", P(po));
}

API int rpcmem_to_fd(void *po)
{
	return (int)call(F_rpcmem_to_fd, -1, "(K)", P(po));
}
