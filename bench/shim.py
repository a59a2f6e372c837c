"""``python bench/shim.py [--quick] [--iterations N] [--json]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.shim` (it ships with the package: ``qdarpc bench
--only shim`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("shim")
