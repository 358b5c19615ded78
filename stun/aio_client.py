"""asyncio face of the STUN client: :class:`StunClient` and :func:`binding` over UDP, TCP and
TLS, and :class:`ClientSocket`, the wire to a server that TURN's client shares.

Every decision is the sans-IO :class:`~stun.client.ClientSession`'s (architecture.md §2); this
layer sends what it queues, arms its one timer and turns its outcomes into futures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol

from .address import Address
from .aio_sockets import DEFAULT_PORTS, Transport, _address, _Closing, resolve, tcp_socket
from .arguments import MisuseError, check_port, check_seconds, check_text
from .attributes import Attribute
from .client import BindingResult, ClientConfig, ClientSession, Credentials
from .datagram import Datagram
from .errors import (
    ConnectStep,
    ConnectTimeout,
    DecodeError,
    LocalProtocolError,
    ServerUnreachable,
)
from .events import RequestFailed, RequestSucceeded
from .framing import Framing, StreamDecoder
from .message import Message, Method
from .ports import PortRange, bind_in_range, check_port_range
from .reader_errors import TIMER, ReaderErrors
from .transaction import RtoCache, TransactionConfig

_log = logging.getLogger("icestack.stun")

#: What a UDP send fails with when no datagram can leave for the server: no route to its
#: network or host, the network is down, or this host's firewall refuses it (EACCES, EPERM).
UNREACHABLE_ERRNOS = frozenset(
    (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EACCES, errno.EPERM)
)
#: Seconds connecting (TCP, then TLS) may take when the caller does not say: Ti, as long as a
#: whole transaction over TCP may take (RFC 8489 §6.2.2), 39.5 s.
DEFAULT_CONNECT_TIMEOUT = TransactionConfig().reliable_timeout


class _ClientDriver:
    """Pumps a :class:`ClientSession`: sends its datagrams, arms its timer, resolves futures."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._futures: dict[int, asyncio.Future[tuple[Message, float]]] = {}
        self.send_datagram: Callable[[Datagram], None] = lambda datagram: None
        #: Exceptions the session's handle_timer raised, contained (:mod:`stun.reader_errors`).
        self.timer_errors = ReaderErrors()

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

    def unreachable(self, error: ServerUnreachable) -> None:
        self.session.fail_all(error, self.loop.time())
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        try:
            self.session.handle_timer(now)
        except Exception as error:
            # A bug of the session, contained as the readers contain theirs (stun.reader_errors);
            # the timer is armed again no sooner than one initial RTO later, so it cannot spin.
            self.timer_errors.contain(error, f"STUN client of {self.session.server}", TIMER)
            self.pump(not_before=now + self.session.config.transaction.initial_rto)
            return
        self.pump()

    def pump(self, *, not_before: float | None = None) -> None:
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
            self._timer = self.loop.call_at(max(deadline, not_before or 0.0), self._on_timer)

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

    def unreachable(self, error: ServerUnreachable) -> None:
        """Over UDP, a datagram to the server could not leave this host (``error`` says why):
        nothing sent there can be answered now."""


class _UdpClientProtocol(asyncio.DatagramProtocol):
    def __init__(
        self, receiver: Receiver, errors: ReaderErrors, send_failed: Callable[[OSError], None]
    ) -> None:
        self.receiver = receiver
        self.errors = errors
        self.send_failed = send_failed

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        remote = _address(addr)
        try:
            self.receiver.received(data, remote)
        except Exception as error:
            self.errors.contain(error, f"UDP from {remote}")

    def error_received(self, exc: Exception) -> None:
        # The socket is not connected, so Linux reports no ICMP errors on it: what comes here
        # is a send that failed at once.
        if isinstance(exc, OSError) and exc.errno in UNREACHABLE_ERRNOS:
            self.send_failed(exc)
        else:
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
    Connecting — the TCP connection, then the TLS handshake — ends within ``connect_timeout``
    seconds, or raises :class:`~stun.errors.ConnectTimeout` saying which step did not finish.
    TLS verifies the server certificate against the system CAs unless ``ssl_context`` says
    otherwise, for ``server_hostname``. Over UDP, a send that fails at once for want of a route
    (:data:`UNREACHABLE_ERRNOS`) is passed on as :meth:`Receiver.unreachable`. What the receiver
    raises on a datagram or frame is contained in ``reader_errors`` (:mod:`stun.reader_errors`).
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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        port_range: PortRange | None = None,
    ) -> None:
        if transport not in DEFAULT_PORTS:
            raise LocalProtocolError(f"unknown transport {transport!r}: udp, tcp or tls")
        self.receiver = receiver
        self.transport = transport
        self.framing = framing
        self.connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        #: The ports the UDP socket may take (``None``: an ephemeral one; :mod:`stun.ports`).
        self.port_range = check_port_range(port_range)
        self._ssl = (ssl_context or ssl.create_default_context()) if transport == "tls" else None
        self._server_hostname = server_hostname
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_remote: Address | None = None
        self._stream: _StreamClientProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._backlog: list[Datagram] = []
        #: Exceptions the receiver raised on what arrived, contained (:mod:`stun.reader_errors`).
        self.reader_errors = reader_errors if reader_errors is not None else ReaderErrors()

    async def open(self, server: Address, *, within: float | None = None) -> None:
        """Open the UDP socket (of the server's family), or connect to ``server`` within
        ``within`` seconds (by default ``connect_timeout``)."""
        if self.transport == "udp":
            await self._open_udp(server)
        else:
            await self._open_stream(server, within)

    async def _open_udp(self, server: Address) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        any_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            bind_in_range(sock, any_host, self.port_range)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpClientProtocol(self.receiver, self.reader_errors, self._send_failed),
            sock=sock,
        )
        self._udp = udp

    def _send_failed(self, error: OSError) -> None:
        remote = self._udp_remote
        if remote is not None:
            # Not from inside send(): the receiver may be sending when it hears of it.
            unreachable = ServerUnreachable(remote, error)
            asyncio.get_running_loop().call_soon(self.receiver.unreachable, unreachable)

    async def _open_stream(self, server: Address, within: float | None = None) -> None:
        protocol = _StreamClientProtocol(self.receiver, server, self.framing, self.reader_errors)
        await self._connect(server, protocol, self.connect_timeout if within is None else within)
        if self._stream is not None:
            self._stream.detached = True
            if self._stream.transport is not None:
                self._stream.transport.close()
        self._stream = protocol

    async def _connect(
        self, server: Address, protocol: _StreamClientProtocol, within: float
    ) -> None:
        """The TCP connection, then the TLS handshake, both within ``within`` seconds; raises
        :class:`ConnectTimeout` naming the step that ran out (and the whole time allowed)."""
        loop = asyncio.get_running_loop()
        timeout = self.connect_timeout
        deadline = loop.time() + within
        sock = tcp_socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET)
        sock.setblocking(False)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await loop.sock_connect(sock, (server.host, server.port))
            except TimeoutError:
                raise ConnectTimeout(
                    f"no answer to the TCP connection attempt to {server} within {timeout:g} s",
                    ConnectStep.TCP,
                ) from None
            try:
                async with asyncio.timeout_at(deadline):
                    await loop.create_connection(
                        lambda: protocol,
                        sock=sock,
                        ssl=self._ssl,
                        server_hostname=self._server_hostname if self._ssl else None,
                        # Past the deadline: the timeout above ends it, with its own words.
                        ssl_handshake_timeout=timeout + 1.0 if self._ssl else None,
                    )
            except TimeoutError:
                raise ConnectTimeout(
                    f"{server} accepted the TCP connection but the TLS handshake did not finish "
                    f"within {timeout:g} s",
                    ConnectStep.TLS,
                ) from None
        except BaseException:
            sock.close()
            raise

    @property
    def local(self) -> Address | None:
        """The local address of the socket or connection, once open."""
        transport = self._udp or (self._stream.transport if self._stream else None)
        return _address(transport.get_extra_info("sockname")) if transport else None

    def send(self, datagram: Datagram) -> None:
        """Send one datagram, or write one message to the stream (connecting first if needed)."""
        if self._udp is not None:
            self._udp_remote = datagram.remote
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
        except OSError as exc:  # ConnectTimeout and TLS failures too
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


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectLimit:
    """How long connecting may take in all (``timeout``), and when it must be done by (loop
    time)."""

    timeout: float
    deadline: float

    def remaining(self) -> float:
        """Seconds left until the deadline (0 once it has passed)."""
        return max(self.deadline - asyncio.get_running_loop().time(), 0.0)


_FAMILIES = {0: "0", socket.AF_INET: "socket.AF_INET", socket.AF_INET6: "socket.AF_INET6"}


async def resolve_server(
    host: object,
    port: object,
    transport: object,
    family: object,
    connect_timeout: object,
    *,
    error: MisuseError = LocalProtocolError,
) -> tuple[Address, ConnectLimit]:
    """What a client's ``connect()`` does first: check its arguments (raising ``error``, the
    package's ``LocalProtocolError``, naming the one that is wrong), then resolve ``host`` within
    ``connect_timeout`` seconds. Returns the server's address (``port`` defaults to the
    transport's, 3478 or 5349) and the limit that the connection must keep to as well."""
    check_text(host, "host", error=error)
    if transport not in DEFAULT_PORTS:
        raise error(f"unknown transport {transport!r}: udp, tcp or tls")
    if port is not None:
        check_port(port, "port", error=error)
    if family not in _FAMILIES or isinstance(family, bool):
        raise error(f"family must be one of {', '.join(_FAMILIES.values())}, not {family!r}")
    timeout = check_seconds(connect_timeout, "connect_timeout", error=error)
    assert isinstance(host, str) and isinstance(transport, str) and isinstance(family, int)
    limit = ConnectLimit(timeout, asyncio.get_running_loop().time() + timeout)
    stream = transport != "udp"
    try:
        async with asyncio.timeout_at(limit.deadline):
            server = await resolve(
                host, port if isinstance(port, int) else DEFAULT_PORTS[transport], family,
                stream=stream,
            )  # fmt: skip
    except TimeoutError:
        raise ConnectTimeout(
            f"resolving {host!r} took longer than {timeout:g} s", ConnectStep.RESOLVING
        ) from None
    return server, limit


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
        connect_timeout: float | None = None,
    ) -> StunClient:
        """Resolve ``host`` and open the transport (a TCP/TLS connection, or a UDP socket).

        ``port`` defaults to 3478 (5349 for TLS); ``family`` is ``socket.AF_INET`` or
        ``socket.AF_INET6`` to force one; ``credentials`` are long-term credentials used when the
        server challenges. TLS verifies the server certificate against the system CAs unless
        ``ssl_context`` says otherwise. RTO estimates come from ``rto_cache``, by default one
        shared by the whole process. Resolving and connecting (the TCP connection and the TLS
        handshake, again whenever the session must reconnect) end within ``connect_timeout``
        seconds — by default the transaction's Ti, ``config.transaction.reliable_timeout``
        (39.5 s) — or raise :class:`~stun.errors.ConnectTimeout` saying which step ran out.
        A bad argument raises :class:`~stun.errors.LocalProtocolError` naming it.
        """
        base = config or ClientConfig()
        server, limit = await resolve_server(
            host,
            port,
            transport,
            family,
            base.transaction.reliable_timeout if connect_timeout is None else connect_timeout,
        )
        config = dataclasses.replace(
            base, credentials=credentials or base.credentials, reliable=transport != "udp"
        )
        session = ClientSession(server, config=config, rto_cache=rto_cache or SHARED_RTO_CACHE)
        driver = _ClientDriver(session)
        client_socket = ClientSocket(
            driver,
            transport,
            ssl_context=ssl_context,
            server_hostname=server_hostname or host,
            connect_timeout=limit.timeout,
        )
        client = cls(driver, client_socket)
        await client_socket.open(server, within=limit.remaining())
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
    def timer_errors(self) -> ReaderErrors:
        """Exceptions the client's timer raised, contained and counted (a bug if any); the
        timer is armed again (:mod:`stun.reader_errors`)."""
        return self._driver.timer_errors

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
    connect_timeout: float | None = None,
) -> BindingResult:
    """Probe a STUN server once: connect, one Binding transaction, close (the arguments are
    :meth:`StunClient.connect`'s)."""
    async with await StunClient.connect(
        host,
        port,
        transport=transport,
        family=family,
        credentials=credentials,
        ssl_context=ssl_context,
        server_hostname=server_hostname,
        config=config,
        connect_timeout=connect_timeout,
    ) as client:
        return await client.binding()
