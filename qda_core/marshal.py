"""The invoke marshaller: the kernel's get_args/put_args payload layout and the DSP's decode.

Re-exports one backend, chosen by the environment variable ``QDARPC_MARSHAL``:

* ``c`` (default): ``qda_core._marshal``, the Cython wrapper of csrc/marshal.c (hot path);
* ``py``: ``qda_core.marshal_ref``, the pure-Python reference (oracle, debugging).

Both have the same API, results and errors (``OSError`` with the kernel's errno):

``payload_size(sc, args, refs)``, ``pack(sc, args, refs, payload, payload_va, payload_dev)``,
``unpack(sc, args, refs, payload, payload_va)``, ``decode(sc, payload)``,
``decode_views(sc, payload, base)``, ``metadata_size(n)``.
``BACKEND`` names the one in use.
"""
from __future__ import annotations

import os

_BACKENDS = ("c", "py")
_choice = os.environ.get("QDARPC_MARSHAL", "c")

if _choice == "c":
    from ._ext import load as _load

    _impl = _load("_marshal")
elif _choice == "py":
    from . import marshal_ref as _impl
else:
    raise ImportError(
        f"QDARPC_MARSHAL={_choice!r} is not a marshalling backend; valid values: "
        + ", ".join(_BACKENDS)
    )

BACKEND: str = _impl.BACKEND
payload_size = _impl.payload_size
pack = _impl.pack
unpack = _impl.unpack
decode = _impl.decode
decode_views = _impl.decode_views
metadata_size = _impl.metadata_size

__all__ = ["BACKEND", "payload_size", "pack", "unpack", "decode", "decode_views", "metadata_size"]
