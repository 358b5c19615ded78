"""The ChannelData message (RFC 8656 §12.4) and telling it apart from STUN (RFC 8656 §12, Table 3).

A ChannelData message is a 4-byte header — the channel number and the length of the data — then
the data::

    channel number (16 bits) | length (16 bits) | application data (length bytes)

Channel numbers are 0x4000-0x4FFF (RFC 8656 §12; RFC 5766 allowed up to 0x7FFF, RFC 8656 narrowed
the range and a receiver discards the rest). Over TCP and TLS the message is padded to a multiple
of four bytes, the padding not counted in the length (§12.5); over UDP padding is optional, so a
receiver ignores bytes after the data. :class:`stun.StreamDecoder` cuts padded ChannelData out of
a stream; :func:`decode_channel_data` and :func:`encode_channel_data` are the plain functions the
relay path uses without building a :class:`ChannelData` per packet.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Self

from .errors import DecodeError, LocalProtocolError

#: The first and last valid channel numbers (RFC 8656 §12).
MIN_CHANNEL = 0x4000
MAX_CHANNEL = 0x4FFF
#: The last channel number RFC 5766 §11 allowed, which its clients (coturn's turnutils_uclient
#: among them) still draw from; a server may accept them (``TurnServerConfig.rfc5766_channels``).
RFC5766_MAX_CHANNEL = 0x7FFF
#: The ChannelData header: channel number and data length (RFC 8656 §12.4).
HEADER_SIZE = 4
#: The most data one ChannelData message carries: its Length field is 16 bits.
MAX_DATA_SIZE = 0xFFFF

_HEADER = struct.Struct("!HH")


def is_valid_channel(number: int) -> bool:
    """Whether ``number`` is a channel number RFC 8656 allows (0x4000-0x4FFF)."""
    return MIN_CHANNEL <= number <= MAX_CHANNEL


def encode_channel_data(
    channel: int, data: bytes, *, pad: bool = False, max_channel: int = MAX_CHANNEL
) -> bytes:
    """A ChannelData message for ``data`` on ``channel``; ``pad`` for TCP/TLS (RFC 8656 §12.5).

    Raises :class:`turn.LocalProtocolError` for a channel outside 0x4000-``max_channel`` or data
    longer than 65535 bytes.
    """
    size = len(data)
    if not MIN_CHANNEL <= channel <= max_channel:
        raise LocalProtocolError(f"channel 0x{channel:04X} outside 0x4000-0x{max_channel:04X}")
    if size > MAX_DATA_SIZE:
        raise LocalProtocolError(f"ChannelData of {size} bytes, at most {MAX_DATA_SIZE}")
    message = _HEADER.pack(channel, size) + data
    if pad and size & 3:
        message += bytes(4 - (size & 3))
    return message


def decode_channel_data(message: bytes, *, max_channel: int = MAX_CHANNEL) -> tuple[int, bytes]:
    """The channel number and data of a ChannelData message (RFC 8656 §12.4, §12.6).

    Raises :class:`turn.DecodeError` (only) when the message is shorter than its header or its
    length, or names a channel outside 0x4000-``max_channel``. Bytes after the data (padding) are
    ignored.
    """
    if len(message) < HEADER_SIZE:
        raise DecodeError(f"ChannelData: {len(message)} bytes, the header alone is 4")
    channel, size = _HEADER.unpack_from(message)
    if not MIN_CHANNEL <= channel <= max_channel:
        raise DecodeError(
            f"ChannelData: channel 0x{channel:04X} outside 0x4000-0x{max_channel:04X}"
        )
    end = HEADER_SIZE + size
    if end > len(message):
        raise DecodeError(
            f"ChannelData: length {size} but only {len(message) - HEADER_SIZE} bytes follow"
        )
    return channel, bytes(message[HEADER_SIZE:end])


@dataclass(frozen=True, slots=True)
class ChannelData:
    """One ChannelData message: ``channel`` (0x4000-0x4FFF) and its application ``data``."""

    channel: int
    data: bytes

    def __post_init__(self) -> None:
        if not is_valid_channel(self.channel):
            raise LocalProtocolError(f"channel 0x{self.channel:04X} outside 0x4000-0x4FFF")
        if len(self.data) > MAX_DATA_SIZE:
            raise LocalProtocolError(f"ChannelData of {len(self.data)} bytes, at most 65535")

    def encode(self, *, pad: bool = False) -> bytes:
        """The message on the wire; ``pad`` to a multiple of four for TCP/TLS (§12.5)."""
        return encode_channel_data(self.channel, self.data, pad=pad)

    @classmethod
    def decode(cls, message: bytes) -> Self:
        """Parse one message; raise :class:`turn.DecodeError` if it is malformed."""
        return cls(*decode_channel_data(message))


class PacketKind(enum.Enum):
    """What a packet on a TURN or ICE socket is, by its first byte (RFC 7983, RFC 8656 Table 3)."""

    STUN = "STUN (0-3)"
    ZRTP = "ZRTP (16-19)"
    DTLS = "DTLS (20-63)"
    CHANNEL_DATA = "TURN ChannelData (64-79)"
    RTP = "RTP/RTCP (128-191)"
    UNKNOWN = "none of these: drop"


def is_channel_data(first_byte: int) -> bool:
    """Whether a packet starting with ``first_byte`` is ChannelData (64-79, RFC 8656 Table 3)."""
    return 0x40 <= first_byte <= 0x4F


def classify(first_byte: int) -> PacketKind:
    """Which protocol a packet starting with ``first_byte`` belongs to (RFC 7983 §7)."""
    if first_byte <= 3:
        return PacketKind.STUN
    if 16 <= first_byte <= 19:
        return PacketKind.ZRTP
    if 20 <= first_byte <= 63:
        return PacketKind.DTLS
    if 64 <= first_byte <= 79:
        return PacketKind.CHANNEL_DATA
    if 128 <= first_byte <= 191:
        return PacketKind.RTP
    return PacketKind.UNKNOWN
