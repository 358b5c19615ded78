"""Cutting a TCP or TLS byte stream into messages, and the framing a stream sender adds.

Four framings, one decoder (:class:`StreamDecoder`):

* :attr:`Framing.STUN` — STUN over TCP/TLS (RFC 8489 §6.2.2, §6.2.3): messages back to back, each
  delimited by the length in its own header.
* :attr:`Framing.STUN_OR_CHANNEL_DATA` — TURN over TCP/TLS (RFC 8656 §12.5): STUN messages and
  ChannelData messages interleaved, told apart by their first byte: 0-3 STUN, 64-79 ChannelData
  (RFC 8656 Table 3; methods above 0x0FF are reserved, RFC 8489 §18.2, so no STUN message starts
  with a byte above 3). ChannelData is padded to a multiple of four on a stream; the padding is
  not counted in its Length field and is stripped here, so a frame is exactly the ChannelData
  message a UDP datagram would carry.
* :attr:`Framing.STUN_OR_RFC5766_CHANNEL_DATA` — the same, but ChannelData starts with 64-127:
  RFC 5766 §11 allowed channels up to 0x7FFF, and a TURN server may accept them from old clients.
* :attr:`Framing.RFC4571` — ICE-TCP (RFC 6544 §3): every packet preceded by a 16-bit length
  (RFC 4571 §2). A frame is the packet without its length.

A stream is cut into the same frames however its bytes arrive, one at a time or all at once, and
never holds more than one incomplete frame. Bytes that cannot start a frame of the framing in use
mean the stream is not what it should be, or is out of step: :meth:`StreamDecoder.feed` raises
:class:`~stun.errors.DecodeError`, and the caller closes the connection (there is no resynchronising
a byte stream).
"""

from __future__ import annotations

import enum
import struct

from .attributes import MAGIC_COOKIE
from .errors import DecodeError, LocalProtocolError
from .message import HEADER_SIZE

_U16_PAIR = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_COOKIE = struct.Struct("!I")

#: The largest STUN message: the header plus the largest 4-aligned attribute length (RFC 8489 §5).
MAX_STUN_MESSAGE = HEADER_SIZE + 0xFFFC
#: The largest ChannelData message, without stream padding (RFC 8656 §12.4).
MAX_CHANNEL_DATA = 4 + 0xFFFF
#: The largest RFC 4571 packet.
MAX_RFC4571_PACKET = 0xFFFF


class Framing(enum.Enum):
    """How messages are delimited on a stream."""

    STUN = "STUN over TCP/TLS (RFC 8489 §6.2.2)"
    STUN_OR_CHANNEL_DATA = "TURN over TCP/TLS: STUN and ChannelData (RFC 8656 §12.5)"
    STUN_OR_RFC5766_CHANNEL_DATA = "the same, with RFC 5766's channels 0x4000-0x7FFF (64-127)"
    RFC4571 = "16-bit length prefix (RFC 4571, ICE-TCP RFC 6544)"


_LARGEST = {
    Framing.STUN: MAX_STUN_MESSAGE,
    Framing.STUN_OR_CHANNEL_DATA: max(MAX_STUN_MESSAGE, MAX_CHANNEL_DATA),
    Framing.STUN_OR_RFC5766_CHANNEL_DATA: max(MAX_STUN_MESSAGE, MAX_CHANNEL_DATA),
    Framing.RFC4571: MAX_RFC4571_PACKET,
}

#: Where the first bytes of ChannelData end, for the framings that carry it.
_CHANNEL_DATA_END = {Framing.STUN_OR_CHANNEL_DATA: 0x50, Framing.STUN_OR_RFC5766_CHANNEL_DATA: 0x80}


class StreamDecoder:
    """Reassembles frames from a byte stream: ``for frame in decoder.feed(data): ...``.

    ``max_frame_size`` bounds a frame (for RFC 4571 the packet, for the others the whole message)
    and so the bytes held between calls; a frame that announces more raises
    :class:`~stun.errors.DecodeError`. It defaults to the largest frame the framing allows.
    """

    __slots__ = ("_buffer", "_failed", "framing", "max_frame_size")

    def __init__(
        self, framing: Framing = Framing.STUN, *, max_frame_size: int | None = None
    ) -> None:
        largest = _LARGEST[framing]
        if max_frame_size is None:
            max_frame_size = largest
        if not HEADER_SIZE <= max_frame_size <= largest:
            raise LocalProtocolError(f"max_frame_size must be in [{HEADER_SIZE}, {largest}]")
        self.framing = framing
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return every frame they complete, in order.

        Raises :class:`~stun.errors.DecodeError` when the stream holds something that cannot be
        framed, and again on every later call: the stream is beyond repair. Frames completed by
        the same call before the bad bytes are lost with the connection.
        """
        if self._failed is not None:
            raise self._failed
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        try:
            while True:
                span = self._frame_span(buffer, start)
                if span is None:
                    break
                begin, end, start = span
                frames.append(bytes(buffer[begin:end]))
        except DecodeError as exc:
            self._failed = exc
            buffer.clear()
            raise
        del buffer[:start]
        return frames

    def _frame_span(self, buffer: bytearray, start: int) -> tuple[int, int, int] | None:
        """Where the frame at ``start`` begins and ends, and where the next one starts;
        ``None`` while it is incomplete.
        """
        available = len(buffer) - start
        if available < 1:
            return None
        first = buffer[start]
        if self.framing is Framing.RFC4571:
            if available < 2:
                return None
            size = _U16.unpack_from(buffer, start)[0]
            self._check_size(size, "RFC 4571 packet")
            end = start + 2 + size
            return (start + 2, end, end) if len(buffer) >= end else None
        if first < 0x04:
            return self._stun_span(buffer, start, available)
        if 0x40 <= first < _CHANNEL_DATA_END.get(self.framing, 0x40):
            if available < 4:
                return None
            length = _U16_PAIR.unpack_from(buffer, start)[1]
            self._check_size(4 + length, "ChannelData message")
            end = start + 4 + length
            padded = end + (-length & 3)
            return (start, end, padded) if len(buffer) >= padded else None
        expected = "a STUN message" if self.framing is Framing.STUN else "STUN or ChannelData"
        raise DecodeError(f"stream byte 0x{first:02X} cannot start {expected}: not in step")

    def _stun_span(
        self, buffer: bytearray, start: int, available: int
    ) -> tuple[int, int, int] | None:
        if available < 4:
            return None
        length = _U16_PAIR.unpack_from(buffer, start)[1]
        if length & 3:
            raise DecodeError(f"stream: STUN length {length} is not a multiple of 4")
        self._check_size(HEADER_SIZE + length, "STUN message")
        if available >= 8 and _COOKIE.unpack_from(buffer, start + 4)[0] != MAGIC_COOKIE:
            # RFC 3489 knew only UDP, so a stream message always carries the cookie.
            raise DecodeError("stream: STUN message without the magic cookie")
        end = start + HEADER_SIZE + length
        return (start, end, end) if len(buffer) >= end else None

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_frame_size:
            raise DecodeError(f"stream: {what} of {size} bytes, more than {self.max_frame_size}")


def frame_rfc4571(packet: bytes) -> bytes:
    """``packet`` with the 16-bit length prefix of RFC 4571 §2, ready for an ICE-TCP stream."""
    if len(packet) > MAX_RFC4571_PACKET:
        raise LocalProtocolError(f"RFC 4571 packet too long: {len(packet)} bytes")
    return _U16.pack(len(packet)) + packet


def pad_channel_data(message: bytes) -> bytes:
    """A ChannelData message padded with zeros to a multiple of four, as TCP/TLS require
    (RFC 8656 §12.5). The Length field is left alone: it never counts the padding.
    """
    return message + bytes(-len(message) & 3)
