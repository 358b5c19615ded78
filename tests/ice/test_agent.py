"""Two ICE agents back to back on a virtual clock (architecture.md §5 tier 1):
tests/ice/machine_pair.py has the wire."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from ice.agent import Agent
from ice.candidate import CandidateType
from ice.checklist import PairState
from ice.config import AgentConfig, Policy
from ice.errors import LocalProtocolError
from ice.events import (
    CandidateGathered,
    ConsentLost,
    DataReceived,
    GatheringCompleted,
    IceState,
    RemoteCandidateLearned,
    RoleChanged,
    SelectedPairChanged,
)
from stun.address import Address
from stun.attributes import XorMappedAddress
from stun.message import Message, MessageClass

from .machine_pair import (
    A_ADDRESS,
    B_ADDRESS,
    Wire,
    connect,
    host_candidates,
    is_request,
    make_agent,
    nominating,
    pair_of,
    states,
)

A_SECOND = Address("192.0.2.3", 5000)

# --------------------------------------------------------------------------- gathering


def test_host_candidates_are_gathered_at_once_and_gathering_completes() -> None:
    agent = Agent(AgentConfig(rng=random.Random(1)))
    agent.add_base(0, 1, A_ADDRESS)
    agent.add_base(0, 1, Address("2001:db8::1", 5000))
    agent.gather(0.0)
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    gathered = [e.candidate for e in events if isinstance(e, CandidateGathered)]
    assert [c.address for c in gathered] == [A_ADDRESS, Address("2001:db8::1", 5000)]
    assert len({c.priority for c in gathered}) == 2  # a unique local preference per base
    ipv6 = next(c for c in gathered if ":" in c.host)
    assert ipv6.priority > next(c for c in gathered if ":" not in c.host).priority  # RFC 8421
    assert isinstance(events[-1], GatheringCompleted)
    assert agent.datagrams_to_send(0.0) == []


def test_take_events_returns_what_next_event_would_in_order() -> None:
    def gathered_agent() -> Agent:
        agent = Agent(AgentConfig(rng=random.Random(1)))
        for port in (5000, 5001, 5002):
            agent.add_base(0, 1, Address("192.0.2.1", port))
        agent.gather(0.0)
        return agent

    one_by_one, at_once = gathered_agent(), gathered_agent()
    expected = []
    while (event := one_by_one.next_event()) is not None:
        expected.append(event)
    assert len(expected) == 4  # three candidates, then gathering completed
    first = at_once.next_event()  # a driver may mix both: the rest comes after what was read
    assert [first, *at_once.take_events()] == expected
    assert at_once.take_events() == []
    assert at_once.next_event() is None


def test_dead_stun_server_does_not_stall_gathering() -> None:
    server = Address("198.51.100.9", 3478)
    agent = Agent(AgentConfig(rng=random.Random(1), stun_servers=(server,), gathering_timeout=2.0))
    agent.add_base(0, 1, A_ADDRESS)
    agent.gather(0.0)
    (request,) = agent.datagrams_to_send(0.0)
    assert request.remote == server and request.local == A_ADDRESS
    now = 0.0
    while (deadline := agent.get_timer()) is not None and deadline <= 10:
        now = deadline
        agent.handle_timer(now)
        agent.datagrams_to_send(now)
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    assert type(events[-2]).__name__ == "GatheringFailed"
    assert isinstance(events[-1], GatheringCompleted)
    assert now == pytest.approx(2.0)


def test_server_reflexive_candidate_from_a_stun_response() -> None:
    server = Address("198.51.100.9", 3478)
    agent = Agent(AgentConfig(rng=random.Random(1), stun_servers=(server,)))
    agent.add_base(0, 1, A_ADDRESS)
    agent.gather(0.0)
    (request,) = agent.datagrams_to_send(0.0)
    mapped = Address("203.0.113.5", 40000)
    reply = Message.decode(request.data).success_response([XorMappedAddress(mapped)])
    agent.receive_datagram(reply.encode(fingerprint=True), A_ADDRESS, server, 0.05)
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    srflx = [e.candidate for e in events if isinstance(e, CandidateGathered)][-1]
    assert srflx.type is CandidateType.SERVER_REFLEXIVE
    assert srflx.address == mapped and srflx.related_address == A_ADDRESS
    assert isinstance(events[-1], GatheringCompleted)


# --------------------------------------------------------------------------- connecting


def test_two_agents_connect_and_select_the_same_pair() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    pair_a, pair_b = a.selected_pair(), b.selected_pair()
    assert pair_a is not None and pair_b is not None
    assert (pair_a.local_base, pair_a.remote.address) == (A_ADDRESS, B_ADDRESS)
    assert (pair_b.local_base, pair_b.remote.address) == (B_ADDRESS, A_ADDRESS)
    assert pair_a.nominated and pair_b.nominated
    for agent in (a, b):
        sequence = states(wire, agent)
        assert sequence[0] is IceState.CHECKING and sequence[-1] is IceState.COMPLETED
        assert sequence.count(IceState.COMPLETED) == 1  # completed never falls back
    assert any(isinstance(e, SelectedPairChanged) for e in wire.log(b))


def test_checks_that_cross_cost_no_check_after_the_pair_succeeded() -> None:
    """Both agents check the one pair at once, so each gets the other's check while its own is
    in progress: each cancels its own and queues a triggered check (§7.3.1.4). The cancelled
    check's answer then proves the pair: the queued check is dropped, not sent to prove it again.
    The controlling agent sends its check and the nomination (§8.1.1), the controlled one its
    check; nothing more before consent's first check, seconds later."""
    a, b, wire = pair_of()
    connect(a, b, wire, until=3.0)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    sent_by_a = [d for d in wire.sent if d.local == A_ADDRESS and is_request(d)]
    sent_by_b = [d for d in wire.sent if d.local == B_ADDRESS and is_request(d)]
    assert [nominating(d) for d in sent_by_a] == [False, True]
    assert [nominating(d) for d in sent_by_b] == [False]
    assert not a.checklists[0].triggered and not b.checklists[0].triggered


def test_checks_carry_the_rfc_attributes() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire, until=0.0001)
    checks = [Message.decode(d.data) for d in wire.sent if d.local == A_ADDRESS and d.data[0] < 4]
    request = next(m for m in checks if m.message_class is MessageClass.REQUEST)
    names = [type(attr).__name__ for attr in request.attributes]
    assert names[:3] == ["Username", "Priority", "IceControlling"]
    assert names[-2:] == ["MessageIntegrity", "Fingerprint"]
    assert request.check_integrity(b.local_password.encode())
    assert request.check_fingerprint()


def test_data_flows_on_the_selected_pair() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    a.send(b"\x80hello")
    (datagram,) = a.datagrams_to_send(wire.now)
    assert (datagram.local, datagram.remote) == (A_ADDRESS, B_ADDRESS)
    b.receive_datagram(datagram.data, B_ADDRESS, A_ADDRESS, wire.now)
    received = [e for e in iter(b.next_event, None) if isinstance(e, DataReceived)]
    assert [e.data for e in received] == [b"\x80hello"]


def test_peer_reflexive_remote_candidate_when_candidates_are_not_signalled() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire, signal_b_to_a=False)
    # A never heard of B's candidate; B's triggered check reaches A from B_ADDRESS: prflx.
    learned = [e for e in wire.log(a) if isinstance(e, RemoteCandidateLearned)]
    assert [e.candidate.address for e in learned] == [B_ADDRESS]
    assert learned[0].candidate.type is CandidateType.PEER_REFLEXIVE
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED


def test_late_signalling_replaces_a_peer_reflexive_candidate() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire, signal_b_to_a=False)
    selected = a.selected_pair()
    assert selected is not None and selected.remote.type is CandidateType.PEER_REFLEXIVE
    (signalled,) = host_candidates(b)
    a.add_remote_candidate(signalled)
    assert [c for _, c in a.remote_candidates] == [signalled]
    assert selected.remote is signalled  # the pair now carries the signalled type and priority
    assert selected.remote.type is CandidateType.HOST


def test_role_conflict_is_resolved_by_tie_breaker() -> None:
    a = make_agent(True, A_ADDRESS, 1, tie_breaker=10)
    b = make_agent(True, B_ADDRESS, 2, tie_breaker=20)
    wire = Wire({A_ADDRESS: a, B_ADDRESS: b})
    connect(a, b, wire)
    assert b.controlling and not a.controlling
    assert any(isinstance(e, RoleChanged) and not e.controlling for e in wire.log(a))
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    assert a.failures.role_conflicts + b.failures.role_conflicts >= 1


def test_wrong_password_fails_with_a_useful_reason() -> None:
    a, b, wire = pair_of()
    a.set_remote_credentials(b.local_username, "not-the-password-at-all")
    b.set_remote_credentials(a.local_username, a.local_password)
    for candidate in host_candidates(b):
        a.add_remote_candidate(candidate)
    a.add_remote_candidate(None)
    a.start_checks(0.0)
    wire.run(60.0)
    assert a.state is IceState.FAILED
    assert "401" in a.failure_reason()


def test_unreachable_peer_fails_after_the_check_timeout() -> None:
    a, b, wire = pair_of()
    wire.blackholed.add(B_ADDRESS)
    connect(a, b, wire, until=39.0)
    assert a.state is IceState.CHECKING
    wire.run(45.0)  # the last triggered check was sent at about 0.5 s: 39.5 s of retransmissions
    assert a.state is IceState.FAILED
    assert "timed out" in a.failure_reason()
    assert a.stats()[0].state is PairState.FAILED


def test_a_check_replaced_by_a_triggered_check_still_counts_when_answered() -> None:
    """Both agents check at 0 s. B's check reaches A at 10 ms: A's own check of that pair is
    cancelled (no more retransmissions) and a triggered check queued for the next Ta slot
    (50 ms). The response to the cancelled check, at 20 ms, still validates the pair: the agent
    waits for it until its transaction times out (RFC 8445 §7.3.1.4)."""
    a, b, wire = pair_of()
    connect(a, b, wire, until=0.015)
    (pair,) = a.stats()
    assert (pair.state, pair.requests_sent, pair.requests_received) == (PairState.WAITING, 1, 1)
    wire.run(0.025)
    (pair,) = a.stats()
    assert pair.state is PairState.SUCCEEDED and pair.responses_received == 1


def test_a_check_pruned_by_nomination_is_forgotten_at_once() -> None:
    """A's second socket cannot reach B: its check (sent Ta = 5 ms after the first) is still
    unanswered when the better pair is nominated, and RFC 8445 §8.1.2 prunes it. Nothing waits
    for that check's answer, so A drops it and completes at once — not when its transaction
    would have timed out (39.5 s later)."""
    a = Agent(make_agent(True, A_ADDRESS, 1, pacing=0.005).config)
    a.add_base(0, 1, A_ADDRESS)  # first: the higher local preference
    a.add_base(0, 1, A_SECOND)
    a.gather(0.0)
    b = make_agent(False, B_ADDRESS, 2, pacing=0.005)
    wire = Wire({A_ADDRESS: a, A_SECOND: a, B_ADDRESS: b}, blackholed={A_SECOND})
    connect(a, b, wire, until=2.0)
    (pruned,) = [p for p in a.stats() if p.local.address == A_SECOND]
    assert (pruned.state, pruned.requests_sent, pruned.responses_received) == (
        PairState.FAILED,
        1,
        0,
    )
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    assert a.table_sizes().checks_in_flight == 0


def test_no_remote_candidates_reason() -> None:
    a = make_agent(True, A_ADDRESS, 1)
    assert a.failure_reason().startswith("no remote candidates")


def test_consent_lost_after_thirty_seconds_without_responses() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    assert a.state is IceState.COMPLETED
    start = wire.now
    wire.blackholed.add(B_ADDRESS)
    # The last response came at most 6 s (one randomised interval) before the black hole.
    wire.run(start + 20.0)
    assert a.state is IceState.DISCONNECTED
    wire.run(start + 23.9)
    assert a.state is IceState.DISCONNECTED
    wire.run(start + 30.0)
    assert a.state is IceState.FAILED
    assert any(isinstance(e, ConsentLost) for e in wire.log(a))
    with pytest.raises(Exception, match="consent"):
        a.send(b"\x80late")


def test_consent_checks_keep_a_healthy_session_completed() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    wire.run(wire.now + 120.0)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    stats = next(s for s in a.stats() if s.selected)
    assert stats.consent == "granted"
    # About one consent check every 5 s (randomised 4-6 s) over two minutes.
    assert 20 <= stats.requests_sent <= 32


def test_ice_lite_agent_answers_and_is_nominated() -> None:
    full = make_agent(True, A_ADDRESS, 1, remote_lite=True)
    lite = make_agent(False, B_ADDRESS, 2, lite=True)
    wire = Wire({A_ADDRESS: full, B_ADDRESS: lite})
    connect(full, lite, wire)
    assert full.state is IceState.COMPLETED
    assert lite.selected_pair() is not None
    assert not any(
        d.local == B_ADDRESS and Message.decode(d.data).message_class is MessageClass.REQUEST
        for d in wire.sent
        if d.data[0] < 4
    )


def test_restart_keeps_the_old_pair_until_a_new_one_is_selected() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    old = a.selected_pair()
    old_ufrag = a.local_username
    a.restart(wire.now)
    b.restart(wire.now)
    assert a.local_username != old_ufrag
    assert a.selected_pair() is old  # data still flows on it
    connect(a, b, wire, until=wire.now + 10)
    assert a.selected_pair() is not old
    assert a.state is IceState.COMPLETED


def test_config_validation() -> None:
    with pytest.raises(Exception, match="Ta"):
        AgentConfig(pacing=0.001)
    with pytest.raises(Exception, match="lite"):
        AgentConfig(lite=True, remote_lite=True)
    with pytest.raises(LocalProtocolError, match="host candidates only"):
        AgentConfig(lite=True, policy=Policy.RELAY)
    for bound in ("max_pairs", "max_remote_candidates", "max_local_peer_reflexive"):
        with pytest.raises(LocalProtocolError, match=f"{bound} must be at least 1"):
            AgentConfig(**{bound: 0})  # type: ignore[arg-type]
    base = AgentConfig()
    assert replace(base, pacing=0.005).pacing == 0.005
