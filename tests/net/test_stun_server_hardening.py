"""The asyncio STUN server under abuse, on loopback: floods of junk, hostile TCP peers, 401 floods.

Every load loop is bounded in count; every wait is bounded in time; memory is measured with
tracemalloc, never time.
"""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import struct
import tracemalloc
from collections import Counter

import pytest

from stun import (
    MAGIC_COOKIE,
    Address,
    Message,
    MessageClass,
    Method,
    Nonce,
    Outcome,
    Realm,
    Software,
    Username,
    new_transaction_id,
)
from stun.aio import StunClient, StunServer
from stun.client import ClientConfig, Credentials
from stun.integrity import long_term_key
from stun.limits import StreamLimits
from stun.server import LongTermCredentials, ServerConfig
from stun.transaction import TransactionConfig

from .loopback import binding_request, mapped_address, run, udp_socket, until

REALM = "icestack.test"
ALICE = Credentials(username="alice", password="wonderland")

#: Datagrams per flood, and how many go out between two yields to the event loop.
FLOOD_SIZE = 10_000
BATCH = 100
#: How much memory a second flood may leave behind: generous, a leak of even a few bytes per
#: datagram would exceed it.
MEMORY_GROWTH_BOUND = 512 * 1024

#: A client that does not retransmit within any plausible delay, so each of its requests is
#: answered exactly once and the server's counters can be predicted exactly.
PATIENT = ClientConfig(transaction=TransactionConfig(initial_rto=5.0, min_rto=5.0))


#: A budget of 400/401 answers no test source exhausts, for the tests that count every answer.
UNLIMITED = 10**6


def _long_term_server(failure_burst: int = 20) -> StunServer:
    credentials = LongTermCredentials.from_passwords(REALM, {ALICE.username: ALICE.password})
    return StunServer(ServerConfig(authentication=credentials, failure_burst=failure_burst))


def _junk(rng: random.Random) -> list[tuple[bytes, Outcome]]:
    """One of each kind of unwelcome datagram, with the outcome the server must count for it."""
    tid = rng.randbytes(12)
    header = struct.Struct("!HHI12s")
    request = Message(Method.BINDING, MessageClass.REQUEST, tid, [Software("junk")])
    full = request.encode(fingerprint=True)
    bad_family = struct.pack("!HHBBH4s", 0x0020, 8, 0, 3, 1234, b"\x01\x02\x03\x04")
    overrun = struct.pack("!HH", 0x8022, 40) + b"abcd"
    wrong_crc = bytearray(full)
    wrong_crc[-1] ^= 0xFF
    alice = [Username(ALICE.username), Realm(REALM), Nonce("not-a-nonce-we-issued")]
    wrong_key = long_term_key(ALICE.username, REALM, "not her password")
    return [
        # Not STUN at all: the first two bits are not zero (RFC 8489 §5).
        (
            bytes([rng.randrange(0x40, 0x100)]) + rng.randbytes(rng.randrange(300)),
            Outcome.MALFORMED,
        ),
        # A real request cut short.
        (full[: rng.randrange(len(full))], Outcome.MALFORMED),
        # A good header, attributes that do not parse.
        (header.pack(0x0001, 8 + 4, MAGIC_COOKIE, tid) + bad_family, Outcome.MALFORMED),
        (header.pack(0x0001, len(overrun), MAGIC_COOKIE, tid) + overrun, Outcome.MALFORMED),
        (bytes(wrong_crc), Outcome.BAD_FINGERPRINT),
        # Well-formed, but not something a Binding server answers.
        (Message(Method.BINDING, MessageClass.INDICATION, tid).encode(), Outcome.NOT_A_REQUEST),
        (Message(0x003, MessageClass.REQUEST, tid).encode(), Outcome.UNSUPPORTED_METHOD),
        # Requests the long-term server rejects: no credentials (plain and RFC 3489), bad ones.
        (binding_request(tid), Outcome.CHALLENGED),
        (header.pack(0x0001, 0, rng.getrandbits(32) | 1, tid), Outcome.CHALLENGED),
        (
            Message(Method.BINDING, MessageClass.REQUEST, tid, alice).encode(key=wrong_key),
            Outcome.BAD_INTEGRITY,
        ),
        (
            Message(Method.BINDING, MessageClass.REQUEST, tid, alice[:1]).encode(key=wrong_key),
            Outcome.INCOMPLETE_CREDENTIALS,
        ),
    ]


def test_udp_flood_of_junk_leaves_answers_and_memory_intact() -> None:
    rng = random.Random(8489)
    pool = [item for _ in range(100) for item in _junk(rng)]

    async def flood(
        attacker: socket.socket, target: Address, client: StunClient
    ) -> tuple[Counter[Outcome], int]:
        """Send FLOOD_SIZE junk datagrams, one real Binding request per batch, and wait for all
        of them to be counted; return the junk's expected outcomes and how many real requests.
        """
        expected: Counter[Outcome] = Counter()
        probes = []
        for start in range(0, FLOOD_SIZE, BATCH):
            for index in range(start, start + BATCH):
                data, outcome = pool[index % len(pool)]
                attacker.sendto(data, target)
                expected[outcome] += 1
            probes.append(asyncio.ensure_future(client.binding()))
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*probes), 30)
        assert all(result.mapped_address is not None for result in results)
        return expected, len(results)

    async def scenario() -> None:
        async with _long_term_server(UNLIMITED) as server:
            target = (await server.listen("udp", "127.0.0.1", 0)).address
            stats = server.server.stats
            with udp_socket("127.0.0.1") as attacker:
                async with await StunClient.connect(
                    "127.0.0.1", target.port, credentials=ALICE, config=PATIENT
                ) as client:
                    await client.binding()  # the 401 dance, once
                    before = dict(stats.counts)

                    async def flood_and_check() -> None:
                        expected, answered = await flood(attacker, target, client)
                        expected[Outcome.ANSWERED] += answered
                        total = sum(expected.values())
                        # Everything sent has arrived: wait until the server has counted it all.
                        await until(
                            lambda: sum(stats.counts.values()) - sum(before.values()) >= total
                        )
                        moved = {o: stats[o] - before[o] for o in Outcome if stats[o] != before[o]}
                        assert moved == dict(expected)
                        before.update(stats.counts)

                    await flood_and_check()  # warm-up: caches and free lists fill
                    gc.collect()
                    tracemalloc.start()
                    try:
                        baseline = tracemalloc.take_snapshot()
                        await flood_and_check()
                        gc.collect()
                        grown = tracemalloc.take_snapshot()
                    finally:
                        tracemalloc.stop()
            growth = sum(stat.size_diff for stat in grown.compare_to(baseline, "filename"))
            top = "\n".join(str(s) for s in grown.compare_to(baseline, "lineno")[:10])
            assert growth < MEMORY_GROWTH_BOUND, f"grew {growth} bytes over a flood:\n{top}"

    run(scenario(), timeout=60)


def test_401_flood_keeps_no_state_and_real_clients_still_authenticate() -> None:
    """A stateless server (stun.nonces): every challenge is fresh, nothing is stored per client."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _long_term_server(UNLIMITED) as server:
            target = (await server.listen("udp", "127.0.0.1", 0)).address
            stats = server.server.stats
            nonces: set[str] = set()
            for _ in range(20):
                with udp_socket("127.0.0.1") as sock:
                    for _ in range(100):
                        sock.sendto(binding_request(), target)
                    for _ in range(100):
                        answer = Message.decode(await loop.sock_recv(sock, 65536))
                        assert answer.error_code is not None
                        assert answer.error_code.code == 401
                        nonce = answer.get(Nonce)
                        assert nonce is not None
                        nonces.add(nonce.value)
            assert stats[Outcome.CHALLENGED] == 2000
            assert sum(stats.counts.values()) == 2000
            assert len(nonces) > 1  # nonces are bound to the client's address
            async with await StunClient.connect(
                "127.0.0.1", target.port, credentials=ALICE
            ) as client:
                assert (await client.binding()).mapped_address is not None
            assert stats[Outcome.ANSWERED] == 1

    run(scenario())


def test_401s_to_one_source_are_limited_and_other_sources_still_authenticate() -> None:
    """A 401 is several times the size of the request it answers, whose source anyone can spoof:
    one source gets its burst of answers, the rest are dropped and counted, and a client at
    another address authenticates as usual."""

    async def scenario() -> None:
        # A rate so low that no token comes back while the test runs: the count is exact.
        credentials = LongTermCredentials.from_passwords(REALM, {ALICE.username: ALICE.password})
        config = ServerConfig(authentication=credentials, failure_rate=0.001, failure_burst=20)
        async with StunServer(config) as server:
            target = (await server.listen("udp", "127.0.0.1", 0)).address
            stats = server.server.stats
            with udp_socket("127.0.0.2") as attacker:
                for _ in range(200):
                    attacker.sendto(binding_request(), target)
                await until(lambda: sum(stats.counts.values()) == 200)
                answers = []
                while True:  # what was sent has arrived: loopback delivers on send
                    try:
                        answers.append(attacker.recv(65536))
                    except BlockingIOError:
                        break
            assert len(answers) == stats[Outcome.CHALLENGED] == 20
            assert stats[Outcome.RATE_LIMITED] == 180
            assert all(Message.decode(answer).error_code is not None for answer in answers)
            assert server.server.rate_limited_sources == 1
            async with await StunClient.connect(
                "127.0.0.1", target.port, credentials=ALICE
            ) as client:
                assert (await client.binding()).mapped_address is not None

    run(scenario())


# --------------------------------------------------------------------------- TCP


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(20)
    return header + await reader.readexactly(int.from_bytes(header[2:4], "big"))


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether a Binding request on this connection gets its answer."""
    tid = new_transaction_id()
    writer.write(binding_request(tid))
    try:
        answer = await asyncio.wait_for(_read_message(reader), 5)
    except asyncio.IncompleteReadError:
        return False
    source = writer.get_extra_info("sockname")
    return mapped_address(answer, tid) == Address(source[0], source[1])


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF) before anything else arrives."""
    return await asyncio.wait_for(reader.read(), 5) == b""


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff" * 20, id="not-stun"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(struct.pack("!HHI12s", 0x0001, 3, MAGIC_COOKIE, bytes(12)), id="odd-length"),
        pytest.param(struct.pack("!HHI12s", 0x0001, 0, 0x01020304, bytes(12)), id="no-cookie"),
    ],
)
def test_tcp_garbage_closes_that_connection_only(garbage: bytes) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
            good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
            bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
            assert await _answered(good_reader, good_writer)
            bad_writer.write(garbage)
            assert await _closed_by_server(bad_reader)
            assert server.server.stats[Outcome.STREAM_GARBAGE] == 1
            assert await _answered(good_reader, good_writer)
            await until(lambda: server.connection_count == 1)
            good_writer.close()
            bad_writer.close()

    run(scenario())


def test_tcp_malformed_message_in_good_framing_keeps_the_connection() -> None:
    """A frame that is well delimited but not valid STUN is dropped; the stream is still in step."""

    async def scenario() -> None:
        async with StunServer() as server:
            port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            overrun = struct.pack("!HH", 0x8022, 40) + b"abcd"
            writer.write(struct.pack("!HHI12s", 0x0001, 8, MAGIC_COOKIE, bytes(12)) + overrun)
            assert await _answered(reader, writer)
            assert server.server.stats[Outcome.MALFORMED] == 1
            writer.close()

    run(scenario())


def test_tcp_message_sent_byte_by_byte_is_answered() -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ids = [new_transaction_id() for _ in range(3)]
            stream = b"".join(binding_request(tid) for tid in ids)
            for index in range(len(stream)):
                writer.write(stream[index : index + 1])
                await writer.drain()
                await asyncio.sleep(0.001)  # let each byte travel (and arrive) on its own
            source = writer.get_extra_info("sockname")
            for tid in ids:
                answer = await asyncio.wait_for(_read_message(reader), 5)
                assert mapped_address(answer, tid) == Address(source[0], source[1])
            writer.close()

    run(scenario())


def test_tcp_connections_beyond_the_limit_are_closed_and_the_count_comes_back_down() -> None:
    async def scenario() -> None:
        async with StunServer(limits=StreamLimits(max_connections=3)) as server:
            port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
            admitted = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            for reader, writer in admitted:
                assert await _answered(reader, writer)
            assert server.connection_count == 3
            extras = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for reader, writer in extras:
                assert not await _answered(reader, writer)
                writer.close()
            assert server.connection_count == 3
            for _, writer in admitted:
                writer.close()
            await until(lambda: server.connection_count == 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await _answered(reader, writer)
            assert server.connection_count == 1
            writer.close()
            await until(lambda: server.connection_count == 0)
            assert server.server.stats[Outcome.ANSWERED] == 4

    run(scenario())


def test_tcp_idle_connections_are_closed() -> None:
    async def scenario() -> None:
        limits = StreamLimits(first_message_timeout=0.2)
        async with StunServer(limits=limits, idle_timeout=0.2) as server:
            port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
            silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
            chatty_reader, chatty_writer = await asyncio.open_connection("127.0.0.1", port)
            assert await _answered(chatty_reader, chatty_writer)
            assert await _closed_by_server(silent_reader)
            assert await _closed_by_server(chatty_reader)  # idle after its answer
            await until(lambda: server.connection_count == 0)
            silent_writer.close()
            chatty_writer.close()

    run(scenario())


def test_closing_the_server_closes_its_connections() -> None:
    async def scenario() -> None:
        server = StunServer()
        port = (await server.listen("tcp", "127.0.0.1", 0)).address.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _answered(reader, writer)
        await asyncio.wait_for(server.close(), 5)
        assert await _closed_by_server(reader)
        await until(lambda: server.connection_count == 0)
        writer.close()

    run(scenario())
