"""Declares qdarpc's compiled extensions and plain C libraries; all metadata lives in pyproject.toml.

Besides Python extension modules the build makes plain C shared libraries (:class:`CLibrary`):
the C ABI faces of ``libadsprpc_compat`` (``libcdsprpc.so.1`` and its siblings, see
docs/c_abi.md) and the emulated DSP's runtime. They are built by the same compiler setup and
land in the package tree, next to the SDK headers and a pkg-config file (``sdk/``).

Build switches (environment):
  QDARPC_SANITIZE=1  build every extension with ASan + UBSan (run with libasan preloaded)
  QDARPC_DEBUG=1     -O0 -g, assertions on
"""
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path

from Cython.Build import cythonize
from pybind11.setup_helpers import Pybind11Extension
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
        # the native data plane (docs/dataplane.md): the engine's lane and the DSP's receive
        c_ext("qda_core._cdev", ["qda_core/_cdev.pyx"]),  # C interfaces between the lanes
        c_ext("qda_core._engine", ["qda_core/_engine.pyx"]),
        c_ext("qda_core.dsp._counters", ["qda_core/dsp/_counters.pyx"]),
        c_ext("qda_core.dsp._call", ["qda_core/dsp/_call.pyx"]),
        c_ext("qda_core.dsp._lane", ["qda_core/dsp/_lane.pyx"]),
        c_ext("qda_core.mem.msgpool", ["qda_core/mem/msgpool.pyx"]),
        c_ext("qda_core.mem._smmu", ["qda_core/mem/_smmu.pyx"]),
        c_ext("qda_core.accel._invoke", ["qda_core/accel/_invoke.pyx"]),
        c_ext("qda_core.legacy._invoke", ["qda_core/legacy/_invoke.pyx"]),
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



class CLibrary(Extension):
    """A plain C shared library (no Python module) built at ``path``, relative to the package
    root, with an optional soname and extra file names (``aliases``, copies: a wheel cannot hold
    symlinks). Its sources are C99 and must not reference libpython (``--no-undefined``)."""

    def __init__(self, path, sources, *, soname=None, aliases=(), define_macros=(), libraries=()):
        self.path = path
        self.aliases = tuple(aliases)
        link = ["-Wl,--no-undefined", "-Wl,-z,nodelete"]
        if soname:
            link.append(f"-Wl,-soname,{soname}")
        super().__init__(
            path.rsplit(".so", 1)[0].replace("/", "."), sources, include_dirs=include,
            define_macros=[*version_macro, *define_macros], libraries=list(libraries),
            extra_compile_args=[*cflags, "-std=gnu99", "-fvisibility=hidden"],
            extra_link_args=[*ldflags, *link],
        )


def _libpython() -> str:
    """The shared libpython of the building interpreter ("" if it has none), which the C ABI
    library loads when a plain C program calls it first (docs/c_abi.md)."""
    name = sysconfig.get_config_var("INSTSONAME") or ""
    for d in (sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LIBPL")):
        if d and name.endswith(".so.1.0") and Path(d, name).exists():
            return str(Path(d, name))
    return ""


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


SDK = "libadsprpc_compat/sdk"
#: The C ABI library, once per upstream flavour: the same code with another default domain.
ABI_FLAVOURS = {"libadsprpc": 0, "libcdsprpc": 3, "libsdsprpc": 2}
bridge_macros = [("QDARPC_BUILD_PYTHON", _c_string(sys.executable)),
                 ("QDARPC_BUILD_LIBPYTHON", _c_string(_libpython()))]
NATIVE_LIBS = [
    *(CLibrary(f"{SDK}/lib/{name}.so.1", ["csrc/bridge/bridge.c", "csrc/bridge/embed.c"], soname=f"{name}.so.1",
               aliases=[f"{name}.so"], libraries=["dl", "pthread"],
               define_macros=[*bridge_macros, ("QDARPC_DEFAULT_DOMAIN", str(dom)),
                              ("QDARPC_LIBNAME", _c_string(name))])
      for name, dom in ABI_FLAVOURS.items()),
    CLibrary("qda_core/dsp/libqdarpc_dsprt.so", ["csrc/dsprt/dsprt.c"]),
    CLibrary(f"{SDK}/lib/libqdarpc_shim.so", ["csrc/shim/shim.c", "csrc/shim/vfs.c", "csrc/bridge/embed.c"], libraries=["dl", "pthread"],
             define_macros=[*bridge_macros, ("QDARPC_LIBNAME", _c_string("libqdarpc_shim"))]),
]

PKGCONFIG = """\
# qdarpc's FastRPC user library (libcdsprpc) and SDK headers, relocatable with the package.
prefix=${{pcfiledir}}/../..
libdir=${{prefix}}/lib
includedir=${{prefix}}/include

Name: qdarpc
Description: FastRPC user API (libcdsprpc.so.1) over qdarpc's emulated DSP
Version: {version}
Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lcdsprpc
Cflags: -I${{includedir}}
"""


class BuildExt(build_ext):
    """build_ext that also names :class:`CLibrary` outputs and lays out the SDK tree
    (headers, alias copies, ``lib/pkgconfig/qdarpc.pc``) wherever the libraries land."""

    def _clib(self, name):
        for ext in self.extensions:
            if isinstance(ext, CLibrary) and name in (ext.name, ext.name.rsplit(".", 1)[-1]):
                return ext
        return None

    def get_ext_filename(self, fullname):
        lib = self._clib(fullname)
        if lib is None:
            return super().get_ext_filename(fullname)
        base = lib.path.rsplit("/", 1)[-1]
        return lib.path if "." in fullname else base

    def build_extension(self, ext):
        if not isinstance(ext, CLibrary):
            return super().build_extension(ext)
        # Objects per library: the flavours compile the same sources with other macros.
        objects = self.compiler.compile(
            ext.sources, output_dir=os.path.join(self.build_temp, ext.name), macros=ext.define_macros,
            include_dirs=ext.include_dirs, extra_postargs=ext.extra_compile_args, depends=ext.depends)
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        self.compiler.link_shared_object(objects, out, libraries=ext.libraries,
                                         extra_postargs=ext.extra_link_args)

    def copy_extensions_to_source(self):
        # An editable install copies every output into the checkout, where sdk/lib/ does not
        # exist until a build made it (it is not tracked).
        for ext in self.extensions:
            if isinstance(ext, CLibrary):
                (HERE / ext.path).parent.mkdir(parents=True, exist_ok=True)
        super().copy_extensions_to_source()

    def run(self):
        super().run()
        roots = [Path(self.build_lib)]
        if self.inplace or getattr(self, "editable_mode", False):
            roots.append(HERE)
        for root in roots:
            self._lay_out(root)

    def _lay_out(self, root: Path) -> None:
        for ext in self.extensions:
            if isinstance(ext, CLibrary):
                built = root / ext.path
                for alias in ext.aliases:
                    if built.exists():
                        shutil.copyfile(built, built.parent / alias)
        inc = root / SDK / "include"
        if inc.exists():
            shutil.rmtree(inc)
        shutil.copytree(HERE / "csrc/include", inc)
        pc = root / SDK / "lib/pkgconfig/qdarpc.pc"
        pc.parent.mkdir(parents=True, exist_ok=True)
        pc.write_text(PKGCONFIG.format(version=VERSION))


setup(ext_modules=[*cython_exts, iova, *NATIVE_LIBS], cmdclass={"build_ext": BuildExt})
