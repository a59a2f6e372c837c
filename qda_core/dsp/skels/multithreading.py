"""The Hexagon SDK ``multithreading`` example (docs/spec/legacy_fastrpc_api.md §8.4), on the
emulated DSP.

URI: ``file:///libmultithreading_skel.so?multithreading_skel_handle_invoke&_modver=1.0&_dom=cdsp``

On a device each method starts QuRT threads in the calling PD (``qurt_thread_create``), which
the DSP schedules on its hardware threads, synchronises them (``qurt_barrier_*``,
``qurt_mutex_*``) and joins them. Here every method really runs its work on
:data:`N_THREADS` host threads standing for hardware threads, joins them, checks the result,
and answers 0 (docs/spec/upstream_library.md §6), or ``0x80000401`` if the check fails or a
barrier breaks (a thread did not arrive within :data:`BARRIER_TIMEOUT_S`).

====  ============  ===========  ==============================================================
id    name          sc           work
====  ============  ===========  ==============================================================
2     parallel_sum  0x02000000   each thread sums its slice of ``0 .. N_THREADS*SLICE-1``, all
                                 meet at a barrier (so they run at once), then the partial sums
                                 must add up to the closed form ``n(n-1)/2``
3     barriers      0x03000000   :data:`ROUNDS` rounds: each thread advances its own counter,
                                 waits at the barrier, and checks that every counter reached
                                 the round
4     mutexes       0x04000000   each thread adds 1 to one shared counter :data:`INCREMENTS`
                                 times under a mutex; the total must be exact
====  ============  ===========  ==============================================================

Upstream's ``fastrpc_test`` calls only ``parallel_sum`` (after ``remotectl1_set_param`` of
the thread priority and stack size, which the DSP keeps in the PD).

Modeled cost (on top of the per-message cost): :data:`THREAD_NS` per thread created and
joined, plus the bytes one thread reads at the domain's bandwidth (the threads run in
parallel, so one slice, not all of them). An exception in a worker thread is re-raised in the
invoking thread after the join: the PD crashes, as a fault in a QuRT thread of the PD would.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from .. import aee
from ..skel import Call, Skeleton, method

__all__ = ["Multithreading", "N_THREADS", "SLICE", "ROUNDS", "INCREMENTS", "THREAD_NS", "BARRIER_TIMEOUT_S"]

#: Worker threads per call: the hardware threads of a compute DSP (our choice of 4).
N_THREADS = 4
#: Elements each thread sums in ``parallel_sum``.
SLICE = 1 << 16
#: Barrier rounds of ``barriers``.
ROUNDS = 8
#: Increments per thread in ``mutexes``.
INCREMENTS = 1000
#: Modeled cost of creating and joining one QuRT thread, in ns (our choice).
THREAD_NS = 20_000
#: How long a thread waits at a barrier before the call fails instead of hanging.
BARRIER_TIMEOUT_S = 10.0


class _Failed(Exception):
    """A worker's check failed (the call answers ERR_SKEL_CHECK, the PD lives on)."""


def _run(call: Call, name: str, work: Callable[[int, threading.Barrier], None], bytes_per_thread: int = 0) -> int:
    """Run ``work(i, barrier)`` on N_THREADS threads of the calling PD, join them all, charge
    the model; 0, ERR_SKEL_CHECK if a check failed or the barrier broke, or re-raise a crash."""
    barrier = threading.Barrier(N_THREADS, timeout=BARRIER_TIMEOUT_S)
    errors: list[BaseException | None] = [None] * N_THREADS

    def body(i: int) -> None:
        try:
            work(i, barrier)
        except BaseException as exc:  # recorded and handled by the invoking thread
            errors[i] = exc
            barrier.abort()  # the others leave their waits at once

    p = call.process
    threads = [threading.Thread(target=body, args=(i,), daemon=True,
                                name=f"dsp-{p.domain}-{p.client_id}-{name}-{i}") for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cost = p.cost
    call.add_cost(N_THREADS * THREAD_NS
                  + (int(bytes_per_thread * 1e9 / cost.bytes_per_s) if cost is not None else 0))
    crash = next((e for e in errors if e is not None and not isinstance(e, (_Failed, threading.BrokenBarrierError))),
                 None)
    if crash is not None:
        raise crash
    return aee.ERR_SKEL_CHECK if any(errors) else 0


def _slice_sum(data: np.ndarray, i: int) -> int:
    """Thread ``i``'s share of ``parallel_sum``."""
    return int(data[i * SLICE:(i + 1) * SLICE].sum())


class Multithreading(Skeleton):
    skel_name = "libmultithreading_skel.so"
    symbols = ("multithreading_skel_handle_invoke",)

    @method(2, sc=0x02000000)
    def parallel_sum(self, call: Call) -> int:
        data = np.arange(N_THREADS * SLICE, dtype=np.int64)
        partial = [0] * N_THREADS
        idents = [0] * N_THREADS

        def work(i: int, barrier: threading.Barrier) -> None:
            partial[i] = _slice_sum(data, i)
            idents[i] = threading.get_ident()
            barrier.wait()  # every thread is alive at once here
            if i == 0:
                n = len(data)
                if sum(partial) != n * (n - 1) // 2 or len(set(idents)) != N_THREADS:
                    raise _Failed(f"partial sums {partial} do not add up to {n * (n - 1) // 2}")

        return _run(call, "sum", work, SLICE * data.itemsize)

    @method(3, sc=0x03000000)
    def barriers(self, call: Call) -> int:
        counters = [0] * N_THREADS

        def work(i: int, barrier: threading.Barrier) -> None:
            for r in range(1, ROUNDS + 1):
                counters[i] = r
                barrier.wait()
                if min(counters) < r:
                    raise _Failed(f"round {r}: counters {counters}")
                barrier.wait()  # nobody starts the next round before all have checked

        return _run(call, "barrier", work)

    @method(4, sc=0x04000000)
    def mutexes(self, call: Call) -> int:
        mutex = threading.Lock()
        total = [0]

        def work(i: int, barrier: threading.Barrier) -> None:
            barrier.wait()  # start together, so the increments contend
            for _ in range(INCREMENTS):
                with mutex:
                    total[0] += 1
            barrier.wait()
            if i == 0 and total[0] != N_THREADS * INCREMENTS:
                raise _Failed(f"counter {total[0]}, expected {N_THREADS * INCREMENTS}")

        return _run(call, "mutex", work)
