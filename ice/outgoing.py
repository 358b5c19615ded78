"""The agent's own connectivity checks: paced sending, retransmission, and what their responses
make of a pair (RFC 8445 §6.1.4, §7.2).

Theory of operation. Every Ta (``pacing``) the agent offers :meth:`OutgoingChecks.use_slot` one
slot, served round-robin over the check lists (§6.1.4.2): a triggered check first (§7.3.1.4),
else the highest-priority Waiting pair, else the best Frozen pair of a foundation with nothing
Waiting or In-Progress. A check is a Binding request with USERNAME, PRIORITY (the
peer-reflexive priority of its base), ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker,
USE-CANDIDATE when it nominates, MESSAGE-INTEGRITY with the peer's password and FINGERPRINT
(§7.2.2); it is retransmitted on the RTO of §14.3 until answered or timed out. Consent checks
(RFC 7675) go out the same way on selected pairs, but change no pair state.

Checks in flight are kept by transaction ID, so a response finds its check in one dict access.
A response counts only if it carries MESSAGE-INTEGRITY with the password the request was signed
with — a forged one is ignored and the retransmissions go on (RFC 8489 §9.1.4) — and comes back
on the path the check took (§7.2.5.2.1). A success makes the *valid pair* (§7.2.5.3.2): the
local side is the candidate whose address the peer saw (XOR-MAPPED-ADDRESS), a new
peer-reflexive one if none (§7.2.5.3.1), and the pair's foundation is unfrozen in every check
list (§7.2.5.3.3). A 487 switches the role and retries the pair (§7.2.5.1); a nomination check
that succeeds nominates its valid pair (:mod:`ice.selection`).

A check replaced by a triggered check is *cancelled* (§7.3.1.4): it is no longer retransmitted
and its silence is no failure, but the agent waits the transaction's timeout for a response, which
counts as any other does. A check of a pair that nomination pruned (§8.1.2) is *abandoned*:
forgotten at once, since the pair failed as pruned and its component is concluded — nothing waits
for its answer, and it no longer keeps the session from completing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stun.address import Address
from stun.attributes import ErrorCode, Fingerprint, XorMappedAddress
from stun.datagram import Datagram
from stun.message import Message, MessageClass, new_transaction_id
from stun.transaction import ClientTransaction, TransactionState

from .agent_part import AgentPart
from .candidate import (
    TCP_TYPE_PREFERENCE,
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
    tcp_local_preference,
)
from .check_codec import CheckTemplate, read_success
from .checklist import CandidatePair, PairState
from .events import IceEvent, IceState, PairStateChanged
from .gather import LocalCandidate
from .in_flight import ChecksInFlight
from .stats import PeerInput

if TYPE_CHECKING:
    from .agent import Agent

_new_tuple = tuple.__new__  # a NamedTuple built without its Python-level constructor
#: The type preference of a peer-reflexive candidate, in place in a candidate priority (§5.1.2.1).
_PEER_REFLEXIVE = TYPE_PREFERENCE[CandidateType.PEER_REFLEXIVE] << 24
#: Enum members read on every check, bound once: CPython 3.11 reads a member through its class
#: in ~0.2 µs (EnumType defines __getattr__), a module name in ~0.02 µs.
_WAITING = PairState.WAITING
_IN_PROGRESS = PairState.IN_PROGRESS
_SUCCEEDED = PairState.SUCCEEDED
_HOST = CandidateType.HOST


class Check:
    """One connectivity check in flight."""

    __slots__ = (
        "cancelled",
        "consent",
        "controlling",
        "pair",
        "peer_had_credentials",
        "template",
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
        template: CheckTemplate,
        peer_had_credentials: bool,
    ) -> None:
        self.pair = pair
        self.transaction = transaction
        self.use_candidate = use_candidate
        self.controlling = controlling
        self.consent = consent
        #: What the request was signed with (the peer's password): its response must carry the same.
        self.template = template
        #: An authenticated check from the peer had arrived when this one went out.
        self.peer_had_credentials = peer_had_credentials
        #: Replaced by a triggered check (§7.3.1.4): no retransmission; a timeout is no failure.
        self.cancelled = False


class OutgoingChecks(AgentPart):
    """The checks an :class:`~ice.agent.Agent` sends, their pace and their responses."""

    __slots__ = ("_send", "_template", "_turn", "in_flight", "next_at")

    def __init__(
        self, agent: Agent, emit: Callable[[IceEvent], None], send: Callable[[Datagram], None]
    ) -> None:
        super().__init__(agent, emit)
        self._send = send
        #: Checks in flight, by transaction ID (counting the ordinary ones).
        self.in_flight: ChecksInFlight[Check] = ChecksInFlight()
        #: When the next Ta slot opens.
        self.next_at = 0.0
        #: The check list whose turn is next (round robin, §6.1.4.2).
        self._turn = 0
        #: What the agent's checks have in common, made when the first one goes out and
        #: forgotten when the agent completes.
        self._template: CheckTemplate | None = None

    # ================================================================== pacing

    def pending(self) -> bool:
        """Whether a check waits to be sent (triggered, Waiting or Frozen pairs): O(1) per
        check list, which counts its pairs to check."""
        for checklist in self._agent.checklists:
            if checklist.triggered or checklist.schedulable:
                return True
        return False

    def get_timer(self) -> float | None:
        """The earliest retransmission, or the next Ta slot when a check waits for one."""
        earliest = None
        in_flight = self.in_flight
        if in_flight:
            for check in in_flight.values():
                deadline = check.transaction.deadline  # its get_timer(), without the call
                if deadline is not None and (earliest is None or deadline < earliest):
                    earliest = deadline
        agent = self._agent
        next_at = self.next_at
        if (
            agent._checking
            and agent.remote_password is not None
            and (earliest is None or next_at < earliest)
        ):
            for checklist in agent.checklists:  # pending(), asked after every datagram
                if checklist.triggered or checklist.schedulable:
                    return next_at
        return earliest

    def use_slot(self, now: float) -> None:
        """Send the next check if the Ta slot is open; the slot is used up either way (Frozen
        pairs whose foundation is busy wait for it)."""
        agent = self._agent
        if agent._checking and agent.remote_password is not None and now >= self.next_at:
            self._send_next(now)
            self.next_at = now + self._config.pacing

    def completed(self) -> None:
        """The agent completed: what follows is a consent check every few seconds (RFC 7675),
        which makes its own template rather than keep one for the rest of the session."""
        self._template = None
        self._shrink_in_flight()

    def _shrink_in_flight(self) -> None:
        """An empty table of checks in flight keeps the room its checks took (a dict never
        shrinks by deletion): at the quiet times, completion and a consent check's answer,
        it gives the room back."""
        if not self.in_flight:
            self.in_flight.clear()

    def hold_slot(self, now: float) -> None:
        """A check just went out of turn: the next ordinary check waits a full Ta after it."""
        self.next_at = max(self.next_at, now + self._config.pacing)

    def _send_next(self, now: float) -> None:
        """One check, round-robin over check lists (§6.1.4.2)."""
        agent = self._agent
        checklists = agent.checklists
        count = len(checklists)
        for _ in range(count):
            checklist = checklists[self._turn]
            self._turn = (self._turn + 1) % count
            # (The queue and the count asked first: most Ta slots find one of them empty.)
            while checklist.triggered and (triggered := checklist.next_triggered()) is not None:
                if triggered.failure != "pruned after nomination":
                    use_candidate = agent.nomination.wants_use_candidate(
                        triggered, agent.controlling
                    )
                    self.send(triggered, now, use_candidate=use_candidate)
                    return
            if checklist.schedulable:
                ordinary = checklist.next_ordinary(agent.tcp.can_check)
                if ordinary is not None:
                    self.send(ordinary, now, use_candidate=False)
                    return

    def _rto(self) -> float:
        """RTO = MAX(500 ms, Ta * N * (Num-Waiting + Num-In-Progress)) (RFC 8445 §14.3)."""
        count = active = 0
        for checklist in self._agent.checklists:
            count += 1
            for pair in checklist.pairs:
                if pair.state is _WAITING or pair.state is _IN_PROGRESS:
                    active += 1
        rto = self._config.pacing * count * active
        return rto if rto > 0.5 else 0.5

    # ================================================================== sending

    def send(
        self, pair: CandidatePair, now: float, *, use_candidate: bool, consent: bool = False
    ) -> None:
        """Check ``pair`` now (a consent check with ``consent``)."""
        agent = self._agent
        remote_username, password = agent.remote_username, agent.remote_password
        assert remote_username is not None and password is not None
        config = self._config
        template = self._template
        identity = (
            remote_username,
            agent.local_username,
            password,
            agent.controlling,
            agent.tie_breaker,
        )
        if template is None or template.identity != identity:
            template = CheckTemplate(*identity)
            if agent.state is not IceState.COMPLETED:
                self._template = template  # else a consent check, one every few seconds
        transaction_id = new_transaction_id(config.rng)
        priority = self._peer_reflexive_priority(pair)
        data = template.encode(transaction_id, priority, use_candidate)
        transaction = ClientTransaction(
            data,
            transaction_id,
            now=now,
            rto=self._rto(),
            reliable=pair.local.transport == "tcp",  # sent once, answered within Ti (§6.2.2)
            config=config.check_transaction,
        )
        self.in_flight[transaction_id] = Check(
            pair,
            transaction,
            use_candidate,
            agent.controlling,
            consent,
            template,
            agent.incoming.peer_has_credentials,
        )
        pair.requests_sent += 1
        if not consent:
            pair.transaction_id = transaction_id
            if pair.first_check_at is None:
                pair.first_check_at = now
            if pair.state is not _SUCCEEDED:
                # A succeeded pair checked again (to nominate it) stays succeeded (§8.1.1).
                agent._set_pair_state(pair, _IN_PROGRESS)
        if self._consent.records:  # else no pair's consent is kept: no call (while checking)
            self._consent.sent(pair, now)
        self._send(_new_tuple(Datagram, (data, pair.local_base, pair.remote.address)))

    def _peer_reflexive_priority(self, pair: CandidatePair) -> int:
        """The priority a peer-reflexive candidate of the pair's base would have: a check's
        PRIORITY (§7.2.2), and that of a local peer-reflexive candidate (§7.2.5.3.1); over TCP,
        with the TCP type preference and the direction of the pair's local candidate (RFC 6544
        §4.2)."""
        local = pair.local
        tcp_type = local.tcp_type
        if tcp_type is None:
            # candidate_priority() without its range checks: the base's local preference and
            # the pair's component are in range by construction (and this runs for every check).
            if local.type is _HOST:
                # The base's own candidate: the low 24 bits of its priority are the base's local
                # preference and the component, as a peer-reflexive one's are (no lookup).
                return _PEER_REFLEXIVE + (local.priority & 0xFFFFFF)
            local_preference = self._gatherer.local_preference(pair.local_base)
            return _PEER_REFLEXIVE + (local_preference << 8) + 256 - pair.component
        local_preference = (pair.local.priority >> 8) & 0xFFFF
        return candidate_priority(
            TCP_TYPE_PREFERENCE[CandidateType.PEER_REFLEXIVE],
            tcp_local_preference(CandidateType.PEER_REFLEXIVE, tcp_type, local_preference & 0x1FFF),
            pair.component,
        )

    def retransmit(self, now: float) -> None:
        """Retransmit what is due; a check that timed out fails its pair (§7.2.5.2.3)."""
        agent = self._agent
        for transaction_id, check in list(self.in_flight.items()):
            resend = check.transaction.handle_timer(now)
            if check.cancelled:
                if check.transaction.state is TransactionState.TIMED_OUT:
                    del self.in_flight[transaction_id]
                continue
            if resend is not None:
                check.pair.requests_sent += 1
                self._send(Datagram(resend, check.pair.local_base, check.pair.remote.address))
            elif check.transaction.state is TransactionState.TIMED_OUT:
                del self.in_flight[transaction_id]
                if check.use_candidate and not check.consent:
                    agent.nomination.nomination_failed(check.pair)
                if not check.consent and check.pair.state is PairState.IN_PROGRESS:
                    self._failures.timeouts += 1
                    check.pair.failure = "timeout"
                    agent._set_pair_state(check.pair, PairState.FAILED)

    def cancel(self, pair: CandidatePair) -> None:
        """A triggered check replaces the pair's check in flight, if any (§7.3.1.4): no
        retransmission, and its silence is no failure; a response until its transaction times
        out still counts."""
        check = self.in_flight.get(pair.transaction_id or b"")
        if check is not None:
            check.cancelled = True

    def abandon(self, pair: CandidatePair) -> None:
        """Nomination pruned the pair (§8.1.2): forget its check in flight, if any."""
        transaction_id = pair.transaction_id
        if transaction_id is not None:  # else never checked (most pruned pairs): no call
            self.in_flight.pop(transaction_id, None)

    def forget_base(self, base: Address) -> None:
        """A local candidate is lost: nothing can answer the checks sent from its base."""
        for transaction_id, check in list(self.in_flight.items()):
            if check.pair.local_base == base:
                del self.in_flight[transaction_id]

    def forget_path(self, local: Address, remote: Address) -> list[Check]:
        """A TCP connection is gone: nothing can answer the checks sent on its path; they are
        forgotten, and returned."""
        gone = [
            (transaction_id, check)
            for transaction_id, check in self.in_flight.items()
            if check.pair.local_base == local and check.pair.remote.address == remote
        ]
        for transaction_id, _ in gone:
            del self.in_flight[transaction_id]
        return [check for _, check in gone]

    def restart(self) -> None:
        """ICE restart (§9): the previous generation's checks are forgotten; consent checks of
        the pairs that carry data on go on."""
        self.in_flight.keep_consent_checks()

    # ================================================================== responses

    def receive_response(
        self, response: Message, local: Address, remote: Address, now: float
    ) -> None:
        """A Binding response (success or error) arrived on ``local`` from ``remote``."""
        check = self.in_flight.get(response.transaction_id)
        if check is None:
            return
        if response.has(Fingerprint) and not response.check_fingerprint():
            return
        if not response.check_integrity(check.template.key):
            self._failures.bad_integrity += 1
            return  # as if never received: retransmissions go on (RFC 8489 §9.1.4)
        del self.in_flight[response.transaction_id]
        rtt = self._answered(check, local, remote, now)
        if rtt is None:
            return
        if response.message_class is MessageClass.ERROR_RESPONSE:
            self._failed(check, response.get(ErrorCode))
            return
        mapped = response.get(XorMappedAddress)
        self._succeeded(check, rtt, None if mapped is None else mapped.address, now)

    def receive_success(self, data: bytes, local: Address, remote: Address, now: float) -> bool:
        """A datagram that starts as a Binding success response arrived on ``local`` from
        ``remote``: taken when it answers a check in flight and has the common shape, its
        FINGERPRINT and MESSAGE-INTEGRITY right (:func:`~ice.check_codec.read_success`);
        ``False`` leaves it to :meth:`receive_response` after decoding."""
        transaction_id = data[8:20]
        check = self.in_flight.get(transaction_id)
        if check is None:
            return False
        mapped = read_success(data, check.template.prepared)
        if mapped is None:
            return False
        del self.in_flight[transaction_id]
        rtt = self._answered(check, local, remote, now)
        if rtt is not None:
            self._succeeded(check, rtt, mapped, now)
        return True

    def _answered(self, check: Check, local: Address, remote: Address, now: float) -> float | None:
        """An authentic response to ``check`` arrived: its round-trip time, or ``None`` when it
        came back on another path than the check took, which fails the pair (§7.2.5.2.1)."""
        pair = check.pair
        rtt = check.transaction.answered(now)
        pair.responses_received += 1
        if remote != pair.remote.address or local != pair.local_base:
            pair.failure = "asymmetric response"
            self._agent._set_pair_state(pair, PairState.FAILED)
            return None
        return rtt

    def _succeeded(self, check: Check, rtt: float, mapped: Address | None, now: float) -> None:
        """A success response to ``check``, with its XOR-MAPPED-ADDRESS (§7.2.5.3)."""
        agent = self._agent
        pair = check.pair
        pair.record_rtt(rtt)
        if check.consent:
            self._consent.answered(pair, now)
            if check.use_candidate and check.peer_had_credentials:
                agent.nomination.confirm(pair)
            self._shrink_in_flight()
            return
        if mapped is None:
            pair.failure = "no XOR-MAPPED-ADDRESS"
            agent._set_pair_state(pair, PairState.FAILED)
            return
        # The common answer: the peer saw the address of the pair's local candidate.
        valid = pair if mapped == pair.local.address else self._valid_pair(pair, mapped)
        agent._set_pair_state(pair, _SUCCEEDED)
        valid.valid = True
        if valid is not pair and valid.state is not _SUCCEEDED:
            agent._set_pair_state(valid, _SUCCEEDED)
        # A triggered check still queued for the pair (§7.3.1.4: the peer's check met ours in
        # progress, which was cancelled, and this is its answer) would only prove again what
        # this answer proved: it is dropped. A nomination never waits there
        # (Selection.run_nomination sends it at once).
        own_list = agent.checklists[pair.stream]
        if own_list.triggered:
            own_list.drop_triggered(pair, valid)
        for checklist in agent.checklists:
            if checklist.schedulable:  # else no Frozen pair is left to unfreeze: no call
                for sibling in checklist.unfreeze_siblings(pair):
                    if agent.progress_events:
                        self._emit(PairStateChanged(checklist.stream, sibling))
        if check.use_candidate and check.controlling:
            agent.selection.nominate(valid, now)
            if agent.selected.get((valid.stream, valid.component)) is valid:
                agent.nomination.nominated_by_us(valid, confirmed=check.peer_had_credentials)
        elif not agent.controlling and (pair.nominate_on_success or valid.nominate_on_success):
            agent.selection.nominate(valid, now)
        elif not agent.nomination.pair_valid(valid, now):
            self._failures.peer_input[PeerInput.VALID_LIST_FULL] += 1

    def _failed(self, check: Check, error: ErrorCode | None) -> None:
        agent = self._agent
        pair = check.pair
        code = error.code if error else 0
        if code == 487 and check.controlling == agent.controlling:
            # §7.2.5.1: switch roles and check the pair again.
            self._failures.role_conflicts += 1
            agent._switch_role(not agent.controlling)
            agent._set_pair_state(pair, PairState.WAITING)
            agent.checklists[pair.stream].enqueue_triggered(pair)
            return
        if code == 401:
            self._failures.unauthenticated += 1
        pair.failure = f"error {code}"
        if not check.consent:
            agent._set_pair_state(pair, PairState.FAILED)

    def _valid_pair(self, pair: CandidatePair, mapped: Address) -> CandidatePair:
        """The pair a successful check validates (§7.2.5.3.2), learning a local prflx if needed.

        ``mapped`` is the peer's XOR-MAPPED-ADDRESS: one of another family than the base is
        ignored, and past ``max_local_peer_reflexive`` no new local candidate is learnt; either
        way the checked pair itself is the valid one (the check proved its path). Over TCP the
        checked pair is always the valid one: its connection is the path, and the address a NAT
        gave the connection is no candidate anybody could use (RFC 6544 §7.2.2). (The usual
        answer, ``mapped`` the local candidate's own address, never comes here.)"""
        if pair.local.transport == "tcp":
            return pair
        if (":" in mapped.host) != (":" in pair.local_base.host):
            self._failures.peer_input[PeerInput.MAPPED_ADDRESS_FAMILY] += 1
            return pair
        local = self._gatherer.find(pair.stream, pair.component, mapped)
        if local is None:
            local = self._learn_peer_reflexive(pair, mapped)
            if local is None:
                self._failures.peer_input[PeerInput.LOCAL_PEER_REFLEXIVE_FULL] += 1
                return pair
        if local.base != pair.local_base:
            return pair
        known = self._agent.nomination.valid_on(pair.local_base, pair.remote.address)
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

    def _learn_peer_reflexive(self, pair: CandidatePair, mapped: Address) -> LocalCandidate | None:
        """§7.2.5.3.1: a peer-reflexive local candidate, with the priority the check carried;
        ``None`` when ``max_local_peer_reflexive`` were learnt already."""
        candidate = Candidate(
            foundation=compute_foundation(
                CandidateType.PEER_REFLEXIVE, pair.local_base.host, "udp"
            ),
            component=pair.component,
            transport="udp",
            priority=self._peer_reflexive_priority(pair),
            host=mapped.host,
            port=mapped.port,
            type=CandidateType.PEER_REFLEXIVE,
            related_address=pair.local_base,
            base=pair.local_base,
        )
        local = LocalCandidate(candidate, pair.local_base, pair.stream)
        return local if self._gatherer.learn_peer_reflexive(local) else None
