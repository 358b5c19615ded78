"""TURN (RFC 8656): relayed transport addresses, on top of :mod:`stun`.

Importing this package registers TURN's attributes (:mod:`turn.attributes`) with :mod:`stun`'s
codec, so that STUN messages carrying them decode typed. :mod:`turn.channel` is the ChannelData
message; :mod:`turn.client` the sans-IO allocation machine, :mod:`turn.uri` server URIs, and
:class:`TurnClient` (:mod:`turn.aio`) the machine's asyncio face. :mod:`turn.server` is the
sans-IO server core and :class:`TurnServer` (:mod:`turn.server.aio`) its asyncio face.
"""

from typing import TYPE_CHECKING

from stun.lazy_exports import lazy_exports

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
from .transport import ClientTransport
from .uri import ServerUri, UriScheme, parse_uri

if TYPE_CHECKING:
    from .server.aio import TurnServer


#: ``turn.TurnServer`` is imported at first use, so that a client (and ``ice``) does not load
#: the whole server (PEP 562, :mod:`stun.lazy_exports`).
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {".server.aio": ("TurnServer",)})


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
