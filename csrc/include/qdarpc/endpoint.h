/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The in-process rpmsg endpoint's native entry: how the host's invoke engine hands the DSP a
 * request as the C struct the kernel sends (struct fastrpc_msg), and gets the reply back as
 * the struct the DSP answers, with no bytes packed and parsed in the same process.
 *
 * The DSP side (qda_core/dsp/_lane.pyx) exports one qda_endpoint in a PyCapsule named
 * QDA_ENDPOINT_CAPSULE; the transport passes the capsule through unopened (it stays
 * protocol-blind), the engine (qda_core/_engine.pyx) calls it. The capsule owns a reference
 * to the endpoint object, its context (PyCapsule_GetContext): a holder that keeps the entry
 * keeps that object, a reference the cycle collector sees, and lets the capsule go.
 * docs/dataplane.md.
 */
#ifndef QDARPC_ENDPOINT_H
#define QDARPC_ENDPOINT_H

#include "fastrpc_wire.h"

#define QDA_ENDPOINT_CAPSULE "qdarpc.endpoint"

/* receive() result bits (a negative value: an error, with a Python exception set) */
#define QDA_EP_REPLIED   1  /* *rsp holds the reply */
#define QDA_EP_REFERENCE 2  /* the reference (Python) path served it: fault rules or the trace
                               may have left per-thread state for the engine to collect */

struct qda_endpoint {
	/* self: the endpoint object (PyObject *), origin: the sender's wire.Origin (PyObject *) */
	int (*receive)(void *self, const struct fastrpc_msg *m, void *origin,
		       struct fastrpc_invoke_rsp *rsp);
	void *self;
};

#endif /* QDARPC_ENDPOINT_H */
