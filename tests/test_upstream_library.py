"""The unmodified upstream FastRPC user library (github.com/qualcomm/fastrpc) on the emulator,
through the LD_PRELOAD device shim: ``qdarpc run --shim -- PROGRAM``.

Both upstream branches are built from their source tarballs by ``tests/upstream/build.py`` (once;
later sessions reuse ``.cache/upstream``): ``development`` drives the legacy ``/dev/fastrpc-*``
driver, ``accel/staging`` (``--enable-accel-driver``) the QDA accel driver. Upstream's own test
program, ``fastrpc_test``, dlopens test libraries that upstream ships only as aarch64 builds of
Hexagon SDK examples; ``tests/c/upstream`` holds x86_64 stand-ins making the same library calls,
and a calculator client. All are compiled against the upstream headers and linked to the
upstream ``libcdsprpc.so``.

What is expected: the client prints the calculator's answers on both builds; ``fastrpc_test -d 3
-U 1`` passes 3 of 3 on development and 2 of 3 on accel/staging, where hap_example fails with 0xe
because of an upstream bug (test_fastrpc_test_accel_staging says which); ``qdarpc ab --exec
--shim`` finds the two builds' clients in agreement.

Every program runs with ``QDARPC_SHIM_DEBUG=1`` under a timeout: the shim's log of the device
nodes it opened and released shows whether the library closed every node fd before the process
exited, and which ioctls failed how.

The tarballs are looked for in ``$QDARPC_UPSTREAM_FIXTURES`` (see ``tests/upstream/build.py``);
without them, or without the build tools, the tests skip and say what is missing.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from libadsprpc_compat import native

sys.path.insert(0, str(Path(__file__).parent))
from cc_helpers import CC  # noqa: E402


def _load_build():
    path = Path(__file__).parent / "upstream" / "build.py"
    spec = importlib.util.spec_from_file_location("qdarpc_tests_upstream_build", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


upstream = _load_build()


def _shim_missing() -> str | None:
    """Why ``qdarpc run --shim`` cannot work here, or None."""
    from libadsprpc_compat import native

    if not hasattr(native, "shim"):
        return "this qdarpc has no device shim (libadsprpc_compat.native.shim)"
    try:
        native.shim()
    except native.NotBuiltError as exc:
        return f"the device shim is not built: {exc}"
    return None


pytestmark = [
    pytest.mark.needs_cc,
    pytest.mark.upstream,
    pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)"),
]

#: Each program's run is bounded: the library joins threads at teardown, a lost wakeup hangs it.
TIMEOUT = 60
#: What the calculator answers for 0..999.
SUM, MAX = 499500, 999
#: Settings of the environment running the tests that would change what the programs do.
_SCRUB = ("QDARPC_TRACE", "QDARPC_SOC", "QDARPC_BACKEND", "QDARPC_SHIM_DEBUG", "DSP_LIBRARY_PATH",
          "ADSP_LIBRARY_PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH")
#: The QDA accel driver's INVOKE ioctl (DRM_IOWR(0x47, 24-byte struct)), as the library issues it.
QDA_INVOKE = 0xC0186447
EFAULT = 14
SHIM_PREFIX = "qdarpc-shim: "
#: fastrpc_test prints through stdio into a pipe: line-buffered, what it printed survives a crash
#: at exit (which would otherwise lose the whole report with the unflushed buffer).
LINE_BUFFERED = [shutil.which("stdbuf"), "-oL"] if shutil.which("stdbuf") else []


def qdarpc() -> list[str]:
    """The ``qdarpc`` console script of this interpreter's environment (or the CLI run by it)."""
    script = Path(sys.executable).parent / "qdarpc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'qdarpc'; from qdarpc_cli.main import cli; cli()"]


@dataclass
class Run:
    argv: list[str]
    returncode: int | None  # None: killed after TIMEOUT
    stdout: str
    stderr: str           # the program's own stderr, without the shim's log
    shim_log: list[str]   # the shim's QDARPC_SHIM_DEBUG lines, prefix removed

    @property
    def hung(self) -> bool:
        return self.returncode is None

    def describe(self) -> str:
        status = f"hung (killed after {TIMEOUT} s)" if self.hung else f"exit {self.returncode}"
        tail = "\n".join(self.shim_log[-15:])
        return (f"$ {' '.join(self.argv)}\n{status}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
                f"\n--- last shim log lines\n{tail}")

    def opened_nodes(self) -> dict[int, str]:
        """Emulator keys of the nodes the shim opened (``open(path, flags) = fd (key K)``)."""
        out = {}
        for line in self.shim_log:
            m = re.match(r"open\((\S+), [^)]*\) = (\d+) \(key (\d+)\)", line)
            if m:
                out[int(m.group(3))] = m.group(1)
        return out

    def released_keys(self) -> set[int]:
        return {int(m.group(1)) for line in self.shim_log if (m := re.match(r"release key (\d+)", line))}

    def ioctls(self) -> list[tuple[int, int]]:
        """(request, result) of every ioctl the shim answered."""
        out = []
        for line in self.shim_log:
            m = re.match(r"ioctl\(\d+, (0x[0-9a-f]+), \S+\) = (-?\d+)", line)
            if m:
                out.append((int(m.group(1), 16), int(m.group(2))))
        return out


def run_shim(argv, *, backend: str, cwd: Path, faults: str | None = None) -> Run:
    """``qdarpc run --shim --backend BACKEND [--faults SPEC] -- argv`` in ``cwd`` with the shim's
    debug log on; after TIMEOUT the whole process group is killed and the run reported as hung."""
    env = native.sanitizer_preload({k: v for k, v in os.environ.items() if k not in _SCRUB})
    env["QDARPC_SHIM_DEBUG"] = "1"
    cmd = [*qdarpc(), "run", "--shim", "--backend", backend, *(["--faults", faults] if faults else []), "--",
           *map(str, argv)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    lines = err.splitlines()
    shim = [ln[len(SHIM_PREFIX):] for ln in lines if ln.startswith(SHIM_PREFIX)]
    own = "\n".join(ln for ln in lines if not ln.startswith(SHIM_PREFIX))
    return Run(cmd, rc, out, own, shim)


# --- builds ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def builds():
    """Both upstream branches built and installed, with the stand-ins in their testlibdir and
    the calculator client beside them."""
    out = {}
    try:
        upstream.check_available([b for name, b in upstream.BRANCHES.items() if not upstream.is_built(name)])
        for name in upstream.BRANCHES:
            built = upstream.build(name)
            upstream.install_standins(built)
            out[name] = built
    except upstream.Unavailable as exc:
        pytest.skip(str(exc))
    return out


@pytest.fixture(scope="session")
def shim_runs(builds, tmp_path_factory):
    """Runs under the shim, each made once per session and shared by the tests that look at it:
    ``shim_runs(branch, program)`` with program "client" or "fastrpc_test". Each runs in an empty
    directory (the library looks for its PD shell file in the current directory first)."""
    why = _shim_missing()
    if why:
        pytest.skip(why)
    backends = {"development": "legacy", "accel-staging": "accel"}
    done: dict[tuple[str, str], Run] = {}

    def get(branch: str, program: str) -> Run:
        if (branch, program) not in done:
            built = builds[branch]
            argv = ([built.client] if program == "client"
                    else [*LINE_BUFFERED, built.fastrpc_test, "-d", "3", "-U", "1"])
            cwd = tmp_path_factory.mktemp(f"{branch}-{program}")
            done[branch, program] = run_shim(argv, backend=backends[branch], cwd=cwd)
        return done[branch, program]

    return get


def parse_fastrpc_test(stdout: str) -> tuple[dict[str, tuple[str, int | None]], dict[str, int]]:
    """fastrpc_test's per-library lines ``[PASS] lib.so`` / ``[FAIL] lib.so (error code: 0x..)`` /
    ``[SKIP] lib.so (...)`` and its summary counts (``Total tests run``, ``Passed``, ...)."""
    results = {}
    for m in re.finditer(r"^\[(PASS|FAIL|SKIP)\] (\S+)(?: \(error code: 0x([0-9a-fA-F]+)\))?", stdout, re.M):
        results[m.group(2)] = (m.group(1), int(m.group(3), 16) if m.group(3) else None)
    summary = {key: int(m.group(1)) for key, label in (("run", "Total tests run"), ("passed", "Passed"),
                                                       ("failed", "Failed"), ("skipped", "Skipped"))
               if (m := re.search(rf"^\s*{label}:\s+(\d+)", stdout, re.M))}
    return results, summary


# --- the tests ------------------------------------------------------------------------------------
def test_build_installs_standins(builds):
    """Each build has the upstream library, fastrpc_test, and the three x86_64 stand-ins in
    fastrpc_test's testlibdir (no aarch64 file left there)."""
    for built in builds.values():
        assert built.libcdsprpc.exists() and built.fastrpc_test.exists() and built.client.exists()
        libs = sorted(p.name for p in built.testlibdir.glob("*.so"))
        assert libs == ["libcalculator.so", "libhap_example.so", "libmultithreading.so"]
        for lib in built.testlibdir.glob("*.so"):
            assert lib.read_bytes()[18] == 62, f"{lib} is not x86_64"  # ELF e_machine EM_X86_64
        assert (built.dir / ".stamp").exists()


@pytest.mark.parametrize("branch", ["development", "accel-staging"])
def test_client(shim_runs, builds, branch):
    """The calculator client linked to upstream libcdsprpc: sum and max of 0..999 come back."""
    run = shim_runs(branch, "client")
    assert not run.hung and run.returncode == 0, run.describe()
    assert run.stdout.splitlines() == [f"sum = {SUM}", f"max = {MAX}"], run.describe()
    # the upstream library answered, not the emulator's own C ABI library
    assert f"libcdsprpc: {builds[branch].libcdsprpc}" in run.stderr, run.describe()


@pytest.mark.parametrize("branch, spec, code", [
    # docs/spec: upstream's calculator retries only on errno ECONNRESET; the kernel's SSR errno
    # is EPIPE, so the library's conversion gives AEE_ECONNRESET (0x68) and no retry.
    ("development", "ssr:cdsp@invoke=2", "0x68"),
    # a lost reply: the interrupted wait, EINTR -> AEE_ERPC (0x200) in upstream's conversion
    ("accel-staging", "drop:cdsp@2", "0x200"),
])
def test_client_meets_an_injected_fault(builds, branch, spec, code, tmp_path):
    """Faults reach the unmodified upstream library through the device shim: the 2nd invoke
    (max) fails with the code upstream's library makes of the kernel's errno; sum came back."""
    why = _shim_missing()
    if why:
        pytest.skip(why)
    run = run_shim([builds[branch].client], backend={"development": "legacy"}.get(branch, "accel"),
                   cwd=tmp_path, faults=spec)
    assert not run.hung and run.returncode == 1, run.describe()
    assert run.stdout.splitlines() == [f"sum = {SUM}"], run.describe()
    assert f"max failed: {code}" in run.stderr.splitlines(), run.describe()


def test_fastrpc_test_development(shim_runs):
    """Upstream fastrpc_test on the development build (legacy driver): 3 of 3 pass."""
    run = shim_runs("development", "fastrpc_test")
    assert not run.hung, run.describe()
    results, summary = parse_fastrpc_test(run.stdout)
    assert results == {"libcalculator.so": ("PASS", None), "libhap_example.so": ("PASS", None),
                       "libmultithreading.so": ("PASS", None)}, run.describe()
    assert summary == {"run": 3, "passed": 3, "failed": 0, "skipped": 0}, run.describe()
    assert "RESULT: All applicable tests PASSED" in run.stdout
    # the stand-in's results, not only its return code (the SDK test returns its last close's)
    assert f"calculator: sum = {SUM}" in run.stdout and f"calculator: max = {MAX}" in run.stdout, run.describe()


def test_fastrpc_test_accel_staging(shim_runs):
    """Upstream fastrpc_test on the accel/staging build (QDA accel driver): calculator and
    multithreading pass; hap_example fails because of the upstream library's bug: its accel
    ``ioctl_invoke`` sizes the argument array from the buffer counts only, so hap_example's
    ``mem_dmahandle`` (sc 0x05000010: one input handle, no buffers) reaches the driver with
    ``args = NULL``; the driver answers EFAULT and the call fails with 0xe."""
    run = shim_runs("accel-staging", "fastrpc_test")
    assert not run.hung, run.describe()
    results, summary = parse_fastrpc_test(run.stdout)
    assert results == {"libcalculator.so": ("PASS", None), "libhap_example.so": ("FAIL", 0xE),
                       "libmultithreading.so": ("PASS", None)}, run.describe()
    assert summary == {"run": 3, "passed": 2, "failed": 1, "skipped": 0}, run.describe()
    assert "RESULT: 1 test(s) FAILED" in run.stdout
    assert f"calculator: sum = {SUM}" in run.stdout and f"calculator: max = {MAX}" in run.stdout, run.describe()
    # the failure is exactly the one above: the dma handle registered, the invoke faulted ...
    assert "hap_example: mem_dmahandle: 0xe" in run.stdout, run.describe()
    assert "remote_register_dma_handle failed" not in run.stdout, run.describe()
    # ... in the driver: an INVOKE answered -EFAULT (the shim reports each ioctl's result)
    assert (QDA_INVOKE, -EFAULT) in run.ioctls(), run.describe()
    # and nothing else failed in hap_example: FARF and PERF cycles passed
    assert "hap_example: FARF_RUNTIME PASSED" in run.stdout and "hap_example: PERF PASSED" in run.stdout


#: The accel/staging library never joins its device-discovery thread (its deinit has no caller):
#: one thread per load of libcdsprpc stays polling an inotify watch on /dev/accel after
#: fastrpc_test dlcloses the library; any event on /dev/accel then wakes it in unmapped code
#: (inotify_monitor_thread, fastrpc_device_discovery.c:191: SIGSEGV). The shim therefore never
#: touches the directory behind /dev/accel while the process lives, exit included (it is removed
#: after the process is gone): fastrpc_test exits with its own status.
@pytest.mark.parametrize("branch,program,code", [
    ("development", "client", 0), ("accel-staging", "client", 0),
    ("development", "fastrpc_test", 0),
    ("accel-staging", "fastrpc_test", 1),
])
def test_exit_status(shim_runs, branch, program, code):
    """The process ends by itself (no hang in the library's teardown joins), with the status the
    program gives (fastrpc_test: the number of failed tests), and without a Python traceback."""
    run = shim_runs(branch, program)
    assert not run.hung, run.describe()
    assert "Traceback (most recent call last)" not in run.stderr, run.describe()
    assert run.returncode == code, run.describe()


@pytest.mark.parametrize("branch,program", [
    ("development", "client"), ("accel-staging", "client"),
    ("development", "fastrpc_test"), ("accel-staging", "fastrpc_test"),
])
def test_no_leaked_node_fds(shim_runs, branch, program):
    """Every device node the library opened (/dev/fastrpc-*, /dev/accel/accel*,
    /dev/dma_heap/system) was closed again before the process ended: the shim logs each node
    open with the emulator's key and the release of the key's last fd."""
    run = shim_runs(branch, program)
    opened = run.opened_nodes()
    if not opened:
        pytest.skip("the shim logged no node opens (QDARPC_SHIM_DEBUG unsupported?): cannot count fds")
    leaked = {key: path for key, path in opened.items() if key not in run.released_keys()}
    assert not leaked, f"node fds still open at exit: {leaked}\n{run.describe()}"


def test_ab_exec_shim(builds, tmp_path):
    """``qdarpc ab --exec --shim -- A ::: B``: one binary cannot drive both drivers (each upstream
    build speaks to one), so the development client runs on legacy and the accel/staging client
    on accel, each against its own emulated DSP; they agree on exit code and output, and each
    run's trace shows its own driver's nodes."""
    if why := _shim_missing():
        pytest.skip(why)
    env = native.sanitizer_preload({k: v for k, v in os.environ.items() if k not in _SCRUB})
    cmd = [*qdarpc(), "ab", "--exec", "--shim", "--json", "--", builds["development"].client, ":::",
           builds["accel-staging"].client]
    res = subprocess.run(list(map(str, cmd)), cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=2 * TIMEOUT)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    report = json.loads(res.stdout)
    assert report["agree"] is True, res.stdout
    steps = {st["name"]: (st["legacy"]["value"], st["accel"]["value"]) for st in report["steps"]}
    assert steps == {"exit code": (0, 0), "stdout line 1": (f"sum = {SUM}",) * 2,
                     "stdout line 2": (f"max = {MAX}",) * 2}, res.stdout
    legacy, accel = report["runs"]["legacy"], report["runs"]["accel"]
    assert legacy["session_nodes"] and all(n.startswith("/dev/fastrpc-") for n in legacy["session_nodes"])
    assert accel["session_nodes"] and all(n.startswith("/dev/accel/accel") for n in accel["session_nodes"])
