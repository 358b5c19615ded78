"""The STUN message: header, class/method packing, attribute walk, integrity (RFC 8489 §5, §14).

:meth:`Message.decode` turns bytes into a :class:`Message` or raises :class:`DecodeError`;
:meth:`Message.encode` turns a message into bytes, appending MESSAGE-INTEGRITY,
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT itself so they are always last and in that order.

A decoded message remembers the bytes it came from, because integrity and fingerprint are checked
over the bytes *as received* (padding included) and the key to check with depends on attributes in
the message (USERNAME, REALM), so checking is a separate step: :meth:`Message.check_integrity`.

Decoding checks everything at once, but builds the typed value of an attribute whose validity is a
matter of length alone (``Attribute.WIRE_SIZES``: PRIORITY, ICE-CONTROLLING, FINGERPRINT, ...) only
when :meth:`Message.get` or :attr:`Message.attributes` first reads it: what a receiver never reads
costs one length check.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable
from typing import TypeVar

from .attributes import (
    _REGISTRY,
    _SHARED_VALUES,
    _TYPE_OF,
    MAGIC_COOKIE,
    MAX_SHARED_LENGTH,
    Attribute,
    AttrType,
    ErrorCode,
    UnknownAttributes,
    attribute_name,
    decode_shared,
)
from .errors import ClassicStunError, DecodeError, LocalProtocolError
from .integrity import FINGERPRINT_XOR, hmac_sha1, hmac_sha256, integrity_matches
from .layout import _SECURITY_TYPES, Layout, layout_of
from .layout import HEADER_SIZE as HEADER_SIZE
from .randomness import new_transaction_id as new_transaction_id

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE_HEADER = struct.Struct("!HH")

_MI = AttrType.MESSAGE_INTEGRITY
_MI256 = AttrType.MESSAGE_INTEGRITY_SHA256
_FP = AttrType.FINGERPRINT

AttributeT = TypeVar("AttributeT", bound=Attribute)


class MessageClass(enum.IntEnum):
    """The two class bits (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS_RESPONSE = 0b10
    ERROR_RESPONSE = 0b11


class Method(enum.IntEnum):
    """Registered STUN methods: Binding (RFC 8489), TURN's (RFC 8656) and TCP relay's (RFC 6062)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class Integrity(enum.Enum):
    """Which integrity attributes :meth:`Message.encode` appends when given a key."""

    SHA1 = "MESSAGE-INTEGRITY"
    SHA256 = "MESSAGE-INTEGRITY-SHA256"
    BOTH = "MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256"


def message_type(method: int, message_class: int) -> int:
    """Interleave a 12-bit method and 2-bit class into the 14-bit message type (RFC 8489 §5)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def split_message_type(value: int) -> tuple[int, MessageClass]:
    """The inverse of :func:`message_type`: ``(method, class)``."""
    cached = _TYPE_TABLE.get(value)
    if cached is not None:
        return cached
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    return method, MessageClass(((value >> 4) & 0b01) | ((value >> 7) & 0b10))


_TYPE_TABLE: dict[int, tuple[int, MessageClass]] = {
    message_type(m, c): (m, c) for m in Method for c in MessageClass
}


class Message:
    """One STUN message: method, class, transaction ID and attributes in wire order.

    Build one to send: ``Message(Method.BINDING, MessageClass.REQUEST, tid, [Software("x")])``,
    then :meth:`encode`. Decode one received: :meth:`decode`, then :meth:`get` its attributes and
    :meth:`check_integrity` / :meth:`check_fingerprint`.
    """

    __slots__ = (
        "_attributes",
        "_layout",
        "_raw",
        "_values",
        "cookie",
        "ignored_count",
        "message_class",
        "method",
        "transaction_id",
        "unknown_required",
    )

    def __init__(
        self,
        method: int,
        message_class: MessageClass,
        transaction_id: bytes,
        attributes: Iterable[Attribute] = (),
        *,
        cookie: int = MAGIC_COOKIE,
    ) -> None:
        if len(transaction_id) != 12:
            raise LocalProtocolError(f"transaction ID must be 12 bytes, not {len(transaction_id)}")
        if not 0 <= method <= 0xFFF:
            raise LocalProtocolError(f"method out of range: {method:#x}")
        self.method = method
        self.message_class = message_class
        self.transaction_id = transaction_id
        self._attributes: list[Attribute] | None = list(attributes)
        # A decoded message keeps its attributes as its layout and their values (None until
        # first read) until the list is asked for.
        self._layout: Layout | None = None
        self._values: list[Attribute | None] = []
        #: The magic cookie field; anything else marks an RFC 3489 message (decoded with
        #: ``allow_classic=True``), whose 128-bit transaction ID is ``cookie`` + ``transaction_id``.
        self.cookie = cookie
        #: Comprehension-required attribute types that no one registered (RFC 8489 §6.3.1: a
        #: server answers a request carrying any with 420 and UNKNOWN-ATTRIBUTES).
        self.unknown_required: tuple[int, ...] = ()
        #: How many attributes after MESSAGE-INTEGRITY(-SHA256) were ignored (RFC 8489 §14.5).
        self.ignored_count = 0
        self._raw: bytes | None = None

    # ------------------------------------------------------------------ access

    @property
    def is_classic(self) -> bool:
        """Whether this is an RFC 3489 message (no magic cookie)."""
        return self.cookie != MAGIC_COOKIE

    @property
    def attributes(self) -> list[Attribute]:
        """The attributes in wire order (MESSAGE-INTEGRITY and FINGERPRINT included when decoded).

        A list the caller may change; once it has been read, :meth:`get` looks in it.
        """
        attributes = self._attributes
        if attributes is None:
            attributes = self._attributes = [
                self._value_at(index) for index in range(len(self._values))
            ]
        return attributes

    @attributes.setter
    def attributes(self, attributes: list[Attribute]) -> None:
        self._attributes = attributes

    def _value_at(self, index: int) -> Attribute:
        """The typed value of the ``index``-th attribute of a decoded message, built once."""
        value = self._values[index]
        if value is None:
            layout = self._layout
            raw = self._raw
            assert layout is not None and raw is not None
            # decode() checked the length, the only thing this class's decoder checks.
            kind = _REGISTRY[layout.codes[index]]
            start, end = layout.starts[index], layout.ends[index]
            if kind.SHARED and end - start <= MAX_SHARED_LENGTH:
                value = _SHARED_VALUES.get(raw[start - 4 : end]) or decode_shared(
                    kind, raw, start, end, self.transaction_id
                )
            else:
                value = kind.decode_value(raw[start:end], self.transaction_id)
            self._values[index] = value
        return value

    def get(self, kind: type[AttributeT]) -> AttributeT | None:
        """The first attribute of this class, or ``None``."""
        if self._attributes is None:  # decoded, and the list not asked for: it has a layout
            layout = self._layout
            found = layout.index_by_kind  # type: ignore[union-attr]
            index = None if found is None else found.get(kind)
            if index is None:
                code = _TYPE_OF.get(kind)
                if code is None:
                    return self._scan(kind)
                codes = layout.codes  # type: ignore[union-attr]
                index = codes.index(code) if code in codes else -1
                if found is not None:  # a kept layout remembers where each class is
                    found[kind] = index
            if index < 0:
                return None
            return self._values[index] or self._value_at(index)  # type: ignore[return-value]
        return self._scan(kind)

    def _scan(self, kind: type[AttributeT]) -> AttributeT | None:
        for attribute in self.attributes:
            if type(attribute) is kind:
                return attribute
        return None

    def get_all(self, kind: type[AttributeT]) -> list[AttributeT]:
        """Every attribute of this class, in wire order."""
        return [a for a in self.attributes if type(a) is kind]

    def has(self, kind: type[Attribute]) -> bool:
        """Whether an attribute of this class is present."""
        if self._attributes is None:  # decoded, and the list not asked for: it has a layout
            code = _TYPE_OF.get(kind)
            if code is not None:
                return code in self._layout.codes  # type: ignore[union-attr]
        return self.get(kind) is not None

    @property
    def content_attributes(self) -> list[Attribute]:
        """The attributes other than MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.

        What to pass to a new message to re-encode a decoded one with fresh integrity.
        """
        return [a for a in self.attributes if a.attr_type not in _SECURITY_TYPES]

    @property
    def error_code(self) -> ErrorCode | None:
        """The ERROR-CODE attribute of an error response, if any."""
        return self.get(ErrorCode)

    def __repr__(self) -> str:
        method = Method(self.method).name if self.method in _METHOD_VALUES else hex(self.method)
        return (
            f"Message({method} {self.message_class.name}, tid={self.transaction_id.hex()}, "
            f"attributes={self.attributes!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.method == other.method
            and self.message_class == other.message_class
            and self.transaction_id == other.transaction_id
            and self.cookie == other.cookie
            and self.attributes == other.attributes
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ responses

    def success_response(self, attributes: Iterable[Attribute] = ()) -> Message:
        """A success response to this request, same method and transaction ID."""
        return Message(
            self.method,
            MessageClass.SUCCESS_RESPONSE,
            self.transaction_id,
            attributes,
            cookie=self.cookie,
        )

    def error_response(
        self, code: int, reason: str | None = None, attributes: Iterable[Attribute] = ()
    ) -> Message:
        """An error response to this request carrying ERROR-CODE (and any other attributes)."""
        response = Message(
            self.method,
            MessageClass.ERROR_RESPONSE,
            self.transaction_id,
            [ErrorCode.of(code, reason)],
            cookie=self.cookie,
        )
        response.attributes.extend(attributes)
        if code == 420 and self.unknown_required and not response.has(UnknownAttributes):
            response.attributes.append(UnknownAttributes(self.unknown_required))
        return response

    # ------------------------------------------------------------------ encode

    def encode(
        self,
        *,
        key: bytes | None = None,
        integrity: Integrity = Integrity.SHA1,
        sha256_length: int = 32,
        fingerprint: bool = False,
        padding: bytes = b"\x00",
    ) -> bytes:
        """Serialise the message.

        With ``key``, append MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 (truncated to
        ``sha256_length`` bytes, 16-32 and a multiple of 4, RFC 8489 §14.6) or both; with
        ``fingerprint``, append FINGERPRINT last. ``padding`` is the byte that fills attributes to a
        multiple of four (zero unless you are reproducing someone else's bytes).

        The attribute list itself must not hold integrity or fingerprint attributes: they are
        computed here, in the right order, every time.
        """
        if len(padding) != 1:
            raise LocalProtocolError("padding must be a single byte")
        transaction_id = self.transaction_id
        pack_attribute = _ATTRIBUTE_HEADER.pack
        buffer = bytearray(HEADER_SIZE)
        for attribute in self.attributes:
            attr_type = attribute.attr_type
            if attr_type in _SECURITY_TYPES:
                raise LocalProtocolError(
                    f"{attribute_name(attr_type)} is added by encode(key=..., fingerprint=...), "
                    "not by the attribute list"
                )
            try:
                value = attribute.encode_value(transaction_id)
                size = len(value)
                if size > 0xFFFF:
                    raise LocalProtocolError(f"{attribute_name(attr_type)} value too long: {size}")
                buffer += pack_attribute(attr_type, size)
            except (struct.error, UnicodeEncodeError) as error:
                # A value out of its wire range (a port, a type code) or text that is not Unicode.
                raise LocalProtocolError(f"{attribute_name(attr_type)}: {error}") from None
            buffer += value
            if size & 3:
                buffer += padding * (4 - (size & 3))
        length = len(buffer) - HEADER_SIZE + (8 if fingerprint else 0)
        with_sha1 = key is not None and integrity is not _SHA256_ONLY
        with_sha256 = key is not None and integrity is not _SHA1_ONLY
        if with_sha1:
            length += 24
        if with_sha256:
            if sha256_length not in (16, 20, 24, 28, 32):
                raise LocalProtocolError("sha256_length must be 16, 20, 24, 28 or 32")
            length += 4 + sha256_length
        if length > 0xFFFF:
            raise LocalProtocolError(f"message too long: {length} bytes of attributes")
        type_field = _TYPE_FIELDS.get((self.method, self.message_class))
        if type_field is None:
            type_field = message_type(self.method, self.message_class)
        _HEADER.pack_into(buffer, 0, type_field, length, self.cookie, transaction_id)
        return seal(
            buffer,
            key=key,
            integrity=integrity,
            sha256_length=sha256_length,
            fingerprint=fingerprint,
        )

    # ------------------------------------------------------------------ decode

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview, *, allow_classic: bool = False
    ) -> Message:
        """Parse one STUN message; raise :class:`DecodeError` (only) if it is malformed.

        Checks the two leading zero bits, that the length field matches the bytes and is a multiple
        of four, the magic cookie (an RFC 3489 message raises :class:`ClassicStunError` unless
        ``allow_classic``), every attribute's framing and value, and that nothing but
        MESSAGE-INTEGRITY-SHA256 and FINGERPRINT follows MESSAGE-INTEGRITY (anything else there is
        ignored, RFC 8489 §14.5) and nothing follows FINGERPRINT.
        """
        data = bytes(data)
        size = len(data)
        if size < HEADER_SIZE:
            raise DecodeError(f"message too short: {size} bytes, the header alone is 20")
        type_field, length, cookie, transaction_id = _HEADER.unpack_from(data)
        if type_field & 0xC000:
            raise DecodeError("the two leading bits are not zero: not a STUN message")
        if length != size - HEADER_SIZE:
            raise DecodeError(f"length field says {length} but {size - HEADER_SIZE} bytes follow")
        if length & 3:
            raise DecodeError(f"length {length} is not a multiple of 4")
        if cookie != MAGIC_COOKIE and not allow_classic:
            raise ClassicStunError(
                f"no magic cookie (found {cookie:#010x}): an RFC 3489 message; "
                "pass allow_classic=True to accept it"
            )
        method, message_class = _TYPE_TABLE.get(type_field) or split_message_type(type_field)
        layout, values = layout_of(data, type_field, length, transaction_id)
        message = cls.__new__(cls)
        message.method = method
        message.message_class = message_class
        message.transaction_id = transaction_id
        message.cookie = cookie
        message.unknown_required = layout.unknown_required
        message.ignored_count = layout.ignored_count
        message._attributes = None
        message._layout = layout
        message._values = values
        message._raw = data
        return message

    # ------------------------------------------------------------------ verification

    @staticmethod
    def _not_received() -> LocalProtocolError:
        return LocalProtocolError("only a decoded message can be checked; encode() then decode()")

    @property
    def has_fingerprint(self) -> bool:
        """Whether the received message ends with FINGERPRINT (not whether it matches)."""
        return self._layout is not None and self._layout.fingerprint_at >= 0

    @property
    def has_integrity(self) -> bool:
        """Whether the received message carried MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256."""
        layout = self._layout
        return layout is not None and (layout.integrity_at >= 0 or layout.sha256_at >= 0)

    def check_integrity(self, key: bytes) -> bool:
        """Verify the received message's integrity with ``key`` (RFC 8489 §9.1.4, §9.2.4).

        Uses MESSAGE-INTEGRITY-SHA256 when present (the stronger one), else MESSAGE-INTEGRITY,
        over the bytes as received with the length field patched to end at that attribute.
        Returns ``False`` when neither attribute is present or the HMAC does not match;
        the comparison is constant-time.
        """
        raw = self._raw
        layout = self._layout
        if raw is None or layout is None:
            raise self._not_received()
        at = layout.sha256_at
        if at >= 0:
            return integrity_matches(key, raw, at, layout.sha256_length)
        at = layout.integrity_at
        if at >= 0:
            return integrity_matches(key, raw, at, layout.sha1_length)
        return False

    def check_fingerprint(self) -> bool:
        """Whether the received message has a FINGERPRINT and it matches (RFC 8489 §14.7)."""
        raw = self._raw
        layout = self._layout
        if raw is None or layout is None:
            raise self._not_received()
        at = layout.fingerprint_at
        if at < 0:
            return False
        claimed: int = _FINGERPRINT_VALUE.unpack_from(raw, at + 4)[0]
        return claimed == zlib.crc32(raw[:at]) ^ FINGERPRINT_XOR


def seal(
    buffer: bytearray,
    *,
    key: bytes | None,
    integrity: Integrity = Integrity.SHA1,
    sha256_length: int = 32,
    fingerprint: bool = False,
) -> bytes:
    """The message encoded in ``buffer`` up to its integrity attributes, completed: with ``key``,
    MESSAGE-INTEGRITY and/or MESSAGE-INTEGRITY-SHA256 (``sha256_length`` bytes of it) appended,
    each covering the header with its length patched to end at that attribute (RFC 8489 §14.5,
    §14.6); with ``fingerprint``, FINGERPRINT last (§14.7). The header's length field must
    already count what is appended. The end of :meth:`Message.encode`, and of the answers the
    TURN server builds from prepared templates."""
    if key is not None:
        length = _LENGTH.unpack_from(buffer, 2)[0]
        if integrity is not _SHA256_ONLY:
            _LENGTH.pack_into(buffer, 2, len(buffer) - HEADER_SIZE + 24)
            buffer += _MI_HEADER + hmac_sha1(key, buffer)
        if integrity is not _SHA1_ONLY:
            _LENGTH.pack_into(buffer, 2, len(buffer) - HEADER_SIZE + 4 + sha256_length)
            mac = hmac_sha256(key, buffer)[:sha256_length]
            buffer += _ATTRIBUTE_HEADER.pack(_MI256, sha256_length) + mac
        _LENGTH.pack_into(buffer, 2, length)
    if fingerprint:
        buffer += _FP_HEADER + _FINGERPRINT_VALUE.pack(_crc(buffer) ^ FINGERPRINT_XOR)
    return bytes(buffer)


_LENGTH = struct.Struct("!H")
_FINGERPRINT_VALUE = struct.Struct("!I")
_MI_HEADER = _ATTRIBUTE_HEADER.pack(_MI, 20)
_FP_HEADER = _ATTRIBUTE_HEADER.pack(_FP, 4)
_TYPE_FIELDS: dict[tuple[int, int], int] = {
    (m, c): message_type(m, c) for m in Method for c in MessageClass
}
_crc = zlib.crc32
_METHOD_VALUES = frozenset(int(m) for m in Method)
_SHA1_ONLY = Integrity.SHA1
_SHA256_ONLY = Integrity.SHA256
