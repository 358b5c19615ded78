"""The peer's connectivity checks: answering them and what they set in motion (RFC 8445 §7.3).

Theory of operation. A Binding request that arrives on one of the agent's bases is answered
(§7.3.1): 400 without USERNAME or MESSAGE-INTEGRITY, 420 for an unknown comprehension-required
attribute, 401 unless USERNAME starts with our ufrag and MESSAGE-INTEGRITY checks with our
password, 487 when the role conflict rules of §7.3.1.1 say the peer must switch (or we switch
and answer). Else the answer is a success with XOR-MAPPED-ADDRESS (the source the request came
from), MESSAGE-INTEGRITY with our password and FINGERPRINT.

What an authenticated request sets in motion happens once per transaction ID — a retransmission
is answered again, nothing more (the last ``RECENT_REQUESTS`` IDs are remembered):

- its source becomes a peer-reflexive remote candidate if it is no known one (§7.3.1.3), with the
  request's PRIORITY brought into the range a candidate priority has;
- the pair it arrived on (created if need be) gets a triggered check (§7.3.1.4), which replaces
  the pair's check in flight and goes out at once if the Ta slot is free; with the peer's
  credentials still missing, it waits for :meth:`~ice.agent.Agent.set_remote_credentials`;
- USE-CANDIDATE from a controlling peer nominates the pair once our own check of it succeeds —
  at once if it already has (§7.3.1.5); an ICE-lite agent, which sends no checks, selects the
  pair at once (§7.3.1.5, §2.5).

The first request signed with our current password shows that the peer has our credentials: the
controlling agent repeats at once a nomination the peer may have ignored before
(:meth:`~ice.nomination.NominationPolicy.nominated_by_us`).

A request of the shape checks have (:mod:`ice.answer_codec`) is read and answered from its
bytes (:meth:`IncomingChecks.receive_check`); any other, and one that does not authenticate, is
decoded and goes the typed way (:meth:`IncomingChecks.receive`). Both share what follows
authentication.

The path an authenticated request came on — (our base, its source) — is remembered (the last
``max_pairs`` of them): the peer may send data on a pair as soon as *its* check of the pair has
succeeded (RFC 8445 §12.1), before our own check of it has, and that data is accepted
(:meth:`IncomingChecks.checked_on`); a stranger, who cannot sign a check, sends no data we take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stun.address import Address
from stun.attributes import (
    ErrorCode,
    Fingerprint,
    IceControlled,
    IceControlling,
    Priority,
    UseCandidate,
    Username,
)
from stun.datagram import Datagram
from stun.integrity import PreparedKey, sha1_integrity_matches, shared_key
from stun.message import Message, MessageClass, Method

from .agent_part import AgentPart
from .answer_codec import CheckRequest, read_check, success_response
from .candidate import MAX_PRIORITY, Candidate, CandidateType, tcp_partner
from .checklist import PairState
from .events import IceEvent, RemoteCandidateLearned
from .gather import LocalCandidate
from .recency import Recent, remember
from .remotes import unusable
from .stats import PeerInput

if TYPE_CHECKING:
    from .agent import Agent

_new_tuple = tuple.__new__

#: Enum members read on every check from the peer, bound once: CPython 3.11 reads a member
#: through its class in ~0.2 µs (EnumType defines __getattr__), a module name in ~0.02 µs.
_WAITING = PairState.WAITING
_SUCCEEDED = PairState.SUCCEEDED
#: How many request transaction IDs the agent remembers to recognise retransmissions.
RECENT_REQUESTS = 256


class IncomingChecks(AgentPart):
    """Answers the peer's checks for an :class:`~ice.agent.Agent` and acts on them."""

    __slots__ = (
        "_checked_paths",
        "_key",
        "_key_password",
        "_prflx_made",
        "_recent",
        "_remote_candidates",
        "_send",
        "peer_has_credentials",
    )

    def __init__(
        self, agent: Agent, emit: Callable[[IceEvent], None], send: Callable[[Datagram], None]
    ) -> None:
        super().__init__(agent, emit)
        self._remote_candidates = agent.remote_candidates
        self._send = send
        #: Transaction IDs of recent requests: a retransmission is answered, not re-triggered.
        self._recent: Recent[bytes] = ()
        #: How many peer-reflexive remote candidates were made: their foundations number them.
        self._prflx_made = 0
        #: Whether an authenticated check from the peer was signed with our current password:
        #: then the peer has our credentials (see ``NominationPolicy.nominated_by_us``). Our
        #: password changes only at a restart, which clears this.
        self.peer_has_credentials = False
        #: (base, source) of recent authenticated requests, least recent first.
        self._checked_paths: Recent[tuple[Address, Address]] = ()
        #: Our password prepared for HMAC-SHA1 (:meth:`_local_key`), and the password it is of.
        self._key: PreparedKey | None = None
        self._key_password: str | None = None

    @property
    def checked_paths(self) -> int:
        """How many paths of authenticated requests are remembered."""
        return len(self._checked_paths)

    def checked_on(self, local: Address, remote: Address) -> bool:
        """Whether an authenticated check of the peer came to base ``local`` from ``remote``
        (one of the last ``max_pairs`` paths): the peer's data on that path is taken."""
        return (local, remote) in self._checked_paths

    def restart(self) -> None:
        """A new generation: the previous one's checks prove nothing about the new peer, which
        has yet to show that it has our new credentials."""
        self._checked_paths = ()
        self.peer_has_credentials = False

    @property
    def recent_requests(self) -> int:
        """How many transaction IDs are remembered."""
        return len(self._recent)

    def receive_check(self, data: bytes, local: Address, remote: Address, now: float) -> bool:
        """A datagram arrived on base ``local`` from ``remote``: if it is an authenticated
        Binding request :func:`~ice.answer_codec.read_check` reads, answer it and act on it;
        ``False`` for anything else, which the caller decodes for :meth:`receive`."""
        read = read_check(data)
        if read is None:
            return False
        request, integrity_at, integrity_length = read
        base = self._gatherer.on_base(local)
        if base is None:
            return True
        prepared = self._key
        if prepared is None or self._key_password is not self._agent.local_password:
            prepared = self._local_key()
        if request.username.partition(":")[0] != self._agent.local_username or not (
            sha1_integrity_matches(prepared, data, integrity_at, integrity_length)
        ):
            return False  # receive() answers 401 and counts it
        self._accept(request, base, local, remote, prepared, now)
        return True

    def receive(self, request: Message, local: Address, remote: Address, now: float) -> None:
        """A Binding request arrived on base ``local`` from ``remote``."""
        if request.has(Fingerprint) and not request.check_fingerprint():
            return
        base = self._gatherer.on_base(local)
        if base is None:
            return
        agent = self._agent
        username = request.get(Username)
        if username is None or not request.has_integrity:
            self._answer(local, remote, request.error_response(400), key=None)
            return
        key = agent.local_password.encode()
        if request.unknown_required:
            signed = request.check_integrity(key)
            self._answer(local, remote, request.error_response(420), key if signed else None)
            return
        ours, _, _theirs = username.value.partition(":")
        if ours != agent.local_username or not request.check_integrity(key):
            self._failures.unauthenticated_requests += 1
            self._answer(local, remote, request.error_response(401), key=None)
            return
        priority = request.get(Priority)
        controlling = request.get(IceControlling)
        controlled = request.get(IceControlled)
        checked = CheckRequest(
            request.transaction_id,
            username.value,
            None if priority is None else priority.value,
            None if controlling is None else controlling.tie_breaker,
            None if controlled is None else controlled.tie_breaker,
            request.has(UseCandidate),
        )
        self._accept(checked, base, local, remote, self._local_key(), now)

    def _accept(
        self,
        request: CheckRequest,
        base: LocalCandidate,
        local: Address,
        remote: Address,
        prepared: PreparedKey,
        now: float,
    ) -> None:
        """An authenticated request (checked with ``prepared``, our password): answer it unless
        a role conflict says otherwise, and act on it the first time its transaction ID is
        seen."""
        agent = self._agent
        same_role = request.controlling if agent.controlling else request.controlled
        if same_role is not None and not self._resolve_role_conflict(request, local, remote):
            return
        response = success_response(request.transaction_id, remote, prepared)
        self._send(_new_tuple(Datagram, (response, local, remote)))
        agent._last_progress = now
        path = (local, remote)
        paths = self._checked_paths
        if type(paths) is not tuple or not paths or paths[-1] != path:  # else the latest
            self._checked_paths = remember(paths, path, self._config.max_pairs, refresh=True)
        if not self.peer_has_credentials:
            self.peer_has_credentials = True
            agent.selection.repeat_unconfirmed_nominations(now)
        recent = self._recent
        transaction_id = request.transaction_id
        if transaction_id in recent:
            return  # a retransmission: answered again, nothing new to act on
        self._recent = remember(recent, transaction_id, RECENT_REQUESTS, refresh=False)
        self._act_on(request, base, remote, now)

    def _local_key(self) -> PreparedKey:
        """Our password prepared for HMAC-SHA1, kept while it is the agent's (a restart gives a
        new one): each check is checked and answered with it, with no lookup in the process's
        shared key cache, which sessions past its size empty again and again."""
        password = self._agent.local_password
        if self._key is None or password is not self._key_password:
            self._key_password = password
            self._key = shared_key(password.encode())
        return self._key

    def _act_on(
        self, request: CheckRequest, base: LocalCandidate, remote: Address, now: float
    ) -> None:
        """What a new authenticated request sets in motion (§7.3.1.3 to §7.3.1.5)."""
        agent = self._agent
        lite = self._config.lite
        checklist = agent.checklists[base.stream]
        # The pair the request came on, when there is one, pairs the remote candidate at its
        # source already: no lookup of that candidate then.
        pair = None if lite else checklist.find(base.base, remote)
        if pair is None:
            local = base.candidate
            remote_candidate = self._remote_candidates.find(
                base.stream, local.component, remote, local.transport
            ) or self._peer_reflexive_remote(base, remote, request.priority)
            if remote_candidate is None:
                return
            if lite:
                if request.use_candidate:
                    self._lite_nominate(base, remote_candidate, now)
                return
            pair = checklist.add(local, base.base, remote_candidate, agent.controlling)
            if pair is None:
                return
        pair.requests_received += 1
        pair.responses_sent += 1
        use_candidate = request.use_candidate and not agent.controlling
        if pair.state is _SUCCEEDED:
            if use_candidate:
                valid = agent.nomination.valid_on(pair.local_base, pair.remote.address) or pair
                agent.selection.nominate(valid, now)
            return
        if use_candidate:
            pair.nominate_on_success = True
        outgoing = agent.outgoing
        if pair.transaction_id is not None:
            outgoing.cancel(pair)  # §7.3.1.4: the triggered check replaces it
        agent._set_pair_state(pair, _WAITING)
        checklist.enqueue_triggered(pair)
        if agent._checking:
            outgoing.use_slot(now)  # the triggered queue is served now if the Ta slot is free
        elif agent.remote_password is not None:
            agent.start_checks(now)

    def _answer(
        self, local: Address, remote: Address, response: Message, key: bytes | None
    ) -> None:
        self._send(Datagram(response.encode(key=key, fingerprint=True), local, remote))

    def _lite_nominate(self, base: LocalCandidate, remote: Candidate, now: float) -> None:
        """An ICE-lite agent selects the pair a USE-CANDIDATE check arrives on (§7.3.1.5)."""
        agent = self._agent
        checklist = agent.checklists[base.stream]
        pair = checklist.find(base.base, remote.address) or checklist.add(
            base.candidate, base.base, remote, agent.controlling
        )
        if pair is not None:
            checklist.set_state(pair, PairState.SUCCEEDED)
            pair.valid = True
            agent.selection.nominate(pair, now)

    def _peer_reflexive_remote(
        self, base: LocalCandidate, remote: Address, priority: int | None
    ) -> Candidate | None:
        """A new peer-reflexive remote candidate (§7.3.1.3) for a request that reached ``base``
        from ``remote``, which is no known remote candidate — ``None`` when the stream holds
        ``max_remote_candidates`` already, or for a source no check can be sent back to (port
        0, an unspecified or multicast address).

        The new candidate's priority is the request's PRIORITY (§7.3.1.3), brought into the
        1..2^31-1 a candidate priority has (§5.1.2.1) when the peer sent 0, more, or none. Over
        TCP its transport is TCP and its direction the one that meets the base's candidate
        (RFC 6544 §7.2.2): a check on a connection our passive candidate accepted comes from an
        active candidate, at the address and port the connection came from."""
        stream, component = base.stream, base.candidate.component
        transport = base.candidate.transport
        if priority is None:
            priority = 0
        if not 1 <= priority <= MAX_PRIORITY:
            self._failures.peer_input[PeerInput.PRIORITY_CLAMPED] += 1
            priority = min(max(priority, 1), MAX_PRIORITY)
        tcp_type = base.candidate.tcp_type
        self._prflx_made += 1
        candidate = Candidate(
            foundation=f"prflx{self._prflx_made}",
            component=component,
            transport=transport,
            priority=priority,
            host=remote.host,
            port=remote.port,
            type=CandidateType.PEER_REFLEXIVE,
            tcp_type=None if tcp_type is None else tcp_partner(tcp_type),
        )
        if unusable(candidate):
            self._failures.peer_input[PeerInput.UNUSABLE_ADDRESS] += 1
            return None
        if not self._remote_candidates.add(stream, candidate):
            self._failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] += 1
            return None
        self._emit(RemoteCandidateLearned(stream, candidate))
        return candidate

    def _resolve_role_conflict(
        self, request: CheckRequest, local: Address, remote: Address
    ) -> bool:
        """RFC 8445 §7.3.1.1; ``False`` when the request was answered with 487."""
        agent = self._agent
        controlling = request.controlling
        controlled = request.controlled
        if agent.controlling and controlling is not None:
            if agent.tie_breaker >= controlling:
                self._answer_conflict(request, local, remote)
                return False
            agent._switch_role(False)
        elif not agent.controlling and controlled is not None:
            if agent.tie_breaker >= controlled:
                agent._switch_role(True)
            else:
                self._answer_conflict(request, local, remote)
                return False
        return True

    def _answer_conflict(self, request: CheckRequest, local: Address, remote: Address) -> None:
        """487 Role Conflict, signed with our password: the peer must switch roles
        (§7.3.1.1)."""
        self._failures.role_conflicts += 1
        response = Message(
            Method.BINDING,
            MessageClass.ERROR_RESPONSE,
            request.transaction_id,
            [ErrorCode.of(487)],
        )
        self._answer(local, remote, response, self._agent.local_password.encode())
