"""Loads qdarpc's compiled extensions and checks each was built for this package version."""
from __future__ import annotations

import importlib
from types import ModuleType

from ._version import __version__

_REBUILD = "rebuild it with `pip install .` (or `pip install -e .` in a checkout)"


def load(name: str) -> ModuleType:
    """Import ``qda_core.<name>``; fail with an actionable message if unbuilt or stale."""
    full = f"qda_core.{name}"
    try:
        mod = importlib.import_module(full)
    except ImportError as exc:
        raise ImportError(f"qdarpc extension {full} is not built ({exc}); {_REBUILD}") from exc
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
