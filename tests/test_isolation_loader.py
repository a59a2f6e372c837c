"""Issue #8 item 5: the module loader loads only what lies inside the DSP library search path.

Native skels run in the host process, so a URI that escapes the search path would dlopen any
host library and call any symbol in it (``libc.so.6?abort`` kills the process). Every open that
could reach a host library runs in a child process: a regression aborts the child, not pytest.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qda_core.dsp import aee
from qda_core.dsp.loader import Loader, LoadError, ModuleUri

TESTS = Path(__file__).parent

# Opens each URI on a fresh emulated DSP (DSP level, then through both drivers via the legacy
# API) and prints [[dlerr, text], ...]; the child dies if a URI reaches libc's abort.
CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from dsp_helpers import Client, FakeMemory
from qda_core.dsp import EmulatedDsp
env, uris = json.loads(sys.argv[2]), json.loads(sys.argv[3])
mem = FakeMemory()
c = Client(EmulatedDsp("cdsp", mem, skel_path_env=env), mem, client_id=1)
assert c.create(attrs=0x8) == 0
out = []
for uri in uris:
    rv, h, dlerr, text = c.open(uri)
    assert rv == 0, rv
    out.append([dlerr, text])
print(json.dumps(out))
"""

# The same through the public legacy API on each backend (the drivers' remotectl path).
CHILD_API = r"""
import json, os, sys
import libadsprpc_compat as rpc
from qda_core.soc import Soc
out = []
for backend in ("accel", "legacy"):
    lib = rpc.Library(backend=backend, soc=Soc())
    try:
        lib.remote_handle64_open(sys.argv[1])
        out.append([backend, 0])
    except rpc.FastRpcError as e:
        out.append([backend, e.aee])
    finally:
        lib.close_all()
print(json.dumps(out))
"""

OPEN = "?{sym}&_modver=1.0"
NAT_SRC = r"""
#include <stdint.h>
int nat_skel_handle_invoke(uint64_t h, uint32_t sc, void *pra) {
    (void)h; (void)pra;
    switch ((sc >> 24) & 0x1f) { case 0: case 1: return 0; }
    return 0x80000414;
}
"""
# A Python skel that leaves a marker when its file is executed at all.
MARKER_SKEL = """
import pathlib
pathlib.Path(__file__).with_suffix(".ran").write_text("ran")
from qda_core.dsp import Skeleton
class Evil(Skeleton):
    pass
"""


def _libc() -> str:
    """The host libc this interpreter has loaded (absolute path)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if path.startswith("/") and os.path.basename(path).startswith("libc.so"):
                return path
    pytest.skip("no libc.so in /proc/self/maps")


def _open_in_child(env: dict, uris: list[str]) -> list[tuple[int, str]]:
    p = subprocess.run([sys.executable, "-c", CHILD, str(TESTS), json.dumps(env), json.dumps(uris)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"child died ({p.returncode}): {p.stderr[-2000:]}"
    return [tuple(r) for r in json.loads(p.stdout)]


@pytest.fixture
def dirs(tmp_path):
    """``search`` (the DSP_LIBRARY_PATH) and ``outside`` holding a marker skel."""
    search, outside = tmp_path / "search", tmp_path / "outside"
    search.mkdir()
    outside.mkdir()
    (outside / "libevil_skel.py").write_text(MARKER_SKEL)
    return search, outside


def test_libc_abort_uri_is_a_bad_uri(dirs):
    """The reported crash: an absolute path to libc with symbol abort."""
    search, _ = dirs
    uri = f"file:///{_libc()}" + OPEN.format(sym="abort")
    assert uri.startswith("file:////")
    [(dlerr, text)] = _open_in_child({"DSP_LIBRARY_PATH": str(search)}, [uri])
    assert dlerr == aee.ERR_BAD_URI and "absolute path" in text


def test_libc_abort_uri_through_both_drivers(dirs):
    search, _ = dirs
    uri = f"file:///{_libc()}" + OPEN.format(sym="abort") + "&_dom=cdsp"
    p = subprocess.run([sys.executable, "-c", CHILD_API, uri], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DSP_LIBRARY_PATH": str(search)})
    assert p.returncode == 0, f"child died ({p.returncode}): {p.stderr[-2000:]}"
    assert json.loads(p.stdout) == [["accel", aee.ERR_BAD_URI], ["legacy", aee.ERR_BAD_URI]]


@pytest.mark.parametrize("path", ["../outside/libevil_skel.so", "sub/../../outside/libevil_skel.so",
                                  "./../outside/libevil_skel.so"])
def test_dotdot_escape_is_a_bad_uri(dirs, path):
    search, outside = dirs
    (search / "sub").mkdir()
    [(dlerr, text)] = _open_in_child({"DSP_LIBRARY_PATH": str(search)},
                                     [f"file:///{path}" + OPEN.format(sym="evil_skel_handle_invoke")])
    assert dlerr == aee.ERR_BAD_URI and "leaves the DSP library search path" in text
    assert not (outside / "libevil_skel.ran").exists()


def test_dotdot_escape_from_domain_dir_is_refused(dirs):
    """``dir/<domain>/`` is searched first: ``..`` from there must not reach ``dir/..``."""
    search, outside = dirs
    (search / "cdsp").mkdir()
    [(dlerr, _)] = _open_in_child({"DSP_LIBRARY_PATH": str(search)},
                                  ["file:///../outside/libevil_skel.so" + OPEN.format(sym="x")])
    assert dlerr == aee.ERR_BAD_URI and not (outside / "libevil_skel.ran").exists()


def test_symlink_out_of_search_path_is_not_found(dirs):
    search, outside = dirs
    libc = _libc()
    (search / "libc_skel.so").symlink_to(libc)                     # a file link to libc
    (search / "hostlib").symlink_to(os.path.dirname(libc))         # a directory link out
    (search / "libevil_skel.py").symlink_to(outside / "libevil_skel.py")  # a Python skel link out
    uris = ["file:///libc_skel.so" + OPEN.format(sym="abort"),
            f"file:///hostlib/{os.path.basename(libc)}" + OPEN.format(sym="abort"),
            "file:///libevil_skel.so" + OPEN.format(sym="evil_skel_handle_invoke")]
    results = _open_in_child({"DSP_LIBRARY_PATH": str(search)}, uris)
    for dlerr, text in results:
        assert dlerr == aee.ERR_MOD_NOT_FOUND and "outside the DSP library search path" in text
    assert not (outside / "libevil_skel.ran").exists()


def test_hand_built_uri_with_absolute_path_is_refused(dirs):
    """``Loader.resolve`` checks too: a ModuleUri need not come from ``parse_uri``."""
    _, outside = dirs
    loader = Loader("cdsp", {}, env={"DSP_LIBRARY_PATH": str(outside.parent / "search")})
    uri = ModuleUri("x", str(outside / "libevil_skel.so"), "evil_skel_handle_invoke", {"_modver": "1.0"})
    with pytest.raises(LoadError) as e:
        loader.resolve(uri)
    assert e.value.code == aee.ERR_BAD_URI and "absolute path" in e.value.text
    assert not (outside / "libevil_skel.ran").exists()


def test_relative_paths_inside_the_search_path_still_load(dirs):
    search, _ = dirs
    (search / "sub").mkdir()
    (search / "sub" / "libin_skel.py").write_text(
        "from qda_core.dsp import Skeleton\nclass In(Skeleton):\n    pass\n")
    (search / "linked").symlink_to(search / "sub")                  # a link that stays inside
    sym = OPEN.format(sym="in_skel_handle_invoke")
    results = _open_in_child({"DSP_LIBRARY_PATH": str(search)},
                             ["file:///sub/libin_skel.so" + sym, "file:///sub/../sub/libin_skel.so" + sym,
                              "file:///linked/libin_skel.so" + sym, "file:///libcalculator_skel.so"
                              "?calculator_skel_handle_invoke&_modver=1.0"])
    assert [dlerr for dlerr, _ in results] == [0, 0, 0, 0], results


@pytest.mark.needs_cc
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_native_skels_inside_the_search_path_still_load(dirs):
    search, _ = dirs
    (search / "nat.c").write_text(NAT_SRC)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-o",
                    str(search / "libnat_skel.so.1"), str(search / "nat.c")], check=True)
    (search / "libnat_skel.so").symlink_to("libnat_skel.so.1")     # the usual soname link
    (search / "cdsp").mkdir()
    shutil.copy(search / "libnat_skel.so.1", search / "cdsp" / "libdom_skel.so")
    results = _open_in_child({"DSP_LIBRARY_PATH": str(search)},
                             ["file:///libnat_skel.so" + OPEN.format(sym="nat_skel_handle_invoke"),
                              "file:///libnat_skel.so.1" + OPEN.format(sym="nat_skel_handle_invoke"),
                              "file:///libdom_skel.so" + OPEN.format(sym="nat_skel_handle_invoke")])
    assert [dlerr for dlerr, _ in results] == [0, 0, 0], results
