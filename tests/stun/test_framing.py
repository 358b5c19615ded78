"""Stream framing (stun.framing): STUN over TCP, TURN's STUN + ChannelData, RFC 4571; any split."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stun import MAGIC_COOKIE, DecodeError, LocalProtocolError, Message, MessageClass, Method
from stun import Software as SoftwareAttribute
from stun.framing import (
    MAX_CHANNEL_DATA,
    MAX_RFC4571_PACKET,
    MAX_STUN_MESSAGE,
    Framing,
    StreamDecoder,
    frame_rfc4571,
    pad_channel_data,
)

TID = bytes(range(12))


def stun_message(body: bytes = b"", message_type: int = 0x0001) -> bytes:
    return struct.pack("!HHI12s", message_type, len(body), MAGIC_COOKIE, TID) + body


def channel_data(channel: int, data: bytes) -> bytes:
    return struct.pack("!HH", channel, len(data)) + data


def feed_in_pieces(decoder: StreamDecoder, stream: bytes, cuts: list[int]) -> list[bytes]:
    frames: list[bytes] = []
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        frames += decoder.feed(stream[previous:cut])
        previous = cut
    return frames


# --------------------------------------------------------------------------- STUN over TCP


def test_stun_messages_back_to_back_become_frames() -> None:
    first = Message(Method.BINDING, MessageClass.REQUEST, TID, [SoftwareAttribute("a")]).encode()
    second = stun_message()
    decoder = StreamDecoder()
    assert decoder.feed(first + second) == [first, second]
    assert decoder.buffered == 0


def test_a_message_cut_anywhere_waits_for_the_rest() -> None:
    message = stun_message(b"\x80\x22\x00\x04abcd")
    for cut in range(len(message)):
        decoder = StreamDecoder()
        assert decoder.feed(message[:cut]) == []
        assert decoder.buffered == cut
        assert decoder.feed(message[cut:]) == [message]
        assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (b"\x80", "cannot start a STUN message"),
        (b"\x14", "cannot start a STUN message"),  # DTLS (RFC 7983)
        (b"\x40\x00\x00\x04", "cannot start a STUN message"),  # ChannelData outside TURN
        (b"\x00\x01\x00\x05", "multiple of 4"),
        (struct.pack("!HHI", 1, 0, 0x01020304), "magic cookie"),
    ],
)
def test_what_cannot_be_stun_raises_decode_error(stream: bytes, why: str) -> None:
    decoder = StreamDecoder()
    with pytest.raises(DecodeError, match=why):
        decoder.feed(stream)


def test_garbage_is_caught_before_a_whole_message_arrives() -> None:
    """The cookie is checked as soon as eight bytes are in, not after a 64 KiB wait."""
    decoder = StreamDecoder()
    assert decoder.feed(struct.pack("!HH", 1, 0xFFFC)) == []
    with pytest.raises(DecodeError):
        decoder.feed(b"HTTP")


def test_a_broken_stream_stays_broken() -> None:
    decoder = StreamDecoder()
    with pytest.raises(DecodeError):
        decoder.feed(b"GET / HTTP/1.1\r\n")
    assert decoder.buffered == 0
    with pytest.raises(DecodeError):
        decoder.feed(stun_message())


def test_frames_before_garbage_in_the_same_chunk_are_lost_with_the_stream() -> None:
    decoder = StreamDecoder()
    with pytest.raises(DecodeError):
        decoder.feed(stun_message() + b"\xff")


def test_max_frame_size_bounds_a_message() -> None:
    decoder = StreamDecoder(max_frame_size=64)
    assert decoder.feed(stun_message(bytes(44))) == [stun_message(bytes(44))]
    with pytest.raises(DecodeError, match="more than 64"):
        decoder.feed(stun_message(bytes(48))[:4])


@pytest.mark.parametrize(
    ("framing", "largest"),
    [
        (Framing.STUN, MAX_STUN_MESSAGE),
        (Framing.STUN_OR_CHANNEL_DATA, MAX_STUN_MESSAGE),
        (Framing.RFC4571, MAX_RFC4571_PACKET),
    ],
)
def test_max_frame_size_is_validated(framing: Framing, largest: int) -> None:
    assert StreamDecoder(framing).max_frame_size == largest
    with pytest.raises(LocalProtocolError):
        StreamDecoder(framing, max_frame_size=largest + 1)
    with pytest.raises(LocalProtocolError):
        StreamDecoder(framing, max_frame_size=19)


def test_the_largest_stun_message_is_accepted() -> None:
    message = stun_message(bytes(0xFFFC))
    assert StreamDecoder().feed(message) == [message]


# --------------------------------------------------------------------------- TURN over TCP


def test_channel_data_frames_lose_their_stream_padding() -> None:
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    data = channel_data(0x4001, b"hello")
    stream = pad_channel_data(data) + stun_message() + pad_channel_data(channel_data(0x4FFF, b""))
    assert len(pad_channel_data(data)) == 12
    assert decoder.feed(stream) == [data, stun_message(), channel_data(0x4FFF, b"")]


def test_channel_data_waits_for_its_padding() -> None:
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    data = channel_data(0x4000, b"x")
    assert decoder.feed(data) == []
    assert decoder.feed(b"\x00\x00") == []
    assert decoder.feed(b"\x00") == [data]
    assert decoder.buffered == 0


@pytest.mark.parametrize("first", [0x50, 0x7F, 0x80, 0xC0, 0xFF, 0x14])
def test_bytes_that_are_neither_stun_nor_channel_data_raise(first: int) -> None:
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    with pytest.raises(DecodeError, match="STUN or ChannelData"):
        decoder.feed(bytes([first, 0, 0, 4]))


def test_rfc5766_framing_also_cuts_channels_up_to_0x7fff() -> None:
    decoder = StreamDecoder(Framing.STUN_OR_RFC5766_CHANNEL_DATA)
    stream = [channel_data(0x7FFF, b"abc"), stun_message(), channel_data(0x5000, b""), b"\x80"]
    assert decoder.feed(b"".join(pad_channel_data(f) for f in stream[:3])) == stream[:3]
    with pytest.raises(DecodeError, match="byte 0x80 cannot start STUN or ChannelData"):
        decoder.feed(stream[3])


def test_the_largest_channel_data_is_accepted() -> None:
    data = channel_data(0x4ABC, bytes(0xFFFF))
    assert len(data) == MAX_CHANNEL_DATA
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    assert decoder.feed(pad_channel_data(data)) == [data]


def test_channel_data_larger_than_the_bound_raises() -> None:
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA, max_frame_size=100)
    with pytest.raises(DecodeError, match="ChannelData"):
        decoder.feed(struct.pack("!HH", 0x4000, 97))


@pytest.mark.parametrize(("size", "padded"), [(4, 4), (5, 8), (6, 8), (7, 8), (8, 8)])
def test_pad_channel_data_pads_to_four(size: int, padded: int) -> None:
    message = bytes(range(size))
    assert pad_channel_data(message) == message + bytes(padded - size)


# --------------------------------------------------------------------------- RFC 4571


def test_rfc4571_frames_are_the_packets_without_their_length() -> None:
    packets = [stun_message(), b"\x80\x00rtp", b""]
    stream = b"".join(frame_rfc4571(p) for p in packets)
    assert StreamDecoder(Framing.RFC4571).feed(stream) == packets


def test_rfc4571_prefix_is_the_big_endian_length() -> None:
    assert frame_rfc4571(b"abc") == b"\x00\x03abc"
    assert frame_rfc4571(bytes(MAX_RFC4571_PACKET))[:2] == b"\xff\xff"
    with pytest.raises(LocalProtocolError):
        frame_rfc4571(bytes(MAX_RFC4571_PACKET + 1))


def test_rfc4571_packets_larger_than_the_bound_raise() -> None:
    decoder = StreamDecoder(Framing.RFC4571, max_frame_size=1500)
    with pytest.raises(DecodeError, match="RFC 4571"):
        decoder.feed(b"\x05\xdd")


# --------------------------------------------------------------------------- properties

stun_frames = st.builds(
    stun_message,
    st.binary(max_size=64).map(lambda b: b + bytes(-len(b) % 4)),
    st.integers(0, 0x3FF),
)
channel_frames = st.builds(channel_data, st.integers(0x4000, 0x4FFF), st.binary(max_size=64))


@given(st.lists(stun_frames | channel_frames, max_size=8), st.data())
def test_any_split_of_stun_and_channel_data_gives_the_same_frames(
    frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(pad_channel_data(f) if f[0] >= 0x40 else f for f in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    assert feed_in_pieces(decoder, stream, cuts) == frames
    assert decoder.buffered == 0


@given(st.lists(stun_frames, max_size=6))
def test_byte_by_byte_stun_gives_the_same_frames(frames: list[bytes]) -> None:
    stream = b"".join(frames)
    decoder = StreamDecoder()
    assert feed_in_pieces(decoder, stream, list(range(len(stream)))) == frames


@given(st.lists(st.binary(max_size=80), max_size=8), st.data())
def test_any_split_of_rfc4571_gives_the_same_packets(
    packets: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frame_rfc4571(p) for p in packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert feed_in_pieces(StreamDecoder(Framing.RFC4571), stream, cuts) == packets


@given(
    st.sampled_from(list(Framing)),
    st.integers(20, 2000),
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
)
def test_garbage_raises_only_decode_error_and_the_buffer_stays_bounded(
    framing: Framing, max_frame_size: int, chunks: list[bytes]
) -> None:
    decoder = StreamDecoder(framing, max_frame_size=max_frame_size)
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except DecodeError:
            assert decoder.buffered == 0
            return
        assert all(len(frame) <= max_frame_size for frame in frames)
        # At most one incomplete frame, with its RFC 4571 prefix or ChannelData padding.
        assert decoder.buffered < max_frame_size + 4
