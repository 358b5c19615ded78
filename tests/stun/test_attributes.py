"""Unit tests of stun.attributes and stun.address: each value's wire form (RFC 8489 §14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stun import (
    AlgorithmEntry,
    AlternateDomain,
    AlternateServer,
    Attribute,
    AttrType,
    ChangeRequest,
    DecodeError,
    ErrorCode,
    Fingerprint,
    IceControlled,
    IceControlling,
    LocalProtocolError,
    MappedAddress,
    MessageIntegritySha256,
    Nonce,
    OtherAddress,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Priority,
    Realm,
    ResponseOrigin,
    ResponsePort,
    Software,
    UnknownAttribute,
    UnknownAttributes,
    UseCandidate,
    Userhash,
    Username,
    XorMappedAddress,
    is_comprehension_required,
    make_address,
    register_attribute,
)
from stun.address import Address, normalize_host, pack_host
from stun.attributes import REASON_PHRASES, attribute_name, registered_attribute

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTANTS: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "constants.json").read_text(encoding="utf-8")
)
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")  # RFC 5769's


def round_trip(attribute: Attribute, tid: bytes = TID) -> bytes:
    value = attribute.encode_value(tid)
    assert type(attribute).decode_value(value, tid) == attribute
    return value


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    "entry", [a for a in CONSTANTS["attributes"] if registered_attribute(a["int"])],
    ids=lambda a: a["name"],
)
def test_registered_names_and_comprehension_match_the_registry(entry: dict[str, Any]) -> None:
    cls = registered_attribute(entry["int"])
    assert cls is not None
    assert cls.NAME == attribute_name(entry["int"]) == entry["name"]
    assert is_comprehension_required(entry["int"]) is (entry["comprehension"] == "required")


def test_every_attr_type_is_registered_and_in_the_constants() -> None:
    in_constants = {a["int"] for a in CONSTANTS["attributes"]}
    for attr_type in AttrType:
        assert registered_attribute(attr_type) is not None
        assert attr_type in in_constants


def test_unregistered_names_are_hex() -> None:
    assert registered_attribute(0x7FFE) is None
    assert attribute_name(0x7FFE) == "0x7FFE"


def test_a_type_code_can_be_registered_only_once() -> None:
    class Impostor(Attribute):
        TYPE = AttrType.SOFTWARE

    with pytest.raises(LocalProtocolError, match="already registered"):
        register_attribute(Impostor)
    assert registered_attribute(AttrType.SOFTWARE) is Software
    assert register_attribute(Software) is Software  # re-registering the same class is harmless


@pytest.mark.parametrize("entry", CONSTANTS["error_codes"], ids=lambda e: str(e["code"]))
def test_reason_phrases_match_the_constants(entry: dict[str, Any]) -> None:
    assert REASON_PHRASES[entry["code"]] == entry["reason_phrase"]
    assert ErrorCode.of(entry["code"]) == ErrorCode(entry["code"], entry["reason_phrase"])


# --------------------------------------------------------------------------- addresses


def test_xor_mapped_address_ipv4_matches_rfc5769() -> None:
    attribute = XorMappedAddress(Address("192.0.2.1", 32853))
    assert round_trip(attribute) == bytes.fromhex("0001a147e112a643")
    assert attribute.encode_value(bytes(12)) == attribute.encode_value(TID)


def test_xor_mapped_address_ipv6_uses_the_transaction_id() -> None:
    attribute = XorMappedAddress(Address("2001:db8:1234:5678:11:2233:4455:6677", 32853))
    value = round_trip(attribute)
    assert value == bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")
    other_tid = bytes(12)
    assert attribute.encode_value(other_tid) != value
    assert round_trip(attribute, other_tid)[:8] == value[:8]  # only the last 12 bytes use it
    wrong = XorMappedAddress.decode_value(value, other_tid)
    assert wrong.address.port == 32853
    assert wrong.address.host != attribute.address.host


@pytest.mark.parametrize("cls", [MappedAddress, AlternateServer, ResponseOrigin, OtherAddress])
def test_plain_addresses(cls: type[MappedAddress]) -> None:
    assert round_trip(cls(Address("192.0.2.1", 3478))) == bytes.fromhex("00010d96c0000201")
    v6 = round_trip(cls(Address("2001:db8::1", 1)))
    assert v6 == bytes.fromhex("00020001") + bytes.fromhex("20010db8" + "00" * 11 + "01")


@pytest.mark.parametrize("cls", [MappedAddress, XorMappedAddress])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "0 bytes is too short"),
        (bytes.fromhex("000100"), "3 bytes is too short"),
        (bytes.fromhex("00030001c0000201"), "bad family 3"),
        (bytes.fromhex("00010001c00002"), "IPv4 address with length 7"),
        (bytes.fromhex("00010001c000020100"), "IPv4 address with length 9"),
        (bytes.fromhex("00020001") + bytes(15), "IPv6 address with length 19"),
    ],
)
def test_bad_addresses(cls: type[MappedAddress], value: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=f"attribute {cls.NAME}: {why}"):
        cls.decode_value(value, TID)


def test_address_family_reserved_byte_is_ignored() -> None:
    assert MappedAddress.decode_value(bytes.fromhex("ff010d96c0000201"), TID) == MappedAddress(
        Address("192.0.2.1", 3478)
    )


def test_make_address_normalises() -> None:
    assert make_address("2001:DB8:0:0::0001", 80) == Address("2001:db8::1", 80)
    assert make_address("fe80::1%eth0", 5) == Address("fe80::1", 5)
    assert make_address("10.0.0.1", 0).host == "10.0.0.1"
    assert normalize_host("::FFFF:0:1") == "::ffff:0:1"
    assert str(Address("2001:db8::1", 80)) == "[2001:db8::1]:80"
    assert str(Address("10.0.0.1", 80)) == "10.0.0.1:80"
    for port in (-1, 0x10000):
        with pytest.raises(LocalProtocolError, match="port"):
            make_address("10.0.0.1", port)
    for name in ("localhost", "example.org", "1.2.3", ""):
        with pytest.raises(LocalProtocolError, match="not an IP address literal"):
            pack_host(name)


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize("cls", [Username, Realm, Nonce, Software, AlternateDomain])
def test_text_attributes(cls: type[Username]) -> None:
    assert round_trip(cls("マトリックス")) == "マトリックス".encode()
    assert round_trip(cls("")) == b""
    longest = "x" * 763
    round_trip(cls(longest))
    with pytest.raises(LocalProtocolError, match="at most 763"):
        cls(longest + "x").encode_value(TID)
    with pytest.raises(DecodeError, match="at most 763"):
        cls.decode_value(b"x" * 764, TID)
    with pytest.raises(DecodeError, match=f"attribute {cls.NAME}: not valid UTF-8"):
        cls.decode_value(b"\xff\xfe", TID)


# --------------------------------------------------------------------------- fixed-size values


def test_priority() -> None:
    assert round_trip(Priority(0x6E0001FF)) == bytes.fromhex("6e0001ff")
    round_trip(Priority(0xFFFFFFFF))
    for value in (0, 0x100000000):
        with pytest.raises(LocalProtocolError, match="PRIORITY"):
            Priority(value).encode_value(TID)
    with pytest.raises(DecodeError, match="PRIORITY: length 5"):
        Priority.decode_value(bytes(5), TID)


@pytest.mark.parametrize("cls", [IceControlled, IceControlling])
def test_tie_breakers(cls: type[IceControlled]) -> None:
    assert round_trip(cls(0x932FF9B151263B36)) == bytes.fromhex("932ff9b151263b36")
    round_trip(cls(0))
    round_trip(cls(2**64 - 1))
    for value in (-1, 2**64):
        with pytest.raises(LocalProtocolError, match="tie-breaker"):
            cls(value).encode_value(TID)
    with pytest.raises(DecodeError, match="length 4"):
        cls.decode_value(bytes(4), TID)


def test_use_candidate_is_empty() -> None:
    assert round_trip(UseCandidate()) == b""
    with pytest.raises(DecodeError, match="USE-CANDIDATE"):
        UseCandidate.decode_value(b"\x00", TID)


def test_change_request_flags() -> None:
    assert round_trip(ChangeRequest()) == bytes(4)
    assert round_trip(ChangeRequest(change_ip=True)) == bytes.fromhex("00000004")
    assert round_trip(ChangeRequest(change_port=True)) == bytes.fromhex("00000002")
    assert round_trip(ChangeRequest(True, True)) == bytes.fromhex("00000006")
    assert ChangeRequest.decode_value(bytes.fromhex("fffffff9"), TID) == ChangeRequest()
    with pytest.raises(DecodeError):
        ChangeRequest.decode_value(bytes(2), TID)


def test_response_port() -> None:
    assert round_trip(ResponsePort(3479)) == bytes.fromhex("0d970000")
    assert ResponsePort.decode_value(bytes.fromhex("0d97ffff"), TID) == ResponsePort(3479)
    with pytest.raises(DecodeError):
        ResponsePort.decode_value(bytes(2), TID)


def test_fingerprint_value() -> None:
    assert round_trip(Fingerprint(0xE57A3BCF)) == bytes.fromhex("e57a3bcf")
    with pytest.raises(DecodeError, match="FINGERPRINT"):
        Fingerprint.decode_value(bytes(8), TID)


@pytest.mark.parametrize(
    ("cls", "sizes"), [(Userhash, (32,)), (MessageIntegritySha256, (16, 20, 24, 28, 32))]
)
def test_sized_byte_attributes(cls: type[Userhash], sizes: tuple[int, ...]) -> None:
    for size in range(0, 40):
        if size in sizes:
            round_trip(cls(bytes(range(size))))
        else:
            with pytest.raises(DecodeError, match=f"length {size}"):
                cls.decode_value(bytes(size), TID)
            with pytest.raises(LocalProtocolError):
                cls(bytes(size))


# --------------------------------------------------------------------------- error code and lists


def test_error_code_wire_form() -> None:
    assert round_trip(ErrorCode(420, "Unknown Attribute")) == b"\x00\x00\x04\x14Unknown Attribute"
    assert round_trip(ErrorCode(699, "")) == b"\x00\x00\x06\x63"
    assert round_trip(ErrorCode(300, "Try Alternate"))[:4] == b"\x00\x00\x03\x00"
    # The 21 reserved bits before the class are ignored on receipt.
    assert ErrorCode.decode_value(b"\xff\xff\xfc\x01x", TID) == ErrorCode(401, "x")


def test_error_code_of() -> None:
    assert ErrorCode.of(401) == ErrorCode(401, "Unauthenticated")
    assert ErrorCode.of(401, "go away") == ErrorCode(401, "go away")
    assert ErrorCode.of(499) == ErrorCode(499, "")


@pytest.mark.parametrize("code", [0, 299, 700, 1000])
def test_error_code_out_of_range_is_not_encoded(code: int) -> None:
    with pytest.raises(LocalProtocolError, match="error code out of range"):
        ErrorCode(code, "x").encode_value(TID)


@pytest.mark.parametrize(
    "value",
    [b"\x00\x00\x02\x00", b"\x00\x00\x07\x00", b"\x00\x00\x00\x00", b"\x00\x00\x04\x64"],
    ids=["class-2", "class-7", "class-0", "number-100"],
)
def test_error_code_bad_class_or_number(value: bytes) -> None:
    with pytest.raises(DecodeError, match="ERROR-CODE: bad class"):
        ErrorCode.decode_value(value, TID)


def test_error_code_too_short_or_bad_reason() -> None:
    with pytest.raises(DecodeError, match="too short"):
        ErrorCode.decode_value(b"\x00\x00\x04", TID)
    with pytest.raises(DecodeError, match="UTF-8"):
        ErrorCode.decode_value(b"\x00\x00\x04\x00\xc3", TID)


def test_unknown_attributes_list() -> None:
    assert round_trip(UnknownAttributes((0x0030, 0x7FFF))) == bytes.fromhex("00307fff")
    assert round_trip(UnknownAttributes(())) == b""
    with pytest.raises(DecodeError, match="odd length 3"):
        UnknownAttributes.decode_value(bytes(3), TID)


def test_password_algorithm() -> None:
    assert round_trip(PasswordAlgorithm(2)) == bytes.fromhex("00020000")
    assert round_trip(PasswordAlgorithm(0x1234, b"abcde")) == bytes.fromhex(
        "12340005" "6162636465" "000000"
    )
    with pytest.raises(DecodeError, match="trailing bytes"):
        PasswordAlgorithm.decode_value(bytes.fromhex("0002000000010000"), TID)
    with pytest.raises(DecodeError, match="truncated"):
        PasswordAlgorithm.decode_value(bytes(2), TID)
    with pytest.raises(DecodeError, match="overrun"):
        PasswordAlgorithm.decode_value(bytes.fromhex("00020008abcd"), TID)


def test_password_algorithms() -> None:
    offered = PasswordAlgorithms((AlgorithmEntry(2), AlgorithmEntry(1), AlgorithmEntry(9, b"xyz")))
    assert round_trip(offered) == bytes.fromhex("00020000" "00010000" "00090003" "78797a00")
    assert round_trip(PasswordAlgorithms(())) == b""
    with pytest.raises(DecodeError, match="PASSWORD-ALGORITHMS"):
        PasswordAlgorithms.decode_value(bytes.fromhex("0002000000"), TID)


def test_unknown_attribute_keeps_its_type_and_bytes() -> None:
    unknown = UnknownAttribute(0x8FFF, b"\x01\x02")
    assert unknown.attr_type == 0x8FFF
    assert unknown.encode_value(TID) == b"\x01\x02"
    assert Software("x").attr_type == AttrType.SOFTWARE
