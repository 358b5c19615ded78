"""coturn's ``turnutils_uclient`` in its TCP relay modes (RFC 6062) against OUR TurnServer on
loopback.

``-T`` ("TCP relay transport", which implies client-to-client ``-y``): two TCP allocations; the
first client Connects to the second's relayed address, the second learns of it by a
ConnectionAttempt, both open data connections and ConnectionBind, and each sends its messages to
the other through both relays. ``-P`` ("passive TCP, RFC 6062 with an active peer"): a plain TCP
peer connects to the client's relayed address; the client binds after the ConnectionAttempt.
uclient 4.6.1 counts only what the client side reads in ``-P`` mode, so it reports half its
messages lost against coturn's own turnserver just as against ours; the server's byte counters
show both directions.

Each run is bounded in messages and time (the harness of
``test_turnutils_vs_our_server``; in these modes uclient ignores its peer address, so the
``turnutils_peer`` it starts stays idle); the tools are stopped by their PIDs.
"""

from __future__ import annotations

import asyncio

from tests.interop.coturn import skip_unless_installed
from tests.interop.test_turnutils_vs_our_server import (
    MESSAGES,
    RUN_BOUND,
    our_server,
    run_uclient,
)
from tests.net.loopback import run
from turn.server import Outcome
from turn.server.aio import TurnServer

#: The size of uclient's messages (its -l, as the harness passes it).
SIZE = 100


def test_uclient_tcp_relay_client_to_client() -> None:
    skip_unless_installed("turnutils_uclient")

    async def scenario() -> None:
        async with our_server() as (server, address):
            result = await run_uclient(address, "-T")
            assert result.returncode == 0, result.output
            assert "2 connections are completed" in result.output, result.output
            assert result.sent == 2 * MESSAGES
            assert result.received == result.sent, result.output
            stats = server.stats
            assert stats[Outcome.CONNECTED] == 1
            assert stats[Outcome.CONNECTION_ATTEMPT] == 1
            assert stats[Outcome.CONNECTION_BOUND] == 2
            # every byte crossed two splices: client to peer, then peer to client
            assert stats.bytes_to_peer == stats.bytes_to_client == result.sent * SIZE
            await asyncio.wait_for(_until_idle(server), 5.0)

    run(scenario(), timeout=2 * RUN_BOUND)


def test_uclient_passive_tcp_relay_with_an_active_peer() -> None:
    skip_unless_installed("turnutils_uclient")

    async def scenario() -> None:
        async with our_server() as (server, address):
            result = await run_uclient(address, "-P")
            assert result.returncode == 0, result.output
            assert result.sent == 2 * MESSAGES
            assert result.received >= MESSAGES, result.output
            stats = server.stats
            assert stats[Outcome.CONNECTED] == 0
            assert stats[Outcome.CONNECTION_ATTEMPT] == 1
            assert stats[Outcome.CONNECTION_BOUND] == 1
            assert stats.bytes_to_peer == stats.bytes_to_client == MESSAGES * SIZE
            await asyncio.wait_for(_until_idle(server), 5.0)

    run(scenario(), timeout=2 * RUN_BOUND)


async def _until_idle(server: TurnServer) -> None:
    """uclient deallocates and closes when done: every allocation and peer connection goes."""
    while server.core.allocation_count or server.core.peer_connection_count:
        await asyncio.sleep(0.01)

