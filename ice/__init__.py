"""ICE (RFC 8445): candidates, the sans-IO agent, and :class:`Connection`, its asyncio face."""

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
