"""The Python skeleton API: what a DSP-side module looks like to the emulated DSP.

A skeleton is a :class:`Skeleton` subclass whose methods are tagged with :func:`method`::

    class Adder(Skeleton):
        skel_name = "libadder_skel.so"          # the file a URI names

        @method(2, sc=0x02010100)               # sc (counts) checked by the framework
        def add(self, call):
            a, b = struct.unpack("<ii", call.inbufs[0])
            call.outbufs[0][:4] = struct.pack("<i", a + b)
            return 0                            # AEE code; errors in DSP form (0x8000040e)

One instance is created per open, so instance attributes are per-handle state. For modules
opened with ``_modver=1.0`` the framework calls :meth:`Skeleton.open` (implicit method 0) and
:meth:`Skeleton.close` (method 1) once per instance: on remotectl close, or when the process
exits with the handle still open (not after a crash); user methods start at 2. Without
``_modver`` (legacy ``<name>_skel_invoke`` modules) every method id is a user method and the
hooks are not called.

An exception escaping a method crashes the protection domain, as a fault in a skel does on a
real DSP: that call and every later one on the PD answer ``0x8000040d`` until INIT_RELEASE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, NamedTuple


from ._call import Call

if TYPE_CHECKING:  # pragma: no cover
    from .loader import ModuleUri

__all__ = ["Skeleton", "method", "Call", "DmaHandle", "MethodSpec", "ESCAPE_METHOD"]

#: Method field value that means "the real method id is the first u32 of in-buffer 0".
ESCAPE_METHOD = 31


class DmaHandle(NamedTuple):
    """An in/out handle argument as the DSP receives it (fd-backed, mapped by the kernel)."""

    fd: int
    offset: int
    length: int
    map_addr: int
    map_size: int


@dataclass(frozen=True)
class MethodSpec:
    """What :func:`method` records on a function."""

    mid: int
    sc: int | None
    cost_ns: int
    fn: Callable[..., int]

    def counts_match(self, sc: int) -> bool:
        # the counts are the low 24 bits of a scalars word (see wire.sc_counts)
        return self.sc is None or not (self.sc ^ sc) & 0xFF_FFFF


def method(mid: int, *, sc: int | None = None, cost_ns: int = 0):
    """Register the decorated function as skeleton method ``mid``.

    ``sc``: the scalars word the method expects; when given, a call whose buffer/handle counts
    differ answers ``0x8000040e`` without running the method. ``cost_ns``: modeled on-device
    time added per call (see :mod:`qda_core.dsp.cost`). Ids >= 31 are reached through the
    escape (method field 31, real id in the first 4 bytes of in-buffer 0).
    """
    if not isinstance(mid, int) or mid < 0 or mid > 0xFFFF_FFFF:
        raise ValueError(f"method id must be a u32, got {mid!r}")
    if cost_ns < 0:
        raise ValueError(f"cost_ns must be >= 0, got {cost_ns}")

    def deco(fn):
        fn.__skel_method__ = MethodSpec(mid, sc, int(cost_ns), fn)
        return fn

    return deco


class Skeleton:
    """Base class of Python skeletons (see the module docstring)."""

    #: File name a URI names, e.g. ``"libcalculator_skel.so"``. Path-loaded skels get it from
    #: their file name when left empty.
    skel_name: ClassVar[str] = ""
    #: Symbols the "library" exports. Empty: ``<iface>_skel_handle_invoke`` and
    #: ``<iface>_skel_invoke`` derived from ``skel_name``.
    symbols: ClassVar[tuple[str, ...]] = ()
    _methods: ClassVar[dict[int, MethodSpec]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table: dict[int, MethodSpec] = {}
        for klass in reversed(cls.__mro__):
            own: dict[int, str] = {}
            for name, attr in vars(klass).items():
                spec = getattr(attr, "__skel_method__", None)
                if spec is None:
                    continue
                if spec.mid in own:
                    raise TypeError(f"{cls.__name__}: method id {spec.mid} used by both "
                                    f"{own[spec.mid]} and {name}")
                own[spec.mid] = name
                table[spec.mid] = spec
        cls._methods = table

    @classmethod
    def method_names(cls) -> dict[int, str]:
        """Method id -> the Python name of the method serving it (for tools such as the CLI)."""
        return {mid: spec.fn.__name__ for mid, spec in sorted(cls._methods.items())}

    @classmethod
    def exported_symbols(cls, skel_name: str | None = None) -> tuple[str, ...]:
        """The symbols this skeleton answers to (see :attr:`symbols`)."""
        if cls.symbols:
            return tuple(cls.symbols)
        iface = interface_name(skel_name or cls.skel_name)
        return (f"{iface}_skel_handle_invoke", f"{iface}_skel_invoke") if iface else ()

    def open(self, uri: "ModuleUri") -> int:
        """Implicit method 0 of ``_modver=1.0`` modules; non-zero refuses the open (dlerr)."""
        return 0

    def close(self) -> int:
        """Implicit method 1, called once: on remotectl close, or at PD teardown (process exit,
        INIT_RELEASE) if the handle is still open; not after the PD crashed."""
        return 0


def interface_name(skel_file: str) -> str:
    """``"libfoo_skel.so"`` -> ``"foo"``; ``""`` if the name does not follow the pattern."""
    base = skel_file.rsplit("/", 1)[-1]
    if base.startswith("lib") and base.endswith("_skel.so") and len(base) > len("lib_skel.so"):
        return base[3:-len("_skel.so")]
    return ""
