"""What the TURN server's lean path reads of a Refresh request, and its answer (RFC 8656 §8.2).

A client refreshes each allocation every few minutes; over UDP,
:meth:`TurnServerCore.relay_from_client <turn.server.TurnServerCore.relay_from_client>` answers
a Refresh of the shape clients send without building a :class:`~stun.Message`.
:class:`RefreshReader` finds the integrity attribute at the end — MESSAGE-INTEGRITY (20 bytes)
or MESSAGE-INTEGRITY-SHA256 (32 bytes), then a FINGERPRINT that matches, or nothing — and walks
the attributes before it, accepting only what a refresh needs: LIFETIME, USERNAME, REALM,
NONCE, SOFTWARE, PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM, each at most once, each value
decoded by its attribute class as the typed decoder does, the last ending exactly at the
integrity attribute. Anything else — USERHASH, REQUESTED-ADDRESS-FAMILY, DONT-FRAGMENT, an
unknown attribute, both integrity attributes, a value its class refuses, a length that does not
add up — is left to the typed path, which decodes the request and decides. What is read goes to
the typed path's own checks (:meth:`stun.authentication.LongTermAuthenticator.verify`, with
:func:`stun.integrity.integrity_matches` over the request's bytes), and only a request that
passes them all and asks for a lifetime other than 0 is answered here; every failure, and
deletion, is the typed path's.

:class:`RefreshAnswers` builds the success response from parts prepared once — the header of each
combination of integrity attribute and FINGERPRINT, LIFETIME's header, SOFTWARE — and
:func:`stun.message.seal`, which appends the MACs and FINGERPRINT as :meth:`stun.Message.encode`
does: the same bytes as the typed path's answer (a hypothesis test compares).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple

from stun import (
    MAGIC_COOKIE,
    Attribute,
    AttrType,
    DecodeError,
    Integrity,
    Message,
    MessageClass,
    Method,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Realm,
    Software,
    Username,
)
from stun.authentication import Presented
from stun.integrity import FINGERPRINT_XOR
from stun.message import HEADER_SIZE, message_type, seal

from ..attributes import Lifetime

#: The first two bytes of a Refresh request, for the caller's quick test.
REFRESH_REQUEST = b"\x00\x04"
_REFRESH_TYPE = 0x0004
_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE_HEADER = struct.Struct("!HH")
_FINGERPRINT_HEADER = b"\x80\x28\x00\x04"
_FINGERPRINT_VALUE = struct.Struct("!I")
_LENGTH = struct.Struct("!H")
_U32 = struct.Struct("!I")
#: The headers of the integrity attributes read (20 and 32 bytes of MAC).
_MI_HEADER = _ATTRIBUTE_HEADER.pack(AttrType.MESSAGE_INTEGRITY, 20)
_MI256_HEADER = _ATTRIBUTE_HEADER.pack(AttrType.MESSAGE_INTEGRITY_SHA256, 32)
#: The shortest request read: a header and MESSAGE-INTEGRITY.
_SMALLEST = HEADER_SIZE + 24
#: How many sets of attributes a :class:`RefreshReader` remembers, and the longest it does.
KNOWN_SIZE = 1024
MAX_KNOWN_BYTES = 512
#: The attributes read before the integrity attribute, by type; LIFETIME is read as its four
#: bytes (any are valid), the others are decoded by their classes as the typed decoder does.
_LIFETIME = Lifetime.TYPE
_READ: dict[int, type[Attribute]] = {
    kind.TYPE: kind
    for kind in (
        Lifetime,
        Username,
        Realm,
        Nonce,
        Software,
        PasswordAlgorithms,
        PasswordAlgorithm,
    )
}


class RefreshRequest(NamedTuple):
    """A Refresh request of the common shape, as :class:`RefreshReader` read it."""

    transaction_id: bytes
    #: LIFETIME's seconds, if present.
    lifetime: int | None
    presented: Presented
    #: Where its integrity attribute starts, and the length field its MAC was computed with.
    integrity_at: int
    length_field: bytes
    fingerprint: bool


class RefreshReader:
    """Reads Refresh requests of the common shape (see the module docstring).

    What it read of the attributes before the integrity attribute is remembered by their bytes
    (at most :data:`KNOWN_SIZE` sets, each of at most :data:`MAX_KNOWN_BYTES`): a client's
    refreshes repeat them until its nonce changes, so that the next costs a look-up.
    """

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[bytes, tuple[int | None, Presented]] = {}

    def read(self, data: bytes) -> RefreshRequest | None:
        """The Refresh request ``data`` if it has the common shape, or ``None`` for anything
        else (the typed path decides about it)."""
        size = len(data)
        if size < _SMALLEST:
            return None
        kind, length, cookie, transaction_id = _HEADER.unpack_from(data)
        if (
            kind != _REFRESH_TYPE
            or length != size - HEADER_SIZE
            or length & 3
            or cookie != MAGIC_COOKIE
        ):
            return None
        end = size
        fingerprint = data[size - 8 : size - 4] == _FINGERPRINT_HEADER
        if fingerprint:
            if _FINGERPRINT_VALUE.unpack_from(data, size - 4)[0] != (
                zlib.crc32(data[: size - 8]) ^ FINGERPRINT_XOR
            ):
                return None
            end -= 8
        # The integrity attribute ends where FINGERPRINT starts, or the message. Where the
        # attributes before it are found to end exactly there, that is what it is.
        if data[end - 24 : end - 20] == _MI_HEADER:
            at, integrity = end - 24, Integrity.SHA1
        elif data[end - 36 : end - 32] == _MI256_HEADER and end - 36 >= HEADER_SIZE:
            at, integrity = end - 36, Integrity.SHA256
        else:
            return None
        attributes = data[HEADER_SIZE : at + 4]
        known = self._known.get(attributes)
        if known is None:
            known = _read_attributes(data, at, transaction_id, integrity)
            if known is None:
                return None
            if len(attributes) <= MAX_KNOWN_BYTES:
                if len(self._known) >= KNOWN_SIZE:
                    self._known.clear()
                self._known[attributes] = known
        length_field = _LENGTH.pack(end - HEADER_SIZE)
        return RefreshRequest(transaction_id, *known, at, length_field, fingerprint)


def _read_attributes(
    data: bytes, integrity_at: int, transaction_id: bytes, integrity: Integrity
) -> tuple[int | None, Presented] | None:
    """LIFETIME and what the request presents for authentication, from the attributes before
    ``integrity_at``, if they are the ones a refresh needs (see the module docstring), each once,
    ending exactly there."""
    values: dict[int, Any] = {}  # each of _READ's types, an instance of that class
    at = HEADER_SIZE
    while at < integrity_at:
        attr_type, attr_size = _ATTRIBUTE_HEADER.unpack_from(data, at)
        end = at + 4 + attr_size
        decoder = _READ.get(attr_type)
        if decoder is None or attr_type in values or end > integrity_at:
            return None
        if attr_type == _LIFETIME:
            if attr_size != 4:
                return None
            values[_LIFETIME] = _U32.unpack_from(data, at + 4)[0]
        else:
            try:
                values[attr_type] = decoder.decode_value(data[at + 4 : end], transaction_id)
            except DecodeError:
                return None
        at = end + (-attr_size & 3)
    username = values.get(AttrType.USERNAME)
    realm = values.get(AttrType.REALM)
    nonce = values.get(AttrType.NONCE)
    if username is None or realm is None or nonce is None:
        return None  # without them, the typed path answers 400 or looks up a USERHASH
    chosen = values.get(AttrType.PASSWORD_ALGORITHM)
    offered = values.get(AttrType.PASSWORD_ALGORITHMS)
    presented = Presented(username.value, realm.value, nonce.value, chosen, offered, integrity)
    return values.get(_LIFETIME), presented


class RefreshAnswers:
    """Success responses to Refresh requests (§8.2) from prepared parts: the bytes of
    ``request.success_response([Lifetime(granted), *software]).encode(key=..., ...)``."""

    __slots__ = ("_headers", "_tail")

    def __init__(self, software: tuple[Attribute, ...]) -> None:
        #: SOFTWARE (or nothing), encoded.
        self._tail = Message(
            Method.REFRESH, MessageClass.SUCCESS_RESPONSE, bytes(12), software
        ).encode()[HEADER_SIZE:]
        kind = message_type(Method.REFRESH, MessageClass.SUCCESS_RESPONSE)
        sample = Message(
            Method.REFRESH, MessageClass.SUCCESS_RESPONSE, bytes(12), [Lifetime(0), *software]
        )
        #: The header's type, length and cookie per integrity attribute and FINGERPRINT.
        self._headers = {
            (integrity, fingerprint): struct.pack(
                "!HHI",
                kind,
                len(sample.encode(key=b"k", integrity=integrity, fingerprint=fingerprint))
                - HEADER_SIZE,
                MAGIC_COOKIE,
            )
            for integrity in Integrity
            for fingerprint in (False, True)
        }

    def answer(
        self,
        transaction_id: bytes,
        granted: int,
        key: bytes,
        integrity: Integrity,
        fingerprint: bool,
    ) -> bytes:
        """The success response granting ``granted`` seconds, protected with ``key``."""
        buffer = bytearray(self._headers[integrity, fingerprint])
        buffer += transaction_id
        buffer += _LIFETIME_HEADER
        buffer += _U32.pack(granted)
        buffer += self._tail
        return seal(buffer, key=key, integrity=integrity, fingerprint=fingerprint)


_LIFETIME_HEADER = _ATTRIBUTE_HEADER.pack(_LIFETIME, 4)
