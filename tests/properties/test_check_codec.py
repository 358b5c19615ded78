"""The lean codec of the agent's own checks (ice.check_codec) against the typed one.

A check built from a :class:`CheckTemplate` is byte for byte what :meth:`stun.Message.encode` makes
of the same attributes. :func:`read_success` reads a success response only when the typed path
would read the same XOR-MAPPED-ADDRESS from it, its FINGERPRINT and MESSAGE-INTEGRITY checked, and
an agent that takes responses through it ends in the same state as one that decodes them: for
validly signed responses of every shape (``ice_signed.signed_responses``), responses of the common
shape, wrong keys, and flipped, cut and extended bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ice.agent import Agent
from ice.check_codec import BINDING_SUCCESS, CheckTemplate, read_success
from ice.checklist import PairState
from stun.address import Address
from stun.attributes import (
    Attribute,
    IceControlled,
    IceControlling,
    Priority,
    UseCandidate,
    Username,
    XorMappedAddress,
)
from stun.datagram import Datagram
from stun.errors import DecodeError, LocalProtocolError
from stun.integrity import prepare_key
from stun.message import Message, MessageClass, Method

from .damage import DAMAGE, damaged
from .ice_signed import addresses, sign, signed_responses, transaction_ids
from .test_ice_signed import PEER_PWD, agent_in

texts = st.text(max_size=40)
#: A ufrag as signalling may carry it; now and then a lone surrogate (not Unicode) or too long.
ufrags = st.one_of(
    texts,
    st.text(min_size=180, max_size=400),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
)


@given(
    remote_ufrag=ufrags,
    local_ufrag=ufrags,
    password=texts,
    controlling=st.booleans(),
    tie_breaker=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from((-1, 2**64))),
    priority=st.integers(1, 2**32 - 1),
    use_candidate=st.booleans(),
    transaction_id=transaction_ids,
)
def test_a_check_from_the_template_is_the_typed_encoding(
    remote_ufrag: str,
    local_ufrag: str,
    password: str,
    controlling: bool,
    tie_breaker: int,
    priority: int,
    use_candidate: bool,
    transaction_id: bytes,
) -> None:
    """The same bytes, or the same refusal of a USERNAME that is too long or not Unicode, or of
    a tie-breaker out of range."""
    attributes: list[Attribute] = [
        Username(f"{remote_ufrag}:{local_ufrag}"),
        Priority(priority),
        IceControlling(tie_breaker) if controlling else IceControlled(tie_breaker),
    ]
    if use_candidate:
        attributes.append(UseCandidate())
    typed = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
    try:
        expected = typed.encode(key=password.encode(), fingerprint=True)
    except LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            CheckTemplate(remote_ufrag, local_ufrag, password, controlling, tie_breaker)
        return
    template = CheckTemplate(remote_ufrag, local_ufrag, password, controlling, tie_breaker)
    assert template.encode(transaction_id, priority, use_candidate) == expected


def _common_shape(transaction_id: bytes, mapped: Address, password: str) -> bytes:
    response = Message(
        Method.BINDING, MessageClass.SUCCESS_RESPONSE, transaction_id, [XorMappedAddress(mapped)]
    )
    return sign(response, password)


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """Responses of every shape to a check signed with PEER_PWD (or with another password)."""
    transaction_id = draw(transaction_ids)
    password = draw(st.sampled_from((PEER_PWD, PEER_PWD, "another password")))
    if draw(st.booleans()):
        data = _common_shape(transaction_id, draw(addresses), password)
    else:
        request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id).encode()
        data = draw(signed_responses(request, password))
    return damaged(draw, data, draw(st.sampled_from(("none", *DAMAGE))))


@given(data=responses())
def test_the_lean_reader_reads_what_the_typed_path_reads(data: bytes) -> None:
    mapped = read_success(data, prepare_key(PEER_PWD.encode()))
    if mapped is None:
        return
    message = Message.decode(data)  # raises (fails the test) if the typed path refused it
    assert message.method == Method.BINDING
    assert message.message_class is MessageClass.SUCCESS_RESPONSE
    assert message.check_fingerprint()
    assert message.check_integrity(PEER_PWD.encode())
    attribute = message.get(XorMappedAddress)
    assert attribute is not None and attribute.address == mapped


@given(transaction_id=transaction_ids, mapped=addresses)
def test_the_lean_reader_takes_the_common_shape(transaction_id: bytes, mapped: Address) -> None:
    data = _common_shape(transaction_id, mapped, PEER_PWD)
    assert read_success(data, prepare_key(PEER_PWD.encode())) == mapped
    assert read_success(data, prepare_key(b"another password")) is None


def _receive_typed(agent: Agent, data: bytes, local: Address, remote: Address) -> None:
    """What ``Agent.receive_datagram`` does without the lean reader: a datagram that starts as a
    Binding success response is decoded and handed to the gatherer, then to the checks."""
    if data[:2] != BINDING_SUCCESS:
        agent.receive_datagram(data, local, remote, 0.0)
        return
    try:
        message = Message.decode(data)
    except DecodeError:
        agent.failures.malformed += 1
        return
    if not agent.gatherer.handle_response(message, local, remote):
        agent.outgoing.receive_response(message, local, remote, 0.0)
    agent.selection.update(0.0)


def _checks_sent(agent: Agent) -> list[Datagram]:
    """The checks the agent sends in its first few Ta slots."""
    checks = []
    for _ in range(4):
        deadline = agent.get_timer()
        assert deadline is not None
        agent.handle_timer(deadline)
        checks += [d for d in agent.datagrams_to_send(deadline) if d.data[:2] == b"\x00\x01"]
    return checks


def _outcome(agent: Agent) -> object:
    pairs = [
        (p.local_base, p.remote.address, p.state, p.failure, p.valid, p.nominated, p.last_rtt)
        for checklist in agent.checklists
        for p in checklist.pairs
    ]
    events = [type(event).__name__ for event in iter(agent.next_event, None)]
    sent = [d.data for d in agent.datagrams_to_send(0.0)]
    return (
        pairs,
        events,
        sent,
        sorted(agent.outgoing.in_flight),
        repr(agent.failures),
        agent.state,
        sorted((key, pair.local.address) for key, pair in agent.selected.items()),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.sampled_from(("controlling", "controlled")),
    st.integers(0, 2**16),
    st.booleans(),
)
def test_an_agent_ends_alike_through_the_lean_and_the_typed_path(
    data: st.DataObject, role: str, seed: int, common: bool
) -> None:
    lean, typed = agent_in(role, True, seed), agent_in(role, True, seed)
    checks = _checks_sent(lean)
    assert checks == _checks_sent(typed)
    check = data.draw(st.sampled_from(checks), label="answering")
    assert check.local is not None
    source = data.draw(st.one_of(st.just(check.remote), addresses), label="from")
    if common:
        mapped = data.draw(st.one_of(st.just(source), addresses), label="mapped")
        response = _common_shape(check.data[8:20], mapped, PEER_PWD)
    else:
        response = data.draw(signed_responses(check.data, PEER_PWD))
    response = damaged(data.draw, response, data.draw(st.sampled_from(("none", *DAMAGE))))
    lean.receive_datagram(response, check.local, source, 0.0)
    _receive_typed(typed, response, check.local, source)
    assert _outcome(lean) == _outcome(typed)


def test_an_answer_of_the_common_shape_takes_the_lean_path() -> None:
    """Not a vacuous property: our own answers' shape is read by the lean reader."""
    agent = agent_in("controlling", True, 1)
    check = _checks_sent(agent)[0]
    assert check.local is not None
    response = _common_shape(check.data[8:20], check.local, PEER_PWD)
    assert agent.outgoing.receive_success(response, check.local, check.remote, 0.0)
    (pair,) = [p for p in agent.checklists[0].pairs if p.transaction_id == check.data[8:20]]
    assert pair.state is PairState.SUCCEEDED and pair.valid
