"""``qdarpc invoke``: typed buffer specs, the call's scalars, and one invoke session.

The session is :func:`_open_session`; everything else is backend-neutral. Both backends go
through the legacy user API (``libadsprpc_compat.Library(backend=...)``): ``remote_handle64_open``,
``remote_handle64_invoke``, ``rpcmem_alloc`` for shared buffers, ``remote_handle64_close``, so
``--backend`` is the library's backend and every error code is the library's.

Each call's modeled on-device time (docs/cost_model.md) is what the DSP charged the messages the
call sent, measured around the call (``qda_core.dsp.cost.measure``): the ``modeled_ns`` of its
``dsp`` trace events.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import click


#: Element types of ``--in T:v,...`` and ``--out T:count`` (little-endian, as the DSP is).
TYPES = {"i8": "<i1", "u8": "<u1", "i16": "<i2", "u16": "<u2", "i32": "<i4", "u32": "<u4",
         "i64": "<i8", "u64": "<u8", "f32": "<f4", "f64": "<f8"}

IN_HELP = ("T:v1,v2,... with T in " + ", ".join(TYPES) + "; hex:0a0b..; str:text; @file.bin")
OUT_HELP = "N bytes (shown as hex), or T:count elements of a type above, hex:N, str:N"


@dataclass(frozen=True)
class InBuf:
    """An in-buffer: its bytes and how it was given (``by_ref``: a shared rpcmem/GEM buffer)."""

    data: bytes
    kind: str
    by_ref: bool = False


@dataclass(frozen=True)
class OutBuf:
    """An out-buffer of ``size`` bytes, decoded as ``kind`` (a type, ``hex`` or ``str``)."""

    size: int
    kind: str
    by_ref: bool = False

    def decode(self, raw: bytes) -> Any:
        if self.kind == "hex":
            return raw.hex()
        if self.kind == "str":
            return raw.split(b"\0", 1)[0].decode(errors="replace")
        import numpy as np

        values = np.frombuffer(raw, dtype=TYPES[self.kind]).tolist()
        return [v if not isinstance(v, float) or math.isfinite(v) else str(v) for v in values]


def parse_in(text: str, by_ref: bool = False) -> InBuf:
    """Parse an ``--in`` spec; ``ValueError`` names what is wrong."""
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as f:
                return InBuf(f.read(), "file", by_ref)
        except OSError as exc:
            raise ValueError(f"cannot read {path!r}: {exc.strerror}") from None
    kind, colon, body = text.partition(":")
    if not colon:
        raise ValueError(f"{text!r} has no type prefix; expected {IN_HELP}")
    if kind == "hex":
        try:
            return InBuf(bytes.fromhex(body.replace(":", " ")), "hex", by_ref)
        except ValueError:
            raise ValueError(f"hex:{body!r} is not hex digits") from None
    if kind == "str":
        return InBuf(body.encode(), "str", by_ref)
    if kind not in TYPES:
        raise ValueError(f"unknown type {kind!r}; expected {IN_HELP}")
    import numpy as np

    dtype = np.dtype(TYPES[kind])
    toks = [t.strip() for t in body.split(",")] if body.strip() else []
    vals: list = []
    for tok in toks:
        try:
            v = float(tok) if dtype.kind == "f" else int(tok, 0)
        except ValueError:
            raise ValueError(f"{tok!r} is not a{'' if dtype.kind == 'f' else 'n'} "
                             f"{'number' if dtype.kind == 'f' else 'integer'} ({kind})") from None
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if not info.min <= v <= info.max:
                raise ValueError(f"{tok} does not fit {kind} ({info.min}..{info.max})")
        vals.append(v)
    return InBuf(np.array(vals, dtype=dtype).tobytes(), kind, by_ref)


def parse_out(text: str, by_ref: bool = False) -> OutBuf:
    """Parse an ``--out`` spec; ``ValueError`` names what is wrong."""
    kind, colon, count = text.partition(":")
    if not colon:
        kind, count = "hex", text
    if kind not in TYPES and kind not in ("hex", "str"):
        raise ValueError(f"unknown type {kind!r}; expected {OUT_HELP}")
    try:
        n = int(count, 0)
    except ValueError:
        raise ValueError(f"{count!r} is not a count; expected {OUT_HELP}") from None
    if n < 0:
        raise ValueError(f"count {n} is negative")
    size = n * int(TYPES[kind][-1]) if kind in TYPES else n
    return OutBuf(size, kind, by_ref)


class BufSpec(click.ParamType):
    """click type of ``--in``/``--out`` and their ``-rpcmem`` forms."""

    def __init__(self, out: bool, by_ref: bool):
        self.out, self.by_ref = out, by_ref
        self.name = "OUTSPEC" if out else "INSPEC"

    def convert(self, value, param, ctx):
        if isinstance(value, (InBuf, OutBuf)):
            return value
        try:
            return (parse_out if self.out else parse_in)(value, self.by_ref)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class OrderedCommand(click.Command):
    """A command that remembers the order its options were given in (``ctx.meta``), so
    ``--in`` and ``--in-rpcmem`` buffers keep their command-line positions."""

    def make_parser(self, ctx):
        parser = super().make_parser(ctx)
        orig = parser.parse_args

        def parse_args(args):
            opts, largs, order = orig(args)
            ctx.meta["qdarpc.param_order"] = [p.name for p in order]
            return opts, largs, order

        parser.parse_args = parse_args
        return parser


def in_order(ctx: click.Context, names: tuple[str, ...], values: dict[str, Iterable]) -> list:
    """Interleave multi-value options in command-line order (``names`` in fallback order)."""
    its = {n: iter(values[n]) for n in names}
    order = [n for n in ctx.meta.get("qdarpc.param_order", ()) if n in names]
    out = [next(its[n]) for n in order]
    for n in names:  # anything the parser did not report (defaults, direct calls)
        out.extend(its[n])
    return out


# --- URI, method, scalars ---------------------------------------------------------------------
def prepare_uri(uri: str, domain: str | None, session: int) -> tuple[str, str]:
    """Check ``uri`` and give it ``&_dom=`` / ``&_session=`` as the legacy library requires.
    Returns ``(uri, domain)``; ``ValueError`` for a bad URI or a conflict with ``-d``/``--session``."""
    from qda_core.dsp.loader import parse_uri
    from qda_core.soc import DOMAINS

    parsed = parse_uri(uri)
    if not uri.startswith("file://"):
        return uri, domain or "cdsp"
    dom = parsed.params.get("_dom")
    if dom is not None:
        if dom not in DOMAINS:
            raise ValueError(f"URI names unknown domain _dom={dom}; known: {', '.join(DOMAINS)}")
        if domain is not None and domain != dom:
            raise ValueError(f"URI says _dom={dom} but -d says {domain}")
    else:
        dom = domain or "cdsp"
        uri += f"&_dom={dom}"
    sess = parsed.params.get("_session")
    if sess is not None:
        if not (sess or "").isdigit() or int(sess) > 3:
            raise ValueError(f"URI has _session={sess}; sessions are 0-3")
        if session and int(sess) != session:
            raise ValueError(f"URI says _session={sess} but --session says {session}")
    elif session:
        uri += f"&_session={session}"
    return uri, dom


def method_table(soc, domain: str, uri: str) -> dict[str, int]:
    """Method names of the skel ``uri`` names (Python skels only): name -> method id."""
    from qda_core.dsp.loader import parse_uri

    src = soc.domain(domain).dsp.loader.resolve(parse_uri(uri))
    if src.skel is None:
        return {}
    return {name: mid for mid, name in src.skel.method_names().items()}


def resolve_method(method: str, soc, domain: str, uri: str) -> tuple[int, str]:
    """``METHOD`` as an id (decimal or 0x hex) or a skel method name -> ``(id, name)``."""
    try:
        mid = int(method, 0)
    except ValueError:
        table = method_table(soc, domain, uri)
        if method not in table:
            known = ", ".join(f"{n} ({i})" for n, i in sorted(table.items(), key=lambda kv: kv[1]))
            raise ValueError(f"no method {method!r} in this module; "
                             + (f"it has {known}" if known else "give the method id (its skel has no names)"))
        return table[method], method
    if not 0 <= mid <= 30:
        raise ValueError(f"method id {mid} is outside 0..30: larger ids use the escape (method 31), "
                         "so give --sc and put the id in the first --in")
    try:  # a name for display only; a module that will not load is reported by the open
        names = {i: n for n, i in method_table(soc, domain, uri).items()}
    except Exception:  # noqa: BLE001 - any loader failure just means "no name"
        names = {}
    return mid, names.get(mid, "")


def make_sc(method: int, nin: int, nout: int, sc: int | None) -> int:
    """The scalars word: ``sc`` checked against the buffer counts, else REMOTE_SCALARS_MAKE."""
    from qda_core import wire

    if nin > 255 or nout > 255:
        raise ValueError(f"{nin} in / {nout} out buffers: at most 255 each fit the scalars word")
    if sc is None:
        return wire.scalars(method, nin, nout)
    if not 0 <= sc <= 0xFFFF_FFFF:
        raise ValueError(f"--sc {sc:#x} is not a 32-bit word")
    cin, cout, cinh, couth = wire.sc_counts(sc)
    if (cin, cout) != (nin, nout) or cinh or couth:
        raise ValueError(f"--sc {sc:#010x} declares {cin} in / {cout} out buffers and {cinh + couth} handles; "
                         f"the command line gives {nin} in / {nout} out buffers and no handles")
    return sc


# --- the session: the one place that knows which API carries the call -------------------------
def _nodes(soc, backend: str, domain: str) -> list[str]:
    """The device nodes the legacy library tries for ``domain`` on ``backend`` (for messages)."""
    if backend == "accel":
        return [soc.domain(domain).accel.path]
    return [f"/dev/fastrpc-{domain}-secure", f"/dev/fastrpc-{domain}"]


def _dlerror(soc, domain: str, uri: str) -> str:
    """The DSP loader's reason a module will not load (the dlerror text remotectl returns and
    the legacy library only logs), as `` (DSP: ...)``; empty when the loader finds the module."""
    from qda_core.dsp.loader import LoadError, parse_uri

    try:
        soc.domain(domain).dsp.loader.resolve(parse_uri(uri))
    except LoadError as exc:
        return f" (DSP: {exc.text})"
    except Exception:  # noqa: BLE001 - only a hint for the message
        return ""
    return ""


class _Session:
    """The module open through the legacy user API (``libadsprpc_compat``) on one backend:
    a private :class:`~libadsprpc_compat.Library` on the command's SoC, so ``--backend`` is the
    library's backend and every code is the one ``libadsprpc`` would return."""

    def __init__(self, backend: str, soc, domain: str, uri: str, unsigned: bool):
        import libadsprpc_compat as rpc
        from libadsprpc_compat.library import domain_from_uri

        self.rpc = rpc
        self.lib = rpc.Library(backend=backend, soc=soc)
        self.handle: int | None = None
        self._mems: list = []
        self._views: list[memoryview] = []
        try:
            if unsigned:  # fastrpc_test -U 1: before the session exists, for its effective domain
                ctl = rpc.remote_rpc_control_unsigned_module(domain_from_uri(uri), 1)
                self.lib.remote_session_control(rpc.DSPRPC_CONTROL_UNSIGNED_MODULE, ctl)
            self.handle = self.lib.remote_handle64_open(uri)
        except rpc.FastRpcError as exc:
            self.lib.close_all()
            where = " | ".join(_nodes(soc, backend, domain))
            why = _dlerror(soc, domain, uri) if exc.origin == "dsp" else ""
            raise type(exc)(exc.aee, f"{backend} backend ({where}): could not open {uri!r}{why}",
                            errno=exc.errno, origin=exc.origin) from None
        except BaseException:
            self.lib.close_all()
            raise

    def shared(self, size: int):
        """An rpcmem buffer (registered: goes by reference): ``(view, invoke_arg)``."""
        if size <= 0:
            raise ValueError("a by-reference (rpcmem) buffer needs at least one byte")
        rpc = self.rpc
        mem = rpc.rpcmem_alloc(rpc.RPCMEM_HEAP_ID_SYSTEM, rpc.RPCMEM_DEFAULT_FLAGS, size)
        self._mems.append(mem)
        view = memoryview(mem)[:size]
        self._views.append(view)
        return view, view

    def invoke(self, sc: int, args: list) -> int:
        """``remote_handle64_invoke``; returns 0 or the AEE code the C call would return."""
        try:
            self.lib.remote_handle64_invoke(self.handle, sc, args)
        except self.rpc.FastRpcError as exc:
            return exc.aee
        return 0

    def close(self) -> None:
        """Close the handle (the last one ends the DSP process), free rpcmem, shut the Library down."""
        try:
            if self.handle is not None:
                self.lib.remote_handle64_close(self.handle)
                self.handle = None
        finally:
            for v in self._views:
                v.release()
            for m in self._mems:
                self.rpc.rpcmem_free(m)
            self._views.clear()
            self._mems.clear()
            self.lib.close_all()


def _open_session(backend: str, soc, domain: str, uri: str, unsigned: bool) -> _Session:
    """The one switch point: both backends go through the legacy user API's Library."""
    return _Session(backend, soc, domain, uri, unsigned)


# --- the command's body -----------------------------------------------------------------------
@dataclass
class InvokeResult:
    uri: str
    domain: str
    backend: str
    method: int
    method_name: str
    sc: int
    ret: int
    outputs: list[tuple[OutBuf, bytes]]
    times_ns: list[int] = field(default_factory=list)
    repeat: int = 1  # calls asked for; fewer ran when one answered non-zero
    modeled_ns: list[int] = field(default_factory=list)  # per call, as the DSP charged it
    injected: list[dict] = field(default_factory=list)  # faults that fired (--faults), in order

    def modeled(self) -> dict[str, int | float]:
        """Modeled on-device time: ``ns`` of the last call, and over every call ``calls``,
        ``total_ns``, ``mean_ns``; ``{}`` when no call ran."""
        if not self.modeled_ns:
            return {}
        return {"ns": self.modeled_ns[-1], "calls": len(self.modeled_ns), "total_ns": sum(self.modeled_ns),
                "mean_ns": statistics.fmean(self.modeled_ns)}

    def modeled_text(self) -> str | None:
        """The text line of :meth:`modeled` (None when no call ran)."""
        from .term import fmt_ns

        m = self.modeled()
        if not m:
            return None
        if m["calls"] == 1:
            return f"modeled on-device {fmt_ns(m['ns'])} ({m['ns']} ns)"
        return (f"modeled on-device {fmt_ns(m['total_ns'])} over {m['calls']} calls ({m['total_ns']} ns), "
                f"mean {fmt_ns(m['mean_ns'])} per call")

    def timing(self) -> dict[str, float]:
        """Per-call wall time in microseconds: median, p99 (nearest rank), min, mean."""
        ts = sorted(self.times_ns)
        p99 = ts[min(len(ts) - 1, math.ceil(0.99 * len(ts)) - 1)]
        return {"calls": len(ts), "median_us": statistics.median(ts) / 1e3, "p99_us": p99 / 1e3,
                "min_us": ts[0] / 1e3, "mean_us": statistics.fmean(ts) / 1e3}

    def to_json(self) -> dict:
        from .errors import _aee

        d = {"uri": self.uri, "domain": self.domain, "backend": self.backend, "method": self.method,
             "method_name": self.method_name or None, "sc": f"{self.sc:#010x}", "ret": self.ret,
             "ret_name": _aee(self.ret),
             "outputs": [{"index": i, "type": o.kind, "by_ref": o.by_ref, "hex": raw.hex(), "value": o.decode(raw)}
                         for i, (o, raw) in enumerate(self.outputs)]}
        m = self.modeled()
        if m:
            d["modeled_ns"] = m["ns"]  # the (last) call's
            if self.repeat > 1:
                d["modeled"] = {k: m[k] for k in ("calls", "total_ns", "mean_ns")}
        if self.repeat > 1:
            d["timing"] = self.timing()
        if self.injected:
            d["injected"] = self.injected
        return d


def run(*, uri: str, method: str, domain: str | None, session: int, unsigned: bool, backend: str,
        soc_profile: str | None, ins: list[InBuf], outs: list[OutBuf], sc: int | None, repeat: int = 1,
        progress: Callable[[Iterable[int]], Any] | None = None) -> InvokeResult:
    """Open ``uri`` on a fresh emulated SoC, invoke ``method`` ``repeat`` times (stopping at the
    first non-zero retval), close. ``ValueError`` for a bad URI/method/scalars."""
    from qda_core.dsp.cost import measure
    from qda_core.soc import Soc

    uri, domain = prepare_uri(uri, domain, session)
    soc = Soc(soc_profile)
    soc.domain(domain)  # ENODEV before anything else if this SoC lacks the domain
    mid, mname = resolve_method(method, soc, domain, uri)
    sc = make_sc(mid, len(ins), len(outs), sc)
    if repeat < 1:
        raise ValueError(f"--repeat {repeat}: need at least one call")
    sess = _open_session(backend, soc, domain, uri, unsigned)
    try:
        args: list = []
        out_views: list = []
        for b in ins:
            if b.by_ref:
                view, ref = sess.shared(len(b.data))
                view[:] = b.data
                args.append(ref)
            else:
                args.append(b.data)
        for o in outs:
            if o.by_ref:
                view, ref = sess.shared(o.size)
                args.append(ref)
            else:
                view = bytearray(o.size)
                args.append(view)
            out_views.append(view)
        times: list[int] = []
        modeled: list[int] = []
        calls = range(repeat)
        with (progress(calls) if progress and repeat > 1 else contextlib.nullcontext(calls)) as it:
            for _ in it:
                with measure() as m:  # outside the wall time
                    t0 = time.perf_counter_ns()
                    ret = sess.invoke(sc, args)
                    times.append(time.perf_counter_ns() - t0)
                modeled.append(m.ns)
                if ret:
                    break
        outputs = [(o, bytes(v)) for o, v in zip(outs, out_views)]
        del args, out_views
    finally:
        sess.close()
    return InvokeResult(uri, domain, backend, mid, mname, sc, ret, outputs, times, repeat, modeled,
                        soc.faults.summary())

