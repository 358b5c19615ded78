"""STUN attributes: their type codes, typed values and the codec registry (RFC 8489 §14, §18.3).

Every attribute is a frozen dataclass that knows its wire type (``TYPE``), how to encode its value
and how to decode one. Decoders are found by type code in a registry that other packages extend
(``turn`` registers its own attributes with :func:`register_attribute`). An attribute whose type no
one registered decodes as :class:`UnknownAttribute`, raw bytes kept.

MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are attributes like the others when
decoding; when building, :meth:`stun.Message.encode` appends them itself so they always come last
and in the right order.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

from .address import DECIMAL_OCTETS, Address, AddressFamily, new_address, pack_host, unpack_host
from .errors import DecodeError, LocalProtocolError

if TYPE_CHECKING:
    from .layout import KeptLayout

MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_ADDRESS_HEADER = struct.Struct("!xBH")
_ERROR_HEADER = struct.Struct("!HBB")

#: The longest text value a parser must accept (RFC 8489 §14.3, §14.9, §14.10, §14.14).
MAX_TEXT_BYTES = 763


class AttrType(enum.IntEnum):
    """Attribute type codes of RFC 8489, RFC 8445 (ICE) and RFC 5780 (NAT behaviour discovery)."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


def is_comprehension_required(attr_type: int) -> bool:
    """Types 0x0000-0x7FFF must be understood by the receiver (RFC 8489 §14)."""
    return attr_type < 0x8000


def attribute_name(attr_type: int) -> str:
    """The registered name of a type code (``"XOR-MAPPED-ADDRESS"``), or its hex form."""
    cls = _REGISTRY.get(attr_type)
    if cls is not None:
        return cls.NAME
    return f"0x{attr_type:04X}"


class Attribute:
    """Base of every attribute value. Subclasses are frozen dataclasses registered by type code."""

    __slots__ = ()
    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    #: The value lengths :meth:`decode_value` accepts, when it accepts *any* bytes of those
    #: lengths; ``None`` when the bytes themselves must be checked. For such an attribute,
    #: :meth:`stun.Message.decode` checks the length and builds the value when first read.
    WIRE_SIZES: ClassVar[frozenset[int] | None] = None
    #: Whether a decoded value depends on its bytes alone (not on the transaction ID) and
    #: recurs from message to message (a peer's USERNAME, PRIORITY, tie-breaker): then equal
    #: bytes decode to one shared, immutable value (:func:`decode_shared`).
    SHARED: ClassVar[bool] = False

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The value bytes (no header, no padding). XOR attributes need the transaction ID."""
        raise NotImplementedError

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Parse value bytes; raise :class:`DecodeError` if they are malformed."""
        raise NotImplementedError

    @property
    def attr_type(self) -> int:
        """The wire type code of this attribute."""
        return self.TYPE


_REGISTRY: dict[int, type[Attribute]] = {}
#: The registered classes' type codes: ``_TYPE_OF[Priority] == 0x0024``.
_TYPE_OF: dict[type[Attribute], int] = {}
#: ``WIRE_SIZES`` of the registered classes that have them, by type code.
_LAZY_SIZES: dict[int, frozenset[int]] = {}
#: ``stun.layout``'s cache of message layouts by type and length, emptied when the registry
#: changes.
_LAYOUT_CACHE: dict[int, KeptLayout] = {}
#: Decoded values of ``SHARED`` classes by their attribute's bytes (header and value), emptied
#: when the registry changes. Peer-grown, so bounded: emptied when it holds
#: :data:`MAX_SHARED_VALUES`.
_SHARED_VALUES: dict[bytes, Attribute] = {}
MAX_SHARED_VALUES = 1024
#: A longer value is decoded every time, not shared (text can be 763 bytes: the bound on the
#: table is in entries, and this keeps its bytes small too).
MAX_SHARED_LENGTH = 128
A = TypeVar("A", bound=type[Attribute])


def register_attribute(cls: A) -> A:
    """Class decorator: make ``cls`` the decoder for ``cls.TYPE``. Used by ``stun`` and ``turn``."""
    existing = _REGISTRY.get(cls.TYPE)
    if existing is not None and existing is not cls:
        raise LocalProtocolError(f"attribute type 0x{cls.TYPE:04X} already registered")
    if "NAME" not in cls.__dict__:
        cls.NAME = getattr(cls.TYPE, "name", f"0x{cls.TYPE:04X}").replace("_", "-")
    _REGISTRY[cls.TYPE] = cls
    _TYPE_OF[cls] = cls.TYPE
    if cls.WIRE_SIZES is not None:
        _LAZY_SIZES[cls.TYPE] = cls.WIRE_SIZES
    _LAYOUT_CACHE.clear()
    _SHARED_VALUES.clear()
    return cls


def decode_shared(
    kind: type[Attribute], data: bytes, start: int, end: int, transaction_id: bytes
) -> Attribute:
    """The value of ``kind`` (a ``SHARED`` class, the one registered for the type code at
    ``data[start - 4]``) in ``data[start:end]``: the value decoded earlier from the same
    attribute bytes if there is one, else decoded now (raising :class:`DecodeError` as
    ``decode_value`` does) and kept. Values are frozen, so messages may share them."""
    wire = data[start - 4 : end]
    value = _SHARED_VALUES.get(wire)
    if value is None:
        value = kind.decode_value(data[start:end], transaction_id)
        if len(_SHARED_VALUES) >= MAX_SHARED_VALUES:
            _SHARED_VALUES.clear()
        _SHARED_VALUES[wire] = value
    return value


def registered_attribute(attr_type: int) -> type[Attribute] | None:
    """The class registered for a type code, if any."""
    return _REGISTRY.get(attr_type)


def _fail(cls: type[Attribute], why: str) -> DecodeError:
    return DecodeError(f"attribute {cls.NAME}: {why}")


def _check_text(cls: type[Attribute], text: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    data = text.encode("utf-8")
    if len(data) > limit:
        raise LocalProtocolError(f"{cls.NAME} is {len(data)} bytes; at most {limit} allowed")
    return data


def _decode_text(cls: type[Attribute], value: bytes, limit: int = MAX_TEXT_BYTES) -> str:
    if len(value) > limit:
        raise _fail(cls, f"{len(value)} bytes, at most {limit} allowed")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(cls, "not valid UTF-8") from None


# --------------------------------------------------------------------------- addresses


def _encode_address(address: Address) -> bytes:
    family, packed = pack_host(address.host)
    return _ADDRESS_HEADER.pack(family, address.port) + packed


_IPV4 = int(AddressFamily.IPV4)
_IPV6 = int(AddressFamily.IPV6)


def _decode_address(cls: type[Attribute], value: bytes) -> tuple[int, int, bytes]:
    size = len(value)
    if size < 4:
        raise _fail(cls, f"{size} bytes is too short")
    family, port = _ADDRESS_HEADER.unpack_from(value)
    if family == _IPV4:
        if size != 8:
            raise _fail(cls, f"IPv4 address with length {size}")
    elif family == _IPV6:
        if size != 20:
            raise _fail(cls, f"IPv6 address with length {size}")
    else:
        raise _fail(cls, f"bad family {family}")
    return family, port, value[4:]


def _xor_mask(family: int, transaction_id: bytes) -> int:
    if family == _IPV4:
        return MAGIC_COOKIE
    return int.from_bytes(_COOKIE_BYTES + transaction_id, "big")


@dataclass(frozen=True, slots=True)
class _PlainAddressAttribute(Attribute):
    """An address sent in the clear (MAPPED-ADDRESS and friends, RFC 8489 §14.1)."""

    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        return _encode_address(self.address)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        _, port, packed = _decode_address(cls, value)
        return cls(new_address(unpack_host(packed), port))


@dataclass(frozen=True, slots=True)
class XorAddressAttribute(Attribute):
    """An address XORed with the cookie (and, for IPv6, the transaction ID): RFC 8489 §14.2.

    Base of XOR-MAPPED-ADDRESS here and of XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS in ``turn``.
    """

    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        family, packed = pack_host(self.address.host)
        size = len(packed)
        masked = int.from_bytes(packed, "big") ^ _xor_mask(family, transaction_id)
        return _ADDRESS_HEADER.pack(family, self.address.port ^ 0x2112) + masked.to_bytes(
            size, "big"
        )

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        family, port, packed = _decode_address(cls, value)
        if family == _IPV4:
            a, b, c, d = packed
            text = DECIMAL_OCTETS  # each byte XORed with the magic cookie's
            host = ".".join((text[a ^ 0x21], text[b ^ 0x12], text[c ^ 0xA4], text[d ^ 0x42]))
        else:
            clear = int.from_bytes(packed, "big") ^ _xor_mask(family, transaction_id)
            host = unpack_host(clear.to_bytes(16, "big"))
        return cls(new_address(host, port ^ 0x2112))


@register_attribute
@dataclass(frozen=True, slots=True)
class MappedAddress(_PlainAddressAttribute):
    """MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address, for RFC 3489 clients only."""

    TYPE = AttrType.MAPPED_ADDRESS


@register_attribute
@dataclass(frozen=True, slots=True)
class XorMappedAddress(XorAddressAttribute):
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the client's reflexive transport address."""

    TYPE = AttrType.XOR_MAPPED_ADDRESS


@register_attribute
@dataclass(frozen=True, slots=True)
class AlternateServer(_PlainAddressAttribute):
    """ALTERNATE-SERVER (RFC 8489 §14.15): where a 300 Try Alternate sends the client."""

    TYPE = AttrType.ALTERNATE_SERVER


@register_attribute
@dataclass(frozen=True, slots=True)
class ResponseOrigin(_PlainAddressAttribute):
    """RESPONSE-ORIGIN (RFC 5780 §7.3): the address the response was sent from."""

    TYPE = AttrType.RESPONSE_ORIGIN


@register_attribute
@dataclass(frozen=True, slots=True)
class OtherAddress(_PlainAddressAttribute):
    """OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate IP and port for behaviour tests."""

    TYPE = AttrType.OTHER_ADDRESS


# --------------------------------------------------------------------------- text


@dataclass(frozen=True, slots=True)
class _TextAttribute(Attribute):
    value: str
    SHARED = True

    def encode_value(self, transaction_id: bytes) -> bytes:
        return _check_text(type(self), self.value)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(_decode_text(cls, value))


@register_attribute
@dataclass(frozen=True, slots=True)
class Username(_TextAttribute):
    """USERNAME (RFC 8489 §14.3): who is asking; ICE's is ``remote_ufrag:local_ufrag``."""

    TYPE = AttrType.USERNAME


@register_attribute
@dataclass(frozen=True, slots=True)
class Realm(_TextAttribute):
    """REALM (RFC 8489 §14.9): the long-term credential realm."""

    TYPE = AttrType.REALM


@register_attribute
@dataclass(frozen=True, slots=True)
class Nonce(_TextAttribute):
    """NONCE (RFC 8489 §14.10), possibly starting with the security-feature cookie (§9.2)."""

    TYPE = AttrType.NONCE


@register_attribute
@dataclass(frozen=True, slots=True)
class Software(_TextAttribute):
    """SOFTWARE (RFC 8489 §14.14): the agent's name and version, for diagnostics."""

    TYPE = AttrType.SOFTWARE


@register_attribute
@dataclass(frozen=True, slots=True)
class AlternateDomain(_TextAttribute):
    """ALTERNATE-DOMAIN (RFC 8489 §14.16): the TLS name to check at ALTERNATE-SERVER."""

    TYPE = AttrType.ALTERNATE_DOMAIN


# --------------------------------------------------------------------------- opaque bytes


@dataclass(frozen=True, slots=True)
class _BytesAttribute(Attribute):
    value: bytes
    SIZES: ClassVar[tuple[int, ...]] = ()

    def __post_init__(self) -> None:
        if self.SIZES and len(self.value) not in self.SIZES:
            raise LocalProtocolError(
                f"{self.NAME} must be {self.SIZES} bytes, not {len(self.value)}"
            )

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.value

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if cls.SIZES and len(value) not in cls.SIZES:
            raise _fail(cls, f"length {len(value)}, expected {' or '.join(map(str, cls.SIZES))}")
        return cls(value)


@register_attribute
@dataclass(frozen=True, slots=True)
class Userhash(_BytesAttribute):
    """USERHASH (RFC 8489 §14.4): SHA-256 of ``username:realm``, for username anonymity."""

    TYPE = AttrType.USERHASH
    SIZES = (32,)
    WIRE_SIZES = frozenset(SIZES)


@register_attribute
@dataclass(frozen=True, slots=True)
class MessageIntegrity(_BytesAttribute):
    """MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message up to this attribute."""

    TYPE = AttrType.MESSAGE_INTEGRITY
    SIZES = (20,)
    WIRE_SIZES = frozenset(SIZES)


@register_attribute
@dataclass(frozen=True, slots=True)
class MessageIntegritySha256(_BytesAttribute):
    """MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): HMAC-SHA256, possibly truncated to 16-28 bytes."""

    TYPE = AttrType.MESSAGE_INTEGRITY_SHA256
    SIZES = (16, 20, 24, 28, 32)
    WIRE_SIZES = frozenset(SIZES)


@register_attribute
@dataclass(frozen=True, slots=True)
class Padding(_BytesAttribute):
    """PADDING (RFC 5780 §7.6): filler that makes a request or response bigger."""

    TYPE = AttrType.PADDING


# --------------------------------------------------------------------------- numbers and flags


@register_attribute
@dataclass(frozen=True, slots=True)
class Fingerprint(Attribute):
    """FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message XOR 0x5354554E."""

    TYPE = AttrType.FINGERPRINT
    WIRE_SIZES = frozenset({4})
    crc: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        return _U32.pack(self.crc)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) != 4:
            raise _fail(cls, f"length {len(value)}, expected 4")
        return cls(_U32.unpack(value)[0])


@register_attribute
@dataclass(frozen=True, slots=True)
class Priority(Attribute):
    """PRIORITY (RFC 8445 §7.1.1): the priority a peer-reflexive candidate would get."""

    TYPE = AttrType.PRIORITY
    WIRE_SIZES = frozenset({4})
    SHARED = True
    value: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        if not 1 <= self.value <= 0xFFFFFFFF:
            raise LocalProtocolError(f"PRIORITY out of range: {self.value}")
        return _U32.pack(self.value)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) != 4:
            raise _fail(cls, f"length {len(value)}, expected 4")
        return cls(_U32.unpack(value)[0])


@register_attribute
@dataclass(frozen=True, slots=True)
class UseCandidate(Attribute):
    """USE-CANDIDATE (RFC 8445 §7.1.2): the controlling agent nominates this pair."""

    TYPE = AttrType.USE_CANDIDATE
    WIRE_SIZES = frozenset({0})
    SHARED = True

    def encode_value(self, transaction_id: bytes) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if value:
            raise _fail(cls, f"length {len(value)}, expected 0")
        return cls()


@dataclass(frozen=True, slots=True)
class _TieBreakerAttribute(Attribute):
    tie_breaker: int
    WIRE_SIZES = frozenset({8})
    SHARED = True

    def encode_value(self, transaction_id: bytes) -> bytes:
        if not 0 <= self.tie_breaker <= 0xFFFFFFFFFFFFFFFF:
            raise LocalProtocolError(f"{self.NAME} tie-breaker out of range")
        return _U64.pack(self.tie_breaker)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) != 8:
            raise _fail(cls, f"length {len(value)}, expected 8")
        return cls(_U64.unpack(value)[0])


@register_attribute
@dataclass(frozen=True, slots=True)
class IceControlled(_TieBreakerAttribute):
    """ICE-CONTROLLED (RFC 8445 §7.1.3): the sender believes it is controlled; its tie-breaker."""

    TYPE = AttrType.ICE_CONTROLLED


@register_attribute
@dataclass(frozen=True, slots=True)
class IceControlling(_TieBreakerAttribute):
    """ICE-CONTROLLING (RFC 8445 §7.1.3): the sender believes it is controlling; its tie-breaker."""

    TYPE = AttrType.ICE_CONTROLLING


@register_attribute
@dataclass(frozen=True, slots=True)
class ChangeRequest(Attribute):
    """CHANGE-REQUEST (RFC 5780 §7.2): ask the server to answer from another IP and/or port."""

    TYPE = AttrType.CHANGE_REQUEST
    WIRE_SIZES = frozenset({4})
    change_ip: bool = False
    change_port: bool = False

    def encode_value(self, transaction_id: bytes) -> bytes:
        return _U32.pack((0x4 if self.change_ip else 0) | (0x2 if self.change_port else 0))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) != 4:
            raise _fail(cls, f"length {len(value)}, expected 4")
        flags = _U32.unpack(value)[0]
        return cls(bool(flags & 0x4), bool(flags & 0x2))


@register_attribute
@dataclass(frozen=True, slots=True)
class ResponsePort(Attribute):
    """RESPONSE-PORT (RFC 5780 §7.5): the port the response should be sent to."""

    TYPE = AttrType.RESPONSE_PORT
    WIRE_SIZES = frozenset({4})
    port: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        return _U16.pack(self.port) + b"\x00\x00"

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) != 4:
            raise _fail(cls, f"length {len(value)}, expected 4")
        return cls(_U16.unpack_from(value)[0])


# --------------------------------------------------------------------------- errors and lists


class ErrorCodeValue(enum.IntEnum):
    """Registered STUN and TURN error codes (RFC 8489 §14.8, RFC 8656 §19, RFC 8445 §7.3.1.1)."""

    TRY_ALTERNATE = 300
    BAD_REQUEST = 400
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    MOBILITY_FORBIDDEN = 405
    UNKNOWN_ATTRIBUTE = 420
    ALLOCATION_MISMATCH = 437
    STALE_NONCE = 438
    ADDRESS_FAMILY_NOT_SUPPORTED = 440
    WRONG_CREDENTIALS = 441
    UNSUPPORTED_TRANSPORT_PROTOCOL = 442
    PEER_ADDRESS_FAMILY_MISMATCH = 443
    CONNECTION_ALREADY_EXISTS = 446
    CONNECTION_TIMEOUT_OR_FAILURE = 447
    ALLOCATION_QUOTA_REACHED = 486
    ROLE_CONFLICT = 487
    SERVER_ERROR = 500
    INSUFFICIENT_CAPACITY = 508


REASON_PHRASES: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    405: "Mobility Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}


@register_attribute
@dataclass(frozen=True, slots=True)
class ErrorCode(Attribute):
    """ERROR-CODE (RFC 8489 §14.8): a code 300-699 and a reason phrase."""

    TYPE = AttrType.ERROR_CODE
    code: int
    reason: str = ""

    @classmethod
    def of(cls, code: int, reason: str | None = None) -> ErrorCode:
        """Build an ERROR-CODE with the registered reason phrase unless one is given."""
        return cls(code, REASON_PHRASES.get(code, "") if reason is None else reason)

    def encode_value(self, transaction_id: bytes) -> bytes:
        if not 300 <= self.code <= 699:
            raise LocalProtocolError(f"error code out of range: {self.code}")
        reason = _check_text(type(self), self.reason)
        return _ERROR_HEADER.pack(0, self.code // 100, self.code % 100) + reason

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) < 4:
            raise _fail(cls, f"{len(value)} bytes is too short")
        _, error_class, number = _ERROR_HEADER.unpack_from(value)
        error_class &= 0x07
        if not 3 <= error_class <= 6 or number > 99:
            raise _fail(cls, f"bad class {error_class} / number {number}")
        return cls(error_class * 100 + number, _decode_text(cls, value[4:]))


@register_attribute
@dataclass(frozen=True, slots=True)
class UnknownAttributes(Attribute):
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the comprehension-required types a 420 rejects."""

    TYPE = AttrType.UNKNOWN_ATTRIBUTES
    types: tuple[int, ...]

    def encode_value(self, transaction_id: bytes) -> bytes:
        return b"".join(_U16.pack(t) for t in self.types)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) % 2:
            raise _fail(cls, f"odd length {len(value)}")
        return cls(tuple(_U16.unpack_from(value, i)[0] for i in range(0, len(value), 2)))


@dataclass(frozen=True, slots=True)
class AlgorithmEntry:
    """One password algorithm with its parameters (RFC 8489 §14.11, §14.12)."""

    algorithm: int
    parameters: bytes = b""

    def encode(self) -> bytes:
        pad = -len(self.parameters) % 4
        return (
            _U16.pack(self.algorithm)
            + _U16.pack(len(self.parameters))
            + self.parameters
            + (b"\x00" * pad)
        )


def _decode_algorithm(
    cls: type[Attribute], value: bytes, offset: int
) -> tuple[AlgorithmEntry, int]:
    if len(value) - offset < 4:
        raise _fail(cls, "truncated algorithm entry")
    algorithm, length = struct.unpack_from("!HH", value, offset)
    end = offset + 4 + length
    if end > len(value):
        raise _fail(cls, "algorithm parameters overrun the attribute")
    return AlgorithmEntry(algorithm, value[offset + 4 : end]), end + (-length % 4)


@register_attribute
@dataclass(frozen=True, slots=True)
class PasswordAlgorithm(Attribute):
    """PASSWORD-ALGORITHM (RFC 8489 §14.12): the algorithm the client chose for its key."""

    TYPE = AttrType.PASSWORD_ALGORITHM
    algorithm: int
    parameters: bytes = b""

    def encode_value(self, transaction_id: bytes) -> bytes:
        return AlgorithmEntry(self.algorithm, self.parameters).encode()

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        entry, end = _decode_algorithm(cls, value, 0)
        if end < len(value):
            raise _fail(cls, "trailing bytes")
        return cls(entry.algorithm, entry.parameters)


@register_attribute
@dataclass(frozen=True, slots=True)
class PasswordAlgorithms(Attribute):
    """PASSWORD-ALGORITHMS (RFC 8489 §14.11): the algorithms the server offers, in its order."""

    TYPE = AttrType.PASSWORD_ALGORITHMS
    algorithms: tuple[AlgorithmEntry, ...]

    def encode_value(self, transaction_id: bytes) -> bytes:
        return b"".join(entry.encode() for entry in self.algorithms)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        entries = []
        offset = 0
        while offset < len(value):
            entry, offset = _decode_algorithm(cls, value, offset)
            entries.append(entry)
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class UnknownAttribute(Attribute):
    """An attribute no one registered: its type code and raw value, kept as received."""

    type_code: int
    value: bytes

    NAME = "UNKNOWN"

    def encode_value(self, transaction_id: bytes) -> bytes:
        return self.value

    @property
    def attr_type(self) -> int:
        return self.type_code
