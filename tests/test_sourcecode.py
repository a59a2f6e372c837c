"""Source-level checks: the one-way import layering of ARCHITECTURE.md, and csrc hygiene."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Lower rank = lower layer. A module may import its own layer or lower ones, never higher.
RANKS = [
    ("qda_core.dsp", 1),
    ("qda_core.rpmsg", 2),
    ("qda_core.fastrpc", 3),
    ("qda_core.mem", 4),
    ("qda_core.accel", 5),
    ("qda_core.legacy", 5),
    ("qda_core.soc", 6),
    ("qda_core.selftest", 6),
    ("qda_core.vfs", 6),  # node paths and fds of a process (the device shim): over the SoC
    ("qda_core", 0),  # leaves: uapi, wire, errors, marshal, uaccess, debug, extensions
    ("libadsprpc_compat", 7),
    ("qdarpc_cli", 8),
]
# Extra rules stated by ARCHITECTURE.md.
ONLY = {
    # the DSP sees only what crosses the transport
    "qda_core.dsp": {"qda_core.dsp", "qda_core.wire", "qda_core._cwire", "qda_core._cdev", "qda_core.errors", "qda_core.marshal",
                     "qda_core.marshal_ref", "qda_core._marshal", "qda_core._ext", "qda_core._iova",
                     "qda_core._abi", "qda_core.debug", "qda_core.trace",
                     # atomic operations on the lanes' C state (a header: no state of its own)
                     "qda_core._atomic",
                     # which data plane (native lanes or the Python reference): configuration
                     "qda_core.dataplane",
                     # fault rules are instrumentation, like the trace: no host state
                     "qda_core.faults"},
    # the transport is protocol-blind (its up flag and counters: a C state type of the leaf
    # _cdev, loaded through _ext)
    "qda_core.rpmsg": {"qda_core.errors", "qda_core._ext", "qda_core._cdev"},
}


def rank(mod: str) -> int:
    for prefix, r in RANKS:
        if mod == prefix or mod.startswith(prefix + "."):
            return r
    raise AssertionError(f"no layer for {mod}")


def modules():
    for pkg, top in (("qda_core", "qda_core"), ("libadsprpc_compat", "libadsprpc_compat"), ("cli", "qdarpc_cli")):
        for path in sorted([*(ROOT / pkg).rglob("*.py"), *(ROOT / pkg).rglob("*.pyx"), *(ROOT / pkg).rglob("*.pxd")]):
            rel = path.relative_to(ROOT / pkg).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([top, *parts]), path, path.name == "__init__.py"


#: Cython's import statements (``import``, ``from .. import``, ``cimport``, ``from .. cimport``),
#: a line each (the Cython modules wrap long name lists in parentheses on the same statement).
_CY_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+c?import[ \t]+(\([^)]*\)|[\w \t,]*)|c?import[ \t]+([\w.]+))",
                        re.M)


def cython_imports(mod: str, path: pathlib.Path):
    base = mod.split(".")[:-1]
    for m in _CY_IMPORT.finditer(path.read_text()):
        src, names, plain = m.groups()
        if plain:
            yield plain
            continue
        level = len(src) - len(src.lstrip("."))
        target = src.lstrip(".")
        if level:
            target = ".".join(base[: len(base) - level + 1] + ([target] if target else []))
        yield target
        for name in names.strip("()").replace("\n", " ").split(","):
            if name.strip():
                yield f"{target}.{name.strip().split()[0]}"


def imports(mod: str, path: pathlib.Path, is_pkg: bool):
    if path.suffix in (".pyx", ".pxd"):
        yield from cython_imports(mod, path)
        return
    tree = ast.parse(path.read_text())
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base[: len(base) - node.level + 1]
                target = ".".join(pkg + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            for a in node.names:  # "from . import wire" imports a submodule
                yield f"{target}.{a.name}"


OURS = ("qda_core", "libadsprpc_compat", "qdarpc_cli")


def our_module(name: str) -> str | None:
    if not name.startswith(OURS):
        return None
    # trim "from x import name" down to a module that exists
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        top = {"qdarpc_cli": "cli"}.get(parts[0], parts[0])
        rel = pathlib.Path(top, *parts[1:])
        if (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists() or \
                list((ROOT / rel.parent).glob(rel.name + ".*.so")) or (ROOT / rel).with_suffix(".pyx").exists() or \
                (ROOT / rel).with_suffix(".pxd").exists():
            return cand
        parts.pop()
    return None


CASES = [(m, p, pkg) for m, p, pkg in modules()]


@pytest.mark.parametrize("mod,path,is_pkg", CASES, ids=[c[0] for c in CASES])
def test_one_way_imports(mod, path, is_pkg):
    mine = rank(mod)
    for raw in imports(mod, path, is_pkg):
        target = our_module(raw)
        if target is None or target in (mod, "qda_core"):  # "from qda_core import x" is checked as qda_core.x
            continue
        if mod == "qda_core":  # the package facade imports lazily inside functions
            continue
        assert rank(target) <= mine, f"{mod} (layer {mine}) imports {target} (layer {rank(target)})"
        for prefix, allowed in ONLY.items():
            if mod == prefix or mod.startswith(prefix + "."):
                assert any(target == a or target.startswith(a + ".") for a in allowed), \
                    f"{mod} may not import {target}"


#: csrc/ files that may include Python.h: the C ABI bridge (docs/c_abi.md) starts or joins an
#: interpreter; it takes Python's types from it but calls its API only through a dlsym table.
PYTHON_H_ALLOWED = {"bridge/embed.h"}


def test_csrc_has_no_python_h():
    for path in (ROOT / "csrc").rglob("*.[ch]"):
        if str(path.relative_to(ROOT / "csrc")) in PYTHON_H_ALLOWED:
            continue
        assert not re.search(r"#\s*include\s*[<\"]Python\.h", path.read_text()), path


def test_ruff_clean():
    """pyflakes-level lint (unused imports/names, undefined names) over every Python file."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent))
    assert ruff, "ruff is a test dependency (pip install '.[test]')"
    out = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
