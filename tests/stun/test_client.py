"""The sans-IO STUN client on a virtual clock: matching, the 401/438 dance, 300, 5xx, integrity.

The server side is scripted with the real codec: each test decides how to answer each request.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from stun import (
    AlternateServer,
    ErrorCode,
    ErrorResponse,
    IntegrityError,
    Message,
    MessageIntegritySha256,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithmId,
    PasswordAlgorithms,
    Realm,
    TransactionTimeout,
    UnknownAttribute,
    Userhash,
    Username,
    XorMappedAddress,
    long_term_key,
    userhash,
)
from stun.address import Address
from stun.attributes import AlgorithmEntry, Attribute, MessageIntegrity
from stun.client import BindingResult, ClientConfig, ClientSession, Credentials
from stun.events import RequestFailed, RequestSucceeded, StunEvent
from stun.integrity import SecurityFeatures, nonce_with_features
from stun.message import Integrity
from stun.transaction import TransactionConfig

SERVER = Address("192.0.2.10", 3478)
ME = Address("198.51.100.7", 40000)
REALM = "example.org"
USER = "alice"
PASSWORD = "secret"

Answer = Callable[[Message], bytes | None]


def make_client(credentials: bool = False, **kwargs: object) -> ClientSession:
    config = ClientConfig(
        rng=random.Random(7),
        credentials=Credentials(username=USER, password=PASSWORD) if credentials else None,
        **kwargs,  # type: ignore[arg-type]
    )
    return ClientSession(SERVER, config=config)


def exchange(client: ClientSession, answer: Answer, now: float, source: Address = SERVER) -> int:
    """Answer every datagram the client wants to send at ``now``; return how many were sent."""
    sent = 0
    while datagrams := client.datagrams_to_send(now):
        for datagram in datagrams:
            sent += 1
            reply = answer(Message.decode(datagram.data))
            if reply is not None:
                client.receive_datagram(reply, ME, source, now)
    return sent


def events(client: ClientSession) -> list[StunEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def success(
    request: Message, key: bytes | None = None, integrity: Integrity = Integrity.SHA1
) -> bytes:
    return request.success_response([XorMappedAddress(ME)]).encode(
        key=key, integrity=integrity, fingerprint=True
    )


def test_binding_success_reports_mapped_address_and_rtt() -> None:
    client = make_client()
    handle = client.request(now=0.0)
    datagram = client.datagrams_to_send(0.0)[0]
    request = Message.decode(datagram.data)
    assert datagram.remote == SERVER
    assert request.check_fingerprint()
    client.receive_datagram(success(request), ME, SERVER, 0.030)
    (event,) = events(client)
    assert isinstance(event, RequestSucceeded)
    assert event.handle == handle
    assert event.rtt == pytest.approx(0.030)
    result = BindingResult.from_response(event.response, event.rtt, event.server)
    assert result.mapped_address == ME
    assert "FINGERPRINT" in result.features
    assert client.get_timer() is None


def test_response_from_wrong_source_or_unknown_transaction_is_dropped() -> None:
    client = make_client()
    client.request(now=0.0)
    request = Message.decode(client.datagrams_to_send(0.0)[0].data)
    client.receive_datagram(success(request), ME, Address("203.0.113.9", 3478), 0.01)
    stranger = Message(request.method, request.message_class, bytes(12))
    client.receive_datagram(success(stranger), ME, SERVER, 0.01)
    client.receive_datagram(b"\x17\x03\x03 not stun", ME, SERVER, 0.01)
    assert events(client) == []
    assert client.dropped == {"wrong source": 1, "unknown transaction": 1, "malformed": 1}


def test_retransmission_carries_same_bytes_and_karn_skips_the_sample() -> None:
    client = make_client()
    client.request(now=0.0)
    first = client.datagrams_to_send(0.0)[0].data
    client.handle_timer(0.5)
    again = client.datagrams_to_send(0.5)[0].data
    assert again == first
    client.receive_datagram(success(Message.decode(first)), ME, SERVER, 0.6)
    (event,) = events(client)
    assert isinstance(event, RequestSucceeded)
    # No RTT sample from a retransmitted transaction: the next one starts at the initial RTO.
    client.request(now=1.0)
    client.datagrams_to_send(1.0)
    assert client.get_timer() == pytest.approx(1.5)


def test_rto_estimate_is_reused_for_the_next_transaction() -> None:
    client = make_client()
    client.request(now=0.0)
    exchange(client, success, 0.0)
    events(client)
    client.request(now=1.0)
    client.datagrams_to_send(1.0)
    # A zero RTT sample clamps to min_rto (0.1 s).
    assert client.get_timer() == pytest.approx(1.1)


def test_timeout_after_39_5_seconds() -> None:
    client = make_client()
    client.request(now=0.0)
    sends = len(client.datagrams_to_send(0.0))
    now = 0.0
    while (deadline := client.get_timer()) is not None:
        now = deadline
        client.handle_timer(now)
        sends += len(client.datagrams_to_send(now))
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, TransactionTimeout)
    assert (sends, now) == (7, 39.5)


def test_reliable_client_sends_once_and_fails_on_connection_loss() -> None:
    client = make_client(reliable=True)
    client.request(now=0.0)
    assert len(client.datagrams_to_send(0.0)) == 1
    assert client.get_timer() == 39.5
    client.connection_lost(1.0)
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert client.get_timer() is None


def test_at_most_ten_outstanding_then_queued() -> None:
    client = make_client()
    for _ in range(12):
        client.request(now=0.0)
    first_batch = client.datagrams_to_send(0.0)
    assert len(first_batch) == 10
    client.receive_datagram(success(Message.decode(first_batch[0].data)), ME, SERVER, 0.01)
    assert len(client.datagrams_to_send(0.01)) == 1


class LongTermServer:
    """A scripted long-term-credential server (RFC 8489 §9.2.4) for the client to dance with."""

    def __init__(
        self,
        *,
        algorithms: tuple[int, ...] = (),
        anonymity: bool = False,
        stale_first: bool = False,
    ) -> None:
        self.algorithms = algorithms
        features = SecurityFeatures.NONE
        if algorithms:
            features |= SecurityFeatures.PASSWORD_ALGORITHMS
        if anonymity:
            features |= SecurityFeatures.USERNAME_ANONYMITY
        self.features = features
        self.nonce_count = 0
        self.stale_first = stale_first
        self.requests: list[Message] = []

    def nonce(self) -> str:
        self.nonce_count += 1
        return nonce_with_features(self.features, f"n{self.nonce_count}")

    def challenge(self, request: Message, code: int) -> bytes:
        attributes: list[Attribute] = [Realm(REALM), Nonce(self.nonce())]
        if self.algorithms:
            attributes.append(PasswordAlgorithms(tuple(AlgorithmEntry(a) for a in self.algorithms)))
        return request.error_response(code, attributes=attributes).encode()

    def __call__(self, request: Message) -> bytes:
        self.requests.append(request)
        if not request.has_integrity:
            return self.challenge(request, 401)
        if self.stale_first:
            self.stale_first = False
            return self.challenge(request, 438)
        chosen = request.get(PasswordAlgorithm)
        algorithm = chosen.algorithm if chosen else PasswordAlgorithmId.MD5
        key = long_term_key(USER, REALM, PASSWORD, algorithm)
        assert request.check_integrity(key)
        integrity = Integrity.SHA256 if request.has(MessageIntegritySha256) else Integrity.SHA1
        return success(request, key, integrity)


def test_401_dance_with_md5_then_cached_credentials() -> None:
    server = LongTermServer()
    client = make_client(credentials=True)
    client.request(now=0.0)
    assert exchange(client, server, 0.0) == 2
    (event,) = events(client)
    assert isinstance(event, RequestSucceeded)
    first, second = server.requests
    assert not first.has(Username) and not first.has(MessageIntegrity)
    assert second.get(Username) == Username(USER)
    assert second.get(Realm) == Realm(REALM)
    assert second.has(MessageIntegrity) and not second.has(MessageIntegritySha256)
    assert first.transaction_id != second.transaction_id
    # Subsequent requests reuse realm, nonce and key without a new challenge (§9.2.3.2).
    client.request(now=1.0)
    assert exchange(client, server, 1.0) == 1
    assert isinstance(events(client)[0], RequestSucceeded)


def test_401_with_password_algorithms_picks_first_supported_and_uses_sha256() -> None:
    offered_order = (0x7777, PasswordAlgorithmId.SHA256, PasswordAlgorithmId.MD5)
    server = LongTermServer(algorithms=offered_order)
    client = make_client(credentials=True)
    client.request(now=0.0)
    exchange(client, server, 0.0)
    assert isinstance(events(client)[0], RequestSucceeded)
    retry = server.requests[1]
    assert retry.get(PasswordAlgorithm) == PasswordAlgorithm(PasswordAlgorithmId.SHA256)
    offered = retry.get(PasswordAlgorithms)
    assert offered is not None
    assert tuple(e.algorithm for e in offered.algorithms) == offered_order
    assert retry.has(MessageIntegritySha256) and not retry.has(MessageIntegrity)


def test_username_anonymity_sends_userhash() -> None:
    server = LongTermServer(algorithms=(PasswordAlgorithmId.SHA256,), anonymity=True)
    client = make_client(credentials=True)
    client.request(now=0.0)
    exchange(client, server, 0.0)
    retry = server.requests[1]
    assert not retry.has(Username)
    assert retry.get(Userhash) == Userhash(userhash(USER, REALM))


def test_bid_down_nonce_cookie_without_password_algorithms_ends_the_request() -> None:
    client = make_client(credentials=True)
    client.request(now=0.0)

    def forged(request: Message) -> bytes:
        nonce = nonce_with_features(SecurityFeatures.PASSWORD_ALGORITHMS, "x")
        return request.error_response(401, attributes=[Realm(REALM), Nonce(nonce)]).encode()

    assert exchange(client, forged, 0.0) == 1
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 401


def test_no_supported_password_algorithm_ends_the_request() -> None:
    server = LongTermServer(algorithms=(0x7777,))
    client = make_client(credentials=True)
    client.request(now=0.0)
    assert exchange(client, server, 0.0) == 1
    assert isinstance(events(client)[0], RequestFailed)


def test_second_401_is_final_wrong_password() -> None:
    server = LongTermServer()
    client = ClientSession(
        SERVER,
        config=ClientConfig(
            rng=random.Random(1), credentials=Credentials(username=USER, password="wrong")
        ),
    )
    client.request(now=0.0)

    def strict(request: Message) -> bytes:
        good_key = long_term_key(USER, REALM, PASSWORD)
        if request.has_integrity and not request.check_integrity(good_key):
            return server.challenge(request, 401)
        return server(request)

    assert exchange(client, strict, 0.0) == 2
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 401


def test_401_without_credentials_is_reported() -> None:
    client = make_client()
    client.request(now=0.0)
    exchange(client, LongTermServer(), 0.0)
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 401


def test_438_retries_once_with_the_fresh_nonce() -> None:
    server = LongTermServer(stale_first=True)
    client = make_client(credentials=True)
    client.request(now=0.0)
    assert exchange(client, server, 0.0) == 3
    assert isinstance(events(client)[0], RequestSucceeded)
    nonces = [r.get(Nonce) for r in server.requests]
    assert nonces[0] is None and nonces[1] != nonces[2]


def test_endless_438_is_not_followed_forever() -> None:
    server = LongTermServer()
    client = make_client(credentials=True)
    client.request(now=0.0)

    def always_stale(request: Message) -> bytes:
        return server.challenge(request, 438 if request.has_integrity else 401)

    assert exchange(client, always_stale, 0.0) == 3
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 438


def test_response_with_bad_integrity_is_discarded_then_reported_as_integrity_error() -> None:
    server = LongTermServer()
    client = make_client(credentials=True, transaction=TransactionConfig(max_requests=2))
    client.request(now=0.0)

    def tampering(request: Message) -> bytes:
        if not request.has_integrity:
            return server(request)
        return success(request, key=b"not the key")

    exchange(client, tampering, 0.0)
    assert events(client) == []
    now = 0.0
    while (deadline := client.get_timer()) is not None:
        now = deadline
        client.handle_timer(now)
        exchange(client, tampering, now)
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, IntegrityError)


def test_try_alternate_is_followed_once() -> None:
    alternate = Address("192.0.2.20", 3478)
    client = make_client()
    client.request(now=0.0)
    (first,) = client.datagrams_to_send(0.0)
    redirect = Message.decode(first.data).error_response(
        300, attributes=[AlternateServer(Address("2001:db8::1", 3478)), AlternateServer(alternate)]
    )
    client.receive_datagram(redirect.encode(), ME, SERVER, 0.01)
    (second,) = client.datagrams_to_send(0.01)
    assert second.remote == alternate and client.server == alternate
    again = Message.decode(second.data).error_response(300, attributes=[AlternateServer(SERVER)])
    client.receive_datagram(again.encode(), ME, alternate, 0.02)
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 300


def test_every_request_in_flight_follows_the_redirect() -> None:
    alternate = Address("192.0.2.20", 3478)
    client = make_client()
    client.request(now=0.0)
    client.request(now=0.0)
    first_attempts = client.datagrams_to_send(0.0)
    assert len(first_attempts) == 2
    for datagram in first_attempts:
        redirect = Message.decode(datagram.data).error_response(
            300, attributes=[AlternateServer(alternate)]
        )
        client.receive_datagram(redirect.encode(), ME, SERVER, 0.01)
    second_attempts = client.datagrams_to_send(0.01)
    assert [d.remote for d in second_attempts] == [alternate, alternate]
    for datagram in second_attempts:
        client.receive_datagram(success(Message.decode(datagram.data)), ME, alternate, 0.02)
    outcomes = events(client)
    assert len(outcomes) == 2
    assert all(isinstance(e, RequestSucceeded) and e.server == alternate for e in outcomes)


def test_retransmissions_keep_going_to_where_the_attempt_was_sent() -> None:
    alternate = Address("192.0.2.20", 3478)
    client = make_client()
    client.request(now=0.0)
    client.request(now=0.0)
    slow, redirected = client.datagrams_to_send(0.0)
    redirect = Message.decode(redirected.data).error_response(
        300, attributes=[AlternateServer(alternate)]
    )
    client.receive_datagram(redirect.encode(), ME, SERVER, 0.01)
    client.datagrams_to_send(0.01)
    client.handle_timer(0.5)
    resent = client.datagrams_to_send(0.5)
    assert (slow.data, SERVER) in [(d.data, d.remote) for d in resent]
    client.receive_datagram(success(Message.decode(slow.data)), ME, SERVER, 0.6)
    assert isinstance(events(client)[0], RequestSucceeded)


def test_server_errors_are_retried_at_most_four_times() -> None:
    client = make_client()
    client.request(now=0.0)
    sent = exchange(client, lambda request: request.error_response(500).encode(), 0.0)
    assert sent == 5
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 500


def test_unknown_comprehension_required_attribute_in_response_fails() -> None:
    client = make_client()
    client.request(now=0.0)

    def odd(request: Message) -> bytes:
        return request.success_response([UnknownAttribute(0x7F01, b"??")]).encode()

    exchange(client, odd, 0.0)
    (event,) = events(client)
    assert isinstance(event, RequestFailed)


def test_cancelled_request_produces_no_event() -> None:
    client = make_client()
    handle = client.request(now=0.0)
    client.datagrams_to_send(0.0)
    client.cancel(handle)
    assert client.get_timer() is None
    assert events(client) == []


def test_cancelled_queued_requests_are_skipped_and_not_counted() -> None:
    client = make_client()
    handles = [client.request(now=0.0) for _ in range(14)]
    in_flight = client.datagrams_to_send(0.0)
    assert (client.in_flight, client.waiting) == (10, 4)
    client.cancel(handles[11])
    client.cancel(handles[12])
    client.cancel(handles[0])  # in flight
    client.cancel(handles[0])  # twice: nothing
    assert (client.in_flight, client.waiting) == (9, 2)
    for datagram in in_flight[1:]:
        client.receive_datagram(success(Message.decode(datagram.data)), ME, SERVER, 0.01)
    exchange(client, success, 0.01)
    done = {e.handle for e in events(client) if isinstance(e, RequestSucceeded)}
    assert done == set(handles) - {handles[0], handles[11], handles[12]}
    assert (client.in_flight, client.waiting) == (0, 0)


@pytest.mark.parametrize(
    "target",
    [
        Address("192.0.2.20", 0),
        Address("0.0.0.0", 3478),
        Address("224.0.0.1", 3478),
        Address("255.255.255.255", 3478),
        Address("127.0.0.1", 22),  # this host's services, from a server that is not on it
    ],
    ids=str,
)
def test_an_alternate_server_nothing_should_be_sent_to_is_not_followed(target: Address) -> None:
    client = make_client()
    client.request(now=0.0)
    (first,) = client.datagrams_to_send(0.0)
    redirect = Message.decode(first.data).error_response(300, attributes=[AlternateServer(target)])
    client.receive_datagram(redirect.encode(), ME, SERVER, 0.01)
    assert client.datagrams_to_send(0.01) == [] and client.server == SERVER
    (event,) = events(client)
    assert isinstance(event, RequestFailed)
    assert isinstance(event.error, ErrorResponse) and event.error.code == 300
    assert client.dropped == {"unusable ALTERNATE-SERVER": 1}


def test_a_loopback_server_may_send_its_clients_to_another_loopback_port() -> None:
    here = Address("127.0.0.1", 3478)
    client = ClientSession(here, config=ClientConfig(rng=random.Random(7)))
    client.request(now=0.0)
    (first,) = client.datagrams_to_send(0.0)
    alternate = Address("127.0.0.1", 3479)
    redirect = Message.decode(first.data).error_response(
        300, attributes=[AlternateServer(alternate)]
    )
    client.receive_datagram(redirect.encode(), ME, here, 0.01)
    (second,) = client.datagrams_to_send(0.01)
    assert second.remote == alternate == client.server


def test_a_request_that_may_not_move_ends_with_its_300() -> None:
    client = make_client()
    client.request(now=0.0, follow_alternate=False)
    (first,) = client.datagrams_to_send(0.0)
    alternate = Address("192.0.2.20", 3478)
    redirect = Message.decode(first.data).error_response(
        300, attributes=[AlternateServer(alternate)]
    )
    client.receive_datagram(redirect.encode(), ME, SERVER, 0.01)
    assert client.server == SERVER and client.datagrams_to_send(0.01) == []
    (event,) = events(client)
    assert isinstance(event, RequestFailed) and isinstance(event.error, ErrorResponse)


def test_a_challenge_that_cannot_be_answered_fails_the_request_not_the_receiver() -> None:
    """PASSWORD-ALGORITHMS must be echoed (RFC 8489 §9.2.5): an offer nearly 64 KiB long makes
    the retry too long to encode. The request fails; receive_datagram does not raise."""
    client = make_client(credentials=True)
    handle = client.request(now=0.0)
    (first,) = client.datagrams_to_send(0.0)
    nonce = nonce_with_features(SecurityFeatures.PASSWORD_ALGORITHMS, "n1")
    request = Message.decode(first.data)
    attributes = [Realm(REALM), Nonce(nonce)]
    # The longest offer that still fits the 401 itself.
    room = 0xFFFF - len(request.error_response(401, attributes=attributes).encode()) + 20 - 12
    offer = (AlgorithmEntry(PasswordAlgorithmId.SHA256, bytes(room)),)
    challenge = request.error_response(401, attributes=[*attributes, PasswordAlgorithms(offer)])
    client.receive_datagram(challenge.encode(), ME, SERVER, 0.01)
    (event,) = events(client)
    assert isinstance(event, RequestFailed) and event.handle == handle
    assert "too long" in str(event.error)
    assert (client.in_flight, client.waiting) == (0, 0)


def test_an_error_code_in_a_success_response_is_ignored() -> None:
    """A success carrying ERROR-CODE 300 and ALTERNATE-SERVER is a success, not a redirect."""
    client = make_client()
    handle = client.request(now=0.0)
    (first,) = client.datagrams_to_send(0.0)
    odd = Message.decode(first.data).success_response(
        [XorMappedAddress(ME), ErrorCode.of(300), AlternateServer(Address("192.0.2.20", 3478))]
    )
    client.receive_datagram(odd.encode(), ME, SERVER, 0.01)
    (event,) = events(client)
    assert isinstance(event, RequestSucceeded) and event.handle == handle
    assert client.server == SERVER
