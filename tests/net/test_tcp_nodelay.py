"""No Nagle on our streams: every TCP connection icestack opens or accepts has TCP_NODELAY set —
STUN and TURN clients, the connections STUN and TURN servers accept over TCP and TLS, and both
legs of a TCP relay (RFC 6062). Nagle's algorithm holds a small write back until the previous one
is acknowledged, and the other side delays that ACK by up to 40 ms.

The check reads the real sockets: every connected TCP socket of this process, found through
/proc/self/fd, by its local and remote address. Under the default event loop and uvloop."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from stun import Address, make_address
from stun.aio import StunClient, StunServer
from stun.tls import CertificateFiles, client_context, make_self_signed, server_context
from tests.net.loopback import TEST_TIMEOUT
from tests.turn.test_tcp_relay_aio import (
    PASSWORDS,
    echo_peer,
    tcp_client,
    tcp_relay_server,
)
from turn import TurnClient

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="finds the process's sockets through /proc"
)

LOOPS = ["asyncio", "uvloop"]


def run_on(loop: str, coroutine: Coroutine[Any, Any, None]) -> None:
    """Run on the named event loop, failing (not hanging) after the tests' bound."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is optional (icestack[fast])")
        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    else:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(coroutine, TEST_TIMEOUT))


def nodelay_by_connection() -> dict[tuple[Address, Address], bool]:
    """(local, remote) -> TCP_NODELAY, for every connected TCP socket of this process."""
    found: dict[tuple[Address, Address], bool] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            duplicate = os.dup(int(name))
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:  # not a socket
            os.close(duplicate)
            continue
        with sock:
            if sock.type != socket.SOCK_STREAM or sock.family not in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                continue
            try:
                remote = sock.getpeername()
            except OSError:  # listening, or not connected
                continue
            local = sock.getsockname()
            key = (make_address(local[0], local[1]), make_address(remote[0], remote[1]))
            found[key] = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return found


def ours(local: Address | None = None, remote: Address | None = None) -> list[bool]:
    """TCP_NODELAY of the connections with this local and/or remote address (one at least)."""
    matching = [
        nodelay
        for (mine, theirs), nodelay in nodelay_by_connection().items()
        if (local is None or mine == local) and (remote is None or theirs == remote)
    ]
    assert matching, f"no connection from {local} to {remote}"
    return matching


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("nodelay-tls"))


def contexts(
    transport: str, certificate: CertificateFiles
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The server's and the client's TLS contexts, or none for TCP."""
    if transport == "tcp":
        return None, None
    server = server_context(certificate.certificate, certificate.private_key)
    return server, client_context(certificate.certificate)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stun_client_and_server_connections(
    transport: str, loop: str, certificate: CertificateFiles
) -> None:
    async def scenario() -> None:
        server_tls, client_tls = contexts(transport, certificate)
        async with StunServer() as server:
            listener = await server.listen(
                transport,  # type: ignore[arg-type]
                "127.0.0.1",
                ssl_context=server_tls,
            )
            async with await StunClient.connect(
                "127.0.0.1",
                listener.address.port,
                transport=transport,  # type: ignore[arg-type]
                ssl_context=client_tls,
                server_hostname="localhost",
            ) as client:
                result = await client.binding()
                assert ours(local=listener.address) == [True]  # what the server accepted
                assert ours(local=result.mapped_address) == [True]  # the client's

    run_on(loop, scenario())


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_turn_client_and_server_connections(
    transport: str, loop: str, certificate: CertificateFiles
) -> None:
    async def scenario() -> None:
        async with tcp_relay_server(certificate=certificate) as (_, listeners):
            _, client_tls = contexts(transport, certificate)
            listener = listeners[transport]
            client = await TurnClient.connect(
                "127.0.0.1",
                listener.port,
                username="alice",
                password=PASSWORDS["alice"],
                transport=transport,  # type: ignore[arg-type]
                ssl_context=client_tls,
                server_hostname="localhost",
            )
            try:
                await client.allocate()
                assert client.local_address is not None
                assert ours(local=listener, remote=client.local_address) == [True]
                assert ours(local=client.local_address, remote=listener) == [True]
            finally:
                await client.close()

    run_on(loop, scenario())


@pytest.mark.parametrize("loop", LOOPS)
def test_both_legs_of_tcp_relays(loop: str) -> None:
    """Active open (§5.2: the server connects from the relayed address), passive open (§5.3: a
    peer connects to it), and the client data connections the server splices them to."""

    async def scenario() -> None:
        async with (
            tcp_relay_server() as (_, listeners),
            echo_peer("127.0.0.1") as (peer, _),
        ):
            client = await tcp_client(listeners)
            relayed = await client.allocate()
            _, active = await client.open_connection(peer)
            await client.create_permission(relayed.host)
            reader, writer = await asyncio.open_connection(relayed.host, relayed.port)
            _, _, passive = await asyncio.wait_for(client.accept(), TEST_TIMEOUT)
            passive.write(b"to the peer")
            assert await reader.readexactly(11) == b"to the peer"

            assert ours(local=relayed, remote=peer) == [True]  # the server's, to the echo peer
            peer_socket = writer.get_extra_info("sockname")
            assert ours(local=relayed, remote=make_address(*peer_socket[:2])) == [True]
            for data in (active, passive):
                sockname = data.get_extra_info("sockname")
                client_end = make_address(sockname[0], sockname[1])
                assert ours(local=listeners["tcp"], remote=client_end) == [True]
            writer.close()
            await client.close()

    run_on(loop, scenario())
