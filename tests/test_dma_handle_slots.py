"""remote_register_dma_handle through a real invoke: what the DSP receives in a handle slot.

Replaces a test that called the session's private ``_handle_slot`` instead of invoking: here a
skel with an in-handle records what arrives, so the library's table, the driver's descriptor
and the kernel's map all take part."""
import sys
import textwrap

import pytest

import libadsprpc_compat as rpc

URI = "file:///libslots_skel.so?slots_skel_handle_invoke&_modver=1.0&_dom=cdsp"
SC_TAKE = rpc.REMOTE_SCALARS_MAKE(2, 0, 0) | 0x10    # method 2: no buffers, one in-handle
SC_NULL = rpc.REMOTE_SCALARS_MAKE(3, 0, 0)


@pytest.fixture
def seen(monkeypatch, tmp_path):
    got: list = []
    monkeypatch.setattr(sys.modules[__name__], "SEEN", got, raising=False)
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))
    (tmp_path / "libslots_skel.py").write_text(textwrap.dedent(f"""
        import sys
        from qda_core.dsp import Skeleton, method

        class Slots(Skeleton):
            @method(2, sc={SC_TAKE:#x})
            def take(self, call):
                sys.modules[{__name__!r}].SEEN.append(call.inhandles[0])
                return 0

            @method(3, sc={SC_NULL:#x})
            def null(self, call):
                return 0
    """))
    return got


@pytest.mark.parametrize("backend", ["accel", "legacy"])
def test_registration_is_consumed_by_one_invoke(soc, seen, backend):
    """Each remote_register_dma_handle gives one invoke's slot its length (the DSP sees a mapped
    range of that size), in registration order: a second invoke gets the second registration,
    not the first one again."""
    lib = rpc.Library(backend, soc=soc)
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    try:
        h = lib.remote_handle64_open(URI)
        rpc.remote_register_dma_handle(m.fd, 4096)
        rpc.remote_register_dma_handle(m.fd, 2048)
        rpc.remote_handle64_invoke(h, SC_TAKE, [rpc.remote_dma_handle(m.fd, 256)])
        rpc.remote_handle64_invoke(h, SC_TAKE, [(m.fd, 0)])
        first, second = seen
        assert (first.offset, first.length) == (256, 4096) and first.map_size >= 4096
        assert (second.offset, second.length) == (0, 2048)
        assert first.fd == second.fd == lib.dsp_fd(m.fd, rpc.CDSP_DOMAIN_ID)  # legacy: the fd; accel: its GEM handle
        with pytest.raises(rpc.BadParameterError):  # a method without handle slots gets one: count mismatch
            rpc.remote_handle64_invoke(h, SC_NULL, [rpc.remote_dma_handle(m.fd, 0)])
        rpc.remote_handle64_close(h)
    finally:
        lib.close_all()
        rpc.rpcmem_free(m)


def test_unregistered_slot_has_length_0(soc, seen):
    """Legacy: a handle slot whose fd has no registration left goes with length 0 (the kernel
    maps nothing for it). (On accel the library passes the raw fd, which is no GEM handle:
    the invoke fails with ENOENT; reported in issue 9's test-discipline notes.)"""
    lib = rpc.Library("legacy", soc=soc)
    m = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 8192)
    try:
        h = lib.remote_handle64_open(URI)
        rpc.remote_register_dma_handle(m.fd, 4096)
        rpc.remote_handle64_invoke(h, SC_TAKE, [(m.fd, 0)])
        rpc.remote_handle64_invoke(h, SC_TAKE, [(m.fd, 0)])
        assert [s.length for s in seen] == [4096, 0]
        rpc.remote_handle64_close(h)
    finally:
        lib.close_all()
        rpc.rpcmem_free(m)
