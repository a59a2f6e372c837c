"""``python bench/remote_invoke.py [--quick] [--iterations N] [--json]``: a checkout's entry point.

The benchmark is :mod:`qdarpc_cli.benchmarks.remote_invoke` (it ships with the package: ``qdarpc bench
--only remote_invoke`` runs it from any install); see its docstring for what it measures.
"""
from _entry import main

main("remote_invoke")
