"""What the tests of the TURN server's lean path share: two servers made alike, everything a
datagram can change about one (to compare), and generated corruption of a datagram."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from stun import Address, AddressFamily, make_address
from stun.datagram import Datagram
from turn import AdditionalAddressFamily, Lifetime, XorRelayedAddress
from turn.server import TurnServerCore

from ..turn.harness import CLIENT, PEER, PEER_V6, SERVER, Client, make_server

SERVER_V6 = make_address("2001:db8::1", 3478)
CLIENT_V6 = make_address("2001:db8:1::7", 40000)
OTHER_PEER = make_address("203.0.113.10", 6000)  # a permission, no channel


#: The bytes of the STUN header and the first attribute's header and value.
HEADER_BYTES = (0, 1, 2, 3, 4, 7, 20, 21, 22, 23, 24, 25, 26, 32, 33, 34, 35)


def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` as it came, or with a byte flipped (header fields more often), cut or
    extended."""
    change = draw(st.sampled_from(("none", "none", "none", "flip", "cut", "extend")))
    if change == "flip" and data:
        # The header fields decide which path a datagram takes: flipped more often than not
        # (message type and length, cookie, XOR-PEER-ADDRESS's header, family and port, DATA's
        # header).
        anywhere = st.integers(0, len(data) - 1)
        fields = st.sampled_from([i for i in HEADER_BYTES if i < len(data)] or [0])
        index = draw(st.one_of(anywhere, fields, fields))
        return data[:index] + bytes([data[index] ^ draw(st.integers(1, 255))]) + data[index + 1 :]
    if change == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if change == "extend":
        return data + draw(st.binary(min_size=1, max_size=8))
    return data


def ready(bandwidth: int | None) -> tuple[TurnServerCore, list[Address]]:
    """A server with allocations for CLIENT (IPv4 and IPv6 relays) and CLIENT_V6, permissions for
    PEER's and OTHER_PEER's hosts and PEER_V6, channels 0x4000 (PEER) and 0x4001 (PEER_V6)."""
    server, _ = make_server(max_bytes_per_second=bandwidth)
    relays: list[Address] = []
    for address, listener in ((CLIENT, SERVER), (CLIENT_V6, SERVER_V6)):
        client = Client(server, address=address, listener=listener)
        response = client.allocate(Lifetime(900), AdditionalAddressFamily(AddressFamily.IPV6))
        relays += [a.address for a in response.get_all(XorRelayedAddress)]
        client.permit(OTHER_PEER)
        client.bind(0x4000, PEER)
        client.bind(0x4001, PEER_V6)
    return server, relays


def state(server: TurnServerCore) -> Any:
    """Everything a datagram can change, comparable."""
    allocations = [
        (
            allocation.five_tuple,
            allocation.expires_at,
            allocation.timer_at,
            dict(allocation.permissions),
            [(b.number, b.peer, b.relay, b.expires_at) for b in allocation.channels.values()],
            [(b.number, b.peer) for b in allocation.channel_by_peer.values()],
            None if allocation.to_peer is None else vars_of(allocation.to_peer),
            None if allocation.to_client is None else vars_of(allocation.to_client),
        )
        for allocation in server.allocations()
    ]
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    stats = server.stats
    counters = (
        stats.counts,
        stats.authentication.counts,
        stats.bytes_to_peer,
        stats.bytes_to_client,
    )
    return allocations, events, counters, server.get_timer(), server.failure_sources


def vars_of(bucket: object) -> tuple[object, ...]:
    """A bandwidth bucket's state."""
    return tuple(getattr(bucket, name) for name in bucket.__slots__)  # type: ignore[attr-defined]


def compare_from_client(
    lean: TurnServerCore,
    typed: TurnServerCore,
    data: bytes,
    client: Address,
    local: Address,
    now: float,
) -> Datagram | None:
    """A datagram from ``client`` to ``local`` through each path (``lean.relay_from_client``,
    ``typed.handle_datagram``): the same answer, the same state after; the answer."""
    sockaddr = (*client, 0, 0) if ":" in client.host else tuple(client)
    got = lean.relay_from_client(data, local, sockaddr, now)
    return alike(lean, typed, got, typed.handle_datagram(data, local, client, now))


def alike(
    lean: TurnServerCore, typed: TurnServerCore, got: Datagram | None, expected: Datagram | None
) -> Datagram | None:
    """Assert that the lean path's answer ``got`` is the typed path's, made of plain
    :class:`stun.Address` values, and that both servers are in the same state; ``got``."""
    assert got == expected
    if got is not None:
        assert all(type(part) is Address for part in got[1:])
    assert state(lean) == state(typed)
    return got
