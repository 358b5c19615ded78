"""asyncio face of NAT behaviour discovery: :func:`discover_nat` drives a sans-IO
:class:`~stun.discovery.NatDiscovery` on real sockets (architecture.md §2).

Over UDP it owns two sockets (the second only for the lifetime test) and hands every datagram
either receives to the machine with that socket's address; the machine's ``Datagram.local``
says which one sends. Over TCP it opens one connection per destination the machine sends to,
each from the same local port (``SO_REUSEADDR``), so that the NAT's mapping of that port can be
compared across destinations (RFC 5780 §4.3); what comes back is cut into messages
(:class:`~stun.framing.StreamDecoder`). The run ends when the machine says so: every one of its
waits is bounded by its configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

from .address import Address
from .aio_sockets import _address, bind_udp, resolve, tcp_socket
from .discovery import NatDiscovery
from .discovery_results import (
    DiscoveryConfig,
    DiscoveryFinished,
    DiscoveryProgressed,
    DiscoveryResult,
)
from .errors import DecodeError, ServerUnreachable
from .framing import StreamDecoder

Progress = Callable[[str], None]


def _local_ip(server: Address) -> str:
    """The IP this host sends from to ``server`` (a connected UDP socket's, nothing sent);
    raises :class:`ServerUnreachable` when there is no route to it."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((server.host, server.port))
        except OSError as exc:
            raise ServerUnreachable(server, exc) from None
        return str(probe.getsockname()[0])


class _Driver:
    """Pumps the machine: sends what it drains, keeps its one timer, reports its events."""

    def __init__(self, machine: NatDiscovery, progress: Progress | None) -> None:
        self.machine = machine
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[DiscoveryResult] = self.loop.create_future()
        self.send: Callable[[bytes, Address | None, Address], None] = lambda *_: None
        self._timer: asyncio.TimerHandle | None = None

    def received(self, data: bytes, local: Address | None, remote: Address) -> None:
        self.machine.receive_datagram(data, local, remote, self.loop.time())
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.machine.handle_timer(self.loop.time())
        self.pump()

    def pump(self) -> None:
        machine = self.machine
        for datagram in machine.datagrams_to_send(self.loop.time()):
            self.send(datagram.data, datagram.local, datagram.remote)
        while (event := machine.next_event()) is not None:
            if isinstance(event, DiscoveryProgressed) and self.progress is not None:
                self.progress(event.message)
            elif isinstance(event, DiscoveryFinished) and not self.done.done():
                self.done.set_result(event.result)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = machine.get_timer()
        if deadline is not None and not self.done.done():
            self._timer = self.loop.call_at(deadline, self._on_timer)

    async def run(self, send: Callable[[bytes, Address | None, Address], None]) -> DiscoveryResult:
        """Start the machine, sending its datagrams with ``send``, until it has a result."""
        self.send = send
        self.machine.start(self.loop.time())
        self.pump()
        try:
            return await self.done
        finally:
            if self._timer is not None:
                self._timer.cancel()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, driver: _Driver, local: Address) -> None:
        self.driver = driver
        self.local = local

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.driver.received(data, self.local, _address(addr))

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier send: the test it belongs to times out on its own."""


async def _run_udp(
    server: Address, config: DiscoveryConfig, progress: Progress | None
) -> DiscoveryResult:
    loop = asyncio.get_running_loop()
    wildcard = "::" if ":" in server.host else "0.0.0.0"
    host = _local_ip(server)
    sockets = [bind_udp(wildcard, 0, receive_buffer=None) for _ in range(1 + config.lifetime)]
    labels = [Address(host, sock.getsockname()[1]) for sock in sockets]
    machine = NatDiscovery(
        server, local=labels[0], second=labels[1] if config.lifetime else None, config=config
    )
    driver = _Driver(machine, progress)
    transports: dict[Address | None, asyncio.DatagramTransport] = {}
    try:
        for label, sock in zip(labels, sockets, strict=True):
            transports[label], _ = await loop.create_datagram_endpoint(
                lambda label=label: _UdpProtocol(driver, label),  # type: ignore[misc]
                sock=sock,
            )

        def send(data: bytes, local: Address | None, remote: Address) -> None:
            transport = transports.get(local) or transports[labels[0]]
            with contextlib.suppress(OSError):
                transport.sendto(data, (remote.host, remote.port))

        return await driver.run(send)
    finally:
        for transport in transports.values():
            transport.close()
        for sock in sockets[len(transports) :]:
            sock.close()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, driver: _Driver, local: Address, remote: Address) -> None:
        self.driver = driver
        self.local = local
        self.remote = remote
        self.decoder = StreamDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except DecodeError:
            if self.transport is not None:
                self.transport.abort()
            return
        for frame in frames:
            self.driver.received(frame, self.local, self.remote)


async def _run_tcp(
    server: Address, config: DiscoveryConfig, progress: Progress | None
) -> DiscoveryResult:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    host = _local_ip(server)
    port = 0
    connections: dict[Address, asyncio.Task[None]] = {}
    streams: list[asyncio.Transport] = []
    machine: NatDiscovery | None = None

    def bound_socket() -> socket.socket:
        nonlocal port
        sock = tcp_socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        return sock

    first = bound_socket()  # reserves the local port every connection leaves from
    local = Address(host, port)
    machine = NatDiscovery(server, local=local, config=config)
    driver = _Driver(machine, progress)

    async def connect_and_send(data: bytes, remote: Address) -> None:
        sock = first if not connections else bound_socket()
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            await loop.sock_connect(sock, (remote.host, remote.port))
            transport, _ = await loop.create_connection(
                lambda: _TcpProtocol(driver, local, remote), sock=sock
            )
            streams.append(transport)
            transport.write(data)
            return
        sock.close()

    def send(data: bytes, source: Address | None, remote: Address) -> None:
        if remote not in connections:
            connections[remote] = asyncio.ensure_future(connect_and_send(data, remote))

    try:
        return await driver.run(send)
    finally:
        for task in connections.values():
            task.cancel()
        for stream in streams:
            stream.abort()
        if not connections:
            first.close()


async def discover_nat(
    host: str,
    port: int = 3478,
    *,
    config: DiscoveryConfig | None = None,
    family: int = 0,
    progress: Progress | None = None,
) -> DiscoveryResult:
    """Run RFC 5780 NAT behaviour discovery against the STUN server at ``host:port``: over UDP,
    or with ``config.reliable`` the mapping test over TCP. ``progress`` gets one line as each
    test starts. Raises :class:`~stun.errors.LocalProtocolError` when the name does not resolve;
    everything else the network does is part of the result (a verdict, or why there is none).

    >>> result = await discover_nat("stun.example.net")  # doctest: +SKIP
    >>> result.mapping.verdict, result.filtering.verdict  # doctest: +SKIP
    (<Behavior.ENDPOINT_INDEPENDENT: ...>, <Behavior.ADDRESS_AND_PORT_DEPENDENT: ...>)
    """
    config = config or DiscoveryConfig()
    server = await resolve(host, port, family, stream=config.reliable)
    run = _run_tcp if config.reliable else _run_udp
    return await run(server, config, progress)
