"""The SDK headers a porter compiles against (csrc/include: remote.h, remote64.h, rpcmem.h,
AEEStdErr.h, AEEStdDef.h) agree with the Python package, and SDK-style code builds on them.

* Every value the headers define (macros and enumerators) is compiled, printed and compared with
  ``libadsprpc_compat`` (constants.py, the AEE table of ``qda_core._abi``); a name with no Python
  counterpart must be listed in :data:`C_ONLY` with its reason and its upstream value, and every
  public constant of constants.py must be in the headers.
* Every struct of constants.py has the C layout (size, field offsets and sizes).
* AEE codes: bare on the CPU, DSP form under ``__hexagon__`` (docs/spec/legacy_fastrpc_api.md §5.1).
* The functions the headers declare are exactly ``LEGACY_FUNCTIONS``, with upstream's C types.
* An SDK-style app and a qaic-style stub (tests/c) build as strict C99 and as C++.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import libadsprpc_compat as rpc
from libadsprpc_compat import constants as pyc
from libadsprpc_compat.library import ITRANSPORT_PREFIX
from qda_core._ext import load

abi = load("_abi")

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "csrc" / "include"
CDIR = Path(__file__).resolve().parent / "c"
CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")

pytestmark = [pytest.mark.needs_cc, pytest.mark.skipif(CC is None, reason="no C compiler")]

HEADERS = ("remote.h", "remote64.h", "rpcmem.h", "AEEStdErr.h", "AEEStdDef.h")
C99 = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CXXFLAGS = ["-x", "c++", "-Wall", "-Wextra", "-Werror"]

# Names the headers define that Python has no counterpart for: name -> (reason, upstream value or
# None when it is not a value). The value pins the upstream fact.
C_ONLY: dict[str, tuple[str, object]] = {
    # include guards and aee_err.h internals
    **{g: ("include guard", None) for g in (
        "REMOTE_H", "REMOTE64_H", "RPCMEM_H", "AEESTDERR_H", "AEESTDDEF_H", "QDARPC_REMOTE_ABI_H",
        "QDARPC_AEE_ERR_H")},
    **{f: ("row flag of aee_err.h's QDA_AEE_CODES list", None) for f in (
        "QDA_AEE_HLOS", "QDA_AEE_DSP", "QDA_AEE_NOOFF", "QDA_AEE_ALIASED", "QDA_AEE_BOTH", "QDA_AEE_FIXED",
        "QDA_AEE_ALIAS")},
    "QDA_AEE_CODES": ("the X-macro list itself; its rows are checked by test_aee_codes_cpu/_dsp", None),
    # qaic decorations: not values
    **{q: ("qaic decoration macro, empty or a type", None) for q in (
        "__QAIC_REMOTE", "__QAIC_REMOTE_EXPORT", "__QAIC_REMOTE_ATTRIBUTE", "__QAIC_RETURN", "__QAIC_IN",
        "__QAIC_IN_CHAR", "__QAIC_IN_LEN", "__QAIC_OUT", "__QAIC_INT64PTR")},
    # AEEStdDef.h basics
    **{d: ("type guard shared with comdef.h-style headers", None) for d in (
        "_BOOLEAN_DEFINED", "_UINT64_DEFINED", "_UINT32_DEFINED", "_UINT16_DEFINED", "_UINT8_DEFINED",
        "_INT64_DEFINED", "_INT32_DEFINED", "_INT16_DEFINED", "_INT8_DEFINED", "_BYTE_DEFINED",
        "_AEEUID_DEFINED", "_AEEIID_DEFINED", "_AEECLSID_DEFINED", "_AEEPRIVID_DEFINED", "_AECHAR_DEFINED",
        "_AEERESULT_DEFINED", "__QIDL_WCHAR_T_DEFINED__", "__QIDL_STRING_OBJECT_DEFINED__", "__STRING_OBJECT__")},
    "CDECL": ("calling-convention marker, empty off Windows", None),
    "__STR__": ("stringizing helper", None),
    "__TOSTR__": ("stringizing helper", None),
    "__FILE_LINE__": ("\"file:line\" string of the use site", None),
    "TRUE": ("C boolean for the legacy boolean type", 1),
    "FALSE": ("C boolean for the legacy boolean type", 0),
    "MIN_AECHAR": ("AECHAR range", 0),
    "MAX_AECHAR": ("AECHAR range", 65535),
    # AEEStdErr.h
    "AEE_EOFFSET": ("0 on the CPU; DSP_AEE_EOFFSET in a __hexagon__ build (test_aee_codes_dsp)", 0),
    "KERNEL_ERRNO_START": ("bound of upstream's result check; Python converts with errno_to_aee", -1024),
    # remote.h
    "FASTRPC_WAKELOCK_CONTROL_SUPPORTED": ("feature-test macro for apps", 1),
    "DOMAIN_ID_MASK": ("domain of an effective domain id; Python spells it `eff & 7`", pyc.NUM_DOMAINS - 1),
    **{n: ("upstream-internal remote_handle_control request; the library refuses it", v) for v, n in enumerate((
        "DSPRPC_SMMU_SUPPORT", "DSPRPC_KALLOC_SUPPORT", "DSPRPC_PM", "DSPRPC_RPC_POLL", "DSPRPC_ASYNC_WAKE",
        "DSPRPC_NOTIF_WAKE", "DSPRPC_REMOTE_PROCESS_KILL", "DSPRPC_SET_MODE"), start=7)},
    **{f"FASTRPC_MAP_RESERVED_{n}": ("reserved fastrpc_mmap flag", n) for n in range(4, 16)},
    "PROCESS_TYPE_SIGNED": ("value FASTRPC_REMOTE_PROCESS_TYPE stores; Python stores the int", 0),
    "PROCESS_TYPE_UNSIGNED": ("value FASTRPC_REMOTE_PROCESS_TYPE stores; Python stores the int", 1),
    **{n: ("status a notification callback gets; the library refuses FASTRPC_REGISTER_STATUS_NOTIFICATIONS", v)
       for v, n in enumerate(("FASTRPC_USER_PD_UP", "FASTRPC_USER_PD_EXIT", "FASTRPC_USER_PD_FORCE_KILL",
                              "FASTRPC_USER_PD_EXCEPTION", "FASTRPC_DSP_SSR"))},
    # rpcmem.h
    "RPCMEM_HEAP_ID_SYSTEM_CONTIG": ("older SDK heap id; the library ignores heap ids", 21),
    "ION_SECURE_FLAGS": ("ION's flags, deprecated upstream", (1 << 31) | (1 << 19)),
}

# Python names that are not constants of one C name, and where they are checked instead.
PY_ONLY = {
    "DOMAIN_NAMES": "the *_DOMAIN_NAME macros, one per id",
    "HANDLE_CONTROL_STRUCTS": "request ids and structs, each checked on its own",
    "SESSION_CONTROL_STRUCTS": "request ids and structs, each checked on its own",
}


def _python_value(name: str):
    """The Python value of a C constant, or KeyError."""
    if name.endswith("_DOMAIN_NAME"):
        return pyc.DOMAIN_NAMES[getattr(pyc, name.replace("_NAME", "_ID"))]
    special = {
        "ITRANSPORT_PREFIX": ITRANSPORT_PREFIX,
        "DSP_AEE_EOFFSET": abi.DSP_AEE_EOFFSET,
        "QDA_AEE_CODE_MAX": abi.AEE_CODE_MAX,
        "HLOS_ERR_END": abi.AEE_CODE_MAX,
        "REMOTE_SCALARS_MAX_LENGTH": rpc.REMOTE_SCALARS_LENGTH(0xFFFF_FFFF),
    }
    if name in special:
        return special[name]
    if hasattr(pyc, name):
        return getattr(pyc, name)
    if name in pyc.fastrpc_map_flags.__members__:
        return pyc.fastrpc_map_flags[name]
    raise KeyError(name)


# --- compiling --------------------------------------------------------------------------------
def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _build_and_run(tmp_path: Path, name: str, source: str, *flags: str) -> str:
    src, exe = tmp_path / f"{name}.c", tmp_path / name
    src.write_text(source)
    _run([CC, *C99, *flags, "-I", INCLUDE, str(src), "-o", str(exe)])
    return _run([str(exe)])


def _includes() -> str:
    return "".join(f'#include "{h}"\n' for h in HEADERS)


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def header_macros(tmp_path: Path) -> dict[str, tuple[str | None, str]]:
    """Every macro the headers define: name -> (parameter list or None, body)."""
    def defined(text: str) -> dict[str, tuple[str | None, str]]:
        src = tmp_path / "macros.c"
        src.write_text(text)
        out = _run([CC, *C99, "-dM", "-E", "-I", INCLUDE, str(src)])
        macros = {}
        for line in out.splitlines():
            m = re.match(r"#define (\w+)(\([^)]*\))? ?(.*)", line)
            macros[m[1]] = (m[2], m[3])
        return macros
    base = defined("#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <sys/types.h>\n")
    ours = defined(_includes())
    return {n: v for n, v in ours.items() if n not in base}


def header_enumerators() -> list[str]:
    """The enumerators written in remote.h and rpcmem.h (AEEStdErr.h's are generated)."""
    names = []
    for h in ("remote.h", "rpcmem.h"):
        for body in re.findall(r"\benum\b\s*\w*\s*\{([^}]*)\}", _strip_comments((INCLUDE / h).read_text())):
            names += [re.match(r"\s*(\w+)", item)[1] for item in body.split(",") if item.strip()]
    return names


def _c_string(value: str) -> str:
    return value.encode().hex()


# --- constants --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c_values(tmp_path_factory):
    """Every value the headers define, as compiled: name -> int or str; plus the function-like
    macros (name -> None)."""
    tmp = tmp_path_factory.mktemp("consts")
    macros = header_macros(tmp)
    values = {n for n, (params, body) in macros.items()
              if params is None and body and C_ONLY.get(n, ("", 0))[1] is not None}
    values |= set(header_enumerators())
    lines = []
    for n in sorted(values):
        if macros.get(n, (None, ""))[1].startswith('"'):
            lines.append(f'\tstr("{n}", {n});')
        else:
            lines.append(f'\tprintf("%s\\ti\\t%lld\\n", "{n}", (long long)({n}));')
    src = _includes() + "#include <stdio.h>\n" + r"""
static void str(const char *name, const char *v)
{
	printf("%s\ts\t", name);
	for (; *v; v++)
		printf("%02x", (unsigned char)*v);
	putchar('\n');
}

int main(void)
{
""" + "\n".join(lines) + "\n\treturn 0;\n}\n"
    out = _build_and_run(tmp, "consts", src)
    got: dict[str, object] = dict.fromkeys(macros)  # function-like and non-value macros stay None
    for line in out.splitlines():
        name, kind, value = line.split("\t")
        got[name] = int(value) if kind == "i" else bytes.fromhex(value).decode()
    return got


def test_every_header_value_equals_python_or_is_listed(c_values):
    unlisted, wrong = [], []
    for name, value in sorted(c_values.items()):
        if name in C_ONLY:
            expected = C_ONLY[name][1]
            if expected is not None and value != expected:
                wrong.append(f"{name}: C {value!r}, upstream {expected!r}")
            continue
        if name in rpc.LEGACY_FUNCTIONS:  # REMOTE_SCALARS_* (test_scalars_macros)
            continue
        try:
            py = _python_value(name)
        except KeyError:
            unlisted.append(name)
            continue
        if value != py:
            wrong.append(f"{name}: C {value!r}, Python {py!r}")
    assert not unlisted, f"header names with no Python counterpart (add to Python or to C_ONLY): {unlisted}"
    assert not wrong, "\n".join(wrong)


def test_every_python_constant_is_in_the_headers(c_values):
    names = {n for n in dir(pyc) if n.isupper() and not n.startswith("_")}
    assert names - PY_ONLY.keys() - c_values.keys() == set()
    assert set(pyc.fastrpc_map_flags.__members__) <= c_values.keys()
    for n in pyc.fastrpc_map_flags.__members__:
        assert c_values[n] == pyc.fastrpc_map_flags[n]
    for dom_id, dom_name in pyc.DOMAIN_NAMES.items():
        assert (c_values[f"{dom_name.upper()}_DOMAIN_ID"], c_values[f"{dom_name.upper()}_DOMAIN_NAME"]) == \
            (dom_id, dom_name)
    for table in (pyc.HANDLE_CONTROL_STRUCTS, pyc.SESSION_CONTROL_STRUCTS):
        assert {st.__name__ for st in table.values()} <= STRUCT_TYPES.keys()


def test_c_only_names_are_still_in_the_headers(c_values):
    """A name dropped from the headers must leave C_ONLY too."""
    assert C_ONLY.keys() <= c_values.keys()


# --- structs ----------------------------------------------------------------------------------
#: Python struct -> its C spelling (a few exist only as typedefs of anonymous structs).
STRUCT_TYPES = {
    name: {"remote_dma_handle": "remote_dma_handle",
           "remote_rpc_process_exception": "remote_rpc_process_exception"}.get(name, f"struct {name}")
    for name, obj in vars(pyc).items()
    if isinstance(obj, type) and issubclass(obj, ctypes.Structure)
}
#: Typedef names upstream gives these structs; they must name the same type.
ALIASES = {
    "fastrpc_capability": "struct remote_dsp_capability",
    "remote_rpc_get_domain_t": "struct remote_rpc_get_domain",
    "remote_rpc_notif_register_t": "struct remote_rpc_notif_register",
    "remote_rpc_reserve_new_session_t": "struct remote_rpc_reserve_new_session",
    "remote_rpc_effective_domain_id_t": "struct remote_rpc_effective_domain_id",
    "remote_rpc_get_uri_t": "struct remote_rpc_get_uri",
    "fastrpc_context_create": "struct fastrpc_context_create",
    "fastrpc_context_destroy": "struct fastrpc_context_destroy",
    "remote_rpc_process_exception": "struct remote_rpc_process_clean_params",
    "domain_t": "struct domain",
    "domain": "struct domain",
}
#: Types with no Python struct: LP64 sizes (docs/spec/legacy_fastrpc_api.md §2.1; AEEStdDef.h).
C_ONLY_SIZES = {
    "remote_buf": abi.sizeof_remote_buf, "remote_arg": abi.sizeof_remote_arg, "remote_handle": 4,
    "remote_handle64": 8, "remote_buf64": 16, "remote_dma_handle64": 12, "remote_arg64": 16, "domain_t": 16,
    "fastrpc_notif_fn_t": 8, "enum fastrpc_map_flags": 4,
    "boolean": 1, "uint8": 1, "int8": 1, "byte": 1, "uint16": 2, "int16": 2, "uint32": 4, "int32": 4,
    "uint64": 8, "int64": 8, "AEEResult": 4, "AEEUID": 4, "AEEIID": 4, "AEECLSID": 4, "AEEPRIVID": 4,
    "AECHAR": 2, "_wchar_t": 2, "_cstring_t": 16, "_wstring_t": 16,
}


@pytest.fixture(scope="module")
def c_layouts(tmp_path_factory):
    lines = []
    for name, ctype in STRUCT_TYPES.items():
        lines.append(f'\tprintf("%s\\t\\t%zu\\t%zu\\n", "{name}", sizeof({ctype}), sizeof({ctype}));')
        for field, _ in getattr(pyc, name)._fields_:
            lines.append(f'\tprintf("%s\\t%s\\t%zu\\t%zu\\n", "{name}", "{field}", offsetof({ctype}, {field}), '
                         f'sizeof(((({ctype} *)0)->{field})));')
    for ctype in C_ONLY_SIZES:
        lines.append(f'\tprintf("%s\\t\\t%zu\\t%zu\\n", "{ctype}", sizeof({ctype}), sizeof({ctype}));')
    for field in ("pv", "nLen"):
        lines.append(f'\tprintf("remote_buf\\t{field}\\t%zu\\t%zu\\n", offsetof(remote_buf, {field}), '
                     f'sizeof(((remote_buf *)0)->{field}));')
    src = _includes() + "#include <stddef.h>\n#include <stdio.h>\nint main(void)\n{\n" + "\n".join(lines) + \
        "\n\treturn 0;\n}\n"
    out = _build_and_run(tmp_path_factory.mktemp("layouts"), "layouts", src)
    got = {}
    for line in out.splitlines():
        name, field, off, size = line.split("\t")
        got[(name, field)] = (int(off), int(size))
    return got


@pytest.mark.parametrize("name", sorted(STRUCT_TYPES))
def test_struct_layout(c_layouts, name):
    st = getattr(pyc, name)
    assert c_layouts[(name, "")][1] == ctypes.sizeof(st)
    for field, _ in st._fields_:
        desc = getattr(st, field)
        assert c_layouts[(name, field)] == (desc.offset, desc.size), field


def test_c_only_type_sizes(c_layouts):
    assert {t: c_layouts[(t, "")][1] for t in C_ONLY_SIZES} == C_ONLY_SIZES
    assert {f: c_layouts[("remote_buf", f)][0] for f in ("pv", "nLen")} == abi.OFFSETOF["remote_buf"]


# --- functions --------------------------------------------------------------------------------
#: Upstream's C type of every function the headers declare (qualcomm/fastrpc remote.h, rpcmem.h;
#: remote_set_mode from the SDK's remote.h).
SIGNATURES = {
    "remote_handle_open": "int (*)(const char *, remote_handle *)",
    "remote_handle64_open": "int (*)(const char *, remote_handle64 *)",
    "remote_handle_invoke": "int (*)(remote_handle, uint32_t, remote_arg *)",
    "remote_handle64_invoke": "int (*)(remote_handle64, uint32_t, remote_arg *)",
    "remote_handle_close": "int (*)(remote_handle)",
    "remote_handle64_close": "int (*)(remote_handle64)",
    "remote_handle_control": "int (*)(uint32_t, void *, uint32_t)",
    "remote_handle64_control": "int (*)(remote_handle64, uint32_t, void *, uint32_t)",
    "remote_session_control": "int (*)(uint32_t, void *, uint32_t)",
    "remote_mmap": "int (*)(int, uint32_t, uint32_t, int, uint32_t *)",
    "remote_munmap": "int (*)(uint32_t, int)",
    "remote_mem_map": "int (*)(int, int, int, uint64_t, size_t, uint64_t *)",
    "remote_mem_unmap": "int (*)(int, uint64_t, size_t)",
    "remote_mmap64": "int (*)(int, uint32_t, uint64_t, int64_t, uint64_t *)",
    "remote_munmap64": "int (*)(uint64_t, int64_t)",
    "fastrpc_mmap": "int (*)(int, int, void *, int, size_t, enum fastrpc_map_flags)",
    "fastrpc_munmap": "int (*)(int, int, void *, size_t)",
    "remote_register_buf": "void (*)(void *, int, int)",
    "remote_register_buf_attr": "void (*)(void *, int, int, int)",
    "remote_register_dma_handle": "int (*)(int, uint32_t)",
    "remote_register_dma_handle_attr": "int (*)(int, uint32_t, uint32_t)",
    "remote_set_mode": "int (*)(uint32_t)",
    "rpcmem_init": "void (*)(void)",
    "rpcmem_deinit": "void (*)(void)",
    "rpcmem_alloc": "void *(*)(int, uint32_t, int)",
    "rpcmem_alloc2": "void *(*)(int, uint32_t, size_t)",
    "rpcmem_free": "void (*)(void *)",
    "rpcmem_to_fd": "int (*)(void *)",
}
#: Declared but not library functions: static inline helpers of the headers.
C_ONLY_FUNCTIONS = {"rpcmem_alloc_def": "static inline rpcmem_alloc(RPCMEM_HEAP_ID_SYSTEM, RPCMEM_DEFAULT_FLAGS, size)"}


def declared_functions() -> set[str]:
    remote = _strip_comments((INCLUDE / "remote.h").read_text())
    rpcmem = _strip_comments((INCLUDE / "rpcmem.h").read_text())
    return set(re.findall(r"\b__QAIC_REMOTE\((\w+)\)\s*\(", remote)) | \
        set(re.findall(r"^[\w ]*?\**\s*\b(rpcmem_\w+)\s*\(", rpcmem, re.M))


def test_declared_functions_are_the_legacy_api(c_values):
    declared = declared_functions() - C_ONLY_FUNCTIONS.keys()
    scalars = {n for n, v in c_values.items() if n.startswith("REMOTE_SCALARS_") and v is None}
    assert declared | scalars == set(rpc.LEGACY_FUNCTIONS)
    assert declared == SIGNATURES.keys()


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_functions_have_upstream_types(tmp_path, lang):
    """Assigning each function to a pointer of upstream's type fails to compile on any mismatch;
    upstream's typedef names must name the same struct types."""
    fields = "".join(f"\t{sig.replace('(*)', f'(*{n})')};\n" for n, sig in SIGNATURES.items())
    inits = ",\n".join(f"\t{n}" for n in SIGNATURES)
    aliases = "".join(f"\t{ctype} *{re.sub(r'[^a-z0-9_]', '_', alias)}_;\n" for alias, ctype in ALIASES.items())
    alias_inits = ", ".join(f"({alias} *)0" for alias in ALIASES)
    src = _includes() + f"struct api {{\n{fields}}};\nextern const struct api qdarpc_api;\n" \
        f"const struct api qdarpc_api = {{\n{inits}\n}};\n" \
        f"struct aliases {{\n{aliases}}};\nextern const struct aliases qdarpc_aliases;\n" \
        f"const struct aliases qdarpc_aliases = {{ {alias_inits} }};\n"
    path = tmp_path / "api.c"
    path.write_text(src)
    if lang == "c":
        _run([CC, *C99, "-I", INCLUDE, "-c", str(path), "-o", str(tmp_path / "api.o")])
    else:
        if CXX is None:
            pytest.skip("no C++ compiler")
        _run([CXX, *CXXFLAGS, "-I", INCLUDE, "-c", str(path), "-o", str(tmp_path / "api.o")])


def test_scalars_macros(tmp_path):
    cases = [(0, 2, 2, 1, 0, 0), (5, 0x1F, 0xFF, 0xFF, 0xF, 0xF), (7, 31, 1, 2, 3, 4), (8, 32, 256, 256, 16, 16)]
    scs = [0x0A123456 | (5 << 29), 0xFFFFFFFF, 0x02020100, 0]
    lines = [f'\tprintf("%lu\\n", (unsigned long)REMOTE_SCALARS_MAKEX({", ".join(map(str, c))}));' for c in cases]
    lines += [f'\tprintf("%lu\\n", (unsigned long)REMOTE_SCALARS_MAKE({m}, {i}, {o}));' for _, m, i, o, _, _ in cases]
    parts = ("METHOD_ATTR", "METHOD", "INBUFS", "OUTBUFS", "INHANDLES", "OUTHANDLES", "LENGTH")
    lines += [f'\tprintf("%lu\\n", (unsigned long)REMOTE_SCALARS_{p}({sc}u));' for sc in scs for p in parts]
    out = _build_and_run(tmp_path, "scalars", '#include "remote.h"\n#include <stdio.h>\nint main(void)\n{\n'
                         + "\n".join(lines) + "\n\treturn 0;\n}\n")
    want = [rpc.REMOTE_SCALARS_MAKEX(*c) for c in cases] + [rpc.REMOTE_SCALARS_MAKE(m, i, o) for _, m, i, o, _, _ in cases]
    want += [getattr(rpc, f"REMOTE_SCALARS_{p}")(sc) for sc in scs for p in parts]
    assert [int(v) for v in out.split()] == want


# --- AEE codes --------------------------------------------------------------------------------
_AEE_PROGRAM = _includes() + "#include <stdio.h>\n" + r"""
#define P(name, value, flags) printf("%s\t%lld\t%lld\t%u\n", #name, (long long)(name), (long long)(value), \
                                     (unsigned)(flags));
#define ROW(name, value, flags, desc) PICK_##flags(name, value, flags)
#define PICK_QDA_AEE_FIXED P
#define PICK_QDA_AEE_BOTH P
#define PICK_QDA_AEE_ALIAS P
#ifdef __hexagon__
#define PICK_QDA_AEE_DSP P
#define PICK_QDA_AEE_HLOS(name, value, flags) printf("%s\tabsent\n", #name);
#else
#define PICK_QDA_AEE_HLOS P
#define PICK_QDA_AEE_DSP P
#endif

int main(void)
{
	QDA_AEE_CODES(ROW)
	printf("AEE_EOFFSET\t%lld\n", (long long)AEE_EOFFSET);
	return 0;
}
"""


def _aee_rows(out: str):
    rows, absent, offset = {}, set(), None
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "AEE_EOFFSET":
            offset = int(parts[1])
        elif parts[1] == "absent":
            absent.add(parts[0])
        else:
            rows[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return rows, absent, offset


def test_aee_codes_cpu(tmp_path):
    rows, absent, offset = _aee_rows(_build_and_run(tmp_path, "aee", _AEE_PROGRAM))
    table = {name: value for name, value, _desc in abi.AEE_TABLE}
    assert offset == 0 and not absent
    assert {n: v for n, (v, _bare, _flags) in rows.items()} == table
    assert set(rpc.AEE_NAMES) <= rows.keys()
    assert all(getattr(rpc, n) == rows[n][0] for n in rpc.AEE_NAMES)


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_aee_codes_dsp(tmp_path, lang):
    """Under __hexagon__ every code but the no-offset four carries DSP_AEE_EOFFSET, and only the
    DSP-side names exist (docs/spec/legacy_fastrpc_api.md §5.1)."""
    if lang == "c":
        out = _build_and_run(tmp_path, "aee_dsp", _AEE_PROGRAM, "-D__hexagon__")
    else:
        if CXX is None:
            pytest.skip("no C++ compiler")
        (tmp_path / "aee.cpp").write_text(_AEE_PROGRAM)
        _run([CXX, *CXXFLAGS, "-D__hexagon__", "-I", INCLUDE, str(tmp_path / "aee.cpp"), "-o", str(tmp_path / "x")])
        out = _run([str(tmp_path / "x")])
    rows, absent, offset = _aee_rows(out)
    assert offset == abi.DSP_AEE_EOFFSET
    assert absent == {"AEE_ESMD_OFFSET", "AEE_ESMDBADPACKET", "AEE_ESMDALREADYOPEN", "AEE_ESMDOPENFAILED"}
    fixed = {n for n, (_v, _bare, flags) in rows.items() if flags & 0x4}
    assert fixed == {"AEE_SUCCESS", "AEE_EUNKNOWN", "AEE_ENOSUCH", "AEE_EINTERRUPTED", "AEE_ECONNRESET",
                     "AEE_EWOULDBLOCK"}
    for name, (value, bare, _flags) in rows.items():
        assert bare == getattr(abi, name)
        if name in fixed:
            assert value == bare and abi.aee_to_dsp(bare) & 0xFFFF_FFFF == bare & 0xFFFF_FFFF, name
        else:  # an int enumerator with the 32-bit pattern of upstream's unsigned macro
            assert value & 0xFFFF_FFFF == abi.DSP_AEE_EOFFSET + bare and value < 0, name
            assert abi.is_dsp_error(value), name
            assert getattr(abi, abi.aee_name(value)) == bare, name
    assert rows["AEE_EBADPARM"][0] & 0xFFFF_FFFF == 0x8000040E


# --- building SDK-style code ------------------------------------------------------------------
@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("mode", ["c99", "c++", "c99-hexagon", "c++-hexagon"])
def test_header_builds_alone(tmp_path, header, mode):
    src = tmp_path / "one.c"
    src.write_text(f'#include "{header}"\nint qdarpc_unused;\n')
    hexagon = ["-D__hexagon__"] if mode.endswith("hexagon") else []
    if mode.startswith("c++"):
        if CXX is None:
            pytest.skip("no C++ compiler")
        _run([CXX, *CXXFLAGS, "-pedantic", *hexagon, "-I", INCLUDE, "-c", str(src), "-o", str(tmp_path / "o")])
    else:
        _run([CC, *C99, *hexagon, "-I", INCLUDE, "-c", str(src), "-o", str(tmp_path / "o")])


@pytest.mark.parametrize("source", ["sdk_app.c", "qaic_stub.c"])
@pytest.mark.parametrize("lang", ["c", "c++"])
def test_sdk_code_builds(tmp_path, source, lang):
    args = ["-I", INCLUDE, "-I", CDIR, "-c", str(CDIR / source), "-o", str(tmp_path / "o")]
    if lang == "c":
        _run([CC, *C99, *args])
        return
    if CXX is None:
        pytest.skip("no C++ compiler")
    # qaic's `remote_arg _pra[n] = {0};` trips this in C++ whatever remote.h says.
    extra = ["-Wno-missing-field-initializers"] if source == "qaic_stub.c" else []
    _run([CXX, *CXXFLAGS, *extra, *args])
