"""Builds and runs the standalone C tests of the marshalling core under ASan + UBSan."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CTESTS = Path(__file__).resolve().parent.parent / "csrc" / "tests"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")

pytestmark = [
    pytest.mark.needs_cc,
    pytest.mark.slow,
    pytest.mark.skipif(CC is None or shutil.which("make") is None, reason="no C compiler or make"),
]


def _make(target: str, tmp_path: Path, iters: int) -> str:
    # build into tmp so parallel runs and the source tree stay clean
    out = subprocess.run(
        ["make", "-s", "-C", str(CTESTS), target, f"B={tmp_path}", f"ITERS={iters}", f"CC={CC}"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"make {target} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_c_unit_and_fuzz_under_sanitizers(tmp_path):
    out = _make("asan", tmp_path, 40000)
    assert "test_marshal: all checks passed" in out
    assert "fuzz_marshal: 40000 iterations OK" in out


def test_c_sources_build_warning_free_c99(tmp_path):
    """The production sources compile with the project's strict C99 flags (-Werror)."""
    for src in ("marshal.c", "decode.c", "uaccess.c"):
        subprocess.run(
            [CC, "-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-pedantic",
             "-I", str(CTESTS.parent / "include"), "-c", str(CTESTS.parent / src),
             "-o", str(tmp_path / (src + ".o"))],
            check=True, capture_output=True, text=True,
        )
