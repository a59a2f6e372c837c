"""``qdarpc bench``: run the benchmark scripts of a source checkout and collect their tables."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: name -> (script, extra arguments taking the iteration count or None)
SCRIPTS = {
    "marshal": ("marshal.py", None),
    "invoke": ("invoke.py", "--iterations"),
}


def find_bench_dir() -> Path | None:
    """``bench/`` beside the ``qda_core`` package (a source checkout), else in the working
    directory; None when neither has the scripts (an installed wheel does not ship them)."""
    import qda_core

    root = Path(qda_core.__file__).resolve().parent.parent
    for cand in (root / "bench", Path.cwd() / "bench"):
        if any((cand / script).is_file() for script, _ in SCRIPTS.values()):
            return cand
    return None


def run_script(bench_dir: Path, name: str, iterations: int | None) -> dict:
    """Run one script in a fresh interpreter that imports this same ``qda_core``; returns
    ``{"name", "path", "returncode", "seconds", "output", "stderr"}``."""
    import qda_core

    script, iter_flag = SCRIPTS[name]
    path = bench_dir / script
    argv = [sys.executable, str(path)]
    if iterations is not None and iter_flag:
        argv += [iter_flag, str(iterations)]
    pkg_root = str(Path(qda_core.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    env.pop("QDARPC_TRACE", None)  # a benchmark under the recorder measures the recorder
    t0 = time.perf_counter()
    if not path.is_file():
        return {"name": name, "path": str(path), "returncode": None, "seconds": 0.0, "output": "",
                "stderr": f"{path}: not present in this checkout"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(bench_dir.parent))
    return {"name": name, "path": str(path), "returncode": proc.returncode,
            "seconds": round(time.perf_counter() - t0, 3), "output": proc.stdout, "stderr": proc.stderr}
