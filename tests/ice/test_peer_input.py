"""Peer input never escapes the agent, and no peer grows its tables past their bounds (issue 8 §2).

Each test feeds one kind of out-of-range or excessive input — validly signed, so that it reaches
the code that acts on it — and asserts what the agent made of it: the value clamped or dropped,
the reason counted in ``failures.peer_input``, the tables measured by ``table_sizes()``. The
hypothesis version of the same is tests/properties/test_ice_signed.py.
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace

from ice.agent import Agent
from ice.candidate import MAX_PRIORITY, Candidate, CandidateType
from ice.config import AgentConfig, Policy
from ice.events import DataReceived, RemoteCandidateLearned
from ice.stats import PeerInput
from stun.address import Address
from stun.attributes import AttrType, Priority, UnknownAttribute, XorMappedAddress
from stun.message import Message, MessageClass
from tests.properties.ice_signed import sign, signed_check_from

from .machine_pair import A_ADDRESS, B_ADDRESS, connect, make_agent, pair_of

PEER_UFRAG, PEER_PWD = "peer", "p" * 22


def controlled_agent(**options: object) -> Agent:
    config = AgentConfig(controlling=False, rng=random.Random(5), **options)  # type: ignore[arg-type]
    agent = Agent(config)
    agent.add_base(0, 1, A_ADDRESS)
    agent.gather(0.0)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    while agent.next_event() is not None:
        pass
    return agent


def check(agent: Agent, number: int, priority: int | None = None) -> bytes:
    attributes = (
        []
        if priority is None
        else [UnknownAttribute(AttrType.PRIORITY, priority.to_bytes(4, "big"))]
    )
    return signed_check_from(
        attributes, agent.local_username, agent.local_password, number.to_bytes(12, "big")
    )


def answers(agent: Agent, now: float = 0.0) -> list[Message]:
    return [
        message
        for d in agent.datagrams_to_send(now)
        if d.data[0] < 4
        and (message := Message.decode(d.data)).message_class is not MessageClass.REQUEST
    ]


def test_priority_zero_or_above_31_bits_from_a_new_address_is_clamped() -> None:
    """The issue's reproduction: these raised LocalProtocolError out of receive_datagram."""
    agent = controlled_agent()
    for number, (priority, expected) in enumerate(
        [(0, 1), (2**31, MAX_PRIORITY), (2**32 - 1, MAX_PRIORITY), (None, 1), (7, 7)]
    ):
        source = Address("198.51.100.1", 1000 + number)
        agent.receive_datagram(check(agent, number, priority), A_ADDRESS, source, 0.0)
        candidate = agent.remote_candidates.find(0, 1, source)
        assert candidate is not None and candidate.priority == expected
    assert agent.failures.peer_input[PeerInput.PRIORITY_CLAMPED] == 4
    assert all(m.message_class is MessageClass.SUCCESS_RESPONSE for m in answers(agent))


def test_a_flood_of_peer_reflexive_checks_stays_at_the_bounds() -> None:
    """Every check from a new address used to add a remote candidate, even with the check list
    full. Now the table stops at max_remote_candidates and the rest is counted."""
    agent = controlled_agent()
    config = agent.config
    flood = 2000
    for number in range(flood):
        source = Address("198.51.100.1" if number % 2 else "203.0.113.1", 1024 + number)
        agent.receive_datagram(check(agent, number, 1 + number), A_ADDRESS, source, 0.0)
    sizes = agent.table_sizes()
    assert sizes.remote_candidates == config.max_remote_candidates == 100
    assert sizes.pairs == config.max_pairs == 100
    assert sizes.triggered <= sizes.pairs
    assert sizes.recent_requests == 256
    assert sizes.checked_paths == config.max_pairs  # the paths whose data is taken
    assert agent.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] == flood - 100
    learned = [e for e in iter(agent.next_event, None) if isinstance(e, RemoteCandidateLearned)]
    assert len(learned) == 100
    # Every check was still answered: the bound limits what we learn, not what we say.
    assert len(answers(agent)) == flood


def test_trickled_candidates_stop_at_the_bound_and_odd_ones_are_dropped() -> None:
    agent = controlled_agent(max_remote_candidates=10)

    def host(address: str, port: int, component: int = 1) -> Candidate:
        return Candidate("f", component, "udp", 100, address, port, CandidateType.HOST)

    agent.add_remote_candidate(host("198.51.100.1", 1, component=2))  # we have one component
    agent.add_remote_candidate(host("0.0.0.0", 1))  # this very host
    agent.add_remote_candidate(host("224.0.0.251", 5353))
    agent.add_remote_candidate(host("198.51.100.1", 0))
    for port in range(1, 51):
        agent.add_remote_candidate(host("198.51.100.1", port))
    counted = agent.failures.peer_input
    assert counted[PeerInput.UNKNOWN_COMPONENT] == 1
    assert counted[PeerInput.UNUSABLE_ADDRESS] == 3
    assert counted[PeerInput.REMOTE_CANDIDATES_FULL] == 40
    assert agent.table_sizes().remote_candidates == 10
    assert "remote-candidates-full 40" in agent.failure_reason()


def responses_to_checks(agent: Agent, mapped: list[Address]) -> None:
    """Answer the agent's checks in turn, each with the next XOR-MAPPED-ADDRESS."""
    now = 0.0
    for address in mapped:
        now += 0.05
        agent.handle_timer(now)
        requests = [d for d in agent.datagrams_to_send(now) if d.data[0] < 4]
        for request in requests:
            message = Message.decode(request.data)
            if message.message_class is not MessageClass.REQUEST:
                continue
            response = message.success_response([XorMappedAddress(address)])
            assert request.local is not None
            agent.receive_datagram(sign(response, PEER_PWD), request.local, request.remote, now)


def test_mapped_addresses_of_the_other_family_or_past_the_bound_make_no_local_candidate() -> None:
    agent = controlled_agent(max_local_peer_reflexive=3, max_pairs=20)
    for port in range(1, 21):
        agent.add_remote_candidate(
            Candidate("r", 1, "udp", 100 + port, "198.51.100.9", port, CandidateType.HOST)
        )
    agent.start_checks(0.0)
    mapped = [Address("2001:db8::5", 1), *(Address("203.0.113.5", p) for p in range(2, 21))]
    responses_to_checks(agent, mapped)
    counted = agent.failures.peer_input
    assert counted[PeerInput.MAPPED_ADDRESS_FAMILY] == 1
    assert counted[PeerInput.LOCAL_PEER_REFLEXIVE_FULL] == 19 - 3
    sizes = agent.table_sizes()
    assert (sizes.local_peer_reflexive, sizes.local_candidates) == (3, 1 + 3)
    # The checks still proved their paths: every pair is valid all the same.
    assert sizes.valid_pairs == 20


def test_relay_only_agent_does_not_answer_checks_on_a_host_socket() -> None:
    agent = controlled_agent(policy=Policy.RELAY)
    agent.receive_datagram(check(agent, 1, 5), A_ADDRESS, B_ADDRESS, 0.0)
    assert answers(agent) == []
    assert agent.failures.peer_input[PeerInput.RELAY_POLICY] == 1
    assert agent.table_sizes().remote_candidates == 0


def test_a_consent_response_is_checked_with_the_password_its_check_was_signed_with() -> None:
    """After a restart the peer's old password is gone from the agent; a consent check still in
    flight must not then accept a response keyed with nothing (anyone can compute that)."""
    a, b, wire = pair_of()
    connect(a, b, wire, until=2.0)
    while (deadline := a.get_timer()) is not None and not (
        consent := [d for d in a.datagrams_to_send(deadline) if d.data[0] < 4]
    ):
        a.handle_timer(deadline)
    (request,) = consent
    assert deadline is not None
    old_password = b.local_password
    a.restart(deadline)
    selected = a.selected_pair()
    assert selected is not None
    before = selected.responses_received
    answer = Message.decode(request.data).success_response([XorMappedAddress(A_ADDRESS)])
    assert request.local is not None
    a.receive_datagram(sign(answer, ""), request.local, request.remote, deadline)
    assert selected.responses_received == before
    a.receive_datagram(sign(answer, old_password), request.local, request.remote, deadline)
    assert selected.responses_received == before + 1


def test_a_peer_reflexive_candidate_keeps_the_priority_its_check_carried() -> None:
    agent = controlled_agent()
    data = Message.decode(check(agent, 1, 1234))
    assert data.get(Priority) == Priority(1234)
    agent.receive_datagram(check(agent, 1, 1234), A_ADDRESS, B_ADDRESS, 0.0)
    candidate = agent.remote_candidates.find(0, 1, B_ADDRESS)
    assert candidate is not None and candidate.priority == 1234
    assert not agent.failures.peer_input


# --------------------------------------------------------------------------- whose data is taken

STRANGER = Address("203.0.113.66", 4444)


def delivered(agent: Agent, data: bytes, local: Address, remote: Address, now: float) -> bool:
    """Feed one datagram of application data; whether it reached the application."""
    while agent.next_event() is not None:
        pass
    agent.receive_datagram(data, local, remote, now)
    return any(isinstance(e, DataReceived) and e.data == data for e in iter(agent.next_event, None))


def test_data_from_the_remote_of_a_valid_pair_is_taken_before_selection() -> None:
    """RFC 8445 §12.1: the peer may send on any valid pair before selected pairs exist; the
    data is the peer's (and counted on the pair). A stranger's is dropped and counted."""
    a, b, wire = pair_of()
    connect(a, b, wire, until=0.0)
    for _ in range(10_000):
        if b.nomination.has_valid(0, 1) and b.selected_pair() is None:
            break
        assert wire.step()
    else:
        raise AssertionError("B never had a valid pair without a selected one")
    (valid,) = b.nomination.valid_pairs(0, 1)
    assert valid.remote.address == A_ADDRESS
    assert delivered(b, b"\x80early", B_ADDRESS, A_ADDRESS, wire.now)
    assert valid.bytes_received == len(b"\x80early")
    assert not delivered(b, b"\x80stranger", B_ADDRESS, STRANGER, wire.now)
    assert b.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER] == 1


def test_data_on_a_path_the_peers_check_proved_is_taken_before_our_check_succeeds() -> None:
    """The peer's check of a pair succeeds before ours: it may send data on it already. The
    authenticated check proves the path; an unsigned one, or another port, proves nothing."""
    agent = controlled_agent()
    peer = Address("198.51.100.1", 7000)
    assert not delivered(agent, b"\x80too early", A_ADDRESS, peer, 0.0)
    agent.receive_datagram(
        signed_check_from([], "nobody", "x" * 22, bytes(12)), A_ADDRESS, peer, 0.0
    )
    assert not delivered(agent, b"\x80unsigned", A_ADDRESS, peer, 0.0)
    agent.receive_datagram(check(agent, 1, 100), A_ADDRESS, peer, 0.0)
    pair = agent.checklists[0].find(A_ADDRESS, peer)
    assert pair is not None and not pair.valid  # our triggered check has not been answered
    assert delivered(agent, b"\x80data", A_ADDRESS, peer, 0.0)
    assert pair.bytes_received == len(b"\x80data")
    assert not delivered(agent, b"\x80other port", A_ADDRESS, Address(peer.host, 7001), 0.0)
    assert agent.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER] == 3


def test_an_ice_lite_agent_takes_data_from_a_peer_that_checked_it() -> None:
    """A lite agent keeps no pair until it is nominated; the peer's check still proves the
    path its data comes on (RFC 8445 §12.1 allows data on a valid pair before nomination)."""
    lite = make_agent(False, A_ADDRESS, 3, lite=True)
    peer = Address("198.51.100.1", 7000)
    lite.receive_datagram(check(lite, 1, 100), A_ADDRESS, peer, 0.0)
    assert lite.selected_pair() is None
    assert delivered(lite, b"\x80data", A_ADDRESS, peer, 0.0)
    assert not delivered(lite, b"\x80stranger", A_ADDRESS, STRANGER, 0.0)


def test_a_restart_forgets_the_paths_the_previous_checks_proved() -> None:
    a, b, wire = pair_of()
    connect(a, b, wire)
    assert delivered(b, b"\x80selected", B_ADDRESS, A_ADDRESS, wire.now)
    b.receive_datagram(check(b, 9, 100), B_ADDRESS, STRANGER, wire.now)  # an old-generation path
    assert delivered(b, b"\x80checked", B_ADDRESS, STRANGER, wire.now)
    b.restart(wire.now)
    assert delivered(b, b"\x80selected", B_ADDRESS, A_ADDRESS, wire.now)  # data flows on
    assert not delivered(b, b"\x80checked", B_ADDRESS, STRANGER, wire.now)


def test_datagrams_too_short_for_a_stun_header_are_counted_not_raised() -> None:
    """One byte that could start a Binding request or response (0x00, 0x01) raised IndexError
    out of the lean readers' quick test of the first two bytes."""
    agent = controlled_agent()
    for data in (b"\x00", b"\x01", b"\x00\x01", b"\x01\x01", b"\x00\x01\x00"):
        agent.receive_datagram(data, A_ADDRESS, B_ADDRESS, 0.0)
    assert agent.failures.malformed == 5


def test_binding_requests_whose_size_is_no_multiple_of_four_are_counted_not_raised() -> None:
    """A valid header whose length field matches a size that is no multiple of four: the lean
    reader's walk over the attributes read past the end (struct.error out of
    receive_datagram); the typed decoder refuses it as malformed."""
    agent = controlled_agent()
    for size in (22, 26, 43):
        header = struct.pack("!HHI12s", 0x0001, size - 20, 0x2112A442, bytes(12))
        agent.receive_datagram(header + b"\x00\x06" + bytes(size - 22), A_ADDRESS, B_ADDRESS, 0.0)
    assert agent.failures.malformed == 3


def test_each_stream_has_its_own_bound_of_remote_candidates_and_a_restart_resets_it() -> None:
    """The bound is per stream: a peer that fills one stream's table leaves the other's room,
    and a restart, which forgets the remote candidates, gives the room back."""
    config = AgentConfig(controlling=False, rng=random.Random(5), streams=(1, 1))
    agent = Agent(replace(config, max_remote_candidates=3))
    agent.add_base(0, 1, A_ADDRESS)
    agent.add_base(1, 1, Address("192.0.2.1", 5001))
    agent.gather(0.0)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)

    def host(port: int) -> Candidate:
        return Candidate("f", 1, "udp", 100, "198.51.100.1", port, CandidateType.HOST)

    for port in range(1, 6):
        agent.add_remote_candidate(host(port), stream=0)
    agent.add_remote_candidate(host(9), stream=1)
    assert agent.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] == 2
    assert agent.remote_candidates.full(0) and not agent.remote_candidates.full(1)
    assert agent.remote_candidates.find(1, 1, Address("198.51.100.1", 9)) is not None
    agent.restart(1.0)
    assert not agent.remote_candidates.full(0) and len(agent.remote_candidates) == 0
    for port in range(1, 4):
        agent.add_remote_candidate(host(port), stream=0)
    assert agent.remote_candidates.full(0) and not agent.remote_candidates.full(1)
    assert agent.failures.peer_input[PeerInput.REMOTE_CANDIDATES_FULL] == 2
