"""Two full ICE agents on the simulated network (architecture.md §5 tier 2): impaired links, several
streams and components, trickle and early or late signaling, consent, restart, ICE-lite,
nomination under an unreachable better pair, hairpinning.

Every run is seeded and bounded (virtual ``timeout`` and netsim's ``max_events``), so the numbers
asserted here are exact and the same on every run; times are virtual seconds.
"""

from __future__ import annotations

import dataclasses

import pytest

from ice.candidate import Candidate, CandidateType, TcpType
from ice.checklist import PairState
from ice.config import AgentConfig
from ice.events import (
    CandidateGathered,
    ConsentLost,
    DataReceived,
    GatheringCompleted,
    IceEvent,
    IceState,
    PairStateChanged,
    RemoteCandidateLearned,
    SelectedPairChanged,
    StateChanged,
)
from ice.netsim import (
    DropReason,
    FilteringBehavior,
    LinkConfig,
    NatBehavior,
    NatConfig,
    Network,
)
from ice.scenarios import (
    FIRST_PORT,
    STUN_SERVER,
    Scenario,
    Side,
    pair_types,
    two_agents_behind_nats,
)

PORT_RESTRICTED = NatBehavior.PORT_RESTRICTED_CONE
SYMMETRIC = NatBehavior.SYMMETRIC
OPEN = NatBehavior.OPEN

CONTROLLING = AgentConfig(controlling=True, stun_servers=(STUN_SERVER,))
CONTROLLED = AgentConfig(controlling=False, stun_servers=(STUN_SERVER,))


# --------------------------------------------------------------------------- helpers


def assert_agreed(scenario: Scenario, stream: int = 0, component: int = 1) -> None:
    """Both agents selected the same path for a component, nominated, as the NATs show it."""
    pair_a = scenario.a.agent.selected_pair(stream, component)
    pair_b = scenario.b.agent.selected_pair(stream, component)
    assert pair_a is not None and pair_b is not None
    assert pair_a.nominated and pair_b.nominated
    assert pair_a.local.address == pair_b.remote.address
    assert pair_b.local.address == pair_a.remote.address


def events_of(side: Side, kind: type[IceEvent]) -> list[tuple[float, IceEvent]]:
    return [(when, event) for when, event in side.events if isinstance(event, kind)]


def states(side: Side) -> list[IceState]:
    return [e.state for _, e in side.events if isinstance(e, StateChanged)]


def data_received(side: Side) -> list[bytes]:
    return [e.data for _, e in side.events if isinstance(e, DataReceived)]


def requests_sent_by(side: Side) -> int:
    return sum(stats.requests_sent for stats in side.agent.stats())


# --------------------------------------------------------------------------- impaired links


@pytest.mark.parametrize("seed", range(5))
def test_twenty_percent_loss_still_connects_thanks_to_retransmissions(seed: int) -> None:
    lossy = LinkConfig(delay=0.010, loss=0.2)
    scenario = two_agents_behind_nats(PORT_RESTRICTED, PORT_RESTRICTED, seed, wan_link=lossy)
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected, outcome.failure_reason
    assert scenario.network.stats.dropped[DropReason.LOSS] > 0
    for side in scenario.sides:  # gathering retransmitted through the loss as well
        kinds = {c.candidate.type for c in side.agent.local_candidates}
        assert CandidateType.SERVER_REFLEXIVE in kinds
    assert outcome.pair_types == "srflx-srflx"
    assert_agreed(scenario)


def test_delay_and_jitter_show_in_the_rtt_and_do_no_harm() -> None:
    slow = LinkConfig(delay=0.100, jitter=0.050)
    scenario = two_agents_behind_nats(PORT_RESTRICTED, PORT_RESTRICTED, 3, wan_link=slow)
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected, outcome.failure_reason
    assert outcome.pair_types == "srflx-srflx"
    assert_agreed(scenario)
    pair = outcome.pair_a
    assert pair is not None and pair.last_rtt is not None
    # Two WAN crossings of 100-150 ms plus four LAN crossings of 1 ms.
    assert 0.204 <= pair.last_rtt <= 0.304


def test_duplication_and_reordering_are_harmless() -> None:
    messy = LinkConfig(delay=0.010, duplicate=0.5, reorder=0.3, reorder_delay=0.030)
    scenario = two_agents_behind_nats(PORT_RESTRICTED, PORT_RESTRICTED, 1, wan_link=messy)
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected, outcome.failure_reason
    assert scenario.network.stats.duplicated > 0
    assert outcome.pair_types == "srflx-srflx"
    assert_agreed(scenario)
    for side in scenario.sides:
        failures = side.agent.failures
        assert (failures.role_conflicts, failures.bad_integrity, failures.malformed) == (0, 0, 0)
        assert len(events_of(side, SelectedPairChanged)) == 1


# --------------------------------------------------------------------------- streams, components


def test_two_streams_of_two_components_are_all_selected() -> None:
    streams = (2, 2)
    scenario = two_agents_behind_nats(
        NatBehavior.RESTRICTED_CONE,
        SYMMETRIC,
        2,
        config_a=dataclasses.replace(CONTROLLING, streams=streams),
        config_b=dataclasses.replace(CONTROLLED, streams=streams),
    )
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected, outcome.failure_reason
    bases = set()
    for stream in range(2):
        for component in (1, 2):
            assert_agreed(scenario, stream, component)
            pair = scenario.a.agent.selected_pair(stream, component)
            assert pair is not None and pair_types(pair) == "srflx-prflx"
            assert pair.component == component and pair.stream == stream
            bases.add(pair.local_base)
    assert len(bases) == 4  # one socket per stream and component
    assert {b.port for b in bases} == set(range(FIRST_PORT, FIRST_PORT + 4))
    for side in scenario.sides:
        assert len(events_of(side, SelectedPairChanged)) == 4


# --------------------------------------------------------------------------- trickle and timing


def test_trickled_candidates_arrive_one_by_one_during_and_after_checking() -> None:
    """Trickle ICE (RFC 8838): checks start with no remote candidates; each candidate reaches
    the peer 100 ms after it is gathered, end-of-candidates last; a late extra candidate after
    the connection changes nothing."""
    delay = 0.100
    arrivals: list[tuple[float, str, Candidate | None]] = []

    def trickle(name: str, event: IceEvent) -> None:
        peer = scenario.b if name == "A" else scenario.a
        candidate = event.candidate if isinstance(event, CandidateGathered) else None
        if candidate is None and not isinstance(event, GatheringCompleted):
            return

        def deliver() -> None:
            arrivals.append((net.now, peer.name, candidate))
            peer.agent.add_remote_candidate(candidate)

        net.call_at(net.now + delay, deliver)

    scenario = two_agents_behind_nats(PORT_RESTRICTED, PORT_RESTRICTED, 4, on_event=trickle)
    net = scenario.network
    a, b = scenario.a.agent, scenario.b.agent
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for side in scenario.sides:
        side.agent.gather(net.now)
    scenario.start_checks()

    assert scenario.wait_connected(timeout=60.0)
    # Every candidate arrived while checking was under way: UDP host, TCP passive and active
    # host (RFC 6544), srflx, end-of-candidates.
    started = scenario.checks_started_at
    assert started is not None
    for name in ("A", "B"):
        mine = [(when, c) for when, who, c in arrivals if who == name]
        kinds = [(c.type, c.tcp_type) if c else None for _, c in mine]
        assert kinds == [
            (CandidateType.HOST, None),
            (CandidateType.HOST, TcpType.PASSIVE),
            (CandidateType.HOST, TcpType.ACTIVE),
            (CandidateType.SERVER_REFLEXIVE, None),
            None,
        ]
        assert all(when > started for when, _ in mine)
    outcome = scenario.outcome(True)
    assert outcome.pair_types == "srflx-srflx"
    assert_agreed(scenario)

    selected = a.selected_pair()
    late = Candidate(
        foundation="late",
        component=1,
        transport="udp",
        priority=2**31 - 1,
        host="198.51.100.77",
        port=9,
        type=CandidateType.HOST,
    )
    a.add_remote_candidate(late)
    net.run(until=net.now + 60.0)
    assert a.selected_pair() is selected
    assert a.state in (IceState.CONNECTED, IceState.COMPLETED)
    assert IceState.FAILED not in states(scenario.a)


def test_remote_candidates_that_arrive_before_gathering_are_paired_by_it() -> None:
    scenario = two_agents_behind_nats(NatBehavior.FULL_CONE, PORT_RESTRICTED, 5)
    net = scenario.network
    a, b = scenario.a.agent, scenario.b.agent
    a.gather(net.now)
    assert net.run_until(lambda: a.gatherer.completed, 10.0)
    b.set_remote_credentials(a.local_username, a.local_password)
    for stream, candidate in scenario.a.signalled_candidates():
        b.add_remote_candidate(candidate, stream)
    b.add_remote_candidate(None)
    # A's UDP host and srflx, its TCP passive and active: kept, not yet paired.
    assert len(b.remote_candidates) == 4 and not list(b.checklists[0])

    b.gather(net.now)
    # Paired with the bases at once: both UDP ones with the UDP base, each TCP one with the
    # TCP candidate of the other direction (RFC 6544 §6.2).
    assert len(list(b.checklists[0])) == 4
    assert net.run_until(lambda: b.gatherer.completed, 10.0)
    a.set_remote_credentials(b.local_username, b.local_password)
    for stream, candidate in scenario.b.signalled_candidates():
        a.add_remote_candidate(candidate, stream)
    a.add_remote_candidate(None)
    scenario.start_checks()

    assert scenario.wait_connected(timeout=60.0)
    assert scenario.outcome(True).pair_types == "srflx-srflx"
    assert_agreed(scenario)


def test_checks_that_arrive_before_the_credentials_are_answered_then_triggered() -> None:
    """B gets A's checks before it has A's ufrag/pwd or candidates: it answers them (its own
    password is all a response needs) and learns A as peer-reflexive, but can send nothing
    itself; once A's credentials arrive the queued triggered check goes out (RFC 8445 §7.3.1.4),
    with no start_checks() call, and both connect."""
    scenario = two_agents_behind_nats(PORT_RESTRICTED, NatBehavior.FULL_CONE, 6)
    net = scenario.network
    a, b = scenario.a.agent, scenario.b.agent
    assert scenario.gather()
    a.set_remote_credentials(b.local_username, b.local_password)
    for stream, candidate in scenario.b.signalled_candidates():
        a.add_remote_candidate(candidate, stream)
    a.add_remote_candidate(None)
    a.start_checks(net.now)

    net.run(until=net.now + 1.0)
    assert requests_sent_by(scenario.b) == 0
    assert sum(s.responses_sent for s in b.stats()) > 0
    assert any(s.state is PairState.SUCCEEDED for s in a.stats())  # B's answers came back
    [(_, learned)] = events_of(scenario.b, RemoteCandidateLearned)
    assert isinstance(learned, RemoteCandidateLearned)
    assert learned.candidate.type is CandidateType.PEER_REFLEXIVE

    b.set_remote_credentials(a.local_username, a.local_password)
    net.run(until=net.now)  # the same virtual instant
    assert requests_sent_by(scenario.b) == 1
    assert b.state is IceState.CHECKING
    assert scenario.wait_connected(timeout=60.0)
    assert_agreed(scenario)


def test_controlling_agent_does_not_wait_for_an_unreachable_better_pair() -> None:
    """Each side's private host address is unreachable from the other; that pair has the
    highest priority and stays In-Progress for its whole 39.5 s transaction. Once it has had a
    few round trips of the valid pair to answer, the controlling agent nominates without it —
    well before max_nomination_wait."""
    wait = 0.3
    snapshots: list[tuple[float, str, PairState, str]] = []

    def snapshot(name: str, event: IceEvent) -> None:
        if isinstance(event, PairStateChanged):
            pair = event.pair
            snapshots.append((scenario.network.now, name, pair.state, pair_types(pair)))

    scenario = two_agents_behind_nats(
        NatBehavior.FULL_CONE,
        NatBehavior.FULL_CONE,
        7,
        config_a=dataclasses.replace(CONTROLLING, max_nomination_wait=wait),
        on_event=snapshot,
    )
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected and outcome.pair_types == "srflx-srflx"
    first_valid = min(
        t for t, name, state, _ in snapshots if name == "A" and state is PairState.SUCCEEDED
    )
    [(selected_at, _)] = events_of(scenario.a, SelectedPairChanged)
    round_trip = 2 * (0.001 + 0.010 + 0.001)
    assert selected_at < first_valid + wait
    assert selected_at == pytest.approx(first_valid + round_trip)
    unreachable = next(s for s in scenario.a.agent.stats() if s.local.type == s.remote.type)
    assert unreachable.state is PairState.IN_PROGRESS  # nomination did not wait for it
    assert_agreed(scenario)


# --------------------------------------------------------------------------- after connecting


def connected_pair(
    nat_a: NatBehavior = PORT_RESTRICTED, nat_b: NatBehavior = PORT_RESTRICTED, seed: int = 8
) -> Scenario:
    scenario = two_agents_behind_nats(nat_a, nat_b, seed)
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    return scenario


def test_data_flows_both_ways_through_the_nats() -> None:
    scenario = connected_pair()
    scenario.a.send(b"\x80from A")
    scenario.b.send(b"\x80from B")
    scenario.network.run(until=scenario.network.now + 0.1)
    assert data_received(scenario.b) == [b"\x80from A"]
    assert data_received(scenario.a) == [b"\x80from B"]


def test_a_healthy_session_settles_to_consent_checks_that_keep_the_nat_open() -> None:
    """Once checking is over, each agent sends one consent check every 4 to 6 s (RFC 7675 §5.1)
    and answers the other's: no triggered checks bouncing between concluded agents. That traffic
    also keeps the NAT bindings (120 s) alive for as long as the session lasts."""
    scenario = connected_pair()
    net = scenario.network
    net.run(until=net.now + 60.0)  # every check transaction of the checking phase has ended
    before = net.stats.sent
    net.run(until=net.now + 300.0)

    sent = net.stats.sent - before
    assert 2 * 2 * 300 / 6 <= sent <= 2 * 2 * 300 / 4 + 4
    for side in scenario.sides:
        assert side.agent.state is IceState.COMPLETED
        assert len(events_of(side, SelectedPairChanged)) == 1
    scenario.a.send(b"\x80still there")
    net.run(until=net.now + 0.1)
    assert data_received(scenario.b) == [b"\x80still there"]


def test_consent_is_lost_when_the_peer_vanishes() -> None:
    """RFC 7675: B's host goes away; A's consent checks go unanswered, A is disconnected after
    disconnected_after and fails with ConsentLost consent_timeout after the last response."""
    scenario = connected_pair()
    net, a = scenario.network, scenario.a.agent
    net.run(until=net.now + 20.0)  # consent checks keep it up meanwhile
    assert a.state in (IceState.CONNECTED, IceState.COMPLETED)
    vanished = net.now
    scenario.b.attachment.detach()

    net.run(until=vanished + 60.0)

    assert states(scenario.a)[-2:] == [IceState.DISCONNECTED, IceState.FAILED]
    [(lost_at, lost)] = events_of(scenario.a, ConsentLost)
    assert isinstance(lost, ConsentLost) and lost.pair is a.selected_pair()
    # The last response came at most one consent interval (at most 6 s) before B vanished.
    assert vanished + 30.0 - 6.0 <= lost_at <= vanished + 30.0
    assert net.stats.dropped[DropReason.PORT_UNREACHABLE] > 0
    with pytest.raises(Exception, match="consent"):
        a.send(b"\x80too late")


def test_ice_restart_on_the_simulated_network() -> None:
    """RFC 8445 §9: new credentials both sides, checks again; data keeps flowing on the old
    pair until the new one is selected."""
    scenario = connected_pair(NatBehavior.RESTRICTED_CONE, SYMMETRIC)
    net, a, b = scenario.network, scenario.a.agent, scenario.b.agent
    old_pair = a.selected_pair()
    old_credentials = (a.local_username, b.local_username)
    a.restart(net.now)
    b.restart(net.now)
    assert (a.local_username, b.local_username) != old_credentials

    scenario.a.send(b"\x80during the restart")
    scenario.signal()
    scenario.start_checks()
    net.run(until=net.now)
    assert (a.state, b.state) == (IceState.CHECKING, IceState.CHECKING)  # until new pairs
    assert a.selected_pair() is old_pair
    assert scenario.wait_connected(timeout=60.0)

    assert data_received(scenario.b) == [b"\x80during the restart"]
    new_pair = a.selected_pair()
    assert new_pair is not None and new_pair is not old_pair
    assert_agreed(scenario)
    scenario.b.send(b"\x80after")
    net.run(until=net.now + 0.1)
    assert data_received(scenario.a) == [b"\x80after"]
    assert len(events_of(scenario.a, SelectedPairChanged)) == 2


def test_full_agent_behind_a_nat_with_an_ice_lite_peer_on_the_wan() -> None:
    scenario = two_agents_behind_nats(
        SYMMETRIC,
        OPEN,
        9,
        config_a=dataclasses.replace(CONTROLLING, remote_lite=True),
        config_b=AgentConfig(lite=True),
    )
    outcome = scenario.run(timeout=60.0)

    assert outcome.connected, outcome.failure_reason
    assert outcome.pair_types == "prflx-host"  # the lite peer saw the symmetric NAT's port
    assert_agreed(scenario)
    assert requests_sent_by(scenario.b) == 0  # lite agents never check (RFC 8445 §2.5)
    assert not scenario.b.agent.controlling
    # Host candidates only: UDP, and a passive TCP one (a lite agent never connects).
    lite_candidates = [c.candidate for c in scenario.b.agent.local_candidates]
    assert [(c.type, c.tcp_type) for c in lite_candidates] == [
        (CandidateType.HOST, None),
        (CandidateType.HOST, TcpType.PASSIVE),
    ]


@pytest.mark.parametrize("hairpinning", [True, False])
def test_two_agents_behind_the_same_nat_meet_through_hairpinning(hairpinning: bool) -> None:
    """Both hosts on one LAN with the direct path between them blocked: only the NAT's
    hairpinning (RFC 4787 §6) joins their server-reflexive candidates."""
    net = Network(10)
    net.add_stun_server(STUN_SERVER)
    config = dataclasses.replace(
        NatConfig(filtering=FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT), hairpinning=hairpinning
    )
    nat = net.add_nat("home", config)
    host_a, host_b = net.add_host("a", lan=nat), net.add_host("b", lan=nat)
    net.block(host_a.addresses[0], host_b.addresses[0])
    scenario = Scenario(net, host_a, host_b, config_a=CONTROLLING, config_b=CONTROLLED)

    outcome = scenario.run(timeout=60.0)

    assert outcome.connected is hairpinning
    if hairpinning:
        assert outcome.pair_types == "srflx-srflx"
        assert_agreed(scenario)
        pair = outcome.pair_a
        assert pair is not None and pair.remote.host == nat.public_addresses[0]
    else:
        assert net.stats.dropped[DropReason.NO_HAIRPINNING] > 0
    assert net.stats.dropped[DropReason.FIREWALL] > 0  # the host pair was tried, and blocked


def test_same_nat_without_a_block_uses_the_lan() -> None:
    net = Network(11)
    net.add_stun_server(STUN_SERVER)
    nat = net.add_nat("home", NatBehavior.SYMMETRIC)
    host_a, host_b = net.add_host("a", lan=nat), net.add_host("b", lan=nat)
    scenario = Scenario(net, host_a, host_b, config_a=CONTROLLING, config_b=CONTROLLED)
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected and outcome.pair_types == "host-host"
    assert outcome.connect_time is not None and outcome.connect_time < 1.0  # nothing to wait for
