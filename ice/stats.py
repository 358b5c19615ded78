"""Statistics and the failure summary (WebRTC's RTCIceCandidatePairStats, in spirit)."""

from __future__ import annotations

from dataclasses import dataclass

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


def pair_stats(pair: CandidatePair, selected: bool, consent: str) -> PairStats:
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
    )


@dataclass(slots=True)
class FailureCounters:
    """What went wrong during checks, counted for :func:`describe_failure`."""

    timeouts: int = 0
    unauthenticated: int = 0
    unauthenticated_requests: int = 0
    bad_integrity: int = 0
    role_conflicts: int = 0
    malformed: int = 0


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
    if counters.role_conflicts:
        reasons.append(f"{counters.role_conflicts} role conflicts (both sides chose one role)")
    return "; ".join(reasons) or "checks are still running or no reason was recorded"
