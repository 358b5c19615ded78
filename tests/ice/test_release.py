"""Releasing what a completed session does not use (RFC 8445 §8.3, :mod:`ice.release`), on the
simulated network: two real agents, virtual time, seeded — every instant asserted is exact.

Three seconds after an agent completes, every base no selected pair needs (an ICE-TCP listener
beside a UDP pair, the UDP socket of an unused interface address, the UDP bases beside a TCP
pair) is forgotten: its candidates are lost with the reason :data:`~ice.release.RELEASED`, its
pairs leave the check list, and the selected pair goes on carrying data. Not a moment before,
not after a restart or a consent loss that came first; and a restart after it offers the
released bases again once the driver declares them anew.
"""

from __future__ import annotations

import dataclasses

import pytest

from ice.candidate import CandidateType
from ice.config import AgentConfig, Policy
from ice.events import CandidateGathered, CandidateLost, DataReceived, IceState
from ice.netsim import NatBehavior, Network
from ice.release import RELEASE_DELAY, RELEASED, unpairable_remotes, unused_bases
from ice.scenarios import (
    STUN_SERVER,
    TURN_SERVERS,
    Scenario,
    Side,
    add_turn_server,
    relay_server,
    two_agents_behind_nats,
)
from stun.address import Address
from stun.attributes import IceControlled, Priority, Username
from stun.message import Message, MessageClass, Method, new_transaction_id
from turn.transport import ClientTransport

OPEN = NatBehavior.OPEN
PORT_RESTRICTED = NatBehavior.PORT_RESTRICTED_CONE
CONTROLLING = AgentConfig(controlling=True, stun_servers=(STUN_SERVER,))
CONTROLLED = AgentConfig(controlling=False, stun_servers=(STUN_SERVER,))
#: The same, without ICE-TCP: one UDP base per interface address.
CONTROLLING_UDP = dataclasses.replace(CONTROLLING, tcp_types=())
CONTROLLED_UDP = dataclasses.replace(CONTROLLED, tcp_types=())


# --------------------------------------------------------------------------- helpers


def connect(scenario: Scenario) -> tuple[float, float]:
    """Play the session (gather, signal, check) until both agents completed."""
    outcome = scenario.run(timeout=60.0)
    assert outcome.connected, outcome.failure_reason
    return completed(scenario)


def completed(scenario: Scenario) -> tuple[float, float]:
    """Run until both agents completed; when each did (virtual seconds)."""
    assert scenario.network.run_until(
        lambda: all(s.agent.state is IceState.COMPLETED for s in scenario.sides), 60.0
    ), [s.agent.failure_reason() for s in scenario.sides]
    return completed_at(scenario.a), completed_at(scenario.b)


def completed_at(side: Side) -> float:
    return max(
        when for when, event in side.events if getattr(event, "state", None) is IceState.COMPLETED
    )


def lost(side: Side) -> list[CandidateLost]:
    return [e for _, e in side.events if isinstance(e, CandidateLost)]


def released(side: Side) -> list[CandidateLost]:
    return [e for e in lost(side) if e.released]


def released_base(lost: CandidateLost) -> Address:
    """The base a released candidate was on (every local candidate has one)."""
    assert lost.candidate.base is not None
    return lost.candidate.base


def needed_base(side: Side) -> Address:
    """The base the selected pair of stream 0, component 1 needs: its own, or for a relayed
    candidate the host base its allocation talks from."""
    pair = side.agent.selected_pair()
    assert pair is not None
    relays = side.agent.gatherer.relays
    return relays.base_of(pair.local_base) or pair.local_base


def data_flows(scenario: Scenario) -> bool:
    """A datagram each way on the selected pairs arrives."""
    before = [len(received(side)) for side in scenario.sides]
    scenario.a.send(b"\x80from A")
    scenario.b.send(b"\x80from B")
    scenario.network.run(until=scenario.network.now + 1.0)
    return [received(side)[n:] for side, n in zip(scenario.sides, before, strict=True)] == [
        [b"\x80from B"],
        [b"\x80from A"],
    ]


def received(side: Side) -> list[bytes]:
    return [e.data for _, e in side.events if isinstance(e, DataReceived)]


def peer_check(scenario: Scenario) -> bytes:
    """A Binding request B could send A, signed with A's password (RFC 8445 §7.1)."""
    a, b = scenario.a.agent, scenario.b.agent
    attributes = [Username(f"{a.local_username}:{b.local_username}"), Priority(1), IceControlled(1)]
    request = Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id(), attributes)
    return request.encode(key=a.local_password.encode(), fingerprint=True)


def gathered_after(side: Side, when: float) -> list[CandidateGathered]:
    return [e for t, e in side.events if t >= when and isinstance(e, CandidateGathered)]


# --------------------------------------------------------------------------- releasing


def test_ice_tcp_bases_beside_a_udp_pair_are_released_three_seconds_after_completion() -> None:
    """ICE-TCP on (the default): the pair is UDP, so each side's listening base goes — its
    passive and active candidates lost with the §8.3 reason, its pairs out of the check list —
    exactly RELEASE_DELAY after that side completed, and data still flows."""
    scenario = two_agents_behind_nats(OPEN, OPEN)
    done_a, done_b = connect(scenario)
    net = scenario.network
    tcp_bases = {side.name: set(side.agent.tcp.bases) for side in scenario.sides}
    assert all(tcp_bases.values())

    net.run(until=min(done_a, done_b) + RELEASE_DELAY - 0.001)
    assert released(scenario.a) == released(scenario.b) == []
    assert unused_bases(scenario.a.agent)  # there is something to release: it just waits

    net.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)
    for side, done in ((scenario.a, done_a), (scenario.b, done_b)):
        agent = side.agent
        lost = released(side)
        assert sorted(c.candidate.tcp_type.value for c in lost if c.candidate.tcp_type) == [
            "active",
            "passive",
        ]
        assert {c.candidate.base for c in lost} == tcp_bases[side.name]
        assert [when for when, e in side.events if e in lost] == [done + RELEASE_DELAY] * 2
        assert agent.gatherer.base_addresses() == [needed_base(side)]
        assert not agent.tcp.bases
        assert all(c.candidate.transport == "udp" for c in agent.local_candidates)
        assert {p.local_base for p in agent.checklists[0]} == {needed_base(side)}
        assert agent.state is IceState.COMPLETED
        assert unused_bases(agent) == []
        # the peer's TCP candidates: nothing left to pair them with, forgotten
        assert [c.transport for _, c in agent.remote_candidates] == ["udp"]
        assert unpairable_remotes(agent) == []
    assert data_flows(scenario)


def test_the_base_of_a_server_reflexive_pair_is_kept_and_its_tcp_base_released() -> None:
    """Behind NATs the pair's local candidate is server- or peer-reflexive: its base, the host
    base it is checked from, stays; the listener goes."""
    scenario = two_agents_behind_nats(PORT_RESTRICTED, PORT_RESTRICTED, 3)
    done_a, done_b = connect(scenario)
    pair = scenario.a.agent.selected_pair()
    assert pair is not None and pair.local.type is not CandidateType.HOST
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)

    for side in scenario.sides:
        assert side.agent.gatherer.base_addresses() == [needed_base(side)]
        kept = [c.candidate for c in side.agent.local_candidates]
        assert {c.type for c in kept} >= {CandidateType.HOST, CandidateType.SERVER_REFLEXIVE}
        assert all(c.transport == "udp" for c in kept)
    assert data_flows(scenario)


def test_an_unused_interface_address_is_released_and_the_used_one_kept() -> None:
    """A multi-homed host: one UDP base per address; the one no selected pair uses goes."""
    network = Network(5)
    network.add_stun_server(STUN_SERVER)
    host_a = network.add_host("a")
    second = host_a.add_address(None, lan=None)
    host_b = network.add_host("b")
    scenario = Scenario(
        network,
        host_a,
        host_b,
        config_a=CONTROLLING_UDP,
        config_b=CONTROLLED_UDP,
    )
    done_a, done_b = connect(scenario)
    a = scenario.a.agent
    assert len(a.gatherer.base_addresses()) == 2
    network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)

    [lost] = released(scenario.a)
    kept = needed_base(scenario.a)
    assert lost.candidate.base is not None and lost.candidate.base != kept
    assert lost.candidate.type is CandidateType.HOST
    assert {kept.host, lost.candidate.base.host} == {host_a.addresses[0], second}
    assert a.gatherer.base_addresses() == [kept]
    assert released(scenario.b) == []  # one address, in use: nothing to release
    assert data_flows(scenario)
    # A check of the peer's, validly signed, is answered on the kept base and no longer on the
    # released one (§8.3.1: the agent may cease responding to checks there).
    peer = scenario.b.agent.selected_pair()
    assert peer is not None
    for base, answers in ((kept, 1), (lost.candidate.base, 0)):
        a.receive_datagram(peer_check(scenario), base, peer.local_base, network.now)
        assert len(a.datagrams_to_send(network.now)) == answers


def test_a_tcp_pair_keeps_its_listener_and_the_udp_bases_go() -> None:
    """UDP blocked at both edges: the pair is ICE-TCP; the UDP bases (which found no STUN
    server either) are released, the pair's TCP base stays and carries the data."""
    scenario = two_agents_behind_nats(OPEN, OPEN, 2, udp_blocked=(True, True))
    done_a, done_b = connect(scenario)
    pair = scenario.a.agent.selected_pair()
    assert pair is not None and pair.local.transport == "tcp"
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)

    for side in scenario.sides:
        agent = side.agent
        assert [c.candidate.transport for c in released(side)] == ["udp"]
        assert agent.gatherer.base_addresses() == [needed_base(side)]
        assert list(agent.tcp.bases) == [needed_base(side)]
        remotes = [c for _, c in agent.remote_candidates]
        assert remotes and {c.transport for c in remotes} == {"tcp"}  # the UDP ones forgotten
        assert unpairable_remotes(agent) == []
    assert data_flows(scenario)


def test_a_relayed_pair_keeps_the_base_its_allocation_is_reached_from() -> None:
    """A relay-only agent's pair is relayed: the host base its TURN server is talked to from
    is needed (the allocation lives through it) and stays; its TCP base goes."""
    relay_only = AgentConfig(
        controlling=True, turn_servers=(relay_server(TURN_SERVERS[0]),), policy=Policy.RELAY
    )
    scenario = two_agents_behind_nats(OPEN, OPEN, 1, turn=True, config_a=relay_only)
    done_a, done_b = connect(scenario)
    a = scenario.a.agent
    pair = a.selected_pair()
    assert pair is not None and pair.local.type is CandidateType.RELAYED
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)

    kept = needed_base(scenario.a)
    assert kept != pair.local_base
    assert a.gatherer.base_addresses() == [kept]
    assert not a.tcp.bases  # its listener, with no candidate to lose (relay-only offers none)
    assert a.gatherer.relays.base_of(pair.local_base) == kept
    assert data_flows(scenario)
    scenario.network.run(until=scenario.network.now + 1200.0)  # refreshes go on through it
    assert a.state is IceState.COMPLETED
    assert data_flows(scenario)


@pytest.mark.parametrize("transport", [ClientTransport.UDP, ClientTransport.TCP])
def test_unused_turn_allocations_are_deleted_and_a_restart_allocates_again(
    transport: ClientTransport,
) -> None:
    """Both sides have a TURN server, the pair is host-host: each deletes its allocation
    (Refresh with LIFETIME 0; over TCP, then the connection closes), though its base stays; the
    servers hold none after it. A restart allocates again and offers the relayed candidate."""
    scenario = two_agents_behind_nats(OPEN, OPEN, turn=True, turn_transport=transport)
    done_a, done_b = connect(scenario)
    servers = scenario.turn_servers
    assert [server.allocation_count for server in servers] == [1, 1]
    net = scenario.network
    net.run(until=max(done_a, done_b) + RELEASE_DELAY + 1.0)

    for side in scenario.sides:
        relayed = [e.candidate for e in released(side) if e.candidate.type is CandidateType.RELAYED]
        assert len(relayed) == 1
        agent = side.agent
        assert all(c.candidate.type is not CandidateType.RELAYED for c in agent.local_candidates)
        assert all(p.local.type is not CandidateType.RELAYED for p in agent.checklists[0])
        assert needed_base(side) in agent.gatherer.base_addresses()
    assert [server.allocation_count for server in servers] == [0, 0]
    assert data_flows(scenario)

    restarted = net.now
    for side in scenario.sides:
        side.agent.restart(net.now)
    net.run(until=net.now + 2.0)
    for side in scenario.sides:
        assert any(
            e.candidate.type is CandidateType.RELAYED for e in gathered_after(side, restarted)
        )
    assert [server.allocation_count for server in servers] == [1, 1]


def test_the_allocations_of_a_released_base_are_deleted_before_it_goes() -> None:
    """A multi-homed host with a TURN server: each address allocates, the pair is host-host on
    one of them. The other address's allocation is deleted (Refresh with LIFETIME 0) from that
    base before the base is forgotten — forgetting it first dropped the request unsent and left
    the allocation on the server until its lifetime ran out."""
    network = Network(5)
    network.add_stun_server(STUN_SERVER)
    server = add_turn_server(network, TURN_SERVERS[0], "turn0", tcp=False)
    host_a = network.add_host("a")
    host_a.add_address(None, lan=None)
    host_b = network.add_host("b")
    config_a = AgentConfig(
        controlling=True,
        stun_servers=(STUN_SERVER,),
        turn_servers=(relay_server(TURN_SERVERS[0]),),
        tcp_types=(),
    )
    scenario = Scenario(
        network,
        host_a,
        host_b,
        config_a=config_a,
        config_b=dataclasses.replace(CONTROLLED, tcp_types=()),
    )
    done_a, done_b = connect(scenario)
    assert server.allocation_count == 2
    network.run(until=max(done_a, done_b) + RELEASE_DELAY + 1.0)

    lost_bases = {e.candidate.base for e in released(scenario.a)}
    assert any(e.candidate.type is CandidateType.HOST for e in released(scenario.a))
    assert len(lost_bases) == 3  # the unused address, and both relayed addresses
    assert server.allocation_count == 0
    assert data_flows(scenario)


def test_the_event_says_which_candidates_the_agent_released() -> None:
    """``CandidateLost.released``, what a driver closes sockets by: set, with the reason
    RELEASED, on every candidate the release let go (host, server-reflexive and relayed ones);
    not set on one whose interface address went away (a restart told so) before the delay."""
    scenario = two_agents_behind_nats(OPEN, OPEN, turn=True)
    done_a, done_b = connect(scenario)
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 1.0)
    for side in scenario.sides:
        assert lost(side) == released(side)
        assert {e.reason for e in lost(side)} == {RELEASED}
        assert CandidateType.RELAYED in {e.candidate.type for e in lost(side)}

    network = Network(5)
    network.add_stun_server(STUN_SERVER)
    host_a = network.add_host("a")
    host_a.add_address(None, lan=None)
    scenario = Scenario(
        network,
        host_a,
        network.add_host("b"),
        config_a=CONTROLLING_UDP,
        config_b=CONTROLLED_UDP,
    )
    connect(scenario)
    a = scenario.a.agent
    gone = [base for base in a.gatherer.base_addresses() if base != needed_base(scenario.a)]
    assert gone
    a.restart(network.now, gone_bases=gone)
    network.run(until=network.now + 0.1)
    events = lost(scenario.a)
    assert events and not any(e.released for e in events)
    assert {e.candidate.base for e in events} <= set(gone)
    assert all(e.reason.startswith("the interface address") for e in events)


def test_an_ice_lite_agent_releases_by_the_same_rule() -> None:
    scenario = two_agents_behind_nats(
        OPEN,
        OPEN,
        4,
        config_a=dataclasses.replace(CONTROLLING, remote_lite=True),
        config_b=AgentConfig(lite=True),
    )
    done_a, done_b = connect(scenario)
    scenario.network.run(until=done_b + RELEASE_DELAY - 0.001)
    assert released(scenario.b) == []
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)

    lite = scenario.b.agent
    assert [c.candidate.tcp_type.value for c in released(scenario.b) if c.candidate.tcp_type] == [
        "passive"
    ]
    assert lite.gatherer.base_addresses() == [needed_base(scenario.b)]
    assert data_flows(scenario)


# --------------------------------------------------------------------------- what cancels it


def test_nothing_is_unused_while_a_component_has_no_selected_pair() -> None:
    """Two components: until both have their selected pair, no base counts as unused, even with
    one component's pair selected already."""
    scenario = two_agents_behind_nats(
        OPEN,
        OPEN,
        config_a=dataclasses.replace(CONTROLLING, streams=(2,)),
        config_b=dataclasses.replace(CONTROLLED, streams=(2,)),
    )
    scenario.gather()
    scenario.signal()
    a = scenario.a.agent
    assert unused_bases(a) == []
    scenario.start_checks()
    net = scenario.network
    assert net.run_until(lambda: len(a.selected) == 1, 10.0)
    assert unused_bases(a) == []  # component 2 is not settled: nothing is
    done_a, done_b = completed(scenario)
    assert len(unused_bases(a)) == 2  # each component's TCP base
    net.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)
    assert sorted(a.gatherer.base_addresses()) == sorted(p.local_base for p in a.selected.values())


def test_a_restart_before_the_delay_cancels_the_release() -> None:
    scenario = two_agents_behind_nats(OPEN, OPEN)
    done_a, _ = connect(scenario)
    net, a = scenario.network, scenario.a.agent
    bases = a.gatherer.base_addresses()
    net.run(until=done_a + RELEASE_DELAY / 2)
    a.restart(net.now)
    net.run(until=done_a + RELEASE_DELAY + 1.0)

    assert released(scenario.a) == []
    assert a.gatherer.base_addresses() == bases
    assert a.state is IceState.CHECKING


def test_consent_lost_before_the_delay_cancels_the_release() -> None:
    """The peer vanishes at once: A is disconnected, then fails, before its three seconds are
    up, and releases nothing."""
    quick_consent = dataclasses.replace(
        CONTROLLING, consent_interval=0.25, disconnected_after=0.5, consent_timeout=1.0
    )
    scenario = two_agents_behind_nats(OPEN, OPEN, config_a=quick_consent)
    done_a, _ = connect(scenario)
    scenario.b.attachment.detach()
    scenario.network.run(until=done_a + RELEASE_DELAY + 5.0)

    a = scenario.a.agent
    assert a.state is IceState.FAILED
    assert released(scenario.a) == []
    assert len(a.gatherer.base_addresses()) == 2


# --------------------------------------------------------------------------- restart after it


def test_a_restart_after_the_release_offers_the_released_bases_again() -> None:
    """The driver declares the released bases again (here the same simulated sockets, still
    bound) and restarts: their candidates are gathered and signalled as the new generation's,
    the session connects again, and three seconds later they are released again."""
    scenario = two_agents_behind_nats(OPEN, OPEN)
    done_a, done_b = connect(scenario)
    net = scenario.network
    net.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)
    gone = {side.name: [released_base(c) for c in released(side)] for side in scenario.sides}

    restarted = net.now
    for side in scenario.sides:
        for base in dict.fromkeys(gone[side.name]):
            side.agent.add_tcp_base(0, 1, base)
        side.agent.restart(net.now)
    net.run(until=net.now + 1.0)
    for side in scenario.sides:
        offered = gathered_after(side, restarted)
        assert {e.candidate.tcp_type.value for e in offered if e.candidate.tcp_type} == {
            "active",
            "passive",
        }
        assert side.agent.tcp.bases
    scenario.signal()
    scenario.start_checks()
    assert scenario.wait_connected(timeout=60.0)
    done_a, done_b = completed(scenario)
    net.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)
    for side in scenario.sides:
        assert len(released(side)) == 4  # twice the passive and the active candidate
        assert side.agent.gatherer.base_addresses() == [needed_base(side)]
    assert data_flows(scenario)


def test_tcp_relay_transport_is_no_exception() -> None:
    """A TURN server reached over TCP: the allocation's connection hangs off the UDP base's
    address in the agent's books; the base stays while its relayed pair is selected."""
    relay_only = AgentConfig(
        controlling=True,
        turn_servers=(relay_server(TURN_SERVERS[0], ClientTransport.TCP),),
        policy=Policy.RELAY,
    )
    scenario = two_agents_behind_nats(
        OPEN, OPEN, 1, turn=True, turn_transport=ClientTransport.TCP, config_a=relay_only
    )
    done_a, done_b = connect(scenario)
    scenario.network.run(until=max(done_a, done_b) + RELEASE_DELAY + 0.001)
    a = scenario.a.agent
    pair = a.selected_pair()
    assert pair is not None and pair.local.type is CandidateType.RELAYED
    assert a.gatherer.base_addresses() == [needed_base(scenario.a)]
    assert data_flows(scenario)
