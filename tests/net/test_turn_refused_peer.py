"""``TurnClient.send()`` to a peer the server refuses: our TURN server on loopback, whose default
peer policy refuses loopback peers, refuses the permission (403); the refusal is logged as a
warning with the reason, and every later send to that peer raises :class:`turn.PeerNotPermitted`
instead of dropping the data in silence. A peer the policy admits is unaffected."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from stun import ErrorResponse
from stun.address import Address
from stun.server import LongTermCredentials
from turn import PeerNotPermitted, TurnClient
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

from .loopback import run

LOOPBACK = "127.0.0.1"


def test_send_to_a_refused_peer_raises_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        config = TurnServerConfig(
            credentials=LongTermCredentials.from_passwords("icestack", {"alice": "pw"}),
            # 127.0.0.1 is admitted (the allow-list beats the loopback rule); 127.0.0.2 is not.
            peer_policy=PeerPolicy(allowed_peers=("127.0.0.1/32",)),
        )
        async with TurnServer(config, relay_hosts=[LOOPBACK]) as server:
            listener = await server.listen("udp", LOOPBACK, 0)
            client = await TurnClient.connect(
                LOOPBACK, listener.address.port, username="alice", password="pw"
            )
            admitted_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            admitted_socket.bind((LOOPBACK, 0))
            admitted_socket.setblocking(False)
            admitted = Address(*admitted_socket.getsockname())
            refused = Address("127.0.0.2", 9)
            try:
                await client.allocate()
                await client.send(b"lost", refused)  # does not wait for the server
                with pytest.raises(ErrorResponse) as answer:  # waits for the same request
                    await client.create_permission(refused)
                assert answer.value.code == 403
                with pytest.raises(PeerNotPermitted) as error:
                    await client.send(b"refused", refused)
                assert error.value.host == "127.0.0.2"
                assert isinstance(error.value.error, ErrorResponse)
                assert "403" in str(error.value)
                assert "--allow-loopback-peers" in str(error.value)
                # The admitted peer gets its data.
                await client.send(b"through", admitted)
                loop = asyncio.get_running_loop()
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(admitted_socket, 2048), 5)
                assert data == b"through"
            finally:
                await client.close()
                admitted_socket.close()

    with caplog.at_level(logging.WARNING, logger="icestack.turn"):
        run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("no permission for peer 127.0.0.2 on TURN server 127.0.0.1:")
    assert warnings[0].endswith("data to it is dropped")
