"""Events the STUN client machine reports to its driver (past-tense dataclasses, architecture.md
§4)."""

from __future__ import annotations

from dataclasses import dataclass

from .address import Address
from .errors import StunError
from .message import Message


@dataclass(frozen=True, slots=True)
class StunEvent:
    """Base class of every event in the :mod:`stun` package."""


@dataclass(frozen=True, slots=True)
class RequestSucceeded(StunEvent):
    """A request got its success response; ``rtt`` counts from the first send of that attempt."""

    handle: int
    response: Message
    rtt: float
    server: Address


@dataclass(frozen=True, slots=True)
class RequestFailed(StunEvent):
    """A request ended without success: timeout, error response, integrity or closed connection."""

    handle: int
    error: StunError
