"""The peer's connectivity checks read, and answered, from their bytes (RFC 8445 §7.3.1).

An agent answers every check its peer sends, so reading a Binding request and writing its success
response is the one codec work of every check. :func:`read_check` reads a request of the shape
ICE agents send — USERNAME, PRIORITY, ICE-CONTROLLING or ICE-CONTROLLED, USE-CANDIDATE, in any
order, then MESSAGE-INTEGRITY and optionally FINGERPRINT — in one walk over its attribute
headers, without building a :class:`~stun.Message` or an attribute object. Anything else (an
attribute not named here, one twice, a length the attribute cannot have, MESSAGE-INTEGRITY-SHA256,
something after MESSAGE-INTEGRITY but FINGERPRINT, a FINGERPRINT that does not match, a USERNAME
that is not UTF-8) gives ``None``: :meth:`stun.Message.decode` and the typed path decide about it,
so what they refuse is refused the same way. The integrity of what is read is checked by the
caller with :func:`stun.integrity.integrity_matches`, the check behind
:meth:`stun.Message.check_integrity`.

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
from stun.attributes import MAX_TEXT_BYTES, AttrType, XorMappedAddress
from stun.integrity import FINGERPRINT_XOR, hmac_sha1

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
    :func:`stun.integrity.integrity_matches` takes); ``None`` for any other bytes: the typed
    path decides about them."""
    size = len(data)
    if size < 20:
        return None
    kind, length, cookie = _HEADER.unpack_from(data)
    if kind != _BINDING_REQUEST or length != size - 20 or cookie != MAGIC_COOKIE:
        return None
    unpack = _ATTRIBUTE_HEADER.unpack_from
    username_at = username_end = integrity_at = fingerprint_at = -1
    priority = controlling = controlled = None
    use_candidate = False
    offset = 20
    # Every attribute ends on a 4-byte boundary: the last one ends at ``size`` or runs past it.
    while offset < size:
        attr_type, attr_length = unpack(data, offset)
        start = offset + 4
        end = start + attr_length
        offset = end + (-attr_length & 3)
        if offset > size:
            return None
        if integrity_at >= 0:
            # Only a FINGERPRINT that ends the message may follow MESSAGE-INTEGRITY.
            if attr_type != _FP or attr_length != 4 or offset != size:
                return None
            fingerprint_at = start - 4
        elif attr_type == _USERNAME and username_at < 0 and attr_length <= MAX_TEXT_BYTES:
            username_at = start
            username_end = end
        elif attr_type == _PRIORITY and priority is None and attr_length == 4:
            priority = int.from_bytes(data[start:end], "big")
        elif attr_type == _CONTROLLING and controlling is None and attr_length == 8:
            controlling = int.from_bytes(data[start:end], "big")
        elif attr_type == _CONTROLLED and controlled is None and attr_length == 8:
            controlled = int.from_bytes(data[start:end], "big")
        elif attr_type == _USE_CANDIDATE and not use_candidate and attr_length == 0:
            use_candidate = True
        elif attr_type == _MI and attr_length == 20:
            integrity_at = start - 4
        else:
            return None
    if integrity_at < 0 or username_at < 0:
        return None
    if fingerprint_at >= 0 and int.from_bytes(data[fingerprint_at + 4 :], "big") != (
        zlib.crc32(data[:fingerprint_at]) ^ FINGERPRINT_XOR
    ):
        return None
    try:
        username = data[username_at:username_end].decode()
    except UnicodeDecodeError:
        return None
    request = _new_tuple(
        CheckRequest, (data[8:20], username, priority, controlling, controlled, use_candidate)
    )
    return request, integrity_at, (integrity_at + 4).to_bytes(2, "big")


_MI_HEADER = _ATTRIBUTE_HEADER.pack(_MI, 20)
_FP_HEADER = _ATTRIBUTE_HEADER.pack(_FP, 4)
#: XOR-MAPPED-ADDRESS of an IPv4 source: type, length, family, XORed port and address.
_MAPPED_IPV4 = struct.Struct("!HHxBHI")
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


def success_response(transaction_id: bytes, source: Address, key: bytes) -> bytes:
    """The success response to the check ``transaction_id`` that came from ``source``: its
    XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with ``key``, FINGERPRINT (RFC 8445 §7.3.1.2)."""
    family, packed = pack_host(source.host)
    if family is _IPV4:  # XORed with the cookie alone (RFC 8489 §14.2)
        mapped = _MAPPED_IPV4.pack(
            _XOR_MAPPED_ADDRESS,
            8,
            family,
            source.port ^ 0x2112,
            int.from_bytes(packed, "big") ^ MAGIC_COOKIE,
        )
        signed_head, head = _HEADS_IPV4
    else:
        value = XorMappedAddress(source).encode_value(transaction_id)
        mapped = _ATTRIBUTE_HEADER.pack(_XOR_MAPPED_ADDRESS, 20) + value
        signed_head, head = _HEADS_IPV6
    mac = hmac_sha1(key, signed_head + transaction_id + mapped)
    message = head + transaction_id + mapped + _MI_HEADER + mac
    return message + _FP_HEADER + (zlib.crc32(message) ^ FINGERPRINT_XOR).to_bytes(4, "big")
