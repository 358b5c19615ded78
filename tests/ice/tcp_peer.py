"""An ICE agent with ICE-TCP bases on a virtual clock, and the bytes a peer writes on its TCP
connections: checks signed with the agent's credentials, framed as RFC 4571 says.

The agent is driven by hand (architecture.md §5 tier 1): the test plays the driver, so it sees
every :class:`~ice.tcp.TcpCommand` and decides every notification.
"""

from __future__ import annotations

import random
from typing import Any

from ice.agent import Agent
from ice.candidate import Candidate, CandidateType, TcpType
from ice.config import AgentConfig
from ice.tcp import CloseTcp, OpenTcp, TcpCommand, WriteTcp
from stun.address import Address
from stun.attributes import IceControlling, Priority, UseCandidate, Username
from stun.framing import Framing, StreamDecoder, frame_rfc4571
from stun.message import Message, MessageClass, Method

UDP_BASE = Address("192.0.2.1", 5000)
TCP_BASE = Address("192.0.2.1", 7000)
OUR_UFRAG, OUR_PWD = "ours", "o" * 22
PEER_UFRAG, PEER_PWD = "peer", "p" * 22
#: Where a peer connects from: the address and ephemeral port its NAT gave the connection.
PEER = Address("198.51.100.7", 40001)


def tcp_agent(**overrides: Any) -> Agent:
    """A controlled agent with one UDP and one TCP base, gathered, with the peer's credentials."""
    config = AgentConfig(
        controlling=False,
        rng=random.Random(1),
        local_username=OUR_UFRAG,
        local_password=OUR_PWD,
        **overrides,
    )
    agent = Agent(config)
    agent.add_base(0, 1, UDP_BASE)
    agent.add_tcp_base(0, 1, TCP_BASE)
    agent.gather(0.0)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    return agent


def remote_tcp(address: Address, tcp_type: TcpType, foundation: str = "r1") -> Candidate:
    """A TCP host candidate of the peer, as signalled."""
    return Candidate(
        foundation,
        1,
        "tcp",
        1_500_000_000,
        address.host,
        address.port,
        CandidateType.HOST,
        tcp_type=tcp_type,
    )


def signed_check(
    transaction_id: bytes = b"T" * 12,
    *,
    ufrag: str = OUR_UFRAG,
    password: str = OUR_PWD,
    use_candidate: bool = False,
) -> bytes:
    """A check from a controlling peer, signed with ``password`` (ours unless told)."""
    attributes = [Username(f"{ufrag}:{PEER_UFRAG}"), Priority(1_300_000_000), IceControlling(7)]
    if use_candidate:
        attributes.append(UseCandidate())
    request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
    return request.encode(key=password.encode(), fingerprint=True)


def framed(*messages: bytes) -> bytes:
    return b"".join(frame_rfc4571(message) for message in messages)


def commands(agent: Agent, now: float = 0.0) -> list[TcpCommand]:
    """What the agent asks of its driver now (its datagrams are dropped)."""
    agent.datagrams_to_send(now)
    return agent.tcp_commands()


def written(commands_: list[TcpCommand], connection: int) -> list[Message]:
    """The messages the agent wrote on ``connection``, decoded from their RFC 4571 frames."""
    decoder = StreamDecoder(Framing.RFC4571)
    frames = [
        frame
        for command in commands_
        if isinstance(command, WriteTcp) and command.connection == connection
        for frame in decoder.feed(command.data)
    ]
    return [Message.decode(frame) for frame in frames if frame[0] < 4]


def opened(commands_: list[TcpCommand]) -> list[OpenTcp]:
    return [c for c in commands_ if isinstance(c, OpenTcp)]


def closed(commands_: list[TcpCommand]) -> set[int]:
    return {c.connection for c in commands_ if isinstance(c, CloseTcp)}
