"""A check's PRIORITY is the priority a peer-reflexive candidate of its base would have (RFC 8445
§7.2.2, §5.1.2.1): the type preference of a peer-reflexive candidate, the local preference of the
base (:meth:`ice.gather.Gatherer.local_preference`) and the component — for every base, of both
families and of several components, whatever shortcut the agent takes to it."""

from __future__ import annotations

import random

import pytest

from ice.agent import Agent
from ice.candidate import TYPE_PREFERENCE, CandidateType, candidate_priority
from ice.config import AgentConfig
from stun.address import Address
from stun.attributes import Priority
from stun.datagram import Machine
from stun.message import Message, MessageClass

from .machine_pair import Wire, connect

IPV4 = (
    [(1, Address("192.0.2.1", 5000)), (2, Address("192.0.2.1", 5001))],
    [(1, Address("198.51.100.2", 6000)), (2, Address("198.51.100.2", 6001))],
)
BOTH = (
    [
        (1, Address("192.0.2.1", 5000)),
        (1, Address("2001:db8::1", 5000)),
        (2, Address("192.0.2.1", 5001)),
        (2, Address("2001:db8::1", 5001)),
    ],
    [
        (1, Address("198.51.100.2", 6000)),
        (1, Address("2001:db8::2", 6000)),
        (2, Address("198.51.100.2", 6001)),
        (2, Address("2001:db8::2", 6001)),
    ],
)


def _agent(controlling: bool, bases: list[tuple[int, Address]], seed: int) -> Agent:
    agent = Agent(AgentConfig(controlling=controlling, streams=(2,), rng=random.Random(seed)))
    for component, address in bases:
        agent.add_base(0, component, address)
    agent.gather(0.0)
    return agent


@pytest.mark.parametrize("bases", [IPV4, BOTH], ids=["ipv4", "ipv4-and-ipv6"])
def test_every_check_carries_the_peer_reflexive_priority_of_its_base(
    bases: tuple[list[tuple[int, Address]], list[tuple[int, Address]]],
) -> None:
    a_bases, b_bases = bases
    a, b = _agent(True, a_bases, 1), _agent(False, b_bases, 2)
    a_addresses = {address for _, address in a_bases}
    machines: dict[Address, Machine] = {address: a for address in a_addresses}
    wire = Wire(machines | {address: b for _, address in b_bases})
    connect(a, b, wire)
    checked = set()
    for datagram in wire.sent:
        message = Message.decode(datagram.data)
        if message.message_class is not MessageClass.REQUEST:
            continue
        assert datagram.local is not None
        agent = a if datagram.local in a_addresses else b
        base = agent.gatherer.on_base(datagram.local)
        assert base is not None
        priority = message.get(Priority)
        assert priority is not None
        assert priority.value == candidate_priority(
            TYPE_PREFERENCE[CandidateType.PEER_REFLEXIVE],
            agent.gatherer.local_preference(datagram.local),
            base.candidate.component,
        )
        checked.add((agent is a, base.candidate.component))
    # Both agents checked from bases of both components.
    assert checked == {(True, 1), (True, 2), (False, 1), (False, 2)}
