"""``qdarpc doctor``: the real-node checks against a fake /dev tree (injected root, ioctl and
identity), and the command on this machine (no FastRPC nodes: it says so and checks the emulator)."""
import errno
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cli_helpers import cli_runner, load  # noqa: E402

doctor = load("doctor")

from qda_core import uapi  # noqa: E402

USER = doctor.Identity(uid=1000, gids=frozenset({1000}))
CALC = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0"


def make_tree(tmp_path, nodes: dict[str, int], heap: bool = True) -> pathlib.Path:
    """A fake root: ``nodes`` maps dev-relative paths to modes (files owned by whoever runs the test)."""
    root = tmp_path / "root"
    for rel, mode in nodes.items():
        p = root / "dev" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        p.chmod(mode)
    if heap:
        (root / "dev" / "dma_heap").mkdir(parents=True, exist_ok=True)
        (root / "dev" / "dma_heap" / "system").write_bytes(b"")
        (root / "dev" / "dma_heap" / "system").chmod(0o666)
    (root / "dev").mkdir(parents=True, exist_ok=True)
    return root


def fake_ioctl(answers: dict[str, object]):
    """An ioctl answering per node name: a DSP name (QUERY), a capability 0/1 (GET_DSP_INFO), or an
    errno (> 1); anything else gets ENOTTY, as a file that is no such device does."""

    def ioctl(fd, request, buf):
        name = os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1]
        ans = answers.get(name, errno.ENOTTY)
        if request == uapi.DRM_IOCTL_QDA_QUERY and isinstance(ans, str):
            uapi.drm_qda_query.set(buf, "dsp_name", ans.encode())
        elif request == uapi.FASTRPC_IOCTL_GET_DSP_INFO and ans in (0, 1):
            uapi.fastrpc_ioctl_capability.set(buf, "capability", ans)
        else:
            code = ans if isinstance(ans, int) and ans > 1 else errno.ENOTTY
            raise OSError(code, os.strerror(code))
        return 0

    return ioctl


def by_node(checks):
    return {c.what.split(":")[0]: c for c in checks}


def test_fake_dev_tree_mixed(tmp_path, fd_guard):
    owner = os.getuid()
    root = make_tree(tmp_path, {"fastrpc-cdsp": 0o666, "fastrpc-cdsp-secure": 0o600, "fastrpc-adsp": 0o666,
                                "fastrpc-bogus": 0o666, "accel/accel0": 0o666, "accel/accel1": 0o666,
                                "accel/card0": 0o666})
    nodes = doctor.RealNodes(root, identity=USER if owner != 1000 else doctor.Identity(4242, frozenset()),
                             ioctl=fake_ioctl({"fastrpc-cdsp": 1, "fastrpc-adsp": 0, "accel0": "cdsp"}))
    checks = nodes.checks()
    got = by_node(checks)
    assert got["/dev/fastrpc-cdsp"].status == "ok" and "serves cdsp" in got["/dev/fastrpc-cdsp"].what
    assert "unsigned PDs supported" in got["/dev/fastrpc-cdsp"].what
    assert "no unsigned PDs" in got["/dev/fastrpc-adsp"].what
    sec = got["/dev/fastrpc-cdsp-secure"]
    assert sec.status == "fail" and "no read-write permission" in sec.what and "-rw-------" in sec.what
    assert "udev rule" in sec.fix and "group" in sec.fix
    assert got["/dev/fastrpc-bogus"].status == "warn"
    assert got["/dev/accel/accel0"].status == "ok" and "DRM_IOCTL_QDA_QUERY -> 'cdsp'" in got["/dev/accel/accel0"].what
    other = got["/dev/accel/accel1"]
    assert other.status == "info" and "ENOTTY" in other.what and "not a QDA" in other.what
    assert "/dev/accel/card0" not in got  # only accelN nodes
    assert got["/dev/dma_heap/system"].status == "ok"
    assert not doctor.passed(checks)  # a node the user cannot open is a failed required check
    text = doctor.format_text(checks)
    assert text.startswith("device nodes\n") and "        fix: " in text and text.endswith("failed")


def test_fake_dev_tree_all_good_and_none_usable(tmp_path, fd_guard):
    root = make_tree(tmp_path, {"fastrpc-cdsp": 0o666, "accel/accel0": 0o660}, heap=False)
    ok = doctor.RealNodes(root, identity=doctor.Identity(0, frozenset()),  # root: modes do not stop it
                          ioctl=fake_ioctl({"fastrpc-cdsp": 1, "accel0": "cdsp"})).checks()
    statuses = {c.what.split(":")[0]: c.status for c in ok}
    assert statuses["/dev/fastrpc-cdsp"] == statuses["/dev/accel/accel0"] == "ok"
    heap = next(c for c in ok if "dma_heap" in c.what)
    assert heap.status == "warn" and "CONFIG_DMABUF_HEAPS_SYSTEM" in heap.fix
    assert doctor.passed(ok)
    # nodes exist but answer nothing FastRPC: one failed check says no node is usable
    bad = doctor.RealNodes(root, identity=doctor.Identity(0, frozenset()), ioctl=fake_ioctl({"fastrpc-cdsp": 5})).checks()
    assert any(c.status == "fail" and "no FastRPC node this user can use" in c.what for c in bad)
    assert not doctor.passed(bad)


def test_group_permission(tmp_path, fd_guard):
    root = make_tree(tmp_path, {"fastrpc-cdsp": 0o660})
    gid = (root / "dev" / "fastrpc-cdsp").stat().st_gid
    member = doctor.Identity(uid=4242, gids=frozenset({gid}))
    stranger = doctor.Identity(uid=4242, gids=frozenset({gid + 1}))
    ioctl = fake_ioctl({"fastrpc-cdsp": 1})
    assert by_node(doctor.RealNodes(root, identity=member, ioctl=ioctl).checks())["/dev/fastrpc-cdsp"].status == "ok"
    c = by_node(doctor.RealNodes(root, identity=stranger, ioctl=ioctl).checks())["/dev/fastrpc-cdsp"]
    assert c.status == "fail" and f"gid {gid}" in c.fix


def test_no_nodes_says_so(tmp_path):
    checks = doctor.RealNodes(tmp_path).checks()
    assert len(checks) == 1 and checks[0].status == "info" and "this machine has no DSP" in checks[0].what


@pytest.fixture
def run(fd_guard):
    yield from cli_runner()


def test_doctor_on_this_machine_checks_the_emulator(run, tmp_path):
    env = {"DSP_LIBRARY_PATH": None, "ADSP_LIBRARY_PATH": None}
    out = run("doctor", "--root", tmp_path, env=env).stdout
    assert "this machine has no DSP" in out and out.rstrip().splitlines()[-1].startswith("READY:")
    assert f"kernel revision emulated (accel driver): {uapi.REVISION['accel']}" in out
    assert f"kernel revision emulated (legacy driver): {uapi.REVISION['legacy']}" in out
    assert "ok    cdsp: /dev/accel/accel1 QUERY -> 'cdsp'" in out and "context banks 8/8 free" in out
    assert "/dev/fastrpc-cdsp GET_DSP_INFO -> unsigned PDs" in out and "DSP_LIBRARY_PATH and ADSP_LIBRARY_PATH are unset" in out
    data = json.loads(run("doctor", "--root", tmp_path, "--soc", "full", "--json", env=env).stdout)
    assert data["ok"] and {c["data"].get("domain") for c in data["checks"] if c["group"] == "emulator"} >= {
        "adsp", "mdsp", "sdsp", "cdsp", "cdsp1", "gdsp0", "gdsp1"}


def test_doctor_skels(run, tmp_path):
    skels = tmp_path / "skels"
    skels.mkdir()
    (skels / "libnative_skel.so").write_bytes(b"")  # present, but not loadable: still tells what was found
    env = {"DSP_LIBRARY_PATH": f"{skels};{tmp_path / 'missing'}"}
    res = run("doctor", "--root", tmp_path, "--uri", CALC, "--uri", "file:///libnope_skel.so?nope_skel_handle_invoke"
              "&_modver=1.0", "-d", "adsp", env=env, code=1)
    out = res.stdout
    assert "would load the built-in skel Calculator" in out and "on adsp" in out
    assert "fail  file:///libnope_skel.so" in out and "fix: put libnope_skel.so (host-compiled native skel) or " \
        "libnope_skel.py (Python skel)" in out
    assert "warn  DSP_LIBRARY_PATH=" in out and "1 of 2 entries are not directories" in out
    assert out.rstrip().splitlines()[-1].startswith("NOT READY:")
    assert "bad module name" in run("doctor", "--root", tmp_path, "--uri", "a/b", code=1).stdout


def test_doctor_real_ioctl_on_a_fake_tree(run, tmp_path):
    """Through the command, with the real ioctl: regular files answer ENOTTY, so nothing is usable."""
    root = make_tree(tmp_path, {"fastrpc-cdsp": 0o666, "accel/accel0": 0o666})
    out = run("doctor", "--root", root, code=1).stdout
    assert "/dev/fastrpc-cdsp: opened read-write, but FASTRPC_IOCTL_GET_DSP_INFO -> ENOTTY" in out
    assert "/dev/accel/accel0: DRM_IOCTL_QDA_QUERY -> ENOTTY: not a QDA" in out
    assert "no FastRPC node this user can use" in out


def test_c_checks_report_the_c_face_and_what_plain_c_programs_need(monkeypatch, tmp_path):
    from libadsprpc_compat import native

    checks = doctor.c_checks()
    assert checks[0].status == doctor.OK and "libqdarpc_shim.so" in " ".join(checks[0].data["libraries"])
    assert {c.what.split(":")[0] for c in checks[1:]} >= {"C compiler"} or checks[1].status == doctor.WARN
    monkeypatch.setattr(native, "SDK_DIR", tmp_path / "sdk")  # a bare checkout: nothing built
    (bad,) = doctor.c_checks()
    assert bad.status == doctor.FAIL and "is missing" in bad.what and "pip install" in bad.fix


def test_doctor_shows_the_socs_kernel_revisions(run, tmp_path):
    """--kernel as on every command that builds a SoC; the revisions shown are the SoC's (a
    profile naming its own wins over $QDARPC_KERNEL), semantic ones said to be."""
    from qda_core import kernels

    before = os.environ.get(kernels.ENV)
    env = {kernels.ENV: None}
    out = run("doctor", "--root", tmp_path, "--kernel", "legacy:qda-shim", env=env).stdout
    assert "info  kernel revision emulated (accel driver): accel:qda-rfc-2026-02 (QDA accel RFC" in out
    assert ("info  kernel revision emulated (legacy driver): legacy:qda-shim (qda_fastrpc_shim: /dev/fastrpc-* "
            "served by the QDA driver (latest posting, about Nov 2026)); uapi from commit messages, not exact") in out
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"kernel": "accel:qda-v1-2026-05,legacy:misc-7.2",
                                "domains": [{"name": "cdsp", "context_banks": 2}]}))
    data = json.loads(run("doctor", "--root", tmp_path, "--soc", prof, "--json",
                          env={kernels.ENV: "legacy:qda-shim"}).stdout)
    revs = {c["data"]["driver"]: c["data"] for c in data["checks"] if "driver" in c["data"]}
    assert {f: (d["name"], d["exact"]) for f, d in revs.items()} == {
        "accel": ("accel:qda-v1-2026-05", True), "legacy": ("legacy:misc-7.2", True)}
    assert data["ok"] and any("cdsp: /dev/accel/accel0 QUERY -> 'cdsp'" in c["what"] for c in data["checks"])
    err = run("doctor", "--root", tmp_path, "--soc", prof, "--kernel", "legacy:misc-7.3", code=2).stderr
    assert "contradicts it" in err
    assert os.environ.get(kernels.ENV) == before  # the command's --kernel does not outlive it
