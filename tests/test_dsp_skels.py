"""Emulated DSP: built-in skels, skel API rules (sc checks, escape, crash), cost model."""
import struct
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qda_core.dsp import EmulatedDsp, Skeleton, aee, method
from qda_core.dsp.cost import DOMAIN_COST, CostModel

sys.path.insert(0, str(Path(__file__).parent))
from dsp_helpers import CALC_URI, TEST_URI, Client, FakeMemory, Shared, u32  # noqa: E402


def new_client(env=None, domain="cdsp", cost=None):
    mem = FakeMemory()
    dsp = EmulatedDsp(domain, mem, skel_path_env=env or {}, cost=cost)
    c = Client(dsp, mem, client_id=1)
    assert c.create() == 0
    return c


@pytest.fixture
def client():
    return new_client()


def opened(c, uri):
    rv, h, dlerr, text = c.open(uri)
    assert (rv, dlerr) == (0, 0), text
    return h


def calc(c, h, method_id, values, outlen, shared=False):
    vec = np.asarray(values, dtype="<i4").tobytes()
    arg = vec
    if shared:  # by reference, like an rpcmem buffer
        arg = Shared(c.mem.alloc(len(vec), vec), len(vec))
    sc = 0x02020100 if method_id == 2 else 0x03020100
    return c.send(h, sc, [struct.pack("<i", len(values)), arg], [outlen])


# -- calculator ------------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True])
def test_calculator_reference_results(client, shared):
    h = opened(client, CALC_URI)
    rv, (out,) = calc(client, h, 2, range(1000), 8, shared)
    assert rv == 0 and struct.unpack("<q", out)[0] == 499500
    rv, (out,) = calc(client, h, 3, range(1000), 4, shared)
    assert rv == 0 and struct.unpack("<i", out)[0] == 999


def test_calculator_max_starts_from_zero(client):
    h = opened(client, CALC_URI)
    rv, (out,) = calc(client, h, 3, [-5, -3, -100], 4)
    assert rv == 0 and struct.unpack("<i", out)[0] == 0


@given(st.lists(st.integers(-2**31, 2**31 - 1), max_size=300))
def test_calculator_sum_is_64_bit(values):
    c = new_client()
    h = opened(c, CALC_URI)
    rv, (out,) = calc(c, h, 2, values, 8)
    assert rv == 0 and struct.unpack("<q", out)[0] == sum(values)
    rv, (out,) = calc(c, h, 3, values, 4)
    assert rv == 0 and struct.unpack("<i", out)[0] == max([0, *values])


def test_calculator_bad_arguments(client):
    h = opened(client, CALC_URI)
    vec = np.arange(10, dtype="<i4").tobytes()
    rv, _ = client.send(h, 0x02020100, [struct.pack("<i", 11), vec], [8])  # n*4 != len
    assert u32(rv) == 0x8000040E
    rv, _ = client.send(h, 0x02020100, [struct.pack("<i", 10), vec], [4])  # out too short
    assert u32(rv) == 0x8000040E
    rv, _ = client.send(h, 0x02010100, [struct.pack("<i", 10)], [8])       # wrong counts
    assert u32(rv) == 0x8000040E
    rv, _ = client.send(h, 0x04000000)                                     # no method 4
    assert u32(rv) == 0x80000414
    rv, _ = client.send(h, 0x00020000, [b"\0" * 4, b"x"])                  # 0 is the framework's
    assert u32(rv) == 0x80000414


# -- qdarpc_test -----------------------------------------------------------------------------

def test_null_echo_fail_checksum(client):
    h = opened(client, TEST_URI)
    assert client.send(h, 0x02000000) == (0, [])
    rv, (out,) = client.send(h, 0x03010100, [b"hello"], [8])
    assert rv == 0 and out == b"hello\0\0\0"
    rv, _ = client.send(h, 0x03010100, [b"hello"], [4])
    assert u32(rv) == 0x8000040E
    for code in (0, 1, -1, 0x80000401, 0x7FFFFFFF):
        rv, _ = client.send(h, 0x05010000, [struct.pack("<I", code & 0xFFFFFFFF)])
        assert u32(rv) == code & 0xFFFFFFFF
    data = bytes(range(256)) * 3
    rv, (out,) = client.send(h, 0x07010100, [data], [8])
    assert rv == 0 and struct.unpack("<Q", out)[0] == sum(data)


def test_inc_copy_vs_shared_semantics(client):
    h = opened(client, TEST_URI)
    rv, (out,) = client.send(h, 0x04000100, [], [16])  # by copy: DSP sees zeroes
    assert rv == 0 and out == b"\1" * 16
    caller = bytes([0, 1, 254, 255]) * 4
    addr = client.mem.alloc(16, caller)
    rv, (out,) = client.send(h, 0x04000100, [], [Shared(addr, 16)])
    assert rv == 0 and out == bytes((b + 1) & 0xFF for b in caller)
    assert client.mem.read(addr, 16) == out  # written in place, no copy-back needed


def test_in_buffers_are_read_only(tmp_path):
    (tmp_path / "libwriter_skel.py").write_text(textwrap.dedent("""
        from qda_core.dsp import Skeleton, method
        class Writer(Skeleton):
            @method(2)
            def scribble(self, call):
                call.inbufs[0][0] = 1
                return 0
    """))
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)})
    h = opened(c, "file:///libwriter_skel.so?writer_skel_handle_invoke&_modver=1.0")
    assert u32(c.send(h, 0x02010000, [b"abc"])[0]) == 0x8000040D  # TypeError = crash


def test_crash_method(client):
    h = opened(client, TEST_URI)
    assert u32(client.send(h, 0x06000000)[0]) == 0x8000040D
    assert "qdarpc_test.crash() called" in client.dsp._procs["", 1].crash_reason


# -- escape, declared sc, return value checks -----------------------------------------------

ESCAPE_SKEL = """
import struct
from qda_core.dsp import Skeleton, method

class Big(Skeleton):
    @method(2)
    def two(self, call):
        return 2

    @method(40, sc=0x1F010100)
    def forty(self, call):
        call.outbufs[0][:8] = struct.pack("<II", call.method, len(call.inbufs[0]))
        return 0

    @method(41)
    def not_an_int(self, call):
        return "ok"
"""


@pytest.fixture
def big(tmp_path):
    (tmp_path / "libbig_skel.py").write_text(ESCAPE_SKEL)
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)})
    return c, opened(c, "file:///libbig_skel.so?big_skel_handle_invoke&_modver=1.0")


def test_method_escape(big):
    c, h = big
    rv, (out,) = c.send(h, 0x1F010100, [struct.pack("<Ii", 40, 7)], [8])
    assert rv == 0 and struct.unpack("<II", out) == (40, 8)  # in0 still carries the id
    assert u32(c.send(h, 0x1F010100, [b"\0\0"], [8])[0]) == 0x8000040E        # in0 < 4 bytes
    assert u32(c.send(h, 0x1F000000)[0]) == 0x8000040E                         # no in0
    assert u32(c.send(h, 0x1F010000, [struct.pack("<I", 99)])[0]) == 0x80000414  # no method 99
    assert u32(c.send(h, 0x1F020100, [struct.pack("<I", 40), b""], [8])[0]) == 0x8000040E  # sc
    assert c.send(h, 0x02000000)[0] == 2


def test_non_int_return_is_a_crash(big):
    c, h = big
    assert u32(c.send(h, 0x1F010000, [struct.pack("<I", 41)])[0]) == 0x8000040D


def test_method_decorator_validation():
    with pytest.raises(TypeError, match="method id 2"):
        class Dup(Skeleton):  # noqa: F841
            @method(2)
            def a(self, call):
                return 0

            @method(2)
            def b(self, call):
                return 0
    with pytest.raises(ValueError):
        method(-1)

    class Base(Skeleton):
        @method(2)
        def a(self, call):
            return 0

    class Derived(Base):
        @method(3)
        def b(self, call):
            return 0

    assert sorted(Derived._methods) == [2, 3] and sorted(Base._methods) == [2]
    assert Derived.exported_symbols("libd_skel.so") == ("d_skel_handle_invoke", "d_skel_invoke")


def test_legacy_non_modver_module(tmp_path):
    (tmp_path / "liblegacy_skel.py").write_text(textwrap.dedent("""
        from qda_core.dsp import Skeleton, method
        class Legacy(Skeleton):
            def open(self, uri):
                raise AssertionError("no implicit open for legacy modules")
            @method(0)
            def zero(self, call):
                return 100
    """))
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)})
    h = opened(c, "legacy")  # non-file name -> liblegacy_skel.so / legacy_skel_invoke
    assert c.send(h, 0x00000000)[0] == 100
    assert c.close(h)[:2] == (0, 0)


# -- cost model and stats ----------------------------------------------------------------------

def test_cost_model_and_stats():
    model = CostModel(overhead_ns=1000, bytes_per_s=1e9)
    c = new_client(cost=model)
    h = opened(c, TEST_URI)
    before = c.dsp.stats.snapshot()
    c.send(h, 0x03010100, [b"x" * 1000], [1000])
    after = c.dsp.stats.snapshot()
    assert after["invokes"] == before["invokes"] + 1
    assert after["bytes_in"] - before["bytes_in"] == 1000
    assert after["bytes_out"] - before["bytes_out"] == 1000
    assert after["modeled_ns"] - before["modeled_ns"] == 1000 + 2000
    info = c.dsp.processes()[0]
    assert info.invokes >= 2 and info.modeled_ns > 0
    c.send(h, 0x05010000, [struct.pack("<i", 5)])
    assert c.dsp.stats.snapshot()["errors"] == before["errors"] + 1


def test_declared_method_cost(tmp_path):
    (tmp_path / "libcostly_skel.py").write_text(textwrap.dedent("""
        from qda_core.dsp import Skeleton, method
        class Costly(Skeleton):
            @method(2, cost_ns=5000)
            def slow(self, call):
                call.add_cost(7)
                return 0
    """))
    c = new_client({"DSP_LIBRARY_PATH": str(tmp_path)}, cost=CostModel(100, 1e9))
    h = opened(c, "file:///libcostly_skel.so?costly_skel_handle_invoke&_modver=1.0")
    before = c.dsp.stats.snapshot()["modeled_ns"]
    c.send(h, 0x02000000)
    assert c.dsp.stats.snapshot()["modeled_ns"] - before == 100 + 5000 + 7


def test_domain_costs_defined_for_every_capability_domain():
    from qda_core.dsp.caps import DEFAULT_CAPABILITIES
    assert set(DOMAIN_COST) == set(DEFAULT_CAPABILITIES)
    assert aee.dsp(aee.AEE_EBADPARM) == 0x8000040E and aee.to_int32(0x8000040E) < 0


def test_method_names_are_public():
    from qda_core.dsp.skels.calculator import Calculator

    assert Calculator.method_names() == {2: "sum", 3: "max"}
