"""Whatever arrives on its TCP connections never escapes the ICE agent, and no peer grows its
connection table past the bound (ICE-TCP, RFC 6544; ice/tcp.py).

An agent with TCP bases, in either role, plays against a random script: peers connect from a few
addresses; bytes arrive on any connection, cut anywhere — garbage, RFC 4571 frames of any length
(huge ones announced and never sent), checks signed with our credentials and with others, data
before and after a check; connections the agent opened are established or refused, connections
close, remote TCP candidates of every direction are signalled, time passes. Nothing may raise;
after every step the connections stay within ``max_tcp_connections`` and the attempts within
``max_tcp_connecting``, every command names a connection the agent knows of, and the agent's other
tables stay within their bounds.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ice.agent import Agent
from ice.candidate import Candidate, CandidateType, TcpType
from ice.config import AgentConfig
from ice.tcp import OpenTcp, TcpCommand
from stun.address import Address
from stun.framing import frame_rfc4571

from .ice_signed import signed_check_from, signed_checks

OURS, OUR_PWD = "ours", "o" * 22
BASES = (Address("192.0.2.1", 7000), Address("2001:db8::1", 7000))
SO_BASE = Address("192.0.2.1", 8000)
PEERS = [
    Address("198.51.100.7", 40000),
    Address("198.51.100.7", 40001),
    Address("2001:db8::7", 40000),
    Address("198.51.100.8", 9),
]
LIMITS = {"max_tcp_connections": 3, "max_tcp_connecting": 2, "max_pairs": 6}


def agent_in(controlling: bool, seed: int) -> Agent:
    agent = Agent(
        AgentConfig(
            controlling=controlling,
            rng=random.Random(seed),
            local_username=OURS,
            local_password=OUR_PWD,
            tcp_types=(TcpType.ACTIVE, TcpType.PASSIVE, TcpType.SIMULTANEOUS_OPEN),
            tcp_connect_timeout=2.0,
            **LIMITS,  # type: ignore[arg-type]
        )
    )
    agent.add_base(0, 1, Address("192.0.2.1", 5000))
    for base in BASES:
        agent.add_tcp_base(0, 1, base)
    agent.add_tcp_base(0, 1, SO_BASE, simultaneous_open=True)
    agent.gather(0.0)
    agent.set_remote_credentials("peer", "p" * 22)
    agent.start_checks(0.0)
    return agent


def remote_candidates() -> st.SearchStrategy[Candidate]:
    return st.builds(
        lambda address, tcp_type, priority: Candidate(
            "r",
            1,
            "tcp",
            priority,
            address.host,
            address.port,
            CandidateType.HOST,
            tcp_type=tcp_type,
        ),
        st.sampled_from([*PEERS, Address("198.51.100.9", 7000)]),
        st.sampled_from(list(TcpType)),
        st.integers(1, 2**31 - 1),
    )


def stream_bytes() -> st.SearchStrategy[bytes]:
    """What a peer may write: garbage, frames of anything, signed checks, huge announcements."""
    signed = st.one_of(
        signed_checks(OURS, OUR_PWD),
        st.builds(
            lambda tid: signed_check_from([], OURS, "x" * 22, tid),
            st.binary(min_size=12, max_size=12),
        ),
    )
    frames = st.one_of(
        signed.map(frame_rfc4571),
        st.binary(max_size=64).map(frame_rfc4571),
        st.integers(0, 0xFFFF).map(lambda size: size.to_bytes(2, "big")),
    )
    return st.one_of(st.binary(max_size=80), st.lists(frames, max_size=4).map(b"".join))


steps = st.one_of(
    st.tuples(st.just("accept"), st.sampled_from((*BASES, SO_BASE)), st.sampled_from(PEERS)),
    st.tuples(st.just("feed"), st.integers(0, 7), stream_bytes(), st.integers(0, 80)),
    st.tuples(st.just("close"), st.integers(0, 7)),
    st.tuples(st.just("connected"), st.integers(0, 7)),
    st.tuples(st.just("candidate"), remote_candidates()),
    st.tuples(st.just("time"), st.floats(0.0, 5.0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.integers(0, 2**16), st.lists(steps, max_size=30))
def test_nothing_a_peer_writes_escapes_and_connections_stay_bounded(
    controlling: bool, seed: int, script: list[tuple[object, ...]]
) -> None:
    agent = agent_in(controlling, seed)
    now = 0.0
    known: list[int] = []  # every connection id the agent gave or asked for, in order
    opening: list[int] = []
    for step in script:
        kind = step[0]
        if kind == "accept":
            connection = agent.tcp_accepted(step[1], step[2], now)  # type: ignore[arg-type]
            if connection is not None:
                known.append(connection)
        elif kind == "feed" and known:
            connection = known[step[1] % len(known)]  # type: ignore[operator]
            data, cut = step[2], step[3]
            for piece in (data[:cut], data[cut:]):  # type: ignore[index]
                agent.receive_stream(connection, piece, now)
        elif kind == "close" and known:
            agent.tcp_closed(known[step[1] % len(known)], now, "reset")  # type: ignore[operator]
        elif kind == "connected" and opening:
            agent.tcp_connected(opening[step[1] % len(opening)], now)  # type: ignore[operator]
        elif kind == "candidate":
            agent.add_remote_candidate(step[1])  # type: ignore[arg-type]
        elif kind == "time":
            now += step[1]  # type: ignore[operator]
            agent.handle_timer(now)
        agent.datagrams_to_send(now)
        commands: list[TcpCommand] = agent.tcp_commands()
        for command in commands:
            if isinstance(command, OpenTcp):
                opening.append(command.connection)
                known.append(command.connection)
            assert command.connection in known
        sizes = agent.table_sizes()
        assert sizes.tcp_connections <= LIMITS["max_tcp_connections"]
        assert agent.tcp.connecting <= LIMITS["max_tcp_connecting"]
        assert sizes.pairs <= LIMITS["max_pairs"]
        assert sizes.remote_candidates <= agent.config.max_remote_candidates
        while agent.next_event() is not None:
            pass
