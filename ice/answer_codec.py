"""The peer's connectivity checks read, and answered, from their bytes (RFC 8445 §7.3.1).

An agent answers every check its peer sends, so reading a Binding request and writing its success
response is the one codec work of every check. :func:`read_check` reads a request of the shape
ICE agents send — USERNAME, PRIORITY, ICE-CONTROLLING or ICE-CONTROLLED, USE-CANDIDATE, in any
order, with any comprehension-optional attribute no class is registered for (a browser's
GOOG-NETWORK-INFO), then MESSAGE-INTEGRITY and optionally FINGERPRINT — without building a
:class:`~stun.Message` or an attribute object. The first check of a shape (which attributes, in
which order, of which lengths) is read by a walk over its attribute headers, which keeps the
shape: two ``struct`` formats, one that reads every header to compare them with the shape's, one
that reads every value. A peer's later checks have one of its shapes (a few per message size
are kept, peer-grown and so bounded) and are read by the two. Anything else (an attribute not
named here, or registered since its shape was kept; one twice; a length the attribute cannot
have; MESSAGE-INTEGRITY-SHA256; something after MESSAGE-INTEGRITY but FINGERPRINT; a FINGERPRINT
that does not match; a USERNAME that is not UTF-8) gives ``None``: :meth:`stun.Message.decode`
and the typed path decide about it, so what they refuse is refused the same way. The integrity
of what is read (always a MESSAGE-INTEGRITY, HMAC-SHA1) is checked by the caller with
:func:`stun.integrity.sha1_integrity_matches`, the check behind
:meth:`stun.Message.check_integrity`, with its password prepared once.

:func:`success_response` writes the answer of an authenticated check (§7.3.1.2): XOR-MAPPED-ADDRESS
of the request's source, MESSAGE-INTEGRITY with the local password, FINGERPRINT — the bytes
``Message.success_response([XorMappedAddress(source)]).encode(key=..., fingerprint=True)`` gives.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from stun import MAGIC_COOKIE, Address
from stun.address import AddressFamily, pack_host
from stun.attributes import MAX_TEXT_BYTES, AttrType, XorMappedAddress, registered_attribute
from stun.integrity import FINGERPRINT_XOR, PreparedKey, keyed_hmac

_HEADER = struct.Struct("!HHI")
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_BINDING_REQUEST = 0x0001
_USERNAME = int(AttrType.USERNAME)
_PRIORITY = int(AttrType.PRIORITY)
_CONTROLLING = int(AttrType.ICE_CONTROLLING)
_CONTROLLED = int(AttrType.ICE_CONTROLLED)
_USE_CANDIDATE = int(AttrType.USE_CANDIDATE)
_MI = int(AttrType.MESSAGE_INTEGRITY)
_FP = int(AttrType.FINGERPRINT)
_new_tuple = tuple.__new__


class CheckRequest(NamedTuple):
    """What answering a check reads of a Binding request (RFC 8445 §7.3.1)."""

    transaction_id: bytes
    username: str
    #: PRIORITY, ICE-CONTROLLING's and ICE-CONTROLLED's tie-breakers: ``None`` when absent.
    priority: int | None
    controlling: int | None
    controlled: int | None
    use_candidate: bool


def read_check(data: bytes) -> tuple[CheckRequest, int, bytes] | None:
    """The check a Binding request of the common shape carries (module docstring), where its
    MESSAGE-INTEGRITY starts and the length field its HMAC covers (RFC 8489 §14.5: what
    :func:`stun.integrity.sha1_integrity_matches` takes); ``None`` for any other bytes: the
    typed path decides about them."""
    size = len(data)
    for shape in _SHAPES.get(size, ()):
        if shape.headers.unpack_from(data) == shape.expected:
            break
    else:
        walked = _shape_of(data, size)
        if walked is None:
            return None
        shape = walked
    for code in shape.unknown:
        if registered_attribute(code) is not None:
            return None  # registered since the shape was kept: the typed decoder reads it now
    values = shape.values.unpack_from(data) + _ABSENT
    fingerprint_at = shape.fingerprint_at
    if fingerprint_at >= 0 and values[shape.fingerprint] != (
        zlib.crc32(data[:fingerprint_at]) ^ FINGERPRINT_XOR
    ):
        return None
    try:
        username = values[shape.username].decode()
    except UnicodeDecodeError:
        return None
    request = _new_tuple(
        CheckRequest,
        (
            data[8:20],
            username,
            values[shape.priority],
            values[shape.controlling],
            values[shape.controlled],
            shape.use_candidate,
        ),
    )
    return request, shape.integrity_at, shape.integrity_length


#: How many message sizes :func:`read_check` keeps shapes of before it forgets them all, and
#: how many shapes of one size (a peer's checks have two sizes, with and without USE-CANDIDATE;
#: a controlling agent's and a controlled one's have the same size, not the same shape).
MAX_SIZES = 64
MAX_SHAPES_PER_SIZE = 4
#: What a shape reads for an attribute it does not have: ``values[-1]``.
_ABSENT = (None,)


class _Shape:
    """Where the attributes of a check of one layout are: one ``struct`` that reads the
    message's header and every attribute header, to compare with those of the message the shape
    was made from, and one that reads every value (RFC 8489 §5, §14)."""

    __slots__ = (
        "controlled",
        "controlling",
        "expected",
        "fingerprint",
        "fingerprint_at",
        "headers",
        "integrity_at",
        "integrity_length",
        "priority",
        "unknown",
        "use_candidate",
        "username",
        "values",
    )

    def __init__(self, expected: tuple[int, ...], headers: str, values: str) -> None:
        self.expected = expected
        self.headers = struct.Struct(headers)
        self.values = struct.Struct(values)
        #: Where each value is in what :attr:`values` reads (-1: absent, ``_ABSENT``).
        self.username = self.priority = self.controlling = self.controlled = -1
        self.fingerprint = -1
        #: The comprehension-optional attributes no class is registered for, which the typed
        #: decoder keeps as they are and the agent ignores: their type codes.
        self.unknown: tuple[int, ...] = ()
        self.use_candidate = False
        self.integrity_at = self.fingerprint_at = -1
        self.integrity_length = b""


#: The value each attribute of a check has in a shape's ``values``: its format, and the slot of
#: the shape that says where it is.
_VALUE_FORMATS = {
    _USERNAME: ("s", "username"),
    _PRIORITY: ("I", "priority"),
    _CONTROLLING: ("Q", "controlling"),
    _CONTROLLED: ("Q", "controlled"),
    _FP: ("I", "fingerprint"),
}
#: The lengths of the attributes of a check but USERNAME's (any up to MAX_TEXT_BYTES) and
#: MESSAGE-INTEGRITY's (which ends what the walk reads but FINGERPRINT).
_CHECK_LENGTHS = {_PRIORITY: 4, _CONTROLLING: 8, _CONTROLLED: 8, _USE_CANDIDATE: 0}
#: The attributes of a check that a shape reads or checks.
_KNOWN = frozenset((*_VALUE_FORMATS, *_CHECK_LENGTHS, _MI))
#: Shapes by message size, the most recent last.
_SHAPES: dict[int, list[_Shape]] = {}


def _shape_of(data: bytes, size: int) -> _Shape | None:
    """The shape of ``data`` if it is a check of the common shape (one walk over its attributes,
    the checks of the module docstring but the FINGERPRINT's value and the USERNAME's UTF-8),
    kept for its size; ``None`` for anything else."""
    if size < 20 or size & 3:  # a STUN message's length is a multiple of 4 (RFC 8489 §5)
        return None
    kind, length, cookie = _HEADER.unpack_from(data)
    if kind != _BINDING_REQUEST or length != size - 20 or cookie != MAGIC_COOKIE:
        return None
    unpack = _ATTRIBUTE_HEADER.unpack_from
    layout: list[tuple[int, int]] = []
    seen: set[int] = set()
    integrity_at = fingerprint_at = -1
    offset = 20
    # Every attribute ends on a 4-byte boundary: the last one ends at ``size`` or runs past it.
    while offset < size:
        attr_type, attr_length = unpack(data, offset)
        end = offset + 4 + attr_length + (-attr_length & 3)
        if end > size or attr_type in seen:
            return None
        if integrity_at >= 0:
            # Only a FINGERPRINT that ends the message may follow MESSAGE-INTEGRITY.
            if attr_type != _FP or attr_length != 4 or end != size:
                return None
            fingerprint_at = offset
        elif attr_type == _MI and attr_length == 20:
            integrity_at = offset
        elif _CHECK_LENGTHS.get(attr_type) != attr_length and not (
            (attr_type == _USERNAME and attr_length <= MAX_TEXT_BYTES)
            or (attr_type >= 0x8000 and registered_attribute(attr_type) is None)
        ):
            return None
        seen.add(attr_type)
        layout.append((attr_type, attr_length))
        offset = end
    if integrity_at < 0 or _USERNAME not in seen:
        return None
    shape = _build(layout, size)
    shape.integrity_at = integrity_at
    shape.integrity_length = (integrity_at + 4).to_bytes(2, "big")
    shape.fingerprint_at = fingerprint_at
    kept = _SHAPES.get(size)
    if kept is None:
        if len(_SHAPES) >= MAX_SIZES:
            _SHAPES.clear()
        _SHAPES[size] = [shape]
    else:
        if len(kept) >= MAX_SHAPES_PER_SIZE:
            del kept[0]
        kept.append(shape)
    return shape


def _build(layout: list[tuple[int, int]], size: int) -> _Shape:
    """The shape of a check of ``size`` bytes whose attributes have these types and lengths."""
    expected = [_BINDING_REQUEST, size - 20, MAGIC_COOKIE]
    headers = ["!HHI12x"]
    values = ["!20x"]
    slots: list[tuple[str, int]] = []
    for attr_type, attr_length in layout:
        padded = attr_length + (-attr_length & 3)
        expected += (attr_type, attr_length)
        headers.append(f"HH{padded}x")
        value = _VALUE_FORMATS.get(attr_type)
        if value is None:  # USE-CANDIDATE, MESSAGE-INTEGRITY, unknown: their headers say all
            values.append(f"{4 + padded}x")
            continue
        code, slot = value
        slots.append((slot, len(slots)))
        if code == "s":
            values.append(f"4x{attr_length}s{padded - attr_length}x")
        else:
            values.append(f"4x{code}")
    shape = _Shape(tuple(expected), "".join(headers), "".join(values))
    for slot, index in slots:
        setattr(shape, slot, index)
    shape.use_candidate = any(attr_type == _USE_CANDIDATE for attr_type, _ in layout)
    shape.unknown = tuple(code for code, _ in layout if code not in _KNOWN)
    return shape


_MI_HEADER = _ATTRIBUTE_HEADER.pack(_MI, 20)
_FP_HEADER = _ATTRIBUTE_HEADER.pack(_FP, 4)
#: The transaction ID and the XOR-MAPPED-ADDRESS of an IPv4 source: the attribute's type, length
#: and family (given), its XORed port and address.
_BODY_IPV4 = struct.Struct("!12s6sHI")
_MAPPED_IPV4_HEAD = _ATTRIBUTE_HEADER.pack(AttrType.XOR_MAPPED_ADDRESS, 8) + b"\x00\x01"
_XOR_MAPPED_ADDRESS = AttrType.XOR_MAPPED_ADDRESS
_IPV4 = AddressFamily.IPV4


def _heads(mapped_size: int) -> tuple[bytes, bytes]:
    """A success response's first eight bytes, as MESSAGE-INTEGRITY's HMAC covers them (the
    length ending at MESSAGE-INTEGRITY, RFC 8489 §14.5) and as sent (FINGERPRINT counted)."""
    return (
        _HEADER.pack(0x0101, mapped_size + 24, MAGIC_COOKIE),
        _HEADER.pack(0x0101, mapped_size + 32, MAGIC_COOKIE),
    )


_HEADS_IPV4 = _heads(12)
_HEADS_IPV6 = _heads(24)


def success_response(transaction_id: bytes, source: Address, key: PreparedKey) -> bytes:
    """The success response to the check ``transaction_id`` that came from ``source``: its
    XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with ``key`` (our password, prepared:
    :func:`stun.integrity.shared_key`), FINGERPRINT (RFC 8445 §7.3.1.2)."""
    family, packed = pack_host(source.host)
    if family is _IPV4:  # XORed with the cookie alone (RFC 8489 §14.2)
        body = _BODY_IPV4.pack(
            transaction_id,
            _MAPPED_IPV4_HEAD,
            source.port ^ 0x2112,
            int.from_bytes(packed, "big") ^ MAGIC_COOKIE,
        )
        signed_head, head = _HEADS_IPV4
    else:
        value = XorMappedAddress(source).encode_value(transaction_id)
        body = transaction_id + _ATTRIBUTE_HEADER.pack(_XOR_MAPPED_ADDRESS, 20) + value
        signed_head, head = _HEADS_IPV6
    message = head + body + _MI_HEADER + keyed_hmac(key, signed_head + body)
    return message + _FP_HEADER + (zlib.crc32(message) ^ FINGERPRINT_XOR).to_bytes(4, "big")
