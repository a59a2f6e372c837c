"""What a new user meets first: the package metadata, LICENSE, the dev extra, the README's
commands and CI, comments that cite only documents in the repository, and the message Python
gives when the unbuilt source tree shadows the installed package."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()


def test_license():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "qdarpc authors" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
    assert PYPROJECT["project"]["license"] == {"text": "BSD-3-Clause"}
    assert re.search(r"^include .*\bLICENSE\b", (ROOT / "MANIFEST.in").read_text(), re.M)
    assert re.search(r"^\.venv/?$", (ROOT / ".gitignore").read_text(), re.M)


def test_every_package_is_listed():
    """A subpackage missing from [tool.setuptools] packages is silently left out of the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("qda_core", "qda_core"), ("libadsprpc_compat", "libadsprpc_compat"), ("cli", "qdarpc_cli")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]))
    assert found == listed
    assert "qdarpc_cli.benchmarks" in listed  # qdarpc bench works from an installed package


def test_dev_extra_installs_what_development_uses():
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in extras["dev"]}
    assert {"cython", "pybind11", "setuptools", "tox"} <= names and "qdarpc[test]" in extras["dev"]
    build = {re.split(r"[<>= ]", r)[0].lower() for r in PYPROJECT["build-system"]["requires"]}
    assert build <= names  # setup.py build_ext --inplace runs outside build isolation
    dev = README[README.index("## Development"):]
    assert ".[dev]" in dev and "build_ext --inplace" in dev and "tox -e asan" in dev and "qdarpc bench" in dev


def _blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_readme_prerequisites_and_first_commands():
    head = README[:README.index("## What `qdarpc selftest` shows")]
    assert "Python >= 3.11" in head and "build-essential python3-dev python3-venv" in head
    first, tests = _blocks(head)[:2]
    assert first.strip() == "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/qdarpc selftest"
    assert tests.strip() == "python3 -m venv .venv && .venv/bin/pip install -q '.[test]' && .venv/bin/pytest -q"
    # CI runs exactly the README's test command
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests.strip() in ci.splitlines()


# --- citations --------------------------------------------------------------------------------
CITING = ("qda_core", "libadsprpc_compat", "cli", "csrc", "bench")
SOURCE_EXTS = {".py", ".pyx", ".pxd", ".pyi", ".c", ".h", ".cpp", ".hpp"}


def _sources():
    for top in CITING:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in SOURCE_EXTS or "build" in path.relative_to(ROOT).parts:
                continue
            if path.suffix == ".c" and path.with_suffix(".pyx").exists():  # Cython output
                continue
            yield path


def test_comments_cite_documents_in_the_repo():
    sources = list(_sources())
    assert len(sources) > 50
    cited = set()
    for path in sources:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            assert "../shared" not in line, f"{where} cites a document outside the repository: {line.strip()}"
            if "§" in line:  # a section number names its document
                assert re.search(r"docs/spec/\w+\.md §", line), f"{where}: name the docs/spec file: {line.strip()}"
            for doc in re.findall(r"\b(docs/[\w/]+\.md)\b", line):
                assert (ROOT / doc).is_file(), f"{where} cites {doc}, which does not exist"
                cited.add(doc)
    assert {"docs/spec/legacy_fastrpc_api.md", "docs/spec/qda_accel_uapi.md"} <= cited


# --- running Python inside an unbuilt checkout ------------------------------------------------
@pytest.fixture
def unbuilt_checkout(tmp_path):
    """A source checkout with qda_core's Python files and no built extension."""
    tree = tmp_path / "checkout"
    shutil.copytree(ROOT / "qda_core", tree / "qda_core",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.pyx", "*.pxd"))
    (tree / "csrc").mkdir()
    (tree / "setup.py").write_text("")
    return tree


def _python_in(tree, *args, env=None):
    # PYTHONSAFEPATH (set by conftest) dropped: these children must see the cwd as a user's would.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QDARPC_TRACE", "PYTHONSAFEPATH")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tree,
                          env={**clean, **(env or {})}, timeout=60)


def test_unbuilt_checkout_message_names_the_trap(unbuilt_checkout):
    # -S: no site-packages, so nothing else provides qda_core (an editable install would)
    res = _python_in(unbuilt_checkout, "-S", "-c", "import qda_core._ext as e; e.load('_abi')")
    err = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and err.startswith("ImportError: cannot import qda_core._abi:")
    assert f"source checkout at {unbuilt_checkout}" in err and "not built" in err
    assert "run Python from outside the checkout" in err and "`pip install -e .`" in err
    assert "rebuild it with `pip install .`" not in err  # not the advice to repeat what was just done


def test_unbuilt_checkout_shadowing_an_install(unbuilt_checkout, tmp_path):
    installed = tmp_path / "site" / "qda_core"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    res = _python_in(unbuilt_checkout, "-S", "-c", "import qda_core._ext as e; e.load('_marshal')",
                     env={"PYTHONPATH": str(tmp_path / "site")})
    err = res.stderr.strip().splitlines()[-1]
    assert f"imported qda_core from the source checkout at {unbuilt_checkout}, not the installed qdarpc at " \
           f"{installed}" in err
    assert "the current directory (or the script's) comes first on sys.path" in err


def test_installed_package_without_extension_says_rebuild(tmp_path):
    """Outside a checkout a missing extension is a broken install: reinstall."""
    pkg = tmp_path / "site"
    shutil.copytree(ROOT / "qda_core", pkg / "qda_core",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.pyx", "*.pxd"))
    res = _python_in(tmp_path, "-S", "-c", "import sys; sys.path.insert(0, 'site'); "
                     "import qda_core._ext as e; e.load('_iova')")
    assert "qdarpc extension qda_core._iova is not built" in res.stderr and "pip install ." in res.stderr
