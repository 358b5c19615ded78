"""asyncio layer: :class:`Mux`, one UDP socket and one listening TCP socket serving many
:class:`~ice.aio.Connection`\\ s — one port for every ICE session of a server (two: one UDP, one
TCP), behind a firewall that opens those only. :class:`UdpMux` is the UDP side alone.

Theory of operation. The mux binds its UDP socket once (a fixed port, or one of a range) and
reads it on readiness in batches (:func:`~ice.base_sockets.read_datagrams`, the one function to
swap for batched system calls). Each datagram is routed by the sans-IO :class:`~ice.mux.MuxTable`
— a Binding request by its USERNAME's ufrag, anything else by its source address — to the base
of the session it belongs to; the batch's datagrams of each session are handed to that session's
base together (:meth:`~ice.base_sockets.BaseSocket.handle`), so a session pumps once per batch.
A connection made with ``Connection(..., mux=mux)`` gathers one UDP host candidate, the mux's
address, registers its ufrag when gathering starts, moves to its new ufrag on :meth:`~ice.aio.
Connection.restart`, tells the table every address it sends to (so answers to its own checks
and consent come back to it), and leaves the table at once when it closes. What no session
owns is dropped and counted (:meth:`Mux.metrics`, :meth:`Mux.render_metrics`). Every session
sends through the mux's one :class:`~ice.outbox.Outbox`, so their datagrams share its batches.

The TCP side (:mod:`ice.aio_mux_tcp`, sans-IO :mod:`ice.mux_tcp`) listens on a port of its own
(the agent tells its bases apart by address, so a TCP base cannot share the UDP base's port
number): every connection on the mux also offers a passive ICE-TCP host candidate (RFC 6544
§4.5) there. A connection accepted on it belongs to no session until its first framed Binding
request, routed by the same ufrag table; it is then the session's, seen by its agent as any
accepted ICE-TCP connection. A session on a mux offers no active or simultaneous-open TCP
candidates: those would leave from other ports.

ICE-lite (``AgentConfig(lite=True)``, RFC 8445 §2.5) is the natural mode of a server on a mux:
its address is public, it needs no checks of its own. A full agent works on a mux too.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from stun.address import Address, normalize_host
from stun.batch_io import flush_pending, hold_flush
from stun.metrics_http import Exposition, labels
from stun.ports import PortRange

from .aio_mux_tcp import MuxListener
from .base_sockets import BaseSocket, bind_base, read_datagrams
from .errors import LocalProtocolError
from .mux import DropReason, MuxConfig, MuxTable
from .mux_tcp import TcpDropReason, TcpMuxConfig, TcpMuxTable
from .outbox import Outbox
from .tcp_sockets import TcpSockets, listen_base

__all__ = ["Mux", "UdpMux", "render_metrics"]

Table = TypeVar("Table")
Reason = TypeVar("Reason", bound=enum.Enum)

#: Connections waiting to be accepted on the mux's TCP port.
_TCP_BACKLOG = 1024


class Mux:
    """One UDP socket on ``host`` — and, unless ``tcp_port`` is ``None``, one listening TCP
    socket — serving many connections (module docstring).

    ``port``: the UDP port (0: an ephemeral one, or a free one of ``port_range``). ``tcp_port``:
    the TCP port, 0 for an ephemeral one (or one of ``port_range``) other than the UDP port.
    ``config`` bounds the session table (:class:`~ice.mux.MuxConfig`: ``max_sessions``, refused
    past that with :class:`~ice.mux.MuxFull` when a connection starts gathering);
    ``tcp_config`` the TCP side (:class:`~ice.mux_tcp.TcpMuxConfig`: connections waiting for
    their first request, and for how long); ``batch_io=False``: one ``recvfrom``/``sendto`` per
    datagram even where batches are available. Close the connections before the mux."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        tcp_port: int | None = 0,
        port_range: PortRange | None = None,
        config: MuxConfig | None = None,
        tcp_config: TcpMuxConfig | None = None,
        batch_io: bool = True,
    ) -> None:
        # A fixed port is a range of one: taken, it fails naming the port.
        sock = bind_base(host, port_range or ((port, port) if port else None))
        self.sock = sock
        #: What every session sends on the socket, in batches.
        self.outbox = Outbox(sock, batch_io=batch_io, shared=True)
        bound_host, bound_port = sock.getsockname()[:2]
        #: The address every session on the mux offers as its UDP host candidate.
        self.local = Address(normalize_host(bound_host), bound_port)
        self.table: MuxTable[BaseSocket] = MuxTable(config)
        #: The TCP side of each session (its connections are handed there).
        self._tcp_sessions: dict[BaseSocket, TcpSockets] = {}
        #: The TCP side of the mux (``None``: UDP only).
        self.tcp: MuxListener | None = None
        if tcp_port is not None:
            try:
                self.tcp = self._listen(tcp_port, port_range, tcp_config)
            except BaseException:
                sock.close()
                raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _listen(
        self, tcp_port: int, port_range: PortRange | None, tcp_config: TcpMuxConfig | None
    ) -> MuxListener:
        if tcp_port == self.local.port:
            raise LocalProtocolError(
                f"tcp_port {tcp_port} is the UDP port: the TCP side needs a port of its own"
            )
        tcp_range = (tcp_port, tcp_port) if tcp_port else port_range
        sock = listen_base(
            self.local.host, avoid=self.local.port, port_range=tcp_range, backlog=_TCP_BACKLOG
        )
        return MuxListener(sock, TcpMuxTable(self.table, tcp_config), self._tcp_sessions)

    @property
    def tcp_local(self) -> Address | None:
        """The address of every session's passive TCP candidate (``None``: UDP only)."""
        return None if self.tcp is None else self.tcp.local

    def __repr__(self) -> str:
        tcp = "" if self.tcp is None else f" tcp {self.tcp.local}"
        return f"<{type(self).__name__} udp {self.local}{tcp} sessions={len(self.table)}>"

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

    def attach(self, base: BaseSocket, ufrag: str, tcp: TcpSockets | None = None) -> None:
        """Serve ``base`` (a connection's base on this mux's socket), whose ufrag is ``ufrag``;
        with ``tcp``, hand that connection's TCP side the TCP connections routed to it."""
        if self._closed:
            raise OSError(f"the mux on {self.local} is closed")
        self.table.register(base, ufrag)
        base.mux = self
        if tcp is not None and self.tcp is not None:
            self._tcp_sessions[base] = tcp
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self.sock.fileno(), self._read_ready)
            if self.tcp is not None:
                self.tcp.start(self._loop)

    def rename(self, base: BaseSocket, ufrag: str) -> None:
        """The base's connection restarted with ``ufrag``."""
        if base in self.table:
            self.table.rename(base, ufrag)

    def detach(self, base: BaseSocket) -> None:
        """The connection closed (or dropped the base): forget it at once."""
        self.table.unregister(base)
        self._tcp_sessions.pop(base, None)

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
        hold_flush()
        try:
            for base, batch in batches.items():
                base.handle(batch, now)
        finally:
            flush_pending()  # every session's answers to the batch, together

    # ------------------------------------------------------------------ the rest

    def metrics(self) -> dict[str, int]:
        """Sessions served, remote addresses bound, requests sent waiting for their answer
        (``transactions``), datagrams routed and dropped (by reason:
        ``dropped_unknown_ufrag``, ``dropped_no_username``, ``dropped_unknown_source``); with a
        TCP side, TCP connections accepted, routed to a session, waiting for their first request
        and dropped (``tcp_dropped_<reason>``, :class:`~ice.mux_tcp.TcpDropReason`)."""
        table = self.table
        counts = {
            "sessions": len(table),
            "addresses": table.addresses,
            "transactions": table.transactions,
            "routed": table.routed,
        }
        for reason in DropReason:
            counts["dropped_" + _name(reason.value)] = table.dropped[reason]
        if self.tcp is not None:
            tcp = self.tcp.table
            counts |= {
                "tcp_accepted": tcp.accepted_count,
                "tcp_routed": tcp.routed,
                "tcp_waiting": len(tcp),
            }
            for tcp_reason in TcpDropReason:
                counts["tcp_dropped_" + _name(tcp_reason.value)] = tcp.dropped[tcp_reason]
        return counts

    def render_metrics(self) -> str:
        """:meth:`metrics` in the Prometheus text format (:func:`render_metrics`), for
        :func:`stun.metrics_http.serve_metrics` or a TURN server's page."""
        return render_metrics([self])

    def close(self) -> None:
        """Stop reading and close the sockets (sessions still on it can no longer send; TCP
        connections they already have stay theirs)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.outbox.close()  # what is queued goes out first (ice.outbox)
        self.sock.close()
        if self.tcp is not None:
            self.tcp.close()


class UdpMux(Mux):
    """The UDP side of a :class:`Mux` alone: sessions on it offer UDP candidates only."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        port_range: PortRange | None = None,
        config: MuxConfig | None = None,
        batch_io: bool = True,
    ) -> None:
        super().__init__(
            host, port, tcp_port=None, port_range=port_range, config=config, batch_io=batch_io
        )


def _name(label: str) -> str:
    return label.replace("-", "_")


def render_metrics(muxes: Iterable[Mux]) -> str:
    """The metrics of ``muxes`` in the Prometheus text exposition format (0.0.4), each sample
    labelled with its mux's UDP address (``mux="host:port"``): one part of a page, however many
    muxes a process runs."""
    muxes = list(muxes)
    udp = [(str(mux.local), mux.table) for mux in muxes]
    tcp = [(str(mux.local), mux.tcp.table) for mux in muxes if mux.tcp is not None]
    page = Exposition("icestack_mux_")
    metric = page.metric
    metric("sessions", "gauge", "ICE sessions served.", _each(udp, len))
    metric(
        "addresses", "gauge", "Remote addresses bound to sessions.",
        _each(udp, lambda table: table.addresses),
    )  # fmt: skip
    metric(
        "transactions_waiting", "gauge", "Requests sent whose answer is routed by transaction ID.",
        _each(udp, lambda table: table.transactions),
    )  # fmt: skip
    metric(
        "datagrams_routed_total", "counter", "Datagrams routed to a session.",
        _each(udp, lambda table: table.routed),
    )  # fmt: skip
    metric(
        "datagrams_dropped_total", "counter", "Datagrams no session owns, by reason.",
        _by_reason([(mux, table.dropped) for mux, table in udp], DropReason),
    )  # fmt: skip
    if tcp:
        metric(
            "tcp_connections_accepted_total", "counter", "TCP connections accepted.",
            _each(tcp, lambda table: table.accepted_count),
        )  # fmt: skip
        metric(
            "tcp_connections_routed_total", "counter", "TCP connections handed to a session.",
            _each(tcp, lambda table: table.routed),
        )  # fmt: skip
        metric(
            "tcp_connections_waiting", "gauge", "TCP connections waiting for a first request.",
            _each(tcp, len),
        )  # fmt: skip
        metric(
            "tcp_connections_dropped_total", "counter",
            "TCP connections closed before a session had them, by reason.",
            _by_reason([(mux, table.dropped) for mux, table in tcp], TcpDropReason),
        )  # fmt: skip
    return page.text()


def _each(tables: list[tuple[str, Table]], value: Callable[[Table], int]) -> dict[str, int]:
    """One sample per mux."""
    return {labels(mux=mux): value(table) for mux, table in tables}


def _by_reason(counts: list[tuple[str, Counter[Reason]]], reasons: type[Reason]) -> dict[str, int]:
    """One sample per mux and reason."""
    return {
        labels(mux=mux, reason=_name(reason.value)): counted[reason]
        for mux, counted in counts
        for reason in reasons
    }
