"""The qdarpc pytest plugin (cli/pytest_plugin.py, qdarpc_cli.pytest_plugin): fixtures, the marker, the leak
check, faults and the trace tail of a failing test, run in inner pytest sessions (pytester,
in-process) and once in a fresh directory outside the checkout (the installed entry point)."""
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import native
from libadsprpc_compat.ab import SC_NULL, TEST_URI
from qda_core import trace
from qdarpc_cli import pytest_plugin

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pytest" / "test_example.py"
#: Settings of the environment running the suite that would change what an inner run does
#: (pytest prints the short summary's messages untruncated, i.e. once more, when $CI or
#: $BUILD_NUMBER is set).
_SCRUB = ("QDARPC_TRACE", "QDARPC_SOC", "QDARPC_BACKEND", "QDARPC_KERNEL", "QDARPC_FAULTS", "PYTHONPATH",
          "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "CI", "BUILD_NUMBER")


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytester whose runs see none of the QDARPC_* settings of the environment running the suite."""
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    # The module-level API's backend as $QDARPC_BACKEND left it unset; a module-level open in an
    # inner test fixes it (state.used) only until this test ends.
    monkeypatch.setattr(rpc.process.state, "backend", "accel")
    monkeypatch.setattr(rpc.process.state, "used", rpc.process.state.used)
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\nfilterwarnings = error\n")
    return pytester


def test_the_entry_point_is_registered(request):
    eps = importlib.metadata.entry_points(group="pytest11")
    assert {ep.name: ep.value for ep in eps}.get("qdarpc") == "qdarpc_cli.pytest_plugin"
    assert request.config.pluginmanager.get_plugin("qdarpc") is pytest_plugin


def test_loading_the_plugin_imports_no_emulator(inner):
    # A fresh interpreter: a project's tests that do not use the plugin pay for pytest's import of
    # qdarpc_cli.pytest_plugin only (no qda_core, numpy, C extensions, fork or exit hooks).
    inner.makepyfile("""
        import sys

        def test_plain(request):
            assert request.config.pluginmanager.get_plugin("qdarpc") is sys.modules["qdarpc_cli.pytest_plugin"]
            assert any(line.startswith("qdarpc(") for line in request.config.getini("markers"))
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("qda_core", "libadsprpc_compat", "numpy"))
            assert heavy == []
    """)
    inner.runpytest_subprocess("--qdarpc-trace-tail=3").assert_outcomes(passed=1)


def test_a_test_without_the_fixtures_records_nothing(request):
    # The plugin is loaded in this suite too; it must not touch tests that do not ask for it.
    assert trace.RECORDER is None
    assert request.node.stash.get(pytest_plugin._STATE, None) is None


def test_the_fixtures_in_this_suite(qdarpc_soc, fastrpc):
    # Under tests/conftest.py's hygiene check, which runs after these fixtures' teardown: the
    # recorder, the default SoC and everything the test opened must be back by then.
    from qda_core.soc import default_soc

    assert default_soc() is qdarpc_soc and trace.RECORDER is not None
    h = fastrpc.remote_handle64_open(TEST_URI)
    rpc.remote_handle64_invoke(h, SC_NULL, [])
    rpc.remote_handle64_close(h)


def test_backends_give_one_run_each_with_the_backend_in_the_id(inner):
    inner.makepyfile("""
        import os
        import pytest

        @pytest.mark.qdarpc(backends=["accel", "legacy"])
        def test_both(fastrpc, qdarpc_soc):
            assert fastrpc.soc is qdarpc_soc
            print("BACKEND", fastrpc.backend)

        @pytest.mark.qdarpc(backends="legacy")
        def test_one(fastrpc):
            assert fastrpc.backend == "legacy"

        def test_default(fastrpc):
            assert fastrpc.backend == "accel"   # the module-level API's backend

        @pytest.mark.qdarpc(backends=["accel"])
        class TestClass:
            def test_soc_only(self, qdarpc_soc):  # a class marker's backends: one run
                pass

            @pytest.mark.parametrize("n", [1, 2])
            def test_with_params(self, fastrpc, n):
                assert fastrpc.backend == "accel"
    """)
    res = inner.runpytest("-v", "-s")
    res.assert_outcomes(passed=7)
    res.stdout.fnmatch_lines(["*::test_both[[]accel[]] BACKEND accel", "PASSED",
                              "*::test_both[[]legacy[]] BACKEND legacy", "PASSED",
                              "*::test_one[[]legacy[]] PASSED*", "*::test_default PASSED*",
                              "*::TestClass::test_soc_only PASSED*",
                              "*::TestClass::test_with_params[[]accel-1[]] PASSED*"])


def test_marker_soc_kernel_and_faults(inner, monkeypatch):
    (inner.path / "profiles").mkdir()
    (inner.path / "profiles" / "two.json").write_text(
        '{"domains": [{"name": "adsp", "context_banks": 1}, {"name": "cdsp", "context_banks": 3}]}')
    inner.makepyfile("""
        import pytest

        pytestmark = pytest.mark.qdarpc(soc="minimal", faults="nocb:adsp")

        @pytest.mark.qdarpc(kernel="accel:qda-v1-2026-05,legacy:misc-7.2")
        def test_module_and_function_markers_merge(qdarpc_soc):
            assert list(qdarpc_soc.domains) == ["cdsp"]
            assert qdarpc_soc.kernel_spec == "accel:qda-v1-2026-05,legacy:misc-7.2"
            assert [str(r) for r in qdarpc_soc.faults.rules] == ["nocb:adsp"]

        @pytest.mark.qdarpc(soc="profiles/two.json", faults=["alloc:gem@2", "map@1,errno=EFAULT"])
        def test_profile_file_next_to_the_test_and_a_list_of_rules(qdarpc_soc):
            assert {n: len(d.bus.cbs) for n, d in qdarpc_soc.domains.items()} == {"adsp": 1, "cdsp": 3}
            assert [str(r) for r in qdarpc_soc.faults.rules] == ["alloc:gem@2", "map@1,errno=EFAULT"]

        def test_each_test_gets_a_fresh_soc(qdarpc_soc):
            qdarpc_soc.faults.add("alloc@1")
            assert len(qdarpc_soc.faults.rules) == 2   # the module's rule and this one, no other test's
    """)
    (inner.path / "sub").mkdir()
    monkeypatch.chdir(inner.path / "sub")  # the profile path is the test file's, not the working directory's
    inner.runpytest(str(inner.path)).assert_outcomes(passed=3)


@pytest.mark.parametrize("marker,message", [
    ('qdarpc(backends=["accel", "vulkan"])',
     "@pytest.mark.qdarpc: backends=['accel', 'vulkan']: give a non-empty list of distinct"),
    ("qdarpc(backends=[])", "@pytest.mark.qdarpc: backends=[]: give a non-empty list"),
    ('qdarpc(backend="accel")',
     "@pytest.mark.qdarpc: unknown argument 'backend'; it takes backends, soc, kernel, faults"),
    ('qdarpc("minimal")', "@pytest.mark.qdarpc: takes keyword arguments only"),
    ('qdarpc(faults="bogus:cdsp")', "qdarpc_soc: cannot build the SoC of @pytest.mark.qdarpc(faults='bogus:cdsp'): "
                                    "'bogus:cdsp': unknown fault kind"),
    ('qdarpc(soc="huge")',
     "qdarpc_soc: cannot build the SoC of @pytest.mark.qdarpc(soc='huge'): unknown SoC profile 'huge'"),
    ('qdarpc(kernel="accel:qda-v9")',
     "qdarpc_soc: cannot build the SoC of @pytest.mark.qdarpc(kernel='accel:qda-v9'): "),
    ("qdarpc(soc=3)", "@pytest.mark.qdarpc: soc=3: must be a string"),
])
def test_bad_marker_arguments_fail_that_test_once(inner, marker, message):
    inner.makepyfile(f"""
        import pytest

        @pytest.mark.{marker}
        def test_x(fastrpc):
            pass

        def test_other_tests_of_the_file_run():
            pass
    """)
    res = inner.runpytest()
    res.assert_outcomes(passed=1, errors=1)  # in test_x's setup, not the file's collection
    out = res.stdout.str()
    assert f"test_x: {message}" in out
    assert "During handling of the above exception" not in out and out.count(message) == 1


@pytest.mark.parametrize("var,value", [("QDARPC_FAULTS", "bogus:cdsp"), ("QDARPC_KERNEL", "accel:qda-v9"),
                                       ("QDARPC_SOC", "huge")])
def test_a_bad_environment_is_named_not_the_marker(inner, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    inner.makepyfile("""
        import pytest

        def test_x(qdarpc_soc):
            pass

        @pytest.mark.qdarpc(soc="minimal")
        def test_y(fastrpc):
            pass
    """)
    res = inner.runpytest()
    out = res.stdout.str()
    assert f"test_x: qdarpc_soc: cannot build the SoC: ${var}: " in out  # qda_core names the variable
    assert "test_x: @pytest.mark.qdarpc" not in out and "qdarpc()" not in out
    if var == "QDARPC_SOC":  # the marker's profile wins over the variable
        res.assert_outcomes(errors=1, passed=1)
    else:  # the marker's part and the variable's, each named
        res.assert_outcomes(errors=2)
        assert f"test_y: qdarpc_soc: cannot build the SoC of @pytest.mark.qdarpc(soc='minimal'): ${var}: " in out


def test_backends_on_a_test_without_fastrpc_is_an_error_of_that_test(inner):
    inner.makepyfile("""
        import pytest

        @pytest.mark.qdarpc(backends=["legacy"])
        def test_x(qdarpc_soc):
            pass

        @pytest.mark.qdarpc(backends=["accel", "legacy"])
        def test_y(fastrpc):
            pass
    """)
    res = inner.runpytest("-v")
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["*::test_x ERROR*", "*::test_y[[]accel[]] PASSED*", "*::test_y[[]legacy[]] PASSED*"])
    assert ("test_x: @pytest.mark.qdarpc: backends= chooses the backend of the fastrpc fixture, which this test "
            "does not use") in res.stdout.str()


_PORTED = """
    import errno
    import pytest
    import libadsprpc_compat as rpc
    from libadsprpc_compat.ab import TEST_URI, SC_NULL

    CODES = {"accel": (rpc.AEE_ENOSUCHDEVICE, errno.ENODEV), "legacy": (rpc.AEE_ECONNRESET, errno.EPIPE)}
    pytestmark = pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal", faults="ssr:cdsp@invoke=1")

    def test_ported_code_meets_its_backends_ssr(fastrpc):
        h = rpc.remote_handle64_open(TEST_URI)   # the module-level API, as ported code calls it
        assert rpc.process._records[h].session.lib is fastrpc
        with pytest.raises(rpc.FastRpcError) as e:
            rpc.remote_handle64_invoke(h, SC_NULL, [])
        assert (e.value.aee, e.value.errno) == CODES[fastrpc.backend]
        rpc.remote_handle64_close(h)

    def test_ported_code_fails(fastrpc):
        h = rpc.remote_handle64_open(TEST_URI)
        try:
            rpc.remote_handle64_invoke(h, SC_NULL, [])
        finally:
            rpc.remote_handle64_close(h)
"""


def test_the_module_level_api_runs_on_the_tests_backend(inner):
    inner.makepyfile(_PORTED)
    res = inner.runpytest()
    res.assert_outcomes(passed=2, failed=2)
    out = res.stdout.str()
    ours = {"accel": "ioctl  accel DRM_IOCTL_QDA_INVOKE", "legacy": "ioctl  legacy FASTRPC_IOCTL_INVOKE"}
    for backend, other in (("accel", "legacy"), ("legacy", "accel")):
        section = out.split(f"_ test_ported_code_fails[{backend}] _")[1].split("_ test_ported_code_fails[")[0]
        section = section.split("short test summary")[0]
        assert f"backend {backend}\n" in section and "fault fired: ssr:cdsp@invoke=1" in section
        assert ours[backend] in section and ours[other] not in section, section


@pytest.mark.skipif(not (native.SDK_DIR / "lib").is_dir(), reason="the C ABI is not built")
def test_in_process_c_abi_calls_run_on_the_tests_backend(inner):
    # libcdsprpc loaded into the test process is the module-level API: the test's backend too.
    inner.makepyfile(f"""
        import ctypes
        import errno
        import pytest
        import libadsprpc_compat as rpc
        from libadsprpc_compat.ab import TEST_URI

        CODES = {{"accel": rpc.AEE_ENOSUCHDEVICE, "legacy": rpc.AEE_ECONNRESET}}

        @pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal", faults="ssr:cdsp@invoke=1")
        def test_c(fastrpc):
            lib = ctypes.CDLL({str(native.library())!r})
            lib.remote_handle64_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
            lib.remote_handle64_invoke.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p]
            lib.remote_handle64_close.argtypes = [ctypes.c_uint64]
            h = ctypes.c_uint64()
            assert lib.remote_handle64_open(TEST_URI.encode(), ctypes.byref(h)) == 0
            assert rpc.process._records[h.value].session.lib is fastrpc
            assert lib.remote_handle64_invoke(h.value, 0x02000000, None) == CODES[fastrpc.backend]
            assert lib.remote_handle64_close(h.value) == 0
    """)
    inner.runpytest().assert_outcomes(passed=2)


def test_teardown_names_what_leaked_and_cleans_it_up(inner):
    inner.makepyfile("""
        import libadsprpc_compat as rpc
        from libadsprpc_compat.ab import TEST_URI

        LEFT = []

        def test_handle_left_open(fastrpc):
            fastrpc.remote_handle64_open(TEST_URI)

        def test_library_and_rpcmem_left(qdarpc_soc):
            lib = rpc.Library("legacy", qdarpc_soc)
            lib.remote_handle64_open(TEST_URI)
            rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 100)

        def test_module_level_handle_left(qdarpc_soc):
            rpc.remote_handle64_open(TEST_URI)   # the default Library, on qdarpc_soc (the default SoC)

        def test_device_file_left_open(qdarpc_soc):
            f = qdarpc_soc.open("/dev/fastrpc-cdsp")
            f.init_create(attrs=8)
            LEFT.append(f)

        def test_closes_what_the_last_one_left():
            LEFT.pop().close()

        def test_clean(fastrpc):
            h = fastrpc.remote_handle64_open(TEST_URI)
            rpc.remote_handle64_close(h)
    """)
    res = inner.runpytest()
    res.assert_outcomes(passed=6, errors=4)
    out = res.stdout.str()
    assert re.search(r"fastrpc \(accel; the module-level API in this test\): remote_handle64 0x[0-9a-f]+ "
                     r"\(file:///libqdarpc_test_skel.so\?\S+\) left open on cdsp", out)
    assert re.search(r"Library\('legacy'\) made by the test: remote_handle64 0x[0-9a-f]+ \(\S+\) left open on cdsp; "
                     r"call close_all\(\)", out)
    assert "rpcmem: 1 allocation(s) not freed: <RpcMem" in out
    assert re.search(r"the module-level API \(accel\): remote_handle64 0x[0-9a-f]+ \(\S+\) left open on cdsp\n", out)
    assert re.search(r"cdsp: DSP process\(es\) left: user PD client \d+ via legacy \(alive\)", out)
    assert "cdsp: 1 of 8 context bank(s) still taken (a device file left open?)" in out
    assert out.count("qdarpc_soc: the test left FastRPC state behind (cleaned up now)") == 4
    assert rpc.process.counts()["records"] == 0 and rpc.process.counts()["rpcmem"] == 0


_FAILING = """
    import pytest
    import libadsprpc_compat as rpc
    from libadsprpc_compat.ab import TEST_URI, SC_NULL

    @pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal")
    def test_fails(fastrpc):
        h = fastrpc.remote_handle64_open(TEST_URI)
        try:
            rpc.remote_handle64_invoke(h, rpc.REMOTE_SCALARS_MAKE(31, 0, 0), [])
        finally:
            rpc.remote_handle64_close(h)

    def test_passes(fastrpc):
        pass

    def test_fails_without_the_fixtures():
        assert False
"""


def test_a_failing_test_shows_the_tail_of_its_trace(inner):
    inner.makepyfile(_FAILING)
    res = inner.runpytest("--qdarpc-trace-tail=7")
    res.assert_outcomes(passed=1, failed=3)
    out = res.stdout.str()
    assert out.count("qdarpc trace (last 7 events)") == 2  # the two runs of test_fails, nothing else
    res.stdout.fnmatch_lines([
        "*_ test_fails[[]accel[]] _*", "*BadParameterError*",
        "*- qdarpc trace (last 7 events) -*",
        "soc minimal, kernel *, backend accel",
        "faults fired: none",
        "* events, the first * not shown (--qdarpc-trace-tail)",
        "* ms  api    remote_handle64_invoke(0x*, 0x1f000000, [[]0 args[]]) -> AEE_EBADPARM",
        "* ms    ioctl  accel DRM_IOCTL_QDA_INVOKE handle=0x* sc=0x1f000000 args=0 -> AEE_EBADPARM",
        "* ms      dsp    cdsp handle 0x* method 31 sc 0x1f000000 via accel *-> AEE_EBADPARM",
        "* ms  api    remote_handle64_close(0x*)",
        "*_ test_fails[[]legacy[]] _*",
        "*- qdarpc trace (last 7 events) -*",
        "* ms    ioctl  legacy FASTRPC_IOCTL_INVOKE handle=0x* sc=0x1f000000 *",
    ])


@pytest.mark.parametrize("how", ["--qdarpc-trace-tail=0", "ini"])
def test_a_tail_of_zero_shows_no_trace(inner, how):
    inner.makepyfile(_FAILING)
    if how == "ini":
        inner.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\nqdarpc_trace_tail = 0\n")
    res = inner.runpytest(*([how] if how != "ini" else []))
    res.assert_outcomes(passed=1, failed=3)
    assert "qdarpc trace" not in res.stdout.str()


def test_the_ini_option_sets_the_tail(inner):
    inner.makepyfile(_FAILING)
    inner.makeini("[pytest]\naddopts = -p no:cacheprovider\nqdarpc_trace_tail = 2\n")
    res = inner.runpytest("-k", "test_fails")
    assert res.stdout.str().count("qdarpc trace (last 2 events)") == 2


@pytest.mark.parametrize("args,ini,message", [
    (["--qdarpc-trace-tail=-1"], "", "qdarpc trace tail -1: must be >= 0"),
    ([], "qdarpc_trace_tail = many", "ini qdarpc_trace_tail = 'many': not an integer"),
])
def test_a_bad_tail_is_a_usage_error(inner, args, ini, message):
    inner.makepyfile(_FAILING)
    inner.makeini(f"[pytest]\n{ini}\n")
    res = inner.runpytest(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()


def test_an_outer_recorder_keeps_the_events(inner):
    # Under QDARPC_TRACE (or any recording around the run) the test's events still reach that
    # recorder: the plugin reads them from it instead of diverting them.
    inner.makepyfile(_FAILING)
    with trace.recording() as rec:
        res = inner.runpytest("-k", "test_fails and accel")
        assert trace.RECORDER is rec
    res.assert_outcomes(failed=1)
    assert "-> AEE_EBADPARM" in res.stdout.str()
    assert any(e["kind"] == "api" and e["name"] == "remote_handle64_invoke" and e["ret"] for e in rec.events)


def test_faults_from_the_marker_fire(inner):
    inner.makepyfile("""
        import errno
        import pytest
        import libadsprpc_compat as rpc
        from libadsprpc_compat.ab import TEST_URI, SC_NULL

        CODES = {"accel": (rpc.AEE_ENOSUCHDEVICE, errno.ENODEV), "legacy": (rpc.AEE_ECONNRESET, errno.EPIPE)}

        @pytest.mark.qdarpc(faults="alloc:rpcmem@1")
        def test_rpcmem_alloc_fails(qdarpc_soc):
            with pytest.raises(rpc.NoMemoryError) as e:
                rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            assert e.value.aee == rpc.AEE_ENOMEMORY
            m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)  # only the 1st
            rpc.rpcmem_free(m)
            assert [(f.rule, f.n) for f in qdarpc_soc.faults.fired] == [("alloc:rpcmem@1", 1)]

        @pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal", faults="ssr:cdsp@invoke=2")
        def test_ssr_at_the_second_invoke(fastrpc, qdarpc_soc):
            h = fastrpc.remote_handle64_open(TEST_URI)
            rpc.remote_handle64_invoke(h, SC_NULL, [])
            with pytest.raises(rpc.FastRpcError) as e:
                rpc.remote_handle64_invoke(h, SC_NULL, [])
            assert (e.value.aee, e.value.errno) == CODES[fastrpc.backend]
            assert qdarpc_soc.domain("cdsp").restarts == 1
            rpc.remote_handle64_close(h)

        @pytest.mark.qdarpc(backends=["accel", "legacy"], soc="minimal")
        def test_inject_in_a_block(fastrpc, qdarpc_soc):
            h = fastrpc.remote_handle64_open(TEST_URI)
            with qdarpc_soc.faults.inject("ssr:cdsp@invoke=1"):
                with pytest.raises(rpc.FastRpcError) as e:
                    rpc.remote_handle64_invoke(h, SC_NULL, [])
            assert (e.value.aee, e.value.errno) == CODES[fastrpc.backend]
            rpc.remote_handle64_close(h)
            assert qdarpc_soc.faults.rules == []
            h = fastrpc.remote_handle64_open(TEST_URI)   # after the block, on the restarted DSP
            rpc.remote_handle64_invoke(h, SC_NULL, [])
            rpc.remote_handle64_close(h)

        @pytest.mark.qdarpc(soc="minimal", faults="ssr:cdsp@invoke=1")
        def test_fired_faults_head_the_trace(fastrpc):
            h = fastrpc.remote_handle64_open(TEST_URI)
            try:
                rpc.remote_handle64_invoke(h, SC_NULL, [])
            finally:
                rpc.remote_handle64_close(h)
    """)
    res = inner.runpytest("-v")
    res.assert_outcomes(passed=5, failed=1)
    res.stdout.fnmatch_lines([
        "*_ test_fired_faults_head_the_trace _*", "*NoSuchDeviceError*",
        "*- qdarpc trace (last * events) -*",
        "soc minimal, kernel *, backend accel",
        "fault fired: ssr:cdsp@invoke=1 -> cdsp (its event 1): handle 0x* sc 0x2000000",
        "* ms      INJECT ssr:cdsp@invoke=1 -> cdsp (its event 1): handle 0x* sc 0x2000000",
    ])


def test_a_failing_test_names_the_fault_rules_that_never_fired(inner):
    """A rule whose target is misspelled (or whose event never came) fires nothing: the failing
    test's trace says so, after what did fire."""
    inner.makepyfile("""
        import pytest
        import libadsprpc_compat as rpc

        URI = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_dom=cdsp"

        @pytest.mark.qdarpc(soc="minimal", faults="crash:calculater.sum;alloc:rpcmem@1")
        def test_expects_a_crash(fastrpc):
            with pytest.raises(rpc.FastRpcError):
                rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
            h = fastrpc.remote_handle64_open(URI)
            try:
                assert fastrpc.remote_handle64_invoke(h, 0x02010100, [b"\\1\\0\\0\\0", bytearray(8)]) != 0
            finally:
                fastrpc.remote_handle64_close(h)
    """)
    res = inner.runpytest()
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "fault fired: alloc:rpcmem@1 -> rpcmem (its event 1)*",
        "fault rule never fired: crash:calculater.sum (its event never came, or a target is misspelled)",
    ])
    assert "never fired: alloc:rpcmem@1" not in res.stdout.str()


def test_the_example_runs(inner):
    inner.makepyfile(test_example=EXAMPLE.read_text())
    inner.runpytest("-v").assert_outcomes(passed=5)


def test_the_readme_shows_the_example_file():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Testing your FastRPC code with pytest"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text()


@pytest.mark.parametrize("how", ["autoload", "-p qdarpc", "pytest_plugins"])
def test_the_plugin_works_in_a_fresh_project(tmp_path, how):
    # A directory outside the checkout, no PYTHONPATH and no conftest: only the installed
    # package's pytest11 entry point can provide the fixtures and the marker; under
    # PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, -p qdarpc. Listing the module in pytest_plugins too
    # registers it twice, which pytest refuses (README).
    assert ROOT not in tmp_path.parents
    (tmp_path / "test_fresh.py").write_text(
        "import pytest\n"
        "import libadsprpc_compat as rpc\n"
        "from libadsprpc_compat.ab import TEST_URI, SC_NULL\n\n"
        "@pytest.mark.qdarpc(backends=['accel', 'legacy'], soc='minimal')\n"
        "def test_null(fastrpc, qdarpc_soc):\n"
        "    h = fastrpc.remote_handle64_open(TEST_URI)\n"
        "    rpc.remote_handle64_invoke(h, SC_NULL, [])\n"
        "    rpc.remote_handle64_close(h)\n\n"
        "def test_default_backend(fastrpc):\n"
        "    assert fastrpc.backend == 'legacy'\n")
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(PYTHONSAFEPATH="1", QDARPC_BACKEND="legacy")
    args = [sys.executable, "-m", "pytest", "-v", "--strict-markers", "-W", "error", "-p", "no:cacheprovider"]
    if how == "-p qdarpc":
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args += ["-p", "qdarpc"]
    elif how == "pytest_plugins":
        (tmp_path / "conftest.py").write_text('pytest_plugins = ["qdarpc_cli.pytest_plugin"]\n')
        args.remove("error")  # else pytest's warning that it cannot rewrite the module comes first
        args.remove("-W")
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if how == "pytest_plugins":
        assert out.returncode != 0 and "Plugin already registered under a different name" in out.stdout + out.stderr
        return
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("test_fresh.py::test_null[accel] PASSED", "test_fresh.py::test_null[legacy] PASSED",
                 "test_fresh.py::test_default_backend PASSED"):
        assert line in out.stdout


def test_format_trace_nests_calls_and_names_errors():
    ev = {"v": 1, "pid": 1, "tid": 7}
    events = [  # in completion order, as the recorder appends them
        {**ev, "kind": "dsp", "ts": 1_200_000, "dur": 100, "domain": "cdsp", "channel": "legacy", "client_id": 1,
         "pd": 1, "handle": 0x35f08000, "method": 2, "sc": 0x02000000, "retval": 0, "modeled_ns": 2000},
        {**ev, "kind": "ioctl", "ts": 1_100_000, "dur": 500_000, "driver": "legacy", "node": "/dev/fastrpc-cdsp",
         "name": "FASTRPC_IOCTL_INVOKE", "nr": 1, "fields": {"handle": 0x35f08000, "sc": 0x02000000}, "ret": -32,
         "errno": 32, "copied": 8, "shared": 0},
        {**ev, "kind": "api", "ts": 1_000_000, "dur": 900_000, "name": "remote_handle64_invoke", "args": "h, sc",
         "ret": rpc.AEE_ECONNRESET},
        {**ev, "kind": "api", "ts": 0, "dur": 10, "name": "rpcmem_alloc", "args": "25, 1, 8", "ret": 0},
    ]
    text = pytest_plugin.format_trace(events, 3, header="soc x")
    assert text.splitlines() == [
        "soc x",
        "faults fired: none",
        "4 events, the first 1 not shown (--qdarpc-trace-tail)",
        "    +1.000 ms  api    remote_handle64_invoke(h, sc) -> AEE_ECONNRESET",
        "    +1.100 ms    ioctl  legacy FASTRPC_IOCTL_INVOKE handle=0x35f08000 sc=0x02000000 copied 8 B -> EPIPE",
        "    +1.200 ms      dsp    cdsp handle 0x35f08000 method 2 sc 0x02000000 via legacy [modeled 2.0 us]",
    ]
