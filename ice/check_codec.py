"""The bytes of the agent's connectivity checks and of their success responses, built and read
without a :class:`~stun.Message` (RFC 8445 §7.2.2, §7.2.5).

Every check an agent sends its peer is the same Binding request but for the transaction ID,
PRIORITY and USE-CANDIDATE: USERNAME, the role attribute with the tie-breaker and the key of
MESSAGE-INTEGRITY (the peer's password) are the agent's. A :class:`CheckTemplate` keeps USERNAME
encoded, the role and the password prepared for HMAC-SHA1; a check is then the header, USERNAME,
PRIORITY, the role attribute, USE-CANDIDATE if it nominates, MESSAGE-INTEGRITY and FINGERPRINT —
the bytes :meth:`stun.Message.encode` gives for the same attributes in that order.

A success response is read by :func:`read_success` when it has the shape ICE agents answer with —
XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT and nothing else — from fixed offsets: type,
length and cookie, the three attribute headers, the FINGERPRINT's CRC-32 and the MESSAGE-INTEGRITY,
checked by :func:`stun.integrity.sha1_integrity_matches`, the check behind
:meth:`stun.Message.check_integrity`. Every other shape, and a FINGERPRINT or MESSAGE-INTEGRITY that
does not match, is left to the typed path, which decodes it and decides, so what the typed path
refuses is refused — and counted — the same way.
"""

from __future__ import annotations

import functools
import struct
import zlib

from stun import MAGIC_COOKIE, Address
from stun.address import DECIMAL_OCTETS
from stun.attributes import MAX_TEXT_BYTES, AttrType, XorMappedAddress
from stun.errors import LocalProtocolError
from stun.integrity import (
    FINGERPRINT_XOR,
    PreparedKey,
    keyed_hmac,
    sha1_integrity_matches,
    shared_key,
)

_HEADER = struct.Struct("!HHI")
_ATTRIBUTE = struct.Struct("!HH")
_PADDING = bytes(3)
_new_tuple = tuple.__new__  # an Address built without the NamedTuple constructor
_PRIORITY_HEADER = _ATTRIBUTE.pack(0x0024, 4)
#: The role attribute: ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker.
_ROLE = struct.Struct("!HHQ")
#: The attribute types a template encodes (plain ints: an enum member read through its class
#: costs ~0.2 µs in CPython 3.11, and a template is made for every session).
_USERNAME_TYPE = int(AttrType.USERNAME)
_CONTROLLING_TYPE = int(AttrType.ICE_CONTROLLING)
_CONTROLLED_TYPE = int(AttrType.ICE_CONTROLLED)
_USE_CANDIDATE = b"\x00\x25\x00\x00"
_MESSAGE_INTEGRITY = b"\x00\x08\x00\x14"
_FINGERPRINT_TYPE = 0x8028
_FINGERPRINT_HEADER = _ATTRIBUTE.pack(_FINGERPRINT_TYPE, 4)
_BINDING_REQUEST = 0x0001
#: MESSAGE-INTEGRITY and FINGERPRINT: what follows the attributes of a check.
_TRAILER_SIZE = 24 + 8


@functools.cache  # a few sizes: USERNAME is at most MAX_TEXT_BYTES
def _heads(attributes: int) -> tuple[bytes, bytes, bytes, bytes]:
    """The first eight bytes of a check whose attributes (USE-CANDIDATE aside) take
    ``attributes`` bytes, as MESSAGE-INTEGRITY covers them (the length ending at
    MESSAGE-INTEGRITY, RFC 8489 §14.5) and as sent (FINGERPRINT counted); then the same two with
    USE-CANDIDATE."""
    return (
        _HEADER.pack(_BINDING_REQUEST, attributes + 24, MAGIC_COOKIE),
        _HEADER.pack(_BINDING_REQUEST, attributes + _TRAILER_SIZE, MAGIC_COOKIE),
        _HEADER.pack(_BINDING_REQUEST, attributes + 4 + 24, MAGIC_COOKIE),
        _HEADER.pack(_BINDING_REQUEST, attributes + 4 + _TRAILER_SIZE, MAGIC_COOKIE),
    )


class CheckTemplate:
    """What every check of an agent to its peer has in common (RFC 8445 §7.2.2): USERNAME
    (``remote_ufrag:local_ufrag``), ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker, and
    the peer's password, prepared as the MESSAGE-INTEGRITY key. A template whose
    :attr:`identity` is no longer the agent's is replaced."""

    __slots__ = ("_nominating", "_ordinary", "_username", "identity", "prepared")

    def __init__(
        self,
        remote_username: str,
        local_username: str,
        password: str,
        controlling: bool,
        tie_breaker: int,
    ) -> None:
        #: What the template was made of, in the order of the constructor's arguments.
        self.identity = (remote_username, local_username, password, controlling, tie_breaker)
        try:
            username = f"{remote_username}:{local_username}".encode()
            key = password.encode()  # the short-term key is the password itself (§7.2.2)
        except UnicodeEncodeError as error:
            raise LocalProtocolError(f"USERNAME or password: {error}") from None
        size = len(username)
        if size > MAX_TEXT_BYTES:
            raise LocalProtocolError(f"USERNAME is {size} bytes; at most {MAX_TEXT_BYTES} allowed")
        if not 0 <= tie_breaker <= 0xFFFF_FFFF_FFFF_FFFF:
            raise LocalProtocolError("the tie-breaker is a 64-bit unsigned integer")
        self.prepared: PreparedKey = shared_key(key)
        padded = (size + 3) & ~3  # attributes end on a multiple of four bytes (RFC 8489 §14)
        #: USERNAME and PRIORITY's header: what comes before the priority.
        self._username = (_ATTRIBUTE.pack(_USERNAME_TYPE, size) + username + _PADDING)[
            : 4 + padded
        ] + _PRIORITY_HEADER
        role = _ROLE.pack(_CONTROLLING_TYPE if controlling else _CONTROLLED_TYPE, 8, tie_breaker)
        attributes = 4 + padded + 8 + 12  # USERNAME, PRIORITY, the role
        #: The header's first eight bytes as signed and as sent and what follows the priority,
        #: without and with USE-CANDIDATE: all of a check but its transaction ID and priority.
        signed, sent, signed_nominating, sent_nominating = _heads(attributes)
        self._ordinary = (signed, sent, role)
        self._nominating = (signed_nominating, sent_nominating, role + _USE_CANDIDATE)

    @property
    def key(self) -> bytes:
        """The MESSAGE-INTEGRITY key."""
        return self.identity[2].encode()

    def encode(self, transaction_id: bytes, priority: int, use_candidate: bool) -> bytes:
        """The check: a Binding request with USERNAME, PRIORITY, the role attribute,
        USE-CANDIDATE with ``use_candidate``, MESSAGE-INTEGRITY and FINGERPRINT (RFC 8489
        §14.5, §14.7). ``priority`` is 1 to 2^32-1 (a candidate priority, §5.1.2.1)."""
        signed_head, head, after_priority = self._nominating if use_candidate else self._ordinary
        body = transaction_id + self._username + priority.to_bytes(4, "big") + after_priority
        message = head + body + _MESSAGE_INTEGRITY + keyed_hmac(self.prepared, signed_head + body)
        crc = zlib.crc32(message) ^ FINGERPRINT_XOR
        return message + _FINGERPRINT_HEADER + crc.to_bytes(4, "big")


#: The first two bytes of a Binding request and of a Binding success response, for the
#: caller's quick test.
BINDING_REQUEST = b"\x00\x01"
BINDING_SUCCESS = b"\x01\x01"


def _success_layout(address_size: int) -> tuple[struct.Struct, bytes, bytes, int, bytes]:
    """How :func:`read_success` reads a Binding success response whose attributes are an
    XOR-MAPPED-ADDRESS of an ``address_size``-byte address, MESSAGE-INTEGRITY and FINGERPRINT:
    a ``struct`` that reads the header's type, length and cookie, the XOR-MAPPED-ADDRESS's
    header, family (after the byte that is ignored), XORed port and address, the headers of
    MESSAGE-INTEGRITY and FINGERPRINT and the CRC; what the header and the XOR-MAPPED-ADDRESS's
    header must be, the family, and the length field MESSAGE-INTEGRITY's HMAC covers (RFC 8489
    §14.2, §14.5)."""
    mapped_size = 4 + address_size
    return (
        struct.Struct(f"!8s12x4sxBH{address_size}s4s20x4sI"),
        _HEADER.pack(0x0101, 4 + mapped_size + _TRAILER_SIZE, MAGIC_COOKIE),
        _ATTRIBUTE.pack(_XOR_MAPPED_ADDRESS, mapped_size),
        1 if address_size == 4 else 2,
        (4 + mapped_size + 24).to_bytes(2, "big"),
    )


_XOR_MAPPED_ADDRESS = 0x0020
#: The two layouts read: of a response 64 bytes long (an IPv4 address), of one 76 bytes long.
_SUCCESS_IPV4 = _success_layout(4)
_SUCCESS_IPV6 = _success_layout(16)


def read_success(data: bytes, prepared: PreparedKey) -> Address | None:
    """The XOR-MAPPED-ADDRESS of a Binding success response of the common shape whose
    FINGERPRINT matches and whose MESSAGE-INTEGRITY is that of the prepared key, or ``None``
    for anything else (the typed path decides about it)."""
    size = len(data)
    if size == 64:
        layout = _SUCCESS_IPV4
    elif size == 76:
        layout = _SUCCESS_IPV6
    else:
        return None
    fields, expected_head, expected_mapped, expected_family, signed_length = layout
    head, mapped, family, port, address, integrity_header, fingerprint_header, crc = (
        fields.unpack_from(data)
    )
    if (
        head != expected_head
        or mapped != expected_mapped
        or family != expected_family
        or integrity_header != _MESSAGE_INTEGRITY
        or fingerprint_header != _FINGERPRINT_HEADER
        or crc != zlib.crc32(data[: size - 8]) ^ FINGERPRINT_XOR
        or not sha1_integrity_matches(prepared, data, size - 32, signed_length)
    ):
        return None
    if family == 1:
        text = DECIMAL_OCTETS  # each byte XORed with the magic cookie's
        a, b, c, d = address
        host = ".".join((text[a ^ 0x21], text[b ^ 0x12], text[c ^ 0xA4], text[d ^ 0x42]))
        return _new_tuple(Address, (host, port ^ 0x2112))
    return XorMappedAddress.decode_value(data[24 : size - 32], data[8:20]).address
