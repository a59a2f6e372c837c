"""examples/calculator, the Hexagon SDK calculator example as a porter has it (docs/c_abi.md):
built with its own Makefile (out of tree, O=), run with `qdarpc run` on both backends with its
host-compiled skel, which must be the one that answers and must answer as the emulator's
built-in Python calculator does (qda_core/dsp/skels/calculator.py), through the Python front
end and through the C ABI."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import libadsprpc_compat as rpc

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cc_helpers import CC, ROOT, needs_c_abi  # noqa: E402

pytestmark = [*needs_c_abi, pytest.mark.skipif(shutil.which("make") is None, reason="no make")]

EXAMPLE = ROOT / "examples" / "calculator"
SOURCES = ("calc_app.c", "calculator_stub.c", "calculator_skel.c")
CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" + rpc.CDSP_DOMAIN
SC_SUM, SC_MAX = 0x02020100, 0x03020100
BAD_PARM = rpc.aee_to_dsp(rpc.AEE_EBADPARM) & 0xFFFF_FFFF  # 0x8000040e
#: Settings of the environment running the tests that would change what the example does.
_SCRUB = ("QDARPC_TRACE", "QDARPC_SOC", "QDARPC_BACKEND", "DSP_LIBRARY_PATH", "ADSP_LIBRARY_PATH", "PYTHONPATH",
          "MAKEFLAGS", "MFLAGS", "CFLAGS", "LDFLAGS")


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _qdarpc_command(tmp: pathlib.Path) -> str:
    """The `qdarpc` console script of this interpreter's environment; without one (the package
    imported from a checkout), a wrapper that runs the CLI with this interpreter."""
    script = pathlib.Path(sys.executable).parent / "qdarpc"
    if script.exists():
        return str(script)
    wrapper = tmp / "qdarpc"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' -c 'import sys; sys.argv[0] = \"qdarpc\"; "
                       f"from qdarpc_cli.main import cli; cli()' \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


class Built:
    def __init__(self, out: pathlib.Path, qdarpc: str):
        self.out, self.qdarpc = out, qdarpc
        self.app, self.skel = out / "calc_app", out / "libcalculator_skel.so"

    def make(self, *targets: str, **variables) -> subprocess.CompletedProcess:
        args = [f"{k}={v}" for k, v in {"O": self.out, "QDARPC": self.qdarpc, "CC": CC, **variables}.items()]
        res = subprocess.run(["make", "-s", "-C", str(EXAMPLE), *targets, *args], env=_env(), capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, f"make {' '.join(targets)}:\n{res.stdout}\n{res.stderr}"
        return res

    def run(self, n: int | None, *, backend: str = "accel", native: bool = True, trace=None):
        """``qdarpc run [--trace] -- calc_app [n]``, with this build's skel on DSP_LIBRARY_PATH
        (``native``) or without it (the built-in Python calculator answers)."""
        argv = [self.qdarpc, "run", "--backend", backend, *(["--trace", str(trace)] if trace else []), "--",
                str(self.app), *([] if n is None else [str(n)])]
        env = _env(DSP_LIBRARY_PATH=self.out) if native else _env()
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The example, built once by its Makefile into a temporary directory."""
    out = tmp_path_factory.mktemp("calculator")
    before = sorted(p.name for p in EXAMPLE.iterdir())
    b = Built(out, _qdarpc_command(out))
    b.make("all")
    assert b.app.is_file() and b.skel.is_file()
    assert sorted(p.name for p in EXAMPLE.iterdir()) == before  # O= keeps the checkout clean
    return b


def _expected(n: int) -> list[str]:
    return [f"sum = {n * (n - 1) // 2}", f"max = {max(n - 1, 0)}"]


def test_make_run_prints_sum_and_max_on_both_backends(built):
    res = built.make("run")
    assert res.stdout.splitlines() == _expected(1000) * 2, res.stderr  # accel, then legacy


def _trace(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _loaded(events: list[dict]) -> list[str]:
    """What answered each module open of a traced run (the remotectl open's ``load``)."""
    return [e["load"]["loaded"] for e in events if e.get("kind") == "dsp" and "load" in e]


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_the_native_skel_is_the_one_that_answers_the_app(built, tmp_path, backend):
    """With the build's directory on DSP_LIBRARY_PATH the host-compiled libcalculator_skel.so
    answers, not the built-in Python skel of the same name: the DSP loaded that file, and the
    skel's FARF messages are in the trace, attributed to the module."""
    trace = tmp_path / "run.jsonl"
    res = built.run(10, backend=backend, trace=trace)
    assert (res.returncode, res.stdout.splitlines()) == (0, _expected(10)), res.stderr
    events = _trace(trace)
    loaded = _loaded(events)
    assert len(loaded) == 1 and os.path.samefile(loaded[0], built.skel), loaded
    farf = [e["message"] for e in events if e.get("kind") == "farf" and e.get("module") == "libcalculator_skel.so"]
    assert farf[0].startswith("calculator_open: native C skel, handle 0x") and \
        farf[-1].startswith("calculator_close: native C skel, handle 0x"), farf
    assert farf[1:-1] == ["calculator_sum: native C skel, 10 ints, sum 45",
                          "calculator_max: native C skel, 10 ints, max 9"]


def _calculator_answers(backend: str, soc) -> list:
    """What the calculator on DSP_LIBRARY_PATH (or the built-in one) answers through the Python
    front end: raw out-buffers or AEE codes, for good and bad arguments of both methods."""
    span = np.arange(1000, dtype="<i4")
    mixed = np.array([-5, -7, 3], dtype="<i4")
    negative = np.array([-5, -7], dtype="<i4")
    big = np.full(3, 2**31 - 1, dtype="<i4")
    calls = [
        (SC_SUM, 8, 1000, span), (SC_MAX, 4, 1000, span),
        (SC_SUM, 8, 0, span[:0]), (SC_MAX, 4, 0, span[:0]),
        (SC_SUM, 8, 3, mixed), (SC_MAX, 4, 3, mixed), (SC_MAX, 4, 2, negative),
        (SC_SUM, 8, 3, big), (SC_MAX, 4, 3, big),
        (SC_SUM, 8, 4, mixed), (SC_MAX, 4, 2, mixed),   # length says more/fewer ints than sent
        (SC_SUM, 8, -1, span[:0]),                       # negative length
        (SC_SUM, 4, 3, mixed),                           # result buffer too short
        (0x05020100, 8, 3, mixed),                       # no method 5
    ]
    out = []
    lib = rpc.Library(backend, soc=soc)
    try:
        h = lib.remote_handle64_open(CALC)
        try:
            for sc, out_len, n, vec in calls:
                res = bytearray(out_len)
                try:
                    lib.remote_handle64_invoke(h, sc, [struct.pack("<i", n), vec.tobytes(), res])
                    out.append(bytes(res))
                except rpc.FastRpcError as exc:
                    out.append(exc.aee & 0xFFFF_FFFF)
            res = bytearray(8)
            try:  # a short primIn: the length is not even there
                lib.remote_handle64_invoke(h, SC_SUM, [b"\x03\x00", mixed.tobytes(), res])
                out.append(bytes(res))
            except rpc.FastRpcError as exc:
                out.append(exc.aee & 0xFFFF_FFFF)
        finally:
            lib.remote_handle64_close(h)
        try:  # a stub of another IDL version
            lib.remote_handle64_close(lib.remote_handle64_open(CALC.replace("_idlver=1.2.3", "_idlver=1.2.4")))
            out.append("opened")
        except rpc.FastRpcError as exc:
            out.append(exc.aee & 0xFFFF_FFFF)
    finally:
        lib.close_all()
    return out


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_the_native_skel_answers_as_the_python_skel(built, soc, monkeypatch, caplog, backend):
    caplog.set_level(logging.INFO, logger="qdarpc.dsp")
    monkeypatch.delenv("ADSP_LIBRARY_PATH", raising=False)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(built.out))
    native = _calculator_answers(backend, soc)
    farf = [r.getMessage() for r in caplog.records if r.name == "qdarpc.dsp"]
    assert any("calculator_sum: native C skel, 1000 ints, sum 499500" in m for m in farf), farf
    caplog.clear()
    monkeypatch.delenv("DSP_LIBRARY_PATH")
    python = _calculator_answers(backend, soc)
    assert not [r for r in caplog.records if r.name == "qdarpc.dsp"]  # no native code ran
    assert native == python
    unsupported = rpc.aee_to_dsp(rpc.AEE_EUNSUPPORTED) & 0xFFFF_FFFF
    version = rpc.aee_to_dsp(rpc.AEE_ESTUBSKELVERMISMATCH) & 0xFFFF_FFFF
    assert python == [
        struct.pack("<q", 499500), struct.pack("<i", 999), struct.pack("<q", 0), struct.pack("<i", 0),
        struct.pack("<q", -9), struct.pack("<i", 3), struct.pack("<i", 0),
        struct.pack("<q", 3 * (2**31 - 1)), struct.pack("<i", 2**31 - 1),
        BAD_PARM, BAD_PARM, BAD_PARM, BAD_PARM, unsupported, BAD_PARM, version,
    ]


@pytest.mark.parametrize("n", [0, 1, 7])
def test_calc_app_prints_the_same_with_either_skel(built, tmp_path, n):
    """Through the C ABI: the app's output with the native skel and with the built-in one."""
    for native, want in ((True, str(built.skel)), (False, "builtin")):
        trace = tmp_path / f"{native}.jsonl"
        res = built.run(n, native=native, trace=trace)
        assert (res.returncode, res.stdout.splitlines()) == (0, _expected(n)), res.stderr
        assert _loaded(_trace(trace)) == [want]


def test_calc_app_reports_a_bad_argument(built):
    res = subprocess.run([str(built.app), "-3"], env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "usage" in res.stderr and not res.stdout


def test_the_sources_compile_pedantic_c99_without_warnings(tmp_path):
    from libadsprpc_compat import native

    for src in SOURCES:
        res = subprocess.run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{native.includedir()}", "-c",
                              str(EXAMPLE / src), "-o", str(tmp_path / (src + ".o"))],
                             capture_output=True, text=True, timeout=120)
        assert (res.returncode, res.stderr) == (0, ""), src
