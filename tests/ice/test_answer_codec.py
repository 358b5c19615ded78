"""ice/answer_codec.py held equal to the typed codec: what read_check reads of a Binding request
is what Message.decode reads; success_response is Message.encode's bytes; an agent answering
checks from their bytes does exactly what it does with decoded messages."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ice import answer_codec
from ice.agent import Agent
from ice.answer_codec import CheckRequest, read_check, success_response
from ice.candidate import Candidate, CandidateType
from ice.config import AgentConfig
from stun import Attribute, Message, MessageClass, Method
from stun.address import Address, normalize_host
from stun.attributes import (
    AttrType,
    Fingerprint,
    IceControlled,
    IceControlling,
    Priority,
    Software,
    UnknownAttribute,
    UseCandidate,
    Username,
    XorMappedAddress,
    registered_attribute,
)
from stun.errors import DecodeError as StunDecodeError
from stun.integrity import integrity_matches, prepare_key
from stun.message import Integrity
from tests.properties.damage import DAMAGE, damaged

KEY = b"a-local-password-of-22"
TRANSACTION_ID = bytes(range(12))
#: What Message.encode appends itself: MESSAGE-INTEGRITY(-SHA256), FINGERPRINT.
SECURITY = (AttrType.MESSAGE_INTEGRITY, AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT)

#: The comprehension-optional attributes a class is registered for (SOFTWARE, TURN's, ...):
#: their bytes are checked by the typed decoder, so the lean reader leaves them to it.
REGISTERED_OPTIONAL = [
    code
    for code in range(0x8000, 0x10000)
    if registered_attribute(code) is not None and code not in SECURITY
]
#: Attributes with the label of what the lean reader makes of them: one it reads, or "other".
check_attributes = st.one_of(
    st.text(max_size=12).map(lambda text: ("USERNAME", Username(text))),
    st.integers(0, 2**32 - 1).map(lambda value: ("PRIORITY", priority(value))),
    st.integers(0, 2**64 - 1).map(lambda value: ("CONTROLLING", IceControlling(value))),
    st.integers(0, 2**64 - 1).map(lambda value: ("CONTROLLED", IceControlled(value))),
    st.just(("USE-CANDIDATE", UseCandidate())),
    st.tuples(
        st.integers(0x8000, 0xFFFF).filter(lambda code: registered_attribute(code) is None),
        st.binary(max_size=9),
    ).map(lambda value: ("OPTIONAL", UnknownAttribute(*value))),
)
attributes = st.one_of(
    check_attributes,
    st.text(max_size=8).map(lambda text: ("other", Software(text))),
    st.tuples(st.sampled_from(REGISTERED_OPTIONAL), st.binary(max_size=9)).map(
        lambda value: ("other", UnknownAttribute(*value))
    ),
    st.tuples(
        st.integers(0, 0xFFFF).filter(lambda code: code not in SECURITY), st.binary(max_size=9)
    ).map(lambda value: ("other", UnknownAttribute(*value))),
)


def priority(value: int) -> Attribute:
    """PRIORITY with any value, 0 too (which Priority refuses to encode)."""
    return Priority(value) if value else UnknownAttribute(AttrType.PRIORITY, bytes(4))


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A Binding request of the shape of a check (USERNAME, then any of PRIORITY, ICE-CONTROLLING,
    ICE-CONTROLLED, USE-CANDIDATE, in any order) signed with KEY; or that with one thing changed:
    any attributes, another method or class, another key or none, SHA-256, damage. With whether
    it is a check of that shape, intact."""
    labelled: list[tuple[str, Attribute]] = [("USERNAME", Username(draw(st.text(max_size=12))))]
    labelled += draw(st.lists(check_attributes, max_size=5, unique_by=lambda pair: pair[0]))
    labelled = [pair for pair in labelled[1:] if pair[0] != "USERNAME"] + labelled[:1]
    key: bytes | None
    method, message_class, key, integrity, damage = (
        Method.BINDING,
        MessageClass.REQUEST,
        KEY,
        Integrity.SHA1,
        "none",
    )
    change = draw(st.sampled_from(["none", "attributes", "type", "key", "integrity", "damage"]))
    if change == "attributes":
        labelled = labelled[-1:] * draw(st.booleans()) + draw(st.lists(attributes, max_size=7))
    elif change == "type":
        method = draw(st.sampled_from([Method.BINDING, Method.REFRESH]))
        message_class = draw(st.sampled_from(list(MessageClass)))
    elif change == "key":
        key = draw(st.sampled_from([b"another key", None]))
    elif change == "integrity":
        integrity = draw(st.sampled_from(list(Integrity)))
    elif change == "damage":
        damage = draw(st.sampled_from(DAMAGE))
    draw(st.randoms()).shuffle(labelled)
    content = [attribute for _, attribute in labelled]
    labels = [label for label, _ in labelled]
    tid = draw(st.binary(min_size=12, max_size=12))
    data = Message(method, message_class, tid, content).encode(
        key=key, integrity=integrity, fingerprint=draw(st.booleans())
    )
    data = damaged(draw, data, damage)
    common = (
        method == Method.BINDING
        and message_class is MessageClass.REQUEST
        and key is not None
        and integrity is Integrity.SHA1
        and damage == "none"
        and "USERNAME" in labels
        and "other" not in labels
        and len(set(labels)) == len(labels)
    )
    return data, common


@settings(max_examples=600)
@given(requests())
def test_read_check_reads_what_the_typed_decoder_reads(sample: tuple[bytes, bool]) -> None:
    data, common = sample
    read = read_check(data)
    if common:
        assert read is not None  # the lean path takes every check of the common shape
    if read is None:
        return
    assert read_check(data) == read  # read again through the shape kept for it
    assert_read_as_typed(data, read)


def assert_read_as_typed(data: bytes, read: tuple[CheckRequest, int, bytes]) -> None:
    request, integrity_at, integrity_length = read
    message = Message.decode(data)  # what the lean path takes, the typed decoder takes too
    assert (message.method, message.message_class) == (Method.BINDING, MessageClass.REQUEST)
    assert request.transaction_id == message.transaction_id
    assert not message.unknown_required and message.has_integrity
    username = message.get(Username)
    priority = message.get(Priority)
    controlling = message.get(IceControlling)
    controlled = message.get(IceControlled)
    assert username is not None and request.username == username.value
    assert request.priority == (None if priority is None else priority.value)
    assert request.controlling == (None if controlling is None else controlling.tie_breaker)
    assert request.controlled == (None if controlled is None else controlled.tie_breaker)
    assert request.use_candidate == message.has(UseCandidate)
    assert not message.has(Fingerprint) or message.check_fingerprint()
    for key in (KEY, b"another key"):
        lean = integrity_matches(key, data, integrity_at, integrity_length)
        assert lean == message.check_integrity(key)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(codec="ascii"), min_size=9, max_size=9),
            st.integers(1, 2**32 - 1),
            st.integers(0, 2**64 - 1),
            st.booleans(),
            st.binary(min_size=12, max_size=12),
        ),
        min_size=2,
        max_size=5,
    ),
    st.sampled_from([IceControlling, IceControlled]),
)
def test_a_kept_shape_reads_the_values_of_each_check(
    checks: list[tuple[str, int, int, bool, bytes]], role: type[IceControlling | IceControlled]
) -> None:
    for username, priority, tie_breaker, signed, tid in checks:
        content = [Username(username), Priority(priority), role(tie_breaker)]
        data = Message(Method.BINDING, MessageClass.REQUEST, tid, content).encode(
            key=KEY if signed else b"another key", fingerprint=True
        )
        read = read_check(data)
        assert read is not None
        assert_read_as_typed(data, read)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_read_check_takes_any_bytes(data: bytes) -> None:
    read = read_check(data)
    if read is not None:
        Message.decode(data)


@settings(max_examples=300)
@given(
    st.ip_addresses().map(str),
    st.integers(0, 0xFFFF),
    st.binary(min_size=12, max_size=12),
    st.binary(min_size=1, max_size=80),
)
def test_success_response_is_the_typed_encoders(
    host: str, port: int, tid: bytes, key: bytes
) -> None:
    source = Address(normalize_host(host), port)
    request = Message(Method.BINDING, MessageClass.REQUEST, tid)
    typed = request.success_response([XorMappedAddress(source)])
    answer = success_response(tid, source, prepare_key(key))
    assert answer == typed.encode(key=key, fingerprint=True)


# --------------------------------------------------------------------------- the agent

#: A comprehension-optional attribute browsers add to their checks, which no one registers.
GOOG_NETWORK_INFO = 0xC057
LOCAL = Address("192.0.2.1", 5000)
PEER = Address("192.0.2.2", 6000)
STRANGER = Address("198.51.100.7", 7000)


def ready_agent(role: str, signalled: bool) -> Agent:
    """An agent (controlling, controlled or ICE-lite) that knows PEER's candidate and
    credentials and is checking, or has heard nothing yet from signalling: the same agent, to
    the last random draw, every time it is made alike."""
    config = AgentConfig(
        controlling=role == "controlling",
        lite=role == "lite",
        rng=random.Random(7),
        tie_breaker=2**63,
    )
    agent = Agent(config)
    agent.add_base(0, 1, LOCAL)
    agent.gather(0.0)
    if signalled:
        agent.set_remote_credentials("peerufrag", "peer-password-of-22-chars")
        candidate = Candidate("1", 1, "udp", 2**31 - 1, PEER.host, PEER.port, CandidateType.HOST)
        agent.add_remote_candidate(candidate)
        agent.start_checks(0.0)
    outcome(agent, 0.0)
    return agent


def typed_receive(agent: Agent, data: bytes, local: Address, remote: Address, now: float) -> None:
    """What the agent did with a Binding request before it read any from its bytes."""
    if not data or data[0] > 3:
        agent.receive_datagram(data, local, remote, now)
        return
    try:
        message = Message.decode(data)
    except Exception:
        agent.failures.malformed += 1
        return
    if message.method == Method.BINDING and message.message_class is MessageClass.REQUEST:
        agent.incoming.receive(message, local, remote, now)
        agent.selection.update(now)
    else:
        agent.receive_datagram(data, local, remote, now)


def outcome(agent: Agent, now: float) -> tuple[object, ...]:
    events = []
    while (event := agent.next_event()) is not None:
        events.append(repr(event))
    sent = [(d.data, d.local, d.remote) for d in agent.datagrams_to_send(now)]
    return (
        sent,
        events,
        repr(agent.failures),
        agent.table_sizes(),
        agent.controlling,
        agent.state,
        [(p.state, p.nominate_on_success, p.nominated) for c in agent.checklists for p in c],
    )


@st.composite
def checks(draw: st.DrawFn, ufrag: str, password: str) -> tuple[bytes, Address]:
    """A check of the peer, now and then signed or named wrongly, with a role that may
    conflict with ours, from the peer or from an address we do not know."""
    content: list[Attribute] = []
    name = draw(st.sampled_from([ufrag, ufrag, "someone", ufrag + "x", ""]))
    content.append(Username(draw(st.sampled_from([f"{name}:peerufrag", name]))))
    if draw(st.booleans()):
        content.append(priority(draw(st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]))))
    tie_breaker = draw(st.sampled_from([0, 2**63, 2**64 - 1]))
    role = draw(st.sampled_from([IceControlling, IceControlled, None]))
    if role is not None:
        content.append(role(tie_breaker))
    if draw(st.booleans()):
        content.append(UseCandidate())
    if draw(st.booleans()):
        content.append(UnknownAttribute(GOOG_NETWORK_INFO, draw(st.binary(min_size=4, max_size=4))))
    draw(st.randoms()).shuffle(content)
    key = draw(st.sampled_from([password.encode(), password.encode(), b"wrong"]))
    tid = draw(st.sampled_from([TRANSACTION_ID, bytes(12), bytes([1] * 12)]))
    data = Message(Method.BINDING, MessageClass.REQUEST, tid, content).encode(
        key=key, fingerprint=draw(st.booleans())
    )
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]
    return data, draw(st.sampled_from([PEER, PEER, STRANGER]))


@settings(max_examples=250)
@given(st.sampled_from(["controlling", "controlled", "lite"]), st.booleans(), st.data())
def test_an_agent_answers_checks_from_bytes_as_it_does_decoded(
    role: str, signalled: bool, data: st.DataObject
) -> None:
    lean, typed = ready_agent(role, signalled), ready_agent(role, signalled)
    ufrag, password = lean.local_username, lean.local_password
    assert (ufrag, password) == (typed.local_username, typed.local_password)
    now = 1.0
    for _ in range(data.draw(st.integers(1, 4))):
        request, source = data.draw(checks(ufrag, password))
        lean.receive_datagram(request, LOCAL, source, now)
        typed_receive(typed, request, LOCAL, source, now)
        assert outcome(lean, now) == outcome(typed, now)
        now += 0.01


def test_the_shapes_kept_are_bounded() -> None:
    """Checks of many sizes and, for each size, more shapes than are kept: the table of shapes
    stays within its bounds, and each check is still read."""
    roles = [IceControlling(1), IceControlled(1)]
    for length in range(1, 4 * answer_codec.MAX_SIZES + 1):  # twice as many sizes as kept
        for role, use_candidate in itertools.product(roles, (False, True)):
            for order in range(answer_codec.MAX_SHAPES_PER_SIZE + 1):
                content: list[Attribute] = [Username("u" * length), Priority(1), role]
                content = content[order % 3 :] + content[: order % 3]
                if use_candidate:
                    content.append(UseCandidate())
                data = Message(Method.BINDING, MessageClass.REQUEST, TRANSACTION_ID, content)
                assert read_check(data.encode(key=KEY)) is not None
                shapes = answer_codec._SHAPES  # the bounded table itself
                assert len(shapes) <= answer_codec.MAX_SIZES
                assert all(
                    len(kept) <= answer_codec.MAX_SHAPES_PER_SIZE for kept in shapes.values()
                )


def test_a_kept_shape_is_left_when_its_unknown_attribute_gets_a_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check with an attribute no one registered is read; once a class is registered for it,
    the typed decoder must decode it: the shape kept before no longer reads such checks."""
    content = [Username("ours:theirs"), UnknownAttribute(GOOG_NETWORK_INFO, bytes(4))]
    data = Message(Method.BINDING, MessageClass.REQUEST, TRANSACTION_ID, content).encode(key=KEY)
    assert read_check(data) is not None
    monkeypatch.setattr(
        answer_codec, "registered_attribute", lambda code: Priority if code == 0xC057 else None
    )
    assert read_check(data) is None


@pytest.mark.parametrize("code", [AttrType.SOFTWARE, 0x8000, AttrType.ALTERNATE_SERVER])
def test_a_registered_optional_attribute_is_left_to_the_typed_decoder(code: int) -> None:
    """Its bytes are the typed decoder's to check (SOFTWARE that is not UTF-8, an address of
    no family, TURN's ADDITIONAL-ADDRESS-FAMILY of the wrong length): it refuses this check."""
    content = [Username("ours:theirs"), UnknownAttribute(code, b"\xff\xfe\xfd")]
    data = Message(Method.BINDING, MessageClass.REQUEST, TRANSACTION_ID, content).encode(key=KEY)
    assert read_check(data) is None
    with pytest.raises(StunDecodeError):
        Message.decode(data)
