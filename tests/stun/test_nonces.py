"""Stateless nonces (stun.nonces): binding to the client and the time, expiry, forgery, features."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stun import Address, LocalProtocolError, SecurityFeatures
from stun.integrity import NONCE_COOKIE, nonce_features
from stun.nonces import (
    DEFAULT_NONCE_LIFETIME,
    NONCE_LENGTH,
    NonceIssuer,
    NonceStatus,
)

CLIENT = Address("198.51.100.7", 40000)
SECRET = bytes(range(32))


def issuer(**kwargs: object) -> NonceIssuer:
    return NonceIssuer(secret=SECRET, **kwargs)  # type: ignore[arg-type]


def test_a_fresh_nonce_is_valid_for_its_client_until_the_lifetime_ends() -> None:
    nonces = issuer(lifetime=60.0)
    nonce = nonces.issue(CLIENT, 100.0)
    assert nonces.check(nonce, CLIENT, 100.0) is NonceStatus.VALID
    assert nonces.check(nonce, CLIENT, 159.999) is NonceStatus.VALID
    assert nonces.check(nonce, CLIENT, 160.0) is NonceStatus.STALE
    assert nonces.check(nonce, CLIENT, 10_000.0) is NonceStatus.STALE


def test_a_nonce_dated_in_the_future_is_stale() -> None:
    nonces = issuer()
    nonce = nonces.issue(CLIENT, 100.0)
    assert nonces.check(nonce, CLIENT, 99.0) is NonceStatus.STALE


def test_the_default_lifetime_is_ten_minutes() -> None:
    nonces = NonceIssuer()
    assert nonces.lifetime == DEFAULT_NONCE_LIFETIME == 600.0
    nonce = nonces.issue(CLIENT, 0.0)
    assert nonces.check(nonce, CLIENT, 599.0) is NonceStatus.VALID
    assert nonces.check(nonce, CLIENT, 600.0) is NonceStatus.STALE


@pytest.mark.parametrize(
    "other",
    [Address("198.51.100.8", 40000), Address("198.51.100.7", 40001), Address("2001:db8::7", 40000)],
)
def test_a_nonce_is_bound_to_the_address_it_was_issued_to(other: Address) -> None:
    nonces = issuer()
    nonce = nonces.issue(CLIENT, 5.0)
    assert nonces.check(nonce, other, 5.0) is NonceStatus.INVALID
    # RFC 8489 §9.2.4: never the same nonce for two source addresses.
    assert nonces.issue(other, 5.0) != nonce


def test_nonces_are_printable_ascii_under_128_characters_without_quotes() -> None:
    nonces = issuer(features=SecurityFeatures.PASSWORD_ALGORITHMS)
    for now in (0.0, 1.5, 3599.999, 1e9):
        nonce = nonces.issue(Address("2001:db8::1", 65535), now)
        assert len(nonce) == NONCE_LENGTH < 128
        assert set(nonce) <= set(string.ascii_letters + string.digits + "-_")
        assert nonce.startswith(NONCE_COOKIE)


@pytest.mark.parametrize(
    "features",
    [
        SecurityFeatures.NONE,
        SecurityFeatures.PASSWORD_ALGORITHMS,
        SecurityFeatures.PASSWORD_ALGORITHMS | SecurityFeatures.USERNAME_ANONYMITY,
    ],
)
def test_the_nonce_cookie_announces_the_features(features: SecurityFeatures) -> None:
    nonce = issuer(features=features).issue(CLIENT, 0.0)
    assert nonce_features(nonce) == features


def test_editing_the_feature_bits_invalidates_the_nonce() -> None:
    """The bid-down attack of RFC 8489 §9.2.1: the cookie is covered by the MAC."""
    nonces = issuer(features=SecurityFeatures.PASSWORD_ALGORITHMS)
    nonce = nonces.issue(CLIENT, 0.0)
    stripped = nonce.replace(NONCE_COOKIE + "gAAA", NONCE_COOKIE + "AAAA", 1)
    assert stripped != nonce
    assert nonces.check(stripped, CLIENT, 0.0) is NonceStatus.INVALID


def test_every_single_character_change_invalidates_the_nonce() -> None:
    nonces = issuer()
    nonce = nonces.issue(CLIENT, 42.0)
    for index, char in enumerate(nonce):
        for replacement in ("A", "z", "-", "+", "=", "é"):
            if replacement != char:
                edited = nonce[:index] + replacement + nonce[index + 1 :]
                assert nonces.check(edited, CLIENT, 42.0) is NonceStatus.INVALID, edited


@pytest.mark.parametrize(
    "garbage",
    ["", "nonce", NONCE_COOKIE, NONCE_COOKIE + "AAAA", "x" * NONCE_LENGTH, "é" * NONCE_LENGTH],
)
def test_garbage_is_invalid(garbage: str) -> None:
    assert issuer().check(garbage, CLIENT, 0.0) is NonceStatus.INVALID


def test_truncated_or_extended_nonces_are_invalid() -> None:
    nonces = issuer()
    nonce = nonces.issue(CLIENT, 0.0)
    assert nonces.check(nonce[:-1], CLIENT, 0.0) is NonceStatus.INVALID
    assert nonces.check(nonce + "A", CLIENT, 0.0) is NonceStatus.INVALID


def test_another_secret_does_not_accept_our_nonces() -> None:
    nonce = issuer().issue(CLIENT, 0.0)
    other = NonceIssuer(secret=bytes(32))
    assert other.check(nonce, CLIENT, 0.0) is NonceStatus.INVALID


def test_nothing_is_remembered_a_fresh_issuer_with_the_secret_accepts_the_nonce() -> None:
    """Statelessness: checking needs only the secret, so a flood of challenges stores nothing
    and servers sharing the secret accept each other's nonces (architecture.md §6)."""
    nonce = issuer().issue(CLIENT, 10.0)
    assert issuer().check(nonce, CLIENT, 20.0) is NonceStatus.VALID


def test_the_secret_comes_from_the_random_source_when_not_given() -> None:
    first = NonceIssuer(rng=random.Random(3)).issue(CLIENT, 0.0)
    again = NonceIssuer(rng=random.Random(3)).issue(CLIENT, 0.0)
    other = NonceIssuer(rng=random.Random(4)).issue(CLIENT, 0.0)
    assert first == again != other


def test_the_same_client_at_the_same_instant_may_get_the_same_nonce() -> None:
    nonces = issuer()
    assert nonces.issue(CLIENT, 1.0) == nonces.issue(CLIENT, 1.0)
    assert nonces.issue(CLIENT, 1.0) != nonces.issue(CLIENT, 1.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": bytes(15)}, "secret"),
        ({"lifetime": 0.0}, "lifetime"),
        ({"lifetime": -1.0}, "lifetime"),
        ({"lifetime": 3600.5}, "lifetime"),
    ],
)
def test_unsound_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        NonceIssuer(**kwargs)  # type: ignore[arg-type]


def test_a_time_that_cannot_be_stamped_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        issuer().issue(CLIENT, -1.0)


@given(st.text(max_size=80))
def test_checking_any_text_never_raises_and_never_validates(text: str) -> None:
    assert issuer().check(text, CLIENT, 0.0) is NonceStatus.INVALID
