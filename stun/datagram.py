"""The unit every sans-IO machine hands to its driver: bytes, the local socket, the remote peer.

An ICE agent sends from several local sockets and a TURN allocation wraps relayed traffic itself,
so one driver loop serves every machine by sending ``data`` from ``local`` to ``remote``
(architecture.md §2). ``local`` is ``None`` when the machine has a single socket and does not care.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from .address import Address


class Datagram(NamedTuple):
    """One datagram (or one framed message on a stream) to send or that was received."""

    data: bytes
    local: Address | None
    remote: Address


class Machine(Protocol):
    """The five verbs every sans-IO state machine has (architecture.md §2).

    One driver loop — asyncio, :mod:`ice.netsim`, or a user's own — serves any machine with them:
    feed what arrives, send what it drains, call it back at its timer, read its events.
    """

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None: ...

    def datagrams_to_send(self, now: float) -> list[Datagram]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> object | None: ...
