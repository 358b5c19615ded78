"""TCP allocations (RFC 6062) in the sans-IO TURN server core, on a virtual clock: Allocate for TCP,
Connect and its answers (446, 447, 403, ...), ConnectionBind, peers that connect to the relayed
address (ConnectionAttempt), every timeout, the commands the core gives its driver, bounded
tables, and garbage that never escapes."""

from __future__ import annotations

import argparse
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    Attribute,
    LocalProtocolError,
    Message,
    MessageClass,
    MessageIntegrity,
    Method,
    make_address,
)
from stun.datagram import Datagram
from stun.server import Outcome as StunOutcome
from turn import (
    AdditionalAddressFamily,
    ConnectionId,
    DontFragment,
    EvenPort,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    XorPeerAddress,
)
from turn.cli import build_plan
from turn.serve_options import add_arguments
from turn.server import (
    AllocationDeleted,
    ClientTransport,
    ClosePeerConnection,
    ConnectionState,
    DeletionReason,
    FiveTuple,
    OpenPeerConnection,
    Outcome,
    PortRangeAllocator,
    RequestRefused,
    SpliceConnection,
    TcpCommand,
    TurnServerCore,
)

from .harness import (
    EPOCH,
    IPV6,
    PEER,
    PEER_V6,
    RELAY,
    RELAY_HOSTS,
    SERVER,
    Client,
    Listeners,
    code,
    config,
    events,
    from_peer,
)

TCP = ClientTransport.TCP
CONTROL = make_address("198.51.100.7", 40000)
DATA = make_address("198.51.100.7", 40001)
OTHER_PEER = make_address("203.0.113.10", 6000)
CONNECTION_ATTEMPT = (Method.CONNECTION_ATTEMPT, MessageClass.INDICATION)


def tcp_server(
    listeners: Listeners | None = None, **overrides: Any
) -> tuple[TurnServerCore, Listeners]:
    listeners = Listeners() if listeners is None else listeners
    relays = PortRangeAllocator(RELAY_HOSTS, range(50000, 50010))
    server = TurnServerCore(
        config(**overrides), relays, tcp_listeners=listeners, wall_clock_offset=EPOCH
    )
    return server, listeners


def allocate_tcp(client: Client, *attributes: Attribute, now: float = 0.0) -> Message:
    return client.request(
        Method.ALLOCATE, [RequestedTransport(TransportProtocol.TCP), *attributes], now
    )


def send_connect(client: Client, peer: Address, now: float = 0.0) -> Datagram | None:
    """A Connect, whose answer (if it passes its checks) comes later."""
    client.sent += 1
    request = Message(
        Method.CONNECT,
        MessageClass.REQUEST,
        client.sent.to_bytes(12, "big"),
        [XorPeerAddress(peer), *client.credentials(now)],
    )
    return client.send(request.encode(key=client.key), now)


def connection_bind(client: Client, connection_id: int | None, now: float = 0.0) -> Message:
    attributes = [] if connection_id is None else [ConnectionId(connection_id)]
    return client.request(Method.CONNECTION_BIND, attributes, now)


def commands(server: TurnServerCore) -> list[TcpCommand]:
    return server.tcp_commands()


def answers(server: TurnServerCore, client: Client) -> list[Message]:
    """What the server queued for ``client`` (later answers and indications), decoded."""
    out = server.datagrams_to_send(0.0)
    assert all((d.local, d.remote) == (client.listener, client.address) for d in out)
    return [Message.decode(d.data) for d in out]


@pytest.fixture
def server() -> TurnServerCore:
    return tcp_server()[0]


@pytest.fixture
def alice(server: TurnServerCore) -> Client:
    """Alice with a TCP allocation over her control connection and a permission for PEER."""
    client = Client(server, address=CONTROL, transport=TCP)
    assert code(allocate_tcp(client)) is None
    assert code(client.permit(PEER)) is None
    return client


def connected(server: TurnServerCore, alice: Client, peer: Address = PEER, now: float = 0.0) -> int:
    """Connect to ``peer`` and report it connected: the CONNECTION-ID from the answer."""
    assert send_connect(alice, peer, now) is None
    (command,) = commands(server)
    assert isinstance(command, OpenPeerConnection)
    server.peer_connected(command.connection_id, now)
    (answer,) = answers(server, alice)
    assert answer.message_class is MessageClass.SUCCESS_RESPONSE
    attribute = answer.get(ConnectionId)
    assert attribute is not None and attribute.value == command.connection_id
    return attribute.value


def data_client(server: TurnServerCore, alice: Client, address: Address = DATA) -> Client:
    """A new TCP connection from Alice's host, with her credentials and her (now stale) nonce."""
    return Client(server, address=address, transport=TCP, nonce=alice.nonce)


# --------------------------------------------------------------------------- Allocate (§5.1)


@pytest.mark.parametrize("transport", [ClientTransport.TCP, ClientTransport.TLS])
def test_tcp_allocate_listens_on_the_relayed_address(transport: ClientTransport) -> None:
    server, listeners = tcp_server()
    client = Client(server, address=CONTROL, transport=transport)
    response = allocate_tcp(client)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert not response.has(ReservationToken)
    allocation = server.allocation(client.five_tuple)
    assert allocation is not None
    assert allocation.relay_transport is TransportProtocol.TCP
    assert allocation.relayed_addresses == (RELAY,)
    assert listeners.listening == {RELAY}


def test_tcp_allocate_over_ipv6() -> None:
    server, listeners = tcp_server()
    client = Client(server, address=CONTROL, transport=TCP)
    response = allocate_tcp(client, RequestedAddressFamily(IPV6))
    assert code(response) is None
    assert listeners.listening == {Address("2001:db8::1", 50000)}


def test_tcp_allocate_over_udp_gets_400() -> None:
    server, listeners = tcp_server()
    assert code(allocate_tcp(Client(server))) == 400
    assert server.allocation_count == 0 and not listeners.listening


@pytest.mark.parametrize(
    "attribute",
    [DontFragment(), EvenPort(False), ReservationToken(bytes(8)), AdditionalAddressFamily(IPV6)],
    ids=["dont-fragment", "even-port", "reservation-token", "additional-address-family"],
)
def test_tcp_allocate_refuses_udp_only_attributes(attribute: Attribute) -> None:
    server, listeners = tcp_server()
    client = Client(server, address=CONTROL, transport=TCP)
    assert code(allocate_tcp(client, attribute)) == 400
    assert server.stats[Outcome.BAD_REQUEST] == 1
    assert not listeners.listening


def test_tcp_relays_can_be_turned_off() -> None:
    server, listeners = tcp_server(tcp_relays=False)
    client = Client(server, address=CONTROL, transport=TCP)
    assert code(allocate_tcp(client)) == 442
    assert code(client.request(Method.ALLOCATE, [RequestedTransport(0)])) == 442
    assert not listeners.listening


def test_a_core_without_listeners_answers_tcp_442() -> None:
    relays = PortRangeAllocator(RELAY_HOSTS, range(50000, 50010))
    server = TurnServerCore(config(), relays, wall_clock_offset=EPOCH)
    assert code(allocate_tcp(Client(server, address=CONTROL, transport=TCP))) == 442


def test_an_address_that_cannot_listen_goes_back_and_the_next_is_tried() -> None:
    server, listeners = tcp_server(Listeners(refuse=(RELAY,)))
    relays = server.table.relays
    assert isinstance(relays, PortRangeAllocator)
    relays.rng = random.Random(1)  # a fresh random start on each try, as a real server has
    client = Client(server, address=CONTROL, transport=TCP)
    response = allocate_tcp(client)
    assert code(response) is None
    (listening,) = listeners.listening
    assert listening != RELAY
    assert relays.in_use == {listening}


def test_no_address_to_listen_on_gets_508_and_releases_every_address() -> None:
    refused = tuple(Address("192.0.2.1", port) for port in range(50000, 50010))
    server, _ = tcp_server(Listeners(refuse=refused))
    relays = server.table.relays
    assert isinstance(relays, PortRangeAllocator)
    assert code(allocate_tcp(Client(server, address=CONTROL, transport=TCP))) == 508
    assert relays.in_use == set()


def test_a_tcp_allocation_relays_no_udp(server: TurnServerCore, alice: Client) -> None:
    assert code(alice.bind(0x4000, PEER)) == 400
    assert alice.send_indication(PEER, b"x", 0.0) is None
    assert server.stats[Outcome.BAD_INDICATION] == 1
    assert from_peer(server, b"udp to a tcp relay", 0.0) is None
    assert server.stats[Outcome.WRONG_RELAY_TRANSPORT] == 1


# --------------------------------------------------------------------------- Connect (§5.2)


def test_connect_opens_a_peer_connection_and_answers_when_it_is_up(
    server: TurnServerCore, alice: Client
) -> None:
    assert send_connect(alice, PEER, 1.0) is None  # the answer waits for the connection
    (command,) = commands(server)
    assert command == OpenPeerConnection(command.connection_id, RELAY, PEER)
    assert answers(server, alice) == []
    assert server.get_timer() == 31.0  # the connect timeout
    server.peer_connected(command.connection_id, 2.0)
    (answer,) = answers(server, alice)
    assert answer.message_class is MessageClass.SUCCESS_RESPONSE
    assert answer.method == Method.CONNECT
    assert answer.transaction_id == alice.sent.to_bytes(12, "big")
    assert answer.get(ConnectionId) == ConnectionId(command.connection_id)
    assert answer.has(MessageIntegrity) and answer.check_integrity(alice.key)
    assert server.get_timer() == 32.0  # now the ConnectionBind timeout
    assert server.stats[Outcome.CONNECTED] == 1
    assert commands(server) == []


def test_connect_failure_gets_447(server: TurnServerCore, alice: Client) -> None:
    send_connect(alice, PEER)
    (command,) = commands(server)
    server.peer_connect_failed(command.connection_id, 1.0)
    (answer,) = answers(server, alice)
    assert code(answer) == 447
    assert answer.check_integrity(alice.key)
    assert server.peer_connection_count == 0
    assert server.stats[Outcome.CONNECTION_FAILED] == 1


def test_a_peer_closing_while_connecting_is_a_failure(
    server: TurnServerCore, alice: Client
) -> None:
    send_connect(alice, PEER)
    (command,) = commands(server)
    server.peer_connection_closed(command.connection_id, 1.0)
    assert [code(answer) for answer in answers(server, alice)] == [447]
    assert server.peer_connection_count == 0


def test_connect_times_out_after_30_seconds_with_447(
    server: TurnServerCore, alice: Client
) -> None:
    send_connect(alice, PEER, 5.0)
    (command,) = commands(server)
    server.handle_timer(34.9)
    assert answers(server, alice) == [] and commands(server) == []
    server.handle_timer(35.0)
    assert [code(answer) for answer in answers(server, alice)] == [447]
    assert commands(server) == [ClosePeerConnection(command.connection_id)]
    # the driver's late news changes nothing but closing what it opened
    server.peer_connected(command.connection_id, 36.0)
    assert answers(server, alice) == []
    assert commands(server) == [ClosePeerConnection(command.connection_id)]


def test_the_connect_timeout_is_configurable_but_not_below_30_seconds() -> None:
    server, _ = tcp_server(tcp_connect_timeout=45.0)
    client = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(client)
    client.permit(PEER)
    send_connect(client, PEER)
    assert server.get_timer() == 45.0
    with pytest.raises(LocalProtocolError, match="30"):
        config(tcp_connect_timeout=29.0)


def test_connect_to_the_same_peer_again_gets_446(server: TurnServerCore, alice: Client) -> None:
    send_connect(alice, PEER)
    assert code(alice.request(Method.CONNECT, [XorPeerAddress(PEER)])) == 446  # connecting
    (command,) = commands(server)
    server.peer_connected(command.connection_id, 0.0)
    answers(server, alice)
    assert code(alice.request(Method.CONNECT, [XorPeerAddress(PEER)])) == 446  # pending
    assert server.stats[Outcome.CONNECTION_EXISTS] == 2
    other_port = Address(PEER.host, PEER.port + 1)
    assert send_connect(alice, other_port) is None  # another port of the peer is another peer


def test_connect_errors(server: TurnServerCore, alice: Client) -> None:
    assert code(alice.request(Method.CONNECT, [])) == 400
    assert code(alice.request(Method.CONNECT, [XorPeerAddress(PEER_V6)])) == 443
    assert code(alice.request(Method.CONNECT, [XorPeerAddress(OTHER_PEER)])) == 403  # no permit
    loopback = make_address("127.0.0.1", 22)
    assert code(alice.request(Method.CONNECT, [XorPeerAddress(loopback)])) == 403  # policy
    assert server.stats[Outcome.FORBIDDEN] == 2
    assert commands(server) == []
    assert server.peer_connection_count == 0


def test_connect_needs_a_tcp_allocation_of_this_user(server: TurnServerCore) -> None:
    nobody = Client(server, address=CONTROL, transport=TCP)
    assert code(nobody.request(Method.CONNECT, [XorPeerAddress(PEER)])) == 437
    udp = Client(server)
    udp.allocate()
    udp.permit(PEER)
    assert code(udp.request(Method.CONNECT, [XorPeerAddress(PEER)])) == 400
    allocate_tcp(nobody)
    bob = Client(server, address=CONTROL, transport=TCP, username="bob", password="the-builder")
    assert code(bob.request(Method.CONNECT, [XorPeerAddress(PEER)])) == 441


def test_connect_admits_another_allocations_relayed_address(server: TurnServerCore) -> None:
    """Two clients of one server connecting to each other through their TCP relays (what
    turnutils_uclient -T does): the server's own address is admitted as a relayed address."""
    first = Client(server, address=CONTROL, transport=TCP)
    second = Client(server, address=DATA, transport=TCP, username="bob", password="the-builder")
    allocate_tcp(first)
    allocate_tcp(second)
    second_relay = Address("192.0.2.1", 50001)
    assert code(first.permit(second_relay)) is None
    assert send_connect(first, second_relay) is None
    (command,) = commands(server)
    assert command == OpenPeerConnection(command.connection_id, RELAY, second_relay)
    # the server's own address anywhere else stays refused
    assert code(first.permit(Address("192.0.2.1", 3478))) == 403


def test_connections_per_allocation_are_bounded_with_508() -> None:
    server, _ = tcp_server(max_peer_connections=2)
    client = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(client)
    client.permit(PEER)
    assert send_connect(client, PEER) is None
    assert send_connect(client, PEER._replace(port=1)) is None
    response = client.request(Method.CONNECT, [XorPeerAddress(PEER._replace(port=2))])
    assert code(response) == 508
    assert len(commands(server)) == 2
    assert server.peer_connection_count == 2


# --------------------------------------------------------------------------- ConnectionBind (§5.4)


def test_connection_bind_splices_a_new_connection(server: TurnServerCore, alice: Client) -> None:
    connection_id = connected(server, alice)
    data = data_client(server, alice)
    response = connection_bind(data, connection_id)
    assert server.stats.authentication[StunOutcome.INVALID_NONCE] == 0  # the control's nonce
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.check_integrity(data.key)
    assert commands(server) == [SpliceConnection(connection_id, data.five_tuple)]
    connection = server.connections.get(connection_id)
    assert connection is not None and connection.state is ConnectionState.BOUND
    assert connection.data == data.five_tuple
    assert server.get_timer() == 600.0  # a bound connection has no deadline of its own
    assert server.stats[Outcome.CONNECTION_BOUND] == 1
    assert server.allocation(data.five_tuple) is None


def test_connection_bind_takes_the_control_connections_nonces_only(
    server: TurnServerCore, alice: Client
) -> None:
    """A nonce issued to the data connection's own address is not the control connection's:
    438, with one for the control connection's address, which then succeeds."""
    connection_id = connected(server, alice)
    data = Client(server, address=DATA, transport=TCP)
    data.challenge(0.0)  # a nonce for DATA
    assert code(connection_bind(data, connection_id)) is None
    assert server.stats.authentication[StunOutcome.INVALID_NONCE] == 1
    assert server.stats[Outcome.CONNECTION_BOUND] == 1


def test_connection_bind_errors(server: TurnServerCore, alice: Client) -> None:
    connection_id = connected(server, alice)
    data = data_client(server, alice)
    assert code(connection_bind(data, None)) == 400
    assert code(connection_bind(data, connection_id ^ 1)) == 400  # no such connection
    assert code(connection_bind(alice, connection_id)) == 400  # the control connection
    over_udp = Client(server, address=DATA)
    assert code(connection_bind(over_udp, connection_id)) == 400
    bob = Client(server, address=DATA, transport=TCP, username="bob", password="the-builder")
    assert code(connection_bind(bob, connection_id)) == 441
    assert server.stats[Outcome.BAD_REQUEST] == 4
    assert commands(server) == []
    assert code(connection_bind(data, connection_id)) is None
    commands(server)
    # bound now: neither that connection nor another can bind it again
    assert code(connection_bind(data, connection_id)) == 400
    another = data_client(server, alice, DATA._replace(port=40002))
    assert code(connection_bind(another, connection_id)) == 400


def test_connection_bind_while_still_connecting_gets_400(
    server: TurnServerCore, alice: Client
) -> None:
    send_connect(alice, PEER)
    (command,) = commands(server)
    assert code(connection_bind(data_client(server, alice), command.connection_id)) == 400


def test_connection_bind_to_an_expired_allocation_deletes_it(
    server: TurnServerCore, alice: Client
) -> None:
    alice.permit(PEER, now=590.0)
    connection_id = connected(server, alice, now=590.0)
    events(server)
    data = data_client(server, alice)
    assert code(connection_bind(data, connection_id, now=600.0)) == 400
    assert server.allocation_count == 0
    assert commands(server) == [ClosePeerConnection(connection_id)]


def test_an_unclaimed_peer_connection_closes_after_30_seconds(
    server: TurnServerCore, alice: Client
) -> None:
    connection_id = connected(server, alice, now=10.0)
    server.handle_timer(39.9)
    assert commands(server) == []
    server.handle_timer(40.0)
    assert commands(server) == [ClosePeerConnection(connection_id)]
    assert server.stats[Outcome.CONNECTION_UNCLAIMED] == 1
    assert code(connection_bind(data_client(server, alice), connection_id, now=41.0)) == 400
    assert server.get_timer() == 600.0


# --------------------------------------------------------------------------- passive open (§5.3)


def test_a_peer_with_permission_connects_and_the_client_binds(
    server: TurnServerCore, alice: Client
) -> None:
    connection_id = server.peer_connection_arrived(RELAY, PEER, 3.0)
    assert connection_id is not None
    (indication,) = answers(server, alice)
    assert (indication.method, indication.message_class) == CONNECTION_ATTEMPT
    assert indication.get(XorPeerAddress) == XorPeerAddress(PEER)
    assert indication.get(ConnectionId) == ConnectionId(connection_id)
    assert server.stats[Outcome.CONNECTION_ATTEMPT] == 1
    assert server.get_timer() == 33.0
    data = data_client(server, alice)
    assert code(connection_bind(data, connection_id, now=4.0)) is None
    assert commands(server) == [SpliceConnection(connection_id, data.five_tuple)]


def test_a_peer_without_permission_is_closed_at_once(
    server: TurnServerCore, alice: Client
) -> None:
    assert server.peer_connection_arrived(RELAY, OTHER_PEER, 0.0) is None
    assert server.stats[Outcome.PEER_CONNECTION_REFUSED] == 1
    assert answers(server, alice) == []
    # and the permission is checked now, not when it was installed
    assert server.peer_connection_arrived(RELAY, PEER, 300.0) is None


def test_peers_connecting_elsewhere_are_refused(server: TurnServerCore, alice: Client) -> None:
    assert server.peer_connection_arrived(Address("192.0.2.1", 50009), PEER, 0.0) is None
    udp = Client(server)
    udp.allocate()
    udp.permit(PEER)
    udp_relay = server.allocation(udp.five_tuple).relayed_addresses[0]  # type: ignore[union-attr]
    assert server.peer_connection_arrived(udp_relay, PEER, 0.0) is None
    assert server.stats[Outcome.PEER_CONNECTION_REFUSED] == 2


def test_peers_beyond_the_bound_are_refused() -> None:
    server, _ = tcp_server(max_peer_connections=3)
    client = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(client)
    client.permit(PEER)
    accepted = [
        server.peer_connection_arrived(RELAY, PEER._replace(port=port), 0.0) for port in range(10)
    ]
    assert sum(1 for a in accepted if a is not None) == 3
    assert server.peer_connection_count == 3
    assert server.stats[Outcome.PEER_CONNECTION_REFUSED] == 7
    assert len(set(accepted) - {None}) == 3  # distinct CONNECTION-IDs


# --------------------------------------------------------------------------- closing (§5.5)


def bound(server: TurnServerCore, alice: Client) -> tuple[int, Client]:
    connection_id = connected(server, alice)
    data = data_client(server, alice)
    assert code(connection_bind(data, connection_id)) is None
    commands(server)
    return connection_id, data


def test_the_data_connection_closing_closes_the_peer_connection(
    server: TurnServerCore, alice: Client
) -> None:
    connection_id, data = bound(server, alice)
    server.connection_closed(data.five_tuple)
    assert commands(server) == [ClosePeerConnection(connection_id)]
    assert server.peer_connection_count == 0
    assert server.allocation_count == 1  # the allocation stays
    assert send_connect(alice, PEER) is None  # and may connect to the peer again


def test_the_peer_closing_closes_the_data_connection(
    server: TurnServerCore, alice: Client
) -> None:
    connection_id, data = bound(server, alice)
    server.peer_connection_closed(connection_id, 1.0)
    assert commands(server) == [ClosePeerConnection(connection_id)]
    server.peer_connection_closed(connection_id, 1.0)  # told twice: nothing more
    server.connection_closed(data.five_tuple)  # the data connection's close, reported later
    assert commands(server) == []
    assert server.allocation_count == 1


@pytest.mark.parametrize("how", ["control closed", "refresh 0", "expiry"])
def test_the_allocation_going_closes_every_connection(how: str) -> None:
    server, listeners = tcp_server()
    alice = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(alice)
    alice.permit(PEER)
    bound_id, _ = bound(server, alice)
    pending_id = server.peer_connection_arrived(RELAY, PEER._replace(port=7000), 1.0)
    send_connect(alice, OTHER_PEER._replace(host=PEER.host))
    (connecting,) = commands(server)
    answers(server, alice)
    events(server)
    if how == "control closed":
        server.connection_closed(alice.five_tuple)
        reason = DeletionReason.CONNECTION_CLOSED
    elif how == "refresh 0":
        refresh = Message(
            Method.REFRESH, MessageClass.REQUEST, bytes(12), [Lifetime(0), *alice.credentials()]
        )
        out = server.handle_datagram(
            refresh.encode(key=alice.key), SERVER, alice.address, 2.0, transport=TCP
        )
        assert out is not None and code(Message.decode(out.data)) is None
        reason = DeletionReason.DELETED
    else:
        server.handle_timer(600.0)
        reason = DeletionReason.EXPIRED
    closed = {c.connection_id for c in commands(server) if isinstance(c, ClosePeerConnection)}
    assert closed == {bound_id, pending_id, connecting.connection_id}
    assert server.peer_connection_count == 0
    # the Connect in flight is answered while the control connection lasts
    in_flight = [] if how == "control closed" else [447]
    assert [code(answer) for answer in answers(server, alice)] == in_flight
    deleted = AllocationDeleted(alice.five_tuple, "alice", (RELAY,), reason)
    refused = [
        RequestRefused(alice.five_tuple, "alice", Method.CONNECT, 447, Outcome.CONNECTION_FAILED)
    ]
    assert events(server) == [*(refused if in_flight else []), deleted]
    assert listeners.listening == set()
    assert server.get_timer() is None


def test_peer_connected_after_the_allocation_expired(
    server: TurnServerCore, alice: Client
) -> None:
    alice.permit(PEER, now=590.0)
    send_connect(alice, PEER, 590.0)
    (command,) = commands(server)
    server.peer_connected(command.connection_id, 600.0)
    assert commands(server) == [ClosePeerConnection(command.connection_id)]
    assert server.allocation_count == 0


def test_unknown_connection_ids_are_closed_or_ignored(
    server: TurnServerCore, alice: Client
) -> None:
    pending = server.peer_connection_arrived(RELAY, PEER, 0.0)
    assert pending is not None
    server.datagrams_to_send(0.0)
    server.peer_connected(pending, 0.0)  # not one it connects: nothing to answer or close
    assert server.peer_connection_count == 1
    server.peer_connected(1234, 0.0)
    assert commands(server) == [ClosePeerConnection(1234)]
    server.peer_connect_failed(1234, 0.0)
    server.peer_connection_closed(1234, 0.0)
    assert server.stream_relayed(1234, 100, True, 0.0) == 0.0
    assert commands(server) == [] and server.datagrams_to_send(0.0) == []


# --------------------------------------------------------------------------- bytes and bandwidth


def test_spliced_bytes_are_counted(server: TurnServerCore, alice: Client) -> None:
    connection_id, _ = bound(server, alice)
    assert server.stream_relayed(connection_id, 1000, True, 1.0) == 0.0
    assert server.stream_relayed(connection_id, 300, False, 1.0) == 0.0
    assert (server.stats.bytes_to_peer, server.stats.bytes_to_client) == (1000, 300)


def test_the_bandwidth_limit_asks_the_driver_to_pause_reading() -> None:
    server, _ = tcp_server(max_bytes_per_second=100_000)
    client = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(client)
    client.permit(PEER)
    connection_id, _ = bound(server, client)
    assert server.stream_relayed(connection_id, 100_000, True, 0.0) == 0.0  # one burst
    assert server.stream_relayed(connection_id, 50_000, True, 0.0) == pytest.approx(0.5)
    assert server.stream_relayed(connection_id, 0, True, 0.5) == 0.0  # paid off
    assert server.stream_relayed(connection_id, 100_000, False, 0.5) == 0.0  # the other way


# --------------------------------------------------------------------------- bounds and garbage


def test_connect_floods_stay_bounded(server: TurnServerCore, alice: Client) -> None:
    for port in range(1, 200):
        send_connect(alice, PEER._replace(port=port))
    assert server.peer_connection_count == server.config.max_peer_connections
    assert server.stats[Outcome.INSUFFICIENT_CAPACITY] == 199 - server.config.max_peer_connections
    assert len(commands(server)) == server.config.max_peer_connections
    server.handle_timer(30.0)
    assert server.peer_connection_count == 0
    assert server.connections.pending_timers == 0
    assert len(server.datagrams_to_send(30.0)) == server.config.max_peer_connections  # 447s


def test_timer_heap_stays_in_proportion(server: TurnServerCore, alice: Client) -> None:
    for port in range(500):
        connection_id = server.peer_connection_arrived(RELAY, PEER._replace(port=port), 1.0)
        assert connection_id is not None
        server.peer_connection_closed(connection_id, 1.0)
    assert server.connections.pending_timers <= 64 + 2 * server.peer_connection_count


def test_config_validation() -> None:
    for name in ("connection_bind_timeout", "max_peer_connections"):
        with pytest.raises(LocalProtocolError, match=name):
            config(**{name: 0})


_ids = st.integers(0, 2**32 - 1)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("connect"), st.integers(1, 40)),
        st.tuples(st.just("connected"), _ids),
        st.tuples(st.just("failed"), _ids),
        st.tuples(st.just("arrived"), st.integers(1, 40)),
        st.tuples(st.just("peer closed"), _ids),
        st.tuples(st.just("bind"), _ids),
        st.tuples(st.just("data closed"), st.integers(1, 3)),
        st.tuples(st.just("garbage"), st.binary(max_size=60)),
        st.tuples(st.just("time"), st.integers(0, 40)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_operations)
def test_random_operations_keep_the_tables_consistent(
    operations: list[tuple[str, Any]],
) -> None:
    server, listeners = tcp_server(max_peer_connections=4)
    alice = Client(server, address=CONTROL, transport=TCP)
    allocate_tcp(alice, Lifetime(3600))
    alice.permit(PEER)
    now = 0.0
    known: list[int] = [1]
    closed: set[int] = set()
    for kind, value in operations:
        if kind == "connect":
            send_connect(alice, PEER._replace(port=value), now)
        elif kind == "arrived":
            connection_id = server.peer_connection_arrived(RELAY, PEER._replace(port=value), now)
            if connection_id is not None:
                known.append(connection_id)
        elif kind in ("connected", "failed", "peer closed", "bind"):
            connection_id = known[value % len(known)] if value % 3 else value
            if kind == "connected":
                server.peer_connected(connection_id, now)
            elif kind == "failed":
                server.peer_connect_failed(connection_id, now)
            elif kind == "peer closed":
                server.peer_connection_closed(connection_id, now)
            else:
                client = data_client(server, alice, DATA._replace(port=40001 + value % 3))
                connection_bind(client, connection_id, now)
        elif kind == "data closed":  # port 40000 is the control connection's
            server.connection_closed(FiveTuple(DATA._replace(port=40000 + value), SERVER, TCP))
        elif kind == "garbage":
            server.receive_datagram(value, SERVER, DATA, now, transport=TCP)
        else:
            now += value
            server.handle_timer(now)
        for command in commands(server):
            if isinstance(command, OpenPeerConnection):
                known.append(command.connection_id)
            elif isinstance(command, ClosePeerConnection):
                closed.add(command.connection_id)
        server.datagrams_to_send(now)
        # invariants: bounded, indexed consistently, nothing open that a close was issued for
        assert server.peer_connection_count <= 4
        for allocation in server.allocations():
            for connection in server.connections.of(allocation):
                assert server.connections.get(connection.id) is connection
                assert connection.id not in closed
                if connection.state is ConnectionState.BOUND:
                    assert connection.data is not None
                    assert server.connections.by_data(connection.data) is connection
                    assert connection.deadline == math.inf
                else:
                    assert connection.deadline > now
    if server.allocation_count:
        assert listeners.listening == {RELAY}
    else:
        assert listeners.listening == set() and server.peer_connection_count == 0


def test_garbage_on_a_data_connection_never_escapes(server: TurnServerCore, alice: Client) -> None:
    _, data = bound(server, alice)
    dropped = server.stats.dropped
    for junk in (b"", b"\x00\x0b\x00\x00", bytes(200), b"\x40\x00\x00\x04abcd"):
        server.receive_datagram(junk, SERVER, data.address, 1.0, transport=TCP)
    assert server.datagrams_to_send(1.0) == []
    assert server.peer_connection_count == 1
    assert server.stats.dropped == dropped + 4


def test_the_command_line_turns_tcp_relays_off() -> None:
    """``icestack serve turn --no-tcp-relay``, coturn's name for it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    common = ["--user", "alice:wonderland", "--listen", "127.0.0.1:3478"]
    assert build_plan(parser.parse_args(common)).config.tcp_relays
    assert not build_plan(parser.parse_args([*common, "--no-tcp-relay"])).config.tcp_relays
