"""asyncio face of the STUN server: :class:`StunServer`, one sans-IO
:class:`~stun.server.BindingServer` behind UDP, TCP and TLS listeners.

A UDP listener is a :class:`~stun.aio_sockets.UdpReader` that answers each request inline from
its socket; a TCP or TLS connection is cut into messages by a :class:`~stun.framing.StreamDecoder`
and closed when it cannot be framed, or after ``idle_timeout`` without a request. At most
``max_connections`` are open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from .address import Address
from .aio_sockets import (
    DatagramHandler,
    Listener,
    Transport,
    UdpReader,
    _address,
    _Closing,
    bind_udp,
    check_listener_arguments,
    listen_stream,
)
from .errors import DecodeError
from .framing import StreamDecoder
from .reader_errors import ReaderErrors
from .server import BindingServer, Outcome, ServerConfig

_log = logging.getLogger("icestack.stun")


def _answerer(server: BindingServer, sock: socket.socket) -> DatagramHandler:
    """A :class:`UdpReader` handler that answers each request inline from ``sock``."""
    respond = server.respond
    sendto = sock.sendto
    local = _address(sock.getsockname())

    def answer(data: bytes, sockaddr: tuple[Any, ...], now: float) -> None:
        reply = respond(data, local, Address(sockaddr[0], sockaddr[1]), now)
        if reply is not None:
            # A full socket buffer or an ICMP error: the client retransmits.
            with contextlib.suppress(OSError):
                sendto(reply, sockaddr)

    return answer


class _StreamServerProtocol(asyncio.Protocol):
    """One TCP or TLS connection to the server: frames in, answers out (RFC 8489 §6.2.2)."""

    def __init__(self, owner: StunServer, local: Address) -> None:
        self.owner = owner
        self.local = local
        self.decoder = StreamDecoder()
        self.transport: asyncio.Transport | None = None
        self.remote = Address("", 0)
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = _address(peer)
        if not self.owner._admit(self):
            transport.close()
            return
        self._arm_idle_timer()

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.owner.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            frames = self.decoder.feed(data)
        except DecodeError:
            self.owner.server.stats.count(Outcome.STREAM_GARBAGE)
            self.transport.close()
            return
        now = asyncio.get_running_loop().time()
        for frame in frames:
            try:
                answer = self.owner.server.respond(frame, self.local, self.remote, now)
            except Exception as error:
                self.owner.reader_errors.contain(error, f"the connection from {self.remote}")
                continue
            if answer is not None:
                self.transport.write(answer)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.owner._connections.discard(self)


class StunServer(_Closing):
    """An asyncio STUN server: one :class:`BindingServer` behind any number of listeners.

    >>> async with StunServer() as server:  # doctest: +SKIP
    ...     await server.listen("udp", "127.0.0.1", 3478)
    ...     await server.serve_forever()
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 300.0,
    ) -> None:
        self.server = BindingServer(config or ServerConfig())
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.listeners: list[Listener] = []
        self._udp: list[UdpReader] = []
        self._stream_servers: list[asyncio.Server] = []
        self._connections: set[_StreamServerProtocol] = set()
        self._closed = asyncio.Event()
        #: Exceptions the Binding server raised on a datagram, contained and counted (a bug if
        #: any; :mod:`stun.reader_errors`).
        self.reader_errors = ReaderErrors()

    @property
    def connection_count(self) -> int:
        """TCP and TLS connections open now, never more than ``max_connections``."""
        return len(self._connections)

    def _admit(self, connection: _StreamServerProtocol) -> bool:
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(connection)
        return True

    async def listen(
        self,
        transport: Transport,
        host: str,
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> Listener:
        """Open one listener; ``port=0`` picks a free one. TLS needs ``ssl_context``."""
        check_listener_arguments(transport, ssl_context)
        if transport == "udp":
            sock = bind_udp(host, port, reuse_port=reuse_port)
            reader = UdpReader(sock, _answerer(self.server, sock), errors=self.reader_errors)
            self._udp.append(reader)
            result = Listener("udp", reader.local)
        else:
            server, local = await listen_stream(
                host,
                port,
                lambda local: _StreamServerProtocol(self, local),
                ssl_context=ssl_context,
                reuse_port=reuse_port,
            )
            self._stream_servers.append(server)
            result = Listener(transport, local)
        self.listeners.append(result)
        _log.info("STUN server listening on %s", result)
        return result

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop every listener and close every connection."""
        for udp in self._udp:
            udp.close()
        self._udp.clear()
        for server in self._stream_servers:
            server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._stream_servers:
            await server.wait_closed()
        self._stream_servers.clear()
        self._closed.set()
