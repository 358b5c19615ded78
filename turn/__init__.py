"""TURN (RFC 8656): relayed transport addresses, on top of :mod:`stun`.

Importing this package registers TURN's attributes (:mod:`turn.attributes`) with :mod:`stun`'s
codec, so that STUN messages carrying them decode typed. :mod:`turn.channel` is the ChannelData
message; :mod:`turn.client` the sans-IO allocation machine, :mod:`turn.uri` server URIs, and
:class:`TurnClient` (:mod:`turn.aio`) the machine's asyncio face. :mod:`turn.server` is the
sans-IO server core and :class:`TurnServer` (:mod:`turn.server.aio`) its asyncio face. Every
other public name loads at first use (:mod:`stun.lazy_exports`), so that ``import turn`` costs the
codec, not the client and the server: a command's options (``icestack turn --help``) need
:mod:`turn.uri` only.
"""

from typing import TYPE_CHECKING

from stun.lazy_exports import lazy_exports

from . import attributes  # noqa: F401  (registers TURN's attributes: see above)

if TYPE_CHECKING:
    from .aio import TurnClient
    from .aio_tcp_client import PeerStream
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
    from .client import MAX_SEND_SIZE, AllocationState, TurnAllocation, TurnClientConfig
    from .errors import (
        DecodeError,
        LocalProtocolError,
        PeerConnectionFailed,
        PeerNotPermitted,
        RemoteProtocolError,
        TurnError,
    )
    from .events import (
        AllocationCreated,
        AllocationDeleted,
        AllocationExpired,
        AllocationFailed,
        AllocationRefreshed,
        ChannelBound,
        ChannelFailed,
        ConnectFailed,
        ConnectionAttempted,
        ConnectionBindFailed,
        ConnectionBound,
        DataReceived,
        PeerConnected,
        PermissionCreated,
        PermissionFailed,
        TurnClientEvent,
    )
    from .server.aio import TurnServer
    from .transport import ClientTransport
    from .uri import ServerUri, UriScheme, parse_uri

#: Where each public name lives: imported from there at first use (:mod:`stun.lazy_exports`).
_EXPORTS = {
    ".aio": ("TurnClient",),
    ".aio_tcp_client": ("PeerStream",),
    ".attributes": (
        "AdditionalAddressFamily",
        "AddressErrorCode",
        "ChannelNumber",
        "ConnectionId",
        "Data",
        "DontFragment",
        "EvenPort",
        "Icmp",
        "Lifetime",
        "RequestedAddressFamily",
        "RequestedTransport",
        "ReservationToken",
        "TransportProtocol",
        "TurnAttrType",
        "XorPeerAddress",
        "XorRelayedAddress",
    ),
    ".channel": (
        "MAX_CHANNEL",
        "MIN_CHANNEL",
        "ChannelData",
        "PacketKind",
        "classify",
        "decode_channel_data",
        "encode_channel_data",
        "is_channel_data",
        "is_valid_channel",
    ),
    ".client": (
        "MAX_SEND_SIZE",
        "AllocationState",
        "TurnAllocation",
        "TurnClientConfig",
    ),
    ".errors": (
        "DecodeError",
        "LocalProtocolError",
        "PeerConnectionFailed",
        "PeerNotPermitted",
        "RemoteProtocolError",
        "TurnError",
    ),
    ".events": (
        "AllocationCreated",
        "AllocationDeleted",
        "AllocationExpired",
        "AllocationFailed",
        "AllocationRefreshed",
        "ChannelBound",
        "ChannelFailed",
        "ConnectFailed",
        "ConnectionAttempted",
        "ConnectionBindFailed",
        "ConnectionBound",
        "DataReceived",
        "PeerConnected",
        "PermissionCreated",
        "PermissionFailed",
        "TurnClientEvent",
    ),
    ".transport": ("ClientTransport",),
    ".uri": (
        "ServerUri",
        "UriScheme",
        "parse_uri",
    ),
    ".server.aio": ("TurnServer",),
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "MAX_CHANNEL",
    "MAX_SEND_SIZE",
    "MIN_CHANNEL",
    "AdditionalAddressFamily",
    "AddressErrorCode",
    "AllocationCreated",
    "AllocationDeleted",
    "AllocationExpired",
    "AllocationFailed",
    "AllocationRefreshed",
    "AllocationState",
    "ChannelBound",
    "ChannelData",
    "ChannelFailed",
    "ChannelNumber",
    "ClientTransport",
    "ConnectFailed",
    "ConnectionAttempted",
    "ConnectionBindFailed",
    "ConnectionBound",
    "ConnectionId",
    "Data",
    "DataReceived",
    "DecodeError",
    "DontFragment",
    "EvenPort",
    "Icmp",
    "Lifetime",
    "LocalProtocolError",
    "PacketKind",
    "PeerConnected",
    "PeerConnectionFailed",
    "PeerNotPermitted",
    "PeerStream",
    "PermissionCreated",
    "PermissionFailed",
    "RemoteProtocolError",
    "RequestedAddressFamily",
    "RequestedTransport",
    "ReservationToken",
    "ServerUri",
    "TransportProtocol",
    "TurnAllocation",
    "TurnAttrType",
    "TurnClient",
    "TurnClientConfig",
    "TurnClientEvent",
    "TurnError",
    "TurnServer",
    "UriScheme",
    "XorPeerAddress",
    "XorRelayedAddress",
    "classify",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
    "is_valid_channel",
    "parse_uri",
]
