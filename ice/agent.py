"""The sans-IO ICE agent (RFC 8445): gathering, checks, nomination, consent.

Theory of operation. The agent is an architecture.md §2 machine: the driver feeds it every
datagram that arrives on its base sockets (:meth:`Agent.receive_datagram`), sends what it drains
(:meth:`Agent.datagrams_to_send`), calls :meth:`Agent.handle_timer` at :meth:`Agent.get_timer`, and
reads events (:meth:`Agent.next_event`).

1. **Gathering** (:mod:`ice.gather`): the driver declares its sockets with :meth:`add_base`, then
   :meth:`gather` emits host candidates at once and server-reflexive ones as STUN servers answer.
2. **Checking** starts at :meth:`start_checks` (or as soon as the peer's checks and credentials
   arrive). One check list per data stream pairs local bases with remote candidates (§6.1.2). Every
   Ta (``pacing``) the agent sends one check, round-robin over check lists: a triggered check
   first (§7.3.1.4), else the best Waiting pair, else it unfreezes a foundation (§6.1.4.2). Checks
   carry PRIORITY, ICE-CONTROLLING/CONTROLLED with the tie-breaker, USERNAME, MESSAGE-INTEGRITY
   with the peer's password and FINGERPRINT (§7.2.2), and are retransmitted on the RTO of §14.3.
3. **Responses** must be authenticated and symmetric (§7.2.5.2.1); a success makes the *valid
   pair* — its local side the candidate whose address the peer saw, a new peer-reflexive one if
   none (§7.2.5.3.1) — and unfreezes the pair's foundation everywhere (§7.2.5.3.3). A 487 switches
   the role and retries the pair (§7.2.5.1).
4. **Requests** from the peer are answered (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with our
   password, FINGERPRINT) after the role-conflict rules (§7.3.1.1); an unknown source becomes a
   peer-reflexive remote candidate (§7.3.1.3) and every request triggers a check back (§7.3.1.4).
5. **Nomination** (:mod:`ice.nomination`): the controlling agent nominates the best valid pair of a
   component as soon as no better pair can still succeed, or ``max_nomination_wait`` after its
   first valid pair, by repeating its check with USE-CANDIDATE (§8.1.1). The controlled agent
   nominates a pair when a USE-CANDIDATE check for it has arrived and its own check of it
   succeeded, and selects the highest-priority nominated pair per component.
6. **Consent** (:mod:`ice.consent`, RFC 7675) runs on every selected pair.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque

from stun.address import Address
from stun.attributes import (
    ErrorCode,
    Fingerprint,
    IceControlled,
    IceControlling,
    Priority,
    UseCandidate,
    Username,
    XorMappedAddress,
)
from stun.datagram import Datagram
from stun.errors import DecodeError as StunDecodeError
from stun.message import Message, MessageClass, Method, new_transaction_id
from stun.transaction import ClientTransaction, TransactionState

from .candidate import (
    MAX_PRIORITY,
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
    generate_credentials,
)
from .checklist import CandidatePair, CheckList, PairState, SelectedPairs
from .config import AgentConfig, Policy
from .consent import ConsentTracker
from .errors import LocalProtocolError
from .events import (
    ConsentLost,
    DataReceived,
    IceEvent,
    IceState,
    PairStateChanged,
    RemoteCandidateLearned,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
)
from .gather import Gatherer, LocalCandidate
from .nomination import NominationPolicy, replaces_selected
from .remotes import RemoteCandidates, unusable
from .stats import (
    FailureCounters,
    PairStats,
    PeerInput,
    TableSizes,
    describe_failure,
    pair_stats,
)

#: How many request transaction IDs the agent remembers to recognise retransmissions.
_RECENT_REQUESTS = 256


class _Check:
    """One connectivity check in flight."""

    __slots__ = (
        "cancelled",
        "consent",
        "controlling",
        "key",
        "pair",
        "peer_had_credentials",
        "transaction",
        "use_candidate",
    )

    def __init__(
        self,
        pair: CandidatePair,
        transaction: ClientTransaction,
        use_candidate: bool,
        controlling: bool,
        consent: bool,
        key: bytes,
        peer_had_credentials: bool,
    ) -> None:
        self.pair = pair
        self.transaction = transaction
        self.use_candidate = use_candidate
        self.controlling = controlling
        self.consent = consent
        #: The peer's password the request was signed with: its response must carry the same.
        self.key = key
        #: An authenticated check from the peer had arrived when this one went out.
        self.peer_had_credentials = peer_had_credentials
        #: Replaced by a triggered check (§7.3.1.4): no retransmission; a timeout is no failure.
        self.cancelled = False


class Agent:
    """One ICE session: local and remote candidates, check lists, selected pairs."""

    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config = config or AgentConfig()
        if config.remote_lite and not config.controlling:
            raise LocalProtocolError("an agent talking to an ICE-lite peer must be controlling")
        self.controlling = False if config.lite else config.controlling
        self.tie_breaker = (
            config.tie_breaker if config.tie_breaker is not None else config.rng.getrandbits(64)
        )
        ufrag, pwd = generate_credentials(config.rng)
        self.local_username = config.local_username or ufrag
        self.local_password = config.local_password or pwd
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self.state = IceState.NEW
        self._events: deque[IceEvent] = deque()
        self._outgoing: list[Datagram] = []
        self.gatherer = Gatherer(config, self._events.append, self._outgoing.append)
        self.checklists = [
            CheckList(stream, components, config.max_pairs)
            for stream, components in enumerate(config.streams)
        ]
        self.remote_candidates = RemoteCandidates(config.max_remote_candidates)
        self.remote_complete = False
        self._checks: dict[bytes, _Check] = {}
        self._checking = False
        self._next_check_at = 0.0
        self._round_robin = itertools.cycle(range(len(self.checklists)))
        self._prflx_foundations = itertools.count(1)
        self.selected = SelectedPairs()
        self.nomination = NominationPolicy(config)
        self.consent = ConsentTracker(config)
        self.failures = FailureCounters()
        self._closed = False
        #: Transaction IDs of recent requests: a retransmission is answered, not re-triggered.
        self._recent_requests: OrderedDict[bytes, None] = OrderedDict()
        #: The local password a check from the peer was last authenticated with: when it is the
        #: current one, the peer has our credentials (see ``NominationPolicy.nominated_by_us``).
        self._password_seen_by_peer: str | None = None

    # ================================================================== commands

    def add_base(self, stream: int, component: int, address: Address) -> None:
        """Declare a local socket (one per stream, component and interface address)."""
        self._check_stream(stream, component)
        self.gatherer.add_base(stream, component, address)

    def gather(self, now: float) -> None:
        """Emit host candidates now and start learning server-reflexive ones (§5.1.1)."""
        if self.gatherer.started:
            raise LocalProtocolError("gather() was already called")
        self.gatherer.start(now)
        for stream, candidate in list(self.remote_candidates):
            self._pair_remote(stream, candidate)

    @property
    def local_candidates(self) -> list[LocalCandidate]:
        """Every local candidate so far, with its base and stream."""
        return list(self.gatherer.candidates)

    def set_remote_credentials(self, username: str, password: str) -> None:
        """The peer's ufrag and pwd from signaling (RFC 8839 §5.4). If the peer's checks came
        first, their triggered checks (§7.3.1.4) were waiting for these: checking starts now."""
        if not username or not password:
            raise LocalProtocolError("remote ufrag and pwd must not be empty")
        self.remote_username = username
        self.remote_password = password
        if not self._checking and not self._closed and any(c.triggered for c in self.checklists):
            self.start_checks(self._last_now)  # due at once: the driver's next timer sends

    def add_remote_candidate(self, candidate: Candidate | None, stream: int = 0) -> None:
        """A candidate from signaling (trickle, RFC 8838); ``None`` means end-of-candidates."""
        if candidate is None:
            self.remote_complete = True
            return
        self._check_stream(stream)  # the stream is the caller's choice; the component the peer's
        if candidate.component > self.config.streams[stream]:
            self.failures.peer_input[PeerInput.UNKNOWN_COMPONENT] += 1
            return
        if candidate.transport != "udp" or candidate.is_mdns:
            return  # TCP candidates are not used; mDNS names must be resolved by the driver
        if unusable(candidate):
            self.failures.peer_input[PeerInput.UNUSABLE_ADDRESS] += 1
            return
        known = self.remote_candidates.find(stream, candidate.component, candidate.address)
        if known is not None:
            if known.type is CandidateType.PEER_REFLEXIVE:
                # Signalling caught up with a peer-reflexive candidate learnt from a check:
                # the signalled candidate (its type, priority, foundation) replaces it.
                self.remote_candidates.replace(stream, candidate)
                self.checklists[stream].replace_remote(known, candidate, self.controlling)
            return
        if not self.remote_candidates.add(stream, candidate):
            self.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] += 1
            return
        if self.gatherer.started:
            self._pair_remote(stream, candidate)

    def start_checks(self, now: float) -> None:
        """Begin connectivity checks (§6.1.4): needs the peer's credentials."""
        if self.remote_username is None or self.remote_password is None:
            raise LocalProtocolError("set_remote_credentials() before start_checks()")
        if self._closed:
            raise LocalProtocolError("the agent is closed")
        if self._checking:
            return
        self._checking = True
        for checklist in self.checklists:
            checklist.unfreeze_initial()
        self._next_check_at = now
        self._set_state(IceState.CHECKING)

    def restart(self, now: float) -> None:
        """ICE restart (RFC 8445 §9): new local credentials, new checks; data keeps flowing on the
        current selected pairs until new ones are selected."""
        self.local_username, self.local_password = generate_credentials(self.config.rng)
        self.remote_username = self.remote_password = None
        self.remote_candidates.clear()
        self.remote_complete = False
        self.checklists = [
            CheckList(stream, components, self.config.max_pairs)
            for stream, components in enumerate(self.config.streams)
        ]
        self._checks = {t: c for t, c in self._checks.items() if c.consent}
        self._checking = False
        self.nomination = NominationPolicy(self.config)
        self.consent.suspend_all()
        self._set_state(IceState.CHECKING if self.selected else IceState.NEW)

    def close(self, now: float | None = None) -> None:
        """Stop everything. With ``now``, TURN allocations are deleted (RFC 8656 §8): drain
        :meth:`datagrams_to_send` once more to send those requests; nothing follows them."""
        self._closed = True
        self._checks.clear()
        self._outgoing.clear()
        if now is not None:
            self.gatherer.relays.close(now)
        self._set_state(IceState.CLOSED)

    def send(self, data: bytes, stream: int = 0, component: int = 1) -> None:
        """Queue application data for the selected pair of a component; drain it with
        :meth:`datagrams_to_send` (a relayed pair's data leaves wrapped for the TURN server).
        Raises :class:`LocalProtocolError` with no selected pair or without consent."""
        pair = self.selected.get((stream, component))
        if pair is None:
            raise LocalProtocolError(f"no selected pair for stream {stream} component {component}")
        if not self.consent.allows(pair):
            raise LocalProtocolError("consent to send on the selected pair was lost (RFC 7675)")
        pair.bytes_sent += len(data)
        self.consent.sent(pair, self._last_now)
        self._outgoing.append(Datagram(data, pair.local_base, pair.remote.address))

    def count_data(
        self, pair: CandidatePair, now: float, *, sent: int = 0, received: int = 0
    ) -> None:
        """Account for application bytes a driver moved on ``pair`` itself, without :meth:`send`
        or :meth:`receive_datagram` (a fast data path): keeps stats and keepalives (§11) right."""
        pair.bytes_sent += sent
        pair.bytes_received += received
        if sent:
            self.consent.sent(pair, now)
        if received:
            self.nomination.confirm(pair)  # the peer sends data on the pair it selected

    def selected_pair(self, stream: int = 0, component: int = 1) -> CandidatePair | None:
        """The pair data of this component goes to, if one is selected."""
        return self.selected.get((stream, component))

    def stats(self) -> list[PairStats]:
        """Per-pair statistics, like WebRTC's RTCIceCandidatePairStats."""
        selected = set(map(id, self.selected.values()))
        return [
            pair_stats(pair, id(pair) in selected, self.consent.state_of(pair))
            for checklist in self.checklists
            for pair in checklist
        ]

    def table_sizes(self) -> TableSizes:
        """How full each table a peer can grow is (see :class:`~ice.stats.TableSizes`)."""
        return TableSizes(
            remote_candidates=len(self.remote_candidates),
            pairs=sum(len(checklist) for checklist in self.checklists),
            valid_pairs=self.nomination.size,
            local_candidates=len(self.gatherer.candidates),
            local_peer_reflexive=self.gatherer.peer_reflexive,
            triggered=sum(len(checklist.triggered) for checklist in self.checklists),
            checks_in_flight=len(self._checks),
            recent_requests=len(self._recent_requests),
        )

    def failure_reason(self) -> str:
        """Why checking failed (or is failing), in words a person can act on."""
        pairs = [p for checklist in self.checklists for p in checklist]
        return describe_failure(
            self.failures, len(self.remote_candidates), len(self.gatherer.candidates), pairs
        )

    # ================================================================== sans-IO verbs

    _last_now = 0.0

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed a datagram that arrived on base ``local`` from ``remote``."""
        self._last_now = now
        if self._closed or local is None or not data:
            return
        relays = self.gatherer.relays
        relay = relays.owner(local, remote)
        if relay is not None:
            # From a TURN server: what a peer sent to one of our relayed addresses.
            for relayed, peer, inner in relays.receive(relay, data, now):
                self._receive(inner, relayed, peer, now)
            self._relays_changed(now)
            return
        self._receive(data, local, remote, now)

    def _receive(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        if not data:
            return
        if data[0] > 3:
            self._receive_data(data, local, remote, now)
            return
        try:
            message = Message.decode(data)
        except StunDecodeError:
            self.failures.malformed += 1
            return
        if message.method != Method.BINDING:
            return
        if message.message_class is MessageClass.REQUEST:
            self._receive_request(message, local, remote, now)
        elif message.message_class is not MessageClass.INDICATION and not (
            self.gatherer.handle_response(message, local, remote)
        ):
            self._receive_response(message, local, remote, now)
        self._update(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        relays = self.gatherer.relays
        outgoing = []
        for datagram in self._outgoing:
            if datagram.local is not None and relays.is_relayed(datagram.local):
                relays.send(datagram.data, datagram.local, datagram.remote, now)
            else:
                outgoing.append(datagram)
        # Cleared in place: the gatherer holds this list's append method.
        self._outgoing.clear()
        return outgoing + relays.datagrams_to_send(now)

    def _relays_changed(self, now: float) -> None:
        """Pair relayed candidates that just appeared; see whether gathering completed."""
        gatherer = self.gatherer
        while gatherer.new_relayed:
            local = gatherer.new_relayed.pop(0)
            for stream, candidate in list(self.remote_candidates):
                if stream == local.stream and candidate.component == local.candidate.component:
                    self._pair_remote(stream, candidate)
        gatherer.check_complete()
        self._update(now)

    def get_timer(self) -> float | None:
        if self._closed:
            return None
        deadlines = [
            self.gatherer.get_timer(),
            self.gatherer.relays.get_timer(),
            self.consent.get_timer(),
        ]
        if self.controlling and not self.config.lite:
            deadlines.append(self.nomination.deadline)
        for check in self._checks.values():
            deadlines.append(check.transaction.get_timer())
        if self._checking and self.remote_password is not None and self._has_work():
            deadlines.append(self._next_check_at)
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        self._last_now = now
        if self._closed:
            return
        self.gatherer.handle_timer(now)
        for relayed, peer, inner in self.gatherer.relays.handle_timer(now):
            self._receive(inner, relayed, peer, now)
        self._relays_changed(now)
        self._retransmit(now)
        self._run_nomination(now)  # a nomination deadline due now takes this Ta slot
        if self._checking and self.remote_password is not None and now >= self._next_check_at:
            # One slot per Ta, used or not: Frozen pairs whose foundation is busy wait for it.
            self._send_next_check(now)
            self._next_check_at = now + self.config.pacing
        self._run_consent(now)
        self._update(now)

    def next_event(self) -> IceEvent | None:
        return self._events.popleft() if self._events else None

    # ================================================================== pairing

    def _check_stream(self, stream: int, component: int = 1) -> None:
        if not 0 <= stream < len(self.config.streams):
            raise LocalProtocolError(f"no stream {stream}")
        if not 1 <= component <= self.config.streams[stream]:
            raise LocalProtocolError(f"stream {stream} has no component {component}")

    def _pairable_locals(self, stream: int, component: int) -> list[LocalCandidate]:
        """Local candidates that form pairs: host bases (or relays), never srflx (§6.1.2.4)."""
        wanted = {CandidateType.HOST} if self.config.policy is Policy.ALL else set()
        wanted.add(CandidateType.RELAYED)
        return [
            c
            for c in self.gatherer.candidates
            if c.stream == stream
            and c.candidate.component == component
            and c.candidate.type in wanted
        ]

    def _pair_remote(self, stream: int, remote: Candidate) -> None:
        if self.config.lite:
            return
        checklist = self.checklists[stream]
        for local in self._pairable_locals(stream, remote.component):
            if (":" in local.base.host) != (":" in remote.host):
                continue
            pair = checklist.add(local.candidate, local.base, remote, self.controlling)
            if (
                pair is not None
                and self._checking
                and not any(
                    p.state is not PairState.FROZEN and p.foundation == pair.foundation
                    for p in checklist
                    if p is not pair
                )
            ):
                pair.state = PairState.WAITING

    def _has_work(self) -> bool:
        return any(checklist.has_pending() for checklist in self.checklists)

    # ================================================================== sending checks

    def _send_next_check(self, now: float) -> bool:
        """One check per Ta, round-robin over check lists (§6.1.4.2); ``True`` if one was sent."""
        for _ in range(len(self.checklists)):
            checklist = self.checklists[next(self._round_robin)]
            while (triggered := checklist.next_triggered()) is not None:
                if triggered.failure != "pruned after nomination":
                    use_candidate = self.nomination.wants_use_candidate(triggered, self.controlling)
                    self._send_check(triggered, now, use_candidate=use_candidate)
                    return True
            ordinary = checklist.next_ordinary()
            if ordinary is not None:
                self._send_check(ordinary, now, use_candidate=False)
                return True
        return False

    def _check_rto(self) -> float:
        """RTO = MAX(500 ms, Ta * N * (Num-Waiting + Num-In-Progress)) (RFC 8445 §14.3)."""
        active = sum(
            1
            for checklist in self.checklists
            for p in checklist
            if p.state in (PairState.WAITING, PairState.IN_PROGRESS)
        )
        return max(0.5, self.config.pacing * len(self.checklists) * active)

    def _send_check(
        self, pair: CandidatePair, now: float, *, use_candidate: bool, consent: bool = False
    ) -> None:
        assert self.remote_username is not None and self.remote_password is not None
        config = self.config
        prflx_priority = candidate_priority(
            TYPE_PREFERENCE[CandidateType.PEER_REFLEXIVE],
            self.gatherer.local_preference(pair.local_base),
            pair.component,
        )
        attributes = [
            Username(f"{self.remote_username}:{self.local_username}"),
            Priority(prflx_priority),
            IceControlling(self.tie_breaker)
            if self.controlling
            else IceControlled(self.tie_breaker),
        ]
        if use_candidate:
            attributes.append(UseCandidate())
        transaction_id = new_transaction_id(config.rng)
        request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
        key = self.remote_password.encode()
        data = request.encode(key=key, fingerprint=True)
        transaction = ClientTransaction(
            data, transaction_id, now=now, rto=self._check_rto(), config=config.check_transaction
        )
        self._checks[transaction_id] = _Check(
            pair,
            transaction,
            use_candidate,
            self.controlling,
            consent,
            key,
            self._password_seen_by_peer == self.local_password,
        )
        pair.requests_sent += 1
        if not consent:
            pair.transaction_id = transaction_id
        if not consent and pair.first_check_at is None:
            pair.first_check_at = now
        if not consent and pair.state is not PairState.SUCCEEDED:
            # A succeeded pair checked again (to nominate it) stays succeeded (§8.1.1).
            self._set_pair_state(pair, PairState.IN_PROGRESS)
        self.consent.sent(pair, now)
        self._outgoing.append(Datagram(data, pair.local_base, pair.remote.address))

    def _retransmit(self, now: float) -> None:
        for transaction_id, check in list(self._checks.items()):
            resend = check.transaction.handle_timer(now)
            if check.cancelled:
                if check.transaction.state is TransactionState.TIMED_OUT:
                    del self._checks[transaction_id]
                continue
            if resend is not None:
                check.pair.requests_sent += 1
                self._outgoing.append(
                    Datagram(resend, check.pair.local_base, check.pair.remote.address)
                )
            elif check.transaction.state is TransactionState.TIMED_OUT:
                del self._checks[transaction_id]
                if check.use_candidate and not check.consent:
                    self.nomination.nomination_failed(check.pair)
                if not check.consent and check.pair.state is PairState.IN_PROGRESS:
                    self.failures.timeouts += 1
                    check.pair.failure = "timeout"
                    self._set_pair_state(check.pair, PairState.FAILED)

    # ================================================================== responses

    def _receive_response(
        self, response: Message, local: Address, remote: Address, now: float
    ) -> None:
        check = self._checks.get(response.transaction_id)
        if check is None:
            return
        if response.has(Fingerprint) and not response.check_fingerprint():
            return
        if not response.check_integrity(check.key):
            self.failures.bad_integrity += 1
            return  # as if never received: retransmissions go on (RFC 8489 §9.1.4)
        del self._checks[response.transaction_id]
        pair = check.pair
        rtt = check.transaction.answered(now)
        pair.responses_received += 1
        if remote != pair.remote.address or local != pair.local_base:
            pair.failure = "asymmetric response"  # §7.2.5.2.1
            self._set_pair_state(pair, PairState.FAILED)
            return
        if response.message_class is MessageClass.ERROR_RESPONSE:
            self._check_failed(check, response.get(ErrorCode), now)
            return
        pair.record_rtt(rtt)
        if check.consent:
            self.consent.answered(pair, now)
            if check.use_candidate and check.peer_had_credentials:
                self.nomination.confirm(pair)
            return
        mapped = response.get(XorMappedAddress)
        if mapped is None:
            pair.failure = "no XOR-MAPPED-ADDRESS"
            self._set_pair_state(pair, PairState.FAILED)
            return
        valid = self._valid_pair(pair, mapped.address)
        self._set_pair_state(pair, PairState.SUCCEEDED)
        valid.valid = True
        if valid is not pair and valid.state is not PairState.SUCCEEDED:
            self._set_pair_state(valid, PairState.SUCCEEDED)
        for checklist in self.checklists:
            for sibling in checklist.unfreeze_foundation(pair.foundation):
                self._events.append(PairStateChanged(checklist.stream, sibling))
        if check.use_candidate and check.controlling:
            self._nominate(valid, now)
            if self.selected.get((valid.stream, valid.component)) is valid:
                self.nomination.nominated_by_us(valid, confirmed=check.peer_had_credentials)
        elif not self.controlling and (pair.nominate_on_success or valid.nominate_on_success):
            self._nominate(valid, now)
        elif not self.nomination.pair_valid(valid, now):
            self.failures.peer_input[PeerInput.VALID_LIST_FULL] += 1

    def _check_failed(self, check: _Check, error: ErrorCode | None, now: float) -> None:
        pair = check.pair
        code = error.code if error else 0
        if code == 487 and check.controlling == self.controlling:
            # §7.2.5.1: switch roles and check the pair again.
            self.failures.role_conflicts += 1
            self._switch_role(not self.controlling)
            self._set_pair_state(pair, PairState.WAITING)
            self.checklists[pair.stream].enqueue_triggered(pair)
            return
        if code == 401:
            self.failures.unauthenticated += 1
        pair.failure = f"error {code}"
        if not check.consent:
            self._set_pair_state(pair, PairState.FAILED)

    def _valid_pair(self, pair: CandidatePair, mapped: Address) -> CandidatePair:
        """The pair a successful check validates (§7.2.5.3.2), learning a local prflx if needed.

        ``mapped`` is the peer's XOR-MAPPED-ADDRESS: one of another family than the base is
        ignored, and past ``max_local_peer_reflexive`` no new local candidate is learnt; either
        way the checked pair itself is the valid one (the check proved its path)."""
        if mapped == pair.local.address:
            return pair
        if (":" in mapped.host) != (":" in pair.local_base.host):
            self.failures.peer_input[PeerInput.MAPPED_ADDRESS_FAMILY] += 1
            return pair
        local = self.gatherer.find(pair.stream, pair.component, mapped)
        if local is None:
            # §7.2.5.3.1: a peer-reflexive local candidate, with the priority the check carried.
            candidate = Candidate(
                foundation=compute_foundation(
                    CandidateType.PEER_REFLEXIVE, pair.local_base.host, "udp"
                ),
                component=pair.component,
                transport="udp",
                priority=candidate_priority(
                    TYPE_PREFERENCE[CandidateType.PEER_REFLEXIVE],
                    self.gatherer.local_preference(pair.local_base),
                    pair.component,
                ),
                host=mapped.host,
                port=mapped.port,
                type=CandidateType.PEER_REFLEXIVE,
                related_address=pair.local_base,
                base=pair.local_base,
            )
            local = LocalCandidate(candidate, pair.local_base, pair.stream)
            if not self.gatherer.learn_peer_reflexive(local):
                self.failures.peer_input[PeerInput.LOCAL_PEER_REFLEXIVE_FULL] += 1
                return pair
        if local.base != pair.local_base:
            return pair
        known = self.nomination.valid_on(pair.local_base, pair.remote.address)
        if known is not None and known.local == local.candidate:
            known.record_rtt(pair.last_rtt or 0.0)
            return known  # validated before: the same pair, its flags and counters kept
        valid = CandidatePair(
            local.candidate,
            pair.local_base,
            pair.remote,
            pair.stream,
            pair.priority,
            state=PairState.SUCCEEDED,
            nominate_on_success=pair.nominate_on_success,
        )
        valid.record_rtt(pair.last_rtt or 0.0)
        return valid

    # ================================================================== requests

    def _receive_request(
        self, request: Message, local: Address, remote: Address, now: float
    ) -> None:
        if request.has(Fingerprint) and not request.check_fingerprint():
            return
        base = self.gatherer.on_base(local)
        if base is None:
            return
        if self.config.policy is Policy.RELAY and base.candidate.type is not CandidateType.RELAYED:
            self.failures.peer_input[PeerInput.RELAY_POLICY] += 1
            return  # relay-only: nothing but the TURN server may hear from a host socket
        username = request.get(Username)
        if username is None or not request.has_integrity:
            self._answer(request, local, remote, request.error_response(400), key=None)
            return
        if request.unknown_required:
            key = (
                self.local_password.encode()
                if request.check_integrity(self.local_password.encode())
                else None
            )
            self._answer(request, local, remote, request.error_response(420), key=key)
            return
        ours, _, _theirs = username.value.partition(":")
        key = self.local_password.encode()
        if ours != self.local_username or not request.check_integrity(key):
            self.failures.unauthenticated_requests += 1
            self._answer(request, local, remote, request.error_response(401), key=None)
            return
        if not self._resolve_role_conflict(request, local, remote, key):
            return
        response = request.success_response([XorMappedAddress(remote)])
        self._answer(request, local, remote, response, key=key)
        if self._password_seen_by_peer != self.local_password:
            self._password_seen_by_peer = self.local_password
            self._repeat_unconfirmed_nominations(now)
        if request.transaction_id in self._recent_requests:
            return  # a retransmission: answered again, nothing new to act on
        self._recent_requests[request.transaction_id] = None
        if len(self._recent_requests) > _RECENT_REQUESTS:
            self._recent_requests.popitem(last=False)
        stream, component = base.stream, base.candidate.component
        remote_candidate = self._remote_for(stream, component, remote, request)
        if remote_candidate is None:
            return
        if self.config.lite:
            self._lite_nominate(base, remote_candidate, request, now)
            return
        checklist = self.checklists[stream]
        pair = checklist.find(local, remote) or checklist.add(
            base.candidate, local, remote_candidate, self.controlling
        )
        if pair is None:
            return
        pair.requests_received += 1
        pair.responses_sent += 1
        use_candidate = request.has(UseCandidate) and not self.controlling
        if pair.state is PairState.SUCCEEDED:
            if use_candidate:
                valid = self._valid_for(pair)
                self._nominate(valid, now)
            return
        if use_candidate:
            pair.nominate_on_success = True
        self._cancel_check(pair)  # §7.3.1.4: the triggered check replaces it
        self._set_pair_state(pair, PairState.WAITING)
        checklist.enqueue_triggered(pair)
        if self._checking and self.remote_password is not None and now >= self._next_check_at:
            # The triggered queue is served now if the Ta slot is free (pacing still holds).
            self._send_next_check(now)
            self._next_check_at = now + self.config.pacing
        elif not self._checking and self.remote_password is not None:
            self.start_checks(now)

    def _cancel_check(self, pair: CandidatePair) -> None:
        """Cancel the pair's check in flight, if any: no retransmission, and its silence is no
        failure (a triggered check replaced it, §7.3.1.4, or nomination pruned it, §8.1.2)."""
        check = self._checks.get(pair.transaction_id or b"")
        if check is not None:
            check.cancelled = True

    def _valid_for(self, pair: CandidatePair) -> CandidatePair:
        return self.nomination.valid_on(pair.local_base, pair.remote.address) or pair

    def _remote_for(
        self, stream: int, component: int, remote: Address, request: Message
    ) -> Candidate | None:
        """The remote candidate a request came from, or a new peer-reflexive one (§7.3.1.3) —
        ``None`` when the stream holds ``max_remote_candidates`` already, or for a source no
        check can be sent back to (port 0, an unspecified or multicast address).

        The new candidate's priority is the request's PRIORITY (§7.3.1.3), brought into the
        1..2^31-1 a candidate priority has (§5.1.2.1) when the peer sent 0, more, or none."""
        candidate = self.remote_candidates.find(stream, component, remote)
        if candidate is not None:
            return candidate
        attribute = request.get(Priority)
        priority = attribute.value if attribute is not None else 0
        if not 1 <= priority <= MAX_PRIORITY:
            self.failures.peer_input[PeerInput.PRIORITY_CLAMPED] += 1
            priority = min(max(priority, 1), MAX_PRIORITY)
        candidate = Candidate(
            foundation=f"prflx{next(self._prflx_foundations)}",
            component=component,
            transport="udp",
            priority=priority,
            host=remote.host,
            port=remote.port,
            type=CandidateType.PEER_REFLEXIVE,
        )
        if unusable(candidate):
            self.failures.peer_input[PeerInput.UNUSABLE_ADDRESS] += 1
            return None
        if not self.remote_candidates.add(stream, candidate):
            self.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] += 1
            return None
        self._events.append(RemoteCandidateLearned(stream, candidate))
        return candidate

    def _resolve_role_conflict(
        self, request: Message, local: Address, remote: Address, key: bytes
    ) -> bool:
        """RFC 8445 §7.3.1.1; ``False`` when the request was answered with 487."""
        controlling = request.get(IceControlling)
        controlled = request.get(IceControlled)
        if self.controlling and controlling is not None:
            if self.tie_breaker >= controlling.tie_breaker:
                self.failures.role_conflicts += 1
                self._answer(request, local, remote, request.error_response(487), key=key)
                return False
            self._switch_role(False)
        elif not self.controlling and controlled is not None:
            if self.tie_breaker >= controlled.tie_breaker:
                self._switch_role(True)
            else:
                self.failures.role_conflicts += 1
                self._answer(request, local, remote, request.error_response(487), key=key)
                return False
        return True

    def _switch_role(self, controlling: bool) -> None:
        if self.config.lite or self.controlling == controlling:
            return
        self.controlling = controlling
        for checklist in self.checklists:
            checklist.recompute_priorities(controlling)
        self._events.append(RoleChanged(controlling))

    def _answer(
        self,
        request: Message,
        local: Address,
        remote: Address,
        response: Message,
        key: bytes | None,
    ) -> None:
        data = response.encode(key=key, fingerprint=True)
        self._outgoing.append(Datagram(data, local, remote))

    def _lite_nominate(
        self, base: LocalCandidate, remote: Candidate, request: Message, now: float
    ) -> None:
        """An ICE-lite agent selects the pair a USE-CANDIDATE check arrives on (§7.3.1.5)."""
        if not request.has(UseCandidate):
            return
        checklist = self.checklists[base.stream]
        pair = checklist.find(base.base, remote.address) or checklist.add(
            base.candidate, base.base, remote, self.controlling
        )
        if pair is not None:
            pair.state = PairState.SUCCEEDED
            pair.valid = True
            self._nominate(pair, now)

    # ================================================================== nomination, selection

    def _nominate(self, pair: CandidatePair, now: float) -> None:
        if pair.nominated:
            return
        pair.nominated = True
        pair.valid = True
        if not self.nomination.pair_valid(pair, now):
            self.failures.peer_input[PeerInput.VALID_LIST_FULL] += 1
        self.nomination.concluded(pair)
        if self._replaces_selected(pair):
            self._select(pair, now)
        for pruned in self.checklists[pair.stream].stop_below(pair.component, pair.priority):
            self._cancel_check(pruned)  # §8.1.2
        self._events.append(PairStateChanged(pair.stream, pair))

    def _replaces_selected(self, nominated: CandidatePair) -> bool:
        current = self.selected.get((nominated.stream, nominated.component))
        suspended = current is not None and self.consent.suspended(current)
        return replaces_selected(current, nominated, suspended=suspended)

    def _select(self, pair: CandidatePair, now: float) -> None:
        key = (pair.stream, pair.component)
        current = self.selected.get(key)
        self.selected[key] = pair
        if not self.config.lite:  # a lite agent sends no checks at all (§2.5)
            self.consent.track(pair, now)
        if current is not None and current is not pair:
            self.consent.untrack(current)
        self._events.append(SelectedPairChanged(pair.stream, pair.component, pair))

    def _follow_peer(self, local: Address, remote: Address, now: float) -> CandidatePair | None:
        """The peer's data arrived on a nominated pair that is not the selected one: a
        controlled agent selects it, since a peer sends data on the pair it selected (see
        :func:`~ice.nomination.replaces_selected`)."""
        pair = self.nomination.valid_on(local, remote)
        if (
            self.controlling
            or pair is None
            or not pair.nominated
            or not self.consent.allows(pair)
            or self.selected.get((pair.stream, pair.component)) is pair
        ):
            return None
        self._select(pair, now)
        return pair

    def _repeat_unconfirmed_nominations(self, now: float) -> None:
        """The peer just proved it has our credentials: repeat at once every nomination it may
        have forgotten (see :meth:`NominationPolicy.nominated_by_us`)."""
        if not self.controlling or self.remote_password is None:
            return
        for pair in self.nomination.unconfirmed_pairs():
            if self.selected.get((pair.stream, pair.component)) is pair:
                self._send_check(pair, now, use_candidate=True, consent=True)

    def _run_nomination(self, now: float) -> None:
        if not self.controlling or self.config.lite:
            return
        for checklist in self.checklists:
            for component in range(1, checklist.components + 1):
                current = self.selected.get((checklist.stream, component))
                if (
                    current is not None
                    and current.nominated
                    and not self.consent.suspended(current)
                ):
                    continue  # concluded; a pair kept through a restart does not count
                pair = self.nomination.choose(checklist, component, now)
                if pair is not None:
                    # The nomination check repeats a check that just succeeded on a proven path
                    # (§8.1.1): it goes out at once rather than in the next Ta slot, and the next
                    # ordinary check waits a full Ta after it, so the pace of new checks holds.
                    self._send_check(pair, now, use_candidate=True)
                    self._next_check_at = max(self._next_check_at, now + self.config.pacing)

    # ================================================================== consent and data

    def _run_consent(self, now: float) -> None:
        if self.remote_password is None:
            return
        for pair in self.consent.due(now):
            use_candidate = self.controlling and self.nomination.unconfirmed(pair)
            self._send_check(pair, now, use_candidate=use_candidate, consent=True)
        for pair in self.consent.keepalives_due(now):
            keepalive = Message(
                Method.BINDING, MessageClass.INDICATION, new_transaction_id(self.config.rng)
            ).encode(fingerprint=True)
            self.consent.sent(pair, now)
            self._outgoing.append(Datagram(keepalive, pair.local_base, pair.remote.address))
        for pair in self.consent.expired(now):
            self._events.append(ConsentLost(pair.stream, pair.component, pair))
            self._set_state(IceState.FAILED)

    def _receive_data(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        pair = self.selected.on_path(local, remote) or self._follow_peer(local, remote, now)
        if pair is not None:
            pair.bytes_received += len(data)
            self.nomination.confirm(pair)  # the peer sends data on the pair it selected
            self._events.append(DataReceived(pair.stream, pair.component, data, remote))
            return
        base = self.gatherer.on_base(local)
        if base is not None:
            self._events.append(DataReceived(base.stream, base.candidate.component, data, remote))

    # ================================================================== state

    def _set_pair_state(self, pair: CandidatePair, state: PairState) -> None:
        if pair.state is not state:
            pair.state = state
            self._events.append(PairStateChanged(pair.stream, pair))

    def _set_state(self, state: IceState) -> None:
        if self.state is not state:
            self.state = state
            self._events.append(StateChanged(state))

    def _update(self, now: float) -> None:
        """Nominate what is ready, then derive the overall state (RFC 8445 §6.1.3, §8)."""
        self._run_nomination(now)
        if self.state in (IceState.CLOSED, IceState.FAILED) or not (
            self._checking or self.selected
        ):
            return
        keys = [(c.stream, n) for c in self.checklists for n in range(1, c.components + 1)]
        selected = [self.selected.get(key) for key in keys]
        checking = any(not check.consent for check in self._checks.values())
        if all(
            pair is not None and pair.nominated and not self.consent.suspended(pair)
            for pair in selected
        ):  # a pair kept through a restart carries data but concludes nothing (§9)
            if any(pair is not None and self.consent.disconnected(pair, now) for pair in selected):
                self._set_state(IceState.DISCONNECTED)
            elif self.state is not IceState.COMPLETED:
                # Completed stays completed: a check still in flight (the peer's last triggered
                # check, a cancelled one) does not reopen the session.
                self._set_state(IceState.CONNECTED if checking else IceState.COMPLETED)
            return
        if (
            self._checking
            and not self.config.lite  # it sends no checks: only nomination tells it anything
            and self.remote_complete
            and self.gatherer.completed
            and not checking
            and not self._has_work()
            and not any(self.nomination.valid_pairs(stream, n) for stream, n in keys)
        ):
            self._set_state(IceState.FAILED)
