"""Exit codes of ``qdarpc`` and the one place library errors become one-line messages.

======  ================  ===================================================================
code    name              meaning
======  ================  ===================================================================
0       EXIT_OK           success
1       EXIT_FAILED       a check failed: ``selftest`` FAIL, a benchmark script failed, a
                          traced script failed
2       EXIT_USAGE        bad command line (click's usage errors): option, argument, value,
                          URI, ``--in``/``--out`` spec, ``--sc``
3       EXIT_DEVICE       the emulated kernel refused (an ``OSError`` with its errno:
                          ``ENODEV``, ``ENOENT``, ``ENOMEM``, ...; or a legacy-API error
                          whose origin is the driver)
4       EXIT_DSP          the DSP answered non-zero: invoke retval (AEE code) or a module
                          that would not load; or the legacy API refused a call (its AEE code)
5       EXIT_FILE         an input/output file is missing, unreadable or not a valid trace
6       EXIT_UNAVAILABLE  not in this build or install (e.g. the legacy backend)
70      EXIT_INTERNAL     a bug in qdarpc (``EX_SOFTWARE``); ``qdarpc --debug`` shows the traceback
======  ================  ===================================================================
"""
from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DEVICE = 3
EXIT_DSP = 4
EXIT_FILE = 5
EXIT_UNAVAILABLE = 6
EXIT_INTERNAL = 70

#: Name of every exit code, for ``--help`` text and tests.
EXIT_CODES = {v: k for k, v in dict(globals()).items() if k.startswith("EXIT_")}


class CliError(click.ClickException):
    """A clean one-line error with a stable exit code (see the module docstring)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def translate(exc: BaseException) -> click.ClickException:
    """The :class:`CliError` a library exception becomes."""
    if isinstance(exc, click.ClickException):
        return exc
    from qda_core.trace_formats import TraceFormatError

    if isinstance(exc, TraceFormatError):
        return CliError(str(exc), EXIT_FILE)
    if isinstance(exc, DspError):
        return CliError(str(exc), EXIT_DSP)
    from libadsprpc_compat.errors import FastRpcError

    if isinstance(exc, FastRpcError):  # before ValueError: BadParameterError is one
        return CliError(str(exc), EXIT_DEVICE if exc.origin == "driver" else EXIT_DSP)
    from libadsprpc_compat.remotectl import ModuleOpenError
    from qda_core.dsp.loader import LoadError

    if isinstance(exc, (ModuleOpenError, LoadError)):  # remotectl's dlerr / the DSP loader's
        code = getattr(exc, "code", 0)
        return CliError(f"{exc} ({_aee(code)})" if code else str(exc), EXIT_DSP)
    if isinstance(exc, OSError):
        if exc.filename is not None:  # a host file, not the emulated kernel
            return CliError(f"{exc.filename}: {exc.strerror}", EXIT_FILE)
        return CliError(exc.strerror or str(exc), EXIT_DEVICE)
    if isinstance(exc, ValueError):
        return CliError(str(exc), EXIT_USAGE)
    return CliError(f"internal error: {type(exc).__name__}: {exc} (rerun with qdarpc --debug for the traceback)",
                    EXIT_INTERNAL)


def _aee(code: int) -> str:
    from qda_core._ext import load

    return load("_abi").aee_name(code & 0xFFFF_FFFF) or f"{code:#x}"


class DspError(Exception):
    """The DSP answered a step with a non-zero AEE code (``code``, unsigned 32-bit)."""

    def __init__(self, code: int, what: str):
        self.code = code & 0xFFFF_FFFF
        super().__init__(f"{what}: DSP returned {self.code:#x} ({_aee(self.code)})")
