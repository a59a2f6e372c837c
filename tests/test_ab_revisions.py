"""``qdarpc ab`` across kernel revisions (#13): sides written ``FRONTEND[:REVISION]``, one SoC
when both fit on one and one each when they need two revisions of one front end, the ``porting``
workload and exactly which of its steps differ for the documented pairs, and the CLI
(``--a``/``--b`` beside ``--order`` and ``--kernel``, ``--exec`` with the side's revision in the
program's environment)."""
import errno
import json
import os
import sys
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import ab
from qda_core import kernels
from qda_core.soc import Soc

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import cli_runner, errors  # noqa: E402

M72, M73, SHIM = "legacy:misc-7.2", "legacy:misc-7.3", "legacy:qda-shim"
RFC, V1 = "accel:qda-rfc-2026-02", "accel:qda-v1-2026-05"
#: The keys of a plain legacy/accel report (as before sides existed).
PLAIN_KEYS = {"workload", "description", "order", "soc", "agree", "first_difference", "differences", "steps",
              "runs", "ioctl_alignment"}

CALC = ["calculator: remote_handle64_open", "calculator: sum of 0..999 (copied)",
        "calculator: max of 0..999 (copied)", "calculator: remote_handle64_close"]
DSP_FD = "dsp_fd(rpcmem fd): the buffer's number on the DSP"
BY_REF = "checksum rpcmem[2048] by reference"
MMAP, READ, MUNMAP = ("fastrpc_mmap(rpcmem fd, FASTRPC_MAP_FD)", "mapped_read(dsp_fd, 0, 8) on the DSP",
                      "fastrpc_munmap(rpcmem fd)")
POLL = "SET_OPTION FASTRPC_POLL_MODE 1 on the session file"
SIGNED = "signed PD on cdsp's non-secure node (accel: its one node)"
CB_LAST = "open session 4 of 4 on adsp (3 context banks)"
SSR = "invoke after the restart"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.delenv("QDARPC_SOC", raising=False)


@pytest.fixture
def clean(fd_guard):
    """No emulator object, rpcmem allocation or session left behind."""
    import gc

    from libadsprpc_compat import process as library
    from qda_core import debug

    gc.collect()
    before, mems = debug.live_objects(), set(library._rpcmem)
    yield
    gc.collect()
    assert debug.live_objects() == before
    assert set(library._rpcmem) == mems


@pytest.fixture
def run(fd_guard):
    """Run ``qdarpc ARGS``; checks that the command left no emulator object or fd behind."""
    yield from cli_runner()


def by_name(rep) -> dict:
    return {s["name"]: s for s in rep["steps"]}


def diff(rep) -> set[str]:
    return {s["name"] for s in rep["steps"] if not s["same"]}


def err(o) -> tuple[int, int]:
    assert not o["ok"], o
    return o["aee"], o["errno"]


# --- sides ----------------------------------------------------------------------------------------
def test_parse_side():
    assert ab.parse_side("legacy") == ("legacy", None) and ab.parse_side(" accel ") == ("accel", None)
    front, rev = ab.parse_side(SHIM)
    assert front == "legacy" and str(rev) == SHIM
    for bad, why in [("gpu", "not a front end"), ("legacy:misc-7.9", "unknown legacy kernel revision 'misc-7.9'"),
                     ("accel:misc-7.3", "unknown accel kernel revision"), (f"{M73},{V1}", "not a front end"),
                     ("", "not a front end")]:
        with pytest.raises(ValueError, match=why) as exc:
            ab.parse_side(bad)
        assert str(exc.value).endswith("valid: " + ", ".join(kernels.valid_names()))


def test_resolve_sides():
    sides, separate = ab.resolve_sides(["legacy", "accel"])
    assert [(s.label, s.frontend, s.revision) for s in sides] == [("legacy", "legacy", M73), ("accel", "accel", RFC)]
    assert not separate and sides[0].kernel == sides[1].kernel == f"{RFC},{M73}"
    # two revisions of one front end: one SoC each, the rest of each SoC from the base
    sides, separate = ab.resolve_sides([M73, SHIM])
    assert separate and [s.label for s in sides] == [M73, SHIM]
    assert [s.kernel for s in sides] == [f"{RFC},{M73}", f"{RFC},{SHIM}"]
    # two front ends: one SoC following both; every label names its revision once one side does
    sides, separate = ab.resolve_sides([M72, "accel"])
    assert not separate and [s.label for s in sides] == [M72, RFC] and {s.kernel for s in sides} == {f"{RFC},{M72}"}
    # a bare side takes the base (kernel=, as --kernel), a named revision wins over it
    sides, separate = ab.resolve_sides(["legacy", SHIM], kernel=f"{V1},{M72}")
    assert separate and [s.label for s in sides] == [M72, SHIM] and sides[1].kernel == f"{V1},{SHIM}"
    sides, _ = ab.resolve_sides([M73, "accel"], kernel=M72)
    assert sides[0].kernel == f"{RFC},{M73}"
    # one revision twice: one SoC, labels told apart
    sides, separate = ab.resolve_sides([SHIM, SHIM])
    assert not separate and [s.label for s in sides] == [f"{SHIM} (a)", f"{SHIM} (b)"]
    sides, _ = ab.resolve_sides(["accel", "accel"])
    assert [s.label for s in sides] == ["accel (a)", "accel (b)"]
    with pytest.raises(ValueError, match="two sides"):
        ab.resolve_sides(["legacy"])


def test_resolve_sides_base_from_the_profile_and_the_environment(tmp_path, monkeypatch):
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"kernel": M72, "domains": [{"name": "cdsp", "context_banks": 2}]}))
    monkeypatch.setenv(kernels.ENV, SHIM)  # below the profile
    sides, separate = ab.resolve_sides(["legacy", M73], soc_profile=str(prof))
    assert separate and [s.label for s in sides] == [M72, M73]
    sides, _ = ab.resolve_sides(["legacy", M73])
    assert sides[0].label == SHIM  # no profile kernel: the environment


def test_given_soc(clean):
    soc = Soc(kernel=f"{V1},{M72}")
    rep = ab.run_ab("calculator", sides=[M72, "accel"], soc=soc)
    assert rep["order"] == [M72, V1] and rep["separate_dsps"] is False
    assert soc.domain("cdsp").dsp.stats.snapshot()["invokes"] > 0
    with pytest.raises(ValueError, match=f"the given SoC runs {V1},{M72}; these sides need {RFC},{M72}"):
        ab.run_ab("calculator", sides=[M72, RFC], soc=soc)
    with pytest.raises(ValueError, match="these sides need"):
        ab.run_ab("calculator", sides=[M72, M73], soc=soc)
    with pytest.raises(ValueError, match="sides or the order"):
        ab.run_ab("calculator", sides=[M72, M73], order=["accel", "legacy"])


def test_plain_sides_are_the_plain_report(clean):
    """No revision named: the report is the legacy/accel one, key for key."""
    for kw in ({}, {"sides": ["legacy", "accel"]}):
        rep = ab.run_ab("calculator", **kw)
        assert set(rep) == PLAIN_KEYS and rep["order"] == ["legacy", "accel"] and set(rep["runs"]) == {"legacy", "accel"}
    rep = ab.run_ab("calculator", sides=["accel", "legacy"])
    assert set(rep) == PLAIN_KEYS and rep["order"] == ["accel", "legacy"]
    assert rep["runs"]["accel"]["backend"] == "accel"


def test_separate_socs_run_each_sides_revision(clean, monkeypatch):
    """Each side on its own SoC of the same profile, built with that side's revision."""
    built = []
    real = Soc.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        built.append((self.kernel_spec, [(d.name, len(d.bus.cbs)) for d in self.domains.values()]))
    monkeypatch.setattr(Soc, "__init__", spy)
    rep = ab.run_ab("calculator", sides=[M73, SHIM], soc_profile="minimal")
    assert built == [(f"{RFC},{M73}", [("cdsp", 2)]), (f"{RFC},{SHIM}", [("cdsp", 2)])]
    assert rep["separate_dsps"] is True and rep["soc"] == "minimal" and rep["agree"]
    assert rep["sides"] == {M73: {"frontend": "legacy", "revision": M73, "kernel": f"{RFC},{M73}"},
                            SHIM: {"frontend": "legacy", "revision": SHIM, "kernel": f"{RFC},{SHIM}"}}
    assert list(rep["runs"]) == [M73, SHIM] and rep["runs"][SHIM]["backend"] == "legacy"
    assert all(r["session_nodes"] == ["/dev/fastrpc-cdsp-secure"] for r in rep["runs"].values())
    built.clear()
    ab.run_ab("calculator", sides=[M72, V1])
    assert [k for k, _ in built] == [f"{V1},{M72}"]  # two front ends: one SoC


def test_builtins_and_user_workloads_run_against_any_pair(clean, tmp_path):
    def mine(lib):
        """Checksums through either side."""
        h = lib.remote_handle64_open(ab.TEST_URI)
        out = bytearray(8)
        rpc.remote_handle64_invoke(h, ab.SC_CHECKSUM, [b"\x01\x02\x03", out])
        rpc.remote_handle64_close(h)
        return [("checksum", int.from_bytes(out, "little"))]

    for sides in ([M72, SHIM], [RFC, V1], [SHIM, V1]):
        rep = ab.run_ab(mine, sides=sides)
        assert rep["agree"] and rep["order"] == sides and rep["workload"] == "mine"
    script = tmp_path / "wl.py"
    script.write_text("import libadsprpc_compat as rpc\n"
                      "from libadsprpc_compat.ab import Steps, TEST_URI\n"
                      "def workload(lib):\n"
                      "    s = Steps()\n"
                      "    h = s.call('open', lib.remote_handle64_open, TEST_URI, show=lambda _: 'ok')\n"
                      "    s.call('null', rpc.remote_handle64_invoke, h, 0x02000000, [], show=lambda _: 'ok')\n"
                      "    return s\n")
    rep = ab.run_ab(ab.load_script(str(script)), sides=[M73, SHIM], name="wl.py")
    assert rep["agree"] and rep["workload"] == "wl.py" and rep["steps"][1][SHIM]["ioctls"] == 1
    # the legacy revisions agree on every front-end workload; accel v1 breaks the library's
    # rpcmem by reference (uapi.LIB_DIFFERENCES_V1), the calculator's sum and max
    for name in ab.ALL:
        assert ab.run_ab(name, sides=[M72, SHIM])["agree"], name
    assert diff(ab.run_ab("calculator", sides=[RFC, V1])) == {"calculator_sum  sc 0x02020100",
                                                               "calculator_max  sc 0x03020100"}


def test_v1_ioctls_align_with_the_others(clean):
    rep = ab.run_ab("calculator", sides=[M73, V1])
    pairs = {(r["a"]["name"], r["b"]["name"]) for r in rep["ioctl_alignment"] if r["a"] and r["b"]}
    assert ("FASTRPC_IOCTL_INIT_CREATE", "DRM_IOCTL_QDA_REMOTE_SESSION_CREATE") in pairs
    assert ("FASTRPC_IOCTL_INVOKE", "DRM_IOCTL_QDA_REMOTE_INVOKE") in pairs
    v1 = rep["runs"][V1]
    assert v1["totals"]["invokes"] == 6 and v1["session_nodes"] == ["/dev/accel/accel1"]


# --- the porting workload -------------------------------------------------------------------------
def test_porting_is_registered_but_not_in_all():
    assert "porting" in ab.WORKLOADS and ab.DESCRIPTIONS["porting"].startswith("What differs between kernel")
    assert ab.ALL == ("calculator", "rpcmem-roundtrip", "mmap-lifecycle", "errors")
    assert set(ab.ALL) | {"porting"} == set(ab.WORKLOADS)


def test_porting_misc_7_3_vs_the_qda_shim(clean):
    """Two legacy revisions, one SoC each. The one difference a library user sees: the misc
    driver takes a context bank at open (EBUSY there: the library's AEE_ECONNREFUSED), the shim
    at the PD's creation (EBUSY from INIT_CREATE: the library's raw -1)."""
    rep = ab.run_ab("porting", sides=[M73, SHIM])
    assert rep["order"] == [M73, SHIM] and rep["separate_dsps"] is True
    assert diff(rep) == {CB_LAST} and rep["differences"] == 1
    s = by_name(rep)
    assert err(s[CB_LAST][M73]) == (rpc.AEE_ECONNREFUSED, errno.EBUSY)
    assert err(s[CB_LAST][SHIM]) == (0xFFFF_FFFF, errno.EBUSY)
    assert rep["first_difference"] == {"index": s[CB_LAST]["index"], "name": CB_LAST,
                                       M73: "0x72 AEE_ECONNREFUSED (errno EBUSY)",
                                       SHIM: "0xffffffff AEE_EUNKNOWN (errno EBUSY)"}
    for side in (M73, SHIM):  # what both do alike
        assert [s[n][side]["value"] for n in CALC] == ["opened", 499500, 999, "closed"]
        assert s[DSP_FD][side]["value"] == "the dma-buf fd itself" and s[BY_REF][side]["value"] == 255 * 128 * 8
        assert s[READ][side]["value"] == "mapped!!"
        assert s[POLL][side]["value"] == "EOPNOTSUPP"  # the default profile has no poll mode
        assert err(s[SIGNED][side]) == (rpc.AEE_ECONNREFUSED, errno.ECONNREFUSED)
        assert err(s[SSR][side]) == (rpc.AEE_ECONNRESET, errno.EPIPE)
        assert s["recovery: invoke"][side]["value"] == "ok"
        ioctls = {x["name"] for x in rep["runs"][side]["ioctls"]}
        assert "FASTRPC_IOCTL_SET_OPTION" in ioctls and rep["runs"][side]["session_nodes"][0] == \
            "/dev/fastrpc-cdsp-secure"


def test_porting_misc_7_3_vs_accel_v1(clean):
    """A legacy and an accel revision, one SoC: the fd vs GEM handle identity (and the library's
    GEM handles refused by v1's DMA-BUF fd fields), no SET_OPTION on accel, no signed-PD rule
    for the accel node, context banks shared per process, and the SSR codes."""
    rep = ab.run_ab("porting", sides=[M73, V1])
    assert rep["order"] == [M73, V1] and rep["separate_dsps"] is False
    assert diff(rep) == {DSP_FD, BY_REF, MMAP, READ, MUNMAP, POLL, SIGNED, CB_LAST, SSR}
    s = by_name(rep)
    for n in CALC:
        assert s[n]["same"] and s[n][V1]["ok"]
    assert (s[DSP_FD][M73]["value"], s[DSP_FD][V1]["value"]) == ("the dma-buf fd itself",
                                                                 "a GEM handle of the session file")
    assert s[BY_REF][M73]["value"] == 261120
    # v1 reads the GEM handle as a host fd: what it answers depends on that fd's file
    for step in (BY_REF, MMAP):
        o = s[step][V1]
        assert not o["ok"] and o["errno"] in (errno.EINVAL, errno.EACCES, errno.EBADF), o
    assert s[READ][V1]["aee"] == 0x80000448 and s[MUNMAP][V1]["aee"] == rpc.AEE_ENOSUCHMAP
    assert (s[POLL][M73]["value"], s[POLL][V1]["value"]) == ("EOPNOTSUPP", "no SET_OPTION ioctl in the accel uapi")
    assert err(s[SIGNED][M73]) == (rpc.AEE_ECONNREFUSED, errno.ECONNREFUSED) and s[SIGNED][V1]["value"] == \
        "signed PD created"
    assert err(s[CB_LAST][M73]) == (rpc.AEE_ECONNREFUSED, errno.EBUSY) and s[CB_LAST][V1]["value"] == "opened"
    assert err(s[SSR][M73]) == (rpc.AEE_ECONNRESET, errno.EPIPE)
    assert err(s[SSR][V1]) == (rpc.AEE_ENOSUCHDEVICE, errno.ENODEV)
    assert s["recovery: invoke"][V1]["value"] == "ok"
    names = {x["name"] for x in rep["runs"][V1]["ioctls"]}
    assert "DRM_IOCTL_QDA_REMOTE_INVOKE" in names and "DRM_IOCTL_QDA_INVOKE" not in names


def test_porting_default_pair(clean):
    """``qdarpc ab porting``: legacy vs accel at the defaults, one SoC, the plain report."""
    rep = ab.run_ab("porting")
    assert set(rep) == PLAIN_KEYS and rep["order"] == ["legacy", "accel"]
    assert diff(rep) == {DSP_FD, POLL, SIGNED, CB_LAST, SSR}


@pytest.mark.parametrize("rev", kernels.valid_names())
def test_porting_one_revision_twice_agrees_on_every_step(clean, rev):
    rep = ab.run_ab("porting", sides=[rev, rev])
    assert rep["agree"] and rep["differences"] == 0 and rep["separate_dsps"] is False
    assert rep["order"] == [f"{rev} (a)", f"{rev} (b)"]


def test_porting_on_other_profiles(clean):
    """Poll mode where the platform has it (full: misc-7.3 and the shim accept SET_OPTION, 7.2
    has no such ioctl); the context banks of the smallest DSP (minimal: cdsp's two)."""
    rep = ab.run_ab("porting", sides=[M72, M73], soc_profile="full")
    s = by_name(rep)
    assert (s[POLL][M72]["value"], s[POLL][M73]["value"]) == ("ENOTTY", "0: poll mode on")
    rep = ab.run_ab("porting", sides=[M73, SHIM], soc_profile="minimal")
    assert diff(rep) == {"open session 3 of 3 on cdsp (2 context banks)"}


# --- the CLI --------------------------------------------------------------------------------------
def test_cli_two_legacy_revisions(run):
    out = run("ab", "porting", "--a", M73, "--b", SHIM).stdout
    lines = out.splitlines()
    assert lines[1] == (f"one emulated DSP each (SoC default): {M73} via /dev/fastrpc-cdsp-secure (also "
                        f"/dev/fastrpc-adsp, /dev/fastrpc-cdsp), then {SHIM} via /dev/fastrpc-cdsp-secure (also "
                        "/dev/fastrpc-adsp, /dev/fastrpc-cdsp)")
    assert lines[2] == f"kernels: {M73} on {RFC},{M73}; {SHIM} on {RFC},{SHIM}"
    assert "LEGACY:MISC-7.3" in lines[4] and "LEGACY:QDA-SHIM" in lines[4]
    assert "DIFF: 1 of 29 steps differ; first at step 19 (open session 4 of 4 on adsp (3 context banks))" in out
    run("ab", "porting", "--a", M73, "--b", SHIM, "--fail-on-diff", code=errors.EXIT_FAILED)
    run("ab", "porting", "--a", SHIM, "--b", SHIM, "--fail-on-diff")


def test_cli_json_and_html(run, tmp_path):
    page = tmp_path / "r.html"
    data = json.loads(run("ab", "porting", "--a", M73, "--b", V1, "--json", "--html", page).stdout)
    assert data["order"] == [M73, V1] and data["separate_dsps"] is False and set(data["runs"]) == {M73, V1}
    assert {s["name"] for s in data["steps"] if not s["same"]} == {DSP_FD, BY_REF, MMAP, READ, MUNMAP, POLL, SIGNED,
                                                                  CB_LAST, SSR}
    text = page.read_text()
    assert f"kernel {V1},{M73}" in text and "one emulated DSP (SoC default)" in text and M73 in text
    assert "a front end at a kernel revision" in text
    out = run("ab", "porting", "--a", M73, "--b", V1).stdout.splitlines()
    assert out[2] == f"kernel {V1},{M73}"
    assert out[3].startswith(f"note: {V1} started on /dev/accel/accel3: the {M73} run restarted cdsp")


def test_cli_kernel_and_sides(run):
    # --kernel sets the SoC(s); a bare side runs the revision in force, a named one its own
    data = json.loads(run("ab", "calculator", "--kernel", M72, "--a", "legacy", "--b", SHIM, "--json").stdout)
    assert data["order"] == [M72, SHIM] and data["separate_dsps"] is True and data["agree"]
    assert data["sides"][SHIM]["kernel"] == f"{RFC},{SHIM}"
    data = json.loads(run("ab", "calculator", "--kernel", V1, "--a", "accel", "--b", RFC, "--json").stdout)
    assert data["order"] == [V1, RFC] and data["separate_dsps"] is True
    # only one side given: the other is its default (--a legacy, --b accel)
    data = json.loads(run("ab", "calculator", "--a", M72, "--json").stdout)
    assert data["order"] == [M72, RFC] and data["separate_dsps"] is False
    data = json.loads(run("ab", "calculator", "--b", SHIM, "--json").stdout)
    assert data["order"] == [M73, SHIM] and data["separate_dsps"] is True
    # bare sides, as --order: the plain report
    data = json.loads(run("ab", "calculator", "--a", "accel", "--b", "legacy", "--json").stdout)
    assert set(data) == PLAIN_KEYS and data["order"] == ["accel", "legacy"]
    assert kernels.ENV not in os.environ


@pytest.mark.parametrize("args,why", [
    (["--a", "gpu"], "Invalid value for '--a': side 'gpu' is not a front end"),
    (["--b", "legacy:misc-7.9"], "Invalid value for '--b': unknown legacy kernel revision 'misc-7.9'"),
    (["--a", M73, "--order", "accel,legacy"], "--order and --a/--b both pick the sides"),
])
def test_cli_side_errors(run, args, why):
    res = run("ab", "calculator", *args, code=errors.EXIT_USAGE)
    assert why in res.stderr and "Traceback" not in res.output


def test_cli_exec_passes_each_sides_revision(run):
    prog = ["--", "sh", "-c", 'echo "${QDARPC_KERNEL-unset} $QDARPC_BACKEND"']
    data = json.loads(run("ab", "--exec", "--a", M72, "--b", V1, "--json", *prog).stdout)
    assert data["order"] == [M72, V1] and data["separate_dsps"] is True
    assert {s["name"]: (s[M72]["value"], s[V1]["value"]) for s in data["steps"]} == {
        "exit code": (0, 0), "stdout line 1": (f"{V1},{M72} legacy", f"{V1},{M72} accel")}  # one selection
    assert data["sides"][V1] == {"frontend": "accel", "revision": V1, "kernel": f"{V1},{M72}"}
    assert data["runs"][V1]["backend"] == "accel"
    data = json.loads(run("ab", "--exec", "--kernel", V1, "--a", M73, "--b", SHIM, "--json", *prog).stdout)
    assert [s[SHIM]["value"] for s in data["steps"]] == [0, f"{V1},{SHIM} legacy"]
    # no revision named: the plain run, the environment as it is
    data = json.loads(run("ab", "--exec", "--a", "accel", "--b", "legacy", "--json", *prog).stdout)
    assert data["order"] == ["accel", "legacy"] and "sides" not in data
    assert data["steps"][1]["accel"]["value"] == "unset accel"
    assert kernels.ENV not in os.environ


def test_cli_exec_shim_follows_each_sides_revision(run):
    """Under the device shim the program's own emulator builds its SoC from QDARPC_KERNEL: the
    QDA shim registers GDSP nodes, misc does not."""
    from libadsprpc_compat import native

    try:
        native.shim()
    except native.NotBuiltError:
        pytest.skip("the device shim is not built")
    script = 'for n in /dev/fastrpc-gdsp0 /dev/fastrpc-cdsp; do [ -e $n ] && echo "$n yes" || echo "$n no"; done'
    data = json.loads(run("ab", "--exec", "--shim", "--soc", "full", "--a", M73, "--b", SHIM, "--json", "--",
                          "sh", "-c", script).stdout)
    assert [(s["name"], s[M73]["value"], s[SHIM]["value"]) for s in data["steps"]] == [
        ("exit code", 0, 0), ("stdout line 1", "/dev/fastrpc-gdsp0 no", "/dev/fastrpc-gdsp0 yes"),
        ("stdout line 2", "/dev/fastrpc-cdsp yes", "/dev/fastrpc-cdsp yes")]


def test_cli_exec_refuses_a_side_its_profile_overrides(run, tmp_path):
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"kernel": M72, "domains": [{"name": "cdsp", "context_banks": 2}]}))
    res = run("ab", "--exec", "--soc", prof, "--a", "legacy", "--b", SHIM, "--", "true", code=errors.EXIT_USAGE)
    assert f"names kernel {RFC},{M72}" in res.stderr and f"side {SHIM} needs {RFC},{SHIM}" in res.stderr
    # in-process a side's revision is given to the SoC directly, over the profile
    data = json.loads(run("ab", "calculator", "--soc", prof, "--a", "legacy", "--b", SHIM, "--json").stdout)
    assert data["order"] == [M72, SHIM] and data["agree"]


def test_cli_help_names_the_sides(run):
    text = " ".join(run("ab", "--help").stdout.split())
    assert "--a FRONTEND[:REVISION]" in text and "--b FRONTEND[:REVISION]" in text
    assert "qdarpc ab porting --a legacy:misc-7.3 --b legacy:qda-shim" in text
