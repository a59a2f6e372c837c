/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * errmap.c - the AEE name table, errno -> AEE (the user library's convert_kernel_to_user_error)
 * and the DSP-side encoding of AEE codes. See qdarpc/aee_err.h.
 */
#include <errno.h>
#include <stddef.h>

#include "qdarpc/aee_err.h"

/* qualcomm/fastrpc converts only errnos in this range (MIN/MAX_KERNEL_ERRNO, 0 excluded). */
#define QDA_MAX_KERNEL_ERRNO 135

#define QDA_AEE_ROW(name, value, flags, desc) { #name, desc, (value), (flags) },
const struct qda_aee_entry qda_aee_table[] = { QDA_AEE_CODES(QDA_AEE_ROW) };
#undef QDA_AEE_ROW
const unsigned qda_aee_count = sizeof(qda_aee_table) / sizeof(qda_aee_table[0]);

int qda_errno_to_aee(int err)
{
	if (err < 0 && err != -2147483647 - 1)
		err = -err;
	if (err < 1 || err > QDA_MAX_KERNEL_ERRNO)
		return AEE_EUNKNOWN; /* the library leaves such a -1 unconverted */

	switch (err) {
	case EIO:
	case ETOOMANYREFS:
	case EADDRNOTAVAIL:
	case ENOTTY:
	case EBADRQC:
		return AEE_ERPC;
	case EFAULT:
	case ECHRNG:
	case EBADFD:
	case EINVAL:
	case EBADF:
	case EBADE:
	case EBADR:
	case EOVERFLOW:
	case EHOSTDOWN:
	case EEXIST:
	case EBADMSG:
		return AEE_EBADPARM;
	case ENXIO:
	case ENODEV:
	case ENOKEY:
		return AEE_ENOSUCHDEVICE;
	case ENOBUFS:
	case ENOMEM:
		return AEE_ENOMEMORY;
	case ENOSR:
	case EDQUOT:
	case ETIMEDOUT:
	case EUSERS:
	case ESHUTDOWN:
		return AEE_EEXPIRED;
	case ENOTCONN:
	case ECONNREFUSED:
		return AEE_ECONNREFUSED;
	case ECONNRESET:
	case EPIPE:
		return AEE_ECONNRESET;
	case EPROTONOSUPPORT:
		return AEE_EUNSUPPORTED;
	case EFBIG:
		return AEE_EFILE;
	case EACCES:
	case EPERM:
		return AEE_EBADPERMS;
	default:
		/* ENOENT and EBUSY land here too (a missing break in some library versions). */
		return AEE_ERPC;
	}
}

/* First non-alias row with @value whose flags contain all of @need and none of @avoid. */
static const struct qda_aee_entry *find_row(int32_t value, uint32_t need, uint32_t avoid)
{
	unsigned i;

	for (i = 0; i < qda_aee_count; i++) {
		const struct qda_aee_entry *e = &qda_aee_table[i];

		if (e->value == value && !(e->flags & QDA_AEE_ALIASED) &&
		    (e->flags & need) == need && !(e->flags & avoid))
			return e;
	}
	return NULL;
}

static int is_fixed(int code)
{
	const struct qda_aee_entry *e = find_row(code, QDA_AEE_NOOFF, 0);

	return e != NULL;
}

uint32_t qda_aee_to_dsp(int code)
{
	if (code <= 0 || code > QDA_AEE_CODE_MAX || is_fixed(code))
		return (uint32_t)code;
	return DSP_AEE_EOFFSET + (uint32_t)code;
}

int qda_aee_is_dsp(uint32_t code)
{
	return code - DSP_AEE_EOFFSET - 1u < QDA_AEE_CODE_MAX; /* wraps below the offset */
}

const struct qda_aee_entry *qda_aee_find(uint32_t code)
{
	const struct qda_aee_entry *e;

	if (qda_aee_is_dsp(code)) {
		/* DSP side: only names that carry the offset can produce this value. */
		int32_t base = (int32_t)(code - DSP_AEE_EOFFSET);

		e = find_row(base, QDA_AEE_DSP, QDA_AEE_NOOFF);
		return e ? e : find_row(base, 0, QDA_AEE_NOOFF);
	}
	e = find_row((int32_t)code, QDA_AEE_HLOS, 0);
	return e ? e : find_row((int32_t)code, 0, 0);
}

const char *qda_aee_name(uint32_t code)
{
	const struct qda_aee_entry *e = qda_aee_find(code);

	return e ? e->name : NULL;
}
