"""asyncio side of TCP relays (RFC 6062): listening on relayed addresses, connecting to peers from
them, and splicing each peer connection to its client data connection.

:class:`TcpRelays` is the :class:`~turn.server.connections.TcpListeners` of
:class:`~turn.server.aio.TurnServer` and carries out the core's
:class:`~turn.server.connections.TcpCommand`\\ s; every decision stays in the core (see
:mod:`turn.server.connections` for the commands and notifications). What it owns:

* **Listeners.** A TCP allocation's relayed address is bound twice: for UDP by
  :class:`~turn.server.aio_udp.UdpRelays` (whose socket holds the port against other processes and
  workers, and whose datagrams the core drops), and for TCP here, listening, with ``SO_REUSEADDR``
  and ``SO_REUSEPORT`` so that connections to peers can be opened from the same address (§5.2:
  "the local endpoint is the relayed transport address"). A connection accepted there is reported
  to the core at once; the core's ``None`` closes it.
* **Peer connections** (:class:`PeerConnectionProtocol`), opened for :class:`OpenPeerConnection`
  or accepted, are not read until spliced: what a peer sends before the ConnectionBind waits in
  the kernel, and TCP's window holds the peer back (the buffering of §5.2, §5.3).
* **Splicing.** For :class:`SpliceConnection` the client stream named by the 5-tuple (a
  :class:`~turn.server.aio._StreamClient` that just answered a ConnectionBind) stops framing STUN
  and hands its bytes to the peer connection, and the peer's bytes go to it. Backpressure both
  ways: a side whose write buffer passes the server's ``write_buffer_limit`` stops the other from
  being read until it drains; the core's ``stream_relayed`` answer pauses reading to keep the
  allocation's bandwidth limit. When either side closes (or sends EOF), both close (§5.5).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from stun import Address, make_address
from stun.aio import tcp_socket
from stun.aio_streams import AcceptLoop

from .connections import ClosePeerConnection, OpenPeerConnection, SpliceConnection, TcpCommand

if TYPE_CHECKING:
    from .aio import TurnServer, _StreamClient

#: Connections accepted on one relayed address per readiness event, before others get a turn.
_ACCEPTS_PER_EVENT = 16
#: The backlog of a relayed address's listening socket.
_BACKLOG = 16

#: Whether TCP relays can run here: opening connections from a listening address needs it.
AVAILABLE = hasattr(socket, "SO_REUSEPORT")


def _relay_socket(relay: Address) -> socket.socket:
    """A non-blocking TCP socket bound to ``relay``, sharing it with the listener there, with
    Nagle's algorithm off (peer connections and what they accept)."""
    family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
    sock = tcp_socket(family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((relay.host, relay.port))
    except OSError:
        sock.close()
        raise
    return sock


class _Reader:
    """Reads a transport while no reason to pause stands (backpressure, bandwidth, unbound)."""

    __slots__ = ("reasons", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self.reasons and not self.transport.is_closing():
            self.transport.pause_reading()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.reasons:
            return
        self.reasons.discard(reason)
        if not self.reasons and not self.transport.is_closing():
            self.transport.resume_reading()


class PeerConnectionProtocol(asyncio.Protocol):
    """One peer connection of a TCP allocation, named by its CONNECTION-ID, and the client data
    connection spliced to it (once there is one)."""

    def __init__(self, relays: TcpRelays, connection_id: int) -> None:
        self.relays = relays
        self.id = connection_id
        self.transport: asyncio.Transport | None = None
        self.reader: _Reader | None = None
        #: The client data connection and who reads it, once spliced.
        self.client: _StreamClient | None = None
        self.client_reader: _Reader | None = None
        #: What the client sent before this connection's transport existed.
        self.early: list[bytes] = []
        #: Connecting or wrapping the socket in a transport.
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the peer's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)
        self.reader = _Reader(stream)
        stream.set_write_buffer_limits(high=self.relays.server.write_buffer_limit)
        if self.client is None:
            self.reader.pause("unbound")
            return
        for data in self.early:
            stream.write(data)
        self.early.clear()
        if self.client_reader is not None:
            self.client_reader.resume("peer not ready")

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.transport is None:
            return
        client.transport.write(data)
        self._pace(len(data), to_peer=False)

    def pause_writing(self) -> None:
        if self.client_reader is not None:
            self.client_reader.pause("peer full")

    def resume_writing(self) -> None:
        if self.client_reader is not None:
            self.client_reader.resume("peer full")

    def connection_lost(self, exc: Exception | None) -> None:
        self.relays._lost(self)

    # ------------------------------------------------------------------ the client's side

    def splice(self, client: _StreamClient) -> None:
        """Join the client data connection: read both from now on."""
        assert client.transport is not None
        self.client = client
        client.peer = self
        client.transport.set_write_buffer_limits(high=self.relays.server.write_buffer_limit)
        self.client_reader = _Reader(client.transport)
        if self.transport is None:
            self.client_reader.pause("peer not ready")
        elif self.reader is not None:
            self.reader.resume("unbound")

    def from_client(self, data: bytes) -> None:
        """Bytes from the client data connection, as-is to the peer (§5.4)."""
        if self.transport is None:
            self.early.append(data)
            return
        self.transport.write(data)
        self._pace(len(data), to_peer=True)

    def client_full(self, full: bool) -> None:
        """The client data connection's write buffer passed (or fell below) its limit."""
        if self.reader is not None:
            (self.reader.pause if full else self.reader.resume)("client full")

    def _pace(self, size: int, *, to_peer: bool) -> None:
        """Count spliced bytes; stop reading their source for as long as the core says."""
        server = self.relays.server
        try:
            delay = server.core.stream_relayed(self.id, size, to_peer, server.loop.time())
        except Exception as error:
            server.reader_errors.contain(error, f"peer connection {self.id:#010x}")
            return
        reader = self.client_reader if to_peer else self.reader
        if delay > 0 and reader is not None:
            reader.pause("bandwidth")
            server.loop.call_later(delay, reader.resume, "bandwidth")

    def close(self) -> None:
        """Close both sides (buffered bytes are still written first)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()


class TcpRelays:
    """The TCP side of a :class:`~turn.server.aio.TurnServer`'s relayed addresses (see the
    module docstring): listeners, peer connections, splices."""

    def __init__(self, server: TurnServer) -> None:
        self.server = server
        #: What accepts on each relayed address.
        self.listeners: dict[Address, AcceptLoop] = {}
        #: Peer connections by CONNECTION-ID.
        self.peers: dict[int, PeerConnectionProtocol] = {}

    # ------------------------------------------------------------------ TcpListeners

    def listen(self, relay: Address) -> bool:
        """Start accepting peers' connections on ``relay`` (RFC 6062 §5.1)."""
        stats = self.server.transport_stats
        try:
            sock = _relay_socket(relay)
            try:
                sock.listen(_BACKLOG)
            except OSError:
                sock.close()
                raise
        except OSError:
            stats.relay_failures += 1
            return False

        def failed(error: OSError) -> None:
            stats.peer_accept_failures += 1

        self.listeners[relay] = AcceptLoop(
            sock,
            lambda conn, sockaddr: self._accepted(relay, conn, sockaddr),
            per_event=_ACCEPTS_PER_EVENT,
            after=self.server._after_batch,
            on_failure=failed,
        )
        return True

    def stop_listening(self, relay: Address) -> None:
        """Stop accepting on ``relay`` (once the server is closing, there may be nothing left to
        stop); connections already accepted are the core's to close."""
        accepting = self.listeners.pop(relay, None)
        if accepting is not None:
            accepting.close()

    def _accepted(self, relay: Address, conn: socket.socket, sockaddr: tuple[Any, ...]) -> None:
        """A peer connected to ``relay``: the core says whether it may stay (§5.3)."""
        server = self.server
        peer = make_address(sockaddr[0], sockaddr[1])
        try:
            connection_id = server.core.peer_connection_arrived(relay, peer, server.loop.time())
        except Exception as error:
            server.reader_errors.contain(error, f"TCP relay {relay}")
            connection_id = None
        if connection_id is None:
            conn.close()
            return
        conn.setblocking(False)
        protocol = PeerConnectionProtocol(self, connection_id)
        self.peers[connection_id] = protocol
        self._start(protocol, self._adopt(protocol, conn))

    # ------------------------------------------------------------------ commands

    def run(self, command: TcpCommand) -> None:
        """Carry out one of the core's commands."""
        if isinstance(command, OpenPeerConnection):
            protocol = PeerConnectionProtocol(self, command.connection_id)
            self.peers[command.connection_id] = protocol
            self._start(protocol, self._open(protocol, command.relay, command.peer))
        elif isinstance(command, SpliceConnection):
            self._splice(command)
        elif isinstance(command, ClosePeerConnection):
            closing = self.peers.pop(command.connection_id, None)
            if closing is not None:
                closing.close()

    def _start(self, protocol: PeerConnectionProtocol, work: Coroutine[Any, Any, None]) -> None:
        protocol.task = self.server.loop.create_task(work)

    async def _open(self, protocol: PeerConnectionProtocol, relay: Address, peer: Address) -> None:
        """Connect from the relayed address to the peer (§5.2), then tell the core how it went."""
        loop = self.server.loop
        sock: socket.socket | None = None
        try:
            sock = _relay_socket(relay)
            await loop.sock_connect(sock, (peer.host, peer.port))
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except asyncio.CancelledError:
            if sock is not None:
                sock.close()
            raise
        except OSError:
            if sock is not None:
                sock.close()
            if self.peers.get(protocol.id) is protocol:
                del self.peers[protocol.id]
                self.server.core.peer_connect_failed(protocol.id, loop.time())
                self.server._after_batch()
            return
        self.server.core.peer_connected(protocol.id, loop.time())
        self.server._after_batch()

    async def _adopt(self, protocol: PeerConnectionProtocol, conn: socket.socket) -> None:
        """Wrap an accepted peer connection in a transport (read once spliced)."""
        try:
            await self.server.loop.connect_accepted_socket(lambda: protocol, conn)
        except asyncio.CancelledError:
            conn.close()
            raise
        except OSError:
            conn.close()
            self._lost(protocol)

    def _splice(self, command: SpliceConnection) -> None:
        client, server, _ = command.client
        stream = self.server._streams.get((client, server))
        protocol = self.peers.get(command.connection_id)
        if stream is None or stream.transport is None or protocol is None:
            # Either side is already gone; its close, reported or about to be, ends the other.
            if protocol is not None:
                self._lost(protocol)
            elif stream is not None and stream.transport is not None:
                stream.transport.close()
            return
        protocol.splice(stream)

    def _lost(self, protocol: PeerConnectionProtocol) -> None:
        """The peer connection closed on its own: tell the core, close the client side."""
        if self.peers.get(protocol.id) is not protocol:
            return  # closed by a command: the core knows
        del self.peers[protocol.id]
        server = self.server
        protocol.close()
        server.core.peer_connection_closed(protocol.id, server.loop.time())
        server._after_batch()

    def close(self) -> None:
        """Stop every listener and close every peer connection."""
        for relay in list(self.listeners):
            self.stop_listening(relay)
        peers, self.peers = self.peers, {}
        for protocol in peers.values():
            protocol.close()
