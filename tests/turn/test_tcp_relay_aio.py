"""TCP relays (RFC 6062) through turn.server.aio.TurnServer on loopback: a client made of our
codec allocates TCP over a TCP or TLS control connection, Connects to a local TCP echo peer, opens
a data connection, ConnectionBinds, and bytes flow both ways; a peer connects to the relayed
address and the client, told by a ConnectionAttempt, binds; closes travel both ways; peers
without permission, failed connects and unclaimed connections are closed.

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
from tests.net.loopback import LOOPBACK_HOSTS, closed_port, run, until
from tests.turn.aio_client import WAIT, RawTurnClient, TurnRequestFailed
from turn import (
    ConnectionId,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    TransportProtocol,
    XorPeerAddress,
    XorRelayedAddress,
)
from turn.channel import MAX_CHANNEL
from turn.server import Outcome, PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer, render_metrics

REALM = "icestack.test"
PASSWORDS = {"alice": "wonderland", "bob": "the-builder"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("tcp-relay-tls"))


@asynccontextmanager
async def tcp_relay_server(
    host: str = "127.0.0.1", certificate: CertificateFiles | None = None, **options: Any
) -> AsyncIterator[tuple[TurnServer, dict[str, Address]]]:
    """A TurnServer relaying on ``host`` with TCP and UDP listeners on one port (as coturn and
    ``icestack serve turn`` have them) and, given a certificate, a TLS listener."""
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(REALM, PASSWORDS),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
        **options,
    )
    async with TurnServer(config, relay_hosts=[host]) as server:
        listeners = {"tcp": (await server.listen("tcp", host)).address}
        listeners["udp"] = (await server.listen("udp", host, listeners["tcp"].port)).address
        if certificate is not None:
            context = server_context(certificate.certificate, certificate.private_key)
            listeners["tls"] = (await server.listen("tls", host, ssl_context=context)).address
        yield server, listeners


class ControlClient(RawTurnClient):
    """The control connection: our raw TURN client, also collecting ConnectionAttempts."""

    def __init__(self, username: str, password: str, max_channel: int = MAX_CHANNEL) -> None:
        super().__init__(username, password, max_channel)
        self.attempts: asyncio.Queue[Message] = asyncio.Queue()

    def _received(self, data: bytes) -> None:
        message = Message.decode(data)
        if (message.method, message.message_class) == (
            Method.CONNECTION_ATTEMPT,
            MessageClass.INDICATION,
        ):
            self.attempts.put_nowait(message)
        else:
            super()._received(data)

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

    async def attempt(self) -> tuple[Address, int]:
        """The next ConnectionAttempt: the peer and the CONNECTION-ID."""
        message = await asyncio.wait_for(self.attempts.get(), WAIT)
        peer, connection_id = message.get(XorPeerAddress), message.get(ConnectionId)
        assert peer is not None and connection_id is not None
        return peer.address, connection_id.value


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

    def connection_bind(self, control: ControlClient, connection_id: int, nonce: str) -> bytes:
        assert control.realm is not None
        request = Message(
            Method.CONNECTION_BIND,
            MessageClass.REQUEST,
            secrets.token_bytes(12),
            [
                ConnectionId(connection_id),
                Username(control.username),
                Realm(control.realm),
                Nonce(nonce),
            ],
        )
        return request.encode(key=control.key)

    async def bind(self, control: ControlClient, connection_id: int, tail: bytes = b"") -> None:
        """ConnectionBind with the control connection's credentials, nonce included (§4.4);
        ``tail`` goes in the same write, right behind the request (raw bytes for the peer)."""
        assert control.nonce is not None
        self.writer.write(self.connection_bind(control, connection_id, control.nonce) + tail)
        answer = await read_message(self.reader)
        error = answer.error_code
        if error is not None:
            raise TurnRequestFailed(Method.CONNECTION_BIND, error.code, error.reason)
        assert answer.message_class is MessageClass.SUCCESS_RESPONSE
        assert answer.check_integrity(control.key)

    async def read(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), WAIT)

    async def closed(self) -> bool:
        return await closed_by_server(self.reader)

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def echo_peer(host: str) -> AsyncIterator[tuple[Address, list[Address]]]:
    """A TCP echo server on ``host``; the list collects where its connections came from."""
    sources: list[Address] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        sources.append(make_address(peername[0], peername[1]))
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, host, 0)
    sockname = server.sockets[0].getsockname()
    try:
        yield make_address(sockname[0], sockname[1]), sources
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


async def connected_pair(
    listeners: dict[str, Address], peer: Address
) -> tuple[ControlClient, DataConnection]:
    """A control connection with a TCP allocation, Connected to ``peer``, and its data
    connection bound."""
    control = await control_client(listeners)
    await control.allocate_tcp()
    await control.permit(peer)
    connection_id = await control.connect_peer(peer)
    data = await DataConnection.open(listeners["tcp"])
    await data.bind(control, connection_id)
    return control, data


# --------------------------------------------------------------------------- active open (§5.2)


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_connect_to_an_echo_peer_and_bytes_flow_both_ways(host: str) -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server(host) as (server, listeners),
            echo_peer(host) as (peer, sources),
        ):
            control = await control_client(listeners)
            relayed = await control.allocate_tcp(RequestedAddressFamily(family_of(host)))
            assert relayed.host == host
            await control.permit(peer)
            connection_id = await control.connect_peer(peer)
            assert sources == [relayed]  # the peer sees the relayed address, port and all
            data = await DataConnection.open(listeners["tcp"])
            await data.bind(control, connection_id)
            for size in (1, 1000, 100_000):
                payload = random.randbytes(size)
                data.writer.write(payload)
                assert await data.read(size) == payload
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
            data.close()
            await until(lambda: server.core.peer_connection_count == 0)
            assert server.tcp_relays is not None
            await until(lambda: not server.tcp_relays.peers)  # type: ignore[union-attr]
            assert server.core.allocation_count == 1
            await control.connect_peer(peer)
            # The control connection closing deletes the allocation and everything with it.
            await control.close()
            await until(lambda: server.core.allocation_count == 0)
            assert server.tcp_relays.listeners == {}
            await until(lambda: not server.tcp_relays.peers)  # type: ignore[union-attr]

    run(scenario())


def test_tls_control_and_data_connections(certificate: CertificateFiles) -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server(certificate=certificate) as (_, listeners),
            echo_peer("127.0.0.1") as (peer, _),
        ):
            control = await control_client(listeners, "tls", certificate)
            await control.allocate_tcp()
            await control.permit(peer)
            connection_id = await control.connect_peer(peer)
            data = await DataConnection.open(listeners["tls"], data_context(certificate))
            await data.bind(control, connection_id)
            data.writer.write(b"through TLS and TCP")
            assert await data.read(19) == b"through TLS and TCP"
            data.close()
            await control.close()

    run(scenario())


def test_a_large_transfer_keeps_every_byte_in_order() -> None:
    """Megabytes through the splice and the echo: backpressure pauses and resumes reading on
    both sides without losing or reordering a byte."""

    async def scenario() -> None:
        async with (
            tcp_relay_server() as (_, listeners),
            echo_peer("127.0.0.1") as (peer, _),
        ):
            _, data = await connected_pair(listeners, peer)
            payload = random.randbytes(4 * 1024 * 1024)

            async def write() -> None:
                data.writer.write(payload)
                await data.writer.drain()

            writer = asyncio.create_task(write())
            received = await asyncio.wait_for(data.reader.readexactly(len(payload)), 15.0)
            await writer
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
        async with tcp_relay_server() as (server, listeners):
            control = await control_client(listeners)
            await control.allocate_tcp()
            nobody = make_address("127.0.0.1", closed_port("127.0.0.1", socket.SOCK_STREAM))
            with pytest.raises(TurnRequestFailed) as forbidden:
                await control.connect_peer(nobody)  # no permission
            assert forbidden.value.code == 403
            await control.permit(nobody)
            with pytest.raises(TurnRequestFailed) as failed:
                await control.connect_peer(nobody)  # nothing listens there
            assert failed.value.code == 447
            assert server.core.peer_connection_count == 0
            assert server.tcp_relays is not None and server.tcp_relays.peers == {}
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
        async with tcp_relay_server(tcp_relays=False) as (_, listeners):
            control = await control_client(listeners)
            with pytest.raises(TurnRequestFailed) as refused:
                await control.allocate_tcp()
            assert refused.value.code == 442
            await control.close()

    run(scenario())


# --------------------------------------------------------------------------- passive open (§5.3)


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_a_peer_connects_and_the_client_binds(host: str) -> None:
    async def scenario() -> None:
        async with tcp_relay_server(host) as (server, listeners):
            control = await control_client(listeners)
            relayed = await control.allocate_tcp(RequestedAddressFamily(family_of(host)))
            await control.permit(make_address(host, 1))  # permissions go by IP address
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            sockname = writer.get_extra_info("sockname")
            writer.write(b"sent before the client bound")  # the server holds it
            peer, connection_id = await control.attempt()
            assert peer == make_address(sockname[0], sockname[1])
            data = await DataConnection.open(listeners["tcp"])
            await data.bind(control, connection_id)
            assert await data.read(28) == b"sent before the client bound"
            data.writer.write(b"and the answer")
            assert await asyncio.wait_for(reader.readexactly(14), WAIT) == b"and the answer"
            assert server.stats[Outcome.CONNECTION_ATTEMPT] == 1
            # The peer closing closes the client data connection.
            writer.close()
            assert await data.closed()
            await until(lambda: server.core.peer_connection_count == 0)
            await control.close()

    run(scenario())


def test_a_peer_without_permission_is_closed_and_nobody_told() -> None:
    async def scenario() -> None:
        async with tcp_relay_server() as (server, listeners):
            control = await control_client(listeners)
            relayed = await control.allocate_tcp()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            assert await closed_by_server(reader)
            writer.close()
            assert control.attempts.empty()
            assert server.stats[Outcome.PEER_CONNECTION_REFUSED] == 1
            assert server.core.peer_connection_count == 0
            await control.close()

    run(scenario())


def test_an_unclaimed_peer_connection_is_closed() -> None:
    async def scenario() -> None:
        async with tcp_relay_server(connection_bind_timeout=0.2) as (server, listeners):
            control = await control_client(listeners)
            relayed = await control.allocate_tcp()
            await control.permit(relayed)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            _, connection_id = await control.attempt()
            assert await closed_by_server(reader)
            writer.close()
            assert server.stats[Outcome.CONNECTION_UNCLAIMED] == 1
            data = await DataConnection.open(listeners["tcp"])
            with pytest.raises(TurnRequestFailed) as late:
                await data.bind(control, connection_id)
            # The CONNECTION-ID names nothing now, so not even the control connection's nonce
            # is good on this connection (a client that tries again with a fresh one gets 400).
            assert late.value.code == 438
            data.close()
            await control.close()

    run(scenario())


def test_two_clients_connect_through_their_relays() -> None:
    """What turnutils_uclient -T does: one client Connects to the other's relayed address; the
    other is told by a ConnectionAttempt; both bind, and bytes cross both relays."""

    async def scenario() -> None:
        async with tcp_relay_server() as (server, listeners):
            alice = await control_client(listeners)
            bob = await control_client(listeners, user="bob")
            alice_relay = await alice.allocate_tcp(Lifetime(600))
            bob_relay = await bob.allocate_tcp()
            await alice.permit(bob_relay)
            await bob.permit(alice_relay)
            alice_id = await alice.connect_peer(bob_relay)
            peer, bob_id = await bob.attempt()
            assert peer == alice_relay
            alice_data = await DataConnection.open(listeners["tcp"])
            await alice_data.bind(alice, alice_id)
            bob_data = await DataConnection.open(listeners["tcp"])
            await bob_data.bind(bob, bob_id)
            alice_data.writer.write(b"hello bob")
            assert await bob_data.read(9) == b"hello bob"
            bob_data.writer.write(b"hello alice")
            assert await alice_data.read(11) == b"hello alice"
            assert server.core.peer_connection_count == 2
            bob_data.close()  # closes bob's side, so the relay-to-relay TCP, so alice's side
            assert await alice_data.closed()
            await until(lambda: server.core.peer_connection_count == 0)
            await alice.close()
            await bob.close()

    run(scenario())
