"""Python skels the isolation tests load: what a buggy or hostile DSP-side module can do."""

# A skel that reads any device address its caller names: what a buggy or hostile skel can do.
PEEK_SKEL = """
import struct
from qda_core.dsp import Skeleton, method

class Peek(Skeleton):
    @method(2, sc=0x02010100)
    def peek(self, call):
        addr, n = struct.unpack_from("<QI", call.inbufs[0])
        call.outbufs[0][:n] = call.process.memory.view(addr, n, False)
        return 0

    @method(3, sc=0x03010000)
    def nap(self, call):
        import time
        (ms,) = struct.unpack_from("<I", call.inbufs[0])
        time.sleep(ms / 1000)
        return struct.unpack_from("<I", call.inbufs[0], 4)[0]
"""
PEEK = "file:///libpeek_skel.so?peek_skel_handle_invoke&_modver=1.0"
SC_PEEK = 0x02010100
SC_NAP = 0x03010000
