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

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE = struct.Struct("!HH")
_PADDING = bytes(3)
_new_tuple = tuple.__new__  # an Address built without the NamedTuple constructor
#: PRIORITY and the role attribute (ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker).
_PRIORITY_AND_ROLE = struct.Struct("!HHIHHQ")
_PRIORITY_TYPE = 0x0024
#: The attribute types a template encodes (plain ints: an enum member read through its class
#: costs ~0.2 µs in CPython 3.11, and a template is made for every session).
_USERNAME_TYPE = int(AttrType.USERNAME)
_CONTROLLING_TYPE = int(AttrType.ICE_CONTROLLING)
_CONTROLLED_TYPE = int(AttrType.ICE_CONTROLLED)
_USE_CANDIDATE = b"\x00\x25\x00\x00"
_MESSAGE_INTEGRITY = b"\x00\x08\x00\x14"
_FINGERPRINT = struct.Struct("!HHI")
_FINGERPRINT_TYPE = 0x8028
_BINDING_REQUEST = 0x0001
#: MESSAGE-INTEGRITY and FINGERPRINT: what follows the attributes of a check.
_TRAILER_SIZE = 24 + 8


class CheckTemplate:
    """What every check of an agent to its peer has in common (RFC 8445 §7.2.2): USERNAME
    (``remote_ufrag:local_ufrag``), ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker, and
    the peer's password, prepared as the MESSAGE-INTEGRITY key. A template whose
    :attr:`identity` is no longer the agent's is replaced."""

    __slots__ = ("_role", "_size", "_username", "identity", "prepared", "tie_breaker")

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
        self.tie_breaker = tie_breaker
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
        #: USERNAME, encoded.
        self._username = (_ATTRIBUTE.pack(_USERNAME_TYPE, size) + username + _PADDING)[: 4 + padded]
        self._role = _CONTROLLING_TYPE if controlling else _CONTROLLED_TYPE
        #: The attributes' size: USERNAME, PRIORITY and the role.
        self._size = 4 + padded + 8 + 12

    @property
    def key(self) -> bytes:
        """The MESSAGE-INTEGRITY key."""
        return self.identity[2].encode()

    def encode(self, transaction_id: bytes, priority: int, use_candidate: bool) -> bytes:
        """The check: a Binding request with USERNAME, PRIORITY, the role attribute,
        USE-CANDIDATE with ``use_candidate``, MESSAGE-INTEGRITY and FINGERPRINT (RFC 8489
        §14.5, §14.7). ``priority`` is 1 to 2^32-1 (a candidate priority, §5.1.2.1)."""
        body = self._username + _PRIORITY_AND_ROLE.pack(
            _PRIORITY_TYPE, 4, priority, self._role, 8, self.tie_breaker
        )
        size = self._size
        if use_candidate:
            body += _USE_CANDIDATE
            size += 4
        signed = _HEADER.pack(_BINDING_REQUEST, size + 24, MAGIC_COOKIE, transaction_id) + body
        message = (
            _HEADER.pack(_BINDING_REQUEST, size + _TRAILER_SIZE, MAGIC_COOKIE, transaction_id)
            + body
            + _MESSAGE_INTEGRITY
            + keyed_hmac(self.prepared, signed)
        )
        crc = zlib.crc32(message) ^ FINGERPRINT_XOR
        return message + _FINGERPRINT.pack(_FINGERPRINT_TYPE, 4, crc)


#: The first 28 bytes of a Binding success response whose first attribute is
#: XOR-MAPPED-ADDRESS: type, length, cookie, (transaction ID skipped), the attribute's type and
#: length, its (ignored) first byte, the family and the XORed port.
_SUCCESS = struct.Struct("!HHI12xHHxBH")
#: The first two bytes of a Binding request and of a Binding success response, for the
#: caller's quick test.
BINDING_REQUEST = b"\x00\x01"
BINDING_SUCCESS = b"\x01\x01"
_BINDING_SUCCESS = 0x0101
_XOR_MAPPED_ADDRESS = 0x0020
_TRAILER = struct.Struct("!4s20xHHI")
#: The length field MESSAGE-INTEGRITY is computed with, by where it starts (it ends the header's
#: count there, §14.5): after an IPv4 or an IPv6 XOR-MAPPED-ADDRESS.
_SIGNED_LENGTH = {32: struct.pack("!H", 36), 44: struct.pack("!H", 48)}


def read_success(data: bytes, prepared: PreparedKey) -> Address | None:
    """The XOR-MAPPED-ADDRESS of a Binding success response of the common shape whose
    FINGERPRINT matches and whose MESSAGE-INTEGRITY is that of the prepared key, or ``None``
    for anything else (the typed path decides about it)."""
    size = len(data)
    if size != 64 and size != 76:
        return None
    kind, length, cookie, attribute, attribute_length, family, port = _SUCCESS.unpack_from(data)
    at = size - 32  # where MESSAGE-INTEGRITY starts
    if (
        kind != _BINDING_SUCCESS
        or length != size - 20
        or cookie != MAGIC_COOKIE
        or attribute != _XOR_MAPPED_ADDRESS
        or attribute_length != at - 24
        or family != (1 if size == 64 else 2)  # IPv4 in 8 bytes, IPv6 in 20 (RFC 8489 §14.2)
    ):
        return None
    integrity_header, fingerprint_type, fingerprint_length, crc = _TRAILER.unpack_from(data, at)
    if (
        integrity_header != _MESSAGE_INTEGRITY
        or fingerprint_type != _FINGERPRINT_TYPE
        or fingerprint_length != 4
        or crc != zlib.crc32(data[: size - 8]) ^ FINGERPRINT_XOR
        or not sha1_integrity_matches(prepared, data, at, _SIGNED_LENGTH[at])
    ):
        return None
    if family == 1:
        text = DECIMAL_OCTETS  # each byte XORed with the magic cookie's
        a, b, c, d = data[28:32]
        host = ".".join((text[a ^ 0x21], text[b ^ 0x12], text[c ^ 0xA4], text[d ^ 0x42]))
        return _new_tuple(Address, (host, port ^ 0x2112))
    return XorMappedAddress.decode_value(data[24:at], data[8:20]).address
