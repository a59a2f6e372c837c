"""Terminal helpers: a progress bar on an interactive stderr, nothing when piped."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterable

import click


def progress(label: str):
    """A factory for ``run(..., progress=...)``: wraps an iterable in ``click.progressbar``
    when stderr is a terminal, and returns it untouched otherwise (pipes, CI logs, tests)."""

    def wrap(it: Iterable):
        if not sys.stderr.isatty():
            return contextlib.nullcontext(it)
        return click.progressbar(it, label=label, file=sys.stderr, show_eta=True)

    return wrap


def fmt_ns(ns: float) -> str:
    """Nanoseconds with a unit a human reads at a glance."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}" if abs(ns) < 100 * scale else f"{ns / scale:.0f} {unit}"
    return f"{ns:.0f} ns"


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
