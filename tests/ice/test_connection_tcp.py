"""ice.Connection over ICE-TCP (RFC 6544) on loopback: two connections that offer TCP candidates
only connect over TCP in both roles, UDP stays preferred where it works, ``tcp=False`` offers
none; a raw TCP peer written here checks in, is selected, then stops reading (the write bound
drops and counts); a flood of connections stays bounded; closing closes every TCP socket.

Every wait is bounded by :func:`tests.net.loopback.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket

import pytest

from ice import Connection, IceConnectionError, LocalProtocolError, TcpType
from ice.candidate import CandidateType
from ice.config import AgentConfig
from ice.events import ConsentLost
from ice.stats import TcpOutcome
from stun.address import Address
from stun.attributes import IceControlling, Priority, UseCandidate, Username, XorMappedAddress
from stun.framing import Framing, StreamDecoder, frame_rfc4571
from stun.message import Message, MessageClass, Method
from tests.net.loopback import LOOPBACK_HOSTS, NO_PROC, run, until

from .test_connection import connected, exchange, gathered, make

PEER_UFRAG, PEER_PWD = "rawpeer", "r" * 22


def passive(connection: Connection) -> Address:
    [candidate] = [c for c in connection.local_candidates if c.tcp_type is TcpType.PASSIVE]
    return candidate.address


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("a_controlling", [True, False])
def test_connections_without_udp_connect_over_tcp(host: str, a_controlling: bool) -> None:
    async def scenario() -> None:
        async with connected(host, a_controlling=a_controlling, udp=False) as (a, b):
            pairs = [a.selected_pair(), b.selected_pair()]
            assert all(p is not None and p.local.transport == "tcp" for p in pairs)
            # Whoever connected is seen by the other at its real ephemeral port (peer-reflexive).
            [accepting] = [p for p in pairs if p and p.local.tcp_type is TcpType.PASSIVE]
            assert accepting.remote.type is CandidateType.PEER_REFLEXIVE
            assert accepting.remote.tcp_type is TcpType.ACTIVE
            assert accepting.remote.port not in (9, passive(a).port, passive(b).port)
            await a.send(b"\x80over TCP")
            assert await b.recv() == b"\x80over TCP"
            await b.sendto(b"\x80" + bytes(65534), 1)  # the largest RFC 4571 frame
            assert await a.recv() == b"\x80" + bytes(65534)
            # stats() tell the path: transport and candidate types, and the bytes moved.
            [selected] = [s for s in a.stats() if s.selected]
            assert selected.local.transport == selected.remote.transport == "tcp"
            assert {selected.local.tcp_type, selected.remote.tcp_type} == {
                TcpType.ACTIVE,
                TcpType.PASSIVE,
            }
            assert (selected.bytes_sent, selected.bytes_received) == (9, 65535)
            with pytest.raises(LocalProtocolError, match="65535"):
                await a.send(bytes(65536))

    run(scenario())


def test_udp_stays_preferred_where_it_works() -> None:
    async def scenario() -> None:
        async with connected() as (a, b):
            assert {c.transport for c in a.local_candidates} == {"udp", "tcp"}
            for connection in (a, b):
                pair = connection.selected_pair()
                assert pair is not None and pair.local.transport == "udp"

    run(scenario())


def test_tcp_off_offers_no_tcp_candidates_so_a_tcp_only_peer_cannot_connect() -> None:
    async def scenario() -> None:
        async with (
            make("127.0.0.1", True, tcp=False) as a,
            make("127.0.0.1", False, udp=False, config=AgentConfig(idle_timeout=1.0)) as b,
        ):
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            assert {c.transport for c in a.local_candidates} == {"udp"}
            assert {c.transport for c in b.local_candidates} == {"tcp"}
            await exchange(a, b)
            with pytest.raises(IceConnectionError, match="TCP candidates were ignored"):
                await a.connect()

    run(scenario())
    with pytest.raises(LocalProtocolError, match="cannot both be off"):
        Connection(True, udp=False, tcp=False)


# --------------------------------------------------------------------------- a raw TCP peer


def check(connection: Connection, transaction_id: bytes, *, use_candidate: bool) -> bytes:
    """A check from a controlling peer to ``connection``, as a browser would send it."""
    attributes = [
        Username(f"{connection.local_username}:{PEER_UFRAG}"),
        Priority(1_300_000_000),
        IceControlling(1),
    ]
    if use_candidate:
        attributes.append(UseCandidate())
    request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
    return frame_rfc4571(request.encode(key=connection.local_password.encode(), fingerprint=True))


async def raw_peer_selected(connection: Connection) -> tuple[socket.socket, StreamDecoder]:
    """Connect to ``connection``'s passive candidate from a plain socket, check with
    USE-CANDIDATE and answer the triggered check: the connection selects the pair."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little kernel buffering
    sock.setblocking(False)
    await loop.sock_connect(sock, passive(connection))
    await loop.sock_sendall(sock, check(connection, b"C" * 12, use_candidate=True))
    decoder = StreamDecoder(Framing.RFC4571)
    answered = False
    while not answered:
        for frame in decoder.feed(await loop.sock_recv(sock, 4096)):
            message = Message.decode(frame)
            if message.message_class is MessageClass.REQUEST:  # the triggered check
                peer = Address(*sock.getsockname()[:2])
                response = message.success_response([XorMappedAddress(peer)])
                encoded = response.encode(key=PEER_PWD.encode(), fingerprint=True)
                await loop.sock_sendall(sock, frame_rfc4571(encoded))
                answered = True
    return sock, decoder


async def connect_a_raw_peer(connection: Connection) -> socket.socket:
    """``connection`` (gathered) connects to a raw TCP peer that checks in on its passive
    candidate (:func:`raw_peer_selected`): the peer's socket, once ``connect()`` returned."""
    connection.set_remote_credentials(PEER_UFRAG, PEER_PWD)
    await connection.add_remote_candidate(None)
    connecting = asyncio.ensure_future(connection.connect())
    sock, _ = await raw_peer_selected(connection)
    try:
        await connecting
    except BaseException:
        sock.close()
        raise
    return sock


def test_a_raw_tcp_peer_is_selected_at_its_real_port_and_a_slow_path_is_bounded() -> None:
    async def scenario() -> None:
        async with make("127.0.0.1", False, udp=False) as ours:
            await ours.gather_candidates()
            with await connect_a_raw_peer(ours) as sock:
                pair = ours.selected_pair()
                assert pair is not None
                assert pair.remote.address == Address(*sock.getsockname()[:2])
                # The peer stops reading: what we write waits in a bounded buffer, the rest
                # is dropped whole and counted; sending never blocks nor raises.
                for _ in range(400):  # 26 MB, far more than every buffer on the way
                    await ours.send(b"\x80" + bytes(65534))
                assert ours.tcp_dropped_writes > 0

    run(scenario())


def test_a_flood_of_incoming_connections_stays_bounded() -> None:
    async def scenario() -> None:
        config = AgentConfig(max_tcp_connections=8, tcp_connect_timeout=5.0)
        async with gathered(udp=False, config=config) as (a, b):
            loop = asyncio.get_running_loop()
            flood = []
            for index in range(60):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                await loop.sock_connect(sock, passive(a))
                if index % 3 == 1:
                    await loop.sock_sendall(sock, b"\xff\xffgarbage")  # a huge first frame
                elif index % 3 == 2:
                    await loop.sock_sendall(sock, frame_rfc4571(b"\x80data before a check"))
                flood.append(sock)
            counts = a.agent.failures.tcp
            await until(
                lambda: counts[TcpOutcome.FRAMING] + counts[TcpOutcome.UNAUTHENTICATED] >= 40
            )
            assert a.agent.table_sizes().tcp_connections <= 8
            assert counts[TcpOutcome.EVICTED] > 0
            for sock in flood:
                sock.close()
            # The real peer still gets through.
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            pair = a.selected_pair()
            assert pair is not None and pair.local.transport == "tcp"

    run(scenario())


@pytest.mark.skipif(NO_PROC is not None, reason=NO_PROC or "")
def test_a_listener_out_of_file_descriptors_rests_and_accepts_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """accept() failing with EMFILE leaves the connection in the backlog and the listening
    socket readable: the listener rests (one warning) instead of being woken at once, again and
    again, and accepts the connection once descriptors are free again."""

    async def scenario() -> None:
        async with gathered(udp=False) as (a, _b):
            loop = asyncio.get_running_loop()
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setblocking(False)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
            fillers = []
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
                with contextlib.suppress(OSError):  # every descriptor left below the limit
                    while True:
                        fillers.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                with caplog.at_level(logging.WARNING, logger="icestack.ice"):
                    await loop.sock_connect(client, passive(a))  # completes in the backlog
                    await asyncio.sleep(0.3)
            finally:
                for filler in fillers:
                    filler.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            refused = [r for r in caplog.records if "cannot accept" in r.getMessage()]
            assert len(refused) == 1, [r.getMessage() for r in refused[:3]]
            assert "Too many open files" in refused[0].getMessage()
            await until(lambda: a.agent.table_sizes().tcp_connections == 1, timeout=3.0)
            client.close()

    run(scenario())


def test_close_closes_every_tcp_socket() -> None:
    async def scenario() -> Address:
        async with connected(udp=False) as (a, _):
            address = passive(a)
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(sock, address)
        return address

    run(scenario())


def test_simultaneous_open_connects_on_loopback() -> None:
    """Both sides offer simultaneous-open candidates only: each connects from its listening
    port to the other's (SO_REUSEPORT); whichever way the kernel joins the two attempts —
    crossing SYNs, or one accepted by the other's listener — one connection carries the pair."""

    async def scenario() -> None:
        config = AgentConfig(tcp_types=(TcpType.SIMULTANEOUS_OPEN,))
        async with connected(udp=False, config=config) as (a, b):
            for connection in (a, b):
                pair = connection.selected_pair()
                assert pair is not None
                assert pair.local.tcp_type is TcpType.SIMULTANEOUS_OPEN
                assert pair.remote.tcp_type is TcpType.SIMULTANEOUS_OPEN
            await a.send(b"\x80both ways at once")
            assert await b.recv() == b"\x80both ways at once"

    run(scenario())


def test_the_peer_closing_the_connection_is_reported_like_lost_consent() -> None:
    async def scenario() -> None:
        async with connected(udp=False) as (a, b):
            events: list[object] = []
            b.on_event = events.append
            await a.close()
            with pytest.raises(IceConnectionError, match="TCP connection was closed"):
                await b.recv()
            assert any(isinstance(event, ConsentLost) for event in events)
            assert "closed by the peer" in b.failure_reason()
            with pytest.raises(IceConnectionError):
                await b.send(b"\x80too late")

    run(scenario())
