"""Shared fixtures. Tests import the installed package (pytest --import-mode=importlib).

Hygiene after every test (uvloop's discipline)
----------------------------------------------
The autouse fixture :func:`_hygiene` checks after **every** test that what the test built is gone:

* live emulator objects (``qda_core.debug.live_objects()``),
* file descriptors the test opened,
* rpcmem allocations, registered buffers and handle64 records of ``libadsprpc_compat``, and the
  emulated DMA pool (``qda_core.mem.backing.pool_used()``),
* the trace recorder (``qda_core.trace.RECORDER`` is what it was, normally None).

Each is compared with its value before the test; garbage is collected before a difference counts
(only when there is one: a ``gc.collect()`` per test would cost the suite ~15%).

Process-wide state that lives as long as the process is built once here, before any test, so no
test is charged for it: the marshaller's copy pipe and the default SoC (``default_soc()``) behind
the module-level legacy API. A test that *legitimately* changes process-wide state for good (it
replaces the default SoC, forks, ...) says so::

    @pytest.mark.keeps_process_state("replaces the default SoC")

and is exempt from the check; its end state becomes the next test's baseline. Use it sparingly:
the reason is required and a test that merely forgets to close something must close it instead.
"""
import gc
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# Child Pythons the tests start (``python -c``, worker scripts) must import the installed
# package, never an unbuilt source checkout that happens to be their working directory.
os.environ["PYTHONSAFEPATH"] = "1"

import qda_core.marshal  # noqa: F401  - opens its process-lifetime copy pipe before any fd_guard
from qda_core import debug as _debug
from qda_core import trace as _trace
from qda_core.mem import backing as _backing

# --- Hypothesis profiles ----------------------------------------------------------------------
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)

_FALSE = {"", "0", "false", "no", "off", "n", "f"}


def hypothesis_profile(environ=os.environ) -> str:
    """The Hypothesis profile for an environment: ``$HYPOTHESIS_PROFILE`` if set, else ``ci`` when
    ``$CI`` is set to anything but a false word (GitHub/GitLab set ``CI=true``, some runners
    ``CI=1`` or ``CI=True``), else ``dev``."""
    explicit = environ.get("HYPOTHESIS_PROFILE", "").strip()
    if explicit:
        return explicit
    return "dev" if environ.get("CI", "").strip().lower() in _FALSE else "ci"


HYPOTHESIS_PROFILE = hypothesis_profile()
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config):
    s = settings.default
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} (max_examples={s.max_examples}, CI={os.environ.get('CI', '')!r})"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "keeps_process_state(reason): the test changes process-wide state for good (default SoC, default "
        "library, fork); exempt from the per-test hygiene check (tests/conftest.py). Use sparingly.")


# --- what the hygiene check counts ---------------------------------------------------------------
def _open_fds() -> set[int]:
    """The fds open now. The listing itself holds one fd while it reads the directory and closes it
    after: that one is dropped (it would hide a test's first new fd, which reuses its number)."""
    out = set()
    for n in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(n))
        except OSError:
            continue
        out.add(int(n))
    return out


def _describe_fds(fds) -> list:
    out = []
    for fd in sorted(fds):
        try:
            out.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass
    return out


def _library_state() -> dict[str, int]:
    """Live rpcmem allocations, handle64 records, dma-handle registrations and registered ranges of
    the legacy API, once it has been imported. It has no public counter, so its process-wide
    tables are read wherever they live (they moved when library.py was split)."""
    out: dict[str, int] = {}
    mods = [m for name, m in list(sys.modules.items()) if name.startswith("libadsprpc_compat") and m is not None]
    for name in ("_rpcmem", "_records", "_dma_regs"):
        for mod in mods:
            table = getattr(mod, name, None)
            if isinstance(table, dict):
                out[name.lstrip("_")] = len(table)
                break
    for mod in mods:
        regs = getattr(mod, "REGS", None)
        if regs is not None and hasattr(regs, "ranges"):
            out["registered_ranges"] = len(regs)
            break
    return out


class _Snapshot:
    __slots__ = ("fds", "live", "lib", "pool", "recorder")

    def __init__(self):
        self.fds = _open_fds()
        self.live = _debug.live_objects()
        self.lib = _library_state()
        self.pool = _backing.pool_used()
        self.recorder = _trace.RECORDER

    def problems(self, before: "_Snapshot") -> list[str]:
        out = []
        new_fds = self.fds - before.fds
        if new_fds:
            out.append(f"fds left open: {_describe_fds(new_fds)}")
        if self.live != before.live:
            out.append(f"live emulator objects {before.live} -> {self.live}")
        lib_before = {k: before.lib.get(k, 0) for k in self.lib}
        if self.lib != lib_before:
            out.append(f"legacy API state (rpcmem, handle64 records, registrations) {lib_before} -> {self.lib}")
        if self.pool != before.pool:
            out.append(f"DMA pool bytes in use {before.pool} -> {self.pool}")
        if self.recorder is not before.recorder:
            out.append(f"trace.RECORDER {before.recorder!r} -> {self.recorder!r}")
        if _trace._SWITCH.on != (self.recorder is not None):  # the lanes' copy of it
            out.append(f"trace's switch says {'on' if _trace._SWITCH.on else 'off'} with RECORDER {self.recorder!r}")
        return out


@pytest.fixture(scope="session", autouse=True)
def _process_wide_state():
    """Build what lives as long as the process before the first test (see the module docstring)."""
    from qda_core.soc import default_soc

    default_soc()
    yield


@pytest.fixture(autouse=True)
def _hygiene(request):
    """After every test: emulator objects, fds, rpcmem, the DMA pool and the trace recorder are
    back to where they were (see the module docstring)."""
    before = _Snapshot()
    yield
    if request.node.get_closest_marker("keeps_process_state") is not None:
        return
    problems = _Snapshot().problems(before)
    if problems:
        gc.collect()
        problems = _Snapshot().problems(before)
    if problems:
        pytest.fail("hygiene: the test left state behind:\n  " + "\n  ".join(problems), pytrace=False)


# --- opt-in fixtures -----------------------------------------------------------------------------
@pytest.fixture
def fd_guard():
    """Fails the test if it leaves file descriptors open (the autouse hygiene check does this for
    every test too; kept for tests that name it)."""
    before = _open_fds()
    yield
    leaked = _open_fds() - before
    assert not leaked, f"leaked fds: {_describe_fds(leaked)}"


@pytest.fixture
def make_soc(fd_guard):
    """A factory of fresh emulated SoCs; after the test, every emulator object must be gone."""
    from qda_core.soc import Soc

    before = _debug.live_objects()
    yield Soc
    gc.collect()
    assert _debug.live_objects() == before, f"live emulator objects left: {_debug.live_objects()}"


@pytest.fixture
def soc(make_soc):
    """A fresh emulated SoC (default profile), leak-checked."""
    return make_soc("default")


@pytest.fixture
def upd(soc):
    """An open legacy ``/dev/fastrpc-cdsp`` file with an unsigned user PD, closed after the test."""
    from qda_core import uapi

    f = soc.open("/dev/fastrpc-cdsp")
    assert f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE) == 0
    yield f
    f.close()


@pytest.fixture
def cdsp(soc):
    """An open accel file on the compute DSP, closed after the test."""
    f = soc.open_device("cdsp")
    yield f
    f.close()


@pytest.fixture
def busy_switching():
    """Make the interpreter switch threads every few bytecodes, so races show up."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)
