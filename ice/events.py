"""What the ICE agent tells its application (architecture.md §4: frozen, past-tense dataclasses)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stun.address import Address

from .candidate import Candidate
from .checklist import CandidatePair


class IceState(enum.Enum):
    """The agent's overall state (WebRTC's RTCIceConnectionState, RFC 8445 §6.1.3)."""

    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class IceEvent:
    """Base class of every event of the :mod:`ice` package."""


@dataclass(frozen=True, slots=True)
class CandidateGathered(IceEvent):
    """A local candidate is ready to signal to the peer (trickle, RFC 8838)."""

    stream: int
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class GatheringFailed(IceEvent):
    """A STUN server gave no server-reflexive candidate, or a TURN server no relayed one (it
    refused, or did not answer within ``gathering_timeout``); gathering goes on without it."""

    server: Address
    base: Address
    reason: str


@dataclass(frozen=True, slots=True)
class GatheringCompleted(IceEvent):
    """Every candidate that will be gathered has been (signal end-of-candidates)."""


@dataclass(frozen=True, slots=True)
class CandidateLost(IceEvent):
    """A local candidate is gone: its TURN allocation ended (a 437 answer after a server
    restart, or its lifetime ran out), or a restart found its interface address gone. Its pairs
    fail; if it carried a component's data, that component has no path any more.

    ``released``: the agent let it go itself — ICE completed and no selected pair uses its
    base, or its TURN allocation (RFC 8445 §8.3, :mod:`ice.release`; ``reason`` is then
    :data:`~ice.release.RELEASED`): a driver closes the base's socket, and a restart gathers
    it again. ``reason`` says in words why, for a log."""

    stream: int
    candidate: Candidate
    reason: str
    released: bool = False


@dataclass(frozen=True, slots=True)
class RemoteCandidateLearned(IceEvent):
    """A check arrived from an address the peer never signalled: a peer-reflexive candidate."""

    stream: int
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class PairStateChanged(IceEvent):
    """A candidate pair moved in its check list (RFC 8445 §6.1.2.6)."""

    stream: int
    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class SelectedPairChanged(IceEvent):
    """A component's selected pair is now ``pair``: data goes there (RFC 8445 §8.1.1)."""

    stream: int
    component: int
    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class RoleChanged(IceEvent):
    """A role conflict switched the agent's role (RFC 8445 §7.3.1.1)."""

    controlling: bool


@dataclass(frozen=True, slots=True)
class StateChanged(IceEvent):
    """The agent's overall state changed."""

    state: IceState


@dataclass(frozen=True, slots=True)
class ConsentLost(IceEvent):
    """No authenticated consent response for the consent timeout (RFC 7675 §5.1)."""

    stream: int
    component: int
    pair: CandidatePair


@dataclass(frozen=True, slots=True)
class DataReceived(IceEvent):
    """Application data arrived on a component (when the agent itself is fed data packets)."""

    stream: int
    component: int
    data: bytes
    remote: Address
