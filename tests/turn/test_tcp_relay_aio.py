"""TCP relays (RFC 6062) through turn.server.aio.TurnServer on loopback: our TurnClient allocates
TCP over a TCP or TLS control connection, connects to a local TCP echo peer (Connect, a data
connection, ConnectionBind) and bytes flow both ways; a peer connects to the relayed address and
the client, told by a ConnectionAttempt, binds; closes travel both ways; peers without
permission, failed connects and unclaimed connections are closed. What a well-behaved client
never sends (a Connect without a permission, bytes behind the ConnectionBind, a stale nonce on a
data connection) is sent by a client made of our codec.

Every wait is bounded; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stun import (
    Address,
    AddressFamily,
    ErrorResponse,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    Username,
    make_address,
)
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, client_context, make_self_signed, server_context
from tests.net.loopback import LOOPBACK_HOSTS, closed_port, run, twin_port, until
from tests.turn.aio_client import WAIT, RawTurnClient, TurnRequestFailed
from turn import (
    ConnectionId,
    PeerConnectionFailed,
    RequestedTransport,
    TransportProtocol,
    TurnClient,
    TurnClientConfig,
    XorPeerAddress,
    XorRelayedAddress,
)
from turn.server import Outcome, PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer, render_metrics

REALM = "icestack.test"
LOOPBACK_PEERS = PeerPolicy(allow_loopback_peers=True)
PASSWORDS = {"alice": "wonderland", "bob": "the-builder"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("tcp-relay-tls"))


@asynccontextmanager
async def tcp_relay_server(
    host: str = "127.0.0.1",
    certificate: CertificateFiles | None = None,
    peer_policy: PeerPolicy = LOOPBACK_PEERS,
    **options: Any,
) -> AsyncIterator[tuple[TurnServer, dict[str, Address]]]:
    """A TurnServer relaying on ``host`` with TCP and UDP listeners on one port (as coturn and
    ``icestack serve turn`` have them) and, given a certificate, a TLS listener."""
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(REALM, PASSWORDS),
        peer_policy=peer_policy,
        **options,
    )
    async with TurnServer(config, relay_hosts=[host]) as server:
        port = twin_port(host)
        listeners = {"tcp": (await server.listen("tcp", host, port)).address}
        listeners["udp"] = (await server.listen("udp", host, port)).address
        if certificate is not None:
            context = server_context(certificate.certificate, certificate.private_key)
            listeners["tls"] = (await server.listen("tls", host, ssl_context=context)).address
        yield server, listeners


class ControlClient(RawTurnClient):
    """A control connection made of our codec, for what our TurnClient never sends."""

    async def allocate_tcp(self, *attributes: Any) -> Address:
        answer = await self.request(
            Method.ALLOCATE, [RequestedTransport(TransportProtocol.TCP), *attributes]
        )
        (relayed,) = answer.get_all(XorRelayedAddress)
        return relayed.address

    async def connect_peer(self, peer: Address) -> int:
        """Connect (§4.3): the CONNECTION-ID of the new peer connection."""
        answer = await self.request(Method.CONNECT, [XorPeerAddress(peer)])
        attribute = answer.get(ConnectionId)
        assert attribute is not None
        return attribute.value


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes a connection (EOF or reset) within the wait."""
    try:
        return await asyncio.wait_for(reader.read(65536), WAIT) == b""
    except ConnectionError:
        return True


async def read_message(reader: asyncio.StreamReader) -> Message:
    header = await asyncio.wait_for(reader.readexactly(20), WAIT)
    body = await asyncio.wait_for(reader.readexactly(int.from_bytes(header[2:4], "big")), WAIT)
    return Message.decode(header + body)


class DataConnection:
    """A new client connection to the server that becomes a client data connection (§4.4)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, server: Address, context: ssl.SSLContext | None = None
    ) -> DataConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(server.host, server.port, ssl=context), WAIT
        )
        return cls(reader, writer)

    async def bind(self, control: ControlClient, connection_id: int, tail: bytes = b"") -> None:
        """ConnectionBind with the control connection's credentials, nonce included (§4.4);
        ``tail`` goes in the same write, right behind the request (raw bytes for the peer)."""
        assert control.realm is not None and control.nonce is not None
        request = Message(
            Method.CONNECTION_BIND,
            MessageClass.REQUEST,
            secrets.token_bytes(12),
            [
                ConnectionId(connection_id),
                Username(control.username),
                Realm(control.realm),
                Nonce(control.nonce),
            ],
        )
        self.writer.write(request.encode(key=control.key) + tail)
        answer = await read_message(self.reader)
        error = answer.error_code
        if error is not None:
            raise TurnRequestFailed(Method.CONNECTION_BIND, error.code, error.reason)
        assert answer.message_class is MessageClass.SUCCESS_RESPONSE
        assert answer.check_integrity(control.key)

    async def read(self, size: int) -> bytes:
        return await read(self.reader, size)


class EchoPeer:
    """A TCP echo server's view: where its connections came from, what it echoed, and whether a
    connection ended."""

    def __init__(self) -> None:
        self.sources: list[Address] = []
        self.ended = asyncio.Event()
        #: Bytes read and echoed, over every connection.
        self.echoed = 0

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        self.sources.append(make_address(peername[0], peername[1]))
        try:
            while data := await reader.read(65536):
                writer.write(data)
                self.echoed += len(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.ended.set()
            writer.close()


@asynccontextmanager
async def echo_peer(host: str) -> AsyncIterator[tuple[Address, EchoPeer]]:
    """A TCP echo server on ``host``: its address, and what it saw."""
    peer = EchoPeer()
    server = await asyncio.start_server(peer.echo, host, 0)
    sockname = server.sockets[0].getsockname()
    try:
        yield make_address(sockname[0], sockname[1]), peer
    finally:
        server.close()


async def control_client(
    listeners: dict[str, Address],
    transport: str = "tcp",
    certificate: CertificateFiles | None = None,
    user: str = "alice",
) -> ControlClient:
    context = client_context(certificate.certificate) if certificate is not None else None
    client = await ControlClient.connect(
        transport, listeners[transport], user, PASSWORDS[user], ssl_context=context
    )
    assert isinstance(client, ControlClient)
    return client


def data_context(certificate: CertificateFiles | None) -> ssl.SSLContext | None:
    return client_context(certificate.certificate) if certificate is not None else None


def family_of(host: str) -> AddressFamily:
    return AddressFamily.IPV6 if ":" in host else AddressFamily.IPV4


async def tcp_client(
    listeners: dict[str, Address],
    transport: str = "tcp",
    certificate: CertificateFiles | None = None,
    user: str = "alice",
    **settings: Any,
) -> TurnClient:
    """Our TurnClient, for a TCP allocation over ``transport``."""
    listener = listeners[transport]
    return await TurnClient.connect(
        listener.host,
        listener.port,
        transport="tls" if transport == "tls" else "tcp",
        username=user,
        password=PASSWORDS[user],
        ssl_context=data_context(certificate),
        config=TurnClientConfig(relay_transport=TransportProtocol.TCP, **settings),
    )


async def read(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), WAIT)


async def cross_connect(
    alice: TurnClient, bob: TurnClient
) -> tuple[asyncio.StreamReader, asyncio.StreamReader, asyncio.StreamWriter]:
    """Alice connects to Bob's relayed address and Bob accepts (both allocated); a greeting
    each way. Alice's reader, and Bob's reader and writer."""
    alice_relay, bob_relay = alice.relayed_addresses[0], bob.relayed_addresses[0]
    await bob.create_permission(alice_relay.host)
    connecting = asyncio.create_task(alice.open_connection(bob_relay))
    peer, bob_reader, bob_writer = await asyncio.wait_for(bob.accept(), WAIT)
    assert peer == alice_relay
    alice_reader, alice_writer = await asyncio.wait_for(connecting, WAIT)
    alice_writer.write(b"hello bob")
    assert await read(bob_reader, 9) == b"hello bob"
    bob_writer.write(b"hello alice")
    assert await read(alice_reader, 11) == b"hello alice"
    return alice_reader, bob_reader, bob_writer


# --------------------------------------------------------------------------- active open (§5.2)


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_connect_to_an_echo_peer_and_bytes_flow_both_ways(host: str) -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server(host) as (server, listeners),
            echo_peer(host) as (peer, echo),
        ):
            client = await tcp_client(listeners, requested_family=family_of(host))
            relayed = await client.allocate()
            assert relayed.host == host
            reader, writer = await client.open_connection(peer)
            assert echo.sources == [relayed]  # the peer sees the relayed address, port and all
            for size in (1, 1000, 100_000):
                payload = random.randbytes(size)
                writer.write(payload)
                assert await read(reader, size) == payload
            stats = server.stats
            assert stats[Outcome.CONNECTED] == 1
            assert stats[Outcome.CONNECTION_BOUND] == 1
            await until(lambda: stats.bytes_to_client == 101_001)
            assert stats.bytes_to_peer == 101_001
            metrics = render_metrics(server)
            assert 'icestack_turn_peer_connections{state="bound"} 1' in metrics
            assert 'icestack_turn_peer_connections{state="pending"} 0' in metrics
            # The client closing its data connection closes the peer connection; the
            # allocation stays, and may connect to the peer again.
            writer.close()
            await until(lambda: server.core.peer_connection_count == 0)
            assert server.tcp_relays is not None
            await until(lambda: not server.tcp_relays.peers)  # type: ignore[union-attr]
            assert server.core.allocation_count == 1
            await client.open_connection(peer)
            assert client.tcp.open == 1
            # Closing the client deletes the allocation and everything with it.
            await client.close()
            assert client.deleted and client.tcp.open == 0
            await until(lambda: server.core.allocation_count == 0)
            assert server.tcp_relays.listeners == {}
            await until(lambda: not server.tcp_relays.peers)  # type: ignore[union-attr]

    run(scenario())


def test_tls_control_and_data_connections(certificate: CertificateFiles) -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server(certificate=certificate) as (server, listeners),
            echo_peer("127.0.0.1") as (peer, _),
            await tcp_client(listeners, "tls", certificate) as client,
        ):
            await client.allocate()
            reader, writer = await client.open_connection(peer)
            assert writer.get_extra_info("sslcontext") is not None  # the data connection too
            writer.write(b"through TLS and TCP")
            assert await read(reader, 19) == b"through TLS and TCP"
            assert server.stats[Outcome.CONNECTION_BOUND] == 1

    run(scenario())


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_large_transfer_keeps_every_byte_in_order(
    certificate: CertificateFiles, transport: str
) -> None:
    """Megabytes through the splice and the echo: backpressure pauses and resumes reading on
    both sides without losing or reordering a byte."""

    async def scenario() -> None:
        async with (
            tcp_relay_server(certificate=certificate) as (_, listeners),
            echo_peer("127.0.0.1") as (peer, _),
            await tcp_client(listeners, transport, certificate) as client,
        ):
            await client.allocate()
            reader, writer = await client.open_connection(peer)
            payload = random.randbytes(4 * 1024 * 1024)

            async def write() -> None:
                writer.write(payload)
                await writer.drain()

            sending = asyncio.create_task(write())
            received = await asyncio.wait_for(reader.readexactly(len(payload)), 15.0)
            await sending
            assert received == payload

    run(scenario(), timeout=30.0)


def test_bytes_behind_the_connection_bind_go_to_the_peer() -> None:
    """Bytes in the same segment as the ConnectionBind, right behind it, are the peer's, even
    when they look like STUN (a client should wait for the answer, RFC 6062 §4.4; bytes that
    could not even be framed would close the connection)."""

    async def scenario() -> None:
        async with (
            tcp_relay_server() as (server, listeners),
            echo_peer("127.0.0.1") as (peer, _),
        ):
            control = await control_client(listeners)
            await control.allocate_tcp()
            await control.permit(peer)
            connection_id = await control.connect_peer(peer)
            data = await DataConnection.open(listeners["tcp"])
            looks_like_stun = Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).encode()
            tail = looks_like_stun + b"\x00\x01"
            await data.bind(control, connection_id, tail=tail)
            assert await data.read(len(tail)) == tail
            assert server.stats[Outcome.CONNECTION_BOUND] == 1

    run(scenario())


def test_connect_errors_over_the_network() -> None:
    async def scenario() -> None:
        policy = PeerPolicy(allow_loopback_peers=True, denied_peers=("127.0.0.2",))
        async with tcp_relay_server(peer_policy=policy) as (server, listeners):
            client = await tcp_client(listeners)
            await client.allocate()
            nobody = make_address("127.0.0.1", closed_port("127.0.0.1", socket.SOCK_STREAM))
            with pytest.raises(PeerConnectionFailed) as failed:
                await client.open_connection(nobody)  # nothing listens there
            assert failed.value.code == 447 and failed.value.step == "Connect"
            assert "could not connect to the peer" in str(failed.value)
            assert server.core.peer_connection_count == 0
            assert server.tcp_relays is not None and server.tcp_relays.peers == {}
            with pytest.raises(PeerConnectionFailed) as refused:
                await client.open_connection(make_address("127.0.0.2", 80))
            assert refused.value.code == 403 and refused.value.step == "CreatePermission"
            assert "peer policy" in str(refused.value)
            await client.close()

    run(scenario())


def test_a_connect_without_permission_or_on_a_udp_allocation_is_refused() -> None:
    """What our client never sends: 403 without a permission, 400 on a UDP allocation."""

    async def scenario() -> None:
        async with tcp_relay_server() as (server, listeners):
            control = await control_client(listeners)
            await control.allocate_tcp()
            nobody = make_address("127.0.0.1", closed_port("127.0.0.1", socket.SOCK_STREAM))
            with pytest.raises(TurnRequestFailed) as forbidden:
                await control.connect_peer(nobody)  # no permission
            assert forbidden.value.code == 403
            assert server.core.peer_connection_count == 0
            udp = await RawTurnClient.connect("tcp", listeners["tcp"], "bob", PASSWORDS["bob"])
            await udp.allocate()  # a UDP allocation over TCP
            with pytest.raises(TurnRequestFailed) as wrong:
                await udp.request(Method.CONNECT, [XorPeerAddress(nobody)])
            assert wrong.value.code == 400
            await udp.close()
            await control.close()

    run(scenario())


def test_tcp_allocations_can_be_turned_off() -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server(tcp_relays=False) as (_, listeners),
            await tcp_client(listeners) as client,
        ):
            with pytest.raises(ErrorResponse) as refused:
                await client.allocate()
            assert refused.value.code == 442

    run(scenario())


# --------------------------------------------------------------------------- passive open (§5.3)


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_a_peer_connects_and_the_client_binds(host: str) -> None:
    async def scenario() -> None:
        async with tcp_relay_server(host) as (server, listeners):
            client = await tcp_client(listeners, requested_family=family_of(host))
            relayed = await client.allocate()
            await client.create_permission(host)  # permissions go by IP address
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            sockname = writer.get_extra_info("sockname")
            writer.write(b"sent before the client bound")  # the server holds it
            peer, data_reader, data_writer = await asyncio.wait_for(client.accept(), WAIT)
            assert peer == make_address(sockname[0], sockname[1])
            assert await read(data_reader, 28) == b"sent before the client bound"
            data_writer.write(b"and the answer")
            assert await read(reader, 14) == b"and the answer"
            assert server.stats[Outcome.CONNECTION_ATTEMPT] == 1
            # The peer closing closes the client data connection.
            writer.close()
            assert await closed_by_server(data_reader)
            await until(lambda: server.core.peer_connection_count == 0)
            await client.close()

    run(scenario())


def test_a_peer_without_permission_is_closed_and_nobody_told() -> None:
    async def scenario() -> None:
        async with tcp_relay_server() as (server, listeners):
            client = await tcp_client(listeners)
            relayed = await client.allocate()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            assert await closed_by_server(reader)
            writer.close()
            assert server.stats[Outcome.PEER_CONNECTION_REFUSED] == 1
            assert server.core.peer_connection_count == 0
            await client.create_permission("127.0.0.3")  # a round trip on the control connection
            assert client.tcp.pending == 0
            await client.close()

    run(scenario())


def test_an_unclaimed_peer_connection_is_closed() -> None:
    async def scenario() -> None:
        async with tcp_relay_server(connection_bind_timeout=0.2) as (server, listeners):
            client = await tcp_client(listeners)
            relayed = await client.allocate()
            await client.create_permission(relayed.host)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            await until(lambda: client.tcp.pending == 1)
            assert await closed_by_server(reader)
            writer.close()
            assert server.stats[Outcome.CONNECTION_UNCLAIMED] == 1
            with pytest.raises(PeerConnectionFailed) as late:
                await client.accept()
            # The CONNECTION-ID names nothing now, so not even the control connection's nonce
            # is good on this connection (438), and with the fresh nonce it is 400.
            assert late.value.code == 400 and late.value.step == "ConnectionBind"
            assert "holds no such peer connection" in str(late.value)
            await client.close()

    run(scenario())


def test_two_clients_connect_through_their_relays() -> None:
    """What turnutils_uclient -T does: one client Connects to the other's relayed address; the
    other is told by a ConnectionAttempt; both bind, and bytes cross both relays."""

    async def scenario() -> None:
        async with tcp_relay_server() as (server, listeners):
            alice = await tcp_client(listeners, lifetime=600)
            bob = await tcp_client(listeners, user="bob")
            await alice.allocate()
            await bob.allocate()
            alice_reader, _, bob_writer = await cross_connect(alice, bob)
            assert server.core.peer_connection_count == 2
            bob_writer.close()  # closes bob's side, so the relay-to-relay TCP, so alice's side
            assert await closed_by_server(alice_reader)
            await until(lambda: server.core.peer_connection_count == 0)
            await alice.close()
            await bob.close()

    run(scenario())
