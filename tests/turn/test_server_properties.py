"""Hypothesis and floods against the TURN server core: garbage never escapes receive_datagram,
every datagram is counted once, random operations keep the tables consistent, floods leave every
table bounded."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import Attribute, Message, MessageClass, Method, make_address
from stun.datagram import Datagram
from turn import (
    ChannelData,
    ChannelNumber,
    EvenPort,
    Lifetime,
    RequestedTransport,
    XorPeerAddress,
)
from turn.server import AllocationCreated, AllocationDeleted, PortRangeAllocator, TurnServerCore

from .harness import CLIENT, PEER, RELAY, SERVER, Client, bare, code, make_server

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def ready_server() -> tuple[TurnServerCore, Client]:
    """A server with one allocation, a permission and a channel for PEER."""
    server, _ = make_server()
    client = Client(server)
    client.allocate(Lifetime(3600))
    client.bind(0x4000, PEER)
    return server, client


def counted(server: TurnServerCore) -> int:
    return sum(server.stats.counts.values())


def check_output(out: list[Datagram]) -> None:
    """What the server sends is well formed: STUN or ChannelData to the client, data to a peer."""
    for datagram in out:
        if datagram.local == SERVER:
            if datagram.data[0] < 4:
                Message.decode(datagram.data)
            else:
                ChannelData.decode(datagram.data)
        else:
            assert datagram.local == RELAY


junk = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.integers(0x40, 0x4F), st.binary(max_size=60)).map(
        lambda pair: bytes([pair[0]]) + pair[1]
    ),
    st.tuples(st.integers(0, 0x3FFF), st.binary(max_size=80)).map(
        lambda pair: struct.pack("!HHI12s", pair[0], len(pair[1]) & ~3, 0x2112A442, bytes(12))
        + pair[1][: len(pair[1]) & ~3]
    ),
)


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), junk), min_size=1, max_size=20))
def test_garbage_never_escapes_and_each_datagram_is_counted_once(
    datagrams: list[tuple[bool, bytes]],
) -> None:
    server, _ = ready_server()
    before = counted(server)
    for to_relay, data in datagrams:
        local, remote = (RELAY, PEER) if to_relay else (SERVER, CLIENT)
        server.receive_datagram(data, local, remote, 1.0)
    check_output(server.datagrams_to_send(1.0))
    assert counted(server) == before + len(datagrams)
    assert server.allocation_count == 1


def valid_messages(client: Client) -> list[bytes]:
    """One of each kind of datagram a client sends, authenticated where it must be."""
    credentials = client.credentials()
    def request(method: Method, *attributes: Attribute) -> bytes:
        message = Message(method, MessageClass.REQUEST, bytes(12), [*attributes, *credentials])
        return message.encode(key=client.key, fingerprint=True)

    return [
        request(Method.ALLOCATE, RequestedTransport(), EvenPort(reserve=True)),
        request(Method.REFRESH, Lifetime(1200)),
        request(Method.CREATE_PERMISSION, XorPeerAddress(PEER)),
        request(Method.CHANNEL_BIND, ChannelNumber(0x4000), XorPeerAddress(PEER)),
        Message(Method.SEND, MessageClass.INDICATION, bytes(12), [XorPeerAddress(PEER)]).encode(),
        ChannelData(0x4000, b"payload").encode(),
        bare(Method.BINDING),
    ]


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "byte"]), st.integers(0, 400), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, changes: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, value in changes:
        if not buffer:
            break
        position = where % len(buffer)
        if kind == "flip":
            buffer[position] ^= 1 << (value % 8)
        elif kind == "cut":
            del buffer[position:]
        else:
            buffer[position] = value
    return bytes(buffer)


@SETTINGS
@given(st.integers(0, 6), mutations)
def test_mutated_requests_never_escape(which: int, changes: list[tuple[str, int, int]]) -> None:
    server, client = ready_server()
    data = mutate(valid_messages(client)[which], changes)
    before = counted(server)
    out = client.send(data, 2.0)
    check_output([out] if out is not None else [])
    assert counted(server) == before + 1


operations = st.lists(
    st.tuples(
        st.sampled_from(["allocate", "reserve", "refresh", "delete", "permit", "bind", "send",
                         "peer", "timer"]),
        st.integers(0, 2),  # which client
        st.floats(0.0, 120.0, allow_nan=False),  # time passing
        st.integers(0, 5),  # which peer / channel
    ),
    max_size=40,
)
PEERS = [make_address(f"203.0.113.{n}", 5000 + n) for n in range(5)] + [
    make_address("10.0.0.1", 1)
]


@SETTINGS
@given(operations)
def test_random_operations_keep_the_tables_consistent(
    steps: list[tuple[str, int, float, int]],
) -> None:
    server, relays = make_server(user_quota=2, total_quota=2, max_permissions=3, max_channels=2)
    clients = [
        Client(server, address=make_address("198.51.100.1", n + 1)) for n in range(3)
    ]
    now = 0.0
    created = deleted = 0
    for operation, who, elapsed, which in steps:
        now += elapsed
        client = clients[who]
        peer = PEERS[which]
        if operation == "allocate":
            client.allocate(now=now)
        elif operation == "reserve":
            client.allocate(EvenPort(reserve=True), now=now)
        elif operation == "refresh":
            client.refresh(Lifetime(which * 300), now=now)
        elif operation == "delete":
            client.refresh(Lifetime(0), now=now)
        elif operation == "permit":
            client.permit(peer, now=now)
        elif operation == "bind":
            client.bind(0x4000 + which % 3, peer, now=now)
        elif operation == "send":
            client.send(ChannelData(0x4000 + which % 3, b"x").encode(), now)
        elif operation == "peer":
            server.receive_datagram(b"y", RELAY, peer, now)
            check_output(server.datagrams_to_send(now))
        else:
            server.handle_timer(now)
        while (event := server.next_event()) is not None:
            created += isinstance(event, AllocationCreated)
            deleted += isinstance(event, AllocationDeleted)
        check_tables(server, relays, now)
        assert created - deleted == server.allocation_count


def check_tables(server: TurnServerCore, relays: PortRangeAllocator, now: float) -> None:
    allocations = list(server.allocations())
    config = server.config
    assert len(allocations) <= config.total_quota
    in_use = {address for a in allocations for address in a.relayed_addresses}
    assert in_use <= relays.in_use
    assert len(relays.in_use) == len(in_use) + server.table.reservation_count
    users = [a.username for a in allocations]
    assert all(users.count(user) <= config.user_quota for user in users)
    table = server.table
    assert table.pending_timers <= 2 * (len(allocations) + table.reservation_count) + 65
    timer = server.get_timer()
    if allocations or table.reservation_count:
        assert timer is not None
        assert all(timer <= a.expires_at for a in allocations)
    else:
        assert timer is None
    for allocation in allocations:
        assert len(allocation.permissions) <= config.max_permissions
        assert len(allocation.channels) <= config.max_channels
        assert {b.number: b.peer for b in allocation.channels.values()} == {
            b.number: b.peer for b in allocation.channel_by_peer.values()
        }
        assert all(config.peer_policy.refusal(host) is None for host in allocation.permissions)


# --------------------------------------------------------------------------- floods


def test_a_flood_of_unauthenticated_allocates_leaves_the_tables_bounded() -> None:
    server, relays = make_server(failure_table_size=100)
    for n in range(3000):
        source = make_address(f"198.18.{n // 250}.{n % 250 + 1}", 1000 + n)
        server.receive_datagram(bare(Method.ALLOCATE, RequestedTransport()), SERVER, source, 0.0)
    assert len(server.datagrams_to_send(0.0)) == 3000  # each a first 401, within its budget
    assert server.allocation_count == 0 and relays.in_use == set()
    assert server.failure_sources == 100
    assert code(Client(server).allocate(now=0.0)) is None  # and a real client is served


def test_a_flood_from_one_source_is_answered_only_while_its_budget_lasts() -> None:
    server, _ = make_server(failure_burst=10, failure_rate=1.0)
    for _ in range(1000):
        server.receive_datagram(bare(Method.ALLOCATE, RequestedTransport()), SERVER, CLIENT, 0.0)
    assert len(server.datagrams_to_send(0.0)) == 10
    assert server.failure_sources == 1


def test_a_flood_of_junk_sends_nothing_and_keeps_nothing() -> None:
    server, _ = ready_server()
    sources = server.failure_sources
    for n in range(2000):
        source = make_address("198.18.0.1", n)
        server.receive_datagram(bytes([n % 256]) * (n % 97), SERVER, source, 1.0)
    assert server.datagrams_to_send(1.0) == []
    assert server.allocation_count == 1
    assert server.failure_sources == sources


def test_allocation_churn_keeps_the_timer_heap_bounded() -> None:
    server, relays = make_server()
    client = Client(server)
    for n in range(1000):
        now = n * 0.01
        assert code(client.allocate(Lifetime(3600), now=now)) is None
        assert code(client.refresh(Lifetime(0), now=now)) is None
    assert server.table.pending_timers <= 65
    assert relays.in_use == set()
    assert server.get_timer() is None

