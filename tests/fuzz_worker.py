"""Raw-ioctl fuzzer of both emulated drivers, shared by tests/test_ioctl_fuzz.py.

In-process, :class:`Fuzzer` draws its inputs through a ``draw(lo, hi)`` function (Hypothesis,
so failures shrink). As a script it runs in a subprocess with a seeded ``random.Random``, so
that a crash of the process (SIGSEGV, SIGBUS, abort) is reported by the parent test with the
signal, the seed and the last ioctl instead of killing the test run::

    python tests/fuzz_worker.py --driver accel|legacy --seeds 1,2,3 --iters 300 [--verbose]

Every ioctl is checked against the kernel's contract: ``0``, ``-errno`` in [-4095, -1], or (for
ioctls that reach the DSP) the DSP's code verbatim as a signed 32-bit value. The file must keep
working (accel: GEM create + close; legacy: GET_DSP_INFO), and after the file is closed the
emulator's live objects, fds, context banks and PDs are back to what they were. Inputs are
struct-aware: fields get valid handles/fds/pointers of the fuzzer's own making, boundary values
and random ones. Pointers only ever name the fuzzer's own guarded arena, its GEM/dma-buf CPU
mappings, unmapped low addresses or random 64-bit values, so the fuzzer never scribbles on the
interpreter's own memory (the emulator's user copies turn bad pointers into EFAULT).
Exit status: 0 ok, 3 contract violation (message on stdout), a signal if the process died.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import gc
import mmap
import os
import random
import sys
import threading

from qda_core import debug, uapi, wire
from qda_core.soc import Soc
from qda_core.uaccess import address

ACCEL_DSP = {uapi.DRM_IOCTL_QDA_INIT_ATTACH, uapi.DRM_IOCTL_QDA_INIT_CREATE, uapi.DRM_IOCTL_QDA_MAP,
             uapi.DRM_IOCTL_QDA_MUNMAP, uapi.DRM_IOCTL_QDA_INVOKE}
LEGACY_DSP = {uapi.FASTRPC_IOCTL_INVOKE, uapi.FASTRPC_IOCTL_INIT_ATTACH, uapi.FASTRPC_IOCTL_INIT_ATTACH_SNS,
              uapi.FASTRPC_IOCTL_INIT_CREATE, uapi.FASTRPC_IOCTL_INIT_CREATE_STATIC, uapi.FASTRPC_IOCTL_MMAP,
              uapi.FASTRPC_IOCTL_MUNMAP, uapi.FASTRPC_IOCTL_MEM_MAP, uapi.FASTRPC_IOCTL_MEM_UNMAP,
              uapi.FASTRPC_IOCTL_GET_DSP_INFO}
TEST = "file:///libqdarpc_test_skel.so?qdarpc_test_skel_handle_invoke&_modver=1.0&_dom=cdsp"
PATHS = {"accel": None, "legacy": "/dev/fastrpc-cdsp"}
ARENA = 1 << 20
_SIZES = (0, 1, 8, 4095, 4096, 8192, 1 << 20, (1 << 31) - 1, 1 << 31, 1 << 32, (1 << 32) + 4096, 1 << 40,
          (1 << 63), (1 << 64) - 1)
_CTYPE_RANGE = {"u32": (0, (1 << 32) - 1), "s32": (-(1 << 31), (1 << 31) - 1), "u64": (0, (1 << 64) - 1)}


class ContractError(AssertionError):
    pass


def check_contract(driver: str, request: int, ret) -> None:
    """What a raw ioctl may return: 0, -errno, or a DSP code for ioctls that reach the DSP."""
    if not isinstance(ret, int) or isinstance(ret, bool):
        raise ContractError(f"ioctl {request:#x} returned {ret!r}, not an int")
    # drm_ioctl() dispatches on the nr alone (type, direction and size bits are not checked);
    # the legacy driver on the full number.
    reaches_dsp = (request & 0xFF in {r & 0xFF for r in ACCEL_DSP} if driver == "accel" else request in LEGACY_DSP)
    if reaches_dsp:
        if not -(1 << 31) <= ret < (1 << 31):
            raise ContractError(f"ioctl {request:#x} returned {ret:#x}: not a signed 32-bit DSP code")
    elif not -4095 <= ret <= 0:
        raise ContractError(f"ioctl {request:#x} returned {ret}: not 0 or -errno")


class _Arena:
    """A private read-write area followed by a PROT_NONE guard page: pointers into it can carry
    any length without reaching memory the interpreter uses (copies beyond it fault)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self._libc = libc
        self.base = libc.mmap(None, ARENA + 2 * 4096, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        libc.mprotect(self.base, 4096, 0)                       # guard below
        libc.mprotect(self.base + 4096 + ARENA, 4096, 0)        # guard above
        self.base += 4096

    def close(self) -> None:
        self._libc.munmap(self.base - 4096, ARENA + 2 * 4096)


class Fuzzer:
    """One driver, one SoC, one open file at a time; ``draw(lo, hi)`` chooses every input."""

    def __init__(self, driver: str, draw, log=None):
        self.driver = driver
        self.draw = draw
        self.log = log
        gc.collect()
        self.live_before = debug.live_objects()
        self.fds_before = _fds()
        self.soc = Soc("minimal")
        self.dom = self.soc.domain("cdsp")
        self.arena = _Arena()
        self.memfd = os.memfd_create("fuzz", os.MFD_ALLOW_SEALING)  # importable: its size can be sealed
        os.ftruncate(self.memfd, 8192)
        self.closed_fd = os.dup(self.memfd)
        os.close(self.closed_fd)
        self.f = None
        self._reset_state()
        self.open()

    # --- state ------------------------------------------------------------------------------
    def _reset_state(self):
        self.handles: list[int] = []      # GEM handles (accel)
        self.fds: list[int] = []          # dma-buf fds we own (legacy ALLOC_DMA_BUFF, PRIME exports)
        self.views: list[memoryview] = []  # CPU mappings of our buffers
        self.modules: list[int] = []      # DSP module handles

    def open(self):
        self.f = self.soc.open_device("cdsp") if self.driver == "accel" else self.soc.open(PATHS["legacy"])

    def close_file(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        for v in self.views:
            v.release()
        for fd in self.fds:
            os.close(fd)
        self._reset_state()

    def close(self):
        """Close everything and check that nothing is left behind."""
        self.close_file()
        os.close(self.memfd)
        self.arena.close()
        if self.dom.legacy_channel is not None:
            self.dom.legacy_channel.remove()  # frees a channel's remote heap, if INIT_CREATE_STATIC made one
        self.check_clean()

    def check_clean(self, extra_fds=()):
        """With the file closed: no emulator object, fd, context bank or PD left over."""
        if debug.live_objects() != self.live_before:
            gc.collect()  # only when needed: a full collection costs more than many ioctls
        if debug.live_objects() != self.live_before:
            raise ContractError(f"live emulator objects left after close: {debug.live_objects()} "
                                f"(before: {self.live_before})")
        leaked = {fd: _readlink(fd) for fd in _fds() - self.fds_before - set(extra_fds)}
        leaked = {fd: t for fd, t in leaked.items() if t is not None}
        if leaked:
            raise ContractError(f"fds left after close: {leaked}")
        if self.dom.bus.free_count != len(self.dom.bus.cbs):
            raise ContractError("context banks still assigned after every file closed: "
                                f"{[(cb.index, cb.owner, cb.refcount) for cb in self.dom.bus.cbs if not cb.free]}")
        if self.dom.dsp.processes():
            raise ContractError(f"PDs left on the DSP after every file closed: {self.dom.dsp.processes()}")

    def recover(self):
        """After a failed example: close what is open and take what is left as the new baseline,
        so one failure is not reported again by every later example."""
        try:
            self.close_file()
        except Exception:
            self._reset_state()
            self.f = None
        gc.collect()
        self.live_before = debug.live_objects()
        self.fds_before = _fds() - {self.memfd}
        self.open()

    def cycle(self):
        """Close the file, check nothing is left behind, open a fresh one (in-process examples)."""
        self.close_file()
        self.check_clean(extra_fds=(self.memfd,))
        self.open()

    # --- input generation -------------------------------------------------------------------
    def choice(self, seq):
        # a fixed draw range whatever the length: replays stay aligned when state differs
        return seq[self.draw(0, 255) % len(seq)]

    def value(self, ctype: str):
        lo, hi = _CTYPE_RANGE[ctype]
        k = self.draw(0, 3)
        if k == 0:
            return self.draw(lo, hi)
        v = self.choice(_SIZES) if k == 1 else self.draw(-2, 16)
        return min(max(v, lo), hi) if k != 3 else min(max(-v, lo), hi)

    def fd_value(self):
        pool = [-1, 0, self.closed_fd, self.memfd, *self.fds, *self.handles, self.draw(-(1 << 31), (1 << 31) - 1)]
        return self.choice(pool)

    def pointer(self, keep: list):
        """A user pointer. Only ever the guarded arena, unmapped low memory or a random 64-bit
        value: any length may be copied to it without touching memory the interpreter uses.
        (GEM/dma-buf buffers are reached by handle/fd: their device side is bounds-checked.)"""
        k = self.draw(0, 3)
        if k == 0:
            return self.arena.base + self.draw(0, ARENA - 1)
        if k == 1:
            return self.draw(0, 0xFFFF)                        # unmapped low memory
        if k == 2:
            return self.draw(0, (1 << 64) - 1)
        return self.arena.base + ARENA - self.draw(0, 64)      # runs into the guard page

    def descriptors(self, sc: int, keep: list) -> int:
        n = wire.sc_length(sc)
        if n == 0 or n > 24 or self.draw(0, 9) == 0:
            return self.pointer(keep)
        descs = bytearray(24 * n)
        keep.append(descs)
        for i in range(n):
            length = self.choice((0, 4, 8, 64, 4096, 4097, 1 << 20, self.draw(0, (1 << 64) - 1)))
            wire.INVOKE_ARG.pack_into(descs, 24 * i, self.pointer(keep), length,
                                      self.choice((-1, -1, 0, self.fd_value())), self.draw(0, 3))
        return address(descs)

    def scalars(self) -> int:
        if self.draw(0, 4) == 0:
            return self.draw(0, (1 << 32) - 1)
        return wire.scalars(self.draw(0, 31), self.draw(0, 3), self.draw(0, 3), self.draw(0, 2), self.draw(0, 2),
                            self.draw(0, 7))

    def request(self):
        table = uapi.ACCEL_IOCTLS.values() if self.driver == "accel" else uapi.LEGACY_IOCTLS.values()
        known = sorted(table, key=lambda i: i.number)
        k = self.draw(0, 19)
        if k == 0:
            return self.draw(0, (1 << 32) - 1), None
        ioc = self.choice(known)
        if k == 1:  # same nr, another direction/size (DRM dispatches by nr)
            return (ioc.number & 0x3FFF_FFFF & ~(0x3FFF << 16)) | (self.draw(0, 3) << 30) | (self.draw(0, 96) << 16), ioc
        return ioc.number, ioc

    def argument(self, ioc, keep: list):
        """A struct for ``ioc``: field-aware most of the time, raw bytes or a pointer sometimes."""
        k = self.draw(0, 9)
        if ioc is None or ioc.layout is None or k == 0:
            if k == 1:
                return self.pointer(keep)
            return bytearray(self.draw(0, 255) for _ in range(self.draw(0, 80)))
        lay = ioc.layout
        buf = bytearray(lay.size)
        for name, (_off, ctype, n) in lay.fields.items():
            base = ctype.partition("[")[0]
            if base == "u8":
                lay.set(buf, name, bytes(self.draw(0, 255) for _ in range(self.draw(0, n))))
                continue
            if n > 1:
                continue  # reserved arrays stay zero
            if name in ("fd", "filefd"):
                v = self.fd_value()
            elif name == "handle":
                v = self.choice([*self.handles, *self.modules, 0, 1, 2, 3, 4, 8, self.draw(0, (1 << 32) - 1)])
            elif name == "sc":
                v = self.scalars()
            elif name == "args":
                v = self.descriptors(uapi.qda_invoke_args.get(buf, "sc") if "sc" in lay.fields else 0, keep)
            elif name in ("file", "name", "vaddrin", "vaddr", "vaddrout", "ptr"):
                v = self.pointer(keep) if name in ("file", "name") else self.value(ctype)
            elif name == "request":
                v = self.choice((1, 2, 0, 3, self.draw(0, (1 << 32) - 1)))
            elif name == "domain":
                v = self.choice((3, 0, 1, 2, 7, 8, self.draw(0, (1 << 32) - 1)))
            elif name == "attrs":
                v = self.choice((0, uapi.FASTRPC_MODE_UNSIGNED_MODULE, self.draw(0, (1 << 32) - 1)))
            else:
                v = self.value(ctype)
            lo, hi = _CTYPE_RANGE[base]
            lay.set(buf, name, min(max(v, lo), hi))
        if "sc" in lay.fields and "args" in lay.fields:  # descriptors sized for the final sc
            lay.set(buf, "args", self.descriptors(lay.get(buf, "sc"), keep))
        return buf

    # --- operations -------------------------------------------------------------------------
    def note(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def raw_ioctl(self):
        keep: list = []
        request, ioc = self.request()
        arg = self.argument(ioc, keep)
        name = ioc.name if ioc is not None else "?"
        shown = arg.hex() if isinstance(arg, (bytes, bytearray)) else f"@{arg:#x}"
        self.note(f"ioctl {name} {request:#010x} {shown}")
        ret = self.f.ioctl(request, arg)
        check_contract(self.driver, request, ret)
        self._collect(request, arg, ret)
        del keep
        return ret

    def _collect(self, request, arg, ret):
        """Track what a successful ioctl handed back (handles, fds), so later ioctls can name it."""
        if ret != 0 or not isinstance(arg, bytearray):
            return
        if request == uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD and len(arg) >= uapi.drm_prime_handle.size:
            self.fds.append(uapi.drm_prime_handle.get(arg, "fd"))
        elif request == uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF and len(arg) >= uapi.fastrpc_alloc_dma_buf.size:
            self.fds.append(uapi.fastrpc_alloc_dma_buf.get(arg, "fd"))
        elif request == uapi.DRM_IOCTL_QDA_GEM_CREATE and len(arg) >= uapi.drm_qda_gem_create.size:
            self.handles.append(uapi.drm_qda_gem_create.get(arg, "handle"))
        elif request == uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE and len(arg) >= uapi.drm_prime_handle.size:
            self.handles.append(uapi.drm_prime_handle.get(arg, "handle"))

    def structured(self):
        """Well-formed steps that give the raw ioctls something real to aim at."""
        from libadsprpc_compat.remotectl import ModuleOpenError, open_module
        k = self.draw(0, 3)
        self.note(f"structured {k}")
        try:
            if k == 0:
                ret = self.f.init_create(attrs=uapi.FASTRPC_MODE_UNSIGNED_MODULE)
                self.note(f"  init_create -> {ret:#x}")
            elif k == 1:
                ret, h = open_module(self.f, TEST)
                if ret == 0:
                    self.modules.append(h)
            elif self.driver == "accel":
                h = self.f.gem_create(self.choice((4096, 8192)))
                self.handles.append(h)
                self.views.append(self.f.mmap(self.f.gem_mmap_offset(h), 4096))
            else:
                from qda_core.legacy import dmabuf_mmap
                fd = self.f.alloc_dma_buff(self.choice((4096, 8192)))
                self.fds.append(fd)
                self.views.append(dmabuf_mmap(fd, 4096))
        except (OSError, ModuleOpenError) as exc:
            self.note(f"  -> {exc!r}")

    def still_works(self):
        if self.driver == "accel":
            h = self.f.gem_create(4096)
            self.f.gem_close(h)
            if self.f.query() != "cdsp":
                raise ContractError("QUERY no longer names cdsp")
        else:
            buf = uapi.fastrpc_ioctl_capability.pack(domain=3, attribute_id=1)
            ret = self.f.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, buf)
            if ret not in (0, -errno.EPIPE):  # EPIPE: the fuzzer restarted the DSP under this file
                raise ContractError(f"GET_DSP_INFO on a fuzzed file returned {ret}")

    def reopen(self, ssr: bool = False):
        self.note(f"reopen ssr={ssr}")
        self.close_file()
        if ssr:
            self.soc.restart("cdsp")
        self.open()

    def race(self):
        """Close the file while another thread is inside its ioctls (release must wait for them)."""
        self.note("race close vs ioctls")
        f, errors = self.f, []
        seed = self.draw(0, (1 << 32) - 1)

        def hammer():
            try:
                rng = random.Random(seed)
                for _ in range(20):
                    if self.driver == "accel":
                        ret = f.ioctl(uapi.DRM_IOCTL_QDA_GEM_CREATE, uapi.drm_qda_gem_create.pack(size=4096))
                        check_contract("accel", uapi.DRM_IOCTL_QDA_GEM_CREATE, ret)
                    else:
                        buf = uapi.fastrpc_alloc_dma_buf.pack(fd=-1, size=4096)
                        ret = f.ioctl(uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, buf)
                        check_contract("legacy", uapi.FASTRPC_IOCTL_ALLOC_DMA_BUFF, ret)
                        if ret == 0:
                            os.close(uapi.fastrpc_alloc_dma_buf.get(buf, "fd"))
                    if rng.random() < 0.1:
                        threading.Event().wait(0.0001)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
        t = threading.Thread(target=hammer)
        t.start()
        threading.Event().wait(0.0002)
        self.close_file()
        t.join()
        if errors:
            raise errors[0]
        self.open()

    def step(self):
        k = self.draw(0, 99)
        if k < 70:
            self.raw_ioctl()
        elif k < 90:
            self.structured()
        elif k < 95:
            self.still_works()
        elif k < 98:
            self.reopen()
        elif k < 99:
            self.race()
        else:
            self.reopen(ssr=True)


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _readlink(fd: int):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def run_seed(driver: str, seed: int, iters: int, verbose: bool) -> None:
    rng = random.Random(seed)
    last = _last_only(driver, seed, lambda: it)

    def log(text: str) -> None:
        last(text)
        if verbose:  # one unbuffered line per operation
            os.write(sys.stdout.fileno(), _LAST_LINE[0])

    it = -1
    fz = Fuzzer(driver, rng.randint, log)
    for it in range(iters):
        fz.step()
    fz.note("final check: the file still works")
    fz.still_works()
    fz.note("final close: nothing left behind")
    fz.close()


def _last_only(driver, seed, it):
    """Keep only the operation in progress, in the --last file (read by the parent if we die)."""
    def log(text: str) -> None:
        line = f"[{driver} seed={seed} it={it()}] {text}\n".encode()
        _LAST_LINE[0] = line
        if _LAST_FD >= 0:
            os.pwrite(_LAST_FD, line.ljust(4096, b" ")[:4096], 0)
    return log


_LAST_FD = -1
_LAST_LINE = [b""]


def main(argv=None) -> int:
    global _LAST_FD
    import faulthandler

    faulthandler.enable()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--driver", choices=("accel", "legacy"), required=True)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--verbose", action="store_true", help="log every operation to stdout")
    ap.add_argument("--last", help="file that always holds the operation in progress")
    args = ap.parse_args(argv)
    if args.last:
        _LAST_FD = os.open(args.last, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    failed = 0
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"seed {seed}: {args.iters} iterations on {args.driver}", flush=True)
        try:
            run_seed(args.driver, seed, args.iters, args.verbose)
        except ContractError as exc:
            failed += 1
            print(f"VIOLATION driver={args.driver} seed={seed}: {exc}", flush=True)
        except Exception as exc:  # e.g. an exception out of a raw ioctl instead of -errno
            import traceback

            failed += 1
            traceback.print_exc(file=sys.stdout)
            print(f"VIOLATION driver={args.driver} seed={seed}: exception out of the emulator: {exc!r}", flush=True)
        else:
            continue
        print(f"  last operation: {_LAST_LINE[0].decode(errors='replace').strip()[:400]}", flush=True)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
