"""The package-level entry points: qda_core.open / open_device on the process-wide SoC, and the
QDARPC_SOC selection (checked in a child process so the process-wide SoC here stays untouched)."""
import os
import subprocess
import sys

import pytest

import qda_core


def test_open_and_open_device(fd_guard):
    soc = qda_core.default_soc()
    assert qda_core.default_soc() is soc  # one per process
    with qda_core.open_device("cdsp") as f:
        assert f.query() == "cdsp"
        path = f.device.path
    with qda_core.open(path) as g:
        assert g.query() == "cdsp"
    with qda_core.open_device(3) as h:  # by domain id
        assert h.device.path == path
    with qda_core.open("/dev/fastrpc-cdsp") as lf:
        assert lf.client_id >= 1
    with pytest.raises(FileNotFoundError):
        qda_core.open("/dev/accel/accel42")


def _child(code: str, **env) -> subprocess.CompletedProcess:
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qda_core.__file__)))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          env={**os.environ, "PYTHONPATH": pkg_root, **env})


def test_qdarpc_soc_selects_the_profile(tmp_path):
    code = "import qda_core; print(qda_core.default_soc().accel_nodes())"
    out = _child(code, QDARPC_SOC="minimal")
    assert out.returncode == 0 and out.stdout.strip() == "['/dev/accel/accel0']"
    prof = tmp_path / "soc.json"
    prof.write_text('{"domains": [{"name": "adsp", "context_banks": 1}, {"name": "cdsp", "context_banks": 2}]}')
    out = _child("import qda_core; s = qda_core.default_soc(); print([d.name for d in s.domains.values()])",
                 QDARPC_SOC=str(prof))
    assert out.returncode == 0 and out.stdout.strip() == "['adsp', 'cdsp']"
    out = _child(code, QDARPC_SOC="nosuch")
    assert out.returncode != 0 and "valid profiles: default, full, minimal" in out.stderr
