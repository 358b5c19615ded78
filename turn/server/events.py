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


@dataclass(frozen=True, slots=True)
class PermissionGranted(TurnServerEvent):
    """A CreatePermission or ChannelBind installed permissions for peers at ``hosts`` that had
    none (RFC 8656 §9); refreshes of existing permissions are not reported."""

    five_tuple: FiveTuple
    username: str
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChannelGranted(TurnServerEvent):
    """A ChannelBind bound ``channel`` to ``peer`` (RFC 8656 §12); refreshes are not reported."""

    five_tuple: FiveTuple
    username: str
    channel: int
    peer: Address


@dataclass(frozen=True, slots=True)
class RequestRefused(TurnServerEvent):
    """A request was answered with error ``code``: a TURN method's check failed (``outcome`` a
    :class:`turn.server.Outcome`), or its credentials did (a :class:`stun.outcomes.Outcome`; the
    401 challenge that starts every session is not reported). ``username`` is the one the request
    carried ("" without one); ``detail`` names what was refused, when there is more to say (the
    peer and the policy's reason for a 403, the quota for a 486)."""

    five_tuple: FiveTuple
    username: str
    method: int
    code: int
    outcome: enum.Enum
    detail: str | None = None
