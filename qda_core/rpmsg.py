"""The transport between a host driver and the DSP: messages out, replies back. Protocol-blind.

In-process by default: ``send`` is a direct call into the remote endpoint, which answers by
calling ``reply`` before returning (no thread hop, no sleep). The interface admits an
out-of-process channel later: replies may then arrive on another thread through ``on_receive``.
"""
from __future__ import annotations

import errno
from typing import Callable, Protocol

from ._ext import load
from .errors import errno_error

# up and the counts in C: the engine's native lane reads and counts them without a Python call
_ChannelState = load("_cdev").ChannelState


class Endpoint(Protocol):
    """The remote side of a channel (the emulated DSP's rpmsg endpoint)."""

    def receive(self, data: bytes, reply: Callable[[bytes], None], origin: object) -> None: ...


class Channel:
    """One rpmsg channel from a host driver to a remote endpoint."""

    def __init__(self, name: str, remote: Endpoint):
        self.name = name
        self._remote = remote
        self.on_receive: Callable[[bytes], None] | None = None
        # Counted without a lock: every thread sending on the channel passes here, and each
        # count is an atomic add (a route counts without the GIL). Never replaced: the engine's
        # native lane keeps it.
        self._st = _ChannelState()

    @property
    def up(self) -> bool:
        """False once the channel is removed (:meth:`remove`)."""
        return self._st.up

    @up.setter
    def up(self, value: bool) -> None:
        self._st.up = value

    @property
    def sent(self) -> int:
        """Messages sent so far."""
        return self._st.sent

    @property
    def received(self) -> int:
        """Replies delivered so far."""
        return self._st.received

    def send(self, data: bytes, origin: object = None) -> None:
        """Send one message; ``ENODEV`` once the channel is removed (DSP gone). ``origin`` is
        the sender's identity as the host side stamps it (opaque here, like an rpmsg source
        address): the remote end authorises on it, never on bytes a user could write."""
        if not self._st.up:
            raise errno_error(errno.ENODEV, f"rpmsg channel {self.name} is down")
        self._st.count_sent()
        self._remote.receive(data, self._deliver, origin)

    @property
    def native_remote(self):
        """The remote endpoint's native entry (an opaque capsule, passed through unopened:
        csrc/include/qdarpc/endpoint.h), or None. A sender that calls it counts its message
        and the reply in ``_st`` and checks ``up`` first, as :meth:`send` does."""
        return getattr(self._remote, "native", None)

    def _deliver(self, data: bytes) -> None:
        self._st.count_received()
        cb = self.on_receive
        if cb is not None:
            cb(data)

    def remove(self) -> None:
        """rpmsg remove (subsystem restart): later sends fail with ENODEV."""
        self.up = False
