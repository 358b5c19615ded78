"""Statistics and the failure summary (WebRTC's RTCIceCandidatePairStats, in spirit)."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from .candidate import Candidate
from .checklist import CandidatePair, PairState


@dataclass(frozen=True, slots=True)
class PairStats:
    """A snapshot of one candidate pair."""

    local: Candidate
    remote: Candidate
    stream: int
    component: int
    state: PairState
    nominated: bool
    selected: bool
    priority: int
    current_rtt: float | None
    total_rtt: float
    responses_received: int
    requests_sent: int
    requests_received: int
    responses_sent: int
    bytes_sent: int
    bytes_received: int
    consent: str
    #: How the local relayed candidate's TURN server is reached — ``"udp"``, ``"tcp"`` or
    #: ``"tls"`` (WebRTC's ``relayProtocol``) — or ``None`` when the local candidate is not relayed.
    relay_protocol: str | None = None


def pair_stats(
    pair: CandidatePair, selected: bool, consent: str, relay_protocol: str | None = None
) -> PairStats:
    return PairStats(
        local=pair.local,
        remote=pair.remote,
        stream=pair.stream,
        component=pair.component,
        state=pair.state,
        nominated=pair.nominated,
        selected=selected,
        priority=pair.priority,
        current_rtt=pair.last_rtt,
        total_rtt=pair.rtt_total,
        responses_received=pair.responses_received,
        requests_sent=pair.requests_sent,
        requests_received=pair.requests_received,
        responses_sent=pair.responses_sent,
        bytes_sent=pair.bytes_sent,
        bytes_received=pair.bytes_received,
        consent=consent,
        relay_protocol=relay_protocol,
    )


class PeerInput(enum.Enum):
    """Why the agent did not take a value from the peer as sent: it clamped it or dropped it.

    Peer input never raises out of :meth:`~ice.agent.Agent.receive_datagram` or
    :meth:`~ice.agent.Agent.add_remote_candidate`; what the agent cannot use as sent is counted
    under one of these reasons in :attr:`FailureCounters.peer_input` — and so is what the
    asyncio :class:`~ice.aio.Connection` drops before the agent sees it.
    """

    #: A check from a new address carried a PRIORITY outside 1..2^31-1 (or none): the
    #: peer-reflexive candidate (RFC 8445 §7.3.1.3) got the nearest priority in range.
    PRIORITY_CLAMPED = "priority-clamped"
    #: The stream already holds ``max_remote_candidates``: a signalled or peer-reflexive remote
    #: candidate was not learnt (or a connection held that many signalled before gathering).
    REMOTE_CANDIDATES_FULL = "remote-candidates-full"
    #: A connection took ``max_remote_candidates`` ``.local`` candidates in this generation
    #: already: one more was dropped unresolved (a :class:`~ice.mdns.CandidateUnresolvable`
    #: event says so).
    MDNS_LOOKUPS_FULL = "mdns-lookups-full"
    #: ``max_local_peer_reflexive`` local candidates were learnt already: a response's
    #: XOR-MAPPED-ADDRESS (§7.2.5.3.1) made no new one; the valid pair kept the checked one.
    LOCAL_PEER_REFLEXIVE_FULL = "local-peer-reflexive-full"
    #: A response's XOR-MAPPED-ADDRESS was of the other address family than the socket it
    #: answered: ignored (the check still proves the path).
    MAPPED_ADDRESS_FAMILY = "mapped-address-family"
    #: A remote candidate for a component this stream does not have.
    UNKNOWN_COMPONENT = "unknown-component"
    #: A remote candidate, signalled or the source of a check, that no datagram can be sent to:
    #: port 0, an unspecified or a multicast address.
    UNUSABLE_ADDRESS = "unusable-address"
    #: The valid list of a component holds ``max_pairs`` pairs, none of them lower than this one.
    VALID_LIST_FULL = "valid-list-full"
    #: A check reached a host socket while the policy is relay-only: not answered, not paired.
    RELAY_POLICY = "relay-policy"
    #: Application data (not STUN, RFC 7983) from an address that is not the remote side of a
    #: selected or valid pair of the socket it came to, nor the source of an authenticated check
    #: there: a stranger's datagram, not delivered (as pion's ``validateNonSTUNTraffic``).
    DATA_NOT_FROM_PEER = "data-not-from-peer"
    #: A TCP candidate (RFC 6544) while ICE-TCP is off here (``tcp_types`` empty): ignored.
    TCP_CANDIDATE_IGNORED = "tcp-candidate-ignored"


class TcpOutcome(enum.Enum):
    """How an ICE-TCP connection (RFC 6544) ended, or what the agent refused on one; counted in
    :attr:`FailureCounters.tcp`. Every one of them closes the connection, except
    ``SEND_DROPPED`` (one message had no connection to go on)."""

    #: A connection we opened was refused (the peer sent a reset: nobody listens there).
    REFUSED = "refused"
    #: A connection we opened was not established within ``tcp_connect_timeout``.
    CONNECT_TIMEOUT = "connect-timeout"
    #: The peer closed or reset an established connection.
    CLOSED_BY_PEER = "closed-by-peer"
    #: The stream held bytes that are no RFC 4571 frame of a size we take: out of step, or a
    #: length beyond the bound (before the peer authenticated, a frame must be a short check).
    FRAMING = "framing"
    #: The first message on a connection we accepted was not a Binding request signed with our
    #: credentials (RFC 6544 §7.2: whoever connects must check first).
    UNAUTHENTICATED = "unauthenticated"
    #: A connection we accepted brought no authenticated check within ``tcp_connect_timeout``.
    SILENT = "silent"
    #: An incoming connection was refused: ``max_tcp_connections`` held and none that had not
    #: authenticated yet to give way, or nothing of ours accepts on that address.
    ACCEPT_REFUSED = "accept-refused"
    #: A connection that had not authenticated yet was closed to make room for a new one.
    EVICTED = "evicted"
    #: A message (a check, an answer, data) for a TCP path with no connection and none that we
    #: may open, or past the bound of what waits for a connection being opened: dropped.
    SEND_DROPPED = "send-dropped"


@dataclass(slots=True)
class FailureCounters:
    """What went wrong during checks, counted for :func:`describe_failure`."""

    timeouts: int = 0
    unauthenticated: int = 0
    unauthenticated_requests: int = 0
    bad_integrity: int = 0
    role_conflicts: int = 0
    malformed: int = 0
    # The two tables are made when first asked for: most sessions never count in them.
    _peer_input: Counter[PeerInput] | None = field(default=None, repr=False)
    _tcp: Counter[TcpOutcome] | None = field(default=None, repr=False)

    @property
    def peer_input(self) -> Counter[PeerInput]:
        """Peer values clamped or dropped, by reason."""
        if self._peer_input is None:
            self._peer_input = Counter()
        return self._peer_input

    @property
    def tcp(self) -> Counter[TcpOutcome]:
        """ICE-TCP connections closed or refused, and messages dropped, by reason."""
        if self._tcp is None:
            self._tcp = Counter()
        return self._tcp


@dataclass(frozen=True, slots=True)
class TableSizes:
    """How many entries each table of an agent that a peer can grow holds now.

    Each is bounded: remote candidates by ``max_remote_candidates`` per stream, pairs and valid
    pairs by ``max_pairs`` per stream (valid pairs per component), local candidates by the bases,
    servers and ``max_local_peer_reflexive``, recent requests by a constant, the paths the peer's
    authenticated checks came on (whose data is accepted) by ``max_pairs``, TCP connections by
    ``max_tcp_connections``.
    """

    remote_candidates: int
    pairs: int
    valid_pairs: int
    local_candidates: int
    local_peer_reflexive: int
    triggered: int
    checks_in_flight: int
    recent_requests: int
    checked_paths: int
    tcp_connections: int


def describe_failure(
    counters: FailureCounters,
    remote_candidates: int,
    local_candidates: int,
    pairs: list[CandidatePair],
) -> str:
    """Say why ICE failed, most telling reason first."""
    if local_candidates == 0:
        return "no local candidates: no usable interface was given to gather on"
    if remote_candidates == 0:
        ignored = counters.peer_input[PeerInput.TCP_CANDIDATE_IGNORED]
        if ignored:
            return (
                f"no remote candidate to use: the peer's {ignored} TCP candidates were ignored, "
                "since ICE-TCP is off here (and it offered no UDP one)"
            )
        return "no remote candidates: the peer's candidates never arrived through signaling"
    if not pairs:
        return "no candidate pairs: local and remote candidates share no address family"
    reasons = []
    if counters.unauthenticated or counters.bad_integrity:
        reasons.append(
            f"{counters.unauthenticated} checks answered 401 and {counters.bad_integrity} "
            "responses failed integrity: the ufrag/pwd exchanged through signaling do not match"
        )
    if counters.unauthenticated_requests:
        reasons.append(
            f"{counters.unauthenticated_requests} of the peer's checks failed authentication"
        )
    failed = [p for p in pairs if p.state is PairState.FAILED]
    timed_out = sum(1 for p in failed if p.failure == "timeout")
    if timed_out:
        reasons.append(
            f"{timed_out} of {len(pairs)} pairs timed out: no path between the candidates "
            "(firewall, NAT filtering, or the peer stopped)"
        )
    if counters.tcp:
        closed = ", ".join(f"{outcome.value} {n}" for outcome, n in counters.tcp.items())
        reasons.append(f"ICE-TCP connections that failed or closed: {closed}")
    if counters.role_conflicts:
        reasons.append(f"{counters.role_conflicts} role conflicts (both sides chose one role)")
    if counters.peer_input:
        dropped = ", ".join(f"{reason.value} {n}" for reason, n in counters.peer_input.items())
        reasons.append(f"peer input not taken as sent: {dropped}")
    return "; ".join(reasons) or "checks are still running or no reason was recorded"
