"""The TURN relay's lean path (TurnServerCore.relay_from_client / relay_from_peer) against the typed
path (handle_datagram) on generated traffic: two servers in the same state, one fed through each,
must send the same datagrams from and to the same addresses, count the same outcomes and bytes, and
keep the same tables (allocations, permissions, channels, expiries, bandwidth buckets) and events.

The traffic mixes what the lean path relays — ChannelData on bound channels, Send indications of
the common shape with and without FINGERPRINT, peers' datagrams for channels and Data indications
— with everything it must leave to the typed path: unbound and out-of-range channels, lengths that
do not add up, flipped, cut and extended bytes, IPv6 and port-0 peers, peers without permission,
this server's own addresses as peers, unknown clients, requests, and time moving past permission,
channel and allocation lifetimes; with and without a bandwidth limit, over IPv4 and IPv6 clients.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import Address, Message, MessageClass, Method, make_address
from stun.integrity import fingerprint
from turn import (
    Data,
    DontFragment,
    Lifetime,
    XorPeerAddress,
)

from ..turn.harness import CLIENT, PEER, PEER_V6, RELAY, SERVER, Client, make_server
from .turn_lean import (
    CLIENT_V6,
    OTHER_PEER,
    SERVER_V6,
    alike,
    compare_from_client,
    mutate,
    ready,
    state,
)

SAME_HOST_PEER = make_address("203.0.113.9", 5001)  # PEER's permission, no channel
STRANGER = make_address("203.0.113.99", 7000)  # no permission
UNKNOWN_CLIENT = make_address("198.51.100.200", 1234)
peers = st.sampled_from(
    (PEER, OTHER_PEER, SAME_HOST_PEER, STRANGER, PEER_V6, make_address("203.0.113.9", 0), RELAY)
)
clients = st.sampled_from(
    ((CLIENT, SERVER), (CLIENT, SERVER), (CLIENT_V6, SERVER_V6), (UNKNOWN_CLIENT, SERVER))
)
#: Small data, and now and then enough to spend the bandwidth limit's burst (64 KiB).
payloads = st.one_of(st.binary(max_size=64), st.just(bytes(30000)))

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def channel_data(draw: st.DrawFn) -> bytes:
    number = draw(st.sampled_from((0x4000, 0x4001, 0x4002, 0x4FFF, 0x5000, 0x7FFF, 0x3FFF)))
    payload = draw(payloads)
    size = len(payload) + draw(st.sampled_from((0, 0, 0, 1, -1)))
    padding = draw(st.sampled_from((b"", b"", bytes(-len(payload) & 3), b"\xff")))
    return mutate(draw, struct.pack("!HH", number, max(size, 0)) + payload + padding)


@st.composite
def send_indications(draw: st.DrawFn) -> bytes:
    peer = XorPeerAddress(draw(peers))
    data = Data(draw(payloads))
    extra = [DontFragment()] if draw(st.integers(0, 9)) == 0 else []
    attributes = [data, peer] if draw(st.integers(0, 9)) == 0 else [peer, data]
    message = Message(
        Method.SEND,
        MessageClass.INDICATION,
        draw(st.binary(min_size=12, max_size=12)),
        [*attributes, *extra],
    )
    return mutate(draw, message.encode(fingerprint=draw(st.booleans())))


def _with_bad_fingerprint(data: bytes) -> bytes:
    return data[:-4] + struct.pack("!I", fingerprint(data[:-8]) ^ 1) if len(data) > 28 else data


client_datagrams = st.one_of(
    channel_data(),
    send_indications(),
    send_indications(),
    send_indications().map(_with_bad_fingerprint),
    st.binary(max_size=48),
)
#: (wait, from a peer?, client or peer, relay index, bytes)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from((0.0, 0.0, 1.0, 200.0, 400.0)),
            st.just(False),
            clients,
            st.just(0),
            client_datagrams,
        ),
        st.tuples(
            st.sampled_from((0.0, 0.0, 1.0, 200.0)),
            st.just(True),
            peers.map(lambda peer: (peer, peer)),
            st.integers(0, 4),
            payloads,
        ),
    ),
    min_size=4,
    max_size=30,
)


@SETTINGS
@given(traffic=steps, bandwidth=st.sampled_from((None, None, 300)))
def test_lean_and_typed_paths_relay_alike(
    traffic: list[tuple[float, bool, tuple[Address, Address], int, bytes]], bandwidth: int | None
) -> None:
    lean, relays = ready(bandwidth)
    typed, typed_relays = ready(bandwidth)
    assert relays == typed_relays
    now = 1.0
    for wait, from_peer, (source, local), relay_index, data in traffic:
        now += wait
        if from_peer:
            relay = relays[relay_index] if relay_index < len(relays) else SERVER
            sockaddr = (*source, 0, 0) if ":" in source.host else tuple(source)
            got = lean.relay_from_peer(data, relay, sockaddr, now)
            alike(lean, typed, got, typed.handle_datagram(data, relay, source, now))
        else:
            compare_from_client(lean, typed, data, source, local, now)


def test_the_common_shapes_take_the_lean_path() -> None:
    """The shapes the lean path is for do not reach handle_datagram (checked by removing it)."""
    server, _ = ready(None)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the typed path was taken")

    server.handle_datagram = refuse  # type: ignore[method-assign]
    source = tuple(CLIENT)
    out = server.relay_from_client(struct.pack("!HH", 0x4000, 3) + b"abc", SERVER, source, 2.0)
    assert out == (b"abc", RELAY, PEER)
    for fingerprinted in (False, True):
        send = Message(
            Method.SEND, MessageClass.INDICATION, bytes(12), [XorPeerAddress(PEER), Data(b"xyz")]
        ).encode(fingerprint=fingerprinted)
        assert server.relay_from_client(send, SERVER, source, 2.0) == (b"xyz", RELAY, PEER)
    back = server.relay_from_peer(b"pong", RELAY, tuple(PEER), 2.0)
    assert back == (struct.pack("!HH", 0x4000, 4) + b"pong", SERVER, CLIENT)


def test_every_corrupted_byte_of_a_send_indication_is_decided_alike() -> None:
    """Each byte of a Send indication and of ChannelData flipped three ways, with and without
    FINGERPRINT: the lean path relays only what the typed path relays, the same way."""
    lean, _ = ready(None)
    typed, _ = ready(None)
    source = tuple(CLIENT)
    originals = [struct.pack("!HH", 0x4000, 5) + b"hello\x00\x00\x00"]
    for fingerprinted in (False, True):
        message = Message(
            Method.SEND,
            MessageClass.INDICATION,
            bytes(range(12)),
            [XorPeerAddress(PEER), Data(b"hello")],
        )
        originals.append(message.encode(fingerprint=fingerprinted))
    for original in originals:
        for index in range(len(original)):
            for flip in (0x01, 0x02, 0x80, 0xFF):
                data = bytearray(original)
                data[index] ^= flip
                got = lean.relay_from_client(bytes(data), SERVER, source, 2.0)
                assert got == typed.handle_datagram(bytes(data), SERVER, CLIENT, 2.0), (index, flip)
    assert state(lean) == state(typed)
    assert lean.stats.counts == typed.stats.counts


def test_a_listener_address_that_is_also_relayed_is_decided_alike() -> None:
    """A listener whose address a relay allocator hands out later (possible in memory, not with
    sockets): the lean path leaves it to the typed path, which treats it as a relayed address."""
    servers = []
    for _ in range(2):
        server, _ = make_server(ports=range(50000, 50002))
        shared = make_address("192.0.2.1", 50001)
        first = Client(server, listener=shared)
        first.allocate(Lifetime(900))
        first.bind(0x4000, PEER)
        Client(server, address=make_address("198.51.100.9", 1)).allocate(Lifetime(900))
        servers.append(server)
    lean, typed = servers
    assert lean.table.by_relay(shared) is not None
    data = struct.pack("!HH", 0x4000, 2) + b"hi"
    got = lean.relay_from_client(data, shared, tuple(CLIENT), 2.0)
    assert got == typed.handle_datagram(data, shared, CLIENT, 2.0)
    assert state(lean) == state(typed)
