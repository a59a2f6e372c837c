/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * remote.h - the FastRPC user API a host application and a qaic-generated stub compile against.
 *
 * Mirrors qualcomm/fastrpc inc/remote.h (development branch), written from its facts. What each
 * name does: docs/spec/legacy_fastrpc_api.md §2 (types), §3 (domains) and §4 (the API).
 * A few names the Hexagon SDK's remote.h adds (marked SDK) are here too, so that SDK apps build.
 * Values shared with Python live in libadsprpc_compat/constants.py; tests/test_sdk_headers.py
 * keeps the two equal.
 */
#ifndef REMOTE_H
#define REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* upstream includes it; apps rely on it for ssize_t and friends */

/* remote_handle, remote_handle64, remote_buf, remote_dma_handle, remote_arg, REMOTE_SCALARS_* */
#include "qdarpc/remote_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * qaic decorations. Generated stubs call __QAIC_REMOTE(remote_handle64_invoke)(...), so a build
 * that renames the API (e.g. to wrap it) defines __QAIC_REMOTE before including this header.
 * The Windows SAL variants of upstream are left out: qdarpc is Linux only.
 */
#ifndef __QAIC_REMOTE
#define __QAIC_REMOTE(ff) ff
#endif
#ifndef __QAIC_REMOTE_EXPORT
#define __QAIC_REMOTE_EXPORT
#endif
#ifndef __QAIC_REMOTE_ATTRIBUTE
#define __QAIC_REMOTE_ATTRIBUTE
#endif
#ifndef __QAIC_RETURN
#define __QAIC_RETURN
#endif
#ifndef __QAIC_IN
#define __QAIC_IN
#endif
#ifndef __QAIC_IN_CHAR
#define __QAIC_IN_CHAR
#endif
#ifndef __QAIC_IN_LEN
#define __QAIC_IN_LEN(len)
#endif
#ifndef __QAIC_OUT
#define __QAIC_OUT
#endif
#ifndef __QAIC_INT64PTR
#define __QAIC_INT64PTR uint64_t
#endif

/* --- domains (docs/spec/legacy_fastrpc_api.md §3.1) ---------------------------------------- */
#define ADSP_DOMAIN_ID  0
#define MDSP_DOMAIN_ID  1
#define SDSP_DOMAIN_ID  2
#define CDSP_DOMAIN_ID  3
#define CDSP1_DOMAIN_ID 4

#define ADSP_DOMAIN_NAME  "adsp"
#define MDSP_DOMAIN_NAME  "mdsp"
#define SDSP_DOMAIN_NAME  "sdsp"
#define CDSP_DOMAIN_NAME  "cdsp"
#define CDSP1_DOMAIN_NAME "cdsp1"
#define GDSP0_DOMAIN_NAME "gdsp0"
#define GDSP1_DOMAIN_NAME "gdsp1"

/* Appended to a module URI to pick the domain of a remote_handle64_open(). */
#define ADSP_DOMAIN  "&_dom=adsp"
#define MDSP_DOMAIN  "&_dom=mdsp"
#define SDSP_DOMAIN  "&_dom=sdsp"
#define CDSP_DOMAIN  "&_dom=cdsp"
#define CDSP1_DOMAIN "&_dom=cdsp1"
#define GDSP0_DOMAIN "&_dom=gdsp0"
#define GDSP1_DOMAIN "&_dom=gdsp1"

/* A name starting with one of these characters asks for an internal transport. */
#define ITRANSPORT_PREFIX "'\":;./\\"

/* Room for one *_DOMAIN suffix and its NUL. */
#define MAX_DOMAIN_URI_SIZE 12

/* Upstream names the type domain_t (tag "domain"); the SDK names it domain: both work. */
typedef struct domain {
	int id;
	char uri[MAX_DOMAIN_URI_SIZE];
} domain_t;
typedef struct domain domain;

/*
 * Upstream keeps these in its library-internal fastrpc_common.h / fastrpc_internal.h; older SDK
 * remote.h files had some of them. They are here because the library's behaviour depends on them
 * (GDSP domains are served; effective domain id = domain + NUM_DOMAINS * session). Each can be
 * predefined by the app. DEFAULT_DOMAIN_ID is libcdsprpc's; libadsprpc uses 0 and libsdsprpc 2
 * (DSPRPC_GET_DOMAIN tells which at run time).
 */
#ifndef GDSP0_DOMAIN_ID
#define GDSP0_DOMAIN_ID 5
#endif
#ifndef GDSP1_DOMAIN_ID
#define GDSP1_DOMAIN_ID 6
#endif
#ifndef NUM_DOMAINS
#define NUM_DOMAINS 8
#endif
#ifndef NUM_SESSIONS
#define NUM_SESSIONS 4
#endif
#ifndef DOMAIN_ID_MASK
#define DOMAIN_ID_MASK 7
#endif
#ifndef NUM_DOMAINS_EXTEND
#define NUM_DOMAINS_EXTEND (NUM_DOMAINS * NUM_SESSIONS)
#endif
#ifndef DEFAULT_DOMAIN_ID
#define DEFAULT_DOMAIN_ID CDSP_DOMAIN_ID
#endif
#ifndef FASTRPC_DOMAIN_URI
#define FASTRPC_DOMAIN_URI "&_dom="
#endif
#ifndef FASTRPC_SESSION_URI
#define FASTRPC_SESSION_URI "&_session="
#endif

/* --- 64-bit argument variants (declared upstream; no API takes them) ------------------------ */
typedef struct {
	uint64_t pv;
	int64_t nLen;
} remote_buf64;

typedef struct {
	int32_t fd;
	uint32_t offset;
	uint32_t len;
} remote_dma_handle64;

typedef union {
	remote_buf64 buf;
	remote_handle h;
	remote_handle64 h64;
	remote_dma_handle64 dma;
} remote_arg64;

/* --- remote_handle_control (docs/spec/legacy_fastrpc_api.md §4.7) --------------------------- */

/* remote_rpc_control_latency.enable */
enum remote_rpc_latency_flags {
	RPC_DISABLE_QOS,
	RPC_PM_QOS,       /* keep the CPU out of deep idle while RPCs are active */
	RPC_ADAPTIVE_QOS, /* the DSP wakes the CPU ahead of the predicted completion */
	RPC_POLL_QOS,     /* the CPU polls for the response for up to `latency` us (< 10000) */
};

/* DSPRPC_CONTROL_LATENCY */
struct remote_rpc_control_latency {
	uint32_t enable;  /* enum remote_rpc_latency_flags */
	uint32_t latency; /* microseconds */
};

/* DSPRPC_GET_DSP_INFO: the library fills `capability`. */
typedef struct remote_dsp_capability {
	uint32_t domain;       /* effective domain id */
	uint32_t attribute_ID; /* enum remote_dsp_attributes */
	uint32_t capability;
} fastrpc_capability;

/* remote_dsp_capability.attribute_ID */
enum remote_dsp_attributes {
	DOMAIN_SUPPORT,
	UNSIGNED_PD_SUPPORT,
	HVX_SUPPORT_64B,
	HVX_SUPPORT_128B,
	VTCM_PAGE,
	VTCM_COUNT,
	ARCH_VER,
	HMX_SUPPORT_DEPTH,
	HMX_SUPPORT_SPATIAL,
	ASYNC_FASTRPC_SUPPORT,
	STATUS_NOTIFICATION_SUPPORT,
	MCID_MULTICAST,
	/* SDK: upstream stops at MCID_MULTICAST. */
	EXTENDED_MAP_SUPPORT,
	HANDLE_PRIORITY_SUPPORT,
	DSP_IMAGE_CONFIG,
	DSPQUEUE_SUPPORT,
};

/*
 * Attributes about the CPU driver, answered by the library without asking the DSP (upstream
 * keeps them internal, but DSPRPC_GET_DSP_INFO accepts every id below FASTRPC_MAX_ATTRIBUTES).
 */
enum fastrpc_internal_attributes {
	PERF_V2_DRIVER_SUPPORT = 256,
	DRIVER_ERROR_CODE_CHANGE = 257,
	USERSPACE_ALLOCATION_SUPPORT = 258,
	DSPSIGNAL_DRIVER_SUPPORT = 259,
	FASTRPC_MAX_ATTRIBUTES = DSPSIGNAL_DRIVER_SUPPORT + 1,
};

/* Lets an app compile its DSPRPC_CONTROL_WAKELOCK code only where the request exists. */
#define FASTRPC_WAKELOCK_CONTROL_SUPPORTED 1

/* DSPRPC_CONTROL_WAKELOCK */
struct remote_rpc_control_wakelock {
	uint32_t enable;
};

/* DSPRPC_GET_DOMAIN: the handle's domain (remote_handle64_control) or the current one. */
typedef struct remote_rpc_get_domain {
	int domain;
} remote_rpc_get_domain_t;

/* DSPRPC_SET_PATH, DSPRPC_GET_PATH */
struct remote_control_custom_path {
	int32_t value_size; /* including the NUL */
	const char *path;
	char *value;
};

/* The `req` of remote_handle_control() and remote_handle64_control(). */
enum handle_control_req_id {
	DSPRPC_RESERVED,
	DSPRPC_CONTROL_LATENCY,
	DSPRPC_GET_DSP_INFO,
	DSPRPC_CONTROL_WAKELOCK,
	DSPRPC_GET_DOMAIN,
	DSPRPC_SET_PATH,
	DSPRPC_GET_PATH,
	/* Upstream's own requests: refused through this API (AEE_EUNSUPPORTED). */
	DSPRPC_SMMU_SUPPORT,
	DSPRPC_KALLOC_SUPPORT,
	DSPRPC_PM,
	DSPRPC_RPC_POLL,
	DSPRPC_ASYNC_WAKE,
	DSPRPC_NOTIF_WAKE,
	DSPRPC_REMOTE_PROCESS_KILL,
	DSPRPC_SET_MODE,
};

/* --- remote_session_control (docs/spec/legacy_fastrpc_api.md §4.8) -------------------------- */
/* A `domain` of -1 applies a request to every effective domain. */

/* FASTRPC_THREAD_PARAMS: -1 keeps the default. */
struct remote_rpc_thread_params {
	int domain;
	int prio;       /* 1 (highest) .. 255 */
	int stack_size; /* bytes */
};

/* DSPRPC_CONTROL_UNSIGNED_MODULE: must come before the session is created. */
struct remote_rpc_control_unsigned_module {
	int domain;
	int enable;
};

/* FASTRPC_RELATIVE_THREAD_PRIORITY: added to the default priority; negative raises it. */
struct remote_rpc_relative_thread_priority {
	int domain;
	int relative_thread_priority;
};

/* FASTRPC_REMOTE_PROCESS_KILL */
struct remote_rpc_process_clean_params {
	int domain;
};

/* FASTRPC_SESSION_CLOSE */
struct remote_rpc_session_close {
	int domain;
};

/* FASTRPC_CONTROL_PD_DUMP */
struct remote_rpc_control_pd_dump {
	int domain;
	int enable;
};

/* FASTRPC_REMOTE_PROCESS_EXCEPTION */
typedef struct remote_rpc_process_clean_params remote_rpc_process_exception;

/* remote_process_type.process_type */
enum fastrpc_process_type {
	PROCESS_TYPE_SIGNED,
	PROCESS_TYPE_UNSIGNED,
};

/* FASTRPC_REMOTE_PROCESS_TYPE */
struct remote_process_type {
	int domain;
	int process_type; /* out: enum fastrpc_process_type */
};

/* The status a notification callback receives. */
typedef enum remote_rpc_status_flags {
	FASTRPC_USER_PD_UP,
	FASTRPC_USER_PD_EXIT,
	FASTRPC_USER_PD_FORCE_KILL,
	FASTRPC_USER_PD_EXCEPTION,
	FASTRPC_DSP_SSR,
} remote_rpc_status_flags_t;

typedef int (*fastrpc_notif_fn_t)(void *context, int domain, int session,
				  remote_rpc_status_flags_t status);

/* FASTRPC_REGISTER_STATUS_NOTIFICATIONS */
typedef struct remote_rpc_notif_register {
	void *context;
	int domain;
	fastrpc_notif_fn_t notifier_fn;
} remote_rpc_notif_register_t;

/* FASTRPC_PD_INITMEM_SIZE: signed PDs only, 3 MiB .. 200 MiB. */
struct remote_rpc_pd_initmem_size {
	int domain;
	uint32_t pd_initmem_size;
};

/* FASTRPC_RESERVE_NEW_SESSION: lengths exclude the NUL; session 0 is the default one. */
typedef struct remote_rpc_reserve_new_session {
	char *domain_name;
	uint32_t domain_name_len;
	char *session_name;
	uint32_t session_name_len;
	uint32_t effective_domain_id; /* out */
	uint32_t session_id;          /* out */
} remote_rpc_reserve_new_session_t;

/* FASTRPC_GET_EFFECTIVE_DOMAIN_ID */
typedef struct remote_rpc_effective_domain_id {
	char *domain_name;
	uint32_t domain_name_len;
	uint32_t session_id;
	uint32_t effective_domain_id; /* out */
} remote_rpc_effective_domain_id_t;

/* FASTRPC_GET_URI: fills `uri` with module_uri + "&_dom=<name>&_session=<id>". */
typedef struct remote_rpc_get_uri {
	char *domain_name;
	uint32_t domain_name_len;
	uint32_t session_id;
	char *module_uri;
	uint32_t module_uri_len;
	char *uri;        /* out, caller's buffer; too small gives AEE_EBADSIZE */
	uint32_t uri_len; /* size of `uri` */
} remote_rpc_get_uri_t;

/* FASTRPC_CONTEXT_CREATE */
typedef struct fastrpc_context_create {
	uint32_t *effec_domain_ids;
	uint32_t num_domain_ids;
	uint64_t flags; /* unused */
	uint64_t ctx;   /* out */
} fastrpc_context_create;

/* FASTRPC_CONTEXT_DESTROY */
typedef struct fastrpc_context_destroy {
	uint64_t ctx;
	uint64_t flags; /* must be 0 */
} fastrpc_context_destroy;

/* The `req` of remote_session_control(). */
enum session_control_req_id {
	FASTRPC_RESERVED_1,
	FASTRPC_THREAD_PARAMS,
	DSPRPC_CONTROL_UNSIGNED_MODULE,
	FASTRPC_RESERVED_2,
	FASTRPC_RELATIVE_THREAD_PRIORITY,
	FASTRPC_RESERVED_3,
	FASTRPC_REMOTE_PROCESS_KILL,
	FASTRPC_SESSION_CLOSE,
	FASTRPC_CONTROL_PD_DUMP,
	FASTRPC_REMOTE_PROCESS_EXCEPTION,
	FASTRPC_REMOTE_PROCESS_TYPE,
	FASTRPC_REGISTER_STATUS_NOTIFICATIONS,
	FASTRPC_PD_INITMEM_SIZE,
	FASTRPC_RESERVE_NEW_SESSION,
	FASTRPC_GET_EFFECTIVE_DOMAIN_ID,
	FASTRPC_GET_URI,
	FASTRPC_MAX_THREAD_PARAM,
	FASTRPC_CONTEXT_CREATE,
	FASTRPC_CONTEXT_DESTROY,
	/* SDK; the library answers AEE_EUNSUPPORTED. */
	FASTRPC_REMOTE_PROCESS_STATE_DUMP,
	FASTRPC_MANAGE_DSP_LIBRARY_PATH,
};

/* --- memory mapping (docs/spec/legacy_fastrpc_api.md §4.10) --------------------------------- */

/* remote_mem_map() flags */
enum remote_mem_map_flags {
	REMOTE_MAP_MEM_STATIC,
};

/* fastrpc_mmap() flags */
enum fastrpc_map_flags {
	FASTRPC_MAP_STATIC,     /* driver does cache maintenance; same DSP address every call */
	FASTRPC_MAP_RESERVED,
	FASTRPC_MAP_FD,         /* tagged with the fd: DSP code gets it with HAP_mmap_get() */
	FASTRPC_MAP_FD_DELAYED, /* DSP code maps it with HAP_mmap() */
	FASTRPC_MAP_RESERVED_4,
	FASTRPC_MAP_RESERVED_5,
	FASTRPC_MAP_RESERVED_6,
	FASTRPC_MAP_RESERVED_7,
	FASTRPC_MAP_RESERVED_8,
	FASTRPC_MAP_RESERVED_9,
	FASTRPC_MAP_RESERVED_10,
	FASTRPC_MAP_RESERVED_11,
	FASTRPC_MAP_RESERVED_12,
	FASTRPC_MAP_RESERVED_13,
	FASTRPC_MAP_RESERVED_14,
	FASTRPC_MAP_RESERVED_15,
	FASTRPC_MAP_FD_NOMAP,   /* like FASTRPC_MAP_FD_DELAYED, without the CPU-side mapping */
	/* SDK: the extended DSP address space. The library refuses them (see FASTRPC_MAP_MAX). */
	FASTRPC_MAP_FD_EXTENDED,
	FASTRPC_MAP_FD_DELAYED_EXTENDED,
};

/* Upstream's internal bound: fastrpc_mmap() accepts flags below it. */
#ifndef FASTRPC_MAP_MAX
#define FASTRPC_MAP_MAX (FASTRPC_MAP_FD_NOMAP + 1)
#endif

/* remote_register_buf_attr() / remote_register_dma_handle_attr() attributes */
#define FASTRPC_ATTR_NONE               0
#define FASTRPC_ATTR_NON_COHERENT       2   /* the driver does cache maintenance */
#define FASTRPC_ATTR_COHERENT           4   /* no cache maintenance */
#define FASTRPC_ATTR_KEEP_MAP           8   /* mapped until unregistered */
#define FASTRPC_ATTR_NOMAP              16  /* secure buffer: no SMMU mapping */
#define FASTRPC_ATTR_FORCE_NOFLUSH      32  /* the client flushes */
#define FASTRPC_ATTR_FORCE_NOINVALIDATE 64  /* the client invalidates */
#define FASTRPC_ATTR_TRY_MAP_STATIC     128 /* premapped into every session, errors ignored */
/* The library's own mark on handle arguments; apps never pass it (upstream fastrpc_ioctl.h). */
#ifndef FASTRPC_ATTR_NOVA
#define FASTRPC_ATTR_NOVA 256
#endif

/* remote_set_mode() */
#define REMOTE_MODE_PARALLEL 0 /* default: invalidate output buffers while the DSP runs */
#define REMOTE_MODE_SERIAL   1 /* invalidate output buffers before the call */

/* --- functions (docs/spec/legacy_fastrpc_api.md §4) ----------------------------------------- */
/*
 * Every int result is an AEE code (AEEStdErr.h): 0 on success. Upstream also declares the async
 * calls, remote_register_buf_attr2 and remote_register_fd(2); qdarpc does not implement them, so
 * they are left out and a use fails at compile time instead of at link time.
 */

__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle_open)(__QAIC_IN_CHAR const char *name, __QAIC_OUT remote_handle *ph) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle64_open)(__QAIC_IN_CHAR const char *name, __QAIC_OUT remote_handle64 *ph) __QAIC_REMOTE_ATTRIBUTE;

/* pra[] holds REMOTE_SCALARS_LENGTH(dwScalars) entries: inbufs, outbufs, inhandles, outhandles. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle_invoke)(__QAIC_IN remote_handle h, __QAIC_IN uint32_t dwScalars, __QAIC_IN remote_arg *pra) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle64_invoke)(__QAIC_IN remote_handle64 h, __QAIC_IN uint32_t dwScalars, __QAIC_IN remote_arg *pra) __QAIC_REMOTE_ATTRIBUTE;

__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle_close)(__QAIC_IN remote_handle h) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle64_close)(__QAIC_IN remote_handle64 h) __QAIC_REMOTE_ATTRIBUTE;

/* req: enum handle_control_req_id; datalen: sizeof the request's struct. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle_control)(__QAIC_IN uint32_t req, __QAIC_IN_LEN(datalen) void *data, __QAIC_IN uint32_t datalen) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_handle64_control)(__QAIC_IN remote_handle64 h, __QAIC_IN uint32_t req, __QAIC_IN_LEN(datalen) void *data, __QAIC_IN uint32_t datalen) __QAIC_REMOTE_ATTRIBUTE;

/* req: enum session_control_req_id; datalen: sizeof the request's struct. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_session_control)(__QAIC_IN uint32_t req, __QAIC_IN_LEN(datalen) void *data, __QAIC_IN uint32_t datalen) __QAIC_REMOTE_ATTRIBUTE;

/* Deprecated mapping calls, kept for old apps: fastrpc_mmap() replaces them. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_mmap)(__QAIC_IN int fd, __QAIC_IN uint32_t flags, __QAIC_IN uint32_t vaddrin, __QAIC_IN int size, __QAIC_OUT uint32_t *vaddrout) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_munmap)(__QAIC_IN uint32_t vaddrout, __QAIC_IN int size) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_mem_map)(__QAIC_IN int domain, __QAIC_IN int fd, __QAIC_IN int flags, __QAIC_IN uint64_t virtAddr, __QAIC_IN size_t size, __QAIC_OUT uint64_t *remoteVirtAddr) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_mem_unmap)(__QAIC_IN int domain, __QAIC_IN uint64_t remoteVirtAddr, __QAIC_IN size_t size) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_mmap64)(__QAIC_IN int fd, __QAIC_IN uint32_t flags, __QAIC_IN __QAIC_INT64PTR vaddrin, __QAIC_IN int64_t size, __QAIC_OUT __QAIC_INT64PTR *vaddrout) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_munmap64)(__QAIC_IN __QAIC_INT64PTR vaddrout, __QAIC_IN int64_t size) __QAIC_REMOTE_ATTRIBUTE;

/* domain -1: the current domain. The session must already be open. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(fastrpc_mmap)(__QAIC_IN int domain, __QAIC_IN int fd, __QAIC_IN void *addr, __QAIC_IN int offset, __QAIC_IN size_t length, __QAIC_IN enum fastrpc_map_flags flags) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(fastrpc_munmap)(__QAIC_IN int domain, __QAIC_IN int fd, __QAIC_IN void *addr, __QAIC_IN size_t length) __QAIC_REMOTE_ATTRIBUTE;

/* Zero-copy registration; fd -1 deregisters. No result: errors are silent, as upstream. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN void __QAIC_REMOTE(remote_register_buf)(__QAIC_IN_LEN(size) void *buf, __QAIC_IN int size, __QAIC_IN int fd) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN void __QAIC_REMOTE(remote_register_buf_attr)(__QAIC_IN_LEN(size) void *buf, __QAIC_IN int size, __QAIC_IN int fd, __QAIC_IN int attr) __QAIC_REMOTE_ATTRIBUTE;

/* Each registration is used up by one invoke that passes the fd as a handle argument. */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_register_dma_handle)(__QAIC_IN int fd, __QAIC_IN uint32_t len) __QAIC_REMOTE_ATTRIBUTE;
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_register_dma_handle_attr)(__QAIC_IN int fd, __QAIC_IN uint32_t len, __QAIC_IN uint32_t attr) __QAIC_REMOTE_ATTRIBUTE;

/* mode: REMOTE_MODE_PARALLEL or REMOTE_MODE_SERIAL (declared by the SDK's remote.h). */
__QAIC_REMOTE_EXPORT __QAIC_RETURN int __QAIC_REMOTE(remote_set_mode)(__QAIC_IN uint32_t mode) __QAIC_REMOTE_ATTRIBUTE;

#ifdef __cplusplus
}
#endif

#endif /* REMOTE_H */
