"""Every wait of the agent ends, with a reason (architecture.md §5, tiers 1 and 2: machine pairs
on the virtual clock, and the simulated network with the real TURN server core).

Each test is one way a session used to wait forever or far too long: no pair to check, a
relay-only agent whose TURN server refuses or is dead, a peer that never nominates, an allocation
the server forgot, a restart after consent was lost. Virtual time is exact, so the deadlines
asserted are the configured ones, not thresholds.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from ice.agent import Agent
from ice.candidate import CandidateType
from ice.checklist import PairState
from ice.config import AgentConfig, Policy
from ice.events import (
    CandidateGathered,
    CandidateLost,
    ConsentLost,
    DataReceived,
    GatheringCompleted,
    GatheringFailed,
    IceState,
    SelectedPairChanged,
    StateChanged,
)
from ice.netsim import NatBehavior, Network
from ice.scenarios import (
    STUN_SERVER,
    TURN_SERVERS,
    Scenario,
    add_turn_server,
    relay_server,
    two_agents_behind_nats,
)
from stun.address import Address
from stun.attributes import UseCandidate
from stun.message import Message
from stun.transaction import TransactionConfig
from turn.server.events import DeletionReason

from .machine_pair import (
    A_ADDRESS,
    B_ADDRESS,
    Wire,
    connect,
    host_candidates,
    is_request,
    make_agent,
    pair_of,
)

FULL_CONE = NatBehavior.FULL_CONE
#: Checks that give up after two requests and one RTO: a failed pair fails in about a second.
QUICK_CHECKS = TransactionConfig(max_requests=2, final_wait=1)
#: Consent on a short clock: a check every ~0.2 s, disconnected after 0.6 s, lost after 3 s.
BRIEF_CONSENT = {"consent_interval": 0.2, "disconnected_after": 0.6, "consent_timeout": 3.0}


def relay_only(index: int, **options: object) -> AgentConfig:
    """A relay-only agent of a scenario, on its own TURN server, asking the STUN server too."""
    return AgentConfig(
        controlling=index == 0,
        stun_servers=(STUN_SERVER,),
        turn_servers=(relay_server(TURN_SERVERS[index]),),
        policy=Policy.RELAY,
        **options,  # type: ignore[arg-type]
    )


def shared_relay_only(**options: object) -> Scenario:
    """Both agents relay-only on one TURN server (the server's table holds both allocations)."""
    shared = (relay_server(TURN_SERVERS[0]),)
    configs = [
        AgentConfig(
            controlling=index == 0,
            turn_servers=shared,
            policy=Policy.RELAY,
            **options,  # type: ignore[arg-type]
        )
        for index in (0, 1)
    ]
    return two_agents_behind_nats(
        FULL_CONE, FULL_CONE, 4, turn=True, config_a=configs[0], config_b=configs[1]
    )


def run_until_failed(scenario: Scenario, timeout: float) -> None:
    scenario.network.run_until(
        lambda: all(s.agent.state is IceState.FAILED for s in scenario.sides), timeout
    )


def events_of(scenario: Scenario, name: str) -> list[object]:
    side = scenario.a if name == "a" else scenario.b
    return [event for _, event in side.events]


# --------------------------------------------------------------------------- nothing to check


def test_end_of_candidates_without_candidates_fails_after_the_peer_reflexive_wait() -> None:
    agent = make_agent(True, A_ADDRESS, 1, peer_reflexive_wait=2.0)
    agent.set_remote_credentials("peer", "peer-password-peer-password")
    agent.add_remote_candidate(None)
    agent.start_checks(0.0)
    wire = Wire({A_ADDRESS: agent})
    wire.run(1.99)
    assert agent.state is IceState.CHECKING  # the peer's checks may still bring prflx
    wire.run(2.0)
    assert agent.state is IceState.FAILED
    assert agent.failure_reason().startswith("no remote candidates")
    assert agent.get_timer() is None  # nothing more to wait for


def test_a_peer_check_within_the_wait_still_connects() -> None:
    a, b, wire = pair_of(peer_reflexive_wait=2.0)
    connect(a, b, wire, signal_b_to_a=False)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED


def test_all_pairs_failed_with_end_of_candidates_fails_at_once() -> None:
    a, b, wire = pair_of(check_transaction=QUICK_CHECKS)
    wire.blackholed.add(B_ADDRESS)
    connect(a, b, wire, until=5.0)
    assert a.state is IceState.FAILED
    assert "timed out" in a.failure_reason()


def test_without_end_of_candidates_an_idle_agent_fails_after_idle_timeout() -> None:
    a = make_agent(True, A_ADDRESS, 1, check_transaction=QUICK_CHECKS, idle_timeout=20.0)
    b = make_agent(False, B_ADDRESS, 2)
    wire = Wire({A_ADDRESS: a, B_ADDRESS: b}, blackholed={B_ADDRESS})
    a.set_remote_credentials(b.local_username, b.local_password)
    for candidate in host_candidates(b):
        a.add_remote_candidate(candidate)  # and never end-of-candidates
    a.start_checks(0.0)
    wire.run(19.99)
    assert a.stats()[0].state is PairState.FAILED
    assert a.state is IceState.CHECKING  # more candidates may come
    wire.run(20.0)
    assert a.state is IceState.FAILED
    reason = a.failure_reason()
    assert "end-of-candidates" in reason and "20 s" in reason and "timed out" in reason


def test_a_new_remote_candidate_restarts_the_idle_wait() -> None:
    a = make_agent(True, A_ADDRESS, 1, check_transaction=QUICK_CHECKS, idle_timeout=20.0)
    wire = Wire({A_ADDRESS: a}, blackholed={B_ADDRESS})
    a.set_remote_credentials("peer", "peer-password-peer-password")
    a.start_checks(0.0)
    wire.run(15.0)
    (candidate,) = host_candidates(make_agent(False, B_ADDRESS, 2))
    a.add_remote_candidate(candidate)  # its check fails, but the peer showed up at 15 s
    wire.run(34.99)
    assert a.state is IceState.CHECKING
    wire.run(35.0)
    assert a.state is IceState.FAILED


class NoNominationWire(Wire):
    """Loses every check that carries USE-CANDIDATE: the controlling side cannot nominate."""

    def step(self, until: float = float("inf")) -> bool:
        self.in_flight = [
            entry
            for entry in self.in_flight
            if not (is_request(entry[2]) and Message.decode(entry[2].data).has(UseCandidate))
        ]
        return super().step(until)


def test_a_controlled_agent_never_nominated_fails_after_idle_timeout() -> None:
    options = {"check_transaction": QUICK_CHECKS, "idle_timeout": 20.0}
    a = make_agent(True, A_ADDRESS, 1, **options)
    b = make_agent(False, B_ADDRESS, 2, **options)
    wire = NoNominationWire({A_ADDRESS: a, B_ADDRESS: b})
    connect(a, b, wire, until=60.0)
    assert b.state is IceState.FAILED
    assert b.failure_reason() == "the controlling peer nominated no pair for 20 s"
    assert a.state is IceState.FAILED  # its nomination check went unanswered
    assert a.failure_reason().startswith("the peer stopped answering")


# --------------------------------------------------------------------------- relay-only


def test_relay_only_agent_whose_turn_server_refuses_fails_with_the_401() -> None:
    wrong = dataclasses.replace(relay_server(TURN_SERVERS[0]), password="wrong")
    config_a = dataclasses.replace(relay_only(0), turn_servers=(wrong,))
    scenario = two_agents_behind_nats(
        FULL_CONE, FULL_CONE, 3, turn=True, config_a=config_a, config_b=relay_only(1)
    )
    assert scenario.gather()
    scenario.signal()
    scenario.start_checks()
    assert scenario.a.agent.state is IceState.FAILED  # at once: no candidate can ever pair
    reason = scenario.a.agent.failure_reason()
    assert reason.startswith("no relayed candidate was gathered")
    assert "401" in reason and str(TURN_SERVERS[0]) in reason
    run_until_failed(scenario, 30.0)
    assert scenario.b.agent.state is IceState.FAILED  # A signalled nothing to pair with
    assert scenario.b.agent.failure_reason().startswith("no remote candidates")


def test_a_dead_turn_server_is_given_up_after_the_gathering_timeout() -> None:
    config = dataclasses.replace(relay_only(0), gathering_timeout=3.0)
    scenario = two_agents_behind_nats(FULL_CONE, FULL_CONE, 3, turn=True, config_a=config)
    scenario.network.block(TURN_SERVERS[0].host)
    assert scenario.gather(timeout=60.0)
    assert scenario.gather_time == pytest.approx(3.0)  # not the 39.5 s of a STUN transaction
    (failed,) = [e for e in events_of(scenario, "a") if isinstance(e, GatheringFailed)]
    assert failed.server == TURN_SERVERS[0] and "within 3 s" in failed.reason
    scenario.signal()
    scenario.start_checks()
    assert scenario.a.agent.state is IceState.FAILED
    assert "no answer to Allocate" in scenario.a.agent.failure_reason()


def test_a_relay_only_agent_sends_nothing_to_its_stun_server() -> None:
    network = Network(5, trace=True)
    stun = network.add_stun_server(STUN_SERVER)
    for index, address in enumerate(TURN_SERVERS):
        add_turn_server(network, address, f"turn{index}")
    hosts = [network.add_host_behind(name, FULL_CONE) for name in ("a", "b")]
    scenario = Scenario(network, *hosts, config_a=relay_only(0), config_b=relay_only(1))
    outcome = scenario.run(timeout=30.0)
    assert outcome.connected and outcome.pair_types == "relay-relay"
    assert sum(stun.stats.counts.values()) == 0
    sent = [entry.text for entry in network.trace if entry.text.startswith(("a sends", "b sends"))]
    assert sent and all(text.split(" -> ")[1].split(" ")[0] in TURNS for text in sent)


TURNS = {str(address) for address in TURN_SERVERS}


def test_a_relay_only_agent_ignores_checks_on_its_host_sockets() -> None:
    a = make_agent(True, A_ADDRESS, 1, policy=Policy.RELAY)
    b = make_agent(False, B_ADDRESS, 2)
    wire = Wire({A_ADDRESS: a, B_ADDRESS: b})
    b.set_remote_credentials(a.local_username, a.local_password)
    a.set_remote_credentials(b.local_username, b.local_password)
    b.add_remote_candidate(host_candidates(a)[0])  # learnt some other way
    b.start_checks(0.0)
    a.start_checks(0.0)
    wire.run(2.0)
    assert not [d for d in wire.sent if d.local == A_ADDRESS]  # not even an answer


# --------------------------------------------------------------------------- allocations


def test_an_allocation_the_server_forgot_is_reported_in_a_round_trip() -> None:
    scenario = shared_relay_only(**BRIEF_CONSENT)
    assert scenario.run(timeout=30.0).connected
    turn = scenario.turn_servers[0]
    for allocation in list(turn.table):  # the TURN server restarted: it knows nobody
        turn.table.delete(allocation, DeletionReason.EXPIRED)
    forgotten_at = scenario.network.now
    run_until_failed(scenario, 30.0)
    for name, side in (("a", scenario.a), ("b", scenario.b)):
        events = events_of(scenario, name)
        (lost,) = [e for e in events if isinstance(e, CandidateLost)]
        assert lost.candidate.type is CandidateType.RELAYED and "437" in lost.reason
        assert not [e for e in events if isinstance(e, ConsentLost)]
        reason = side.agent.failure_reason()
        assert reason.startswith("component 1 lost its only path") and "437" in reason
        assert side.agent.selected_pair() is None
    # Consent was probed when the pair went quiet, long before it would have expired.
    assert scenario.network.now < forgotten_at + BRIEF_CONSENT["consent_timeout"]


def test_restart_allocates_again_and_connects_through_the_new_allocations() -> None:
    scenario = shared_relay_only(**BRIEF_CONSENT)
    assert scenario.run(timeout=30.0).connected
    turn = scenario.turn_servers[0]
    for allocation in list(turn.table):
        turn.table.delete(allocation, DeletionReason.EXPIRED)
    run_until_failed(scenario, 30.0)
    for side in scenario.sides:
        side.events.clear()
        side.agent.restart(scenario.network.now)
        side.attachment.flush()
    assert scenario.network.run_until(
        lambda: all(s.agent.gatherer.completed for s in scenario.sides), 10.0
    )
    for name in ("a", "b"):
        gathered = [e for e in events_of(scenario, name) if isinstance(e, CandidateGathered)]
        assert [e.candidate.type for e in gathered] == [CandidateType.RELAYED]
    assert len(turn.table) == 2
    scenario.signal()
    scenario.start_checks()
    assert scenario.wait_connected(30.0)
    scenario.a.send(b"\x80through the new relay")
    scenario.network.run(until=scenario.network.now + 1.0)
    received = [e.data for e in events_of(scenario, "b") if isinstance(e, DataReceived)]
    assert received == [b"\x80through the new relay"]


# --------------------------------------------------------------------------- restart


def test_restart_after_consent_loss_selects_a_new_pair() -> None:
    a, b, wire = pair_of(**BRIEF_CONSENT)
    connect(a, b, wire)
    old = a.selected_pair()
    wire.blackholed.update({A_ADDRESS, B_ADDRESS})
    wire.run(wire.now + 5.0)
    assert a.state is IceState.FAILED and b.state is IceState.FAILED
    assert "consent" in a.failure_reason()
    wire.blackholed.clear()
    a.restart(wire.now)
    b.restart(wire.now)
    wire.run(wire.now + 1.0)
    # The dead pair is still the selected one, but it is no nomination of this generation.
    assert a.selected_pair() is old
    assert a.state is IceState.CHECKING and b.state is IceState.CHECKING
    wire.events.clear()
    connect(a, b, wire, until=wire.now + 10.0)
    assert a.state is IceState.COMPLETED and b.state is IceState.COMPLETED
    assert a.selected_pair() is not old and a.selected_pair() is not None
    assert any(isinstance(e, SelectedPairChanged) for e in wire.log(a))
    assert any(isinstance(e, SelectedPairChanged) for e in wire.log(b))
    a.send(b"\x80after the restart")  # consent granted again


def test_restart_forgets_gone_bases_and_gathers_new_ones() -> None:
    agent = make_agent(True, A_ADDRESS, 1)
    while agent.next_event() is not None:
        pass
    new_base = Address("198.51.100.7", 7000)
    agent.add_base(0, 1, new_base)  # gathered at the next restart, not before
    assert agent.next_event() is None
    agent.restart(1.0, gone_bases=[A_ADDRESS])
    events = list(iter(agent.next_event, None))
    (lost,) = [e for e in events if isinstance(e, CandidateLost)]
    assert lost.candidate.address == A_ADDRESS and "192.0.2.1" in lost.reason
    gathered = [e.candidate.address for e in events if isinstance(e, CandidateGathered)]
    assert gathered == [new_base]
    assert isinstance(events[-1], GatheringCompleted)
    assert [c.candidate.address for c in agent.local_candidates] == [new_base]


def test_restart_announces_every_candidate_again() -> None:
    agent = Agent(AgentConfig(rng=random.Random(1)))
    agent.add_base(0, 1, A_ADDRESS)
    agent.gather(0.0)
    first = list(iter(agent.next_event, None))
    agent.restart(1.0)
    again = [e for e in iter(agent.next_event, None) if not isinstance(e, StateChanged)]
    assert again == first  # CandidateGathered, then GatheringCompleted
