"""asyncio face of STUN: a client over UDP, TCP and TLS, and a server with listeners for each.

This layer owns sockets and the event loop's clock and nothing else (architecture.md §2): every
decision is made by the sans-IO :class:`~stun.client.ClientSession` and
:class:`~stun.server.BindingServer`.

The UDP listener reads with ``loop.add_reader`` and drains the socket in batches — asyncio's own
datagram transport reads one datagram per loop iteration — and answers each request inline, so one
process answers far more requests per second. uvloop is used when installed and asked for
(:func:`install_uvloop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from .address import Address
from .attributes import Attribute
from .client import BindingResult, ClientConfig, ClientSession, Credentials
from .datagram import Datagram
from .errors import DecodeError, LocalProtocolError
from .events import RequestFailed, RequestSucceeded
from .framing import Framing, StreamDecoder
from .message import Message, Method
from .reader_errors import ReaderErrors
from .server import BindingServer, Outcome, ServerConfig
from .transaction import RtoCache

Transport = Literal["udp", "tcp", "tls"]

#: Default ports (RFC 8489 §18.7): 3478 for UDP and TCP, 5349 for TLS.
DEFAULT_PORTS: dict[str, int] = {"udp": 3478, "tcp": 3478, "tls": 5349}

_log = logging.getLogger("icestack.stun")

#: How many datagrams one wake-up of the UDP reader handles before yielding to the loop.
UDP_BATCH = 256
_UDP_BUFFER = 65536


def install_uvloop() -> bool:
    """Use uvloop's event loop policy if uvloop is installed; return whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _address(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return Address(sockaddr[0], sockaddr[1])


def tcp_socket(family: int) -> socket.socket:
    """A TCP socket with Nagle's algorithm off (TCP_NODELAY), for every stream we open or accept.

    STUN and TURN write small messages that must leave at once; under Nagle a write waits for
    the ACK of the one before, which the other side delays by up to 40 ms. The connections a
    listening socket accepts inherit the option (on Linux), and asyncio sets it again on them
    because the socket says IPPROTO_TCP (created with protocol 0, it would not).
    """
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def resolve(host: str, port: int, family: int = 0, *, stream: bool = False) -> Address:
    """Resolve a host name (or IP literal) to one :class:`Address`, IPv4 or IPv6 per ``family``."""
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=kind)
    except socket.gaierror as exc:
        raise LocalProtocolError(f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise LocalProtocolError(f"{host!r} has no address of the requested family")
    return _address(infos[0][4])  # type: ignore[arg-type]


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound here (containers often run without IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class _Closing:
    """``async with`` support for anything with an ``async close()``."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


# =========================================================================== client


class _ClientDriver:
    """Pumps a :class:`ClientSession`: sends its datagrams, arms its timer, resolves futures."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._futures: dict[int, asyncio.Future[tuple[Message, float]]] = {}
        self.send_datagram: Callable[[Datagram], None] = lambda datagram: None

    def request(
        self, method: int, attributes: Iterable[Attribute]
    ) -> asyncio.Future[tuple[Message, float]]:
        handle = self.session.request(method, attributes, now=self.loop.time())
        future: asyncio.Future[tuple[Message, float]] = self.loop.create_future()
        self._futures[handle] = future
        self.pump()
        return future

    def received(self, data: bytes, remote: Address) -> None:
        self.session.receive_datagram(data, None, remote, self.loop.time())
        self.pump()

    def lost(self) -> None:
        self.session.connection_lost(self.loop.time())
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self.loop.time())
        self.pump()

    def pump(self) -> None:
        session = self.session
        for datagram in session.datagrams_to_send(self.loop.time()):
            self.send_datagram(datagram)
        while (event := session.next_event()) is not None:
            if not isinstance(event, RequestSucceeded | RequestFailed):
                continue
            future = self._futures.pop(event.handle, None)
            if future is None or future.done():
                continue
            if isinstance(event, RequestSucceeded):
                future.set_result((event.response, event.rtt))
            else:
                future.set_exception(event.error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = session.get_timer()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for future in self._futures.values():
            if not future.done():
                future.cancel()
        self._futures.clear()


class Receiver(Protocol):
    """Where a :class:`ClientSocket` hands what arrives: a frame or datagram from the server, or
    the news that the connection closed (TCP/TLS)."""

    def received(self, data: bytes, remote: Address) -> None: ...

    def lost(self) -> None: ...


class _UdpClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver, errors: ReaderErrors) -> None:
        self.receiver = receiver
        self.errors = errors

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.receiver.received(data, _address(addr))
        except Exception as error:
            self.errors.contain(error, f"UDP from {addr}")

    def error_received(self, exc: Exception) -> None:
        _log.debug("UDP error from the server: %s", exc)


class _StreamClientProtocol(asyncio.Protocol):
    def __init__(
        self, receiver: Receiver, peer: Address, framing: Framing, errors: ReaderErrors
    ) -> None:
        self.receiver = receiver
        self.peer = peer
        self.errors = errors
        self.decoder = StreamDecoder(framing)
        self.transport: asyncio.Transport | None = None
        self.detached = False
        self.closed = False

    @property
    def usable(self) -> bool:
        """Whether requests can be written to this connection now."""
        return self.transport is not None and not self.closed and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # What tcp_socket() does for listeners; asyncio and uvloop set it too, but say so.
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except DecodeError as exc:
            _log.warning("closing the connection to %s: %s", self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            try:
                self.receiver.received(frame, self.peer)
            except Exception as error:
                self.errors.contain(error, f"the connection to {self.peer}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.detached:
            self.receiver.lost()


class ClientSocket:
    """A client's wire to its server: one UDP socket, or a TCP/TLS connection cut into frames
    by ``framing`` (STUN, or STUN and ChannelData for TURN).

    :meth:`send` writes a datagram to ``datagram.remote``. On a stream with no usable connection
    there — ALTERNATE-SERVER moved the session (RFC 8489 §10), or the server closed the
    connection, after which a client opens a new one (§6.2.2) — it connects first, one attempt at
    a time, holding what must be sent; if that fails, the receiver hears :meth:`Receiver.lost`.
    TLS verifies the server certificate against the system CAs unless ``ssl_context`` says
    otherwise, for ``server_hostname``. What the receiver raises on a datagram or frame is
    contained in ``reader_errors`` (:mod:`stun.reader_errors`).
    """

    def __init__(
        self,
        receiver: Receiver,
        transport: Transport,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        framing: Framing = Framing.STUN,
        reader_errors: ReaderErrors | None = None,
    ) -> None:
        if transport not in DEFAULT_PORTS:
            raise LocalProtocolError(f"unknown transport {transport!r}: udp, tcp or tls")
        self.receiver = receiver
        self.transport = transport
        self.framing = framing
        self._ssl = (ssl_context or ssl.create_default_context()) if transport == "tls" else None
        self._server_hostname = server_hostname
        self._udp: asyncio.DatagramTransport | None = None
        self._stream: _StreamClientProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[Datagram] = []
        #: Exceptions the receiver raised on what arrived, contained (:mod:`stun.reader_errors`).
        self.reader_errors = reader_errors if reader_errors is not None else ReaderErrors()

    async def open(self, server: Address) -> None:
        """Open the UDP socket (of the server's family), or connect to ``server``."""
        if self.transport == "udp":
            await self._open_udp(server)
        else:
            await self._open_stream(server)

    async def _open_udp(self, server: Address) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        any_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpClientProtocol(self.receiver, self.reader_errors),
            local_addr=(any_host, 0),
            family=family,
        )
        self._udp = udp

    async def _open_stream(self, server: Address) -> None:
        loop = asyncio.get_running_loop()
        protocol = _StreamClientProtocol(self.receiver, server, self.framing, self.reader_errors)
        await loop.create_connection(
            lambda: protocol,
            server.host,
            server.port,
            ssl=self._ssl,
            server_hostname=self._server_hostname if self._ssl else None,
        )
        if self._stream is not None:
            self._stream.detached = True
            if self._stream.transport is not None:
                self._stream.transport.close()
        self._stream = protocol

    @property
    def local(self) -> Address | None:
        """The local address of the socket or connection, once open."""
        transport = self._udp or (self._stream.transport if self._stream else None)
        return _address(transport.get_extra_info("sockname")) if transport else None

    def send(self, datagram: Datagram) -> None:
        """Send one datagram, or write one message to the stream (connecting first if needed)."""
        if self._udp is not None:
            self._udp.sendto(datagram.data, (datagram.remote.host, datagram.remote.port))
            return
        stream = self._stream
        if stream is not None and stream.peer == datagram.remote and stream.usable:
            assert stream.transport is not None
            stream.transport.write(datagram.data)
            return
        self._backlog.append(datagram)
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._reconnect(datagram.remote))

    async def _reconnect(self, server: Address) -> None:
        try:
            await self._open_stream(server)
        except OSError as exc:
            _log.debug("cannot connect to %s: %s", server, exc)
            self._backlog.clear()
            self.receiver.lost()
            return
        finally:
            self._connecting = None
        backlog, self._backlog = self._backlog, []
        for datagram in backlog:
            self.send(datagram)

    @property
    def connected(self) -> bool:
        """UDP: whether the socket is open; TCP/TLS: whether the connection is usable now (a
        datagram sent while it is not opens a new one)."""
        if self._udp is not None:
            return not self._udp.is_closing()
        return self._stream is not None and self._stream.usable

    def close(self) -> None:
        """Close the socket or connection; the receiver hears nothing more."""
        if self._connecting is not None:
            self._connecting.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._stream is not None and self._stream.transport is not None:
            self._stream.detached = True
            self._stream.transport.close()


#: RTO estimates per server, shared by every client in the process (RFC 8489 §6.2.1 caches the RTO
#: per server, not per socket; a one-shot :func:`binding` would otherwise always start at 500 ms).
SHARED_RTO_CACHE = RtoCache()


class StunClient(_Closing):
    """An asyncio STUN client talking to one server over UDP, TCP or TLS.

    >>> async with await StunClient.connect("stun.example.net") as client:  # doctest: +SKIP
    ...     result = await client.binding()
    """

    def __init__(self, driver: _ClientDriver, client_socket: ClientSocket) -> None:
        self._driver = driver
        self._socket = client_socket
        self.transport = client_socket.transport
        driver.send_datagram = client_socket.send

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int | None = None,
        *,
        transport: Transport = "udp",
        family: int = 0,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        config: ClientConfig | None = None,
        rto_cache: RtoCache | None = None,
    ) -> StunClient:
        """Resolve ``host`` and open the transport (a TCP/TLS connection, or a UDP socket).

        ``family`` is ``socket.AF_INET`` or ``socket.AF_INET6`` to force one; ``credentials`` are
        long-term credentials used when the server challenges. TLS verifies the server certificate
        against the system CAs unless ``ssl_context`` says otherwise. RTO estimates come from
        ``rto_cache``, by default one shared by the whole process.
        """
        if transport not in DEFAULT_PORTS:
            raise LocalProtocolError(f"unknown transport {transport!r}: udp, tcp or tls")
        port = port or DEFAULT_PORTS[transport]
        server = await resolve(host, port, family, stream=transport != "udp")
        base = config or ClientConfig()
        config = dataclasses.replace(
            base, credentials=credentials or base.credentials, reliable=transport != "udp"
        )
        session = ClientSession(server, config=config, rto_cache=rto_cache or SHARED_RTO_CACHE)
        driver = _ClientDriver(session)
        client_socket = ClientSocket(
            driver, transport, ssl_context=ssl_context, server_hostname=server_hostname or host
        )
        client = cls(driver, client_socket)
        await client_socket.open(server)
        return client

    @property
    def server(self) -> Address:
        """The server requests go to now (ALTERNATE-SERVER can change it)."""
        return self._driver.session.server

    @property
    def reader_errors(self) -> ReaderErrors:
        """Exceptions the client raised on a response, contained and counted (a bug if any)."""
        return self._socket.reader_errors

    @property
    def connected(self) -> bool:
        """UDP: whether the socket is open; TCP/TLS: whether the connection is usable now (a
        request made while it is not opens a new one, RFC 8489 §6.2.2)."""
        return self._socket.connected

    async def request(
        self, method: int = Method.BINDING, attributes: Iterable[Attribute] = ()
    ) -> tuple[Message, float]:
        """Send a request and wait for its success response; return it and the RTT in seconds.

        Raises :class:`~stun.errors.ErrorResponse`, :class:`~stun.errors.TransactionTimeout` or
        :class:`~stun.errors.IntegrityError` when the transaction fails.
        """
        return await self._driver.request(method, attributes)

    async def binding(self) -> BindingResult:
        """One Binding transaction: the reflexive address, RTT and what the server answered with."""
        response, rtt = await self.request(Method.BINDING)
        return BindingResult.from_response(response, rtt, self.server)

    async def close(self) -> None:
        """Close the socket or connection; pending requests are cancelled."""
        self._driver.close()
        self._socket.close()


async def binding(
    host: str,
    port: int | None = None,
    *,
    transport: Transport = "udp",
    family: int = 0,
    credentials: Credentials | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    config: ClientConfig | None = None,
) -> BindingResult:
    """Probe a STUN server once: connect, one Binding transaction, close."""
    async with await StunClient.connect(
        host,
        port,
        transport=transport,
        family=family,
        credentials=credentials,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        config=config,
    ) as client:
        return await client.binding()


# =========================================================================== server


@dataclass(frozen=True, slots=True)
class Listener:
    """One socket the server listens on."""

    transport: Transport
    address: Address

    def __str__(self) -> str:
        return f"{self.transport} {self.address}"


def bind_udp(
    host: str, port: int, *, reuse_port: bool = False, receive_buffer: int | None = 4 * 1024 * 1024
) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``: IPv6 sockets are IPv6-only,
    ``reuse_port`` shares the port with other processes (``SO_REUSEPORT``), and
    ``receive_buffer`` asks the kernel for that much buffering (``None``: its default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: ``handler(data, sockaddr, now)``: one datagram a :class:`UdpReader` read, and the loop time
#: of the batch it came in.
DatagramHandler = Callable[[bytes, tuple[Any, ...], float], None]
_ICMP_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))


class UdpReader:
    """Reads a non-blocking UDP socket on readiness (``loop.add_reader``) in batches.

    Each wake-up drains up to :data:`UDP_BATCH` datagrams, hands each to ``handler`` with one
    loop time for the whole batch, then calls ``after_batch`` (if given) once. What either raises
    is contained in ``errors`` (:mod:`stun.reader_errors`) and the batch goes on. The socket
    belongs to the reader from then on: :meth:`close` closes it.
    """

    __slots__ = ("after_batch", "errors", "handler", "local", "loop", "sock")

    def __init__(
        self,
        sock: socket.socket,
        handler: DatagramHandler,
        after_batch: Callable[[], None] | None = None,
        *,
        errors: ReaderErrors | None = None,
    ) -> None:
        self.sock = sock
        self.handler = handler
        self.after_batch = after_batch
        self.errors = errors if errors is not None else ReaderErrors()
        self.local = _address(sock.getsockname())
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        handler = self.handler
        now = self.loop.time()
        for _ in range(UDP_BATCH):
            try:
                data, sockaddr = recvfrom(_UDP_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors surface here on Linux (ECONNREFUSED for an earlier send): skip them.
                if exc.errno in _ICMP_ERRNOS:
                    continue
                _log.warning("UDP socket %s: %s", self.local, exc)
                break
            try:
                handler(data, sockaddr, now)
            except Exception as error:
                self.errors.contain(error, f"UDP {self.local}")
        if self.after_batch is not None:
            try:
                self.after_batch()
            except Exception as error:
                self.errors.contain(error, f"UDP {self.local}")

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


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


def check_listener_arguments(transport: str, ssl_context: ssl.SSLContext | None) -> None:
    """Refuse an unknown transport, a TLS listener without a context, and a context without TLS."""
    if transport not in DEFAULT_PORTS:
        raise LocalProtocolError(f"unknown transport {transport!r}: udp, tcp or tls")
    if (transport == "tls") != (ssl_context is not None):
        raise LocalProtocolError("a tls listener needs ssl_context; udp and tcp take none")


async def listen_stream(
    host: str,
    port: int,
    protocol_factory: Callable[[Address], asyncio.BaseProtocol],
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> tuple[asyncio.Server, Address]:
    """Listen on TCP (TLS with ``ssl_context``) at ``(host, port)``; ``port=0`` picks one.

    ``protocol_factory(local)`` makes the protocol of each accepted connection, ``local`` being
    the listening address. IPv6 sockets are IPv6-only; ``reuse_port`` shares the port with other
    processes (``SO_REUSEPORT``). Returns the asyncio server and the address it listens on.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = tcp_socket(family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    local = _address(sock.getsockname())
    server = await loop.create_server(
        lambda: protocol_factory(local),
        sock=sock,
        ssl=ssl_context,
        ssl_handshake_timeout=10.0 if ssl_context else None,
        backlog=512,
    )
    return server, local


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
