"""Loads qdarpc's compiled extensions and checks each was built for this package version.

The one trap a new user meets (numpy and h5py have the same): Python run from inside a
source checkout (``python -c``, ``python -m``, the REPL, ``pytest`` without an install) puts
the current directory first on ``sys.path``, so the checkout's *unbuilt* ``qda_core/`` shadows
the installed package. :func:`missing_extension_message` says so, and what to do.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from pathlib import Path
from types import ModuleType

from ._version import __version__

_REBUILD = "rebuild it with `pip install .` (or `pip install -e .` in a checkout)"


def _checkout_root(package_dir: Path) -> Path | None:
    """The source checkout ``package_dir`` lies in (a directory with setup.py and csrc/), else None."""
    root = package_dir.parent
    if (root / "setup.py").is_file() and (root / "csrc").is_dir():
        return root
    return None


def _installed_elsewhere(package: str, checkout: Path) -> Path | None:
    """Where ``import package`` would find it if ``checkout`` were not on ``sys.path``
    (a regular install in site-packages, or an editable install of another tree)."""
    paths = [p for p in sys.path if Path(p or os.getcwd()).resolve() != checkout]
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(package, paths if finder is importlib.machinery.PathFinder else None)
        except Exception:  # a third-party finder's failure is no reason to hide the real error
            continue
        locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec else []
        for loc in locations:
            where = Path(loc).resolve()
            if where.parent != checkout:
                return where
    return None


def missing_extension_message(full: str, exc: BaseException) -> str:
    """Why the extension module ``full`` (``qda_core._abi``, ``libadsprpc_compat._remote``)
    cannot be imported, and what to do about it."""
    package = full.split(".")[0]
    pkg = sys.modules.get(package)
    package_dir = Path(getattr(pkg, "__file__", None) or __file__).resolve().parent
    checkout = _checkout_root(package_dir)
    if checkout is None:  # an installed package missing its extension: a broken install
        return f"qdarpc extension {full} is not built ({exc}); {_REBUILD}"
    other = _installed_elsewhere(package, checkout)
    if other is not None:
        why = (f"Python imported {package} from the source checkout at {checkout}, not the installed "
               f"qdarpc at {other}: the current directory (or the script's) comes first on sys.path, and "
               f"the checkout's extensions are not built")
    else:
        why = (f"{package} was imported from the source checkout at {checkout}, whose extensions are not "
               f"built, and no installed qdarpc was found elsewhere on sys.path")
    return (f"cannot import {full}: {why} ({exc}). Either run Python from outside the checkout "
            f"(cd elsewhere) to use the installed package, or build the checkout in place with "
            f"`pip install -e .` (or `python setup.py build_ext --inplace` with the dev extra installed).")


def load(name: str) -> ModuleType:
    """Import ``qda_core.<name>``; fail with an actionable message if unbuilt or stale."""
    full = f"qda_core.{name}"
    try:
        mod = importlib.import_module(full)
    except ImportError as exc:
        raise ImportError(missing_extension_message(full, exc)) from exc
    built = getattr(mod, "__version__", None)
    if built != __version__:
        raise ImportError(
            f"qdarpc extension {full} was built for version {built!r} but the package is "
            f"{__version__!r}; {_REBUILD}"
        )
    return mod


def versions() -> dict[str, str]:
    """The version compiled into each extension, by module name (for ``--version``)."""
    return {name: load(name).__version__ for name in ("_marshal", "_abi", "_iova")}
