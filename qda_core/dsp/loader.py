"""Module loader: URI -> skeleton implementation (the DSP's dlopen/dlsym step).

URI grammar (docs/spec/legacy_fastrpc_api.md §3.2, mirroring qualcomm/fastrpc ``src/mod_table.c parse_uri``):
``file://[/]<file>?<symbol>[&name[=value]]...``; ``_modver=1.0`` selects the
``handle_invoke(h, sc, pra)`` convention (implicit open/close methods 0/1). A name without
``file://`` (non-domain stubs such as ``adsp_current_process``) loads ``lib<name>_skel.so``,
symbol ``<name>_skel_invoke``.

Resolution order for the skel file, as on a device where the file system decides:

1. the search path: ``DSP_LIBRARY_PATH``, else ``ADSP_LIBRARY_PATH``, then the library's
   default ``;/usr/lib/rfsa/adsp;/usr/lib/dsp``. Entries are ``;``-separated, an empty entry is
   the current directory, and each entry is tried as ``dir/<domain>/`` then ``dir/``. In each
   directory a Python skel ``<stem>.py`` (``libfoo_skel.py``; module attribute ``SKEL`` or its
   single Skeleton subclass) comes before a host-compiled native ``libfoo_skel.so`` (called
   through the DSP runtime, :mod:`.dsprt`, with the C ``remote_arg`` ABI);
2. installed plugins: entry points of group ``qdarpc.skels`` named after the file
   (``libfoo_skel.so``) whose value is a :class:`~qda_core.dsp.skel.Skeleton` subclass;
3. the built-in registry (:mod:`qda_core.dsp.skels`).

A candidate that cannot run here is passed over with a note and the next one answers: a
``.so`` that is not an ELF for this host (a real Hexagon skel: 32-bit ``EM_QDSP6``) or that
``dlopen`` refuses, a Python skel that fails to import or defines no Skeleton, a plugin that
fails to load. The notes travel in :attr:`SkelSource.passed_over` (and the trace); when no
candidate answers, the open fails with ``ERR_MOD_UNLOADABLE`` and the first note. A candidate
that loads but lacks the URI's symbol fails the open (``ERR_SYM_NOT_FOUND``), as dlsym does.

Only files inside the search path load. The URI's file part is a plain file name or a
relative path; an absolute path, or one whose ``..`` climbs out, is a bad URI
(``ERR_BAD_URI``); a candidate that resolves (``..``, symlinks) outside its search directory is
skipped, and if nothing else matches the open fails with ``ERR_MOD_NOT_FOUND`` naming the
escape. The emulated DSP runs native skels in the host process, so a path out of the search
directories would be a ``dlopen`` of any host library and a call of any symbol in it.

Errors are :class:`LoadError` carrying the dlerr code (:mod:`.aee`) and dlerror-style text.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import os
import struct
import sys
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from . import aee, dsprt
from .skel import Skeleton

__all__ = ["ModuleUri", "parse_uri", "LoadError", "SkelSource", "Loader", "ENTRY_POINT_GROUP",
           "DEFAULT_SEARCH_PATH"]

ENTRY_POINT_GROUP = "qdarpc.skels"
#: What qualcomm/fastrpc appends to the user's path on Linux (``DSP_LIBS_LOCATION``).
DEFAULT_SEARCH_PATH = ";/usr/lib/rfsa/adsp;/usr/lib/dsp;"


@dataclass(frozen=True)
class ModuleUri:
    """A parsed module name."""

    raw: str
    file: str
    symbol: str
    params: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def modver(self) -> str | None:
        return self.params.get("_modver")

    @property
    def handle_style(self) -> bool:
        """True for ``_modver`` modules: ``handle_invoke(h, sc, pra)`` with implicit 0/1."""
        return "_modver" in self.params


def parse_uri(name: str) -> ModuleUri:
    """Parse a module name as the DSP does; ``ValueError`` for a malformed ``file://`` URI."""
    if not name.startswith("file://"):
        if not name or any(c in name for c in "/?&"):
            raise ValueError(f"bad module name {name!r}")
        return ModuleUri(name, f"lib{name}_skel.so", f"{name}_skel_invoke", MappingProxyType({}))
    rest = name[len("file://"):]
    if rest.startswith("/"):
        rest = rest[1:]
    file, qmark, query = rest.partition("?")
    if not file or not qmark:
        raise ValueError(f"URI {name!r} has no '?<symbol>'")
    _check_relative(name, file)
    symbol, _, pairs = query.partition("&")
    if not symbol:
        raise ValueError(f"URI {name!r} has an empty symbol")
    params: dict[str, str | None] = {}
    for pair in pairs.split("&") if pairs else ():
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not key:
            raise ValueError(f"URI {name!r} has a parameter without a name")
        params[key] = value if eq else None
    return ModuleUri(name, file, symbol, MappingProxyType(params))


def _check_relative(name: str, file: str) -> None:
    # Lexical half of the containment rule; symlinks are checked against the disk in resolve().
    if file.startswith("/"):
        raise ValueError(f"URI {name!r} names an absolute path {file!r}: only files on the DSP "
                         "library search path (DSP_LIBRARY_PATH) can be loaded")
    if "\0" in file:
        raise ValueError(f"URI {name!r} has a NUL byte in its file name")
    if os.path.normpath(file).split("/", 1)[0] == "..":
        raise ValueError(f"URI {name!r}: {file!r} leaves the DSP library search path")


def _resolve_inside(path: str, directory: str) -> str | None:
    """``path`` with symlinks and ``..`` resolved if that lies in ``directory`` (ditto), else None."""
    real, top = os.path.realpath(path), os.path.realpath(directory)
    return real if os.path.commonpath([real, top]) == top else None


class LoadError(Exception):
    """The open failed; ``code`` goes to remotectl's dlerr, ``text`` to its dlerror buffer;
    ``passed_over`` lists the candidates that were found but could not run (path, reason)."""

    def __init__(self, code: int, text: str, passed_over: tuple[tuple[str, str], ...] = ()):
        super().__init__(text)
        self.code = code
        self.text = text
        self.passed_over = passed_over


@dataclass(frozen=True)
class SkelSource:
    """Where a skel was found: a Python class or a native library, plus a description, and the
    candidates before it that were passed over (path or plugin, reason)."""

    origin: str                       # "builtin", "plugin:<dist>", or the file path
    skel: type[Skeleton] | None = None
    native: object | None = None      # ctypes function pointer
    passed_over: tuple[tuple[str, str], ...] = ()


def _search_dirs(env: Mapping[str, str], domain: str) -> list[str]:
    user = env.get("DSP_LIBRARY_PATH")
    if user is None:
        user = env.get("ADSP_LIBRARY_PATH", "")
    out: list[str] = []
    for entry in (user + ";" + DEFAULT_SEARCH_PATH).split(";"):
        base = entry or os.getcwd()
        for d in (os.path.join(base, domain), base):
            if d not in out:
                out.append(d)
    return out


# -- ELF: which shared objects this host can load ------------------------------------------------
_EM_QDSP6 = 164
_ELF_IDENT = struct.Struct("<4sBB")       # magic, EI_CLASS, EI_DATA
_host_elf: tuple[int, int, int] | None = None


def _elf_header(path: str) -> tuple[int, int, int] | None:
    """(EI_CLASS, EI_DATA, e_machine) of an ELF file, None if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    _, klass, data = _ELF_IDENT.unpack_from(head)
    machine = struct.unpack_from("<H" if data == 1 else ">H", head, 18)[0]
    return klass, data, machine


def _host() -> tuple[int, int, int] | None:
    global _host_elf
    if _host_elf is None:
        _host_elf = _elf_header("/proc/self/exe") or _elf_header(sys.executable) or (0, 0, 0)
    return _host_elf if _host_elf[0] else None


def _not_for_this_host(path: str) -> str:
    """Why the ELF at ``path`` cannot be loaded here ("" if it may be, or is not an ELF: then
    dlopen says why)."""
    got, host = _elf_header(path), _host()
    if got is None or host is None or got == host:
        return ""
    klass, data, machine = got
    if machine == _EM_QDSP6:
        what = f"a Hexagon (EM_QDSP6) ELF{32 if klass == 1 else 64}, built for a real DSP"
    else:
        what = (f"an ELF{32 if klass == 1 else 64} {'big' if data == 2 else 'little'}-endian object "
                f"for machine {machine}")
    return (f"{path}: {what}; this host runs ELF{32 if host[0] == 1 else 64} objects for machine {host[2]}: "
            "passed over")


class Loader:
    """Resolves :class:`ModuleUri` to a :class:`SkelSource`; caches loaded files like dlopen.

    Loaded Python skel files are cached by (path, mtime, size) and native libraries by path;
    like ``dlclose`` on a real DSP that keeps other references, they stay loaded for the life
    of the emulator (ctypes cannot unload safely).
    """

    def __init__(self, domain: str, builtins: Mapping[str, type[Skeleton]],
                 env: Mapping[str, str] | None = None):
        self.domain = domain
        self._builtins = builtins
        self._env = env
        # Protects _py_cache and _so_cache.
        self._lock = threading.Lock()
        self._py_cache: dict[tuple, type[Skeleton]] = {}
        self._so_cache: dict[str, ctypes.CDLL] = {}

    def resolve(self, uri: ModuleUri) -> SkelSource:
        base = uri.file.rsplit("/", 1)[-1]
        env = self._env if self._env is not None else os.environ
        stem = base[:-3] if base.endswith(".so") else base
        try:
            _check_relative(uri.raw, uri.file)  # a ModuleUri built by hand skips parse_uri
        except ValueError as exc:
            raise LoadError(aee.ERR_BAD_URI, f"bad module URI: {exc}") from None
        escaped: list[str] = []
        passed: list[tuple[str, str]] = []
        for d in _search_dirs(env, self.domain):
            # Files are loaded by their resolved path, so a symlink swapped after the check
            # cannot redirect the load out of the search path.
            py = os.path.join(d, os.path.dirname(uri.file), stem + ".py")
            if os.path.isfile(py):
                real = _resolve_inside(py, d)
                if real is None:
                    escaped.append(py)
                else:
                    try:
                        cls = self._load_py(real, base)
                    except LoadError as exc:
                        passed.append((py, exc.text))
                    else:
                        return self._check_symbol(SkelSource(py, skel=cls, passed_over=tuple(passed)), uri, base)
            so = os.path.join(d, uri.file)
            if os.path.isfile(so):
                real = _resolve_inside(so, d)
                if real is None:
                    escaped.append(so)
                    continue
                why = _not_for_this_host(real)
                if why:
                    passed.append((so, why))
                    continue
                try:
                    lib = self._load_so(real)
                except LoadError as exc:
                    passed.append((so, exc.text))
                    continue
                return SkelSource(so, native=self._symbol(lib, real, uri.symbol, tuple(passed)),
                                  passed_over=tuple(passed))
        src = self._from_plugins(base, passed)
        if src is None:
            cls = self._builtins.get(base)
            if cls is not None:
                src = SkelSource("builtin", skel=cls)
        if src is not None:
            if passed:
                src = SkelSource(src.origin, skel=src.skel, passed_over=tuple(passed))
            return self._check_symbol(src, uri, base)
        notes = tuple(passed)
        if passed:
            more = f" ({len(passed) - 1} more candidate(s) passed over)" if len(passed) > 1 else ""
            raise LoadError(aee.ERR_MOD_UNLOADABLE, passed[0][1] + more, notes)
        if escaped:
            raise LoadError(aee.ERR_MOD_NOT_FOUND, f"{uri.file}: cannot open shared object file: "
                            f"outside the DSP library search path ({escaped[0]} -> "
                            f"{os.path.realpath(escaped[0])})")
        raise LoadError(aee.ERR_MOD_NOT_FOUND, f"{uri.file}: cannot open shared object file: "
                        "No such file or directory")

    @staticmethod
    def _check_symbol(src: SkelSource, uri: ModuleUri, base: str) -> SkelSource:
        assert src.skel is not None
        if uri.symbol not in src.skel.exported_symbols(base):
            raise LoadError(aee.ERR_SYM_NOT_FOUND, f"{base}: undefined symbol: {uri.symbol}", src.passed_over)
        return src

    def _from_plugins(self, base: str, passed: list[tuple[str, str]]) -> SkelSource | None:
        for ep in _plugin_entry_points():
            if ep.name != base:
                continue
            dist = getattr(ep.dist, "name", None) or ep.value
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin is passed over, not an emulator crash
                passed.append((f"plugin:{dist}", f"{base}: plugin {ep.value} failed to load: {exc!r}"))
                continue
            if not (isinstance(obj, type) and issubclass(obj, Skeleton)):
                passed.append((f"plugin:{dist}", f"{base}: plugin {ep.value} is not a Skeleton subclass"))
                continue
            return SkelSource(f"plugin:{dist}", skel=obj)
        return None

    def _load_py(self, path: str, base: str) -> type[Skeleton]:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._py_cache.get(key)
        if cached is not None:
            return cached
        modname = "qda_core.dsp._skelfile_" + hashlib.sha1(repr(key).encode()).hexdigest()[:16]
        try:
            spec = importlib.util.spec_from_file_location(modname, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {path}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod  # dataclasses and pickling look the module up here
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[modname]
                raise
        except Exception as exc:
            raise LoadError(aee.ERR_MOD_UNLOADABLE, f"{path}: {exc!r}") from exc
        cls = getattr(mod, "SKEL", None)
        if cls is None:
            found = [v for v in vars(mod).values() if isinstance(v, type)
                     and issubclass(v, Skeleton) and v.__module__ == modname]
            if len(found) != 1:
                raise LoadError(aee.ERR_MOD_UNLOADABLE,
                                f"{path}: defines {len(found)} Skeleton subclasses and no SKEL")
            cls = found[0]
        if not (isinstance(cls, type) and issubclass(cls, Skeleton)):
            raise LoadError(aee.ERR_MOD_UNLOADABLE, f"{path}: SKEL is not a Skeleton subclass")
        if not cls.skel_name:
            cls.skel_name = base
        with self._lock:
            self._py_cache[key] = cls
        return cls

    def _load_so(self, path: str) -> ctypes.CDLL:
        """dlopen ``path`` (once), after the DSP runtime whose HAP_* symbols it may need."""
        with self._lock:
            lib = self._so_cache.get(path)
        if lib is not None:
            return lib
        try:
            dsprt.load()  # RTLD_GLOBAL, before any skel: the DSP image's symbols
        except dsprt.RuntimeMissing as exc:
            raise LoadError(aee.ERR_MOD_UNLOADABLE, f"{path}: {exc}") from exc
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as exc:  # not a shared object, missing dependencies, undefined symbols
            raise LoadError(aee.ERR_MOD_UNLOADABLE, str(exc)) from exc
        with self._lock:
            return self._so_cache.setdefault(path, lib)

    @staticmethod
    def _symbol(lib: ctypes.CDLL, path: str, symbol: str, passed: tuple[tuple[str, str], ...]):
        try:
            return getattr(lib, symbol)
        except AttributeError as exc:
            raise LoadError(aee.ERR_SYM_NOT_FOUND,
                            f"{os.path.basename(path)}: undefined symbol: {symbol}", passed) from exc


# -- plugins: the entry-point scan is cached while sys.path and its directories are unchanged --
_ep_lock = threading.Lock()  # protects _ep_cache
_ep_cache: tuple[tuple, tuple] | None = None


def _plugin_entry_points() -> tuple:
    """The ``qdarpc.skels`` entry points. Scanning every installed distribution costs about a
    millisecond, and every module open asks now that plugins come before the built-ins; the scan
    is redone when ``sys.path`` or the modification time of one of its directories changes."""
    global _ep_cache
    key = []
    for p in sys.path:
        try:
            key.append((p, os.stat(p or ".").st_mtime_ns))
        except OSError:
            key.append((p, None))
    key_t = tuple(key)
    cached = _ep_cache
    if cached is not None and cached[0] == key_t:
        return cached[1]
    eps = tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    with _ep_lock:
        _ep_cache = (key_t, eps)
    return eps
