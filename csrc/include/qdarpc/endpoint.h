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
#define QDA_EP_CONFINED  4  /* route_call_gil: a Python skel served in the route's own buffer
                               reached nothing of it past its arguments during the call and
                               holds nothing that reaches it (route_clean() says whether that
                               still holds before the next call) */

/*
 * A route (docs/dataplane.md "Routes"): the DSP's side of calls on one handle of one PD, checked
 * once when it is opened and served afterwards without the GIL, as long as nothing it took
 * has changed (the routes' epoch, qda_core._cdev.ROUTES, and the translation of its message
 * buffer). route_call() results besides QDA_EP_REPLIED:
 */
#define QDA_ROUTE_DECLINED 0 /* nothing happened: send the message on the usual way */
/* a negative value: -errno, the call failed after the skel ran (a restart meanwhile: ENODEV) */

struct qda_endpoint {
	/* self: the endpoint object (PyObject *), origin: the sender's wire.Origin (PyObject *) */
	int (*receive)(void *self, const struct fastrpc_msg *m, void *origin,
		       struct fastrpc_invoke_rsp *rsp);
	void *self;
	/*
	 * With the GIL: a route for messages from client_id (stamped origin) to handle whose payload
	 * is the message buffer at device address msg_addr, msg_size bytes. Returns a new reference
	 * (PyObject *) to the route's owner, which keeps everything *call_arg points to, or Py_None
	 * when the DSP serves that handle only through receive(); NULL with an exception set.
	 */
	void *(*route_open)(void *self, int client_id, unsigned int handle, void *origin,
			    unsigned long long msg_addr, unsigned long long msg_size, void **call_arg);
	/* Without the GIL (taking it only for a crash): one message on a route (route_open's client
	 * id and handle) to a native skel, without arguments or with buffers only, its payload in
	 * the route's message buffer or its second one (declined: a Python skel's, handles, a
	 * payload elsewhere). */
	int (*route_call)(void *call_arg, const struct fastrpc_msg *m, struct fastrpc_invoke_rsp *rsp);
	/* With the GIL: one message on any route (a Python skel's too), with or without arguments
	 * (a message with arguments may be in another buffer of the sender's, msg_addr/msg_size
	 * name it); also QDA_EP_REFERENCE (the reference answered it: a fault rule armed while the
	 * skel ran, a payload that does not decode); -1 with an exception set. */
	int (*route_call_gil)(void *call_arg, const struct fastrpc_msg *m, struct fastrpc_invoke_rsp *rsp);
	/* With the GIL, before a call on a route whose last call the DSP answered QDA_EP_CONFINED:
	 * 1 when nothing has reached the route's own buffer since (the engine then clears only up
	 * to that call's packet end), else 0 (it clears the page). */
	int (*route_clean)(void *call_arg);
	/* With the GIL, with no call on the route: its second message buffer of the sender's, at
	 * device address msg_addr (msg_size bytes), for calls whose payload its first does not hold
	 * (replacing any earlier one; the sender keeps it until it replaces it again or closes the
	 * route). The DSP translates it once. 1: taken (a message at msg_addr of at most msg_size
	 * bytes is served as one in the first buffer: the checks route_open made, made once);
	 * 0: not (messages there go the usual way); -1 with an exception set. */
	int (*route_attach)(void *call_arg, unsigned long long msg_addr, unsigned long long msg_size);
};

#endif /* QDARPC_ENDPOINT_H */
