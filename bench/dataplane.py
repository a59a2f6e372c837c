"""``python bench/dataplane.py [--quick] [--json] [--work-us US]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.dataplane` (it ships with the package: ``qdarpc
bench --only dataplane`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("dataplane")
