"""The unit every sans-IO machine hands to its driver: bytes, the local socket, the remote peer.

An ICE agent sends from several local sockets and a TURN allocation wraps relayed traffic itself,
so one driver loop serves every machine by sending ``data`` from ``local`` to ``remote``
(design.md §2). ``local`` is ``None`` when the machine has a single socket and does not care.
"""

from __future__ import annotations

from typing import NamedTuple

from .address import Address


class Datagram(NamedTuple):
    """One datagram (or one framed message on a stream) to send or that was received."""

    data: bytes
    local: Address | None
    remote: Address
