/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * embed.c - start or join the interpreter of the process for a plain C library; see embed.h
 * and docs/c_abi.md.
 */
#define _GNU_SOURCE
#include "embed.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef QDARPC_LIBNAME
#define QDARPC_LIBNAME "libqdarpc"
#endif
#ifndef QDARPC_BUILD_PYTHON
#define QDARPC_BUILD_PYTHON ""
#endif
#ifndef QDARPC_BUILD_LIBPYTHON
#define QDARPC_BUILD_LIBPYTHON ""
#endif

struct qdarpc_py qdarpc_py;
#define py qdarpc_py

/*
 * Start-up is shared by every flavour loaded in one process (libadsprpc and libcdsprpc may
 * both be): this symbol has default visibility, so the dynamic linker binds every copy's
 * reference to the first definition and only one copy ever starts the interpreter. Its name
 * carries the layout's version: a copy from an install with another layout binds its own. @busy
 * counts threads inside a first call (starting Python, importing the package) in any copy: a
 * child forked meanwhile inherits a half-started interpreter - a lock or module lock held by a
 * thread it does not have - and gets no emulator rather than hanging.
 */
struct qdarpc_bridge_start {
	pthread_mutex_t lock;
	int busy;
	int exiting;    /* exit() has run Python's exit functions: calls answer "no emulator" */
	/*
	 * Held while a thread state is made for a thread Python does not know, and across
	 * fork() (before_fork). Making one takes CPython's runtime head lock without the GIL; a
	 * child forked meanwhile inherits that lock held by a thread it does not have, and
	 * PyOS_AfterFork_Child (which takes it to delete the other threads' states) waits forever.
	 */
	pthread_mutex_t tstate_lock;
};
__attribute__((visibility("default"))) struct qdarpc_bridge_start qdarpc_bridge_start_v2 = {
	PTHREAD_MUTEX_INITIALIZER, 0, 0, PTHREAD_MUTEX_INITIALIZER
};
#define start_lock qdarpc_bridge_start_v2.lock
#define start_busy qdarpc_bridge_start_v2.busy
#define exiting qdarpc_bridge_start_v2.exiting
#define tstate_lock qdarpc_bridge_start_v2.tstate_lock

enum { NOT_READY = 0, READY = 1, FAILED = -1 };
static int state = NOT_READY;        /* atomics: __atomic_load/store */
static int forked_mid_start;         /* this process is such a child (explained at its first call) */
static pthread_key_t tstate_key;
static __thread PyThreadState *pinned;
/* The forking thread's, from before_fork to after_fork_*: two threads may fork at once. */
static __thread PyGILState_STATE fork_gil;
static __thread int fork_fresh, fork_skipped;

void embed_note(const char *fmt, ...)
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
void embed_package_root(char out[PATH_MAX])
{
	Dl_info info;

	out[0] = '\0';
	if (!dladdr((void *)&embed_package_root, &info) || !info.dli_fname ||
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
	embed_package_root(root);
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
		embed_note("the Python library in this process lacks %s", #name); \
		return -1; \
	}
	QDARPC_PY_API(PY_RESOLVE)
#undef PY_RESOLVE
	return 0;
}

/* A C thread we gave a thread state has exited: free it. (PyGILState_Release cannot: the
 * thread's keys are already being torn down.) */
static void thread_gone(void *ts)
{
	if (__atomic_load_n(&exiting, __ATOMIC_ACQUIRE))
		return; /* the process is going: its memory with it */
	py.PyEval_RestoreThread(ts);
	py.PyThreadState_Clear(ts);
	py.PyThreadState_DeleteCurrent();
}

/* fork() in a process whose interpreter we own: the child must not inherit a GIL held by a
 * thread that does not exist there; PyOS_AfterFork_Child also runs the package's at-fork
 * hooks, which give the child a fresh emulator (the parent's lives in shared memory). */
static void before_fork(void)
{
	/* Not while a first call imports the package: that thread may hold the GIL and wait to
	 * register an at-fork handler of a module it loads, which fork() does not let it do
	 * until we return. The child of such a fork gets no emulator anyway (child_reset). */
	fork_skipped = __atomic_load_n(&start_busy, __ATOMIC_ACQUIRE) != 0;
	if (fork_skipped)
		return;
	fork_gil = embed_enter(&fork_fresh);
	py.PyOS_BeforeFork();
#if PY_VERSION_HEX < 0x030D0000
	/* tstate_lock after PyOS_BeforeFork (its import lock first, as os.fork takes it when
	 * Python forks: no inversion with a forking Python thread), waited for without the GIL
	 * (a thread making its state may need the GIL meanwhile: tracemalloc hooks the raw
	 * allocator). From 3.13 on PyOS_BeforeFork holds the head lock itself across fork(). */
	{
		PyThreadState *ts = py.PyEval_SaveThread();

		pthread_mutex_lock(&tstate_lock);
		py.PyEval_RestoreThread(ts);
	}
#endif
}

static void after_fork_parent(void)
{
	if (fork_skipped)
		return;
#if PY_VERSION_HEX < 0x030D0000
	pthread_mutex_unlock(&tstate_lock);
#endif
	py.PyOS_AfterFork_Parent();
	embed_leave(fork_gil, fork_fresh);
}

/* The forking thread keeps the thread state it forked with (as after a call): the child's
 * other thread states are gone, and deleting its last one would leave CPython unable to make
 * the next (a fatal "thread state already initialized" at the child's first call). */
static void after_fork_child(void)
{
	if (fork_skipped)
		return;
#if PY_VERSION_HEX < 0x030D0000
	pthread_mutex_unlock(&tstate_lock); /* this thread holds it: the child's copy is sound */
#endif
	py.PyOS_AfterFork_Child();
	embed_leave(fork_gil, fork_fresh);
}

/* Registered at load, so it runs in every child: one forked while a thread of the parent was
 * inside a first call has no usable interpreter (and its start lock may be held). */
static void child_reset(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	if (__atomic_load_n(&start_busy, __ATOMIC_ACQUIRE)) {
		forked_mid_start = 1;
		__atomic_store_n(&state, FAILED, __ATOMIC_RELEASE);
		start_lock = fresh;
		tstate_lock = fresh; /* before_fork skipped it: a creating thread may have held it */
	}
}

__attribute__((constructor)) static void embed_init(void)
{
	pthread_atfork(NULL, NULL, child_reset);
}

/*
 * exit() in a process whose interpreter we own: run Python's exit functions (sessions closed,
 * QDARPC_TRACE written) and flush its streams; from then on every call answers as if there
 * were no emulator (AEE_ECONNREFUSED, NULL, -1, -ENODEV), without Python. Threads inside a
 * call finish it - the GIL is not kept: the program's own exit handlers may join threads
 * that are calling (a thread pool's destructor), and would wait forever. Py_FinalizeEx would
 * abort with threads inside.
 */
static void at_exit(void)
{
	PyGILState_STATE g;
	int fresh;

	g = embed_enter(&fresh);
	py.PyRun_SimpleStringFlags("import atexit, sys\n"
				   "atexit._run_exitfuncs()\n"
				   "for stream in (sys.stdout, sys.stderr):\n"
				   "    try:\n"
				   "        stream.flush()\n"
				   "    except Exception:\n"
				   "        pass\n", NULL);
	__atomic_store_n(&exiting, 1, __ATOMIC_RELEASE);
	embed_leave(g, fresh);
}

/* Load (or find) libpython and the API table; start the interpreter unless it runs. Called
 * under the start lock; nobody can hold a GIL that does not exist yet. */
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
			embed_note("cannot load %s (%s); set QDARPC_LIBPYTHON to its path", soname, dlerror());
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
		embed_note("cannot start Python (%s): %s", python, st.err_msg ? st.err_msg : "error");
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
	embed_note("built for Python %d.%d, but this process runs Python %.12s", PY_MAJOR_VERSION,
	     PY_MINOR_VERSION, have);
	return 0;
}

/* The first call on a thread Python does not know gives it a thread state kept until the
 * thread exits (creating one per call costs ~10 us). */
PyGILState_STATE embed_enter(int *fresh)
{
	*fresh = !pinned && !py.PyGILState_GetThisThreadState();
	if (*fresh) {
		/* Made here rather than by PyGILState_Ensure, under tstate_lock (see its declaration); it
		 * becomes this thread's PyGILState state (counter 1), which Ensure then takes up. */
		pthread_mutex_lock(&tstate_lock);
		py.PyThreadState_New(py.PyInterpreterState_Main());
		pthread_mutex_unlock(&tstate_lock);
	}
	return py.PyGILState_Ensure();
}

void embed_leave(PyGILState_STATE g, int fresh)
{
	if (fresh) {
		pinned = py.PyGILState_GetThisThreadState();
		pthread_setspecific(tstate_key, pinned);
		py.PyEval_SaveThread(); /* keep the state (its counter never reaches 0), drop the GIL */
		return;
	}
	py.PyGILState_Release(g);
}

static void make_key(void)
{
	pthread_key_create(&tstate_key, thread_gone);
}

int embed_ready(int (*bind)(void))
{
	static pthread_once_t key_once = PTHREAD_ONCE_INIT;
	PyGILState_STATE g;
	int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE), fresh, rc;

	if (__atomic_load_n(&exiting, __ATOMIC_ACQUIRE))
		return -1;
	if (s == READY)
		return 0;
	if (s == FAILED) {
		if (forked_mid_start == 1 && __atomic_exchange_n(&forked_mid_start, 2, __ATOMIC_ACQ_REL) == 1)
			embed_note("this process was forked while another thread was starting the emulator: "
				   "it has none");
		return -1;
	}
	pthread_once(&key_once, make_key);
	__atomic_add_fetch(&start_busy, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&start_lock);
	rc = py.PyGILState_Ensure ? 0 : start_interpreter();
	pthread_mutex_unlock(&start_lock);
	if (rc == 0 && !version_ok())
		rc = -1;
	if (rc) {
		__atomic_store_n(&state, FAILED, __ATOMIC_RELEASE);
		__atomic_sub_fetch(&start_busy, 1, __ATOMIC_ACQ_REL);
		return -1;
	}
	/* The GIL alone guards binding: a C mutex held while waiting for the GIL deadlocks
	 * against callers that already hold it (ctypes.PyDLL). */
	g = embed_enter(&fresh);
	if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == NOT_READY)
		__atomic_store_n(&state, bind() ? FAILED : READY, __ATOMIC_RELEASE);
	embed_leave(g, fresh);
	__atomic_sub_fetch(&start_busy, 1, __ATOMIC_ACQ_REL);
	return __atomic_load_n(&state, __ATOMIC_ACQUIRE) == READY ? 0 : -1;
}


PyObject *embed_import(const char *module)
{
	PyObject *mod = py.PyImport_ImportModule(module);
	char root[PATH_MAX];

	if (!mod) {
		PyObject *sys, *path, *r = NULL;

		py.PyErr_Clear();
		embed_package_root(root);
		sys = py.PyImport_ImportModule("sys");
		path = sys ? py.PyObject_GetAttrString(sys, "path") : NULL;
		if (path && *root)
			r = py.PyObject_CallMethod(path, "append", "s", root);
		if (r)
			py.Py_DecRef(r);
		if (path)
			py.Py_DecRef(path);
		if (sys)
			py.Py_DecRef(sys);
		mod = py.PyImport_ImportModule(module);
	}
	if (!mod) {
		embed_note("cannot import the qdarpc package (%s):", module);
		py.PyErr_Print();
	}
	return mod;
}
