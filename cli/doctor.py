"""``qdarpc doctor``: is this machine ready to run FastRPC code, on a real DSP or on the emulator?

Three groups of checks, each a line ``ok`` / ``warn`` / ``fail`` / ``info`` with the fix:

* **device nodes** (real hardware): which ``/dev/fastrpc-*`` and ``/dev/accel/accel*`` nodes
  exist, whether this user may open them read-write, which DSP each serves
  (``DRM_IOCTL_QDA_QUERY`` on an accel node, ``FASTRPC_IOCTL_GET_DSP_INFO`` on a legacy one),
  and ``/dev/dma_heap/system`` (rpcmem's allocator). The root directory is injectable
  (:class:`RealNodes` ``root``, ``qdarpc doctor --root DIR``) and so are ``open``/``ioctl`` and
  the caller's identity, so these checks are tested against a fake ``/dev`` tree. With no node
  at all, the group says so: this machine has no DSP, and the emulator is what runs.
* **emulator**: the compiled extensions, the kernel revision each emulated driver follows (the
  SoC's own: ``--kernel``, else the profile's ``"kernel"``, ``$QDARPC_KERNEL``, the defaults;
  :mod:`qda_core.kernels`), and per domain of the SoC profile: QUERY on its accel node,
  GET_DSP_INFO on its legacy nodes, context banks free.
* **skels**: ``DSP_LIBRARY_PATH`` / ``ADSP_LIBRARY_PATH`` and, for each ``--uri``, which skel
  the emulated DSP would load (built-in, plugin, Python file or native library) or why none.

Only ``fail`` is a failed required check: the exit code is 0 when there is none, 1 otherwise.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


@dataclass
class Check:
    group: str
    status: str
    what: str
    fix: str = ""
    data: dict = field(default_factory=dict)


# --- real device nodes ------------------------------------------------------------------------
def _default_ioctl(fd: int, request: int, buf: bytearray) -> int:
    import fcntl

    return fcntl.ioctl(fd, request, buf, True)


@dataclass
class Identity:
    """Who is asking: permission checks use the mode bits against these (root may do anything)."""
    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> "Identity":
        return cls(os.geteuid(), frozenset([os.getegid(), *os.getgroups()]))

    def may_read_write(self, st: os.stat_result) -> bool:
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            bits = stat.S_IRUSR | stat.S_IWUSR
        elif st.st_gid in self.gids:
            bits = stat.S_IRGRP | stat.S_IWGRP
        else:
            bits = stat.S_IROTH | stat.S_IWOTH
        return st.st_mode & bits == bits


class RealNodes:
    """The FastRPC device nodes under ``root``/dev, probed as a user program would."""

    def __init__(self, root: str | os.PathLike = "/", *, ioctl: Callable[[int, int, bytearray], int] | None = None,
                 opener: Callable[[str, int], int] = os.open, identity: Identity | None = None):
        self.root = Path(root)
        self.dev = self.root / "dev"
        self.ioctl = ioctl or _default_ioctl
        self.opener = opener
        self.identity = identity or Identity.current()

    def shown(self, path: Path) -> str:
        """``path`` as the device sees it (``/dev/...``), whatever the root."""
        return "/" + str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def legacy_nodes(self) -> list[Path]:
        return sorted(p for p in self.dev.glob("fastrpc-*"))

    def accel_nodes(self) -> list[Path]:
        return sorted((p for p in (self.dev / "accel").glob("accel*") if re.fullmatch(r"accel\d+", p.name)),
                      key=lambda p: int(p.name[5:]))

    def _open(self, path: Path) -> tuple[int | None, Check | None]:
        """Open ``path`` read-write, or the check saying why not."""
        shown = self.shown(path)
        try:
            st = path.stat()
        except OSError as exc:
            return None, Check("device nodes", FAIL, f"{shown}: {exc.strerror}")
        if not self.identity.may_read_write(st):
            return None, Check("device nodes", FAIL, f"{shown}: no read-write permission for this user "
                               f"(mode {stat.filemode(st.st_mode)}, uid {st.st_uid}, gid {st.st_gid})",
                               fix=f"add the user to the node's group (gid {st.st_gid}) or install a udev rule "
                                   f"giving it access, e.g. KERNEL==\"{path.name.rstrip('0123456789')}*\", "
                                   f"MODE=\"0660\", GROUP=\"<your group>\"")
        try:
            return self.opener(str(path), os.O_RDWR | os.O_CLOEXEC), None
        except OSError as exc:
            return None, Check("device nodes", FAIL, f"{shown}: open failed: {exc.strerror or exc}",
                               fix="check dmesg for the driver's error; the DSP may be down or still booting")

    def check_accel(self, path: Path) -> Check:
        from qda_core import uapi

        shown = self.shown(path)
        fd, bad = self._open(path)
        if bad:
            return bad
        try:
            buf = bytearray(uapi.drm_qda_query.size)
            try:
                self.ioctl(fd, uapi.DRM_IOCTL_QDA_QUERY, buf)
            except OSError as exc:
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                return Check("device nodes", INFO, f"{shown}: DRM_IOCTL_QDA_QUERY -> {name}: not a QDA (FastRPC) "
                             "accel device (another accel driver)", data={"node": shown, "qda": False})
            dsp = uapi.drm_qda_query.get(buf, "dsp_name").split(b"\0")[0].decode(errors="replace")
            return Check("device nodes", OK, f"{shown}: opened read-write; DRM_IOCTL_QDA_QUERY -> {dsp!r}",
                         data={"node": shown, "qda": True, "domain": dsp})
        finally:
            os.close(fd)

    def check_legacy(self, path: Path) -> Check:
        from qda_core import uapi
        from qda_core.soc import DOMAINS
        from qda_core.wire import UNSIGNED_PD_SUPPORT

        shown = self.shown(path)
        m = re.fullmatch(r"fastrpc-([a-z]+\d*)(-secure)?", path.name)
        dom = m.group(1) if m else None
        if dom not in DOMAINS:
            return Check("device nodes", WARN, f"{shown}: not a node name the FastRPC library opens "
                         f"(/dev/fastrpc-<domain>[-secure], domain one of {', '.join(DOMAINS)})")
        fd, bad = self._open(path)
        if bad:
            return bad
        if dom == "mdsp":  # the kernel refuses GET_DSP_INFO for the modem (ECHRNG): nothing to ask
            os.close(fd)
            return Check("device nodes", OK, f"{shown}: opened read-write; serves mdsp (GET_DSP_INFO is not "
                         "answered for the modem)", data={"node": shown, "domain": dom})
        try:
            # Attribute 0 (DOMAIN_SUPPORT) is always 0 from the kernel (the library fills it in):
            # a successful GET_DSP_INFO is the answer that the DSP is there.
            buf = uapi.fastrpc_ioctl_capability.pack(domain=DOMAINS[dom], attribute_id=UNSIGNED_PD_SUPPORT)
            try:
                self.ioctl(fd, uapi.FASTRPC_IOCTL_GET_DSP_INFO, buf)
            except OSError as exc:
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                return Check("device nodes", WARN, f"{shown}: opened read-write, but "
                             f"FASTRPC_IOCTL_GET_DSP_INFO -> {name}",
                             fix="an old kernel without GET_DSP_INFO, or the DSP is down: check dmesg",
                             data={"node": shown, "domain": dom})
            unsigned = bool(uapi.fastrpc_ioctl_capability.get(buf, "capability"))
            return Check("device nodes", OK, f"{shown}: opened read-write; serves {dom} (GET_DSP_INFO answered: "
                         f"{'unsigned PDs supported' if unsigned else 'no unsigned PDs'})",
                         data={"node": shown, "domain": dom, "unsigned_pd": unsigned})
        finally:
            os.close(fd)

    def checks(self) -> list[Check]:
        legacy, accel = self.legacy_nodes(), self.accel_nodes()
        where = self.shown(self.dev)
        if not legacy and not accel:
            return [Check("device nodes", INFO, f"no FastRPC nodes ({where}/fastrpc-*) and no accel nodes "
                          f"({where}/accel/accel*): this machine has no DSP, or its drivers are not loaded; "
                          "the emulator checks below are what counts here",
                          data={"real_nodes": False})]
        out = [self.check_legacy(p) for p in legacy] + [self.check_accel(p) for p in accel]
        served = {c.data.get("domain") for c in out if c.status == OK}
        if not served:
            out.append(Check("device nodes", FAIL, "no FastRPC node this user can use: every node above failed",
                             fix="fix the first failure above (permissions, driver) and run qdarpc doctor again"))
        heap = self.dev / "dma_heap" / "system"
        if heap.exists():
            ok = self.identity.may_read_write(heap.stat())
            out.append(Check("device nodes", OK if ok else WARN,
                             f"{self.shown(heap)}: present{'' if ok else ', but not readable-writable by this user'}",
                             fix="" if ok else "rpcmem_alloc opens it: give the user access (udev rule or group)"))
        else:
            out.append(Check("device nodes", WARN, f"{self.shown(heap)}: missing: rpcmem_alloc cannot allocate "
                             "DMA buffers (the library falls back to plain memory, copied on every invoke)",
                             fix="a kernel with CONFIG_DMABUF_HEAPS_SYSTEM=y"))
        out.append(Check("device nodes", INFO, "context banks: a real kernel does not show how many are free; "
                         "each open of a node takes one (EBUSY / ENOMEM when none is left)"))
        return out


# --- the emulator -----------------------------------------------------------------------------
def emulator_checks(soc_profile: str | None, kernel: str | None = None) -> list[Check]:
    g = "emulator"
    out = []
    try:
        from qda_core._ext import versions

        vers = versions()
        out.append(Check(g, OK, "compiled extensions: " + ", ".join(f"qda_core.{n} {v}" for n, v in vers.items()),
                         data={"extensions": vers}))
    except ImportError as exc:
        return [Check(g, FAIL, f"compiled extensions: {exc}",
                      fix="pip install . (or pip install -e . in a checkout), and run from outside the checkout")]
    from qda_core.soc import Soc

    try:
        soc = Soc(soc_profile, kernel=kernel)
    except (ValueError, OSError) as exc:
        return out + [Check(g, FAIL, f"SoC profile {soc_profile!r}: {exc}", fix="--soc default|full|minimal|FILE")]
    # The SoC's revisions, not the process's: a profile may name its own.
    for front, rev in soc.kernel.items():
        semantic = "" if rev.exact else "; uapi from commit messages, not exact"
        out.append(Check(g, INFO, f"kernel revision emulated ({front} driver): {rev} ({rev.title}){semantic}",
                         data={"driver": front, "revision": f"{rev} ({rev.title})", "name": str(rev),
                               "exact": rev.exact}))
    out.append(Check(g, INFO, f"SoC profile {soc_profile or os.environ.get('QDARPC_SOC') or 'default'}: "
                     f"{', '.join(soc.domains)}"))
    for d in soc.domains.values():
        out.append(_emulated_domain(soc, d))
    return out


def _emulated_domain(soc, d) -> Check:
    from qda_core import uapi
    from qda_core.wire import UNSIGNED_PD_SUPPORT

    parts, status, fix = [], OK, ""
    with soc.open(d.accel.path) as f:
        name = f.query()
        parts.append(f"{d.accel.path} QUERY -> {name!r}")
        if name != d.name:
            status, fix = FAIL, "the emulated accel node answers for another DSP: a bug, please report it"
    names = (f"fastrpc-{d.name}", f"fastrpc-{d.name}-secure")
    legacy = [p for p in soc.legacy_nodes() if p.rsplit("/", 1)[-1] in names]
    for path in legacy if d.name != "mdsp" else ():  # the kernel refuses GET_DSP_INFO for the modem
        with soc.open(path) as f:
            buf = uapi.fastrpc_ioctl_capability.pack(domain=d.domain_id, attribute_id=UNSIGNED_PD_SUPPORT)
            try:
                ret = f.ioctl(uapi.FASTRPC_IOCTL_GET_DSP_INFO, buf)
            except OSError as exc:
                ret = -(exc.errno or 1)
        if ret == 0:
            unsigned = uapi.fastrpc_ioctl_capability.get(buf, "capability")
            parts.append(f"{path} GET_DSP_INFO -> {'unsigned PDs' if unsigned else 'signed PDs only'}")
        else:
            parts.append(f"{path} GET_DSP_INFO -> {ret}")
            status, fix = FAIL, "the emulated legacy node does not answer GET_DSP_INFO: a bug, please report it"
    free, total = d.bus.free_count, len(d.bus.cbs)
    parts.append(f"context banks {free}/{total} free")
    if free == 0:
        status, fix = WARN, "every context bank is taken: close files (each open takes one)"
    return Check("emulator", status, f"{d.name}: " + "; ".join(parts), fix=fix,
                 data={"domain": d.name, "accel": d.accel.path, "legacy": legacy, "cbs_free": free, "cbs": total})


# --- skels ------------------------------------------------------------------------------------
def skel_checks(uris: Iterable[str], domain: str | None, env: dict | None = None) -> list[Check]:
    from qda_core.dsp.loader import DEFAULT_SEARCH_PATH

    g = "skels"
    env = os.environ if env is None else env
    out = []
    # The loader's rule: DSP_LIBRARY_PATH when set (even empty), else ADSP_LIBRARY_PATH.
    var = "DSP_LIBRARY_PATH" if "DSP_LIBRARY_PATH" in env else "ADSP_LIBRARY_PATH" if "ADSP_LIBRARY_PATH" in env \
        else None
    if var is None:
        out.append(Check(g, INFO, f"DSP_LIBRARY_PATH and ADSP_LIBRARY_PATH are unset: skels load from the built-in "
                         f"ones, qdarpc.skels plugins and the library default {DEFAULT_SEARCH_PATH!r}",
                         fix="export DSP_LIBRARY_PATH=\"/path/to/your/skels\" (';'-separated) for your own skels"))
    else:
        dirs = [p for p in env[var].split(";") if p]
        missing = [p for p in dirs if not os.path.isdir(p)]
        out.append(Check(g, WARN if missing else OK, f"{var}={env[var]!r}: "
                         + (f"{len(missing)} of {len(dirs)} entries are not directories: {', '.join(missing)}"
                            if missing else f"{len(dirs)} director{'y' if len(dirs) == 1 else 'ies'}, each tried as "
                            "DIR/<domain>/ then DIR/"),
                         fix="fix or drop the missing entries" if missing else ""))
    for uri in uris:
        out.append(_skel_for(uri, domain, env))
    return out


def _skel_for(uri: str, domain: str | None, env) -> Check:
    from qda_core.dsp.loader import LoadError, Loader, parse_uri
    from qda_core.dsp.skels import BUILTIN_SKELS

    g = "skels"
    try:
        parsed = parse_uri(uri)
    except ValueError as exc:
        return Check(g, FAIL, f"{uri}: {exc}", fix="file:///lib<name>_skel.so?<name>_skel_handle_invoke&_modver=1.0")
    dom = domain or parsed.params.get("_dom") or "cdsp"
    try:
        src = Loader(dom, BUILTIN_SKELS, dict(env)).resolve(parsed)
    except LoadError as exc:
        stem = parsed.file.rsplit("/", 1)[-1].removesuffix(".so")
        return Check(g, FAIL, f"{uri} on {dom}: {exc}",
                     fix=f"put {stem}.so (host-compiled native skel) or {stem}.py (Python skel) in a directory of "
                         f"DSP_LIBRARY_PATH (or {dom}/ under one)", data={"uri": uri, "domain": dom})
    origin = src.origin
    if src.native is not None:
        kind = f"native library {origin}"
    elif origin == "builtin":
        kind = f"built-in skel {getattr(src.skel, '__name__', '?')} ({src.skel.__module__})"
    elif str(origin).startswith("plugin:"):
        kind = f"plugin skel from {origin[len('plugin:'):]}"
    else:
        kind = f"Python skel {origin}"
    return Check(g, OK, f"{uri} on {dom}: would load the {kind}", data={"uri": uri, "domain": dom, "source": str(origin)})


# --- C programs --------------------------------------------------------------------------------
def c_checks() -> list[Check]:
    """What unmodified C programs need (docs/c_abi.md, docs/shim.md): our libraries and headers,
    a compiler, and a shared libpython for plain C processes to start the emulator in."""
    import shutil
    import sysconfig

    from libadsprpc_compat import native

    g = "C programs"
    out = []
    try:
        libs = [native.library(f) for f in native.LIBRARIES] + [native.shim()]
        out.append(Check(g, OK, f"C ABI libraries and device shim in {native.libdir()}; headers in "
                         f"{native.includedir()}", data={"libraries": [str(p) for p in libs]}))
    except native.NotBuiltError as exc:
        return [Check(g, FAIL, str(exc), fix="pip install . (or python setup.py build_ext --inplace in a checkout)")]
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    out.append(Check(g, OK if cc else WARN, f"C compiler: {cc}" if cc else "no C compiler (cc) on PATH",
                     fix=None if cc else "apt-get install build-essential"))
    name = sysconfig.get_config_var("INSTSONAME") or ""
    found = [str(Path(d, name)) for d in (sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LIBPL"))
             if d and name.endswith(".so.1.0") and Path(d, name).exists()]
    if found or os.environ.get("QDARPC_LIBPYTHON"):
        out.append(Check(g, OK, f"shared libpython for plain C programs: {os.environ.get('QDARPC_LIBPYTHON') or found[0]}"))
    else:
        out.append(Check(g, WARN, "no shared libpython found for this interpreter: a plain C program cannot start "
                         "the emulator (ctypes callers inside Python still can)",
                         fix="apt-get install libpython3-dev (python3-dev), or set QDARPC_LIBPYTHON"))
    return out


# --- all of it --------------------------------------------------------------------------------
def run(*, root: str = "/", soc_profile: str | None = None, kernel: str | None = None, uris: Iterable[str] = (),
        domain: str | None = None, nodes: RealNodes | None = None) -> list[Check]:
    checks = (nodes or RealNodes(root)).checks()
    checks += emulator_checks(soc_profile, kernel)
    checks += c_checks()
    checks += skel_checks(list(uris), domain)
    return checks


def passed(checks: list[Check]) -> bool:
    return not any(c.status == FAIL for c in checks)


def to_json(checks: list[Check]) -> dict:
    return {"ok": passed(checks), "checks": [asdict(c) for c in checks]}


def format_text(checks: list[Check]) -> str:
    lines, group = [], None
    for c in checks:
        if c.group != group:
            group = c.group
            lines += [""] * bool(lines) + [group]
        lines.append(f"  {c.status:<5} {c.what}")
        if c.fix and c.status in (WARN, FAIL):
            lines.append(f"        fix: {c.fix}")
    n = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    lines += ["", f"{'READY' if passed(checks) else 'NOT READY'}: {n[OK]} ok, {n[WARN]} warning(s), "
                  f"{n[FAIL]} failed"]
    return "\n".join(lines)
