"""The sans-IO TURN server core (turn.server) on a virtual clock: every error code path, lifetimes,
permissions, channels, quotas, peer policy, authentication limits, REST API credentials."""

from __future__ import annotations

import random

import pytest

from stun import (
    Address,
    AddressFamily,
    AlternateServer,
    Attribute,
    ErrorCode,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    PasswordAlgorithms,
    Realm,
    Software,
    UnknownAttribute,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    make_address,
)
from stun.client import ClientConfig, ClientSession, Credentials
from stun.datagram import Datagram, Machine
from stun.events import RequestSucceeded
from stun.server import LongTermCredentials
from stun.server import Outcome as StunOutcome
from turn import (
    AdditionalAddressFamily,
    AddressErrorCode,
    ChannelData,
    ChannelNumber,
    Data,
    DontFragment,
    EvenPort,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    XorPeerAddress,
)
from turn.server import (
    AllocationCreated,
    AllocationDeleted,
    ClientTransport,
    DeletionReason,
    Outcome,
    PortRangeAllocator,
    TurnServerCore,
    rest_api_password,
    rest_api_username,
)

from .harness import (
    CLIENT,
    EPOCH,
    IPV4,
    IPV6,
    OTHER_CLIENT,
    PASSWORDS,
    PEER,
    PEER_V6,
    REALM,
    RELAY,
    REST_SECRET,
    SERVER,
    Client,
    bare,
    code,
    events,
    from_peer,
    make_server,
    relayed,
    send_indication,
)


@pytest.fixture
def server() -> TurnServerCore:
    return make_server()[0]


@pytest.fixture
def alice(server: TurnServerCore) -> Client:
    return Client(server)


# --------------------------------------------------------------------------- Allocate


def test_allocate_after_the_challenge(server: TurnServerCore) -> None:
    client = Client(server)
    challenge = client.challenge(0.0)
    assert challenge.get(Realm) == Realm(REALM)
    assert challenge.has(PasswordAlgorithms)
    assert not challenge.has(MessageIntegrity)  # an unauthenticated request gets no integrity
    response = client.allocate()
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert relayed(response) == [RELAY]
    assert response.get(Lifetime) == Lifetime(600)
    assert response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert response.has(Software)
    assert response.has(MessageIntegrity)  # MD5 key, no PASSWORD-ALGORITHM: RFC 8489 §9.2.4
    assert events(server) == [
        AllocationCreated(client.five_tuple, "alice", (RELAY,), 600.0)
    ]
    assert server.get_timer() == 600.0
    assert server.stats[Outcome.ALLOCATED] == 1
    assert server.stats[Outcome.AUTHENTICATION_FAILED] == 1
    assert server.stats.authentication[StunOutcome.CHALLENGED] == 1


@pytest.mark.parametrize(
    ("asked", "granted"), [(None, 600), (0, 600), (100, 600), (1800, 1800), (99_999, 3600)]
)
def test_lifetime_is_clamped_between_default_and_maximum(
    alice: Client, asked: int | None, granted: int
) -> None:
    extra = [] if asked is None else [Lifetime(asked)]
    assert alice.allocate(*extra).get(Lifetime) == Lifetime(granted)
    assert alice.server.get_timer() == granted


def test_lifetimes_are_configurable() -> None:
    server, _ = make_server(default_lifetime=60.0, max_lifetime=120.0)
    assert Client(server).allocate(Lifetime(1000)).get(Lifetime) == Lifetime(120)


def test_allocate_retransmission_gets_the_same_answer_and_another_437(
    server: TurnServerCore,
) -> None:
    client = Client(server)
    client.challenge(0.0)
    request = Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        b"allocate-tid",
        [RequestedTransport(), Username("alice"), Realm(REALM), Nonce(client.nonce or "")],
    ).encode(key=client.key)
    first = client.send(request, 0.0)
    again = client.send(request, 0.5)
    assert first is not None and again is not None and first.data == again.data
    assert server.stats[Outcome.ALLOCATE_REPEATED] == 1
    assert server.allocation_count == 1
    assert code(client.allocate(now=1.0)) == 437


def test_allocation_expires_on_the_timer(alice: Client) -> None:
    alice.allocate()
    relays = alice.server.table.relays
    assert isinstance(relays, PortRangeAllocator) and relays.in_use == {RELAY}
    events(alice.server)
    alice.server.handle_timer(599.9)
    assert alice.server.allocation_count == 1
    alice.server.handle_timer(600.0)
    assert alice.server.allocation_count == 0
    assert relays.in_use == set()
    assert alice.server.get_timer() is None
    assert events(alice.server) == [
        AllocationDeleted(alice.five_tuple, "alice", (RELAY,), DeletionReason.EXPIRED)
    ]


def test_an_expired_allocation_is_gone_even_before_its_timer_runs(alice: Client) -> None:
    alice.allocate()
    assert code(alice.refresh(now=600.0)) == 437
    assert alice.server.allocation_count == 0
    assert code(alice.allocate(now=600.0)) is None  # the 5-tuple is free again


def test_refresh_extends_and_the_timer_follows(alice: Client) -> None:
    alice.allocate()
    assert alice.refresh(now=500.0).get(Lifetime) == Lifetime(600)
    assert alice.server.get_timer() == 600.0  # the first deadline, found refreshed ...
    alice.server.handle_timer(600.0)
    assert alice.server.allocation_count == 1
    assert alice.server.get_timer() == 1100.0  # ... and timed again
    alice.server.handle_timer(1100.0)
    assert alice.server.allocation_count == 0


def test_refresh_to_a_shorter_lifetime_is_timed_at_once(alice: Client) -> None:
    alice.allocate(Lifetime(3600))
    alice.refresh(now=100.0)
    assert alice.server.get_timer() == 700.0


def test_refresh_with_lifetime_zero_deletes(alice: Client) -> None:
    alice.allocate()
    events(alice.server)
    response = alice.refresh(Lifetime(0), now=10.0)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.get(Lifetime) == Lifetime(0)
    assert events(alice.server) == [
        AllocationDeleted(alice.five_tuple, "alice", (RELAY,), DeletionReason.DELETED)
    ]
    assert alice.server.get_timer() is None
    # A retransmission finds nothing: 437, which the client takes as success (§8.3).
    assert code(alice.refresh(Lifetime(0), now=11.0)) == 437


def test_requests_without_an_allocation_get_437(alice: Client) -> None:
    assert code(alice.refresh()) == 437
    assert code(alice.permit(PEER)) == 437
    assert code(alice.bind(0x4000, PEER)) == 437
    assert alice.server.stats[Outcome.ALLOCATION_MISMATCH] == 3


def test_another_user_on_the_same_five_tuple_gets_441(server: TurnServerCore) -> None:
    Client(server).allocate()
    bob = Client(server, username="bob", password=PASSWORDS["bob"])
    assert code(bob.refresh()) == 441
    assert code(bob.permit(PEER)) == 441
    assert code(bob.bind(0x4000, PEER)) == 441
    assert code(bob.allocate()) == 437


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ([], 400),  # no REQUESTED-TRANSPORT
        ([RequestedTransport(TransportProtocol.TCP)], 442),  # RFC 6062 relays: not yet
        ([RequestedTransport(132)], 442),
    ],
)
def test_requested_transport_must_be_udp(
    alice: Client, attributes: list[Attribute], expected: int
) -> None:
    response = alice.request(Method.ALLOCATE, attributes)
    assert code(response) == expected
    assert response.has(Software) and response.has(MessageIntegrity)
    assert alice.server.allocation_count == 0


def test_dont_fragment_is_refused_as_unknown(alice: Client) -> None:
    """§7.2 rule 4: a server that cannot set DF treats DONT-FRAGMENT as unknown (420)."""
    response = alice.allocate(DontFragment())
    assert code(response) == 420
    assert response.get(UnknownAttributes) == UnknownAttributes((0x001A,))


def test_unknown_comprehension_required_attributes_get_420(alice: Client) -> None:
    alice.allocate()
    response = alice.refresh(UnknownAttribute(0x7F01, b"?"), UnknownAttribute(0xC001, b"ok"))
    assert code(response) == 420
    assert response.get(UnknownAttributes) == UnknownAttributes((0x7F01,))


@pytest.mark.parametrize(
    ("attributes", "relay_families", "expected"),
    [
        ([RequestedAddressFamily(IPV6)], {IPV4, IPV6}, None),
        ([RequestedAddressFamily(3)], {IPV4, IPV6}, 440),
        ([RequestedAddressFamily(IPV6)], {IPV4}, 440),
        ([RequestedAddressFamily(IPV4)], {IPV6}, 440),
        ([], {IPV6}, 440),  # no family asked for means IPv4
        ([RequestedAddressFamily(IPV4), AdditionalAddressFamily(IPV6)], {IPV4, IPV6}, 400),
        ([AdditionalAddressFamily(IPV4)], {IPV4, IPV6}, 400),
        ([AdditionalAddressFamily(7)], {IPV4, IPV6}, 400),
        ([EvenPort(reserve=True), AdditionalAddressFamily(IPV6)], {IPV4, IPV6}, 400),
        ([ReservationToken(bytes(8)), EvenPort()], {IPV4, IPV6}, 400),
        ([ReservationToken(bytes(8)), RequestedAddressFamily(IPV4)], {IPV4, IPV6}, 400),
        ([ReservationToken(bytes(8)), AdditionalAddressFamily(IPV6)], {IPV4, IPV6}, 400),
        ([ReservationToken(bytes(8))], {IPV4, IPV6}, 508),  # no such reservation
    ],
)
def test_address_family_and_reservation_rules(
    attributes: list[Attribute], relay_families: set[AddressFamily], expected: int | None
) -> None:
    server, _ = make_server(relay_families=frozenset(relay_families))
    assert code(Client(server).allocate(*attributes)) == expected


def test_an_ipv6_relay(alice: Client) -> None:
    response = alice.allocate(RequestedAddressFamily(IPV6))
    assert relayed(response) == [Address("2001:db8::1", 50000)]


def test_dual_allocation(alice: Client) -> None:
    response = alice.allocate(AdditionalAddressFamily(IPV6))
    assert relayed(response) == [RELAY, Address("2001:db8::1", 50000)]
    assert not response.has(AddressErrorCode)
    assert code(alice.permit(PEER, PEER_V6)) is None


def test_dual_allocation_without_ipv6_is_granted_in_part() -> None:
    """§7.2 rule 9: the IPv4 half goes ahead; ADDRESS-ERROR-CODE says why IPv6 did not."""
    server, _ = make_server(relay_families=frozenset({IPV4}))
    response = Client(server).allocate(AdditionalAddressFamily(IPV6))
    assert relayed(response) == [RELAY]
    assert response.get(AddressErrorCode) == AddressErrorCode.of(IPV6, 440)
    server, _ = make_server(hosts={IPV4: "192.0.2.1"})  # offered, but none to be had
    response = Client(server).allocate(AdditionalAddressFamily(IPV6))
    assert relayed(response) == [RELAY]
    assert response.get(AddressErrorCode) == AddressErrorCode.of(IPV6, 508)


def test_refresh_of_one_family_of_a_dual_allocation(alice: Client) -> None:
    alice.allocate(AdditionalAddressFamily(IPV6))
    alice.permit(PEER, PEER_V6)
    response = alice.refresh(RequestedAddressFamily(IPV6), Lifetime(0))
    assert response.get(Lifetime) == Lifetime(0)
    allocation = alice.server.allocation(alice.five_tuple)
    assert allocation is not None and allocation.relayed_addresses == (RELAY,)
    assert list(allocation.permissions) == [PEER.host]
    assert code(alice.refresh(RequestedAddressFamily(IPV6))) == 443
    assert code(alice.refresh(RequestedAddressFamily(IPV4))) is None


def test_refresh_with_a_family_the_allocation_lacks_gets_443(alice: Client) -> None:
    alice.allocate()
    assert code(alice.refresh(RequestedAddressFamily(IPV6))) == 443


def test_even_port(alice: Client) -> None:
    server, _ = make_server(ports=range(50001, 50010))
    assert relayed(Client(server).allocate(EvenPort())) == [Address("192.0.2.1", 50002)]


def test_even_port_reservation_is_claimed_by_token(server: TurnServerCore) -> None:
    response = Client(server).allocate(EvenPort(reserve=True))
    assert relayed(response) == [RELAY]
    token = response.get(ReservationToken)
    assert token is not None
    assert server.table.reservation_count == 1
    other = Client(server, address=OTHER_CLIENT)
    assert relayed(other.allocate(token, now=29.0)) == [Address("192.0.2.1", 50001)]
    assert server.table.reservation_count == 0
    third = Client(server, address=make_address("198.51.100.9", 1))
    assert code(third.allocate(token, now=29.5)) == 508  # spent


def test_an_unclaimed_reservation_is_released_after_30_seconds() -> None:
    server, relays = make_server()
    token = Client(server).allocate(EvenPort(reserve=True)).get(ReservationToken)
    assert token is not None
    assert relays.in_use == {RELAY, Address("192.0.2.1", 50001)}
    assert server.get_timer() == 30.0
    server.handle_timer(30.0)
    assert relays.in_use == {RELAY}
    assert server.get_timer() == 600.0
    other = Client(server, address=OTHER_CLIENT)
    assert code(other.allocate(token, now=31.0)) == 508


def test_datagrams_to_a_reserved_port_are_not_client_requests() -> None:
    server, _ = make_server()
    Client(server).allocate(EvenPort(reserve=True))
    squatter = Client(server, listener=Address("192.0.2.1", 50001))
    assert squatter.send(bare(Method.ALLOCATE), 1.0) is None
    assert server.stats[Outcome.NO_ALLOCATION] == 1


def test_user_quota_gets_486_and_total_quota_508() -> None:
    server, _ = make_server(user_quota=2, total_quota=3)
    for n in range(2):
        assert code(Client(server, address=make_address("198.51.100.1", n + 1)).allocate()) is None
    assert code(Client(server, address=make_address("198.51.100.1", 3)).allocate()) == 486
    bob = Client(server, address=make_address("198.51.100.2", 1), username="bob",
                 password=PASSWORDS["bob"])
    assert code(bob.allocate()) is None
    bob2 = Client(server, address=make_address("198.51.100.2", 2), username="bob",
                  password=PASSWORDS["bob"])
    assert code(bob2.allocate()) == 508
    assert server.stats[Outcome.QUOTA_REACHED] == 1
    assert server.stats[Outcome.INSUFFICIENT_CAPACITY] == 1


def test_quota_frees_up_when_an_allocation_goes() -> None:
    server, _ = make_server(user_quota=1)
    first = Client(server)
    first.allocate()
    second = Client(server, address=OTHER_CLIENT)
    assert code(second.allocate()) == 486
    first.refresh(Lifetime(0))
    assert code(second.allocate()) is None


def test_no_relayed_address_left_gets_508() -> None:
    server, _ = make_server(ports=range(50000, 50001))
    assert code(Client(server).allocate()) is None
    assert code(Client(server, address=OTHER_CLIENT).allocate()) == 508


def test_max_reservations_gets_508() -> None:
    server, _ = make_server(max_reservations=1)
    assert code(Client(server).allocate(EvenPort(reserve=True))) is None
    other = Client(server, address=OTHER_CLIENT)
    assert code(other.allocate(EvenPort(reserve=True))) == 508
    assert code(other.allocate(EvenPort())) is None


def test_alternate_server_redirects_allocate_with_300() -> None:
    elsewhere = make_address("192.0.2.200", 3478)
    server, _ = make_server(alternate_server=elsewhere)
    response = Client(server).allocate()
    assert code(response) == 300
    assert response.get(AlternateServer) == AlternateServer(elsewhere)
    assert response.has(MessageIntegrity)  # RFC 8489 §10: the redirection is protected
    assert server.allocation_count == 0


# --------------------------------------------------------------------------- permissions


def test_create_permission_errors(alice: Client) -> None:
    alice.allocate()
    assert code(alice.request(Method.CREATE_PERMISSION, [])) == 400
    assert code(alice.permit(PEER_V6)) == 443
    assert code(alice.permit(PEER, make_address("10.1.2.3", 1))) == 403
    allocation = alice.server.allocation(alice.five_tuple)
    assert allocation is not None and allocation.permissions == {}  # all or nothing


def test_create_permission_capacity_gets_508() -> None:
    server, _ = make_server(max_permissions=2)
    client = Client(server)
    client.allocate()
    first, second = make_address("203.0.113.1", 1), make_address("203.0.113.2", 1)
    assert code(client.permit(first, second)) is None
    assert code(client.permit(make_address("203.0.113.3", 1))) == 508
    assert code(client.permit(make_address("203.0.113.1", 9))) is None  # a refresh costs nothing
    assert code(client.permit(make_address("203.0.113.3", 1), now=300.0)) is None  # expired: room


def test_send_indication_needs_a_permission(alice: Client) -> None:
    alice.allocate()
    assert alice.send_indication(PEER, b"hello", 1.0) is None
    assert alice.server.stats[Outcome.NO_PERMISSION] == 1
    alice.permit(make_address(PEER.host, 1), now=2.0)  # permissions ignore the port
    out = alice.send_indication(PEER, b"hello", 3.0)
    assert out == Datagram(b"hello", RELAY, PEER)
    assert alice.server.stats[Outcome.RELAYED_TO_PEER] == 1
    assert alice.server.stats.bytes_to_peer == 5


def test_empty_data_is_relayed(alice: Client) -> None:
    alice.allocate()
    alice.permit(PEER)
    assert alice.send_indication(PEER, b"", 1.0) == Datagram(b"", RELAY, PEER)


@pytest.mark.parametrize(
    "message",
    [
        send_indication(Data(b"x")),
        send_indication(XorPeerAddress(PEER)),
        send_indication(XorPeerAddress(PEER), Data(b"x"), DontFragment()),
        send_indication(XorPeerAddress(PEER), Data(b"x"), UnknownAttribute(0x7F00, b"")),
        send_indication(XorPeerAddress(PEER_V6), Data(b"x")),
    ],
    ids=["no peer", "no data", "dont-fragment", "unknown attribute", "other family"],
)
def test_send_indications_that_cannot_be_served_are_dropped(alice: Client, message: bytes) -> None:
    alice.allocate()
    alice.permit(PEER)
    assert alice.send(message, 1.0) is None
    assert alice.server.stats[Outcome.BAD_INDICATION] == 1


def test_send_indication_without_an_allocation_is_dropped(server: TurnServerCore) -> None:
    assert Client(server).send_indication(PEER, b"x", 0.0) is None
    assert server.stats[Outcome.NO_ALLOCATION] == 1


def test_peer_data_comes_back_as_a_data_indication(alice: Client) -> None:
    alice.allocate()
    assert from_peer(alice.server, b"too early", 1.0) is None
    assert alice.server.stats[Outcome.NO_PERMISSION] == 1
    alice.permit(PEER, now=2.0)
    out = from_peer(alice.server, b"welcome", 3.0, peer=make_address(PEER.host, 6000))
    assert out is not None and (out.local, out.remote) == (SERVER, CLIENT)
    indication = Message.decode(out.data)
    assert (indication.method, indication.message_class) == (Method.DATA, MessageClass.INDICATION)
    assert indication.attributes == [
        XorPeerAddress(make_address(PEER.host, 6000)), Data(b"welcome")
    ]
    # The hand-packed indication is exactly what the codec makes of the same.
    assert Message(
        Method.DATA, MessageClass.INDICATION, indication.transaction_id, indication.attributes
    ).encode() == out.data
    assert alice.server.stats.bytes_to_client == 7


def test_permissions_last_300_seconds_and_data_does_not_refresh_them(alice: Client) -> None:
    alice.allocate(Lifetime(3600))
    alice.permit(PEER, now=10.0)
    assert alice.send_indication(PEER, b"a", 309.9) is not None
    assert from_peer(alice.server, b"b", 309.9) is not None
    assert alice.send_indication(PEER, b"a", 310.0) is None
    assert from_peer(alice.server, b"b", 310.0) is None
    alice.permit(PEER, now=311.0)  # CreatePermission refreshes
    assert alice.send_indication(PEER, b"a", 610.9) is not None


def test_expired_allocation_relays_nothing(alice: Client) -> None:
    alice.allocate()
    alice.permit(PEER)
    assert from_peer(alice.server, b"late", 600.0) is None
    assert alice.server.stats[Outcome.NO_ALLOCATION] == 1


def test_peer_data_to_an_unknown_relay_is_not_a_client_request(server: TurnServerCore) -> None:
    """Nothing is allocated: a datagram on any address is taken for a client's, and junk."""
    assert from_peer(server, b"\xffjunk", 0.0) is None
    assert server.stats[Outcome.MALFORMED] == 1


# --------------------------------------------------------------------------- channels


def test_channel_bind_and_channel_data_both_ways(alice: Client) -> None:
    alice.allocate()
    assert code(alice.bind(0x4000, PEER, now=1.0)) is None
    out = alice.send(ChannelData(0x4000, b"via channel").encode(), 2.0)
    assert out == Datagram(b"via channel", RELAY, PEER)  # the bind installed a permission
    back = from_peer(alice.server, b"reply", 3.0)
    assert back == Datagram(ChannelData(0x4000, b"reply").encode(), SERVER, CLIENT)
    # Another port of the same peer IP has a permission but no channel: a Data indication.
    other = from_peer(alice.server, b"other", 4.0, peer=make_address(PEER.host, 9))
    assert other is not None and Message.decode(other.data).method == Method.DATA


def test_channel_data_to_stream_clients_is_padded(server: TurnServerCore) -> None:
    client = Client(server, transport=ClientTransport.TCP)
    client.allocate()
    client.bind(0x4001, PEER)
    back = from_peer(server, b"abcde", 1.0)
    assert back is not None and back.data == ChannelData(0x4001, b"abcde").encode(pad=True)
    assert len(back.data) == 12


def test_the_transport_is_part_of_the_five_tuple(server: TurnServerCore) -> None:
    Client(server).allocate()
    over_tcp = Client(server, transport=ClientTransport.TCP)
    assert relayed(over_tcp.allocate()) == [Address("192.0.2.1", 50001)]
    assert server.allocation_count == 2


@pytest.mark.parametrize(
    "attributes",
    [
        [ChannelNumber(0x4000)],
        [XorPeerAddress(PEER)],
        [ChannelNumber(0x3FFF), XorPeerAddress(PEER)],
        [ChannelNumber(0x5000), XorPeerAddress(PEER)],  # RFC 5766's range, not RFC 8656's
        [ChannelNumber(0xFFFF), XorPeerAddress(PEER)],
    ],
)
def test_channel_bind_bad_requests(alice: Client, attributes: list[Attribute]) -> None:
    alice.allocate()
    assert code(alice.request(Method.CHANNEL_BIND, attributes)) == 400


def test_channel_conflicts_get_400_and_refreshes_succeed(alice: Client) -> None:
    alice.allocate()
    other_peer = make_address("203.0.113.10", 5000)
    assert code(alice.bind(0x4000, PEER)) is None
    assert code(alice.bind(0x4000, other_peer)) == 400  # the number is taken
    assert code(alice.bind(0x4001, PEER)) == 400  # the peer has a number
    assert code(alice.bind(0x4000, PEER, now=500.0)) is None  # a refresh
    allocation = alice.server.allocation(alice.five_tuple)
    assert allocation is not None and allocation.channels[0x4000].expires_at == 1100.0


def test_channel_bind_checks_family_policy_and_capacity() -> None:
    server, _ = make_server(max_channels=1)
    client = Client(server)
    client.allocate()
    assert code(client.bind(0x4000, PEER_V6)) == 443
    assert code(client.bind(0x4000, make_address("169.254.169.254", 80))) == 403
    assert code(client.bind(0x4000, PEER)) is None
    assert code(client.bind(0x4001, make_address("203.0.113.10", 1))) == 508


def test_channels_last_600_seconds_then_wait_300_before_rebinding(alice: Client) -> None:
    alice.allocate(Lifetime(3600))
    other_peer = make_address("203.0.113.10", 5000)
    alice.bind(0x4000, PEER)
    alice.permit(PEER, now=299.0)
    alice.permit(PEER, now=590.0)
    assert alice.send(ChannelData(0x4000, b"x").encode(), 599.9) is not None
    back = from_peer(alice.server, b"y", 599.9)
    assert back is not None and ChannelData.decode(back.data) == ChannelData(0x4000, b"y")
    assert alice.send(ChannelData(0x4000, b"x").encode(), 600.0) is None
    assert alice.server.stats[Outcome.NO_CHANNEL] == 1
    # The permission still holds: without a channel, the peer's data comes as a Data indication.
    back = from_peer(alice.server, b"y", 600.0)
    assert back is not None and Message.decode(back.data).get(Data) == Data(b"y")
    assert alice.server.channel_count(600.0) == 0
    assert code(alice.bind(0x4000, other_peer, now=899.9)) == 400  # the number is held ...
    assert code(alice.bind(0x4001, PEER, now=899.9)) == 400  # ... and so is the peer
    assert code(alice.bind(0x4000, PEER, now=700.0)) is None  # but the same pair may return
    alice.server.handle_timer(1000.0)
    assert code(alice.bind(0x4001, other_peer, now=1000.0)) is None
    assert code(alice.bind(0x4002, other_peer, now=1300.0)) == 400
    assert code(alice.bind(0x4002, make_address("203.0.113.11", 1), now=1300.0)) is None


def test_channel_data_on_unbound_or_reserved_channels_is_dropped(alice: Client) -> None:
    alice.allocate()
    assert alice.send(ChannelData(0x4000, b"x").encode(), 1.0) is None
    assert alice.send(bytes.fromhex("50000001") + b"x", 1.0) is None  # 0x5000: not a channel
    assert alice.send(bytes.fromhex("40000009") + b"x", 1.0) is None  # truncated
    assert alice.server.stats[Outcome.NO_CHANNEL] == 1
    assert alice.server.stats[Outcome.MALFORMED] == 2


def test_channel_data_without_an_allocation_is_dropped(server: TurnServerCore) -> None:
    assert Client(server).send(ChannelData(0x4000, b"x").encode(), 0.0) is None
    assert server.stats[Outcome.NO_ALLOCATION] == 1


# --------------------------------------------------------------------------- bandwidth


def test_bandwidth_limit_drops_what_exceeds_the_bucket() -> None:
    server, _ = make_server(max_bytes_per_second=100_000)
    client = Client(server)
    client.allocate()
    client.bind(0x4000, PEER)
    chunk = bytes(50_000)
    sent = [client.send(ChannelData(0x4000, chunk).encode(), 1.0) is not None for _ in range(3)]
    assert sent == [True, True, False]  # 100 kB of burst
    assert server.stats[Outcome.OVER_BANDWIDTH] == 1
    assert client.send(ChannelData(0x4000, chunk).encode(), 1.5) is not None  # refilled 50 kB
    # The other direction has a bucket of its own.
    assert from_peer(server, chunk, 1.5) is not None
    assert from_peer(server, chunk, 1.5) is not None
    assert from_peer(server, chunk, 1.5) is None


def test_the_bucket_always_fits_one_largest_datagram() -> None:
    server, _ = make_server(max_bytes_per_second=1000)
    client = Client(server)
    client.allocate()
    client.permit(PEER)
    assert client.send_indication(PEER, bytes(60_000), 1.0) is not None
    assert client.send_indication(PEER, bytes(6_000), 1.0) is None


# --------------------------------------------------------------------------- authentication


def test_wrong_password_and_unknown_user_get_401_with_a_challenge(server: TurnServerCore) -> None:
    wrong = Client(server, password="nope")
    response = wrong.allocate()
    assert code(response) == 401 and response.has(Nonce) and not response.has(MessageIntegrity)
    stranger = Client(server, username="mallory")
    assert code(stranger.allocate()) == 401
    assert server.stats.authentication[StunOutcome.BAD_INTEGRITY] == 1
    assert server.stats.authentication[StunOutcome.UNKNOWN_USER] == 1
    assert server.allocation_count == 0


def test_integrity_without_credentials_gets_400(server: TurnServerCore) -> None:
    client = Client(server)
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12), [RequestedTransport()])
    response = client.ask(request, 0.0, key=client.key)
    assert response is not None and code(response) == 400


def test_stale_nonce_gets_438_and_a_fresh_one() -> None:
    server, _ = make_server(nonce_lifetime=60.0)
    client = Client(server)
    client.allocate()
    response = client.request(Method.REFRESH, [], 60.0, retry_stale=False)
    assert code(response) == 438
    assert response.check_integrity(client.key)  # the key was right: the error is protected
    fresh = response.get(Nonce)
    assert fresh is not None and fresh.value != client.nonce
    client.nonce = fresh.value
    assert code(client.refresh(now=60.0)) is None


def test_authentication_failures_are_rate_limited_per_source() -> None:
    server, _ = make_server(failure_rate=1.0, failure_burst=3)
    attacker = Client(server, password="guess")
    attacker.challenge(0.0)
    credentials = [Username("alice"), Realm(REALM), Nonce(attacker.nonce or "")]
    answered = [
        attacker.ask(
            Message(Method.ALLOCATE, MessageClass.REQUEST, n.to_bytes(12, "big"), credentials),
            0.0,
            key=attacker.key,
        )
        is not None
        for n in range(5)
    ]
    assert answered == [True, True, False, False, False]  # 3 of burst, the challenge was one
    assert server.stats[Outcome.RATE_LIMITED] == 3
    # Another source has a budget of its own, and a legitimate user is served.
    assert code(Client(server, address=OTHER_CLIENT).allocate()) is None
    # A second later, one more failure is answered.
    assert code(attacker.allocate(now=1.0)) == 401
    assert attacker.send(bare(Method.ALLOCATE), 1.0) is None


def test_ipv6_sources_share_a_budget_per_slash_64() -> None:
    server, _ = make_server(failure_rate=1.0, failure_burst=2)
    answered = [
        Client(server, address=make_address(f"2001:db8:1:2::{n}", 1)).send(
            bare(Method.ALLOCATE), 0.0
        )
        is not None
        for n in range(1, 5)
    ]
    assert answered == [True, True, False, False]
    assert Client(server, address=make_address("2001:db8:1:3::1", 1)).send(
        bare(Method.ALLOCATE), 0.0
    ) is not None


def test_the_rate_limiter_table_is_bounded() -> None:
    server, _ = make_server(failure_table_size=50)
    for n in range(500):
        client = Client(server, address=make_address(f"198.18.{n // 256}.{n % 256}", 1))
        client.send(bare(Method.ALLOCATE), 0.0)
    assert server.failure_sources == 50
    assert server.stats[Outcome.AUTHENTICATION_FAILED] == 500


def pump(machines: dict[Address, Machine], now: float) -> int:
    """Deliver what every machine wants to send to the machine at its destination, until quiet;
    a machine that sends with no local address sends from the address it is listed under."""
    delivered = 0
    while True:
        moved = [
            (datagram, source)
            for source, machine in machines.items()
            for datagram in machine.datagrams_to_send(now)
        ]
        if not moved:
            return delivered
        for datagram, source in moved:
            sender = datagram.local or source
            machines[datagram.remote].receive_datagram(datagram.data, datagram.remote, sender, now)
            delivered += 1


def test_our_stun_client_allocates_with_sha256(server: TurnServerCore) -> None:
    """A machine pair: stun.client's ClientSession does the 401 dance with SHA-256 (offered
    first), and the server answers with MESSAGE-INTEGRITY-SHA256; then deletes the allocation."""
    session = ClientSession(
        SERVER,
        config=ClientConfig(
            credentials=Credentials(username="alice", password=PASSWORDS["alice"]),
            rng=random.Random(1),
        ),
    )
    machines: dict[Address, Machine] = {CLIENT: session, SERVER: server}
    handle = session.request(Method.ALLOCATE, [RequestedTransport()], now=0.0)
    assert pump(machines, 0.0) == 4  # Allocate, 401, Allocate with integrity, success
    event = session.next_event()
    assert isinstance(event, RequestSucceeded) and event.handle == handle
    assert event.response.has(MessageIntegritySha256)
    assert relayed(event.response) == [RELAY]
    session.request(Method.REFRESH, [Lifetime(0)], now=1.0)
    assert pump(machines, 1.0) == 2
    event = session.next_event()
    assert isinstance(event, RequestSucceeded) and event.response.get(Lifetime) == Lifetime(0)
    assert server.allocation_count == 0
    assert session.next_event() is None


# --------------------------------------------------------------------------- REST API credentials


def rest_client(server: TurnServerCore, expires_at: float, secret: bytes = REST_SECRET) -> Client:
    username = rest_api_username("carol", expires_at)
    return Client(server, username=username, password=rest_api_password(secret, username))


def test_rest_api_credentials_are_accepted_until_they_expire() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    client = rest_client(server, EPOCH + 3600)
    assert code(client.allocate(Lifetime(3600))) is None
    assert code(client.refresh(now=3599.0)) is None
    response = client.refresh(now=3600.0)
    assert code(response) == 401
    assert not response.has(MessageIntegrity)
    assert server.stats[Outcome.EXPIRED_CREDENTIALS] == 1


def test_expired_rest_api_credentials_are_refused() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    assert code(rest_client(server, EPOCH - 1).allocate()) == 401
    assert server.stats[Outcome.EXPIRED_CREDENTIALS] == 1
    assert server.allocation_count == 0


def test_rest_api_password_from_another_secret_is_refused() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    client = rest_client(server, EPOCH + 3600, secret=b"not the shared secret")
    assert code(client.allocate()) == 401
    assert server.stats.authentication[StunOutcome.BAD_INTEGRITY] == 1


def test_rest_api_usernames_need_a_numeric_expiry() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    client = Client(server, username="carol", password=rest_api_password(REST_SECRET, "carol"))
    assert code(client.allocate()) == 401
    assert server.stats.authentication[StunOutcome.UNKNOWN_USER] == 1


def test_static_users_work_beside_the_rest_api_and_never_expire() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    assert code(Client(server).allocate(now=10 * 365 * 86400.0)) is None


def test_the_wall_clock_offset_can_be_corrected() -> None:
    server, _ = make_server(rest_secret=REST_SECRET)
    client = rest_client(server, EPOCH + 100)
    server.wall_clock_offset = EPOCH + 200  # the driver learned its clock was off
    assert code(client.allocate()) == 401


def test_rest_api_without_static_users() -> None:
    server, _ = make_server(
        rest_secret=REST_SECRET, credentials=LongTermCredentials(realm=REALM, users={})
    )
    assert code(rest_client(server, EPOCH + 60).allocate()) is None
    assert code(Client(server).allocate()) == 401


# --------------------------------------------------------------------------- Binding and junk


def test_binding_requests_are_answered_without_authentication(server: TurnServerCore) -> None:
    client = Client(server)
    response = client.ask(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)), 0.0)
    assert response is not None and response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert server.stats[Outcome.BINDING] == 1
    assert server.stats.binding.counts[StunOutcome.ANSWERED] == 1


def test_binding_can_be_turned_off() -> None:
    server, _ = make_server(answer_binding=False)
    client = Client(server)
    assert client.ask(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)), 0.0) is None
    assert server.stats[Outcome.UNSUPPORTED_METHOD] == 1


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (b"", Outcome.MALFORMED),
        (b"\x00\x03\x00", Outcome.MALFORMED),
        (b"\x80" * 40, Outcome.MALFORMED),
        (
            Message(Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, bytes(12)).encode(),
            Outcome.NOT_A_REQUEST,
        ),
        (
            Message(Method.DATA, MessageClass.INDICATION, bytes(12)).encode(),
            Outcome.NOT_A_REQUEST,
        ),
        (bare(Method.CONNECTION_ATTEMPT), Outcome.UNSUPPORTED_METHOD),
        (bare(0x0FF), Outcome.UNSUPPORTED_METHOD),
        (
            Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12)).encode(fingerprint=True)[:-1]
            + b"\x00",
            Outcome.BAD_FINGERPRINT,
        ),
    ],
    ids=[
        "empty", "short", "junk", "response", "data indication", "connection attempt request",
        "unknown", "crc",
    ],
)
def test_what_is_dropped_silently(server: TurnServerCore, data: bytes, outcome: Outcome) -> None:
    assert Client(server).send(data, 0.0) is None
    assert server.stats[outcome] == 1
    assert server.stats.dropped == 1


def test_fingerprint_is_echoed(alice: Client) -> None:
    alice.challenge(0.0)
    request = Message(
        Method.ALLOCATE, MessageClass.REQUEST, bytes(12),
        [RequestedTransport(), Username("alice"), Realm(REALM), Nonce(alice.nonce or "")],
    )
    out = alice.send(request.encode(key=alice.key, fingerprint=True), 0.0)
    assert out is not None
    response = Message.decode(out.data)
    assert response.check_fingerprint() and response.check_integrity(alice.key)


def test_local_address_is_required(server: TurnServerCore) -> None:
    with pytest.raises(Exception, match="local address"):
        server.receive_datagram(b"x", None, CLIENT, 0.0)


def test_error_responses_read_like_the_rfc(alice: Client) -> None:
    response = alice.request(Method.ALLOCATE, [RequestedTransport(6)])
    assert response.get(ErrorCode) == ErrorCode(442, "Unsupported Transport Protocol")
