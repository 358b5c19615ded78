"""Unit tests of turn.attributes: each TURN attribute's wire form (RFC 8656 §18, RFC 6062 §6.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import turn
from stun import (
    AddressFamily,
    Attribute,
    DecodeError,
    LocalProtocolError,
    Message,
    MessageClass,
    Method,
    XorMappedAddress,
    is_comprehension_required,
    make_address,
)
from stun.attributes import attribute_name, registered_attribute
from turn import (
    AdditionalAddressFamily,
    AddressErrorCode,
    ChannelNumber,
    ConnectionId,
    Data,
    DontFragment,
    EvenPort,
    Icmp,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    TurnAttrType,
    XorPeerAddress,
    XorRelayedAddress,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTANTS: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "constants.json").read_text(encoding="utf-8")
)
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")  # RFC 5769's

#: One value of every TURN attribute and its exact wire form (value only, no header or padding).
EXAMPLES: list[tuple[Attribute, bytes]] = [
    (ChannelNumber(0x4001), bytes.fromhex("40010000")),
    (Lifetime(600), bytes.fromhex("00000258")),
    # RFC 5769 §2.2's XOR-MAPPED-ADDRESS, 192.0.2.1:32853: same encoding (RFC 8656 §18.3).
    (XorPeerAddress(make_address("192.0.2.1", 32853)), bytes.fromhex("0001a147e112a643")),
    (
        XorRelayedAddress(make_address("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
        bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"),
    ),
    (Data(b"hello"), b"hello"),
    (Data(b""), b""),
    (RequestedAddressFamily(AddressFamily.IPV6), bytes.fromhex("02000000")),
    (AdditionalAddressFamily(AddressFamily.IPV6), bytes.fromhex("02000000")),
    (EvenPort(), b"\x00"),
    (EvenPort(reserve=True), b"\x80"),
    (RequestedTransport(), bytes.fromhex("11000000")),
    (RequestedTransport(TransportProtocol.TCP), bytes.fromhex("06000000")),
    (DontFragment(), b""),
    (ReservationToken(bytes(range(8))), bytes(range(8))),
    (ConnectionId(0xDEADBEEF), bytes.fromhex("deadbeef")),
    (
        AddressErrorCode(AddressFamily.IPV6, 440, "Address Family not Supported"),
        bytes.fromhex("02000428") + b"Address Family not Supported",
    ),
    (Icmp(3, 1, 0x01020304), bytes.fromhex("0000030101020304")),
]


@pytest.mark.parametrize(("attribute", "wire"), EXAMPLES, ids=lambda x: repr(x)[:40])
def test_wire_form_and_round_trip(attribute: Attribute, wire: bytes) -> None:
    assert attribute.encode_value(TID) == wire
    assert type(attribute).decode_value(wire, TID) == attribute


def test_every_turn_attribute_has_an_example_and_is_registered() -> None:
    assert {type(a).TYPE for a, _ in EXAMPLES} == set(TurnAttrType)
    for code in TurnAttrType:
        cls = registered_attribute(code)
        assert cls is not None and cls.__module__ == "turn.attributes"


@pytest.mark.parametrize("code", list(TurnAttrType), ids=lambda c: c.name)
def test_names_and_comprehension_match_the_iana_registry(code: TurnAttrType) -> None:
    [entry] = [a for a in CONSTANTS["attributes"] if a["int"] == code]
    assert attribute_name(code) == entry["name"] == code.name.replace("_", "-")
    assert is_comprehension_required(code) is (entry["comprehension"] == "required")


def test_messages_decode_typed_turn_attributes() -> None:
    """What coturn's Allocate success response carries decodes typed, with nothing unknown."""
    relayed = make_address("127.0.0.1", 50000)
    mapped = make_address("127.0.0.1", 40000)
    sent = Message(
        Method.ALLOCATE,
        MessageClass.SUCCESS_RESPONSE,
        TID,
        [XorRelayedAddress(relayed), Lifetime(600), XorMappedAddress(mapped)],
    )
    decoded = Message.decode(sent.encode(key=b"key", fingerprint=True))
    assert decoded.unknown_required == ()
    assert decoded.get(XorRelayedAddress) == XorRelayedAddress(relayed)
    assert decoded.get(Lifetime) == Lifetime(600)
    assert decoded.content_attributes == sent.attributes


def test_unregistered_values_decode_for_the_server_to_judge() -> None:
    """Family 3 (440), protocol 132 (442) and channel 0x5000 (400) are the server's to refuse."""
    assert RequestedAddressFamily.decode_value(b"\x03\x00\x00\x00", TID).family == 3
    assert RequestedTransport.decode_value(b"\x84\x00\x00\x00", TID).protocol == 132
    assert ChannelNumber.decode_value(b"\x50\x00\x00\x00", TID).number == 0x5000


def test_known_numbers_decode_as_enums() -> None:
    assert RequestedTransport.decode_value(b"\x11\x00\x00\x00", TID).protocol is (
        TransportProtocol.UDP
    )
    family = AdditionalAddressFamily.decode_value(b"\x01\x00\x00\x00", TID).family
    assert family is AddressFamily.IPV4


def test_reserved_bits_are_ignored_on_receipt() -> None:
    assert ChannelNumber.decode_value(b"\x40\x00\xff\xff", TID) == ChannelNumber(0x4000)
    assert RequestedTransport.decode_value(b"\x11\xff\xff\xff", TID) == RequestedTransport()
    assert EvenPort.decode_value(b"\x7f", TID) == EvenPort(reserve=False)
    assert EvenPort.decode_value(b"\xff", TID) == EvenPort(reserve=True)
    assert Icmp.decode_value(b"\xff\xff\x03\x01\x00\x00\x00\x00", TID) == Icmp(3, 1)
    coded = AddressErrorCode.decode_value(b"\x01\xff\xfd\x08", TID)
    assert coded == AddressErrorCode(AddressFamily.IPV4, 508, "")


def test_address_error_code_of_uses_the_registered_phrase() -> None:
    assert AddressErrorCode.of(AddressFamily.IPV4, 508) == AddressErrorCode(
        AddressFamily.IPV4, 508, "Insufficient Capacity"
    )
    assert AddressErrorCode.of(2, 440, "no IPv6 here").reason == "no IPv6 here"


MALFORMED: list[tuple[type[Attribute], bytes, str]] = [
    (ChannelNumber, b"\x40\x00", "length 2, expected 4"),
    (Lifetime, b"\x00\x00\x02\x58\x00", "length 5, expected 4"),
    (XorPeerAddress, b"\x00\x03\x00\x01\x00\x00\x00\x00", "bad family 3"),
    (XorRelayedAddress, b"\x00\x01\x00\x01", "IPv4 address with length 4"),
    (RequestedAddressFamily, b"\x01", "length 1, expected 4"),
    (AdditionalAddressFamily, b"", "length 0, expected 4"),
    (EvenPort, b"\x80\x00\x00\x00", "length 4, expected 1"),
    (RequestedTransport, b"\x11\x00\x00", "length 3, expected 4"),
    (DontFragment, b"\x00", "length 1, expected 0"),
    (ReservationToken, bytes(7), "length 7, expected 8"),
    (ConnectionId, b"", "length 0, expected 4"),
    (AddressErrorCode, b"\x02\x00\x04", "too short"),
    (AddressErrorCode, b"\x02\x00\x07\x00", "bad class 7"),
    (AddressErrorCode, b"\x02\x00\x04\x64", "number 100"),
    (AddressErrorCode, b"\x02\x00\x04\x28\xff", "not valid UTF-8"),
    (AddressErrorCode, b"\x02\x00\x04\x28" + b"x" * 764, "at most 763"),
    (Icmp, bytes(4), "length 4, expected 8"),
]


@pytest.mark.parametrize(("kind", "value", "why"), MALFORMED, ids=lambda x: str(x)[:30])
def test_malformed_values_raise_stun_decode_error_naming_the_attribute(
    kind: type[Attribute], value: bytes, why: str
) -> None:
    with pytest.raises(DecodeError, match=f"attribute {kind.NAME}: .*{why}"):
        kind.decode_value(value, TID)


def test_a_malformed_turn_attribute_makes_the_message_malformed() -> None:
    body = bytes.fromhex("000d0002") + b"\x00\x01\x00\x00"  # LIFETIME with 2 bytes
    header = bytes.fromhex("0003") + len(body).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + TID
    with pytest.raises(DecodeError, match="attribute LIFETIME"):
        Message.decode(header + body)


UNENCODABLE: list[Attribute] = [
    ChannelNumber(0x10000),
    ChannelNumber(-1),
    Lifetime(2**32),
    ConnectionId(-1),
    RequestedAddressFamily(256),
    RequestedTransport(300),
    AddressErrorCode(2, 200),
    AddressErrorCode(2, 440, "x" * 764),
    AddressErrorCode(256, 440),
    Icmp(256, 0),
    Icmp(0, 0, 2**32),
]


@pytest.mark.parametrize("attribute", UNENCODABLE, ids=repr)
def test_values_out_of_wire_range_raise_local_protocol_error(attribute: Attribute) -> None:
    with pytest.raises(LocalProtocolError):
        attribute.encode_value(TID)


def test_reservation_token_must_be_eight_bytes() -> None:
    with pytest.raises(LocalProtocolError, match="8 bytes"):
        ReservationToken(bytes(9))


def test_importing_turn_registered_the_attributes() -> None:
    assert turn.XorPeerAddress is registered_attribute(TurnAttrType.XOR_PEER_ADDRESS)


# --------------------------------------------------------------------------- properties

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).flatmap(
    lambda ip: st.integers(0, 0xFFFF).map(lambda port: make_address(str(ip), port))
)
u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
STRATEGIES: dict[type[Attribute], st.SearchStrategy[Attribute]] = {
    ChannelNumber: st.builds(ChannelNumber, st.integers(0, 0xFFFF)),
    Lifetime: st.builds(Lifetime, u32),
    XorPeerAddress: st.builds(XorPeerAddress, addresses),
    XorRelayedAddress: st.builds(XorRelayedAddress, addresses),
    Data: st.builds(Data, st.binary(max_size=200)),
    RequestedAddressFamily: st.builds(RequestedAddressFamily, u8),
    AdditionalAddressFamily: st.builds(AdditionalAddressFamily, u8),
    EvenPort: st.builds(EvenPort, st.booleans()),
    RequestedTransport: st.builds(RequestedTransport, u8),
    DontFragment: st.just(DontFragment()),
    ReservationToken: st.builds(ReservationToken, st.binary(min_size=8, max_size=8)),
    ConnectionId: st.builds(ConnectionId, u32),
    AddressErrorCode: st.builds(
        AddressErrorCode,
        u8,
        st.integers(300, 699),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=100),
    ),
    Icmp: st.builds(Icmp, u8, u8, u32),
}


def test_every_turn_attribute_has_a_strategy() -> None:
    assert {cls.TYPE for cls in STRATEGIES} == set(TurnAttrType)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(*STRATEGIES.values()), max_size=6),
    st.binary(min_size=12, max_size=12),
)
def test_messages_of_turn_attributes_round_trip(
    attributes: list[Attribute], transaction_id: bytes
) -> None:
    sent = Message(Method.ALLOCATE, MessageClass.REQUEST, transaction_id, attributes)
    decoded = Message.decode(sent.encode(key=b"k", fingerprint=True))
    assert decoded.content_attributes == attributes
    assert decoded.unknown_required == ()
    assert decoded.check_integrity(b"k") and decoded.check_fingerprint()


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_garbage_values_decode_or_raise_only_stun_decode_error(data: st.DataObject) -> None:
    for kind in STRATEGIES:
        value = data.draw(st.binary(max_size=24), label=kind.NAME)
        try:
            attribute = kind.decode_value(value, TID)
        except DecodeError:
            continue
        assert kind.decode_value(attribute.encode_value(TID), TID) == attribute
