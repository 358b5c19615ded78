"""The TURN server's smaller parts: REST API credentials, the in-memory relay allocator,
configuration validation (its token buckets and rate limiter are stun.limits', tests/stun)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from typing import Any

import pytest

from stun import Address, AddressFamily, LocalProtocolError, long_term_key, make_address
from stun.integrity import PasswordAlgorithmId
from stun.server import LongTermCredentials, LongTermKey
from turn.server import (
    PortRangeAllocator,
    RestApiUsers,
    TurnServerConfig,
    rest_api_expiry,
    rest_api_password,
    rest_api_username,
)

IPV4 = AddressFamily.IPV4
IPV6 = AddressFamily.IPV6

# --------------------------------------------------------------------------- REST API


def test_rest_api_password_is_base64_hmac_sha1_of_the_username() -> None:
    secret, username = b"north", "1700000000:carol"
    expected = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest())
    assert rest_api_password(secret, username) == expected.decode()
    assert len(rest_api_password(secret, username)) == 28


def test_rest_api_usernames() -> None:
    assert rest_api_username("carol", 1700000000.9) == "1700000000:carol"
    assert rest_api_username("", 1700000000) == "1700000000"
    with pytest.raises(LocalProtocolError):
        rest_api_username("carol", -1)


@pytest.mark.parametrize(
    ("username", "expiry"),
    [
        ("1700000000:carol", 1700000000),
        ("1700000000", 1700000000),
        ("1700000000:a:b", 1700000000),
        ("carol", None),
        (":carol", None),
        ("17e9:carol", None),
        ("\uff11\uff17:carol", None),  # full-width digits are digits, but not ASCII ones
        ("1" * 13 + ":carol", None),
        ("", None),
    ],
)
def test_rest_api_expiry(username: str, expiry: int | None) -> None:
    assert rest_api_expiry(username) == expiry


def test_rest_api_users_compute_keys_and_prefer_static_ones() -> None:
    static = {"alice": LongTermKey.from_password("alice", "realm", "pw")}
    users = RestApiUsers(b"secret", "realm", static)
    name = "1700000000:carol"
    key = users[name]
    password = rest_api_password(b"secret", name)
    assert key.md5 == long_term_key(name, "realm", password, PasswordAlgorithmId.MD5)
    assert key.sha256 == long_term_key(name, "realm", password, PasswordAlgorithmId.SHA256)
    assert users["alice"] is static["alice"]
    assert users.is_static("alice") and not users.is_static(name)
    assert users.get("carol") is None
    assert list(users) == ["alice"] and len(users) == 1
    with pytest.raises(LocalProtocolError):
        RestApiUsers(b"", "realm")


# --------------------------------------------------------------------------- relay allocator


def test_port_range_allocator_hands_out_the_lowest_free_port() -> None:
    relays = PortRangeAllocator({IPV4: "192.0.2.1"}, range(50001, 50006))
    assert relays.allocate_relay(IPV4) == Address("192.0.2.1", 50001)
    assert relays.allocate_relay(IPV4, even_port=True) == Address("192.0.2.1", 50002)
    assert relays.allocate_relay(IPV4, reserve_next=True) == Address("192.0.2.1", 50004)
    assert relays.in_use == {Address("192.0.2.1", p) for p in (50001, 50002, 50004, 50005)}
    assert relays.allocate_relay(IPV4, even_port=True) is None
    assert relays.allocate_relay(IPV4) == Address("192.0.2.1", 50003)
    assert relays.allocate_relay(IPV4) is None
    assert relays.allocate_relay(IPV6) is None  # no host of that family


def test_port_range_allocator_release() -> None:
    relays = PortRangeAllocator({IPV6: "2001:DB8::1"}, range(50000, 50001))
    address = relays.allocate_relay(IPV6)
    assert address == Address("2001:db8::1", 50000)  # hosts are normalised
    relays.release_relay(address)
    assert relays.in_use == set()
    with pytest.raises(LocalProtocolError):
        relays.release_relay(address)


def test_port_range_allocator_with_a_random_start_stays_in_range() -> None:
    relays = PortRangeAllocator({IPV4: "192.0.2.1"}, range(50000, 50100), rng=random.Random(3))
    ports = {relays.allocate_relay(IPV4, even_port=True) for _ in range(50)}
    assert len(ports) == 50
    assert all(p is not None and p.port % 2 == 0 and 50000 <= p.port < 50100 for p in ports)
    assert relays.allocate_relay(IPV4, even_port=True) is None


@pytest.mark.parametrize(
    "ports", [range(0), range(50000, 50010, 2), range(0, 10), range(65530, 65537)]
)
def test_port_range_allocator_needs_a_plain_range_of_ports(ports: range) -> None:
    with pytest.raises(LocalProtocolError):
        PortRangeAllocator({IPV4: "192.0.2.1"}, ports)


# --------------------------------------------------------------------------- configuration

CREDENTIALS = LongTermCredentials.from_passwords("realm", {"alice": "pw"})


def test_defaults_are_the_rfc_values() -> None:
    config = TurnServerConfig(credentials=CREDENTIALS)
    assert config.default_lifetime == 600
    assert config.max_lifetime == 3600
    assert config.permission_lifetime == 300
    assert config.channel_lifetime == 600
    assert config.channel_rebind_wait == 300
    assert config.reservation_lifetime == 30
    assert config.peer_policy.allow_loopback_peers is False
    assert config.rest_secret is None and "rest_secret" not in repr(config)


@pytest.mark.parametrize(
    "settings",
    [
        {"default_lifetime": 0.0},
        {"default_lifetime": 700.0, "max_lifetime": 600.0},
        {"max_lifetime": 2.0**32},
        {"permission_lifetime": -1.0},
        {"channel_lifetime": 0.0},
        {"channel_rebind_wait": -1.0},
        {"reservation_lifetime": 29.0},
        {"user_quota": 0},
        {"total_quota": 0},
        {"max_permissions": 0},
        {"max_channels": 0},
        {"max_reservations": -1},
        {"max_bytes_per_second": 0},
        {"failure_rate": 0.0},
        {"failure_burst": 0},
        {"failure_table_size": 0},
        {"relay_families": frozenset()},
        {"rest_secret": b""},
        {"nonce_secret": b"short"},
        {"nonce_lifetime": 0.0},
        {"software": "x" * 200},
    ],
    ids=lambda settings: ",".join(settings),
)
def test_bad_settings_raise(settings: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        TurnServerConfig(credentials=CREDENTIALS, **settings)


def test_addresses_in_configuration_use_the_normal_form() -> None:
    config = TurnServerConfig(
        credentials=CREDENTIALS, alternate_server=make_address("2001:DB8::5", 3478)
    )
    assert config.alternate_server == Address("2001:db8::5", 3478)
