"""asyncio layer: :class:`UdpMux`, one UDP socket serving many :class:`~ice.aio.Connection`s —
one port for every ICE session of a server, behind a firewall that opens that port only.

Theory of operation. The mux binds its socket once (a fixed port, or one of a range) and reads
it on readiness in batches (:func:`~ice.base_sockets.read_datagrams`, the one function to swap
for batched system calls). Each datagram is routed by the sans-IO :class:`~ice.mux.MuxTable` —
a Binding request by its USERNAME's ufrag, anything else by its source address — to the base of
the session it belongs to; the batch's datagrams of each session are handed to that session's
base together (:meth:`~ice.base_sockets.BaseSocket.handle`), so a session pumps once per batch.
A connection made with ``Connection(..., mux=mux)`` gathers one host candidate, the mux's
address, registers its ufrag when gathering starts, moves to its new ufrag on :meth:`~ice.aio.
Connection.restart`, tells the table every address it sends to (so answers to its own checks
and consent come back to it), and leaves the table at once when it closes. What no session
owns is dropped and counted (:meth:`UdpMux.metrics`). Every session sends through the mux's one
:class:`~ice.outbox.Outbox`, so their datagrams share its batches.

ICE-lite (``AgentConfig(lite=True)``, RFC 8445 §2.5) is the natural mode of a server on a mux:
its address is public, it needs no checks of its own. A full agent works on a mux too.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import TracebackType
from typing import Any, Self

from stun.address import Address, normalize_host
from stun.batch_io import flush_pending
from stun.ports import PortRange

from .base_sockets import BaseSocket, bind_base, read_datagrams
from .mux import DropReason, MuxConfig, MuxTable
from .outbox import Outbox

__all__ = ["UdpMux"]


class UdpMux:
    """One UDP socket on ``host`` serving many connections (module docstring): ``port`` (0: an
    ephemeral one) or a free one of ``port_range``; ``config`` bounds its tables
    (:class:`~ice.mux.MuxConfig`: ``max_sessions``, refused past that with
    :class:`~ice.mux.MuxFull` when a connection starts gathering); ``batch_io=False``: one
    ``recvfrom``/``sendto`` per datagram even where batches are available. Close the
    connections before the mux."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        port_range: PortRange | None = None,
        config: MuxConfig | None = None,
        batch_io: bool = True,
    ) -> None:
        # A fixed port is a range of one: taken, it fails naming the port.
        sock = bind_base(host, port_range or ((port, port) if port else None))
        self.sock = sock
        #: What every session sends on the socket, in batches.
        self.outbox = Outbox(sock, batch_io=batch_io)
        bound_host, bound_port = sock.getsockname()[:2]
        #: The address every session on the mux offers as its host candidate.
        self.local = Address(normalize_host(bound_host), bound_port)
        self.table: MuxTable[BaseSocket] = MuxTable(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<UdpMux {self.local} sessions={len(self.table)}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ sessions

    def attach(self, base: BaseSocket, ufrag: str) -> None:
        """Serve ``base`` (a connection's base on this mux's socket), whose ufrag is ``ufrag``."""
        if self._closed:
            raise OSError(f"the mux on {self.local} is closed")
        self.table.register(base, ufrag)
        base.mux = self
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.sock.fileno(), self._read_ready)

    def rename(self, base: BaseSocket, ufrag: str) -> None:
        """The base's connection restarted with ``ufrag``."""
        if base in self.table:
            self.table.rename(base, ufrag)

    def detach(self, base: BaseSocket) -> None:
        """The connection closed (or dropped the base): forget it at once."""
        self.table.unregister(base)

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        datagrams = read_datagrams(self.outbox.io, self.local)
        if not datagrams:
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        route = self.table.route
        batches: defaultdict[BaseSocket, list[tuple[bytes, tuple[Any, ...]]]] = defaultdict(list)
        for data, sockaddr in datagrams:
            base = route(data, Address(sockaddr[0], sockaddr[1]))
            if base is not None:
                batches[base].append((data, sockaddr))
        for base, batch in batches.items():
            base.handle(batch, now)
        flush_pending()  # every session's answers to the batch, together

    # ------------------------------------------------------------------ the rest

    def metrics(self) -> dict[str, int]:
        """Sessions served, remote addresses bound, datagrams routed and dropped (by reason:
        ``dropped_unknown_ufrag``, ``dropped_no_username``, ``dropped_unknown_source``)."""
        table = self.table
        counts = {
            "sessions": len(table),
            "addresses": table.addresses,
            "routed": table.routed,
        }
        for reason in DropReason:
            counts["dropped_" + reason.value.replace("-", "_")] = table.dropped[reason]
        return counts

    def close(self) -> None:
        """Stop reading and close the socket (sessions still on it can no longer send)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.outbox.close()  # what is queued goes out first (ice.outbox)
        self.sock.close()
