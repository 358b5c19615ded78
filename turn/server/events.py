"""Events the TURN server core reports to its driver (past-tense dataclasses, architecture.md
§4)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stun import Address

from .allocation import FiveTuple


@dataclass(frozen=True, slots=True)
class TurnServerEvent:
    """Base class of every event of :class:`turn.server.TurnServerCore`."""


@dataclass(frozen=True, slots=True)
class AllocationCreated(TurnServerEvent):
    """An Allocate succeeded: ``username`` now holds ``relayed`` for ``lifetime`` seconds."""

    five_tuple: FiveTuple
    username: str
    relayed: tuple[Address, ...]
    lifetime: float


class DeletionReason(enum.Enum):
    """Why an allocation ended."""

    EXPIRED = "its lifetime ran out without a Refresh (RFC 8656 §6)"
    DELETED = "the client sent a Refresh with LIFETIME 0 (RFC 8656 §8.2)"
    CONNECTION_CLOSED = "the TCP or TLS connection of its 5-tuple closed"


@dataclass(frozen=True, slots=True)
class AllocationDeleted(TurnServerEvent):
    """An allocation ended and its relayed addresses were released."""

    five_tuple: FiveTuple
    username: str
    relayed: tuple[Address, ...]
    reason: DeletionReason
