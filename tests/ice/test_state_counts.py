"""The agent's incremental state (architecture.md §2: what runs after every datagram and timer)
agrees with a recount, whatever a session goes through.

The check lists count their pairs left to check (:attr:`~ice.checklist.CheckList.schedulable`),
the checks in flight count the ordinary ones (:class:`~ice.in_flight.ChecksInFlight`) and the
selection keeps whether every component is concluded (:attr:`~ice.selection.Selection.
all_concluded`), so that "still checking" is answered without a walk; and
:meth:`~ice.agent.Agent.get_timer` asks a part for its deadline only when the part can have one.
Here two agents on the simulated network — any NATs, lossy, duplicating and reordering links,
TURN or not, several components, roles that conflict, an ICE-lite peer, a restart — are held to
the walks those counts replace, and to the deadline every part gives when asked, after every
event of the network.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ice.agent import Agent
from ice.checklist import PairState
from ice.config import AgentConfig
from ice.events import IceState
from ice.netsim import LinkConfig, NatBehavior
from ice.scenarios import (
    STUN_SERVER,
    TURN_SERVERS,
    Scenario,
    relay_server,
    two_agents_behind_nats,
)


def recount_schedulable(agent: Agent) -> list[int]:
    return [
        sum(
            1
            for pair in checklist
            if pair.state is PairState.WAITING
            or (pair.state is PairState.FROZEN and not pair.waits_for_peer)
        )
        for checklist in agent.checklists
    ]


def assert_counts_hold(agent: Agent) -> None:
    assert [c.schedulable for c in agent.checklists] == recount_schedulable(agent)
    in_flight = agent.outgoing.in_flight
    assert in_flight.ordinary == sum(1 for check in in_flight.values() if not check.consent)
    selection = agent.selection
    keys = selection.keys()
    assert selection.all_concluded == all(selection.concluded(key) for key in keys)
    # what give_up_at and run_nomination walk instead of every component
    nomination = agent.nomination
    deciding = [
        (stream, component)
        for stream, component in keys
        if nomination.has_valid(stream, component)
        and nomination._components[nomination._index[stream, component]].nominating is None
    ]
    assert nomination.deciding == len(deciding)
    assert selection._unconcluded == tuple(key for key in keys if not selection.concluded(key))


def every_part_asked(agent: Agent) -> float | None:
    """The agent's next deadline with every part asked, as if none could be skipped."""
    if agent._closed:
        return None
    relays = agent.gatherer.relays
    deadlines = [
        agent.outgoing.get_timer(),
        agent.gatherer.get_timer(),
        relays.get_timer() if relays.active else None,
        agent.consent.get_timer(),
        agent.tcp.get_timer(),
        agent.nomination.deadline if agent.controlling and not agent.config.lite else None,
        agent._last_now if agent._touched else None,
        agent._release_at,
    ]
    if agent.state is not IceState.FAILED and not agent.selection.all_concluded:
        verdict = agent.selection.give_up_at()
        deadlines.append(verdict[0] if verdict is not None else None)
    return min((d for d in deadlines if d is not None), default=None)


def held_to_counts(scenario: Scenario, done: bool) -> bool:
    for side in scenario.sides:
        assert_counts_hold(side.agent)
        assert side.agent.get_timer() == every_part_asked(side.agent)
    return done


def run_checked(scenario: Scenario, timeout: float) -> bool:
    """Run until both agents are connected or either failed, checking after every event."""
    sides = scenario.sides
    return scenario.network.run_until(
        lambda: held_to_counts(
            scenario,
            all(s.connected for s in sides) or any(s.agent.state is IceState.FAILED for s in sides),
        ),
        timeout,
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    nats=st.tuples(st.sampled_from(NatBehavior), st.sampled_from(NatBehavior)),
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    duplicate=st.sampled_from([0.0, 0.2]),
    reorder=st.sampled_from([0.0, 0.3]),
    turn=st.booleans(),
    components=st.integers(1, 2),
    both_controlling=st.booleans(),
    lite_b=st.booleans(),
    restart=st.booleans(),
)
def test_counts_agree_with_a_recount_after_every_event(
    nats: tuple[NatBehavior, NatBehavior],
    seed: int,
    loss: float,
    duplicate: float,
    reorder: float,
    turn: bool,
    components: int,
    both_controlling: bool,
    lite_b: bool,
    restart: bool,
) -> None:
    link = LinkConfig(delay=0.010, jitter=0.005, loss=loss, duplicate=duplicate, reorder=reorder)
    base = AgentConfig(stun_servers=(STUN_SERVER,), streams=(components,), idle_timeout=5.0)
    relays = [(relay_server(address),) if turn else () for address in TURN_SERVERS]
    scenario = two_agents_behind_nats(
        *nats,
        seed,
        wan_link=link,
        turn=turn,
        config_a=dataclasses.replace(
            base, controlling=True, turn_servers=relays[0], remote_lite=lite_b
        ),
        config_b=dataclasses.replace(
            base, controlling=both_controlling, turn_servers=relays[1], lite=lite_b
        ),
    )
    for side in scenario.sides:
        side.agent.gather(scenario.network.now)
    scenario.network.run_until(
        lambda: held_to_counts(scenario, all(s.agent.gatherer.completed for s in scenario.sides)),
        10.0,
    )
    scenario.signal()
    scenario.start_checks()
    connected = run_checked(scenario, 60.0)
    if restart and connected:
        for side in scenario.sides:
            side.agent.restart(scenario.network.now)
        scenario.signal()
        scenario.start_checks()
        run_checked(scenario, 60.0)
    scenario.network.run(until=scenario.network.now + 12.0)  # consent, disconnection, idle end
    held_to_counts(scenario, True)
