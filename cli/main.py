"""``qdarpc``: a thin click group over the library; commands import what they need lazily.

Exit codes are listed once, in :mod:`qdarpc_cli.errors`; library exceptions become one-line
messages there (``qdarpc --debug`` prints the traceback too; the exit code is the same).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from . import options
from .errors import EXIT_DSP, EXIT_FAILED, EXIT_FILE, CliError, translate
from .benchmarks import BENCHMARKS
from .invoke import IN_HELP, OUT_HELP, BufSpec, OrderedCommand

EPILOG_EXIT = ("\b\nExit codes: 0 ok, 1 check failed, 2 usage, 3 device/driver error, 4 DSP error, "
               "5 file error, 6 unavailable, 70 internal error.")


def _version_text() -> str:
    import platform

    import qda_core
    from qda_core._ext import versions

    lines = [f"qdarpc {qda_core.__version__} from {qda_core.__path__[0]} (Python {platform.python_version()})"]
    try:
        lines += [f"  qda_core.{name}: {ver}" for name, ver in versions().items()]
    except ImportError as exc:
        lines.append(f"  extensions: {exc}")
    return "\n".join(lines)


def _show_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


class QdarpcGroup(click.Group):
    """Turns library exceptions escaping any subcommand into clean one-line errors."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.find_root().params.get("debug"):  # the traceback as well, never another exit code
                import traceback

                traceback.print_exc(file=sys.stderr)
            raise translate(exc) from None


def _use_env(name: str, value: str | None) -> None:
    """``$name`` is ``value`` while the command runs (put back when it ends), so every SoC it
    builds and every program it runs sees it; None leaves it as it is."""
    if value is None:
        return
    old = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    click.get_current_context().call_on_close(restore)


def _use_kernel(kernel: str | None) -> None:
    """``--kernel``: ``$QDARPC_KERNEL`` while the command runs."""
    _use_env("QDARPC_KERNEL", kernel)


def _use_faults(faults: str | None) -> None:
    """``--faults``: ``$QDARPC_FAULTS`` while the command runs: each SoC built reads it."""
    _use_env("QDARPC_FAULTS", faults)


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


@click.group(cls=QdarpcGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG_EXIT)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the package version, its path and the version compiled into each extension.")
@options.debug
def cli(debug: bool) -> None:
    """qdarpc: run, test and port Qualcomm FastRPC code without a DSP.

    An emulated Hexagon DSP behind the QDA accel driver (/dev/accel/accelN) and the legacy
    FastRPC driver, all in this process. Each command builds a fresh emulated SoC.

    \b
    Examples:
      qdarpc selftest
      qdarpc doctor
      qdarpc devices --json
      qdarpc invoke 'file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0' sum \\
          --in i32:3 --in i32:1,2,3 --out i64:1
      qdarpc trace -o run.json -- selftest
      qdarpc ab calculator --html ab.html
    """


# --- selftest ---------------------------------------------------------------------------------
@cli.command()
@options.domain
@click.option("--pd", "pd", type=click.Choice(["auto", "unsigned", "signed"]), default="auto", show_default=True,
              help="User PD to create: unsigned (CDSP only, fastrpc_test -U 1), signed (-U 0), or auto: "
                   "unsigned, and signed where the DSP has no unsigned PDs.")
@click.option("-U", "--unsigned-pd", "unsigned_pd", is_flag=True, default=False, help="Same as --pd unsigned.")
@options.kernel
def selftest(domain: str, pd: str, unsigned_pd: bool, kernel: str | None) -> None:
    """Run the calculator example end to end on the emulated DSP and print each step.

    Stops at the first step that fails and says why. Exits 0 when every step passed, 1
    otherwise.

    \b
    Examples:
      qdarpc selftest
      qdarpc selftest -d adsp            # a signed PD: unsigned PDs are CDSP-only
      qdarpc selftest -d cdsp --pd signed
      qdarpc selftest --kernel accel:qda-v1-2026-05
    """
    from .selftest import run

    _use_kernel(kernel)
    if unsigned_pd:
        if pd == "signed":
            raise click.UsageError("-U/--unsigned-pd contradicts --pd signed")
        pd = "unsigned"
    sys.exit(0 if run(domain, click.echo, pd=pd) else EXIT_FAILED)


# --- devices / query --------------------------------------------------------------------------
@cli.command()
@options.add_options(options.soc, options.kernel, options.json_output)
def devices(soc_profile: str | None, kernel: str | None, as_json: bool) -> None:
    """List the emulated SoC: the kernel revision each driver follows, DSP domains, device nodes
    of both drivers, context banks, PDs.

    \b
    Examples:
      qdarpc devices
      qdarpc devices --soc full --json
      qdarpc devices --kernel accel:qda-v1-2026-05 --kernel legacy:misc-7.2
    """
    from .info import devices as info, format_devices

    _use_kernel(kernel)
    data = info(soc_profile, kernel)
    _echo_json(data) if as_json else click.echo(format_devices(data))


@cli.command()
@click.argument("device")
@options.add_options(options.soc, options.kernel, options.json_output)
def query(device: str, soc_profile: str | None, kernel: str | None, as_json: bool) -> None:
    """Issue DRM_IOCTL_QDA_QUERY on DEVICE and print what it returns.

    DEVICE is an accel node (/dev/accel/accel1 or accel1), a domain name (cdsp) or id (3).

    \b
    Examples:
      qdarpc query /dev/accel/accel1
      qdarpc query cdsp --json
    """
    from .info import query as do_query

    _use_kernel(kernel)
    data = do_query(device, soc_profile, kernel)
    if as_json:
        _echo_json(data)
    else:
        click.echo(f"{data['device']}: {data['ioctl']} ({data['request']}) -> dsp_name={data['dsp_name']!r} "
                   f"(client_id {data['client_id']})")


# --- invoke -----------------------------------------------------------------------------------
def _parse_sc(_ctx, param, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        sc = int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an integer (e.g. 0x02020100)", param=param) from None
    if not 0 <= sc <= 0xFFFF_FFFF:
        raise click.BadParameter(f"{value} is not a 32-bit scalars word", param=param)
    return sc


@cli.command(cls=OrderedCommand)
@click.argument("uri")
@click.argument("method")
@click.option("--in", "ins", multiple=True, type=BufSpec(out=False, by_ref=False), metavar="SPEC",
              help=f"An in-buffer, copied into the message: {IN_HELP}. Repeat in argument order.")
@click.option("--in-rpcmem", "ins_ref", multiple=True, type=BufSpec(out=False, by_ref=True), metavar="SPEC",
              help="An in-buffer passed by reference (shared rpcmem/GEM buffer); same SPEC as --in.")
@click.option("--out", "outs", multiple=True, type=BufSpec(out=True, by_ref=False), metavar="SPEC",
              help=f"An out-buffer: {OUT_HELP}.")
@click.option("--out-rpcmem", "outs_ref", multiple=True, type=BufSpec(out=True, by_ref=True), metavar="SPEC",
              help="An out-buffer passed by reference (shared); same SPEC as --out.")
@click.option("--sc", callback=_parse_sc, metavar="WORD",
              help="The scalars word (default: REMOTE_SCALARS_MAKE(METHOD, #in, #out)).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Invoke N times and print median/p99 wall time per call.")
@options.domain_option(None, "DSP domain: name or id (default: the URI's &_dom=, else cdsp).")
@options.add_options(options.unsigned_pd, options.backend, options.session, options.soc, options.kernel,
                     options.faults, options.json_output)
def invoke(uri: str, method: str, ins, ins_ref, outs, outs_ref, sc, repeat, domain, unsigned_pd, backend,
           session, soc_profile, kernel, faults, as_json) -> None:
    """Open the module URI on the DSP and invoke METHOD with typed buffers.

    METHOD is a method id (2, 0x3) or, for Python skels, a method name (sum). Buffers go in
    command-line order; outputs print decoded by their SPEC type, then the DSP return code
    with its AEE name (exit code 4 when it is not 0).

    \b
    Examples:
      qdarpc invoke 'file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0' sum \\
          --in i32:3 --in i32:1,2,3 --out i64:1
      qdarpc invoke 'file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_dom=cdsp' 3 \\
          --in i32:4 --in-rpcmem i32:5,9,2,7 --out i32:1 -U --repeat 1000
      qdarpc invoke 'file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0' echo \\
          --in str:hello --out str:16 --json
    """
    from . import invoke as inv
    from .term import progress

    ctx = click.get_current_context()
    _use_kernel(kernel)
    _use_faults(faults)
    in_bufs = inv.in_order(ctx, ("ins", "ins_ref"), {"ins": ins, "ins_ref": ins_ref})
    out_bufs = inv.in_order(ctx, ("outs", "outs_ref"), {"outs": outs, "outs_ref": outs_ref})
    try:
        res = inv.run(uri=uri, method=method, domain=domain, session=session, unsigned=unsigned_pd,
                      backend=backend, soc_profile=soc_profile, ins=in_bufs, outs=out_bufs, sc=sc,
                      repeat=repeat, progress=progress(f"invoke x{repeat}"))
    except ValueError as exc:  # URI, method, scalars: the command line is wrong
        raise click.UsageError(str(exc), ctx) from None
    if as_json:
        _echo_json(res.to_json())
    else:
        click.echo(_format_invoke(res))
    if res.ret:
        ctx.exit(EXIT_DSP)


def _format_invoke(res) -> str:
    data = res.to_json()
    name = f" ({res.method_name})" if res.method_name else ""
    lines = [f"{res.domain} via {res.backend}: {res.uri}",
             f"method {res.method}{name}  sc {res.sc:#010x}"]
    for o in data["outputs"]:
        how = "rpcmem " if o["by_ref"] else ""
        raw_len = len(o["hex"]) // 2
        if o["type"] == "hex":
            val = o["value"] if raw_len <= 64 else o["value"][:128] + f"... ({raw_len} bytes)"
            lines.append(f"out{o['index']} {how}{raw_len} bytes: {val}")
        elif o["type"] == "str":
            lines.append(f"out{o['index']} {how}str[{raw_len}]: {o['value']!r}")
        else:
            lines.append(f"out{o['index']} {how}{o['type']}[{len(o['value'])}]: {' '.join(map(str, o['value']))}")
    lines.append(f"ret {res.ret:#x} {data['ret_name']}")
    if res.ret and res.repeat > 1:
        lines.append(f"stopped at call {len(res.times_ns)} of {res.repeat}: it answered non-zero "
                     "(the outputs are what the buffers held after it)")
    if res.modeled_text():
        lines.append(res.modeled_text())
    for f in res.injected:
        lines.append(f"injected fault {f['rule']} ({f['target']} #{f['n']}: {f['detail']})")
    if "timing" in data:
        t = data["timing"]
        lines.append(f"{t['calls']} calls: median {t['median_us']:.2f} us, p99 {t['p99_us']:.2f} us, "
                     f"min {t['min_us']:.2f} us, mean {t['mean_us']:.2f} us")
    return "\n".join(lines)


# --- trace ------------------------------------------------------------------------------------
class TraceGroup(click.Group):
    """``qdarpc trace [run] ...``: anything that is not a subcommand is what to run."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=TraceGroup)
def trace() -> None:
    """Record the ioctls, legacy API calls and DSP work of a run; summarize or convert traces.

    \b
    Examples:
      qdarpc trace -o run.jsonl -- selftest
      qdarpc trace -o run.json -- invoke URI sum --in i32:1 --in i32:5 --out i64:1
      qdarpc trace -o app.jsonl my_app.py --its-args
      qdarpc trace summarize run.jsonl
      qdarpc trace convert run.jsonl -o run.json    # open in ui.perfetto.dev
    """


def _trace_output(_ctx, param, value: str) -> str:
    from .tracecmd import TRACE_EXTS

    if not value.lower().endswith(TRACE_EXTS):
        raise click.BadParameter(f"{value!r}: use .jsonl (JSON Lines) or .json (Chrome/Perfetto trace)",
                                 param=param)
    return value


@trace.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", default="qdarpc-trace.jsonl", show_default=True, callback=_trace_output,
              help="Trace file: .jsonl (events, lossless) or .json (Chrome trace-event JSON).")
@options.kernel
@options.faults
@click.argument("target", nargs=-1, required=True, type=click.UNPROCESSED)
def trace_run(output: str, kernel: str | None, faults: str | None, target: tuple[str, ...]) -> None:
    """Run TARGET under the recorder: a Python script (path, then its arguments) or a qdarpc
    subcommand (after --). The trace is written even when TARGET fails; the exit code is TARGET's.
    A .json trace names the kernel revisions in force (--kernel, here or the subcommand's) in
    its metadata (otherData.kernel); a .jsonl has no header for it.

    \b
    Examples:
      qdarpc trace run -o out.jsonl -- devices
      qdarpc trace run -o out.json script.py arg1
      qdarpc trace run --kernel accel:qda-v1-2026-05 -o out.json -- selftest
    """
    from .tracecmd import is_script, run_script, traced

    _use_kernel(kernel)
    _use_faults(faults)
    argv = list(target)
    if not is_script(argv[0]):
        # the subcommand puts its own --kernel back when it ends, before the trace is written:
        # keep it in force until then, so the trace names the revisions it ran on
        _use_kernel(_sub_kernel(argv))

    def sub() -> int:
        rv = cli.main(args=argv, prog_name="qdarpc", standalone_mode=False)
        return rv if isinstance(rv, int) else 0

    def report(n: int) -> None:
        click.echo(f"trace: {n} events -> {output}", err=True)

    code = traced((lambda: run_script(argv)) if is_script(argv[0]) else sub, output, report)
    click.get_current_context().exit(code)


def _sub_kernel(argv: list[str]) -> str | None:
    """The selection a qdarpc subcommand's own ``--kernel`` options make (None: none given, or
    one that does not parse, which the subcommand reports); a program's arguments after ``--``
    are not its options."""
    from qda_core.kernels import KernelError, kernel_spec, parse_kernel

    given = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--kernel" and i + 1 < len(argv):
            given.append(argv[i + 1])
        elif arg.startswith("--kernel="):
            given.append(arg.partition("=")[2])
    try:
        return kernel_spec(parse_kernel(",".join(given))) if given else None
    except KernelError:
        return None


@trace.command("summarize")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@options.json_output
def trace_summarize(file: str, as_json: bool) -> None:
    """Summarize a .jsonl trace: top ioctls by count and time, bytes copied vs shared, errors.

    \b
    Example:
      qdarpc trace summarize run.jsonl --json
    """
    from qda_core.trace_formats import read_jsonl, summarize

    from .tracecmd import format_summary

    s = summarize(read_jsonl(_jsonl_input(file)))
    _echo_json(s) if as_json else click.echo(format_summary(file, s))


def _jsonl_input(file: str) -> str:
    if not file.lower().endswith(".jsonl"):
        raise click.BadParameter(f"{file!r}: read a .jsonl trace (the lossless form; .json is for viewers)",
                                 param_hint="FILE")
    return file


@trace.command("convert")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default=None, callback=lambda c, p, v: v and _trace_output(c, p, v),
              help="Output file (default: FILE with .json).")
def trace_convert(file: str, output: str | None) -> None:
    """Convert a .jsonl trace to Chrome trace-event JSON (Perfetto UI, chrome://tracing).

    \b
    Example:
      qdarpc trace convert run.jsonl -o run.json
    """
    from qda_core.trace_formats import read_jsonl, write

    events = read_jsonl(_jsonl_input(file))
    out = output or file[: -len(".jsonl")] + ".json"
    write(events, out, kernel=False)  # a .jsonl does not say which revisions it was recorded on
    click.echo(f"{len(events)} events -> {out}")


# --- ab -------------------------------------------------------------------------------------
def _ab_side(_ctx, param, value: str | None) -> str | None:
    """``--a``/``--b``: a front end, or FRONTEND:REVISION (a usage error listing the valid ones)."""
    if value is None:
        return None
    from libadsprpc_compat.ab import parse_side

    try:
        parse_side(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    return value.strip()


@cli.command()
@click.argument("workloads", nargs=-1, required=True, metavar="WORKLOAD...")
@click.option("--order", type=click.Choice(["legacy,accel", "accel,legacy"]), default="legacy,accel",
              show_default=True, help="Which backend runs first (both run against the same emulated DSP).")
@click.option("--a", "side_a", default=None, callback=_ab_side, metavar="FRONTEND[:REVISION]",
              help="The first side, instead of --order: a front end (its revision in force) or a front end at "
                   "a kernel revision (legacy:misc-7.3). Default: legacy.")
@click.option("--b", "side_b", default=None, callback=_ab_side, metavar="FRONTEND[:REVISION]",
              help="The second side (default: accel). Two revisions of one front end run on one emulated "
                   "SoC each, built with that side's revision.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also write the report as one self-contained HTML file.")
@click.option("--fail-on-diff", is_flag=True, default=False,
              help="Exit 1 when the backends disagree on any step.")
@click.option("--exec", "as_exec", is_flag=True, default=False,
              help="WORKLOAD... is a program and its arguments (after --): run it once per backend, "
                   "each against its own emulated DSP, and compare exit codes, output and traces. "
                   "'A ARGS ::: B ARGS' runs program A first and B second (two builds of one source).")
@click.option("--shim", is_flag=True, default=False,
              help="With --exec: the programs keep their own FastRPC library and the device shim serves "
                   "their nodes (e.g. upstream's legacy build ::: its accel build).")
@options.add_options(options.soc, options.kernel, options.faults, options.json_output)
def ab(workloads: tuple[str, ...], order: str, side_a: str | None, side_b: str | None, html_file: str | None,
       fail_on_diff: bool, as_exec: bool, shim: bool, soc_profile: str | None, kernel: str | None,
       faults: str | None, as_json: bool) -> None:
    """Run a workload through the legacy FastRPC API on the legacy driver and on the QDA accel
    driver, against one emulated DSP, and compare: each step's result (SAME/DIFF), the ioctls
    each driver saw (aligned), bytes copied vs shared per invoke, maps, errors and timings.

    WORKLOAD is a built-in (calculator, rpcmem-roundtrip, mmap-lifecycle, errors; ``all`` runs
    them all; porting: what differs between kernel revisions) or a Python script defining
    ``workload(lib)`` that returns ``[(step, value or FastRpcError), ...]``
    (``libadsprpc_compat.ab.Steps`` records per-step ioctls and times).

    --a/--b pick the two sides: a front end, or a front end at a kernel revision. --kernel sets
    the revisions of the SoC(s) built (a bare side runs the revision in force); a side's own
    revision wins for its front end. Two revisions of one front end cannot share a SoC: each
    side then runs on its own, and the report names the revisions.

    \b
    Examples:
      qdarpc ab calculator
      qdarpc ab errors --json
      qdarpc ab all --html ab.html
      qdarpc ab my_workload.py --order accel,legacy
      qdarpc ab porting --a legacy:misc-7.3 --b legacy:qda-shim
      qdarpc ab porting --a legacy:misc-7.2 --b accel:qda-v1-2026-05
      qdarpc ab errors --kernel legacy:misc-7.2 --a legacy --b legacy:qda-shim
      qdarpc ab --exec -- ./calc_app 1000
      qdarpc ab --exec --a legacy:misc-7.2 --b legacy:qda-shim -- ./calc_app 1000
      qdarpc ab --exec --shim -- ./client.development ::: ./client.accel
    """
    from libadsprpc_compat.ab import ALL, WorkloadError, resolve_sides, run_ab

    from .ab import resolve
    from .term import progress

    _use_kernel(kernel)
    _use_faults(faults)
    ctx = click.get_current_context()
    sides = None
    if side_a is not None or side_b is not None:
        if ctx.get_parameter_source("order") != click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--order and --a/--b both pick the sides: give one of them")
        first, second = order.split(",")
        sides = [side_a or first, side_b or second]
    if as_exec:
        from .native import run_exec_ab

        resolved = resolve_sides(sides, soc_profile=soc_profile)[0] if sides is not None else None
        if resolved is None or all(x.label == x.frontend for x in resolved):  # legacy and accel, as named
            rep = run_exec_ab(list(workloads), sides or order.split(","), soc_profile, shim=shim)
        else:
            from .ab import run_exec_sides

            rep = run_exec_sides(list(workloads), resolved, soc_profile, shim=shim)
        _ab_output([rep], html_file, fail_on_diff, as_json)
        return
    if shim:
        raise click.BadParameter("--shim needs --exec (it runs programs, not workloads)", param_hint="--shim")
    names = [w for name in workloads for w in (ALL if name == "all" else [name])]
    try:
        resolved = [resolve(w) for w in names]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="WORKLOAD") from None
    except WorkloadError as exc:
        raise CliError(str(exc), EXIT_FILE) from None
    reports = []
    cases = resolved if len(resolved) > 1 else None  # a bar only when there are many cases
    try:
        with (progress(f"ab x{len(resolved)}")(resolved) if cases else contextlib.nullcontext(resolved)) as it:
            for wl, label in it:
                if sides is None:
                    reports.append(run_ab(wl, order=order.split(","), soc_profile=soc_profile, name=label))
                else:
                    reports.append(run_ab(wl, sides=sides, soc_profile=soc_profile, name=label))
    except WorkloadError as exc:
        raise CliError(f"workload failed: {exc}", EXIT_FAILED) from None
    _ab_output(reports, html_file, fail_on_diff, as_json)


def _ab_output(reports: list[dict], html_file: str | None, fail_on_diff: bool, as_json: bool) -> None:
    from .ab import format_html, format_text

    if html_file:
        with open(html_file, "w", encoding="utf-8") as f:
            f.write(format_html(reports))
    if as_json:
        _echo_json(reports[0] if len(reports) == 1 else {"reports": reports})
    else:
        click.echo("\n\n".join(format_text(r) for r in reports))
        if html_file:
            click.echo(f"\nHTML report -> {html_file}", err=True)
    if fail_on_diff and not all(r["agree"] for r in reports):
        click.get_current_context().exit(EXIT_FAILED)


# --- C programs -------------------------------------------------------------------------------
@cli.command()
@click.option("--libdir", "items", flag_value="libdir", multiple=True,
              help="The directory of libcdsprpc.so.1 (and libadsprpc/libsdsprpc).")
@click.option("--includedir", "items", flag_value="includedir", multiple=True,
              help="The directory of remote.h, rpcmem.h, AEEStdErr.h, HAP_farf.h ...")
@click.option("--cflags", "items", flag_value="cflags", multiple=True, help="Compiler flags (-I...).")
@click.option("--libs", "items", flag_value="libs", multiple=True, help="Linker flags (-L... -rpath ... -lcdsprpc).")
@click.option("--pkgconfigdir", "items", flag_value="pkgconfigdir", multiple=True,
              help="The directory of qdarpc.pc, for PKG_CONFIG_PATH.")
@click.option("--shim", "items", flag_value="shim", multiple=True,
              help="The LD_PRELOAD device shim, libqdarpc_shim.so (qdarpc run --shim).")
def config(items: tuple[str, ...]) -> None:
    """Print where the C face of qdarpc is: the FastRPC user library and SDK headers a C
    program builds against, like python3-config. With no option, print them all.

    \b
    Examples:
      cc app.c $(qdarpc config --cflags --libs) -o app
      PKG_CONFIG_PATH=$(qdarpc config --pkgconfigdir) pkg-config --cflags --libs qdarpc
    """
    from .native import config_lines

    if not items:
        for key in ("libdir", "includedir", "pkgconfigdir", "cflags", "libs", "shim"):
            click.echo(f"{key}: {config_lines((key,))[0]}")
        return
    click.echo("\n".join(config_lines(items)))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@options.add_options(options.backend, options.soc, options.kernel, options.faults)
@click.option("--trace", "trace_file", default=None, callback=lambda c, p, v: v and _trace_output(c, p, v),
              metavar="FILE", help="Record every API call, ioctl and DSP dispatch of the run (.jsonl or .json).")
@click.option("--shim", is_flag=True, default=False,
              help="Keep the program's own FastRPC library (e.g. upstream qualcomm/fastrpc) and serve the "
                   "device nodes it opens (/dev/fastrpc-*, /dev/accel/*, /dev/dma_heap/system) with the "
                   "LD_PRELOAD device shim. --backend then has no effect: the library picks its nodes.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(backend: str, soc_profile: str | None, kernel: str | None, faults: str | None, trace_file: str | None,
        shim: bool, command: tuple[str, ...]) -> None:
    """Run an unmodified program against the emulator, in its own process (no daemon). Exits
    with the program's exit code.

    By default the program's libcdsprpc/libadsprpc calls reach qdarpc's own library. With
    --shim, its own FastRPC library runs unmodified and its device nodes are emulated.

    \b
    Examples:
      qdarpc run -- ./calc_app 1000
      qdarpc run --backend legacy --trace run.jsonl -- ./calc_app
      qdarpc run --shim -- fastrpc_test -d 3 -U 1
      qdarpc run --kernel accel:qda-v1-2026-05 -- ./calc_app    # QDARPC_KERNEL in its environment
      qdarpc run --faults 'ssr:cdsp@invoke=5' -- ./calc_app       # QDARPC_FAULTS in its environment
    """
    from .native import exit_code
    from .native import run as run_program

    _use_kernel(kernel)
    _use_faults(faults)
    done = run_program(list(command), backend=backend, soc=soc_profile, trace=trace_file, shim=shim)
    if trace_file:
        click.echo(f"trace -> {trace_file}", err=True)
    click.get_current_context().exit(exit_code(done.returncode))


# --- doctor -----------------------------------------------------------------------------------
@cli.command()
@click.option("--uri", "uris", multiple=True, metavar="URI",
              help="Also check which skel the DSP would load for this module URI (repeatable).")
@options.domain_option(None, "DSP domain for --uri (default: the URI's &_dom=, else cdsp).")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Look for device nodes under DIR/dev (a chroot or container root, a test tree).")
@options.add_options(options.soc, options.kernel, options.json_output)
def doctor(uris: tuple[str, ...], domain: str | None, root: str, soc_profile: str | None, kernel: str | None,
           as_json: bool) -> None:
    """Check that FastRPC code can run here: on a real DSP and on the emulator.

    Device nodes (/dev/fastrpc-*, /dev/accel/accel*: present, openable by you, which DSP each
    serves; /dev/dma_heap/system), the emulator (extensions, the kernel revision each of its
    drivers follows, every domain's nodes and free context banks) and skels (DSP_LIBRARY_PATH,
    and with --uri which skel would load). Each line is ok, warn, fail or info, with the fix. On
    a machine without FastRPC nodes it says so and checks the emulator.

    Exits 0 when no required check failed, 1 otherwise.

    \b
    Examples:
      qdarpc doctor
      qdarpc doctor --kernel legacy:qda-shim
      qdarpc doctor --uri 'file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0'
      DSP_LIBRARY_PATH=./skels qdarpc doctor --uri 'file:///libmine_skel.so?mine_skel_handle_invoke&_modver=1.0' --json
    """
    from . import doctor as doc

    _use_kernel(kernel)
    checks = doc.run(root=root, soc_profile=soc_profile, kernel=kernel, uris=uris, domain=domain)
    if as_json:
        _echo_json(doc.to_json(checks))
    else:
        click.echo(doc.format_text(checks))
    if not doc.passed(checks):
        click.get_current_context().exit(EXIT_FAILED)


# --- bench ------------------------------------------------------------------------------------
@cli.command()
@click.option("--only", multiple=True, type=click.Choice(list(BENCHMARKS)),
              help="Run only this benchmark (repeatable).")
@click.option("--quick", is_flag=True, default=False,
              help="A smoke run: small sizes and few iterations (ratios are noisier).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, metavar="N",
              help="Calls per measured series of the latency benchmarks (default: 20000; --quick: 200).")
@options.json_output
def bench(only: tuple[str, ...], quick: bool, iterations: int | None, as_json: bool) -> None:
    """Run the benchmarks (marshal, invoke, remote_invoke, c_abi, shim, dataplane) and print
    their ratios.

    Each figure is a ratio against a reference measured in the same run, interleaved with it
    (C vs the Python reference, copies vs memcpy, a 64 MiB shared buffer vs a 4 KiB one, the
    legacy API vs the raw driver ioctl, an emulated invoke vs a real ioctl syscall; dataplane:
    every data-plane target with whether it is met), so it carries across machines; absolute times are
    shown for information. Each benchmark runs in a fresh interpreter.

    \b
    Examples:
      qdarpc bench
      qdarpc bench --quick
      qdarpc bench --only remote_invoke --iterations 2000 --json
    """
    from .bench import format_result, run_benchmark
    from .benchmarks import BENCHMARKS
    from .term import progress

    names = [n for n in BENCHMARKS if not only or n in only]
    results = []
    with progress("bench")(names) as it:
        for name in it:
            results.append(run_benchmark(name, quick=quick, iterations=iterations))
    failed = [r for r in results if r["returncode"] != 0]
    if as_json:
        _echo_json({"quick": quick, "results": results})
    else:
        for r in results:
            click.echo(format_result(r))
            if r["returncode"] != 0:
                click.echo((r["stderr"].strip().splitlines() or ["failed"])[-1], err=True)
            click.echo()
    if failed:
        raise CliError(f"benchmark failed: {', '.join(r['name'] for r in failed)}", EXIT_FAILED)


def main() -> None:  # pragma: no cover - console entry
    cli()
