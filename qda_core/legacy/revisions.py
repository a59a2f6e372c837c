"""What the legacy front end's kernel revisions do differently, as data: one policy per revision.

One driver (:mod:`.device`, :mod:`.file`) serves every revision; where they differ it asks the
policy of its channel's revision (:func:`policy`). The revisions, their sources and the choices
made where a source is silent are listed in :data:`qda_core.kernels.REVISIONS` (``legacy:*``);
numbers and layouts are in :data:`qda_core.uapi.LEGACY_UAPI`.

=========================  ==============  ==============  =====================================
                           misc-7.2        misc-7.3        qda-shim
=========================  ==============  ==============  =====================================
uapi                       12 ioctls       + SET_OPTION    as misc-7.3
ctx word (wire)            ``id<<4|pd``    ``seq<<16|id<<8|pd``, poll word after the metadata
context ids                cyclic 1..255   cyclic 1..255   lowest free 1..255 (QDA core xarray)
GDSP nodes                 none            none            secure and non-secure
context bank               at open, EBUSY  at open, EBUSY  first allocation, exclusive, EBUSY
client id                  session + 1     session + 1     per-device counter from 1
INVOKE fd arguments        per-file map    per-file map    imported per call, offset from the
                           (bounded)       (bounded)       caller's VMA, no size check
INIT_CREATE ELF by pointer copied          copied          EINVAL
non-secure node            unsigned PDs, CDSP/CDSP1 only   unsigned PDs only (any domain)
GET_DSP_INFO ``domain``    ECHRNG >= 5/MDSP  ignored       ignored
GET_DSP_INFO query         file's session  file's session  the device (kernel bank), no CB
SET_OPTION poll mode       ENOTTY          SoC-gated       SoC-gated
=========================  ==============  ==============  =====================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .. import uapi
from ..fastrpc import CTX_ID4, CTX_ID8_SEQ, CtxLayout
from ..uapi import Ioctl

__all__ = ["LegacyPolicy", "POLICIES", "MISC_NODES", "SHIM_NODES", "policy"]

#: Upstream misc/fastrpc's nodes: domain -> (channel is secure, node suffixes registered
#: (True: ``-secure``)). ``fastrpc_rpmsg_probe`` registers, per rpmsg channel:
#:
#: * ADSP/MDSP/SDSP: one node, ``fastrpc-<d>-secure`` unless the DT node carries
#:   ``qcom,non-secure-domain``, else ``fastrpc-<d>``. Every upstream DT marks these domains
#:   non-secure, so we do too: one node ``/dev/fastrpc-<d>`` on a non-secure channel.
#: * CDSP/CDSP1: both ``fastrpc-<d>-secure`` and ``fastrpc-<d>``. Recent DTs drop
#:   ``qcom,non-secure-domain`` for the CDSP, so the channel is secure and the non-secure node
#:   may only create unsigned PDs (``INIT_CREATE`` -> ``ECONNREFUSED`` otherwise).
#: * GDSP0/GDSP1: the upstream driver's domain table has no GDSP (probe fails with ``EINVAL``
#:   for that label), so no legacy node exists; those DSPs are reachable through QDA only.
MISC_NODES: Mapping[str, tuple[bool, tuple[bool, ...]]] = {
    "adsp": (False, (False,)),
    "mdsp": (False, (False,)),
    "sdsp": (False, (False,)),
    "cdsp": (True, (True, False)),
    "cdsp1": (True, (True, False)),
}
#: The QDA shim's nodes (latest cover letter, docs/spec/kernel_revisions_2026.md §3): "ADSP/MDSP/SDSP
#: get one node; CDSP/GDSP always get secure and non-secure nodes". Which one of the single nodes
#: is not said; we keep misc's non-secure one.
SHIM_NODES: Mapping[str, tuple[bool, tuple[bool, ...]]] = {
    **MISC_NODES,
    "gdsp0": (True, (True, False)),
    "gdsp1": (True, (True, False)),
}


@dataclass(frozen=True)
class LegacyPolicy:
    """The data and switches one legacy kernel revision is made of."""

    #: The revision's name in :data:`qda_core.kernels.REVISIONS` ``["legacy"]``.
    name: str
    #: The uapi served: number -> Ioctl (anything else is ENOTTY).
    ioctls: Mapping[int, Ioctl]
    #: domain -> (channel secure, node suffixes); a domain missing has no legacy node.
    nodes: Mapping[str, tuple[bool, tuple[bool, ...]]]
    #: How the ctx word is laid out on the wire (and whether the metadata has a poll word).
    ctx: CtxLayout
    #: Context ids: cyclic 1..255 (legacy IDR) or the lowest free one (QDA's xarray).
    cyclic_ids: bool = True
    #: GET_DSP_INFO validates ``domain`` (ECHRNG for >= FASTRPC_DEV_MAX or MDSP).
    dsp_info_checks_domain: bool = False
    #: GET_DSP_INFO's cache is filled through the device's own bank (True) or through the
    #: calling file's session (False).
    dsp_info_from_device: bool = False
    #: ``open()`` takes the file's context bank (EBUSY when none is free); False: the first
    #: operation that allocates takes it (EBUSY there), exclusively, until close.
    cb_at_open: bool = True
    #: INVOKE fd arguments: False: ``fastrpc_map`` per file, cached by fd and buffer, the
    #: pointer's pages bounded to the buffer (our misc emulation); True: each fd imported for
    #: the call only, the offset taken from whatever mapping holds the pointer, no size check.
    import_per_call: bool = False
    #: INIT_CREATE accepts an ELF given by pointer only (filelen without a dma-buf fd).
    elf_by_pointer: bool = True
    #: Domains whose non-secure node may create unsigned PDs (None: any).
    unsigned_domains: frozenset[str] | None = frozenset({"cdsp", "cdsp1"})

    @property
    def set_option(self) -> bool:
        return uapi.FASTRPC_IOCTL_SET_OPTION in self.ioctls

    def node_paths(self, dsp_name: str) -> list[str]:
        """The node paths this revision registers for ``dsp_name`` (empty: none)."""
        _, suffixes = self.nodes.get(dsp_name, (False, ()))
        return [f"/dev/fastrpc-{dsp_name}{'-secure' if s else ''}" for s in suffixes]


POLICIES: dict[str, LegacyPolicy] = {
    "misc-7.2": LegacyPolicy("misc-7.2", uapi.LEGACY_UAPI["misc-7.2"], MISC_NODES, CTX_ID4,
                             dsp_info_checks_domain=True),
    "misc-7.3": LegacyPolicy("misc-7.3", uapi.LEGACY_UAPI["misc-7.3"], MISC_NODES, CTX_ID8_SEQ),
    "qda-shim": LegacyPolicy("qda-shim", uapi.LEGACY_UAPI["qda-shim"], SHIM_NODES, CTX_ID8_SEQ,
                             cyclic_ids=False, dsp_info_from_device=True, cb_at_open=False,
                             import_per_call=True, elf_by_pointer=False, unsigned_domains=None),
}


def policy(revision) -> LegacyPolicy:
    """The policy of a legacy :class:`qda_core.kernels.Revision` (or its name)."""
    name = getattr(revision, "name", revision)
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"no legacy kernel revision {name!r}; known: {', '.join(POLICIES)}") from None
