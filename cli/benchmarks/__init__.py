"""The benchmarks behind ``qdarpc bench`` (``bench/*.py`` in a checkout are thin entry points).

Every figure is a **ratio against a reference measured in the same run, interleaved** with it
(batch of the case, batch of the reference, repeated), so machine load hits both alike and the
ratio carries from one machine to another where absolute microseconds do not (they differ 3-4x
between machines). Absolute medians are printed too, for information only.

Each module has ``run(quick=False, iterations=None, **opts) -> dict`` (JSON-ready: ``name``,
``title``, ``rows`` of {case, time_us, reference, reference_us, ratio, meaning}, ``notes``;
``common.format_rows`` prints it) and ``main(argv)`` (``--quick``, ``--iterations N``, ``--json``).
``--quick`` is a smoke run: small sizes and few iterations, ratios still computed.
"""
from __future__ import annotations

#: benchmark name -> module under qdarpc_cli.benchmarks, in the order ``qdarpc bench`` runs them
BENCHMARKS = {
    "marshal": "marshal",
    "invoke": "invoke",
    "remote_invoke": "remote_invoke",
    "c_abi": "c_abi",
    "shim": "shim",
    "dataplane": "dataplane",
}
