"""Values from a validly signed client that no peer can be reached at, in the TURN server core:
port 0 and addresses that are not unicast are refused whatever the peer policy allows, data too
big for one UDP datagram to the peer is dropped, and the tables forget what expired by looking at
their fronts only (expiry order kept through refreshes)."""

from __future__ import annotations

import pytest

from stun import Address, AddressFamily, Message, make_address
from turn import AdditionalAddressFamily, ChannelData, Data, XorPeerAddress
from turn.server import ClientTransport, Outcome, PeerPolicy

from .harness import PEER, PEER_V6, Client, code, make_server, send_indication
from .test_tcp_relay import allocate_tcp, send_connect, tcp_server

#: A policy that admits every peer: what is refused below is refused for what it is, not by it.
EVERYTHING = PeerPolicy(allowed_peers=("0.0.0.0/0", "::/0"))


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"]
)
def test_peers_that_are_not_unicast_are_forbidden_whatever_the_policy(host: str) -> None:
    server, _ = make_server(peer_policy=EVERYTHING)
    client = Client(server)
    client.allocate()
    peer = make_address(host, 5000)
    family_ok = ":" not in host
    assert code(client.permit(peer)) == (403 if family_ok else 443)
    assert code(client.bind(0x4000, peer)) == (403 if family_ok else 443)
    assert code(client.permit(make_address("203.0.113.9", 1))) is None  # the policy admits


def test_channel_bind_to_port_0_is_a_bad_request() -> None:
    server, _ = make_server(peer_policy=EVERYTHING)
    client = Client(server)
    client.allocate()
    assert code(client.bind(0x4000, make_address(PEER.host, 0))) == 400
    assert code(client.permit(make_address(PEER.host, 0))) is None  # a permission has no port


def test_a_send_indication_to_port_0_is_dropped() -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate()
    client.permit(PEER)
    message = send_indication(XorPeerAddress(make_address(PEER.host, 0)), Data(b"x"))
    assert client.send(message, 1.0) is None
    assert server.stats[Outcome.BAD_INDICATION] == 1


def test_a_connect_to_port_0_is_a_bad_request() -> None:
    server, _ = tcp_server()
    client = Client(server, transport=ClientTransport.TCP)
    assert code(allocate_tcp(client)) is None
    client.permit(PEER)
    answer = send_connect(client, make_address(PEER.host, 0))
    assert answer is not None and code(Message.decode(answer.data)) == 400


@pytest.mark.parametrize(
    ("peer", "size", "relayed"),
    [
        (PEER, 65507, True),
        (PEER, 65508, False),
        (PEER_V6, 65527, True),
        (PEER_V6, 65528, False),
    ],
    ids=["ipv4 fits", "ipv4 too big", "ipv6 fits", "ipv6 too big"],
)
def test_data_bigger_than_a_udp_datagram_to_the_peer_is_dropped(
    peer: Address, size: int, relayed: bool
) -> None:
    server, _ = make_server()
    client = Client(server, transport=ClientTransport.TCP)  # a stream carries 65535 bytes
    client.allocate(AdditionalAddressFamily(AddressFamily.IPV6))
    assert code(client.bind(0x4000, peer)) is None
    out = client.send(ChannelData(0x4000, bytes(size)).encode(pad=True), 1.0)
    assert (out is not None) is relayed
    assert server.stats[Outcome.TOO_BIG] == (0 if relayed else 1)


def test_a_refreshed_permission_moves_behind_the_ones_that_expire_first() -> None:
    """max_permissions 2: A at 0, B at 100, A refreshed at 200; at 450 B (400) has expired but A
    (500) has not. Room for C exists only if the refresh moved A behind B."""
    server, _ = make_server(max_permissions=2)
    client = Client(server)
    client.allocate()
    a, b, c = (make_address(f"203.0.113.{n}", 1) for n in (1, 2, 3))
    assert code(client.permit(a, now=0.0)) is None
    assert code(client.permit(b, now=100.0)) is None
    assert code(client.permit(a, now=200.0)) is None
    assert code(client.permit(c, now=450.0)) is None
    allocation = server.allocation(client.five_tuple)
    assert allocation is not None and list(allocation.permissions) == [a.host, c.host]


def test_a_refreshed_channel_moves_behind_the_ones_that_expire_first() -> None:
    server, _ = make_server(max_channels=2, channel_rebind_wait=0.0)
    client = Client(server)
    client.allocate()
    a, b, c = (make_address(f"203.0.113.{n}", 1) for n in (1, 2, 3))
    assert code(client.bind(0x4000, a, now=0.0)) is None
    assert code(client.bind(0x4001, b, now=100.0)) is None
    assert code(client.bind(0x4000, a, now=200.0)) is None  # refreshed: expires at 800
    assert code(client.refresh(now=500.0)) is None  # keep the allocation
    assert code(client.bind(0x4002, c, now=750.0)) is None  # B (700) is gone, A is not
    allocation = server.allocation(client.five_tuple)
    assert allocation is not None and sorted(allocation.channels) == [0x4000, 0x4002]
