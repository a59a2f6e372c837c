"""``qdarpc selftest``: the calculator example of fastrpc_test, through the emulated QDA driver."""
from __future__ import annotations

import struct
import time
from typing import Callable

import numpy as np

CALC_URI = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom={dom}"
SC_SUM = 0x02020100
SC_MAX = 0x03020100


def run(domain: str, echo: Callable[[str], None]) -> bool:
    """Open the domain's accel node on a fresh emulated SoC, create a user PD, open the
    calculator by URI, run sum and max on a copied buffer and on a shared GEM buffer, close.
    Returns True when every result is right."""
    from libadsprpc_compat.remotectl import close_module, open_module
    from qda_core import uapi
    from qda_core.accel import GemRef
    from qda_core.soc import Soc

    t0 = time.perf_counter()
    soc = Soc()
    ok = True
    with soc.open_device(domain) as f:
        echo(f"open {f.device.path}            QUERY -> dsp_name={f.query()!r}, client_id={f.client_id}")
        ret = f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE)
        echo(f"DRM_IOCTL_QDA_INIT_CREATE          unsigned user PD -> {ret:#x}")
        uri = CALC_URI.format(dom=domain)
        ret, h = open_module(f, uri)
        echo(f"remotectl1 open (handle 8)         {uri}\n{'':37}-> DSP handle {h:#x} (ret {ret:#x})")
        vec = np.arange(1000, dtype=np.int32)
        prim = struct.pack("<i", vec.size)

        res = bytearray(8)
        ret = f.invoke(h, SC_SUM, [prim, vec, res])
        total = struct.unpack("<q", res)[0]
        ok &= ret == 0 and total == 499500
        echo(f"INVOKE sum  sc={SC_SUM:#010x}  copied 4000 B    -> {total} (ret {ret:#x})")

        gem = f.gem_create(vec.nbytes)
        view = f.mmap(f.gem_mmap_offset(gem), 4096)
        shared = np.frombuffer(view, dtype=np.int32, count=vec.size)
        shared[:] = vec
        res4 = bytearray(4)
        ret = f.invoke(h, SC_MAX, [prim, GemRef(gem, view[:vec.nbytes]), res4])
        mx = struct.unpack("<i", res4)[0]
        ok &= ret == 0 and mx == 999
        echo(f"INVOKE max  sc={SC_MAX:#010x}  shared GEM {gem}      -> {mx} (ret {ret:#x})")
        del shared
        view.release()

        echo(f"remotectl1 close                   -> {close_module(f, h):#x}")
        f.gem_close(gem)
    dsp = soc.domain(domain).dsp
    echo(f"close: GEM handles released, INIT_RELEASE sent; DSP processes left: {len(dsp.processes())}")
    echo(f"{'PASS' if ok else 'FAIL'}: sum=499500 max=999 expected; {1e3 * (time.perf_counter() - t0):.1f} ms")
    return ok
