"""Emulated DSP: PD lifecycle, INIT-handle methods, static handles, capability query."""
import struct
import sys
import threading
from pathlib import Path

import pytest

from qda_core.dsp import EmulatedDsp, aee, caps
from qda_core.wire import Origin, Msg, Rsp, scalars

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import TEST_URI, Client, FakeMemory, Shared, u32  # noqa: E402


@pytest.fixture
def mem():
    return FakeMemory()


@pytest.fixture
def dsp(mem):
    return EmulatedDsp("cdsp", mem, skel_path_env={})


@pytest.fixture
def client(dsp, mem):
    c = Client(dsp, mem, client_id=3)
    assert c.create() == 0
    return c


def elf32_hexagon() -> bytes:
    hdr = bytearray(52)
    hdr[:4] = b"\x7fELF"
    hdr[4], hdr[5], hdr[6] = 1, 1, 1
    struct.pack_into("<HH", hdr, 16, 3, 164)  # ET_DYN, EM_QDSP6
    return bytes(hdr) + b"\0" * 76


def test_create_release_lifecycle(dsp, mem):
    c = Client(dsp, mem, client_id=5)
    assert c.create(name=b"myapp\0", attrs=0x8) == 0
    (info,) = dsp.processes()
    assert (info.client_id, info.kind, info.name, info.signed, info.state) == (5, "user", "myapp", False, "alive")
    assert c.release() == 0
    assert dsp.processes() == []
    assert c.release() == 0  # unknown client: still 0


def test_create_signed_with_elf_shell(dsp, mem):
    c = Client(dsp, mem, client_id=2)
    assert c.create(shell=elf32_hexagon()) == 0
    assert dsp.processes()[0].signed is True


@pytest.mark.parametrize("shell", [b"not an elf at all" * 4, b"\x7fELF" + b"\x02\x01" + b"\0" * 60])
def test_create_rejects_non_hexagon_shell(dsp, mem, shell):
    c = Client(dsp, mem, client_id=2)
    assert u32(c.create(shell=shell)) == aee.ERR_BAD_SHELL == 0x80000411
    assert dsp.processes() == []


def test_create_rejects_inconsistent_inbuf(dsp, mem):
    c = Client(dsp, mem, client_id=2)
    from qda_core.wire import CREATE_INBUF, PHY_PAGE
    bad = CREATE_INBUF.pack(2, 99, 0, 1, 0, 0)  # namelen != len(name)
    rv, _ = c.init(6, [bad, b"app\0", b"", PHY_PAGE.pack(0, 1 << 20)])
    assert u32(rv) == 0x8000040E
    rv, _ = c.init(6, [bad, b"app\0", b""])  # 3 in-buffers instead of 4
    assert u32(rv) == 0x8000040E
    assert dsp.processes() == []


def test_unsigned_pd_refused_where_unsupported(mem):
    adsp = EmulatedDsp("adsp", mem, skel_path_env={})
    c = Client(adsp, mem, client_id=1)
    assert u32(c.create(attrs=0x8)) == aee.ERR_UNSIGNED_UNSUPPORTED
    assert c.create(attrs=0x0) == 0


def test_second_create_for_same_client_is_refused(client):
    assert u32(client.create()) == aee.ERR_PD_EXISTS
    assert len(client.dsp.processes()) == 1


def test_attach_root_and_reattach(dsp, mem):
    c = Client(dsp, mem, client_id=9)
    assert c.attach() == 0
    assert c.attach() == 0
    assert [(p.client_id, p.kind) for p in dsp.processes()] == [(9, "root")]
    rv, h, dlerr, _ = c.open(TEST_URI)
    assert (rv, dlerr) == (0, 0) and h > 0x200


def test_attach_sensors_pd_from_header_pd_bits(dsp, mem):
    c = Client(dsp, mem, client_id=4)
    assert c.attach(pd=2) == 0
    assert dsp.processes()[0].kind == "sensorspd"


def test_attach_takes_client_id_from_inbuf_not_header(dsp, mem):
    c = Client(dsp, mem, client_id=11)
    rv, _ = c.send(1, scalars(0, 1, 0), [struct.pack("<i", 11)], client_id=0)
    assert rv == 0 and dsp.processes()[0].client_id == 11


def test_create_static(mem):
    adsp = EmulatedDsp("adsp", mem, skel_path_env={})
    c = Client(adsp, mem, client_id=1)
    assert c.create_static(b"audiopd\0") == 0
    assert adsp.processes()[0].kind == "audiopd"
    c2 = Client(adsp, mem, client_id=2)
    assert u32(c2.create_static(b"nosuchpd\0")) == aee.ERR_UNKNOWN_STATIC_PD == 0x80000410
    cdsp = EmulatedDsp("cdsp", mem, skel_path_env={})
    assert u32(Client(cdsp, mem, 1).create_static(b"audiopd\0")) == 0x80000410


def test_invoke_without_pd(dsp, mem):
    c = Client(dsp, mem, client_id=8)
    rv, *_ = c.open(TEST_URI)
    assert u32(rv) == aee.ERR_NO_PD == 0x8000040D


def test_unknown_init_method_and_bad_scalars(dsp, mem):
    c = Client(dsp, mem, client_id=1)
    rv, _ = c.init(2, [struct.pack("<i", 1)])
    assert u32(rv) == 0x80000414
    rv, _ = c.send(1, scalars(0, 2, 0), [struct.pack("<i", 1), b"x"], client_id=0)  # ATTACH with 2 bufs
    assert u32(rv) == 0x8000040E
    assert dsp.processes() == []


# -- static handles --------------------------------------------------------------------------

@pytest.mark.parametrize("handle", [3, 5, 6, 7, 9])
def test_unimplemented_static_handles(client, handle):
    rv, _ = client.send(handle, scalars(2, 0, 0))
    assert u32(rv) == 0x80000414


@pytest.mark.parametrize("handle", [10, 11, 0x42, 0xFF])
def test_unknown_const_handles(client, handle):
    rv, _ = client.send(handle, scalars(2, 0, 0))
    assert u32(rv) == 0x80000600


@pytest.mark.parametrize("handle", [0x100, 0x35F08000, 0x12345678])
def test_dynamic_handle_not_open(client, handle):
    rv, _ = client.send(handle, scalars(2, 0, 0))
    assert u32(rv) == 0x8000043E


def test_handle_open_in_other_process_is_not_visible(dsp, mem, client):
    rv, h, dlerr, _ = client.open(TEST_URI)
    other = Client(dsp, mem, client_id=4)
    assert other.create() == 0
    assert u32(other.send(h, 0x02000000)[0]) == 0x8000043E
    assert client.send(h, 0x02000000)[0] == 0


def test_remotectl_wrong_scalars(client):
    name = TEST_URI.encode() + b"\0"
    rv, _ = client.send(0, 0x00010200, [struct.pack("<II", len(name), 255)], [8, 255])
    assert u32(rv) == 0x8000040E
    rv, _ = client.send(0, 0x02010000, [b"\0" * 8])  # grow_heap: not emulated
    assert u32(rv) == 0x80000414


def test_set_param(dsp, client):
    rv, _ = client.send(8, 0x05020000, [struct.pack("<II", 1, 2), struct.pack("<II", 142, 16384)])
    assert rv == 0
    rv, _ = client.send(0, 0x03020000, [struct.pack("<II", 2, 1), struct.pack("<I", 1)])
    assert rv == 0
    p = dsp._procs["", 3]
    assert p.params == {1: (142, 16384), 2: (1,)}
    rv, _ = client.send(0, 0x03020000, [struct.pack("<II", 1, 2), struct.pack("<I", 1)])
    assert u32(rv) == 0x8000040E  # paramsLen says 2 u32s, buffer has 1


def test_current_process_exit_and_thread_exit(dsp, client):
    _, h, _, _ = client.open(TEST_URI)
    assert client.send(4, 0x03000000)[0] == 0  # thread_exit: no effect
    assert client.send(h, 0x02000000)[0] == 0
    assert client.send(4, 0x02000000)[0] == 0  # exit
    info = dsp.processes()[0]
    assert info.state == "exited" and info.modules == ()
    assert u32(client.send(h, 0x02000000)[0]) == 0x8000040D
    assert u32(client.send(4, 0x07000000)[0]) == 0x8000040D
    assert client.release() == 0 and dsp.processes() == []


# -- crash -----------------------------------------------------------------------------------

def test_crash_kills_pd_until_release(dsp, client):
    _, h, _, _ = client.open(TEST_URI)
    _, h2, _, _ = client.open(TEST_URI)
    assert u32(client.send(h, 0x06000000)[0]) == 0x8000040D
    assert dsp.processes()[0].state == "crashed"
    assert dsp.stats.snapshot()["crashes"] == 1
    assert u32(client.send(h2, 0x02000000)[0]) == 0x8000040D
    assert u32(client.open(TEST_URI)[0]) == 0x8000040D
    assert u32(client.mmap([(0x1000, 0x1000)])[0]) == 0x8000040D
    assert u32(client.create()) == 0x8000040D
    assert client.release() == 0
    assert client.create() == 0
    _, h3, dlerr, _ = client.open(TEST_URI)
    assert dlerr == 0 and client.send(h3, 0x02000000)[0] == 0


def test_argument_fault_crashes_pd(dsp, mem, client):
    _, h, _, _ = client.open(TEST_URI)
    gone = Shared(0xDEAD_0000_0000, 64)
    rv, _ = client.send(h, 0x07010100, [gone], [8])
    assert u32(rv) == 0x8000040D
    assert dsp.processes()[0].state == "crashed"


def test_restart_destroys_everything(dsp, mem, client):
    _, h, _, _ = client.open(TEST_URI)
    other = Client(dsp, mem, client_id=4)
    other.attach()
    dsp.restart()
    assert dsp.processes() == []
    assert u32(client.send(h, 0x02000000)[0]) == 0x8000040D  # no PD any more
    assert client.create() == 0
    assert u32(client.send(h, 0x02000000)[0]) == 0x8000043E  # new PD: old handle unknown


# -- malformed input -------------------------------------------------------------------------

def test_malformed_payload_is_an_error_reply(dsp, mem, client):
    addr = mem.alloc(4096)
    pl = mem.view(addr, 4096, True)
    struct.pack_into("<QQ", pl, 0, 0, 100)
    struct.pack_into("<II", pl, 16, 2, 0)  # list[0].num = 2: more than one page entry
    rv, _ = client.send(0x35F08000, 0x02010000, raw_payload=(addr, 4096, []))
    assert u32(rv) == aee.ERR_MALFORMED
    rv, _ = client.send(0x35F08000, scalars(2, 200, 0), raw_payload=(addr, 64, []))  # too short
    assert u32(rv) == aee.ERR_MALFORMED
    struct.pack_into("<II", pl, 16, 1, 5)  # page index beyond the argument count
    rv, _ = client.send(1, 0x00010000, raw_payload=(addr, 4096, []))
    assert u32(rv) == aee.ERR_MALFORMED
    assert dsp.processes()[0].state == "alive"


def test_short_message_is_an_error_reply(dsp):
    replies = []
    dsp.receive(b"\0" * 12, replies.append)
    assert len(replies) == 1 and u32(Rsp.unpack(replies[0]).retval) == aee.ERR_MALFORMED


def test_unreachable_payload(dsp, client):
    replies = []
    dsp.receive(Msg(3, 0, 0x11, 0x35F08000, 0x02000000, 0xBAD_0000_0000, 4096).pack(), replies.append,
                origin=Origin(3, frozenset({1}), False))
    assert Rsp.unpack(replies[0]) == Rsp(0x11, aee.to_int32(0x8000040D))


# -- MMAP / MUNMAP / MEM_MAP / MEM_UNMAP -------------------------------------------------------

def test_mmap_munmap(client):
    rv, va = client.mmap([(0x8000_0000, 0x3000)])
    assert rv == 0 and va != 0 and va % 4096 == 0
    rv, va2 = client.mmap([(0x8001_0000, 0x1000), (0x8002_0000, 0x1000)])
    assert rv == 0 and va2 != va and not (va <= va2 < va + 0x3000)
    assert u32(client.munmap(va, 0x1000)) == 0x80000448  # size must match
    assert u32(client.munmap(va + 0x1000, 0x3000)) == 0x80000448
    assert client.munmap(va, 0x3000) == 0
    assert u32(client.munmap(va, 0x3000)) == 0x80000448
    assert client.munmap(va2, 0x2000) == 0


def test_mmap_zero_size_and_exhaustion(client):
    assert u32(client.mmap([(0, 0)])[0]) == 0x8000040E
    assert u32(client.mmap([(0x1000, 0xF000_0000)])[0]) == aee.ERR_VA_EXHAUSTED == 0x80000402


def test_mmap_needs_pd(dsp, mem):
    assert u32(Client(dsp, mem, client_id=77).mmap([(0x1000, 0x1000)])[0]) == 0x8000040D


def test_mem_map_and_mapped_read(dsp, mem, client):
    data = bytes(range(256)) * 16
    buf = mem.alloc(len(data), data)
    rv, va = client.mem_map(fd=21, dev_addr=buf, size=len(data))
    assert rv == 0 and va
    mp = dsp._procs["", 3].find_mapping(21)
    assert (mp.vaddr, mp.dev_addr, mp.size) == (va, buf, len(data))
    assert dsp.processes()[0].mappings == 1
    _, h, _, _ = client.open(TEST_URI)
    rv, (out,) = client.send(h, 0x08010100, [struct.pack("<iII", 21, 100, 50)], [50])
    assert rv == 0 and out == data[100:150]
    rv, _ = client.send(h, 0x08010100, [struct.pack("<iII", 22, 0, 4)], [4])
    assert u32(rv) == 0x80000448
    rv, _ = client.send(h, 0x08010100, [struct.pack("<iII", 21, len(data) - 2, 4)], [4])
    assert u32(rv) == 0x8000040E
    assert u32(client.mem_unmap(21, va + 0x1000)) == 0x80000448
    assert client.mem_unmap(21, va) == 0
    rv, _ = client.send(h, 0x08010100, [struct.pack("<iII", 21, 0, 4)], [4])
    assert u32(rv) == 0x80000448


def test_mem_unmap_by_fd_only(client, mem):
    buf = mem.alloc(4096)
    _, va = client.mem_map(fd=5, dev_addr=buf, size=4096)
    assert client.mem_unmap(5, 0) == 0
    assert u32(client.mem_unmap(5, 0)) == 0x80000448


def test_mapped_read_of_freed_buffer_crashes(dsp, mem, client):
    buf = mem.alloc(4096)
    client.mem_map(fd=6, dev_addr=buf, size=4096)
    mem.free(buf)  # the mapping does not keep the object alive (QDA §3.6)
    _, h, _, _ = client.open(TEST_URI)
    rv, _ = client.send(h, 0x08010100, [struct.pack("<iII", 6, 0, 8)], [8])
    assert u32(rv) == 0x8000040D


# -- capability query ------------------------------------------------------------------------

def test_capability_query_like_the_kernel(dsp, mem):
    c = Client(dsp, mem, client_id=1)  # works without a PD (GET_DSP_INFO on a fresh fd)
    rv, (out,) = c.send(2, scalars(0, 1, 1), [struct.pack("<I", 255)], [255 * 4])
    assert rv == 0
    vals = struct.unpack("<255I", out)
    attr = lambda i: vals[i - 1]  # noqa: E731 - out[0] is attribute 1
    assert attr(caps.UNSIGNED_PD_SUPPORT) == 1
    assert attr(caps.HVX_SUPPORT_128B) == 4 and attr(caps.ARCH_VER) == 0x68
    assert attr(caps.ASYNC_FASTRPC_SUPPORT) == 0 and attr(caps.STATUS_NOTIFICATION_SUPPORT) == 0
    assert vals[200] == 0


def test_capability_overrides_and_adsp(mem):
    adsp = EmulatedDsp("adsp", mem, skel_path_env={}, capabilities={caps.STATUS_NOTIFICATION_SUPPORT: 1})
    rv, (out,) = Client(adsp, mem).send(2, scalars(0, 1, 1), [struct.pack("<I", 16)], [64])
    vals = struct.unpack("<16I", out)
    assert vals[caps.UNSIGNED_PD_SUPPORT - 1] == 0 and vals[caps.STATUS_NOTIFICATION_SUPPORT - 1] == 1
    with pytest.raises(ValueError, match="unknown DSP domain"):
        EmulatedDsp("xdsp", mem)
    with pytest.raises(ValueError, match="outside"):
        EmulatedDsp("cdsp", mem, capabilities={300: 1})


def test_capability_bad_request(dsp, mem):
    c = Client(dsp, mem)
    assert u32(c.send(2, scalars(1, 1, 1), [b"\0" * 4], [4])[0]) == 0x80000414
    assert u32(c.send(2, scalars(0, 1, 0), [b"\0" * 4])[0]) == 0x8000040E


# -- concurrency -----------------------------------------------------------------------------

def test_concurrent_clients(dsp, mem):
    errors = []

    def worker(cid):
        try:
            c = Client(dsp, mem, client_id=cid)
            assert c.create() == 0
            for _ in range(20):
                _, h, dlerr, _ = c.open(TEST_URI)
                assert dlerr == 0
                rv, (out,) = c.send(h, 0x03010100, [bytes([cid]) * 8], [8])
                assert rv == 0 and out == bytes([cid]) * 8
                assert c.close(h) == (0, 0, "")
            assert c.release() == 0
        except Exception as exc:  # collected, asserted on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and dsp.processes() == []
