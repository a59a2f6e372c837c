"""``python bench/marshal.py [--quick] [--iterations N] [--json]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.marshal` (it ships with the package: ``qdarpc bench
--only marshal`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("marshal")
