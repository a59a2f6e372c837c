"""``python bench/c_abi.py [--quick] [--iterations N] [--json]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.c_abi` (it ships with the package: ``qdarpc bench
--only c_abi`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("c_abi")
