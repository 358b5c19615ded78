"""Relayed candidates (RFC 8445 §5.1.1.2) through TURN allocations (RFC 8656), for the agent.

Theory of operation. For every UDP host base and every configured TURN server of the same family,
:meth:`Relays.allocate` opens a :class:`~turn.client.TurnAllocation` that talks to the server from
that base. When the Allocate succeeds, each relayed address becomes a relayed candidate — its own
base (checks are sent "from" it), related address the server-reflexive address the server saw
(RFC 8839 §5.1; with the relay-only policy a placeholder instead, :func:`related_address`),
type preference 0 — and when it fails, or is left unanswered for ``gathering_timeout`` (a dead
server must not stall gathering), a :class:`~ice.events.GatheringFailed`. Afterwards the agent
treats a relayed address like any other base: a datagram it addresses from a relayed address is
handed to :meth:`Relays.send`, which the allocation wraps in ChannelData or a Send indication
(creating the peer's permission first); a datagram from the TURN server is unwrapped by
:meth:`Relays.receive` into what the peer sent to the relayed address.

An allocation can end without us: a 437 answer (the server restarted and holds no allocation for
us) or its lifetime running out. Its relayed candidates are then *lost* at once (the agent's
``lose`` callback). :meth:`Relays.probe` asks the server early, with a Refresh, whether it still
holds an allocation — the agent does so when a relayed pair stops answering consent checks — and
:meth:`Relays.restart` allocates again wherever the allocation is gone (ICE restart, RFC 8445 §9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stun.address import Address
from stun.client import ClientConfig, Credentials
from stun.datagram import Datagram
from turn.client import AllocationState, TurnAllocation, TurnClientConfig
from turn.events import AllocationCreated, AllocationExpired, AllocationFailed, DataReceived

from .candidate import (
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
)
from .config import AgentConfig, Policy, RelayServer
from .events import GatheringFailed

#: What the peer sent: (the relayed address it went to, the peer, the bytes).
Delivery = tuple[Address, Address, bytes]
#: A base to allocate from: (stream, component, base address, local preference).
RelayBase = tuple[int, int, Address, int]
#: Where the gone allocations stand: they are allocated again at a restart.
_ENDED = (AllocationState.FAILED, AllocationState.EXPIRED)


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
        lose_candidate: Callable[[Address, str], None],
        failed: Callable[[GatheringFailed], None],
    ) -> None:
        self._config = config
        self._add_candidate = add_candidate
        self._lose_candidate = lose_candidate
        self._failed = failed
        self._relays: list[_Relay] = []
        self._by_relayed: dict[Address, _Relay] = {}
        #: (base, server) → relay: the owner of a datagram from a TURN server, in one lookup.
        self._routes: dict[tuple[Address, Address], _Relay] = {}

    def allocate(self, bases: list[RelayBase], now: float) -> None:
        """Allocate on every TURN server from every base of the server's family."""
        for base in bases:
            for server in self._config.turn_servers:
                if (":" in server.address.host) == (":" in base[2].host):
                    self._open(server, base, now)

    def _open(self, server: RelayServer, base: RelayBase, now: float) -> None:
        config = self._config
        stream, component, address, preference = base
        allocation = TurnAllocation(
            server.address,
            Credentials(username=server.username, password=server.password),
            TurnClientConfig(
                stun=ClientConfig(rng=config.rng, software=config.software),
                allocate_timeout=config.gathering_timeout,
            ),
            local=address,
        )
        relay = _Relay(allocation, server, address, stream, component, preference)
        self._relays.append(relay)
        self._routes[(address, server.address)] = relay
        allocation.allocate(now)
        self._drain(relay)

    def restart(self, now: float) -> None:
        """ICE restart: allocate again on every server whose allocation failed or ended."""
        for relay in [r for r in self._relays if r.allocation.state in _ENDED]:
            self._forget(relay)
            base = (relay.stream, relay.component, relay.base, relay.local_preference)
            self._open(relay.server, base, now)

    def remove_base(self, base: Address, now: float, reason: str) -> None:
        """The base's interface address is gone: end its allocations and lose their candidates."""
        for relay in [r for r in self._relays if r.base == base]:
            self._lose(relay, reason)
            relay.allocation.close(now)  # nothing can be sent from a gone base: no wait for it
            self._forget(relay)

    def _forget(self, relay: _Relay) -> None:
        self._relays.remove(relay)
        self._routes = {key: r for key, r in self._routes.items() if r is not relay}

    @property
    def pending(self) -> bool:
        """Whether an Allocate is still unanswered (gathering is not complete until none is)."""
        return any(r.allocation.state is AllocationState.ALLOCATING for r in self._relays)

    def is_relayed(self, address: Address) -> bool:
        return address in self._by_relayed

    def owner(self, local: Address, remote: Address) -> _Relay | None:
        """The allocation a datagram arriving on base ``local`` from ``remote`` belongs to."""
        return self._routes.get((local, remote))

    def receive(self, relay: _Relay, data: bytes, now: float) -> list[Delivery]:
        """Feed a datagram from the TURN server; return what peers sent through the relay."""
        relay.allocation.receive_datagram(data, relay.base, relay.allocation.server, now)
        return self._drain(relay)

    def send(self, data: bytes, relayed: Address, peer: Address, now: float) -> None:
        """Send ``data`` from a relayed address to ``peer`` (through the TURN server)."""
        relay = self._by_relayed.get(relayed)
        if relay is not None and relay.allocation.state is AllocationState.ALLOCATED:
            relay.allocation.send(data, peer, now)

    def probe(self, relayed: Address, now: float) -> None:
        """Ask the server whether it still holds the allocation behind ``relayed`` (an early
        Refresh, RFC 8656 §8): a 437 answer loses its candidates at once."""
        relay = self._by_relayed.get(relayed)
        if relay is not None and relay.allocation.state is AllocationState.ALLOCATED:
            relay.allocation.refresh(now)
            self._drain(relay)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return [d for relay in self._relays for d in relay.allocation.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return min(
            (t for relay in self._relays if (t := relay.allocation.get_timer()) is not None),
            default=None,
        )

    def handle_timer(self, now: float) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for relay in list(self._relays):
            relay.allocation.handle_timer(now)
            deliveries += self._drain(relay)
        return deliveries

    def close(self, now: float) -> None:
        """Delete every allocation (RFC 8656 §8: Refresh with LIFETIME 0)."""
        for relay in self._relays:
            relay.allocation.close(now)

    def _drain(self, relay: _Relay) -> list[Delivery]:
        deliveries: list[Delivery] = []
        allocation = relay.allocation
        while (event := allocation.next_event()) is not None:
            if isinstance(event, DataReceived):
                deliveries.append((event.relayed, event.peer, event.data))
            elif isinstance(event, AllocationCreated):
                for relayed in event.relayed:
                    self._by_relayed[relayed] = relay
                    self._add_candidate(self._candidate(relay, relayed, event.mapped), relay.stream)
            elif isinstance(event, AllocationFailed):
                self._failed(GatheringFailed(relay.server.address, relay.base, event.reason))
            elif isinstance(event, AllocationExpired):
                self._lose(
                    relay, f"the TURN allocation on {relay.server.address} ended: {event.reason}"
                )
        # ALTERNATE-SERVER (RFC 8489 §10) may have moved the allocation to another server.
        self._routes[(relay.base, allocation.server)] = relay
        return deliveries

    def _lose(self, relay: _Relay, reason: str) -> None:
        for relayed in [a for a, r in self._by_relayed.items() if r is relay]:
            del self._by_relayed[relayed]
            self._lose_candidate(relayed, reason)

    def _candidate(self, relay: _Relay, relayed: Address, mapped: Address | None) -> Candidate:
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
            related_address=related_address(relayed, mapped, self._config.policy),
            base=relayed,
        )


def related_address(relayed: Address, mapped: Address | None, policy: Policy) -> Address | None:
    """The related address a relayed candidate is signalled with (RFC 8839 §5.1): the address the
    TURN server saw us at — unless the policy is relay-only, whose point is that the peer never
    learns an address of ours: then the unspecified address of the candidate's family, port 0,
    which the SDP grammar allows and browsers signal in that mode (libwebrtc empties a relayed
    candidate's related address when reflexive candidates are not allowed)."""
    if policy is Policy.RELAY:
        return Address("::" if ":" in relayed.host else "0.0.0.0", 0)
    return mapped
