"""Our TURN client through our TURN server, and ICE whose only path is that server: real sockets
on 127.0.0.1 (the server admits loopback peers for the test, as coturn's --allow-loopback-peers)."""

from __future__ import annotations

import asyncio
import socket

import pytest

import ice
from stun.address import Address
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, client_context, server_context
from turn import TurnClient
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

from .loopback import run, until

USER = "alice"
PASSWORD = "wonderland-relay"
LOOPBACK = "127.0.0.1"


def server_config() -> TurnServerConfig:
    return TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack", {USER: PASSWORD}),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )


@pytest.mark.parametrize(
    ("transport", "batch_io"),
    [("udp", True), ("udp", False), ("tcp", True), ("tls", True)],
    ids=["udp", "udp-portable-io", "tcp", "tls"],
)
def test_turn_client_relays_both_ways_through_our_server(
    transport: str, batch_io: bool, tls_files: CertificateFiles
) -> None:
    """Both UDP I/O paths of the server (stun.batch_io) relay the same; TCP and TLS clients
    reach UDP relays, whose I/O is batched."""

    async def scenario() -> None:
        async with TurnServer(
            server_config(), relay_hosts=[LOOPBACK], batch_io=batch_io
        ) as server:
            context = (
                server_context(tls_files.certificate, tls_files.private_key)
                if transport == "tls"
                else None
            )
            listener = await server.listen(transport, LOOPBACK, 0, ssl_context=context)  # type: ignore[arg-type]
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind((LOOPBACK, 0))
            peer.setblocking(False)
            peer_address = Address(LOOPBACK, peer.getsockname()[1])
            loop = asyncio.get_running_loop()
            client = await TurnClient.connect(
                LOOPBACK,
                listener.address.port,
                username=USER,
                password=PASSWORD,
                transport=transport,  # type: ignore[arg-type]
                ssl_context=client_context(tls_files.certificate) if transport == "tls" else None,
            )
            try:
                relayed = await client.allocate()
                assert relayed.host == LOOPBACK
                for size in (1, 3, 100, 1000):
                    payload = bytes(range(256)) * 4
                    await client.send(payload[:size], peer_address)
                    data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 5)
                    assert data == payload[:size]
                    assert Address(source[0], source[1]) == relayed
                    await loop.sock_sendto(peer, b"reply %d" % size, (relayed.host, relayed.port))
                    answer, sender = await asyncio.wait_for(client.recv(), 5)
                    assert (answer, sender) == (b"reply %d" % size, peer_address)
            finally:
                await client.close()
                peer.close()
            assert client.deleted
            await until(lambda: len(server.core.table) == 0)

    run(scenario())


def test_wrong_password_is_refused() -> None:
    async def scenario() -> None:
        async with TurnServer(server_config(), relay_hosts=[LOOPBACK]) as server:
            listener = await server.listen("udp", LOOPBACK, 0)
            client = await TurnClient.connect(
                LOOPBACK, listener.address.port, username=USER, password="nope"
            )
            try:
                with pytest.raises(Exception, match="401"):
                    await client.allocate()
            finally:
                await client.close()
            assert len(server.core.table) == 0

    run(scenario())


def test_ice_connects_when_the_turn_server_is_the_only_path() -> None:
    """Both agents relay-only: each signals nothing but its relayed candidate, so every check
    and every datagram crosses our TURN server (RFC 8445 §5.1.1.2)."""

    async def scenario() -> None:
        async with TurnServer(server_config(), relay_hosts=[LOOPBACK]) as server:
            listener = await server.listen("udp", LOOPBACK, 0)
            turn = [(LOOPBACK, listener.address.port, USER, PASSWORD)]
            a, b = (
                ice.Connection(
                    controlling,
                    include_loopback=True,
                    interfaces=[LOOPBACK],
                    use_ipv6=False,
                    turn_servers=turn,
                    relay_only=True,
                )
                for controlling in (True, False)
            )
            async with a, b:
                await asyncio.gather(a.gather_candidates(), b.gather_candidates())
                for local, remote in ((a, b), (b, a)):
                    assert [c.type.value for c in local.local_candidates] == ["relay"]
                    remote.set_remote_credentials(local.local_username, local.local_password)
                    for candidate in local.local_candidates:
                        await remote.add_remote_candidate(candidate)
                    await remote.add_remote_candidate(None)
                await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
                pair = a.selected_pair()
                assert pair is not None
                assert pair.local.type.value == "relay" and pair.remote.type.value == "relay"
                await a.send(b"\x80over the relay")
                assert await asyncio.wait_for(b.recv(), 5) == b"\x80over the relay"
                await b.send(b"\x80and back")
                assert await asyncio.wait_for(a.recv(), 5) == b"\x80and back"
                assert len(server.core.table) == 2
            await until(lambda: len(server.core.table) == 0)  # close() deallocated both

    run(scenario())
