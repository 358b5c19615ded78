"""The floor under ``bench.ice``'s scale numbers: the least CPU a Python asyncio program spends on
the STUN exchange that connects one ICE pair, with no ICE agent at all.

Each side of a pair is an :class:`Endpoint`: one UDP socket on loopback, registered with the event
loop before the measured phase (as a gathered connection's is), and nothing else — no candidates,
no pairs, no states, no timers, no retransmissions, no events. At ``connect()`` both sides send
a Binding request (USERNAME, PRIORITY, ICE-CONTROLLING or ICE-CONTROLLED, MESSAGE-INTEGRITY,
FINGERPRINT); each answers every request with a signed success response (XOR-MAPPED-ADDRESS);
the controlling side, once its check is answered, repeats it with USE-CANDIDATE (RFC 8445
§8.1.1, regular nomination); ``connect()`` returns on the controlling side when that nomination
is answered and on the controlled side when it arrives. That is the 6 messages a pair of
icestack connections exchanges, and every received one is walked attribute by attribute and
checked (HMAC-SHA1 with compare_digest, CRC-32 FINGERPRINT), with the cheapest primitives
Python has, :mod:`stun.integrity`'s (the HMAC's padded key states computed once and copied per
message), transaction IDs sliced from one draw of randomness, ``sendto`` and ``recvmsg`` on the
socket directly.

What icestack spends per pair above this floor is the agent and its asyncio glue, all of it; a
target below the floor cannot be met by any agent written in Python on one socket per session.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from stun.attributes import MAGIC_COOKIE, AttrType
from stun.integrity import PreparedKey, fingerprint, keyed_hmac, prepare_key, sha1_integrity_matches

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE = struct.Struct("!HH")
_BINDING_REQUEST, _BINDING_SUCCESS = 0x0001, 0x0101
_USERNAME, _MESSAGE_INTEGRITY = int(AttrType.USERNAME), int(AttrType.MESSAGE_INTEGRITY)
_PRIORITY, _USE_CANDIDATE = int(AttrType.PRIORITY), int(AttrType.USE_CANDIDATE)
_XOR_MAPPED_ADDRESS, _FINGERPRINT = int(AttrType.XOR_MAPPED_ADDRESS), int(AttrType.FINGERPRINT)
_ICE_CONTROLLED, _ICE_CONTROLLING = int(AttrType.ICE_CONTROLLED), int(AttrType.ICE_CONTROLLING)
_INTEGRITY_HEADER = _ATTRIBUTE.pack(_MESSAGE_INTEGRITY, 20)
_FINGERPRINT_HEADER = _ATTRIBUTE.pack(_FINGERPRINT, 4)
#: The length the header says while MESSAGE-INTEGRITY and FINGERPRINT are appended.
_INTEGRITY_LENGTH, _TRAILER_LENGTH = 24, 32
_TRANSACTION_IDS = 4096


def _attribute(kind: int, value: bytes) -> bytes:
    return _ATTRIBUTE.pack(kind, len(value)) + value + bytes(-len(value) % 4)


def _signed(kind: int, transaction_id: bytes, attributes: bytes, key: PreparedKey) -> bytes:
    """The message with MESSAGE-INTEGRITY and FINGERPRINT appended (RFC 8489 §14.5, §14.7)."""
    length = len(attributes)
    head = _HEADER.pack(kind, length + _INTEGRITY_LENGTH, MAGIC_COOKIE, transaction_id)
    message = _HEADER.pack(kind, length + _TRAILER_LENGTH, MAGIC_COOKIE, transaction_id)
    message += attributes + _INTEGRITY_HEADER + keyed_hmac(key, head + attributes)
    return message + _FINGERPRINT_HEADER + fingerprint(message).to_bytes(4, "big")


def _verified(data: bytes, key: PreparedKey) -> tuple[int, bytes, set[int]] | None:
    """Type, transaction ID and attribute types of a message whose integrity and fingerprint
    check; ``None`` for anything else."""
    if len(data) < 20 + _TRAILER_LENGTH:
        return None
    kind, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE or length + 20 != len(data):
        return None
    seen = set()
    integrity = -1
    position = 20
    while position + 4 <= len(data):
        attribute, size = _ATTRIBUTE.unpack_from(data, position)
        if attribute == _MESSAGE_INTEGRITY:
            integrity = position
        seen.add(attribute)
        position += 4 + size + (-size % 4)
    if integrity < 0 or _FINGERPRINT not in seen:
        return None
    if fingerprint(data[:-8]) != int.from_bytes(data[-4:], "big"):
        return None
    signed_length = (integrity - 20 + _INTEGRITY_LENGTH).to_bytes(2, "big")
    if not sha1_integrity_matches(key, data, integrity, signed_length):
        return None
    return kind, transaction_id, seen


class Endpoint:
    """One side of a pair: a socket and the exchange's few facts (module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, controlling: bool, ids: bytes) -> None:
        self._loop = loop
        self._controlling = controlling
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.setblocking(False)
        self.address: tuple[str, int] = self._socket.getsockname()
        self.peer: tuple[str, int] = self.address
        self._done = loop.create_future()
        self._nominating = False
        #: The STUN messages this endpoint sent.
        self.sent = 0
        self._ids = ids
        self._next_id = 0
        own, peer = b"password-of-the-controlling", b"the-other"
        if not controlling:
            own, peer = peer, own
        self._own_key, self._peer_key = prepare_key(own), prepare_key(peer)
        role = _ICE_CONTROLLING if controlling else _ICE_CONTROLLED
        self._check = (
            _attribute(_USERNAME, b"peerfrag:ownfrag")
            + _attribute(_PRIORITY, struct.pack("!I", 2130706431))
            + _attribute(role, os.urandom(8))
        )
        loop.add_reader(self._socket.fileno(), self._read)

    async def connect(self) -> None:
        """Check, answer, nominate: return when the pair is nominated (module docstring)."""
        self._send_check(nominate=False)
        await self._done

    def close(self) -> None:
        self._loop.remove_reader(self._socket.fileno())
        self._socket.close()

    def _send_check(self, *, nominate: bool) -> None:
        start = self._next_id * 12
        self._next_id = (self._next_id + 1) % _TRANSACTION_IDS
        attributes = self._check + _attribute(_USE_CANDIDATE, b"") if nominate else self._check
        request = _signed(
            _BINDING_REQUEST, self._ids[start : start + 12], attributes, self._peer_key
        )
        self._socket.sendto(request, self.peer)
        self.sent += 1

    def _read(self) -> None:
        while True:
            try:
                data, _, _, source = self._socket.recvmsg(1500)
            except BlockingIOError:
                return
            is_request = data[:2] == b"\x00\x01"
            verified = _verified(data, self._own_key if is_request else self._peer_key)
            if verified is None:
                continue
            kind, transaction_id, attributes = verified
            if kind == _BINDING_REQUEST:
                self._answer(transaction_id, source)
                if _USE_CANDIDATE in attributes and not self._done.done():
                    self._done.set_result(None)
            elif kind == _BINDING_SUCCESS and self._controlling:
                if not self._nominating:
                    self._nominating = True
                    self._send_check(nominate=True)
                elif not self._done.done():
                    self._done.set_result(None)

    def _answer(self, transaction_id: bytes, source: tuple[str, int]) -> None:
        host, port = source
        address = int.from_bytes(socket.inet_aton(host), "big") ^ MAGIC_COOKIE
        value = struct.pack("!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), address)
        response = _signed(
            _BINDING_SUCCESS,
            transaction_id,
            _attribute(_XOR_MAPPED_ADDRESS, value),
            self._own_key,
        )
        self._socket.sendto(response, source)
        self.sent += 1


def endpoint_pairs(loop: asyncio.AbstractEventLoop, pairs: int) -> list[tuple[Endpoint, Endpoint]]:
    """``pairs`` pairs of endpoints that know each other's address, ready to connect."""
    ids = os.urandom(12 * _TRANSACTION_IDS)
    made = []
    for _ in range(pairs):
        controlling, controlled = Endpoint(loop, True, ids), Endpoint(loop, False, ids)
        controlling.peer, controlled.peer = controlled.address, controlling.address
        made.append((controlling, controlled))
    return made
