"""``qdarpc bench``: run the benchmarks of :mod:`qdarpc_cli.benchmarks`, each in a fresh interpreter.

They ship with the package, so this works from any install. Each benchmark runs as
``python -P -m qdarpc_cli.benchmarks.<name> --json`` (``-P``: the working directory is not put
on ``sys.path``, so a source checkout there cannot shadow the installed package), with the
``qda_core`` this process imported first on ``PYTHONPATH``, and without ``QDARPC_TRACE`` (a
benchmark under the recorder would measure the recorder).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .benchmarks import BENCHMARKS


def run_benchmark(name: str, quick: bool = False, iterations: int | None = None) -> dict:
    """Run one benchmark; returns ``{"name", "returncode", "seconds", "result" (its JSON or None),
    "stderr"}``."""
    import qda_core

    argv = [sys.executable, "-P", "-m", f"qdarpc_cli.benchmarks.{BENCHMARKS[name]}", "--json"]
    if quick:
        argv.append("--quick")
    if iterations is not None:
        argv += ["--iterations", str(iterations)]
    pkg_root = str(Path(qda_core.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    env.pop("QDARPC_TRACE", None)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    result = None
    if proc.returncode == 0:
        try:
            result = json.loads(proc.stdout)
        except json.JSONDecodeError:
            result = None
    return {"name": name, "returncode": proc.returncode if result is not None or proc.returncode else 1,
            "seconds": round(time.perf_counter() - t0, 3), "result": result, "stderr": proc.stderr}


def format_result(r: dict) -> str:
    from .benchmarks.common import format_rows

    head = f"== {r['name']} ({r['seconds']:.1f} s)"
    if r["result"] is None:
        return f"{head}\n(failed)"
    return f"{head}\n{format_rows(r['result'])}"
