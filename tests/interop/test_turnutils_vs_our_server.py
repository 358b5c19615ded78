"""Third-party TURN clients against OUR TurnServer on loopback: coturn's ``turnutils_uclient``
(with ``turnutils_peer`` echoing at the far end) over UDP and TCP, with Send indications and with
channels, and aioice's TURN client over UDP and TCP.

Our server runs on the test's event loop; the coturn tools run as asyncio subprocesses, each
bounded in messages and in time, and are stopped by their PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioice.turn
import pytest

from stun import Address, make_address
from stun.server import LongTermCredentials
from tests.interop.coturn import skip_unless_installed
from tests.net.loopback import run, twin_port
from turn.server import Outcome, PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

REALM = "icestack.test"
USER, PASSWORD = "alice", "wonderland"
#: Messages uclient sends per allocation, and the bound on one run of it (seconds).
MESSAGES = 20
RUN_BOUND = 60.0
_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")


@contextlib.asynccontextmanager
async def our_server(**options: Any) -> AsyncIterator[tuple[TurnServer, Address]]:
    """Our TurnServer: UDP and TCP listeners on one port of 127.0.0.1, loopback peers allowed."""
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(REALM, {USER: PASSWORD}),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
        **options,
    )
    async with TurnServer(config, relay_hosts=["127.0.0.1"]) as server:
        port = twin_port("127.0.0.1")
        udp = await server.listen("udp", "127.0.0.1", port)
        await server.listen("tcp", "127.0.0.1", port)
        yield server, udp.address


def free_port_pair() -> int:
    """A UDP port N on 127.0.0.1 with N + 1 free too (uclient's RTCP goes to the peer's N + 1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise OSError("no two adjacent free UDP ports on 127.0.0.1")


@contextlib.asynccontextmanager
async def process(*command: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subprocess with its output captured, terminated by its PID on exit if still running."""
    child = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 5.0)
            except TimeoutError:
                child.kill()
                await child.wait()


@dataclass(frozen=True)
class UclientRun:
    returncode: int
    output: str
    sent: int
    received: int


async def run_uclient(server: Address, *flags: str) -> UclientRun:
    """``turnutils_uclient`` against ``server`` with a ``turnutils_peer`` echoing on loopback."""
    peer_port = free_port_pair()
    async with process("turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)):
        await asyncio.sleep(0.2)  # the peer binds its sockets
        command = [
            "turnutils_uclient", *flags, "-u", USER, "-w", PASSWORD,
            "-p", str(server.port), "-e", "127.0.0.1", "-r", str(peer_port),
            "-n", str(MESSAGES), "-l", "100", server.host,
        ]  # fmt: skip
        async with process(*command) as client:
            stdout, _ = await asyncio.wait_for(client.communicate(), RUN_BOUND)
    output = stdout.decode(errors="replace")
    totals = _TOTALS.findall(output)
    sent, received = (int(n) for n in totals[-1]) if totals else (0, 0)
    assert client.returncode is not None
    return UclientRun(client.returncode, output, sent, received)


@pytest.mark.parametrize("flags", [pytest.param((), id="udp"), pytest.param(("-t",), id="tcp")])
def test_uclient_with_send_indications(flags: tuple[str, ...]) -> None:
    """``-s``: data goes out as Send indications and comes back as Data indications; uclient also
    allocates an RTCP pair with EVEN-PORT and a RESERVATION-TOKEN, and refreshes and deletes."""
    skip_unless_installed("turnutils_uclient", "turnutils_peer")

    async def scenario() -> None:
        async with our_server() as (server, address):
            result = await run_uclient(address, *flags, "-s")
            assert result.returncode == 0, result.output
            assert result.sent == 2 * MESSAGES  # RTP and RTCP
            assert result.received == result.sent, result.output
            stats = server.stats
            assert stats[Outcome.RELAYED_TO_PEER] >= result.sent
            assert stats[Outcome.RELAYED_TO_CLIENT] >= result.received
            assert stats[Outcome.PERMITTED] > 0
            assert stats[Outcome.CHANNEL_BOUND] == 0
            assert stats[Outcome.DELETED] > 0  # uclient deallocates when it is done

    run(scenario(), timeout=2 * RUN_BOUND)


@pytest.mark.parametrize("flags", [pytest.param((), id="udp"), pytest.param(("-t",), id="tcp")])
def test_uclient_with_channels(flags: tuple[str, ...]) -> None:
    """Channel mode, uclient's default: ChannelData both ways for RTP and RTCP. coturn's uclient
    draws channel numbers from RFC 5766's 0x4000-0x7FFF, which RFC 8656 §12 narrowed to
    0x4000-0x4FFF, so the server runs with ``rfc5766_channels`` (``--rfc5766-channels``);
    without it, most runs meet a 400 to one of their ChannelBinds."""
    skip_unless_installed("turnutils_uclient", "turnutils_peer")

    async def scenario() -> None:
        async with our_server(rfc5766_channels=True) as (server, address):
            result = await run_uclient(address, *flags)
            assert result.returncode == 0, result.output
            assert result.sent == 2 * MESSAGES
            assert result.received == result.sent, result.output
            stats = server.stats
            assert stats[Outcome.CHANNEL_BOUND] > 0
            assert stats[Outcome.RELAYED_TO_PEER] >= result.sent
            assert stats[Outcome.RELAYED_TO_CLIENT] >= result.received
            assert stats[Outcome.BAD_REQUEST] == 0

    run(scenario(), timeout=2 * RUN_BOUND)


class _Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_aioice_turn_client_relays_through_our_server(transport: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with our_server() as (server, address):
            turn, protocol = await aioice.turn.create_turn_endpoint(
                _Received, (address.host, address.port), USER, PASSWORD, transport=transport
            )
            try:
                relayed = make_address(*turn.get_extra_info("sockname"))
                assert relayed.host == "127.0.0.1"
                assert relayed in server.relays.relays
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                    peer.bind(("127.0.0.1", 0))
                    peer.setblocking(False)
                    peer_address = make_address(*peer.getsockname())
                    for n in range(3):
                        turn.sendto(b"to the peer %d" % n, peer_address)
                        data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 5.0)
                        assert (data, make_address(*source)) == (b"to the peer %d" % n, relayed)
                        peer.sendto(b"to the client %d" % n, relayed)
                        data, source = await asyncio.wait_for(protocol.queue.get(), 5.0)
                        assert data == b"to the client %d" % n
                        assert make_address(*source) == peer_address
            finally:
                turn.close()
            # Closing deletes the allocation (a Refresh with LIFETIME 0).
            await asyncio.wait_for(_until_deleted(server), 5.0)
            stats = server.stats
            assert stats[Outcome.CHANNEL_BOUND] == 1  # aioice binds a channel per peer
            assert stats[Outcome.RELAYED_TO_PEER] == 3
            assert stats[Outcome.RELAYED_TO_CLIENT] == 3

    run(scenario())


async def _until_deleted(server: TurnServer) -> None:
    while server.core.allocation_count:
        await asyncio.sleep(0.01)
