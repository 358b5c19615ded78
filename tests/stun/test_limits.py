"""stun.limits: token buckets, the bounded rate limiter of 400/401 answers, the admission of stream
connections; and the Binding server's limit on its 400 and 401 answers, on the virtual clock."""

from __future__ import annotations

import pytest

from stun import (
    Address,
    BindingServer,
    LocalProtocolError,
    LongTermCredentials,
    Message,
    MessageClass,
    Method,
    Outcome,
    ServerConfig,
    Username,
)
from stun.limits import (
    Closure,
    Refusal,
    SourceRateLimiter,
    StreamAdmission,
    StreamLimits,
    TokenBucket,
    source_key,
)

# --------------------------------------------------------------------------- token buckets


def test_token_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(1, 0.05)  # half a token
    assert bucket.take(1, 0.1)
    assert bucket.take(4, 10.0) and not bucket.take(2, 10.0)  # never more than the burst


def test_token_bucket_ignores_time_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0, now=10.0)
    assert bucket.take(1, 10.0)
    assert not bucket.take(1, 5.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 5.0)])
def test_token_bucket_needs_positive_settings(rate: float, burst: float) -> None:
    with pytest.raises(LocalProtocolError):
        TokenBucket(rate, burst, 0.0)


def test_rate_limiter_keeps_one_bucket_per_key() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=2, max_entries=10)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 1.0)


def test_rate_limiter_forgets_the_least_recently_used_key() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=1, max_entries=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert not limiter.allow("a", 0.0)  # "a" used last now
    assert limiter.allow("c", 0.0)  # evicts "b"
    assert len(limiter) == 2
    assert not limiter.allow("a", 0.0)  # remembered: still empty
    assert limiter.allow("b", 0.0)  # forgotten: a fresh bucket (evicting "c")


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::"),
        ("::1", "::"),
        ("fe80::1%eth0", "fe80::"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # from a dual-stack socket: the IPv4 address
    ],
)
def test_sources_are_limited_by_ipv4_address_or_ipv6_slash_64(host: str, key: str) -> None:
    assert source_key(host) == key


def test_rate_limiter_needs_room() -> None:
    with pytest.raises(LocalProtocolError):
        SourceRateLimiter(rate=1.0, burst=1, max_entries=0)


# --------------------------------------------------------------------------- stream admission


def test_admission_holds_connections_up_to_the_cap_and_gives_them_back() -> None:
    admission = StreamAdmission(StreamLimits(max_connections=3))
    assert [admission.admit(f"198.51.100.{n}", tls=False) for n in range(4)] == [None] * 3 + [
        Refusal.MAX_CONNECTIONS
    ]
    assert admission.connections == 3 and admission.sources == 3
    admission.release("198.51.100.0")
    assert admission.admit("198.51.100.9", tls=False) is None
    assert admission.refused[Refusal.MAX_CONNECTIONS] == 1
    for n in (1, 2, 9):
        admission.release(f"198.51.100.{n}")
    assert admission.connections == 0 and admission.sources == 0  # nothing left in the table


def test_one_source_cannot_take_every_slot() -> None:
    admission = StreamAdmission(StreamLimits(max_connections=10, max_connections_per_source=2))
    source = source_key("2001:db8:1:2::1")
    assert admission.admit(source, tls=False) is None
    assert admission.admit(source_key("2001:db8:1:2::99"), tls=False) is None  # the same /64
    assert admission.admit(source, tls=False) is Refusal.MAX_CONNECTIONS_PER_SOURCE
    assert admission.admit(source_key("2001:db8:1:3::1"), tls=False) is None
    assert admission.refused[Refusal.MAX_CONNECTIONS_PER_SOURCE] == 1
    admission.release(source)
    assert admission.admit(source, tls=False) is None


def test_tls_handshakes_are_held_against_their_own_caps_too() -> None:
    limits = StreamLimits(max_connections=10, max_handshakes=3, max_handshakes_per_source=2)
    admission = StreamAdmission(limits)
    assert admission.admit("192.0.2.1", tls=True) is None
    assert admission.admit("192.0.2.1", tls=True) is None
    assert admission.admit("192.0.2.1", tls=True) is Refusal.MAX_HANDSHAKES_PER_SOURCE
    assert admission.admit("192.0.2.1", tls=False) is None  # TCP needs no handshake
    assert admission.admit("192.0.2.2", tls=True) is None
    assert admission.admit("192.0.2.3", tls=True) is Refusal.MAX_HANDSHAKES
    assert (admission.connections, admission.handshakes) == (4, 3)
    admission.handshake_ended("192.0.2.1")  # done: the connection stays, its handshake is over
    assert admission.admit("192.0.2.3", tls=True) is None
    assert (admission.connections, admission.handshakes) == (5, 3)
    admission.handshake_ended("192.0.2.3")  # failed: it goes
    admission.release("192.0.2.3")
    assert (admission.connections, admission.handshakes) == (4, 2)


def test_the_counts_start_at_zero_for_every_reason() -> None:
    admission = StreamAdmission()
    assert set(admission.refused) == set(Refusal) and not any(admission.refused.values())
    assert set(admission.closed) == set(Closure) and not any(admission.closed.values())


@pytest.mark.parametrize(
    "settings",
    [
        {"max_connections": 0},
        {"max_connections_per_source": 0},
        {"max_handshakes": 0},
        {"max_handshakes_per_source": 0},
        {"handshake_timeout": 0.0},
        {"first_message_timeout": -1.0},
        {"first_message_timeout": float("inf")},
        {"handshake_timeout": float("nan")},
    ],
)
def test_stream_limits_are_validated(settings: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError, match=next(iter(settings))):
        StreamLimits(**settings)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the Binding server

REALM = "icestack.test"
SOURCE = Address("198.51.100.7", 40000)


def _server(**settings: float) -> BindingServer:
    credentials = LongTermCredentials.from_passwords(REALM, {"alice": "wonderland"})
    return BindingServer(ServerConfig(authentication=credentials, **settings))  # type: ignore[arg-type]


def _unauthenticated(n: int = 0) -> bytes:
    return Message(Method.BINDING, MessageClass.REQUEST, n.to_bytes(12, "big")).encode()


def _answers(server: BindingServer, count: int, source: Address, now: float) -> int:
    return sum(
        server.respond(_unauthenticated(n), None, source, now) is not None for n in range(count)
    )


def test_a_source_gets_its_burst_of_401s_then_its_rate() -> None:
    server = _server(failure_rate=2.0, failure_burst=5)
    assert _answers(server, 50, SOURCE, now=0.0) == 5
    assert server.stats[Outcome.CHALLENGED] == 5
    assert server.stats[Outcome.RATE_LIMITED] == 45
    assert _answers(server, 50, SOURCE, now=1.0) == 2  # two tokens a second
    assert _answers(server, 50, SOURCE, now=1000.0) == 5  # never more than the burst
    # Another source, and another port of the same source, as counted.
    assert _answers(server, 10, Address("198.51.100.8", 1), now=1000.0) == 5
    assert _answers(server, 10, Address("198.51.100.7", 1), now=1000.0) == 0


def test_400s_count_against_the_same_budget() -> None:
    server = _server(failure_rate=1.0, failure_burst=3)
    incomplete = Message(
        Method.BINDING, MessageClass.REQUEST, bytes(12), [Username("alice")]
    ).encode(key=b"k" * 16)
    answers = [server.respond(incomplete, None, SOURCE, 0.0) for _ in range(5)]
    assert sum(answer is not None for answer in answers) == 3
    assert server.stats[Outcome.INCOMPLETE_CREDENTIALS] == 3
    assert server.stats[Outcome.RATE_LIMITED] == 2


def test_the_table_of_sources_is_bounded() -> None:
    server = _server(failure_table_size=16)
    for n in range(1000):
        server.respond(_unauthenticated(n), None, Address(f"2001:db8:{n:x}::1", 1), 0.0)
    assert server.rate_limited_sources == 16


def test_a_server_without_authentication_never_limits() -> None:
    server = BindingServer(ServerConfig(failure_burst=1))
    assert _answers(server, 100, SOURCE, now=0.0) == 100
    assert server.stats[Outcome.ANSWERED] == 100
    assert server.rate_limited_sources == 0


@pytest.mark.parametrize(
    "settings",
    [{"failure_rate": 0.0}, {"failure_rate": float("nan")}, {"failure_burst": 0},
     {"failure_table_size": 0}],
)  # fmt: skip
def test_the_limit_settings_are_validated(settings: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError, match=next(iter(settings))):
        ServerConfig(**settings)  # type: ignore[arg-type]
