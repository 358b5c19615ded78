"""Relayed candidates (RFC 8445 §5.1.1.2) through TURN allocations (RFC 8656), for the agent.

Theory of operation. For every UDP host base and every configured TURN server of the same family,
:meth:`Relays.start` opens a :class:`~turn.client.TurnAllocation` that talks to the server from that
base. When the Allocate succeeds, each relayed address becomes a relayed candidate — its own base
(checks are sent "from" it), related address the server-reflexive address the server saw, type
preference 0 — and when it fails, a :class:`~ice.events.GatheringFailed`. Afterwards the agent
treats a relayed address like any other base: a datagram it addresses from a relayed address is
handed to :meth:`Relays.send`, which the allocation wraps in ChannelData or a Send indication
(creating the peer's permission first); a datagram from the TURN server is unwrapped by
:meth:`Relays.receive` into what the peer sent to the relayed address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stun.address import Address
from stun.client import ClientConfig, Credentials
from stun.datagram import Datagram
from turn.client import AllocationState, TurnAllocation, TurnClientConfig
from turn.events import AllocationCreated, AllocationFailed, DataReceived

from .candidate import (
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
)
from .config import AgentConfig, RelayServer
from .events import GatheringFailed, IceEvent

#: What the peer sent: (the relayed address it went to, the peer, the bytes).
Delivery = tuple[Address, Address, bytes]


@dataclass(slots=True)
class _Relay:
    allocation: TurnAllocation
    server: RelayServer
    base: Address
    stream: int
    component: int
    local_preference: int


class Relays:
    """The TURN allocations of one agent and the relayed candidates they give."""

    def __init__(
        self,
        config: AgentConfig,
        add_candidate: Callable[[Candidate, int], None],
        emit: Callable[[IceEvent], None],
    ) -> None:
        self._config = config
        self._add_candidate = add_candidate
        self._emit = emit
        self._relays: list[_Relay] = []
        self._by_relayed: dict[Address, _Relay] = {}

    def start(
        self, bases: list[tuple[int, int, Address, int]], now: float
    ) -> None:
        """Allocate on every TURN server from every base ``(stream, component, base, local
        preference)`` of the server's family."""
        config = self._config
        for stream, component, base, preference in bases:
            for server in config.turn_servers:
                if (":" in server.address.host) != (":" in base.host):
                    continue
                allocation = TurnAllocation(
                    server.address,
                    Credentials(username=server.username, password=server.password),
                    TurnClientConfig(stun=ClientConfig(rng=config.rng, software=config.software)),
                    local=base,
                )
                relay = _Relay(allocation, server, base, stream, component, preference)
                self._relays.append(relay)
                allocation.allocate(now)
                self._drain(relay)

    @property
    def pending(self) -> bool:
        """Whether an Allocate is still unanswered (gathering is not complete until none is)."""
        return any(r.allocation.state is AllocationState.ALLOCATING for r in self._relays)

    def is_relayed(self, address: Address) -> bool:
        return address in self._by_relayed

    def owner(self, local: Address, remote: Address) -> _Relay | None:
        """The allocation a datagram arriving on base ``local`` from ``remote`` belongs to."""
        for relay in self._relays:
            if relay.base == local and relay.allocation.server == remote:
                return relay
        return None

    def receive(self, relay: _Relay, data: bytes, now: float) -> list[Delivery]:
        """Feed a datagram from the TURN server; return what peers sent through the relay."""
        relay.allocation.receive_datagram(data, relay.base, relay.allocation.server, now)
        return self._drain(relay)

    def send(self, data: bytes, relayed: Address, peer: Address, now: float) -> None:
        """Send ``data`` from a relayed address to ``peer`` (through the TURN server)."""
        relay = self._by_relayed.get(relayed)
        if relay is not None and relay.allocation.state is AllocationState.ALLOCATED:
            relay.allocation.send(data, peer, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return [d for relay in self._relays for d in relay.allocation.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return min(
            (t for relay in self._relays if (t := relay.allocation.get_timer()) is not None),
            default=None,
        )

    def handle_timer(self, now: float) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for relay in self._relays:
            relay.allocation.handle_timer(now)
            deliveries += self._drain(relay)
        return deliveries

    def close(self, now: float) -> None:
        """Delete every allocation (RFC 8656 §8: Refresh with LIFETIME 0)."""
        for relay in self._relays:
            relay.allocation.close(now)

    def _drain(self, relay: _Relay) -> list[Delivery]:
        deliveries: list[Delivery] = []
        while (event := relay.allocation.next_event()) is not None:
            if isinstance(event, DataReceived):
                deliveries.append((event.relayed, event.peer, event.data))
            elif isinstance(event, AllocationCreated):
                for relayed in event.relayed:
                    self._by_relayed[relayed] = relay
                    self._add_candidate(self._candidate(relay, relayed, event.mapped), relay.stream)
            elif isinstance(event, AllocationFailed):
                self._emit(GatheringFailed(relay.server.address, relay.base, event.reason))
        return deliveries

    @staticmethod
    def _candidate(relay: _Relay, relayed: Address, mapped: Address | None) -> Candidate:
        return Candidate(
            foundation=compute_foundation(
                CandidateType.RELAYED, relay.base.host, "udp", relay.server.address.host
            ),
            component=relay.component,
            transport="udp",
            priority=candidate_priority(
                TYPE_PREFERENCE[CandidateType.RELAYED], relay.local_preference, relay.component
            ),
            host=relayed.host,
            port=relayed.port,
            type=CandidateType.RELAYED,
            related_address=mapped,
            base=relayed,
        )
