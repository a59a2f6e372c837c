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
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libadsprpc_compat.remotectl import open_module
from qda_core import dataplane, kernels, uapi
from qda_core.dsp import aee

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import RefBuffers, plane  # noqa: E402

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


class Side:
    """One SoC on one data plane, with a file per driver, a PD and the Equiv module open."""

    def __init__(self, make_soc, name, kernel, uri=EQUIV):
        self.name = name
        with plane(name):
            self.soc = make_soc("default", kernel=kernel)
            self.files = {"accel": self.soc.open_device("cdsp"), "legacy": self.soc.open("/dev/fastrpc-cdsp")}
            self.h = {}
            for drv, f in self.files.items():
                assert f.init_create(attrs=UNSIGNED) == 0
                rv, self.h[drv] = open_module(f, uri)
                assert rv == 0
        self.bufs = RefBuffers(self.files["accel"], self.files["legacy"])
        self.ref = self.bufs.ref

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
            data += bytes(self.bufs.view(drv)[4096:4096 + ref_out])
        return out, data

    def state(self):
        dsp = self.soc.domain("cdsp").dsp
        procs = [(p.channel, p.client_id, p.state, p.invokes, p.modeled_ns, len(p.modules))
                 for p in dsp.processes()]
        return dsp.stats.snapshot(), procs

    def close(self):
        self.bufs.close()
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


# --- what an attacker's review of the lanes found (each failed or crashed before its fix) -------
def test_a_shim_files_first_invokes_from_several_threads_all_answer(make_soc):
    """QDA shim: the bank (and the message pool) come with a file's first use. Several threads
    invoking first at once must all get the DSP's answer: the lane once saw the bank set and the
    pool not yet, and an AttributeError left ioctl()."""
    import threading

    soc = make_soc("default", kernel="legacy:qda-shim")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    got, errors = [], []
    try:
        for _ in range(40):
            f = soc.open("/dev/fastrpc-cdsp")
            bar = threading.Barrier(4)

            def go():
                bar.wait()
                try:
                    got.append(f.invoke(0x7654_3210, 2 << 24 | 1 << 8, [bytearray(4)]))
                except BaseException as exc:  # noqa: BLE001 - any escape is the bug
                    errors.append(repr(exc))

            ts = [threading.Thread(target=go) for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            f.close()
    finally:
        sys.setswitchinterval(old)
    assert not errors and set(got) == {aee.ERR_NO_PD}  # no PD yet: every thread gets the DSP's answer


HANDLE_SKEL = EQUIV_SKEL + """
    @method(3)
    def rebind(self, call):
        call.inhandles, call.outhandles = (1, 2), None  # a skel may do anything to its Call
        return 0
"""


def test_what_a_skel_does_to_its_call_does_not_change_the_records(make_soc, tmp_path, monkeypatch):
    (tmp_path / "libequiv_skel.py").write_text(HANDLE_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    native, ref = Side(make_soc, "native", None), Side(make_soc, "py", None)
    try:
        for side in (native, ref):
            f = side.files["accel"]
            assert f.invoke(side.h["accel"], 3 << 24, []) == 0
        assert native.state() == ref.state()
    finally:
        native.close()
        ref.close()


def test_the_endpoint_capsule_keeps_its_lane(make_soc):
    """An engine holding only the DSP endpoint's capsule keeps the lane behind it alive."""
    import gc

    from qda_core import wire
    from qda_core.fastrpc import FastRpc, IdAllocator
    from qda_core.mem.msgpool import MessagePool
    from qda_core.rpmsg import Channel

    soc = make_soc("default")
    ep = soc.domain("cdsp").dsp.endpoint("lonely")

    class Remote:  # a remote whose native entry is the capsule alone
        native = ep.native

        def receive(self, *a):
            raise AssertionError("the native entry serves this")

    del ep
    gc.collect()
    junk = [bytearray(16) for _ in range(10000)]  # reuse what a freed lane would have left
    engine = FastRpc(Channel("lonely", Remote()), IdAllocator(255, False))
    cb = soc.domain("cdsp").bus.assign(os.getpid())
    pool = MessagePool(cb)
    try:
        rv = engine.invoke(client_id=1, tid=1, handle=0x1000, sc=0, pd=0, args=b"", refs=b"",
                           msg_alloc=pool.alloc, origin=wire.Origin(1, frozenset((cb.sid,)), False))
        assert rv & 0xFFFF_FFFF == aee.ERR_NO_PD  # the DSP's answer: no PD for client 1
    finally:
        pool.close()
        soc.domain("cdsp").bus.release(cb)
        del junk


def test_empty_device_views_are_each_their_own(make_soc):
    """A skel releasing a zero-length view it was given touches nobody else's."""
    soc = make_soc("default")
    smmu = soc.domain("cdsp").smmu
    a, b = smmu.view(0, 0, False), smmu.view(0, 0, True)
    a.release()
    assert a is not b and len(b) == 0


def test_a_stand_in_for_the_dsps_statistics_is_told_every_message(make_soc, equiv_path):
    class Recorder:
        def __init__(self):
            self.n = 0

        def record(self, **kw):
            self.n += 1

    for name in ("native", "py"):
        side = Side(make_soc, name, None)
        try:
            dsp = side.soc.domain("cdsp").dsp
            dsp.stats = Recorder()
            assert side.files["accel"].invoke(side.h["accel"], SC_MIX | 1 << 16 | 1 << 8, [b"\x01", bytearray(4)]) == 0
            assert dsp.stats.n == 1, name
        finally:
            side.close()


# --- contracts of the lanes' public C-level names ---------------------------------------------
def test_native_id_is_the_threads_id_and_a_forked_childs_own():
    import threading

    from qda_core._engine import native_id

    assert native_id() == threading.get_native_id()
    seen = []
    t = threading.Thread(target=lambda: seen.append((native_id(), threading.get_native_id())))
    t.start()
    t.join()
    assert seen[0][0] == seen[0][1] != native_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's thread is another thread: its own id, not the cached parent's
        os.write(w, str(int(native_id() == threading.get_native_id() == os.getpid())).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 8) == b"1"
    os.close(r)


def test_counters_take_what_was_recorded_and_start_again():
    from qda_core.dsp._counters import Counters, PdCounters, account

    c = Counters()
    c.record(bytes_in=3, bytes_out=4, handles_in=1, handles_out=2, ns=10, error=True)
    c.record(ns=5, crash=True)
    assert c.take() == (2, 1, 1, 3, 4, 1, 2, 15) and c.take() == (0,) * 8
    p = PdCounters()
    p.record(1, 7)
    p.record(0, 3)
    assert (p.invokes, p.modeled_ns) == (1, 10)
    last, total, count = account()
    assert last >= 0 and total >= 0 and count >= 0


def test_the_dsp_lane_answers_through_its_python_entry(make_soc):
    """DspLane.receive (tests' entry): a message for no PD is the reference's to answer."""
    from qda_core import wire

    soc = make_soc("default")
    dsp = soc.domain("cdsp").dsp
    lane = dsp.endpoint("probe")._lane
    replied, reference, ctx, rv = lane.receive(7, 1, 0x50, 0x1234_5678, 2 << 24, 0, 0,
                                               wire.Origin(7, frozenset(), False))
    assert (replied, reference, ctx, rv & 0xFFFF_FFFF) == (True, True, 0x50, aee.ERR_NO_PD)
