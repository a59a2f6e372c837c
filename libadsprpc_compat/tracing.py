"""API-level tracing: each legacy API call is reported to an active ``qda_core.trace`` recorder.

The recorder gets ``api(name, args_summary, ret_aee, t0, t1)`` per call (``ret_aee`` is the code
C would have returned). With no recorder (the normal case) a traced function costs one global read.
"""
from __future__ import annotations

import inspect

from qda_core import trace as _trace

from .errors import FastRpcError


def traced(name: str):
    """Decorator: report calls of the C function ``name``; the undecorated function stays
    reachable as ``__wrapped__`` (for internal calls that must not be traced twice)."""
    def wrap(fn):
        # A Library method's ``self`` is not a C argument: leave it out of the summary.
        skip = 1 if next(iter(inspect.signature(fn).parameters), None) == "self" else 0

        def api(*args, **kw):
            tr = _trace.RECORDER
            if tr is None:
                return fn(*args, **kw)
            t0 = _trace.now()
            ret = 0
            try:
                return fn(*args, **kw)
            except FastRpcError as exc:
                ret = exc.aee
                raise
            finally:
                tr.api(name, summary(args[skip:]), ret, t0, _trace.now())
        api.__name__ = api.__qualname__ = fn.__name__
        api.__doc__ = fn.__doc__
        api.__wrapped__ = fn
        return api
    return wrap


def summary(args) -> str:
    """A short, one-line rendering of call arguments for a trace record."""
    out = []
    for a in args:
        if isinstance(a, int):
            out.append(hex(a) if a > 0xFFFF else str(a))
        elif isinstance(a, str):
            out.append(repr(a if len(a) < 80 else a[:77] + "..."))
        elif isinstance(a, (list, tuple)):
            out.append(f"[{len(a)} args]")
        else:
            out.append(type(a).__name__)
    return ", ".join(out)
