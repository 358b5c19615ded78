"""The Binding server (stun.server) against validly signed requests with any attribute values, from
any address: nothing raises, every datagram is counted once, what comes back is a response to
that request with a code the RFC allows (RFC 8489 §6.3, §9), and no source gets more 400s and
401s than its budget, from a table of sources that stays within its bound."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    BindingServer,
    LongTermCredentials,
    Message,
    MessageClass,
    Method,
    PasswordAlgorithmId,
    SecurityFeatures,
    ServerConfig,
    ShortTermCredentials,
    XorMappedAddress,
    make_address,
)
from stun.limits import source_key
from stun.server import Authentication

from .signed import (
    Draft,
    LongTermSigner,
    ShortTermSigner,
    Signer,
    addresses,
    any_method,
    drafts,
    sources,
    wire_attributes,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REALM = "icestack.test"
USER, PASSWORD = "alice", "wonderland"
NONCE_SECRET = b"n" * 16
SHA256 = PasswordAlgorithmId.SHA256
OFFERED = (SHA256, PasswordAlgorithmId.MD5)
#: What the nonce cookie announces when the server offers password algorithms (RFC 8489 §9.2).
FEATURES = SecurityFeatures.PASSWORD_ALGORITHMS

#: How a server is set up, and who may sign for it (the right user, or one with a wrong password).
SETUPS: dict[str, tuple[Authentication | None, list[Signer | None]]] = {
    "open": (None, [None]),
    "short-term": (
        ShortTermCredentials.from_passwords({USER: PASSWORD}),
        [ShortTermSigner(USER, PASSWORD), ShortTermSigner(USER, "wrong"), None],
    ),
    "long-term, RFC 5389": (
        LongTermCredentials.from_passwords(REALM, {USER: PASSWORD}, password_algorithms=()),
        [LongTermSigner(USER, PASSWORD, REALM, NONCE_SECRET), None],
    ),
    "long-term, SHA-256": (
        LongTermCredentials.from_passwords(REALM, {USER: PASSWORD}),
        [
            LongTermSigner(USER, PASSWORD, REALM, NONCE_SECRET, FEATURES, OFFERED, SHA256),
            LongTermSigner(USER, PASSWORD, REALM, NONCE_SECRET, FEATURES),
            LongTermSigner(USER, "wrong", REALM, NONCE_SECRET, FEATURES),
            None,
        ],
    ),
}
#: Error codes a Binding server may answer with: 400, 401, 420, 438 (and nothing else).
ALLOWED_CODES = {400, 401, 420, 438}

binding_drafts = st.one_of(
    drafts(st.just(Method.BINDING), attributes=wire_attributes),
    drafts(any_method, classes=st.sampled_from(MessageClass), attributes=wire_attributes),
)


def check_answer(answer: bytes | None, draft: Draft, source: Address) -> None:
    if answer is None:
        return
    response = Message.decode(answer)
    assert response.transaction_id == draft.transaction_id
    assert response.method == Method.BINDING == draft.method
    assert draft.message_class is MessageClass.REQUEST
    error = response.error_code
    if error is not None:
        assert response.message_class is MessageClass.ERROR_RESPONSE
        assert error.code in ALLOWED_CODES
    else:
        assert response.message_class is MessageClass.SUCCESS_RESPONSE
        mapped = response.get(XorMappedAddress)
        assert mapped is not None and mapped.address == make_address(source.host, source.port)


@SETTINGS
@given(
    st.sampled_from(sorted(SETUPS)),
    st.lists(st.tuples(binding_drafts, sources, st.integers(0, 3)), min_size=1, max_size=8),
    st.floats(0, 1e6, allow_nan=False),
)
def test_signed_requests_with_any_values_never_escape(
    setup: str, sends: list[tuple[Draft, Address, int]], now: float
) -> None:
    authentication, signers = SETUPS[setup]
    server = BindingServer(ServerConfig(authentication=authentication, nonce_secret=NONCE_SECRET))
    for draft, source, which in sends:
        signer = signers[which % len(signers)]
        before = sum(server.stats.counts.values())
        answer = server.respond(draft.encode(signer, source, now), source, source, now)
        assert sum(server.stats.counts.values()) == before + 1
        check_answer(answer, draft, source)


@SETTINGS
@given(st.sampled_from(sorted(SETUPS)), addresses)
def test_the_right_signer_is_answered_with_success(setup: str, source: Address) -> None:
    """The positive control: the strategies' signatures are ones the server accepts."""
    authentication, signers = SETUPS[setup]
    server = BindingServer(ServerConfig(authentication=authentication, nonce_secret=NONCE_SECRET))
    draft = Draft(Method.BINDING, MessageClass.REQUEST, bytes(12), ())
    answer = server.respond(draft.encode(signers[0], source, 5.0), source, source, 5.0)
    assert answer is not None
    response = Message.decode(answer)
    assert response.error_code is None
    if signers[0] is not None:
        assert response.check_integrity(signers[0].key)


#: A few sources: IPv4 addresses, two IPv6 addresses of one /64 (one budget), one of another /64.
FEW_SOURCES = [
    make_address("198.51.100.1", 1000),
    make_address("198.51.100.1", 2000),
    make_address("198.51.100.2", 1000),
    make_address("2001:db8:0:1::1", 1000),
    make_address("2001:db8:0:1::2", 1000),
    make_address("2001:db8:0:2::1", 1000),
]


@SETTINGS
@given(
    st.sampled_from(sorted(SETUPS)),
    st.lists(
        st.tuples(binding_drafts, st.sampled_from(FEW_SOURCES), st.integers(0, 3), st.floats(0, 2)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 6),
    st.floats(0.01, 5.0),
    st.integers(1, 6),
)
def test_no_source_gets_more_400s_and_401s_than_its_budget(
    setup: str,
    sends: list[tuple[Draft, Address, int, float]],
    burst: int,
    rate: float,
    table_size: int,
) -> None:
    """With room for every source in its table, a source gets at most ``burst`` plus ``rate``
    a second of 400/401 answers; with less room, the table never holds more than its size (a
    forgotten source starts again with a full bucket, which the docs say)."""
    authentication, signers = SETUPS[setup]
    config = ServerConfig(
        authentication=authentication, nonce_secret=NONCE_SECRET,
        failure_rate=rate, failure_burst=burst, failure_table_size=table_size,
    )  # fmt: skip
    server = BindingServer(config)
    now = 0.0
    answered: Counter[str] = Counter()
    first: dict[str, float] = {}
    for draft, source, which, step in sends:
        now += step
        key = source_key(source.host)
        first.setdefault(key, now)
        data = draft.encode(signers[which % len(signers)], source, now)
        answer = server.respond(data, source, source, now)
        check_answer(answer, draft, source)
        assert server.rate_limited_sources <= table_size
        if answer is not None:
            error = Message.decode(answer).error_code
            if error is not None and error.code in (400, 401):
                answered[key] += 1
    if table_size >= len({source_key(source.host) for source in FEW_SOURCES}):
        for key, count in answered.items():
            assert count <= burst + rate * (now - first[key]) + 1e-9
