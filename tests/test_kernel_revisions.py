"""Selectable kernel revisions (qda_core.kernels): the table, how a SoC chooses, and the accel
revisions' uapi and behaviour against the spec tables.

* ``qda-rfc-2026-02``: docs/spec/qda_accel_uapi.md §2.3 and §3 (the RFC of 2026-02-24).
* ``qda-v1-2026-05``: docs/spec/kernel_revisions_2026.md §2.1 (the v1 series of 2026-05-19):
  numbers and field order, ``pad`` checks, MMAP_OFFSET refusing imported objects, every ``fd`` a
  DMA-BUF fd imported per call, INIT_ATTACH gone, the reply decode ``ctx >> 4``.

Every v1 behaviour test has an RFC twin showing that the RFC's behaviour did not change.
"""
from __future__ import annotations

import errno
import json
import mmap
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from libadsprpc_compat.remotectl import open_module
from qda_core import kernels, uapi, wire
from qda_core.accel import GemRef, HandleArg
from qda_core.kernels import KernelError, parse_kernel
from qda_core.soc import DomainSpec, Soc, load_profile

RFC, V1 = "accel:qda-rfc-2026-02", "accel:qda-v1-2026-05"
#: The legacy default (misc-7.2 until misc-7.3's behaviour lands; the legacy tests pin it).
LEG = f"legacy:{kernels.DEFAULT['legacy']}"
ROOT = Path(__file__).resolve().parents[1]
UNSIGNED = uapi.FASTRPC_MODE_UNSIGNED_MODULE
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_INC, SC_MAPPED_READ = 0x04000100, 0x08010100
VALID = ["accel:qda-rfc-2026-02", "accel:qda-v1-2026-05", "legacy:misc-7.2", "legacy:misc-7.3",
         "legacy:qda-shim"]


@pytest.fixture(autouse=True)
def _no_kernel_env(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)


@pytest.fixture(params=[RFC, V1], ids=["rfc", "v1"])
def rev_soc(request, make_soc):
    return make_soc("default", kernel=request.param)


@pytest.fixture
def v1(make_soc):
    return make_soc("default", kernel=V1)


@pytest.fixture
def rfc(make_soc):
    return make_soc("default", kernel=RFC)


def errno_of(excinfo) -> int:
    return excinfo.value.errno


# --- the table ------------------------------------------------------------------------------
def test_the_table_names_exactly_these_revisions():
    assert {f: list(revs) for f, revs in kernels.REVISIONS.items()} == {
        "accel": ["qda-rfc-2026-02", "qda-v1-2026-05"], "legacy": ["misc-7.2", "misc-7.3", "qda-shim"]}
    assert kernels.valid_names() == VALID
    for front, revs in kernels.REVISIONS.items():
        for name, rev in revs.items():
            assert (rev.frontend, rev.name, str(rev)) == (front, name, f"{front}:{name}")
            assert rev.title and rev.source
            for doc in {w.rstrip(",;)") for w in rev.source.split() if w.startswith("docs/")}:
                assert (ROOT / doc).is_file(), f"{rev}: cites {doc}, not in the repository"
            for topic, why in rev.choices:
                assert topic and why
    assert [r.exact for r in kernels.REVISIONS["legacy"].values()] == [True, True, False]
    assert all(r.exact for r in kernels.REVISIONS["accel"].values())


def test_defaults():
    # accel stays on the RFC: the accel/staging library breaks on v1
    # (test_upstream_accel_staging_library_on_both_accel_revisions). legacy: an exactly known
    # misc revision (misc-7.2 until misc-7.3's behaviour lands; test_legacy_revisions.py pins it).
    assert kernels.DEFAULT["accel"] == "qda-rfc-2026-02"
    assert kernels.DEFAULT["legacy"] in ("misc-7.2", "misc-7.3")
    for front, name in kernels.DEFAULT.items():
        assert kernels.REVISIONS[front][name].exact
    assert {f: str(r) for f, r in parse_kernel(None).items()} == {"accel": RFC, "legacy": LEG}


def test_every_revision_has_its_uapi_tables():
    assert list(uapi.ACCEL_UAPI) == list(kernels.REVISIONS["accel"])
    for name, u in uapi.ACCEL_UAPI.items():
        assert u.revision == name


@pytest.mark.parametrize("spec,want", [
    (None, (RFC, LEG)),
    ("", (RFC, LEG)),
    (V1, (V1, LEG)),
    ("legacy:qda-shim", (RFC, "legacy:qda-shim")),
    (" legacy:misc-7.3 , accel:qda-v1-2026-05 ", (V1, "legacy:misc-7.3")),
])
def test_parse_kernel(spec, want):
    got = parse_kernel(spec)
    assert list(got) == ["accel", "legacy"] and tuple(map(str, got.values())) == want
    assert parse_kernel(kernels.kernel_spec(got)) == got


@pytest.mark.parametrize("spec,why", [
    ("accel:qda-v2", "unknown accel kernel revision 'qda-v2'"),
    ("gpu:qda-v1-2026-05", "unknown kernel front end 'gpu'"),
    ("legacy:qda-v1-2026-05", "unknown legacy kernel revision"),
    ("qda-v1-2026-05", "is not FRONTEND:REVISION"),
    (f"{V1},{RFC}", "front end 'accel' given twice"),
])
def test_parse_kernel_errors_list_the_valid_names(spec, why):
    with pytest.raises(KernelError, match=why) as e:
        parse_kernel(spec)
    assert isinstance(e.value, ValueError)
    assert str(e.value).endswith("valid: " + ", ".join(VALID))


def test_environment(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "legacy:misc-7.3")
    assert str(parse_kernel(None)["legacy"]) == "legacy:misc-7.3"
    assert str(parse_kernel(RFC)["legacy"]) == LEG  # a given string ignores the env
    assert uapi.REVISION["legacy"].startswith("legacy:misc-7.3 (")
    monkeypatch.setenv(kernels.ENV, "accel:nope")
    with pytest.raises(KernelError):
        parse_kernel(None)
    assert uapi.REVISION["accel"].startswith("(invalid $QDARPC_KERNEL: ")


# --- how a SoC chooses ----------------------------------------------------------------------
def revisions_of(soc) -> set[str]:
    """Every driver object's revision, as strings: the accel devices', the legacy channels' and
    their devices'."""
    out = set()
    for d in soc.domains.values():
        out.add(str(d.accel.revision))
        if d.legacy_channel is not None:
            out.add(str(d.legacy_channel.revision))
            out |= {str(dev.revision) for dev in d.legacy.values()}
    return out


def test_soc_kernel_argument_and_every_driver_object(make_soc):
    soc = make_soc("full", kernel=f"{V1},legacy:misc-7.3")
    assert {f: str(r) for f, r in soc.kernel.items()} == {"accel": V1, "legacy": "legacy:misc-7.3"}
    assert soc.kernel_spec == f"{V1},legacy:misc-7.3"
    assert revisions_of(soc) == {V1, "legacy:misc-7.3"}
    assert all(d.accel.uapi is uapi.ACCEL_UAPI["qda-v1-2026-05"] for d in soc.domains.values())
    assert revisions_of(make_soc("default", kernel=soc.kernel)) == {V1, "legacy:misc-7.3"}  # a mapping too
    with pytest.raises(KernelError):
        make_soc("default", kernel="accel:qda-v7")


def test_revision_survives_ssr(make_soc):
    soc = make_soc("default", kernel=f"{V1},legacy:qda-shim")
    old = soc.domain("cdsp").accel
    soc.restart("cdsp")
    assert soc.domain("cdsp").accel is not old
    assert revisions_of(soc) == {V1, "legacy:qda-shim"}


def test_environment_and_defaults_reach_the_soc(make_soc, monkeypatch):
    assert revisions_of(make_soc()) == {RFC, LEG}
    monkeypatch.setenv(kernels.ENV, V1)
    assert revisions_of(make_soc()) == {V1, LEG}


@pytest.mark.parametrize("fmt", ["json", "toml", "toml-list"])
def test_profile_kernel_field(make_soc, tmp_path, monkeypatch, fmt):
    p = tmp_path / f"soc.{fmt.split('-')[0]}"
    if fmt == "json":
        p.write_text(json.dumps({"kernel": V1, "domains": [{"name": "cdsp", "context_banks": 2}]}))
    elif fmt == "toml":
        p.write_text(f'kernel = "{V1}"\n[[domains]]\nname = "cdsp"\ncontext_banks = 2\n')
    else:
        p.write_text(f'kernel = ["{V1}", "legacy:misc-7.3"]\n[[domains]]\nname = "cdsp"\ncontext_banks = 2\n')
    legacy = "legacy:misc-7.3" if fmt == "toml-list" else LEG
    assert [d.kernel for d in load_profile(str(p))] == [f"{V1},{legacy}"]
    monkeypatch.setenv(kernels.ENV, f"{RFC},legacy:qda-shim")  # the profile's field beats the env
    assert revisions_of(make_soc(str(p))) == {V1, legacy}
    assert revisions_of(make_soc(str(p), kernel=RFC)) == {RFC, LEG}  # the argument beats both


def test_profile_kernel_field_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kernel": "accel:v9", "domains": [{"name": "cdsp", "context_banks": 1}]}))
    with pytest.raises(KernelError, match="unknown accel kernel revision 'v9'"):
        load_profile(str(bad))
    bad.write_text(json.dumps({"kernel": 3, "domains": [{"name": "cdsp", "context_banks": 1}]}))
    with pytest.raises(ValueError, match="must be a string or a list"):
        load_profile(str(bad))
    with pytest.raises(ValueError, match="name different kernels"):
        Soc([DomainSpec("cdsp", 1, kernel=V1), DomainSpec("adsp", 1, kernel=RFC)])


def test_twins_keep_the_kernel(make_soc, monkeypatch):
    soc = make_soc("minimal", kernel=f"{V1},legacy:misc-7.3")
    monkeypatch.setenv(kernels.ENV, "legacy:qda-shim")  # a twin is a twin, whatever the env says
    for twin in (make_soc(soc.specs), make_soc(list(soc.specs)), make_soc(soc.specs, kernel=soc.kernel_spec)):
        assert twin.kernel == soc.kernel and twin.specs == soc.specs
        assert revisions_of(twin) == {V1, "legacy:misc-7.3"}


# --- fidelity: numbers and layouts of both accel revisions ----------------------------------
# (name, number, layout size, {field: offset}) per revision, as the spec tables give them.
RFC_TABLE = {
    "DRM_IOCTL_QDA_QUERY": (0x80106440, 16, {"dsp_name": 0}),
    "DRM_IOCTL_QDA_GEM_CREATE": (0xC0106441, 16, {"handle": 0, "pad": 4, "size": 8}),
    "DRM_IOCTL_QDA_GEM_MMAP_OFFSET": (0xC0106442, 16, {"handle": 0, "pad": 4, "offset": 8}),
    "DRM_IOCTL_QDA_INIT_ATTACH": (0x00006443, None, None),
    "DRM_IOCTL_QDA_INIT_CREATE": (0xC0186444, 24, {"filelen": 0, "filefd": 4, "attrs": 8, "siglen": 12, "file": 16}),
    "DRM_IOCTL_QDA_MAP": (0xC0306445, 48, {"request": 0, "flags": 4, "fd": 8, "attrs": 12, "offset": 16,
                                           "reserved": 20, "vaddrin": 24, "size": 32, "vaddrout": 40}),
    "DRM_IOCTL_QDA_MUNMAP": (0xC0206446, 32, {"request": 0, "fd": 4, "vaddr": 8, "vaddrout": 16, "size": 24}),
    "DRM_IOCTL_QDA_INVOKE": (0xC0106447, 16, {"handle": 0, "sc": 4, "args": 8}),
}
V1_TABLE = {
    "DRM_IOCTL_QDA_QUERY": (0x80106440, 16, {"dsp_name": 0}),
    "DRM_IOCTL_QDA_GEM_CREATE": (0xC0106441, 16, {"size": 0, "handle": 8, "pad": 12}),
    "DRM_IOCTL_QDA_GEM_MMAP_OFFSET": (0xC0106442, 16, {"offset": 0, "handle": 8, "pad": 12}),
    "DRM_IOCTL_QDA_REMOTE_SESSION_CREATE": (0xC0186444, 24, {"filelen": 0, "filefd": 4, "attrs": 8,
                                                             "siglen": 12, "file": 16}),
    "DRM_IOCTL_QDA_REMOTE_MAP": (0xC0306445, 48, {"request": 0, "flags": 4, "fd": 8, "attrs": 12, "offset": 16,
                                                  "pad": 20, "vaddrin": 24, "size": 32, "vaddrout": 40}),
    "DRM_IOCTL_QDA_REMOTE_MUNMAP": (0xC0206446, 32, {"request": 0, "fd": 4, "vaddr": 8, "vaddrout": 16, "size": 24}),
    "DRM_IOCTL_QDA_REMOTE_INVOKE": (0xC0106447, 16, {"handle": 0, "sc": 4, "args": 8}),
}
CORE_TABLE = {
    "DRM_IOCTL_GEM_CLOSE": (0x40086409, 8, {"handle": 0, "pad": 4}),
    "DRM_IOCTL_PRIME_HANDLE_TO_FD": (0xC00C642D, 12, {"handle": 0, "flags": 4, "fd": 8}),
    "DRM_IOCTL_PRIME_FD_TO_HANDLE": (0xC00C642E, 12, {"handle": 0, "flags": 4, "fd": 8}),
}
LAYOUT_NAMES = {  # the C struct names of each revision
    "qda-rfc-2026-02": ["drm_qda_query", "drm_qda_gem_create", "drm_qda_gem_mmap_offset", None,
                        "qda_init_create", "qda_mem_map", "qda_mem_unmap", "qda_invoke_args"],
    "qda-v1-2026-05": ["drm_qda_query", "drm_qda_gem_create", "drm_qda_gem_mmap_offset",
                       "drm_qda_init_create", "drm_qda_mem_map", "drm_qda_mem_unmap", "drm_qda_invoke_args"],
}


@pytest.mark.parametrize("rev,table", [("qda-rfc-2026-02", RFC_TABLE), ("qda-v1-2026-05", V1_TABLE)])
def test_accel_ioctl_table(rev, table):
    u = uapi.ACCEL_UAPI[rev]
    want = {**table, **CORE_TABLE}
    assert {i.name for i in u.ioctls.values()} == set(want)
    for nr, ioc in u.ioctls.items():
        number, size, offsets = want[ioc.name]
        assert (ioc.number, nr, uapi.IOC_TYPE(ioc.number)) == (number, number & 0xFF, ord("d")), ioc.name
        if size is None:
            assert ioc.layout is None and uapi.IOC_SIZE(number) == 0 and uapi.IOC_DIR(number) == uapi.IOC_NONE
            continue
        assert ioc.layout.size == size == uapi.IOC_SIZE(number), ioc.name
        assert {f: ioc.layout.offset(f) for f in ioc.layout.fields} == offsets, ioc.name
    names = [i.layout.name if i.layout else None for i in u.ioctls.values() if i.name not in CORE_TABLE]
    assert names == LAYOUT_NAMES[rev]


def test_v1_specifics():
    u = uapi.ACCEL_UAPI["qda-v1-2026-05"]
    assert 0x43 not in u.ioctls  # 0x03 reserved, was INIT_ATTACH
    assert u.invoke_arg.size == 24 and {f: u.invoke_arg.offset(f) for f in u.invoke_arg.fields} == {
        "ptr": 0, "length": 8, "fd": 16, "attr": 20}
    assert u.invoke_arg.name == "drm_qda_fastrpc_invoke_args"
    assert (uapi.QDA_MAP_REQUEST_LEGACY, uapi.QDA_MAP_REQUEST_ATTR) == (1, 2)
    assert (uapi.QDA_MUNMAP_REQUEST_LEGACY, uapi.QDA_MUNMAP_REQUEST_ATTR) == (1, 2)
    assert u.pad_checked == {"drm_qda_gem_create", "drm_qda_gem_mmap_offset", "drm_qda_mem_map"}
    assert (u.fd_kind, u.mmap_offset_refuses_imported) == ("dma-buf", True)
    assert u.ctx_id_bits == 60 and u.reply_id(0x1234_5670 | 1) == 0x1234567
    r = uapi.ACCEL_UAPI["qda-rfc-2026-02"]
    assert (r.fd_kind, r.mmap_offset_refuses_imported, r.pad_checked) == ("gem-handle", False, frozenset())
    assert r.ctx_id_bits == 8 and r.reply_id(0x1234_5670 | 1) == 0x67


# --- behaviour: GEM_CREATE and GEM_MMAP_OFFSET ------------------------------------------------
def test_gem_create_field_order(rev_soc):
    u = rev_soc.domain("cdsp").accel.uapi
    lib = struct.Struct("<QI4x")  # LIB 759d6f8: {u64 size; u32 handle}
    with rev_soc.open_device("cdsp") as f:
        h = f.gem_create(5000)
        assert f.lookup(h).size == 8192
        buf = bytearray(lib.pack(4096, 0))
        ret = f.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, buf)
        if u.revision == "qda-v1-2026-05":  # v1 is size-first, as LIB
            assert ret == 0 and f.lookup(lib.unpack(buf)[1]).size == 4096
        else:  # the RFC reads LIB's handle word (0) as the size
            assert ret == -errno.EINVAL


def test_gem_mmap_offset_field_order(rev_soc):
    with rev_soc.open_device("cdsp") as f:
        h = f.gem_create(4096)
        off = f.gem_mmap_offset(h)
        assert off >= 1 << 32 and off % 4096 == 0
        f.mmap(off, 4096).release()
        lib = bytearray(struct.pack("<IIQ", h, 0, 0))  # LIB: the RFC's {u32 handle; u32 pad; u64 offset}
        ret = f.ioctl(uapi.DRM_IOCTL_QDA_GEM_MMAP_OFFSET, lib)
        if f.uapi.revision == "qda-v1-2026-05":
            assert ret == -errno.ENOENT  # v1 reads LIB's offset word as the handle: 0
        else:
            assert ret == 0 and struct.unpack_from("<Q", lib, 8)[0] == off


@pytest.mark.parametrize("what", ["gem_create", "gem_mmap_offset", "map"])
def test_non_zero_pad(rev_soc, what):
    """v1: EINVAL for a non-zero pad (GEM_CREATE, MMAP_OFFSET, MAP); the RFC does not look."""
    f = rev_soc.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    h = f.gem_create(4096)
    fd = f.prime_handle_to_fd(h)
    if what == "gem_create":
        L, number, fields = f.uapi.gem_create, uapi.DRM_IOCTL_QDA_GEM_CREATE, {"size": 4096}
    elif what == "gem_mmap_offset":
        L, number, fields = f.uapi.gem_mmap_offset, uapi.DRM_IOCTL_QDA_GEM_MMAP_OFFSET, {"handle": h}
    else:
        L, number = f.uapi.mem_map, uapi.DRM_IOCTL_QDA_MAP
        fields = {"request": uapi.QDA_MAP_REQUEST_LEGACY, "fd": fd if f.uapi.fd_kind == "dma-buf" else h}
    pad = "reserved" if "reserved" in L.fields else "pad"
    ret = f.ioctl(number, L.pack(**fields, **{pad: 1}))
    if f.uapi.revision == "qda-v1-2026-05":
        assert ret == -errno.EINVAL and "pad is 0x1, must be 0" in f.last_error.strerror
    else:
        assert ret == 0
    assert f.ioctl(number, L.pack(**fields)) == 0  # pad 0 is fine on both
    os.close(fd)
    f.close()


def test_mmap_offset_of_an_imported_object(rev_soc):
    mfd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
    os.ftruncate(mfd, 4096)
    with rev_soc.open_device("cdsp") as f:
        h = f.prime_fd_to_handle(mfd)
        if f.uapi.revision == "qda-v1-2026-05":  # drm_gem_dumb_map_offset refuses imports
            with pytest.raises(OSError, match="imported") as e:
                f.gem_mmap_offset(h)
            assert errno_of(e) == errno.EINVAL
        else:  # the RFC hands out the offset; the mmap itself fails
            with pytest.raises(OSError) as e:
                f.mmap(f.gem_mmap_offset(h), 4096)
            assert errno_of(e) == errno.EINVAL
        own = f.gem_create(4096)
        assert f.gem_mmap_offset(own)  # a native object maps on both
    os.close(mfd)


# --- behaviour: fds are GEM handles (RFC) or DMA-BUF fds imported per call (v1) -------------
@pytest.fixture
def session(rev_soc):
    """An accel file with a user PD and the qdarpc_test module: (file, module handle)."""
    f = rev_soc.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    ret, h = open_module(f, TEST)
    assert ret == 0
    yield f, h
    f.close()


def shared_buffer(f, size=4096):
    """A GEM object, its CPU mapping, and a dma-buf fd of it (the caller closes the fd)."""
    h = f.gem_create(size)
    view = f.mmap(f.gem_mmap_offset(h), size)
    return h, view, f.prime_handle_to_fd(h)


def raw_invoke(f, handle: int, sc: int, descs: list[tuple[int, int, int]]) -> int:
    """REMOTE_INVOKE/INVOKE with explicit (ptr, length, fd) descriptors: the raw fd field."""
    arr = bytearray(24 * len(descs))
    for i, (ptr, length, fd) in enumerate(descs):
        wire.INVOKE_ARG.pack_into(arr, 24 * i, ptr, length, fd, 0)
    from qda_core.uaccess import address

    return f.ioctl(uapi.DRM_IOCTL_QDA_INVOKE, f.uapi.invoke.pack(handle=handle, sc=sc, args=address(arr)))


def test_invoke_fd_field(session):
    """INVOKE by reference: the RFC takes a GEM handle, v1 a dma-buf fd (the handle number is no
    fd: EBADF); the DSP works on the shared pages either way."""
    f, mod = session
    from qda_core.uaccess import address

    h, view, fd = shared_buffer(f)
    view[:4] = b"\x01\x02\x03\x04"
    v1 = f.uapi.revision == "qda-v1-2026-05"
    ident = fd if v1 else h
    assert raw_invoke(f, mod, SC_INC, [(address(view), 4, ident)]) == 0
    assert bytes(view[:4]) == b"\x02\x03\x04\x05"  # shared: incremented in place
    # v1: a number that is no open fd (as most GEM handle numbers) -> EBADF; RFC: no such handle.
    assert raw_invoke(f, mod, SC_INC, [(address(view), 4, closed_fd())]) == (-errno.EBADF if v1 else -errno.ENOENT)
    for inline in (0, -1):  # fd <= 0: copied inline on both (a copied out-buffer starts zeroed)
        out = bytearray(b"\x07" * 4)
        assert raw_invoke(f, mod, SC_INC, [(address(out), 4, inline)]) == 0 and out == b"\x01" * 4
    view.release()
    os.close(fd)


def closed_fd() -> int:
    """An fd number nothing has open (and no GEM handle a test creates: > 1000)."""
    fd = 1001
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def test_v1_imports_per_call_through_the_prime_path(v1):
    """v1: a foreign dma-buf (a sealed memfd) passed by fd is imported on the call, through the
    PRIME path: the same object PRIME_FD_TO_HANDLE finds, once per file, gone with the file."""
    from qda_core.uaccess import address

    f = v1.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    _, mod = open_module(f, TEST)
    mfd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
    os.ftruncate(mfd, 8192)
    mm = mmap.mmap(mfd, 8192)
    mm[4096:4099] = b"abc"
    view = memoryview(mm)
    before = len(f.handles)
    assert raw_invoke(f, mod, SC_INC, [(address(view[4096:]), 3, mfd)]) == 0
    assert mm[4096:4099] == b"bcd"
    assert raw_invoke(f, mod, SC_INC, [(address(view[4096:]), 3, mfd)]) == 0
    assert mm[4096:4099] == b"cde" and len(f.handles) == before + 1  # imported once
    h = f.prime_fd_to_handle(mfd)
    assert f.lookup(h).imported and len(f.handles) == before + 1
    r, w = os.pipe()
    assert raw_invoke(f, mod, SC_INC, [(address(view), 3, r)]) == -errno.EINVAL  # not a dma-buf
    assert "not a dma-buf" in f.last_error.strerror
    os.close(r)
    os.close(w)
    view.release()
    mm.close()
    os.close(mfd)
    f.close()


def test_handle_argument_fd_reaches_the_dsp(rev_soc, tmp_path, monkeypatch):
    """A handle slot's fd travels to the DSP as given: the GEM handle (RFC), the dma-buf fd (v1,
    "the original fd number is forwarded")."""
    (tmp_path / "libslot_skel.py").write_text(SLOT_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    SEEN.clear()
    f = rev_soc.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    ret, mod = open_module(f, "file:///libslot_skel.so?slot_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    assert ret == 0
    h, view, fd = shared_buffer(f)
    ident = fd if f.uapi.revision == "qda-v1-2026-05" else h
    assert f.invoke(mod, 0x02000010, [HandleArg(ident, 0, 4096)]) == 0
    assert SEEN == [ident]
    view.release()
    os.close(fd)
    f.close()


SEEN: list[int] = []
SLOT_SKEL = f"""
import sys
from qda_core.dsp import Skeleton, method

class Slot(Skeleton):
    @method(2, sc=0x02000010)
    def take(self, call):
        sys.modules[{__name__!r}].SEEN.append(call.inhandles[0].fd)
        return 0
"""


def test_typed_invoke_exports_gem_refs_on_v1(session):
    """The typed API takes GEM handles on both revisions; on v1 it exports one per call, as a
    v1 program does (PRIME_HANDLE_TO_FD, closed after the call)."""
    f, mod = session
    h, view, fd = shared_buffer(f)
    os.close(fd)
    view[:2] = b"\x10\x20"
    fds = len(os.listdir("/proc/self/fd"))
    assert f.invoke(mod, SC_INC, [GemRef(h, view[:2])]) == 0
    assert bytes(view[:2]) == b"\x11\x21" and len(os.listdir("/proc/self/fd")) == fds
    view.release()


def test_map_fd_field(session):
    """MAP: the RFC names the buffer by GEM handle, v1 by a dma-buf fd imported for the call; the
    ATTR request forwards the fd to the DSP, whose mapped_read finds the map by it."""
    f, mod = session
    h, view, fd = shared_buffer(f, 8192)
    view[4096:4104] = b"mapped!!"
    ident = fd if f.uapi.revision == "qda-v1-2026-05" else h
    va = f.map(uapi.QDA_MAP_REQUEST_ATTR, ident, size=8192)
    assert va and va % 4096 == 0
    out = bytearray(8)
    assert f.invoke(mod, SC_MAPPED_READ, [struct.pack("<iII", ident, 4096, 8), out]) == 0
    assert out == b"mapped!!"
    f.munmap(uapi.QDA_MUNMAP_REQUEST_ATTR, fd=ident, vaddr=va, size=8192)
    va2 = f.map(uapi.QDA_MAP_REQUEST_LEGACY, ident, flags=0x1000)
    f.munmap(uapi.QDA_MUNMAP_REQUEST_LEGACY, vaddrout=va2, size=8192)
    L = f.uapi.mem_map
    assert f.ioctl(uapi.DRM_IOCTL_QDA_MAP, L.pack(request=2, fd=closed_fd())) == (
        -errno.EBADF if ident == fd else -errno.ENOENT)  # v1: no open fd; RFC: no such handle
    assert f.ioctl(uapi.DRM_IOCTL_QDA_MAP, L.pack(request=3)) == -errno.EINVAL
    view.release()
    os.close(fd)


def test_v1_map_of_a_foreign_dma_buf_stays_valid(v1):
    """v1: MAP of a foreign dma-buf imports it for the call through the PRIME path; the import
    stays with the file, so the DSP reads the mapping after the call."""
    f = v1.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    _, mod = open_module(f, TEST)
    mfd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
    os.pwrite(mfd, b"\0" * 4096 + b"foreign!", 0)
    va = f.map(uapi.QDA_MAP_REQUEST_ATTR, mfd, size=8192)
    out = bytearray(8)
    assert f.invoke(mod, SC_MAPPED_READ, [struct.pack("<iII", mfd, 4096, 8), out]) == 0
    assert out == b"foreign!"
    f.munmap(uapi.QDA_MUNMAP_REQUEST_ATTR, fd=mfd, vaddr=va, size=8192)
    os.close(mfd)
    f.close()


def test_session_create_image_fd(rev_soc):
    """REMOTE_SESSION_CREATE/INIT_CREATE with the ELF by reference: filefd is a GEM handle (RFC)
    or a dma-buf fd (v1); a filefd the revision cannot resolve fails before the DSP sees it."""
    image = bytearray(104)  # a minimal Hexagon ELF header
    image[:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HH", image, 16, 3, 164)
    f = rev_soc.open_device("cdsp")
    h, view, fd = shared_buffer(f, 8192)
    view[:len(image)] = image
    from qda_core.uaccess import address

    L = f.uapi.init_create
    v1 = f.uapi.revision == "qda-v1-2026-05"
    # v1: imported with the message's buffers (no open fd: EBADF); RFC: no such handle -> EINVAL
    assert f.ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, L.pack(filelen=104, filefd=closed_fd(),
                                                          file=address(view))) == (-errno.EBADF if v1 else -errno.EINVAL)
    assert f.ioctl(uapi.DRM_IOCTL_QDA_INIT_CREATE, L.pack(filelen=104, filefd=fd if v1 else h,
                                                          file=address(view))) == 0
    assert open_module(f, TEST)[0] == 0
    view.release()
    os.close(fd)
    f.close()


def test_typed_init_create_with_a_gem_image(rev_soc):
    image = bytearray(104)
    image[:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HH", image, 16, 3, 164)
    f = rev_soc.open_device("cdsp")
    h, view, fd = shared_buffer(f, 8192)
    os.close(fd)
    view[:len(image)] = image
    assert f.init_create(gem=GemRef(h, view[:len(image)])) == 0
    assert open_module(f, TEST)[0] == 0
    view.release()
    f.close()


# --- behaviour: INIT_ATTACH gone, names, reply decode ---------------------------------------
def test_init_attach(rev_soc):
    with rev_soc.open_device("cdsp") as f:
        if f.uapi.revision == "qda-v1-2026-05":
            # nr 0x03 is a hole in v1's table: drm_ioctl() finds no function -> EINVAL, as for
            # an nr past the table; whatever size/direction the caller encodes.
            for request in (uapi.DRM_IOCTL_QDA_INIT_ATTACH, uapi.IOC(uapi.IOC_READ | uapi.IOC_WRITE, 0x64, 0x43, 8)):
                assert f.ioctl(request) == -errno.EINVAL
            assert f.ioctl(uapi.IOC(uapi.IOC_NONE, 0x64, 0x48, 0)) == -errno.EINVAL
            with pytest.raises(OSError, match="qda-v1-2026-05") as e:
                f.init_attach()
            assert errno_of(e) == errno.EINVAL
        else:
            assert f.init_attach() == 0
            assert open_module(f, TEST)[0] == 0


def test_trace_names_the_revisions_ioctls(rev_soc):
    """Trace events carry the revision's ioctl names (REMOTE_* on v1) and its field names."""
    from qda_core import trace

    v1 = rev_soc.kernel["accel"].name == "qda-v1-2026-05"
    with trace.recording() as rec, rev_soc.open_device("cdsp") as f:
        f.init_create(attrs=UNSIGNED)
        f.gem_create(4096)
    names = [e["name"] for e in rec.events if e["kind"] == "ioctl"]
    assert names == (["DRM_IOCTL_QDA_REMOTE_SESSION_CREATE", "DRM_IOCTL_QDA_GEM_CREATE"] if v1 else
                     ["DRM_IOCTL_QDA_INIT_CREATE", "DRM_IOCTL_QDA_GEM_CREATE"])
    gem = [e for e in rec.events if e.get("name") == "DRM_IOCTL_QDA_GEM_CREATE"][0]
    assert list(gem["fields"]) == (["size", "handle", "pad"] if v1 else ["handle", "pad", "size"])


def test_reply_decode(rev_soc):
    """The reply's ctx -> context id: RFC ``(ctx & 0xFF0) >> 4`` (ids capped at 255), v1
    ``ctx >> 4`` (the xarray's 32-bit ids). A context id beyond 8 bits gets its reply on v1 and
    loses it on the RFC; an echo of the wrong ctx is dropped on both."""
    from qda_core import fastrpc

    eng = rev_soc.domain("cdsp").accel.fastrpc
    v1 = rev_soc.kernel["accel"].name == "qda-v1-2026-05"
    assert eng._ids.limit == (uapi.XA_LIMIT_32B if v1 else fastrpc.CTX_ID_LIMIT)
    assert eng.layout.id_bits == rev_soc.domain("cdsp").accel.uapi.ctx_id_bits
    assert eng.layout.slot((0x123 << 4) | 1) == (0x123 if v1 else 0x23)
    for i, answered in ((0x123, v1), (0x23, True)):  # pending under its id, as the engine keeps it
        ctx = fastrpc._Ctx(i, (i << 4) | 1)
        eng._pending[i] = ctx
        dropped = eng.dropped_replies
        eng._on_reply(wire.Rsp(ctx.ctx, 7).pack())
        assert (ctx.retval == 7) == answered and eng.dropped_replies == dropped + (not answered)
        eng._pending.clear()
    ctx = eng._pending[5] = fastrpc._Ctx(5, 5 << 4)
    eng._on_reply(wire.Rsp((5 << 4) | 1, 7).pack())  # the id matches, the ctx word does not
    assert ctx.retval is None
    eng._pending.clear()


NAP_SKEL = """
import struct, time
from qda_core.dsp import Skeleton, method

class Nap(Skeleton):
    @method(2, sc=0x02010000)
    def nap(self, call):
        ms, tag = struct.unpack_from("<II", call.inbufs[0])
        time.sleep(ms / 1000)
        return tag
"""


def test_v1_has_no_255_context_cap(v1, tmp_path, monkeypatch):
    """v1 decodes replies as ``ctx >> 4``: 300 invokes outstanding at once each get their own
    answer (the RFC refuses the 256th with EBUSY: test_isolation.py)."""
    (tmp_path / "libnap_skel.py").write_text(NAP_SKEL)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    f = v1.open_device("cdsp")
    assert f.init_create(attrs=UNSIGNED) == 0
    ret, h = open_module(f, "file:///libnap_skel.so?nap_skel_handle_invoke&_modver=1.0&_dom=cdsp")
    assert ret == 0
    n = 300
    results: list = [None] * n
    start = threading.Barrier(n)

    def worker(i):
        start.wait()
        try:
            results[i] = f.invoke(h, 0x02010000, [struct.pack("<II", 400, 1000 + i)])
        except OSError as exc:
            results[i] = -exc.errno

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [1000 + i for i in range(n)]
    f.close()


# --- why the accel default is the RFC: the upstream accel/staging library on both -----------
LATE_CLIENT = r"""
#include "standin.h"
#define CALC_URI "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"
/* The SDK's usual order: open the handle, then rpcmem_alloc. LIB registers the buffer with the
 * session's GEM handle, which it passes in the invoke descriptor's fd field. */
int main(void)
{
	remote_handle64 h = (remote_handle64)-1;
	remote_arg pra[3];
	uint32_t n = 1000;
	int64_t sum = 0;
	int *vec, nErr;

	if ((nErr = standin_unsigned_module(CDSP_DOMAIN_ID, 1)) || (nErr = remote_handle64_open(CALC_URI CDSP_DOMAIN, &h))) {
		printf("open 0x%x\n", nErr);
		return 1;
	}
	vec = rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, 4 * n);
	for (uint32_t i = 0; vec && i < n; i++)
		vec[i] = (int)i;
	memset(pra, 0, sizeof(pra));
	pra[0].buf.pv = &n;
	pra[0].buf.nLen = 4;
	pra[1].buf.pv = vec;
	pra[1].buf.nLen = 4 * n;
	pra[2].buf.pv = &sum;
	pra[2].buf.nLen = 8;
	nErr = vec ? remote_handle64_invoke(h, REMOTE_SCALARS_MAKEX(0, 2, 2, 1, 0, 0), pra) : -1;
	printf("sum 0x%x %lld\n", nErr, (long long)sum);
	rpcmem_free(vec);
	remote_handle64_close(h);
	return nErr != 0;
}
"""


@pytest.mark.upstream
@pytest.mark.needs_cc
def test_upstream_accel_staging_library_on_both_accel_revisions(tmp_path):
    """The accel/staging library (LIB 759d6f8) through the device shim: an rpcmem buffer
    allocated after the session is open goes by reference with its GEM handle in the fd field.
    The RFC takes it; v1 reads it as a DMA-BUF fd and refuses the invoke (EINVAL), so the
    library's sum fails. This is why ``kernels.DEFAULT["accel"]`` is the RFC."""
    sys.path.insert(0, str(Path(__file__).parent))
    from cc_helpers import CC

    if CC is None:
        pytest.skip("no C compiler (install gcc)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("qdarpc_tests_upstream_build_kr",
                                                  Path(__file__).parent / "upstream" / "build.py")
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build
    spec.loader.exec_module(build)
    if not build.is_built("accel-staging"):
        pytest.skip("the upstream accel/staging build is not in .cache/upstream (tests/upstream/build.py)")
    from libadsprpc_compat import native

    try:
        native.shim()
    except Exception as exc:  # noqa: BLE001 - any reason the shim is missing skips
        pytest.skip(f"no device shim: {exc}")
    built = build.build("accel-staging")
    src = tmp_path / "late.c"
    src.write_text(LATE_CLIENT)
    (tmp_path / "standin.h").write_text((ROOT / "tests" / "c" / "upstream" / "standin.h").read_text())
    exe = tmp_path / "late"
    build.compile_against(built, src, exe, shared=False)
    qdarpc = Path(sys.executable).parent / "qdarpc"
    out = {}
    for rev in (RFC, V1):
        env = native.sanitizer_preload({k: v for k, v in os.environ.items()
                                        if k not in ("QDARPC_TRACE", "QDARPC_SOC", "QDARPC_BACKEND", "LD_PRELOAD",
                                                     "LD_LIBRARY_PATH", "PYTHONPATH", "DSP_LIBRARY_PATH",
                                                     "ADSP_LIBRARY_PATH")})
        env["QDARPC_SHIM_DEBUG"] = "1"
        env[kernels.ENV] = rev
        res = subprocess.run([str(qdarpc), "run", "--shim", "--", str(exe)], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)
        out[rev] = res
    rfc, v1 = out[RFC], out[V1]
    assert rfc.returncode == 0 and "sum 0x0 499500" in rfc.stdout, rfc.stdout + rfc.stderr
    assert v1.returncode == 1 and "sum 0xe 0" in v1.stdout, v1.stdout + v1.stderr
    assert "ioctl(" in v1.stderr and ", 0xc0186447, " in v1.stderr and ") = -22" in v1.stderr


# --- the CLI: --kernel FRONTEND:REVISION on every command that builds a SoC -----------------
sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import cli_runner, errors  # noqa: E402


@pytest.fixture
def run(fd_guard):
    """Run ``qdarpc ARGS``; checks that the command left no emulator object or fd behind."""
    yield from cli_runner()


def usage_error(res) -> str:
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("Error: ") and "Traceback" not in res.output, res.output
    return err[-1]


def test_devices_shows_the_revisions_in_force(run):
    text = run("devices").stdout
    assert f"kernel accel   {RFC}  QDA accel RFC" in text and f"kernel legacy  {LEG}  " in text
    text = run("devices", "--kernel", V1, "--kernel", "legacy:qda-shim").stdout
    assert f"kernel accel   {V1}  QDA accel v1" in text and "legacy:qda-shim" in text and "(semantic)" in text
    data = json.loads(run("devices", "--kernel", V1, "--json").stdout)
    assert data["kernel"] == {
        "accel": {"revision": V1, "title": kernels.REVISIONS["accel"]["qda-v1-2026-05"].title,
                  "source": kernels.REVISIONS["accel"]["qda-v1-2026-05"].source, "exact": True},
        "legacy": {"revision": LEG, "title": kernels.REVISIONS["legacy"][LEG[7:]].title,
                   "source": kernels.REVISIONS["legacy"][LEG[7:]].source, "exact": True}}
    env = json.loads(run("devices", "--json", env={kernels.ENV: "legacy:misc-7.3"}).stdout)["kernel"]
    assert (env["accel"]["revision"], env["legacy"]["revision"]) == (RFC, "legacy:misc-7.3")
    assert kernels.ENV not in os.environ  # the command's setting does not outlive it


@pytest.mark.parametrize("args,why", [
    (["--kernel", "accel:qda-v3"], "unknown accel kernel revision 'qda-v3'"),
    (["--kernel", "dsp:qda-v1-2026-05"], "unknown kernel front end 'dsp'"),
    (["--kernel", V1, "--kernel", RFC], "front end 'accel' given twice"),
    (["--kernel", "qda-v1-2026-05"], "is not FRONTEND:REVISION"),
])
@pytest.mark.parametrize("command", [["devices"], ["query", "cdsp"], ["selftest"], ["ab", "calculator"],
                                     ["invoke", TEST, "2"], ["trace", "run", "-o", "t.jsonl"], ["run"],
                                     ["doctor"]])
def test_unknown_kernel_is_a_usage_error_listing_the_valid_ones(run, command, args, why):
    extra = ["--", "devices"] if command[0] in ("trace", "run") else []
    res = run(*command, *args, *extra, code=errors.EXIT_USAGE)
    line = usage_error(res)
    assert "'--kernel'" in line and why in line and line.endswith("valid: " + ", ".join(VALID))


def test_bad_environment_is_a_usage_error(run):
    line = usage_error(run("devices", code=errors.EXIT_USAGE, env={kernels.ENV: "accel:v1"}))
    assert "unknown accel kernel revision 'v1'" in line and "[env QDARPC_KERNEL]" not in line


def test_kernel_help_lists_the_revisions(run):
    help_text = " ".join(run("devices", "--help").stdout.split())
    assert "--kernel FRONTEND:REVISION" in help_text and "QDARPC_KERNEL" in help_text
    assert "Valid: " + ", ".join(VALID) in help_text.replace("- ", "-")  # click wraps after hyphens


def test_a_profile_that_names_a_kernel(run, tmp_path):
    prof = tmp_path / "soc.json"
    prof.write_text(json.dumps({"kernel": V1, "domains": [{"name": "cdsp", "context_banks": 2}]}))
    data = json.loads(run("devices", "--soc", prof, "--json").stdout)
    assert data["kernel"]["accel"]["revision"] == V1
    data = json.loads(run("devices", "--soc", prof, "--kernel", V1, "--json").stdout)  # agreeing: fine
    assert data["kernel"]["accel"]["revision"] == V1
    line = usage_error(run("devices", "--soc", prof, "--kernel", RFC, code=errors.EXIT_USAGE))
    assert f"names kernel {V1},{LEG}; {RFC},{LEG} contradicts it" in line
    data = json.loads(run("devices", "--soc", prof, "--json", env={kernels.ENV: RFC}).stdout)
    assert data["kernel"]["accel"]["revision"] == V1  # the env is below the profile


def test_query_and_invoke_on_v1(run):
    data = json.loads(run("query", "cdsp", "--kernel", V1, "--json").stdout)
    assert (data["dsp_name"], data["request"]) == ("cdsp", "0x80106440")
    res = run("invoke", TEST, "echo", "--in", "str:hi", "--out", "str:8", "--kernel", V1)
    assert "ret 0x0 AEE_SUCCESS" in res.stdout


def test_selftest_names_the_revision_its_ioctls_and_how_the_buffer_goes(run):
    """The first line names the accel revision; v1 names its ioctls REMOTE_* and passes the
    by-reference buffer as a DMA-BUF fd (docs/spec/kernel_revisions_2026.md §2.1), the RFC by
    GEM handle. selftest does not use the legacy driver: a legacy-only --kernel leaves the RFC."""
    out = run("selftest", "--kernel", V1).stdout.splitlines()
    assert out[0] == f"kernel {V1}: QDA accel v1 ([PATCH 00/15], 2026-05-19)"
    assert out[2] == "DRM_IOCTL_QDA_REMOTE_SESSION_CREATE unsigned user PD -> 0x0"
    assert out[5] == "REMOTE_INVOKE sum  sc=0x02020100  copied 4000 B    -> 499500 (ret 0x0)"
    assert out[6] == ("REMOTE_INVOKE max  sc=0x03020100  shared GEM 1 as a DMA-BUF fd exported for the call "
                      "-> 999 (ret 0x0)")
    assert out[-1].startswith("PASS") and "DRM_IOCTL_QDA_INIT_CREATE" not in "\n".join(out)
    signed = run("selftest", "--kernel", V1, "-d", "adsp").stdout
    assert "\nDRM_IOCTL_QDA_REMOTE_SESSION_CREATE signed user PD -> 0x0\n" in signed
    for args in ((), ("--kernel", RFC), ("--kernel", "legacy:qda-shim")):
        out = run("selftest", *args).stdout.splitlines()
        assert out[0] == f"kernel {RFC}: QDA accel RFC ([PATCH RFC 00/18] accel/qda, 2026-02-24)"
        assert out[2] == "DRM_IOCTL_QDA_INIT_CREATE          unsigned user PD -> 0x0"
        assert out[6] == "INVOKE max  sc=0x03020100  shared GEM 1      -> 999 (ret 0x0)"


def test_selftest_and_trace_run_on_v1(run, tmp_path):
    res = run("selftest", "--kernel", V1)
    assert "PASS" in res.stdout and "shared GEM" in res.stdout
    out = tmp_path / "t.jsonl"
    run("trace", "run", "--kernel", V1, "-o", out, "--", "selftest")
    names = {json.loads(line).get("name") for line in out.read_text().splitlines()}
    assert {"DRM_IOCTL_QDA_REMOTE_SESSION_CREATE", "DRM_IOCTL_QDA_REMOTE_INVOKE",
            "DRM_IOCTL_PRIME_HANDLE_TO_FD"} <= names and "DRM_IOCTL_QDA_INVOKE" not in names
    run("trace", "run", "-o", out, "--", "selftest", "--kernel", RFC)
    names = {json.loads(line).get("name") for line in out.read_text().splitlines()}
    assert "DRM_IOCTL_QDA_INVOKE" in names and "DRM_IOCTL_QDA_REMOTE_INVOKE" not in names


def test_json_trace_names_the_revisions(run, tmp_path):
    """A .json trace carries the revisions in force in otherData.kernel: trace run's --kernel,
    or the subcommand's own (kept until the trace is written); convert has none to give."""
    both = {"accel": V1, "legacy": "legacy:qda-shim"}
    out = tmp_path / "t.json"
    run("trace", "run", "--kernel", V1, "--kernel", "legacy:qda-shim", "-o", out, "--", "selftest")
    assert json.loads(out.read_text())["otherData"]["kernel"] == both
    run("trace", "run", "-o", out, "--", "selftest", "--kernel", V1, "--kernel=legacy:qda-shim")
    doc = json.loads(out.read_text())
    assert doc["otherData"]["kernel"] == both
    assert "DRM_IOCTL_QDA_REMOTE_INVOKE" in {e["name"] for e in doc["traceEvents"]}  # what it ran on
    run("trace", "run", "-o", out, "--", "selftest")
    assert json.loads(out.read_text())["otherData"]["kernel"] == {"accel": RFC, "legacy": LEG}
    assert kernels.ENV not in os.environ
    lines = tmp_path / "t.jsonl"
    run("trace", "run", "--kernel", V1, "-o", lines, "--", "selftest")
    assert all(json.loads(x)["kind"] for x in lines.read_text().splitlines())  # events only
    run("trace", "convert", lines, "-o", out)
    assert "kernel" not in json.loads(out.read_text())["otherData"]


def test_trace_formats_write_kernel(tmp_path, monkeypatch):
    from qda_core.trace_formats import write

    path = tmp_path / "t.json"

    def meta():
        return json.loads(path.read_text())["otherData"].get("kernel")
    write([], path, kernel="legacy:misc-7.2")
    assert meta() == {"accel": RFC, "legacy": "legacy:misc-7.2"}
    monkeypatch.setenv(kernels.ENV, V1)
    write([], path)
    assert meta() == {"accel": V1, "legacy": LEG}
    write([], path, kernel=False)
    assert meta() is None
    monkeypatch.setenv(kernels.ENV, "accel:nope")  # never fails the write: left out
    write([], path)
    assert meta() is None and json.loads(path.read_text())["otherData"]["producer"] == "qdarpc"


def test_ab_takes_the_kernel(run):
    data = json.loads(run("ab", "calculator", "--kernel", LEG, "--kernel", RFC, "--json").stdout)
    assert data["agree"] is True


def test_run_exports_the_selection_to_the_program(tmp_path):
    qdarpc = Path(sys.executable).parent / "qdarpc"
    if not qdarpc.exists():
        pytest.skip("no qdarpc console script in this environment")
    env = {k: v for k, v in os.environ.items() if k != kernels.ENV}
    res = subprocess.run([str(qdarpc), "run", "--kernel", "legacy:misc-7.3", "--kernel", V1, "--",
                          "sh", "-c", 'echo "[$QDARPC_KERNEL]"'], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"[{V1},legacy:misc-7.3]", res.stderr
    res = subprocess.run([str(qdarpc), "run", "--", "sh", "-c", 'echo "[${QDARPC_KERNEL-unset}]"'], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "[unset]"
