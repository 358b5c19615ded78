"""Every vector in rfc_vectors/vectors.json: decoded, checked field by field, verified, re-encoded.

RFC 5769 §2.1-2.4, RFC 8489 Appendix B.1 (as published: must be rejected; as corrected by EID 6268)
and the MD5-key B.1 variant. See rfc_vectors/README.md for provenance and the known errata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import stun
from stun import (
    DecodeError,
    Fingerprint,
    Integrity,
    Message,
    MessageIntegrity,
    MessageIntegritySha256,
    PasswordAlgorithm,
    PasswordAlgorithmId,
    SecurityFeatures,
)
from stun.integrity import nonce_features

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS: list[dict[str, Any]] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "vectors.json").read_text(encoding="utf-8")
)["vectors"]
PASSING = [v for v in VECTORS if v["expected_result"] == "pass"]
ERRATA = [v for v in VECTORS if v["expected_result"] == "known-erratum"]

CLASSES = {
    "request": stun.MessageClass.REQUEST,
    "indication": stun.MessageClass.INDICATION,
    "success response": stun.MessageClass.SUCCESS_RESPONSE,
    "error response": stun.MessageClass.ERROR_RESPONSE,
}
SECURITY = (MessageIntegrity, MessageIntegritySha256, Fingerprint)


def by_name(vectors: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


def raw(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["message_hex"])


def decoded(vector: dict[str, Any]) -> Message:
    return Message.decode(raw(vector))


def published_key(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["credentials"]["hmac_key_hex"])


def derived_key(vector: dict[str, Any], message: Message) -> bytes:
    """The key as an application derives it from the credentials (RFC 8489 §9.1.1, §9.2.2).

    RFC 5389-era vectors were prepared with SASLprep (see the README's pitfalls).
    """
    credentials = vector["credentials"]
    if credentials["mechanism"] == "short-term":
        return stun.short_term_key(credentials["password"], prepare=stun.saslprep)
    chosen = message.get(PasswordAlgorithm)
    algorithm = PasswordAlgorithmId.MD5 if chosen is None else chosen.algorithm
    return stun.long_term_key(
        credentials["username"],
        credentials["realm"],
        credentials["password"],
        algorithm=algorithm,
        prepare=stun.saslprep,
    )


def padding_byte(vector: dict[str, Any]) -> bytes:
    seen = {
        pad
        for attribute in vector["expected"]["attributes"]
        for pad in bytes.fromhex(attribute["padding_hex"])
    }
    assert len(seen) <= 1, "a vector mixing padding bytes cannot be re-encoded with one"
    return bytes(seen) or b"\x00"


def test_the_data_holds_every_vector_we_expect() -> None:
    assert len(PASSING) == 6
    assert [v["name"] for v in ERRATA] == ["rfc8489-B.1-as-published"]


@by_name(PASSING)
def test_header(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    message = decoded(vector)
    assert message.method == int(expected["method_value"], 16)
    assert message.message_class is CLASSES[expected["class"]]
    assert stun.message.message_type(message.method, message.message_class) == int(
        expected["message_type"], 16
    )
    assert message.transaction_id.hex() == expected["transaction_id_hex"]
    assert message.cookie == int(expected["magic_cookie"], 16)
    assert not message.is_classic
    assert len(raw(vector)) == vector["message_size"] == 20 + expected["message_length"]
    assert message.unknown_required == ()
    assert message.ignored_count == 0


@by_name(PASSING)
def test_attributes_in_wire_order_with_their_values(vector: dict[str, Any]) -> None:
    message = decoded(vector)
    expected = vector["expected"]["attributes"]
    assert [a.attr_type for a in message.attributes] == [int(e["type"], 16) for e in expected]
    assert [type(a).NAME for a in message.attributes] == [e["name"] for e in expected]
    for attribute, entry in zip(message.attributes, expected, strict=True):
        value = bytes.fromhex(entry["value_hex"])
        assert len(value) == entry["length"]
        if not isinstance(attribute, SECURITY):
            assert attribute.encode_value(message.transaction_id) == value


def check_decoded_fields(
    attribute: stun.Attribute, fields: dict[str, Any], vector: dict[str, Any]
) -> None:
    credentials = vector["credentials"]
    match attribute:
        case stun.Software() | stun.Username() | stun.Realm():
            assert attribute.value == fields["text"]
        case stun.Nonce():
            assert attribute.value == fields["text"]
            features = nonce_features(attribute.value)
            if "nonce_cookie" in fields:
                assert attribute.value.startswith(fields["nonce_cookie"])
                bits = int(fields["security_feature_bits_value"], 16)
                assert features == SecurityFeatures(bits & 0xC00000)
            else:
                assert features is None
        case stun.Priority():
            assert attribute.value == fields["priority"]
        case stun.IceControlled() | stun.IceControlling():
            assert attribute.tie_breaker == fields["tie_breaker_int"]
            assert attribute.tie_breaker == int(fields["tie_breaker"], 16)
        case stun.XorMappedAddress():
            host, port = attribute.address
            assert (host, port) == (fields["address"], fields["port"])
            assert fields["family_value"] == (2 if ":" in host else 1)
        case stun.Userhash():
            assert fields["input_utf8"] == f"{credentials['username']}:{credentials['realm']}"
            expected = stun.userhash(
                credentials["username"], credentials["realm"], prepare=stun.saslprep
            )
            assert attribute.value == expected
            assert stun.userhash(credentials["username"], credentials["realm"]) == expected
        case stun.PasswordAlgorithm():
            assert attribute.algorithm == fields["algorithm_value"]
            assert len(attribute.parameters) == fields["parameters_length"]
        case stun.Fingerprint():
            assert attribute.crc == int(fields["crc32_xor_5354554e"], 16)
        case stun.MessageIntegrity():
            assert fields["algorithm"] == "HMAC-SHA1"
        case stun.MessageIntegritySha256():
            assert fields["algorithm"] == "HMAC-SHA256"
        case _:
            pytest.fail(f"no decoded-field check for {attribute!r}")


@by_name(PASSING)
def test_decoded_fields_match(vector: dict[str, Any]) -> None:
    message = decoded(vector)
    for attribute, entry in zip(message.attributes, vector["expected"]["attributes"], strict=True):
        check_decoded_fields(attribute, entry["decoded"], vector)


@by_name(PASSING)
def test_integrity_verifies_with_the_published_and_the_derived_key(
    vector: dict[str, Any],
) -> None:
    message = decoded(vector)
    assert message.has_integrity
    key = derived_key(vector, message)
    assert key == published_key(vector)
    assert message.check_integrity(key)


@by_name(PASSING)
def test_fingerprint(vector: dict[str, Any]) -> None:
    message = decoded(vector)
    assert message.check_fingerprint() is message.has(Fingerprint)


@by_name(PASSING)
def test_wrong_key_fails(vector: dict[str, Any]) -> None:
    message = decoded(vector)
    key = published_key(vector)
    assert not message.check_integrity(key[:-1] + bytes([key[-1] ^ 1]))
    assert not message.check_integrity(b"")


@by_name(PASSING)
def test_flipped_byte_fails_the_checks(vector: dict[str, Any]) -> None:
    data = bytearray(raw(vector))
    data[19] ^= 0x01  # the transaction ID, covered by both HMAC and CRC
    message = Message.decode(bytes(data))
    assert not message.check_integrity(published_key(vector))
    if message.has(Fingerprint):
        assert not message.check_fingerprint()


@by_name(PASSING)
def test_flipped_mac_fails_integrity(vector: dict[str, Any]) -> None:
    data = bytearray(raw(vector))
    fingerprint_size = 8 if decoded(vector).has(Fingerprint) else 0
    data[-1 - fingerprint_size] ^= 0x01  # the last byte of the last integrity attribute
    message = Message.decode(bytes(data))
    assert not message.check_integrity(published_key(vector))


@by_name([v for v in PASSING if decoded(v).has(Fingerprint)])
def test_flipped_crc_fails_only_the_fingerprint(vector: dict[str, Any]) -> None:
    data = bytearray(raw(vector))
    data[-1] ^= 0x01
    message = Message.decode(bytes(data))
    assert message.check_integrity(published_key(vector))
    assert not message.check_fingerprint()


def has_padding(vector: dict[str, Any]) -> bool:
    return any(entry["padding_hex"] for entry in vector["expected"]["attributes"])


@by_name([v for v in PASSING if has_padding(v)])
def test_flipped_padding_changes_no_value_but_fails_the_checks(vector: dict[str, Any]) -> None:
    data = bytearray(raw(vector))
    offset = 20
    for entry in vector["expected"]["attributes"]:
        offset += 4 + entry["length"]
        if entry["padding_hex"]:
            data[offset] ^= 0x80
            break
    message = Message.decode(bytes(data))
    assert message == decoded(vector)
    assert not message.check_integrity(published_key(vector))
    if message.has(Fingerprint):
        assert not message.check_fingerprint()


@by_name(PASSING)
def test_reencodes_byte_for_byte(vector: dict[str, Any]) -> None:
    message = decoded(vector)
    has_sha1 = message.has(MessageIntegrity)
    sha256 = message.get(MessageIntegritySha256)
    if has_sha1 and sha256 is not None:
        integrity = Integrity.BOTH
    elif sha256 is not None:
        integrity = Integrity.SHA256
    else:
        integrity = Integrity.SHA1
    rebuilt = Message(
        message.method, message.message_class, message.transaction_id, message.content_attributes
    )
    encoded = rebuilt.encode(
        key=derived_key(vector, message),
        integrity=integrity,
        sha256_length=32 if sha256 is None else len(sha256.value),
        fingerprint=message.has(Fingerprint),
        padding=padding_byte(vector),
    )
    assert encoded.hex() == vector["message_hex"]


def test_b1_as_published_fails_with_a_length_error() -> None:
    (vector,) = ERRATA
    assert "header.length" in vector["expected_failures"]
    with pytest.raises(DecodeError, match="length"):
        Message.decode(raw(vector))


def test_b1_password_needs_saslprep_not_opaque_string() -> None:
    """The RFC's 'TheMatrIX' is SASLprep's output; strict OpaqueString refuses U+00AD."""
    vector = next(v for v in PASSING if v["name"] == "rfc8489-B.1-errata-6268-corrected")
    password = vector["credentials"]["password"]
    assert stun.saslprep(password) == vector["credentials"]["password_prepared"] == "TheMatrIX"
    with pytest.raises(stun.LocalProtocolError):
        stun.opaque_string(password)
