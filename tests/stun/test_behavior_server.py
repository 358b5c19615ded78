"""The Binding server's RFC 5780 behaviour (stun.behavior): which socket answers, where to, what
the answer carries, and the §9 protections against aiming and amplifying answers."""

from __future__ import annotations

import random

import pytest

from stun import LocalProtocolError
from stun.address import Address
from stun.attributes import (
    Attribute,
    ChangeRequest,
    OtherAddress,
    Padding,
    ResponseOrigin,
    ResponsePort,
    UnknownAttributes,
    XorMappedAddress,
)
from stun.behavior import BehaviorAddresses
from stun.client import ClientConfig, ClientSession, Credentials
from stun.events import RequestSucceeded
from stun.message import Message, MessageClass, Method
from stun.server import BindingServer, LongTermCredentials, Outcome, ServerConfig

A1, A2 = "192.0.2.1", "192.0.2.2"
P1, P2 = 3478, 3479
ADDRESSES = BehaviorAddresses(primary=Address(A1, P1), alternate=Address(A2, P2))
CLIENT = Address("203.0.113.9", 40000)


def server(**settings: object) -> BindingServer:
    return BindingServer(
        ServerConfig(behavior=ADDRESSES, rng=random.Random(1), **settings)  # type: ignore[arg-type]
    )


def request(*attributes: Attribute, tid: bytes = b"t" * 12) -> bytes:
    return Message(Method.BINDING, MessageClass.REQUEST, tid, list(attributes)).encode(
        fingerprint=True
    )


@pytest.mark.parametrize(
    ("local", "change_ip", "change_port", "answering", "other"),
    [
        (Address(A1, P1), False, False, Address(A1, P1), Address(A2, P2)),
        (Address(A1, P1), True, False, Address(A2, P1), Address(A2, P2)),
        (Address(A1, P1), False, True, Address(A1, P2), Address(A2, P2)),
        (Address(A1, P1), True, True, Address(A2, P2), Address(A2, P2)),
        # §7.4: OTHER-ADDRESS is the other IP *and* the other port of the socket reached
        (Address(A2, P1), False, False, Address(A2, P1), Address(A1, P2)),
        (Address(A2, P1), True, True, Address(A1, P2), Address(A1, P2)),
        (Address(A1, P2), False, True, Address(A1, P1), Address(A2, P1)),
        (Address(A2, P2), True, False, Address(A1, P2), Address(A1, P1)),
    ],
)
def test_change_request_picks_the_answering_socket(
    local: Address, change_ip: bool, change_port: bool, answering: Address, other: Address
) -> None:
    answer = server().answer(request(ChangeRequest(change_ip, change_port)), local, CLIENT, 0.0)
    assert answer is not None
    assert answer.local == answering and answer.remote == CLIENT
    response = Message.decode(answer.data)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert response.get(ResponseOrigin) == ResponseOrigin(answering)
    assert response.get(OtherAddress) == OtherAddress(other)
    assert response.check_fingerprint()


def test_response_port_aims_at_the_sources_ip_and_mapped_address_stays_the_source() -> None:
    answer = server().answer(request(ResponsePort(5555)), Address(A1, P1), CLIENT, 0.0)
    assert answer is not None
    assert answer.local == Address(A1, P1)
    assert answer.remote == Address(CLIENT.host, 5555)
    assert Message.decode(answer.data).get(XorMappedAddress) == XorMappedAddress(CLIENT)


def test_without_behavior_the_rfc5780_attributes_get_420_as_before() -> None:
    plain = BindingServer(ServerConfig(rng=random.Random(1)))
    for attribute in (ChangeRequest(True, True), ResponsePort(5555), Padding(bytes(8))):
        answer = plain.answer(request(attribute), Address(A1, P1), CLIENT, 0.0)
        assert answer is not None and answer.local == Address(A1, P1)
        response = Message.decode(answer.data)
        assert response.message_class is MessageClass.ERROR_RESPONSE
        assert response.get(UnknownAttributes) == UnknownAttributes((attribute.attr_type,))
        assert response.get(OtherAddress) is None


def test_padding_never_makes_an_unauthenticated_answer_larger_than_its_request() -> None:
    binding = server()
    for size in (0, 100, 1400):
        data = request(Padding(bytes(size)))
        answer = binding.answer(data, Address(A1, P1), CLIENT, 0.0)
        assert answer is not None
        assert len(answer.data) <= max(len(data), 100)
        padding = Message.decode(answer.data).get(Padding)
        assert padding is not None
        if size == 1400:  # a big request gets an answer of about its size, as §7.6 wants
            assert len(data) - 8 <= len(answer.data) <= len(data)


def test_an_authenticated_padded_request_is_answered_at_the_padded_size() -> None:
    credentials = LongTermCredentials.from_passwords("realm", {"alice": "secret"})
    binding = server(authentication=credentials, padded_size=1000)
    first = Message.decode(
        binding.answer(request(Padding(bytes(4))), Address(A1, P1), CLIENT, 0.0).data  # type: ignore[union-attr]
    )
    assert first.message_class is MessageClass.ERROR_RESPONSE  # 401 with a nonce
    session = ClientSession(
        Address(A1, P1),
        config=ClientConfig(
            credentials=Credentials(username="alice", password="secret"), rng=random.Random(2)
        ),
    )
    session.request(Method.BINDING, [Padding(bytes(4))], now=0.0)
    sizes = []
    for _ in range(3):
        for datagram in session.datagrams_to_send(0.0):
            answer = binding.answer(datagram.data, Address(A1, P1), CLIENT, 0.0)
            if answer is not None:
                sizes.append(len(answer.data))
                session.receive_datagram(answer.data, None, Address(A1, P1), 0.0)
    assert isinstance(session.next_event(), RequestSucceeded)
    # the 401, then the authenticated success padded to padded_size, integrity included
    assert len(sizes) == 2 and sizes[0] < 200
    assert 1000 - 4 <= sizes[1] <= 1000


def test_discovery_requests_are_rate_limited_per_source_plain_ones_are_not() -> None:
    binding = server(discovery_rate=1.0, discovery_burst=5, failure_table_size=50)
    answered = 0
    for n in range(200):  # a bounded flood from one source, all within one second
        tid = n.to_bytes(12, "big")
        if binding.answer(request(ResponsePort(9), tid=tid), Address(A1, P1), CLIENT, 0.5):
            answered += 1
    assert answered == 5
    assert binding.stats[Outcome.DISCOVERY_RATE_LIMITED] == 195
    assert binding.answer(request(tid=bytes(12)), Address(A1, P1), CLIENT, 0.5) is not None
    # spoofed sources: the table of budgets stays bounded
    for n in range(500):
        spoofed = Address(f"198.51.100.{n % 250}", 1000 + n)
        binding.answer(request(ChangeRequest(True, True)), Address(A1, P1), spoofed, 1.0)
        spoofed6 = Address(f"2001:db8:{n:x}::1", 1000)
        binding.answer(request(Padding(bytes(8))), Address(A1, P1), spoofed6, 1.0)
    assert binding.discovery_limited_sources <= 50


def test_discovery_may_require_credentials_while_plain_binding_stays_open() -> None:
    credentials = LongTermCredentials.from_passwords("realm", {"alice": "secret"})
    binding = server(authentication=credentials, discovery_requires_auth=True)
    plain = binding.answer(request(), Address(A1, P1), CLIENT, 0.0)
    assert plain is not None
    assert Message.decode(plain.data).message_class is MessageClass.SUCCESS_RESPONSE
    changed = binding.answer(request(ChangeRequest(True, True)), Address(A1, P1), CLIENT, 0.0)
    assert changed is not None and changed.local == Address(A1, P1)  # the 401 goes back
    response = Message.decode(changed.data)
    assert response.message_class is MessageClass.ERROR_RESPONSE
    assert binding.stats[Outcome.CHALLENGED] == 1


def test_over_streams_change_request_and_response_port_get_420_padding_is_honoured() -> None:
    binding = server()
    for attribute in (ChangeRequest(True, False), ResponsePort(5555)):
        data = binding.respond(request(attribute), Address(A1, P1), CLIENT, 0.0, stream=True)
        assert data is not None
        assert Message.decode(data).message_class is MessageClass.ERROR_RESPONSE
    data = binding.respond(request(Padding(bytes(64))), Address(A2, P1), CLIENT, 0.0, stream=True)
    assert data is not None
    response = Message.decode(data)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.get(OtherAddress) == OtherAddress(Address(A1, P2))
    assert response.get(ResponseOrigin) == ResponseOrigin(Address(A2, P1))


def test_respond_sends_nothing_for_an_answer_that_leaves_elsewhere() -> None:
    binding = server()
    assert binding.respond(request(ChangeRequest(True, True)), Address(A1, P1), CLIENT, 0.0) is None
    assert binding.respond(request(), Address(A1, P1), CLIENT, 0.0) is not None


@pytest.mark.parametrize(
    ("primary", "alternate", "problem"),
    [
        (Address(A1, P1), Address("2001:db8::1", P2), "one family"),
        (Address(A1, P1), Address(A1, P2), "different IPs"),
        (Address(A1, P1), Address(A2, P1), "different ports"),
        (Address("0.0.0.0", P1), Address(A2, P2), "concrete"),
        (Address("stun.example", P1), Address(A2, P2), "not an IP"),
    ],
)
def test_behavior_addresses_are_checked(primary: Address, alternate: Address, problem: str) -> None:
    with pytest.raises(LocalProtocolError, match=problem):
        BehaviorAddresses(primary=primary, alternate=alternate)


def test_response_port_0_is_a_bad_request() -> None:
    binding = server()
    answer = binding.answer(request(ResponsePort(0)), Address(A1, P1), CLIENT, 0.0)
    assert answer is not None and answer.remote == CLIENT
    response = Message.decode(answer.data)
    assert response.message_class is MessageClass.ERROR_RESPONSE
    assert response.error_code is not None and response.error_code.code == 400
    assert binding.stats[Outcome.BAD_RESPONSE_PORT] == 1


def test_a_socket_that_is_none_of_the_four_does_not_honour_change_request() -> None:
    elsewhere = Address(A1, 5000)
    answer = server().answer(request(ChangeRequest(True, True)), elsewhere, CLIENT, 0.0)
    assert answer is not None and answer.local == elsewhere
    response = Message.decode(answer.data)
    assert response.get(UnknownAttributes) == UnknownAttributes((ChangeRequest.TYPE,))
