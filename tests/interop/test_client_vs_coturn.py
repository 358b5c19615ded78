"""Our asyncio StunClient against coturn's turnserver on loopback.

What coturn 4.6.1 does, as these tests found it:

* Binding is answered without authentication, with XOR-MAPPED-ADDRESS, MAPPED-ADDRESS,
  RESPONSE-ORIGIN (even with ``--no-rfc5780``) and SOFTWARE; FINGERPRINT only when the request
  carried one (coturn's ``--fingerprint`` is not set by the harness).
* Its long-term credential mechanism is RFC 5389's: the 401 carries REALM and NONCE only, no
  PASSWORD-ALGORITHMS and no RFC 8489 nonce cookie, so the key is MD5(username:realm:password) and
  every protected answer carries MESSAGE-INTEGRITY (HMAC-SHA1), never MESSAGE-INTEGRITY-SHA256.
* The success responses to Allocate and Refresh carry XOR-RELAYED-ADDRESS (0x0016) and LIFETIME
  (0x000D), which are comprehension-required: a client that does not know them must treat those
  responses as failed transactions (RFC 8489 §6.3.3). This module imports :mod:`turn.attributes`,
  which registers TURN's attributes with the codec, so our client completes Allocate and Refresh
  and reads both attributes typed, whatever else the test process imported. coturn answers
  CreatePermission without an allocation with 400 (RFC 8656 §7.2 would say 437), so its success
  after the Allocate also shows the allocation exists on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stun import (
    Address,
    Attribute,
    ErrorCode,
    ErrorResponse,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    PasswordAlgorithmId,
    PasswordAlgorithms,
    Realm,
    Username,
    XorMappedAddress,
    long_term_key,
    make_address,
    new_transaction_id,
)
from stun.aio import StunClient, Transport
from stun.client import ClientConfig, Credentials
from stun.integrity import nonce_features
from stun.tls import client_context
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import (
    RunningTurnserver,
    running_turnserver,
    skip_unless_installed,
    udp_request,
)
from tests.net.loopback import LOOPBACK_HOSTS, run
from turn.attributes import (
    Lifetime,
    RequestedTransport,
    TransportProtocol,
    XorPeerAddress,
    XorRelayedAddress,
)

TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
TIMEOUT = 5.0

#: REQUESTED-TRANSPORT (RFC 8656 §18.8) asking for a UDP relay.
REQUESTED_TRANSPORT_UDP = RequestedTransport(TransportProtocol.UDP)
#: LIFETIME 0 (RFC 8656 §18.2): a Refresh carrying it deletes the allocation (§8.2).
LIFETIME_ZERO = Lifetime(0)
#: The longest allocation lifetime RFC 8656 §7.2 recommends a server grant.
MAX_LIFETIME = 3600
#: The MD5 long-term key (RFC 8489 §9.2.2) of the ``coturn_auth`` user.
MD5_KEY = long_term_key(
    TEST_CREDENTIALS.username,
    TEST_CREDENTIALS.realm,
    TEST_CREDENTIALS.password,
    PasswordAlgorithmId.MD5,
)
GOOD = Credentials(username=TEST_CREDENTIALS.username, password=TEST_CREDENTIALS.password)
#: CreatePermission's XOR-PEER-ADDRESS (RFC 8656 §11.1): any port, coturn lets loopback peers in.
PERMISSION_FOR_LOOPBACK = XorPeerAddress(Address("127.0.0.1", 9))


def _inet_sockets() -> dict[int, Address]:
    """The local address of every IPv4/IPv6 socket this process holds, by file descriptor."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to see our client's socket (Linux)")
    found: dict[int, Address] = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        with contextlib.suppress(OSError):
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
            try:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    found[fd] = make_address(*sock.getsockname()[:2])
            finally:
                sock.detach()
    return found


@contextlib.contextmanager
def _new_socket() -> Iterator[list[Address]]:
    """Collect the address of the one socket opened inside the ``with`` block (at its end)."""
    before = _inet_sockets()
    opened: list[Address] = []
    yield opened
    opened += [address for fd, address in _inet_sockets().items() if before.get(fd) != address]


async def _connect(
    server: RunningTurnserver,
    transport: Transport,
    host: str = "127.0.0.1",
    *,
    credentials: Credentials | None = None,
    config: ClientConfig | None = None,
) -> StunClient:
    if transport == "tls":
        assert server.certificate is not None
        return await StunClient.connect(
            host,
            server.tls_address(host).port,
            transport="tls",
            ssl_context=client_context(server.certificate),
            credentials=credentials,
            config=config,
        )
    return await StunClient.connect(
        host, server.port, transport=transport, credentials=credentials, config=config
    )


# --------------------------------------------------------------------------- Binding


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_binding_maps_our_socket(
    coturn: RunningTurnserver, transport: Transport, host: str
) -> None:
    server = coturn.tls_address(host) if transport == "tls" else coturn.address(host)

    async def scenario() -> None:
        with _new_socket() as opened:
            client = await _connect(coturn, transport, host)
        async with client:
            result = await client.binding()
        [local] = opened
        assert result.mapped_address is not None
        if transport == "udp":
            # Our UDP client binds the wildcard address; the kernel sends from the loopback one.
            assert local.host in ("0.0.0.0", "::")
            assert result.mapped_address == Address(host, local.port)
        else:
            assert result.mapped_address == local
        assert result.server == server
        assert result.response_origin == server
        assert result.other_address is None  # the harness runs coturn with --no-rfc5780
        assert result.software is not None and result.software.startswith("Coturn-")
        assert "FINGERPRINT" in result.features  # present, and its CRC-32 checked out
        assert "MAPPED-ADDRESS (RFC 3489)" in result.features

    run(scenario())


def test_fingerprint_only_when_asked(coturn: RunningTurnserver) -> None:
    """coturn adds FINGERPRINT to a response only if the request had one (RFC 8489 §7 leaves it
    to the agent; coturn's --fingerprint, not set here, would add it always)."""

    async def scenario() -> None:
        config = ClientConfig(fingerprint=False)
        async with await _connect(coturn, "udp", config=config) as client:
            response, _ = await client.request(Method.BINDING)
        assert not response.check_fingerprint()
        assert response.get(XorMappedAddress) is not None

    run(scenario())


# --------------------------------------------------------------------------- long-term credentials


def test_challenge_is_rfc5389_style(coturn_auth: RunningTurnserver) -> None:
    """coturn's 401 offers no PASSWORD-ALGORITHMS and its nonce has no RFC 8489 cookie: the
    exchange uses MD5 keys and MESSAGE-INTEGRITY, as the credential tests below confirm."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        request = Message(
            Method.ALLOCATE, MessageClass.REQUEST, new_transaction_id(), [REQUESTED_TRANSPORT_UDP]
        )
        response = udp_request(sock, coturn_auth.address(), request, TIMEOUT)
    assert response.get(ErrorCode) == ErrorCode(401, "Unauthorized")
    nonce = response.get(Nonce)
    assert nonce is not None
    assert nonce_features(nonce.value) is None
    assert not response.has(PasswordAlgorithms)


def test_allocation_on_the_wire(coturn_auth: RunningTurnserver) -> None:
    """The exchange by hand with our codec: Allocate after the 401 succeeds with
    XOR-RELAYED-ADDRESS and LIFETIME under an MD5-keyed MESSAGE-INTEGRITY, and a Refresh with
    LIFETIME 0 answers LIFETIME 0 (the allocation is deleted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        server = coturn_auth.address()

        def ask(method: Method, attribute: Attribute, nonce: Nonce | None) -> Message:
            attributes: list[Attribute] = [attribute]
            if nonce is not None:
                attributes += [Username(GOOD.username), Realm(TEST_CREDENTIALS.realm), nonce]
            request = Message(method, MessageClass.REQUEST, new_transaction_id(), attributes)
            key = MD5_KEY if nonce is not None else None
            return udp_request(sock, server, request, TIMEOUT, key=key)

        nonce = ask(Method.ALLOCATE, REQUESTED_TRANSPORT_UDP, None).get(Nonce)
        assert nonce is not None
        allocated = ask(Method.ALLOCATE, REQUESTED_TRANSPORT_UDP, nonce)
        refreshed = ask(Method.REFRESH, LIFETIME_ZERO, nonce)

    assert allocated.message_class is MessageClass.SUCCESS_RESPONSE
    assert allocated.check_integrity(MD5_KEY)
    assert allocated.has(MessageIntegrity) and not allocated.has(MessageIntegritySha256)
    assert allocated.unknown_required == ()
    _assert_allocated(allocated)
    assert refreshed.message_class is MessageClass.SUCCESS_RESPONSE
    assert refreshed.check_integrity(MD5_KEY)
    assert refreshed.unknown_required == ()
    assert refreshed.get(Lifetime) == LIFETIME_ZERO


def _assert_allocated(response: Message) -> None:
    """An Allocate success response from coturn: a relayed address on its listening address
    (coturn relays there), a lifetime within RFC 8656's recommended maximum, our mapped address."""
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    relayed = response.get(XorRelayedAddress)
    assert relayed is not None and relayed.address.host == "127.0.0.1"
    assert relayed.address.port > 0
    lifetime = response.get(Lifetime)
    assert lifetime is not None and 0 < lifetime.value <= MAX_LIFETIME
    mapped = response.get(XorMappedAddress)
    assert mapped is not None and mapped.address.host == "127.0.0.1"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_long_term_credentials(coturn_auth: RunningTurnserver, transport: Transport) -> None:
    """401 → retry with MD5-keyed MESSAGE-INTEGRITY; later requests reuse the cached realm, nonce
    and key (RFC 8489 §9.2.3.2); responses' integrity is checked by the client. Allocate,
    CreatePermission and a deleting Refresh all succeed."""

    async def scenario() -> None:
        async with await _connect(coturn_auth, transport, credentials=GOOD) as client:
            allocated, _ = await client.request(Method.ALLOCATE, [REQUESTED_TRANSPORT_UDP])
            _assert_allocated(allocated)
            assert allocated.check_integrity(MD5_KEY)
            response, _ = await client.request(
                Method.CREATE_PERMISSION, [PERMISSION_FOR_LOOPBACK]
            )
            assert response.message_class is MessageClass.SUCCESS_RESPONSE
            assert response.check_integrity(MD5_KEY)
            assert response.has(MessageIntegrity) and not response.has(MessageIntegritySha256)
            assert response.check_fingerprint()
            # Free the allocation: coturn's success answer carries LIFETIME 0.
            refreshed, _ = await client.request(Method.REFRESH, [LIFETIME_ZERO])
            assert refreshed.get(Lifetime) == LIFETIME_ZERO
            assert refreshed.check_integrity(MD5_KEY)

    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_password_is_refused(coturn_auth: RunningTurnserver, transport: Transport) -> None:
    wrong = Credentials(username=TEST_CREDENTIALS.username, password="through-the-mirror")

    async def scenario() -> None:
        async with await _connect(coturn_auth, transport, credentials=wrong) as client:
            with pytest.raises(ErrorResponse) as refused:
                await client.request(Method.ALLOCATE, [REQUESTED_TRANSPORT_UDP])
        assert refused.value.code == 401
        assert refused.value.response is not None
        assert refused.value.response.get(Realm) == Realm(TEST_CREDENTIALS.realm)

    run(scenario())


# --------------------------------------------------------------------------- stale nonce

#: coturn's nonce lifetime for the stale-nonce test, in seconds.
NONCE_LIFETIME = 2
#: How many times the stale-nonce test asks, half a second apart, before giving up on a 438.
STALE_POLLS = 20


@pytest.fixture(scope="module")
def coturn_short_nonce(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningTurnserver]:
    """coturn whose nonces go stale after :data:`NONCE_LIFETIME` s; ``-v`` logs every answer."""
    skip_unless_installed("turnserver")
    with running_turnserver(
        tmp_path_factory.mktemp("coturn-stale-nonce"),
        hosts=("127.0.0.1",),
        credentials=TEST_CREDENTIALS,
        extra_arguments=[f"--stale-nonce={NONCE_LIFETIME}", "-v"],
    ) as server:
        yield server


def _stale_nonce_answers(log_file: Path) -> int:
    return log_file.read_text(errors="replace").count("error 438")


def test_stale_nonce_is_retried(coturn_short_nonce: RunningTurnserver) -> None:
    """438 Stale Nonce (RFC 8489 §9.2.5): the client retries with the fresh NONCE, unseen by the
    caller. Requests keep succeeding until coturn's log shows it has answered one with 438."""
    server = coturn_short_nonce

    async def scenario() -> None:
        async with await _connect(server, "udp", credentials=GOOD) as client:
            allocated, _ = await client.request(Method.ALLOCATE, [REQUESTED_TRANSPORT_UDP])
            _assert_allocated(allocated)
            assert _stale_nonce_answers(server.log_file) == 0
            for _ in range(STALE_POLLS):
                await asyncio.sleep(0.5)
                response, _ = await client.request(
                    Method.CREATE_PERMISSION, [PERMISSION_FOR_LOOPBACK]
                )
                assert response.message_class is MessageClass.SUCCESS_RESPONSE
                assert response.check_integrity(MD5_KEY)
                if _stale_nonce_answers(server.log_file):
                    break
            assert _stale_nonce_answers(server.log_file) == 1
            refreshed, _ = await client.request(Method.REFRESH, [LIFETIME_ZERO])
            assert refreshed.get(Lifetime) == LIFETIME_ZERO

    run(scenario())
