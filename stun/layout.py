"""Where a STUN message's attributes sit: the checked attribute walk, and its cache (RFC 8489 §14).

:func:`walk` checks a message's attribute framing (RFC 8489 §14: every attribute inside the
message, nothing but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT after MESSAGE-INTEGRITY, nothing
after FINGERPRINT) and every value whose validity depends on more than its length, and returns the
message's :class:`Layout`: type codes, offsets, and where the integrity attributes are.

Two messages whose attribute headers (types and lengths) are byte for byte the same have the same
layout, so a layout is kept per message type and length and reused when the next message's
headers, read in one ``struct`` call, match it — as the checks, consent checks and responses
exchanged with one peer do. Only values that must be checked byte by byte (text, addresses,
unknown attributes) are then decoded again. The cache is bounded and any miss takes the full walk,
so its contents change how fast a message decodes, never how it decodes.
"""

from __future__ import annotations

import struct

from .attributes import (
    _LAYOUT_CACHE,
    _LAZY_SIZES,
    _REGISTRY,
    Attribute,
    AttrType,
    UnknownAttribute,
    attribute_name,
)
from .errors import DecodeError

HEADER_SIZE = 20
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_LENGTH = struct.Struct("!H")
_MI = AttrType.MESSAGE_INTEGRITY
_MI256 = AttrType.MESSAGE_INTEGRITY_SHA256
_FP = AttrType.FINGERPRINT
_SECURITY_TYPES = frozenset((_MI, _MI256, _FP))
#: How many layouts are kept; past it the cache starts again empty.
MAX_CACHED_LAYOUTS = 256

#: An attribute whose value is decoded with every message: (index, class or None if unknown,
#: type code, value start, value end).
EagerValue = tuple[int, type[Attribute] | None, int, int, int]


class Layout:
    """The attribute layout of one decoded message, shared by every message with its headers."""

    __slots__ = (
        "all_headers",
        "codes",
        "eager",
        "ends",
        "expected",
        "fingerprint_at",
        "headers",
        "ignored_count",
        "index",
        "integrity_at",
        "sha1_length",
        "sha256_at",
        "sha256_length",
        "starts",
        "unknown_required",
    )

    def __init__(
        self,
        codes: list[int],
        offsets: list[int],
        ends: list[int],
        eager: list[EagerValue],
        all_headers: list[tuple[int, int, int]],
    ) -> None:
        #: Type codes of the attributes kept, in wire order, and where each one's value starts
        #: and ends in the message.
        self.codes = tuple(codes)
        self.starts = tuple(at + 4 for at in offsets)
        self.ends = tuple(ends)
        #: The index of the first attribute of each type code.
        self.index: dict[int, int] = {}
        for position, code in enumerate(codes):
            self.index.setdefault(code, position)
        self.eager = tuple(eager)
        self.integrity_at = self.sha256_at = self.fingerprint_at = -1
        self.sha1_length = self.sha256_length = b""
        self.ignored_count = 0
        self.unknown_required: tuple[int, ...] = ()
        self.all_headers = all_headers
        self.headers: struct.Struct | None = None
        self.expected: tuple[int, ...] = ()

    def matches(self, data: bytes) -> bool:
        """Whether ``data`` (of this layout's message type and length) has the same headers."""
        if self.headers is None:  # built for the second message of a kind, not for every miss
            self._compile()
            assert self.headers is not None
        return self.headers.unpack_from(data) == self.expected

    def _compile(self) -> None:
        """One struct that reads every attribute header (ignored ones too) in one call."""
        format_parts = ["!", f"{HEADER_SIZE}x"]
        position = HEADER_SIZE
        expected: list[int] = []
        for at, code, length in self.all_headers:
            if at > position:
                format_parts.append(f"{at - position}x")
            format_parts.append("HH")
            expected += (code, length)
            position = at + 4
        self.headers = struct.Struct("".join(format_parts))
        self.expected = tuple(expected)

    def values_of(self, data: bytes, transaction_id: bytes) -> list[Attribute | None]:
        """The values checked byte by byte, decoded from ``data``; ``None`` for the others."""
        values: list[Attribute | None] = [None] * len(self.codes)
        for index, kind, code, start, end in self.eager:
            if kind is None:
                values[index] = UnknownAttribute(code, data[start:end])
            else:
                values[index] = kind.decode_value(data[start:end], transaction_id)
        return values


def walk(data: bytes, transaction_id: bytes) -> tuple[Layout, list[Attribute | None]]:
    """Check the attributes of ``data`` (a message whose header has been checked).

    Returns its layout and the values decoded on the way (``None`` for values checked by length
    and decoded when read); raises :class:`DecodeError` for anything malformed.
    """
    size = len(data)
    codes: list[int] = []
    offsets: list[int] = []
    ends: list[int] = []
    eager: list[EagerValue] = []
    values: list[Attribute | None] = []
    all_headers: list[tuple[int, int, int]] = []
    unknown_required: list[int] = []
    ignored = 0
    protected = False
    integrity_at = sha256_at = fingerprint_at = -1
    offset = HEADER_SIZE
    unpack_attribute = _ATTRIBUTE_HEADER.unpack_from
    # Every attribute ends on a 4-byte boundary and so does the message: a header always fits.
    while offset < size:
        attr_type, attr_length = unpack_attribute(data, offset)
        start = offset + 4
        end = start + attr_length
        next_offset = end + (-attr_length & 3)
        if next_offset > size:
            raise DecodeError(
                f"attribute {attribute_name(attr_type)} at offset {offset}: "
                f"length {attr_length} runs past the end of the message"
            )
        all_headers.append((offset, attr_type, attr_length))
        if attr_type in _SECURITY_TYPES:
            if attr_type == _FP:
                if next_offset < size:
                    following = unpack_attribute(data, next_offset)[0]
                    raise DecodeError(f"attribute {attribute_name(following)} after FINGERPRINT")
                fingerprint_at = offset
            elif attr_type == _MI256 and sha256_at < 0:
                sha256_at = offset
            elif not protected:
                integrity_at = offset
            else:  # a second MESSAGE-INTEGRITY(-SHA256), or SHA-1 after SHA-256
                ignored += 1
                offset = next_offset
                continue
            protected = True
        elif protected:
            ignored += 1
            offset = next_offset
            continue
        index = len(codes)
        codes.append(attr_type)
        offsets.append(offset)
        ends.append(end)
        sizes = _LAZY_SIZES.get(attr_type)
        if sizes is not None and attr_length in sizes:
            values.append(None)  # valid whatever its bytes: built when first read
        else:
            kind = _REGISTRY.get(attr_type)
            if kind is None:
                values.append(UnknownAttribute(attr_type, data[start:end]))
                if attr_type < 0x8000:
                    unknown_required.append(attr_type)
            else:  # raises DecodeError here and now if the value is malformed
                values.append(kind.decode_value(data[start:end], transaction_id))
            eager.append((index, kind, attr_type, start, end))
        offset = next_offset
    layout = Layout(codes, offsets, ends, eager, all_headers)
    layout.integrity_at = integrity_at
    layout.sha256_at = sha256_at
    layout.fingerprint_at = fingerprint_at
    # Each MAC covers the header with its length patched to end at that MAC (§14.5-14.6).
    if integrity_at >= 0:
        layout.sha1_length = _LENGTH.pack(integrity_at - HEADER_SIZE + 24)
    if sha256_at >= 0:
        layout.sha256_length = _LENGTH.pack(sha256_at - HEADER_SIZE + 4 + data[sha256_at + 3])
    layout.ignored_count = ignored
    layout.unknown_required = tuple(unknown_required)
    return layout, values


def layout_of(
    data: bytes, type_field: int, length: int, transaction_id: bytes
) -> tuple[Layout, list[Attribute | None]]:
    """:func:`walk`, or the cached layout of an earlier message with the same headers."""
    key = (type_field, length)
    layout = _LAYOUT_CACHE.get(key)
    if layout is not None and layout.matches(data):
        return layout, layout.values_of(data, transaction_id)
    layout, values = walk(data, transaction_id)
    if len(_LAYOUT_CACHE) >= MAX_CACHED_LAYOUTS:
        _LAYOUT_CACHE.clear()
    _LAYOUT_CACHE[key] = layout
    return layout, values
