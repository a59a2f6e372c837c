"""``python bench/invoke.py [--quick] [--iterations N] [--json]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.invoke` (it ships with the package: ``qdarpc bench
--only invoke`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("invoke")
