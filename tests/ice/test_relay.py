"""Relayed candidates (RFC 8445 §5.1.1.2) through the real TURN server core on the simulated
network: what host and server-reflexive candidates cannot reach, a relay does."""

from __future__ import annotations

import dataclasses

from ice.candidate import Candidate, CandidateType
from ice.config import AgentConfig, Policy
from ice.events import CandidateGathered, DataReceived, GatheringCompleted, GatheringFailed
from ice.netsim import NatBehavior
from ice.relay import related_address
from ice.scenarios import (
    STUN_SERVER,
    TURN_SERVERS,
    Scenario,
    relay_server,
    two_agents_behind_nats,
)
from stun.address import Address

SYMMETRIC = NatBehavior.SYMMETRIC
FULL_CONE = NatBehavior.FULL_CONE


def gathered(scenario: Scenario, name: str) -> list[CandidateType]:
    side = scenario.a if name == "a" else scenario.b
    return [e.candidate.type for _, e in side.events if isinstance(e, CandidateGathered)]


def candidates(scenario: Scenario, name: str, kind: CandidateType) -> list[Candidate]:
    side = scenario.a if name == "a" else scenario.b
    return [
        e.candidate
        for _, e in side.events
        if isinstance(e, CandidateGathered) and e.candidate.type is kind
    ]


def test_symmetric_nats_on_both_sides_connect_through_relays() -> None:
    scenario = two_agents_behind_nats(SYMMETRIC, SYMMETRIC, 1, turn=True)
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    # Through B's relay: from A's own relay, or from A's NAT, whose mapping towards B's relay
    # is the peer-reflexive candidate B learns (which of the two depends on the checks' timing).
    assert outcome.pair_types in ("relay-relay", "prflx-relay")
    assert CandidateType.RELAYED in gathered(scenario, "a")
    # With every candidate type allowed, raddr is the address the TURN server saw: A's NAT's.
    (relayed,) = candidates(scenario, "a", CandidateType.RELAYED)
    (srflx,) = candidates(scenario, "a", CandidateType.SERVER_REFLEXIVE)
    assert relayed.related_address is not None
    assert relayed.related_address.host == srflx.host and relayed.related_address.port != 0
    scenario.a.send(b"\x80through a relay")
    scenario.network.run(until=scenario.network.now + 1.0)
    received = [e.data for _, e in scenario.b.events if isinstance(e, DataReceived)]
    assert received == [b"\x80through a relay"]


def test_without_turn_the_same_nats_fail() -> None:
    outcome = two_agents_behind_nats(SYMMETRIC, SYMMETRIC, 1).run(timeout=60.0)
    assert not outcome.connected


def test_a_direct_path_still_wins_over_a_relay() -> None:
    outcome = two_agents_behind_nats(FULL_CONE, FULL_CONE, 1, turn=True).run(timeout=60.0)
    assert outcome.connected and outcome.pair_types == "srflx-srflx"


def test_relay_only_policy_signals_and_uses_relayed_candidates_only() -> None:
    configs = [
        AgentConfig(
            controlling=index == 0,
            stun_servers=(STUN_SERVER,),
            turn_servers=(relay_server(TURN_SERVERS[index]),),
            policy=Policy.RELAY,
        )
        for index in (0, 1)
    ]
    scenario = two_agents_behind_nats(
        FULL_CONE, FULL_CONE, 2, turn=True, config_a=configs[0], config_b=configs[1]
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected and outcome.pair_types == "relay-relay"
    assert set(gathered(scenario, "a")) == {CandidateType.RELAYED}
    assert set(gathered(scenario, "b")) == {CandidateType.RELAYED}
    # Relay-only hides every address of ours, the public one the TURN server saw included.
    for name in ("a", "b"):
        for candidate in candidates(scenario, name, CandidateType.RELAYED):
            assert candidate.related_address == ("0.0.0.0", 0)
            assert "raddr 0.0.0.0 rport 0" in candidate.to_sdp()


def test_a_turn_server_refusing_our_credentials_does_not_stall_gathering() -> None:
    wrong = dataclasses.replace(relay_server(TURN_SERVERS[0]), password="wrong")
    config_a = AgentConfig(controlling=True, stun_servers=(STUN_SERVER,), turn_servers=(wrong,))
    scenario = two_agents_behind_nats(FULL_CONE, FULL_CONE, 3, turn=True, config_a=config_a)
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected
    events = [e for _, e in scenario.a.events]
    failed = [e for e in events if isinstance(e, GatheringFailed)]
    assert [e.server for e in failed] == [TURN_SERVERS[0]]
    assert any(isinstance(e, GatheringCompleted) for e in events)
    assert CandidateType.RELAYED not in gathered(scenario, "a")


def test_closing_the_agent_deletes_its_allocation() -> None:
    scenario = two_agents_behind_nats(SYMMETRIC, SYMMETRIC, 1, turn=True)
    assert scenario.run(timeout=60.0).connected
    turn = scenario.turn_servers[0]
    assert len(turn.table) == 1
    scenario.a.agent.close(scenario.network.now)
    scenario.a.attachment.flush()
    scenario.network.run(until=scenario.network.now + 1.0)
    assert len(turn.table) == 0


def test_two_agents_relay_through_one_shared_turn_server() -> None:
    """The common deployment: both peers relay-only on the same TURN server, so each relayed
    address is the other's peer on the server's own IP."""
    shared = (relay_server(TURN_SERVERS[0]),)
    configs = [
        AgentConfig(controlling=index == 0, turn_servers=shared, policy=Policy.RELAY)
        for index in (0, 1)
    ]
    scenario = two_agents_behind_nats(
        SYMMETRIC, SYMMETRIC, 4, turn=True, config_a=configs[0], config_b=configs[1]
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    assert outcome.pair_types == "relay-relay"
    assert len(scenario.turn_servers[0].table) == 2


def test_the_related_address_relay_only_signals_is_the_unspecified_one_of_the_family() -> None:
    mapped = Address("203.0.113.5", 40000)
    assert related_address(Address("198.51.100.9", 5000), mapped, Policy.ALL) == mapped
    assert related_address(Address("198.51.100.9", 5000), mapped, Policy.RELAY) == ("0.0.0.0", 0)
    mapped6 = Address("2001:db8::5", 40000)
    assert related_address(Address("2001:db8::9", 5000), mapped6, Policy.RELAY) == ("::", 0)
