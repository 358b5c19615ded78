"""Every public entry point of the STUN and TURN clients checks its arguments at the call: a wrong
type or value raises the package's LocalProtocolError naming the argument and what is wanted,
before anything is sent — not a TypeError later inside the event loop, an AttributeError, or a
request to a port nothing listens on (docs/stun.md, docs/turn.md: Errors)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import stun
import turn
from stun import Address, Software, make_address
from stun.aio import StunClient, StunServer, binding
from stun.server import LongTermCredentials
from tests.net.loopback import run
from turn import TurnClient
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

HOST = "127.0.0.1"

#: StunClient.connect / binding keyword arguments, and what the error must say.
BAD_CONNECT: list[tuple[dict[str, Any], str]] = [
    ({"port": 0}, "port 0 out of range 1-65535"),
    ({"port": 70000}, "port 70000 out of range 1-65535"),
    ({"port": "3478"}, "port must be an int in 1-65535, not '3478'"),
    ({"port": True}, "port must be an int in 1-65535, not True"),
    ({"transport": "TCP"}, "unknown transport 'TCP': udp, tcp or tls"),
    ({"family": 99}, "family must be one of 0, socket.AF_INET, socket.AF_INET6, not 99"),
    ({"connect_timeout": 0}, "connect_timeout must be a positive, finite number of seconds"),
    ({"connect_timeout": float("inf")}, "connect_timeout must be a positive, finite number"),
    ({"connect_timeout": "5"}, "connect_timeout must be a number of seconds, not '5'"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_CONNECT)
def test_stun_client_connect_and_binding_check_their_arguments(
    arguments: dict[str, Any], message: str
) -> None:
    async def scenario() -> None:
        with pytest.raises(stun.LocalProtocolError, match=re.escape(message)):
            await StunClient.connect(HOST, **arguments)
        with pytest.raises(stun.LocalProtocolError, match=re.escape(message)):
            await binding(HOST, **arguments)

    run(scenario())


@pytest.mark.parametrize("host", ["", None, b"127.0.0.1"])
def test_stun_client_wants_a_host_name(host: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(stun.LocalProtocolError, match="host must"):
            await StunClient.connect(host)

    run(scenario())


@pytest.mark.parametrize(
    ("method", "attributes", "message"),
    [
        ("binding", (), "method must be an int"),
        (1, [b"raw"], "attributes must be stun attributes"),
        (1, 5, "attributes must be an iterable of stun attributes, not 5"),
        (0x1000, (), "method out of range: 0x1000"),
    ],
)
def test_stun_client_request_checks_method_and_attributes(
    method: Any, attributes: Any, message: str
) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            listener = await server.listen("udp", HOST)
            async with await StunClient.connect(HOST, listener.address.port) as client:
                with pytest.raises(stun.LocalProtocolError, match=re.escape(message)):
                    await client.request(method, attributes)
                # and the client goes on: nothing was queued
                response, _ = await client.request(attributes=[Software("after")])
                assert response.transaction_id

    run(scenario())


# --------------------------------------------------------------------------- TURN


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        *BAD_CONNECT,
        ({"username": 5, "password": "x"}, "username must be a str, not 5"),
        ({"username": "", "password": "x"}, "username must not be empty"),
        ({"max_queued": 0}, "max_queued must be an int of at least 1, not 0"),
    ],
)
def test_turn_client_connect_checks_its_arguments(arguments: dict[str, Any], message: str) -> None:
    credentials = {"username": "alice", "password": "wonderland"}

    async def scenario() -> None:
        with pytest.raises(turn.LocalProtocolError, match=re.escape(message)):
            await TurnClient.connect(HOST, **{**credentials, **arguments})

    run(scenario())


@asynccontextmanager
async def allocated() -> AsyncIterator[TurnClient]:
    """A TurnClient with an allocation on a loopback TurnServer that relays to loopback peers."""
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack.test", {"alice": "wonderland"}),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )
    async with TurnServer(config, relay_hosts=[HOST]) as server:
        listener = await server.listen("udp", HOST)
        client = await TurnClient.connect(
            HOST, listener.address.port, username="alice", password="wonderland"
        )
        async with client:
            await client.allocate()
            yield client


BAD_PEERS: list[tuple[Any, str]] = [
    ("127.0.0.1:5000", "peer must be an Address(host, port) of an IP literal, not '127.0.0.1:50"),
    ((HOST, 70000), "peer: the port 70000 out of range 0-65535"),
    ((HOST, "5000"), "peer: the port must be an int in 0-65535, not '5000'"),
    (("turn.example.net", 5000), "peer: not an IP address literal: 'turn.example.net'"),
    ((5, 5000), "peer: the host must be an IP literal str, not 5"),
]


@pytest.mark.parametrize(("peer", "message"), BAD_PEERS)
def test_turn_client_peer_arguments_are_checked(peer: Any, message: str) -> None:
    async def scenario() -> None:
        async with allocated() as client:
            with pytest.raises(turn.LocalProtocolError, match=re.escape(message)):
                await client.bind_channel(peer)
            with pytest.raises(turn.LocalProtocolError, match=re.escape(message)):
                await client.send(b"hello", peer)
            if not isinstance(peer, str):  # an IP literal str is a permission's peer
                with pytest.raises(turn.LocalProtocolError, match=re.escape(message)):
                    await client.create_permission(peer)
            assert client.reader_errors.total == 0

    run(scenario())


def test_turn_client_send_wants_bytes_and_loses_nothing_for_it() -> None:
    """str data raised a TypeError inside the event loop when the channel was bound, losing the
    ChannelBind answer it was carried by; now it is refused at the call, and what follows flows."""

    async def scenario() -> None:
        async with allocated() as client:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer_socket:
                peer_socket.bind((HOST, 0))
                peer_socket.setblocking(False)
                peer = make_address(*peer_socket.getsockname())
                for wrong in ("hello", 5, ["h"]):
                    with pytest.raises(turn.LocalProtocolError, match="data must be bytes, not"):
                        await client.send(wrong, peer)  # type: ignore[arg-type]
                # Typed bytes, but a bytes-like object is taken too.
                await client.send(bytearray(b"hello"), peer)  # type: ignore[arg-type]
                loop = asyncio.get_running_loop()
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(peer_socket, 2048), 5.0)
                assert data == b"hello"
            assert client.reader_errors.total == 0

    run(scenario())


def test_turn_client_close_checks_its_timeout() -> None:
    async def scenario() -> None:
        async with allocated() as client:
            with pytest.raises(turn.LocalProtocolError, match="timeout must be a positive"):
                await client.close(timeout=-1)

    run(scenario())


def test_a_peer_given_as_a_plain_pair_works() -> None:
    async def scenario() -> None:
        async with allocated() as client:
            number = await client.bind_channel(Address(HOST, 5000))
            assert await client.bind_channel((HOST, 5000)) == number  # type: ignore[arg-type]
            await client.create_permission(HOST)

    run(scenario())

