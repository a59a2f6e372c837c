"""Host-compiled native skels behave like code on a DSP.

The C skels under tests/c/skels are compiled with the system compiler when this module runs:

* precedence: a library on the search path wins over a built-in skel or plugin of the same
  name; a file that cannot run on the host (a Hexagon ELF, another machine's ELF, something
  dlopen refuses, a Python skel that does not import) is passed over, and the trace says so;
* handle-style modules get their framework close (method 1) exactly once: on remotectl close,
  or when the process exits with the handle open; never after a crash;
* a fault in a native skel (SIGSEGV, SIGFPE, stack overflow) crashes its PD (``0x8000040d``),
  not the host process, through both front ends and with other threads' PDs unaffected;
* FARF reaches the logger ``qdarpc.dsp`` and the trace; the GIL is released while skel code runs;
* the crash guard's cost per call (tests/c/skels/guard_bench.c).
"""
import ctypes
import gc
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from qda_core import trace
from qda_core.dsp import EmulatedDsp, aee
from qda_core.dsp import dsprt
from qda_core.trace_formats import validate_events
from qda_core.wire import ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import CALC_URI, Client, FakeMemory, u32  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "tests" / "c" / "skels"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-shared",
          f"-I{ROOT / 'csrc' / 'include'}"]

pytestmark = [pytest.mark.needs_cc, pytest.mark.skipif(CC is None, reason="no C compiler")]

CRASHY = "file:///libcrashy_skel.so?crashy_skel_handle_invoke&_modver=1.0&_dom=cdsp"
CRASHY_PLAIN = "file:///libcrashy_skel.so?crashy_skel_invoke"
FARF_URI = "file:///libfarf_skel.so?farf_skel_handle_invoke&_modver=1.0&_dom=cdsp"
PD_CRASHED = 0x8000040D
NULL, SEGV, FPE, OVERFLOW, SPIN, SUM, H64 = 2, 3, 4, 5, 6, 7, 8
FAULTS = {SEGV: "sigsegv", FPE: "sigfpe", OVERFLOW: "sigsegv"}


def sc(method: int, nin: int = 0, nout: int = 0) -> int:
    return (method << 24) | (nin << 16) | (nout << 8)


def hexagon_elf() -> bytes:
    """The first bytes of a real Hexagon skel: ELF32, little-endian, ET_DYN, EM_QDSP6 (164)."""
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHI", 3, 164, 1) + bytes(64)


def elf32_i386() -> bytes:
    return b"\x7fELF" + bytes([1, 1, 1]) + bytes(9) + struct.pack("<HHI", 3, 3, 1) + bytes(64)


@pytest.fixture(scope="module")
def skels(tmp_path_factory) -> Path:
    """A directory with the compiled test skels (libcrashy, libfarf, libcalculator)."""
    out = tmp_path_factory.mktemp("skels")
    for name in ("crashy", "farf", "calculator"):
        subprocess.run([CC, *CFLAGS, "-o", str(out / f"lib{name}_skel.so"), str(SRC / f"{name}.c")],
                       check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def crashy(skels):
    """The compiled crashy skel as the tests see it (the same loaded copy the DSP calls)."""
    lib = ctypes.CDLL(str(skels / "libcrashy_skel.so"))
    lib.crashy_closes.argtypes = [ctypes.c_uint64]
    return lib


@pytest.fixture
def mem():
    return FakeMemory()


def new_client(env, mem, cid=1, dsp=None):
    dsp = dsp or EmulatedDsp("cdsp", mem, skel_path_env=env)
    c = Client(dsp, mem, client_id=cid)
    assert c.create(attrs=0x8) == 0
    return c


def opened(c, uri=CRASHY):
    rv, h, dlerr, text = c.open(uri)
    assert (rv, dlerr) == (0, 0), text
    return h


def h64_of(c, h) -> int:
    rv, (out,) = c.send(h, sc(H64, 0, 1), [], [8])
    assert rv == 0
    return struct.unpack("<Q", out)[0]


def calc_sum(c, h, values) -> int:
    rv, (out,) = c.send(h, 0x02020100, [struct.pack("<i", len(values)), struct.pack(f"<{len(values)}i", *values)],
                        [8])
    assert rv == 0
    return struct.unpack("<q", out)[0]


def load_records(events):
    return [e["load"] for e in events if e["kind"] == "dsp" and "load" in e]


# -- 1. precedence -------------------------------------------------------------------------------

def test_native_skel_on_the_path_wins_over_the_builtin(skels, mem):
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    with trace.recording() as rec:
        h = opened(c, CALC_URI)
    assert calc_sum(c, h, [1, 2, 3]) == 1_000_006  # the native calculator answered
    [load] = load_records(rec.events)
    assert load == {"file": "libcalculator_skel.so", "loaded": str(skels / "libcalculator_skel.so"),
                    "passed_over": []}
    validate_events(rec.events)
    builtin = new_client({"DSP_LIBRARY_PATH": str(skels / "nothing")}, mem)
    assert calc_sum(builtin, opened(builtin, CALC_URI), [1, 2, 3]) == 6


def test_hexagon_elf_is_passed_over_and_the_builtin_answers(tmp_path, mem):
    (tmp_path / "libcalculator_skel.so").write_bytes(hexagon_elf())
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    with trace.recording() as rec:
        h = opened(c, CALC_URI)
    assert calc_sum(c, h, [1, 2, 3]) == 6
    [load] = load_records(rec.events)
    assert load["loaded"] == "builtin"
    [skipped] = load["passed_over"]
    assert skipped["path"] == str(tmp_path / "libcalculator_skel.so")
    assert "Hexagon (EM_QDSP6)" in skipped["reason"] and "passed over" in skipped["reason"]
    validate_events(rec.events)


def test_candidates_that_cannot_run_fall_through_in_order(tmp_path, skels, mem):
    dirs = [tmp_path / n for n in "abcde"]
    for d in dirs:
        d.mkdir()
    (dirs[0] / "libcalculator_skel.so").write_bytes(hexagon_elf())
    (dirs[1] / "libcalculator_skel.so").write_bytes(b"not an ELF at all\n")
    (dirs[2] / "libcalculator_skel.so").write_bytes(elf32_i386())
    (dirs[3] / "libcalculator_skel.py").write_text("raise ImportError('needs a module this host lacks')\n")
    shutil.copy(skels / "libcalculator_skel.so", dirs[3])  # same directory: .py first, then .so
    shutil.copy(skels / "libcalculator_skel.so", dirs[4])
    env = {"DSP_LIBRARY_PATH": ";".join(map(str, dirs))}
    src = EmulatedDsp("cdsp", mem, skel_path_env=env).loader.resolve(_parse(CALC_URI))
    assert src.origin == str(dirs[3] / "libcalculator_skel.so") and src.native is not None
    reasons = dict(src.passed_over)
    assert list(reasons) == [str(dirs[0] / "libcalculator_skel.so"), str(dirs[1] / "libcalculator_skel.so"),
                             str(dirs[2] / "libcalculator_skel.so"), str(dirs[3] / "libcalculator_skel.py")]
    assert "Hexagon" in reasons[str(dirs[0] / "libcalculator_skel.so")]
    assert "machine 3" in reasons[str(dirs[2] / "libcalculator_skel.so")]
    assert "needs a module" in reasons[str(dirs[3] / "libcalculator_skel.py")]
    c = new_client(env, mem)
    assert calc_sum(c, opened(c, CALC_URI), [5]) == 1_000_005


def test_nothing_that_runs_is_an_unloadable_module(tmp_path, mem):
    (tmp_path / "libcrashy_skel.so").write_bytes(hexagon_elf())
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    with trace.recording() as rec:
        rv, h, dlerr, text = c.open(CRASHY)
    assert (rv, h, dlerr) == (0, 0, aee.ERR_MOD_UNLOADABLE) and "Hexagon" in text
    [load] = load_records(rec.events)
    assert load["loaded"] == "" and len(load["passed_over"]) == 1
    validate_events(rec.events)


def test_path_wins_over_a_plugin(tmp_path, skels, mem, monkeypatch):
    pkg = tmp_path / "site" / "qdarpc_native_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from qda_core.dsp import Skeleton
        class Calc(Skeleton):
            skel_name = "libcalculator_skel.so"
            symbols = ("calculator_skel_handle_invoke",)
    """))
    dist = tmp_path / "site" / "qdarpc_native_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qdarpc-native-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[qdarpc.skels]\nlibcalculator_skel.so = qdarpc_native_plugin:Calc\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        loader = EmulatedDsp("cdsp", mem, skel_path_env={"DSP_LIBRARY_PATH": str(skels)}).loader
        assert loader.resolve(_parse(CALC_URI)).origin == str(skels / "libcalculator_skel.so")
        (tmp_path / "hex").mkdir()
        (tmp_path / "hex" / "libcalculator_skel.so").write_bytes(hexagon_elf())
        loader = EmulatedDsp("cdsp", mem, skel_path_env={"DSP_LIBRARY_PATH": str(tmp_path / "hex")}).loader
        src = loader.resolve(_parse(CALC_URI))
        assert src.origin == "plugin:qdarpc-native-plugin" and len(src.passed_over) == 1
    finally:
        sys.modules.pop("qdarpc_native_plugin", None)


def _parse(uri):
    from qda_core.dsp import parse_uri

    return parse_uri(uri)


# -- 2. the framework close of handle-style modules --------------------------------------------

def _exit(c, how):
    if how == "exit":  # what the library sends when its last handle goes (then the file closes)
        assert c.send(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT)[0] == 0
    assert c.release() == 0


@pytest.mark.parametrize("how", ["exit", "release"])
def test_native_close_on_remotectl_close_and_at_teardown(skels, crashy, mem, how):
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    hs = [opened(c) for _ in range(3)]
    ids = [h64_of(c, h) for h in hs]
    assert [crashy.crashy_closes(i) for i in ids] == [0, 0, 0]
    assert c.close(hs[0])[:2] == (0, 0)
    assert [crashy.crashy_closes(i) for i in ids] == [1, 0, 0]
    _exit(c, how)
    assert [crashy.crashy_closes(i) for i in ids] == [1, 1, 1]  # each exactly once


def test_no_close_after_a_crash(skels, crashy, mem):
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    hs = [opened(c) for _ in range(2)]
    ids = [h64_of(c, h) for h in hs]
    assert u32(c.send(hs[0], sc(SEGV))[0]) == PD_CRASHED
    assert u32(c.send(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT)[0]) == PD_CRASHED
    assert c.release() == 0
    assert [crashy.crashy_closes(i) for i in ids] == [0, 0]


CLOSEY = textwrap.dedent("""
    import sys
    from qda_core.dsp import Skeleton, method
    class Closey(Skeleton):
        count = 0
        def open(self, uri):
            Closey.count += 1
            self.n = Closey.count
            sys.modules[{mod!r}].EVENTS.append(("open", self.n))
            return 0
        def close(self):
            sys.modules[{mod!r}].EVENTS.append(("close", self.n))
            return 0
        @method(2)
        def boom(self, call):
            raise RuntimeError("skel bug")
""")
CLOSEY_URI = "file:///libclosey_skel.so?closey_skel_handle_invoke&_modver=1.0"


@pytest.mark.parametrize("how", ["exit", "release"])
def test_python_close_on_remotectl_close_and_at_teardown(tmp_path, mem, monkeypatch, how):
    events: list = []
    monkeypatch.setattr(sys.modules[__name__], "EVENTS", events, raising=False)
    (tmp_path / "libclosey_skel.py").write_text(CLOSEY.format(mod=__name__))
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    hs = [opened(c, CLOSEY_URI) for _ in range(3)]
    assert c.close(hs[1])[:2] == (0, 0)
    _exit(c, how)
    assert sorted(events) == [("close", 1), ("close", 2), ("close", 3), ("open", 1), ("open", 2), ("open", 3)]
    assert events.index(("close", 2)) < events.index(("close", 3)) and events.count(("close", 2)) == 1
    # after a crash (a Python exception out of a method) nothing is closed
    events.clear()
    assert c.create(attrs=0x8) == 0
    h = opened(c, CLOSEY_URI)
    opened(c, CLOSEY_URI)
    assert u32(c.send(h, sc(2))[0]) == PD_CRASHED
    _exit(c, "release")
    assert [e for e in events if e[0] == "close"] == []


def test_a_crash_in_a_teardown_close_ends_the_teardown(tmp_path, mem, monkeypatch):
    events: list = []
    monkeypatch.setattr(sys.modules[__name__], "EVENTS", events, raising=False)
    src = CLOSEY.format(mod=__name__).replace(
        'sys.modules[{mod!r}].EVENTS.append(("close", self.n))'.format(mod=__name__),
        'sys.modules[{mod!r}].EVENTS.append(("close", self.n)); 1 / (self.n - 2)'.format(mod=__name__))
    (tmp_path / "libclosey_skel.py").write_text(src)
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    for _ in range(3):
        opened(c, CLOSEY_URI)
    assert c.send(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT)[0] == 0
    assert [e for e in events if e[0] == "close"] == [("close", 3), ("close", 2)]  # latest first; 2 crashed
    assert c.dsp.processes()[0].state == "crashed"
    assert c.release() == 0


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_library_close_paths_run_the_close_once(soc, skels, crashy, monkeypatch, backend):
    """remote_handle64_close of a handle that is not the last: remotectl close on the DSP. Of
    the last one: the library sends process exit instead (docs/spec/legacy_fastrpc_api.md
    §4.6), and the DSP closes the module then."""
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(skels))
    lib = rpc.Library(backend, soc=soc)
    try:
        a, b = lib.remote_handle64_open(CRASHY), lib.remote_handle64_open(CRASHY)
        ids = []
        for h in (a, b):
            out = bytearray(8)
            rpc.remote_handle64_invoke(h, sc(H64, 0, 1), [out])
            ids.append(struct.unpack("<Q", out)[0])
        rpc.remote_handle64_close(a)
        assert [crashy.crashy_closes(i) for i in ids] == [1, 0]
        rpc.remote_handle64_close(b)  # the last handle: session teardown
        assert [crashy.crashy_closes(i) for i in ids] == [1, 1]
    finally:
        lib.close_all()


# -- 3. a fault is a PD crash ----------------------------------------------------------------------

@pytest.mark.parametrize("method", [SEGV, FPE, OVERFLOW], ids=["null-write", "divide-by-zero", "stack-overflow"])
def test_fault_crashes_the_pd_not_the_process(skels, mem, method):
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    h = opened(c)
    h2 = opened(c)
    with trace.recording() as rec:
        assert u32(c.send(h, sc(method))[0]) == PD_CRASHED
    info = c.dsp.processes()[0]
    assert info.state == "crashed" and info.modules == ()
    assert c.dsp.stats.snapshot()["crashes"] == 1
    [fault] = [e for e in rec.events if e["kind"] == "fault"]
    assert fault["fault"] == FAULTS[method] and fault["client_id"] == 1
    assert fault["detail"].startswith(FAULTS[method].upper()) and "libcrashy_skel.so method" in fault["detail"]
    if method == SEGV:
        assert fault["addr"] == 0 and "SEGV_MAPERR" in fault["detail"]
    if method == FPE:
        assert "FPE_INTDIV" in fault["detail"]
    validate_events(rec.events)
    assert u32(c.send(h2, sc(NULL))[0]) == PD_CRASHED  # the PD stays dead
    assert u32(c.open(CRASHY)[0]) == PD_CRASHED
    assert c.release() == 0
    assert c.create(attrs=0x8) == 0  # a new PD: the module works again
    h3 = opened(c)
    assert c.send(h3, sc(NULL))[0] == 0
    assert c.send(h3, sc(SUM, 1, 1), [b"\x01\x02\x03"], [4]) == (0, [struct.pack("<I", 6)])
    assert c.release() == 0


def test_stack_overflow_in_a_new_thread(skels, mem):
    """A thread's first guarded call gives it an alternate signal stack (the main thread has
    faulthandler's): without one a stack overflow would kill the process."""
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    h = opened(c)
    got = []
    for _ in range(3):  # fresh threads each time: their stacks are freed when they exit
        t = threading.Thread(target=lambda: got.append(u32(c.send(h, sc(OVERFLOW))[0])))
        t.start()
        t.join()
        assert c.release() == 0 and c.create(attrs=0x8) == 0
        h = opened(c)
    assert got == [PD_CRASHED] * 3
    assert c.release() == 0


def test_fault_in_a_non_handle_style_skel(skels, mem):
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    h = opened(c, CRASHY_PLAIN)
    assert c.send(h, sc(NULL))[0] == 0
    assert u32(c.send(h, sc(SEGV))[0]) == PD_CRASHED
    assert c.dsp.processes()[0].state == "crashed"
    assert c.release() == 0


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_fault_through_the_library(soc, skels, monkeypatch, backend):
    """Through either front end: the invoke fails with 0x8000040d, later ones too, the handle
    still closes, and the next session works."""
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(skels))
    lib = rpc.Library(backend, soc=soc)
    try:
        h = lib.remote_handle64_open(CRASHY)
        rpc.remote_handle64_invoke(h, sc(NULL))
        with trace.recording() as rec:
            with pytest.raises(rpc.BadStateError) as err:
                rpc.remote_handle64_invoke(h, sc(SEGV))
        assert err.value.aee == PD_CRASHED and err.value.origin == "dsp"
        assert any(e["kind"] == "fault" and e["fault"] == "sigsegv" for e in rec.events)
        with pytest.raises(rpc.BadStateError):
            rpc.remote_handle64_invoke(h, sc(NULL))
        rpc.remote_handle64_close(h)  # last handle: session torn down
        h = lib.remote_handle64_open(CRASHY)
        out = bytearray(4)
        rpc.remote_handle64_invoke(h, sc(SUM, 1, 1), [b"\x05\x06", out])
        assert struct.unpack("<I", out)[0] == 11
        rpc.remote_handle64_close(h)
    finally:
        lib.close_all()


def test_eight_threads_one_crashes_its_own_pd(skels, mem):
    dsp = EmulatedDsp("cdsp", mem, skel_path_env={"DSP_LIBRARY_PATH": str(skels)})
    clients = [new_client(None, mem, cid=i + 1, dsp=dsp) for i in range(8)]
    handles = [opened(c) for c in clients]
    start = threading.Barrier(8)
    results: dict[int, list[int]] = {}
    victim = 5

    def work(i):
        c, h = clients[i], handles[i]
        got = []
        start.wait()
        for n in range(150):
            if i == victim and n == 50:
                got.append(u32(c.send(h, sc(SEGV))[0]))
                continue
            rv, (out,) = c.send(h, sc(SUM, 1, 1), [bytes([i, n % 256, 1])], [4])
            got.append(u32(rv) if rv else struct.unpack("<I", out)[0] - (i + n % 256 + 1))
        results[i] = got

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8
    for i, got in results.items():
        if i == victim:
            assert got[:50] == [0] * 50 and got[50:] == [PD_CRASHED] * 100
        else:
            assert got == [0] * 150, i
    states = {info.client_id: info.state for info in dsp.processes()}
    assert states == {i + 1: "crashed" if i == victim else "alive" for i in range(8)}
    for c in clients:
        assert c.release() == 0


# -- FARF and the GIL ------------------------------------------------------------------------------

def test_farf_reaches_logging_and_trace(skels, mem, caplog):
    caplog.set_level(logging.DEBUG, logger="qdarpc.dsp")
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    with trace.recording() as rec:
        h = opened(c, FARF_URI)
        assert c.send(h, sc(2))[0] == 0
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "qdarpc.dsp"]
    texts = [t.split(": ", 2)[-1] for _, t in got]
    assert texts == ["farf open", "medium 7", "error 7 of seven", "always", "runtime high 42", "preformatted"]
    assert [lvl for lvl, _ in got] == [logging.INFO, logging.DEBUG, logging.ERROR, logging.INFO, logging.INFO,
                                       logging.CRITICAL]
    assert all(t.startswith("cdsp client 1 libfarf_skel.so: ") for _, t in got)
    assert "farf.c:" in got[2][1]
    farf = [e for e in rec.events if e["kind"] == "farf"]
    assert [e["message"] for e in farf] == texts
    assert {(e["domain"], e["client_id"], e["module"]) for e in farf} == {("cdsp", 1, "libfarf_skel.so")}
    assert [e["runtime"] for e in farf] == [False, False, False, False, True, False]
    assert farf[2]["level"] == 3 and farf[2]["file"].endswith("farf.c") and farf[2]["line"] > 0
    validate_events(rec.events)
    assert c.release() == 0


def test_gil_is_released_while_native_code_runs(skels, mem):
    """The skel spins until a Python thread sets a flag in host memory: only possible if the
    invoking thread let go of the GIL (else the skel gives up after 10 s and returns 1)."""
    c = new_client({"DSP_LIBRARY_PATH": str(skels)}, mem)
    h = opened(c)
    flag = ctypes.c_int32(0)
    setter = threading.Thread(target=lambda: (time.sleep(0.05), setattr(flag, "value", 1)))
    t0 = time.monotonic()
    setter.start()
    rv, _ = c.send(h, sc(SPIN, 1), [struct.pack("<Q", ctypes.addressof(flag))])
    setter.join()
    assert rv == 0 and time.monotonic() - t0 < 5
    assert c.release() == 0


# -- the guard and the rest of the process ---------------------------------------------------------

CHILD = textwrap.dedent("""
    import ctypes, faulthandler, os, sys
    import libadsprpc_compat as rpc
    URI = {uri!r}
    h = rpc.remote_handle64_open(URI)
    rpc.remote_handle64_invoke(h, 0x02000000)       # the guard is installed now
    if sys.argv[1] == "faulthandler-after":
        faulthandler.enable()                        # replaces the guard's handlers...
        h2 = rpc.remote_handle64_open(URI)           # ...which the next module open puts back
        try:
            rpc.remote_handle64_invoke(h2, 0x03000000)
        except rpc.BadStateError as exc:
            print("crashed", hex(exc.aee), flush=True)
        sys.exit(0)
    faulthandler.enable()
    print("unguarded fault next", flush=True)
    ctypes.string_at(0)                              # host code faulting: not contained
""")


def _child(skels, tmp_path, mode):
    env = {k: v for k, v in os.environ.items() if k not in ("QDARPC_TRACE",)}
    env["DSP_LIBRARY_PATH"] = str(skels)
    return subprocess.run([sys.executable, "-c", CHILD.format(uri=CRASHY), mode], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)


def test_guard_put_back_after_faulthandler_enable(skels, tmp_path):
    res = _child(skels, tmp_path, "faulthandler-after")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["crashed", "0x8000040d"]
    assert "Fatal Python error" not in res.stderr


def test_faults_outside_skel_code_behave_as_before(skels, tmp_path):
    from libadsprpc_compat import native

    res = _child(skels, tmp_path, "unguarded")
    assert "unguarded fault next" in res.stdout
    if native._loaded_runtimes():  # under ASan its own handler reports the fault and aborts
        assert res.returncode == -6 and "AddressSanitizer: SEGV" in res.stderr
        return
    assert res.returncode == -11
    assert "Fatal Python error: Segmentation fault" in res.stderr  # faulthandler still saw it


def test_guard_cost_per_call(tmp_path, capsys):
    """What the crash guard adds to a call (the command is in guard_bench.c)."""
    exe = tmp_path / "guard_bench"
    subprocess.run([CC, "-std=gnu99", "-O2", f"-I{ROOT / 'csrc' / 'include'}", "-o", str(exe),
                    str(SRC / "guard_bench.c"), str(SRC / "crashy.c"), "-ldl"], check=True)
    res = subprocess.run([str(exe), dsprt.LIBRARY, "2000000"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    cost = float(re.search(r"guard cost (-?[\d.]+) ns/call", res.stdout).group(1))
    with capsys.disabled():
        print(f"\n[dsprt] {res.stdout.strip().splitlines()[-1]}")
    assert cost < 500  # ~5 ns on the reference machine; a loose bound against a per-call syscall


def test_a_context_set_during_a_native_call_leaves_the_callers_alive(skels, make_soc, monkeypatch):
    """The DSP's lane sets the skel's FARF context around its call and puts the caller's back.
    Python code run by a FARF line may set another meanwhile (dropping its hold on the caller's):
    the caller's is still the thread's afterwards, alive and readable."""
    import weakref

    from libadsprpc_compat.remotectl import open_module
    from qda_core.dsp import dsprt

    monkeypatch.setenv("DSP_LIBRARY_PATH", str(skels))
    soc = make_soc("default")
    f = soc.open_device("cdsp")
    assert f.init_create(attrs=0x8) == 0
    rv, h = open_module(f, FARF_URI)
    assert rv == 0

    class Ctx:  # what a FARF line reads of a context (dsprt.DspContext), and weakly referable
        domain, channel, client_id, module = "cdsp", "test", 0, "meddler"

    class Meddler(logging.Handler):
        def emit(self, record):
            seen.append(dsprt.context.ctx)
            dsprt.context.ctx = Ctx()  # the only holder of the caller's context lets go of it

    seen: list = []
    log = logging.getLogger("qdarpc.dsp")
    handler = Meddler()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        mine = Ctx()
        ref = weakref.ref(mine)
        dsprt.context.ctx = mine
        del mine
        assert f.invoke(h, sc(2)) == 0
        gc.collect()
        assert seen and seen[0] is not None and seen[0] is not ref()  # the skel's own context first
        assert ref() is not None and dsprt.context.ctx is ref()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        seen.clear()
        dsprt.context.ctx = None
        f.close()
    gc.collect()
    assert ref() is None
