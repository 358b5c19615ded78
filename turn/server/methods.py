"""What a TURN server does with each authenticated request (RFC 8656 §7.2, §8.2, §11.2, §12.2;
RFC 6062 §5.1, §5.2, §5.4 for TCP allocations, Connect and ConnectionBind).

:class:`RequestHandlers` runs one method's checks in the order its RFC section lists them; the
first that fails raises :class:`Refused`, which becomes the error response (420 for unknown
comprehension-required attributes comes first, as for any STUN request, RFC 8489 §6.3). Every
answer, success or error, is protected with the key the request authenticated with. A Connect
that passes its checks is answered later, when the peer connection succeeds or fails
(:meth:`RequestHandlers.connect_answer`); see :mod:`turn.server.connections`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stun import (
    Address,
    AddressFamily,
    AlternateServer,
    Attribute,
    Integrity,
    LocalProtocolError,
    Message,
    Method,
    UnknownAttributes,
    XorMappedAddress,
)
from stun.address import family_of, is_unicast
from stun.advertised import advertise

from ..attributes import (
    AdditionalAddressFamily,
    AddressErrorCode,
    ChannelNumber,
    ConnectionId,
    DontFragment,
    EvenPort,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    TurnAttrType,
    XorPeerAddress,
    XorRelayedAddress,
)
from ..channel import MIN_CHANNEL
from .allocation import Allocation, ChannelBinding, FiveTuple
from .config import TurnServerConfig
from .connections import (
    ConnectionState,
    ConnectionTable,
    OpenPeerConnection,
    PeerConnection,
    SpliceConnection,
    TcpListeners,
)
from .events import ChannelGranted, DeletionReason, PermissionGranted, RequestRefused
from .stats import Outcome, TurnServerStats
from .table import AllocationTable

_DONT_FRAGMENT = (UnknownAttributes((TurnAttrType.DONT_FRAGMENT,)),)
#: Relayed addresses tried for a TCP allocation whose port the driver cannot listen on.
_TCP_RELAY_ATTEMPTS = 8


class Refused(Exception):
    """A request's check failed: answer with ``code`` (and ``attributes``), count ``outcome``;
    ``detail`` says what was refused, for the :class:`RequestRefused` event."""

    def __init__(
        self,
        code: int,
        outcome: Outcome,
        attributes: tuple[Attribute, ...] = (),
        detail: str | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.outcome = outcome
        self.attributes = attributes
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AuthenticatedRequest:
    """An authenticated request and how to protect its answer."""

    message: Message
    five_tuple: FiveTuple
    username: str
    key: bytes
    integrity: Integrity
    fingerprint: bool


def _known_family(number: int) -> AddressFamily | None:
    """The :class:`stun.AddressFamily` of a family byte, or ``None`` for an unregistered one."""
    return AddressFamily(number) if number in _FAMILIES else None


_FAMILIES = frozenset(int(family) for family in AddressFamily)


class RequestHandlers:
    """Allocate, Refresh, CreatePermission and ChannelBind on an :class:`AllocationTable`;
    Connect and ConnectionBind on a :class:`ConnectionTable` too (TCP allocations need
    ``tcp_listeners`` and ``config.tcp_relays``; without them they are answered 442)."""

    #: The methods handled here.
    METHODS = frozenset(
        (
            Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND,
            Method.CONNECT, Method.CONNECTION_BIND,
        )
    )  # fmt: skip

    def __init__(
        self,
        config: TurnServerConfig,
        table: AllocationTable,
        stats: TurnServerStats,
        software: tuple[Attribute, ...],
        connections: ConnectionTable,
        tcp_listeners: TcpListeners | None,
    ) -> None:
        self.config = config
        self.table = table
        self.stats = stats
        self.connections = connections
        self.tcp_listeners = tcp_listeners if config.tcp_relays else None
        self._software = software
        self._handlers: dict[int, Callable[[AuthenticatedRequest, float], bytes | None]] = {
            Method.ALLOCATE: self._allocate,
            Method.REFRESH: self._refresh,
            Method.CREATE_PERMISSION: self._create_permission,
            Method.CHANNEL_BIND: self._channel_bind,
            Method.CONNECT: self._connect,
            Method.CONNECTION_BIND: self._connection_bind,
        }

    def handle(self, request: AuthenticatedRequest, now: float) -> bytes | None:
        """The protected response to an authenticated request of one of :attr:`METHODS`, or
        ``None`` for a Connect whose answer waits for the peer connection."""
        message = request.message
        try:
            if message.unknown_required:
                unknown = UnknownAttributes(tuple(dict.fromkeys(message.unknown_required)))
                raise Refused(420, Outcome.UNKNOWN_ATTRIBUTE, (unknown,))
            return self._handlers[message.method](request, now)
        except Refused as refused:
            return self._refuse(request, refused)

    def _refuse(self, request: AuthenticatedRequest, refused: Refused) -> bytes:
        self.stats.counts[refused.outcome] += 1
        method = request.message.method
        self.table.events.append(
            RequestRefused(
                request.five_tuple,
                request.username,
                method,
                refused.code,
                refused.outcome,
                refused.detail,
            )
        )
        error = request.message.error_response(
            refused.code, attributes=(*refused.attributes, *self._software)
        )
        return self._protect(request, error)

    def _protect(self, request: AuthenticatedRequest, response: Message) -> bytes:
        return response.encode(
            key=request.key, integrity=request.integrity, fingerprint=request.fingerprint
        )

    def _answer(self, request: AuthenticatedRequest, attributes: list[Attribute]) -> bytes:
        """The protected success response with ``attributes`` and SOFTWARE."""
        attributes.extend(self._software)
        return self._protect(request, request.message.success_response(attributes))

    def _owned(self, request: AuthenticatedRequest, now: float) -> Allocation:
        """The allocation a non-Allocate request acts on: 437 without one, 441 if it is another
        user's (RFC 8656 §5)."""
        allocation = self.table.get(request.five_tuple, now)
        if allocation is None:
            raise Refused(437, Outcome.ALLOCATION_MISMATCH)
        if allocation.username != request.username:
            raise Refused(441, Outcome.WRONG_CREDENTIALS)
        return allocation

    def _lifetime(self, requested: int | None) -> float:
        """The lifetime to grant (§7.2, §8.2): the client's (seconds) clamped to [default,
        maximum]."""
        config = self.config
        if requested is None:
            return config.default_lifetime
        return max(config.default_lifetime, min(float(requested), config.max_lifetime))

    def _refusal(self, peer: Address) -> str | None:
        if not is_unicast(peer.host):  # whatever the policy allows
            return "not a unicast address"
        refusal = self.config.peer_policy.refusal(peer.host, self.table.own_hosts)
        if refusal is not None and peer.host in self.table.own_hosts and self.table.by_relay(peer):
            # Another allocation's relayed address on this server: two clients of one server
            # relaying to each other (ICE relay-relay). Data may only ever go to relayed
            # addresses here, never to this server's other ports (see TurnServerCore._to_peer).
            return None
        return refusal

    def _check_peer(self, peer: Address) -> None:
        """403 for a peer the policy refuses, naming it and the reason."""
        refusal = self._refusal(peer)
        if refusal is not None:
            raise Refused(403, Outcome.FORBIDDEN, detail=f"peer {peer.host}: {refusal}")

    # ------------------------------------------------------------------ Allocate (§7.2)

    def _allocate(self, request: AuthenticatedRequest, now: float) -> bytes:
        message = request.message
        five_tuple = request.five_tuple
        config = self.config
        table = self.table
        existing = table.get(five_tuple, now)
        if existing is not None:
            if existing.transaction_id == message.transaction_id:
                self.stats.counts[Outcome.ALLOCATE_REPEATED] += 1
                return existing.allocate_response
            raise Refused(437, Outcome.ALLOCATION_MISMATCH)
        if config.alternate_server is not None:
            raise Refused(300, Outcome.REDIRECTED, (AlternateServer(config.alternate_server),))
        transport = message.get(RequestedTransport)
        if transport is None:
            raise Refused(400, Outcome.BAD_REQUEST)
        tcp = transport.protocol == TransportProtocol.TCP
        if tcp:
            self._check_tcp_allocate(request)
        elif transport.protocol != TransportProtocol.UDP:
            raise Refused(442, Outcome.UNSUPPORTED_TRANSPORT)
        if message.has(DontFragment):  # rule 4: we cannot set DF, so it is unknown to us
            raise Refused(420, Outcome.UNKNOWN_ATTRIBUTE, _DONT_FRAGMENT)
        # What to relay from: a reserved port (by its token) or a new address of a family.
        source = self._relay_source(message, now)
        even_port = message.get(EvenPort)
        reserve = even_port is not None and even_port.reserve
        if table.user_count(request.username) >= config.user_quota:
            raise Refused(486, Outcome.QUOTA_REACHED, detail=f"user_quota {config.user_quota}")
        if len(table) >= config.total_quota:
            raise Refused(
                508, Outcome.INSUFFICIENT_CAPACITY, detail=f"total_quota {config.total_quota}"
            )
        if reserve and table.reservation_count >= config.max_reservations:
            raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
        extra: list[Attribute] = []
        if isinstance(source, bytes):
            claimed = table.claim(source)
            relays = {family_of(claimed): claimed}
        elif tcp:
            tcp_relay = self._tcp_relay(source)
            if tcp_relay is None:
                raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
            relays = {source: tcp_relay}
        else:
            relay = table.new_relay(source, even_port=even_port is not None, reserve_next=reserve)
            if relay is None:
                raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
            relays = {source: relay}
            if reserve:
                token = table.reserve(relay, now, config.reservation_lifetime, config.rng)
                extra.append(ReservationToken(token))
            if message.has(AdditionalAddressFamily):
                second, refusal = self._additional_relay()
                if second is not None:
                    relays[AddressFamily.IPV6] = second
                if refusal is not None:
                    extra.append(refusal)
        requested = message.get(Lifetime)
        lifetime = self._lifetime(requested.value if requested is not None else None)
        allocation = table.create(
            five_tuple,
            username=request.username,
            relays=relays,
            transaction_id=message.transaction_id,
            now=now,
            lifetime=lifetime,
            max_bytes_per_second=config.max_bytes_per_second,
            relay_transport=TransportProtocol.TCP if tcp else TransportProtocol.UDP,
        )
        attributes: list[Attribute] = [
            *(
                XorRelayedAddress(Address(advertise(config.external_addresses, a.host), a.port))
                for a in allocation.relayed_addresses
            ),
            Lifetime(int(lifetime)),
            XorMappedAddress(five_tuple.client),
            *extra,
        ]
        allocation.allocate_response = self._answer(request, attributes)
        self.stats.counts[Outcome.ALLOCATED] += 1
        return allocation.allocate_response

    def _check_tcp_allocate(self, request: AuthenticatedRequest) -> None:
        """RFC 6062 §5.1 rules 1-3: TCP relays offered (else 442), a TCP or TLS control
        connection (else 400), and none of DONT-FRAGMENT, EVEN-PORT, RESERVATION-TOKEN (400).
        A TCP allocation has one relayed address, so ADDITIONAL-ADDRESS-FAMILY is refused too."""
        if self.tcp_listeners is None:
            raise Refused(442, Outcome.UNSUPPORTED_TRANSPORT)
        message = request.message
        if not request.five_tuple.transport.is_stream or any(
            message.has(kind)
            for kind in (DontFragment, EvenPort, ReservationToken, AdditionalAddressFamily)
        ):
            raise Refused(400, Outcome.BAD_REQUEST)

    def _tcp_relay(self, family: AddressFamily) -> Address | None:
        """A relayed address of ``family`` the driver listens on for TCP (§5.1 rule 4), or
        ``None``; an address it cannot listen on goes back to the allocator."""
        listeners = self.tcp_listeners
        assert listeners is not None  # _check_tcp_allocate let the request through
        for _ in range(_TCP_RELAY_ATTEMPTS):
            relay = self.table.new_relay(family)
            if relay is None:
                return None
            if listeners.listen(relay):
                return relay
            self.table.relays.release_relay(relay)
        return None

    def _relay_source(self, message: Message, now: float) -> bytes | AddressFamily:
        """Rules 5-9 of RFC 8656 §7.2: the RESERVATION-TOKEN to claim, or the family of the
        relayed address to allocate (IPv4 unless REQUESTED-ADDRESS-FAMILY says otherwise)."""
        token = message.get(ReservationToken)
        requested = message.get(RequestedAddressFamily)
        additional = message.get(AdditionalAddressFamily)
        even_port = message.get(EvenPort)
        if token is not None:
            if even_port is not None or requested is not None or additional is not None:
                raise Refused(400, Outcome.BAD_REQUEST)
            if self.table.reservation(token.token, now) is None:
                raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
            return token.token
        if requested is not None and additional is not None:
            raise Refused(400, Outcome.BAD_REQUEST)
        family = AddressFamily.IPV4 if requested is None else _known_family(requested.family)
        if family is None or family not in self.config.relay_families:
            raise Refused(440, Outcome.ADDRESS_FAMILY_NOT_SUPPORTED)
        if additional is not None and (
            (even_port is not None and even_port.reserve) or additional.family != AddressFamily.IPV6
        ):
            raise Refused(400, Outcome.BAD_REQUEST)
        return family

    def _additional_relay(self) -> tuple[Address | None, AddressErrorCode | None]:
        """The IPv6 half of a dual allocation, or why there is none (RFC 8656 §7.2 rule 9: the
        allocation goes ahead with IPv4 only and ADDRESS-ERROR-CODE says 440 or 508)."""
        if AddressFamily.IPV6 not in self.config.relay_families:
            return None, AddressErrorCode.of(AddressFamily.IPV6, 440)
        relay = self.table.new_relay(AddressFamily.IPV6)
        if relay is None:
            return None, AddressErrorCode.of(AddressFamily.IPV6, 508)
        return relay, None

    # ------------------------------------------------------------------ Refresh (§8.2)

    def _refresh(self, request: AuthenticatedRequest, now: float) -> bytes:
        allocation = self._owned(request, now)
        message = request.message
        requested = message.get(RequestedAddressFamily)
        if requested is not None and requested.family not in allocation.relays:
            raise Refused(443, Outcome.PEER_FAMILY_MISMATCH)
        lifetime = message.get(Lifetime)
        if lifetime is not None and lifetime.value == 0:
            if requested is not None and len(allocation.relays) > 1:
                # One family of a dual allocation goes; the other stays.
                self.table.delete_family(allocation, AddressFamily(requested.family))
            else:
                self.table.delete(allocation, DeletionReason.DELETED)
            self.stats.counts[Outcome.DELETED] += 1
            return self._answer(request, [Lifetime(0)])
        requested_lifetime = lifetime.value if lifetime is not None else None
        return self._answer(request, [Lifetime(self.extend(allocation, requested_lifetime, now))])

    def extend(self, allocation: Allocation, requested: int | None, now: float) -> int:
        """What a Refresh that asks for ``requested`` and passes every check does (§8.2): the
        allocation lives the lifetime granted more, counted; the seconds granted. Shared with the
        server's lean path for Refresh."""
        granted = self._lifetime(requested)
        self.table.refresh(allocation, now + granted)
        self.stats.counts[Outcome.REFRESHED] += 1
        return int(granted)

    # ------------------------------------------------------------------ CreatePermission (§11.2)

    def _create_permission(self, request: AuthenticatedRequest, now: float) -> bytes:
        allocation = self._owned(request, now)
        peers = [attribute.address for attribute in request.message.get_all(XorPeerAddress)]
        if not peers:
            raise Refused(400, Outcome.BAD_REQUEST)
        if any(family_of(peer) not in allocation.relays for peer in peers):
            raise Refused(443, Outcome.PEER_FAMILY_MISMATCH)
        for peer in peers:
            self._check_peer(peer)
        allocation.sweep(now, self.config.channel_rebind_wait)
        hosts = {peer.host for peer in peers}
        added = hosts - allocation.permissions.keys()
        if len(allocation.permissions) + len(added) > self.config.max_permissions:
            raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
        expires_at = now + self.config.permission_lifetime
        for host in hosts:
            allocation.permit(host, expires_at)
        self.stats.counts[Outcome.PERMITTED] += 1
        if added:
            self.table.events.append(
                PermissionGranted(request.five_tuple, request.username, tuple(sorted(added)))
            )
        return self._answer(request, [])

    # ------------------------------------------------------------------ ChannelBind (§12.2)

    def _channel_bind(self, request: AuthenticatedRequest, now: float) -> bytes:
        allocation = self._owned(request, now)
        message = request.message
        number_attribute = message.get(ChannelNumber)
        peer_attribute = message.get(XorPeerAddress)
        if (
            number_attribute is None
            or peer_attribute is None
            or not MIN_CHANNEL <= number_attribute.number <= self.config.max_channel
            or peer_attribute.address.port == 0  # not a transport address to relay to
        ):
            raise Refused(400, Outcome.BAD_REQUEST)
        if allocation.relay_transport is not TransportProtocol.UDP:
            raise Refused(400, Outcome.BAD_REQUEST)  # a TCP allocation has no channels
        number = number_attribute.number
        peer = peer_attribute.address
        relay = allocation.relays.get(family_of(peer))
        if relay is None:
            raise Refused(443, Outcome.PEER_FAMILY_MISMATCH)
        config = self.config
        allocation.sweep(now, config.channel_rebind_wait)
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            raise Refused(400, Outcome.BAD_REQUEST)
        by_peer = allocation.channel_by_peer.get(peer)
        if by_peer is not None and by_peer.number != number:
            raise Refused(400, Outcome.BAD_REQUEST)
        self._check_peer(peer)
        if (bound is None and len(allocation.channels) >= config.max_channels) or (
            peer.host not in allocation.permissions
            and len(allocation.permissions) >= config.max_permissions
        ):
            raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
        expires_at = now + config.channel_lifetime
        if bound is None:
            allocation.bind(ChannelBinding(number, peer, relay, expires_at))
            self.table.events.append(
                ChannelGranted(request.five_tuple, request.username, number, peer)
            )
        else:
            allocation.rebind(bound, expires_at)
        allocation.permit(peer.host, now + config.permission_lifetime)
        self.stats.counts[Outcome.CHANNEL_BOUND] += 1
        return self._answer(request, [])

    # ------------------------------------------------------------------ Connect (RFC 6062 §5.2)

    def _connect(self, request: AuthenticatedRequest, now: float) -> None:
        allocation = self._owned(request, now)
        if allocation.relay_transport is not TransportProtocol.TCP:
            raise Refused(400, Outcome.BAD_REQUEST)
        peer_attribute = request.message.get(XorPeerAddress)
        if peer_attribute is None or peer_attribute.address.port == 0:
            raise Refused(400, Outcome.BAD_REQUEST)
        peer = peer_attribute.address
        relay = allocation.relays.get(family_of(peer))
        if relay is None:
            raise Refused(443, Outcome.PEER_FAMILY_MISMATCH)
        connections = self.connections
        if connections.to_peer(allocation, peer) is not None:
            raise Refused(446, Outcome.CONNECTION_EXISTS)
        self._check_peer(peer)
        if not allocation.has_permission(peer.host, now):
            raise Refused(403, Outcome.FORBIDDEN, detail=f"peer {peer.host}: no permission")
        config = self.config
        if connections.count(allocation) >= config.max_peer_connections:
            raise Refused(508, Outcome.INSUFFICIENT_CAPACITY)
        deadline = now + config.tcp_connect_timeout
        connection = connections.open(
            allocation, peer, ConnectionState.CONNECTING, deadline, request
        )
        connections.commands.append(OpenPeerConnection(connection.id, relay, peer))

    def connect_answer(self, connection: PeerConnection, connected: bool) -> bytes:
        """The answer to the Connect that opened ``connection``: success with its CONNECTION-ID,
        or 447 (Connection Timeout or Failure)."""
        request = connection.request
        if request is None:
            raise LocalProtocolError(f"{connection} has no Connect request to answer")
        if not connected:
            return self._refuse(request, Refused(447, Outcome.CONNECTION_FAILED))
        self.stats.counts[Outcome.CONNECTED] += 1
        return self._answer(request, [ConnectionId(connection.id)])

    # ------------------------------------------------------------------ ConnectionBind (§5.4)

    def _connection_bind(self, request: AuthenticatedRequest, now: float) -> bytes:
        five_tuple = request.five_tuple
        attribute = request.message.get(ConnectionId)
        connections = self.connections
        connection = connections.get(attribute.value) if attribute is not None else None
        if (
            not five_tuple.transport.is_stream
            or connection is None
            or connection.state is not ConnectionState.PENDING
            # a control connection, or one already bound, cannot become a data connection
            or self.table.peek(five_tuple) is not None
            or connections.by_data(five_tuple) is not None
        ):
            raise Refused(400, Outcome.BAD_REQUEST)
        allocation = connection.allocation
        if allocation.username != request.username:
            raise Refused(441, Outcome.WRONG_CREDENTIALS)
        if allocation.expires_at <= now:
            self.table.delete(allocation, DeletionReason.EXPIRED)
            raise Refused(400, Outcome.BAD_REQUEST)
        connections.bind(connection, five_tuple)
        connections.commands.append(SpliceConnection(connection.id, five_tuple))
        self.stats.counts[Outcome.CONNECTION_BOUND] += 1
        return self._answer(request, [])
