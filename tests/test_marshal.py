"""Worked examples of the invoke marshalling, run against both backends (C and reference)."""
from __future__ import annotations

import ctypes
import errno
import mmap
import struct
import subprocess
import sys

import pytest

from qda_core import marshal_ref
from qda_core._ext import load
from qda_core.wire import INVOKE_ARG, scalars

BACKENDS = {"c": load("_marshal"), "py": marshal_ref}

VA = 0x7F12_3450_0000      # page-aligned "kernel VA" of the payload
DEV = 0x5_8000_0000        # page-aligned device address (SID 5 in bits 63..32)
REF = struct.Struct("<QQ")
U64 = struct.Struct("<Q")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


@pytest.fixture(params=sorted(BACKENDS), ids=lambda b: f"backend={b}")
def m(request):
    return BACKENDS[request.param]


def addr(buf: bytearray, off: int = 0) -> int:
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)) + off


def descs(*items) -> bytes:
    """items: (ptr, length[, fd]) -> packed uapi descriptors."""
    return b"".join(INVOKE_ARG.pack(it[0], it[1], it[2] if len(it) > 2 else -1, 0) for it in items)


def refs(*items) -> bytes:
    return b"".join(REF.pack(a, s) for a, s in items)


def rpra(p, i):
    return REF.unpack_from(p, 16 * i)


def lst(p, n, i):
    return struct.unpack_from("<II", p, 16 * n + 8 * i)


def pages(p, n, i):
    return REF.unpack_from(p, 24 * n + 16 * i)


def raw_map(size: int, prot: int) -> int:
    a = _libc.mmap(None, size, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert a not in (None, ctypes.c_void_p(-1).value)
    return a


def test_metadata_size(m):
    assert m.metadata_size(0) == 384
    assert m.metadata_size(3) == 504
    assert m.metadata_size(540) == 40 * 540 + 384


def test_calculator_sum_round_trip(m):
    arena = bytearray(16384)
    base = addr(arena)
    vec = list(range(1000))
    struct.pack_into("<i", arena, 0, len(vec))
    struct.pack_into("<1000i", arena, 64, *vec)
    sc = 0x02020100
    assert sc == scalars(2, 2, 1)
    args = descs((base, 4), (base + 64, 4000), (base + 8192, 8))
    r = refs((0, 0), (0, 0), (0, 0))
    # 504 B metadata -> 512; in0 512..516; in1 aligned 640..4640; out0 aligned 4736..4744
    assert m.payload_size(sc, args, r) == 4744
    payload = bytearray(8192)
    assert m.pack(sc, args, r, payload, VA, DEV) == 4744

    assert rpra(payload, 0) == (VA + 512, 4)
    assert rpra(payload, 1) == (VA + 640, 4000)
    assert rpra(payload, 2) == (VA + 4736, 8)
    assert [lst(payload, 3, i) for i in range(3)] == [(1, 0), (1, 1), (1, 2)]
    assert pages(payload, 3, 0) == (DEV, 4096)
    assert pages(payload, 3, 1) == (DEV, 8192)       # 640..4640 crosses a page
    assert pages(payload, 3, 2) == (DEV + 4096, 4096)
    assert payload[120:504] == bytes(384)            # fdlist + crclist zeroed
    assert payload[512:516] == struct.pack("<i", 1000)
    assert payload[640:4640] == arena[64:4064]
    assert payload[4736:4744] == bytes(8)            # out-buffer not copied in

    bufs, handles = m.decode(sc, payload)
    assert bufs == [(DEV + 512, 4), (DEV + 640, 4000), (DEV + 4736, 8)] and handles == []
    # the "DSP" computes the sum into the out-buffer
    n = struct.unpack_from("<i", payload, bufs[0][0] - DEV)[0]
    total = sum(struct.unpack_from(f"<{n}i", payload, bufs[1][0] - DEV))
    struct.pack_into("<q", payload, bufs[2][0] - DEV, total)
    assert m.unpack(sc, args, r, payload, VA) == ()
    assert struct.unpack_from("<q", arena, 8192)[0] == 499500


def test_zero_length_buffers(m):
    sc = scalars(0, 1, 1)
    args = descs((0, 0), (0, 0))
    r = refs((0, 0), (0, 0))
    # the kernel aligns for every inline region, even empty ones: 464 -> 512
    assert m.payload_size(sc, args, r) == 512
    payload = bytearray(512)
    payload[:] = b"\xaa" * 512
    assert m.pack(sc, args, r, payload, VA, DEV) == 512
    assert rpra(payload, 0) == (0, 0) and rpra(payload, 1) == (0, 0)
    assert lst(payload, 2, 0) == (0, 0) and lst(payload, 2, 1) == (0, 1)
    assert pages(payload, 2, 0) == (0, 0)
    assert payload[464:] == bytes(48)                # the whole packet starts zeroed
    assert m.decode(sc, payload) == ([(0, 0), (0, 0)], [])
    assert m.unpack(sc, args, r, payload, VA) == ()


def test_overlapping_buffers_copied_once(m):
    arena = bytearray(range(256))
    b = addr(arena)
    sc = scalars(0, 3, 1)
    # in0 and in1 alias [0,100); in2 = [50,200) overlaps; out0 aliases [10,20)
    args = descs((b, 100), (b, 100), (b + 50, 150), (b + 10, 10))
    r = refs((0, 0), (0, 0), (0, 0), (0, 0))
    meta = m.metadata_size(4)                        # 544 -> inline starts at 640
    assert m.payload_size(sc, args, r) == 640 + 200  # the union, once
    payload = bytearray(1024)
    m.pack(sc, args, r, payload, VA, DEV)
    assert meta == 544
    assert rpra(payload, 0) == (VA + 640, 100)
    assert rpra(payload, 1) == (VA + 640, 100)       # alias shares the copy
    assert rpra(payload, 2) == (VA + 690, 150)
    assert rpra(payload, 3) == (VA + 650, 10)
    assert payload[640:840] == arena[:200]
    bufs, _ = m.decode(sc, payload)
    assert [a - DEV for a, _ in bufs] == [640, 640, 690, 650]
    # DSP writes the out-buffer region; unpack copies it back through the alias
    payload[650:660] = b"Z" * 10
    m.unpack(sc, args, r, payload, VA)
    assert arena[10:20] == b"Z" * 10 and arena[20:30] == bytes(range(20, 30))


def test_by_reference_buffer_not_copied(m):
    arena = bytearray(b"\x11" * 9000)
    b = addr(arena)
    sc = scalars(0, 1, 1)
    ptr = b + 100
    args = descs((ptr, 5000, 7), (b + 6000, 16, 7))
    r = refs((0x9_0000_3000, 1), (0x9_0000_5000, 1))
    assert m.payload_size(sc, args, r) == 512        # nothing inline: ALIGN(464)
    payload = bytearray(512)
    m.pack(sc, args, r, payload, VA, DEV)
    assert rpra(payload, 0) == (ptr, 5000)
    first, last = ptr >> 12, (ptr + 4999) >> 12
    assert pages(payload, 2, 0) == (0x9_0000_3000, (last - first + 1) * 4096)
    assert payload[464:] == bytes(48)
    assert m.decode(sc, payload)[0][0] == (0x9_0000_3000 + (ptr & 0xFFF), 5000)
    # by-reference out-buffer: the DSP wrote user memory itself, unpack leaves it alone
    struct.pack_into("<QQ", payload, 16, VA + 464, 16)
    m.unpack(sc, args, r, payload, VA)
    assert arena[6000:6016] == b"\x11" * 16


def test_handles(m):
    arena = bytearray(64)
    sc = scalars(0, 1, 0, 1, 1)
    args = descs((addr(arena), 8), (0x1_0000_0040, 4096, 12), (0, 0, -1))
    r = refs((0, 0), (0xA_0000_0000, 0x10000), (0, 0))
    payload = bytearray(m.payload_size(sc, args, r))
    m.pack(sc, args, r, payload, VA, DEV)
    assert struct.unpack_from("<iII4x", payload, 16) == (12, 0x40, 4096)   # offset = (u32)ptr
    assert struct.unpack_from("<iII4x", payload, 32) == (-1, 0, 0)
    assert lst(payload, 3, 1) == (1, 1) and lst(payload, 3, 2) == (0, 2)
    assert pages(payload, 3, 1) == (0xA_0000_0000, 0x10000)
    assert m.decode(sc, payload)[1] == [(12, 0x40, 4096, 0xA_0000_0000, 0x10000), (-1, 0, 0, 0, 0)]


def test_fdlist_return(m):
    sc = scalars(0, 0, 1, 1)
    args, r = descs((0, 0, 3), (0, 0, 4)), refs((0, 0), (0, 0))
    payload = bytearray(m.payload_size(sc, args, r))
    m.pack(sc, args, r, payload, VA, DEV)
    for k, fd in enumerate([5, 7, 0, 9]):
        U64.pack_into(payload, 80 + 8 * k, fd)
    assert m.unpack(sc, args, r, bytes(payload), VA) == (5, 7)
    for k in range(16):
        U64.pack_into(payload, 80 + 8 * k, 100 + k)
    assert m.unpack(sc, args, r, payload, VA) == tuple(range(100, 116))


def _errno_of(excinfo) -> int:
    return excinfo.value.errno


@pytest.mark.parametrize("fn", ["payload_size", "pack", "unpack"])
def test_short_args_or_refs_einval(m, fn):
    sc = scalars(0, 2, 0)
    good_a, good_r = descs((0, 0), (0, 0)), refs((0, 0), (0, 0))
    payload = bytearray(4096)
    extra = {"payload_size": (), "pack": (payload, VA, DEV), "unpack": (payload, VA)}[fn]
    for a, r in ((good_a[:-1], good_r), (good_a, good_r[:-1])):
        with pytest.raises(OSError) as ei:
            getattr(m, fn)(sc, a, r, *extra)
        assert _errno_of(ei) == errno.EINVAL and "fewer than N" in str(ei.value)


def test_overflowing_buffer_efault(m):
    sc = scalars(0, 1, 0)
    for ref in ((0, 0), (0x1000, 1)):               # inline and by reference alike
        with pytest.raises(OSError) as ei:
            m.payload_size(sc, descs((2**64 - 16, 17)), refs(ref))
        assert _errno_of(ei) == errno.EFAULT and "arg 0" in str(ei.value)
    # end == 2**64 is not representable either (u64 end would wrap to 0)
    with pytest.raises(OSError):
        m.payload_size(sc, descs((2**64 - 16, 16)), refs((0x1000, 1)))
    assert m.payload_size(sc, descs((2**64 - 16, 15)), refs((0x1000, 1))) == 512


def test_inline_null_pointer_efault(m):
    sc = scalars(0, 1, 1)
    with pytest.raises(OSError) as ei:
        m.payload_size(sc, descs((0x1000, 0), (0, 4)), refs((0, 0), (0, 0)))
    assert _errno_of(ei) == errno.EFAULT and "arg 1: inline buffer has a NULL ptr" in str(ei.value)
    # by reference the kernel takes ptr as given
    assert m.payload_size(sc, descs((0x1000, 0), (0, 4)), refs((0, 0), (0x2000, 1))) == 512


def test_payload_size_overflow_enomem(m):
    sc = scalars(0, 2, 0)
    args = descs((1, 2**63), (2**63 + 1, 2**63 - 2))
    with pytest.raises(OSError) as ei:
        m.payload_size(sc, args, refs((0, 0), (0, 0)))
    assert _errno_of(ei) == errno.ENOMEM


def test_pack_payload_too_small_einval(m):
    arena = bytearray(8)
    sc = scalars(0, 1, 0)
    args, r = descs((addr(arena), 8)), refs((0, 0))
    size = m.payload_size(sc, args, r)
    with pytest.raises(OSError) as ei:
        m.pack(sc, args, r, bytearray(size - 1), VA, DEV)
    assert _errno_of(ei) == errno.EINVAL
    with pytest.raises(TypeError, match="writable"):
        m.pack(sc, args, r, bytes(size), VA, DEV)


@pytest.mark.parametrize("kind", ["low", "unmapped", "prot_none"])
def test_bad_in_pointer_efault_no_crash(m, kind):
    if kind == "low":
        ptr, cleanup = 8, None
    else:
        ptr = raw_map(8192, 0 if kind == "prot_none" else mmap.PROT_READ)
        if kind == "unmapped":
            _libc.munmap(ptr, 8192)
            cleanup = None
        else:
            cleanup = ptr
    try:
        sc = scalars(0, 1, 0)
        args, r = descs((ptr, 100)), refs((0, 0))
        with pytest.raises(OSError) as ei:
            m.pack(sc, args, r, bytearray(4096), VA, DEV)
        assert _errno_of(ei) == errno.EFAULT and "cannot read" in str(ei.value)
    finally:
        if cleanup:
            _libc.munmap(cleanup, 8192)


def test_in_buffer_straddling_into_unmapped_page_efault(m):
    base = raw_map(8192, mmap.PROT_READ | mmap.PROT_WRITE)
    _libc.munmap(base + 4096, 4096)
    try:
        sc = scalars(0, 1, 0)
        with pytest.raises(OSError) as ei:
            m.pack(sc, descs((base + 4000, 200)), refs((0, 0)), bytearray(4096), VA, DEV)
        assert _errno_of(ei) == errno.EFAULT
    finally:
        _libc.munmap(base, 4096)


def test_bad_out_pointer_efault_no_crash(m):
    ro = raw_map(4096, mmap.PROT_READ)                # readable, not writable
    try:
        sc = scalars(0, 0, 1)
        args, r = descs((ro, 16)), refs((0, 0))
        payload = bytearray(m.payload_size(sc, args, r))
        m.pack(sc, args, r, payload, VA, DEV)
        with pytest.raises(OSError) as ei:
            m.unpack(sc, args, r, payload, VA)
        assert _errno_of(ei) == errno.EFAULT and "cannot write" in str(ei.value)
    finally:
        _libc.munmap(ro, 4096)


def test_unpack_rejects_dsp_lies(m):
    out = bytearray(16)
    sc = scalars(0, 0, 1)
    args, r = descs((addr(out), 16)), refs((0, 0))
    payload = bytearray(m.payload_size(sc, args, r))
    m.pack(sc, args, r, payload, VA, DEV)
    pv, _ = rpra(payload, 0)
    for bad, what in (((pv, 17), "length beyond"), ((VA + len(payload) - 8, 16), "outside the payload"),
                      ((VA - 16, 16), "outside the payload"), ((0, 16), "outside the payload")):
        REF.pack_into(payload, 0, *bad)
        with pytest.raises(OSError) as ei:
            m.unpack(sc, args, r, payload, VA)
        assert _errno_of(ei) == errno.EFAULT and what in str(ei.value)
    assert out == bytearray(16)
    with pytest.raises(OSError) as ei:
        m.unpack(sc, args, r, payload[:423], VA)
    assert _errno_of(ei) == errno.EINVAL
    # the DSP may shrink the length: only that much is copied
    payload[pv - VA:pv - VA + 16] = b"x" * 16
    REF.pack_into(payload, 0, pv, 3)
    assert m.unpack(sc, args, r, payload, VA) == ()
    assert out == b"xxx" + bytes(13)


def test_by_ref_overlapping_inline_copy_outside_payload_efault(m):
    arena = bytearray(0x3000)
    b = addr(arena)
    sc = scalars(0, 2, 0)
    # by-ref [b, b+0x2000) raises max_end; the inline [b, b+0x100) then gets offset 0x2000,
    # which the kernel would copy to before its payload buffer
    args, r = descs((b, 0x2000, 5), (b, 0x100)), refs((0x4000, 1), (0, 0))
    assert m.payload_size(sc, args, r) == 512
    with pytest.raises(OSError) as ei:
        m.pack(sc, args, r, bytearray(512), VA, DEV)
    assert _errno_of(ei) == errno.EFAULT and "arg 1" in str(ei.value)


def test_decode_errors(m):
    sc = scalars(0, 1, 0, 1)
    with pytest.raises(OSError) as ei:
        m.decode(sc, bytes(m.metadata_size(2) - 1))
    assert _errno_of(ei) == errno.EINVAL
    p = bytearray(m.metadata_size(2))
    struct.pack_into("<II", p, 32, 2, 0)
    with pytest.raises(OSError) as ei:
        m.decode(sc, p)
    assert _errno_of(ei) == errno.EINVAL and "more than one" in str(ei.value)
    struct.pack_into("<II", p, 32, 1, 2)
    with pytest.raises(OSError) as ei:
        m.decode(sc, p)
    assert _errno_of(ei) == errno.EINVAL and "page index" in str(ei.value)
    struct.pack_into("<IIII", p, 32, 1, 1, 0, 1)
    struct.pack_into("<QQ", p, 0, VA + 0x123, 77)
    struct.pack_into("<QQ", p, 48 + 16, DEV, 4096)
    assert m.decode(sc, p) == ([(DEV + 0x123, 77)], [(0, 0, 0, DEV, 4096)])


def test_argument_types(m):
    with pytest.raises(OverflowError):
        m.payload_size(2**32, b"", b"")
    with pytest.raises(OverflowError):
        m.pack(0, b"", b"", bytearray(384), -1, 0)
    with pytest.raises(TypeError, match="args must support the buffer protocol"):
        m.payload_size(0, 5, b"")
    np = pytest.importorskip("numpy")
    a = np.zeros(8, dtype=np.uint64)
    with pytest.raises(TypeError, match="C-contiguous"):
        m.decode(0, np.zeros((30, 30), dtype=np.uint8)[:, ::2])
    assert m.payload_size(scalars(0, 0, 0, 1), a[:3], a[3:5]) == 512


def test_large_copy_round_trip_and_fault(m):
    """8 MiB takes the validated-memcpy path in C; a hole in the range must still EFAULT."""
    n = 8 << 20
    src = bytearray(b"\x5a" * n)
    dst = bytearray(n)
    sc = scalars(0, 1, 1)
    args, r = descs((addr(src), n), (addr(dst), n)), refs((0, 0), (0, 0))
    payload = bytearray(m.payload_size(sc, args, r))
    m.pack(sc, args, r, payload, VA, DEV)
    (pin, _), (pout, _) = rpra(payload, 0), rpra(payload, 1)
    assert payload[pin - VA:pin - VA + n] == src
    payload[pout - VA:pout - VA + n] = b"\x33" * n
    m.unpack(sc, args, r, payload, VA)
    assert dst == b"\x33" * n
    base = raw_map(n + 4096, mmap.PROT_READ | mmap.PROT_WRITE)
    _libc.munmap(base + n, 4096)
    try:
        args = descs((base + 4096, n), (base, 16))
        with pytest.raises(OSError) as ei:
            m.pack(sc, args, r, payload, VA, DEV)
        assert _errno_of(ei) == errno.EFAULT
    finally:
        _libc.munmap(base, n)


@pytest.mark.parametrize("value,backend", [("c", "c"), ("py", "py"), (None, "c")])
def test_backend_switch(value, backend):
    env = {} if value is None else {"QDARPC_MARSHAL": value}
    out = subprocess.run(
        [sys.executable, "-c", "import qda_core.marshal as m; print(m.BACKEND, m.metadata_size(1))"],
        env=_env(env), capture_output=True, text=True, check=True, cwd="/",
    )
    assert out.stdout.split() == [backend, "424"]


def test_backend_switch_unknown():
    out = subprocess.run(
        [sys.executable, "-c", "import qda_core.marshal"],
        env=_env({"QDARPC_MARSHAL": "rust"}), capture_output=True, text=True, cwd="/",
    )
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "'rust'" in out.stderr and "c, py" in out.stderr


def _env(extra):
    import os

    import qda_core
    env = {k: v for k, v in os.environ.items() if k != "QDARPC_MARSHAL"}
    # The child must import the same qda_core as this process (installed or built in place).
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(qda_core.__file__)))
    env.update(extra)
    return env


def test_many_small_buffers_fault_names_the_right_arg(m, fd_guard):
    """The C side batches small copies; a bad pointer in the middle must still be attributed
    to its own argument, earlier copies done and later ones not."""
    n = 12
    arena = bytearray(range(256)) * 4
    b = addr(arena)
    ro = raw_map(4096, mmap.PROT_READ)
    try:
        sc = scalars(0, n, 0)
        items = [(b + 64 * k, 48) for k in range(n)]
        items[7] = (8, 48)
        args, r = descs(*items), refs(*[(0, 0)] * n)
        with pytest.raises(OSError) as ei:
            m.pack(sc, args, r, bytearray(m.payload_size(sc, args, r)), VA, DEV)
        assert _errno_of(ei) == errno.EFAULT and "arg 7: cannot read" in str(ei.value)

        sc = scalars(0, 0, n)
        items = [(b + 64 * k, 48) for k in range(n)]
        items[5] = (ro, 48)
        args = descs(*items)
        payload = bytearray(m.payload_size(sc, args, r))
        m.pack(sc, args, r, payload, VA, DEV)
        for k in range(n):
            pv, ln = rpra(payload, k)
            payload[pv - VA:pv - VA + ln] = bytes([0xE0 + k]) * ln
        before = bytes(arena)
        with pytest.raises(OSError) as ei:
            m.unpack(sc, args, r, payload, VA)
        assert _errno_of(ei) == errno.EFAULT and "arg 5: cannot write" in str(ei.value)
        for k in range(n):
            got = arena[64 * k:64 * k + 48]
            want = bytes([0xE0 + k]) * 48 if k < 5 else before[64 * k:64 * k + 48]
            assert got == want, k
    finally:
        _libc.munmap(ro, 4096)


def test_rejected_reply_writes_nothing(m):
    outs = [bytearray(8) for _ in range(3)]
    sc = scalars(0, 0, 3)
    args, r = descs(*[(addr(o), 8) for o in outs]), refs(*[(0, 0)] * 3)
    payload = bytearray(m.payload_size(sc, args, r))
    m.pack(sc, args, r, payload, VA, DEV)
    for k in range(3):
        pv, _ = rpra(payload, k)
        payload[pv - VA:pv - VA + 8] = b"\xff" * 8
    REF.pack_into(payload, 32, rpra(payload, 2)[0], 9)   # the last reply lies
    with pytest.raises(OSError):
        m.unpack(sc, args, r, payload, VA)
    assert outs == [bytearray(8)] * 3


def test_batched_copies_after_fork(m):
    """A forked child gets its own copy pipe (sharing the parent's would mix their data)."""
    import os
    n = 12
    arena = bytearray(os.urandom(64 * n))
    b = addr(arena)
    sc = scalars(0, n, 0)
    args, r = descs(*[(b + 64 * k, 48) for k in range(n)]), refs(*[(0, 0)] * n)

    def check() -> bool:
        for _ in range(200):
            p = bytearray(m.payload_size(sc, args, r))
            m.pack(sc, args, r, p, VA, DEV)
            for k in range(n):
                pv, ln = rpra(p, k)
                if p[pv - VA:pv - VA + ln] != arena[64 * k:64 * k + 48]:
                    return False
        return True

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0 if check() else 1)
    ok = check()
    _, status = os.waitpid(pid, 0)
    assert ok and os.waitstatus_to_exitcode(status) == 0


def test_pack_defines_the_whole_packet(m):
    """A recycled payload needs no clearing: pack zeroes [0, pkt_size), so a copied out-buffer
    reaches the DSP as zeros whatever the buffer held before; bytes past pkt_size are untouched."""
    data = bytearray(b"x" * 40)
    out = bytearray(24)
    sc = scalars(0, 1, 1)
    args = descs((addr(data), 40), (addr(out), 24))
    r = refs((0, 0), (0, 0))
    size = m.payload_size(sc, args, r)
    payload = bytearray(b"\xee" * (size + 16))
    m.pack(sc, args, r, payload, VA, DEV)
    bufs, _ = m.decode(sc, payload)
    out_off = bufs[1][0] - DEV
    assert payload[out_off:out_off + 24] == bytes(24)
    assert payload[size:] == b"\xee" * 16
