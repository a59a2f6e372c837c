"""Injected faults reach an unmodified C program through the C ABI under `qdarpc run --faults`
(QDARPC_FAULTS in its environment), with each front end's codes, and it recovers cleanly."""
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import compile_c, needs_c_abi  # noqa: E402

pytestmark = needs_c_abi


@pytest.fixture(scope="module")
def faults_prog(tmp_path_factory):
    return compile_c("abi/faults.c", tmp_path_factory.mktemp("faults") / "faults")


@pytest.mark.parametrize("backend, spec, lines", [
    # EPIPE -> AEE_ECONNRESET (0x68); ENODEV -> AEE_ENOSUCHDEVICE (0x43)
    ("legacy", "ssr:cdsp@invoke=2", ["invoke 1 0x0", "invoke 2 0x68", "invoke 3 0x68", "close 0x0"]),
    ("accel", "ssr:cdsp@invoke=2", ["invoke 1 0x0", "invoke 2 0x43", "invoke 3 0x43", "close 0x0"]),
    # the DSP's "PD crashed" retval, then every call on the dead PD
    ("legacy", "crash:qdarpc_test@1", ["invoke 1 0x8000040d", "invoke 2 0x8000040d", "close 0x0"]),
    # the interrupted wait: EINTR -> AEE_ERPC (0x200)
    ("accel", "timeout:qdarpc_test@2", ["invoke 1 0x0", "invoke 2 0x200", "invoke 3 0x0", "close 0x0"]),
    ("legacy", "drop@3", ["invoke 1 0x0", "invoke 2 0x0", "invoke 3 0x200", "close 0x0"]),
    # misc-7.3 checks the sequence number: a garbled reply is dropped; the RFC accel does not
    ("legacy", "corrupt@1", ["invoke 1 0x200", "invoke 2 0x0", "close 0x0"]),
    ("accel", "corrupt@1", ["invoke 1 0x0", "invoke 2 0x0", "close 0x0"]),
    ("accel", "delay:qdarpc_test,time=3ms", ["invoke 1 0x0", "invoke 3 0x0", "close 0x0"]),
    ("legacy", "alloc:rpcmem", ["rpcmem NULL"]),
    ("accel", "nocb:cdsp", ["open 0xffffffff"]),
    ("legacy", "nocb:cdsp", ["open 0x72"]),
])
def test_qdarpc_run_faults_reach_an_unmodified_c_program(faults_prog, backend, spec, lines, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QDARPC_")}
    res = subprocess.run([str(Path(sys.executable).parent / "qdarpc"), "run", "--soc", "minimal", "--backend", backend,
                          "--faults", spec, "--", str(faults_prog), "3"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    out = res.stdout.splitlines()
    assert res.returncode == 0, (res.stdout, res.stderr)
    for line in lines:
        assert line in out, (line, out)
    assert out[-1] == "recovered 0x0"



@pytest.mark.parametrize("var, value, words", [
    ("QDARPC_FAULTS", "ssr", "$QDARPC_FAULTS: 'ssr': ssr needs a target"),
    ("QDARPC_KERNEL", "legacy:misc-9", "$QDARPC_KERNEL: unknown legacy kernel revision 'misc-9'"),
    ("QDARPC_SOC", "/nonexistent/soc.json", "$QDARPC_SOC: SoC profile /nonexistent/soc.json: No such file"),
])
def test_a_bad_setting_in_the_environment_is_said_once_and_every_call_fails(faults_prog, tmp_path, var, value, words):
    from libadsprpc_compat import native

    env = {k: v for k, v in os.environ.items() if not k.startswith("QDARPC_")}
    env = native.run_env(env, backend="accel")
    env[var] = value
    res = subprocess.run([str(faults_prog), "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    # AEE_EFAILED from every call that needs the SoC (rpcmem does not, unless faults are set)
    assert res.stdout.splitlines()[0] == "open 0x1" and res.stdout.splitlines()[-1] != "recovered 0x0", res.stdout
    assert res.stderr.count("qdarpc: cannot start the emulated DSP: ") == 1 and words in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
