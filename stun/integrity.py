"""Credentials and message authentication (RFC 8489 §9, §14.4-§14.7, §18.1).

Keys: a short-term key is the prepared password itself (§9.1.1); a long-term key is MD5 or SHA-256
of ``username:realm:password`` (§9.2.2, §18.5). Strings are prepared with the OpaqueString profile
of RFC 8265 (:func:`opaque_string`); :func:`saslprep` (RFC 4013) is there for RFC 5389 peers and for
the RFC's own test vectors, which were computed with it.

Every comparison of secrets is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import stringprep
import unicodedata
import zlib
from collections.abc import Callable

from .errors import LocalProtocolError

FINGERPRINT_XOR = 0x5354554E

#: The prefix of a NONCE that carries security-feature bits (RFC 8489 §9.2).
NONCE_COOKIE = "obMatJos2"


class PasswordAlgorithmId(enum.IntEnum):
    """Password algorithms (RFC 8489 §18.5); MD5 is the default when none is named."""

    MD5 = 0x0001
    SHA256 = 0x0002


class SecurityFeatures(enum.IntFlag):
    """Security-feature bits of the nonce cookie (RFC 8489 §18.1); bit 0 is the leftmost."""

    NONE = 0
    PASSWORD_ALGORITHMS = 0x800000
    USERNAME_ANONYMITY = 0x400000


# --------------------------------------------------------------------------- string preparation


def _is_disallowed_freeform(ch: str) -> bool:
    category = unicodedata.category(ch)
    # RFC 8264 §9.13: controls, unassigned, surrogates, private use and format (default-ignorable)
    # code points are not in the FreeformClass.
    return category in ("Cc", "Cn", "Cs", "Co", "Cf")


def opaque_string(text: str) -> str:
    """Prepare a password or realm with the OpaqueString profile (RFC 8265 §4.2).

    Non-ASCII spaces become U+0020, the result is NFC-normalised, and code points outside the
    PRECIS FreeformClass (controls, format characters, unassigned, private use) are refused.
    Raises :class:`LocalProtocolError` for a string that cannot be prepared.
    """
    if text.isascii():
        if not text or not all(" " <= ch <= "~" for ch in text):
            raise LocalProtocolError("OpaqueString: empty or contains control characters")
        return text
    mapped = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in text)
    prepared = unicodedata.normalize("NFC", mapped)
    bad = [ch for ch in prepared if _is_disallowed_freeform(ch)]
    if bad or not prepared:
        raise LocalProtocolError(
            f"OpaqueString: disallowed code point U+{ord(bad[0]):04X}"
            if bad
            else "OpaqueString: empty string"
        )
    return prepared


def saslprep(text: str) -> str:
    """Prepare a string with SASLprep (RFC 4013), as RFC 5389 did.

    Kept for RFC 5389 peers and the RFC test vectors; new code uses :func:`opaque_string`.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared:
        return prepared
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for ch in prepared:
        if any(table(ch) for table in prohibited):
            raise LocalProtocolError(f"SASLprep: prohibited code point U+{ord(ch):04X}")
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise LocalProtocolError("SASLprep: bidirectional text must start and end RandALCat")
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise LocalProtocolError("SASLprep: mixes RandALCat and LCat characters")
    return prepared


Preparation = Callable[[str], str]


# --------------------------------------------------------------------------- keys


def short_term_key(password: str, prepare: Preparation = opaque_string) -> bytes:
    """The short-term credential key: the prepared password as UTF-8 (RFC 8489 §9.1.1)."""
    return prepare(password).encode("utf-8")


def long_term_key(
    username: str,
    realm: str,
    password: str,
    algorithm: int = PasswordAlgorithmId.MD5,
    prepare: Preparation = opaque_string,
) -> bytes:
    """The long-term credential key (RFC 8489 §9.2.2, §18.5.1).

    ``hash(username ":" OpaqueString(realm) ":" OpaqueString(password))`` with MD5 (the default,
    16 bytes) or SHA-256 (32 bytes). Servers should store this key, not the password.
    """
    material = f"{username}:{prepare(realm)}:{prepare(password)}".encode()
    if algorithm == PasswordAlgorithmId.MD5:
        return hashlib.md5(material, usedforsecurity=False).digest()
    if algorithm == PasswordAlgorithmId.SHA256:
        return hashlib.sha256(material).digest()
    raise LocalProtocolError(f"unknown password algorithm {algorithm}")


def userhash(username: str, realm: str, prepare: Preparation = opaque_string) -> bytes:
    """USERHASH: SHA-256 of ``username ":" OpaqueString(realm)`` (RFC 8489 §14.4)."""
    return hashlib.sha256(f"{username}:{prepare(realm)}".encode()).digest()


# --------------------------------------------------------------------------- MACs and CRC


_BLOCK_SIZE = 64  # SHA-1's and SHA-256's
_MESSAGE_INTEGRITY = 0x08  # the low byte of MESSAGE-INTEGRITY's type (0x0008; -SHA256 is 0x001C)
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


#: An HMAC key already absorbed (RFC 2104 §2): the inner and outer hashes, copied for each
#: message. Copying them costs less than keying a new HMAC for every message.
PreparedKey = tuple["hashlib._Hash", "hashlib._Hash"]


#: Prepared keys per digest, by key. Emptied when it reaches _MAX_KEYS.
_KEYED: dict[str, dict[bytes, PreparedKey]] = {"sha1": {}, "sha256": {}}
_MAX_KEYS = 1024
_SHA1_KEYED = _KEYED["sha1"]
_SHA256_KEYED = _KEYED["sha256"]


def prepare_key(key: bytes, digest: str = "sha1") -> PreparedKey:
    """``key`` prepared for :func:`keyed_hmac`."""
    new = _HASHES[digest]
    padded = new(key).digest() if len(key) > _BLOCK_SIZE else key
    padded = padded.ljust(_BLOCK_SIZE, b"\x00")
    return new(padded.translate(_INNER_PAD)), new(padded.translate(_OUTER_PAD))


def shared_key(key: bytes, digest: str = "sha1") -> PreparedKey:
    """``key`` prepared, from the cache :func:`hmac_sha1` and :func:`integrity_matches` use, or
    prepared now and kept there: for a holder that signs and checks many messages with one key
    (an ICE agent with its peer's password) and keeps it as long as it needs it. Shared, it is
    prepared and kept once, wherever else in the process the key is in use."""
    cache = _KEYED[digest]
    states = cache.get(key)
    if states is None:
        states = prepare_key(key, digest)
        if len(cache) >= _MAX_KEYS:
            cache.clear()
        cache[key] = states
    return states


def keyed_hmac(states: PreparedKey, data: bytes | bytearray) -> bytes:
    """The HMAC of ``data`` with a prepared key."""
    inner = states[0].copy()
    inner.update(data)
    outer = states[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha1(key: bytes, data: bytes | bytearray) -> bytes:
    """HMAC-SHA1 as MESSAGE-INTEGRITY uses it (RFC 8489 §14.5)."""
    return keyed_hmac(_SHA1_KEYED.get(key) or shared_key(key), data)


def hmac_sha256(key: bytes, data: bytes | bytearray) -> bytes:
    """HMAC-SHA256 as MESSAGE-INTEGRITY-SHA256 uses it (RFC 8489 §14.6)."""
    return keyed_hmac(_SHA256_KEYED.get(key) or shared_key(key, "sha256"), data)


def integrity_matches(key: bytes, raw: bytes, at: int, length_field: bytes) -> bool:
    """Whether the MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 at offset ``at`` of the
    received message ``raw`` (its framing checked) is the HMAC of ``key`` over the bytes before
    it, with the header's length field replaced by ``length_field``, the length that ends at that
    attribute (RFC 8489 §14.5, §14.6). The comparison is constant-time. The one check behind
    :meth:`stun.Message.check_integrity` and the TURN server's lean Refresh."""
    if raw[at + 1] == _MESSAGE_INTEGRITY:
        states = _SHA1_KEYED.get(key) or shared_key(key)
        return sha1_integrity_matches(states, raw, at, length_field)
    covered = raw[:2] + length_field + raw[4:at]
    size = raw[at + 3]  # 16 to 32: the length's high byte is zero
    return hmac.compare_digest(hmac_sha256(key, covered)[:size], raw[at + 4 : at + 4 + size])


def sha1_integrity_matches(states: PreparedKey, raw: bytes, at: int, length_field: bytes) -> bool:
    """:func:`integrity_matches` for a MESSAGE-INTEGRITY (HMAC-SHA1) at ``at``, with the key
    prepared (:func:`shared_key`)."""
    covered = raw[:2] + length_field + raw[4:at]
    return hmac.compare_digest(keyed_hmac(states, covered), raw[at + 4 : at + 24])


def fingerprint(data: bytes | bytearray) -> int:
    """The FINGERPRINT value of the bytes before it: CRC-32 XOR 0x5354554E (RFC 8489 §14.7)."""
    return zlib.crc32(data) ^ FINGERPRINT_XOR


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets without leaking where they differ."""
    return hmac.compare_digest(a, b)


# --------------------------------------------------------------------------- nonce cookie


def nonce_with_features(features: SecurityFeatures, rest: str) -> str:
    """A NONCE that announces ``features`` with the nonce cookie (RFC 8489 §9.2)."""
    encoded = base64.b64encode(int(features).to_bytes(3, "big")).decode("ascii")
    return NONCE_COOKIE + encoded + rest


def nonce_features(nonce: str) -> SecurityFeatures | None:
    """The security features a NONCE announces, or ``None`` if it has no nonce cookie."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return None
    return _features(nonce[len(NONCE_COOKIE) : len(NONCE_COOKIE) + 4])


@functools.lru_cache(maxsize=64)
def _features(encoded: str) -> SecurityFeatures | None:
    """The features of the four base64 characters after the nonce cookie (remembered: a server
    sees the same few over and over)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
    return SecurityFeatures(int.from_bytes(raw, "big") & 0xC00000)
