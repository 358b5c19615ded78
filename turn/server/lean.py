"""What the TURN relay's lean path reads of a Send indication without decoding it (RFC 8656 §10.2).

:meth:`TurnServerCore.relay_from_client <turn.server.TurnServerCore.relay_from_client>` relays
ChannelData and Send indications on a live allocation without building a
:class:`~stun.Message`, a :class:`~turn.server.FiveTuple` or a :class:`~stun.datagram.Datagram`
through Python-level constructors. ChannelData needs nothing from here: its four header bytes say
everything. A Send indication is read here when it has the shape clients send — XOR-PEER-ADDRESS of
an IPv4 peer, then DATA, then FINGERPRINT or nothing — from fixed offsets: the message type,
length and cookie, the two attribute headers, the peer's six address bytes, the data, and the
FINGERPRINT's CRC-32 when there is one. Every other shape (an IPv6 peer, attributes in another
order, DONT-FRAGMENT, anything unknown, a FINGERPRINT that does not match, a length that does not
add up) is left to the typed path, which decodes it and decides, so what the typed path refuses
is refused the same way. Indications carry no MESSAGE-INTEGRITY (§10.2): there is no key to check.
"""

from __future__ import annotations

import struct
import zlib

from stun import MAGIC_COOKIE, Address
from stun.address import DECIMAL_OCTETS, new_address
from stun.integrity import FINGERPRINT_XOR

#: The header of a Send indication with XOR-PEER-ADDRESS (IPv4) first and DATA's header after it:
#: type, length, cookie, (transaction ID skipped), XOR-PEER-ADDRESS's type and length, its
#: reserved byte and family, the peer's XORed port and address, DATA's type and length.
_SEND = struct.Struct("!HHI12xI2s6sHH")
_SEND_TYPE = 0x0016
_PEER_HEADER = (0x0012 << 16) | 8
_IPV4_FAMILY = b"\x00\x01"
_DATA_TYPE = 0x0013
_DATA_AT = _SEND.size
_FINGERPRINT_HEADER = b"\x80\x28\x00\x04"
_FINGERPRINT_VALUE = struct.Struct("!I")
#: The first two bytes of a Send indication, for the caller's quick test.
SEND_INDICATION = b"\x00\x16"
#: Peers remembered by their XORed bytes before the cache is emptied (peer-grown, so bounded).
PEER_CACHE_SIZE = 4096


class SendReader:
    """Reads Send indications of the common shape; remembers the peers it decoded (bounded)."""

    __slots__ = ("_peers",)

    def __init__(self) -> None:
        self._peers: dict[bytes, Address] = {}

    def read(self, data: bytes) -> tuple[Address, bytes] | None:
        """The peer and the data of a Send indication of the common shape, or ``None`` for
        anything else (the typed path decides about it)."""
        size = len(data)
        if size < _DATA_AT:
            return None
        kind, length, cookie, peer_header, family, peer, data_type, data_size = _SEND.unpack_from(
            data
        )
        if (
            kind != _SEND_TYPE
            or length != size - 20
            or cookie != MAGIC_COOKIE
            or peer_header != _PEER_HEADER
            or family != _IPV4_FAMILY
            or data_type != _DATA_TYPE
        ):
            return None
        end = _DATA_AT + data_size
        padded = end + (-data_size & 3)
        if padded != size and (
            padded + 8 != size
            or data[padded : padded + 4] != _FINGERPRINT_HEADER
            or _FINGERPRINT_VALUE.unpack_from(data, padded + 4)[0]
            != zlib.crc32(data[:padded]) ^ FINGERPRINT_XOR
        ):
            return None
        address = self._peers.get(peer)
        if address is None:
            address = self._remember(peer)
        return address, data[_DATA_AT:end]

    def _remember(self, peer: bytes) -> Address:
        """The address of six XORed bytes (port, IPv4 address; RFC 8489 §14.2), cached."""
        peers = self._peers
        if len(peers) >= PEER_CACHE_SIZE:
            peers.clear()
        port = ((peer[0] << 8) | peer[1]) ^ 0x2112
        host = ".".join(
            (
                DECIMAL_OCTETS[peer[2] ^ 0x21],
                DECIMAL_OCTETS[peer[3] ^ 0x12],
                DECIMAL_OCTETS[peer[4] ^ 0xA4],
                DECIMAL_OCTETS[peer[5] ^ 0x42],
            )
        )
        address = peers[peer] = new_address(host, port)
        return address
