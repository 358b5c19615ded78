"""Unit tests of stun.message: header, type packing, attribute walk, integrity (RFC 8489 §5)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from stun import (
    MAGIC_COOKIE,
    Attribute,
    ClassicStunError,
    DecodeError,
    ErrorCode,
    Fingerprint,
    Integrity,
    LocalProtocolError,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Padding,
    Priority,
    ResponsePort,
    Software,
    UnknownAttribute,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    make_address,
)
from stun.integrity import fingerprint, hmac_sha1
from stun.message import message_type, new_transaction_id, split_message_type

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTANTS: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "constants.json").read_text(encoding="utf-8")
)
CLASS_NAMES = {
    "request": MessageClass.REQUEST,
    "indication": MessageClass.INDICATION,
    "success response": MessageClass.SUCCESS_RESPONSE,
    "error response": MessageClass.ERROR_RESPONSE,
}
TID = bytes(range(1, 13))
KEY = b"swordfish"


def header(type_field: int, length: int, cookie: int = MAGIC_COOKIE, tid: bytes = TID) -> bytes:
    return struct.pack("!HHI12s", type_field, length, cookie, tid)


def tlv(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def message_bytes(*attributes: bytes, type_field: int = 0x0001) -> bytes:
    body = b"".join(attributes)
    return header(type_field, len(body)) + body


def with_fingerprint(data: bytes) -> bytes:
    """Append a correct FINGERPRINT to hand-built bytes."""
    patched = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:]
    return patched + tlv(0x8028, struct.pack("!I", fingerprint(patched)))


def request(*attributes: Attribute) -> Message:
    return Message(Method.BINDING, MessageClass.REQUEST, TID, attributes)


# --------------------------------------------------------------------------- message type


METHOD_CLASS_TYPES = [
    (method["int"], CLASS_NAMES[class_name], int(encoded, 16))
    for method in CONSTANTS["methods"]
    for class_name, encoded in method["message_types"].items()
]


def test_constants_cover_every_method_we_define() -> None:
    assert {Method(m) for m, _, _ in METHOD_CLASS_TYPES if m in Method._value2member_map_} == set(
        Method
    )


@pytest.mark.parametrize(("method", "message_class", "encoded"), METHOD_CLASS_TYPES)
def test_message_type_packing(method: int, message_class: MessageClass, encoded: int) -> None:
    assert message_type(method, message_class) == encoded
    assert split_message_type(encoded) == (method, message_class)
    data = Message(method, message_class, TID).encode()
    assert data[:2] == encoded.to_bytes(2, "big")
    decoded = Message.decode(data)
    assert (decoded.method, decoded.message_class) == (method, message_class)


def test_every_method_and_class_round_trips() -> None:
    for method in Method:
        for message_class in MessageClass:
            decoded = Message.decode(Message(method, message_class, TID).encode())
            assert decoded.method is method
            assert decoded.message_class is message_class


def test_unregistered_method_decodes_as_an_int() -> None:
    decoded = Message.decode(Message(0xABC, MessageClass.INDICATION, TID).encode())
    assert decoded.method == 0xABC
    assert "0xabc" in repr(decoded)


def test_constructor_checks_transaction_id_and_method() -> None:
    with pytest.raises(LocalProtocolError):
        Message(Method.BINDING, MessageClass.REQUEST, bytes(11))
    with pytest.raises(LocalProtocolError):
        Message(0x1000, MessageClass.REQUEST, TID)


def test_new_transaction_id_is_12_random_bytes() -> None:
    first, second = new_transaction_id(), new_transaction_id()
    assert len(first) == len(second) == 12
    assert first != second


# --------------------------------------------------------------------------- header errors


def test_short_message() -> None:
    with pytest.raises(DecodeError, match="too short"):
        Message.decode(header(0x0001, 0)[:19])


def test_leading_bits_must_be_zero() -> None:
    for type_field in (0x4001, 0x8001, 0xC001):
        with pytest.raises(DecodeError, match="leading bits"):
            Message.decode(header(type_field, 0))


@pytest.mark.parametrize("extra", [-4, 4])
def test_length_field_must_match_the_bytes(extra: int) -> None:
    data = message_bytes(tlv(0x8022, b"abcd"))
    wrong = data[:2] + struct.pack("!H", len(data) - 20 + extra) + data[4:]
    with pytest.raises(DecodeError, match="length"):
        Message.decode(wrong)
    with pytest.raises(DecodeError, match="length"):
        Message.decode(data + b"\x00" * 4)


def test_length_must_be_a_multiple_of_four() -> None:
    with pytest.raises(DecodeError, match="multiple of 4"):
        Message.decode(header(0x0001, 2) + b"\x00\x00")


def test_classic_message_is_refused_unless_allowed() -> None:
    classic = header(0x0001, 8, cookie=0x01020304) + tlv(0x8022, b"old!")
    with pytest.raises(ClassicStunError):
        Message.decode(classic)
    assert issubclass(ClassicStunError, DecodeError)
    decoded = Message.decode(classic, allow_classic=True)
    assert decoded.is_classic
    assert decoded.cookie == 0x01020304
    assert decoded.transaction_id == TID
    assert decoded.get(Software) == Software("old!")
    response = decoded.success_response()
    assert response.is_classic
    assert response.encode()[4:20] == classic[4:20]
    assert not Message.decode(request().encode()).is_classic


def test_decode_accepts_any_bytes_like() -> None:
    data = request(Software("x")).encode()
    assert Message.decode(bytearray(data)) == Message.decode(memoryview(data)) == request(
        Software("x")
    )


def test_attribute_length_overrunning_the_message() -> None:
    with pytest.raises(DecodeError, match="runs past the end"):
        Message.decode(message_bytes(struct.pack("!HH", 0x8022, 5) + b"abcd"))


def test_attribute_value_errors_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="PRIORITY"):
        Message.decode(message_bytes(tlv(0x0024, b"\x00\x00")))


# --------------------------------------------------------------------------- attribute walk rules


def test_attributes_after_message_integrity_are_ignored() -> None:
    protected = request(Username("a:b")).encode(key=KEY)
    after = tlv(0x8022, b"late") + tlv(0x0024, b"\x00\x00\x00\x01")
    data = protected[:2] + struct.pack("!H", len(protected) - 20 + len(after)) + protected[4:]
    decoded = Message.decode(with_fingerprint(data + after))
    assert decoded.ignored_count == 2
    assert not decoded.has(Software)
    assert not decoded.has(Priority)
    assert [type(a) for a in decoded.attributes] == [Username, MessageIntegrity, Fingerprint]
    assert decoded.check_integrity(KEY)
    assert decoded.check_fingerprint()


def test_sha256_and_fingerprint_after_message_integrity_are_kept() -> None:
    data = request(Username("a:b")).encode(key=KEY, integrity=Integrity.BOTH, fingerprint=True)
    decoded = Message.decode(data)
    assert decoded.ignored_count == 0
    assert [type(a) for a in decoded.attributes] == [
        Username, MessageIntegrity, MessageIntegritySha256, Fingerprint,
    ]


def test_second_sha256_is_ignored() -> None:
    data = request().encode(key=KEY, integrity=Integrity.SHA256)
    extra = tlv(0x001C, bytes(32))
    decoded = Message.decode(data[:2] + struct.pack("!H", len(data) - 20 + 36) + data[4:] + extra)
    assert decoded.ignored_count == 1
    assert len(decoded.get_all(MessageIntegritySha256)) == 1
    assert decoded.check_integrity(KEY)


def test_attribute_after_fingerprint_is_an_error() -> None:
    data = with_fingerprint(message_bytes(tlv(0x8022, b"abcd")))
    tail = tlv(0x8022, b"more")
    bad = data[:2] + struct.pack("!H", len(data) - 20 + len(tail)) + data[4:] + tail
    with pytest.raises(DecodeError, match="after FINGERPRINT"):
        Message.decode(bad)


def test_unknown_comprehension_required_attributes_are_reported() -> None:
    data = message_bytes(tlv(0x0030, b"req1"), tlv(0x8030, b"opt"), tlv(0x7FFF, b""))
    decoded = Message.decode(data)
    assert decoded.unknown_required == (0x0030, 0x7FFF)
    assert decoded.attributes == [
        UnknownAttribute(0x0030, b"req1"),
        UnknownAttribute(0x8030, b"opt"),
        UnknownAttribute(0x7FFF, b""),
    ]
    response = decoded.error_response(420)
    assert response.message_class is MessageClass.ERROR_RESPONSE
    assert response.transaction_id == TID
    assert response.error_code == ErrorCode(420, "Unknown Attribute")
    assert response.get(UnknownAttributes) == UnknownAttributes((0x0030, 0x7FFF))
    round_trip = Message.decode(response.encode())
    assert round_trip.get(UnknownAttributes) == UnknownAttributes((0x0030, 0x7FFF))


def test_unknown_optional_attributes_are_kept_and_not_reported() -> None:
    decoded = Message.decode(message_bytes(tlv(0xC001, b"\x01\x02\x03")))
    assert decoded.unknown_required == ()
    assert decoded.attributes == [UnknownAttribute(0xC001, b"\x01\x02\x03")]
    assert decoded.error_response(420).get(UnknownAttributes) is None
    rebuilt = Message(decoded.method, decoded.message_class, TID, decoded.attributes)
    assert rebuilt.encode() == message_bytes(tlv(0xC001, b"\x01\x02\x03"))


def test_error_response_420_keeps_an_explicit_unknown_attributes() -> None:
    decoded = Message.decode(message_bytes(tlv(0x0030, b"")))
    response = decoded.error_response(420, attributes=[UnknownAttributes((0x0031,))])
    assert response.get_all(UnknownAttributes) == [UnknownAttributes((0x0031,))]


def test_responses_copy_method_and_transaction_id() -> None:
    allocate = Message(Method.ALLOCATE, MessageClass.REQUEST, TID)
    success = allocate.success_response([Software("s")])
    assert (success.method, success.message_class, success.transaction_id) == (
        Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, TID,
    )
    assert success.attributes == [Software("s")]
    error = allocate.error_response(438, attributes=[Software("s")])
    assert error.attributes == [ErrorCode(438, "Stale Nonce"), Software("s")]
    assert allocate.error_response(499).error_code == ErrorCode(499, "")
    assert allocate.error_response(400, "nope").error_code == ErrorCode(400, "nope")
    assert allocate.error_code is None


def test_accessors() -> None:
    message = request(Software("a"), Priority(5), Software("b"))
    assert message.get(Software) == Software("a")
    assert message.get_all(Software) == [Software("a"), Software("b")]
    assert message.has(Priority)
    assert message.get(Username) is None
    decoded = Message.decode(message.encode(key=KEY, fingerprint=True))
    assert decoded.content_attributes == message.attributes
    assert decoded != message  # it also holds MESSAGE-INTEGRITY and FINGERPRINT


# --------------------------------------------------------------------------- encode


@pytest.mark.parametrize(
    "attribute",
    [
        MessageIntegrity(bytes(20)),
        MessageIntegritySha256(bytes(32)),
        Fingerprint(0),
        UnknownAttribute(0x0008, bytes(20)),
    ],
)
def test_encode_refuses_security_attributes_in_the_list(attribute: Attribute) -> None:
    with pytest.raises(LocalProtocolError, match="added by encode"):
        request(attribute).encode()


def test_padding_argument() -> None:
    data = request(Software("abcde")).encode(padding=b"\xff")
    assert data.endswith(b"abcde\xff\xff\xff")
    with pytest.raises(LocalProtocolError):
        request().encode(padding=b"")


def test_sha1_integrity_layout_and_value() -> None:
    data = request(Username("a:b")).encode(key=KEY)
    body = tlv(0x0006, b"a:b")
    covered = header(0x0001, len(body) + 24) + body
    assert data == covered + tlv(0x0008, hmac_sha1(KEY, covered))


@pytest.mark.parametrize("length", [16, 20, 24, 28, 32])
def test_truncated_sha256(length: int) -> None:
    data = request(Username("a:b")).encode(
        key=KEY, integrity=Integrity.SHA256, sha256_length=length
    )
    decoded = Message.decode(data)
    integrity = decoded.get(MessageIntegritySha256)
    assert integrity is not None
    assert len(integrity.value) == length
    assert decoded.has_integrity
    assert decoded.check_integrity(KEY)
    assert not decoded.check_integrity(KEY + b"!")


@pytest.mark.parametrize("length", [0, 12, 15, 18, 36])
def test_bad_sha256_lengths(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        request().encode(key=KEY, integrity=Integrity.SHA256, sha256_length=length)
    with pytest.raises(DecodeError, match="MESSAGE-INTEGRITY-SHA256"):
        Message.decode(message_bytes(tlv(0x001C, bytes(length))))


def test_integrity_both_then_check() -> None:
    data = request(Username("a:b"), Priority(7)).encode(
        key=KEY, integrity=Integrity.BOTH, fingerprint=True
    )
    decoded = Message.decode(data)
    assert decoded.check_integrity(KEY)
    assert decoded.check_fingerprint()
    assert not decoded.check_integrity(b"other")
    # The SHA-1 MAC is right too: cut the message after MESSAGE-INTEGRITY and check that alone.
    at = data.index(b"\x00\x08\x00\x14")
    sha1_only = data[: at + 24]
    sha1_only = sha1_only[:2] + struct.pack("!H", len(sha1_only) - 20) + sha1_only[4:]
    assert Message.decode(sha1_only).check_integrity(KEY)
    # With both present, SHA-256 is the one checked: breaking it fails the check.
    broken = bytearray(data)
    broken[-9] ^= 1
    assert not Message.decode(bytes(broken)).check_integrity(KEY)


def test_checks_need_a_decoded_message_and_the_attributes() -> None:
    with pytest.raises(LocalProtocolError):
        request().check_integrity(KEY)
    with pytest.raises(LocalProtocolError):
        request().check_fingerprint()
    plain = Message.decode(request(Software("x")).encode())
    assert not plain.has_integrity
    assert not plain.check_integrity(KEY)
    assert not plain.check_fingerprint()


def test_fingerprint_only() -> None:
    data = request(Software("x")).encode(fingerprint=True)
    decoded = Message.decode(data)
    assert decoded.check_fingerprint()
    assert not decoded.has_integrity
    body = data[20:-8]
    patched = header(0x0001, len(body) + 8) + body
    assert data[-4:] == struct.pack("!I", fingerprint(patched))


def test_attribute_value_too_long() -> None:
    with pytest.raises(LocalProtocolError, match="too long"):
        request(Padding(bytes(0x10000))).encode()


@pytest.mark.parametrize(
    "options",
    [{}, {"key": KEY}, {"key": KEY, "integrity": Integrity.SHA256}, {"fingerprint": True}],
    ids=["plain", "sha1", "sha256", "fingerprint"],
)
def test_message_too_long_is_a_local_error(options: dict[str, Any]) -> None:
    fits = request(Padding(bytes(0xFFFF - 4 - 40)))
    assert len(fits.encode(**options)) <= 20 + 0xFFFF
    too_long = request(Padding(bytes(0xFFFF - 4)))
    with pytest.raises(LocalProtocolError, match="too long"):
        too_long.encode(**options)


@pytest.mark.parametrize(
    "attribute",
    [
        ResponsePort(0x10000),
        XorMappedAddress(make_address("192.0.2.1", 1)._replace(port=0x10000)),
        UnknownAttributes((0x10000,)),
        UnknownAttribute(0x10000, b""),
        Username("\ud800"),
    ],
    ids=["port", "address-port", "unknown-attributes", "type-code", "surrogate"],
)
def test_unencodable_values_are_local_errors(attribute: Attribute) -> None:
    with pytest.raises(LocalProtocolError):
        request(attribute).encode()
