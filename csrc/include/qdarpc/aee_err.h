/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * aee_err.h - the AEE error codes of FastRPC user space (qualcomm/fastrpc inc/AEEStdErr.h),
 * the errno -> AEE conversion of the user library, and the DSP-side encoding of AEE codes.
 *
 * One list (QDA_AEE_CODES) generates the C enum, the name table in csrc/errmap.c and the
 * module-level ints of qda_core._abi, so the values are written exactly once.
 *
 * On the CPU an AEE code is the bare value; code running on the DSP (__hexagon__) adds
 * DSP_AEE_EOFFSET, so a DSP-generated AEE_EBADPARM reaches the application as 0x8000040e.
 * The QDA_AEE_FIXED codes are spelled without the offset in AEEStdErr.h and so have the same
 * value on both sides. See docs/spec/legacy_fastrpc_api.md §5.
 */
#ifndef QDARPC_AEE_ERR_H
#define QDARPC_AEE_ERR_H

#include <stdint.h>

/** DSP_AEE_EOFFSET - added to an AEE code generated on the DSP. */
#define DSP_AEE_EOFFSET 0x80000400u

/**
 * QDA_AEE_CODE_MAX - largest bare AEE code (AEEStdErr.h HLOS_ERR_END). As in the library's
 * check_rpc_error(), DSP-form codes are DSP_AEE_EOFFSET + [1, QDA_AEE_CODE_MAX].
 */
#define QDA_AEE_CODE_MAX 1024

/* Flags of a QDA_AEE_CODES row. */
#define QDA_AEE_HLOS  0x1u  /* the name exists in the CPU-side build of AEEStdErr.h */
#define QDA_AEE_DSP   0x2u  /* the name exists in the DSP-side (__hexagon__) build */
#define QDA_AEE_NOOFF 0x4u  /* written without AEE_EOFFSET: same value on CPU and DSP */
#define QDA_AEE_ALIASED 0x8u /* a second name for a value; never returned by qda_aee_name() */
#define QDA_AEE_BOTH  (QDA_AEE_HLOS | QDA_AEE_DSP)
#define QDA_AEE_FIXED (QDA_AEE_BOTH | QDA_AEE_NOOFF)
#define QDA_AEE_ALIAS (QDA_AEE_BOTH | QDA_AEE_ALIASED)

/**
 * QDA_AEE_CODES - every code of AEEStdErr.h as X(name, bare value, flags, description).
 * @X: a macro taking (name, value, flags, desc)
 *
 * Rows are in lookup-priority order: for a value with several names the first non-alias row
 * on the wanted side wins. Numeric collisions in the source header, kept as is:
 * AEE_ENORPCMEMORY (0x68) equals the no-offset AEE_ECONNRESET (104) as a bare value (their DSP
 * forms differ: 0x80000468 vs 104); AEE_EBADHANDLE == AEE_EINVHANDLE; AEE_ENOSUCHGROUP ==
 * AEE_ENOSUCHJOB; the SMD range 0x100-0x103 is named AEE_ESMD* on the CPU and AEE_EGLINK* on
 * the DSP, which also defines 0x104 and 0x105. E_* heap codes are listed with the AEE ones.
 */
#define QDA_AEE_CODES(X) \
	X(AEE_SUCCESS,                    0, QDA_AEE_FIXED, "No error") \
	X(AEE_EUNKNOWN,                  -1, QDA_AEE_FIXED, "Unknown error (should not be used)") \
	X(AEE_ENOSUCH,                   39, QDA_AEE_FIXED, "No such name, port, socket; PD restart (same value on CPU and DSP)") \
	X(AEE_EINTERRUPTED,              46, QDA_AEE_FIXED, "Waitable call interrupted: return to the HLOS and retry (same value on CPU and DSP)") \
	X(AEE_ECONNRESET,               104, QDA_AEE_FIXED, "Connection reset by peer; SSR (same value on CPU and DSP)") \
	X(AEE_EWOULDBLOCK,              516, QDA_AEE_FIXED, "Operation would block; wait and try again (same value on CPU and DSP)") \
	X(AEE_EFAILED,                0x001, QDA_AEE_BOTH,  "General failure") \
	X(AEE_ENOMEMORY,              0x002, QDA_AEE_BOTH,  "Memory allocation failed because of insufficient RAM") \
	X(AEE_ECLASSNOTSUPPORT,       0x003, QDA_AEE_BOTH,  "Specified class unsupported") \
	X(AEE_EVERSIONNOTSUPPORT,     0x004, QDA_AEE_BOTH,  "Version not supported") \
	X(AEE_EALREADYLOADED,         0x005, QDA_AEE_BOTH,  "Object already loaded") \
	X(AEE_EUNABLETOLOAD,          0x006, QDA_AEE_BOTH,  "Unable to load object/applet") \
	X(AEE_EUNABLETOUNLOAD,        0x007, QDA_AEE_BOTH,  "Unable to unload object/applet") \
	X(AEE_EALARMPENDING,          0x008, QDA_AEE_BOTH,  "Alarm is pending") \
	X(AEE_EINVALIDTIME,           0x009, QDA_AEE_BOTH,  "Invalid time") \
	X(AEE_EBADCLASS,              0x00A, QDA_AEE_BOTH,  "NULL class object") \
	X(AEE_EBADMETRIC,             0x00B, QDA_AEE_BOTH,  "Invalid metric specified") \
	X(AEE_EEXPIRED,               0x00C, QDA_AEE_BOTH,  "App/component expired") \
	X(AEE_EBADSTATE,              0x00D, QDA_AEE_BOTH,  "Process or thread is not in expected state") \
	X(AEE_EBADPARM,               0x00E, QDA_AEE_BOTH,  "Invalid parameter") \
	X(AEE_ESCHEMENOTSUPPORTED,    0x00F, QDA_AEE_BOTH,  "Invalid URL scheme") \
	X(AEE_EBADITEM,               0x010, QDA_AEE_BOTH,  "Value out of range") \
	X(AEE_EINVALIDFORMAT,         0x011, QDA_AEE_BOTH,  "Invalid format") \
	X(AEE_EINCOMPLETEITEM,        0x012, QDA_AEE_BOTH,  "Incomplete item") \
	X(AEE_ENOPERSISTMEMORY,       0x013, QDA_AEE_BOTH,  "Insufficient flash") \
	X(AEE_EUNSUPPORTED,           0x014, QDA_AEE_BOTH,  "API not implemented") \
	X(AEE_EPRIVLEVEL,             0x015, QDA_AEE_BOTH,  "Privileges are insufficient for this operation") \
	X(AEE_ERESOURCENOTFOUND,      0x016, QDA_AEE_BOTH,  "Unable to find specified resource") \
	X(AEE_EREENTERED,             0x017, QDA_AEE_BOTH,  "Non re-entrant API re-entered") \
	X(AEE_EBADTASK,               0x018, QDA_AEE_BOTH,  "API called in wrong task context") \
	X(AEE_EALLOCATED,             0x019, QDA_AEE_BOTH,  "App/module left memory allocated when released") \
	X(AEE_EALREADY,               0x01A, QDA_AEE_BOTH,  "Operation is already in progress") \
	X(AEE_EADSAUTHBAD,            0x01B, QDA_AEE_BOTH,  "ADS mutual authorization failed") \
	X(AEE_ENEEDSERVICEPROG,       0x01C, QDA_AEE_BOTH,  "Need service programming") \
	X(AEE_EMEMPTR,                0x01D, QDA_AEE_BOTH,  "Bad memory pointer, expected to be NULL") \
	X(AEE_EHEAP,                  0x01E, QDA_AEE_BOTH,  "An internal heap error was detected") \
	X(AEE_EIDLE,                  0x01F, QDA_AEE_BOTH,  "Context is idle") \
	X(AEE_EITEMBUSY,              0x020, QDA_AEE_BOTH,  "Context is busy") \
	X(AEE_EBADSID,                0x021, QDA_AEE_BOTH,  "Invalid subscriber ID") \
	X(AEE_ENOTYPE,                0x022, QDA_AEE_BOTH,  "No type detected/found") \
	X(AEE_ENEEDMORE,              0x023, QDA_AEE_BOTH,  "Need more data/info") \
	X(AEE_EADSCAPS,               0x024, QDA_AEE_BOTH,  "ADS capabilities do not match those required") \
	X(AEE_EBADSHUTDOWN,           0x025, QDA_AEE_BOTH,  "App failed to close properly") \
	X(AEE_EBUFFERTOOSMALL,        0x026, QDA_AEE_BOTH,  "Destination buffer given is too small") \
	X(AEE_EACKPENDING,            0x028, QDA_AEE_BOTH,  "ACK pending on application") \
	X(AEE_ENOTOWNER,              0x029, QDA_AEE_BOTH,  "Not an owner authorized to perform the operation") \
	X(AEE_EINVALIDITEM,           0x02A, QDA_AEE_BOTH,  "Current item is invalid") \
	X(AEE_ENOTALLOWED,            0x02B, QDA_AEE_BOTH,  "Not allowed to perform the operation") \
	X(AEE_EINVHANDLE,             0x02C, QDA_AEE_BOTH,  "Invalid handle") \
	X(AEE_EBADHANDLE,             0x02C, QDA_AEE_ALIAS, "Invalid handle (older name of AEE_EINVHANDLE)") \
	X(AEE_EOUTOFHANDLES,          0x02D, QDA_AEE_BOTH,  "Out of handles (handle list is already full)") \
	X(AEE_ENOMORE,                0x02F, QDA_AEE_BOTH,  "No more items available: reached end") \
	X(AEE_ECPUEXCEPTION,          0x030, QDA_AEE_BOTH,  "A CPU exception occurred") \
	X(AEE_EREADONLY,              0x031, QDA_AEE_BOTH,  "Cannot change read-only object or parameter") \
	X(AEE_EINVALIDMSG,            0x032, QDA_AEE_BOTH,  "Invalid SMD message from APPS") \
	X(AEE_EINVALIDTHREAD,         0x033, QDA_AEE_BOTH,  "Invalid thread") \
	X(AEE_EINVALIDPROCESS,        0x034, QDA_AEE_BOTH,  "Invalid process") \
	X(AEE_EINVALIDFILENAME,       0x035, QDA_AEE_BOTH,  "Invalid filename") \
	X(AEE_EINVALIDDIGESTSIZE,     0x036, QDA_AEE_BOTH,  "Invalid digest size") \
	X(AEE_EINVALIDSEGS,           0x037, QDA_AEE_BOTH,  "Invalid segments") \
	X(AEE_EINVALIDSIGNATURE,      0x038, QDA_AEE_BOTH,  "Invalid signature") \
	X(AEE_EINVALIDDOMAIN,         0x039, QDA_AEE_BOTH,  "Invalid DSP domain") \
	X(AEE_EINVALIDFD,             0x03A, QDA_AEE_BOTH,  "Invalid file descriptor") \
	X(AEE_EINVALIDDEVICE,         0x03B, QDA_AEE_BOTH,  "Invalid device, or device node open failed for the domain") \
	X(AEE_EINVALIDMODE,           0x03C, QDA_AEE_BOTH,  "Invalid mode") \
	X(AEE_EINVALIDPROCNAME,       0x03D, QDA_AEE_BOTH,  "Invalid process name") \
	X(AEE_ENOSUCHMOD,             0x03E, QDA_AEE_BOTH,  "No such module") \
	X(AEE_ENOSUCHINSTANCE,        0x03F, QDA_AEE_BOTH,  "No instance in the list lookup") \
	X(AEE_ENOSUCHTHREAD,          0x040, QDA_AEE_BOTH,  "No such thread") \
	X(AEE_ENOSUCHPROCESS,         0x041, QDA_AEE_BOTH,  "No such process") \
	X(AEE_ENOSUCHSYMBOL,          0x042, QDA_AEE_BOTH,  "No such symbol (dlsym failed)") \
	X(AEE_ENOSUCHDEVICE,          0x043, QDA_AEE_BOTH,  "No such device") \
	X(AEE_ENOSUCHPROP,            0x044, QDA_AEE_BOTH,  "No such DAL property") \
	X(AEE_ENOSUCHFILE,            0x045, QDA_AEE_BOTH,  "No such file found") \
	X(AEE_ENOSUCHHANDLE,          0x046, QDA_AEE_BOTH,  "No such handle") \
	X(AEE_ENOSUCHSTREAM,          0x047, QDA_AEE_BOTH,  "No such stream") \
	X(AEE_ENOSUCHMAP,             0x048, QDA_AEE_BOTH,  "No mapping exists for this address on the DSP") \
	X(AEE_ENOSUCHREGISTER,        0x049, QDA_AEE_BOTH,  "No such register") \
	X(AEE_ENOSUCHCLIENT,          0x04A, QDA_AEE_BOTH,  "No such QDI client") \
	X(AEE_EBADDOMAIN,             0x04B, QDA_AEE_BOTH,  "Bad domain (not initialized)") \
	X(AEE_EBADOFFSET,             0x04C, QDA_AEE_BOTH,  "Bad buffer/page/heap offset") \
	X(AEE_EBADSIZE,               0x04D, QDA_AEE_BOTH,  "Bad buffer/page/heap size") \
	X(AEE_EBADPERMS,              0x04E, QDA_AEE_BOTH,  "Bad file/map/memory permissions") \
	X(AEE_EBADFD,                 0x04F, QDA_AEE_BOTH,  "Bad file descriptor") \
	X(AEE_EBADPID,                0x050, QDA_AEE_BOTH,  "Bad PID from HLOS") \
	X(AEE_EBADTID,                0x051, QDA_AEE_BOTH,  "Bad TID") \
	X(AEE_EBADELF,                0x052, QDA_AEE_BOTH,  "Bad ELF file") \
	X(AEE_EBADASID,               0x053, QDA_AEE_BOTH,  "Bad ASID") \
	X(AEE_EBADCONTEXT,            0x054, QDA_AEE_BOTH,  "Bad context") \
	X(AEE_EBADMEMALIGN,           0x055, QDA_AEE_BOTH,  "Bad memory alignment") \
	X(AEE_EIOCTL,                 0x056, QDA_AEE_BOTH,  "ioctl call failed") \
	X(AEE_EFOPEN,                 0x057, QDA_AEE_BOTH,  "File open error, or device node open failed for the DSP domain") \
	X(AEE_EFGETS,                 0x058, QDA_AEE_BOTH,  "File get-string error") \
	X(AEE_EFFLUSH,                0x059, QDA_AEE_BOTH,  "File flush error") \
	X(AEE_EFCLOSE,                0x05A, QDA_AEE_BOTH,  "File close error") \
	X(AEE_EEOF,                   0x05B, QDA_AEE_BOTH,  "File EOF reached") \
	X(AEE_EFREAD,                 0x05C, QDA_AEE_BOTH,  "File read failed") \
	X(AEE_EFWRITE,                0x05D, QDA_AEE_BOTH,  "File write failed") \
	X(AEE_EFGETPOS,               0x05E, QDA_AEE_BOTH,  "File get position failed") \
	X(AEE_EFSETPOS,               0x05F, QDA_AEE_BOTH,  "File set position failed") \
	X(AEE_EFTELL,                 0x060, QDA_AEE_BOTH,  "File tell position failed") \
	X(AEE_EFSEEK,                 0x061, QDA_AEE_BOTH,  "File seek failed") \
	X(AEE_EFLEN,                  0x062, QDA_AEE_BOTH,  "File length greater than expected") \
	X(AEE_EGETENV,                0x063, QDA_AEE_BOTH,  "apps_std get environment failed") \
	X(AEE_ESETENV,                0x064, QDA_AEE_BOTH,  "apps_std set environment failed") \
	X(AEE_EMMAP,                  0x065, QDA_AEE_BOTH,  "mmap failed") \
	X(AEE_EIONMAP,                0x066, QDA_AEE_BOTH,  "ION map failed") \
	X(AEE_EIONALLOC,              0x067, QDA_AEE_BOTH,  "ION alloc failed") \
	X(AEE_ENORPCMEMORY,           0x068, QDA_AEE_BOTH,  "ION memory allocation failed (bare value equals AEE_ECONNRESET)") \
	X(AEE_ENOROOTOFTRUST,         0x069, QDA_AEE_BOTH,  "No root of trust for sigverify") \
	X(AEE_ENOTLOCKED,             0x06A, QDA_AEE_BOTH,  "Unlock failed, not locked before") \
	X(AEE_ENOTINITIALIZED,        0x06B, QDA_AEE_BOTH,  "Not initialized") \
	X(AEE_EUNSUPPORTEDAPI,        0x06C, QDA_AEE_BOTH,  "Unsupported API/request ID") \
	X(AEE_EUNPACK,                0x06D, QDA_AEE_BOTH,  "Unpacking command failed") \
	X(AEE_EPOLL,                  0x06E, QDA_AEE_BOTH,  "Error while polling for event") \
	X(AEE_EEVENTREAD,             0x06F, QDA_AEE_BOTH,  "Event read failed") \
	X(AEE_EMAXBUFS,               0x070, QDA_AEE_BOTH,  "Maximum buffers") \
	X(AEE_EINVARGS,               0x071, QDA_AEE_BOTH,  "Invalid arguments") \
	X(AEE_ECONNREFUSED,           0x072, QDA_AEE_BOTH,  "Connection refused to DSP") \
	X(AEE_EUNSIGNEDMOD,           0x081, QDA_AEE_BOTH,  "test-sig not found: unsigned shared object") \
	X(AEE_EINVALIDHASH,           0x082, QDA_AEE_BOTH,  "test-sig not found: invalid hash object") \
	X(AEE_EBADVA,                 0x083, QDA_AEE_BOTH,  "Bad VA address") \
	X(AEE_ENOSUCHJOB,             0x084, QDA_AEE_BOTH,  "No such job") \
	X(AEE_ENOSUCHGROUP,           0x084, QDA_AEE_ALIAS, "No such static PD group (same value as AEE_ENOSUCHJOB)") \
	X(AEE_EBADMAPREFCNT,          0x085, QDA_AEE_BOTH,  "Bad map reference count") \
	X(AEE_EBADPAGECNT,            0x086, QDA_AEE_BOTH,  "Bad page count") \
	X(AEE_EMAPALREADYPRESENT,     0x087, QDA_AEE_BOTH,  "Map already present") \
	X(AEE_ENOFREESECTION,         0x088, QDA_AEE_BOTH,  "No more free sections available") \
	X(AEE_U2GCLIENT_OPEN,         0x089, QDA_AEE_BOTH,  "u2g client open failed") \
	X(AEE_ENOSESSION,             0x08A, QDA_AEE_BOTH,  "No available session") \
	X(AEE_ESMD_OFFSET,            0x100, QDA_AEE_HLOS,  "SMD errors offset (CPU-side name)") \
	X(AEE_ESMDBADPACKET,          0x101, QDA_AEE_HLOS,  "SMD invalid packet size (CPU-side name)") \
	X(AEE_ESMDALREADYOPEN,        0x102, QDA_AEE_HLOS,  "SMD port is already open (CPU-side name)") \
	X(AEE_ESMDOPENFAILED,         0x103, QDA_AEE_HLOS,  "SMD port open failed (CPU-side name)") \
	X(AEE_EGLINK_OFFSET,          0x100, QDA_AEE_DSP,   "GLINK errors offset (DSP-side name)") \
	X(AEE_EGLINKBADPACKET,        0x101, QDA_AEE_DSP,   "GLINK invalid packet size (DSP-side name)") \
	X(AEE_EGLINKALREADYOPEN,      0x102, QDA_AEE_DSP,   "GLINK port is already open (DSP-side name)") \
	X(AEE_EGLINKOPENFAILED,       0x103, QDA_AEE_DSP,   "GLINK port open failed (DSP-side name)") \
	X(AEE_EGLINKWRITE,            0x104, QDA_AEE_DSP,   "GLINK port write failed (DSP-side name)") \
	X(AEE_EGLINKREGISTER,         0x105, QDA_AEE_DSP,   "GLINK port register callback failed (DSP-side name)") \
	X(AEE_EDAL_OFFSET,            0x120, QDA_AEE_BOTH,  "DAL errors offset") \
	X(AEE_EDALDEVATTACH,          0x121, QDA_AEE_BOTH,  "DAL attach error") \
	X(AEE_EDALINTREGISTER,        0x122, QDA_AEE_BOTH,  "DAL interrupt register error") \
	X(AEE_EDALINTUNREGISTER,      0x123, QDA_AEE_BOTH,  "DAL interrupt unregister error") \
	X(AEE_EDALGETPROP,            0x124, QDA_AEE_BOTH,  "DAL get property failed") \
	X(AEE_EDALGETVAL,             0x125, QDA_AEE_BOTH,  "DAL get property value failed") \
	X(AEE_EDCVSREQUEST,           0x126, QDA_AEE_BOTH,  "DCVS request failed") \
	X(AEE_EQURT_OFFSET,           0x140, QDA_AEE_BOTH,  "QURT errors offset") \
	X(AEE_EQURTREGIONCREATE,      0x141, QDA_AEE_BOTH,  "QURT region create failed") \
	X(AEE_EQURTCACHECLEAN,        0x142, QDA_AEE_BOTH,  "QURT cache clean failed") \
	X(AEE_EQURTREGIONGETATTR,     0x143, QDA_AEE_BOTH,  "QURT region get attribute failed") \
	X(AEE_EQURTBADREGIONPERMS,    0x144, QDA_AEE_BOTH,  "QURT bad permissions for region") \
	X(AEE_EQURTMEMPOOLADD,        0x145, QDA_AEE_BOTH,  "QURT add to memory pool failed") \
	X(AEE_EQURTREGISTERDEV,       0x146, QDA_AEE_BOTH,  "QURT register device failed") \
	X(AEE_EQURTMEMPOOLCREATE,     0x147, QDA_AEE_BOTH,  "QURT create memory pool failed") \
	X(AEE_EQURTGETVA,             0x148, QDA_AEE_BOTH,  "QURT get VA failed") \
	X(AEE_EQURTREGIONDELETE,      0x149, QDA_AEE_BOTH,  "QURT region delete failed") \
	X(AEE_EQURTMEMPOOLATTACH,     0x14A, QDA_AEE_BOTH,  "QURT memory pool attach failed") \
	X(AEE_EQURTTHREADCREATE,      0x14B, QDA_AEE_BOTH,  "QURT thread create failed") \
	X(AEE_EQURTCOPYTOUSER,        0x14C, QDA_AEE_BOTH,  "QURT copy to user memory failed") \
	X(AEE_EQURTMEMMAPCREATE,      0x14D, QDA_AEE_BOTH,  "QURT map create failed") \
	X(AEE_EQURTINVHANDLE,         0x14E, QDA_AEE_BOTH,  "QURT invalid client handle") \
	X(AEE_EQURTBADASID,           0x14F, QDA_AEE_BOTH,  "QURT bad ASID") \
	X(AEE_EQURTOPENFAILED,        0x150, QDA_AEE_BOTH,  "QURT QDI open failed") \
	X(AEE_EQURTCOPYFROMUSER,      0x151, QDA_AEE_BOTH,  "QURT copy from user failed") \
	X(AEE_EQURTLINELOCK,          0x152, QDA_AEE_BOTH,  "QURT line lock failed") \
	X(AEE_EQURTQDIDEFMETHOD,      0x153, QDA_AEE_BOTH,  "QURT QDI default method failed") \
	X(AEE_EQURTCREATEHANDLE,      0x154, QDA_AEE_BOTH,  "QURT create handle from object failed") \
	X(AEE_EQURTWRITABLEMEM,       0x155, QDA_AEE_BOTH,  "QURT CPZ migration: writable memory") \
	X(AEE_EQURTTHREADCREATEDEF,   0x156, QDA_AEE_BOTH,  "QURT thread create def failed") \
	X(AEE_EQURTLOOKUPVA,          0x157, QDA_AEE_BOTH,  "QURT lookup VA failed") \
	X(AEE_EQURTLOOKUPPA,          0x158, QDA_AEE_BOTH,  "QURT lookup PA failed") \
	X(AEE_EQURTMIGRATESECURE,     0x159, QDA_AEE_BOTH,  "QURT CPZ migration failure") \
	X(AEE_EQURTQDIOPEN,           0x160, QDA_AEE_BOTH,  "QURT QDI open failure") \
	X(AEE_EQURTMAPREMOVE,         0x161, QDA_AEE_BOTH,  "QURT map remove failure") \
	X(AEE_EQURTQDICLOSE,          0x162, QDA_AEE_BOTH,  "QURT QDI close failed") \
	X(AEE_EQURTWAIT,              0x163, QDA_AEE_BOTH,  "QURT futex wait failed") \
	X(AEE_EMMPM_OFFSET,           0x170, QDA_AEE_BOTH,  "MMPM errors offset") \
	X(AEE_EMMPMREQUEST,           0x171, QDA_AEE_BOTH,  "MMPM power request failed") \
	X(AEE_EMMPMRELEASE,           0x172, QDA_AEE_BOTH,  "MMPM release request failed") \
	X(AEE_EMMPMSETPARAM,          0x173, QDA_AEE_BOTH,  "MMPM set param request failed") \
	X(AEE_EMMPMREGISTER,          0x174, QDA_AEE_BOTH,  "MMPM register request failed") \
	X(AEE_EMMPMGETINFO,           0x175, QDA_AEE_BOTH,  "MMPM get info failed") \
	X(AEE_EMAX_MMPM_CLIENTS,      0x176, QDA_AEE_BOTH,  "MMPM reached maximum clients per PD") \
	X(AEE_EDCVSREGISTER,          0x177, QDA_AEE_BOTH,  "ADSP DCVS client registration failed") \
	X(AEE_PDRREGFAIL,             0x178, QDA_AEE_BOTH,  "Error callback services registration failed for PD") \
	X(AEE_DEFAULT_PROCESS,        0x180, QDA_AEE_BOTH,  "Default process in guest OS is not present") \
	X(AEE_ENULLCONTEXT,           0x181, QDA_AEE_BOTH,  "User NULL context vote") \
	X(AEE_EINVALIDJOB,            0x182, QDA_AEE_BOTH,  "AsyncRPC invalid job") \
	X(AEE_EBUSY,                  0x183, QDA_AEE_BOTH,  "AsyncRPC pending job") \
	X(E_APPS_BUSY_RETRY_LATER,    0x190, QDA_AEE_BOTH,  "Retry because the apps processor is busy") \
	X(E_HLOS_CAP_REACHED,         0x191, QDA_AEE_BOTH,  "Cannot allocate any more HLOS memory") \
	X(E_DPOOL_CAP_REACHED,        0x192, QDA_AEE_BOTH,  "Cannot allocate any more physpool memory") \
	X(E_NO_MORE_FREE_SECTIONS,    0x193, QDA_AEE_BOTH,  "No more free sections available to grow the heap") \
	X(AEE_ESTUBSKELVERMISMATCH,   0x194, QDA_AEE_BOTH,  "Stub version cannot be greater than skel version") \
	X(AEE_ERPC,                   0x200, QDA_AEE_BOTH,  "Error in the FastRPC implementation") \
	X(AEE_EFILE,                  0x201, QDA_AEE_BOTH,  "File handling related error")

#define QDA_AEE_ENUMERATOR(name, value, flags, desc) name = (value),
/** enum qda_aee_code - the AEE codes as bare (CPU-side) values. */
enum qda_aee_code { QDA_AEE_CODES(QDA_AEE_ENUMERATOR) };
#undef QDA_AEE_ENUMERATOR

/**
 * struct qda_aee_entry - one row of QDA_AEE_CODES
 * @name: the macro name, e.g. "AEE_EBADPARM"
 * @desc: one-line description (from the AEEStdErr.h comment)
 * @value: bare value
 * @flags: QDA_AEE_HLOS/DSP/NOOFF/ALIASED
 */
struct qda_aee_entry {
	const char *name;
	const char *desc;
	int32_t value;
	uint32_t flags;
};

/** qda_aee_table - every row of QDA_AEE_CODES, in order; qda_aee_count rows. */
extern const struct qda_aee_entry qda_aee_table[];
extern const unsigned qda_aee_count;

/**
 * qda_errno_to_aee() - the user library's convert_kernel_to_user_error()
 * @err: the errno of a failed FastRPC ioctl (positive, or kernel-style negative)
 *
 * Maps exactly as qualcomm/fastrpc does (docs/spec/legacy_fastrpc_api.md §5.2); an errno in 1..135 that the table
 * does not name (ENOENT and EBUSY included) gives AEE_ERPC. The library converts only errnos
 * in 1..135 and otherwise keeps the raw -1, so 0 and larger values give AEE_EUNKNOWN.
 *
 * Return: the AEE code (bare value).
 */
int qda_errno_to_aee(int err);

/**
 * qda_aee_to_dsp() - the value a DSP-generated AEE code has on the wire
 * @code: bare AEE code
 *
 * Adds DSP_AEE_EOFFSET to codes in 1..QDA_AEE_CODE_MAX, except the QDA_AEE_NOOFF ones
 * (AEE_ENOSUCH 39, AEE_EINTERRUPTED 46, AEE_ECONNRESET 104, AEE_EWOULDBLOCK 516), which are the
 * same on both sides. Bare 104 is therefore treated as AEE_ECONNRESET, never AEE_ENORPCMEMORY.
 * Anything else (0, negative values, codes already in DSP form, user-defined codes > 1024)
 * is returned unchanged.
 *
 * Return: the 32-bit DSP-side value.
 */
uint32_t qda_aee_to_dsp(int code);

/**
 * qda_aee_is_dsp() - whether @code is in the DSP form DSP_AEE_EOFFSET + [1, 1024]
 * @code: a return value, as int or as its 32-bit pattern
 *
 * The no-offset codes (39, 46, 104, 516) can come from either side and are not DSP form.
 */
int qda_aee_is_dsp(uint32_t code);

/**
 * qda_aee_name() - the name of an AEE code
 * @code: a bare code, or a DSP-form code (0x80000400 + base), as int or 32-bit pattern
 *
 * A DSP-form code is named after its base code, choosing among names that carry the offset
 * (so 0x80000468 is AEE_ENORPCMEMORY and 0x80000500 AEE_EGLINK_OFFSET). A bare value prefers a
 * no-offset name, then a CPU-side one (104 is AEE_ECONNRESET, 0x100 AEE_ESMD_OFFSET).
 *
 * Return: the static name string, or NULL if no code has this value.
 */
const char *qda_aee_name(uint32_t code);

/**
 * qda_aee_find() - the table row qda_aee_name() chose for @code
 * @code: as for qda_aee_name()
 *
 * Return: the row, or NULL if no code has this value.
 */
const struct qda_aee_entry *qda_aee_find(uint32_t code);

#endif /* QDARPC_AEE_ERR_H */
