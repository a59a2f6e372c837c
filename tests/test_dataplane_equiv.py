"""The native data plane against the Python reference (docs/dataplane.md).

Two SoCs, one on each plane, get the same random invokes - both drivers, every kernel
revision, copies in and out, by-reference buffers, bad pointers, unknown handles and methods,
failing and crashing skels, fault rules - and must answer them identically: return value or
errno, output bytes, the DSP's statistics and every PD's counters. A last test runs the
driver, DSP and isolation suites on the reference plane, so both planes pass them.
"""
import os
import struct
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import dataplane, kernels, uapi
from qda_core.accel.file import GemRef
from qda_core.legacy.file import DmaBufRef, dmabuf_mmap

ROOT = Path(__file__).resolve().parents[1]
UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE

EQUIV_SKEL = """
from qda_core.dsp import Skeleton, method

class Equiv(Skeleton):
    @method(2)
    def mix(self, call):
        # every out-buffer gets a pattern of the in-buffers (by reference ones too), and the
        # first in-buffer's first byte picks the answer: 0, an AEE code, or a crash
        data = b"".join(bytes(b) for b in call.inbufs)
        for j, ob in enumerate(call.outbufs):
            pat = (data + bytes([j + 1])) * (len(ob) // (len(data) + 1) + 1)
            ob[:] = pat[:len(ob)]
        call.add_cost(7 * len(data))
        op = data[0] % 8 if data else 0
        if op == 5:
            return 0x8000040e
        if op == 6:
            raise RuntimeError("the skel fails")
        return 0
"""
EQUIV = "file:///libequiv_skel.so?equiv_skel_handle_invoke&_modver=1.0"
SC_MIX = 2 << 24


@contextmanager
def plane(name):
    old = os.environ.get(dataplane.ENV)
    os.environ[dataplane.ENV] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ[dataplane.ENV]
        else:
            os.environ[dataplane.ENV] = old


class Side:
    """One SoC on one data plane, with a file per driver, a PD and the Equiv module open."""

    def __init__(self, make_soc, name, kernel):
        self.name = name
        with plane(name):
            self.soc = make_soc("default", kernel=kernel)
            self.files = {"accel": self.soc.open_device("cdsp"), "legacy": self.soc.open("/dev/fastrpc-cdsp")}
            self.h = {}
            for drv, f in self.files.items():
                assert f.init_create(attrs=UNSIGNED) == 0
                rv, self.h[drv] = open_module(f, EQUIV)
                assert rv == 0
        fa = self.files["accel"]
        self.gem = fa.gem_create(8192)
        self.gem_view = fa.mmap(fa.gem_mmap_offset(self.gem), 8192)
        fl = self.files["legacy"]
        self.dma_fd = fl.alloc_dma_buff(8192)
        self.dma_view = dmabuf_mmap(self.dma_fd)

    def ref(self, drv, off, n):
        if drv == "accel":
            return GemRef(self.gem, self.gem_view[off:off + n])
        return DmaBufRef(self.dma_fd, self.dma_view[off:off + n])

    def run(self, step):
        """One invoke: (outcome, output bytes)."""
        drv, kind, ins, outs, refs_in, ref_out = step
        f = self.files[drv]
        if kind == "bad-pointer":  # a descriptor pointing at nothing mapped
            descs = struct.pack("<QQiI", 8, 64, -1, 0)
            arg = bytearray(struct.pack("<IIQ", self.h[drv], 0x02010000, _address(descs)))
            req = uapi.FASTRPC_IOCTL_INVOKE if drv == "legacy" else f.uapi.ioctls[0x47].number
            return ("ret", f.ioctl(req, arg)), b""
        if kind == "bad-struct":  # the INVOKE struct itself too short
            req = uapi.FASTRPC_IOCTL_INVOKE if drv == "legacy" else f.uapi.ioctls[0x47].number
            return ("ret", f.ioctl(req, bytearray(4))), b""
        handle = {"ok": self.h[drv], "bogus": 0x7654_3210, "static": 5}[kind]
        args = [bytes(b) for b in ins]
        args += [self.ref(drv, 1024 * k, n) for k, n in enumerate(refs_in)]
        outbufs = [bytearray(n) for n in outs]
        args += outbufs
        if ref_out:
            args.append(self.ref(drv, 4096, ref_out))
        nin, nout = len(ins) + len(refs_in), len(outs) + bool(ref_out)
        sc = SC_MIX | nin << 16 | nout << 8
        try:
            out = ("ret", f.invoke(handle, sc, args))
        except OSError as exc:
            out = ("errno", exc.errno)
        data = b"".join(bytes(b) for b in outbufs)
        if ref_out:
            data += bytes(self.gem_view[4096:4096 + ref_out] if drv == "accel" else self.dma_view[4096:4096 + ref_out])
        return out, data

    def state(self):
        dsp = self.soc.domain("cdsp").dsp
        procs = [(p.channel, p.client_id, p.state, p.invokes, p.modeled_ns, len(p.modules))
                 for p in dsp.processes()]
        return dsp.stats.snapshot(), procs

    def close(self):
        self.gem_view.release()
        self.dma_view.release()
        os.close(self.dma_fd)
        for f in self.files.values():
            f.close()


def _address(b):
    from qda_core.uaccess import address
    return address(b)


buf = st.binary(min_size=0, max_size=300)
step = st.tuples(
    st.sampled_from(["accel", "legacy"]),
    st.sampled_from(["ok"] * 6 + ["bogus", "static", "bad-pointer", "bad-struct"]),
    st.lists(buf, max_size=3),
    st.lists(st.integers(0, 300), max_size=3),
    st.lists(st.integers(1, 512), max_size=2),
    st.sampled_from([0, 0, 16, 700]),
)
KERNELS = [f"accel:{a},legacy:{b}" for a, b in zip(list(kernels.REVISIONS["accel"]) * 2, kernels.REVISIONS["legacy"])]


@pytest.fixture
def equiv_path(tmp_path, monkeypatch):
    (tmp_path / "libequiv_skel.py").write_text(EQUIV_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=10),
       fault=st.sampled_from([None, "drop:cdsp@2", "corrupt@1", "crash:equiv.mix@3", "delay:equiv,time=3us"]))
def test_native_and_reference_answer_alike(make_soc, equiv_path, kernel, steps, fault):
    native, ref = Side(make_soc, "native", kernel), Side(make_soc, "py", kernel)
    try:
        if fault is not None:
            native.soc.faults.add(fault)
            ref.soc.faults.add(fault)
        for s in steps:
            assert native.run(s) == ref.run(s), s
        assert native.state() == ref.state()
    finally:
        native.close()
        ref.close()


def test_the_planes_are_what_they_say(make_soc, equiv_path):
    """The lanes are in place on the native plane and absent on the reference one."""
    from qda_core._engine import EngineLane

    native, ref = Side(make_soc, "native", None), Side(make_soc, "py", None)
    try:
        d = native.soc.domain("cdsp")
        assert isinstance(d.legacy_channel.fastrpc.invoke, EngineLane)
        assert native.files["accel"]._lane.native and native.files["legacy"]._lane.native
        assert "invoke" not in vars(ref.soc.domain("cdsp").legacy_channel.fastrpc)
        assert not ref.files["accel"]._lane.native and not ref.files["legacy"]._lane.native
    finally:
        native.close()
        ref.close()


def test_bad_choice_is_refused(monkeypatch):
    monkeypatch.setenv(dataplane.ENV, "turbo")
    with pytest.raises(ValueError, match="QDARPC_DATAPLANE='turbo' is not a data plane"):
        dataplane.native()
    monkeypatch.setenv(dataplane.ENV, "native")
    monkeypatch.setenv("QDARPC_MARSHAL", "py")
    assert not dataplane.native()  # the lanes marshal with the C core


#: The suites that drive invokes through the drivers and the DSP, run again on the reference plane.
REFERENCE_SUITES = ["test_accel_invoke.py", "test_legacy_invoke.py", "test_legacy_revisions.py",
                    "test_kernel_revisions.py", "test_isolation.py", "test_faults.py", "test_dsp_integration.py",
                    "test_concurrency.py", "test_legacy_byref_cache.py", "test_cost_model.py"]


def test_reference_plane_passes_the_invoke_suites():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "QDARPC_"))}
    env[dataplane.ENV] = "py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        *[str(ROOT / "tests" / t) for t in REFERENCE_SUITES]],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
