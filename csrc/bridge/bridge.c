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
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"
#include "rpcmem.h"
#include "qdarpc/aee_err.h"

#define API __attribute__((visibility("default")))

#ifndef QDARPC_DEFAULT_DOMAIN
#define QDARPC_DEFAULT_DOMAIN 3
#endif
#ifndef QDARPC_LIBNAME
#define QDARPC_LIBNAME "libcdsprpc"
#endif
#ifndef QDARPC_BUILD_PYTHON
#define QDARPC_BUILD_PYTHON ""
#endif
#ifndef QDARPC_BUILD_LIBPYTHON
#define QDARPC_BUILD_LIBPYTHON ""
#endif

/* The Python C API this file uses, resolved at run time (no macro that touches objects). */
#define PY_API(X) \
	X(Py_IsInitialized) X(Py_GetVersion) X(Py_InitializeFromConfig) \
	X(PyConfig_InitIsolatedConfig) X(PyConfig_SetBytesString) X(PyConfig_Clear) \
	X(PyStatus_Exception) X(PyGILState_Ensure) X(PyGILState_Release) \
	X(PyGILState_GetThisThreadState) X(PyEval_SaveThread) X(PyEval_RestoreThread) \
	X(PyThreadState_Clear) X(PyThreadState_DeleteCurrent) X(PyImport_ImportModule) \
	X(PyObject_GetAttrString) X(PyObject_CallObject) X(PyObject_CallMethod) \
	X(Py_VaBuildValue) X(Py_DecRef) X(PyLong_AsLongLong) X(PyTuple_GetItem) \
	X(PyErr_Occurred) X(PyErr_Print) X(PyErr_Clear) X(PyOS_BeforeFork) X(PyOS_AfterFork_Parent) \
	X(PyOS_AfterFork_Child)

#define PY_FIELD(name) __typeof__(name) *name;
static struct { PY_API(PY_FIELD) } py;
#undef PY_FIELD

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

/*
 * Start-up is shared by every flavour loaded in one process (libadsprpc and libcdsprpc may
 * both be): this lock has default visibility, so the dynamic linker binds every copy's
 * reference to the first definition and only one copy ever starts the interpreter.
 */
API pthread_mutex_t qdarpc_bridge_start_lock = PTHREAD_MUTEX_INITIALIZER;

enum { NOT_READY = 0, READY = 1, FAILED = -1 };
static int state = NOT_READY;        /* atomics: __atomic_load/store */
static PyObject *funcs[F_COUNT];     /* borrowed from a tuple kept for the process' life */
static PyObject *cabi;               /* libadsprpc_compat._cabi */
static pthread_key_t tstate_key;
static __thread PyThreadState *pinned;
static PyGILState_STATE fork_gil;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("qdarpc: " QDARPC_LIBNAME ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

#define PYTHON_PATH_MAX (PATH_MAX + 32)

/* Strip @levels trailing components of @path in place; -1 if it has fewer. */
static int up(char *path, int levels)
{
	while (levels-- > 0) {
		char *slash = strrchr(path, '/');

		if (!slash || slash == path)
			return -1;
		*slash = '\0';
	}
	return 0;
}

/* The directory that holds the libadsprpc_compat package this library belongs to
 * (this file is <root>/libadsprpc_compat/sdk/lib/libcdsprpc.so.1); "" if unknown. */
static void package_root(char out[PATH_MAX])
{
	Dl_info info;

	out[0] = '\0';
	if (!dladdr((void *)&package_root, &info) || !info.dli_fname ||
	    !realpath(info.dli_fname, out) || up(out, 4))
		out[0] = '\0';
}

/*
 * The interpreter whose environment holds the package: $QDARPC_PYTHON (`qdarpc run` sets
 * it), else <prefix>/bin/pythonX.Y when the package sits in <prefix>/lib/pythonX.Y/
 * site-packages, else the interpreter that built this library (an in-place build).
 */
static void find_python(char out[PYTHON_PATH_MAX])
{
	const char *env = getenv("QDARPC_PYTHON");
	char root[PATH_MAX];

	if (env && *env) {
		snprintf(out, PYTHON_PATH_MAX, "%s", env);
		return;
	}
	package_root(root);
	if (*root && strstr(root, "-packages") && up(root, 3) == 0) {
		snprintf(out, PYTHON_PATH_MAX, "%s/bin/python%d.%d", root, PY_MAJOR_VERSION,
			 PY_MINOR_VERSION);
		if (access(out, X_OK) == 0)
			return;
	}
	snprintf(out, PYTHON_PATH_MAX, "%s", QDARPC_BUILD_PYTHON);
}

static int resolve(void *handle)
{
#define PY_RESOLVE(name) \
	if (!(*(void **)&py.name = dlsym(handle, #name))) { \
		note("the Python library in this process lacks %s", #name); \
		return -1; \
	}
	PY_API(PY_RESOLVE)
#undef PY_RESOLVE
	return 0;
}

/* A C thread we gave a thread state has exited: free it. (PyGILState_Release cannot: the
 * thread's keys are already being torn down.) */
static void thread_gone(void *ts)
{
	py.PyEval_RestoreThread(ts);
	py.PyThreadState_Clear(ts);
	py.PyThreadState_DeleteCurrent();
}

/* fork() in a process whose interpreter we own: the child must not inherit a GIL held by a
 * thread that does not exist there; PyOS_AfterFork_Child also runs the package's at-fork
 * hooks, which give the child a fresh emulator (the parent's lives in shared memory). */
static void before_fork(void)
{
	fork_gil = py.PyGILState_Ensure();
	py.PyOS_BeforeFork();
}

static void after_fork_parent(void)
{
	py.PyOS_AfterFork_Parent();
	py.PyGILState_Release(fork_gil);
}

static void after_fork_child(void)
{
	py.PyOS_AfterFork_Child();
	py.PyGILState_Release(fork_gil);
}

/* exit() in a process whose interpreter we own: run the package's exit work (sessions
 * closed, QDARPC_TRACE written) and keep the GIL, so threads still calling block rather
 * than race the exit. Py_FinalizeEx would abort with threads inside. */
static void at_exit(void)
{
	PyObject *r;

	py.PyGILState_Ensure();
	r = cabi ? py.PyObject_CallMethod(cabi, "at_exit", NULL) : NULL;
	if (r)
		py.Py_DecRef(r);
	else
		py.PyErr_Clear();
}

/* Load (or find) libpython and the API table; start the interpreter unless it runs. Called
 * under qdarpc_bridge_start_lock; nobody can hold a GIL that does not exist yet. */
static int start_interpreter(void)
{
	char python[PYTHON_PATH_MAX], soname[64];
	const char *lib = getenv("QDARPC_LIBPYTHON");
	const int mode = RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE;
	void *handle = RTLD_DEFAULT;
	PyConfig config;
	PyStatus st;

	if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized")) {
		snprintf(soname, sizeof(soname), "libpython%d.%d.so.1.0", PY_MAJOR_VERSION,
			 PY_MINOR_VERSION);
		handle = NULL;
		if (lib && *lib)
			handle = dlopen(lib, mode);
		if (!handle && *QDARPC_BUILD_LIBPYTHON)
			handle = dlopen(QDARPC_BUILD_LIBPYTHON, mode);
		if (!handle)
			handle = dlopen(soname, mode);
		if (!handle) {
			note("cannot load %s (%s); set QDARPC_LIBPYTHON to its path", soname, dlerror());
			return -1;
		}
	}
	if (resolve(handle))
		return -1;
	if (py.Py_IsInitialized())
		return 0;
	find_python(python);
	py.PyConfig_InitIsolatedConfig(&config);
	config.install_signal_handlers = 0; /* the host's signal dispositions stay its own */
	config.parse_argv = 0;
	st = py.PyConfig_SetBytesString(&config, &config.executable, python);
	if (!py.PyStatus_Exception(st))
		st = py.Py_InitializeFromConfig(&config);
	py.PyConfig_Clear(&config);
	if (py.PyStatus_Exception(st)) {
		note("cannot start Python (%s): %s", python, st.err_msg ? st.err_msg : "error");
		return -1;
	}
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
	atexit(at_exit);
	py.PyEval_SaveThread(); /* the main thread state stays bound to this thread */
	return 0;
}

static int version_ok(void)
{
	char want[16];
	const char *have = py.Py_GetVersion();
	int n = snprintf(want, sizeof(want), "%d.%d.", PY_MAJOR_VERSION, PY_MINOR_VERSION);

	if (strncmp(have, want, (size_t)n) == 0)
		return 1;
	note("built for Python %d.%d, but this process runs Python %.12s", PY_MAJOR_VERSION,
	     PY_MINOR_VERSION, have);
	return 0;
}

/* Import libadsprpc_compat._cabi and bind this flavour's functions. With the GIL held. A
 * host Python without the package on sys.path gets the directory that holds it. */
static int bind_functions(void)
{
	char root[PATH_MAX];
	PyObject *mod, *bound, *r;
	int i;

	mod = py.PyImport_ImportModule("libadsprpc_compat._cabi");
	package_root(root);
	if (!mod && *root) {
		PyObject *sys = py.PyImport_ImportModule("sys");
		PyObject *path = sys ? py.PyObject_GetAttrString(sys, "path") : NULL;

		py.PyErr_Clear();
		r = path ? py.PyObject_CallMethod(path, "append", "s", root) : NULL;
		if (r)
			py.Py_DecRef(r);
		mod = py.PyImport_ImportModule("libadsprpc_compat._cabi");
	}
	if (!mod) {
		note("cannot import the qdarpc package (libadsprpc_compat):");
		py.PyErr_Print();
		return -1;
	}
	bound = py.PyObject_CallMethod(mod, "bind", "sis", QDARPC_LIBNAME, QDARPC_DEFAULT_DOMAIN,
				       abi_names);
	if (!bound) {
		note("cannot bind the C ABI:");
		py.PyErr_Print();
		return -1;
	}
	for (i = 0; i < F_COUNT; i++)
		funcs[i] = py.PyTuple_GetItem(bound, i);
	cabi = mod;
	return 0;
}

/* Take the GIL for one call; the first call on a thread Python does not know gives it a
 * thread state kept until the thread exits (creating one per call costs ~10 us). */
static PyGILState_STATE enter(int *fresh)
{
	*fresh = !pinned && !py.PyGILState_GetThisThreadState();
	return py.PyGILState_Ensure();
}

static void leave(PyGILState_STATE g, int fresh)
{
	if (fresh) {
		pinned = py.PyGILState_GetThisThreadState();
		pthread_setspecific(tstate_key, pinned);
		py.PyEval_SaveThread(); /* keep the state (counter 1), drop the GIL */
		return;
	}
	py.PyGILState_Release(g);
}

static void make_key(void)
{
	pthread_key_create(&tstate_key, thread_gone);
}

/* 0 when the emulator is reachable; else an AEE code (the first failure is explained on
 * stderr once). */
static int ready(void)
{
	static pthread_once_t key_once = PTHREAD_ONCE_INIT;
	PyGILState_STATE g;
	int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE), fresh, rc;

	if (s == READY)
		return 0;
	if (s == FAILED)
		return AEE_ECONNREFUSED;
	pthread_once(&key_once, make_key);
	pthread_mutex_lock(&qdarpc_bridge_start_lock);
	rc = py.PyGILState_Ensure ? 0 : start_interpreter();
	pthread_mutex_unlock(&qdarpc_bridge_start_lock);
	if (rc == 0 && !version_ok())
		rc = -1;
	if (rc) {
		__atomic_store_n(&state, FAILED, __ATOMIC_RELEASE);
		return AEE_ECONNREFUSED;
	}
	/* The GIL alone guards binding: a C mutex held while waiting for the GIL deadlocks
	 * against callers that already hold it (ctypes.PyDLL). */
	g = enter(&fresh);
	if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == NOT_READY)
		__atomic_store_n(&state, bind_functions() ? FAILED : READY, __ATOMIC_RELEASE);
	leave(g, fresh);
	return __atomic_load_n(&state, __ATOMIC_ACQUIRE) == READY ? 0 : AEE_ECONNREFUSED;
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

	if (ready()) {
		errno = saved;
		return unavailable;
	}
	g = enter(&fresh);
	va_start(ap, fmt);
	args = py.Py_VaBuildValue(fmt, ap);
	va_end(ap);
	r = args ? py.PyObject_CallObject(funcs[f], args) : NULL;
	if (r) {
		v = py.PyLong_AsLongLong(r);
		py.Py_DecRef(r);
	}
	if (!r || (v == -1 && py.PyErr_Occurred())) {
		note("internal error in %s:", abi_name[f]);
		py.PyErr_Print();
		v = unavailable;
	}
	if (args)
		py.Py_DecRef(args);
	leave(g, fresh);
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
	return code(call(F_remote_handle64_invoke, AEE_ECONNREFUSED, "(KIK)",
			 (unsigned long long)h, sc, P(pra)));
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
