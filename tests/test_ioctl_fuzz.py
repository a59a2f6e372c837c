"""Raw ioctls of both emulated drivers, fuzzed (issue #8): every return value is the kernel's
contract (0, ``-errno`` in [-4095, -1], or a DSP code returned verbatim by the ioctls that reach
the DSP), never an exception, a crash or a leak; the file still works afterwards, and once it is
closed the live emulator objects, fds, context banks and PDs are back where they were.

Two forms, one generator (tests/fuzz_worker.py):

* in-process, inputs drawn through Hypothesis (failures shrink), one SoC per test run, a fresh
  file per example;
* in a subprocess with a seeded ``random.Random``, bounded by a fixed seed list and iteration
  count, which also closes files under concurrent ioctls and restarts the DSP: a crash of the
  process (SIGSEGV, SIGBUS, abort) is a test failure naming the signal, the seed and the ioctl in
  progress, not a lost test run.

fd fields are drawn from a safe set (an invalid fd, a closed fd, a sealable memfd, fds the
fuzzer got back) and pointers only name the fuzzer's guarded arena, unmapped memory or random
64-bit values, so the fuzzer never imports or scribbles on the test process's own memory.
"""
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qda_core import uapi
from qda_core.mem import backing
from qda_core.uaccess import address

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_worker import Fuzzer  # noqa: E402

WORKER = Path(__file__).parent / "fuzz_worker.py"
CI = bool(os.environ.get("CI"))
#: The subprocess budget: fixed seeds x iterations per driver (about 1 ms per iteration).
SEEDS = list(range(1, 17 if CI else 9))
ITERS = 1200 if CI else 800
STEPS_PER_EXAMPLE = 6


def _inprocess(driver: str, monkeypatch) -> None:
    monkeypatch.setattr(backing, "DMA_LIMIT", 64 << 20)  # random sizes must not eat the host
    box = {}

    @settings(max_examples=settings.default.max_examples * 2, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def one_example(data):
        fz = box["fz"]
        fz.draw = lambda lo, hi: data.draw(st.integers(lo, hi))
        try:
            for _ in range(data.draw(st.integers(1, STEPS_PER_EXAMPLE), label="steps")):
                if data.draw(st.integers(0, 4), label="kind"):
                    fz.raw_ioctl()
                else:
                    fz.structured()
            fz.still_works()
            fz.cycle()  # close: nothing left behind; then a fresh file for the next example
        except BaseException:
            fz.recover()
            raise

    box["fz"] = Fuzzer(driver, draw=lambda lo, hi: lo)  # one SoC for the whole run
    try:
        one_example()
    finally:
        box["fz"].draw = lambda lo, hi: lo
        box["fz"].close()


def test_fuzz_accel_ioctls(monkeypatch, fd_guard):
    _inprocess("accel", monkeypatch)


def test_fuzz_legacy_ioctls(monkeypatch, fd_guard):
    _inprocess("legacy", monkeypatch)


@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_fuzz_in_subprocess(driver, tmp_path):
    """Bounded: len(SEEDS) x ITERS operations; the worker checks the contract after each."""
    last = tmp_path / "last-op"
    cmd = [sys.executable, str(WORKER), "--driver", driver, "--seeds", ",".join(map(str, SEEDS)),
           "--iters", str(ITERS), "--last", str(last)]
    env = dict(os.environ, QDARPC_DMA_LIMIT="64M", PYTHONFAULTHANDLER="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode == 0:
        return
    in_progress = last.read_text().strip() if last.exists() else "?"
    seed = in_progress.split("seed=")[1].split()[0] if "seed=" in in_progress else "?"
    repro = (f"QDARPC_DMA_LIMIT=64M {sys.executable} {WORKER} --driver {driver} --seeds {seed} "
             f"--iters {ITERS} --verbose")
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        pytest.fail(f"the fuzz worker died of {sig} (seed {seed})\noperation in progress: {in_progress}\n"
                    f"reproduce: {repro}\n(a 'race' operation is timing-dependent)\n"
                    f"--- stderr (faulthandler) ---\n{proc.stderr[-6000:]}", pytrace=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("VIOLATION", "  last operation"))]
    pytest.fail(f"the fuzz worker found {sum(ln.startswith('VIOLATION') for ln in lines)} contract violation(s) "
                f"(exit {proc.returncode}):\n" + "\n".join(lines[:40])
                + f"\nreproduce one seed with: QDARPC_DMA_LIMIT=64M {sys.executable} {WORKER} --driver {driver} "
                  f"--seeds N --iters {ITERS} --verbose\n--- stderr ---\n{proc.stderr[-3000:]}", pytrace=False)


def test_huge_sizes_fail_before_touching_memory(soc):
    with soc.open_device("cdsp") as f:
        buf = uapi.drm_qda_gem_create.pack(size=1 << 40)
        assert f.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, buf) == -12  # ENOMEM from the IOVA space
        # an inline buffer claiming 1 TiB: the message buffer cannot be placed -> ENOMEM
        small = bytearray(16)
        descs = bytearray(24)
        struct.pack_into("<QQiI", descs, 0, address(small), 1 << 40, -1, 0)
        kbuf = uapi.qda_invoke_args.pack(handle=0x300, sc=0x02010000, args=address(descs))
        assert f.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, kbuf) == -12
    with soc.open("/dev/fastrpc-cdsp") as g:
        buf = uapi.fastrpc_alloc_dma_buf.pack(size=1 << 40)
        assert g.ioctl(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, buf) == -12


def test_dma_limit(monkeypatch, soc):
    monkeypatch.setattr(backing, "DMA_LIMIT", backing._pool_used + (1 << 20))
    with soc.open_device("cdsp") as f:
        f.gem_create(4096)
        try:
            f.gem_create(2 << 20)
        except OSError as exc:
            assert exc.errno == 12 and "QDARPC_DMA_LIMIT" in str(exc)
        else:
            raise AssertionError("allocation beyond the DMA limit succeeded")
