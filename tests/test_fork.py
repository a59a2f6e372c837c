"""fork(): the child gets a copy of the emulated DSP and drivers; whatever it does, including
tearing down every session of its legacy library, never touches the parent's sessions. Shared memory
stays shared (memfd pages), as dma-buf mappings do across a real fork."""
import os
import struct

import libadsprpc_compat as rpc

TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"


def test_child_teardown_leaves_parent_sessions_alone(make_soc):
    lib = rpc.Library(backend="accel", soc=make_soc("default"))
    try:
        h = lib.remote_handle64_open(TEST)
        mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, 4096)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: use the library, write into the shared buffer, tear everything down
            code = 1
            try:
                view = memoryview(mem)[:8]
                view[:] = b"\x41" * 8
                rpc.remote_handle64_invoke(h, 0x04000100, [view])  # by reference: 0x42s
                view.release()
                h2 = lib.remote_handle64_open(TEST)
                lib.remote_handle64_close(h2)
                lib.close_all()
                code = 0
            finally:
                os.write(w, bytes([code]))
                os._exit(code)
        os.close(w)
        status = os.read(r, 1)
        os.waitpid(pid, 0)
        os.close(r)
        assert status == b"\0"
        assert bytes(memoryview(mem)[:8]) == b"\x42" * 8  # the child's DSP wrote the shared pages
        out = bytearray(4)
        rpc.remote_handle64_invoke(h, 0x03010100, [struct.pack("<I", 7), out])  # parent session intact
        assert out == struct.pack("<I", 7)
        lib.remote_handle64_close(h)
        rpc.rpcmem_free(mem)
    finally:
        lib.close_all()
