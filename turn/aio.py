"""asyncio face of the TURN client: :class:`TurnClient`, one allocation over UDP, TCP or TLS.

This layer owns the socket and the event loop's clock and nothing else (architecture.md §2): every
decision is made by the sans-IO :class:`~turn.client.TurnAllocation`. The socket side — a UDP
socket, or a TCP/TLS connection cut into STUN and ChannelData frames (RFC 8656 §12.5) and reopened
if ALTERNATE-SERVER moves the session — is :class:`stun.aio.ClientSocket`, shared with
:class:`stun.aio.StunClient`. A TCP allocation (RFC 6062) hands out its peers' connections as
asyncio streams; :mod:`turn.aio_tcp_client` opens and binds them.

>>> async with await TurnClient.connect(  # doctest: +SKIP
...     "turns:turn.example.net", username="alice", password="secret"
... ) as client:
...     relayed = await client.allocate()
...     await client.send(b"hello", peer)
...     data, sender = await client.recv()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from stun import Address
from stun.aio import SHARED_RTO_CACHE, ClientSocket, Transport, _Closing
from stun.aio_client import resolve_server
from stun.arguments import check_address, check_count, check_seconds, check_text
from stun.client import Credentials
from stun.errors import ServerUnreachable
from stun.framing import Framing
from stun.ports import check_port_range
from stun.reader_errors import TIMER, ReaderErrors
from stun.transaction import RtoCache

from .aio_tcp_client import DEFAULT_LIMIT, TCP_EVENTS, PeerStream, TcpConnections
from .client import AllocationState, TurnAllocation, TurnClientConfig
from .errors import LocalProtocolError, PeerConnectionFailed, PeerNotPermitted, TurnError
from .events import (
    AllocationCreated,
    AllocationDeleted,
    AllocationExpired,
    AllocationFailed,
    ChannelBound,
    ChannelFailed,
    DataReceived,
    Failure,
    PermissionCreated,
    PermissionFailed,
    TurnClientEvent,
)
from .transport import ClientTransport
from .uri import UriScheme, parse_uri

_log = logging.getLogger("icestack.turn")
_TRANSPORTS: dict[ClientTransport, Transport] = {
    ClientTransport.UDP: "udp",
    ClientTransport.TCP: "tcp",
    ClientTransport.TLS: "tls",
}
T = TypeVar("T")


class TurnClient(_Closing):
    """An allocation on one TURN server, driven on the running event loop.

    Build it with :meth:`connect`. Data from peers waits in a queue of ``max_queued`` datagrams
    (more are dropped, as a UDP socket would) until :meth:`recv` takes it.
    """

    def __init__(
        self, allocation: TurnAllocation, transport: Transport, *, max_queued: int = 1024
    ) -> None:
        self.allocation = allocation
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._socket: ClientSocket | None = None
        self.transport = transport
        self._max_queued = max_queued
        self._received: asyncio.Queue[tuple[bytes, Address] | None] = asyncio.Queue()
        self._allocated: asyncio.Future[AllocationCreated] | None = None
        self._permissions: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._channels: defaultdict[Address, list[asyncio.Future[int]]] = defaultdict(list)
        self._deleted = asyncio.Event()
        #: Whether :meth:`close` saw the server confirm that the allocation is gone.
        self.deleted = False
        self._ended: TurnError | None = None
        #: Peer IP addresses the server refused a permission for, and how the request ended.
        self._refused: dict[str, Failure] = {}
        #: Datagrams from peers dropped because :meth:`recv` fell behind.
        self.overflow = 0
        #: Exceptions the allocation raised on what the server sent, contained and counted (a
        #: bug if any; :mod:`stun.reader_errors`).
        self.reader_errors = ReaderErrors()
        #: Exceptions the allocation's handle_timer raised, contained and counted the same way
        #: (the timer is armed again).
        self.timer_errors = ReaderErrors()
        #: The connections of a TCP allocation (RFC 6062): :mod:`turn.aio_tcp_client`.
        self.tcp = TcpConnections(self, ssl_context=None, server_hostname=None)

    @classmethod
    async def connect(
        cls,
        server: str,
        port: int | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        transport: Transport | None = None,
        family: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        config: TurnClientConfig | None = None,
        rto_cache: RtoCache | None = None,
        max_queued: int = 1024,
        connect_timeout: float | None = None,
        port_range: tuple[int, int] | None = None,
    ) -> TurnClient:
        """Resolve the server and open the transport; nothing is allocated yet.

        ``server`` is a ``turn:`` or ``turns:`` URI (RFC 7065), which names the transport and
        port, or a host name or IP literal, reached over ``transport`` (UDP unless given) on
        ``port`` (3478, or 5349 for TLS). ``username`` and ``password`` are the long-term
        credentials the server challenges for. TLS verifies the certificate against the system
        CAs unless ``ssl_context`` says otherwise. Resolving and connecting (the TCP connection
        and the TLS handshake) end within ``connect_timeout`` seconds — by default the
        transaction's Ti, 39.5 s — or raise :class:`stun.ConnectTimeout` saying which step ran
        out. Raises :class:`turn.DecodeError` for a malformed URI and
        :class:`turn.LocalProtocolError` for a bad or conflicting argument, naming it.
        Over UDP, ``port_range=(first, last)`` binds the socket to a port of that range
        (:mod:`stun.ports`; every port taken raises :class:`stun.ports.PortRangeExhausted`).
        """
        check_text(server, "server", error=LocalProtocolError)
        scheme = server.partition(":")[0].lower()
        if scheme in {s.value for s in UriScheme}:
            uri = parse_uri(server)
            if not uri.is_turn:
                raise LocalProtocolError(f"{server!r} is a STUN URI; a TURN client needs turn:")
            if transport is not None or port is not None:
                raise LocalProtocolError("a TURN URI names the transport and port itself")
            host, port, transport = uri.host, uri.port, _TRANSPORTS[uri.transport]
        else:
            host = server
            transport = transport or "udp"
        for name, value in (("username", username), ("password", password)):
            if value is not None:
                check_text(value, name, error=LocalProtocolError)
        if (username is None) != (password is None):
            raise LocalProtocolError("give both username and password, or neither")
        check_count(max_queued, "max_queued", error=LocalProtocolError)
        check_port_range(port_range, error=LocalProtocolError)
        credentials = (
            Credentials(username=username, password=password)
            if username is not None and password is not None
            else None
        )
        base = config or TurnClientConfig()
        if connect_timeout is None:
            connect_timeout = base.stun.transaction.reliable_timeout
        address, limit = await resolve_server(
            host, port, transport, family, connect_timeout, error=LocalProtocolError
        )
        machine = TurnAllocation(
            address,
            credentials,
            dataclasses.replace(base, transport=ClientTransport(transport)),
            rto_cache=rto_cache or SHARED_RTO_CACHE,
        )
        client = cls(machine, transport, max_queued=max_queued)
        if transport == "tls":  # data connections of a TCP allocation are made like this one
            client.tcp = TcpConnections(
                client,
                ssl_context=ssl_context or ssl.create_default_context(),
                server_hostname=server_hostname or host,
            )
        client_socket = ClientSocket(
            client,
            transport,
            ssl_context=ssl_context,
            server_hostname=server_hostname or host,
            framing=Framing.STUN_OR_CHANNEL_DATA,
            reader_errors=client.reader_errors,
            connect_timeout=limit.timeout,
            port_range=port_range,
        )
        await client_socket.open(address, within=limit.remaining())
        client._socket = client_socket
        return client

    # ------------------------------------------------------------------ what it holds

    @property
    def server(self) -> Address:
        """Where the allocation lives (ALTERNATE-SERVER can move it while allocating)."""
        return self.allocation.server

    @property
    def relayed_addresses(self) -> tuple[Address, ...]:
        """The relayed transport addresses (two after a dual allocation), once allocated."""
        return self.allocation.relayed

    @property
    def mapped_address(self) -> Address | None:
        """This client's address as the server saw it."""
        return self.allocation.mapped_address

    @property
    def local_address(self) -> Address | None:
        """The local address of the socket or connection to the server."""
        return self._socket.local if self._socket is not None else None

    # ------------------------------------------------------------------ commands

    async def allocate(self) -> Address:
        """Create the allocation (RFC 8656 §7); return its (first) relayed transport address.

        Raises what ended the Allocate: :class:`stun.ErrorResponse` (401 with wrong
        credentials, 437, 486, 508 and the like), :class:`stun.TransactionTimeout`, or
        :class:`turn.RemoteProtocolError` for a success response that cannot be used.
        """
        self.allocation.allocate(self._loop.time())
        allocated: asyncio.Future[AllocationCreated] = self._loop.create_future()
        self._allocated = allocated
        self._pump()
        event = await allocated
        return event.relayed[0]

    async def create_permission(self, peer: Address | str) -> None:
        """Have the server admit data from a peer's IP address (RFC 8656 §9), and keep it so.
        ``peer`` is an :class:`~stun.Address` (its port does not matter) or an IP literal."""
        self.allocation.create_permission(peer, self._loop.time())
        host = self.allocation.permission_host(peer)
        if self.allocation.has_permission(host):
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._permissions[host].append(future)
        self._pump()
        await future

    async def bind_channel(self, peer: Address) -> int:
        """Bind a channel to ``peer`` (RFC 8656 §12), and keep it so; return its number."""
        number = self.allocation.bind_channel(peer, self._loop.time())
        peer = check_address(peer, error=LocalProtocolError)
        if self.allocation.channel(peer) is not None:
            return number
        future: asyncio.Future[int] = self._loop.create_future()
        self._channels[peer].append(future)
        self._pump()
        return await future

    async def send(self, data: bytes, peer: Address) -> None:
        """Send ``data`` to ``peer`` through the relay: ChannelData on a bound channel, else a
        Send indication (a permission and a channel are made on first use unless the config
        says otherwise). It does not wait for the server: data sent before the permission is
        granted waits for it in a bounded queue.

        Raises :class:`turn.PeerNotPermitted` once the server has refused the peer a permission
        (or never answered for it), which is also logged as a warning when it happens: the data
        is not sent. To learn whether the server admits a peer before sending, await
        :meth:`create_permission` first.
        """
        if self._refused:
            self._check_permitted(peer)
        self.allocation.send(data, peer, self._loop.time())
        self._pump()

    def _check_permitted(self, peer: Address) -> None:
        host = check_address(peer, error=LocalProtocolError).host
        error = self._refused.get(host)
        if error is not None:
            raise PeerNotPermitted(host, self.server, error)

    async def recv(self) -> tuple[bytes, Address]:
        """The next datagram from a peer and who sent it. Raises :class:`turn.TurnError` once
        the allocation has ended and nothing is left to read."""
        item = await self._received.get()
        if item is None:
            self._received.put_nowait(None)  # every later call ends the same way
            assert self._ended is not None
            raise self._ended
        return item

    async def open_connection(
        self, peer: Address, *, limit: int = DEFAULT_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP connection to ``peer`` through a TCP allocation (RFC 6062 §4.3): the
        permission for the peer, a Connect, then a new data connection to the server and its
        ConnectionBind (§4.4). Returns asyncio streams, as :func:`asyncio.open_connection`
        does; the reader stops reading past about twice ``limit`` buffered bytes.

        Raises :class:`turn.PeerConnectionFailed` saying why in words (403 the peer is refused,
        446 a connection to it exists, 447 the server could not connect, a timeout), and
        :class:`turn.LocalProtocolError` on a UDP allocation.
        """
        return await self.tcp.open_connection(peer, limit=limit)

    async def accept(self, *, limit: int = DEFAULT_LIMIT) -> PeerStream:
        """Wait for a peer to connect to the relayed address of a TCP allocation (a
        ConnectionAttempt, RFC 6062 §4.4), bind a data connection to it, and return
        ``(peer, reader, writer)``. The peer's IP address needs a permission
        (:meth:`create_permission`), or the server closes its connection at once.

        Peers that connect while nobody accepts wait, at most 32 (``tcp.max_pending``); the
        server closes a connection that waits unbound for 30 s, and binding it then raises
        :class:`turn.PeerConnectionFailed`. Raises :class:`turn.TurnError` once the allocation
        has ended.
        """
        return await self.tcp.accept(limit=limit)

    async def connections(self, *, limit: int = DEFAULT_LIMIT) -> AsyncIterator[PeerStream]:
        """:meth:`accept` in a loop: ``async for peer, reader, writer in client.connections()``,
        until the allocation ends. A peer whose connection could not be bound is skipped."""
        while True:
            try:
                yield await self.accept(limit=limit)
            except PeerConnectionFailed as error:
                _log.warning("a peer connection was not accepted: %s", error)
            except TurnError:
                return

    async def close(self, timeout: float = 5.0) -> None:
        """Delete the allocation (Refresh with LIFETIME 0), waiting at most ``timeout`` seconds
        for the server's answer, then close the socket. Waiters are woken with an error."""
        check_seconds(timeout, "timeout", error=LocalProtocolError)
        self.allocation.close(self._loop.time())
        self._pump()
        if self.allocation.state is AllocationState.CLOSING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deleted.wait(), timeout)
        self._end(TurnError("the TURN client is closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            self._socket.close()

    # ------------------------------------------------------------------ the driver

    def received(self, data: bytes, remote: Address) -> None:
        """A datagram or frame from the server (the :class:`stun.aio.Receiver` protocol)."""
        self.allocation.receive_datagram(data, None, remote, self._loop.time())
        self._pump()

    def lost(self) -> None:
        """The TCP/TLS connection closed (the :class:`stun.aio.Receiver` protocol)."""
        self.allocation.connection_lost(self._loop.time())
        self._pump()

    def unreachable(self, error: ServerUnreachable) -> None:
        """A datagram to the server could not leave this host (the :class:`stun.aio.Receiver`
        protocol): every request in progress ends with ``error`` at once."""
        self.allocation.fail_all(error, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        try:
            self.allocation.handle_timer(now)
        except Exception as error:
            # A bug of the allocation, contained as the readers contain theirs; the timer is
            # armed again no sooner than one initial RTO later, so that it cannot spin.
            self.timer_errors.contain(error, f"TURN client of {self.server}", TIMER)
            self._pump(not_before=now + self.allocation.config.stun.transaction.initial_rto)
            return
        self._pump()

    def _pump(self, *, not_before: float | None = None) -> None:
        allocation = self.allocation
        if self._socket is not None:
            for datagram in allocation.datagrams_to_send(self._loop.time()):
                self._socket.send(datagram)
        while (event := allocation.next_event()) is not None:
            self._handle(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = allocation.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(max(deadline, not_before or 0.0), self._on_timer)

    def _handle(self, event: TurnClientEvent) -> None:
        if isinstance(event, DataReceived):
            if self._received.qsize() < self._max_queued:
                self._received.put_nowait((event.data, event.peer))
            else:
                self.overflow += 1
        elif isinstance(event, AllocationCreated | AllocationFailed):
            if self._allocated is not None and not self._allocated.done():
                if isinstance(event, AllocationCreated):
                    self._allocated.set_result(event)
                else:
                    self._allocated.set_exception(event.error)
        elif isinstance(event, PermissionCreated | PermissionFailed):
            error = event.error if isinstance(event, PermissionFailed) else None
            if error is None:
                self._refused.pop(event.host, None)
            else:
                self._refused[event.host] = error
                _log.warning(
                    "%s; data to it is dropped", PeerNotPermitted(event.host, self.server, error)
                )
            for waiter in self._permissions.pop(event.host, []):
                _settle(waiter, None, error)
        elif isinstance(event, ChannelBound | ChannelFailed):
            error = event.error if isinstance(event, ChannelFailed) else None
            for channel_waiter in self._channels.pop(event.peer, []):
                _settle(channel_waiter, event.channel, error)
        elif isinstance(event, AllocationExpired):
            _log.warning("TURN allocation on %s expired: %s", self.server, event.reason)
            self._end(TurnError(f"the allocation ended: {event.reason}"))
        elif isinstance(event, AllocationDeleted):
            self.deleted = event.confirmed
            self._deleted.set()
        elif isinstance(event, TCP_EVENTS):
            self.tcp.handle(event)

    def _end(self, error: TurnError) -> None:
        """Wake everything still waiting: the allocation is gone."""
        if self._ended is None:
            self._ended = error
            self._received.put_nowait(None)
        waiters: list[asyncio.Future[Any]] = [w for ws in self._permissions.values() for w in ws]
        waiters += [w for ws in self._channels.values() for w in ws]
        if self._allocated is not None:
            waiters.append(self._allocated)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._permissions.clear()
        self._channels.clear()
        self.tcp.end(error)


def _settle(future: asyncio.Future[T], result: T, error: Failure | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
