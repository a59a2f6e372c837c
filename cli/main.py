"""``qdarpc``: a thin click group over the library; commands import what they need lazily."""
from __future__ import annotations

import sys

import click

EXIT_LIBRARY_ERROR = 2


def _version_text() -> str:
    import qda_core
    from qda_core._ext import versions

    lines = [f"qdarpc {qda_core.__version__} from {qda_core.__path__[0]}"]
    try:
        lines += [f"  qda_core.{name}: {ver}" for name, ver in versions().items()]
    except ImportError as exc:
        lines.append(f"  extensions: {exc}")
    return "\n".join(lines)


def _show_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the package version and the version compiled into each extension.")
def cli() -> None:
    """qdarpc: run, test and port Qualcomm FastRPC code without a DSP.

    An emulated Hexagon DSP behind the QDA accel driver (/dev/accel/accelN) and the legacy
    FastRPC driver, all in this process.
    """


@cli.command()
@click.option("-d", "--domain", default="cdsp", show_default=True, help="DSP domain to run on.")
def selftest(domain: str) -> None:
    """Run the calculator example end to end on the emulated DSP and print each step.

    \b
    Example:
      qdarpc selftest
    """
    from .selftest import run

    try:
        ok = run(domain, click.echo)
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(0 if ok else 1)


def main() -> None:  # pragma: no cover - console entry
    cli()
