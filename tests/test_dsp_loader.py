"""Emulated DSP: URI parsing, remotectl open/close byte layouts, skel resolution order."""
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qda_core.dsp import EmulatedDsp, aee, parse_uri

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import CALC_URI, TEST_URI, Client, FakeMemory, u32  # noqa: E402


@pytest.fixture
def mem():
    return FakeMemory()


def make_client(env, mem, domain="cdsp"):
    dsp = EmulatedDsp(domain, mem, skel_path_env=env)
    c = Client(dsp, mem, client_id=1)
    assert c.create(attrs=0x8 if domain == "cdsp" else 0) == 0
    return c


@pytest.fixture
def client(mem):
    return make_client({}, mem)


# -- URI grammar -----------------------------------------------------------------------------

def test_parse_uri_forms():
    u = parse_uri(CALC_URI + "&_session=1&flag")
    assert (u.file, u.symbol, u.modver) == ("libcalculator_skel.so", "calculator_skel_handle_invoke", "1.0")
    assert dict(u.params) == {"_modver": "1.0", "_idlver": "1.2.3", "_dom": "cdsp", "_session": "1", "flag": None}
    assert u.handle_style
    u = parse_uri("file://libx_skel.so?x_skel_invoke")
    assert (u.file, u.symbol, u.handle_style) == ("libx_skel.so", "x_skel_invoke", False)
    u = parse_uri("adsp_current_process")
    assert (u.file, u.symbol, u.handle_style) == ("libadsp_current_process_skel.so",
                                                  "adsp_current_process_skel_invoke", False)
    for bad in ("file:///libx_skel.so", "file:///libx_skel.so?", "file:///?sym", "file:///a.so?s&=v", ""):
        with pytest.raises(ValueError):
            parse_uri(bad)


# -- remotectl byte layouts -------------------------------------------------------------------

@pytest.mark.parametrize("via", [0, 8])
def test_open_close_layout_builtin(client, via):
    rv, h1, dlerr, text = client.open(TEST_URI, via=via)
    assert (rv, dlerr, text) == (0, 0, "")
    rv, h2, dlerr, _ = client.open(TEST_URI, via=via)
    assert rv == 0 and dlerr == 0
    assert h1 > 0x200 and h2 > 0x200 and h1 != h2 and h1 < 1 << 32
    info = client.dsp.processes()[0]
    assert info.modules == ((h1, TEST_URI), (h2, TEST_URI))
    assert client.send(h1, 0x02000000)[0] == 0
    assert client.close(h1, via=via) == (0, 0, "")
    assert u32(client.send(h1, 0x02000000)[0]) == 0x8000043E
    rv, dlerr, text = client.close(h1, via=via)
    assert rv == 0 and dlerr == 0x8000043E and "not open" in text


def test_open_raw_bytes(client):
    """in0 {name_len, dlerror_len}, in1 name, out0 {handle, dlerr}, out1 text: exact bytes."""
    name = TEST_URI.encode() + b"\0"
    rv, (out0, out1) = client.send(0, 0x00020200, [struct.pack("<II", len(name), 16), name], [8, 16])
    handle, dlerr = struct.unpack("<II", out0)
    assert rv == 0 and dlerr == 0 and handle >= 0x35F08000 and out1 == b"\0" * 16
    bad = b"file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0\0"
    rv, (out0, out1) = client.send(0, 0x00020200, [struct.pack("<II", len(bad), 16), bad], [8, 16])
    assert rv == 0 and struct.unpack("<II", out0) == (0, 0x8000043E)
    assert out1[15] == 0 and out1.startswith(b"libnope_skel.so")  # truncated to dlerror_len, NUL-ended
    rv, _ = client.send(0, 0x00020200, [struct.pack("<II", len(name) + 3, 16), name], [8, 16])
    assert u32(rv) == 0x8000040E  # name_len disagrees with the buffer


def test_handles_step_like_heap_addresses(client):
    hs = [client.open(TEST_URI)[1] for _ in range(3)]
    assert hs[1] - hs[0] == hs[2] - hs[1] == 0x10


def test_close_calls_skel_close_once_and_release_closes_the_rest(tmp_path, mem):
    log = tmp_path / "log.txt"
    (tmp_path / "libclosey_skel.py").write_text(textwrap.dedent(f"""
        from qda_core.dsp import Skeleton
        def note(what):
            with open({str(log)!r}, "a") as f:
                f.write(what + "\\n")
        class Closey(Skeleton):
            def open(self, uri):
                note("open")
                return 0
            def close(self):
                note("close")
                return 0x8000040e
    """))
    c = make_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    uri = "file:///libclosey_skel.so?closey_skel_handle_invoke&_modver=1.0"
    h = c.open(uri)[1]
    assert c.close(h)[:2] == (0, 0x8000040E)  # skel close status comes back as dlerr
    c.open(uri)
    assert c.release() == 0
    assert log.read_text().split() == ["open", "close", "open", "close"]  # still open at release: closed then


# -- resolution: not found, symbol missing, builtin, plugin, path, native ------------------------

def test_module_not_found(client):
    rv, h, dlerr, text = client.open("file:///libmissing_skel.so?missing_skel_handle_invoke&_modver=1.0")
    assert (rv, h, dlerr) == (0, 0, aee.ERR_MOD_NOT_FOUND) and "No such file" in text


def test_symbol_missing(client):
    rv, h, dlerr, text = client.open("file:///libcalculator_skel.so?calculator_skel_nope&_modver=1.0")
    assert (rv, h, dlerr) == (0, 0, 0x80000442) and "calculator_skel_nope" in text


def test_bad_uri(client):
    assert client.open("file:///libcalculator_skel.so")[2] == 0x8000040E


def test_calculator_idl_version_mismatch(client):
    rv, h, dlerr, _ = client.open(CALC_URI.replace("1.2.3", "1.2.4"))
    assert (rv, h, dlerr) == (0, 0, 0x80000594)
    assert client.dsp.processes()[0].modules == ()


SKEL_SRC = """
import struct
from qda_core.dsp import Skeleton, method

class Tagged(Skeleton):
    @method(2, sc=0x02000100)
    def tag(self, call):
        call.outbufs[0][:4] = {tag!r}
        return 0
"""


def write_skel(d: Path, tag: bytes, name="libtagged_skel.py"):
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(SKEL_SRC.format(tag=tag))


TAGGED = "file:///libtagged_skel.so?tagged_skel_handle_invoke&_modver=1.0"


def tag_of(c, uri=TAGGED):
    rv, h, dlerr, text = c.open(uri)
    assert dlerr == 0, text
    rv, (out,) = c.send(h, 0x02000100, [], [4])
    assert rv == 0
    return out


def test_python_skel_on_path_domain_dir_first(tmp_path, mem):
    write_skel(tmp_path / "a", b"AAAA")
    write_skel(tmp_path / "b" / "cdsp", b"BCDS")
    write_skel(tmp_path / "b", b"BBBB")
    env = {"DSP_LIBRARY_PATH": f"{tmp_path / 'x'};{tmp_path / 'b'};{tmp_path / 'a'}"}
    assert tag_of(make_client(env, mem)) == b"BCDS"          # b/cdsp before b/
    assert tag_of(make_client(env, mem, "adsp")) == b"BBBB"   # no b/adsp: b/
    env = {"DSP_LIBRARY_PATH": str(tmp_path / "a"), "ADSP_LIBRARY_PATH": str(tmp_path / "b")}
    assert tag_of(make_client(env, mem)) == b"AAAA"           # DSP_ wins over ADSP_
    env = {"ADSP_LIBRARY_PATH": str(tmp_path / "b")}
    assert tag_of(make_client(env, mem)) == b"BCDS"


def test_empty_path_entry_is_cwd(tmp_path, mem, monkeypatch):
    write_skel(tmp_path, b"CWD!")
    monkeypatch.chdir(tmp_path)
    assert tag_of(make_client({"DSP_LIBRARY_PATH": ";/nonexistent"}, mem)) == b"CWD!"


def test_live_environ_by_default(tmp_path, mem, monkeypatch):
    write_skel(tmp_path, b"ENV!")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    assert tag_of(make_client(None, mem)) == b"ENV!"


def test_python_skel_file_errors(tmp_path, mem):
    (tmp_path / "libbroken_skel.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "libempty_skel.py").write_text("X = 1\n")
    c = make_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    _, h, dlerr, text = c.open("file:///libbroken_skel.so?broken_skel_handle_invoke&_modver=1.0")
    assert (h, dlerr) == (0, 0x80000406) and "boom" in text
    _, h, dlerr, text = c.open("file:///libempty_skel.so?empty_skel_handle_invoke&_modver=1.0")
    assert (h, dlerr) == (0, 0x80000406) and "0 Skeleton subclasses" in text
    write_skel(tmp_path, b"XXXX")
    assert c.open(TAGGED.replace("tagged_skel_handle_invoke", "other_sym"))[2] == 0x80000442
    assert c.dsp.processes()[0].state == "alive"


def test_path_skel_that_fails_to_import_is_passed_over_for_the_builtin(tmp_path, mem):
    (tmp_path / "libcalculator_skel.py").write_text("raise RuntimeError('cannot run here')\n")
    c = make_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    assert c.open(CALC_URI)[2] == 0


def test_plugin_entry_point(tmp_path, mem, monkeypatch):
    pkg = tmp_path / "qdarpc_fake_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(SKEL_SRC.format(tag=b"PLUG"))
    dist = tmp_path / "qdarpc_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qdarpc-fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[qdarpc.skels]\nlibtagged_skel.so = qdarpc_fake_plugin:Tagged\n"
        "libbadplug_skel.so = qdarpc_fake_plugin:struct\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path_dir = tmp_path / "path"
    write_skel(path_dir, b"PATH")
    c = make_client({"DSP_LIBRARY_PATH": str(path_dir)}, mem)
    assert tag_of(c) == b"PATH"  # the search path before plugins (the file system decides)
    assert tag_of(make_client({"DSP_LIBRARY_PATH": str(tmp_path / "empty")}, mem)) == b"PLUG"
    assert c.open("file:///libbadplug_skel.so?badplug_skel_handle_invoke&_modver=1.0")[2] == 0x80000406
    sys.modules.pop("qdarpc_fake_plugin", None)


NATIVE_SRC = r"""
#include <stdint.h>
#include <stddef.h>
#include <string.h>
typedef union { struct { void *pv; size_t nLen; } buf; uint32_t h; uint64_t h64;
                struct { int32_t fd; uint32_t offset; } dma; } remote_arg;
static int opens;
int nat_skel_handle_invoke(uint64_t h, uint32_t sc, remote_arg *pra) {
    uint32_t m = (sc >> 24) & 0x1f, i;
    switch (m) {
    case 0:  /* open: pra[0] {int32 len}, pra[1] uri, pra[2].h64 out */
        if (*(int32_t *)pra[0].buf.pv != (int32_t)pra[1].buf.nLen) return 0x8000040e;
        if (!strstr((const char *)pra[1].buf.pv, "_modver=1.0")) return 0x8000040e;
        pra[2].h64 = 0xabc0 + (++opens);
        return 0;
    case 1:
        return pra[0].h64 >= 0xabc0 ? 0 : 0x8000040e;
    case 2: {  /* sum bytes of in0 into out0 (u64), plus h */
        uint64_t s = 0;
        if (sc != 0x02010100 || pra[1].buf.nLen < 8) return 0x8000040e;
        for (i = 0; i < pra[0].buf.nLen; i++) s += ((uint8_t *)pra[0].buf.pv)[i];
        s += h << 32;
        memcpy(pra[1].buf.pv, &s, 8);
        return 0;
    }
    case 3:  /* increment out0 in place */
        for (i = 0; i < pra[0].buf.nLen; i++) ((uint8_t *)pra[0].buf.pv)[i]++;
        return 0;
    case 4:  /* echo in-handle fd/offset */
        return pra[0].dma.fd * 1000 + (int)pra[0].dma.offset;
    }
    return 0x80000414;
}
"""


@pytest.mark.needs_cc
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_native_c_skel(tmp_path, mem):
    src = tmp_path / "nat.c"
    src.write_text(NATIVE_SRC)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-o",
                    str(tmp_path / "libnat_skel.so"), str(src)], check=True)
    c = make_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    uri = "file:///libnat_skel.so?nat_skel_handle_invoke&_modver=1.0"
    rv, h, dlerr, text = c.open(uri)
    assert (rv, dlerr) == (0, 0), text
    rv, (out,) = c.send(h, 0x02010100, [bytes([1, 2, 3, 250])], [8])
    assert rv == 0 and struct.unpack("<Q", out)[0] == 256 + ((0xABC0 + 1) << 32)  # h64 from open
    rv, (out,) = c.send(h, 0x03000100, [], [4])
    assert rv == 0 and out == b"\1\1\1\1"
    rv, _ = c.send(h, 0x04000010, inhandles=[(9, 5, 16, 0x1000, 0x1000)])
    assert rv == 9005
    assert u32(c.send(h, 0x09000000)[0]) == 0x80000414
    assert c.close(h)[:2] == (0, 0)
    assert c.open("file:///libnat_skel.so?missing_sym&_modver=1.0")[2] == 0x80000442


def test_native_so_that_does_not_load(tmp_path, mem):
    (tmp_path / "libhex_skel.so").write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 100)
    c = make_client({"DSP_LIBRARY_PATH": str(tmp_path)}, mem)
    rv, h, dlerr, text = c.open("file:///libhex_skel.so?hex_skel_handle_invoke&_modver=1.0")
    assert (rv, h, dlerr) == (0, 0, 0x80000406) and text
