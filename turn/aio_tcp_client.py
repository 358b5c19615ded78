"""asyncio face of TCP allocations (RFC 6062) for :class:`turn.TurnClient`: TCP connections to
and from peers through the relay, as asyncio streams.

A :class:`TurnClient <turn.TurnClient>` whose config asks for ``relay_transport=TCP`` allocates a
TCP relayed address over its TCP or TLS control connection. Then
:meth:`TurnClient.open_connection <turn.TurnClient.open_connection>` (permission, Connect, a new
data connection and its ConnectionBind) returns ``(reader, writer)`` for a peer, as
:func:`asyncio.open_connection` does, and :meth:`TurnClient.accept <turn.TurnClient.accept>`
binds the next peer that connected to the relayed address (a ConnectionAttempt). The streams are
asyncio's own: the reader holds at most about twice ``limit`` bytes before it stops reading (and
TCP's window holds the peer back), ``writer.drain()`` waits while the server is slow to take
bytes, ``writer.close()`` closes the data connection and so the server's connection to the peer,
and the peer closing is end-of-file on the reader.

This module owns the data connections and nothing else (architecture.md §2): what to send on one
and what its answers mean is the sans-IO :class:`~turn.client.tcp.ConnectionBinding`'s, and every
wait ends: opening and binding a data connection within the transaction timeout Ti (39.5 s by
default, RFC 8489 §6.2.2), a Connect within Ti, :meth:`TcpConnections.accept` when the
allocation ends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from stun import Address, DecodeError, StunError
from stun.message import HEADER_SIZE

from .client.tcp import ConnectionBinding, message_length
from .errors import PeerConnectionFailed, TurnError
from .events import (
    ConnectFailed,
    ConnectionAttempted,
    ConnectionBindFailed,
    ConnectionBound,
    PeerConnected,
    TurnClientEvent,
)

if TYPE_CHECKING:
    from .aio import TurnClient

#: The events of TCP allocations, which :class:`TcpConnections` handles.
TCP_EVENTS = (PeerConnected, ConnectFailed, ConnectionAttempted)
#: asyncio's default: a reader holds up to about twice this before it stops reading.
DEFAULT_LIMIT = 2**16


class PeerStream(NamedTuple):
    """A TCP connection with a peer through the relay: who, and the asyncio streams."""

    peer: Address
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


async def read_message(reader: asyncio.StreamReader) -> bytes:
    """One STUN message from a stream (the header says how long it is). Raises
    :class:`stun.DecodeError` for bytes that cannot start one, and
    :class:`asyncio.IncompleteReadError` if the stream ends first."""
    header = await reader.readexactly(HEADER_SIZE)
    return header + await reader.readexactly(message_length(header) - HEADER_SIZE)


class TcpConnections:
    """The TCP side of one :class:`~turn.TurnClient`: Connects waiting for their answer, peers
    that connected and wait for :meth:`accept` (at most ``max_pending``; more are dropped and
    counted in :attr:`dropped`, and the server closes them unbound), and the data connections
    handed out, closed when the allocation ends."""

    def __init__(
        self,
        client: TurnClient,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        max_pending: int = 32,
    ) -> None:
        self._client = client
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self.max_pending = max_pending
        self._connects: dict[Address, asyncio.Future[int]] = {}
        self._attempts: deque[ConnectionAttempted] = deque()
        self._attempt_arrived = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ended: TurnError | None = None
        #: ConnectionAttempts dropped because ``max_pending`` were waiting for :meth:`accept`.
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Peers that connected and wait for :meth:`accept`."""
        return len(self._attempts)

    @property
    def open(self) -> int:
        """Data connections handed out and not closed."""
        self._writers = {writer for writer in self._writers if not writer.is_closing()}
        return len(self._writers)

    # ------------------------------------------------------------------ the two ways in

    async def open_connection(
        self, peer: Address, *, limit: int = DEFAULT_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to ``peer`` through the relay (RFC 6062 §4.3, §4.4)."""
        client = self._client
        try:
            await client.create_permission(peer)
        except StunError as error:
            raise PeerConnectionFailed(peer, client.server, "CreatePermission", error) from None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        client.allocation.connect(peer, asyncio.get_running_loop().time())
        self._connects[peer] = future
        client._pump()
        connection_id = await future
        return await self._bind(peer, connection_id, limit)

    async def accept(self, *, limit: int = DEFAULT_LIMIT) -> PeerStream:
        """The next peer that connected to the relayed address, bound (RFC 6062 §4.4). Raises
        :class:`turn.PeerConnectionFailed` if the server no longer holds its connection, and
        :class:`turn.TurnError` once the allocation has ended."""
        while not self._attempts:
            if self._ended is not None:
                raise self._ended
            self._attempt_arrived.clear()
            await self._attempt_arrived.wait()
        attempt = self._attempts.popleft()
        reader, writer = await self._bind(attempt.peer, attempt.connection_id, limit)
        return PeerStream(attempt.peer, reader, writer)

    # ------------------------------------------------------------------ the driver

    def handle(self, event: TurnClientEvent) -> None:
        """An event of :data:`TCP_EVENTS` from the allocation."""
        if isinstance(event, ConnectionAttempted):
            if len(self._attempts) < self.max_pending:
                self._attempts.append(event)
                self._attempt_arrived.set()
            else:
                self.dropped += 1
            return
        if not isinstance(event, PeerConnected | ConnectFailed):
            return
        future = self._connects.pop(event.peer, None)
        if future is None or future.done():
            return
        if isinstance(event, PeerConnected):
            future.set_result(event.connection_id)
        else:
            server = self._client.server
            future.set_exception(PeerConnectionFailed(event.peer, server, "Connect", event.error))

    def end(self, error: TurnError) -> None:
        """The allocation is gone: wake every waiter with ``error``, close every data
        connection (the server closes them too)."""
        if self._ended is None:
            self._ended = error
        for future in self._connects.values():
            if not future.done():
                future.set_exception(error)
        self._connects.clear()
        self._attempt_arrived.set()
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _bind(
        self, peer: Address, connection_id: int, limit: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a data connection to the server and ConnectionBind it to ``connection_id``."""
        client = self._client
        now = asyncio.get_running_loop().time()
        binding = client.allocation.bind_connection(connection_id, now)
        server = binding.server
        ti = client.allocation.config.stun.transaction.reliable_timeout
        try:
            async with asyncio.timeout(ti):
                reader, writer = await asyncio.open_connection(
                    server.host,
                    server.port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname if self._ssl else None,
                    limit=limit,
                )
        except TimeoutError:
            error = TimeoutError(f"the data connection to {server} took more than {ti:g} s")
            raise PeerConnectionFailed(peer, server, "ConnectionBind", error) from None
        except OSError as error:
            raise PeerConnectionFailed(peer, server, "ConnectionBind", error) from None
        try:
            async with asyncio.timeout(ti + 1.0):  # the machine's own Ti ends it first
                await _drive(binding, reader, writer, peer)
        except BaseException as error:
            writer.close()
            if isinstance(error, TimeoutError):
                raise PeerConnectionFailed(peer, server, "ConnectionBind", error) from None
            raise
        if self._ended is not None:
            writer.close()
            raise self._ended
        self._writers = {w for w in self._writers if not w.is_closing()}  # forget closed ones
        self._writers.add(writer)
        return reader, writer


async def _drive(
    binding: ConnectionBinding,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: Address,
) -> None:
    """Run ``binding`` on the data connection until it is bound; raise
    :class:`turn.PeerConnectionFailed` if it fails."""
    loop = asyncio.get_running_loop()
    while True:
        for datagram in binding.datagrams_to_send(loop.time()):
            writer.write(datagram.data)
        while (event := binding.next_event()) is not None:
            if isinstance(event, ConnectionBound):
                return
            if isinstance(event, ConnectionBindFailed):
                raise PeerConnectionFailed(peer, binding.server, "ConnectionBind", event.error)
        try:
            async with asyncio.timeout_at(binding.get_timer()):
                message = await read_message(reader)
        except TimeoutError:
            binding.handle_timer(loop.time())
            continue
        except DecodeError as error:
            raise PeerConnectionFailed(peer, binding.server, "ConnectionBind", error) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            binding.connection_lost(loop.time())
            continue
        binding.receive_datagram(message, None, binding.server, loop.time())
