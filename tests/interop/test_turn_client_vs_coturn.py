"""Our asyncio TurnClient through coturn's turnserver to UDP peers on loopback.

The client reaches coturn over UDP, TCP and TLS; data goes to a peer socket on 127.0.0.1 through
the relay and comes back, on a channel (ChannelData, padded to four bytes on TCP and TLS) and in
Send and Data indications. coturn speaks RFC 5389's long-term credentials (MD5 keys), which is
what our client falls back to when no PASSWORD-ALGORITHMS is offered.

What coturn 4.6.1 does, as these tests found it:

* A Refresh with LIFETIME 0 is answered with success at once, but the allocation goes only at
  coturn's next one-second timer tick; a Refresh before then brings it back to life.
* Its nonces belong to the allocation's session: once the allocation is gone, requests with the
  old nonce are answered 438 Stale Nonce, and CreatePermission without an allocation 400.
* ``--alternate-server`` (UDP, TCP) and ``--tls-alternate-server`` answer every Allocate with
  300 Try Alternate and ALTERNATE-SERVER.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stun import (
    Address,
    AddressFamily,
    Attribute,
    ErrorResponse,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    Username,
    long_term_key,
    make_address,
    new_transaction_id,
)
from stun.aio import Transport
from stun.tls import CertificateFiles, client_context
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import (
    RunningTurnserver,
    running_turnserver,
    skip_unless_installed,
    udp_request,
)
from tests.net.loopback import SKIP_NO_IPV6, run
from turn import Lifetime, TurnClient, TurnClientConfig, XorPeerAddress

TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
TIMEOUT = 5.0
#: Payload sizes that leave every ChannelData padding length (0-3 bytes) on a stream.
SIZES = (1, 2, 3, 4, 5, 100, 1000)


class _Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, make_address(addr[0], addr[1])))


@asynccontextmanager
async def peer_socket(
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[_Peer, Address, asyncio.DatagramTransport]]:
    """A UDP socket on loopback playing the peer: what it receives, its address, its transport."""
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(_Peer, local_addr=(host, 0))
    address = make_address(*transport.get_extra_info("sockname")[:2])
    try:
        yield peer, address, transport
    finally:
        transport.close()


async def connect(
    server: RunningTurnserver, transport: Transport, **settings: Any
) -> TurnClient:
    """Our client for the ``coturn_auth`` user, to coturn by a turn: or turns: URI."""
    if transport == "tls":
        assert server.certificate is not None
        uri = f"turns:127.0.0.1:{server.tls_address().port}"
    else:
        uri = f"turn:127.0.0.1:{server.port}?transport={transport}"
    return await TurnClient.connect(
        uri,
        username=TEST_CREDENTIALS.username,
        password=TEST_CREDENTIALS.password,
        ssl_context=client_context(server.certificate) if server.certificate else None,
        config=TurnClientConfig(**settings),
    )


async def exchange(
    client: TurnClient, peer: _Peer, peer_address: Address, sending: asyncio.DatagramTransport
) -> None:
    """Every size both ways: to the peer from the relayed address, back to us from the peer."""
    relayed = client.relayed_addresses[0]
    for size in SIZES:
        payload = bytes([size % 256]) * size
        await client.send(payload, peer_address)
        data, source = await asyncio.wait_for(peer.received.get(), TIMEOUT)
        assert (data, source) == (payload, relayed)
        sending.sendto(payload[::-1] + b"!", (relayed.host, relayed.port))
        back = await asyncio.wait_for(client.recv(), TIMEOUT)
        assert back == (payload[::-1] + b"!", peer_address)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_allocate_through_coturn(coturn_auth: RunningTurnserver, transport: Transport) -> None:
    async def scenario() -> None:
        async with await connect(coturn_auth, transport) as client:
            relayed = await client.allocate()
            assert relayed.host == "127.0.0.1" and relayed.port != coturn_auth.port
            local = client.local_address
            assert local is not None  # a UDP socket is bound to the wildcard address
            assert client.mapped_address == Address("127.0.0.1", local.port)
            listening = coturn_auth.tls_address() if transport == "tls" else coturn_auth.address()
            assert client.server == listening
            assert client.allocation.expires_at is not None

    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_data_on_a_channel_both_ways(coturn_auth: RunningTurnserver, transport: Transport) -> None:
    async def scenario() -> None:
        async with (
            await connect(coturn_auth, transport, use_channels=False) as client,
            peer_socket() as (peer, peer_address, sending),
        ):
            await client.allocate()
            number = await client.bind_channel(peer_address)
            assert number == 0x4000 and client.allocation.channel(peer_address) == number
            await exchange(client, peer, peer_address, sending)

    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_data_in_indications_both_ways(
    coturn_auth: RunningTurnserver, transport: Transport
) -> None:
    async def scenario() -> None:
        async with (
            await connect(coturn_auth, transport, use_channels=False) as client,
            peer_socket() as (peer, peer_address, sending),
        ):
            await client.allocate()
            await client.create_permission(peer_address.host)
            await exchange(client, peer, peer_address, sending)
            assert client.allocation.channel(peer_address) is None

    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_first_use_makes_the_permission_and_channel(
    coturn_auth: RunningTurnserver, transport: Transport
) -> None:
    """With the defaults, sending to a new peer is enough: the data waits for the channel."""

    async def scenario() -> None:
        async with await connect(coturn_auth, transport) as client, peer_socket() as (
            peer,
            peer_address,
            sending,
        ):
            await client.allocate()
            await exchange(client, peer, peer_address, sending)
            assert client.allocation.channel(peer_address) == 0x4000

    run(scenario())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_deletes_the_allocation(coturn_auth: RunningTurnserver, transport: Transport) -> None:
    async def scenario() -> None:
        client = await connect(coturn_auth, transport)
        await client.allocate()
        await client.close()
        assert client.deleted

    run(scenario())


def test_after_close_a_refresh_on_the_same_five_tuple_fails_with_437(
    coturn_auth: RunningTurnserver,
) -> None:
    """The deletion is real: a Refresh from the same UDP address later finds nothing.

    coturn removes a deleted allocation at its next one-second timer tick, and a Refresh before
    then revives it. So the test first waits for the removal with CreatePermission, which leaves
    lifetimes alone and which coturn answers 400 once the allocation is gone (a bounded number of
    probes, a quarter second apart), then sends the Refresh.
    """

    async def scenario() -> Address:
        client = await connect(coturn_auth, "udp")
        await client.allocate()
        local = client.local_address
        assert local is not None
        await client.close()
        assert client.deleted
        return local

    local = run(scenario())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((local.host, local.port))
        ask = _Asker(sock, coturn_auth.address())
        for _ in range(PROBES):
            if ask(Method.CREATE_PERMISSION, XorPeerAddress(Address("127.0.0.1", 9))) is not None:
                break
            time.sleep(0.25)
        assert ask(Method.REFRESH, Lifetime(600)) == 437


class _Asker:
    """Authenticated requests from one UDP socket, coturn's nonce followed through 401 and 438
    (coturn ties a nonce to its session, so a deleted allocation makes it stale)."""

    def __init__(self, sock: socket.socket, server: Address) -> None:
        self.sock, self.server = sock, server
        self.nonce = Nonce("")
        self.key = long_term_key(
            TEST_CREDENTIALS.username, TEST_CREDENTIALS.realm, TEST_CREDENTIALS.password
        )

    def __call__(self, method: Method, *attributes: Attribute) -> int | None:
        """The error code of the answer (``None`` for success)."""
        for _ in range(3):
            credentials = (
                Username(TEST_CREDENTIALS.username), Realm(TEST_CREDENTIALS.realm), self.nonce
            )
            request = Message(
                method, MessageClass.REQUEST, new_transaction_id(), [*attributes, *credentials]
            )
            answer = udp_request(self.sock, self.server, request, TIMEOUT, key=self.key)
            error = answer.error_code
            fresh = answer.get(Nonce)
            if error is None or error.code not in (401, 438) or fresh is None:
                return None if error is None else error.code
            self.nonce = fresh
        raise AssertionError("coturn kept challenging")


#: How many probes the deletion test sends at most.
PROBES = 20


def test_a_wrong_password_is_refused_with_401(coturn_auth: RunningTurnserver) -> None:
    async def scenario() -> None:
        async with await TurnClient.connect(
            "127.0.0.1", coturn_auth.port, username=TEST_CREDENTIALS.username, password="guess"
        ) as client:
            with pytest.raises(ErrorResponse) as refused:
                await client.allocate()
            assert refused.value.code == 401

    run(scenario())


@SKIP_NO_IPV6
def test_an_ipv6_relay_to_an_ipv6_peer(coturn_auth: RunningTurnserver) -> None:
    async def scenario() -> None:
        async with (
            await connect(coturn_auth, "udp", requested_family=AddressFamily.IPV6) as client,
            peer_socket("::1") as (peer, peer_address, sending),
        ):
            relayed = await client.allocate()
            assert relayed.host == "::1"
            await exchange(client, peer, peer_address, sending)

    run(scenario())


@pytest.fixture(scope="module")
def coturn_redirecting(
    tmp_path_factory: pytest.TempPathFactory,
    coturn_auth: RunningTurnserver,
    tls_certificate: CertificateFiles,
) -> Iterator[RunningTurnserver]:
    """coturn answering every Allocate with 300 Try Alternate: ``coturn_auth``."""
    skip_unless_installed("turnserver")
    assert coturn_auth.tls_port is not None
    with running_turnserver(
        tmp_path_factory.mktemp("coturn-redirecting"),
        hosts=("127.0.0.1",),
        certificate=tls_certificate,
        credentials=TEST_CREDENTIALS,
        extra_arguments=[
            "--alternate-server", f"127.0.0.1:{coturn_auth.port}",
            "--tls-alternate-server", f"127.0.0.1:{coturn_auth.tls_port}",
        ],
    ) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_alternate_server_is_followed(
    coturn_redirecting: RunningTurnserver, coturn_auth: RunningTurnserver, transport: Transport
) -> None:
    """300 Try Alternate (RFC 8489 §10): the Allocate moves to the other server (over TCP and
    TLS on a new connection) and so does everything after it."""

    async def scenario() -> None:
        async with (
            await connect(coturn_redirecting, transport) as client,
            peer_socket() as (peer, peer_address, sending),
        ):
            await client.allocate()
            alternate = coturn_auth.tls_address() if transport == "tls" else coturn_auth.address()
            assert client.server == alternate
            await exchange(client, peer, peer_address, sending)

    run(scenario())
