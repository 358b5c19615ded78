"""Hypothesis strategies for validly signed ICE traffic: Binding checks and their responses.

A check built here passes every test an agent makes before acting on it — USERNAME starts with the
agent's ufrag, MESSAGE-INTEGRITY (SHA-1, SHA-256 or both) is computed with its password,
FINGERPRINT is right — while every value inside is arbitrary: PRIORITY anywhere in 0..2^32-1 or
absent (written raw, since ``stun.Priority`` refuses to encode 0), ICE-CONTROLLING/-CONTROLLED
tie-breakers, USE-CANDIDATE, unknown attributes of both kinds, any text after the ufrag (now and
then any text instead of it, answered 401); sent from any IPv4 or IPv6 address and port. A
response answers a check the agent really sent, signed with the peer's password, with an
arbitrary XOR-MAPPED-ADDRESS (either family, any port), a success or any error code.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from hypothesis import strategies as st

from stun.address import Address, normalize_host
from stun.attributes import (
    Attribute,
    AttrType,
    IceControlled,
    IceControlling,
    UnknownAttribute,
    UseCandidate,
    Username,
    XorMappedAddress,
    registered_attribute,
)
from stun.message import Integrity, Message, MessageClass, Method

_U32 = struct.Struct("!I")

hosts = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str).map(normalize_host)
ports = st.integers(0, 0xFFFF)
addresses = st.builds(Address, hosts, ports)
integrity = st.sampled_from([Integrity.SHA1, Integrity.SHA256, Integrity.BOTH])
transaction_ids = st.binary(min_size=12, max_size=12)

#: PRIORITY as raw bytes: any 32-bit value, 0 and 2^31.. included.
priorities = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, 0xFFFFFFFF]),
).map(lambda value: UnknownAttribute(AttrType.PRIORITY, _U32.pack(value)))
tie_breakers = st.integers(0, 2**64 - 1)
roles = st.one_of(
    st.builds(IceControlling, tie_breakers),
    st.builds(IceControlled, tie_breakers),
)
unknown_attributes = st.builds(
    UnknownAttribute,
    st.integers(0, 0xFFFF).filter(lambda code: registered_attribute(code) is None),
    st.binary(max_size=16),
)
#: What follows "ufrag:" in USERNAME: the peer's ufrag as the RFC says, or any text.
their_ufrags = st.text(max_size=40)


def sign(message: Message, password: str, kind: Integrity = Integrity.SHA1) -> bytes:
    """Encode with MESSAGE-INTEGRITY keyed by ``password`` and FINGERPRINT, as an agent does."""
    return message.encode(key=password.encode(), integrity=kind, fingerprint=True)


def signed_check_from(
    attributes: Sequence[Attribute],
    ufrag: str,
    password: str,
    transaction_id: bytes,
    kind: Integrity = Integrity.SHA1,
    their_ufrag: str = "peer",
) -> bytes:
    """A Binding request to the agent whose credentials are ``ufrag``/``password``."""
    username = Username(f"{ufrag}:{their_ufrag}")
    request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, [username, *attributes])
    return sign(request, password, kind)


@st.composite
def signed_checks(draw: st.DrawFn, ufrag: str, password: str) -> bytes:
    """A validly signed check with arbitrary attribute values, in an arbitrary order."""
    attributes: list[Attribute] = []
    if draw(st.integers(0, 9)):  # mostly present, as the RFC requires
        attributes.append(draw(priorities))
    attributes += draw(st.lists(roles, max_size=2))
    if draw(st.booleans()):
        attributes.append(UseCandidate())
    attributes += draw(st.lists(unknown_attributes, max_size=2))
    attributes = draw(st.permutations(attributes))
    ours = ufrag if draw(st.integers(0, 9)) else draw(st.text(max_size=40))
    return signed_check_from(
        attributes, ours, password, draw(transaction_ids), draw(integrity), draw(their_ufrags)
    )


@st.composite
def signed_responses(draw: st.DrawFn, request: bytes, password: str) -> bytes:
    """A validly signed response to ``request`` (bytes the agent sent): a success with an
    arbitrary XOR-MAPPED-ADDRESS (or none), or an error with any code."""
    check = Message.decode(request)
    extra: list[Attribute] = draw(st.lists(unknown_attributes, max_size=2))
    if draw(st.integers(0, 4)):
        if draw(st.integers(0, 9)):
            extra.append(XorMappedAddress(draw(addresses)))
        response = check.success_response(draw(st.permutations(extra)))
    else:
        response = check.error_response(draw(st.integers(300, 699)), attributes=extra)
    return sign(response, password, draw(integrity))
