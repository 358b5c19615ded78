"""ICE-TCP (RFC 6544) in the sans-IO agent, driven by hand: TCP candidates and their priorities,
pairing by direction, the commands that open, write and close connections, checks on them, and
what a peer cannot do to the agent through them (ice/tcp.py's bounds and peer-input rules)."""

from __future__ import annotations

from typing import Any

import pytest

from ice.agent import Agent
from ice.candidate import Candidate, CandidateType, TcpType
from ice.checklist import PairState
from ice.errors import LocalProtocolError
from ice.events import RemoteCandidateLearned
from ice.stats import PeerInput, TcpOutcome
from ice.tcp import FIRST_FRAME_LIMIT, MAX_WAITING_FRAMES, OpenTcp, WriteTcp
from stun.address import Address
from stun.attributes import XorMappedAddress
from stun.message import MessageClass

from .tcp_peer import (
    PEER,
    TCP_BASE,
    UDP_BASE,
    closed,
    commands,
    framed,
    opened,
    remote_tcp,
    signed_check,
    tcp_agent,
    written,
)

# ====================================================================== candidates and pairs


def test_a_tcp_base_gives_a_passive_and_an_active_candidate_below_the_udp_one() -> None:
    agent = tcp_agent()
    udp, passive, active = (local.candidate for local in agent.local_candidates)
    assert (udp.transport, udp.address) == ("udp", UDP_BASE)
    assert (passive.tcp_type, passive.address, passive.base) == (
        TcpType.PASSIVE,
        TCP_BASE,
        TCP_BASE,
    )
    # An active candidate has no port of its own: it is signalled with port 9 (RFC 6544 §4.5).
    assert (active.tcp_type, active.address, active.base) == (
        TcpType.ACTIVE,
        Address(TCP_BASE.host, 9),
        TCP_BASE,
    )
    assert active.foundation == passive.foundation != udp.foundation
    # Type preference 90 (below UDP's 126 for host), local preference 2^13 * direction-pref +
    # other-pref with active 6 above passive 4 (RFC 6544 §4.2).
    assert active.priority >> 24 == passive.priority >> 24 == 90
    assert (active.priority >> 8) & 0xFFFF == 6 * 8192 + 8191
    assert (passive.priority >> 8) & 0xFFFF == 4 * 8192 + 8191
    assert udp.priority > active.priority > passive.priority


def test_a_simultaneous_open_base_gives_an_so_candidate_when_asked() -> None:
    agent = tcp_agent(tcp_types=("so", "passive"))
    agent.add_tcp_base(0, 1, Address("192.0.2.1", 8000), simultaneous_open=True)
    agent.restart(1.0)  # a base declared after gathering is gathered at the next restart
    kinds = [(c.candidate.tcp_type, c.candidate.port) for c in agent.local_candidates]
    assert kinds == [(None, 5000), (TcpType.PASSIVE, 7000), (TcpType.SIMULTANEOUS_OPEN, 8000)]


def test_a_tcp_base_must_not_share_an_address_with_another_base() -> None:
    agent = tcp_agent()
    with pytest.raises(LocalProtocolError, match="declared already"):
        agent.add_tcp_base(0, 1, UDP_BASE)


@pytest.mark.parametrize(
    ("remote_type", "local_types"),
    [
        (TcpType.PASSIVE, {TcpType.ACTIVE}),
        (TcpType.ACTIVE, {TcpType.PASSIVE}),
        (TcpType.SIMULTANEOUS_OPEN, set()),  # we offer no S-O candidate
    ],
)
def test_tcp_candidates_pair_by_direction_never_passive_with_passive(
    remote_type: TcpType, local_types: set[TcpType]
) -> None:
    agent = tcp_agent()
    agent.add_remote_candidate(remote_tcp(Address("198.51.100.7", 9000), remote_type))
    pairs = list(agent.checklists[0])
    assert {pair.local.tcp_type for pair in pairs} == local_types
    assert all(pair.local.transport == "tcp" for pair in pairs)


def test_remote_tcp_candidates_are_ignored_without_ice_tcp() -> None:
    agent = tcp_agent(tcp_types=())
    assert [c.candidate.transport for c in agent.local_candidates] == ["udp"]
    agent.add_remote_candidate(remote_tcp(Address("198.51.100.7", 9000), TcpType.PASSIVE))
    assert not agent.remote_candidates and not list(agent.checklists[0])
    assert agent.failures.peer_input[PeerInput.TCP_CANDIDATE_IGNORED] == 1


def test_a_remote_udp_and_tcp_candidate_may_share_an_address() -> None:
    agent = tcp_agent()
    address = Address("198.51.100.7", 9000)
    host = CandidateType.HOST
    agent.add_remote_candidate(Candidate("u", 1, "udp", 2_000_000_000, *address, host))
    agent.add_remote_candidate(remote_tcp(address, TcpType.PASSIVE))
    assert len(agent.remote_candidates) == 2
    assert sorted(p.local.transport for p in agent.checklists[0]) == ["tcp", "udp"]


# ====================================================================== our connections

REMOTE_PASSIVE = Address("198.51.100.7", 9000)


def checking_a_passive_candidate(**config: Any) -> tuple[Agent, OpenTcp]:
    """An agent whose first check is of its active candidate with the peer's passive one at
    :data:`REMOTE_PASSIVE`: the connection it asks to open for it."""
    agent = tcp_agent(**config)
    agent.add_remote_candidate(remote_tcp(REMOTE_PASSIVE, TcpType.PASSIVE))
    agent.start_checks(0.0)
    agent.handle_timer(0.0)
    [open_command] = opened(commands(agent))
    return agent, open_command


def test_the_active_side_opens_the_connection_as_part_of_the_check() -> None:
    agent, open_command = checking_a_passive_candidate()
    assert (open_command.local, open_command.remote) == (TCP_BASE, REMOTE_PASSIVE)
    assert not open_command.simultaneous_open
    [pair] = agent.checklists[0]
    assert pair.state is PairState.IN_PROGRESS
    # The check waits for the connection, then goes out framed (RFC 4571) on it.
    agent.tcp_connected(open_command.connection, 0.02)
    sent = commands(agent, 0.02)
    [request] = written(sent, open_command.connection)
    assert request.message_class is MessageClass.REQUEST
    # Answered on the connection: the pair succeeds; TCP checks learn no local prflx candidate.
    response = request.success_response([XorMappedAddress(Address("203.0.113.9", 40000))])
    agent.receive_stream(
        open_command.connection, framed(response.encode(key=b"p" * 22, fingerprint=True)), 0.04
    )
    assert pair.state is PairState.SUCCEEDED and pair.valid
    assert len(agent.local_candidates) == 3
    # One connection per pair: the next check of the pair (the nomination) reuses it.
    agent.handle_timer(2.0)
    later = commands(agent, 2.0)
    assert not opened(later)


def test_a_check_over_tcp_is_sent_once_and_fails_after_ti() -> None:
    agent, open_command = checking_a_passive_candidate()
    agent.tcp_connected(open_command.connection, 0.0)
    sent = commands(agent)
    for now in range(1, 40):  # RFC 8489 §6.2.2: TCP does the retransmitting, STUN does not
        agent.handle_timer(float(now))
        sent += commands(agent, float(now))
    assert len(written(sent, open_command.connection)) == 1
    [pair] = agent.checklists[0]
    assert pair.state is PairState.IN_PROGRESS and agent.get_timer() == 39.5
    agent.handle_timer(39.5)  # Ti
    assert pair.state is PairState.FAILED and pair.failure == "timeout"


def test_a_refused_connection_fails_the_pair_at_once() -> None:
    agent, open_command = checking_a_passive_candidate()
    agent.tcp_closed(open_command.connection, 0.03, "refused")
    [pair] = agent.checklists[0]
    assert pair.state is PairState.FAILED
    assert pair.failure is not None and "could not be opened: refused" in pair.failure
    assert agent.failures.tcp[TcpOutcome.REFUSED] == 1
    assert not agent.outgoing.in_flight
    assert "refused 1" in agent.failure_reason()


def test_a_connection_not_established_in_time_is_given_up() -> None:
    agent, open_command = checking_a_passive_candidate(tcp_connect_timeout=3.0)
    agent.handle_timer(2.9)
    assert not closed(commands(agent, 2.9))
    agent.handle_timer(3.0)
    assert closed(commands(agent, 3.0)) == {open_command.connection}
    [pair] = agent.checklists[0]
    assert pair.state is PairState.FAILED
    assert agent.failures.tcp[TcpOutcome.CONNECT_TIMEOUT] == 1


def test_connection_attempts_are_capped() -> None:
    agent = tcp_agent(max_tcp_connecting=3)
    for index in range(8):
        agent.add_remote_candidate(
            remote_tcp(Address("198.51.100.7", 9000 + index), TcpType.PASSIVE, f"r{index}")
        )
    agent.start_checks(0.0)
    attempts: list[OpenTcp] = []
    now = 0.0
    for _ in range(40):  # 2 s of Ta slots
        agent.handle_timer(now)
        attempts += opened(commands(agent, now))
        now += agent.config.pacing
    assert len(attempts) == 3  # the other pairs wait for an attempt to end
    agent.tcp_closed(attempts[0].connection, now, "refused")
    agent.handle_timer(now + 0.05)
    assert len(opened(commands(agent, now + 0.05))) == 1


def test_what_waits_for_a_connection_is_bounded() -> None:
    agent, open_command = checking_a_passive_candidate()
    [pair] = agent.checklists[0]
    for _ in range(MAX_WAITING_FRAMES + 5):
        agent.outgoing.send(pair, 0.0, use_candidate=False)
    commands(agent)
    assert agent.failures.tcp[TcpOutcome.SEND_DROPPED] == 6
    agent.tcp_connected(open_command.connection, 0.1)
    assert len(written(commands(agent, 0.1), open_command.connection)) == MAX_WAITING_FRAMES


# ====================================================================== connections we accept


def test_an_accepted_connection_brings_a_peer_reflexive_active_candidate() -> None:
    """A browser connects from an ephemeral port to our passive candidate: it becomes a
    peer-reflexive remote candidate with that real port (RFC 6544 §7.2.2), our answer and our
    triggered check go back on the same connection."""
    agent = tcp_agent()
    connection = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert connection is not None
    agent.receive_stream(connection, framed(signed_check(use_candidate=True)), 0.01)
    learned = [e for e in iter(agent.next_event, None) if isinstance(e, RemoteCandidateLearned)]
    [candidate] = [e.candidate for e in learned]
    assert (candidate.type, candidate.transport, candidate.tcp_type, candidate.address) == (
        CandidateType.PEER_REFLEXIVE,
        "tcp",
        TcpType.ACTIVE,
        PEER,
    )
    [response] = written(commands(agent, 0.01), connection)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.get(XorMappedAddress) == XorMappedAddress(PEER)
    agent.handle_timer(0.01)
    [triggered] = written(commands(agent, 0.01), connection)
    assert triggered.message_class is MessageClass.REQUEST
    pair = agent.checklists[0].find(TCP_BASE, PEER)
    assert pair is not None and pair.local.tcp_type is TcpType.PASSIVE
    # The check came with USE-CANDIDATE: our triggered check's success selects the pair.
    answer = triggered.success_response([XorMappedAddress(Address(*TCP_BASE))])
    agent.receive_stream(connection, framed(answer.encode(key=b"p" * 22, fingerprint=True)), 0.02)
    assert agent.selected_pair() is pair and pair.remote.address == PEER


def test_a_passive_pair_waits_for_the_peer() -> None:
    """A passive candidate cannot check (RFC 6544 §7.1): its pair with the peer's active
    candidate stays Frozen, is never sent on, and does not keep the agent busy."""
    agent = tcp_agent()
    agent.add_remote_candidate(remote_tcp(Address("198.51.100.7", 9), TcpType.ACTIVE))
    agent.add_remote_candidate(None)
    agent.start_checks(0.0)
    for now in (0.0, 0.05, 0.1):
        agent.handle_timer(now)
        assert not commands(agent, now)
    [pair] = agent.checklists[0]
    assert pair.state is PairState.FROZEN and pair.waits_for_peer
    assert not agent.outgoing.pending()
    # Nothing else to try: the agent gives the peer peer_reflexive_wait to connect, not forever.
    deadline = agent.get_timer()
    assert deadline == pytest.approx(agent.config.peer_reflexive_wait)


@pytest.mark.parametrize(
    ("stream", "outcome"),
    [
        (b"\xff\xff" + bytes(10), TcpOutcome.FRAMING),  # a 65535-byte first frame: too big
        (framed(b"\x80" + bytes(100)), TcpOutcome.UNAUTHENTICATED),  # data before any check
        (framed(signed_check(password="x" * 22)), TcpOutcome.UNAUTHENTICATED),  # wrong key
        (framed(signed_check(ufrag="else")), TcpOutcome.UNAUTHENTICATED),  # someone else's
        (framed(bytes(20)), TcpOutcome.UNAUTHENTICATED),  # no STUN message
    ],
    ids=["huge-length", "data-first", "bad-integrity", "other-ufrag", "garbage"],
)
def test_a_connection_whose_first_message_does_not_authenticate_is_closed(
    stream: bytes, outcome: TcpOutcome
) -> None:
    agent = tcp_agent()
    connection = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert connection is not None
    agent.receive_stream(connection, stream, 0.01)
    assert closed(commands(agent, 0.01)) == {connection}
    assert agent.failures.tcp[outcome] == 1
    assert len(agent.tcp) == 0 and not agent.remote_candidates
    assert FIRST_FRAME_LIMIT < 0xFFFF


def test_after_its_first_check_a_connection_carries_any_packet() -> None:
    """RFC 4571 frames any packet: once the peer authenticated, a frame that is no STUN is data
    (here on no selected pair), and half a length prefix waits for the rest."""
    agent = tcp_agent()
    connection = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert connection is not None
    agent.receive_stream(connection, framed(signed_check()), 0.01)
    commands(agent, 0.01)
    agent.receive_stream(connection, framed(b"\x80 data"), 0.02)
    agent.receive_stream(connection, b"\x00", 0.03)
    assert len(agent.tcp) == 1 and not agent.failures.tcp


def test_a_silent_connection_is_closed_after_the_timeout() -> None:
    agent = tcp_agent(tcp_connect_timeout=2.0)
    connection = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert agent.get_timer() == 2.0
    agent.handle_timer(2.0)
    assert closed(commands(agent, 2.0)) == {connection}
    assert agent.failures.tcp[TcpOutcome.SILENT] == 1


def test_an_incoming_connection_flood_is_bounded() -> None:
    agent = tcp_agent(max_tcp_connections=4)
    first = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert first is not None
    agent.receive_stream(first, framed(signed_check()), 0.0)  # authenticated: it stays
    accepted = [
        agent.tcp_accepted(TCP_BASE, Address("198.51.100.9", 30000 + index), 0.1)
        for index in range(20)
    ]
    assert all(connection is not None for connection in accepted)  # each replaces an older one
    assert len(agent.tcp) == 4
    assert agent.failures.tcp[TcpOutcome.EVICTED] == 17
    assert agent.table_sizes().tcp_connections == 4
    assert first not in closed(commands(agent, 0.1))


def test_a_full_table_of_authenticated_connections_refuses_more() -> None:
    agent = tcp_agent(max_tcp_connections=2)
    for index in range(2):
        connection = agent.tcp_accepted(TCP_BASE, Address("198.51.100.9", 30000 + index), 0.0)
        assert connection is not None
        agent.receive_stream(connection, framed(signed_check(bytes([index]) * 12)), 0.0)
    assert agent.tcp_accepted(TCP_BASE, PEER, 0.1) is None
    assert agent.failures.tcp[TcpOutcome.ACCEPT_REFUSED] == 1


def test_only_a_listening_base_accepts() -> None:
    agent = tcp_agent(tcp_types=("active",))
    assert agent.tcp_accepted(TCP_BASE, PEER, 0.0) is None  # no passive candidate there
    assert agent.tcp_accepted(Address("192.0.2.1", 7001), PEER, 0.0) is None  # no base at all
    assert agent.failures.tcp[TcpOutcome.ACCEPT_REFUSED] == 2


def test_a_message_too_long_for_a_tcp_frame_is_refused_at_send() -> None:
    agent = tcp_agent()
    connection = agent.tcp_accepted(TCP_BASE, PEER, 0.0)
    assert connection is not None
    agent.receive_stream(connection, framed(signed_check(use_candidate=True)), 0.0)
    commands(agent)  # our answer
    agent.handle_timer(0.0)
    [triggered] = written(commands(agent), connection)
    answer = triggered.success_response([XorMappedAddress(Address(*TCP_BASE))])
    agent.receive_stream(connection, framed(answer.encode(key=b"p" * 22, fingerprint=True)), 0.0)
    assert agent.selected_pair() is not None
    with pytest.raises(LocalProtocolError, match="65535"):
        agent.send(bytes(70000))
    agent.send(b"\x80" + bytes(1000))
    sent = commands(agent)
    assert [len(c.data) for c in sent if isinstance(c, WriteTcp)] == [2 + 1001]
