"""The ``qdarpc`` CLI under test, shared by the CLI test files: its modules as installed (or,
without an install, the checkout's ``cli/`` under the import name ``qdarpc_cli``), and
:func:`cli_runner`, the body of their ``run`` fixture."""
import gc
import importlib
import importlib.util
import pathlib
import sys

from click.testing import CliRunner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name: str):
    """``qdarpc_cli.<name>``, installed or from the checkout."""
    try:
        return importlib.import_module(f"qdarpc_cli.{name}")
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location("qdarpc_cli", ROOT / "cli" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "cli")])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["qdarpc_cli"] = pkg
        spec.loader.exec_module(pkg)
        return importlib.import_module(f"qdarpc_cli.{name}")


main = load("main")
errors = load("errors")
importlib.import_module("qda_core._ext").load("_marshal")  # its copy pipe opens at import, not in a command


def cli_runner():
    """Yield ``invoke(*args, code=0, **kw)`` running ``qdarpc ARGS`` (checking the exit code);
    afterwards, no emulator object may be left behind."""
    from qda_core import debug

    gc.collect()
    before = debug.live_objects()
    runner = CliRunner()

    def invoke(*args, code=0, **kw):
        res = runner.invoke(main.cli, [str(a) for a in args], prog_name="qdarpc", **kw)
        assert res.exit_code == code, (res.exit_code, res.output, res.exception)
        return res

    yield invoke
    gc.collect()
    assert debug.live_objects() == before
