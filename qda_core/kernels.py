"""The kernel revisions the emulator can be, per front end, and how a SoC chooses them.

Each emulated driver (front end) follows one kernel revision at a time, chosen per SoC and
written ``FRONTEND:REVISION`` (``accel:qda-v1-2026-05``, ``legacy:misc-7.3``). :data:`REVISIONS`
is the one table of them, with where each comes from (docs/spec/kernel_revisions_2026.md, the
patch series or commit) and, where the source is silent, what we chose and why. The drivers read
their revision from the device object they belong to (``QdaDevice.revision``,
``LegacyChannel.revision`` / ``LegacyDevice.revision``); the per-revision ioctl numbers and
layouts live in :mod:`qda_core.uapi`.

A selection string names either front end or both: ``"accel:qda-rfc-2026-02,legacy:misc-7.2"``.
A front end it leaves out takes :data:`DEFAULT`. Where the string comes from, first found wins:
the ``kernel=`` argument of :class:`qda_core.soc.Soc`, the profile's ``"kernel"`` field,
``$QDARPC_KERNEL``, then :data:`DEFAULT`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigError

#: The environment variable a selection is read from when nothing else names one.
ENV = "QDARPC_KERNEL"

#: The front ends, in the order a selection is written.
FRONTENDS = ("accel", "legacy")


@dataclass(frozen=True)
class Revision:
    """One kernel revision of one front end."""

    frontend: str
    name: str
    title: str
    #: Where it comes from: spec section, patch series id or commit.
    source: str
    #: The uapi (numbers, layouts) is exactly known; False: semantic, from commit messages.
    exact: bool
    #: (topic, what we chose and why) where the source is silent.
    choices: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.frontend}:{self.name}"


def _table(*revs: Revision) -> dict[str, Revision]:
    return {r.name: r for r in revs}


REVISIONS: dict[str, dict[str, Revision]] = {
    "accel": _table(
        Revision(
            "accel", "qda-rfc-2026-02",
            "QDA accel RFC ([PATCH RFC 00/18] accel/qda, 2026-02-24)",
            "docs/spec/qda_accel_uapi.md (RFC); series 20260224-qda-firstpost-v1, base d4906ae14a5f",
            True,
            (("accel/staging library (LIB 759d6f8)",
              "where LIB and the RFC kernel disagree the kernel layout is emulated; "
              "qda_core.uapi.LIB_DIFFERENCES lists each difference"),),
        ),
        Revision(
            "accel", "qda-v1-2026-05",
            "QDA accel v1 ([PATCH 00/15], 2026-05-19)",
            "docs/spec/kernel_revisions_2026.md §2.1; series 20260519-qda-series-v1-0-b2d984c297f8, "
            "base 80dd246accce",
            True,
            (("ioctl nr 0x03 (INIT_ATTACH removed)",
              "a hole in the driver's ioctl table: drm_ioctl() finds no function and returns "
              "EINVAL, as for any unknown driver nr"),
             ("how an fd is imported per call",
              "through the PRIME path, as DRM_IOCTL_PRIME_FD_TO_HANDLE: the file's PRIME cache "
              "finds a dma-buf imported before, and the import stays with the file until "
              "GEM_CLOSE or close (a MAP of it stays valid); a closed fd is EBADF, a file that is "
              "not a dma-buf EINVAL"),
             ("the fd of MUNMAP",
              "forwarded to the DSP, not imported: the message carries no pages"),
             ("reply context ids",
              "decoded as ctx >> 4, so ids are no longer capped at 255 (the RFC's 8-bit match): "
              "the xarray's 32-bit range"),
             ("anything docs/spec/kernel_revisions_2026.md §2.1 does not list",
              "unchanged from the RFC (CB per PID and ENOMEM, retval as ioctl result, the "
              "RFC's static-PD and PRIME behaviour)")),
        ),
    ),
    "legacy": _table(
        Revision(
            "legacy", "misc-7.2",
            "upstream misc/fastrpc as of Linux 7.2",
            "docs/spec/legacy_fastrpc_api.md (include/uapi/misc/fastrpc.h, drivers/misc/fastrpc.c)",
            True,
            (("GET_DSP_INFO domain",
              "validated (ECHRNG), as docs/spec/legacy_fastrpc_api.md §7.4 describes today's "
              "emulation; upstream ignores it since d81c041ed5e4 (2025-09), "
              "docs/spec/kernel_revisions_2026.md §5"),),
        ),
        Revision(
            "legacy", "misc-7.3",
            "upstream misc/fastrpc as of Linux 7.3 (SET_OPTION poll mode, ctx id in bits 15:8 with a "
            "sequence number above, GET_DSP_INFO domain ignored)",
            "docs/spec/kernel_revisions_2026.md §5; commit 96e62cc0a84d (read as its last posting, "
            "v13 20260713052236.3033744-5) and its parent 62373b7879ad (\"Expand context ID mask for "
            "DSP polling mode support\"); d81c041ed5e4 (GET_DSP_INFO domain)",
            True,
            (("SET_OPTION checks",
              "v13's order: reserved words (EINVAL), request id (EINVAL), platform support "
              "(EOPNOTSUPP, for disabling too), value 0/1 (EINVAL); per file, off at open"),
             ("poll-mode platform gate",
              "the SoC profile's poll_mode flag (upstream: Kaanapali's soc_data and a closed machine "
              "list); built-in 'default' (RB5-class SM8250, not on the list) has it off, 'full' on"),
             ("poll completion",
              "the DSP writes 0xdecaf into the u32 after the metadata (40n + 384) for a PD whose "
              "library turned poll mode on (adsp_current_process1 poll_mode, method 9, which "
              "upstream's library sends after SET_OPTION), only for a successful call on a dynamic "
              "handle with the ctx async bit (4) clear, and always replies as well; the kernel polls "
              "dynamic handles (> 20) of a user PD and takes the word as retval 0, else the reply. "
              "Delivery being synchronous, the 10 ms poll timeout never runs"),
             ("metadata",
              "40n + 388 bytes on every call: the data area moves by 128 bytes when n % 16 == 0"),
             ("reply matching",
              "by bits 15:8; the whole ctx word must be the context's, which implies the sequence "
              "check"),
             ("trace",
              "INVOKE ioctl events carry fields ctx (the wire word) and completion (rpmsg | poll), on "
              "every legacy revision")),
        ),
        Revision(
            "legacy", "qda-shim",
            "qda_fastrpc_shim: /dev/fastrpc-* served by the QDA driver (latest posting, about Nov 2026)",
            "docs/spec/kernel_revisions_2026.md §2.3 and §3; dri-devel msg649231/msg649234 (shim), "
            "msg648888 (SET_OPTION), msg648884/msg649271 (CBs), msg649225 (SSR); commit messages only",
            False,
            (("ioctl numbers and layouts",
              "misc-7.3's (SET_OPTION included: the posting's SET_OPTION patch names the legacy "
              "ioctl): the shim serves the full /dev/fastrpc-* set; its headers were not recoverable"),
             ("nodes",
              "ADSP/MDSP/SDSP one node, the non-secure /dev/fastrpc-<d> as misc (the posting does not "
              "say which); CDSP/CDSP1/GDSP0/GDSP1 secure and non-secure on a secure channel"),
             ("context bank",
              "taken by the file's first operation that allocates or sends (INIT_*, ALLOC_DMA_BUFF, "
              "MMAP, MEM_MAP, INVOKE), exclusive until close, never shared (one thread's two files get "
              "two); none free -> EBUSY there, open itself never fails for want of one. Client ids: a "
              "per-device counter from 1, as the QDA core's; a file that never took a bank sends no "
              "INIT_RELEASE"),
             ("ctx word and ids",
              "the QDA core's engine: the lowest free id 1..255 (its xarray) placed as misc-7.3 does "
              "(bits 15:8, sequence number above, poll word after the metadata), the posting's poll "
              "mode needing the same DSP contract. Emulation limit: the shim has its own rpmsg "
              "endpoint and id space, not shared with the DSP's /dev/accel files"),
             ("INVOKE fds",
              "each fd imported for the call and released after it (no map cache; the DSP's fdlist "
              "has nothing to drop); offset = page of the pointer minus the start of whatever mapping "
              "holds it, plus its pgoff; neither the length nor the mapping's file is checked "
              "(reproduced: the posting says so, the Sashiko review lists 'missing VMA/size checks'). "
              "A range past the buffer reaches only the file's own exclusive bank or faults on the "
              "DSP (PD crash, smmu trace event); a pointer in no mapping -> EFAULT (upstream would "
              "dereference find_vma()'s NULL)"),
             ("INIT_CREATE ELF by pointer",
              "filelen > 0 with filefd <= 0 -> EINVAL (an unsupported argument combination, the "
              "kernel's errno for one; the QDA core takes the ELF only as a buffer); filelen 0 (no "
              "shell, as upstream's library sends when it finds none) is accepted"),
             ("non-secure node",
              "only unsigned PDs, ECONNREFUSED otherwise (misc's errno, which the library maps to "
              "AEE_ECONNREFUSED), on every domain that has one, GDSP included; whether the DSP runs "
              "unsigned PDs is its own answer. CAP_SYS_ADMIN for signed PDs (the accel "
              "SESSION_CREATE rule, msg649246) is not applied: the shim's message names only the "
              "node rule"),
             ("GET_DSP_INFO",
              "domain ignored (the 7.3 uapi); one cache per device shared by both nodes and every "
              "file, filled by a message the device sends from its own bank (SID 0), so a file needs "
              "no context bank for it; DSP without support -> EOPNOTSUPP"),
             ("SSR",
              "every ioctl after the channel goes, and every waiter, fails with EPIPE; the nodes "
              "are deregistered until the DSP is back"),
             ("ALLOC_DMA_BUFF / FREE_DMA_BUFF",
              "a dma-buf fd (O_RDWR) of a zeroed buffer in the file's bank / ENOTTY, as misc"),
             ("SET_OPTION and poll mode", "as misc-7.3, gated by the same SoC profile flag")),
        ),
    ),
}

#: The revision each front end follows when nothing names one: the newest exactly known one,
#: unless it breaks the user library that front end serves. accel: the RFC, not v1: the
#: accel/staging library tracks the RFC, and a buffer it registers with a session goes by its GEM
#: handle, which v1 reads as a DMA-BUF fd, so its invoke fails (uapi.LIB_DIFFERENCES_V1;
#: tests/test_kernel_revisions.py runs the library through the device shim on both). legacy:
#: misc-7.3 (misc-7.2 is ``legacy:misc-7.2``).
DEFAULT: dict[str, str] = {"accel": "qda-rfc-2026-02", "legacy": "misc-7.3"}


class KernelError(ConfigError):
    """A kernel selection names an unknown front end or revision, or a front end twice."""


def valid_names() -> list[str]:
    """Every ``FRONTEND:REVISION`` string, in table order."""
    return [str(r) for revs in REVISIONS.values() for r in revs.values()]


def _bad(msg: str) -> KernelError:
    return KernelError(f"{msg}; valid: {', '.join(valid_names())}")


def parse_kernel(spec: str | None) -> dict[str, Revision]:
    """The revision of every front end named by ``spec`` (``"accel:X,legacy:Y"``, either part
    optional); front ends it leaves out take :data:`DEFAULT`. ``None``: ``$QDARPC_KERNEL``, else
    the defaults."""
    if spec is None:
        try:
            return parse_kernel(os.environ.get(ENV, ""))
        except KernelError as exc:
            raise KernelError(f"${ENV}: {exc}") from None
    chosen: dict[str, Revision] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        front, sep, name = (s.strip() for s in part.partition(":"))
        if not sep:
            raise _bad(f"kernel selection {part!r} is not FRONTEND:REVISION")
        if front not in REVISIONS:
            raise _bad(f"unknown kernel front end {front!r} in {part!r}")
        rev = REVISIONS[front].get(name)
        if rev is None:
            raise _bad(f"unknown {front} kernel revision {name!r}")
        if front in chosen:
            raise _bad(f"front end {front!r} given twice ({chosen[front]}, {rev})")
        chosen[front] = rev
    return {f: chosen.get(f) or REVISIONS[f][DEFAULT[f]] for f in FRONTENDS}


def kernel_spec(kernel: dict[str, Revision]) -> str:
    """The selection string naming every front end of ``kernel``: parses back to it."""
    return ",".join(str(kernel[f]) for f in FRONTENDS)


def describe(kernel: dict[str, Revision]) -> dict[str, dict]:
    """A JSON-friendly view of a selection: front end -> name, title, source, exact."""
    return {f: {"revision": str(r), "title": r.title, "source": r.source, "exact": r.exact}
            for f, r in kernel.items()}
