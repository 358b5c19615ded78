"""Where a STUN message's attributes sit: the checked attribute walk, and its cache (RFC 8489 §14).

:func:`walk` checks a message's attribute framing (RFC 8489 §14: every attribute inside the
message, nothing but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT after MESSAGE-INTEGRITY, nothing
after FINGERPRINT) and every value whose validity depends on more than its length, and returns the
message's :class:`Layout`: type codes, where each value sits, where the integrity attributes are.

Two messages whose attribute headers (types and lengths) are byte for byte the same have the same
layout, so layouts are kept per message type and length and reused when the next message's
headers, read in one ``struct`` call, match — as the checks, consent checks and responses
exchanged with one peer do. Only values that must be checked byte by byte (text, addresses,
unknown attributes) are then decoded again.

What is kept is chosen so that traffic whose shapes do not repeat (a relay's Send indications,
whose DATA varies in length) costs little more than the walk itself: until a key's
:data:`KEEP_AFTER`-th message the cache holds only a one-byte count for it (in a table of
:data:`BUCKETS`), and that message's layout is kept (with its header ``struct``, about half a
walk's work to build); a layout that misses more often than it hits is dropped, and its key walks
the next :data:`RETRY_AFTER` messages before keeping a layout again; past
:data:`MAX_CACHED_LAYOUTS` layouts the oldest is forgotten. Any miss takes the full walk, so the
cache changes how fast a message decodes, never how it decodes.
"""

from __future__ import annotations

import struct

from .attributes import (
    _LAYOUT_CACHE,
    _LAZY_SIZES,
    _REGISTRY,
    _SHARED_VALUES,
    MAX_SHARED_LENGTH,
    Attribute,
    AttrType,
    UnknownAttribute,
    attribute_name,
    decode_shared,
)
from .errors import DecodeError

HEADER_SIZE = 20
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_LENGTH = struct.Struct("!H")
_MI = AttrType.MESSAGE_INTEGRITY
_MI256 = AttrType.MESSAGE_INTEGRITY_SHA256
_FP = AttrType.FINGERPRINT
_SECURITY_TYPES = frozenset((_MI, _MI256, _FP))
#: How many layouts the cache keeps; past it the oldest is forgotten.
MAX_CACHED_LAYOUTS = 512
#: Which message of a key (while the cache remembers the key) has its layout kept.
KEEP_AFTER = 4
#: How many messages of a key are walked, after its layout was dropped for missing more often
#: than it hit, before a layout is kept for it again (at most 254: a bucket's count is a byte).
RETRY_AFTER = 250
#: Message types and lengths are counted in this many buckets (a power of two): a bucket holds
#: how many more of its messages to walk before one's layout is kept, or _KEPT once one is (in
#: _LAYOUT_CACHE, by exact type and length). A byte per bucket, so that the count a message
#: checks is in a few cache lines; keys sharing a bucket share its count, which changes when a
#: layout is kept, never what is decoded.
BUCKETS = 4096
_BUCKET_MASK = BUCKETS - 1
_KEPT = 255
_FRESH = bytes([KEEP_AFTER - 1]) * BUCKETS
_REMAINING = bytearray(_FRESH)
#: How many runs of shared values a kept layout remembers (a peer-grown table: bounded).
MAX_RUNS = 16

#: An attribute whose value is decoded with every message: (index, class or None if unknown,
#: type code, value start, value end, whether its value is shared: ``decode_shared``).
EagerValue = tuple[int, type[Attribute] | None, int, int, int, bool]


class Layout:
    """The attribute layout of one decoded message, shared by every message with its headers."""

    __slots__ = (
        "codes",
        "ends",
        "fingerprint_at",
        "ignored_count",
        "index_by_kind",
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
        starts: list[int],
        ends: list[int],
        integrity_at: int,
        sha256_at: int,
        fingerprint_at: int,
        ignored_count: int,
        unknown_required: tuple[int, ...],
        sha1_length: bytes,
        sha256_length: bytes,
    ) -> None:
        #: Type codes of the attributes kept, in wire order, and where each one's value starts
        #: and ends in the message.
        self.codes = codes
        self.starts = starts
        self.ends = ends
        #: A kept layout's: where the first attribute of each registered class asked for is in
        #: ``codes`` (-1: absent), filled by :meth:`stun.Message.get` as classes are asked for.
        self.index_by_kind: dict[type[Attribute], int] | None = None
        #: Where MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT start (-1: absent).
        self.integrity_at = integrity_at
        self.sha256_at = sha256_at
        self.fingerprint_at = fingerprint_at
        self.ignored_count = ignored_count
        self.unknown_required = unknown_required
        #: The length field each MAC covers, patched to end at that MAC (§14.5-14.6).
        self.sha1_length = sha1_length
        self.sha256_length = sha256_length


class KeptLayout:
    """A layout the cache keeps for its message type and length, with what reuses it: the struct
    that reads every attribute header in one call and the values decoded with every message
    (the others are checked by length)."""

    __slots__ = (
        "eager",
        "expected",
        "headers",
        "hits",
        "last_miss",
        "layout",
        "misses",
        "recurring",
        "run",
        "runs",
        "shared_at",
        "unshared",
    )

    def __init__(self, layout: Layout) -> None:
        """For a layout without ignored attributes, whose attributes follow one another."""
        self.layout = layout
        layout.index_by_kind = {}
        self.eager: list[EagerValue] = []
        #: Values checked by length whose class is shared (a peer's PRIORITY, tie-breaker):
        #: (index, attribute start, value end, class). Looked up with every message, decoded
        #: only when read and not seen before.
        self.recurring: list[tuple[int, int, int, type[Attribute]]] = []
        #: The eager values that are decoded with every message.
        self.unshared: list[EagerValue] = []
        #: Where the shared values are, in wire order.
        self.shared_at: list[int] = []
        expected: list[int] = []
        padded: list[int] = []
        for position, code in enumerate(layout.codes):
            start, end = layout.starts[position], layout.ends[position]
            length = end - start
            expected += (code, length)
            padded.append(length + (-length & 3))
            sizes = _LAZY_SIZES.get(code)
            kind = _REGISTRY.get(code)
            is_shared = kind is not None and kind.SHARED and length <= MAX_SHARED_LENGTH
            if is_shared:
                self.shared_at.append(position)
            if sizes is None or length not in sizes:
                self.eager.append((position, kind, code, start, end, is_shared))
                if not is_shared:
                    self.unshared.append(self.eager[-1])
            elif is_shared and kind is not None:
                self.recurring.append((position, start - 4, end, kind))
        self.headers = struct.Struct(f"!{HEADER_SIZE}x" + "HH%dx" * len(padded) % tuple(padded))
        self.expected = tuple(expected)
        self.hits = self.misses = 0
        #: The bytes of all the shared values (headers and values) when they follow one another:
        #: their values by those bytes (at most :data:`MAX_RUNS`), so that a peer's next check
        #: finds them all with one lookup.
        self.run: tuple[int, int] | None = None
        shared_at = self.shared_at
        if len(shared_at) > 1 and shared_at[-1] - shared_at[0] == len(shared_at) - 1:
            self.run = (layout.starts[shared_at[0]] - 4, layout.ends[shared_at[-1]])
        self.runs: dict[bytes, list[Attribute | None]] = {}
        #: The run's bytes at the last miss: a run is kept when it misses twice in a row (a
        #: steady peer's), so that one whose values never repeat costs nothing more.
        self.last_miss = b""

    def values_of(self, data: bytes, transaction_id: bytes) -> list[Attribute | None]:
        """The values checked byte by byte, decoded from ``data``, and the shared values its
        bytes had before; ``None`` for the others."""
        run = self.run
        key = b""
        if run is not None:
            key = data[run[0] : run[1]]
            template = self.runs.get(key)
            if template is not None:
                values = template.copy()
                for index, kind, code, start, end, _ in self.unshared:
                    if kind is None:
                        values[index] = UnknownAttribute(code, data[start:end])
                    else:
                        values[index] = kind.decode_value(data[start:end], transaction_id)
                return values
        values = [None] * len(self.layout.codes)
        known = _SHARED_VALUES.get
        for index, start, end, _ in self.recurring:
            values[index] = known(data[start:end])
        for index, kind, code, start, end, is_shared in self.eager:
            if kind is None:
                values[index] = UnknownAttribute(code, data[start:end])
            elif is_shared:
                values[index] = known(data[start - 4 : end]) or decode_shared(
                    kind, data, start, end, transaction_id
                )
            else:
                values[index] = kind.decode_value(data[start:end], transaction_id)
        if run is not None:
            if key == self.last_miss:
                self._keep_run(key, values, data, transaction_id)
            self.last_miss = key
        return values

    def _keep_run(
        self, key: bytes, values: list[Attribute | None], data: bytes, transaction_id: bytes
    ) -> None:
        """Remember the shared values of ``values`` by their bytes ``key``, decoding those not
        read yet (valid whatever their bytes)."""
        for index, start, end, kind in self.recurring:
            if values[index] is None:
                values[index] = decode_shared(kind, data, start + 4, end, transaction_id)
        if len(self.runs) >= MAX_RUNS:
            self.runs.clear()
        template: list[Attribute | None] = [None] * len(values)
        for index in self.shared_at:
            template[index] = values[index]
        self.runs[key] = template


def walk(data: bytes, transaction_id: bytes) -> tuple[Layout, list[Attribute | None]]:
    """Check the attributes of ``data`` (a message whose header has been checked).

    Returns its layout and the values decoded on the way (``None`` for values checked by length
    and decoded when read); raises :class:`DecodeError` for anything malformed.
    """
    size = len(data)
    codes: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    values: list[Attribute | None] = []
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
        codes.append(attr_type)
        starts.append(start)
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
            elif kind.SHARED and attr_length <= MAX_SHARED_LENGTH:
                values.append(decode_shared(kind, data, start, end, transaction_id))
            else:
                values.append(kind.decode_value(data[start:end], transaction_id))
        offset = next_offset
    # Each MAC covers the header with its length patched to end at that MAC (§14.5-14.6).
    sha1_length = _LENGTH.pack(integrity_at - HEADER_SIZE + 24) if integrity_at >= 0 else b""
    sha256_length = (
        _LENGTH.pack(sha256_at - HEADER_SIZE + 4 + data[sha256_at + 3]) if sha256_at >= 0 else b""
    )
    layout = Layout(
        codes,
        starts,
        ends,
        integrity_at,
        sha256_at,
        fingerprint_at,
        ignored,
        tuple(unknown_required) if unknown_required else (),
        sha1_length,
        sha256_length,
    )
    return layout, values


def layout_of(
    data: bytes, type_field: int, length: int, transaction_id: bytes
) -> tuple[Layout, list[Attribute | None]]:
    """The cached layout of an earlier message with the same headers, or :func:`walk`'s."""
    bucket = (length >> 2 ^ type_field << 3) & _BUCKET_MASK
    remaining = _REMAINING[bucket]
    if remaining == _KEPT:
        key = type_field << 16 | length
        kept = _LAYOUT_CACHE.get(key)
        if kept is not None:
            if kept.headers.unpack_from(data) == kept.expected:
                kept.hits += 1
                return kept.layout, kept.values_of(data, transaction_id)
            kept.misses += 1
            if kept.misses > kept.hits:  # it does not pay
                del _LAYOUT_CACHE[key]
                _REMAINING[bucket] = RETRY_AFTER
            return walk(data, transaction_id)
        # The bucket's layout is another key's, or was forgotten: when the cache is full, it
        # forgets layouts before they are used, and keeping more would only cost.
        remaining = RETRY_AFTER if len(_LAYOUT_CACHE) >= MAX_CACHED_LAYOUTS else KEEP_AFTER - 1
    layout, values = walk(data, transaction_id)
    if remaining:
        _REMAINING[bucket] = remaining - 1
    elif not layout.ignored_count:
        key = type_field << 16 | length
        if key not in _LAYOUT_CACHE and len(_LAYOUT_CACHE) >= MAX_CACHED_LAYOUTS:
            del _LAYOUT_CACHE[next(iter(_LAYOUT_CACHE))]  # only when one is added
        _LAYOUT_CACHE[key] = KeptLayout(layout)
        _REMAINING[bucket] = _KEPT
    return layout, values


def forget_layouts() -> None:
    """Empty the caches: every key starts again from its first message, every shared value is
    decoded again."""
    _LAYOUT_CACHE.clear()
    _SHARED_VALUES.clear()
    _REMAINING[:] = _FRESH
