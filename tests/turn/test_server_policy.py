"""Which peers the TURN server relays to (turn.server.policy): every refused range, the allow- and
deny-lists, loopback, the server's own addresses — as a table, and through CreatePermission."""

from __future__ import annotations

import pytest

from stun import AddressFamily, LocalProtocolError, make_address
from turn import RequestedAddressFamily
from turn.server import REFUSED_RANGES, PeerPolicy

from .harness import Client, code, make_server

#: Every refused range with addresses inside it (first, last and a notable one) and just outside.
REFUSED_TABLE: list[tuple[str, list[str], list[str]]] = [
    ("0.0.0.0/8", ["0.0.0.0", "0.255.255.255"], ["1.0.0.0"]),
    ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255"], ["9.255.255.255", "11.0.0.0"]),
    ("100.64.0.0/10", ["100.64.0.0", "100.127.255.255"], ["100.63.255.255", "100.128.0.0"]),
    ("127.0.0.0/8", ["127.0.0.1", "127.255.255.255"], ["128.0.0.0"]),
    ("169.254.0.0/16", ["169.254.0.0", "169.254.169.254", "169.254.255.255"], ["169.253.255.255"]),
    ("172.16.0.0/12", ["172.16.0.0", "172.31.255.255"], ["172.15.255.255", "172.32.0.0"]),
    ("192.168.0.0/16", ["192.168.0.0", "192.168.255.255"], ["192.167.255.255", "192.169.0.0"]),
    ("224.0.0.0/4", ["224.0.0.1", "239.255.255.255"], ["223.255.255.255"]),
    ("240.0.0.0/4", ["240.0.0.0", "255.255.255.255"], []),
    ("::/128", ["::"], ["::2"]),
    ("::1/128", ["::1"], []),
    ("::ffff:0:0/96", ["::ffff:8.8.8.8", "::ffff:127.0.0.1"], ["::1:0:0:0"]),
    ("fc00::/7", ["fc00::", "fd12:3456::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
     ["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"]),
    ("fe80::/10", ["fe80::1", "febf:ffff::1"], ["fe7f::1"]),
    ("fec0::/10", ["fec0::1", "feff:ffff::1"], []),
    ("ff00::/8", ["ff02::1", "ff0e::1"], ["feff:ffff::1:2"]),
]
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "203.0.113.9", "198.51.100.1", "2001:4860:4860::8888", "2001:db8::9",
]


def test_the_table_covers_every_refused_range() -> None:
    assert [str(network) for network, _ in REFUSED_RANGES] == [row[0] for row in REFUSED_TABLE]


@pytest.mark.parametrize(
    ("cidr", "inside", "outside"), REFUSED_TABLE, ids=[row[0] for row in REFUSED_TABLE]
)
def test_refused_ranges(cidr: str, inside: list[str], outside: list[str]) -> None:
    policy = PeerPolicy()
    why = {str(network): reason for network, reason in REFUSED_RANGES}[cidr]
    for host in inside:
        assert policy.refusal(host) == why, host
    for host in outside:
        assert policy.refusal(host) != why, host


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed(host: str) -> None:
    assert PeerPolicy().refusal(host) is None


def test_allowed_peers_admit_even_refused_and_own_addresses() -> None:
    policy = PeerPolicy(
        allowed_peers=("10.1.0.0/16", "127.0.0.1", "fd00::/8"), own_addresses=("10.1.2.3",)
    )
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("10.2.0.1") == "private (RFC 1918)"
    assert policy.refusal("127.0.0.2") == "loopback (RFC 1122)"


def test_denied_peers_refuse_public_addresses() -> None:
    policy = PeerPolicy(denied_peers=("203.0.113.0/24",), allowed_peers=("203.0.113.7",))
    assert policy.refusal("203.0.113.9") == "denied by configuration"
    assert policy.refusal("203.0.113.7") is None  # allowed wins
    assert policy.refusal("198.51.100.1") is None


def test_allow_loopback_peers_admits_loopback_only() -> None:
    policy = PeerPolicy(allow_loopback_peers=True, own_addresses=("127.0.0.1",))
    assert policy.refusal("127.0.0.1") is None  # even the server's own loopback address
    assert policy.refusal("127.8.9.10") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("10.0.0.1") is not None
    assert policy.refusal("::ffff:127.0.0.1") is not None  # not through the mapped form


def test_own_addresses_are_refused() -> None:
    policy = PeerPolicy(own_addresses=("203.0.113.1", "2001:db8::1"))
    assert policy.refusal("203.0.113.1") == "an address of this server"
    assert policy.refusal("2001:db8::1") == "an address of this server"
    assert policy.refusal("203.0.113.2") is None
    assert policy.refusal("203.0.113.2", own_hosts={"203.0.113.2"}) == "an address of this server"


@pytest.mark.parametrize(
    "settings",
    [
        {"allowed_peers": ("10.0.0.0/33",)},
        {"denied_peers": ("not an address",)},
        {"own_addresses": ("10.0.0.0/8",)},
    ],
)
def test_bad_policy_settings_raise(settings: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(LocalProtocolError):
        PeerPolicy(**settings)  # type: ignore[arg-type]


def test_networks_of_one_family_never_match_the_other() -> None:
    assert PeerPolicy(denied_peers=("0.0.0.0/0",)).refusal("2001:db8::9") is None
    assert PeerPolicy(denied_peers=("::/0",)).refusal("203.0.113.9") is None


# --------------------------------------------------------------------------- through the server


@pytest.mark.parametrize(
    "host", [host for _, inside, _ in REFUSED_TABLE for host in inside if ":" not in host]
)
def test_create_permission_for_a_refused_ipv4_peer_gets_403(host: str) -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address(host, 9))) == 403
    assert code(client.bind(0x4000, make_address(host, 9))) == 403


@pytest.mark.parametrize(
    "host", [host for _, inside, _ in REFUSED_TABLE for host in inside if ":" in host]
)
def test_create_permission_for_a_refused_ipv6_peer_gets_403(host: str) -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate(RequestedAddressFamily(AddressFamily.IPV6))
    assert code(client.permit(make_address(host, 9))) == 403


def test_the_servers_listening_and_relayed_addresses_are_refused() -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address("192.0.2.1", 3478))) == 403  # listener and relay host
    assert code(client.permit(make_address("192.0.2.2", 1))) is None


def test_loopback_peers_when_allowed() -> None:
    server, _ = make_server(peer_policy=PeerPolicy(allow_loopback_peers=True))
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address("127.0.0.1", 9))) is None
