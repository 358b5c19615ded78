"""Unit tests of turn.channel: the ChannelData message (RFC 8656 §12.4-§12.6) and demultiplexing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stun import Framing, StreamDecoder
from turn import (
    ChannelData,
    DecodeError,
    LocalProtocolError,
    PacketKind,
    classify,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
    is_valid_channel,
)


def test_wire_form() -> None:
    assert ChannelData(0x4000, b"abc").encode() == bytes.fromhex("40000003") + b"abc"
    assert ChannelData(0x4FFF, b"").encode() == bytes.fromhex("4fff0000")


def test_padding_for_streams_is_not_counted_in_the_length() -> None:
    assert ChannelData(0x4001, b"abcde").encode(pad=True) == (
        bytes.fromhex("40010005") + b"abcde" + bytes(3)
    )
    assert ChannelData(0x4001, b"abcd").encode(pad=True) == bytes.fromhex("40010004") + b"abcd"


def test_decode_ignores_padding_after_the_data() -> None:
    """Over UDP, padding is optional (§12.5): whatever follows the data is not data."""
    assert ChannelData.decode(bytes.fromhex("40010001") + b"x\x00\x00\x00") == ChannelData(
        0x4001, b"x"
    )


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"", "0 bytes"),
        (b"\x40\x00\x00", "3 bytes"),
        (bytes.fromhex("40000005") + b"abcd", "length 5 but only 4"),
        (bytes.fromhex("3fff0000"), "channel 0x3FFF outside"),
        (bytes.fromhex("50000000"), "channel 0x5000 outside"),  # RFC 5766's range, not ours
        (bytes.fromhex("7fff0000"), "channel 0x7FFF outside"),
        (bytes.fromhex("ffff0000"), "channel 0xFFFF outside"),
    ],
)
def test_malformed_messages_raise_turn_decode_error(message: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        ChannelData.decode(message)


@pytest.mark.parametrize("channel", [0x3FFF, 0x5000, 0xFFFF, -1])
def test_channels_outside_the_range_cannot_be_built(channel: int) -> None:
    assert not is_valid_channel(channel)
    with pytest.raises(LocalProtocolError, match="outside 0x4000-0x4FFF"):
        ChannelData(channel, b"")
    with pytest.raises(LocalProtocolError):
        encode_channel_data(channel, b"")


def test_rfc5766_channels_when_asked_for() -> None:
    """RFC 5766 §11 allowed 0x4000-0x7FFF; a server that accepts its clients says so."""
    message = encode_channel_data(0x7FFF, b"x", max_channel=0x7FFF)
    assert decode_channel_data(message, max_channel=0x7FFF) == (0x7FFF, b"x")
    with pytest.raises(DecodeError, match="outside 0x4000-0x4FFF"):
        decode_channel_data(message)
    with pytest.raises(LocalProtocolError, match="outside 0x4000-0x7FFF"):
        encode_channel_data(0x8000, b"", max_channel=0x7FFF)


def test_data_longer_than_the_length_field_cannot_be_built() -> None:
    with pytest.raises(LocalProtocolError, match="65535"):
        ChannelData(0x4000, bytes(0x10000))
    with pytest.raises(LocalProtocolError, match="65535"):
        encode_channel_data(0x4000, bytes(0x10000))
    assert len(ChannelData(0x4000, bytes(0xFFFF)).encode()) == 4 + 0xFFFF


def test_stream_decoder_cuts_padded_channel_data_back_into_messages() -> None:
    """What a TCP sender pads (§12.5), stun's stream framing strips, byte by byte."""
    messages = [ChannelData(0x4000 + n, bytes(range(n))) for n in range(6)]
    stream = b"".join(m.encode(pad=True) for m in messages)
    decoder = StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    frames = [frame for byte in stream for frame in decoder.feed(bytes([byte]))]
    assert [ChannelData.decode(frame) for frame in frames] == messages
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("first", "kind"),
    [
        (0, PacketKind.STUN),
        (3, PacketKind.STUN),
        (4, PacketKind.UNKNOWN),
        (15, PacketKind.UNKNOWN),
        (16, PacketKind.ZRTP),
        (19, PacketKind.ZRTP),
        (20, PacketKind.DTLS),
        (63, PacketKind.DTLS),
        (64, PacketKind.CHANNEL_DATA),
        (79, PacketKind.CHANNEL_DATA),
        (80, PacketKind.UNKNOWN),
        (127, PacketKind.UNKNOWN),
        (128, PacketKind.RTP),
        (191, PacketKind.RTP),
        (192, PacketKind.UNKNOWN),
        (255, PacketKind.UNKNOWN),
    ],
)
def test_first_byte_demultiplexing_follows_rfc_8656_table_3(first: int, kind: PacketKind) -> None:
    assert classify(first) is kind
    assert is_channel_data(first) is (kind is PacketKind.CHANNEL_DATA)


def test_every_valid_channel_starts_with_a_channel_data_byte() -> None:
    assert all(is_channel_data(n >> 8) for n in range(0x4000, 0x5000))


channels = st.integers(0x4000, 0x4FFF)


@settings(max_examples=200, deadline=None)
@given(channels, st.binary(max_size=300), st.booleans())
def test_round_trip(channel: int, data: bytes, pad: bool) -> None:
    message = encode_channel_data(channel, data, pad=pad)
    assert len(message) % 4 == 0 or not pad
    assert decode_channel_data(message) == (channel, data)
    assert ChannelData.decode(message) == ChannelData(channel, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_raises_only_turn_decode_error(message: bytes) -> None:
    try:
        decoded = ChannelData.decode(message)
    except DecodeError:
        return
    # What decodes is a valid message that starts the same way when re-encoded.
    assert is_channel_data(message[0])
    assert message.startswith(decoded.encode())
