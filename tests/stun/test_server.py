"""The sans-IO Binding server (stun.server): every path, virtual clock, exact codes and bytes."""

from __future__ import annotations

import importlib.metadata
import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stun import (
    MAGIC_COOKIE,
    Address,
    AlgorithmEntry,
    Attribute,
    ChangeRequest,
    ErrorCode,
    Fingerprint,
    Integrity,
    LocalProtocolError,
    MappedAddress,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    Padding,
    PasswordAlgorithm,
    PasswordAlgorithmId,
    PasswordAlgorithms,
    Priority,
    Realm,
    ResponsePort,
    SecurityFeatures,
    Software,
    UnknownAttribute,
    UnknownAttributes,
    UseCandidate,
    Userhash,
    Username,
    XorMappedAddress,
    long_term_key,
    make_address,
    new_transaction_id,
    short_term_key,
    userhash,
)
from stun._version import DEFAULT_SOFTWARE, __version__
from stun.client import ClientConfig, ClientSession, Credentials
from stun.datagram import Datagram
from stun.events import RequestFailed, RequestSucceeded
from stun.integrity import nonce_features
from stun.nonces import NonceIssuer, NonceStatus
from stun.server import (
    BindingServer,
    LongTermCredentials,
    LongTermKey,
    Outcome,
    ServerConfig,
    ShortTermCredentials,
)

SERVER = Address("192.0.2.1", 3478)
CLIENT = Address("198.51.100.7", 40000)
CLIENT6 = Address("2001:db8::7", 40001)
REALM = "example.org"
SHA256 = PasswordAlgorithmId.SHA256
MD5 = PasswordAlgorithmId.MD5
OFFERED = PasswordAlgorithms((AlgorithmEntry(SHA256), AlgorithmEntry(MD5)))
RNG = random.Random(2024)


def request(
    *attributes: Attribute,
    key: bytes | None = None,
    integrity: Integrity = Integrity.SHA1,
    fingerprint: bool = False,
    method: int = Method.BINDING,
    message_class: MessageClass = MessageClass.REQUEST,
    cookie: int = MAGIC_COOKIE,
) -> bytes:
    message = Message(method, message_class, new_transaction_id(RNG), attributes, cookie=cookie)
    return message.encode(key=key, integrity=integrity, fingerprint=fingerprint)


def answer(
    server: BindingServer, data: bytes, remote: Address = CLIENT, now: float = 0.0
) -> Message:
    response = server.respond(data, SERVER, remote, now)
    assert response is not None
    decoded = Message.decode(response, allow_classic=True)
    assert decoded.transaction_id == data[8:20]
    assert decoded.method == Method.BINDING
    return decoded


def error_code(response: Message) -> int:
    assert response.message_class is MessageClass.ERROR_RESPONSE
    code = response.get(ErrorCode)
    assert code is not None
    return code.code


def types(response: Message) -> list[type[Attribute]]:
    return [type(a) for a in response.attributes]


def only_outcome(server: BindingServer, outcome: Outcome, count: int = 1) -> None:
    assert {o: n for o, n in server.stats.counts.items() if n} == {outcome: count}


# --------------------------------------------------------------------------- a basic server


def test_success_carries_the_source_address_and_software() -> None:
    server = BindingServer()
    response = answer(server, request())
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert types(response) == [XorMappedAddress, Software]
    assert response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert response.get(Software) == Software(DEFAULT_SOFTWARE)
    only_outcome(server, Outcome.ANSWERED)


def test_an_ipv6_client_gets_its_ipv6_address() -> None:
    response = answer(BindingServer(), request(), remote=CLIENT6)
    assert response.get(XorMappedAddress) == XorMappedAddress(CLIENT6)


def test_software_can_be_left_out() -> None:
    response = answer(BindingServer(ServerConfig(software=None)), request())
    assert types(response) == [XorMappedAddress]


def test_default_software_names_the_installed_version() -> None:
    assert importlib.metadata.version("icestack") == __version__
    assert f"icestack {__version__}" == DEFAULT_SOFTWARE


@pytest.mark.parametrize("fingerprint", [False, True])
def test_fingerprint_is_mirrored(fingerprint: bool) -> None:
    response = answer(BindingServer(), request(fingerprint=fingerprint))
    assert response.has(Fingerprint) is fingerprint
    assert response.check_fingerprint() is fingerprint


def test_a_wrong_fingerprint_is_dropped() -> None:
    data = bytearray(request(Software("x"), fingerprint=True))
    data[-1] ^= 1
    server = BindingServer()
    assert server.respond(bytes(data), SERVER, CLIENT, 0.0) is None
    only_outcome(server, Outcome.BAD_FINGERPRINT)


@given(
    st.ip_addresses().map(str),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.sampled_from([None, "icestack", "é" * 40]),
)
def test_the_hot_path_makes_the_bytes_message_encode_would(
    host: str, port: int, fingerprint: bool, software: str | None
) -> None:
    remote = make_address(host, port)
    data = request(fingerprint=fingerprint)
    expected = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        data[8:20],
        [XorMappedAddress(remote), *([Software(software)] if software else [])],
    ).encode(fingerprint=fingerprint)
    server = BindingServer(ServerConfig(software=software))
    assert server.respond(data, SERVER, remote, 0.0) == expected


@pytest.mark.parametrize(
    "message_class",
    [MessageClass.INDICATION, MessageClass.SUCCESS_RESPONSE, MessageClass.ERROR_RESPONSE],
)
def test_only_requests_are_answered(message_class: MessageClass) -> None:
    server = BindingServer()
    assert server.respond(request(message_class=message_class), SERVER, CLIENT, 0.0) is None
    only_outcome(server, Outcome.NOT_A_REQUEST)


@pytest.mark.parametrize("method", [Method.ALLOCATE, Method.REFRESH, 0x002, 0x0FF])
def test_other_methods_are_dropped_silently(method: int) -> None:
    """RFC 8489 §6.3: an unsupported method fails the basic checks: discarded, not answered."""
    server = BindingServer()
    assert server.respond(request(method=method), SERVER, CLIENT, 0.0) is None
    only_outcome(server, Outcome.UNSUPPORTED_METHOD)


def _bad_xor_family() -> bytes:
    good = request(XorMappedAddress(CLIENT))
    return good[:24] + b"\x00\x03" + good[26:]  # family 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x00\x00",
        request()[:-1],
        request() + b"\x00\x00\x00\x00",  # length field disagrees
        b"\x80" + request()[1:],  # leading bits
        request(Software("abc"))[:-4],  # truncated attribute
        _bad_xor_family(),  # header fine, attribute value malformed
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_what_is_not_well_formed_stun_is_dropped(data: bytes) -> None:
    server = BindingServer()
    assert server.respond(data, SERVER, CLIENT, 0.0) is None
    only_outcome(server, Outcome.MALFORMED)


def test_unknown_comprehension_required_attributes_get_420_listing_each_once() -> None:
    data = request(
        UnknownAttribute(0x7F01, b"a"), UnknownAttribute(0x4002, b""), UnknownAttribute(0x7F01, b"")
    )
    server = BindingServer()
    response = answer(server, data)
    assert error_code(response) == 420
    assert response.get(UnknownAttributes) == UnknownAttributes((0x7F01, 0x4002))
    # Nothing more: a spoofed request buys no extra bytes (no SOFTWARE on unprotected errors).
    assert types(response) == [ErrorCode, UnknownAttributes]
    only_outcome(server, Outcome.UNKNOWN_ATTRIBUTE)


def test_unknown_comprehension_optional_attributes_are_ignored() -> None:
    response = answer(BindingServer(), request(UnknownAttribute(0xC001, b"vendor")))
    assert response.message_class is MessageClass.SUCCESS_RESPONSE


def test_known_but_unexpected_attributes_are_ignored() -> None:
    data = request(Priority(1), UseCandidate(), Username("a:b"), Realm("r"), Nonce("n"))
    response = answer(BindingServer(), data)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE


@pytest.mark.parametrize(
    ("attributes", "listed"),
    [
        ((ChangeRequest(change_ip=True),), (0x0003,)),
        ((ChangeRequest(),), (0x0003,)),
        ((ResponsePort(9),), (0x0027,)),
        ((Padding(bytes(500)),), (0x0026,)),
        ((Padding(b"x"), UnknownAttribute(0x7001, b""), ResponsePort(1)), (0x7001, 0x0026, 0x0027)),
    ],
)
def test_rfc5780_attributes_it_does_not_honour_get_420(
    attributes: tuple[Attribute, ...], listed: tuple[int, ...]
) -> None:
    response = answer(BindingServer(), request(*attributes))
    assert error_code(response) == 420
    assert response.get(UnknownAttributes) == UnknownAttributes(listed)


def test_a_request_with_integrity_to_a_server_without_credentials_gets_no_integrity() -> None:
    response = answer(BindingServer(), request(Username("u"), key=b"k" * 16))
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert not response.has_integrity


# --------------------------------------------------------------------------- RFC 3489 clients


CLASSIC_COOKIE = 0x0BADF00D


def test_classic_requests_get_mapped_address_and_their_cookie_back() -> None:
    data = request(cookie=CLASSIC_COOKIE)
    server = BindingServer()
    raw = server.respond(data, SERVER, CLIENT, 0.0)
    assert raw is not None
    assert raw[4:20] == data[4:20]  # the whole 128-bit RFC 3489 transaction ID
    response = Message.decode(raw, allow_classic=True)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.attributes == [MappedAddress(CLIENT)]
    only_outcome(server, Outcome.ANSWERED)


def test_classic_change_request_gets_420_with_the_cookie_echoed() -> None:
    """RFC 5389 §12.2: CHANGE-REQUEST is answered as an unknown attribute."""
    data = request(ChangeRequest(change_port=True), cookie=CLASSIC_COOKIE)
    raw = BindingServer().respond(data, SERVER, CLIENT, 0.0)
    assert raw is not None and raw[4:8] == data[4:8]
    response = Message.decode(raw, allow_classic=True)
    assert error_code(response) == 420
    assert response.get(UnknownAttributes) == UnknownAttributes((0x0003,))


def test_classic_requests_are_dropped_without_classic_compatibility() -> None:
    server = BindingServer(ServerConfig(classic_compatibility=False))
    assert server.respond(request(cookie=CLASSIC_COOKIE), SERVER, CLIENT, 0.0) is None
    only_outcome(server, Outcome.CLASSIC)


# --------------------------------------------------------------------------- the sans-IO verbs


def test_receive_datagram_queues_the_response_for_the_socket_it_came_on() -> None:
    server = BindingServer()
    data = request()
    expected = server.respond(data, SERVER, CLIENT, 0.0)
    server.receive_datagram(data, SERVER, CLIENT, 1.0)
    server.receive_datagram(b"junk", SERVER, CLIENT, 1.0)
    assert server.datagrams_to_send(1.0) == [Datagram(expected, SERVER, CLIENT)]  # type: ignore[arg-type]
    assert server.datagrams_to_send(1.0) == []
    assert server.get_timer() is None
    server.handle_timer(2.0)
    assert server.next_event() is None
    assert server.datagrams_to_send(2.0) == []
    assert server.stats[Outcome.ANSWERED] == 2
    assert server.stats.dropped == 1


def test_stream_garbage_can_be_counted_by_the_driver() -> None:
    server = BindingServer()
    server.stats.count(Outcome.STREAM_GARBAGE)
    assert server.stats.dropped == 1
    assert "STREAM_GARBAGE=1" in repr(server.stats)


# --------------------------------------------------------------------------- short-term credentials

ICE_USER = "remote:local"
ICE_PASSWORD = "local-password-of-22+ch"
ICE_KEY = short_term_key(ICE_PASSWORD)


def short_term_server() -> BindingServer:
    credentials = ShortTermCredentials.from_passwords({ICE_USER: ICE_PASSWORD})
    return BindingServer(ServerConfig(authentication=credentials))


@pytest.mark.parametrize(
    ("integrity", "expected"),
    [
        (Integrity.SHA1, MessageIntegrity),
        (Integrity.SHA256, MessageIntegritySha256),
        (Integrity.BOTH, MessageIntegritySha256),
    ],
)
def test_short_term_success_is_protected_like_the_request(
    integrity: Integrity, expected: type[Attribute]
) -> None:
    """RFC 8489 §9.1.3: SHA-256 if the request had it, else SHA-1; only one; no USERNAME."""
    server = short_term_server()
    response = answer(server, request(Username(ICE_USER), key=ICE_KEY, integrity=integrity))
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.check_integrity(ICE_KEY)
    assert [t for t in types(response) if t in (MessageIntegrity, MessageIntegritySha256)] == [
        expected
    ]
    assert not response.has(Username)
    assert response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    only_outcome(server, Outcome.ANSWERED)


@pytest.mark.parametrize(
    ("data", "code", "outcome"),
    [
        (request(Username(ICE_USER)), 400, Outcome.INCOMPLETE_CREDENTIALS),
        (request(key=ICE_KEY), 400, Outcome.INCOMPLETE_CREDENTIALS),
        (request(Username("someone:else"), key=ICE_KEY), 401, Outcome.UNKNOWN_USER),
        (request(Username(ICE_USER), key=short_term_key("wrong")), 401, Outcome.BAD_INTEGRITY),
        # authentication comes before the unknown-attribute check (§6.3)
        (request(UnknownAttribute(0x7001, b"")), 400, Outcome.INCOMPLETE_CREDENTIALS),
    ],
)
def test_short_term_failures_get_unprotected_errors(
    data: bytes, code: int, outcome: Outcome
) -> None:
    server = short_term_server()
    response = answer(server, data)
    assert error_code(response) == code
    assert types(response) == [ErrorCode]  # no integrity, no USERNAME (§9.1.3)
    only_outcome(server, outcome)


def test_a_username_after_message_integrity_does_not_count() -> None:
    """RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY are ignored."""
    message = Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id(RNG))
    signed = message.encode(key=ICE_KEY)
    username = Username(ICE_USER).encode_value(b"")
    tail = struct.pack("!HH", 0x0006, len(username)) + username + bytes(-len(username) % 4)
    data = signed[:2] + struct.pack("!H", len(signed) - 20 + len(tail)) + signed[4:] + tail
    response = answer(short_term_server(), data)
    assert error_code(response) == 400


def test_short_term_420_is_protected_and_fingerprinted() -> None:
    server = short_term_server()
    data = request(
        Username(ICE_USER), UnknownAttribute(0x7001, b"?"), key=ICE_KEY, fingerprint=True
    )
    response = answer(server, data)
    assert error_code(response) == 420
    assert response.check_integrity(ICE_KEY)
    assert response.check_fingerprint()
    assert response.get(UnknownAttributes) == UnknownAttributes((0x7001,))
    assert response.get(Software) == Software(DEFAULT_SOFTWARE)


def test_errors_mirror_fingerprint_too() -> None:
    response = answer(short_term_server(), request(fingerprint=True))
    assert error_code(response) == 400
    assert response.check_fingerprint()


# --------------------------------------------------------------------------- long-term credentials

USER = "alice"
PASSWORD = "correct horse"
SHA256_KEY = long_term_key(USER, REALM, PASSWORD, SHA256)
MD5_KEY = long_term_key(USER, REALM, PASSWORD, MD5)


def long_term_server(
    *,
    algorithms: tuple[PasswordAlgorithmId, ...] | None = None,
    anonymity: bool = False,
    secret: bytes | None = None,
    lifetime: float = 600.0,
) -> BindingServer:
    if algorithms is None:
        credentials = LongTermCredentials.from_passwords(
            REALM, {USER: PASSWORD}, username_anonymity=anonymity
        )
    else:
        credentials = LongTermCredentials.from_passwords(
            REALM, {USER: PASSWORD}, password_algorithms=algorithms, username_anonymity=anonymity
        )
    config = ServerConfig(
        authentication=credentials,
        nonce_secret=secret,
        nonce_lifetime=lifetime,
        rng=random.Random(5),
    )
    return BindingServer(config)


def challenge(server: BindingServer, remote: Address = CLIENT, now: float = 0.0) -> str:
    response = answer(server, request(), remote=remote, now=now)
    assert error_code(response) == 401
    nonce = response.get(Nonce)
    assert nonce is not None
    return nonce.value


def signed(
    nonce: str,
    *extra: Attribute,
    identity: Attribute | None = None,
    realm: str = REALM,
    key: bytes = SHA256_KEY,
    algorithm: int | None = SHA256,
    offered: PasswordAlgorithms | None = OFFERED,
    integrity: Integrity = Integrity.SHA256,
    fingerprint: bool = False,
) -> bytes:
    attributes: list[Attribute] = [identity or Username(USER), Realm(realm), Nonce(nonce)]
    if offered is not None:
        attributes.append(offered)
    if algorithm is not None:
        attributes.append(PasswordAlgorithm(algorithm))
    attributes += extra
    return request(*attributes, key=key, integrity=integrity, fingerprint=fingerprint)


def test_the_first_request_is_challenged_with_realm_nonce_and_algorithms() -> None:
    server = long_term_server()
    response = answer(server, request(), now=12.0)
    assert error_code(response) == 401
    assert types(response) == [ErrorCode, Realm, Nonce, PasswordAlgorithms]
    assert response.get(Realm) == Realm(REALM)
    assert response.get(PasswordAlgorithms) == OFFERED
    nonce = response.get(Nonce)
    assert nonce is not None
    assert nonce_features(nonce.value) == SecurityFeatures.PASSWORD_ALGORITHMS
    only_outcome(server, Outcome.CHALLENGED)


def test_without_algorithms_the_challenge_is_rfc5389_style() -> None:
    server = long_term_server(algorithms=())
    response = answer(server, request())
    assert types(response) == [ErrorCode, Realm, Nonce]
    nonce = response.get(Nonce)
    assert nonce is not None and nonce_features(nonce.value) == SecurityFeatures.NONE


def test_each_client_address_gets_its_own_nonce() -> None:
    server = long_term_server()
    assert challenge(server, CLIENT) != challenge(server, CLIENT6)


def test_sha256_success_is_protected_with_sha256_only() -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce), now=1.0)
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert types(response) == [XorMappedAddress, Software, MessageIntegritySha256]
    assert response.check_integrity(SHA256_KEY)
    assert server.stats[Outcome.ANSWERED] == 1


def test_an_rfc5389_client_is_processed_as_md5_and_answered_with_message_integrity() -> None:
    """RFC 8489 §9.2.4: neither PASSWORD-ALGORITHM nor -ALGORITHMS: MD5, and MESSAGE-INTEGRITY."""
    server = long_term_server()
    nonce = challenge(server)
    data = signed(nonce, key=MD5_KEY, algorithm=None, offered=None, integrity=Integrity.SHA1)
    response = answer(server, data)
    assert types(response) == [XorMappedAddress, Software, MessageIntegrity]
    assert response.check_integrity(MD5_KEY)


def test_the_client_may_choose_md5_from_the_offer() -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, key=MD5_KEY, algorithm=MD5))
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.has(MessageIntegritySha256)
    assert response.check_integrity(MD5_KEY)


@pytest.mark.parametrize("missing", ["identity", "realm", "nonce"])
def test_integrity_without_username_realm_or_nonce_is_400(missing: str) -> None:
    server = long_term_server()
    nonce = challenge(server)
    attributes: dict[str, Attribute] = {
        "identity": Username(USER),
        "realm": Realm(REALM),
        "nonce": Nonce(nonce),
    }
    del attributes[missing]
    response = answer(server, request(*attributes.values(), key=SHA256_KEY))
    assert error_code(response) == 400
    assert types(response) == [ErrorCode]  # no REALM, NONCE, USERNAME or integrity
    assert server.stats[Outcome.INCOMPLETE_CREDENTIALS] == 1


@pytest.mark.parametrize(
    ("algorithm", "offered"),
    [
        (SHA256, None),  # PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS
        (None, OFFERED),  # the list without a choice
        (MD5, PasswordAlgorithms((AlgorithmEntry(MD5),))),  # the offer was edited
        (0x0003, PasswordAlgorithms((AlgorithmEntry(SHA256), AlgorithmEntry(0x0003)))),
        (MD5, PasswordAlgorithms((AlgorithmEntry(MD5), AlgorithmEntry(SHA256)))),  # reordered
    ],
)
def test_bid_down_attempts_get_400(
    algorithm: int | None, offered: PasswordAlgorithms | None
) -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, algorithm=algorithm, offered=offered))
    assert error_code(response) == 400
    assert types(response) == [ErrorCode]
    assert server.stats[Outcome.BID_DOWN] == 1


def test_a_choice_outside_the_offer_is_a_bid_down() -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, algorithm=0x0003))
    assert error_code(response) == 400
    assert server.stats[Outcome.BID_DOWN] == 1


@pytest.mark.parametrize(
    ("identity", "realm"),
    [(Username("mallory"), REALM), (Username(USER), "other.example")],
)
def test_an_unknown_user_or_realm_is_401_with_a_new_challenge(
    identity: Attribute, realm: str
) -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, identity=identity, realm=realm), now=3.0)
    assert error_code(response) == 401
    assert types(response) == [ErrorCode, Realm, Nonce, PasswordAlgorithms]
    assert server.stats[Outcome.UNKNOWN_USER] == 1


def test_a_wrong_password_is_401_with_realm_and_nonce_and_no_integrity() -> None:
    server = long_term_server()
    nonce = challenge(server)
    wrong = long_term_key(USER, REALM, "wrong", SHA256)
    response = answer(server, signed(nonce, key=wrong))
    assert error_code(response) == 401
    assert types(response) == [ErrorCode, Realm, Nonce, PasswordAlgorithms]
    assert server.stats[Outcome.BAD_INTEGRITY] == 1


def test_an_expired_nonce_gets_438_with_a_fresh_one_and_integrity() -> None:
    server = long_term_server(lifetime=60.0)
    nonce = challenge(server, now=0.0)
    assert answer(server, signed(nonce), now=59.9).message_class is MessageClass.SUCCESS_RESPONSE
    response = answer(server, signed(nonce, fingerprint=True), now=60.0)
    assert error_code(response) == 438
    assert types(response) == [
        ErrorCode, Realm, Nonce, PasswordAlgorithms, Software, MessageIntegritySha256, Fingerprint
    ]
    assert response.check_integrity(SHA256_KEY)
    fresh = response.get(Nonce)
    assert fresh is not None and fresh.value != nonce
    assert answer(server, signed(fresh.value), now=60.0).message_class is (
        MessageClass.SUCCESS_RESPONSE
    )
    assert server.stats[Outcome.STALE_NONCE] == 1


@pytest.mark.parametrize(
    "forge",
    [
        lambda nonce: nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB"),
        lambda nonce: "obMatJos2gAAA" + "x" * 24,
        lambda nonce: "made-up",
        lambda nonce: nonce.replace("obMatJos2gAAA", "obMatJos2AAAA"),  # the bit stripped
    ],
)
def test_a_nonce_we_did_not_issue_gets_438(forge: Callable[[str], str]) -> None:
    server = long_term_server()
    nonce = forge(challenge(server))
    response = answer(server, signed(nonce, algorithm=None, offered=None, key=MD5_KEY))
    assert error_code(response) == 438
    assert server.stats[Outcome.INVALID_NONCE] == 1


def test_a_nonce_issued_to_another_address_gets_438() -> None:
    server = long_term_server()
    nonce = challenge(server, CLIENT6)
    response = answer(server, signed(nonce), remote=CLIENT)
    assert error_code(response) == 438
    assert server.stats[Outcome.INVALID_NONCE] == 1


def test_the_integrity_check_comes_before_the_nonce_check() -> None:
    """§9.2.4 order: a bad MAC is 401 even when the nonce is stale too."""
    server = long_term_server(lifetime=10.0)
    nonce = challenge(server)
    wrong = long_term_key(USER, REALM, "wrong", SHA256)
    assert error_code(answer(server, signed(nonce, key=wrong), now=100.0)) == 401


def test_servers_sharing_a_secret_accept_each_others_nonces() -> None:
    secret = b"s" * 32
    first, second = long_term_server(secret=secret), long_term_server(secret=secret)
    nonce = challenge(first)
    assert answer(second, signed(nonce)).message_class is MessageClass.SUCCESS_RESPONSE


def test_userhash_is_accepted_when_username_anonymity_is_on() -> None:
    server = long_term_server(anonymity=True)
    nonce = challenge(server)
    features = nonce_features(nonce)
    assert features is not None and features & SecurityFeatures.USERNAME_ANONYMITY
    response = answer(server, signed(nonce, identity=Userhash(userhash(USER, REALM))))
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert not response.has(Userhash) and not response.has(Username)
    assert response.check_integrity(SHA256_KEY)


def test_userhash_is_an_unknown_user_without_username_anonymity() -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, identity=Userhash(userhash(USER, REALM))))
    assert error_code(response) == 401
    assert server.stats[Outcome.UNKNOWN_USER] == 1


def test_long_term_420_is_protected() -> None:
    server = long_term_server()
    nonce = challenge(server)
    response = answer(server, signed(nonce, UnknownAttribute(0x7ABC, b"")))
    assert error_code(response) == 420
    assert response.check_integrity(SHA256_KEY)


# --------------------------------------------------------------------------- with the real client


def run_pair(
    server: BindingServer, client: ClientSession, now: float, remote: Address = CLIENT
) -> RequestSucceeded | RequestFailed:
    """Pass datagrams between the two machines until the client reports an outcome."""
    for _ in range(10):
        for datagram in client.datagrams_to_send(now):
            server.receive_datagram(datagram.data, SERVER, remote, now)
        for datagram in server.datagrams_to_send(now):
            client.receive_datagram(datagram.data, None, datagram.local or SERVER, now)
        event = client.next_event()
        if event is not None:
            assert isinstance(event, RequestSucceeded | RequestFailed)
            return event
    raise AssertionError("no outcome")


def client_for(password: str = PASSWORD, **kwargs: object) -> ClientSession:
    config = ClientConfig(
        credentials=Credentials(username=USER, password=password),
        rng=random.Random(9),
        **kwargs,  # type: ignore[arg-type]
    )
    return ClientSession(SERVER, config=config)


@pytest.mark.parametrize("algorithms", [None, (), (MD5,), (SHA256,)])
def test_the_credential_dance_with_the_client(
    algorithms: tuple[PasswordAlgorithmId, ...] | None,
) -> None:
    server = long_term_server(algorithms=algorithms)
    client = client_for()
    client.request(now=0.0)
    event = run_pair(server, client, 0.0)
    assert isinstance(event, RequestSucceeded)
    assert event.response.get(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert server.stats[Outcome.CHALLENGED] == 1
    assert server.stats[Outcome.ANSWERED] == 1


def test_the_client_recovers_from_a_stale_nonce() -> None:
    server = long_term_server(lifetime=60.0)
    client = client_for()
    client.request(now=0.0)
    assert isinstance(run_pair(server, client, 0.0), RequestSucceeded)
    client.request(now=90.0)
    assert isinstance(run_pair(server, client, 90.0), RequestSucceeded)
    assert server.stats[Outcome.STALE_NONCE] == 1
    assert server.stats[Outcome.ANSWERED] == 2
    assert server.stats[Outcome.CHALLENGED] == 1


def test_the_client_uses_userhash_when_the_server_asks_for_anonymity() -> None:
    server = long_term_server(anonymity=True)
    client = client_for()
    client.request(now=0.0)
    assert isinstance(run_pair(server, client, 0.0), RequestSucceeded)


def test_a_wrong_password_ends_in_401_for_the_client() -> None:
    server = long_term_server()
    client = client_for(password="wrong")
    client.request(now=0.0)
    event = run_pair(server, client, 0.0)
    assert isinstance(event, RequestFailed)
    assert server.stats[Outcome.BAD_INTEGRITY] == 1


def test_a_basic_server_answers_the_client() -> None:
    server = BindingServer()
    client = ClientSession(SERVER, config=ClientConfig(rng=random.Random(1)))
    client.request(now=0.0)
    event = run_pair(server, client, 0.0, remote=CLIENT6)
    assert isinstance(event, RequestSucceeded)
    assert event.response.get(XorMappedAddress) == XorMappedAddress(CLIENT6)
    assert event.response.check_fingerprint()  # the client sends FINGERPRINT by default


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs",
    [
        {"software": "x" * 128},
        {"software": "é" * 127 * 2},
        {"nonce_lifetime": 0.0},
        {"nonce_lifetime": 7200.0},
        {"nonce_secret": b"short"},
    ],
)
def test_server_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_long_term_credentials_are_validated() -> None:
    keys = LongTermKey.from_password(USER, REALM, PASSWORD, (MD5,))
    with pytest.raises(LocalProtocolError, match="REALM"):
        LongTermCredentials(realm="", users={})
    with pytest.raises(LocalProtocolError, match="SHA256"):
        LongTermCredentials(realm=REALM, users={USER: keys}, password_algorithms=(SHA256,))
    with pytest.raises(LocalProtocolError, match="twice"):
        LongTermCredentials(realm=REALM, users={USER: keys}, password_algorithms=(MD5, MD5))
    with pytest.raises(LocalProtocolError):
        LongTermKey(md5=bytes(32))
    with pytest.raises(LocalProtocolError):
        LongTermKey(sha256=bytes(16))
    with pytest.raises(LocalProtocolError):
        LongTermKey()


def test_long_term_keys_come_from_the_rfc_formula() -> None:
    keys = LongTermKey.from_password("user", "realm", "pass")
    assert keys.md5 == bytes.fromhex("8493fbc53ba582fb4c044c456bdc40eb")  # RFC 8489 §9.2.2
    assert keys.sha256 == long_term_key("user", "realm", "pass", SHA256)
    assert keys.key_for(0x0003) is None


def test_a_user_with_only_an_md5_key_can_still_log_in_without_an_offer() -> None:
    credentials = LongTermCredentials(
        realm=REALM, users={USER: LongTermKey(md5=MD5_KEY)}
    )
    server = BindingServer(ServerConfig(authentication=credentials))
    client = client_for()
    client.request(now=0.0)
    assert isinstance(run_pair(server, client, 0.0), RequestSucceeded)


def test_nonces_from_the_server_check_out_with_a_shared_issuer() -> None:
    secret = b"k" * 32
    server = long_term_server(secret=secret)
    nonce = challenge(server, now=30.0)
    issuer = NonceIssuer(secret=secret, features=SecurityFeatures.PASSWORD_ALGORITHMS)
    assert issuer.check(nonce, CLIENT, 30.0) is NonceStatus.VALID


# --------------------------------------------------------------------------- peer input, any input


SERVERS = {
    "basic": BindingServer(ServerConfig(rng=random.Random(1))),
    "short-term": short_term_server(),
    "long-term": long_term_server(),
}


@given(st.sampled_from(sorted(SERVERS)), st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(kind: str, data: bytes) -> None:
    server = SERVERS[kind]
    before = sum(server.stats.counts.values())
    server.receive_datagram(data, SERVER, CLIENT, 0.0)
    assert sum(server.stats.counts.values()) == before + 1
    for datagram in server.datagrams_to_send(0.0):
        assert Message.decode(datagram.data, allow_classic=True).message_class in (
            MessageClass.SUCCESS_RESPONSE,
            MessageClass.ERROR_RESPONSE,
        )


def _valid_requests() -> list[bytes]:
    nonce = NonceIssuer(rng=random.Random(1)).issue(CLIENT, 0.0)
    return [
        request(),
        request(Software("client"), fingerprint=True),
        request(Username(ICE_USER), Priority(5), key=ICE_KEY, integrity=Integrity.BOTH),
        signed(nonce, fingerprint=True),
        signed(nonce, key=MD5_KEY, algorithm=None, offered=None, integrity=Integrity.SHA1),
        request(ChangeRequest(change_ip=True), cookie=CLASSIC_COOKIE),
        request(Userhash(bytes(32)), Realm(REALM), Nonce(nonce), UnknownAttribute(0x7001, b"z")),
    ]


VALID_REQUESTS = _valid_requests()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_REQUESTS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) >= 4:
            data[2:4] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


@given(st.sampled_from(sorted(SERVERS)), mutated())
def test_mutated_requests_never_raise(kind: str, data: bytes) -> None:
    server = SERVERS[kind]
    response = server.respond(data, SERVER, CLIENT, 0.0)
    if response is not None:
        decoded = Message.decode(response, allow_classic=True)
        assert decoded.transaction_id == data[8:20]


def test_padding_buys_no_bigger_response() -> None:
    """No amplification (RFC 8489 §16.1.2, RFC 5780 §7.6): PADDING is not honoured."""
    server = BindingServer()
    plain = server.respond(request(), SERVER, CLIENT, 0.0)
    assert plain is not None and len(plain) == 20 + 12 + 4 + 16  # XOR-MAPPED-ADDRESS, SOFTWARE
    padded = server.respond(request(Padding(bytes(1000))), SERVER, CLIENT, 0.0)
    assert padded is not None and len(padded) < len(plain) + 8
    assert not Message.decode(padded).has(Padding)


def test_authentication_and_outcome_names_stay_importable_from_stun_server() -> None:
    """stun.server re-exports what moved to stun.authentication and stun.outcomes: the same
    objects, so ``from stun.server import LongTermCredentials`` (docs, users) keeps working."""
    import stun
    import stun.authentication
    import stun.outcomes
    import stun.server

    moved = {
        stun.authentication: (
            "Authenticated",
            "Authentication",
            "LongTermAuthenticator",
            "LongTermCredentials",
            "LongTermKey",
            "Presented",
            "Rejected",
            "ShortTermAuthenticator",
            "ShortTermCredentials",
        ),
        stun.outcomes: ("DROPPED", "Outcome", "ServerStats"),
    }
    for module, names in moved.items():
        for name in names:
            assert getattr(stun.server, name) is getattr(module, name), name
            assert name in stun.server.__all__, name
    for name in ("LongTermCredentials", "LongTermKey", "Outcome", "ServerStats"):
        assert getattr(stun, name) is getattr(stun.server, name), name
