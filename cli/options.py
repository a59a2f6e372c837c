"""Reusable options of ``qdarpc`` commands, one named decorator each (pip-tools style).

Stack them on a command (``@options.domain``) or compose a set with :func:`add_options`.
Names follow ``fastrpc_test``: ``-d`` domain, ``-U`` unsigned PD. Validation that needs the
library imports it lazily, so ``qdarpc --help`` stays fast.
"""
from __future__ import annotations

from typing import Callable

import click


def add_options(*decorators: Callable) -> Callable:
    """One decorator applying ``decorators`` in the order written (top one outermost)."""

    def apply(fn: Callable) -> Callable:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn

    return apply


def _domain_name(ctx, param, value: str | None) -> str | None:
    """Accept a domain name or numeric id (``cdsp`` or ``3``); return the name. A name no DSP
    domain has is a usage error listing the domains of the SoC this command emulates (its
    ``--soc``, which is eager so it is known here, else ``QDARPC_SOC``, else the default)."""
    if value is None:
        return None
    from qda_core.soc import DOMAINS, load_profile

    v = value.strip().lower()
    if v.isdigit():
        for name, did in DOMAINS.items():
            if did == int(v):
                return name
    elif v in DOMAINS:
        return v
    profile = ctx.params.get("soc_profile") if ctx is not None else None
    try:
        names = [d.name for d in load_profile(profile)]
    except (ValueError, OSError, KeyError):
        names = list(DOMAINS)
    known = ", ".join(f"{n} ({DOMAINS[n]})" for n in names)
    raise click.BadParameter(f"unknown DSP domain {value!r}; this SoC ({profile or _env_profile()}) has {known}",
                             param=param)


def _env_profile() -> str:
    import os

    return os.environ.get("QDARPC_SOC") or "default"


def _soc_profile(_ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    from qda_core.soc import load_profile

    try:
        load_profile(value)
    except (ValueError, OSError, KeyError) as exc:
        raise click.BadParameter(str(exc), param=param) from None
    return value


def domain_option(default: str | None = "cdsp", help: str = "DSP domain: name or id.") -> Callable:
    """A ``--domain/-d`` option with its own default (None: the command derives it)."""
    return click.option("-d", "--domain", default=default, show_default=default is not None,
                        callback=_domain_name, metavar="DOMAIN", help=help)


domain = domain_option()

unsigned_pd = click.option(
    "-U", "--unsigned-pd", is_flag=True, default=False,
    help="Create an unsigned user PD (FASTRPC_MODE_UNSIGNED_MODULE), as fastrpc_test -U 1.")

backend = click.option(
    "--backend", type=click.Choice(["accel", "legacy"]), default="accel", show_default=True,
    envvar="QDARPC_BACKEND", help="Kernel driver to go through: QDA accel or legacy misc/fastrpc.")

session = click.option(
    "--session", type=click.IntRange(0, 3), default=0, show_default=True, metavar="N",
    help="FastRPC session of the domain (0-3; appended to the URI as &_session=N).")

json_output = click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print one JSON document instead of text.")

soc = click.option(  # eager: a --domain given before it is still checked against this SoC
    "--soc", "soc_profile", default=None, envvar="QDARPC_SOC", callback=_soc_profile, metavar="PROFILE",
    is_eager=True,
    help="SoC profile to emulate: default, full, minimal, or a .json/.toml file [env QDARPC_SOC].")

debug = click.option(
    "--debug", is_flag=True, default=False,
    help="Also print the Python traceback of an error (the exit code stays the same).")


class _KernelOption(click.Option):
    """``--kernel``: its help names the valid revisions, read from the table when help is shown
    (so importing the CLI stays light)."""

    def get_help_record(self, ctx):
        record = super().get_help_record(ctx)
        if record is None:
            return None
        from qda_core.kernels import valid_names

        return record[0], f"{record[1]} Valid: {', '.join(valid_names())}."


def _kernel(ctx, param, value: tuple[str, ...]) -> str | None:
    """Validate ``--kernel FRONTEND:REVISION`` (repeatable) and return the selection string
    naming every front end, or None when no option was given (``$QDARPC_KERNEL`` is validated
    too, but left where it is: below a profile's own ``"kernel"``). An unknown name is a usage
    error listing the valid ones. A profile that names a kernel of its own and a ``--kernel``
    that disagrees with it are a usage error too: one of them would be silently ignored."""
    if not value:
        return None
    from qda_core.kernels import KernelError, kernel_spec, parse_kernel
    from qda_core.soc import load_profile

    try:
        spec = kernel_spec(parse_kernel(",".join(value)))
    except KernelError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    if ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT:
        return None
    profile = ctx.params.get("soc_profile")
    try:
        named = load_profile(profile)[0].kernel
    except (ValueError, OSError, KeyError, IndexError):
        named = None  # a bad profile is --soc's error to report
    if named is not None and named != spec:
        raise click.BadParameter(f"the SoC profile ({profile or _env_profile()}) names kernel {named}; "
                                 f"{spec} contradicts it (drop one)", param=param)
    return spec


kernel = click.option(
    "--kernel", "kernel", multiple=True, callback=_kernel, envvar="QDARPC_KERNEL", metavar="FRONTEND:REVISION",
    cls=_KernelOption,
    help="Kernel revision a driver front end follows (repeatable; the other front end keeps its default) "
         "[env QDARPC_KERNEL].")


def _faults(_ctx, param, value: str | None) -> str | None:
    """Validate ``--faults SPEC`` (the fault language of qda_core.faults); a spec that does not
    parse is a usage error naming the item."""
    if not value:
        return None
    from qda_core.faults import FaultError, parse

    try:
        parse(value)
    except FaultError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    return value


faults = click.option(
    "--faults", "faults", callback=_faults, envvar="QDARPC_FAULTS", metavar="SPEC",
    help="Inject faults, e.g. 'ssr:cdsp@invoke=5', 'alloc:rpcmem@2;map@1,errno=EFAULT' "
         "(the language: docs/faults.md) [env QDARPC_FAULTS].")
