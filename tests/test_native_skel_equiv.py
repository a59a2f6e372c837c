"""A native skel's calls on the native data plane against the Python reference.

The DSP's lane fills a native skel's ``remote_arg`` array straight from the payload (no views,
no ``Call``: docs/dataplane.md); the reference builds it from the views of its decode. A C skel
whose results depend on every byte and handle it is given (tests/c/skels/equiv.c) is driven with
the same random invokes on both planes: copied and by-reference buffers, handles, errors,
crashes, bad pointers; results, output bytes, the DSP's statistics and each PD's counters agree.
"""
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qda_core.accel.file import HandleArg

sys.path.insert(0, str(Path(__file__).parent))
from cc_helpers import CC, compile_skel  # noqa: E402
from test_dataplane_equiv import Side  # noqa: E402

URI = "file:///libequivn_skel.so?equivn_skel_handle_invoke&_modver=1.0"
pytestmark = [pytest.mark.needs_cc, pytest.mark.skipif(CC is None, reason="no C compiler")]


@pytest.fixture
def native_path(tmp_path, monkeypatch):
    compile_skel("equiv", tmp_path / "libequivn_skel.so")
    monkeypatch.setenv("DSP_LIBRARY_PATH", str(tmp_path))


def run(side, step):
    """One invoke with handles on top of :meth:`Side.run`'s buffers: (outcome, output bytes)."""
    drv, kind, ins, outs, refs_in, ref_out, handles = step
    if not handles or kind != "ok":
        return side.run(step[:6])
    f = side.files[drv]
    ident = side.bufs.gem if drv == "accel" else side.bufs.dma_fd
    if drv == "legacy":  # the skel's outputs hash the handles' fds, each side's own dma-buf fd:
        ref_out = 0      # none into the shared buffer, whose bytes the later steps read
    args = [bytes(b) for b in ins] + [side.ref(drv, 1024 * k, n) for k, n in enumerate(refs_in)]
    outbufs = [bytearray(n) for n in outs]
    args += outbufs
    if ref_out:
        args.append(side.ref(drv, 4096, ref_out))
    args += [HandleArg(ident, off, 64) for off in handles]
    nin, nout = len(ins) + len(refs_in), len(outs) + bool(ref_out)
    sc = 2 << 24 | nin << 16 | nout << 8 | len(handles) << 4
    try:
        out = ("ret", f.invoke(side.h[drv], sc, args))
    except OSError as exc:
        out = ("errno", exc.errno)
    return out, b"".join(bytes(b) for b in outbufs)


buf = st.binary(min_size=0, max_size=200)
step = st.tuples(
    st.sampled_from(["accel", "legacy"]),
    st.sampled_from(["ok"] * 8 + ["bogus", "bad-pointer", "bad-struct"]),
    st.lists(buf, max_size=3),
    st.lists(st.integers(0, 200), max_size=3),
    st.lists(st.integers(1, 512), max_size=2),
    st.sampled_from([0, 0, 16, 700]),
    st.lists(st.integers(0, 4096), max_size=2),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_a_native_skel_answers_alike_on_both_planes(make_soc, native_path, steps):
    native, ref = Side(make_soc, "native", None, URI), Side(make_soc, "py", None, URI)
    try:
        for s in steps:
            a, b = run(native, s), run(ref, s)
            if s[0] == "legacy" and s[6]:  # the skel hashes the handles' fds: each side's dma-buf fd
                a, b = a[0], b[0]
            assert a == b, s
        assert native.state() == ref.state()
    finally:
        native.close()
        ref.close()
