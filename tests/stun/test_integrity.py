"""Unit tests of stun.integrity: string preparation, keys, MACs, CRC, nonce cookie (RFC 8489 §9)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from stun import (
    LocalProtocolError,
    PasswordAlgorithmId,
    SecurityFeatures,
    long_term_key,
    opaque_string,
    saslprep,
    short_term_key,
    userhash,
)
from stun.integrity import (
    NONCE_COOKIE,
    constant_time_equal,
    fingerprint,
    hmac_sha1,
    hmac_sha256,
    nonce_features,
    nonce_with_features,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTANTS: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "constants.json").read_text(encoding="utf-8")
)

# RFC 5769 §2.4 / RFC 8489 B.1 credentials: soft hyphen, feminine ordinal, roman numeral 9.
MATRIX_PASSWORD = "The\u00adM\u00aatr\u2168"
MATRIX_USER = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"


# ------------------------------------------------------------------------ OpaqueString vs SASLprep


@pytest.mark.parametrize("text", ["VOkJxbRl1RmTxUk/WvJxBt", "a b", "~!@#$%^&*()", "x"])
def test_ascii_is_the_identity_for_both(text: str) -> None:
    assert opaque_string(text) == text
    assert saslprep(text) == text


@pytest.mark.parametrize("text", ["", "a\x07b", "tab\there", "del\x7f"])
def test_opaque_string_refuses_empty_and_controls(text: str) -> None:
    with pytest.raises(LocalProtocolError, match="OpaqueString"):
        opaque_string(text)


def test_opaque_string_normalises_to_nfc() -> None:
    assert opaque_string("e\u0301") == "\u00e9"
    assert opaque_string("\u00e9") == "\u00e9"


@pytest.mark.parametrize("space", ["\u00a0", "\u2002", "\u3000", "\u202f"])
def test_non_ascii_spaces_become_ascii_spaces(space: str) -> None:
    assert opaque_string(f"a{space}b") == "a b"
    assert saslprep(f"a{space}b") == "a b"


@pytest.mark.parametrize("code_point", ["\u00ad", "\u200b", "\ue000", "\u0378"])
def test_opaque_string_refuses_disallowed_code_points(code_point: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"U\\+{ord(code_point):04X}"):
        opaque_string(f"pass{code_point}word")


def test_opaque_string_keeps_compatibility_characters_saslprep_folds() -> None:
    """NFC (OpaqueString) versus NFKC (SASLprep): ª and Ⅸ survive one and not the other."""
    assert opaque_string("M\u00aatr\u2168") == "M\u00aatr\u2168"
    assert saslprep("M\u00aatr\u2168") == "MatrIX"
    assert saslprep("\ufb01") == "fi"


def test_saslprep_of_the_rfc_password() -> None:
    assert saslprep(MATRIX_PASSWORD) == "TheMatrIX"
    assert saslprep("a\u00adb") == "ab"  # soft hyphen maps to nothing (RFC 3454 B.1)
    with pytest.raises(LocalProtocolError):
        opaque_string(MATRIX_PASSWORD)


@pytest.mark.parametrize("text", ["a\x07b", "\ue000", "\u0627a\u0627", "\u0627a"])
def test_saslprep_prohibitions_and_bidi(text: str) -> None:
    with pytest.raises(LocalProtocolError, match="SASLprep"):
        saslprep(text)


def test_saslprep_allows_pure_right_to_left() -> None:
    assert saslprep("\u0627\u0628") == "\u0627\u0628"


# --------------------------------------------------------------------------- keys


def test_long_term_key_example_from_the_constants() -> None:
    example = CONSTANTS["credentials"]["long_term_key_default"]["example"]
    username, realm, password = example["input"].split(":")
    expected = bytes.fromhex(example["key"].removeprefix("0x"))
    assert long_term_key(username, realm, password) == expected
    assert long_term_key(username, realm, password, PasswordAlgorithmId.MD5) == expected
    assert len(expected) == 16


def test_long_term_key_sha256() -> None:
    key = long_term_key("user", "realm", "pass", PasswordAlgorithmId.SHA256)
    assert key == hashlib.sha256(b"user:realm:pass").digest()
    with pytest.raises(LocalProtocolError, match="unknown password algorithm"):
        long_term_key("user", "realm", "pass", 3)


def test_long_term_key_prepares_realm_and_password() -> None:
    assert long_term_key("u", "r\u00a0x", "p\u3000w") == hashlib.md5(b"u:r x:p w").digest()
    matrix = long_term_key(MATRIX_USER, "example.org", MATRIX_PASSWORD, prepare=saslprep)
    assert matrix.hex() == "e8ca7ad59d5eb0518e312911d2dab2a9"  # RFC 5769 §2.4
    with pytest.raises(LocalProtocolError):
        long_term_key(MATRIX_USER, "example.org", MATRIX_PASSWORD)


def test_short_term_key() -> None:
    assert short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    assert short_term_key("e\u0301") == "\u00e9".encode()
    assert short_term_key(MATRIX_PASSWORD, prepare=saslprep) == b"TheMatrIX"


def test_userhash() -> None:
    expected = hashlib.sha256(f"{MATRIX_USER}:example.org".encode()).digest()
    assert userhash(MATRIX_USER, "example.org") == expected
    assert expected.hex().startswith("4a3cf38f")  # RFC 8489 B.1's USERHASH


# --------------------------------------------------------------------------- MACs and CRC


def test_hmac_sha1_rfc2202_case_2() -> None:
    mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"


def test_hmac_sha256_rfc4231_case_2() -> None:
    mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


LONG_KEY_DATA = b"Test Using Larger Than Block-Size Key - Hash Key First"


def test_hmac_keys_longer_than_a_block_are_hashed_first() -> None:
    """RFC 2202 case 6 (SHA-1, 80-byte key) and RFC 4231 case 6 (SHA-256, 131-byte key)."""
    assert hmac_sha1(b"\xaa" * 80, LONG_KEY_DATA).hex() == (
        "aa4ae5e15272d00e95705637ce8a3b55ed402112"
    )
    assert hmac_sha256(b"\xaa" * 131, LONG_KEY_DATA).hex() == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    )


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 200])
def test_hmac_matches_the_standard_library(size: int) -> None:
    key = bytes(i % 256 for i in range(size))
    data = bytearray(b"stun" * size)
    assert hmac_sha1(key, data) == hmac.new(key, data, "sha1").digest()
    assert hmac_sha256(key, data) == hmac.new(key, data, "sha256").digest()


def test_cached_keys_do_not_leak_between_calls() -> None:
    first = hmac_sha1(b"key-a", b"data")
    assert hmac_sha1(b"key-b", b"data") != first
    assert hmac_sha1(b"key-a", b"data") == first
    assert hmac_sha1(b"key-a", b"data2") != first


def test_fingerprint_is_crc32_xor_stun() -> None:
    assert fingerprint(b"") == 0x5354554E
    assert fingerprint(b"123456789") == 0xCBF43926 ^ 0x5354554E  # the CRC-32 check value


def test_constant_time_equal() -> None:
    assert constant_time_equal(b"abc", b"abc")
    assert not constant_time_equal(b"abc", b"abd")
    assert not constant_time_equal(b"abc", b"ab")


# --------------------------------------------------------------------------- nonce cookie


@pytest.mark.parametrize(
    "features",
    [
        SecurityFeatures.NONE,
        SecurityFeatures.PASSWORD_ALGORITHMS,
        SecurityFeatures.USERNAME_ANONYMITY,
        SecurityFeatures.PASSWORD_ALGORITHMS | SecurityFeatures.USERNAME_ANONYMITY,
    ],
)
def test_nonce_cookie_round_trip(features: SecurityFeatures) -> None:
    nonce = nonce_with_features(features, "f//499k954d6OL34oL9FSTvy64sA")
    assert nonce.startswith(NONCE_COOKIE)
    assert len(nonce) == 13 + 28
    assert nonce.endswith("f//499k954d6OL34oL9FSTvy64sA")
    assert nonce_features(nonce) == features


def test_nonce_cookie_bits_are_msb_first() -> None:
    both = SecurityFeatures.PASSWORD_ALGORITHMS | SecurityFeatures.USERNAME_ANONYMITY
    assert nonce_with_features(both, "") == "obMatJos2wAAA"
    assert nonce_with_features(SecurityFeatures.PASSWORD_ALGORITHMS, "") == "obMatJos2gAAA"
    assert {b["mask_in_24_bit_set"] for b in CONSTANTS["security_features"]["bits"]} == {
        f"0x{SecurityFeatures.PASSWORD_ALGORITHMS.value:06X}",
        f"0x{SecurityFeatures.USERNAME_ANONYMITY.value:06X}",
    }


def test_nonce_features_ignores_unknown_bits() -> None:
    assert nonce_features("obMatJos2AAACrest") == SecurityFeatures.NONE  # RFC 8489 B.1's nonce
    assert nonce_features("obMatJos2////") == (
        SecurityFeatures.PASSWORD_ALGORITHMS | SecurityFeatures.USERNAME_ANONYMITY
    )


@pytest.mark.parametrize(
    "nonce", ["", "f//499k954d6OL34oL9FSTvy64sA", "obMatJos2AAA", "obMatJos2!!!!x"]
)
def test_nonce_without_a_valid_cookie(nonce: str) -> None:
    assert nonce_features(nonce) is None
