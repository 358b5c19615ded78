"""TURN (RFC 8656): relayed transport addresses, on top of :mod:`stun`.

Importing this package registers TURN's attributes (:mod:`turn.attributes`) with :mod:`stun`'s
codec, so that STUN messages carrying them decode typed. :mod:`turn.channel` is the ChannelData
message.
"""

from .attributes import (
    AdditionalAddressFamily,
    AddressErrorCode,
    ChannelNumber,
    ConnectionId,
    Data,
    DontFragment,
    EvenPort,
    Icmp,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    TurnAttrType,
    XorPeerAddress,
    XorRelayedAddress,
)
from .channel import (
    MAX_CHANNEL,
    MIN_CHANNEL,
    ChannelData,
    PacketKind,
    classify,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
    is_valid_channel,
)
from .errors import DecodeError, LocalProtocolError, RemoteProtocolError, TurnError

__all__ = [
    "MAX_CHANNEL",
    "MIN_CHANNEL",
    "AdditionalAddressFamily",
    "AddressErrorCode",
    "ChannelData",
    "ChannelNumber",
    "ConnectionId",
    "Data",
    "DecodeError",
    "DontFragment",
    "EvenPort",
    "Icmp",
    "Lifetime",
    "LocalProtocolError",
    "PacketKind",
    "RemoteProtocolError",
    "RequestedAddressFamily",
    "RequestedTransport",
    "ReservationToken",
    "TransportProtocol",
    "TurnAttrType",
    "TurnError",
    "XorPeerAddress",
    "XorRelayedAddress",
    "classify",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
    "is_valid_channel",
]
