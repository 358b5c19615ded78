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

Each run is bounded in messages and time; the tool is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import re

from tests.interop.coturn import skip_unless_installed
from tests.interop.test_turnutils_vs_our_server import PASSWORD, USER, our_server, process
from tests.net.loopback import run
from turn.server import Outcome
from turn.server.aio import TurnServer

#: Messages each uclient session sends, their size, and the bound on one run (seconds).
MESSAGES = 10
SIZE = 100
RUN_BOUND = 60.0
_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")


async def run_uclient(port: int, *flags: str) -> tuple[int, str, int, int]:
    """uclient against 127.0.0.1:``port``: exit status, output, messages sent and received."""
    command = [
        "turnutils_uclient", *flags, "-u", USER, "-w", PASSWORD, "-p", str(port),
        "-n", str(MESSAGES), "-l", str(SIZE), "127.0.0.1",
    ]  # fmt: skip
    async with process(*command) as client:
        stdout, _ = await asyncio.wait_for(client.communicate(), RUN_BOUND)
    output = stdout.decode(errors="replace")
    totals = _TOTALS.findall(output)
    sent, received = (int(n) for n in totals[-1]) if totals else (0, 0)
    assert client.returncode is not None
    return client.returncode, output, sent, received


def test_uclient_tcp_relay_client_to_client() -> None:
    skip_unless_installed("turnutils_uclient")

    async def scenario() -> None:
        async with our_server() as (server, address):
            returncode, output, sent, received = await run_uclient(address.port, "-T")
            assert returncode == 0, output
            assert "2 connections are completed" in output, output
            assert sent == 2 * MESSAGES
            assert received == sent, output
            stats = server.stats
            assert stats[Outcome.CONNECTED] == 1
            assert stats[Outcome.CONNECTION_ATTEMPT] == 1
            assert stats[Outcome.CONNECTION_BOUND] == 2
            # every byte crossed two splices: client to peer, then peer to client
            assert stats.bytes_to_peer == stats.bytes_to_client == sent * SIZE
            await asyncio.wait_for(_until_idle(server), 5.0)

    run(scenario(), timeout=2 * RUN_BOUND)


def test_uclient_passive_tcp_relay_with_an_active_peer() -> None:
    skip_unless_installed("turnutils_uclient")

    async def scenario() -> None:
        async with our_server() as (server, address):
            returncode, output, sent, received = await run_uclient(address.port, "-P")
            assert returncode == 0, output
            assert sent == 2 * MESSAGES
            assert received >= MESSAGES, output
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

