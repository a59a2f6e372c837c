"""Built-in skeletons, keyed by the skel file name a URI names."""
from __future__ import annotations

from types import MappingProxyType

from .calculator import Calculator
from .hap_example import HapExample
from .multithreading import Multithreading
from .qdarpc_test import QdarpcTest

__all__ = ["BUILTIN_SKELS", "Calculator", "HapExample", "Multithreading", "QdarpcTest"]

BUILTIN_SKELS = MappingProxyType({cls.skel_name: cls
                                  for cls in (Calculator, HapExample, Multithreading, QdarpcTest)})
