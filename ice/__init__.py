"""ICE (RFC 8445): candidates, the sans-IO agent, and :class:`Connection`, its asyncio face."""

from typing import TYPE_CHECKING

from stun.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .aio import Connection
    from .candidate import (
        ICE_CHARS,
        MAX_PRIORITY,
        TRANSPORTS,
        TYPE_PREFERENCE,
        Candidate,
        CandidateType,
        IceDescription,
        TcpType,
        candidate_priority,
        compute_foundation,
        eliminate_redundant,
        generate_credentials,
        local_preferences,
        pair_priority,
        validate_pwd,
        validate_ufrag,
    )
    from .connection_options import TurnRestCredentials
    from .errors import (
        DecodeError,
        IceConnectionError,
        IceError,
        LocalProtocolError,
        RemoteProtocolError,
        UnsupportedCandidateError,
    )
    from .interfaces import interface_addresses

#: Where each public name lives: imported from there at first use (:mod:`stun.lazy_exports`).
_EXPORTS = {
    ".aio": ("Connection",),
    ".candidate": (
        "ICE_CHARS",
        "MAX_PRIORITY",
        "TRANSPORTS",
        "TYPE_PREFERENCE",
        "Candidate",
        "CandidateType",
        "IceDescription",
        "TcpType",
        "candidate_priority",
        "compute_foundation",
        "eliminate_redundant",
        "generate_credentials",
        "local_preferences",
        "pair_priority",
        "validate_pwd",
        "validate_ufrag",
    ),
    ".connection_options": ("TurnRestCredentials",),
    ".errors": (
        "DecodeError",
        "IceConnectionError",
        "IceError",
        "LocalProtocolError",
        "RemoteProtocolError",
        "UnsupportedCandidateError",
    ),
    ".interfaces": ("interface_addresses",),
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ICE_CHARS",
    "MAX_PRIORITY",
    "TRANSPORTS",
    "TYPE_PREFERENCE",
    "Candidate",
    "CandidateType",
    "Connection",
    "DecodeError",
    "IceConnectionError",
    "IceDescription",
    "IceError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "TcpType",
    "TurnRestCredentials",
    "UnsupportedCandidateError",
    "candidate_priority",
    "compute_foundation",
    "eliminate_redundant",
    "generate_credentials",
    "interface_addresses",
    "local_preferences",
    "pair_priority",
    "validate_pwd",
    "validate_ufrag",
]
