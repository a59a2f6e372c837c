"""The emulated SoC: which DSPs exist, their context banks and device nodes, wired together.

Per DSP domain there is one emulated DSP, one compute bus (its context banks, shared by both
drivers because they are hardware), one SMMU view, and one rpmsg channel per driver. The accel
nodes are numbered ``/dev/accel/accelN`` in table order; the legacy nodes are named
``/dev/fastrpc-<dom>[-secure]`` (which ones: the node table of the legacy revision,
:mod:`qda_core.legacy.revisions`).

Profiles: ``QDARPC_SOC`` names a built-in profile (see :data:`PROFILES`) or a path to a JSON or
TOML file ``{"domains": [{"name": "cdsp", "context_banks": 4}, ...]}`` (optional per domain:
``"sids": [...]``) and, at the top level, ``"kernel"``: the kernel revisions the SoC's drivers
follow, a selection string ``"accel:qda-rfc-2026-02,legacy:misc-7.2"`` or a list of
``FRONTEND:REVISION`` strings (see :mod:`qda_core.kernels`). ``"poll_mode": true`` (top level, or
per domain, which wins) says the platform supports FastRPC poll mode (see :data:`POLL_MODE`).
``"cost": {"overhead_ns": 150000, ...}`` (top level, or per domain, whose keys win) overrides
parameters of the cost model of modeled device time (:mod:`qda_core.dsp.cost`, docs/cost_model.md).
"""
from __future__ import annotations

import errno
import functools
import json
import os
import threading
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

from .accel.device import QdaDevice
from .dsp import EmulatedDsp
from .dsp.cost import domain_cost
from .errors import ConfigError, errno_error
from .faults import ENV as FAULTS_ENV, Faults
from .kernels import FRONTENDS, Revision, kernel_spec, parse_kernel
from .legacy.device import LegacyChannel
from .legacy.revisions import policy as legacy_policy
from .wire import DOMAIN_IDS
from .mem.bus import KERNEL_SID, ComputeBus, Smmu
from .rpmsg import Channel

#: Domain ids and names (defined once, in :data:`qda_core.wire.DOMAIN_IDS`).
DOMAINS = DOMAIN_IDS

#: Built-in SoC profiles: (domain, number of context banks).
PROFILES: dict[str, list[tuple[str, int]]] = {
    # RB5-class board: audio DSP with 3 CBs, compute DSP with 8, sensors DSP with 3.
    "default": [("adsp", 3), ("cdsp", 8), ("sdsp", 3)],
    # Everything the domain table knows, for tests of domain handling.
    "full": [("adsp", 3), ("mdsp", 2), ("sdsp", 3), ("cdsp", 8), ("cdsp1", 4), ("gdsp0", 4), ("gdsp1", 4)],
    # One compute DSP with two CBs: makes exhaustion easy to reach.
    "minimal": [("cdsp", 2)],
}
#: Built-in profiles whose platform supports FastRPC poll mode (Linux 7.3 SET_OPTION; the QDA
#: shim): upstream enables it per SoC, for Kaanapali's soc_data and a closed list of older
#: machines (SM8450/8550/8650/8750, SA8775P, QCS8300, SAR2130P, Milos, X1E80100, X1P42100;
#: commit 96e62cc0a84d). "default" is RB5-class (SM8250), not on the list: poll mode
#: answers EOPNOTSUPP there as on the board; "full" stands for a current SoC and has it.
POLL_MODE: dict[str, bool] = {"default": False, "full": True, "minimal": False}


@dataclass
class DomainSpec:
    name: str
    context_banks: int
    sids: list[int] = field(default_factory=list)
    #: The profile's kernel selection (``None``: not named). Copied into every domain of a
    #: profile so a domain list alone rebuilds the same SoC (``Soc(soc.specs)``).
    kernel: str | None = None
    #: The platform supports FastRPC poll mode (the legacy driver's ``poll_mode_supported``).
    poll_mode: bool = False
    #: Cost-model parameters overriding the domain's defaults (a profile's ``"cost"``).
    cost: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kernel is not None:
            self.kernel = kernel_spec(parse_kernel(self.kernel))  # validated, canonical
        if self.name not in DOMAINS:
            raise ConfigError(f"unknown DSP domain {self.name!r}; known: {', '.join(DOMAINS)}")
        if self.context_banks < 1:
            raise ConfigError(f"{self.name}: a DSP needs at least one context bank")
        if not self.sids:
            self.sids = list(range(1, self.context_banks + 1))
        if len(self.sids) != self.context_banks or len(set(self.sids)) != len(self.sids):
            raise ConfigError(f"{self.name}: need {self.context_banks} distinct SIDs, got {self.sids}")
        if KERNEL_SID in self.sids:
            raise ConfigError(f"{self.name}: SID {KERNEL_SID} is reserved (the rpmsg device's own stream)")
        try:
            domain_cost(self.name, self.cost, environ={})  # validated now, built with each SoC
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.name}: \"cost\": {exc}") from None


def _profile_kernel(spec: str, value) -> str | None:
    """A profile's ``"kernel"`` field as a selection string (a string or a list of parts)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ConfigError(f"{spec}: \"kernel\" must be a string or a list of FRONTEND:REVISION strings")


def load_profile(spec: str | None = None) -> list[DomainSpec]:
    """The domain list of a profile name or file path (default: ``$QDARPC_SOC`` or ``default``).
    A file's ``"kernel"`` field is validated here and carried by every domain."""
    if not spec and os.environ.get("QDARPC_SOC"):
        try:
            return load_profile(os.environ["QDARPC_SOC"])
        except ConfigError as exc:
            raise ConfigError(f"$QDARPC_SOC: {exc}") from None
    spec = spec or "default"
    if spec in PROFILES:
        return [DomainSpec(n, c, poll_mode=POLL_MODE.get(spec, False)) for n, c in PROFILES[spec]]
    if os.path.sep in spec or spec.endswith((".json", ".toml")):
        try:
            with open(spec, "rb") as f:
                data = tomllib.load(f) if spec.endswith(".toml") else json.load(f)
        except OSError as exc:
            raise ConfigError(f"SoC profile {spec}: {exc.strerror or exc}") from None
        except ValueError as exc:  # JSON/TOML syntax
            raise ConfigError(f"SoC profile {spec}: not valid {'TOML' if spec.endswith('.toml') else 'JSON'}: "
                              f"{exc}") from None
        try:
            return _profile_domains(spec, data)
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"SoC profile {spec}: missing or malformed field: {exc!r}") from None
    raise ConfigError(f"unknown SoC profile {spec!r}; valid profiles: {', '.join(PROFILES)} (or a .json/.toml path)")


def _profile_domains(spec: str, data: dict) -> list[DomainSpec]:
    """The domains of a profile file's parsed ``data``."""
    kernel = _profile_kernel(spec, data.get("kernel"))
    poll = data.get("poll_mode", False)
    cost = data.get("cost", {})
    if not all(isinstance(c, dict) for c in (cost, *(d.get("cost", {}) for d in data["domains"]))):
        raise ConfigError(f"{spec}: \"cost\" must be a table of cost-model parameters")
    doms = [DomainSpec(d["name"], int(d["context_banks"]), list(d.get("sids", [])), kernel,
                       d.get("poll_mode", poll), {**cost, **d.get("cost", {})}) for d in data["domains"]]
    if not all(isinstance(d.poll_mode, bool) for d in doms):
        raise ConfigError(f"{spec}: \"poll_mode\" must be true or false")
    if len({d.name for d in doms}) != len(doms):
        raise ConfigError(f"{spec}: a domain is listed twice")
    return doms


class Domain:
    """One DSP and what hangs off it."""

    def __init__(self, spec: DomainSpec, minor: int, kernel: dict[str, Revision], faults: Faults | None = None):
        self.name = spec.name
        #: The kernel revision of each front end (the SoC's).
        self.kernel = kernel
        self.domain_id = DOMAINS[spec.name]
        #: The platform supports FastRPC poll mode (the profile's ``poll_mode``).
        self.poll_mode = spec.poll_mode
        self.bus = ComputeBus(spec.name, spec.sids)
        self.bus.faults = faults
        self.smmu = Smmu(self.bus)
        # The cost model reads QDARPC_REALTIME now: once per SoC.
        self.dsp = EmulatedDsp(spec.name, self.smmu, cost=domain_cost(spec.name, spec.cost))
        self.dsp.faults = faults
        self.restarts = 0
        self._probe(minor)

    def _probe(self, minor: int) -> None:
        """What the two drivers' rpmsg probes create: a channel each, the accel node, the
        legacy nodes (where the legacy driver has any for this DSP)."""
        self.accel = QdaDevice(minor, self.name, self.domain_id, self.bus,
                               Channel(f"{self.name}-accel", self.dsp.endpoint("accel")),
                               revision=self.kernel["accel"])
        #: The legacy driver's channel state, or None where it has no node for this DSP (gdsp*).
        self.legacy_channel: LegacyChannel | None = None
        #: Legacy device nodes of this DSP: path -> LegacyDevice.
        self.legacy: dict = {}
        legacy_rev = self.kernel["legacy"]
        if self.name in legacy_policy(legacy_rev).nodes:  # which DSPs: the revision's node table
            self.legacy_channel = LegacyChannel(
                self.name, self.bus, Channel(f"{self.name}-legacy", self.dsp.endpoint("legacy")),
                legacy_rev, poll_mode=self.poll_mode)
            self.legacy = dict(self.legacy_channel.devices)

    def restart(self, new_minor: int) -> None:
        """Subsystem restart: both drivers' channels go away (open accel files get ``ENODEV``
        from FastRPC-backed ioctls, legacy files ``EPIPE``; close still works and sends no
        release), every PD on the DSP is destroyed, then the drivers probe again: new legacy
        nodes with the same names, a new accel node ``/dev/accel/accel<new_minor>``."""
        global NODES_GENERATION
        self.accel.remove()
        if self.legacy_channel is not None:
            self.legacy_channel.remove()
        self.dsp.restart()
        self.restarts += 1
        self._probe(new_minor)
        NODES_GENERATION += 1


class Soc:
    """An emulated SoC. Independent instances have independent DSPs (handy in tests)."""

    def __init__(self, profile: str | list[DomainSpec] | tuple[DomainSpec, ...] | None = None,
                 kernel: str | dict[str, Revision] | None = None, faults: str | None = None):
        #: The fault rules of this SoC (:mod:`qda_core.faults`): ``faults`` (a spec string), else
        #: ``$QDARPC_FAULTS``; add more with ``soc.faults.add(...)`` or ``soc.faults.inject(...)``.
        self.faults: Faults = Faults(faults) if faults is not None else Faults.from_env()
        specs = list(profile) if isinstance(profile, (list, tuple)) else load_profile(profile)
        #: The kernel revision of each front end: ``kernel`` (a selection string or a mapping
        #: front end -> Revision), else the profile's ``"kernel"``, else ``$QDARPC_KERNEL``,
        #: else :data:`qda_core.kernels.DEFAULT`.
        self.kernel: dict[str, Revision] = _resolve_kernel(kernel, specs)
        #: The selection string naming every front end's revision.
        self.kernel_spec: str = kernel_spec(self.kernel)
        #: The domain list this SoC was built from, each carrying :attr:`kernel_spec`:
        #: ``Soc(soc.specs)`` (or ``Soc(soc.specs, kernel=soc.kernel_spec)``) builds a twin.
        self.specs: tuple[DomainSpec, ...] = tuple(replace(s, kernel=self.kernel_spec) for s in specs)
        self.domains = {s.name: Domain(s, minor, self.kernel, self.faults) for minor, s in enumerate(self.specs)}
        for d in self.domains.values():
            d.dsp.on_ssr = functools.partial(self.restart, d.name)

    def domain(self, which: str | int) -> Domain:
        for d in self.domains.values():
            if which in (d.name, d.domain_id):
                return d
        raise errno_error(errno.ENODEV, f"no DSP domain {which!r} on this SoC (have: {', '.join(self.domains)})")

    def open(self, path: str, flags: int = os.O_RDWR):
        """Open a device node of the emulated SoC by path (``/dev/accel/accelN`` or
        ``/dev/fastrpc-<dom>[-secure]``)."""
        for d in self.domains.values():
            if path == d.accel.path:
                return d.accel.open(flags)
            dev = d.legacy.get(path)
            if dev is not None and dev.registered:
                return dev.open(flags)
        raise errno_error(errno.ENOENT, f"{path}: no such emulated device node")

    def open_device(self, domain: str | int, flags: int = os.O_RDWR):
        """Open the accel node of a DSP domain (by name or domain id)."""
        return self.domain(domain).accel.open(flags)

    def restart(self, domain: str | int) -> str:
        """Subsystem restart (SSR) of one DSP; returns the path of its new accel node (minors
        are assigned dynamically in probe order, so it is a new N)."""
        d = self.domain(domain)
        d.restart(1 + max(x.accel.minor for x in self.domains.values()))
        return d.accel.path

    @contextmanager
    def as_default(self) -> Iterator["Soc"]:
        """``with soc.as_default():`` this SoC is the process-wide one (:func:`default_soc`)
        inside the block: the module-level legacy API (``rpcmem_alloc``, a default
        ``Library``) acts on it and meets its fault rules. The previous one comes back after."""
        global _default
        with _default_lock:
            prev, _default = _default, self
        try:
            yield self
        finally:
            with _default_lock:
                _default = prev

    def accel_nodes(self) -> list[str]:
        return [d.accel.path for d in self.domains.values()]

    def legacy_nodes(self) -> list[str]:
        """Registered legacy nodes (a removed channel's nodes are gone), in domain order."""
        return [p for d in self.domains.values() for p, dev in d.legacy.items() if dev.registered]


def _resolve_kernel(kernel, specs: list[DomainSpec]) -> dict[str, Revision]:
    if isinstance(kernel, dict):
        missing = [f for f in FRONTENDS if not isinstance(kernel.get(f), Revision)]
        if missing:
            raise ConfigError(f"kernel mapping lacks a Revision for {', '.join(missing)}")
        return parse_kernel(kernel_spec(kernel))
    if kernel is not None:
        return parse_kernel(kernel)
    named = {s.kernel for s in specs if s.kernel is not None}
    if len(named) > 1:
        raise ConfigError(f"the domains name different kernels: {', '.join(sorted(named))}")
    return parse_kernel(named.pop() if named else None)


_default: Soc | None = None
_default_lock = threading.Lock()
#: Bumped whenever a domain of any SoC re-probes (an SSR gives its accel node a new path): the
#: device shim's directory tree (``vfs``) compares it instead of the paths on every ioctl.
NODES_GENERATION = 0
_inherited: list[Soc] = []  # a forked child's copies of its parent's default SoC: kept, never used


def default_soc() -> Soc:
    """The process-wide SoC used by ``qda_core.open()``; built on first use from ``QDARPC_SOC``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Soc()
        return _default


def default_faults() -> Faults | None:
    """The fault rules of the process-wide SoC, for process-wide calls (``rpcmem_alloc``);
    builds that SoC only when ``$QDARPC_FAULTS`` names rules, else None until it exists."""
    d = _default
    if d is None:
        if not os.environ.get(FAULTS_ENV):
            return None
        d = default_soc()
    return d.faults


def reset_default() -> None:
    """Forget the process-wide SoC; the next :func:`default_soc` builds a new one. Files opened
    on the old one keep working on it."""
    global _default
    with _default_lock:
        _default = None


def _after_fork_in_child() -> None:
    # The emulator is Python state (copied by fork) over shared memfd pages: a child using its
    # copy would act on device memory its parent's DSP owns. It gets a fresh default SoC on
    # first use; the copy stays referenced so nothing in it is collected or closed.
    global _default
    _default_lock._at_fork_reinit()
    if _default is not None:
        _inherited.append(_default)
        _default = None


os.register_at_fork(after_in_child=_after_fork_in_child)
