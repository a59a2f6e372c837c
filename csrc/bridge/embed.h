/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * embed.h - reaching the emulator's Python from a C library that never links libpython: join
 * the interpreter of a process that runs one, or load and start the one qdarpc is installed
 * in. Compiled into each plain library that needs it (the C ABI bridge, the device shim);
 * every copy keeps its own state but they share one start-up lock, so one interpreter is
 * started per process. See docs/c_abi.md.
 */
#ifndef QDARPC_EMBED_H
#define QDARPC_EMBED_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The Python C API the libraries use, resolved at run time (no macro that touches objects). */
#define QDARPC_PY_API(X) \
	X(Py_IsInitialized) X(Py_GetVersion) X(Py_InitializeFromConfig) \
	X(PyConfig_InitIsolatedConfig) X(PyConfig_SetBytesString) X(PyConfig_Clear) \
	X(PyStatus_Exception) X(PyGILState_Ensure) X(PyGILState_Release) \
	X(PyGILState_GetThisThreadState) X(PyEval_SaveThread) X(PyEval_RestoreThread) \
	X(PyThreadState_Clear) X(PyThreadState_DeleteCurrent) X(PyImport_ImportModule) \
	X(PyObject_GetAttrString) X(PyObject_CallObject) X(PyObject_CallMethod) \
	X(Py_VaBuildValue) X(Py_DecRef) X(PyLong_AsLongLong) X(PyTuple_GetItem) \
	X(PyErr_Occurred) X(PyErr_Print) X(PyErr_Clear) X(PyOS_BeforeFork) \
	X(PyOS_AfterFork_Parent) X(PyOS_AfterFork_Child) X(PyRun_SimpleStringFlags) X(PyThreadState_New) \
	X(PyInterpreterState_Main) X(PyCapsule_GetPointer)

#define QDARPC_PY_FIELD(name) __typeof__(name) *name;
struct qdarpc_py { QDARPC_PY_API(QDARPC_PY_FIELD) };
#undef QDARPC_PY_FIELD

/** qdarpc_py - this library's copy of the API table (valid once embed_ready() returned 0). */
extern struct qdarpc_py qdarpc_py;

/**
 * embed_note() - print "qdarpc: <libname>: <message>" on stderr
 */
void embed_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * embed_ready() - make the interpreter usable from this thread
 * @bind: called once, with the GIL held, to import and look up what this library calls;
 *        returns 0 or -1 (after printing why)
 *
 * Return: 0, or -1 when the emulator cannot be reached (explained on stderr once).
 */
int embed_ready(int (*bind)(void));

/**
 * embed_enter() / embed_leave() - take and give back the GIL around one call. A C thread
 * unknown to Python gets a thread state on its first call, kept until the thread exits.
 */
PyGILState_STATE embed_enter(int *fresh);
void embed_leave(PyGILState_STATE g, int fresh);

/**
 * embed_package_root() - the directory holding the libadsprpc_compat package this library
 * belongs to (the library is <root>/libadsprpc_compat/sdk/lib/<file>); "" if unknown.
 */
void embed_package_root(char out[PATH_MAX]);

/**
 * embed_import() - import @module of the qdarpc package, with the GIL held; a host Python
 * without the package on sys.path gets the directory holding it (embed_package_root())
 * appended, and the import is tried again. On failure says so (naming @module) and returns
 * NULL.
 */
PyObject *embed_import(const char *module);

#endif /* QDARPC_EMBED_H */
