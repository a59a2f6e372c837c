"""ioctl numbers and struct layouts against the spec tables (qda_accel_uapi.md §2.3, §3; legacy §7.1)."""
import pytest

from qda_core import uapi

ACCEL_NUMBERS = {
    "DRM_IOCTL_QDA_QUERY": 0x80106440,
    "DRM_IOCTL_QDA_GEM_CREATE": 0xC0106441,
    "DRM_IOCTL_QDA_GEM_MMAP_OFFSET": 0xC0106442,
    "DRM_IOCTL_QDA_INIT_ATTACH": 0x00006443,
    "DRM_IOCTL_QDA_INIT_CREATE": 0xC0186444,
    "DRM_IOCTL_QDA_MAP": 0xC0306445,
    "DRM_IOCTL_QDA_MUNMAP": 0xC0206446,
    "DRM_IOCTL_QDA_INVOKE": 0xC0106447,
    "DRM_IOCTL_GEM_CLOSE": 0x40086409,
    "DRM_IOCTL_PRIME_HANDLE_TO_FD": 0xC00C642D,
    "DRM_IOCTL_PRIME_FD_TO_HANDLE": 0xC00C642E,
}
LEGACY_NUMBERS = {
    "FASTRPC_IOCTL_ALLOC_DMA_BUFF": 0xC0105201, "FASTRPC_IOCTL_FREE_DMA_BUFF": 0xC0045202,
    "FASTRPC_IOCTL_INVOKE": 0xC0105203, "FASTRPC_IOCTL_INIT_ATTACH": 0x00005204,
    "FASTRPC_IOCTL_INIT_CREATE": 0xC0185205, "FASTRPC_IOCTL_MMAP": 0xC0205206,
    "FASTRPC_IOCTL_MUNMAP": 0xC0105207, "FASTRPC_IOCTL_INIT_ATTACH_SNS": 0x00005208,
    "FASTRPC_IOCTL_INIT_CREATE_STATIC": 0xC0105209, "FASTRPC_IOCTL_MEM_MAP": 0xC040520A,
    "FASTRPC_IOCTL_MEM_UNMAP": 0xC030520B, "FASTRPC_IOCTL_GET_DSP_INFO": 0xC01C520D,
}


@pytest.mark.parametrize("name,number", sorted({**ACCEL_NUMBERS, **LEGACY_NUMBERS}.items()))
def test_ioctl_number(name, number):
    assert getattr(uapi, name) == number


def test_tables_name_every_ioctl():
    assert {i.name for i in uapi.ACCEL_IOCTLS.values()} == set(ACCEL_NUMBERS)
    assert {i.name for i in uapi.LEGACY_IOCTLS.values()} == set(LEGACY_NUMBERS)


LAYOUTS = [
    (uapi.drm_qda_query, 16, {"dsp_name": 0}),
    (uapi.drm_qda_gem_create, 16, {"handle": 0, "pad": 4, "size": 8}),
    (uapi.drm_qda_gem_mmap_offset, 16, {"handle": 0, "pad": 4, "offset": 8}),
    (uapi.qda_init_create, 24, {"filelen": 0, "filefd": 4, "attrs": 8, "siglen": 12, "file": 16}),
    (uapi.qda_mem_map, 48, {"request": 0, "flags": 4, "fd": 8, "attrs": 12, "offset": 16, "reserved": 20,
                            "vaddrin": 24, "size": 32, "vaddrout": 40}),
    (uapi.qda_mem_unmap, 32, {"request": 0, "fd": 4, "vaddr": 8, "vaddrout": 16, "size": 24}),
    (uapi.qda_invoke_args, 16, {"handle": 0, "sc": 4, "args": 8}),
    (uapi.fastrpc_invoke_args, 24, {"ptr": 0, "length": 8, "fd": 16, "attr": 20}),
    (uapi.drm_prime_handle, 12, {"handle": 0, "flags": 4, "fd": 8}),
    (uapi.fastrpc_mem_map, 64, {"version": 0, "fd": 4, "offset": 8, "flags": 12, "vaddrin": 16,
                                "length": 24, "vaddrout": 32, "attrs": 40}),
    (uapi.fastrpc_mem_unmap, 48, {"vesion": 0, "fd": 4, "vaddr": 8, "length": 16}),
    (uapi.fastrpc_ioctl_capability, 28, {"domain": 0, "attribute_id": 4, "capability": 8}),
    (uapi.fastrpc_req_mmap, 32, {"fd": 0, "flags": 4, "vaddrin": 8, "size": 16, "vaddrout": 24}),
]


@pytest.mark.parametrize("layout,size,offsets", LAYOUTS, ids=lambda v: getattr(v, "name", ""))
def test_layout(layout, size, offsets):
    assert layout.size == size
    assert {f: layout.offset(f) for f in offsets} == offsets


def test_pack_roundtrip():
    buf = uapi.qda_mem_map.pack(request=2, fd=7, vaddrin=0xDEAD_0000, vaddrout=5)
    got = uapi.qda_mem_map.unpack(buf)
    assert (got["request"], got["fd"], got["vaddrin"], got["vaddrout"], got["size"]) == (2, 7, 0xDEAD_0000, 5, 0)


def test_revision_and_lib_differences_documented(monkeypatch):
    from qda_core import kernels

    monkeypatch.delenv(kernels.ENV, raising=False)
    for front in kernels.FRONTENDS:  # a view of the kernels table, not a second copy
        rev = kernels.REVISIONS[front][kernels.DEFAULT[front]]
        assert uapi.REVISION[front] == f"{rev} ({rev.title})"
    monkeypatch.setenv(kernels.ENV, "accel:qda-rfc-2026-02")
    assert uapi.REVISION["accel"].startswith("accel:qda-rfc-2026-02 (QDA accel RFC")
    assert {"GEM_CREATE layout", "QUERY size", "INVOKE command size"} <= set(uapi.LIB_DIFFERENCES)
