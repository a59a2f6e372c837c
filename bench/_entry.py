"""Shared by ``bench/*.py``: run a benchmark of :mod:`qdarpc_cli.benchmarks` from a checkout.

``qdarpc_cli`` is the checkout's ``cli/`` once qdarpc is installed (``pip install -e .``); with
only an in-place build on ``PYTHONPATH`` it is not importable by that name, so ``cli/`` is
registered under it here.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

CLI = Path(__file__).resolve().parent.parent / "cli"


def main(name: str) -> None:
    try:
        import qdarpc_cli  # noqa: F401
    except ModuleNotFoundError:
        spec = importlib.util.spec_from_file_location("qdarpc_cli", CLI / "__init__.py",
                                                      submodule_search_locations=[str(CLI)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["qdarpc_cli"] = pkg
        spec.loader.exec_module(pkg)
    importlib.import_module(f"qdarpc_cli.benchmarks.{name}").main()
