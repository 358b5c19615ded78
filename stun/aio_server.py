"""asyncio face of the STUN server: :class:`StunServer`, one sans-IO
:class:`~stun.server.BindingServer` behind UDP, TCP and TLS listeners.

A UDP listener is a :class:`~stun.aio_sockets.UdpReader` that answers each request inline from
its socket. TCP and TLS connections are admitted when accepted, within the server's
:class:`~stun.limits.StreamLimits` (:mod:`stun.aio_streams`); each is cut into messages by a
:class:`~stun.framing.StreamDecoder` and closed when it cannot be framed, when its first message
is late, or after ``idle_timeout`` without a request; a client that does not read its answers is
not read either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any, cast

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
)
from .aio_streams import StreamListener, listen_stream
from .batch_io import DatagramIO, datagram_io
from .errors import DecodeError
from .framing import StreamDecoder
from .limits import Closure, StreamAdmission, StreamLimits
from .reader_errors import ReaderErrors
from .server import BindingServer, Outcome, ServerConfig

_log = logging.getLogger("icestack.stun")


def _answerer(server: BindingServer, io: DatagramIO, local: Address) -> DatagramHandler:
    """A :class:`UdpReader` handler that answers each request inline through ``io``."""
    respond = server.respond
    respond_plain = server.respond_plain
    send = io.send

    def answer(data: bytes, sockaddr: tuple[Any, ...], now: float) -> None:
        reply = respond_plain(data, sockaddr)
        if reply is None:
            reply = respond(data, local, Address(sockaddr[0], sockaddr[1]), now)
        if reply is not None:
            # A full socket buffer or an ICMP error: the client retransmits.
            with contextlib.suppress(OSError):
                send(reply, sockaddr)

    return answer


def _discovery_answerer(
    server: BindingServer, sock: socket.socket, sockets: dict[Address, socket.socket]
) -> DatagramHandler:
    """A :class:`UdpReader` handler for a behaviour-discovery server (RFC 5780): each answer
    leaves from the socket :meth:`BindingServer.answer` names, one of the server's four."""
    answer_of = server.answer
    local = _address(sock.getsockname())

    def answer(data: bytes, sockaddr: tuple[Any, ...], now: float) -> None:
        reply = answer_of(data, local, Address(sockaddr[0], sockaddr[1]), now)
        if reply is None:
            return
        sender = sockets.get(reply.local) if reply.local is not None else None
        if sender is not None:
            with contextlib.suppress(OSError):
                sender.sendto(reply.data, reply.remote)

    return answer


class _StreamServerProtocol(asyncio.Protocol):
    """One TCP or TLS connection to the server: frames in, answers out (RFC 8489 §6.2.2).

    It is closed if its first complete message does not come within ``first_message_timeout``,
    or no message comes for ``idle_timeout`` after that. When the client does not read its
    answers and more than ``write_buffer_limit`` bytes of them wait to be written, reading stops
    until they drain: the client's own requests then wait in its socket buffers, not in ours.
    """

    def __init__(self, owner: StunServer, local: Address) -> None:
        self.owner = owner
        self.local = local
        self.decoder = StreamDecoder()
        self.transport: asyncio.Transport | None = None
        self.remote = Address("", 0)
        self.deadline: asyncio.TimerHandle | None = None
        #: Whether reading stopped because the client does not read its answers.
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)
        self.remote = _address(transport.get_extra_info("peername"))
        stream.set_write_buffer_limits(high=self.owner.write_buffer_limit)
        self.owner._connections.add(self)
        self._arm(self.owner.limits.first_message_timeout, Closure.FIRST_MESSAGE_TIMEOUT)

    def _arm(self, delay: float, closure: Closure) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = asyncio.get_running_loop().call_later(delay, self._expire, closure)

    def _expire(self, closure: Closure) -> None:
        self.deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.owner.admission.closed[closure] += 1
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            frames = self.decoder.feed(data)
        except DecodeError:
            self.owner.server.stats.count(Outcome.STREAM_GARBAGE)
            self.transport.abort()
            return
        if not frames:  # a part of a message: no deadline moves for it
            return
        now = asyncio.get_running_loop().time()
        for frame in frames:
            try:
                answer = self.owner.server.respond(frame, self.local, self.remote, now, stream=True)
            except Exception as error:
                self.owner.reader_errors.contain(error, f"the connection from {self.remote}")
                continue
            if answer is not None:
                self.transport.write(answer)
        self._arm(self.owner.idle_timeout, Closure.IDLE)

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.paused = False
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.owner._connections.discard(self)


class StunServer(_Closing):
    """An asyncio STUN server: one :class:`BindingServer` behind any number of listeners.

    ``limits`` bound its TCP and TLS connections: how many, how many from one source, their TLS
    handshakes and the deadline of their first message (:class:`~stun.limits.StreamLimits`);
    ``idle_timeout`` closes a connection silent that long after a message, ``write_buffer_limit``
    stops reading a client that does not read its answers. ``batch_io=False`` reads and answers
    UDP one datagram per system call even where batches are available (:mod:`stun.batch_io`).

    A server whose config has ``behavior`` (RFC 5780) must listen over UDP on each of the four
    sockets of :attr:`stun.behavior.BehaviorAddresses.sockets`: an answer leaves from the one
    the request's CHANGE-REQUEST names.

    >>> async with StunServer() as server:  # doctest: +SKIP
    ...     await server.listen("udp", "127.0.0.1", 3478)
    ...     await server.serve_forever()
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        limits: StreamLimits | None = None,
        idle_timeout: float = 300.0,
        write_buffer_limit: int = 64 * 1024,
        batch_io: bool = True,
    ) -> None:
        self.server = BindingServer(config or ServerConfig())
        self.batch_io = batch_io
        self.limits = limits = limits or StreamLimits()
        #: The TCP and TLS connections held, by source, and what was refused or closed and why.
        self.admission = StreamAdmission(limits)
        self.idle_timeout = idle_timeout
        self.write_buffer_limit = write_buffer_limit
        self.listeners: list[Listener] = []
        self._udp: list[UdpReader] = []
        #: The UDP sockets by their address: where a behaviour-discovery answer may leave from.
        self._udp_sockets: dict[Address, socket.socket] = {}
        self._stream_listeners: list[StreamListener] = []
        self._connections: set[_StreamServerProtocol] = set()
        self._closed = asyncio.Event()
        #: Exceptions the Binding server raised on a datagram, contained and counted (a bug if
        #: any; :mod:`stun.reader_errors`).
        self.reader_errors = ReaderErrors()

    @property
    def connection_count(self) -> int:
        """TCP and TLS connections held now, TLS handshakes included: never more than
        ``limits.max_connections``."""
        return self.admission.connections

    @property
    def buffered_bytes(self) -> int:
        """Bytes of answers waiting to be written to TCP and TLS clients: about
        ``write_buffer_limit`` at most per connection, and the answers to one read."""
        return sum(
            connection.transport.get_write_buffer_size()
            for connection in self._connections
            if connection.transport is not None
        )

    @property
    def reading_paused(self) -> int:
        """Connections not read now, because their clients do not read their answers."""
        return sum(connection.paused for connection in self._connections)

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
            io = datagram_io(sock, batch=self.batch_io)
            local = _address(sock.getsockname())
            handler = (
                _answerer(self.server, io, local)
                if self.server.config.behavior is None
                else _discovery_answerer(self.server, sock, self._udp_sockets)
            )
            reader = UdpReader(sock, handler, errors=self.reader_errors, io=io)
            self._udp_sockets[reader.local] = sock
            self._udp.append(reader)
            result = Listener("udp", reader.local)
        else:
            stream = await listen_stream(
                host,
                port,
                lambda local: _StreamServerProtocol(self, local),
                admission=self.admission,
                ssl_context=ssl_context,
                reuse_port=reuse_port,
            )
            self._stream_listeners.append(stream)
            result = Listener(transport, stream.local)
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
        self._udp_sockets.clear()
        for stream in self._stream_listeners:
            stream.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        for stream in self._stream_listeners:
            await stream.wait_closed()
        self._stream_listeners.clear()
        self._closed.set()
