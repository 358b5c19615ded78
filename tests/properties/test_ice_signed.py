"""Validly signed peer traffic never escapes the ICE agent; no peer grows a table past its bound.

Agents in every role — controlling, controlled, ICE-lite, talking to an ICE-lite peer — with or
without the peer's credentials, are fed a random sequence of signed checks from arbitrary
addresses (``ice_signed.signed_checks``), signed responses to the checks they really sent
(``ice_signed.signed_responses``), remote candidates as a peer's SDP may describe them, application
data from anywhere, and the passing of time. Nothing may raise, and after every step each table the
peer can grow is measured against its bound (``Agent.table_sizes``). Data from an address that never
sent anything to that socket before is never delivered.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ice.agent import Agent
from ice.candidate import MAX_PRIORITY, Candidate, CandidateType
from ice.config import AgentConfig
from ice.events import DataReceived
from ice.stats import PeerInput
from stun.address import Address
from stun.attributes import AttrType, IceControlled, UnknownAttribute, XorMappedAddress
from stun.datagram import Datagram
from stun.message import Message, MessageClass

from .ice_signed import addresses, hosts, ports, signed_check_from, signed_checks, signed_responses

BASES = (
    (1, Address("192.0.2.1", 5000)),
    (1, Address("2001:db8::1", 5000)),
    (2, Address("192.0.2.1", 5001)),
)
PEER_UFRAG, PEER_PWD = "peer", "p" * 22
LIMITS = {"max_pairs": 4, "max_remote_candidates": 6, "max_local_peer_reflexive": 2}
#: A few addresses the peer comes back from, so that checks meet known pairs as well as new ones.
POOL = [Address("198.51.100.7", 4000), Address("2001:db8::7", 4000), Address("198.51.100.8", 9)]
ROLES = ["controlling", "controlled", "lite", "to-lite"]


def agent_in(role: str, credentials: bool, seed: int) -> Agent:
    agent = Agent(
        AgentConfig(
            controlling=role in ("controlling", "to-lite"),
            lite=role == "lite",
            remote_lite=role == "to-lite",
            streams=(2,),
            rng=random.Random(seed),
            **LIMITS,  # type: ignore[arg-type]
        )
    )
    for component, address in BASES:
        agent.add_base(0, component, address)
    agent.gather(0.0)
    if credentials:
        agent.set_remote_credentials(PEER_UFRAG, PEER_PWD)
        for index, address in enumerate(POOL[:2]):
            agent.add_remote_candidate(remote_candidate(index, 1, 2**30 + index, address))
        agent.start_checks(0.0)
    return agent


def remote_candidate(index: int, component: int, priority: int, address: Address) -> Candidate:
    return Candidate(
        f"r{index}", component, "udp", priority, address.host, address.port, CandidateType.HOST
    )


signalled = st.builds(
    remote_candidate,
    st.integers(0, 99),
    st.integers(1, 256),
    st.integers(1, MAX_PRIORITY),
    st.one_of(st.sampled_from(POOL), addresses),
)


def assert_bounded(agent: Agent) -> None:
    sizes = agent.table_sizes()
    assert sizes.remote_candidates <= LIMITS["max_remote_candidates"]
    assert sizes.pairs <= LIMITS["max_pairs"]
    assert sizes.valid_pairs <= LIMITS["max_pairs"] * 2  # per component
    assert sizes.local_peer_reflexive <= LIMITS["max_local_peer_reflexive"]
    assert sizes.local_candidates <= len(BASES) + LIMITS["max_local_peer_reflexive"]
    assert sizes.triggered <= sizes.pairs
    assert sizes.recent_requests <= 256
    assert sizes.checked_paths <= LIMITS["max_pairs"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(ROLES), st.booleans(), st.integers(0, 2**16))
def test_signed_checks_and_responses_never_escape(
    data: st.DataObject, role: str, credentials: bool, seed: int
) -> None:
    agent = agent_in(role, credentials, seed)
    now = 0.0
    checks_sent: list[Datagram] = []
    #: (socket, source) of everything fed to the agent so far.
    heard: set[tuple[Address, Address]] = set()
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        action = data.draw(
            st.sampled_from(["check", "check", "response", "signal", "data", "time"])
        )
        if action == "check":
            source = data.draw(st.one_of(st.sampled_from(POOL), addresses), label="from")
            _component, local = data.draw(st.sampled_from(BASES), label="to")
            check = data.draw(signed_checks(agent.local_username, agent.local_password))
            agent.receive_datagram(check, local, source, now)
            heard.add((local, source))
        elif action == "data":
            source = data.draw(st.one_of(st.sampled_from(POOL), addresses), label="from")
            _component, local = data.draw(st.sampled_from(BASES), label="to")
            payload = data.draw(st.binary(min_size=1, max_size=8).map(lambda b: b"\x80" + b))
            while agent.next_event() is not None:
                pass
            dropped = agent.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER]
            agent.receive_datagram(payload, local, source, now)
            delivered = [e for e in iter(agent.next_event, None) if isinstance(e, DataReceived)]
            counted = agent.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER] - dropped
            assert len(delivered) + counted == 1
            if (local, source) not in heard:
                assert counted == 1  # nothing ever proved this source
        elif action == "response" and checks_sent:
            request = data.draw(st.sampled_from(checks_sent), label="answering")
            assert request.local is not None
            source = data.draw(st.one_of(st.just(request.remote), addresses), label="from")
            response = data.draw(signed_responses(request.data, PEER_PWD))
            agent.receive_datagram(response, request.local, source, now)
            heard.add((request.local, source))
        elif action == "signal":
            agent.add_remote_candidate(data.draw(signalled, label="signalled"))
        else:
            now += data.draw(st.floats(0.0, 3.0), label="time passes")
            for _ in range(50):
                deadline = agent.get_timer()
                if deadline is None or deadline > now:
                    break
                agent.handle_timer(deadline)
        checks_sent += [
            d
            for d in agent.datagrams_to_send(now)
            if d.data[0] < 4 and Message.decode(d.data).message_class is MessageClass.REQUEST
        ]
        del checks_sent[:-20]
        while agent.next_event() is not None:
            pass
        assert_bounded(agent)


def answers(agent: Agent) -> list[Message]:
    return [Message.decode(d.data) for d in agent.datagrams_to_send(0.0) if d.data[0] < 4]


def test_the_strategy_signs_checks_the_agent_accepts() -> None:
    """Not a vacuous property: a check built like the strategy's is answered with a success."""
    agent = agent_in("controlling", credentials=True, seed=1)
    agent.datagrams_to_send(0.0)
    source = Address("203.0.113.9", 7000)
    check = signed_check_from(
        [UnknownAttribute(AttrType.PRIORITY, b"\x00\x00\x00\x00"), IceControlled(1)],
        agent.local_username,
        agent.local_password,
        b"t" * 12,
    )
    agent.receive_datagram(check, BASES[0][1], source, 0.0)
    (response, *_triggered) = answers(agent)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    mapped = response.get(XorMappedAddress)
    assert mapped is not None and mapped.address == source
    assert agent.failures.peer_input[PeerInput.PRIORITY_CLAMPED] == 1


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ROLES), hosts, ports, st.integers(0, 0xFFFFFFFF))
def test_any_priority_from_a_new_address_makes_a_valid_peer_reflexive_candidate(
    role: str, host: str, port: int, priority: int
) -> None:
    agent = agent_in(role, credentials=True, seed=2)
    local = BASES[1][1] if ":" in host else BASES[0][1]
    check = signed_check_from(
        [UnknownAttribute(AttrType.PRIORITY, priority.to_bytes(4, "big"))],
        agent.local_username,
        agent.local_password,
        b"u" * 12,
    )
    agent.receive_datagram(check, local, Address(host, port), 0.0)
    learned = [c for _, c in agent.remote_candidates if c.type is CandidateType.PEER_REFLEXIVE]
    if Address(host, port) in POOL[:2]:
        assert learned == []  # a signalled candidate: nothing new to learn
        return
    ip = ipaddress.ip_address(host)
    if port == 0 or ip.is_unspecified or ip.is_multicast:
        assert learned == []  # nothing can be sent back there
        assert agent.failures.peer_input[PeerInput.UNUSABLE_ADDRESS] == 1
        return
    (candidate,) = learned
    assert candidate.priority == min(max(priority, 1), MAX_PRIORITY)
    clamped = agent.failures.peer_input[PeerInput.PRIORITY_CLAMPED]
    assert clamped == (0 if 1 <= priority <= MAX_PRIORITY else 1)
