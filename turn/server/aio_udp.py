"""asyncio side of the TURN server's UDP: the listeners that clients reach over UDP, and the
relayed addresses, one UDP socket each.

Both are read in batches on readiness (:class:`stun.aio.UdpReader`) and answered inline, with no
queue between the socket and the core's lean entry points
:meth:`~turn.server.TurnServerCore.relay_from_client` and
:meth:`~turn.server.TurnServerCore.relay_from_peer`, which take the socket address as it comes and
fall back to :meth:`~turn.server.TurnServerCore.handle_datagram`: this is the per-datagram path of
the relay. What a batch sends — answers to clients, data relayed to peers or back to clients — is
queued on the sending socket's :mod:`stun.batch_io` and leaves when the batch ends, many datagrams
per system call on Linux; what is sent outside a batch (after a timer, from a TCP client) leaves at
once.
:class:`UdpRelays` is the core's :class:`~turn.server.RelayAllocator`: it binds a relayed address
on the relay IP address of its family at a port drawn from a range, from a random point on
(relayed ports should not be predictable, RFC 8656 §7.2), skipping ports another process or
worker holds. What a peer sends goes through the core and out to the client on the listener or
connection of the allocation's 5-tuple, which :class:`~turn.server.aio.TurnServer` finds.
"""

from __future__ import annotations

import errno
import logging
import secrets
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stun import Address, AddressFamily, LocalProtocolError
from stun.aio import UdpReader, bind_udp
from stun.batch_io import DatagramIO, datagram_io
from stun.datagram import Datagram

if TYPE_CHECKING:
    from .aio import TurnServer

_log = logging.getLogger("icestack.turn")

#: Ports a relay allocation may find taken (by another process or worker) before it gives up.
MAX_BIND_ATTEMPTS = 64
#: Errors that say "this port is taken, try another"; any other bind error ends the search.
_PORT_TAKEN = frozenset((errno.EADDRINUSE, errno.EACCES))

#: ``send(data, remote)`` to a client: a UDP listener's queue (its :mod:`stun.batch_io` ``send``,
#: which may raise OSError on the portable path) or a stream connection's ``send``.
_SendToClient = Callable[[bytes, Address], object]


class _Relay:
    """One relayed transport address: its socket, and where the core's answers to peers go."""

    __slots__ = ("address", "client", "queue", "reader", "relay", "sendto", "server")

    def __init__(self, server: TurnServer, address: Address, sock: socket.socket) -> None:
        self.server = server
        self.address = address
        self.relay = server.core.relay_from_peer
        self.sendto = sock.sendto
        #: How to reach the client of the allocation, looked up on the first datagram from a peer.
        self.client: _SendToClient | None = None
        io = _counted_io(server, sock)
        #: ``queue(data, peer)``: relayed to a peer from inside a reader's batch.
        self.queue = io.send
        self.reader = UdpReader(sock, self.from_peer, errors=server.reader_errors, io=io)

    def from_peer(self, data: bytes, sockaddr: tuple[Any, ...], now: float) -> None:
        out = self.relay(data, self.address, sockaddr, now)
        if out is None:
            return
        client = self.client
        if client is None:
            client = self.client = self.server._client_side(self.address)
            if client is None:
                return
        try:
            client(out.data, out.remote)
        except OSError:
            self.server.transport_stats.send_errors += 1


def _counted_io(server: TurnServer, sock: socket.socket) -> DatagramIO:
    """The socket's batched (or portable) I/O, its refused sends counted as send errors."""
    io = datagram_io(sock, batch=server.batch_io)
    stats = server.transport_stats

    def refused(count: int) -> None:
        stats.send_errors += count

    io.on_send_error = refused
    return io


def _bind_ports(host: str, ports: list[int]) -> list[socket.socket]:
    """A UDP socket on each port of ``host``, or none at all (the first error is raised)."""
    socks: list[socket.socket] = []
    try:
        for port in ports:
            socks.append(bind_udp(host, port, receive_buffer=None))
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class UdpRelays:
    """The :class:`~turn.server.RelayAllocator` of :class:`TurnServer`: a UDP socket per address.

    ``hosts`` holds the relay IP address of each family; ports come from ``ports``, tried from a
    random point on, skipping ports that are taken; at most ``max_relays`` sockets are open.
    """

    def __init__(
        self,
        server: TurnServer,
        hosts: dict[AddressFamily, str],
        ports: range,
        *,
        max_relays: int,
    ) -> None:
        if not ports or ports.step != 1 or ports.start < 1 or ports.stop > 0x10000:
            raise LocalProtocolError("relay ports must be a non-empty range of ports, step 1")
        self.server = server
        self.hosts = hosts
        self.ports = ports
        self.max_relays = max_relays
        #: Every relayed address bound now, and its socket.
        self.relays: dict[Address, _Relay] = {}

    def __len__(self) -> int:
        return len(self.relays)

    def allocate_relay(
        self, family: AddressFamily, *, even_port: bool = False, reserve_next: bool = False
    ) -> Address | None:
        """Bind a fresh relayed address (and the next port too with ``reserve_next``)."""
        host = self.hosts.get(family)
        wanted = 2 if reserve_next else 1
        if host is None or len(self.relays) + wanted > self.max_relays:
            return None
        ports = self.ports
        count = len(ports)
        start = secrets.randbelow(count)
        failures = 0
        for step in range(count):
            port = ports[(start + step) % count]
            if (even_port or reserve_next) and port % 2:
                continue
            addresses = [Address(host, port + i) for i in range(wanted)]
            if addresses[-1].port not in ports or any(a in self.relays for a in addresses):
                continue
            try:
                socks = _bind_ports(host, [address.port for address in addresses])
            except OSError as exc:
                failures += 1
                if exc.errno in _PORT_TAKEN and failures < MAX_BIND_ATTEMPTS:
                    continue
                if exc.errno not in _PORT_TAKEN:
                    _log.warning("cannot bind a relayed address on %s: %s", host, exc)
                break
            for address, sock in zip(addresses, socks, strict=True):
                self.relays[address] = _Relay(self.server, address, sock)
            return addresses[0]
        self.server.transport_stats.relay_failures += 1
        return None

    def release_relay(self, address: Address) -> None:
        """Close the socket of a relayed address."""
        relay = self.relays.pop(address, None)
        if relay is None:
            raise LocalProtocolError(f"{address} is not a relayed address in use")
        relay.reader.close()

    def send(self, datagram: Datagram) -> None:
        """Send a datagram the core relays to a peer, from the relayed address it names."""
        relay = self.relays.get(datagram.local)  # type: ignore[arg-type]
        if relay is None:
            return
        try:
            relay.sendto(datagram.data, datagram.remote)
        except OSError:
            self.server.transport_stats.send_errors += 1

    def close(self) -> None:
        """Close every relayed socket."""
        for relay in self.relays.values():
            relay.reader.close()
        self.relays.clear()


class _UdpClients:
    """A UDP listener for clients: requests answered and ChannelData relayed inline."""

    __slots__ = ("local", "queue", "reader", "relay", "relays", "sendto", "server")

    def __init__(self, server: TurnServer, sock: socket.socket) -> None:
        self.server = server
        self.relay = server.core.relay_from_client
        self.relays = server.relays.relays
        self.sendto = sock.sendto
        io = _counted_io(server, sock)
        self.queue = io.send
        self.reader = UdpReader(
            sock, self.from_client, server._after_batch, errors=server.reader_errors, io=io
        )
        self.local = self.reader.local

    def from_client(self, data: bytes, sockaddr: tuple[Any, ...], now: float) -> None:
        local = self.local
        out = self.relay(data, local, sockaddr, now)
        if out is None:
            return
        try:
            if out.local == local:
                self.queue(out.data, sockaddr)
            else:  # relayed to a peer, from a relayed address
                relay = self.relays.get(out.local)  # type: ignore[arg-type]
                if relay is not None:
                    relay.queue(out.data, out.remote)
        except OSError:
            self.server.transport_stats.send_errors += 1

    def send(self, data: bytes, remote: Address) -> None:
        """Send to a client at once (outside a reader's batch)."""
        try:
            self.sendto(data, remote)
        except OSError:
            self.server.transport_stats.send_errors += 1
