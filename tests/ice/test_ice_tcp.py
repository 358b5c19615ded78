"""ICE-TCP (RFC 6544) between full agents on the simulated network, in virtual time: where a
firewall drops UDP, the agents connect over TCP to a public passive candidate; the peers deployed
agents are (a browser's active-only candidates, libnice's upper-case ``TCP``); simultaneous open;
the connection's life — data, consent, a reset, a restart — and the negative control."""

from __future__ import annotations

import dataclasses

import pytest

from ice.agent import Agent
from ice.candidate import Candidate, CandidateType, TcpType
from ice.checklist import CandidatePair
from ice.config import AgentConfig
from ice.events import ConsentLost, DataReceived, IceState, SelectedPairChanged
from ice.netsim import DropReason, NatBehavior, Transport
from ice.scenarios import STUN_SERVER, Scenario, Side, two_agents_behind_nats

OPEN = NatBehavior.OPEN
PORT_RESTRICTED = NatBehavior.PORT_RESTRICTED_CONE
SYMMETRIC = NatBehavior.SYMMETRIC


def config(controlling: bool, **changes: object) -> AgentConfig:
    base = AgentConfig(controlling=controlling, stun_servers=(STUN_SERVER,))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def tcp_nat_mapping(scenario: Scenario, side: Side) -> set[tuple[str, int]]:
    """The public ends of the TCP mappings ``side``'s NAT holds."""
    nat_name = f"{side.host.name}-nat"
    nats = [n for n in scenario.network._nats if n.name == nat_name]
    return {
        (m.external.host, m.external.port)
        for nat in nats
        for m in nat.mappings
        if m.transport is Transport.TCP
    }


def data_received(side: Side) -> list[bytes]:
    return [event.data for _, event in side.events if isinstance(event, DataReceived)]


def assert_tcp_path(pair: CandidatePair | None) -> CandidatePair:
    assert pair is not None and pair.nominated
    assert pair.local.transport == pair.remote.transport == "tcp"
    return pair


@pytest.mark.parametrize("nated_side_controls", [True, False])
@pytest.mark.parametrize("nat", [PORT_RESTRICTED, SYMMETRIC])
def test_udp_blocked_behind_a_nat_connects_over_tcp_to_a_public_passive_candidate(
    nat: NatBehavior, nated_side_controls: bool
) -> None:
    scenario = two_agents_behind_nats(
        nat,
        OPEN,
        seed=3,
        config_a=config(nated_side_controls),
        config_b=config(not nated_side_controls),
        udp_blocked=(True, False),
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    behind, public = assert_tcp_path(outcome.pair_a), assert_tcp_path(outcome.pair_b)
    # The NATed side connected from its active candidate to the public passive one; the public
    # side sees it as a peer-reflexive candidate at the NAT's mapping of that connection.
    assert behind.local.tcp_type is TcpType.ACTIVE
    assert behind.remote.tcp_type is TcpType.PASSIVE and behind.remote.type is CandidateType.HOST
    assert public.local.tcp_type is TcpType.PASSIVE
    assert public.remote.type is CandidateType.PEER_REFLEXIVE
    assert public.remote.tcp_type is TcpType.ACTIVE
    assert (public.remote.host, public.remote.port) in tcp_nat_mapping(scenario, scenario.a)
    assert behind.remote.address == public.local.address
    # No UDP datagram got through the firewall; the data takes the TCP path both ways.
    assert scenario.network.stats.dropped[DropReason.FIREWALL] > 0
    scenario.a.send(b"\x80from A")
    scenario.b.send(b"\x80from B")
    scenario.network.run(until=scenario.network.now + 1.0)
    assert data_received(scenario.b) == [b"\x80from A"]
    assert data_received(scenario.a) == [b"\x80from B"]


@pytest.mark.parametrize("browser_controls", [True, False])
def test_a_browser_like_peer_with_active_candidates_only(browser_controls: bool) -> None:
    """Browsers offer active TCP candidates only (port 9) and never listen: icestack's passive
    candidate is what makes the TCP path, and the browser appears as a peer-reflexive candidate
    with the real port its NAT gave the connection."""
    scenario = two_agents_behind_nats(
        SYMMETRIC,
        OPEN,
        seed=4,
        config_a=config(browser_controls, tcp_types=("active",)),
        config_b=config(not browser_controls),
        udp_blocked=(True, False),
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    browser_tcp = [
        c.candidate for c in scenario.a.agent.local_candidates if c.candidate.transport == "tcp"
    ]
    assert [(c.tcp_type, c.port) for c in browser_tcp] == [(TcpType.ACTIVE, 9)]
    ours = assert_tcp_path(outcome.pair_b)
    assert ours.remote.type is CandidateType.PEER_REFLEXIVE
    assert ours.remote.port != 9
    assert (ours.remote.host, ours.remote.port) in tcp_nat_mapping(scenario, scenario.a)
    assert scenario.network.tcp.connections  # the browser never accepted one: it has no listener


def test_a_libnice_like_peer_with_upper_case_tcp_candidates() -> None:
    """libnice writes the transport as ``TCP`` and offers active (port 9) and passive
    candidates: they parse, pair by direction and connect."""
    scenario = two_agents_behind_nats(
        OPEN, OPEN, seed=5, config_a=config(True), config_b=config(False), udp_blocked=(True, True)
    )
    assert scenario.gather()
    a, b = scenario.a.agent, scenario.b.agent
    for side, peer in ((a, scenario.b), (b, scenario.a)):
        other = b if side is a else a
        side.set_remote_credentials(other.local_username, other.local_password)
        for stream, candidate in peer.signalled_candidates():
            line = candidate.to_sdp().replace(" tcp ", " TCP ").replace(" udp ", " UDP ")
            assert " TCP " in line or " UDP " in line
            side.add_remote_candidate(Candidate.from_sdp(f"a=candidate:{line}"), stream)
        side.add_remote_candidate(None)
    scenario.start_checks()
    assert scenario.wait_connected(timeout=60.0)
    assert_tcp_path(a.selected_pair())
    assert_tcp_path(b.selected_pair())


def test_simultaneous_open_where_both_sides_offer_it() -> None:
    so_only = {"tcp_types": ("so",)}
    scenario = two_agents_behind_nats(
        OPEN,
        OPEN,
        seed=6,
        config_a=config(True, **so_only),
        config_b=config(False, **so_only),
        udp_blocked=(True, True),
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    for pair in (outcome.pair_a, outcome.pair_b):
        pair = assert_tcp_path(pair)
        assert pair.local.tcp_type is pair.remote.tcp_type is TcpType.SIMULTANEOUS_OPEN
        assert pair.remote.type is CandidateType.HOST  # both ends at their signalled ports
    [connection] = {frozenset((end.local, end.remote)) for end in scenario.network.tcp.connections}
    assert len(connection) == 2


def test_simultaneous_open_is_never_paired_with_another_direction() -> None:
    scenario = two_agents_behind_nats(
        OPEN,
        OPEN,
        seed=6,
        config_a=config(True, tcp_types=("so",)),
        config_b=config(False),
        udp_blocked=(True, True),
    )
    outcome = scenario.run(timeout=60.0)
    assert not outcome.connected
    assert not [p for p in scenario.a.agent.checklists[0] if p.local.transport == "tcp"]


def test_without_tcp_candidates_udp_blocked_fails() -> None:
    """The negative control: the firewall really blocks every path but TCP."""
    scenario = two_agents_behind_nats(
        PORT_RESTRICTED,
        OPEN,
        seed=3,
        config_a=config(True, tcp_types=()),
        config_b=config(False, tcp_types=()),
        udp_blocked=(True, False),
    )
    outcome = scenario.run(timeout=60.0)
    assert not outcome.connected
    assert IceState.FAILED in (scenario.a.agent.state, scenario.b.agent.state)
    assert not scenario.network.tcp.connections and not scenario.network.stats.tcp_established


def connected_over_tcp(seed: int = 7) -> Scenario:
    scenario = two_agents_behind_nats(
        PORT_RESTRICTED,
        OPEN,
        seed=seed,
        config_a=config(True),
        config_b=config(False),
        udp_blocked=(True, False),
    )
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    assert_tcp_path(outcome.pair_a)
    return scenario


def test_consent_and_data_keep_using_the_one_connection() -> None:
    scenario = connected_over_tcp()
    network = scenario.network
    pair = scenario.a.agent.selected_pair()
    assert pair is not None
    checks_before = pair.requests_sent
    established = network.stats.tcp_established
    network.run(until=network.now + 60.0)
    for side in scenario.sides:
        assert side.agent.state is IceState.COMPLETED
        assert len(side.agent.tcp) == 1  # completed: only the selected pair's connection is kept
    assert pair.requests_sent >= checks_before + 8  # consent checks every ~5 s (RFC 7675)
    assert network.stats.tcp_established == established
    assert len(network.tcp.connections) == 2  # one connection, two ends
    for index in range(5):
        scenario.a.send(bytes([0x80, index]))
    network.run(until=network.now + 1.0)
    assert data_received(scenario.b) == [bytes([0x80, index]) for index in range(5)]


def test_a_reset_of_the_selected_connection_is_reported_like_consent_loss() -> None:
    scenario = connected_over_tcp()
    public = scenario.b.host.addresses[0]
    assert scenario.network.tcp.reset(public) >= 2  # both ends of the selected connection
    scenario.network.run(until=scenario.network.now + 0.1)
    for side in scenario.sides:
        agent = side.agent
        assert agent.state is IceState.FAILED
        assert [e for _, e in side.events if isinstance(e, ConsentLost)]
        assert agent.selected_pair() is None
        assert "TCP connection" in agent.failure_reason()
        assert "reset" in agent.failure_reason()


def test_an_ice_restart_over_tcp_reuses_the_connection() -> None:
    scenario = connected_over_tcp()
    network = scenario.network
    network.run(until=network.now + 45.0)  # completed: the spare connections are closed
    established = network.stats.tcp_established
    old = scenario.a.agent.selected_pair()
    for side in scenario.sides:
        side.agent.restart(network.now)
    assert network.run_until(lambda: all(s.agent.gatherer.completed for s in scenario.sides), 10)
    scenario.signal()
    scenario.start_checks()
    assert network.run_until(
        lambda: all(len(selections(s.agent, s)) == 2 for s in scenario.sides), 30.0
    )
    new = assert_tcp_path(scenario.a.agent.selected_pair())
    assert new is not old and new.local_base == old.local_base  # type: ignore[union-attr]
    assert network.stats.tcp_established == established  # the same connection carries it
    scenario.b.send(b"\x80after the restart")
    network.run(until=network.now + 1.0)
    assert data_received(scenario.a) == [b"\x80after the restart"]


def selections(agent: Agent, side: Side) -> list[SelectedPairChanged]:
    return [e for _, e in side.events if isinstance(e, SelectedPairChanged)]
