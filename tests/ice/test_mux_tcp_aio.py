"""The TCP side of the shared-port mux (:class:`ice.aio_mux.Mux`) on loopback: ICE-lite and full
server sessions on one listening port against icestack ICE-TCP clients that offer no UDP (aioice
has no ICE-TCP, so only icestack clients can take this path), closing releases a session's TCP
connections at once, and raw sockets that send garbage, unknown ufrags or nothing are closed and
counted while real clients get through.

Counts are bounded (at most :data:`SESSIONS` sessions a test) and every wait is bounded by
:func:`tests.net.loopback.run`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from ice import Connection, IceConnectionError, LocalProtocolError, TcpType
from ice.aio_mux import Mux, UdpMux
from ice.config import AgentConfig
from ice.mux_tcp import TcpMuxConfig
from stun.address import Address
from stun.framing import frame_rfc4571
from tests.net.loopback import run, still_open, until

from .test_connection import make
from .test_connection_tcp import PEER_PWD, PEER_UFRAG, check, connect_a_raw_peer
from .test_mux import check as unsigned_check
from .test_mux_aio import LITE, signal_and_connect

HOST = "127.0.0.1"
#: Sessions on the mux in the load tests.
SESSIONS = 100


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock`` (an end of stream or a reset waits in it), whatever it
    sent before."""
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def tcp_client(*, lite_server: bool) -> Connection:
    """An icestack client that offers TCP candidates only: UDP is blocked on its way."""
    client = make(HOST, True, udp=False)
    client.remote_lite = lite_server
    return client


async def connect_over_tcp(served: Connection, client: Connection) -> None:
    await asyncio.gather(served.gather_candidates(), client.gather_candidates())
    await signal_and_connect(served, client, end=True)


@pytest.mark.parametrize("lite", [True, False], ids=["lite", "full"])
def test_many_tcp_only_clients_connect_to_sessions_on_one_tcp_port(lite: bool) -> None:
    count = SESSIONS if lite else SESSIONS // 3

    async def main() -> None:
        async with Mux(HOST) as mux:
            assert mux.tcp_local is not None and mux.tcp_local.port != mux.local.port
            served = [
                Connection(False, mux=mux, config=LITE if lite else None) for _ in range(count)
            ]
            clients = [tcp_client(lite_server=lite) for _ in range(count)]
            await asyncio.gather(
                *(connect_over_tcp(s, c) for s, c in zip(served, clients, strict=True))
            )
            for tag, (s, c) in enumerate(zip(served, clients, strict=True)):
                # Every session offers the mux's two ports: a UDP and a passive TCP candidate.
                assert {(x.transport, x.address, x.tcp_type) for x in s.local_candidates} == {
                    ("udp", mux.local, None),
                    ("tcp", mux.tcp_local, TcpType.PASSIVE),
                }
                pair = c.selected_pair()
                assert pair is not None and pair.remote.address == mux.tcp_local
                message = f"session {tag}".encode()
                await c.send(message)
                assert await s.recv() == message
                await s.send(message + b" back")
                assert await c.recv() == message + b" back"
            metrics = mux.metrics()
            assert metrics["sessions"] == count
            assert metrics["tcp_accepted"] == metrics["tcp_routed"] == count
            assert metrics["tcp_waiting"] == 0
            assert not any(v for k, v in metrics.items() if k.startswith("tcp_dropped"))
            # A session that closes takes its TCP connection with it at once: its client's
            # path is gone, and the other sessions keep theirs.
            await served[0].close()
            with pytest.raises(IceConnectionError, match="TCP connection was closed"):
                await clients[0].recv()
            await clients[1].send(b"still here")
            assert await served[1].recv() == b"still here"
            for connection in served + clients:
                await connection.close()
            assert mux.metrics()["sessions"] == 0

    run(main())


async def _raw(address: tuple[str, int], first: bytes) -> socket.socket:
    """A TCP connection to ``address`` that sends ``first`` (maybe nothing) and then waits."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    if first:
        await loop.sock_sendall(sock, first)
    return sock


@contextlib.asynccontextmanager
async def served_on_mux(tcp_config: TcpMuxConfig) -> AsyncIterator[tuple[Mux, Connection, Address]]:
    """A mux with ``tcp_config``, one gathered full-ICE session on it (it checks back, as a raw
    peer waits for), and the mux's TCP address."""
    async with Mux(HOST, tcp_config=tcp_config) as mux:
        served = Connection(False, mux=mux)
        async with served:
            await served.gather_candidates()
            assert mux.tcp_local is not None
            yield mux, served, mux.tcp_local


def test_garbage_unknown_ufrags_and_evicted_silence_are_closed_and_counted() -> None:
    async def main() -> None:
        # Silence never times out here (so the counts do not depend on the machine's speed).
        tcp_config = TcpMuxConfig(max_unowned=4, first_request_timeout=60.0)
        async with served_on_mux(tcp_config) as (mux, served, tcp_local):
            unwelcome = [
                await _raw(tcp_local, b"GET / HTTP/1.1\r\n\r\n"),
                await _raw(tcp_local, frame_rfc4571(unsigned_check("nobody"))),
                await _raw(tcp_local, frame_rfc4571(unsigned_check("x", username=False))),
            ]
            silent = [await _raw(tcp_local, b"") for _ in range(6)]  # two more than wait
            await until(lambda: not any(still_open(s) for s in unwelcome))
            await until(lambda: mux.metrics()["tcp_dropped_evicted"] == 2)
            metrics = mux.metrics()
            assert metrics["tcp_dropped_not_stun"] == 1
            assert metrics["tcp_dropped_unknown_ufrag"] == 1
            assert metrics["tcp_dropped_no_username"] == 1
            assert metrics["tcp_waiting"] == 4
            assert [still_open(s) for s in silent].count(True) == 4
            assert metrics["tcp_routed"] == 0
            for sock in unwelcome + silent:
                sock.close()
            # A real peer still gets through (and is selected).
            with await connect_a_raw_peer(served):
                assert mux.metrics()["tcp_routed"] == 1

    run(main())


def test_a_silent_connection_is_closed_at_its_deadline() -> None:
    async def main() -> None:
        tcp_config = TcpMuxConfig(max_unowned=16, first_request_timeout=0.3)
        async with served_on_mux(tcp_config) as (mux, _, tcp_local):
            silent = [await _raw(tcp_local, b"") for _ in range(3)]
            await until(lambda: not any(still_open(s) for s in silent))
            metrics = mux.metrics()
            assert metrics["tcp_dropped_silent"] == 3
            assert metrics["tcp_dropped_evicted"] == metrics["tcp_waiting"] == 0
            for sock in silent:
                sock.close()

    run(main())


def test_a_source_past_its_share_of_waiting_connections_is_closed_at_once() -> None:
    async def main() -> None:
        tcp_config = TcpMuxConfig(max_unowned_per_source=2, first_request_timeout=60.0)
        async with served_on_mux(tcp_config) as (mux, _, tcp_local):
            silent = [await _raw(tcp_local, b"") for _ in range(3)]
            await until(lambda: mux.metrics()["tcp_dropped_source_limit"] == 1)
            await until(lambda: [still_open(s) for s in silent].count(True) == 2)
            assert mux.metrics()["tcp_waiting"] == 2
            for sock in silent:
                sock.close()

    run(main())


def test_a_session_takes_at_most_its_max_tcp_connections() -> None:
    async def main() -> None:
        async with Mux(HOST) as mux:
            config = AgentConfig(lite=True, controlling=False, max_tcp_connections=2)
            served = Connection(False, mux=mux, config=config)
            async with served:
                await served.gather_candidates()
                served.set_remote_credentials(PEER_UFRAG, PEER_PWD)
                assert mux.tcp_local is not None
                loop = asyncio.get_running_loop()
                socks = []
                for index in range(4):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    await loop.sock_connect(sock, mux.tcp_local)
                    tid = bytes([index]) * 12
                    await loop.sock_sendall(sock, check(served, tid, use_candidate=False))
                    socks.append(sock)
                await until(lambda: mux.metrics()["tcp_dropped_refused"] == 2)
                assert mux.metrics()["tcp_routed"] == 2
                assert sorted(closed_by_peer(s) for s in socks) == [False, False, True, True]
                for sock in socks:
                    sock.close()

    run(main())


def test_the_udp_side_alone_offers_no_tcp_and_the_ports_are_checked() -> None:
    async def main() -> None:
        async with UdpMux(HOST) as mux:
            assert mux.tcp is None and "tcp_accepted" not in mux.metrics()
            async with Connection(False, mux=mux, config=LITE) as served:
                await served.gather_candidates()
                assert [c.transport for c in served.local_candidates] == ["udp"]
        async with Mux(HOST) as mux:
            async with Connection(False, mux=mux, config=LITE, tcp=False) as served:
                await served.gather_candidates()
                assert [c.transport for c in served.local_candidates] == ["udp"]
            with pytest.raises(LocalProtocolError, match="udp=False"):
                Connection(False, mux=mux, udp=False)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind((HOST, 0))
            port = taken.getsockname()[1]
        with pytest.raises(LocalProtocolError, match=r"tcp_port \d+ is the UDP port"):
            Mux(HOST, port, tcp_port=port)

    run(main())
