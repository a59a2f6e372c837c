/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vfs.c - the device shim's side of the interpreter: qda_core.vfs's functions, reached with
 * embed.c (see docs/shim.md).
 */
#define _GNU_SOURCE
#include "../bridge/embed.h"

#include <errno.h>

#include "vfs.h"

#define py qdarpc_py

#define VFS_NAME(name) #name,
static const char *const vfs_name[V_COUNT] = { VFS_FUNCS(VFS_NAME) };
#undef VFS_NAME
static PyObject *vfs[V_COUNT];

static int bind(void)
{
	PyObject *mod = embed_import("qda_core.vfs");
	int i;

	if (!mod)
		return -1;
	for (i = 0; i < V_COUNT; i++) {
		vfs[i] = py.PyObject_GetAttrString(mod, vfs_name[i]);
		if (!vfs[i]) {
			py.PyErr_Print();
			return -1;
		}
	}
	return 0;
}

long long vfs_vcall(enum vfs_func f, const char *fmt, va_list ap)
{
	PyGILState_STATE g;
	PyObject *args, *r = NULL;
	long long v = -EIO;
	int fresh, saved = errno;

	if (embed_ready(bind)) {
		errno = saved;
		return -ENODEV;
	}
	g = embed_enter(&fresh);
	args = py.Py_VaBuildValue(fmt, ap);
	if (args)
		r = py.PyObject_CallObject(vfs[f], args);
	if (r) {
		v = py.PyLong_AsLongLong(r);
		py.Py_DecRef(r);
	}
	if (!r || py.PyErr_Occurred()) {
		embed_note("internal error in qda_core.vfs.%s:", vfs_name[f]);
		py.PyErr_Print();
		v = -EIO;
	}
	if (args)
		py.Py_DecRef(args);
	embed_leave(g, fresh);
	errno = saved;
	return v;
}
