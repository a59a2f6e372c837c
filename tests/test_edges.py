"""Edges no other test guards (issue 9): each test here fails on a hand-placed mutant of the code,
named in its docstring, and passes on the real code. Every test drives the public path (ioctls,
typed driver calls, the legacy API), not the function it guards."""
import errno
import os
import struct
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat.remotectl import ModuleOpenError, open_module
from qda_core import uapi
from qda_core.dsp import aee, caps

sys.path.insert(0, str(Path(__file__).parent))
from legacy_helpers import TEST, UNSIGNED, hexagon_elf, raises_errno

CDSP = "/dev/fastrpc-cdsp"
EM_QDSP6 = 164
SC_NULL = 0x02000000                  # qdarpc_test method 2: no arguments
SC_SET_PARAM1 = 0x05020000            # remotectl1 set_param: 2 in-bufs
REMOTECTL1 = 8
SC_REMOTECTL1_OPEN = 0x02020200


def u32(v: int) -> int:
    return v & 0xFFFF_FFFF


def elf_header(ei_class: int, ei_data: int = 1, machine: int = EM_QDSP6, size: int = 128) -> bytes:
    img = bytearray(size)
    img[:7] = b"\x7fELF" + bytes((ei_class, ei_data, 1))
    struct.pack_into("<HH" if ei_data == 1 else ">HH", img, 16, 3, machine)
    return bytes(img)


@pytest.fixture
def hooks(monkeypatch, tmp_path):
    """A DSP library path with Python skels that call back into the test through a module."""
    mod = types.ModuleType("qdarpc_edge_hooks")
    mod.on_open = mod.on_call = lambda: 0
    monkeypatch.setitem(sys.modules, "qdarpc_edge_hooks", mod)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    (tmp_path / "libedge_skel.py").write_text(textwrap.dedent("""
        import sys
        from qda_core.dsp import Skeleton, method

        class Edge(Skeleton):  # the hooks of the running test (a loaded skel may outlive one)
            def open(self, uri):
                return sys.modules["qdarpc_edge_hooks"].on_open()

            @method(2, sc=0x02000000)
            def wait(self, call):
                return sys.modules["qdarpc_edge_hooks"].on_call()
    """))
    return mod


EDGE = "file:///libedge_skel.so?edge_skel_handle_invoke&_modver=1.0&_dom=cdsp"


# 1 --------------------------------------------------------------------------------------------
def test_status_notification_support_reads_1_only_for_raw_3(soc):
    """Mutant: the STATUS_NOTIFICATION_SUPPORT mapping ``int(value == 3)`` in the library's
    GET_DSP_INFO (e.g. dropped, or ``value != 0``). The DSP's raw attribute (V2 encoding) is 3 for
    "supported"; 1 and 2 are older encodings the library reports as 0."""
    soc.domain("cdsp").dsp.capabilities[caps.STATUS_NOTIFICATION_SUPPORT] = 3
    soc.domain("adsp").dsp.capabilities[caps.STATUS_NOTIFICATION_SUPPORT] = 1
    soc.domain("sdsp").dsp.capabilities[caps.STATUS_NOTIFICATION_SUPPORT] = 2
    lib = rpc.Library("legacy", soc=soc)
    got = {}
    for dom in (rpc.CDSP_DOMAIN_ID, rpc.ADSP_DOMAIN_ID, rpc.SDSP_DOMAIN_ID):
        cap = rpc.remote_dsp_capability(dom, rpc.STATUS_NOTIFICATION_SUPPORT, 7)
        lib.remote_handle_control(rpc.DSPRPC_GET_DSP_INFO, cap)
        got[dom] = cap.capability
    lib.close_all()
    assert got == {rpc.CDSP_DOMAIN_ID: 1, rpc.ADSP_DOMAIN_ID: 0, rpc.SDSP_DOMAIN_ID: 0}


# 2 --------------------------------------------------------------------------------------------
def test_elf64_pd_shell_is_refused(cdsp, soc):
    """Mutant: ``_is_hexagon_elf`` without the ELFCLASS32 check (an ELF64 shell accepted). The
    other header fields are those of a valid Hexagon shell, so only the class decides."""
    assert cdsp.init_create(elf_header(2)) == u32(aee.ERR_BAD_SHELL)       # ELFCLASS64
    assert cdsp.init_create(elf_header(1, ei_data=2)) == u32(aee.ERR_BAD_SHELL)  # big-endian
    assert [p for p in soc.domain("cdsp").dsp.processes() if p.client_id == cdsp.client_id] == []
    with soc.open_device("cdsp") as ok:
        assert ok.init_create(elf_header(1)) == 0                         # the ELF32 twin is fine


# 3 --------------------------------------------------------------------------------------------
def test_dlerror_is_truncated_to_dlerror_len(cdsp):
    """Mutant: ``_put_cstring`` ignoring ``dlerror_len`` (writing up to the out-buffer's size).
    remotectl open with a 64-byte out-buffer but ``dlerror_len`` 8: at most 7 characters and the
    NUL land, the rest of the buffer is untouched."""
    assert cdsp.init_create(attrs=UNSIGNED) == 0
    uri = b"file:///libnope_skel.so?nope_skel_handle_invoke&_modver=1.0&_dom=cdsp\0"
    out0, err = bytearray(8), bytearray(b"\xaa" * 64)
    assert cdsp.invoke(REMOTECTL1, SC_REMOTECTL1_OPEN, [struct.pack("<II", len(uri), 8), uri, out0, err]) == 0
    handle, dlerr = struct.unpack("<II", out0)
    assert (handle, dlerr) == (0, u32(aee.ERR_MOD_NOT_FOUND))
    text = bytes(err).split(b"\0", 1)[0]
    assert len(text) == 7 and err[7] == 0, bytes(err)
    assert b"libnope_skel.so".startswith(text)
    # with room for it, the same error is longer: the 8 really cut it
    err2 = bytearray(64)
    cdsp.invoke(REMOTECTL1, SC_REMOTECTL1_OPEN, [struct.pack("<II", len(uri), 64), uri, bytearray(8), err2])
    assert len(bytes(err2).split(b"\0", 1)[0]) > 7


# 4 --------------------------------------------------------------------------------------------
def test_gem_close_forgets_the_prime_import(cdsp):
    """Mutant: ``_gem_close`` keeping the file's PRIME import cache entry (``_imports``). After
    GEM_CLOSE of an imported handle, importing the same dma-buf again must give a live handle
    of *that* buffer, not the stale number (which a new GEM object may hold by now)."""
    mfd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
    try:
        os.write(mfd, b"foreign!" * 512)
        h1 = cdsp.prime_fd_to_handle(mfd)
        cdsp.gem_close(h1)
        other = cdsp.gem_create(4096)                 # lowest free handle: h1's number again
        assert other == h1
        h2 = cdsp.prime_fd_to_handle(mfd)
        assert h2 != other
        fd2 = cdsp.prime_handle_to_fd(h2)             # the handle stands for the foreign pages
        try:
            assert os.pread(fd2, 8, 0) == b"foreign!"
        finally:
            os.close(fd2)
        cdsp.gem_close(h2)
        cdsp.gem_close(other)
        with raises_errno(errno.EINVAL):
            cdsp.gem_close(h2)
    finally:
        os.close(mfd)


# 5 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_typed_invoke_refuses_a_read_only_out_buffer(soc, driver):
    """Mutant: ``invoke_args.descriptors`` without the ``mv.readonly`` check for out-buffers. The
    typed ``invoke`` of both drivers raises TypeError before any ioctl; the immutable object is
    never written."""
    f = soc.open_device("cdsp") if driver == "accel" else soc.open(CDSP)
    with f:
        assert f.init_create(attrs=UNSIGNED) == 0
        h = open_module(f, TEST)[1]
        sc_inc = 0x04000100  # qdarpc_test inc: 1 out-buffer
        for ro in (bytes(4), memoryview(bytearray(4)).toreadonly()):
            with pytest.raises(TypeError, match="out-buffer 0 must be writable"):
                f.invoke(h, sc_inc, [ro])
            assert bytes(ro) == bytes(4)
        out = bytearray(4)
        assert f.invoke(h, sc_inc, [out]) == 0 and out != bytes(4)


# 6 --------------------------------------------------------------------------------------------
def test_set_param_refuses_unknown_ids(cdsp, soc):
    """Mutant: remotectl ``set_param`` accepting every request id (no
    ``RPC_PARAM_THREAD``/``RPC_PARAM_ADAPTIVE_QOS`` check). Unknown ids answer
    ERR_STATIC_UNSUPPORTED and store nothing; the two known ones are stored."""
    assert cdsp.init_create(attrs=UNSIGNED) == 0
    for req_id in (0, 3, 99):
        prim = struct.pack("<II", req_id, 1)
        assert cdsp.invoke(REMOTECTL1, SC_SET_PARAM1, [prim, struct.pack("<I", 5)]) == \
            u32(aee.ERR_STATIC_UNSUPPORTED), req_id
    assert cdsp.invoke(REMOTECTL1, SC_SET_PARAM1, [struct.pack("<II", 1, 2), struct.pack("<II", 150, 65536)]) == 0
    assert soc.domain("cdsp").dsp._proc("accel", cdsp.client_id).params == {1: (150, 65536)}


# 7 --------------------------------------------------------------------------------------------
def test_legacy_invoke_racing_channel_removal_is_epipe(soc, monkeypatch):
    """Mutant: legacy ``internal_invoke`` without the ENODEV -> EPIPE translation. The channel
    is up when the invoke starts and goes away before its message is sent (rpmsg removal racing
    the ioctl; here: while the payload is packed): the caller sees EPIPE, as for an invoke that
    starts after the removal, never the transport's ENODEV."""
    with soc.open(CDSP) as f:
        _invoke_losing_the_channel(soc, f, monkeypatch)


def _invoke_losing_the_channel(soc, f, monkeypatch):
    assert f.init_create(attrs=UNSIGNED) == 0

    class LosingPool:  # once armed: the message buffer comes, then the device goes (before the send)
        armed = False

        def __init__(self, pool):
            self.pool = pool

        def alloc(self, size):
            buf = self.pool.alloc(size)
            if self.armed:
                soc.domain("cdsp").legacy_channel.channel.remove()   # rpmsg core: the device is gone
            return buf

    pool = LosingPool(f._pool)
    monkeypatch.setattr(f, "_pool", pool)  # before the first user invoke: the lane takes it then
    h = open_module(f, TEST)[1]
    pool.armed = True
    ret = f.ioctl(uapi.FASTRPC_IOCTL_INVOKE, uapi.fastrpc_invoke.pack(handle=h, sc=SC_NULL))
    monkeypatch.undo()
    assert ret == -errno.EPIPE
    with raises_errno(errno.EPIPE):                          # and the same for the next one
        f.invoke(h, SC_NULL, [])


# 8 --------------------------------------------------------------------------------------------
def test_alloc_dma_buff_copy_out_failure_closes_the_fd(soc):
    """Mutant: ALLOC_DMA_BUFF's copy-out undo (``_undo_alloc``) doing nothing. When the struct
    cannot be written back (read-only argument), the call fails with EFAULT and the installed
    dma-buf fd, whose number nobody could learn, is closed again: once the file is closed (and
    with it the buffer's context-bank mapping), no fd of the buffer is left."""
    before = open_fds()
    with soc.open(CDSP) as f:
        req = bytes(uapi.fastrpc_alloc_dma_buf.pack(size=8192))   # readable, not writable
        assert f.ioctl(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, req) == -errno.EFAULT
        ok = bytearray(uapi.fastrpc_alloc_dma_buf.pack(size=8192))
        assert f.ioctl(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, ok) == 0
        os.close(uapi.fastrpc_alloc_dma_buf.get(ok, "fd"))
    assert open_fds() == before


def open_fds() -> dict[int, str]:
    out = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            pass  # the listing's own fd, closed by now
    return out


# 9 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filelen,initmem", [
    ((512 << 10) + 1, 3 << 20),    # 4 * filelen just over 2 MiB: rounded up to 3 MiB
    (768 << 10, 3 << 20),          # exactly 3 MiB
    ((768 << 10) + 1, 4 << 20),    # just over: 4 MiB
])
def test_init_memory_rounds_up_to_the_mib_3mib_bound(soc, filelen, initmem):
    """Mutant: the legacy INIT_CREATE init-memory size ``ALIGN(max(2 MiB, 4 * filelen), 1 MiB)``
    rounded down, not rounded, or aligned to 2 MiB: the 3 MiB step between the 2 MiB floor and
    the 1 MiB-aligned sizes above it. Read from what the DSP was granted."""
    with soc.open(CDSP) as f:
        assert f.init_create(hexagon_elf(filelen), attrs=UNSIGNED) == 0
        assert soc.domain("cdsp").dsp._proc("legacy", f.client_id).init_mem[1] == initmem


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_pd_initmem_size_bounds_are_3_and_200_mib(soc, backend):
    """Mutant: FASTRPC_PD_INITMEM_SIZE's bounds (3 MiB..200 MiB, inclusive) off by one at either
    end (``<`` for ``<=``) or moved."""
    lib = rpc.Library(backend, soc=soc)
    for size in (3 << 20, 200 << 20):
        lib.remote_session_control(rpc.FASTRPC_PD_INITMEM_SIZE, rpc.remote_rpc_pd_initmem_size(3, size))
    for size in ((3 << 20) - 1, (200 << 20) + 1):
        with pytest.raises(rpc.BadParameterError):
            lib.remote_session_control(rpc.FASTRPC_PD_INITMEM_SIZE, rpc.remote_rpc_pd_initmem_size(3, size))
    lib.close_all()


# 10 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_nondomain_close_then_last_handle64_close_ends_the_session(soc, backend):
    """Mutant: ``remote_handle_close`` not dropping the non-domain handle from its session (or
    ``remote_handle64_close`` not tearing down when only closed non-domain handles remain). The
    last handle of any kind closing ends the DSP process."""
    lib = rpc.Library(backend, soc=soc)
    dsp = soc.domain("cdsp").dsp
    nd = lib.remote_handle_open(TEST)
    h64 = lib.remote_handle64_open(TEST)
    lib.remote_handle_invoke(nd, SC_NULL, [])
    lib.remote_handle_close(nd)
    assert [p for p in dsp.processes() if p.state == "alive"]   # h64 still holds the session
    lib.remote_handle64_invoke(h64, SC_NULL, [])
    lib.remote_handle64_close(h64)
    assert dsp.processes() == []
    lib.close_all()


# 11 -------------------------------------------------------------------------------------------
def test_module_open_on_a_pd_that_died_meanwhile(soc, hooks):
    """Mutant: the DSP's ``_open_module`` without the ``p.alive`` re-check ("process is
    exiting"). The PD exits (adsp_current_process1.exit from another thread) while the module's
    open() runs: the open answers ERR_PD_CRASHED, and no handle is handed out."""
    with soc.open_device("cdsp") as f:
        _open_while_the_pd_exits(soc, f, hooks)


def _open_while_the_pd_exits(soc, f, hooks):
    assert f.init_create(attrs=UNSIGNED) == 0

    def on_open():
        t = threading.Thread(target=lambda: f.invoke(4, 0x02000000, []))  # current_process1.exit
        t.start()
        t.join(10)
        return 0

    hooks.on_open = on_open
    with pytest.raises(ModuleOpenError) as e:
        open_module(f, EDGE)
    assert e.value.code == u32(aee.ERR_PD_CRASHED) and "exiting" in e.value.text
    assert [p.modules for p in soc.domain("cdsp").dsp.processes()] == [()]


# 12 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("driver", ["accel", "legacy"])
def test_the_256th_outstanding_invoke_is_ebusy(soc, hooks, driver):
    """Mutant: the context-id limit off by one (``CTX_ID_LIMIT = 256``, the legacy
    ``FASTRPC_CTX_MAX``, or ``>`` for ``>=`` in ``IdAllocator.alloc``). Replies are matched on 8
    bits of the ctx: 255 invokes can be outstanding on one channel and all get their replies; the
    256th is refused with EBUSY (an id of 256 would alias 0 and its reply be lost)."""
    with (soc.open_device("cdsp") if driver == "accel" else soc.open(CDSP)) as f:
        _outstanding_invokes(f, hooks)


def _outstanding_invokes(f, hooks):
    assert f.init_create(attrs=UNSIGNED) == 0
    h = open_module(f, EDGE)[1]
    inside = threading.Semaphore(0)
    release = threading.Event()
    lock = threading.Lock()
    entered = [0]

    def on_call():
        with lock:
            entered[0] += 1
            extra = entered[0] > 255
        if extra:
            return 0  # only reachable when the limit is wrong: do not wait for ourselves
        inside.release()
        assert release.wait(30)
        return 0

    hooks.on_call = on_call

    def call(out):
        try:
            out.append(f.invoke(h, SC_NULL, []))
        except OSError as exc:
            out.append(exc)

    # daemon threads, joined with timeouts: a broken allocator may spin instead of refusing
    results: list = []
    threads = [threading.Thread(target=call, args=(results,), daemon=True) for _ in range(255)]
    for t in threads:
        t.start()
    extra: list = []
    try:
        for _ in range(255):
            assert inside.acquire(timeout=30), "255 invokes could not be outstanding at once"
        t256 = threading.Thread(target=call, args=(extra,), daemon=True)
        t256.start()
        t256.join(10)
        assert not t256.is_alive(), "the 256th invoke hung"
    finally:
        release.set()
        deadline = time.monotonic() + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    assert len(extra) == 1 and isinstance(extra[0], OSError) and extra[0].errno == errno.EBUSY, extra
    assert results == [0] * 255
    assert f.invoke(h, SC_NULL, []) == 0    # ids come back

