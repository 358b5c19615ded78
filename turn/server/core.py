"""The sans-IO TURN server (RFC 8656 §5-§12): allocations, permissions, channels and the relay.

Theory of operation. :class:`TurnServerCore` is one machine with the five verbs of architecture.md
§2. Its driver feeds it every datagram with the address it arrived on (``local``): one that arrived
on a relayed transport address comes from a peer of that allocation; any other comes from a client,
and ``(remote, local, transport)`` is its 5-tuple. Each datagram gives at most one datagram back,
which :meth:`TurnServerCore.handle_datagram` returns directly for the driver's hot path (and
:meth:`TurnServerCore.receive_datagram` queues). What arrives goes one of these ways:

* **From a client, ChannelData** (first byte 0x40-0x4F, §12.6; up to 0x7F with
  ``config.rfc5766_channels``): relayed to the peer bound to the channel, from the relayed
  address of the peer's family — if the channel is bound, a permission for the peer exists and
  the bandwidth limit allows.
* **From a client, a Send indication** (§10.2): the same checks (indications are never
  authenticated, so nothing else can be checked); DATA is relayed to XOR-PEER-ADDRESS.
* **From a client, a Binding request**: answered by a :class:`stun.BindingServer`.
* **From a client, a TURN request** (Allocate §7.2, Refresh §8.2, CreatePermission §11.2,
  ChannelBind §12.2): authenticated with the long-term credential mechanism (RFC 8489 §9.2;
  :class:`stun.authentication.LongTermAuthenticator`), unknown comprehension-required attributes
  refused with 420, then the method's checks in the RFC's order; the first that fails decides the
  error. Every response to an authenticated request carries MESSAGE-INTEGRITY(-SHA256) and
  SOFTWARE; FINGERPRINT when the request had it. Authentication failures (400, 401 and the REST
  API's expired usernames) are answered only while the source's token bucket allows (one per IPv4
  address or IPv6 /64); then dropped.
* **From a peer** (§10.3, §12.7): relayed to the client if a permission exists for the peer's IP
  address, as ChannelData when a channel is bound to the peer's transport address, else as a Data
  indication.
* Anything else is dropped, and every datagram's fate is counted in :attr:`TurnServerCore.stats`.

**TCP allocations** (RFC 6062), when built with ``tcp_listeners`` and ``config.tcp_relays``: an
Allocate for TCP over a TCP or TLS control connection gets a relayed address the driver listens
on; Connect, ConnectionBind, peers connecting, and every timeout are decided here, while the
driver owns the TCP sockets. The commands the core issues (:meth:`TurnServerCore.tcp_commands`)
and the notifications it takes (:meth:`~TurnServerCore.peer_connected` and the methods after it)
are described in :mod:`turn.server.connections`. Answers that come later than the request that
caused them (a Connect's, a ConnectionAttempt indication) wait in
:meth:`~TurnServerCore.datagrams_to_send`. A TCP allocation relays no UDP: Send indications,
ChannelBind (400) and datagrams to its relayed address are refused.

Time: the :class:`~turn.server.table.AllocationTable` keeps one timer per allocation, at its
expiry, and one per reserved port; the :class:`~turn.server.connections.ConnectionTable` one per
peer connection that is connecting or waiting for its ConnectionBind. Permissions and channels
are checked against ``now`` on use, so their expiry needs no timer of its own; their tables are
swept when the allocation's timer finds it refreshed, and before they grow. Every table is
bounded by the configuration (quotas, ``max_permissions``, ``max_channels``,
``max_reservations``, ``failure_table_size``, ``max_peer_connections``), so a flood costs a
bounded amount of memory.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator

from stun import (
    MAGIC_COOKIE,
    Address,
    Attribute,
    BindingServer,
    DecodeError,
    LocalProtocolError,
    Message,
    MessageClass,
    Method,
    ServerConfig,
    Software,
    Username,
)
from stun.address import family_of
from stun.authentication import Authenticated, LongTermAuthenticator, Rejected
from stun.datagram import Datagram
from stun.integrity import integrity_matches
from stun.limits import SourceRateLimiter, source_key
from stun.message import message_type
from stun.outcomes import Outcome as StunOutcome
from stun.outcomes import ServerStats
from stun.randomness import new_transaction_id

from .. import errors as turn_errors
from ..attributes import (
    ConnectionId,
    Data,
    DontFragment,
    TransportProtocol,
    TurnAttrType,
    XorPeerAddress,
)
from ..channel import MAX_DATA_SIZE, decode_channel_data, encode_channel_data
from ..rest_api import rest_api_expiry
from ..transport import ClientTransport
from .allocation import Allocation, FiveTuple
from .config import TurnServerConfig
from .connections import (
    ClosePeerConnection,
    ConnectionState,
    ConnectionTable,
    PeerConnection,
    TcpCommand,
    TcpListeners,
)
from .credentials import RestApiUsers
from .events import DeletionReason, RequestRefused, TurnServerEvent
from .lean import SEND_INDICATION, SendReader
from .lean_refresh import REFRESH_REQUEST, RefreshAnswers, RefreshReader
from .methods import AuthenticatedRequest, RequestHandlers
from .relays import RelayAllocator
from .stats import Outcome, TurnServerStats
from .table import AllocationTable

#: The most data a Data indication can carry: DATA plus an IPv6 XOR-PEER-ADDRESS must fit the
#: 16-bit message length, padding included.
_MAX_INDICATION_DATA = (0xFFFF - 4 - 24) & ~3
#: The largest UDP payloads over IPv4 and IPv6 (65535 less the IP and UDP headers): a client on a
#: stream can send more in one ChannelData or Send indication than a datagram to a peer holds.
_MAX_UDP_PAYLOAD_V4 = 65535 - 20 - 8
_MAX_UDP_PAYLOAD_V6 = 65535 - 8

_BINDING_REQUEST = b"\x00\x01"
#: The STUN messages a client sends over UDP that the lean path may handle.
_LEAN_STUN = frozenset((SEND_INDICATION, REFRESH_REQUEST))
_HEADER = struct.Struct("!HHI12s")
_CHANNEL_HEADER = struct.Struct("!HH")
_UDP = ClientTransport.UDP
#: ``_new(Address, (host, port))``, ``_new(Datagram, (data, local, remote))``: the tuples without
#: the Python-level ``__new__`` of a NamedTuple (the relay path makes them per datagram).
_new = tuple.__new__
#: A socket address as ``recvfrom`` gives it: ``(host, port)``, or four items for IPv6.
SockAddr = tuple[object, ...]
#: The XOR-PEER-ADDRESS values of IPv4 peers remembered for Data indications (peer-grown, so
#: bounded): an IPv4 value does not depend on the transaction ID (RFC 8489 §14.2).
_PEER_VALUE_CACHE_SIZE = 4096
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_DATA_INDICATION = message_type(Method.DATA, MessageClass.INDICATION)
#: Authentication answers that are the mechanism's normal course, not failures (RFC 8489 §9.2):
#: the first request's 401 challenge and a 438 for a nonce that aged.
_NORMAL_COURSE = frozenset((StunOutcome.CHALLENGED, StunOutcome.STALE_NONCE))


class TurnServerCore:
    """A TURN server without sockets (see the module docstring).

    ``relays`` hands out relayed transport addresses; ``tcp_listeners`` listens for peers on those
    of TCP allocations (without it, TCP allocations are answered 442). ``wall_clock_offset`` is
    Unix time minus the ``now`` the driver passes (for the expiry of REST API usernames); a driver
    whose clock is Unix time leaves it 0, one on a monotonic clock sets it at start and may
    correct it any time.
    """

    def __init__(
        self,
        config: TurnServerConfig,
        relays: RelayAllocator,
        *,
        tcp_listeners: TcpListeners | None = None,
        wall_clock_offset: float = 0.0,
    ) -> None:
        self.config = config
        self.wall_clock_offset = wall_clock_offset
        credentials = config.credentials
        self._rest_users: RestApiUsers | None = None
        if config.rest_secret is not None:
            users = RestApiUsers(config.rest_secret, credentials.realm, credentials.users)
            self._rest_users = users
            credentials = dataclasses.replace(credentials, users=users)
        self._authenticator = LongTermAuthenticator.with_nonces(
            credentials,
            secret=config.nonce_secret,
            lifetime=config.nonce_lifetime,
            rng=config.rng,
        )
        self._binding = (
            BindingServer(ServerConfig(software=config.software, classic_compatibility=False))
            if config.answer_binding
            else None
        )
        self.stats = TurnServerStats(
            binding=self._binding.stats if self._binding is not None else ServerStats()
        )
        self._software: tuple[Attribute, ...] = (
            (Software(config.software),) if config.software is not None else ()
        )
        self._failures = SourceRateLimiter(
            rate=config.failure_rate,
            burst=config.failure_burst,
            max_entries=config.failure_table_size,
        )
        #: The peer connections of TCP allocations (read it; the core changes it).
        self.connections = ConnectionTable(
            config.rng, max_per_allocation=config.max_peer_connections
        )
        #: The allocations and reserved ports (read it; the core changes it).
        self.table = AllocationTable(
            relays, rebind_wait=config.channel_rebind_wait, on_delete=self._allocation_deleted
        )
        self._methods = RequestHandlers(
            config, self.table, self.stats, self._software, self.connections, tcp_listeners
        )
        self._tcp_listeners = self._methods.tcp_listeners
        self._outgoing: list[Datagram] = []
        #: Per address of this server: whether the peer policy admits it (see _admits_own_host).
        self._own_host_admitted: dict[str, bool] = {}
        self._max_channel = config.max_channel
        self._last_channel_byte = config.max_channel >> 8
        self._send_reader = SendReader()
        self._refresh_reader = RefreshReader()
        self._refresh_answers = RefreshAnswers(self._software)
        self._peer_values: dict[Address, bytes] = {}

    # ------------------------------------------------------------------ sans-IO verbs

    def receive_datagram(
        self,
        data: bytes,
        local: Address | None,
        remote: Address,
        now: float,
        *,
        transport: ClientTransport = ClientTransport.UDP,
    ) -> None:
        """Feed one datagram; what it causes to be sent waits in :meth:`datagrams_to_send`."""
        out = self.handle_datagram(data, local, remote, now, transport=transport)
        if out is not None:
            self._outgoing.append(out)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain what must be sent."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """When the next allocation or reserved port expires, or a peer connection times out."""
        timers = (self.table.get_timer(), self.connections.get_timer())
        deadlines = [deadline for deadline in timers if deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Expire what is due: allocations not refreshed, reservations not claimed, Connects
        that did not connect in time (447), peer connections no ConnectionBind claimed."""
        self.table.handle_timer(now)
        for connection in self.connections.due(now):
            if connection.state is ConnectionState.CONNECTING:
                self._answer_connect(connection, connected=False)
            else:
                self.stats.counts[Outcome.CONNECTION_UNCLAIMED] += 1
            self._close(connection)

    def connection_closed(self, five_tuple: FiveTuple) -> None:
        """The TCP or TLS connection of ``five_tuple`` closed: no message can reach the client
        on that 5-tuple again, so its allocation (if any) is deleted now rather than left to
        expire; if it was a client data connection, its peer connection is closed (RFC 6062
        §5.5)."""
        connection = self.connections.by_data(five_tuple)
        if connection is not None:
            self._close(connection)
            return
        allocation = self.table.peek(five_tuple)
        if allocation is not None:
            self.table.delete(allocation, DeletionReason.CONNECTION_CLOSED)

    def tcp_commands(self) -> list[TcpCommand]:
        """Drain what the driver must do with TCP connections, in order (after every call that
        can cause some: each of the verbs and notifications)."""
        commands = self.connections.commands
        self.connections.commands = []
        return commands

    # ------------------------------------------------------------------ TCP relay notifications

    def peer_connected(self, connection_id: int, now: float) -> None:
        """The connection a :class:`~turn.server.connections.OpenPeerConnection` asked for is
        up: answer the Connect with its CONNECTION-ID and wait for the ConnectionBind (§5.2).
        One the core no longer knows (timed out, its allocation gone) is closed."""
        connection = self.connections.get(connection_id)
        if connection is None:
            self.connections.commands.append(ClosePeerConnection(connection_id))
            return
        if connection.state is not ConnectionState.CONNECTING:
            return
        allocation = connection.allocation
        if allocation.expires_at <= now:
            self.table.delete(allocation, DeletionReason.EXPIRED)
            return
        self._answer_connect(connection, connected=True)
        deadline = now + self.config.connection_bind_timeout
        self.connections.advance(connection, ConnectionState.PENDING, deadline)

    def peer_connect_failed(self, connection_id: int, now: float) -> None:
        """Connecting to the peer failed: answer the Connect 447 (§5.2)."""
        connection = self.connections.get(connection_id)
        if connection is not None and connection.state is ConnectionState.CONNECTING:
            self._answer_connect(connection, connected=False)
            self.connections.forget(connection)

    def peer_connection_arrived(self, relay: Address, peer: Address, now: float) -> int | None:
        """A peer connected to the relayed address ``relay`` (§5.3): its CONNECTION-ID, after a
        ConnectionAttempt indication to the client, or ``None`` — close it at once — when the
        allocation has no permission for the peer or no room for another connection."""
        allocation = self.table.by_relay(relay)
        if (
            allocation is None
            or allocation.relay_transport is not TransportProtocol.TCP
            or allocation.expires_at <= now
            or not allocation.has_permission(peer.host, now)
            or self.connections.count(allocation) >= self.config.max_peer_connections
        ):
            self.stats.counts[Outcome.PEER_CONNECTION_REFUSED] += 1
            return None
        deadline = now + self.config.connection_bind_timeout
        connection = self.connections.open(allocation, peer, ConnectionState.PENDING, deadline)
        attempt = Message(
            Method.CONNECTION_ATTEMPT,
            MessageClass.INDICATION,
            new_transaction_id(self.config.rng),
            [XorPeerAddress(peer), ConnectionId(connection.id)],
        )
        five_tuple = allocation.five_tuple
        self._outgoing.append(Datagram(attempt.encode(), five_tuple.server, five_tuple.client))
        self.stats.counts[Outcome.CONNECTION_ATTEMPT] += 1
        return connection.id

    def peer_connection_closed(self, connection_id: int, now: float) -> None:
        """The peer connection closed (or reset): its client data connection closes too (§5.5);
        one still connecting has failed (447)."""
        connection = self.connections.get(connection_id)
        if connection is None:
            return
        if connection.state is ConnectionState.CONNECTING:
            self.peer_connect_failed(connection_id, now)
        else:
            self._close(connection)

    def stream_relayed(self, connection_id: int, size: int, to_peer: bool, now: float) -> float:
        """``size`` bytes went through a spliced connection, to the peer or to the client: count
        them against the bandwidth limit; return how long the driver should stop reading that
        side so that the allocation keeps to ``max_bytes_per_second`` (0: go on)."""
        connection = self.connections.get(connection_id)
        if connection is None:
            return 0.0
        allocation = connection.allocation
        if to_peer:
            self.stats.bytes_to_peer += size
            bucket = allocation.to_peer
        else:
            self.stats.bytes_to_client += size
            bucket = allocation.to_client
        return 0.0 if bucket is None else bucket.spend(size, now)

    def _answer_connect(self, connection: PeerConnection, *, connected: bool) -> None:
        five_tuple = connection.allocation.five_tuple
        answer = self._methods.connect_answer(connection, connected)
        self._outgoing.append(Datagram(answer, five_tuple.server, five_tuple.client))

    def _close(self, connection: PeerConnection) -> None:
        self.connections.forget(connection)
        self.connections.commands.append(ClosePeerConnection(connection.id))

    def _allocation_deleted(self, allocation: Allocation, reason: DeletionReason) -> None:
        """Close the peer connections of a deleted allocation, answering Connects still in
        progress 447 while the control connection lasts, and stop listening on its relayed
        address (RFC 6062 §5.5)."""
        answer = reason is not DeletionReason.CONNECTION_CLOSED
        for connection in self.connections.of(allocation):
            if answer and connection.state is ConnectionState.CONNECTING:
                self._answer_connect(connection, connected=False)
            self._close(connection)
        if allocation.relay_transport is TransportProtocol.TCP and self._tcp_listeners:
            for relay in allocation.relayed_addresses:
                self._tcp_listeners.stop_listening(relay)

    def next_event(self) -> TurnServerEvent | None:
        """The oldest event not yet drained."""
        events = self.table.events
        return events.popleft() if events else None

    # ------------------------------------------------------------------ inspection

    def allocation(self, five_tuple: FiveTuple) -> Allocation | None:
        """The allocation of a 5-tuple, if it has one (read it; do not change it)."""
        return self.table.peek(five_tuple)

    def allocations(self) -> Iterator[Allocation]:
        """Every allocation held."""
        return iter(self.table)

    @property
    def allocation_count(self) -> int:
        """How many allocations are held."""
        return len(self.table)

    @property
    def peer_connection_count(self) -> int:
        """Peer connections of TCP allocations, in any state."""
        return len(self.connections)

    @property
    def failure_sources(self) -> int:
        """How many source addresses the authentication-failure limiter remembers."""
        return len(self._failures)

    def permission_count(self, now: float) -> int:
        """Permissions in force across all allocations."""
        return sum(a.permission_count(now) for a in self.table)

    def channel_count(self, now: float) -> int:
        """Channels carrying data across all allocations."""
        return sum(a.channel_count(now) for a in self.table)

    # ------------------------------------------------------------------ the lean relay path

    def relay_from_client(
        self, data: bytes, local: Address, source: SockAddr, now: float
    ) -> Datagram | None:
        """What :meth:`handle_datagram` answers to a datagram a client sent over UDP, for the
        driver's hot path: ``source`` as the socket gave it (no :class:`~stun.Address` needed).

        ChannelData and Send indications of the common shape (:mod:`turn.server.lean`) on a
        live allocation are relayed from the bytes they carry, through the same checks as the
        typed path (§10.2, §12.6); everything else — and every case the typed path would count
        differently (no allocation, an expired one, a listener address that is also relayed or
        reserved) — goes to :meth:`handle_datagram`. Same datagrams out, same counts, same
        tables: a hypothesis test compares the two.
        """
        client = source[:2]
        if data and (0x40 <= data[0] <= self._last_channel_byte or data[:2] in _LEAN_STUN):
            table = self.table
            allocation = table.by_five_tuple.get((client, local, _UDP))  # type: ignore[call-overload]
            if (
                allocation is not None
                and now < allocation.expires_at
                and local not in table.by_relayed
                and not table.is_reserved(local)
            ):
                if data[0] >= 0x40:
                    return self._relay_channel_data(data, allocation, now)
                if data[1] == SEND_INDICATION[1]:
                    send = self._send_reader.read(data)
                    if send is not None:
                        return self._relay_send(allocation, send[0], send[1], now)
                else:
                    answer = self._lean_refresh(data, allocation, now)
                    if answer is not None:
                        return answer
        return self.handle_datagram(data, local, _new(Address, client), now)

    def _lean_refresh(self, data: bytes, allocation: Allocation, now: float) -> Datagram | None:
        """The answer to a Refresh of the common shape (:mod:`turn.server.lean_refresh`) from
        the client of a live ``allocation``, if it passes every check of the typed path and
        does not delete the allocation; ``None`` leaves it to the typed path."""
        request = self._refresh_reader.read(data)
        if request is None:
            return None
        lifetime = request.lifetime
        if lifetime == 0:
            return None
        at = request.integrity_at
        length_field = request.length_field
        five_tuple = allocation.five_tuple
        result = self._authenticator.verify(
            request.presented,
            lambda key: integrity_matches(key, data, at, length_field),
            five_tuple.client,
            now,
        )
        if (
            type(result) is not Authenticated
            or result.username != allocation.username
            or self._expired(result.username, now)
        ):
            return None
        granted = self._methods.extend(allocation, lifetime, now)
        answer = self._refresh_answers.answer(
            request.transaction_id, granted, result.key, result.integrity, request.fingerprint
        )
        return _new(Datagram, (answer, five_tuple.server, five_tuple.client))

    def relay_from_peer(
        self, data: bytes, relay: Address, source: SockAddr, now: float
    ) -> Datagram | None:
        """What :meth:`handle_datagram` does with a datagram that arrived on the relayed address
        ``relay`` from ``source`` (as the socket gave it), for the driver's hot path."""
        peer: Address = _new(Address, source[:2])
        allocation = self.table.by_relayed.get(relay)
        if allocation is None:
            return self.handle_datagram(data, relay, peer, now)
        return self._from_peer(allocation, data, peer, now)

    # ------------------------------------------------------------------ dispatch

    def handle_datagram(
        self,
        data: bytes,
        local: Address | None,
        remote: Address,
        now: float,
        *,
        transport: ClientTransport = ClientTransport.UDP,
    ) -> Datagram | None:
        """The one datagram to send in answer to ``data`` (or relaying it), or ``None``.

        Peer input never raises. ``local`` is required: it names the listener or relayed address.
        """
        if local is None:
            raise LocalProtocolError("the TURN server needs the local address of every datagram")
        allocation = self.table.by_relay(local)
        if allocation is not None:
            return self._from_peer(allocation, data, remote, now)
        counts = self.stats.counts
        if self.table.is_reserved(local) or not data:
            counts[Outcome.NO_ALLOCATION if data else Outcome.MALFORMED] += 1
            return None
        five_tuple = FiveTuple(remote, local, transport)
        first = data[0]
        if 0x40 <= first <= self._last_channel_byte:
            return self._channel_data(data, five_tuple, now)
        if data[:2] == _BINDING_REQUEST and self._binding is not None:
            counts[Outcome.BINDING] += 1
            response = self._binding.respond(data, local, remote, now)
            return Datagram(response, local, remote) if response is not None else None
        return self._stun(data, five_tuple, now)

    # ------------------------------------------------------------------ the relay (§10, §12)

    def _from_peer(
        self, allocation: Allocation, data: bytes, peer: Address, now: float
    ) -> Datagram | None:
        """A peer's datagram on a relayed address, to the client (§10.3, §12.7)."""
        counts = self.stats.counts
        if allocation.expires_at <= now:
            counts[Outcome.NO_ALLOCATION] += 1
            return None
        if allocation.relay_transport is not TransportProtocol.UDP:
            counts[Outcome.WRONG_RELAY_TRANSPORT] += 1
            return None
        expires_at = allocation.permissions.get(peer.host)
        if expires_at is None or expires_at <= now:
            counts[Outcome.NO_PERMISSION] += 1
            return None
        size = len(data)
        bucket = allocation.to_client
        if bucket is not None and not bucket.take(size, now):
            counts[Outcome.OVER_BANDWIDTH] += 1
            return None
        five_tuple = allocation.five_tuple
        binding = allocation.channel_by_peer.get(peer)
        if binding is not None and now < binding.expires_at and size <= MAX_DATA_SIZE:
            if five_tuple.transport is _UDP:  # the binding's number was checked when bound
                message = _CHANNEL_HEADER.pack(binding.number, size) + data
            else:
                message = encode_channel_data(
                    binding.number, data, pad=True, max_channel=self._max_channel
                )
        elif size <= _MAX_INDICATION_DATA:
            message = self._data_indication(peer, data)
        else:
            counts[Outcome.TOO_BIG] += 1
            return None
        counts[Outcome.RELAYED_TO_CLIENT] += 1
        self.stats.bytes_to_client += size
        return _new(Datagram, (message, five_tuple.server, five_tuple.client))

    def _data_indication(self, peer: Address, data: bytes) -> bytes:
        """A Data indication (§10.3) with XOR-PEER-ADDRESS and DATA, packed directly: what
        ``Message(...).encode()`` makes of the same, without the objects (a test compares)."""
        transaction_id = new_transaction_id(self.config.rng)
        address = self._peer_values.get(peer)
        if address is None:
            address = XorPeerAddress(peer).encode_value(transaction_id)
            if len(address) == 8:  # IPv4: the same for every transaction ID
                if len(self._peer_values) >= _PEER_VALUE_CACHE_SIZE:
                    self._peer_values.clear()
                self._peer_values[peer] = address
        size = len(data)
        body = b"".join(
            (
                _ATTRIBUTE_HEADER.pack(TurnAttrType.XOR_PEER_ADDRESS, len(address)),
                address,
                _ATTRIBUTE_HEADER.pack(TurnAttrType.DATA, size),
                data,
                bytes(-size & 3),
            )
        )
        return _HEADER.pack(_DATA_INDICATION, len(body), MAGIC_COOKIE, transaction_id) + body

    def _admits_own_host(self, host: str) -> bool:
        """Whether the policy admits peers on this address of ours (allow-listed, or loopback
        with ``allow_loopback_peers``); cached, as neither changes while the server runs."""
        admitted = self._own_host_admitted.get(host)
        if admitted is None:
            refusal = self.config.peer_policy.refusal(host, self.table.own_hosts)
            admitted = self._own_host_admitted[host] = refusal is None
        return admitted

    def _to_peer(
        self, allocation: Allocation, relay: Address, peer: Address, data: bytes, now: float
    ) -> Datagram | None:
        """The checks every datagram to a peer passes (§10.2, §12.6), then the datagram."""
        counts = self.stats.counts
        expires_at = allocation.permissions.get(peer.host)
        if expires_at is None or expires_at <= now:  # allocation.has_permission, inlined
            counts[Outcome.NO_PERMISSION] += 1
            return None
        table = self.table
        if (
            peer.host in table.own_hosts
            and table.by_relay(peer) is None
            and not self._admits_own_host(peer.host)
        ):
            # A permission for our own IP (granted for another allocation's relayed address)
            # reaches relayed addresses only, never this server's other ports.
            counts[Outcome.FORBIDDEN] += 1
            return None
        size = len(data)
        if size > _MAX_UDP_PAYLOAD_V4 and (size > _MAX_UDP_PAYLOAD_V6 or ":" not in peer.host):
            counts[Outcome.TOO_BIG] += 1
            return None
        bucket = allocation.to_peer
        if bucket is not None and not bucket.take(size, now):
            counts[Outcome.OVER_BANDWIDTH] += 1
            return None
        counts[Outcome.RELAYED_TO_PEER] += 1
        self.stats.bytes_to_peer += size
        return _new(Datagram, (data, relay, peer))

    def _channel_data(self, data: bytes, five_tuple: FiveTuple, now: float) -> Datagram | None:
        """ChannelData from a client (§12.6)."""
        counts = self.stats.counts
        allocation = self.table.get(five_tuple, now)
        if allocation is None:
            counts[Outcome.NO_ALLOCATION] += 1
            return None
        return self._relay_channel_data(data, allocation, now)

    def _relay_channel_data(
        self, data: bytes, allocation: Allocation, now: float
    ) -> Datagram | None:
        """ChannelData from the client of a live allocation, to the channel's peer (§12.6)."""
        counts = self.stats.counts
        try:
            number, payload = decode_channel_data(data, max_channel=self._max_channel)
        except turn_errors.DecodeError:
            counts[Outcome.MALFORMED] += 1
            return None
        binding = allocation.channels.get(number)
        if binding is None or binding.expires_at <= now:
            counts[Outcome.NO_CHANNEL] += 1
            return None
        return self._to_peer(allocation, binding.relay, binding.peer, payload, now)

    def _send(self, message: Message, five_tuple: FiveTuple, now: float) -> Datagram | None:
        """A Send indication (§10.2)."""
        counts = self.stats.counts
        allocation = self.table.get(five_tuple, now)
        if allocation is None:
            counts[Outcome.NO_ALLOCATION] += 1
            return None
        peer = message.get(XorPeerAddress)
        data = message.get(Data)
        # DONT-FRAGMENT counts as unknown: this server cannot set the DF bit (§10.2).
        if peer is None or data is None or message.unknown_required or message.has(DontFragment):
            counts[Outcome.BAD_INDICATION] += 1
            return None
        return self._relay_send(allocation, peer.address, data.value, now)

    def _relay_send(
        self, allocation: Allocation, peer: Address, data: bytes, now: float
    ) -> Datagram | None:
        """The DATA of a Send indication on a live allocation, to its XOR-PEER-ADDRESS (§10.2)."""
        relay = allocation.relays.get(family_of(peer))
        if (
            peer.port == 0
            or relay is None
            or allocation.relay_transport is not TransportProtocol.UDP
        ):
            self.stats.counts[Outcome.BAD_INDICATION] += 1
            return None
        return self._to_peer(allocation, relay, peer, data, now)

    # ------------------------------------------------------------------ requests

    def _stun(self, data: bytes, five_tuple: FiveTuple, now: float) -> Datagram | None:
        counts = self.stats.counts
        try:
            message = Message.decode(data)
        except DecodeError:
            counts[Outcome.MALFORMED] += 1
            return None
        fingerprint = message.has_fingerprint
        if fingerprint and not message.check_fingerprint():
            counts[Outcome.BAD_FINGERPRINT] += 1
            return None
        if message.message_class is MessageClass.INDICATION and message.method == Method.SEND:
            return self._send(message, five_tuple, now)
        if message.message_class is not MessageClass.REQUEST:
            counts[Outcome.NOT_A_REQUEST] += 1
            return None
        if message.method not in RequestHandlers.METHODS:
            counts[Outcome.UNSUPPORTED_METHOD] += 1
            return None
        owner = self._nonce_owner(message, five_tuple)
        result = self._authenticator.authenticate(message, owner, now)
        if isinstance(result, Rejected):
            self.stats.authentication.count(result.outcome)
            return self._refuse_authentication(
                message, five_tuple, result, Outcome.AUTHENTICATION_FAILED, fingerprint, now
            )
        if self._expired(result.username, now):
            challenge = self._authenticator.challenge(owner, now)
            rejected = Rejected(401, StunOutcome.UNKNOWN_USER, challenge)
            return self._refuse_authentication(
                message, five_tuple, rejected, Outcome.EXPIRED_CREDENTIALS, fingerprint, now
            )
        request = AuthenticatedRequest(
            message, five_tuple, result.username, result.key, result.integrity, fingerprint
        )
        response = self._methods.handle(request, now)
        if response is None:
            return None
        return Datagram(response, five_tuple.server, five_tuple.client)

    def _nonce_owner(self, message: Message, five_tuple: FiveTuple) -> Address:
        """The address whose nonces a request may carry: its source, except that a ConnectionBind
        may carry those of the control connection of the peer connection it names. A client
        sends ConnectionBind on a new connection with the credentials of the control connection
        (RFC 6062 §4.3, §4.4); coturn accepts its nonce there, and clients expect no 438."""
        if message.method == Method.CONNECTION_BIND:
            attribute = message.get(ConnectionId)
            connection = self.connections.get(attribute.value) if attribute is not None else None
            if connection is not None:
                return connection.allocation.five_tuple.client
        return five_tuple.client

    def _refuse_authentication(
        self,
        message: Message,
        five_tuple: FiveTuple,
        rejected: Rejected,
        outcome: Outcome,
        fingerprint: bool,
        now: float,
    ) -> Datagram | None:
        """Answer an authentication failure while the source's budget lasts, else drop it.

        A 438 is answered always: only a client that knows the key can cause one.
        """
        source = source_key(five_tuple.client.host)
        if rejected.code != 438 and not self._failures.allow(source, now):
            self.stats.counts[Outcome.RATE_LIMITED] += 1
            return None
        self.stats.counts[outcome] += 1
        if rejected.outcome not in _NORMAL_COURSE:
            username = message.get(Username)
            why = outcome if outcome is Outcome.EXPIRED_CREDENTIALS else rejected.outcome
            name = username.value if username is not None else ""
            refused = RequestRefused(five_tuple, name, message.method, rejected.code, why)
            self.table.events.append(refused)
        attributes = rejected.attributes
        if rejected.key is not None:
            attributes += self._software
        response = message.error_response(rejected.code, attributes=attributes).encode(
            key=rejected.key, integrity=rejected.integrity, fingerprint=fingerprint
        )
        return Datagram(response, five_tuple.server, five_tuple.client)

    def _expired(self, username: str, now: float) -> bool:
        """Whether a REST API username's expiry (Unix time) has come."""
        users = self._rest_users
        if users is None or users.is_static(username):
            return False
        expiry = rest_api_expiry(username)
        return expiry is None or expiry <= now + self.wall_clock_offset
