"""What TurnClient's TCP allocations promise beyond the wire (RFC 6062 through our TurnServer on
loopback): errors in words, bounded buffers that hold a fast peer back, a bounded queue of peers
waiting to be accepted, and every wait ended when the allocation ends. Nothing asserts a
duration; every wait is bounded."""

from __future__ import annotations

import asyncio
import socket

import pytest

from stun import TransactionTimeout, make_address
from stun.client import ClientConfig
from stun.transaction import TransactionConfig
from tests.net.loopback import run, until
from tests.turn.aio_client import WAIT
from tests.turn.test_tcp_relay_aio import (
    PASSWORDS,
    echo_peer,
    read,
    tcp_client,
    tcp_relay_server,
)
from turn import LocalProtocolError, PeerConnectionFailed, TurnClient, TurnError
from turn.server import ConnectionState, Outcome


def test_a_second_connection_to_a_peer_is_refused_with_446_in_words() -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server() as (server, listeners),
            echo_peer("127.0.0.1") as (peer, _),
            await tcp_client(listeners) as client,
        ):
            await client.allocate()
            await client.open_connection(peer)
            with pytest.raises(PeerConnectionFailed) as exists:
                await client.open_connection(peer)
            assert exists.value.code == 446 and exists.value.peer == peer
            assert "exists on the allocation already" in str(exists.value)
            assert server.stats[Outcome.CONNECTION_EXISTS] == 1

    run(scenario())


def test_a_udp_allocation_has_no_connections() -> None:
    async def scenario() -> None:
        async with tcp_relay_server() as (_, listeners):
            server = listeners["udp"]
            async with await TurnClient.connect(
                server.host, server.port, username="alice", password=PASSWORDS["alice"]
            ) as client:
                await client.allocate()
                with pytest.raises(LocalProtocolError, match="TCP allocations"):
                    await client.open_connection(make_address("127.0.0.1", 9))

    run(scenario())


def test_a_fast_peer_is_held_back_by_a_client_that_does_not_read() -> None:
    """A data connection's reader stops reading once it holds about twice its ``limit``, and
    then the server's buffers and TCP's windows hold the peer back: bytes wait in the peer's
    own buffer. Then every byte arrives, in order, and the reader reads again."""

    async def scenario() -> None:
        async with (
            tcp_relay_server() as (_, listeners),
            await tcp_client(listeners) as client,
        ):
            relayed = await client.allocate()
            await client.create_permission(relayed.host)
            _, peer_writer = await asyncio.open_connection(relayed.host, relayed.port)
            _, reader, writer = await asyncio.wait_for(client.accept(limit=2**16), WAIT)
            data_connection = writer.transport
            assert isinstance(data_connection, asyncio.Transport)
            payload = bytes(range(256)) * (256 * 1024)  # 64 MiB
            peer_writer.write(payload)
            # Nobody reads: the reader fills up to its bound and stops reading the connection.
            await until(lambda: not data_connection.is_reading())
            assert peer_writer.transport.get_write_buffer_size() > 0  # the peer is held back
            received = await asyncio.wait_for(reader.readexactly(len(payload)), 30.0)
            assert received == payload
            assert data_connection.is_reading()
            assert peer_writer.transport.get_write_buffer_size() == 0
            peer_writer.close()

    run(scenario(), timeout=60.0)


def test_peers_beyond_max_pending_are_dropped_and_counted() -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server() as (server, listeners),
            await tcp_client(listeners) as client,
        ):
            relayed = await client.allocate()
            await client.create_permission(relayed.host)
            client.tcp.max_pending = 1
            first = await asyncio.open_connection(relayed.host, relayed.port)
            await until(lambda: client.tcp.pending == 1)
            second = await asyncio.open_connection(relayed.host, relayed.port)
            await until(lambda: client.tcp.dropped == 1)
            assert client.tcp.pending == 1
            assert server.stats[Outcome.CONNECTION_ATTEMPT] == 2
            peer, reader, _ = await asyncio.wait_for(client.accept(), WAIT)
            sockname = first[1].get_extra_info("sockname")
            assert peer == make_address(sockname[0], sockname[1])
            first[1].write(b"first")
            assert await read(reader, 5) == b"first"
            for _, writer in (first, second):
                writer.close()

    run(scenario())


def test_connections_iterates_until_the_client_closes() -> None:
    async def scenario() -> None:
        async with tcp_relay_server() as (_, listeners):
            client = await tcp_client(listeners)
            relayed = await client.allocate()
            await client.create_permission(relayed.host)
            peers = [await asyncio.open_connection(relayed.host, relayed.port) for _ in range(2)]
            seen = []

            async def serve() -> None:
                async for peer, _, writer in client.connections():
                    seen.append(peer)
                    writer.write(b"hi")
                    if len(seen) == 2:
                        await client.close()

            await asyncio.wait_for(serve(), WAIT)  # ends: the allocation is gone
            assert len(seen) == 2
            for peer_reader, peer_writer in peers:
                assert await read(peer_reader, 2) == b"hi"
                peer_writer.close()

    run(scenario())


def test_closing_the_client_ends_every_wait_and_every_data_connection() -> None:
    async def scenario() -> None:
        async with (
            tcp_relay_server() as (server, listeners),
            echo_peer("127.0.0.1") as (peer, _),
        ):
            client = await tcp_client(listeners)
            await client.allocate()
            reader, _ = await client.open_connection(peer)
            accepting = asyncio.create_task(client.accept())
            await asyncio.sleep(0)
            await client.close()
            with pytest.raises(TurnError, match="closed"):
                await asyncio.wait_for(accepting, WAIT)
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            assert client.tcp.open == 0
            await until(lambda: server.core.peer_connection_count == 0)
            with pytest.raises(TurnError):
                await client.accept()

    run(scenario())


def test_a_lost_control_connection_ends_the_allocation_and_its_waits() -> None:
    async def scenario() -> None:
        async with tcp_relay_server() as (_, listeners):
            client = await tcp_client(listeners)
            await client.allocate()
            accepting = asyncio.create_task(client.accept())
            await asyncio.sleep(0)
        # the server is gone, and the control connection with it
        with pytest.raises(TurnError, match="connection to the server closed"):
            await asyncio.wait_for(accepting, WAIT)
        await client.close()

    run(scenario())


def test_a_connect_the_server_does_not_answer_in_time_ends_after_ti() -> None:
    """A peer whose accept queue is full drops SYNs: the server keeps connecting (30 s at least,
    RFC 6062 §5.2) while our Connect gives up after its Ti, here one second."""

    async def scenario() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            peer = make_address(*listener.getsockname())
            # Linux queues backlog + 1 connections: this one fills the queue
            queued = socket.create_connection(peer, timeout=WAIT)
            ti = ClientConfig(transaction=TransactionConfig(reliable_timeout=1.0))
            async with (
                tcp_relay_server() as (server, listeners),
                await tcp_client(listeners, stun=ti) as client,
            ):
                await client.allocate()
                with pytest.raises(PeerConnectionFailed) as failed:
                    await client.open_connection(peer)
                assert failed.value.step == "Connect"
                assert isinstance(failed.value.error, TransactionTimeout)
                connections = server.core.connections
                assert connections.count_in(ConnectionState.CONNECTING) == 1  # still trying
            queued.close()

    run(scenario())
