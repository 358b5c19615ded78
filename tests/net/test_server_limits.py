"""The TCP and TLS bounds of both servers (stun.limits.StreamLimits, stun.aio_streams), on loopback:
pending TLS handshakes held against their caps and closed at their deadline, one source unable to
take every slot, the first message's deadline, TURN's max_allocate_timeout, and the STUN server
reading no faster than a client reads its answers.

Sources are loopback addresses of their own (all of 127.0.0.0/8 is loopback on Linux). Every load
loop is bounded in count, every wait in time; no assertion is about how fast anything is.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stun import Address, Message, MessageClass
from stun.aio import StunServer
from stun.limits import Closure, Refusal, StreamLimits
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, client_context, make_self_signed, server_context
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

from .loopback import binding_request, run, still_open, until

HOST = "127.0.0.1"
#: The first bytes of a TLS ClientHello record, and no more: a handshake that never goes on.
HALF_HELLO = b"\x16\x03\x01\x00\xff"
SERVERS = ["stun", "turn"]

Server = StunServer | TurnServer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("limits-tls"))


@asynccontextmanager
async def serving(
    kind: str,
    transport: str,
    limits: StreamLimits,
    certificate: CertificateFiles | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Server, Address]]:
    """A STUN or TURN server with one ``transport`` listener on HOST, bounded by ``limits``."""
    server: Server
    if kind == "stun":
        server = StunServer(limits=limits, **options)
    else:
        config = TurnServerConfig(
            credentials=LongTermCredentials.from_passwords("icestack.test", {"alice": "pw"}),
            peer_policy=PeerPolicy(allow_loopback_peers=True),
        )
        server = TurnServer(config, relay_hosts=[HOST], limits=limits, **options)
    async with server:
        context = None
        if transport == "tls":
            assert certificate is not None
            context = server_context(certificate.certificate, certificate.private_key)
        listener = await server.listen(transport, HOST, 0, ssl_context=context)  # type: ignore[arg-type]
        yield server, listener.address


async def open_from(source: str, target: Address, first: bytes = b"") -> socket.socket:
    """A raw TCP connection from ``source`` to ``target``, having sent ``first``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, target)
    if first:
        sock.send(first)
    return sock


async def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or reset) before sending anything."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), 5.0)
    except ConnectionResetError:
        return True
    return data == b""


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether a Binding request on this stream gets its success response."""
    writer.write(binding_request())
    try:
        header = await asyncio.wait_for(reader.readexactly(20), 5.0)
        body = await asyncio.wait_for(reader.readexactly(int.from_bytes(header[2:4], "big")), 5.0)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return Message.decode(header + body).message_class is MessageClass.SUCCESS_RESPONSE


async def raw_answered(sock: socket.socket) -> bool:
    """:func:`answered` on a raw socket, which is closed after."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_accepted_socket(
        lambda: asyncio.StreamReaderProtocol(reader), sock
    )
    writer = asyncio.StreamWriter(transport, transport.get_protocol(), reader, loop)
    try:
        return await answered(reader, writer)
    finally:
        writer.close()


# --------------------------------------------------------------------------- TLS handshakes


@pytest.mark.parametrize("kind", SERVERS)
def test_pending_tls_handshakes_are_held_against_their_caps_and_closed_at_their_deadline(
    kind: str, certificate: CertificateFiles
) -> None:
    """Half-open ClientHellos count from the accept: one source gets two pending handshakes, all
    sources four; the rest are closed at once, and the four at the handshake deadline. A real
    client is served afterwards."""
    limits = StreamLimits(max_handshakes=4, max_handshakes_per_source=2, handshake_timeout=1.0)

    async def scenario() -> None:
        async with serving(kind, "tls", limits, certificate) as (server, target):
            admission = server.admission
            # A flood from one source: two are held, the other 48 closed as they come.
            flood = [await open_from("127.0.0.2", target, HALF_HELLO) for _ in range(50)]
            await until(lambda: admission.refused[Refusal.MAX_HANDSHAKES_PER_SOURCE] == 48)
            assert (admission.handshakes, server.connection_count) == (2, 2)
            held = [sock for sock in flood if still_open(sock)]
            assert len(held) == 2
            # Two more sources fill the server's four; a fourth source finds no room.
            others = [await open_from(f"127.0.0.{n}", target, HALF_HELLO) for n in (3, 3)]
            late = await open_from("127.0.0.4", target, HALF_HELLO)
            assert await closed_by_server(late)
            assert admission.refused[Refusal.MAX_HANDSHAKES] == 1
            assert admission.handshakes == 4
            # The deadline ends the four; nothing stays held.
            for sock in held + others:
                assert await closed_by_server(sock)
            await until(lambda: server.connection_count == 0)
            assert admission.handshakes == 0 and admission.sources == 0
            assert admission.closed[Closure.HANDSHAKE_TIMEOUT] == 4
            for sock in [*flood, *others, late]:
                sock.close()
            # A real client completes its handshake and is answered.
            reader, writer = await asyncio.open_connection(
                HOST, target.port, ssl=client_context(certificate.certificate),
                server_hostname="localhost", local_addr=("127.0.0.2", 0),
            )  # fmt: skip
            assert await answered(reader, writer)
            assert (server.connection_count, admission.handshakes) == (1, 0)
            writer.close()

    run(scenario())


@pytest.mark.parametrize("kind", SERVERS)
def test_a_failed_handshake_gives_its_place_back(kind: str, certificate: CertificateFiles) -> None:
    limits = StreamLimits(max_connections=1)

    async def scenario() -> None:
        async with serving(kind, "tls", limits, certificate) as (server, target):
            sock = await open_from(HOST, target, b"GET / HTTP/1.1\r\n\r\n")  # not TLS at all
            assert await closed_by_server(sock)
            sock.close()
            await until(lambda: server.connection_count == 0)
            assert server.admission.closed[Closure.HANDSHAKE_FAILED] == 1
            reader, writer = await asyncio.open_connection(
                HOST, target.port, ssl=client_context(certificate.certificate),
                server_hostname="localhost",
            )  # fmt: skip
            assert await answered(reader, writer)
            writer.close()

    run(scenario())


# --------------------------------------------------------------------------- sources


@pytest.mark.parametrize("kind", SERVERS)
def test_one_source_cannot_take_every_slot(kind: str) -> None:
    limits = StreamLimits(max_connections=8, max_connections_per_source=3)

    async def scenario() -> None:
        async with serving(kind, "tcp", limits) as (server, target):
            silent = [await open_from("127.0.0.2", target) for _ in range(3)]
            await until(lambda: server.connection_count == 3)
            extra = await open_from("127.0.0.2", target)
            assert await closed_by_server(extra)
            assert server.admission.refused[Refusal.MAX_CONNECTIONS_PER_SOURCE] == 1
            # Another source is served; the first source is again once one of its own closed.
            assert await raw_answered(await open_from("127.0.0.3", target))
            await until(lambda: server.connection_count == 3)
            silent.pop().close()
            await until(lambda: server.connection_count == 2)
            assert await raw_answered(await open_from("127.0.0.2", target))
            for sock in [*silent, extra]:
                sock.close()

    run(scenario())


# --------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_connection_must_send_a_complete_message_soon(
    kind: str, transport: str, certificate: CertificateFiles
) -> None:
    """Silence and a message trickled but never finished are closed at first_message_timeout;
    a connection that sent a request stays (its idle timeout is far longer)."""
    limits = StreamLimits(first_message_timeout=0.3)

    async def scenario() -> None:
        async with serving(kind, transport, limits, certificate) as (server, target):
            context = client_context(certificate.certificate) if transport == "tls" else None
            hostname = "localhost" if context else None

            async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                return await asyncio.open_connection(
                    HOST, target.port, ssl=context, server_hostname=hostname
                )

            silent_reader, silent_writer = await connection()
            partial_reader, partial_writer = await connection()
            partial_writer.write(binding_request()[:10])
            talker_reader, talker_writer = await connection()
            assert await answered(talker_reader, talker_writer)
            for reader in (silent_reader, partial_reader):
                assert await asyncio.wait_for(reader.read(), 5.0) == b""
            assert server.admission.closed[Closure.FIRST_MESSAGE_TIMEOUT] == 2
            await until(lambda: server.connection_count == 1)
            assert await answered(talker_reader, talker_writer)
            for writer in (silent_writer, partial_writer, talker_writer):
                writer.close()

    run(scenario())


def test_turn_closes_a_connection_that_makes_no_allocation_in_time() -> None:
    """coturn's max-allocate-timeout: a Binding request every 50 ms keeps no connection open
    past it without an allocation; one that allocated stays."""
    limits = StreamLimits()

    async def scenario() -> None:
        async with serving("turn", "tcp", limits, max_allocate_timeout=0.5) as (server, target):
            from tests.turn.aio_client import RawTurnClient

            busy = await RawTurnClient.connect("tcp", target, "alice", "pw")
            await busy.allocate()
            chatty = await RawTurnClient.connect("tcp", target, "alice", "pw")
            for _ in range(200):  # 10 s at most
                if chatty.closed.is_set():
                    break
                chatty.send_raw(binding_request())
                await asyncio.sleep(0.05)
            assert chatty.closed.is_set()
            assert server.admission.closed[Closure.ALLOCATE_TIMEOUT] == 1
            assert not busy.closed.is_set()
            assert server.connection_count == 1
            await busy.refresh()
            await busy.close()

    run(scenario())


# --------------------------------------------------------------------------- backpressure


def test_the_stun_server_reads_no_faster_than_a_client_reads_its_answers() -> None:
    """A client pipelines Binding requests and reads nothing: once its answers fill the
    server's write buffer, the server stops reading it, and holds at most the limit plus the
    answers to one read. When the client reads again, every request is answered."""
    limit = 64 * 1024
    requests = 300_000  # 6 MB of requests, 16 MB of answers: more than any socket buffers

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with StunServer(write_buffer_limit=limit) as server:
            target = (await server.listen("tcp", HOST, 0)).address
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning
            sock.setblocking(False)
            await loop.sock_connect(sock, target)
            request = binding_request()
            sending = asyncio.ensure_future(loop.sock_sendall(sock, request * requests))
            await until(lambda: server.reading_paused == 1, timeout=10.0)
            answer_size = len(server.server.respond(request, None, Address(HOST, 1), 0.0) or b"")
            # asyncio reads at most 256 KiB at a time; each request in it gets its answer.
            one_read = 256 * 1024 // len(request) * answer_size
            assert server.buffered_bytes <= limit + one_read
            assert not sending.done()  # the server stopped reading before it had them all
            received = 0
            expected = requests * answer_size
            while received < expected:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10.0)
                assert chunk
                received += len(chunk)
            await asyncio.wait_for(sending, 10.0)
            assert received == expected
            assert server.reading_paused == 0
            sock.close()

    run(scenario(), timeout=60)
