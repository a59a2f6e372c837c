"""The test discipline itself: the per-test hygiene check catches each kind of leak, the exemption
marker works, and CI runs the CI Hypothesis profile."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import settings

HERE = Path(__file__).resolve().parent

LEAKY = '''
import os
import pytest
import libadsprpc_compat as rpc
from qda_core import trace
from qda_core.soc import Soc

KEEP = []

def test_fd():
    KEEP.append(os.open("/dev/null", os.O_RDONLY))

def test_emulator_object():
    s = Soc("default")
    KEEP.append(s.open_device("cdsp"))

def test_rpcmem():
    KEEP.append(rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096))

def test_registration():
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
    rpc.remote_register_buf(m.address + 64, 64, m.fd)
    rpc.rpcmem_free(m)

def test_recorder():
    cm = trace.recording()
    cm.__enter__()
    KEEP.append(cm)  # a dropped generator would restore the recorder when collected

def test_garbage_is_not_a_leak():
    s = Soc("default")
    f = s.open_device("cdsp")
    f.close()
    s.cycle = s  # a reference cycle: only gc frees it

@pytest.mark.keeps_process_state("this test is the exemption under test")
def test_exempt():
    KEEP.append(os.open("/dev/null", os.O_RDONLY))
'''


def test_hygiene_catches_each_kind_of_leak(tmp_path):
    """A file of leaking tests under our conftest: each leak is an error at teardown, naming what
    leaked; collectable garbage and a marked test pass."""
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE", "QDARPC_TRACE")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rE",
                        "--import-mode=importlib", "-W", "ignore::ResourceWarning", str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout
    errors = {line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("ERROR ")}
    assert errors == {"test_fd", "test_emulator_object", "test_rpcmem", "test_registration", "test_recorder"}, out
    assert "7 passed, 5 errors" in out, out
    assert "fds left open: [(" in out
    assert "live emulator objects" in out and "accel_file" in out
    assert "'rpcmem': 0} -> {" in out or "'rpcmem': 1" in out
    assert "'registered_ranges': 1" in out
    assert "trace.RECORDER None -> <qda_core.trace.Recorder" in out
    assert "hypothesis profile: dev" in out


def _conftest(request):
    return next(p for p in request.config.pluginmanager.get_plugins() if hasattr(p, "hypothesis_profile"))


def test_ci_env_selects_the_ci_profile():
    """`.ci/run` runs pytest with CI=true: a pytest started so shows the ci profile in its header."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co",
                        "--import-mode=importlib", str(HERE / "test_hygiene.py")],
                       cwd=HERE.parent, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=120)
    assert "hypothesis profile: ci (max_examples=200, CI='true')" in r.stdout, r.stdout + r.stderr


def test_profile_choice_from_the_environment(request):
    """Every common spelling of a set CI selects ci; unset or false words keep dev; an explicit
    HYPOTHESIS_PROFILE wins."""
    choose = _conftest(request).hypothesis_profile
    for v in ("true", "1", "True", "yes", " TRUE "):
        assert choose({"CI": v}) == "ci", v
    for v in ("", "0", "false", "False", "no"):
        assert choose({"CI": v}) == "dev", v
    assert choose({}) == "dev"
    assert choose({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}) == "dev"


def test_active_profile_matches_ci_variable():
    """In this very run: when CI is set (CI runs `.ci/run` with CI=true), the ci profile with its
    larger example count is the one Hypothesis uses."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off", "n", "f")
    if os.environ.get("HYPOTHESIS_PROFILE"):
        expected = settings.get_profile(os.environ["HYPOTHESIS_PROFILE"]).max_examples
    else:
        expected = settings.get_profile("ci" if ci else "dev").max_examples
    assert settings.default.max_examples == expected
    if ci and not os.environ.get("HYPOTHESIS_PROFILE"):
        assert settings.default.max_examples == settings.get_profile("ci").max_examples > \
            settings.get_profile("dev").max_examples
