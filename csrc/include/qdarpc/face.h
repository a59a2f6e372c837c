/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The C library's fast entry: remote_handle64_invoke called from C (csrc/bridge/bridge.c)
 * straight into the Cython invoker, with no Python argument tuple and no Python frame of the
 * C face in between. Every other call, and every case the entry does not serve (a trace on,
 * two library flavours loaded, an unknown handle), goes through the Python function of the
 * same name, so the semantics stay in one place (docs/c_abi.md).
 *
 * libadsprpc_compat._cabi.face(flavour) returns a PyCapsule named QDARPC_FACE_CAPSULE that
 * owns what it points to; the bridge keeps it for the life of the process.
 */
#ifndef QDARPC_FACE_H
#define QDARPC_FACE_H

#define QDARPC_FACE_CAPSULE "libadsprpc_compat.face"
#define QDARPC_FACE_ABI 1

struct qdarpc_face {
	unsigned int abi; /* QDARPC_FACE_ABI: a bridge built for another layout ignores the entry */
	/*
	 * With the GIL held. Never raises: the result is what the Python function returns, an
	 * AEE code in bits 31:0 and the errno the real library would leave in bits 47:32.
	 */
	long long (*h64_invoke)(void *ctx, unsigned long long h, unsigned int sc,
				unsigned long long pra);
	void *ctx;
};

#endif /* QDARPC_FACE_H */
