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
            "upstream misc/fastrpc as of Linux 7.3 (SET_OPTION, poll mode, wider context ids)",
            "docs/spec/kernel_revisions_2026.md §5; commit 96e62cc0a84d and its parent "
            "(\"Expand context ID mask for DSP polling mode support\")",
            True,
        ),
        Revision(
            "legacy", "qda-shim",
            "qda_fastrpc_shim: /dev/fastrpc-* served by the QDA driver (latest posting, about Nov 2026)",
            "docs/spec/kernel_revisions_2026.md §2.3 and §3; dri-devel msg649231/msg649234 "
            "(commit messages only)",
            False,
            (("ioctl numbers and layouts",
              "the legacy misc/fastrpc ones: the shim serves the full /dev/fastrpc-* ioctl set; "
              "its headers were not recoverable"),),
        ),
    ),
}

#: The revision each front end follows when nothing names one. Until a revision's behaviour is
#: implemented its front end stays on today's emulation (accel RFC, legacy misc-7.2).
DEFAULT: dict[str, str] = {"accel": "qda-rfc-2026-02", "legacy": "misc-7.2"}


class KernelError(ValueError):
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
        spec = os.environ.get(ENV, "")
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
