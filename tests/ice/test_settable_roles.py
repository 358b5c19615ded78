"""What signalling settles after the agent is made, on the simulated network (architecture.md §5
tier 2): the role (:meth:`Agent.set_role`), whether the peer is ICE-lite
(:meth:`Agent.set_remote_lite`), both until checks start, and a selected pair forced for a peer
that does no ICE (:meth:`Agent.force_selected_pair`). aiortc, through ``ice.compat.aioice``,
needs all three: it makes every agent controlled and decides the role when the offer is set.

Every run is seeded and bounded; times are virtual seconds.
"""

from __future__ import annotations

import dataclasses

import pytest

from ice.candidate import Candidate, CandidateType
from ice.checklist import PairState
from ice.config import AgentConfig
from ice.errors import LocalProtocolError
from ice.events import DataReceived, IceState, RoleChanged, SelectedPairChanged
from ice.netsim import NatBehavior
from ice.scenarios import STUN_SERVER, Scenario, Side, two_agents_behind_nats

OPEN = NatBehavior.OPEN
CONTROLLED = AgentConfig(controlling=False, stun_servers=(STUN_SERVER,))


def both_controlled(seed: int = 3, **changes: object) -> Scenario:
    """Two agents made controlled, as aiortc makes every one before the offer is known."""
    config_b = dataclasses.replace(CONTROLLED, **changes)  # type: ignore[arg-type]
    return two_agents_behind_nats(OPEN, OPEN, seed, config_a=CONTROLLED, config_b=config_b)


def role_changes(side: Side) -> list[bool]:
    return [e.controlling for _, e in side.events if isinstance(e, RoleChanged)]


def host(side: Side) -> Candidate:
    return next(
        c.candidate
        for c in side.agent.local_candidates
        if c.candidate.type is CandidateType.HOST and c.candidate.transport == "udp"
    )


def test_role_set_after_gathering_is_the_role_checks_run_with() -> None:
    scenario = both_controlled()
    assert scenario.gather()
    scenario.signal()  # pairs exist now, with the controlled role's priorities
    scenario.a.agent.set_role(True)

    pairs = list(scenario.a.agent.checklists[0])
    assert pairs and all(
        p.priority == 2**32 * min(p.local.priority, p.remote.priority)
        + 2 * max(p.local.priority, p.remote.priority)
        + (p.local.priority > p.remote.priority)
        for p in pairs
    )  # RFC 8445 §6.1.2.3 with G = our candidate's priority
    scenario.start_checks()
    assert scenario.wait_connected(30.0), scenario.outcome(False).failure_reason
    assert scenario.a.agent.controlling and not scenario.b.agent.controlling
    assert role_changes(scenario.a) == role_changes(scenario.b) == []  # no conflict to resolve


def test_without_a_role_set_two_controlled_agents_need_a_role_conflict() -> None:
    """The contrast: the same session, nobody set the role; the conflict (§7.3.1.1) settles it."""
    scenario = both_controlled()
    outcome = scenario.run(timeout=30.0)
    assert outcome.connected, outcome.failure_reason
    assert role_changes(scenario.a) + role_changes(scenario.b) == [True]


def test_role_is_fixed_once_checks_start() -> None:
    scenario = both_controlled()
    assert scenario.gather()
    scenario.signal()
    scenario.a.agent.set_role(True)
    scenario.start_checks()
    scenario.a.agent.set_role(True)  # the role it has: nothing to change
    with pytest.raises(LocalProtocolError, match="the role cannot change once checks"):
        scenario.a.agent.set_role(False)
    with pytest.raises(LocalProtocolError, match="ICE-lite cannot change once checks"):
        scenario.a.agent.set_remote_lite(True)


def test_role_refusals_name_the_rule() -> None:
    scenario = both_controlled(lite=True, stun_servers=())
    with pytest.raises(LocalProtocolError, match="ICE-lite agent is always controlled"):
        scenario.b.agent.set_role(True)
    with pytest.raises(LocalProtocolError, match="two ICE-lite agents"):
        scenario.b.agent.set_remote_lite(True)
    with pytest.raises(LocalProtocolError, match="True or False"):
        scenario.a.agent.set_role("yes")  # type: ignore[arg-type]
    scenario.a.agent.set_remote_lite(True)
    with pytest.raises(LocalProtocolError, match="peer is ICE-lite: we must be controlling"):
        scenario.a.agent.set_role(False)


def test_a_controlled_agent_told_its_peer_is_lite_controls_and_connects() -> None:
    """Made controlled, then told (before checks) that the peer is ICE-lite: it takes the
    controlling role (RFC 8445 §6.1.1) and nominates; the lite peer never checks."""
    scenario = both_controlled(lite=True, stun_servers=())
    assert scenario.gather()
    scenario.signal()
    scenario.a.agent.set_remote_lite(True)
    assert scenario.a.agent.controlling and scenario.a.agent.remote_lite
    scenario.start_checks()
    assert scenario.wait_connected(30.0), scenario.outcome(False).failure_reason
    pair_a, pair_b = scenario.a.agent.selected_pair(), scenario.b.agent.selected_pair()
    assert pair_a is not None and pair_b is not None
    assert pair_a.remote.address == pair_b.local_base
    assert all(p.requests_sent == 0 for p in scenario.b.agent.checklists[0])


def test_a_forced_pair_carries_data_without_any_check_or_consent() -> None:
    """Neither side runs checks: each forces the pair of the other's host candidate, and data
    flows both ways, for a minute, with no STUN request on the wire and no consent lost."""
    scenario = both_controlled()
    assert scenario.gather()
    a, b = scenario.a, scenario.b
    now = scenario.network.now
    forced_a = a.agent.force_selected_pair(host(a), host(b), now)
    forced_b = b.agent.force_selected_pair(host(b), host(a), now)

    assert a.agent.selected_pair() is forced_a and b.agent.selected_pair() is forced_b
    assert forced_a.state is PairState.SUCCEEDED and forced_a.nominated
    assert a.agent.state is IceState.COMPLETED
    a.send(b"\x80to b")
    b.send(b"\x80to a")
    scenario.network.run(until=now + 60.0)
    assert [e.data for _, e in b.events if isinstance(e, DataReceived)] == [b"\x80to b"]
    assert [e.data for _, e in a.events if isinstance(e, DataReceived)] == [b"\x80to a"]
    assert a.agent.state is b.agent.state is IceState.COMPLETED
    assert [e.pair for _, e in a.events if isinstance(e, SelectedPairChanged)] == [forced_a]
    for side in scenario.sides:
        assert sum(p.requests_sent for p in side.agent.checklists[0]) == 0


def test_forcing_a_pair_refuses_what_cannot_be_one() -> None:
    scenario = both_controlled()
    assert scenario.gather()
    a, b = scenario.a, scenario.b
    now = scenario.network.now
    with pytest.raises(LocalProtocolError, match="not a local candidate"):
        a.agent.force_selected_pair(host(b), host(a), now)
    v6 = dataclasses.replace(host(b), host="2001:db8::2")
    with pytest.raises(LocalProtocolError, match="cannot pair"):
        a.agent.force_selected_pair(host(a), v6, now)
    tcp = next(c.candidate for c in a.agent.local_candidates if c.candidate.transport == "tcp")
    with pytest.raises(LocalProtocolError, match="only a UDP pair can be forced"):
        a.agent.force_selected_pair(tcp, dataclasses.replace(tcp, host=host(b).host), now)
    a.agent.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        a.agent.force_selected_pair(host(a), host(b), now)
