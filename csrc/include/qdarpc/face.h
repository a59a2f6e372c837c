/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C library's fast entry: remote_handle64_invoke called from C (csrc/bridge/bridge.c)
 * straight into the Cython invoker, with no Python argument tuple and no Python frame of the
 * C face in between. Every other call, and every case the entry does not serve (a trace on,
 * two library flavours loaded, an unknown handle), goes through the Python function of the
 * same name, so the semantics stay in one place (docs/c_abi.md). Before it, the bridge tries
 * route_invoke, which serves a call without arguments on a native skel's handle without the
 * GIL at all.
 *
 * libadsprpc_compat._cabi.face(flavour) returns a PyCapsule named QDARPC_FACE_CAPSULE that
 * owns what it points to; the bridge keeps it for the life of the process.
 */
#ifndef QDARPC_FACE_H
#define QDARPC_FACE_H

#define QDARPC_FACE_CAPSULE "libadsprpc_compat.face"
#define QDARPC_FACE_ABI 2

/* route_invoke(): the handle has no live route for this call; take the GIL and h64_invoke */
#define QDARPC_FACE_DECLINED (1LL << 62)

struct qdarpc_face {
	unsigned int abi; /* QDARPC_FACE_ABI: a bridge built for another layout ignores the entry */
	/*
	 * With the GIL held. Never raises: the result is what the Python function returns, an
	 * AEE code in bits 31:0 and the errno the real library would leave in bits 47:32.
	 */
	long long (*h64_invoke)(void *ctx, unsigned long long h, unsigned int sc,
				unsigned long long pra);
	void *ctx;
	/*
	 * Without the GIL (docs/dataplane.md "Routes"): the call served by the handle's route, a
	 * result as h64_invoke's, or QDARPC_FACE_DECLINED when nothing was done. Only a thread that
	 * has a Python thread state calls it (a crash on the route takes the GIL to be reported).
	 */
	long long (*route_invoke)(void *ctx, unsigned long long h, unsigned int sc,
				  unsigned long long pra);
};

#endif /* QDARPC_FACE_H */
