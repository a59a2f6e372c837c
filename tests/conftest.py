"""Shared fixtures. Tests import the installed package (pytest --import-mode=importlib)."""
import os

import pytest
from hypothesis import HealthCheck, settings

import qda_core.marshal  # noqa: F401  - opens its process-lifetime copy pipe before any fd_guard

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.fixture
def fd_guard():
    """Fails the test if it leaves file descriptors open."""
    before = _open_fds()
    yield
    leaked = _open_fds() - before
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"leaked fds: {sorted((fd, os.readlink(f'/proc/self/fd/{fd}')) for fd in leaked)}"


@pytest.fixture
def make_soc(fd_guard):
    """A factory of fresh emulated SoCs; after the test, every emulator object must be gone."""
    import gc

    from qda_core import debug
    from qda_core.soc import Soc

    before = debug.live_objects()
    yield Soc
    gc.collect()
    assert debug.live_objects() == before, f"live emulator objects left: {debug.live_objects()}"


@pytest.fixture
def soc(make_soc):
    """A fresh emulated SoC (default profile), leak-checked."""
    return make_soc("default")


@pytest.fixture
def cdsp(soc):
    """An open accel file on the compute DSP, closed after the test."""
    f = soc.open_device("cdsp")
    yield f
    f.close()
