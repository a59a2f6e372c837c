"""The static handles the upstream user library talks to on its own (docs/spec/upstream_library.md
§6, docs/spec/legacy_fastrpc_api.md §6.2-§6.4), through both front ends: ``remotectl1`` (8) and
its ``remotectl`` (0) fallback, ``adsp_current_process1`` (4), and the listener
``adsp_listener1`` (7), whose ``next2`` blocks until its PD ends.

Every ``next2`` runs in a daemon thread joined with a timeout, and the ``listeners`` fixture
restarts the DSP at teardown if one is still blocked: a broken release fails its test, it never
hangs the suite.
"""
import errno
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import close_module, open_module
from qda_core import uapi
from qda_core.dsp import aee
from qda_core.wire import (ADSP_CURRENT_PROCESS1_HANDLE, ADSP_LISTENER1_HANDLE, CURRENT_PROCESS1_EXIT,
                           CURRENT_PROCESS1_THREAD_EXIT, LISTENER1_INIT2, LISTENER1_NEXT2, REMOTECTL1_HANDLE,
                           REMOTECTL_HANDLE, REMOTECTL_METHODS)

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import TEST_URI, Client, FakeMemory, u32  # noqa: E402

UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
SC_NULL, SC_CRASH = 0x02000000, 0x06000000
ENDED = 0x8000040D                       # listener_android.c leaves its loop on this code
SSR_ERRNO = {"accel": errno.ENODEV, "legacy": errno.EPIPE}
TIMEOUT = 10.0


def open_pd(soc, driver: str):
    """An open file of ``driver`` on the compute DSP with an unsigned user PD."""
    f = soc.open_device("cdsp") if driver == "accel" else soc.open("/dev/fastrpc-cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    return f


def pd_of(soc, driver: str, f):
    dsp = soc.domain("cdsp").dsp
    return next(p for p in dsp.processes() if p.channel == driver and p.client_id == f.client_id)


def next2_args(prev_len: int = 0, buf_len: int = 256):
    """``adsp_listener1_next2`` as its stub lays it out: in0 {prevCtx, prevResult, prevLen,
    bufLen}, in1 the previous answer, out0 {ctx, handle, sc, lenReq}, out1 the request buffer."""
    return [struct.pack("<4I", 0, 0xFFFF_FFFF, prev_len, buf_len), bytes(prev_len), bytearray(16),
            bytearray(buf_len)]


class Listener:
    """One library listener thread: init2, then next2 until it returns."""

    def __init__(self, soc, driver: str, f, init: bool = True):
        self.soc, self.driver, self.f = soc, driver, f
        self.result: int | None = None
        self.error: OSError | None = None
        self.out0 = None
        if init:
            assert f.invoke(ADSP_LISTENER1_HANDLE, LISTENER1_INIT2, []) == 0
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"listener-{driver}-{f.client_id}")
        self.thread.start()

    def _run(self) -> None:
        args = next2_args()
        try:
            self.result = self.f.invoke(ADSP_LISTENER1_HANDLE, LISTENER1_NEXT2, args)
            self.out0 = bytes(args[2])
        except OSError as exc:
            self.error = exc

    def blocked(self) -> "Listener":
        """Wait until the DSP holds this next2 (the PD counts it), then check it stays."""
        deadline = time.monotonic() + TIMEOUT
        while pd_of(self.soc, self.driver, self.f).listeners < 1:
            assert self.thread.is_alive(), f"next2 returned {self.result!r} / {self.error!r} instead of blocking"
            assert time.monotonic() < deadline, "next2 never reached the DSP"
            time.sleep(0.001)
        self.thread.join(0.05)
        assert self.thread.is_alive()
        return self

    def released(self) -> "Listener":
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "next2 still blocked"
        return self


@pytest.fixture
def listeners(soc):
    """Start listeners with ``listeners(driver, f)``; any left blocked at teardown are released
    by a restart of the DSP so the test fails instead of hanging."""
    started: list[Listener] = []

    def start(driver, f, **kw) -> Listener:
        lst = Listener(soc, driver, f, **kw)
        started.append(lst)
        return lst

    yield start
    if any(lst.thread.is_alive() for lst in started):
        soc.restart("cdsp")
        for lst in started:
            lst.thread.join(TIMEOUT)
        pytest.fail("a listener was still blocked at the end of the test")


DRIVERS = pytest.mark.parametrize("driver", ["accel", "legacy"])


# -- remotectl1 (8) and remotectl (0) -----------------------------------------------------------

@DRIVERS
@pytest.mark.parametrize("iface", [REMOTECTL1_HANDLE, REMOTECTL_HANDLE])
def test_remotectl_open_close_set_param(soc, driver, iface):
    """open1/close1 and set_param on remotectl1 (and the remotectl methods the library falls back
    to when handle 8 fails): layouts of docs/spec/legacy_fastrpc_api.md §6.3, every answer 0."""
    methods = REMOTECTL_METHODS[iface]
    with open_pd(soc, driver) as f:
        ret, h = open_module(f, TEST_URI, iface)
        assert ret == 0 and h > 0x200
        assert f.invoke(h, SC_NULL, []) == 0
        assert close_module(f, h, iface) == 0
        # set_param reqID 1 (thread params {prio, stack}): what a multithreaded session sends
        # before its first open; a failure aborts the library's session init.
        prim, params = struct.pack("<II", 1, 2), struct.pack("<II", 142, 16384)
        assert f.invoke(iface, methods["set_param"], [prim, params]) == 0
        assert soc.domain("cdsp").dsp._proc(driver, f.client_id).params == {1: (142, 16384)}
        assert f.invoke(iface, methods["set_param"], [struct.pack("<II", 2, 1), struct.pack("<I", 1)]) == 0
        # paramsLen disagreeing with the buffer, and wrong counts, are bad parameters
        assert f.invoke(iface, methods["set_param"], [prim, struct.pack("<I", 1)]) == u32(aee.ERR_BAD_PARM)
        assert f.invoke(iface, methods["set_param"] & ~0xFF0000 | 0x10000, [prim]) == u32(aee.ERR_BAD_PARM)
        assert f.invoke(iface, methods["grow_heap"], [bytes(8)]) == u32(aee.ERR_UNKNOWN_METHOD)


def test_remotectl_close_layout_and_unknown_handle(soc):
    """close1: in ``{handle, 255}`` -> out ``{nErr}`` + dlerror text; an unknown handle is
    reported in nErr with the invoke itself succeeding (the library's rule: dlerr wins)."""
    with open_pd(soc, "legacy") as f:
        out0, text = bytearray(4), bytearray(255)
        sc = REMOTECTL_METHODS[REMOTECTL1_HANDLE]["close"]
        assert sc == 0x03010200
        assert f.invoke(REMOTECTL1_HANDLE, sc, [struct.pack("<II", 0x1234_5670, 255), out0, text]) == 0
        assert struct.unpack("<I", out0)[0] == u32(aee.ERR_CLOSE_UNKNOWN)
        assert b"not open" in bytes(text)


# -- adsp_current_process1 (4) -------------------------------------------------------------------

@DRIVERS
def test_thread_exit_never_blocks_and_exit_ends_the_pd(soc, driver):
    with open_pd(soc, driver) as f:
        _, h = open_module(f, TEST_URI)
        results = []

        def thread_exit():
            results.append(f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_THREAD_EXIT, []))

        threads = [threading.Thread(target=thread_exit) for _ in range(8)]  # TLS destructors of 8 threads
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert results == [0] * 8
        assert f.invoke(h, SC_NULL, []) == 0          # thread_exit changed nothing
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
        assert pd_of(soc, driver, f).state == "exited"
        assert f.invoke(h, SC_NULL, []) == ENDED
        assert f.invoke(ADSP_LISTENER1_HANDLE, LISTENER1_NEXT2, next2_args()) == ENDED  # a late next2 too
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT & ~0xFF0000 | 0x10000, [bytes(4)]) \
            == ENDED  # the PD is gone before arguments are looked at
    assert soc.domain("cdsp").dsp.processes() == []


@DRIVERS
def test_current_process_methods_check_their_scalars(soc, driver):
    with open_pd(soc, driver) as f:
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, 0x03010000, [bytes(4)]) == u32(aee.ERR_BAD_PARM)
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, 0x05000100, [bytearray(4)]) == u32(aee.ERR_STATIC_UNSUPPORTED)
        assert pd_of(soc, driver, f).state == "alive"


# -- adsp_listener1 (7) --------------------------------------------------------------------------

@DRIVERS
def test_next2_blocks_until_exit(soc, driver, listeners):
    """The library's teardown: adsp_current_process1_exit, then join the listener. The exit
    completes the pending next2 with 0x8000040d, on which the listener loop ends."""
    with open_pd(soc, driver) as f:
        lst = listeners(driver, f).blocked()
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
        lst.released()
        assert (lst.result, lst.error) == (ENDED, None)
        assert lst.out0 == bytes(16)  # no request: ctx, handle, sc, lenReq all 0


@DRIVERS
def test_next2_released_by_a_crash_of_its_pd(soc, driver, listeners):
    with open_pd(soc, driver) as f:
        _, h = open_module(f, TEST_URI)
        lst = listeners(driver, f).blocked()
        assert f.invoke(h, SC_CRASH, []) == ENDED
        assert lst.released().result == ENDED
        assert pd_of(soc, driver, f).state == "crashed"


def test_next2_released_by_init_release_relayed_on_accel(soc, listeners):
    """INIT_RELEASE ends the PD and its listener. The QDA RFC relays a user's handle-1 invoke,
    so a RELEASE of one's own client id reaches the DSP while the file is still open."""
    with open_pd(soc, "accel") as f:
        lst = listeners("accel", f).blocked()
        assert f.invoke(1, 0x01010000, [struct.pack("<i", f.client_id)]) == 0
        assert lst.released().result == ENDED
        assert soc.domain("cdsp").dsp.processes() == []


def test_next2_released_by_init_release_on_the_dsp():
    """At the DSP: a kernel INIT_RELEASE from another thread completes a blocked next2."""
    from qda_core.dsp import EmulatedDsp

    mem = FakeMemory()
    dsp = EmulatedDsp("cdsp", mem)
    c = Client(dsp, mem, client_id=3)
    assert c.create(attrs=UNSIGNED) == 0
    assert c.send(ADSP_LISTENER1_HANDLE, LISTENER1_INIT2) == (0, [])
    got = []
    t = threading.Thread(target=lambda: got.append(c.send(
        ADSP_LISTENER1_HANDLE, LISTENER1_NEXT2, [struct.pack("<4I", 0, 0, 0, 64), b""], [16, 64])), daemon=True)
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while dsp.processes()[0].listeners != 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert c.release() == 0
    t.join(TIMEOUT)
    assert not t.is_alive() and u32(got[0][0]) == ENDED and got[0][1][0] == bytes(16)
    assert dsp.processes() == []


@DRIVERS
def test_next2_released_by_ssr_with_the_front_ends_code(soc, driver, listeners):
    """A subsystem restart: the DSP that held the next2 is gone and never answers; the caller
    gets what each front end gives an invoke at SSR (accel ENODEV, legacy EPIPE)."""
    f = open_pd(soc, driver)
    lst = listeners(driver, f).blocked()
    soc.restart("cdsp")
    lst.released()
    assert lst.result is None and lst.error.errno == SSR_ERRNO[driver]
    f.close()
    assert soc.domain("cdsp").bus.free_count == len(soc.domain("cdsp").bus.cbs)


@DRIVERS
def test_close_with_a_listener_blocked_waits_for_it(soc, driver, listeners):
    """``close()`` while next2 is in flight: the in-flight ioctl holds the file (``fdget``), so
    the driver's release (and its INIT_RELEASE) waits for it, as in the kernel; the library
    never gets here (it exits the PD and joins its listener before closing). The PD stays until
    something else ends it: here a restart, after which the deferred release runs."""
    f = open_pd(soc, driver)
    lst = listeners(driver, f).blocked()
    f.close()
    time.sleep(0.05)
    assert lst.thread.is_alive() and pd_of(soc, driver, f).state == "alive"
    soc.restart("cdsp")
    assert lst.released().error.errno == SSR_ERRNO[driver]
    assert soc.domain("cdsp").bus.free_count == len(soc.domain("cdsp").bus.cbs)


def test_each_exit_releases_only_its_own_pd(soc, listeners):
    """Several PDs on both front ends, each with a blocked listener: one PD's exit completes
    only its own next2."""
    files = [("accel", open_pd(soc, "accel")) for _ in range(3)] + [("legacy", open_pd(soc, "legacy"))
                                                                   for _ in range(2)]
    try:
        lsts = [listeners(d, f).blocked() for d, f in files]
        for i, (_d, f) in enumerate(files):
            assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
            assert lsts[i].released().result == ENDED
            time.sleep(0.02)
            assert all(lst.thread.is_alive() for lst in lsts[i + 1:])
            assert [pd_of(soc, d, g).listeners for d, g in files[i + 1:]] == [1] * (len(files) - i - 1)
    finally:
        for _d, f in files:
            f.close()


@DRIVERS
def test_a_blocked_listener_holds_no_lock(soc, driver, listeners):
    """While next2 waits: other invokes on the same file, on another file of the same driver
    (the legacy channel's one invoke engine) and on the other driver run from this thread (so
    the waiting one holds neither a lock nor the GIL)."""
    other_driver = "legacy" if driver == "accel" else "accel"
    with open_pd(soc, driver) as f, open_pd(soc, driver) as g, open_pd(soc, other_driver) as h:
        lst = listeners(driver, f).blocked()
        for file in (f, g, h):
            _, mod = open_module(file, TEST_URI)
            t0 = time.monotonic()
            for _ in range(50):
                assert file.invoke(mod, SC_NULL, []) == 0
            assert time.monotonic() - t0 < TIMEOUT
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_THREAD_EXIT, []) == 0
        assert lst.thread.is_alive()
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
        assert lst.released().result == ENDED


@DRIVERS
def test_listener_bad_calls_answer_at_once(soc, driver, listeners):
    """Calls that are not a well-formed next2 never block: wrong counts or short buffers ->
    0x8000040e, the listener's other methods -> 0x80000414."""
    with open_pd(soc, driver) as f:
        call = lambda sc, args: f.invoke(ADSP_LISTENER1_HANDLE, sc, args)  # noqa: E731
        bad = u32(aee.ERR_BAD_PARM)
        assert call(0x06010200, [bytes(16), bytearray(16), bytearray(8)]) == bad       # one in-buffer
        assert call(LISTENER1_NEXT2, [bytes(8), b"", bytearray(16), bytearray(8)]) == bad  # in0 short
        assert call(LISTENER1_NEXT2, [bytes(16), b"", bytearray(8), bytearray(8)]) == bad  # out0 short
        args = next2_args(prev_len=0, buf_len=64)
        args[3] = bytearray(8)                                                          # bufLen > out1
        assert call(LISTENER1_NEXT2, args) == bad
        args = next2_args(prev_len=32)
        args[1] = bytes(4)                                                              # prevLen > in1
        assert call(LISTENER1_NEXT2, args) == bad
        assert call(0x05010000, [bytes(4)]) == bad                                      # init2 with args
        for sc in (0x02000000, 0x04000000, 0x07010200):                                # next_invoke, init, get_in_bufs2
            assert call(sc, [bytes(8)] * ((sc >> 16) & 0xFF) + [bytearray(8)] * ((sc >> 8) & 0xFF)) \
                == u32(aee.ERR_UNKNOWN_METHOD)
        assert pd_of(soc, driver, f).listeners == 0
        lst = listeners(driver, f, init=False).blocked()  # next2 without init2 is served too
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
        assert lst.released().result == ENDED


def test_ssr_of_another_domain_leaves_listeners_alone(soc, listeners):
    with open_pd(soc, "accel") as f:
        lst = listeners("accel", f).blocked()
        soc.restart("adsp")
        time.sleep(0.02)
        assert lst.thread.is_alive()
        assert f.invoke(ADSP_CURRENT_PROCESS1_HANDLE, CURRENT_PROCESS1_EXIT, []) == 0
        assert lst.released().result == ENDED


SLOW_SKEL = """
import sys
from qda_core.dsp import Skeleton, method

class Slow(Skeleton):
    @method(2, sc=0x02000000)
    def wait(self, call):
        return sys.modules["qdarpc_slow_hooks"].on_call()
"""


@DRIVERS
def test_ssr_error_for_other_calls_in_flight(soc, driver, tmp_path, monkeypatch):
    """Any invoke still running on the DSP when it restarts gets the front end's SSR code, not
    the reply of a DSP that is gone (the legacy kernel completes its waiters with -EPIPE)."""
    import types

    inside, go = threading.Event(), threading.Event()
    hooks = types.ModuleType("qdarpc_slow_hooks")
    hooks.on_call = lambda: (inside.set(), go.wait(TIMEOUT), 0)[2]
    monkeypatch.setitem(sys.modules, "qdarpc_slow_hooks", hooks)
    (tmp_path / "libslow_skel.py").write_text(SLOW_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    f = open_pd(soc, driver)
    _, h = open_module(f, "file:///libslow_skel.so?slow_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    errors = []

    def call():
        try:
            f.invoke(h, SC_NULL, [])
        except OSError as exc:
            errors.append(exc.errno)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    assert inside.wait(TIMEOUT)
    soc.restart("cdsp")
    go.set()
    t.join(TIMEOUT)
    assert not t.is_alive() and errors == [SSR_ERRNO[driver]]
    f.close()
