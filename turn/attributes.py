"""TURN's attributes (RFC 8656 §18, RFC 6062 §6.2), registered with :mod:`stun`'s codec.

Importing this module (``import turn`` does) registers every class below with
:func:`stun.register_attribute`, so :meth:`stun.Message.decode` returns them typed instead of as
:class:`stun.UnknownAttribute`, and :func:`stun.attributes.attribute_name` prints their RFC names.
Like every attribute in that registry, their decoders raise :class:`stun.DecodeError` (only) on a
malformed value, and their encoders :class:`stun.LocalProtocolError` on a value that cannot be
sent.

Values the RFC leaves to the server to judge are decoded, not refused: an address family or a
transport protocol nobody registered (the server answers 440 or 442), a channel number outside
0x4000-0x4FFF (400). Reserved bits are ignored on receipt and sent as zero (RFC 8656 §18).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Self

from stun import (
    AddressFamily,
    Attribute,
    DecodeError,
    LocalProtocolError,
    XorAddressAttribute,
    register_attribute,
)
from stun.attributes import MAX_TEXT_BYTES, REASON_PHRASES

_U8_PADDED = struct.Struct("!B3x")
_U16_PADDED = struct.Struct("!H2x")
_U32 = struct.Struct("!I")
_ADDRESS_ERROR = struct.Struct("!BxBB")
_ICMP = struct.Struct("!2xBBI")


class TurnAttrType(enum.IntEnum):
    """Attribute type codes of RFC 8656 (TURN) and RFC 6062 (TCP allocations)."""

    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    RESERVATION_TOKEN = 0x0022
    CONNECTION_ID = 0x002A
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    ICMP = 0x8004


class TransportProtocol(enum.IntEnum):
    """IP protocol numbers REQUESTED-TRANSPORT may carry (RFC 8656 §18.8, RFC 6062 §6.1)."""

    TCP = 6
    UDP = 17


def _fail(cls: type[Attribute], why: str) -> DecodeError:
    return DecodeError(f"attribute {cls.NAME}: {why}")


def _check_length(cls: type[Attribute], value: bytes, size: int) -> None:
    if len(value) != size:
        raise _fail(cls, f"length {len(value)}, expected {size}")


def _check_range(cls: type[Attribute], what: str, number: int, largest: int) -> None:
    if not 0 <= number <= largest:
        raise LocalProtocolError(f"{cls.NAME} {what} out of range: {number}")


def _family(number: int) -> int:
    """The :class:`stun.AddressFamily` member for a registered family byte, else the number."""
    return AddressFamily(number) if number in _FAMILIES else number


_FAMILIES = frozenset(int(f) for f in AddressFamily)
_PROTOCOLS = frozenset(int(p) for p in TransportProtocol)


# --------------------------------------------------------------------------- addresses


@register_attribute
@dataclass(frozen=True, slots=True)
class XorPeerAddress(XorAddressAttribute):
    """XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer's transport address, as the server sees it."""

    TYPE = TurnAttrType.XOR_PEER_ADDRESS


@register_attribute
@dataclass(frozen=True, slots=True)
class XorRelayedAddress(XorAddressAttribute):
    """XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the relayed transport address the server allocated."""

    TYPE = TurnAttrType.XOR_RELAYED_ADDRESS


@dataclass(frozen=True, slots=True)
class _FamilyAttribute(Attribute):
    """A family byte and three reserved bytes (RFC 8656 §18.6, §18.11)."""

    family: int
    WIRE_SIZES = frozenset({4})

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "family", self.family, 0xFF)
        return _U8_PADDED.pack(self.family)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 4)
        return cls(_family(value[0]))


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestedAddressFamily(_FamilyAttribute):
    """REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6): the family of relayed address the client wants."""

    TYPE = TurnAttrType.REQUESTED_ADDRESS_FAMILY


@register_attribute
@dataclass(frozen=True, slots=True)
class AdditionalAddressFamily(_FamilyAttribute):
    """ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): ask for an IPv6 relayed address besides the
    IPv4 one (a dual allocation); IPv6 is the only valid value.
    """

    TYPE = TurnAttrType.ADDITIONAL_ADDRESS_FAMILY


# --------------------------------------------------------------------------- numbers and flags


@register_attribute
@dataclass(frozen=True, slots=True)
class ChannelNumber(Attribute):
    """CHANNEL-NUMBER (RFC 8656 §18.1): a channel number and two reserved bytes."""

    TYPE = TurnAttrType.CHANNEL_NUMBER
    WIRE_SIZES = frozenset({4})
    number: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "number", self.number, 0xFFFF)
        return _U16_PADDED.pack(self.number)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 4)
        return cls(_U16_PADDED.unpack(value)[0])


@dataclass(frozen=True, slots=True)
class _U32Attribute(Attribute):
    value: int
    WIRE_SIZES = frozenset({4})

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "value", self.value, 0xFFFFFFFF)
        return _U32.pack(self.value)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 4)
        return cls(_U32.unpack(value)[0])


@register_attribute
@dataclass(frozen=True, slots=True)
class Lifetime(_U32Attribute):
    """LIFETIME (RFC 8656 §18.2): seconds until the allocation expires; 0 in a Refresh deletes."""

    TYPE = TurnAttrType.LIFETIME


@register_attribute
@dataclass(frozen=True, slots=True)
class ConnectionId(_U32Attribute):
    """CONNECTION-ID (RFC 6062 §6.2.1): names a peer TCP connection of a TCP allocation."""

    TYPE = TurnAttrType.CONNECTION_ID


@register_attribute
@dataclass(frozen=True, slots=True)
class RequestedTransport(Attribute):
    """REQUESTED-TRANSPORT (RFC 8656 §18.8): the relay protocol wanted, UDP (17) or TCP (6)."""

    TYPE = TurnAttrType.REQUESTED_TRANSPORT
    WIRE_SIZES = frozenset({4})
    protocol: int = TransportProtocol.UDP

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "protocol", self.protocol, 0xFF)
        return _U8_PADDED.pack(self.protocol)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 4)
        protocol = value[0]
        return cls(TransportProtocol(protocol) if protocol in _PROTOCOLS else protocol)


@register_attribute
@dataclass(frozen=True, slots=True)
class EvenPort(Attribute):
    """EVEN-PORT (RFC 8656 §18.7): allocate an even port; with ``reserve`` (the R bit), hold the
    next port too, for a later Allocate carrying the RESERVATION-TOKEN the response returns.
    """

    TYPE = TurnAttrType.EVEN_PORT
    WIRE_SIZES = frozenset({1})
    reserve: bool = False

    def encode_value(self, transaction_id: bytes) -> bytes:
        return b"\x80" if self.reserve else b"\x00"

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 1)
        return cls(bool(value[0] & 0x80))


@register_attribute
@dataclass(frozen=True, slots=True)
class DontFragment(Attribute):
    """DONT-FRAGMENT (RFC 8656 §18.9): set the DF bit on datagrams relayed to peers."""

    TYPE = TurnAttrType.DONT_FRAGMENT
    WIRE_SIZES = frozenset({0})

    def encode_value(self, transaction_id: bytes) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 0)
        return cls()


# --------------------------------------------------------------------------- opaque bytes


@register_attribute
@dataclass(frozen=True, slots=True)
class Data(Attribute):
    """DATA (RFC 8656 §18.4): the application data of a Send or Data indication (may be empty)."""

    TYPE = TurnAttrType.DATA
    value: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.value

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(value)


@register_attribute
@dataclass(frozen=True, slots=True)
class ReservationToken(Attribute):
    """RESERVATION-TOKEN (RFC 8656 §18.10): 8 bytes naming a relayed address the server holds."""

    TYPE = TurnAttrType.RESERVATION_TOKEN
    WIRE_SIZES = frozenset({8})
    token: bytes

    def __post_init__(self) -> None:
        if len(self.token) != 8:
            raise LocalProtocolError(f"RESERVATION-TOKEN must be 8 bytes, not {len(self.token)}")

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.token

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 8)
        return cls(value)


# --------------------------------------------------------------------------- errors


@register_attribute
@dataclass(frozen=True, slots=True)
class AddressErrorCode(Attribute):
    """ADDRESS-ERROR-CODE (RFC 8656 §18.12): why one family of a dual allocation was not granted
    (440 or 508): a family byte, then ERROR-CODE's class, number and reason phrase.
    """

    TYPE = TurnAttrType.ADDRESS_ERROR_CODE
    family: int
    code: int
    reason: str = ""

    @classmethod
    def of(cls, family: int, code: int, reason: str | None = None) -> AddressErrorCode:
        """Build one with the registered reason phrase unless one is given."""
        return cls(family, code, REASON_PHRASES.get(code, "") if reason is None else reason)

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "family", self.family, 0xFF)
        if not 300 <= self.code <= 699:
            raise LocalProtocolError(f"ADDRESS-ERROR-CODE code out of range: {self.code}")
        reason = self.reason.encode("utf-8")
        if len(reason) > MAX_TEXT_BYTES:
            raise LocalProtocolError(f"ADDRESS-ERROR-CODE reason is {len(reason)} bytes")
        return _ADDRESS_ERROR.pack(self.family, self.code // 100, self.code % 100) + reason

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) < 4:
            raise _fail(cls, f"{len(value)} bytes is too short")
        family, error_class, number = _ADDRESS_ERROR.unpack_from(value)
        error_class &= 0x07
        if not 3 <= error_class <= 6 or number > 99:
            raise _fail(cls, f"bad class {error_class} / number {number}")
        if len(value) - 4 > MAX_TEXT_BYTES:
            raise _fail(cls, f"reason of {len(value) - 4} bytes, at most {MAX_TEXT_BYTES}")
        try:
            reason = value[4:].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(cls, "reason is not valid UTF-8") from None
        return cls(_family(family), error_class * 100 + number, reason)


@register_attribute
@dataclass(frozen=True, slots=True)
class Icmp(Attribute):
    """ICMP (RFC 8656 §18.13): an ICMP error a peer's network returned, in a Data indication."""

    TYPE = TurnAttrType.ICMP
    WIRE_SIZES = frozenset({8})
    icmp_type: int
    icmp_code: int
    error_data: int = 0

    def encode_value(self, transaction_id: bytes) -> bytes:
        _check_range(type(self), "type", self.icmp_type, 0xFF)
        _check_range(type(self), "code", self.icmp_code, 0xFF)
        _check_range(type(self), "error data", self.error_data, 0xFFFFFFFF)
        return _ICMP.pack(self.icmp_type, self.icmp_code, self.error_data)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _check_length(cls, value, 8)
        return cls(*_ICMP.unpack(value))
