"""The sans-IO agent's TURN over TCP/TLS (ice.relay's stream relays) on a virtual clock, where no
UDP gets through: the real TURN server core is reached only over the connections the agents ask
their driver for (tests/ice/stream_relay_world.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ice.agent import Agent
from ice.candidate import CandidateType
from ice.events import (
    CandidateGathered,
    CandidateLost,
    DataReceived,
    GatheringCompleted,
    GatheringFailed,
    IceEvent,
    IceState,
)
from ice.preferences import LocalPreferences, relay_local_preference
from ice.relay_streams import is_relayed_data
from stun.address import Address
from turn.transport import ClientTransport

from .stream_relay_world import SERVER, StreamWorld


def events(world: StreamWorld, agent: Agent, kind: type[IceEvent]) -> list[IceEvent]:
    return [e for e in world.events[id(agent)] if isinstance(e, kind)]


def connected_pair(world: StreamWorld) -> tuple[Agent, Agent]:
    a = world.add_agent(True, "192.0.2.1")
    b = world.add_agent(False, "192.0.2.2")
    assert world.run(world.gathered, 10.0)
    world.signal()
    assert world.run(world.connected, 30.0), [x.failure_reason() for x in (a, b)]
    return a, b


def test_two_relay_only_agents_connect_over_tcp_relays_and_carry_data_both_ways() -> None:
    world = StreamWorld()
    a, b = connected_pair(world)
    for agent in (a, b):
        (gathered,) = events(world, agent, CandidateGathered)
        assert isinstance(gathered, CandidateGathered)
        assert gathered.candidate.type is CandidateType.RELAYED
        pair = agent.selected_pair()
        assert pair is not None and pair.local.type is CandidateType.RELAYED
    assert len(world.opened) == 2 and len(world.connections) == 2
    a.send(b"\x80over a stream")
    b.send(b"\x80and back")
    world.run(
        lambda: bool(events(world, a, DataReceived)) and bool(events(world, b, DataReceived)), 5
    )
    (to_b,), (to_a,) = events(world, b, DataReceived), events(world, a, DataReceived)
    assert isinstance(to_b, DataReceived) and to_b.data == b"\x80over a stream"
    assert isinstance(to_a, DataReceived) and to_a.data == b"\x80and back"
    # Everything went over the connections: relay-only agents send nothing over UDP.
    assert world.dropped_udp == 0
    assert world.server.allocation_count == 2


def test_a_refused_connection_ends_that_relay_at_once_with_the_reason() -> None:
    world = StreamWorld(refuse=True)
    agent = world.add_agent(True, "192.0.2.1")
    assert world.run(world.gathered, 10.0)
    assert world.now < 1.0  # not the gathering timeout: the refusal ended it
    (failed,) = events(world, agent, GatheringFailed)
    assert isinstance(failed, GatheringFailed)
    assert failed.server == SERVER
    assert failed.reason == "over TCP: connection refused"
    assert events(world, agent, GatheringCompleted)


def test_a_connection_that_never_opens_is_given_up_at_the_gathering_timeout() -> None:
    world = StreamWorld(silent=True)
    agent = world.add_agent(True, "192.0.2.1")
    assert world.run(world.gathered, 10.0)
    assert world.now == pytest.approx(2.0)  # gathering_timeout bounds connect and Allocate
    (failed,) = events(world, agent, GatheringFailed)
    assert isinstance(failed, GatheringFailed)
    assert failed.reason == "over TCP: not connected within 2 s (gathering_timeout)"
    assert world.closed_by_agent == 1  # the driver is told to stop trying


def test_a_dropped_connection_loses_the_relay_and_a_restart_reconnects_over_a_new_one() -> None:
    world = StreamWorld()
    a, b = connected_pair(world)
    world.drop_connection(a)
    world.run(lambda: a.state is IceState.FAILED, 5.0)
    (lost,) = events(world, a, CandidateLost)
    assert isinstance(lost, CandidateLost)
    assert lost.reason.endswith("ended: the connection to the server closed (reset)")
    assert "lost its only path" in a.failure_reason()
    for agent in (a, b):
        agent.restart(world.now)
    assert world.run(world.gathered, 10.0)
    assert len(world.opened) == 3  # a new connection for the allocation that ended
    world.signal()
    assert world.run(world.connected, 30.0), a.failure_reason()


@pytest.mark.parametrize("transport", [ClientTransport.TCP, ClientTransport.TLS])
def test_the_driver_is_asked_for_a_connection_from_the_base_under_a_label_no_socket_has(
    transport: ClientTransport,
) -> None:
    world = StreamWorld()
    agent = world.add_agent(True, "192.0.2.1", transport)
    assert world.run(world.gathered, 10.0)
    (command,) = world.opened
    assert command.server == SERVER and command.local_host == "192.0.2.1"
    assert command.label.host == "192.0.2.1" and command.label.port > 0xFFFF
    assert command.tls is (transport is ClientTransport.TLS)
    assert command.server_name == SERVER.host  # no name given: the certificate names the IP
    (gathered,) = events(world, agent, CandidateGathered)
    assert isinstance(gathered, CandidateGathered)
    candidate = gathered.candidate
    assert candidate.priority >> 24 == 0  # relayed type preference
    expected = relay_local_preference(0xFFFF, transport)
    assert (candidate.priority >> 8) & 0xFFFF == expected


def test_foundations_tell_the_transports_to_one_server_apart() -> None:
    foundations = set()
    for transport in (ClientTransport.TCP, ClientTransport.TLS):
        world = StreamWorld()
        agent = world.add_agent(True, "192.0.2.1", transport)
        assert world.run(world.gathered, 10.0)
        foundations |= {
            local.candidate.foundation
            for local in agent.local_candidates
            if local.candidate.type is CandidateType.RELAYED
        }
    assert len(foundations) == 2


def test_local_preferences_are_unique_per_stream_component_and_type() -> None:
    preferences = LocalPreferences()
    relay = CandidateType.RELAYED
    wanted = relay_local_preference(0xFFFF, ClientTransport.UDP)
    assert wanted == 0xFFFF  # a UDP relay keeps its base's preference
    assert relay_local_preference(0xFFFF, ClientTransport.TCP) == 0xBFFF
    assert relay_local_preference(0xFFFE, ClientTransport.TLS) == 0x7FFE
    taken = [preferences.take(0, 1, relay, wanted) for _ in range(3)]
    assert taken == [0xFFFF, 0xFFFE, 0xFFFD]
    assert preferences.take(0, 2, relay, wanted) == 0xFFFF  # another component
    assert preferences.take(0, 1, CandidateType.SERVER_REFLEXIVE, wanted) == 0xFFFF
    preferences.release(0, 1, relay, 0xFFFE)
    assert preferences.take(0, 1, relay, wanted) == 0xFFFE
    assert [preferences.take(0, 3, relay, 1) for _ in range(3)] == [1, 0, 2]


def channel_data(number: int, body: bytes) -> bytes:
    return number.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


#: Frames a TURN connection may bring: anything, ChannelData on any channel, STUN-looking bytes.
FRAMES = st.one_of(
    st.binary(max_size=120),
    st.builds(channel_data, st.integers(0x4000, 0x4FFF), st.binary(max_size=64)),
    st.builds(
        bytes.__add__,
        st.sampled_from([b"\x01\x01", b"\x01\x11", b"\x00\x17"]),
        st.binary(max_size=80),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(FRAMES, max_size=20),
    labels=st.lists(st.integers(0x10000, 0x10003), min_size=1, max_size=4),
    closes=st.lists(st.booleans(), max_size=4),
)
def test_whatever_a_turn_connection_brings_never_escapes(
    frames: list[bytes], labels: list[int], closes: list[bool]
) -> None:
    """Frames of any content on a stream label (known or not), connections reported open or
    closed in any order, time passing: nothing raises, and the agent keeps its bounds."""
    world = StreamWorld()
    agent = world.add_agent(True, "192.0.2.1")
    assert world.run(world.gathered, 10.0)
    for index, frame in enumerate(frames):
        label = Address("192.0.2.1", labels[index % len(labels)])
        agent.receive_datagram(frame, label, SERVER, world.now)
    for index, close in enumerate(closes):
        label = Address("192.0.2.1", labels[index % len(labels)])
        if close:
            agent.relay_stream_closed(label, world.now, "reset")
        else:
            agent.relay_stream_connected(label, world.now)
    world.run(lambda: False, 5.0)
    assert len(agent.relay_stream_commands()) <= 2
    sizes = agent.table_sizes()
    assert sizes.local_candidates <= 3


@pytest.mark.parametrize(
    ("data", "relayed"),
    [
        (b"\x40\x00\x00\x04abcd", True),  # ChannelData
        (b"\x00\x16\x00\x00" + bytes(16), True),  # a Send indication
        (b"\x00\x03\x00\x00" + bytes(16), False),  # an Allocate request
        (b"\x00\x04\x00\x00" + bytes(16), False),  # a Refresh request
        (b"\x00\x09\x00\x00" + bytes(16), False),  # a ChannelBind request
        (b"", False),
    ],
)
def test_only_relayed_data_is_dropped_when_a_connection_is_full(data: bytes, relayed: bool) -> None:
    assert is_relayed_data(data) is relayed
