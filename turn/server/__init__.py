"""The sans-IO TURN server (RFC 8656): allocations, permissions, channels, quotas, peer policy and
credentials, driven through the five verbs (architecture.md §2) by :class:`TurnServerCore`; TCP
allocations (RFC 6062) through the commands and notifications of :mod:`turn.server.connections`.

The asyncio ``turn.TurnServer`` owns the sockets; relayed addresses come to the core through a
:class:`RelayAllocator` (:class:`PortRangeAllocator` serves tests and the simulated network), and
TCP listening on them through :class:`TcpListeners`.
"""

from typing import TYPE_CHECKING

from stun.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from stun.limits import SourceRateLimiter, TokenBucket, source_key

    from ..rest_api import rest_api_expiry, rest_api_password, rest_api_username
    from ..transport import ClientTransport
    from .allocation import Allocation, ChannelBinding, FiveTuple
    from .config import TurnServerConfig
    from .connections import (
        ClosePeerConnection,
        ConnectionState,
        ConnectionTable,
        OpenPeerConnection,
        PeerConnection,
        SpliceConnection,
        TcpCommand,
        TcpListeners,
    )
    from .core import TurnServerCore
    from .credentials import RestApiUsers
    from .events import (
        AllocationCreated,
        AllocationDeleted,
        ChannelGranted,
        DeletionReason,
        PermissionGranted,
        RequestRefused,
        TurnServerEvent,
    )
    from .policy import PeerPolicy
    from .relays import DYNAMIC_PORTS, PortRangeAllocator, RelayAllocator
    from .special_purpose import DOCUMENTATION_RANGES, SPECIAL_RANGES, Reach, SpecialRange
    from .stats import Outcome, TurnServerStats
    from .table import AllocationTable

#: Where each public name lives: imported from there at first use (:mod:`stun.lazy_exports`),
#: so that one module of the core (``turn.server.relays``) does not load all of it.
_EXPORTS = {
    "stun.limits": (
        "SourceRateLimiter",
        "TokenBucket",
        "source_key",
    ),
    "..rest_api": (
        "rest_api_expiry",
        "rest_api_password",
        "rest_api_username",
    ),
    "..transport": ("ClientTransport",),
    ".allocation": (
        "Allocation",
        "ChannelBinding",
        "FiveTuple",
    ),
    ".config": ("TurnServerConfig",),
    ".connections": (
        "ClosePeerConnection",
        "ConnectionState",
        "ConnectionTable",
        "OpenPeerConnection",
        "PeerConnection",
        "SpliceConnection",
        "TcpCommand",
        "TcpListeners",
    ),
    ".core": ("TurnServerCore",),
    ".credentials": ("RestApiUsers",),
    ".events": (
        "AllocationCreated",
        "AllocationDeleted",
        "ChannelGranted",
        "DeletionReason",
        "PermissionGranted",
        "RequestRefused",
        "TurnServerEvent",
    ),
    ".policy": ("PeerPolicy",),
    ".relays": (
        "DYNAMIC_PORTS",
        "PortRangeAllocator",
        "RelayAllocator",
    ),
    ".special_purpose": (
        "DOCUMENTATION_RANGES",
        "SPECIAL_RANGES",
        "Reach",
        "SpecialRange",
    ),
    ".stats": ("Outcome", "TurnServerStats"),
    ".table": ("AllocationTable",),
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DOCUMENTATION_RANGES",
    "DYNAMIC_PORTS",
    "SPECIAL_RANGES",
    "Allocation",
    "AllocationCreated",
    "AllocationDeleted",
    "AllocationTable",
    "ChannelBinding",
    "ChannelGranted",
    "ClientTransport",
    "ClosePeerConnection",
    "ConnectionState",
    "ConnectionTable",
    "DeletionReason",
    "FiveTuple",
    "OpenPeerConnection",
    "Outcome",
    "PeerConnection",
    "PeerPolicy",
    "PermissionGranted",
    "PortRangeAllocator",
    "Reach",
    "RelayAllocator",
    "RequestRefused",
    "RestApiUsers",
    "SourceRateLimiter",
    "SpecialRange",
    "SpliceConnection",
    "TcpCommand",
    "TcpListeners",
    "TokenBucket",
    "TurnServerConfig",
    "TurnServerCore",
    "TurnServerEvent",
    "TurnServerStats",
    "rest_api_expiry",
    "rest_api_password",
    "rest_api_username",
    "source_key",
]
