"""Gathering local candidates (RFC 8445 §5.1.1) as part of the sans-IO agent.

Theory of operation. The driver opens one socket per (stream, component, interface address) and
declares each as a *base* (:meth:`Gatherer.add_base`). :meth:`Gatherer.start` turns every base into
a host candidate at once and queues one Binding request per (base, STUN server of the same family) —
paced at Ta like checks (§14.2), each abandoned after ``gathering_timeout`` so a dead server cannot
stall gathering: it produces :class:`~ice.events.GatheringFailed` and gathering completes without
it. A response's XOR-MAPPED-ADDRESS becomes a server-reflexive candidate unless it equals the base
(no NAT: redundant, §5.1.3). TURN allocations (:mod:`ice.relay`) are capped the same way. When
nothing is outstanding, :class:`~ice.events.GatheringCompleted`. With the relay policy no STUN
server is asked anything and only relayed candidates are announced: the TURN servers are the only
parties we talk to. Server-reflexive and relayed candidates start from their base's local
preference and take one that no other candidate of their type and component holds (§5.1.2.1,
:mod:`ice.preferences`).

TCP host candidates (RFC 6544 §4.1) come from the TCP bases the driver declares
(:meth:`Gatherer.add_tcp_base`), one listening socket per (stream, component, interface address):
a *passive* candidate at the base's address and an *active* one signalled with port 9 (RFC 6544
§4.5), both with the base as their base, as ``tcp_types`` asks; a simultaneous-open base, a
socket that both accepts and connects from its own port, gives an *S-O* candidate. They rank
below every UDP candidate of their kind (:data:`~ice.candidate.TCP_TYPE_PREFERENCE`), with RFC
6544 §4.2's direction preference in their local preference. No server-reflexive TCP candidate
is learnt: a NAT maps a TCP connection only while it lasts, so none would be usable by the peer.

An ICE restart (RFC 8445 §9, :meth:`Gatherer.restart`) gathers again what is gone: bases declared
since gathering started, allocations that failed or ended; it announces every candidate again
(they are the new generation's) and completes again. :meth:`Gatherer.remove_base` forgets a base
whose interface address went away, or that a completed session released (RFC 8445 §8.3,
:mod:`ice.release`); its candidates are *lost* (:class:`~ice.events.CandidateLost`), as are the
relayed candidates of an allocation that ended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from stun.address import Address
from stun.advertised import advertise
from stun.attributes import ErrorCode, XorMappedAddress
from stun.datagram import Datagram
from stun.message import Message, MessageClass, Method, new_transaction_id
from stun.transaction import ClientTransaction, TransactionState

from .candidate import (
    ACTIVE_TCP_PORT,
    TCP_TYPE_PREFERENCE,
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    TcpType,
    candidate_priority,
    compute_foundation,
    local_preferences,
    other_preference,
    tcp_local_preference,
)
from .config import AgentConfig, Policy
from .errors import LocalProtocolError
from .events import (
    CandidateGathered,
    CandidateLost,
    GatheringCompleted,
    GatheringFailed,
    IceEvent,
)
from .preferences import LocalPreferences
from .relay import NO_RELAYS, RelayBase, Relays
from .shared_values import SharedValues

#: The TCP types of a listening base's candidates, in the order they are made.
_PASSIVE_FIRST = (TcpType.PASSIVE, TcpType.ACTIVE)
#: Read for every check the agent sends (:meth:`Gatherer.local_preference`), bound once: CPython
#: 3.11 reads an enum member through its class in ~0.2 µs (EnumType defines __getattr__).
_HOST = CandidateType.HOST


@dataclass(frozen=True, slots=True)
class LocalCandidate:
    """A local candidate with what the agent needs beyond its SDP: its base and stream."""

    candidate: Candidate
    base: Address
    stream: int


class _Base(NamedTuple):
    """A socket the driver declared."""

    stream: int
    component: int
    address: Address
    #: The TCP types of its candidates; ``None`` for a UDP base.
    tcp_types: tuple[TcpType, ...] | None = None


@dataclass(slots=True)
class _Request:
    base: LocalCandidate
    server: Address
    transaction: ClientTransaction | None = None


def _address_key(local: LocalCandidate) -> tuple[int, int, Address]:
    """What :meth:`Gatherer.find` looks a candidate up by: stream, component, address."""
    return (local.stream, local.candidate.component, local.candidate.address)


#: The base preferences of the agents of this process: mostly one value, held once.
_PREFERENCES: SharedValues[tuple[tuple[str, int], ...]] = SharedValues()

#: The table of a gatherer that has sent no request (most agents have no STUN server): shared,
#: never added to.
_NO_REQUESTS: dict[bytes, _Request] = {}


class Gatherer:
    """Collects host and server-reflexive candidates; the agent feeds it and drains it."""

    __slots__ = (
        "_bases",
        "_config",
        "_emit",
        "_in_flight",
        "_index",
        "_local_preferences",
        "_new_bases",
        "_next_send",
        "_preferences",
        "_queue",
        "_send",
        "candidates",
        "completed",
        "failures",
        "lost",
        "new_relayed",
        "peer_reflexive",
        "relays",
        "started",
    )

    def __init__(
        self,
        config: AgentConfig,
        emit: Callable[[IceEvent], None],
        send: Callable[[Datagram], None],
    ) -> None:
        self._config = config
        self._emit = emit
        self._send = send
        self._local_preferences: LocalPreferences | None = None
        #: The TURN allocations behind relayed candidates (RFC 8445 §5.1.1.2).
        self.relays = (
            Relays(config, self.preferences, self._add_relayed, self._lose_relayed, self._failed)
            if config.turn_servers
            else NO_RELAYS
        )
        # Tuples, not lists, for what is rare and mostly empty: the empty tuple is one shared
        # object, an empty list 56 bytes of each agent's.
        #: Relayed candidates the agent has not paired yet.
        self.new_relayed: tuple[LocalCandidate, ...] = ()
        #: Candidates that are gone and that the agent has not forgotten yet (with the reason).
        self.lost: tuple[tuple[LocalCandidate, str], ...] = ()
        #: What gave no candidate in this generation, for the failure summary.
        self.failures: tuple[GatheringFailed, ...] = ()
        self._bases: tuple[_Base, ...] = ()
        #: Bases declared after gathering started: gathered at the next restart.
        self._new_bases: tuple[_Base, ...] = ()
        #: The local preference of each base address, as (host, preference) pairs (read only
        #: when gathering starts or restarts; a dict of one is 184 bytes, a tuple 104, and the
        #: agents of a process, gathering on the same addresses, share one).
        self._preferences: tuple[tuple[str, int], ...] = ()
        #: Every local candidate, in the order learnt; add with :meth:`_add` to keep the index.
        #: (Bounded: per base its host candidate, one per STUN and TURN server, and at most
        #: ``max_local_peer_reflexive`` peer-reflexive ones.)
        self.candidates: tuple[LocalCandidate, ...] = ()
        #: Two indexes in one table (a dict is 224 bytes however few its entries): per base (an
        #: :class:`~stun.address.Address` key), its host or relayed candidate, the first learnt
        #: on it; per (stream, component, address) — a 3-tuple, never equal to an address —
        #: the first candidate with that transport address, unless :meth:`find` finds it
        #: through its base's entry.
        self._index: dict[Address | tuple[int, int, Address], LocalCandidate] = {}
        #: How many peer-reflexive local candidates were learnt (bounded by the config).
        self.peer_reflexive = 0
        #: STUN requests waiting for their Ta slot (a tuple: a few per server and base, and
        #: mostly none; the empty tuple is shared, an empty list is 56 bytes of each agent's).
        self._queue: tuple[_Request, ...] = ()
        #: Requests sent and not answered yet: the shared empty table until the first
        #: (:meth:`_send_request`, the only place that adds, gives the gatherer its own).
        self._in_flight: dict[bytes, _Request] = _NO_REQUESTS
        self._next_send = 0.0
        self.started = False
        self.completed = False

    @property
    def preferences(self) -> LocalPreferences:
        """The local preferences reflexive and relayed candidates hold (RFC 8445 §5.1.2.1): made
        with the first of them (host candidates take none)."""
        if self._local_preferences is None:
            self._local_preferences = LocalPreferences()
        return self._local_preferences

    def add_base(self, stream: int, component: int, address: Address) -> None:
        """Declare a UDP socket the driver opened for ``stream``/``component``; after gathering
        started, its candidates are gathered at the next :meth:`restart`."""
        self._declare(_Base(stream, component, address))

    def add_tcp_base(
        self, stream: int, component: int, address: Address, *, simultaneous_open: bool
    ) -> None:
        """Declare a TCP base (RFC 6544 §4.1): a listening socket, whose passive and active
        candidates ``tcp_types`` asks for, or with ``simultaneous_open`` a socket that both
        accepts and connects from its port, whose S-O candidate it asks for."""
        wanted = self._config.tcp_types
        types: tuple[TcpType, ...]
        if simultaneous_open:
            types = tuple(t for t in wanted if t is TcpType.SIMULTANEOUS_OPEN)
        else:  # passive first: an accepted connection's check is the passive candidate's
            types = tuple(
                t
                for t in _PASSIVE_FIRST
                if t in wanted and not (self._config.lite and t is TcpType.ACTIVE)
            )
            if types == _PASSIVE_FIRST:
                types = _PASSIVE_FIRST  # the usual case: one shared tuple, not 56 bytes a base
        self._declare(_Base(stream, component, address, types))

    def _declare(self, base: _Base) -> None:
        if any(known.address == base.address for known in self._bases):
            raise LocalProtocolError(
                f"{base.address} is declared already (a TCP and a UDP base need "
                "addresses of their own)"
            )
        self._bases += (base,)
        if self.started:
            self._new_bases += (base,)

    def remove_base(
        self, address: Address, now: float, reason: str, *, released: bool = False
    ) -> None:
        """Forget a base (its interface address is gone, or it was ``released``): every
        candidate on it is lost, with ``reason``."""
        self._bases = tuple(b for b in self._bases if b.address != address)
        self._new_bases = tuple(b for b in self._new_bases if b.address != address)
        self._queue = tuple(r for r in self._queue if r.base.base != address)
        self._in_flight = {t: r for t, r in self._in_flight.items() if r.base.base != address}
        self.relays.remove_base(address, now, reason, released=released)
        for local in [c for c in self.candidates if c.base == address]:
            self._lose(local, reason, released)
        self._check_complete()

    def base_addresses(self) -> list[Address]:
        """The address of every declared base, UDP and TCP, in the order declared."""
        return [base.address for base in self._bases]

    def has_base(
        self,
        stream: int,
        component: int,
        host: str,
        *,
        tcp: bool,
        simultaneous_open: bool = False,
    ) -> bool:
        """Whether a UDP (or, with ``tcp``, a TCP: the listening one, or with
        ``simultaneous_open`` the S-O one) base of this stream and component on the interface
        address ``host`` is declared: a driver re-opens one that was released (RFC 8445 §8.3,
        :mod:`ice.release`) before a restart."""
        for base in self._bases:
            if base.stream != stream or base.component != component or base.address.host != host:
                continue
            types = base.tcp_types
            if types is None:
                if not tcp:
                    return True
            elif tcp and (TcpType.SIMULTANEOUS_OPEN in types) == simultaneous_open:
                return True
        return False

    def start(self, now: float) -> None:
        """Emit host candidates and queue server-reflexive requests (§5.1.1.1, §5.1.1.2)."""
        self.started = True
        hosts = [base.address.host for base in self._bases]
        self._preferences = _PREFERENCES.get(tuple(local_preferences(hosts).items()))
        self._gather(self._bases, now)
        self._check_complete()

    def restart(self, now: float) -> None:
        """ICE restart (RFC 8445 §9): announce the candidates again, gather on the bases declared
        since, allocate again where an allocation failed or ended; then complete again."""
        self.completed = False
        self.failures = ()
        for local in self.candidates:
            if self._announces(local.candidate):
                self._emit(CandidateGathered(local.stream, local.candidate))
        bases, self._new_bases = self._new_bases, ()
        preferences = dict(self._preferences)
        for _, _, address, _ in bases:
            if address.host not in preferences:
                lowest = min(preferences.values(), default=0x10000)
                preferences[address.host] = max(lowest - 1, 0)
        self._preferences = _PREFERENCES.get(tuple(preferences.items()))
        self._gather(bases, now)
        self.relays.restart(now)
        self._check_complete()

    def _gather(self, bases: Sequence[_Base], now: float) -> None:
        """Host candidates of ``bases`` now; their srflx requests and TURN allocations."""
        config = self._config
        preferences = dict(self._preferences)
        gathered = []
        for stream, component, address, tcp_types in bases:
            preference = preferences[address.host]
            if tcp_types is not None:
                if config.policy is not Policy.RELAY:  # relay-only: relayed candidates only
                    for tcp_type in tcp_types:
                        self._add_host(stream, component, address, preference, tcp_type)
                continue
            local = self._add_host(stream, component, address, preference)
            gathered.append(local)
            if config.lite or config.policy is Policy.RELAY:
                continue  # relay-only: not a single request to anything but the TURN servers
            for server in config.stun_servers:
                if (":" in server.host) == (":" in address.host):
                    self._queue += (_Request(local, server),)
        if not config.lite:
            relay_bases: list[RelayBase] = [
                (c.stream, c.candidate.component, c.base, (c.candidate.priority >> 8) & 0xFFFF)
                for c in gathered
            ]
            self.relays.allocate(relay_bases, now)
        if self._queue and not self._in_flight:
            self._send_next(now)

    def _add_host(
        self,
        stream: int,
        component: int,
        base: Address,
        preference: int,
        tcp_type: TcpType | None = None,
    ) -> LocalCandidate:
        """The host candidate of ``base`` (§5.1.1.1), announced; with ``tcp_type``, a TCP one
        (RFC 6544 §4.1, §4.2: TCP's type preference and direction; §4.5: port 9 if active)."""
        if tcp_type is None:
            transport, port = "udp", base.port
            priority = candidate_priority(
                TYPE_PREFERENCE[CandidateType.HOST], preference, component
            )
        else:
            transport = "tcp"
            port = ACTIVE_TCP_PORT if tcp_type is TcpType.ACTIVE else base.port
            local_preference = tcp_local_preference(
                CandidateType.HOST, tcp_type, other_preference(preference)
            )
            type_preference = TCP_TYPE_PREFERENCE[CandidateType.HOST]
            priority = candidate_priority(type_preference, local_preference, component)
        candidate = Candidate(
            foundation=compute_foundation(CandidateType.HOST, base.host, transport),
            component=component,
            transport=transport,
            priority=priority,
            host=advertise(self._config.advertised_addresses, base.host),
            port=port,
            type=CandidateType.HOST,
            tcp_type=tcp_type,
            base=base,
        )
        local = LocalCandidate(candidate, base, stream)
        self._add(local)
        if self._announces(candidate):
            self._emit(CandidateGathered(stream, candidate))
        return local

    def _announces(self, candidate: Candidate) -> bool:
        """Whether a local candidate is signalled: relayed ones always, host and srflx unless
        the policy is relay-only, peer-reflexive ones never (RFC 8445 §7.2.5.3.1)."""
        if candidate.type is CandidateType.RELAYED:
            return True
        return candidate.type is not CandidateType.PEER_REFLEXIVE and (
            self._config.policy is not Policy.RELAY
        )

    def _add(self, local: LocalCandidate) -> None:
        self.candidates += (local,)
        self._index.setdefault(local.base, local)
        key = _address_key(local)
        if self.find(*key) is None:  # the first with its address: found from now on
            self._index[key] = local

    def _remove(self, local: LocalCandidate) -> None:
        """Take a lost candidate out of the list and of the index (rare: no index to help)."""
        key = _address_key(local)
        found = self.find(*key) is local
        self.candidates = tuple(c for c in self.candidates if c is not local)
        index = self._index
        if index.get(local.base) is local:
            del index[local.base]
        if index.get(key) is local:
            del index[key]
        if found:  # the next with its address is found now (keyed unless it is found already)
            first = next((c for c in self.candidates if _address_key(c) == key), None)
            if first is not None and self.find(*key) is not first:
                index[key] = first
        if local.candidate.type is CandidateType.PEER_REFLEXIVE:
            self.peer_reflexive -= 1
        elif local.candidate.type in (CandidateType.SERVER_REFLEXIVE, CandidateType.RELAYED):
            candidate = local.candidate
            preference = (candidate.priority >> 8) & 0xFFFF
            self.preferences.release(local.stream, candidate.component, candidate.type, preference)

    def pairable(self, stream: int, component: int) -> list[LocalCandidate]:
        """Local candidates that form pairs: host bases (unless the policy is relay-only) and
        relayed candidates, never server-reflexive ones, whose base is paired already
        (§6.1.2.4)."""
        wanted = {CandidateType.HOST} if self._config.policy is Policy.ALL else set()
        wanted.add(CandidateType.RELAYED)
        return [
            c
            for c in self.candidates
            if c.stream == stream
            and c.candidate.component == component
            and c.candidate.type in wanted
        ]

    def on_base(self, base: Address) -> LocalCandidate | None:
        """The host or relayed candidate whose base is ``base``, if it is one of ours."""
        return self._index.get(base)

    def find(self, stream: int, component: int, address: Address) -> LocalCandidate | None:
        """The local candidate of this stream and component with transport address ``address``
        (the first learnt).

        A candidate at its base's address — a host or relayed one, the usual answer — is found
        through its base's entry and has none of its own (64 bytes a key): :meth:`_add` keys
        only a candidate this does not find already, so the first one still wins."""
        index = self._index
        local = index.get((stream, component, address))
        if local is None:
            local = index.get(address)
            if local is None or not (
                local.candidate.address == address
                and local.stream == stream
                and local.candidate.component == component
            ):
                return None
        return local

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
        local = self._index.get(base)
        if local is not None and local.candidate.type is _HOST:
            return (local.candidate.priority >> 8) & 0xFFFF
        return 65535

    def get_timer(self) -> float | None:
        if not self._in_flight:  # asked after every datagram: gathering is over by then
            return self._next_send if self._queue else None
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
                waited = now - transaction.started_at
                self._failed(
                    GatheringFailed(
                        request.server, request.base.base, f"no answer in {waited:.1f} s"
                    )
                )
        if self._queue and now >= self._next_send:
            self._send_next(now)
        self._check_complete()

    def _send_next(self, now: float) -> None:
        """Send the first queued request; the next one waits for its Ta slot (§14.2)."""
        request, self._queue = self._queue[0], self._queue[1:]
        self._send_request(request, now)
        self._next_send = now + self._config.pacing

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
        if self._in_flight is _NO_REQUESTS:
            self._in_flight = {}
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
            error = message.get(ErrorCode)
            what = f"error {error.code} {error.reason}" if error else "no XOR-MAPPED-ADDRESS"
            self._failed(GatheringFailed(request.server, local, what))
        elif (":" in mapped.address.host) != (":" in local.host):
            self._failed(GatheringFailed(request.server, local, "mapped address of another family"))
        else:
            self._add_server_reflexive(request, mapped.address)
        self._check_complete()
        return True

    def _add_server_reflexive(self, request: _Request, mapped: Address) -> None:
        base = request.base
        if mapped == base.base or any(
            c.base == base.base and c.candidate.address == mapped for c in self.candidates
        ):  # once per answered request, on a bounded list: no index kept for it
            return  # redundant (§5.1.3): no NAT, or this server told us what another did
        component = base.candidate.component
        kind = CandidateType.SERVER_REFLEXIVE
        wanted = (base.candidate.priority >> 8) & 0xFFFF
        preference = self.preferences.take(base.stream, component, kind, wanted)
        candidate = Candidate(
            foundation=compute_foundation(kind, base.base.host, "udp", request.server.host),
            component=component,
            transport="udp",
            priority=candidate_priority(TYPE_PREFERENCE[kind], preference, component),
            host=mapped.host,
            port=mapped.port,
            type=CandidateType.SERVER_REFLEXIVE,
            related_address=base.base,
            base=base.base,
        )
        self._add(LocalCandidate(candidate, base.base, base.stream))
        if self._announces(candidate):
            self._emit(CandidateGathered(base.stream, candidate))

    def _add_relayed(self, candidate: Candidate, stream: int) -> None:
        assert candidate.base is not None
        local = LocalCandidate(candidate, candidate.base, stream)
        self._add(local)
        self.new_relayed += (local,)
        self._emit(CandidateGathered(stream, candidate))

    def _lose_relayed(self, relayed: Address, reason: str, released: bool) -> None:
        for local in [c for c in self.candidates if c.base == relayed]:
            self._lose(local, reason, released)

    def _lose(self, local: LocalCandidate, reason: str, released: bool = False) -> None:
        self._remove(local)
        if local in self.new_relayed:
            self.new_relayed = tuple(c for c in self.new_relayed if c is not local)
        self.lost += ((local, reason),)
        self._emit(CandidateLost(local.stream, local.candidate, reason, released=released))

    def _failed(self, event: GatheringFailed) -> None:
        self.failures += (event,)
        self._emit(event)

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
