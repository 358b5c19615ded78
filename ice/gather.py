"""Gathering local candidates (RFC 8445 §5.1.1) as part of the sans-IO agent.

Theory of operation. The driver opens one socket per (stream, component, interface address) and
declares each as a *base* (:meth:`Gatherer.add_base`). :meth:`Gatherer.start` turns every base into
a host candidate at once and queues one Binding request per (base, STUN server of the same family) —
paced at Ta like checks (§14.2), each abandoned after ``gathering_timeout`` so a dead server cannot
stall gathering: it produces :class:`~ice.events.GatheringFailed` and gathering completes without
it. A response's XOR-MAPPED-ADDRESS becomes a server-reflexive candidate unless it equals the base
(no NAT: redundant, §5.1.3). When nothing is outstanding, :class:`~ice.events.GatheringCompleted`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stun.address import Address
from stun.attributes import XorMappedAddress
from stun.datagram import Datagram
from stun.message import Message, MessageClass, Method, new_transaction_id
from stun.transaction import ClientTransaction, TransactionState

from .candidate import (
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
    local_preferences,
)
from .config import AgentConfig, Policy
from .events import CandidateGathered, GatheringCompleted, GatheringFailed, IceEvent
from .relay import Relays


@dataclass(frozen=True, slots=True)
class LocalCandidate:
    """A local candidate with what the agent needs beyond its SDP: its base and stream."""

    candidate: Candidate
    base: Address
    stream: int


@dataclass(slots=True)
class _Request:
    base: LocalCandidate
    server: Address
    transaction: ClientTransaction | None = None


class Gatherer:
    """Collects host and server-reflexive candidates; the agent feeds it and drains it."""

    def __init__(
        self,
        config: AgentConfig,
        emit: Callable[[IceEvent], None],
        send: Callable[[Datagram], None],
    ) -> None:
        self._config = config
        self._emit = emit
        self._send = send
        #: The TURN allocations behind relayed candidates (RFC 8445 §5.1.1.2).
        self.relays = Relays(config, self._add_relayed, emit)
        #: Relayed candidates the agent has not paired yet.
        self.new_relayed: list[LocalCandidate] = []
        self._bases: list[tuple[int, int, Address]] = []
        #: Every local candidate, in the order learnt; add with :meth:`_add` to keep the indexes.
        self.candidates: list[LocalCandidate] = []
        #: Per base, its host or relayed candidate (the first candidate learnt on it).
        self._by_base: dict[Address, LocalCandidate] = {}
        #: Per (stream, component, address), the first candidate with that address.
        self._by_address: dict[tuple[int, int, Address], LocalCandidate] = {}
        self._base_addresses: set[tuple[Address, Address]] = set()
        #: How many peer-reflexive local candidates were learnt (bounded by the config).
        self.peer_reflexive = 0
        self._queue: deque[_Request] = deque()
        self._in_flight: dict[bytes, _Request] = {}
        self._next_send = 0.0
        self.started = False
        self.completed = False

    def add_base(self, stream: int, component: int, address: Address) -> None:
        """Declare a socket the driver opened for ``stream``/``component``."""
        self._bases.append((stream, component, address))

    def start(self, now: float) -> None:
        """Emit host candidates and queue server-reflexive requests (§5.1.1.1, §5.1.1.2)."""
        self.started = True
        preferences = local_preferences([address.host for _, _, address in self._bases])
        for stream, component, address in self._bases:
            candidate = Candidate(
                foundation=compute_foundation(CandidateType.HOST, address.host, "udp"),
                component=component,
                transport="udp",
                priority=candidate_priority(
                    TYPE_PREFERENCE[CandidateType.HOST], preferences[address.host], component
                ),
                host=address.host,
                port=address.port,
                type=CandidateType.HOST,
                base=address,
            )
            local = LocalCandidate(candidate, address, stream)
            self._add(local)
            if self._config.policy is not Policy.RELAY:
                self._emit(CandidateGathered(stream, candidate))
            if self._config.lite:
                continue
            for server in self._config.stun_servers:
                if (":" in server.host) == (":" in address.host):
                    self._queue.append(_Request(local, server))
        if not self._config.lite:
            self.relays.start(
                [
                    (c.stream, c.candidate.component, c.base, (c.candidate.priority >> 8) & 0xFFFF)
                    for c in self.candidates
                ],
                now,
            )
        if self._queue:
            self._send_request(self._queue.popleft(), now)
        self._next_send = now + self._config.pacing
        self._check_complete()

    def _add(self, local: LocalCandidate) -> None:
        self.candidates.append(local)
        self._by_base.setdefault(local.base, local)
        key = (local.stream, local.candidate.component, local.candidate.address)
        self._by_address.setdefault(key, local)
        self._base_addresses.add((local.base, local.candidate.address))

    def on_base(self, base: Address) -> LocalCandidate | None:
        """The host or relayed candidate whose base is ``base``, if it is one of ours."""
        return self._by_base.get(base)

    def find(self, stream: int, component: int, address: Address) -> LocalCandidate | None:
        """The local candidate of this stream and component with transport address ``address``."""
        return self._by_address.get((stream, component, address))

    def learn_peer_reflexive(self, local: LocalCandidate) -> bool:
        """Add a peer-reflexive local candidate (RFC 8445 §7.2.5.3.1); ``False`` when
        ``max_local_peer_reflexive`` were learnt already."""
        if self.peer_reflexive >= self._config.max_local_peer_reflexive:
            return False
        self.peer_reflexive += 1
        self._add(local)
        return True

    def local_preference(self, base: Address) -> int:
        """The local preference of a base's candidates (unique per base, RFC 8445 §5.1.2.1)."""
        local = self._by_base.get(base)
        if local is not None and local.candidate.type is CandidateType.HOST:
            return (local.candidate.priority >> 8) & 0xFFFF
        return 65535

    def get_timer(self) -> float | None:
        deadlines = [
            deadline
            for r in self._in_flight.values()
            if r.transaction is not None and (deadline := r.transaction.get_timer()) is not None
        ]
        if self._queue:
            deadlines.append(self._next_send)
        deadlines += [
            r.transaction.started_at + self._config.gathering_timeout
            for r in self._in_flight.values()
            if r.transaction
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        config = self._config
        for tid, request in list(self._in_flight.items()):
            transaction = request.transaction
            assert transaction is not None
            expired = now >= transaction.started_at + config.gathering_timeout
            resend = None if expired else transaction.handle_timer(now)
            if resend is not None:
                self._send(Datagram(resend, request.base.base, request.server))
            elif expired or transaction.state is TransactionState.TIMED_OUT:
                del self._in_flight[tid]
                self._emit(GatheringFailed(request.server, request.base.base, "no response"))
        if self._queue and now >= self._next_send:
            self._send_request(self._queue.popleft(), now)
            self._next_send = now + config.pacing
        self._check_complete()

    def _send_request(self, request: _Request, now: float) -> None:
        transaction_id = new_transaction_id(self._config.rng)
        data = Message(Method.BINDING, MessageClass.REQUEST, transaction_id).encode(
            fingerprint=True
        )
        pending = len(self._queue) + len(self._in_flight) + 1
        rto = max(0.5, self._config.pacing * pending)  # RFC 8445 §14.3
        request.transaction = ClientTransaction(
            data, transaction_id, now=now, rto=rto, config=self._config.check_transaction
        )
        self._in_flight[transaction_id] = request
        self._send(Datagram(data, request.base.base, request.server))

    def handle_response(self, message: Message, local: Address, remote: Address) -> bool:
        """Take a Binding response meant for gathering; ``False`` if it is not one of ours."""
        request = self._in_flight.get(message.transaction_id)
        if request is None or request.base.base != local or request.server != remote:
            return False
        del self._in_flight[message.transaction_id]
        mapped = message.get(XorMappedAddress)
        if message.message_class is not MessageClass.SUCCESS_RESPONSE or mapped is None:
            self._emit(GatheringFailed(request.server, local, "error response"))
        elif (":" in mapped.address.host) != (":" in local.host):
            self._emit(GatheringFailed(request.server, local, "mapped address of another family"))
        else:
            self._add_server_reflexive(request, mapped.address)
        self._check_complete()
        return True

    def _add_server_reflexive(self, request: _Request, mapped: Address) -> None:
        base = request.base
        if mapped == base.base or (base.base, mapped) in self._base_addresses:
            return  # redundant (§5.1.3): no NAT, or this server told us what another did
        component = base.candidate.component
        candidate = Candidate(
            foundation=compute_foundation(
                CandidateType.SERVER_REFLEXIVE, base.base.host, "udp", request.server.host
            ),
            component=component,
            transport="udp",
            priority=candidate_priority(
                TYPE_PREFERENCE[CandidateType.SERVER_REFLEXIVE],
                (base.candidate.priority >> 8) & 0xFFFF,
                component,
            ),
            host=mapped.host,
            port=mapped.port,
            type=CandidateType.SERVER_REFLEXIVE,
            related_address=base.base,
            base=base.base,
        )
        self._add(LocalCandidate(candidate, base.base, base.stream))
        if self._config.policy is not Policy.RELAY:
            self._emit(CandidateGathered(base.stream, candidate))

    def _add_relayed(self, candidate: Candidate, stream: int) -> None:
        assert candidate.base is not None
        local = LocalCandidate(candidate, candidate.base, stream)
        self._add(local)
        self.new_relayed.append(local)
        self._emit(CandidateGathered(stream, candidate))

    def check_complete(self) -> None:
        """Gathering completes when no STUN request or TURN Allocate is outstanding."""
        self._check_complete()

    def _check_complete(self) -> None:
        if (
            self.started
            and not self.completed
            and not self._queue
            and not self._in_flight
            and not self.relays.pending
        ):
            self.completed = True
            self._emit(GatheringCompleted())
