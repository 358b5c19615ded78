"""The sans-IO ICE agent (RFC 8445): gathering, checks, nomination, consent.

Theory of operation. The agent is an architecture.md §2 machine: the driver feeds it every
datagram that arrives on its base sockets (:meth:`Agent.receive_datagram`), sends what it drains
(:meth:`Agent.datagrams_to_send`), calls :meth:`Agent.handle_timer` at :meth:`Agent.get_timer`, and
reads events (:meth:`Agent.next_event`).

1. **Gathering** (:mod:`ice.gather`): the driver declares its sockets with :meth:`add_base`, then
   :meth:`gather` emits host candidates at once and server-reflexive ones as STUN servers answer.
2. **Checking** starts at :meth:`start_checks` (or as soon as the peer's checks and credentials
   arrive). One check list per data stream pairs local bases with remote candidates (§6.1.2).
   Our checks go out one per Ta, are retransmitted and validate pairs when answered
   (:mod:`ice.outgoing`, §6.1.4, §7.2); the peer's checks are answered and trigger checks back,
   making peer-reflexive remote candidates of unknown sources (:mod:`ice.incoming`, §7.3).
3. **Nomination and selection** (:mod:`ice.selection`, with the policy of :mod:`ice.nomination`):
   the controlling agent nominates the best valid pair of a component as soon as no better pair
   can still succeed, or ``max_nomination_wait`` after its first valid pair, by repeating its
   check with USE-CANDIDATE (§8.1.1). The controlled agent nominates a pair when a USE-CANDIDATE
   check for it has arrived and its own check of it succeeded, and selects the highest-priority
   nominated pair per component.
4. **Consent** (:mod:`ice.consent`, RFC 7675) runs on every selected pair. A relayed pair that
   stops answering consent checks has its allocation probed at once (an early Refresh), so an
   allocation the server forgot is reported in a round trip, not at consent expiry. A TURN
   server reached over TCP or TLS needs a connection the driver opens and closes for the agent
   (:meth:`relay_stream_commands`, :meth:`relay_stream_connected`, :meth:`relay_stream_closed`;
   :mod:`ice.relay`).
5. **Ending.** Every wait ends with a reason (:meth:`failure_reason`). The agent fails when a
   component can no longer get a pair: nothing left to check, no valid pair and end-of-candidates
   (or no usable local candidate at all: a relay-only agent whose TURN servers refused); when it
   has had nothing to do for ``idle_timeout`` — waiting for candidates without end-of-candidates,
   or, controlled, for a nomination; when consent is lost; or when the local candidate of a
   selected pair is lost (its TURN allocation ended) and no other valid pair remains
   (:mod:`ice.selection`).
6. **Restart** (§9): new credentials and check lists; the selected pairs carry data on but belong
   to the previous generation — consent-lost ones too — and never count as a nomination of the
   new one. Gathering runs again for what is gone (:meth:`Gatherer.restart`).
   Three seconds after completing, the agent releases the bases no selected pair needs (RFC 8445
   §8.3, :mod:`ice.release`): their candidates are lost; a restart gathers on the bases the
   driver declares again.
7. **ICE-TCP** (RFC 6544, :mod:`ice.tcp`): the driver declares listening sockets as TCP bases
   (:meth:`add_tcp_base`); their passive, active and simultaneous-open candidates pair with the
   peer's by direction, and a TCP path's messages travel on its one connection, which the agent
   opens, accepts, writes and closes through commands (:meth:`tcp_commands`) and notifications
   (:meth:`tcp_accepted`, :meth:`tcp_connected`, :meth:`receive_stream`, :meth:`tcp_closed`).
   Everything else — checks, triggered checks, nomination, consent, restart — is the same for
   both transports; a check over TCP is sent once and waits Ti (RFC 8489 §6.2.2).

The :class:`Agent` is the facade: it holds the session's state (credentials, role, check lists,
selected pairs) and the tables, takes the commands and the five verbs, and hands each datagram
to the helper whose job it is — :class:`~ice.outgoing.OutgoingChecks`,
:class:`~ice.incoming.IncomingChecks`, :class:`~ice.selection.Selection` — which read and change
that state through the agent they were made for (its underscored members are theirs too).
"""

from __future__ import annotations

from collections.abc import Iterable

from stun.address import Address
from stun.datagram import Datagram
from stun.errors import DecodeError as StunDecodeError
from stun.framing import MAX_RFC4571_PACKET
from stun.message import Message, MessageClass, Method, new_transaction_id

from .candidate import Candidate, CandidateType, generate_credentials, pairs_with
from .check_codec import BINDING_REQUEST, BINDING_SUCCESS
from .checklist import CandidatePair, CheckList, PairState, SelectedPairs
from .config import AgentConfig, Policy
from .connection_options import credential, datagram, flag
from .consent import ConsentTracker
from .errors import LocalProtocolError
from .events import (
    ConsentLost,
    DataReceived,
    IceEvent,
    IceState,
    PairStateChanged,
    RoleChanged,
    StateChanged,
)
from .gather import Gatherer, LocalCandidate
from .incoming import IncomingChecks
from .nomination import NominationPolicy
from .outgoing import OutgoingChecks
from .relay import RelayStreamCommand
from .release import RELEASE_DELAY, RELEASED, needed_bases, unpairable_remotes, unused_bases
from .remotes import RemoteCandidates, unusable
from .selection import Selection
from .stats import FailureCounters, PairStats, PeerInput, TableSizes, pair_stats
from .tcp import TcpCommand, TcpConnections

#: Enum members read on every datagram and timer, bound once: CPython 3.11 reads a member through
#: its class in ~0.2 µs (EnumType defines __getattr__), a module name in ~0.02 µs.
_RELAY_ONLY = Policy.RELAY
_FAILED = IceState.FAILED
_CLOSED = IceState.CLOSED
_COMPLETED = IceState.COMPLETED


class Agent:
    """One ICE session: local and remote candidates, check lists, selected pairs."""

    __slots__ = (
        "_checking",
        "_closed",
        "_events_read",
        "_last_now",
        "_last_progress",
        "_outgoing",
        "_release_at",
        "_touched",
        "checklists",
        "config",
        "consent",
        "controlling",
        "failures",
        "gatherer",
        "incoming",
        "local_password",
        "local_username",
        "nomination",
        "outgoing",
        "pending_events",
        "progress_events",
        "remote_candidates",
        "remote_complete",
        "remote_lite",
        "remote_password",
        "remote_username",
        "selected",
        "selection",
        "state",
        "tcp",
        "tie_breaker",
    )

    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config = config or AgentConfig()
        self.controlling = False if config.lite else config.controlling
        #: The peer is ICE-lite (RFC 8445 §2.5): we control. Settable until checks start.
        self.remote_lite = config.remote_lite
        self.tie_breaker = (
            config.tie_breaker if config.tie_breaker is not None else config.rng.getrandbits(64)
        )
        ufrag, pwd = generate_credentials(config.rng)
        self.local_username = config.local_username or ufrag
        self.local_password = config.local_password or pwd
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self.state = IceState.NEW
        #: Events not yet read, oldest first (a list, drained at each pump: an empty deque
        #: costs ~0.8 KiB per agent). A driver only asks whether it is empty — it is once every
        #: event was read — to save the :meth:`take_events` call; only the agent changes it.
        self.pending_events: list[IceEvent] = []
        self._events_read = 0
        #: Whether the events that only report progress are made: every
        #: :class:`~ice.events.PairStateChanged`, and :class:`~ice.events.StateChanged` to a
        #: state other than failed and closed. A driver that acts on none of them
        #: (:class:`~ice.aio.Connection` without ``on_event``) turns them off, saving an object
        #: and a drain step each; every other event is made always.
        self.progress_events = True
        #: The ``now`` of the latest call that gave one (for commands, which take none).
        self._last_now = 0.0
        #: Cleared in place, never replaced: the helpers hold its append method.
        self._outgoing: list[Datagram] = []
        emit, send = self.pending_events.append, self._outgoing.append
        self.gatherer = Gatherer(config, emit, send)
        self.checklists = [
            CheckList(stream, config.max_pairs) for stream in range(len(config.streams))
        ]
        self.remote_candidates = RemoteCandidates(config.max_remote_candidates, len(config.streams))
        self.remote_complete = False
        #: Checks have started (:meth:`start_checks`, or the peer's checks and credentials).
        self._checking = False
        self.selected = SelectedPairs()
        self.nomination = NominationPolicy(config)
        self.consent = ConsentTracker(config)
        self.failures = FailureCounters()
        #: The last sign of life of the session: checks started, a remote candidate, a request.
        self._last_progress = 0.0
        #: A command changed what the agent waits for; it has no clock, so the next
        #: handle_timer (due at once) stamps the progress and derives the state.
        self._touched = False
        self._closed = False
        #: When the bases no selected pair uses are released (:mod:`ice.release`): armed while
        #: the agent is completed.
        self._release_at: float | None = None
        #: The helpers the facade hands the work to (module docstring).
        self.outgoing = OutgoingChecks(self, emit, send)
        self.incoming = IncomingChecks(self, emit, send)
        self.selection = Selection(self, emit)
        self.tcp = TcpConnections(self)

    # ================================================================== commands

    def add_base(self, stream: int, component: int, address: Address) -> None:
        """Declare a local UDP socket (one per stream, component and interface address)."""
        self._check_stream(stream, component)
        self.gatherer.add_base(stream, component, address)

    def add_tcp_base(
        self, stream: int, component: int, address: Address, *, simultaneous_open: bool = False
    ) -> None:
        """Declare a local TCP socket (RFC 6544 §4.1): one listening on ``address`` that the
        driver accepts connections on and connects from (from an ephemeral port of its address),
        or with ``simultaneous_open`` one that accepts and connects from ``address`` itself. Its
        address must differ from every other base's, UDP ones included."""
        self._check_stream(stream, component)
        self.gatherer.add_tcp_base(stream, component, address, simultaneous_open=simultaneous_open)
        self.tcp.add_base(address)

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
        credential("ufrag", username)
        credential("pwd", password)
        self.remote_username = username
        self.remote_password = password
        if not self._checking and not self._closed and any(c.triggered for c in self.checklists):
            self.start_checks(self._last_now)  # due at once: the driver's next timer sends

    def add_remote_candidate(self, candidate: Candidate | None, stream: int = 0) -> None:
        """A candidate from signaling (trickle, RFC 8838); ``None`` means end-of-candidates."""
        if candidate is None:
            self.remote_complete = True
            self._touched = True  # nothing left to check may mean failed now
            return
        self._check_stream(stream)  # the stream is the caller's choice; the component the peer's
        self._touched = True  # a sign of the peer: the idle wait starts again
        if candidate.component > self.config.streams[stream]:
            self.failures.peer_input[PeerInput.UNKNOWN_COMPONENT] += 1
            return
        if candidate.transport == "tcp" and not self.config.tcp_types:
            self.failures.peer_input[PeerInput.TCP_CANDIDATE_IGNORED] += 1
            return
        if candidate.is_mdns:
            return  # mDNS names must be resolved by the driver
        if unusable(candidate):
            self.failures.peer_input[PeerInput.UNUSABLE_ADDRESS] += 1
            return
        known = self.remote_candidates.find(
            stream, candidate.component, candidate.address, candidate.transport
        )
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

    def set_role(self, controlling: bool) -> None:
        """Take the controlling or the controlled role until checks start (RFC 8445 §6.1.1: the
        role follows from signalling — the offerer controls — which may settle after the agent
        was made and gathered). Once checks have started only a role conflict changes it.

        Raises :class:`LocalProtocolError` once checking, for an ICE-lite agent asked to
        control, and for the controlled role while the peer is ICE-lite."""
        if flag("controlling", controlling) == self.controlling:
            return
        self._check_before_checks("the role")
        if self.config.lite:
            raise LocalProtocolError("an ICE-lite agent is always controlled (RFC 8445 §6.1.1)")
        if self.remote_lite:
            raise LocalProtocolError(
                "the peer is ICE-lite: we must be controlling (RFC 8445 §6.1.1)"
            )
        self._take_role(controlling)

    def set_remote_lite(self, remote_lite: bool) -> None:
        """Whether the peer is ICE-lite (its SDP's ``a=ice-lite``, RFC 8839 §5.3), until checks
        start. A full agent facing a lite one takes the controlling role (RFC 8445 §6.1.1)."""
        if flag("remote_lite", remote_lite) == self.remote_lite:
            return
        self._check_before_checks("whether the peer is ICE-lite")
        if remote_lite and self.config.lite:
            raise LocalProtocolError("two ICE-lite agents cannot connect (RFC 8445 §2.5)")
        self.remote_lite = remote_lite
        if remote_lite:
            self._take_role(True)

    def _check_before_checks(self, what: str) -> None:
        if self._closed:
            raise LocalProtocolError("the agent is closed")
        if self._checking:
            raise LocalProtocolError(f"{what} cannot change once checks have started")

    def force_selected_pair(
        self, local: Candidate, remote: Candidate, now: float, stream: int = 0
    ) -> CandidatePair:
        """Make ``local`` → ``remote`` the selected pair of their component without any check:
        for a peer that does not do ICE at all, which sends to and expects data from the
        addresses signalled (aioice's ``set_selected_pair``). ``local`` is one of
        :attr:`local_candidates`; ``remote`` need not have been added. The pair counts as
        nominated and selected (:class:`~ice.events.SelectedPairChanged`); no consent check or
        keepalive runs on it, since such a peer would not answer (RFC 7675 concerns ICE peers).

        Raises :class:`LocalProtocolError` if ``local`` is not ours, the two cannot pair
        (component, transport, address family), they are TCP candidates (an ICE-TCP connection
        is opened by a check) or the check list has no room."""
        if self._closed:
            raise LocalProtocolError("the agent is closed")
        self._check_stream(stream, remote.component)
        found = next(
            (c for c in self.gatherer.candidates if c.stream == stream and c.candidate == local),
            None,
        )
        if found is None:
            raise LocalProtocolError(f"{local} is not a local candidate of stream {stream}")
        if local.transport != "udp":
            raise LocalProtocolError("only a UDP pair can be forced: a TCP one needs its check")
        if local.component != remote.component or not pairs_with(local, remote):
            raise LocalProtocolError(f"{local} cannot pair with {remote}")
        self._last_now = now
        checklist = self.checklists[stream]
        pair = checklist.find(found.base, remote.address) or checklist.add(
            local, found.base, remote, self.controlling
        )
        if pair is None:
            raise LocalProtocolError("the check list is full (max_pairs): no room for the pair")
        self._set_pair_state(pair, PairState.SUCCEEDED)
        self.selection.force(pair, now)
        return pair

    def start_checks(self, now: float) -> None:
        """Begin connectivity checks (§6.1.4): needs the peer's credentials."""
        if self.remote_username is None or self.remote_password is None:
            raise LocalProtocolError("set_remote_credentials() before start_checks()")
        if self._closed:
            raise LocalProtocolError("the agent is closed")
        if self._checking:
            return
        self._checking = True
        self._last_now = self._last_progress = now
        for checklist in self.checklists:
            checklist.unfreeze_initial()
        self.outgoing.next_at = now
        self._set_state(IceState.CHECKING)
        self.selection.update(now, nominate=False)  # no pair to check: this may be the end

    def restart(self, now: float, gone_bases: Iterable[Address] = ()) -> None:
        """ICE restart (RFC 8445 §9): new local credentials, new checks; data keeps flowing on the
        current selected pairs until new ones are selected, but they are the previous
        generation's and never count as this one's nomination.

        Gathering runs again for what is gone: ``gone_bases`` (sockets whose interface address
        went away; their candidates are lost, :class:`~ice.events.CandidateLost`) are
        forgotten, bases added since :meth:`gather` are gathered, allocations that failed or
        ended are made again. Every local candidate is announced again
        (:class:`~ice.events.CandidateGathered`, then :class:`~ice.events.GatheringCompleted`)."""
        if self._closed:
            raise LocalProtocolError("the agent is closed")
        if not self.gatherer.started:
            raise LocalProtocolError("gather() before restart()")
        self._last_now = now
        self.local_username, self.local_password = generate_credentials(self.config.rng)
        self.remote_username = self.remote_password = None
        self.remote_candidates.clear()
        self.remote_complete = False
        self.checklists = [
            CheckList(stream, self.config.max_pairs) for stream in range(len(self.config.streams))
        ]
        self.outgoing.restart()
        self.incoming.restart()
        self._checking = False
        self.nomination = NominationPolicy(self.config)
        self.selection.restart()
        self._set_state(IceState.CHECKING if self.selected else IceState.NEW)
        for address in gone_bases:
            self._forget_base(address, now, f"the interface address {address.host} is gone")
        self.gatherer.restart(now)
        self._relays_changed(now)

    def _forget_base(
        self, address: Address, now: float, reason: str, *, released: bool = False
    ) -> None:
        """A base is gone or ``released``: its TCP connections close, its candidates are lost
        (their pairs are forgotten by :meth:`_relays_changed`)."""
        self.tcp.close_base(address)
        self.gatherer.remove_base(address, now, reason, released=released)

    def _release(self, now: float) -> None:
        """Completed :data:`~ice.release.RELEASE_DELAY` ago: forget every base no selected pair
        uses, its pairs, and the remote candidates nothing else can pair with (RFC 8445 §8.3,
        :mod:`ice.release`)."""
        self._release_at = None
        needed = needed_bases(self)
        if needed is None:
            return
        relays = self.gatherer.relays
        released = relays.release(needed, now, RELEASED)
        # Their deletions (Refresh, LIFETIME 0) leave now, while the bases they go from are
        # still ours: forgetting a base forgets its allocations without a word.
        self._outgoing += relays.datagrams_to_send(now)
        unused = unused_bases(self, needed)
        for address in unused:
            self._forget_base(address, now, RELEASED, released=True)
        for address in unused + released:
            for checklist in self.checklists:
                checklist.drop_base(address)
        for stream, remote in unpairable_remotes(self):
            self.remote_candidates.remove(stream, remote)

    def close(self, now: float | None = None) -> None:
        """Stop everything. With ``now``, TURN allocations are deleted (RFC 8656 §8): drain
        :meth:`datagrams_to_send` once more to send those requests; nothing follows them."""
        self._closed = True
        self.outgoing.in_flight.clear()
        self._outgoing.clear()
        self.tcp.close_all()
        if now is not None:
            self.gatherer.relays.close(now)
        self._set_state(IceState.CLOSED)

    def send(self, data: bytes, stream: int = 0, component: int = 1) -> None:
        """Queue application data for the selected pair of a component; drain it with
        :meth:`datagrams_to_send` (a relayed pair's data leaves wrapped for the TURN server).
        Raises :class:`LocalProtocolError` for data that is not bytes, with no selected pair or
        without consent."""
        datagram(data)
        pair = self.selected.get((stream, component))
        if pair is None:
            raise LocalProtocolError(f"no selected pair for stream {stream} component {component}")
        if not self.consent.allows(pair):
            raise LocalProtocolError("consent to send on the selected pair was lost (RFC 7675)")
        if pair.local_base in self.tcp.bases and len(data) > MAX_RFC4571_PACKET:
            raise LocalProtocolError(f"{len(data)} bytes: an ICE-TCP frame holds at most 65535")
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
        relays = self.gatherer.relays
        return [
            pair_stats(
                pair,
                id(pair) in selected,
                self.consent.state_of(pair),
                relays.protocol(pair.local_base),
            )
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
            triggered=sum(len(checklist.triggered or ()) for checklist in self.checklists),
            checks_in_flight=len(self.outgoing.in_flight),
            recent_requests=self.incoming.recent_requests,
            checked_paths=self.incoming.checked_paths,
            tcp_connections=len(self.tcp),
        )

    def failure_reason(self) -> str:
        """Why the agent failed (or why checking is failing), in words a person can act on."""
        return self.selection.failure_reason()

    # ================================================================== sans-IO verbs

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed a datagram that arrived on base ``local`` from ``remote``."""
        self._last_now = now
        if self._closed or local is None or not data:
            return
        relays = self.gatherer.relays
        relay = relays.owner(local, remote) if relays.active else None
        if relay is not None:
            # From a TURN server: what a peer sent to one of our relayed addresses.
            for relayed, peer, inner in relays.receive(relay, data, now):
                self._receive(inner, relayed, peer, now)
            self._relays_changed(now)
            return
        if self.config.policy is _RELAY_ONLY:
            # Relay-only: we hear from the TURN servers and through them, never directly.
            self.failures.peer_input[PeerInput.RELAY_POLICY] += 1
            return
        self._receive(data, local, remote, now)

    def _receive(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        if not data:
            return
        if data[0] > 3:
            self._receive_data(data, local, remote, now)
            return
        head = data[:2]  # a slice: a one-byte datagram has no data[1]
        if head == BINDING_REQUEST and self.incoming.receive_check(data, local, remote, now):
            self.selection.update(now)  # a Binding request read without decoding it
            return
        if head == BINDING_SUCCESS and self.outgoing.receive_success(data, local, remote, now):
            self.selection.update(now)  # a Binding success response read without decoding it
            return
        try:
            message = Message.decode(data)
        except StunDecodeError:
            self.failures.malformed += 1
            return
        if message.method != Method.BINDING:
            return
        if message.message_class is MessageClass.REQUEST:
            self.incoming.receive(message, local, remote, now)
        elif message.message_class is not MessageClass.INDICATION and (
            # a completed gatherer has no request in flight
            self.gatherer.completed or not self.gatherer.handle_response(message, local, remote)
        ):
            self.outgoing.receive_response(message, local, remote, now)
        self.selection.update(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        relays = self.gatherer.relays
        # Taken, then cleared in place (the helpers hold this list's append method): what one
        # call fails on is never met again by the next. A slice and a del, not list() and
        # clear(): no call, after every datagram.
        pending = self._outgoing[:]
        del self._outgoing[:]
        tcp_bases = self.tcp.bases
        if not relays.active:
            if not tcp_bases or not pending:
                return pending  # no TURN allocation, no ICE-TCP: every datagram leaves as it is
            for queued in pending:  # a loop, not all() over a generator: no call per datagram
                if queued.local in tcp_bases:
                    break
            else:
                return pending  # ICE-TCP offered, but none of these goes on a connection
        outgoing = []
        for queued in pending:
            if queued.local in tcp_bases:
                self.tcp.send(queued.data, queued.local, queued.remote, now)
            elif queued.local is not None and relays.is_relayed(queued.local):
                relays.send(queued.data, queued.local, queued.remote, now)
            else:
                outgoing.append(queued)
        return outgoing + relays.datagrams_to_send(now)

    # ================================================================== TURN over TCP and TLS

    def relay_stream_commands(self) -> list[RelayStreamCommand]:
        """What the driver must do now with the TCP/TLS connections to TURN servers: open
        (:class:`~ice.relay.OpenRelayStream`) or close them (:mod:`ice.relay`). Take these
        before :meth:`datagrams_to_send`: a datagram may be labelled with a stream opened here."""
        return self.gatherer.relays.stream_commands()

    def relay_stream_connected(self, label: Address, now: float) -> None:
        """The connection the driver opened for ``label`` is established."""
        self._last_now = now
        self.gatherer.relays.stream_connected(label, now)

    def relay_stream_closed(self, label: Address, now: float, reason: str) -> None:
        """The connection of ``label`` could not be opened or ended (``reason`` says how): its
        allocation ends with it."""
        self._last_now = now
        if self._closed:
            return
        for relayed, peer, inner in self.gatherer.relays.stream_closed(label, now, reason):
            self._receive(inner, relayed, peer, now)
        self._relays_changed(now)

    def _relays_changed(self, now: float, *, update: bool = True) -> None:
        """Pair relayed candidates that just appeared, forget lost ones; see whether gathering
        completed (and, with ``update``, what follows for nomination and state)."""
        gatherer = self.gatherer
        while gatherer.lost:  # forgetting one may lose more
            (local, reason), gatherer.lost = gatherer.lost[0], gatherer.lost[1:]
            self.selection.forget_local(local, reason, now)
        while gatherer.new_relayed:
            local, gatherer.new_relayed = gatherer.new_relayed[0], gatherer.new_relayed[1:]
            for stream, candidate in list(self.remote_candidates):
                if stream == local.stream and candidate.component == local.candidate.component:
                    self._pair_remote(stream, candidate)
        gatherer.check_complete()
        if update:
            self.selection.update(now)

    def get_timer(self) -> float | None:
        """The earliest deadline of the parts. Asked after every datagram and timer, so each part
        is asked only when it can have one: gathering not complete, a TURN allocation, a selected
        pair, a TCP connection with a deadline, a component to nominate, an agent with no
        ordinary check in flight."""
        if self._closed:
            return None
        gatherer = self.gatherer
        relays = gatherer.relays
        selection = self.selection
        outgoing = self.outgoing
        earliest = outgoing.get_timer()
        # Not idle with an ordinary check in flight, nor with a check waiting: with none in
        # flight, a deadline of the outgoing checks is the next Ta slot of one that waits.
        verdict = (
            selection.give_up_at()
            if self._checking
            and not outgoing.in_flight.ordinary
            and (earliest is None or outgoing.in_flight)
            and not selection.all_concluded
            and self.state is not _FAILED  # a failed agent has given its verdict
            else None
        )
        for deadline in (
            None if gatherer.completed else gatherer.get_timer(),
            relays.get_timer() if relays.active else None,
            self.consent.get_timer() if self.consent.records else None,
            self.tcp.get_timer() if self.tcp.timed else None,
            self.nomination.deadline
            if self.nomination.deciding
            and self.controlling
            and not self.config.lite
            and not selection.all_concluded
            else None,
            self._last_now if self._touched else None,
            verdict[0] if verdict is not None else None,
            self._release_at,
        ):
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def handle_timer(self, now: float) -> None:
        self._last_now = now
        if self._closed:
            return
        if self._touched:
            self._touched = False
            self._last_progress = now
        gatherer = self.gatherer
        relays = gatherer.relays
        if self._release_at is not None and now >= self._release_at:
            self._release(now)  # its lost candidates are forgotten just below
        if not gatherer.completed:
            gatherer.handle_timer(now)
        if relays.active:
            for relayed, peer, inner in relays.handle_timer(now):
                self._receive(inner, relayed, peer, now)
        if relays.active or gatherer.lost or gatherer.new_relayed or not gatherer.completed:
            self._relays_changed(now, update=False)  # the state is derived below
        if self.tcp.timed:
            self.tcp.handle_timer(now)
        outgoing = self.outgoing
        if outgoing.in_flight:
            outgoing.retransmit(now)
        selection = self.selection
        if self.controlling and self.nomination.deciding and not selection.all_concluded:
            selection.run_nomination(now)  # a nomination deadline due now takes this Ta slot
        outgoing.use_slot(now)
        if self.consent.records:
            self._run_consent(now)
        selection.update(now)  # the check just sent moves the nomination's recheck earlier

    def take_events(self) -> list[IceEvent]:
        """Every event :meth:`next_event` would return now, in order, at once (a driver that
        drains after each datagram saves a call per event)."""
        events = self.pending_events
        if not events:
            return []
        taken = events[self._events_read :]
        del events[:]  # cleared in place (the helpers hold its append method), with no call
        self._events_read = 0
        return taken

    def next_event(self) -> IceEvent | None:
        events = self.pending_events
        if not events:
            return None
        index = self._events_read
        event = events[index]
        if index + 1 == len(events):
            events.clear()  # cleared in place: the helpers hold its append method
            self._events_read = 0
        else:
            self._events_read = index + 1
        return event

    # ================================================================== ICE-TCP (ice.tcp)

    def tcp_commands(self) -> list[TcpCommand]:
        """What the driver must do with TCP connections now, in order (:mod:`ice.tcp`); drain
        it after :meth:`datagrams_to_send`, which may add to it."""
        return self.tcp.drain()

    def tcp_accepted(self, local: Address, remote: Address, now: float) -> int | None:
        """A TCP base accepted a connection from ``remote``: its id for the notifications to
        come, or ``None`` — close it at once (no room, or nothing of ours accepts there)."""
        self._last_now = now
        if self._closed or self.config.policy is Policy.RELAY:
            return None
        return self.tcp.accepted(local, remote, now)

    def tcp_connected(self, connection: int, now: float) -> None:
        """A connection an :class:`~ice.tcp.OpenTcp` asked for is established."""
        self._last_now = now
        if not self._closed:
            self.tcp.connected(connection)

    def receive_stream(self, connection: int, data: bytes, now: float) -> bool:
        """Bytes arrived on a TCP connection, as they came (any cut): its RFC 4571 frames are
        handled as datagrams of the connection's path. Returns ``False`` when they all went to
        the connection's sink (:meth:`~ice.tcp.TcpConnections.set_sink`), or none was
        complete: then the agent has nothing new to send or tell."""
        self._last_now = now
        if self._closed or not data:
            return False
        return self.tcp.received(connection, data, now)

    def tcp_closed(self, connection: int, now: float, reason: str = "closed") -> None:
        """A TCP connection is gone without a :class:`~ice.tcp.CloseTcp` of ours: refused,
        timed out, reset or closed by the peer (``reason`` says which, for the failure
        summary)."""
        self._last_now = now
        if not self._closed:
            self.tcp.closed(connection, now, reason)
            self.selection.update(now)

    # ================================================================== pairing

    def _check_stream(self, stream: int, component: int = 1) -> None:
        if not 0 <= stream < len(self.config.streams):
            raise LocalProtocolError(f"no stream {stream}")
        if not 1 <= component <= self.config.streams[stream]:
            raise LocalProtocolError(f"stream {stream} has no component {component}")

    def _pair_remote(self, stream: int, remote: Candidate) -> None:
        if self.config.lite:
            return
        checklist = self.checklists[stream]
        for local in self.gatherer.pairable(stream, remote.component):
            if not pairs_with(local.candidate, remote):
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
                checklist.set_state(pair, PairState.WAITING)

    # ================================================================== consent and data

    def _run_consent(self, now: float) -> None:
        for pair in self.consent.newly_disconnected(now):
            # A relayed path gone quiet: does the TURN server still hold our allocation?
            self.gatherer.relays.probe(pair.local_base, now)
        if self.remote_password is None:
            return
        for pair in self.consent.due(now):
            use_candidate = self.controlling and self.nomination.unconfirmed(pair)
            self.outgoing.send(pair, now, use_candidate=use_candidate, consent=True)
        for pair in self.consent.keepalives_due(now):
            keepalive = Message(
                Method.BINDING, MessageClass.INDICATION, new_transaction_id(self.config.rng)
            ).encode(fingerprint=True)
            self.consent.sent(pair, now)
            self._outgoing.append(Datagram(keepalive, pair.local_base, pair.remote.address))
        for pair in self.consent.expired(now):
            self.pending_events.append(ConsentLost(pair.stream, pair.component, pair))
            self.selection.fail(
                f"consent to send on component {pair.component} was lost (RFC 7675): no "
                f"authenticated answer from {pair.remote.address} for "
                f"{self.config.consent_timeout:g} s"
            )

    def _receive_data(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """Application data (RFC 7983: not STUN) that arrived on base ``local`` from ``remote``.

        It is the peer's when it comes from the remote side of a selected pair, of a valid pair
        (the peer may send on any valid pair before selection, RFC 8445 §12.1), or of a path the
        peer's authenticated check came on (its check may succeed before ours does). Anything
        else is a stranger's — no check proved it — and is dropped and counted, as pion's
        ``validateNonSTUNTraffic`` does. Every lookup is one dict access.
        """
        pair = self.selected.on_path(local, remote) or self.selection.follow_peer(
            local, remote, now
        )
        if pair is not None:
            pair.bytes_received += len(data)
            self.nomination.confirm(pair)  # the peer sends data on the pair it selected
            self.pending_events.append(DataReceived(pair.stream, pair.component, data, remote))
            return
        pair = self.nomination.valid_on(local, remote)
        base = self.gatherer.on_base(local)
        if pair is None and base is not None and self.incoming.checked_on(local, remote):
            pair = self.checklists[base.stream].find(local, remote)
            if pair is None:  # a check the full check list kept no pair for, or ICE-lite
                self.pending_events.append(
                    DataReceived(base.stream, base.candidate.component, data, remote)
                )
                return
        if pair is None:
            self.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER] += 1
            return
        pair.bytes_received += len(data)
        self.pending_events.append(DataReceived(pair.stream, pair.component, data, remote))

    # ================================================================== state changes

    def _set_pair_state(self, pair: CandidatePair, state: PairState) -> None:
        if pair.state is not state:
            self.checklists[pair.stream].set_state(pair, state)
            if self.progress_events:
                self.pending_events.append(PairStateChanged(pair.stream, pair))

    def _set_state(self, state: IceState) -> None:
        if self.state is not state:
            self.state = state
            if self.progress_events or state is _FAILED or state is _CLOSED:
                self.pending_events.append(StateChanged(state))
            # Released RFC 8445 §8.3's three seconds after completing, unless it leaves the
            # state first (restart, consent, failure, closing): ice.release.
            self._release_at = None
            if state is _COMPLETED:
                self._release_at = self._last_now + RELEASE_DELAY
                self.outgoing.completed()
                if self.tcp.last_id:  # not when no TCP connection was ever made
                    self.tcp.close_unselected()

    def _switch_role(self, controlling: bool) -> None:
        """Take the other role after a role conflict (§7.2.5.1, §7.3.1.1): every pair priority
        changes (an ICE-lite agent is always controlled)."""
        if self.config.lite or self.controlling == controlling:
            return
        self._take_role(controlling)
        self.pending_events.append(RoleChanged(controlling))

    def _take_role(self, controlling: bool) -> None:
        """Take a role: every pair priority depends on it (§6.1.2.3)."""
        self.controlling = controlling
        for checklist in self.checklists:
            checklist.recompute_priorities(controlling)
