"""``qdarpc selftest``: the calculator example of fastrpc_test, through the emulated QDA driver.

Each step is checked as it runs; the first one that fails ends the test with a line saying
which step and why (nothing after it runs on a half-built session).

Which user PD: fastrpc_test creates an unsigned PD by default (``-U 1``) and a signed one with
``-U 0``. Unsigned PDs exist on the CDSP only (``UNSIGNED_PD_SUPPORT``; other DSPs answer
``AEE_EUNSUPPORTED``), and the QDA driver has no capability ioctl to ask first, so ``pd="auto"``
does what an app that must run everywhere does: it tries an unsigned PD and, when the DSP
answers ``AEE_EUNSUPPORTED``, creates a signed PD on a fresh open of the node instead (saying
so). ``pd="unsigned"`` / ``"signed"`` ask for one kind only.

The SoC follows the kernel revisions in force (``--kernel``/``$QDARPC_KERNEL``, qda_core.kernels);
the first line names the accel one, and each line names its ioctl as that revision does (v1:
``REMOTE_SESSION_CREATE``, ``REMOTE_INVOKE``; docs/spec/kernel_revisions_2026.md §2.1). The
by-reference ``max`` passes its GEM buffer by handle on the RFC and, on v1, as a DMA-BUF fd
exported for the call (v1's ``fd`` fields take nothing else). The legacy driver is not used.
"""
from __future__ import annotations

import struct
import time
from typing import Callable

import numpy as np

CALC_URI = "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3&_dom={dom}"
SC_SUM = 0x02020100
SC_MAX = 0x03020100
PD_CHOICES = ("auto", "unsigned", "signed")


class StepFailed(Exception):
    """A selftest step went wrong: ``str()`` says which and why."""


def _aee(code: int) -> str:
    from qda_core._ext import load

    name = load("_abi").aee_name(code & 0xFFFF_FFFF)
    return f"{code & 0xFFFF_FFFF:#x} {name}" if name else f"{code:#x}"


def _check(ok: bool, step: str, why: str) -> None:
    if not ok:
        raise StepFailed(f"{step}: {why}")


def _ioctl_name(f, generic: int) -> str:
    """The name the file's accel revision gives the ioctl of ``generic``'s nr (the RFC names
    them INIT_CREATE/INVOKE, v1 REMOTE_SESSION_CREATE/REMOTE_INVOKE; the numbers are the same)."""
    from qda_core import uapi

    return f.uapi.ioctls[uapi.IOC_NR(generic)].name


def _create_pd(soc, domain: str, pd: str, echo: Callable[[str], None]):
    """Open the domain's accel node and create a user PD of the kind ``pd`` asks for; returns
    the open file (the caller closes it)."""
    from qda_core import uapi
    from qda_core.dsp import aee

    f = soc.open_device(domain)
    try:
        echo(f"open {f.device.path}            QUERY -> dsp_name={f.query()!r}, client_id={f.client_id}")
        create = _ioctl_name(f, uapi.DRM_IOCTL_QDA_INIT_CREATE)
        if pd == "signed":
            ret = f.init_create(attrs=0)
            echo(f"{create:<34} signed user PD -> {ret:#x}")
            _check(ret == 0, "INIT_CREATE (signed user PD)", f"the DSP answered {_aee(ret)}")
            return f
        ret = f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE)
        echo(f"{create:<34} unsigned user PD -> {ret:#x}")
        if ret == 0:
            return f
        unsupported = (ret & 0xFFFF_FFFF) == aee.ERR_UNSIGNED_UNSUPPORTED & 0xFFFF_FFFF
        if pd == "unsigned" or not unsupported:
            why = f"the DSP answered {_aee(ret)}"
            if unsupported:
                why += f"; unsigned PDs are CDSP-only, {domain} has none (use --pd auto or --pd signed)"
            raise StepFailed(f"INIT_CREATE (unsigned user PD): {why}")
        echo(f"{'':37}{_aee(ret)}: {domain} has no unsigned PDs (CDSP-only); a signed PD instead, "
             f"as fastrpc_test -U 0 does")
    except BaseException:
        f.close()
        raise
    f.close()
    return _create_pd(soc, domain, "signed", echo)


def run(domain: str, echo: Callable[[str], None], pd: str = "auto") -> bool:
    """Open the domain's accel node on a fresh emulated SoC, create a user PD, open the
    calculator by URI, run sum and max on a copied buffer and on a shared GEM buffer, close.
    Stops at the first step that fails, saying why. Returns True when every step passed."""
    from libadsprpc_compat.remotectl import close_module, open_module
    from qda_core import uapi
    from qda_core.accel import GemRef
    from qda_core.soc import Soc

    t0 = time.perf_counter()
    soc = Soc()
    rev = soc.kernel["accel"]
    echo(f"kernel {rev}: {rev.title}")
    try:
        f = _create_pd(soc, domain, pd, echo)
        with f:
            # the short name, as the RFC's "INVOKE"; v1: "REMOTE_INVOKE"
            invoke = _ioctl_name(f, uapi.DRM_IOCTL_QDA_INVOKE).removeprefix("DRM_IOCTL_QDA_")
            uri = CALC_URI.format(dom=domain)
            ret, h = open_module(f, uri)
            echo(f"remotectl1 open (handle 8)         {uri}\n{'':37}-> DSP handle {h:#x} (ret {ret:#x})")
            _check(ret == 0, "remotectl1 open of the calculator", f"the DSP answered {_aee(ret)}")
            vec = np.arange(1000, dtype=np.int32)
            prim = struct.pack("<i", vec.size)

            res = bytearray(8)
            ret = f.invoke(h, SC_SUM, [prim, vec, res])
            total = struct.unpack("<q", res)[0]
            echo(f"{invoke} sum  sc={SC_SUM:#010x}  copied 4000 B    -> {total} (ret {ret:#x})")
            _check(ret == 0, "INVOKE sum", f"the DSP answered {_aee(ret)}")
            _check(total == 499500, "INVOKE sum", f"got {total}, expected 499500")

            gem = f.gem_create(vec.nbytes)
            view = f.mmap(f.gem_mmap_offset(gem), 4096)
            try:
                shared = np.frombuffer(view, dtype=np.int32, count=vec.size)
                shared[:] = vec
                del shared
                res4 = bytearray(4)
                ret = f.invoke(h, SC_MAX, [prim, GemRef(gem, view[:vec.nbytes]), res4])
            finally:
                view.release()
            mx = struct.unpack("<i", res4)[0]
            shared = f"shared GEM {gem}" + ("     " if f.uapi.fd_kind == "gem-handle" else
                                            " as a DMA-BUF fd exported for the call")
            echo(f"{invoke} max  sc={SC_MAX:#010x}  {shared} -> {mx} (ret {ret:#x})")
            _check(ret == 0, "INVOKE max", f"the DSP answered {_aee(ret)}")
            _check(mx == 999, "INVOKE max", f"got {mx}, expected 999")

            ret = close_module(f, h)
            echo(f"remotectl1 close                   -> {ret:#x}")
            _check(ret == 0, "remotectl1 close", f"the DSP answered {_aee(ret)}")
            f.gem_close(gem)
        left = len(soc.domain(domain).dsp.processes())
        echo(f"close: GEM handles released, INIT_RELEASE sent; DSP processes left: {left}")
        _check(left == 0, "close", f"{left} DSP process(es) still alive after the last close")
    except StepFailed as exc:
        echo(f"FAIL at {exc}")
        return False
    echo(f"PASS: sum=499500 max=999 expected; {1e3 * (time.perf_counter() - t0):.1f} ms")
    return True
