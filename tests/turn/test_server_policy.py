"""Which peers the TURN server relays to (turn.server.policy): the IPv6 forms that carry IPv4
addresses, the allow- and deny-lists, loopback, documentation and the server's own addresses —
as verdicts, and through CreatePermission and ChannelBind. The special-purpose table itself is
tested row by row in test_special_purpose.py."""

from __future__ import annotations

import argparse
import ipaddress

import pytest

from stun import AddressFamily, LocalProtocolError, make_address
from turn import RequestedAddressFamily
from turn.cli import build_plan
from turn.serve_options import add_arguments
from turn.server import PeerPolicy
from turn.server.embedded import carried_ipv4, nat64_embedded

from .harness import Client, code, make_server

LOOPBACK = "Loopback (RFC 1122 §3.2.1.3): not globally reachable"
LINK_LOCAL = "Link Local (RFC 3927): not globally reachable"
PRIVATE = "Private-Use (RFC 1918): not globally reachable"

#: IPv6 addresses carrying refused IPv4 addresses, and the refusal each earns by default.
CARRYING_REFUSED: list[tuple[str, str]] = [
    ("64:ff9b::7f00:1", f"NAT64 (RFC 6052) form of 127.0.0.1: {LOOPBACK}"),
    ("64:ff9b::a9fe:a9fe", f"NAT64 (RFC 6052) form of 169.254.169.254: {LINK_LOCAL}"),
    ("64:ff9b::10.1.2.3", f"NAT64 (RFC 6052) form of 10.1.2.3: {PRIVATE}"),
    ("64:ff9b::c0a8:1", f"NAT64 (RFC 6052) form of 192.168.0.1: {PRIVATE}"),
    ("64:ff9b::100.64.0.1", "NAT64 (RFC 6052) form of 100.64.0.1: "
     "Shared Address Space (RFC 6598): not globally reachable"),
    ("2002:7f00:1::1", f"6to4 (RFC 3056) form of 127.0.0.1: {LOOPBACK}"),
    ("2002:a9fe:a9fe::", f"6to4 (RFC 3056) form of 169.254.169.254: {LINK_LOCAL}"),
    ("2002:0a00:0001:1::1", f"6to4 (RFC 3056) form of 10.0.0.1: {PRIVATE}"),
    # Teredo: server 127.0.0.1 (bits 32-63); client 8.8.8.8 (last 32 bits, inverted)
    ("2001:0:7f00:1:8000:63bf:f7f7:f7f7", f"Teredo (RFC 4380) form of 127.0.0.1: {LOOPBACK}"),
    # Teredo: server 8.8.8.8; client 169.254.169.254 (~a9fea9fe = 5601:5601)
    ("2001:0:808:808:8000:63bf:5601:5601",
     f"Teredo (RFC 4380) form of 169.254.169.254: {LINK_LOCAL}"),
    ("::ffff:127.0.0.1", "IPv4-mapped Address (RFC 4291): not globally reachable"),
    ("::ffff:8.8.8.8", "IPv4-mapped Address (RFC 4291): not globally reachable"),
    ("::127.0.0.1",
     "IPv4-compatible Address, deprecated (RFC 4291 §2.5.5.1): not globally reachable"),
    ("::8.8.8.8",
     "IPv4-compatible Address, deprecated (RFC 4291 §2.5.5.1): not globally reachable"),
    ("64:ff9b:1::7f00:1", "IPv4-IPv6 Translat. (RFC 8215): not globally reachable"),
    ("64:ff9b:1::808:808", "IPv4-IPv6 Translat. (RFC 8215): not globally reachable"),
]  # fmt: skip
#: IPv6 addresses carrying only globally reachable IPv4 addresses: allowed.
CARRYING_ALLOWED = [
    "64:ff9b::808:808", "64:ff9b::1.1.1.1", "2002:808:808::1", "2002:0101:0101:5::9",
    "2001:0:808:808:8000:63bf:fefe:fefe",  # Teredo server 8.8.8.8, client 1.1.1.1
]  # fmt: skip


@pytest.mark.parametrize(("host", "why"), CARRYING_REFUSED, ids=[h for h, _ in CARRYING_REFUSED])
def test_ipv6_forms_of_refused_ipv4_addresses_are_refused(host: str, why: str) -> None:
    assert PeerPolicy().refusal(host) == why


@pytest.mark.parametrize("host", CARRYING_ALLOWED)
def test_ipv6_forms_of_public_ipv4_addresses_are_allowed(host: str) -> None:
    assert PeerPolicy().refusal(host) is None


@pytest.mark.parametrize(
    ("length", "host"),
    [  # RFC 6052 §2.4: 192.0.2.33 under the prefixes 2001:db8:122:344::/length
        (32, "2001:db8:c000:221::"),
        (40, "2001:db8:1c0:2:21::"),
        (48, "2001:db8:122:c000:2:2100::"),
        (56, "2001:db8:122:3c0:0:221::"),
        (64, "2001:db8:122:344:c0:2:2100:0"),
        (96, "2001:db8:122:344::192.0.2.33"),
    ],
)
def test_the_ipv4_address_inside_an_rfc6052_address(length: int, host: str) -> None:
    assert nat64_embedded(ipaddress.IPv6Address(host), length) == ipaddress.IPv4Address(
        "192.0.2.33"
    )


def test_teredo_carries_the_server_and_the_client() -> None:
    # RFC 4380 §4's layout: server 65.54.227.120, flags 0x8000, port and client inverted
    carried = carried_ipv4(ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    assert carried is not None and carried.form == "Teredo (RFC 4380)"
    assert [str(a) for a in carried.addresses] == ["65.54.227.120", "192.0.2.45"]


def test_an_operators_nat64_prefix_is_judged_by_the_ipv4_it_carries() -> None:
    local_use = PeerPolicy(nat64_prefixes=("64:ff9b:1::/48",))
    assert local_use.refusal("64:ff9b:1:808:8:800::") is None  # 8.8.8.8 under a /48
    assert local_use.refusal("64:ff9b:1:a00:1::") == f"NAT64 (RFC 6052) form of 10.0.1.0: {PRIVATE}"
    assert local_use.refusal("64:ff9b:1:808:ff08:800::") == (  # bits 64-71 set
        "NAT64 (RFC 6052): carries no valid IPv4 address"
    )
    # a network-specific prefix in global unicast space: without it, a way into 10.0.0.0/8
    assert PeerPolicy().refusal("2001:4860:64::10.0.0.1") is None
    specific = PeerPolicy(nat64_prefixes=("2001:4860:64::/96",))
    assert specific.refusal("2001:4860:64::10.0.0.1") == (
        f"NAT64 (RFC 6052) form of 10.0.0.1: {PRIVATE}"
    )
    assert specific.refusal("2001:4860:64::8.8.8.8") is None


@pytest.mark.parametrize("prefix", ["64:ff9b:1::/50", "10.0.0.0/8", "64:ff9b:1:0:ff00::/96", "x"])
def test_bad_nat64_prefixes_raise(prefix: str) -> None:
    with pytest.raises(LocalProtocolError, match="nat64_prefixes"):
        PeerPolicy(nat64_prefixes=(prefix,))


def test_allowances_do_not_travel_through_an_embedding() -> None:
    loopback = PeerPolicy(allow_loopback_peers=True)
    assert loopback.refusal("127.0.0.1") is None
    assert loopback.refusal("::1") is None
    for host in ("64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:127.0.0.1", "::127.0.0.1"):
        assert loopback.refusal(host) is not None, host
    private = PeerPolicy(allowed_peers=("10.0.0.0/8",))
    assert private.refusal("10.1.2.3") is None
    assert private.refusal("64:ff9b::10.1.2.3") == f"NAT64 (RFC 6052) form of 10.1.2.3: {PRIVATE}"
    documentation = PeerPolicy(allow_documentation_peers=True)
    assert documentation.refusal("192.0.2.9") is None
    assert documentation.refusal("64:ff9b::192.0.2.9") is not None
    # allowing the IPv6 form itself is what admits it
    assert PeerPolicy(allowed_peers=("64:ff9b::10.0.0.0/104",)).refusal("64:ff9b::a01:203") is None


def test_refusals_travel_through_an_embedding() -> None:
    denied = PeerPolicy(denied_peers=("8.8.8.0/24",))
    assert denied.refusal("64:ff9b::808:808") == "NAT64 (RFC 6052) form of 8.8.8.8: " + (
        "denied by configuration"
    )
    assert denied.refusal("2002:808:808::1") is not None
    assert denied.refusal("2001:0:101:101:8000:63bf:f7f7:f7f7") is not None  # Teredo client
    own = PeerPolicy(own_addresses=("8.8.4.4",))
    assert own.refusal("64:ff9b::808:404") == "NAT64 (RFC 6052) form of 8.8.4.4: " + (
        "an address of this server"
    )
    learnt = "NAT64 (RFC 6052) form of 1.1.1.1: an address of this server"
    assert PeerPolicy().refusal("64:ff9b::101:101", own_hosts={"1.1.1.1"}) == learnt


def test_allowed_peers_admit_even_refused_and_own_addresses() -> None:
    policy = PeerPolicy(
        allowed_peers=("10.1.0.0/16", "127.0.0.1", "fd00::/8"), own_addresses=("10.1.2.3",)
    )
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("10.2.0.1") == PRIVATE
    assert policy.refusal("127.0.0.2") == LOOPBACK


def test_denied_peers_refuse_public_addresses() -> None:
    policy = PeerPolicy(denied_peers=("8.8.8.0/24",), allowed_peers=("8.8.8.7",))
    assert policy.refusal("8.8.8.9") == "denied by configuration"
    assert policy.refusal("8.8.8.7") is None  # allowed wins
    assert policy.refusal("8.8.4.4") is None


def test_allow_loopback_peers_admits_loopback_only() -> None:
    policy = PeerPolicy(allow_loopback_peers=True, own_addresses=("127.0.0.1",))
    assert policy.refusal("127.0.0.1") is None  # even the server's own loopback address
    assert policy.refusal("127.8.9.10") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("10.0.0.1") is not None
    assert PeerPolicy(allow_loopback_peers=True, denied_peers=("127.0.0.2",)).refusal(
        "127.0.0.2"
    ) == ("denied by configuration")


def test_allow_documentation_peers_admits_documentation_but_not_own_addresses() -> None:
    policy = PeerPolicy(allow_documentation_peers=True, own_addresses=("203.0.113.1",))
    for host in ("192.0.2.9", "198.51.100.1", "203.0.113.9", "2001:db8::9", "3fff::9"):
        assert policy.refusal(host) is None, host
    assert policy.refusal("203.0.113.1") == "an address of this server"
    assert policy.refusal("10.0.0.1") == PRIVATE
    assert policy.refusal("192.0.0.1") is not None  # 192.0.0.0/24 is not documentation


def test_own_addresses_are_refused() -> None:
    policy = PeerPolicy(own_addresses=("8.8.4.4", "2001:4860:4860::8844"))
    assert policy.refusal("8.8.4.4") == "an address of this server"
    assert policy.refusal("2001:4860:4860:0:0:0:0:8844") == "an address of this server"
    assert policy.refusal("8.8.8.8") is None
    assert policy.refusal("8.8.8.8", own_hosts={"8.8.8.8"}) == "an address of this server"


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
    assert PeerPolicy(denied_peers=("0.0.0.0/0",)).refusal("2001:4860::9") is None
    assert PeerPolicy(denied_peers=("::/0",)).refusal("8.8.8.8") is None


def test_a_host_that_is_no_address_is_refused() -> None:
    assert PeerPolicy().refusal("example.com") == "not an IP address"


# --------------------------------------------------------------------------- through the server

#: One address in refused ranges of each kind, and the IPv6 forms above.
REFUSED_IPV4 = [
    "0.0.0.1", "10.0.0.1", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1",
    "192.0.0.1", "192.0.0.170", "192.88.99.1", "192.168.1.1", "198.18.0.1", "224.0.0.1",
    "240.0.0.1", "255.255.255.255",
]  # fmt: skip
REFUSED_IPV6 = [
    "::", "::1", "100::1", "2001:2::1", "3fff::1", "5f00::1", "fd12::1", "fe80::1", "ff02::1",
    *(host for host, _ in CARRYING_REFUSED),
]  # fmt: skip


def _default_policy_client(family: AddressFamily = AddressFamily.IPV4) -> Client:
    server, _ = make_server(peer_policy=PeerPolicy())
    client = Client(server)
    client.allocate(RequestedAddressFamily(family))
    return client


@pytest.mark.parametrize("host", REFUSED_IPV4)
def test_create_permission_and_channel_bind_for_a_refused_ipv4_peer_get_403(host: str) -> None:
    client = _default_policy_client()
    assert code(client.permit(make_address(host, 9))) == 403
    assert code(client.bind(0x4000, make_address(host, 9))) == 403


@pytest.mark.parametrize("host", REFUSED_IPV6)
def test_create_permission_and_channel_bind_for_a_refused_ipv6_peer_get_403(host: str) -> None:
    client = _default_policy_client(AddressFamily.IPV6)
    assert code(client.permit(make_address(host, 9))) == 403
    assert code(client.bind(0x4000, make_address(host, 9))) == 403


def test_public_and_carrying_public_peers_are_granted_by_default() -> None:
    """The positive control of the 403s above: the same requests for public peers succeed."""
    client = _default_policy_client()
    assert code(client.permit(make_address("8.8.8.8", 9))) is None
    assert code(client.bind(0x4000, make_address("8.8.8.8", 9))) is None
    client = _default_policy_client(AddressFamily.IPV6)
    for number, host in enumerate(["2001:4860:4860::8888", *CARRYING_ALLOWED], start=0x4000):
        assert code(client.permit(make_address(host, 9))) is None, host
        assert code(client.bind(number, make_address(host, 9))) is None, host


def test_documentation_peers_are_granted_only_when_allowed() -> None:
    """The tests' simulated Internet: refused by default, as the registry says, and granted
    with ``allow_documentation_peers`` (what the harness's servers use)."""
    assert code(_default_policy_client().permit(make_address("203.0.113.9", 9))) == 403
    server, _ = make_server()
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address("203.0.113.9", 9))) is None
    assert code(client.permit(make_address("198.51.100.200", 9))) is None


def test_the_servers_listening_and_relayed_addresses_are_refused() -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address("192.0.2.1", 3478))) == 403  # listener and relay host
    assert code(client.permit(make_address("192.0.2.2", 1))) is None


def test_the_nat64_form_of_the_servers_address_is_refused() -> None:
    server, _ = make_server()
    client = Client(server)
    client.allocate(RequestedAddressFamily(AddressFamily.IPV6))
    assert code(client.permit(make_address("64:ff9b::192.0.2.1", 3478))) == 403


def test_loopback_peers_when_allowed() -> None:
    server, _ = make_server(peer_policy=PeerPolicy(allow_loopback_peers=True))
    client = Client(server)
    client.allocate()
    assert code(client.permit(make_address("127.0.0.1", 9))) is None


# --------------------------------------------------------------------------- the command line


def _plan_policy(*options: str) -> PeerPolicy:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = ["--user", "alice:wonderland", "--listen", "127.0.0.1:3478", *options]
    return build_plan(parser.parse_args(args)).config.peer_policy


def test_the_command_line_sets_the_new_policy_options() -> None:
    """``icestack serve turn --nat64-prefix`` and ``--allow-documentation-peers``."""
    default = _plan_policy()
    assert default.refusal("203.0.113.9") is not None
    assert default.refusal("2001:4860:64::10.0.0.1") is None
    policy = _plan_policy(
        "--allow-documentation-peers", "--nat64-prefix", "2001:4860:64::/96",
        "--nat64-prefix", "64:ff9b:1::/48",
    )  # fmt: skip
    assert policy.refusal("203.0.113.9") is None
    assert policy.refusal("2001:4860:64::10.0.0.1") is not None
    assert policy.refusal("64:ff9b:1:808:8:800::") is None
    with pytest.raises(LocalProtocolError, match="--nat64-prefix: 64:ff9b::/33 is not a NAT64"):
        _plan_policy("--nat64-prefix", "64:ff9b::/33")
