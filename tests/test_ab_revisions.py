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
from cli_helpers import cli_runner, errors, load  # noqa: E402

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
SSR_CLOSE = "close the handle"

#: The steps ``porting`` shows differing between misc-7.3 and the QDA shim, each with its
#: documented reason (docs/spec/kernel_revisions_2026.md; qda_core.kernels.REVISIONS choices).
SHIM_DIFFERS = {
    # §2.3 "CB assignment": the shim takes a bank per file at its first allocation, EBUSY there
    # (INIT_CREATE: the library's raw -1); misc takes it at open (EBUSY -> AEE_ECONNREFUSED)
    CB_LAST,
}
#: The steps ``porting`` shows differing between misc-7.3 and accel v1, with their reasons.
V1_DIFFERS = {
    # fd vs handle buffer identity (docs/spec/qda_accel_uapi.md §8 rows 13-14): the accel library
    # (LIB) names an rpcmem buffer by its GEM handle, misc by the dma-buf fd ...
    DSP_FD,
    # ... and v1 takes only DMA-BUF fds (§2.1), so it reads LIB's handle as a host fd and refuses
    # it (uapi.LIB_DIFFERENCES_V1 "fd fields"):
    BY_REF, MMAP,
    READ, MUNMAP,  # consequences: nothing was mapped (the DSP has no such map; the library none)
    POLL,  # §5: SET_OPTION is misc-7.3's (EOPNOTSUPP: the default profile has no poll mode); v1 has none
    # signed PD rules: misc's non-secure node creates unsigned PDs only (docs/spec/legacy_fastrpc_api.md
    # §7.2); an accel DSP has one node, and v1 has no CAP_SYS_ADMIN rule yet (§2.3 is later)
    SIGNED,
    CB_LAST,  # §2.1 "CB assignment is still per PID": v1 shares one bank per process; misc EBUSY at open
    SSR,  # SSR codes: misc EPIPE, QDA ENODEV (docs/spec/qda_accel_uapi.md §8 row 16; §2.1: as the RFC)
}


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
    assert diff(rep) == SHIM_DIFFERS and rep["differences"] == 1
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
    assert diff(rep) == V1_DIFFERS
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


def test_porting_misc_7_3_vs_the_qda_shim_nothing_else_differs(clean):
    """Beyond the step outcomes, the two legacy runs differ only where a documented difference
    leaves a trace: the shim's one more ioctl (INIT_CREATE -> EBUSY, where misc failed the open)
    and misc's one more DSP message (the INIT_RELEASE upstream's release sends for every file,
    here the one whose signed PD was refused; a shim file that never took a bank sends none,
    qda_core.kernels.REVISIONS["legacy"]["qda-shim"] "context bank"). Same nodes, same bytes."""
    rep = ab.run_ab("porting", sides=[M73, SHIM])
    a, b = rep["runs"][M73], rep["runs"][SHIM]
    assert [(r["op"], r["b"]["op"], r["b"]["step"], r["b"]["error"]) for r in rep["ioctl_alignment"]
            if r["op"] != "="] == [(">", "INIT_CREATE", CB_LAST, "EBUSY")]
    assert (a["nodes"], a["session_nodes"]) == (b["nodes"], b["session_nodes"])
    ta, tb = a["totals"], b["totals"]
    assert {k for k in ta if ta[k] != tb[k]} - {"wall_ns", "modeled_ns"} == {"ioctls", "ioctl_errors", "dsp_calls"}
    assert (tb["ioctls"] - ta["ioctls"], tb["ioctl_errors"] - ta["ioctl_errors"], ta["dsp_calls"] - tb["dsp_calls"]) \
        == (1, 1, 1)
    s = by_name(rep)
    for name, row in s.items():  # per step: everything but the time agrees, except those two steps
        fa, fb = ({k: v for k, v in row[x].items() if k != "wall_ns"} for x in (M73, SHIM))
        if name == SIGNED:
            assert fa["modeled_ns"] > 0 == fb["modeled_ns"] and {k for k in fa if fa[k] != fb[k]} == {"modeled_ns"}
        elif name == CB_LAST:
            assert {k for k in fa if fa[k] != fb[k]} == {"aee", "aee_name", "ioctls"}
        else:
            assert fa == fb, name


def test_porting_misc_7_3_vs_accel_v1_ioctls(clean):
    """The ioctls that differ between misc-7.3 and v1, besides the accel library's own (QUERY to
    find its DSP, PRIME_FD_TO_HANDLE to register an rpcmem fd): each belongs to a differing step
    of V1_DIFFERS, or is the same documented difference seen at the ioctl level."""
    rep = ab.run_ab("porting", sides=[M73, V1])
    rows = [(r["op"], (r["a"] or r["b"])["op"]) for r in rep["ioctl_alignment"]
            if r["op"] != "=" and (r["a"] or r["b"])["op"] not in ("QUERY", "PRIME_FD_TO_HANDLE")]
    assert sorted(rows) == sorted([
        ("!", "INVOKE module 0x07010100"), ("!", "MAP"), ("!", "INVOKE module 0x08010100"),  # fd vs handle
        ("<", "MUNMAP"),  # the library made no map to unmap
        ("<", "SET_OPTION"),  # poll mode: no such accel ioctl
        ("!", "INIT_CREATE"),  # signed PD: refused on misc's non-secure node, created on v1
        # context banks per PID: v1's fourth session is created, used and closed
        (">", "INIT_CREATE"), (">", "INVOKE remotectl1 0x02020200"), (">", "INVOKE current_process 0x02000000"),
        # SSR: the invoke and the close after it, EPIPE vs ENODEV
        ("!", "INVOKE module 0x02000000"), ("!", "INVOKE current_process 0x02000000")])
    ssr = [r for r in rep["ioctl_alignment"] if r["op"] == "!" and r["a"]["step"] in (SSR, SSR_CLOSE)]
    assert [(r["a"]["error"], r["b"]["error"]) for r in ssr] == [("EPIPE", "ENODEV")] * 2


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


# --- the calculator and errors workloads on every revision -----------------------------------------
CALC_OK = ["4000 bytes", "opened", "499500", "opened", "999", "closed", "closed", "freed"]
#: The errors workload per front end (tests/test_ab.py: why the two differ). The revisions of one
#: front end agree on it: the library's GET_DSP_INFO names cdsp, a domain misc-7.2 checks and
#: accepts; the shim answers it from its device cache and fails calls after SSR with EPIPE, as
#: misc does (docs/spec/kernel_revisions_2026.md §3); v1 changed fd fields, which no step uses.
ERRORS_COMMON = ["opened", "0x2c AEE_EINVHANDLE", "opened", "closed", "0x2c AEE_EINVHANDLE",
                 "0x8000043e AEE_ENOSUCHMOD", "0x80000414 AEE_EUNSUPPORTED", "0x8000040e AEE_EBADPARM",
                 None, None, None, "0x8000040d AEE_EBADSTATE", "0x8000040d AEE_EBADSTATE", "closed", "opened",
                 "restarted", None]
ERRORS_OWN = {  # steps 8, 9, 10 and 16: handle 1, munmap of nothing, GET_DSP_INFO, invoke after SSR
    "legacy": ["0x4e AEE_EBADPERMS (errno EPERM)", "0xe AEE_EBADPARM (errno EINVAL)", "4",
               "0x68 AEE_ECONNRESET (errno EPIPE)"],
    "accel": ["0x80000429 AEE_ENOTOWNER", "0x80000448 AEE_ENOSUCHMAP", "0",
              "0x43 AEE_ENOSUCHDEVICE (errno ENODEV)"],
}


def expected_errors(front: str) -> list[str]:
    want = list(ERRORS_COMMON)
    for k, text in zip((8, 9, 10, 16), ERRORS_OWN[front]):
        want[k] = text
    return want


@pytest.mark.parametrize("rev", kernels.valid_names())
def test_calculator_and_errors_workloads_on_every_revision(clean, monkeypatch, rev):
    """Each revision selected on a SoC runs ab's calculator and errors through the library. The
    one calculator failure is v1 through the accel library, as documented: LIB names rpcmem by
    GEM handle where v1 takes DMA-BUF fds (uapi.LIB_DIFFERENCES_V1 "fd fields"); a v1 caller,
    which passes fds, runs the same calculator (selftest: sum copied, max by reference)."""
    from libadsprpc_compat.ab import outcome_text

    front = rev.partition(":")[0]
    soc = Soc(kernel=rev)
    assert str(soc.kernel[front]) == rev
    calc = ab.run_ab("calculator", soc=soc)
    got = [outcome_text(s[front]) for s in calc["steps"]]
    if rev == V1:
        for k in (2, 4):  # calculator_sum, calculator_max: by reference
            o = calc["steps"][k][front]
            assert not o["ok"] and o["errno"] in (errno.EINVAL, errno.EACCES, errno.EBADF), o
            got[k] = CALC_OK[k]
        lines = []
        monkeypatch.setenv(kernels.ENV, rev)
        assert load("selftest").run("cdsp", lines.append), lines
        assert lines[0].startswith(f"kernel {rev}:") and "PASS: sum=499500 max=999" in lines[-1]
    assert got == CALC_OK
    errs = ab.run_ab("errors", soc=Soc(kernel=rev))
    assert [outcome_text(s[front]) for s in errs["steps"]] == expected_errors(front)


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
    assert {s["name"] for s in data["steps"] if not s["same"]} == V1_DIFFERS
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
