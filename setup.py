"""Declares qdarpc's compiled extensions; all metadata lives in pyproject.toml.

Build switches (environment):
  QDARPC_SANITIZE=1  build every extension with ASan + UBSan (run with libasan preloaded)
  QDARPC_DEBUG=1     -O0 -g, assertions on
"""
import os
import re
from pathlib import Path

from Cython.Build import cythonize
from pybind11.setup_helpers import Pybind11Extension
from setuptools import Extension, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "qda_core/_version.py").read_text()).group(1)

cflags = ["-Wall", "-Wextra", "-Wno-unused-function"]
ldflags = []
if os.environ.get("QDARPC_DEBUG") == "1":
    cflags += ["-O0", "-g", "-UNDEBUG"]
if os.environ.get("QDARPC_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    cflags += san + ["-g"]
    ldflags += san
version_macro = [("QDARPC_VERSION", f'"{VERSION}"')]
include = ["csrc/include"]


def c_ext(name, sources):
    """A Cython module over pure C99 sources from csrc/ (the C-ABI lane)."""
    return Extension(
        name, sources, include_dirs=include, define_macros=version_macro,
        extra_compile_args=list(cflags), extra_link_args=list(ldflags),
    )


cython_exts = cythonize(
    [
        c_ext("qda_core._marshal", ["qda_core/_marshal.pyx", "csrc/marshal.c", "csrc/decode.c", "csrc/uaccess.c"]),
        c_ext("qda_core._abi", ["qda_core/_abi.pyx", "csrc/errmap.c"]),
        c_ext("libadsprpc_compat._remote", ["libadsprpc_compat/_remote.pyx", "csrc/errmap.c"]),
    ],
    compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    quiet=True,
)

iova = Pybind11Extension(
    "qda_core._iova",
    ["csrc/cpp/iova_module.cpp"],
    include_dirs=include,
    define_macros=version_macro,
    cxx_std=17,
    extra_compile_args=list(cflags),  # copies: Pybind11Extension appends to them
    extra_link_args=list(ldflags),
)

setup(ext_modules=[*cython_exts, iova])
