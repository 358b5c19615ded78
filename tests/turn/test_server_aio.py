"""turn.server.aio.TurnServer on loopback: a raw-codec client allocates over UDP, TCP and TLS,
installs a permission and a channel, and data flows both ways through a relayed UDP socket to a
peer socket; relayed sockets follow the allocations (deleted, expired, connection closed); the
metrics endpoint; bounds; floods that leave memory flat while real clients are served.

Every wait is bounded; memory is measured with tracemalloc, never time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import ssl
import struct
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stun import (
    MAGIC_COOKIE,
    Address,
    AddressFamily,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    Username,
    long_term_key,
    make_address,
)
from stun.datagram import Datagram
from stun.limits import Closure, Refusal, StreamLimits
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, client_context, make_self_signed, server_context
from tests.net.loopback import LOOPBACK_HOSTS, run, until
from tests.turn.aio_client import RawTurnClient, TurnRequestFailed
from tests.turn.harness import (
    OTHER_CLIENT,
    PEER,
    code,
    events,
    from_peer,
    make_server,
)
from tests.turn.harness import Client as HarnessClient
from tests.turn.harness import relayed as relayed_of
from turn import (
    Data,
    Lifetime,
    RequestedAddressFamily,
    RequestedTransport,
    XorPeerAddress,
    encode_channel_data,
)
from turn.server import (
    AllocationDeleted,
    ClientTransport,
    DeletionReason,
    Outcome,
    PeerPolicy,
    TurnServerConfig,
    rest_api_password,
    rest_api_username,
)
from turn.server.aio import TurnServer, render_metrics

REALM = "icestack.test"
PASSWORDS = {"alice": "wonderland", "bob": "the-builder"}
CHANNEL = 0x4000
REST_SECRET = b"shared by every server of the deployment"


def config(**overrides: Any) -> TurnServerConfig:
    settings: dict[str, Any] = {
        "credentials": LongTermCredentials.from_passwords(REALM, PASSWORDS),
        "peer_policy": PeerPolicy(allow_loopback_peers=True),
    }
    settings.update(overrides)
    return TurnServerConfig(**settings)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("turn-tls"))


@asynccontextmanager
async def turn_server(
    host: str = "127.0.0.1", *, transports: tuple[str, ...] = ("udp",),
    certificate: CertificateFiles | None = None, **options: Any,
) -> AsyncIterator[tuple[TurnServer, dict[str, Address]]]:  # fmt: skip
    """A TurnServer relaying on ``host`` with a listener per transport on ``host``."""
    server_keys = (
        "relay_ports", "limits", "idle_timeout", "max_allocate_timeout", "write_buffer_limit",
    )
    server_options = {k: options.pop(k) for k in server_keys if k in options}
    async with TurnServer(config(**options), relay_hosts=[host], **server_options) as server:
        listeners = {}
        for transport in transports:
            context = None
            if transport == "tls":
                assert certificate is not None
                context = server_context(certificate.certificate, certificate.private_key)
            listener = await server.listen(transport, host, 0, ssl_context=context)  # type: ignore[arg-type]
            listeners[transport] = listener.address
        yield server, listeners


def peer_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def peer_receive(sock: socket.socket) -> tuple[bytes, Address]:
    loop = asyncio.get_running_loop()
    data, sockaddr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), 5.0)
    return data, make_address(sockaddr[0], sockaddr[1])


def address_of(sock: socket.socket) -> Address:
    sockname = sock.getsockname()
    return make_address(sockname[0], sockname[1])


async def connect(
    transport: str, listeners: dict[str, Address], user: str = "alice",
    certificate: CertificateFiles | None = None,
) -> RawTurnClient:  # fmt: skip
    context: ssl.SSLContext | None = None
    if transport == "tls":
        assert certificate is not None
        context = client_context(certificate.certificate)
    return await RawTurnClient.connect(
        transport, listeners[transport], user, PASSWORDS[user], ssl_context=context
    )


# --------------------------------------------------------------------------- the relay


async def relay_both_ways(server: TurnServer, client: RawTurnClient, host: str) -> None:
    """Allocate, permit, bind a channel; ChannelData and Send indications reach the peer, and
    the peer's datagrams come back as ChannelData (bound) and Data indications (not bound)."""
    family = AddressFamily.IPV6 if ":" in host else AddressFamily.IPV4
    (relayed,) = await client.allocate(RequestedAddressFamily(family))
    assert relayed.host == host
    assert relayed in server.relays.relays
    with peer_socket(host) as peer, peer_socket(host) as other:
        await client.permit(address_of(peer))
        await client.bind(CHANNEL, address_of(peer))
        for size in (1, 100, 1000):
            payload = random.randbytes(size)
            client.send_channel_data(CHANNEL, payload)
            assert await peer_receive(peer) == (payload, relayed)
        client.send_indication(address_of(peer), b"indicated")
        assert await peer_receive(peer) == (b"indicated", relayed)

        peer.sendto(b"to the client", relayed)
        assert await client.receive() == (CHANNEL, b"to the client")
        # Permissions go by IP address: the second peer socket shares the first one's.
        other.sendto(b"no channel", relayed)
        assert await client.receive() == (address_of(other), b"no channel")

    stats = server.stats
    assert stats[Outcome.RELAYED_TO_PEER] == 4
    assert stats[Outcome.RELAYED_TO_CLIENT] == 2
    assert stats.bytes_to_peer == 1 + 100 + 1000 + len(b"indicated")
    assert stats.bytes_to_client == len(b"to the client") + len(b"no channel")


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_udp_client_relays_both_ways(host: str) -> None:
    async def scenario() -> None:
        async with turn_server(host) as (server, listeners):
            client = await connect("udp", listeners)
            await relay_both_ways(server, client, host)
            await client.close()

    run(scenario())


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_client_relays_both_ways(transport: str, certificate: CertificateFiles) -> None:
    async def scenario() -> None:
        async with turn_server(transports=(transport,), certificate=certificate) as (
            server,
            listeners,
        ):
            client = await connect(transport, listeners, certificate=certificate)
            await relay_both_ways(server, client, "127.0.0.1")
            assert server.connection_count == 1
            # The allocation's 5-tuple ends with its connection: so do the allocation and socket.
            await client.close()
            await until(lambda: server.core.allocation_count == 0)
            assert len(server.relays) == 0
            assert server.connection_count == 0

    run(scenario())


def test_stream_padding_of_odd_channel_data(certificate: CertificateFiles) -> None:
    """ChannelData on a stream is padded to four bytes both ways (RFC 8656 §12.5): sizes 1-4
    keep the stream in step, in one write or split byte by byte."""

    async def scenario() -> None:
        async with turn_server(transports=("tcp",)) as (_, listeners):
            client = await connect("tcp", listeners)
            (relayed,) = await client.allocate()
            with peer_socket("127.0.0.1") as peer:
                await client.permit(address_of(peer))
                await client.bind(CHANNEL, address_of(peer))
                for size in (1, 2, 3, 4):
                    for byte in encode_channel_data(CHANNEL, bytes([size]) * size, pad=True):
                        client.send_raw(bytes([byte]))
                    assert (await peer_receive(peer))[0] == bytes([size]) * size
                    peer.sendto(b"x" * size, relayed)
                    assert await client.receive() == (CHANNEL, b"x" * size)
            await client.close()

    run(scenario())


def test_rfc5766_channel_numbers_only_when_configured() -> None:
    """RFC 8656 §12.2 answers a channel above 0x4FFF with 400; ``rfc5766_channels`` accepts
    RFC 5766's 0x4000-0x7FFF, in ChannelBind and in ChannelData both ways, UDP and TCP."""
    strict, _ = make_server()
    client = HarnessClient(strict)
    client.allocate()
    client.permit(PEER)
    assert code(client.bind(0x7000, PEER)) == 400

    lenient, _ = make_server(rfc5766_channels=True)
    client = HarnessClient(lenient)
    (relay,) = relayed_of(client.allocate())
    client.permit(PEER)
    assert code(client.bind(0x7000, PEER)) is None
    out = client.send(encode_channel_data(0x7000, b"up", max_channel=0x7FFF), 1.0)
    assert out == Datagram(b"up", relay, PEER)
    down = from_peer(lenient, b"down", 1.0, relay=relay)
    assert down is not None
    assert down.data == encode_channel_data(0x7000, b"down", max_channel=0x7FFF)

    async def over_tcp() -> None:
        async with turn_server(transports=("tcp",), rfc5766_channels=True) as (_, listeners):
            tcp = await RawTurnClient.connect(
                "tcp", listeners["tcp"], "alice", PASSWORDS["alice"], max_channel=0x7FFF
            )
            (relayed_address,) = await tcp.allocate()
            with peer_socket("127.0.0.1") as peer:
                await tcp.permit(address_of(peer))
                await tcp.bind(0x7ABC, address_of(peer))
                tcp.send_channel_data(0x7ABC, b"odd")
                assert await peer_receive(peer) == (b"odd", relayed_address)
                peer.sendto(b"back", relayed_address)
                assert await tcp.receive() == (0x7ABC, b"back")
            await tcp.close()

    run(over_tcp())


def test_relayed_sockets_follow_deletion_and_expiry() -> None:
    async def scenario() -> None:
        async with turn_server() as (server, listeners):
            client = await connect("udp", listeners)
            (relayed,) = await client.allocate()
            answer = await client.refresh(Lifetime(0))
            assert answer.message_class is MessageClass.SUCCESS_RESPONSE
            assert server.core.allocation_count == 0
            assert len(server.relays) == 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                again.bind(relayed)  # the port is free again
            await client.close()

        # Lifetimes of a fraction of a second: the one timer the server arms expires it.
        async with turn_server(default_lifetime=0.2, max_lifetime=0.2) as (server, listeners):
            client = await connect("udp", listeners)
            await client.allocate()
            assert len(server.relays) == 1
            await until(lambda: server.core.allocation_count == 0)
            assert len(server.relays) == 0
            await client.close()

    run(scenario())


def test_rest_api_credentials_use_the_wall_clock() -> None:
    """A REST API username's expiry is Unix time; the server's loop clock is not."""

    async def scenario() -> None:
        async with turn_server(rest_secret=REST_SECRET) as (server, listeners):
            for expires_at, allowed in ((time.time() + 600, True), (time.time() - 5, False)):
                username = rest_api_username("carol", expires_at)
                client = await RawTurnClient.connect(
                    "udp", listeners["udp"], username, rest_api_password(REST_SECRET, username)
                )
                if allowed:
                    assert len(await client.allocate()) == 1
                else:
                    with pytest.raises(TurnRequestFailed) as refused:
                        await client.allocate()
                    assert refused.value.code == 401
                await client.close()
            assert server.stats[Outcome.EXPIRED_CREDENTIALS] == 1

    run(scenario())


# --------------------------------------------------------------------------- bounds


def test_ports_come_from_the_range_and_taken_ones_are_skipped() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            ports = range(port, port + 2)
            async with turn_server(relay_ports=ports) as (server, listeners):
                alice = await connect("udp", listeners, "alice")
                bob = await connect("udp", listeners, "bob")
                try:
                    (relayed,) = await alice.allocate()
                except TurnRequestFailed:
                    pytest.skip(f"port {port + 1} is in use by something else")
                assert relayed == Address("127.0.0.1", port + 1)
                with pytest.raises(TurnRequestFailed) as full:
                    await bob.allocate()
                assert full.value.code == 508
                assert server.transport_stats.relay_failures == 1
                await alice.close()
                await bob.close()

    run(scenario())


def test_relayed_sockets_are_bounded_by_the_quotas() -> None:
    async def scenario() -> None:
        async with turn_server(total_quota=1, max_reservations=0) as (server, _):
            relays = server.relays
            assert relays.max_relays == 2
            first = relays.allocate_relay(AddressFamily.IPV4)
            second = relays.allocate_relay(AddressFamily.IPV4)
            assert first is not None and second is not None
            assert relays.allocate_relay(AddressFamily.IPV4) is None
            assert relays.allocate_relay(AddressFamily.IPV6) is None  # no relay host of it
            relays.release_relay(first)
            pair = relays.allocate_relay(AddressFamily.IPV4, reserve_next=False, even_port=True)
            assert pair is not None and pair.port % 2 == 0

    run(scenario())


def test_connections_are_bounded() -> None:
    async def scenario() -> None:
        limits = StreamLimits(max_connections=2)
        async with turn_server(transports=("tcp",), limits=limits) as (server, listeners):
            clients = [await connect("tcp", listeners) for _ in range(2)]
            await until(lambda: server.connection_count == 2)
            refused = await connect("tcp", listeners)
            await asyncio.wait_for(refused.closed.wait(), 5.0)
            assert server.admission.refused[Refusal.MAX_CONNECTIONS] == 1
            assert server.connection_count == 2
            assert len(await clients[0].allocate()) == 1
            for client in clients:
                await client.close()

    run(scenario())


def test_quiet_connections_without_an_allocation_are_closed() -> None:
    async def scenario() -> None:
        async with turn_server(transports=("tcp",), idle_timeout=0.3) as (server, listeners):
            busy = await connect("tcp", listeners)
            await busy.allocate()
            quiet = await connect("tcp", listeners)
            await quiet.exchange(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)))
            await asyncio.wait_for(quiet.closed.wait(), 5.0)
            assert server.admission.closed[Closure.IDLE] == 1
            # The busy one's idle check came first and found its allocation.
            assert not busy.closed.is_set()
            assert server.connection_count == 1
            answer = await busy.refresh()
            assert answer.message_class is MessageClass.SUCCESS_RESPONSE
            await busy.close()

    run(scenario())


def test_a_client_that_does_not_read_loses_relayed_data_not_memory() -> None:
    """Past ``write_buffer_limit`` waiting for a TCP client, relayed datagrams are dropped whole:
    the stream stays in step, and the client gets what follows once it reads again."""
    limit = 64 * 1024

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with turn_server(transports=("tcp",), write_buffer_limit=limit) as (
            server,
            listeners,
        ):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning
            sock.setblocking(False)
            await loop.sock_connect(sock, listeners["tcp"])
            client = await RawTurnClient.connect(
                "tcp", listeners["tcp"], "alice", PASSWORDS["alice"], sock=sock
            )
            (relayed,) = await client.allocate()
            with peer_socket("127.0.0.1") as peer:
                await client.permit(address_of(peer))
                await client.bind(CHANNEL, address_of(peer))
                client.pause_reading()
                payload = bytes(1000)
                for _ in range(100):  # bounded: 6 MB, more than the kernel's 4 MB send buffer
                    for _ in range(60):
                        peer.sendto(payload, relayed)
                    await asyncio.sleep(0.001)
                    if server.transport_stats.write_buffer_drops:
                        break
                assert server.transport_stats.write_buffer_drops > 0
                assert server.buffered_bytes <= limit + 1004
                client.pause_reading(False)
                await until(lambda: server.buffered_bytes == 0, timeout=20)
                peer.sendto(b"marker", relayed)
                while (message := await client.receive()) != (CHANNEL, b"marker"):
                    assert message == (CHANNEL, payload)
            await client.close()

    run(scenario(), timeout=60)


def test_a_stream_that_cannot_be_framed_is_closed() -> None:
    async def scenario() -> None:
        async with turn_server(transports=("tcp",)) as (server, listeners):
            client = await connect("tcp", listeners)
            client.send_raw(b"PUT / HTTP/1.1\r\n\r\n")  # "P": neither STUN nor ChannelData
            await asyncio.wait_for(client.closed.wait(), 5.0)
            assert server.transport_stats.stream_garbage == 1
            await until(lambda: server.connection_count == 0)

    run(scenario())


def test_connection_closed_deletes_only_its_own_allocation() -> None:
    """The core's side of a closed stream, on a virtual clock."""
    core, relays = make_server()
    tcp = HarnessClient(core, transport=ClientTransport.TCP)
    udp = HarnessClient(core, address=OTHER_CLIENT, username="bob", password=PASSWORDS["bob"])
    for client in (tcp, udp):
        assert client.allocate().message_class is MessageClass.SUCCESS_RESPONSE
    drained = events(core)
    core.connection_closed(udp.five_tuple._replace(transport=ClientTransport.TCP))
    assert core.allocation_count == 2  # no TCP allocation of that client: nothing happens
    core.connection_closed(tcp.five_tuple)
    (deleted,) = events(core)
    assert isinstance(deleted, AllocationDeleted)
    assert deleted.reason is DeletionReason.CONNECTION_CLOSED
    assert deleted.five_tuple == tcp.five_tuple
    assert core.allocation(udp.five_tuple) is not None
    assert len(relays.in_use) == 1
    assert len(drained) == 2


# --------------------------------------------------------------------------- metrics


async def scrape(address: Address, method: str = "GET") -> tuple[str, str]:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(f"{method} /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    response = (await asyncio.wait_for(reader.read(), 5.0)).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return head.split("\r\n")[0], body


def samples(body: str) -> dict[str, float]:
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_endpoint_reports_the_counters() -> None:
    async def scenario() -> None:
        async with turn_server() as (server, listeners):
            address = await server.serve_metrics()
            assert address.host == "127.0.0.1"
            client = await connect("udp", listeners)
            (relayed,) = await client.allocate()
            with peer_socket("127.0.0.1") as peer:
                await client.permit(address_of(peer))
                await client.bind(CHANNEL, address_of(peer))
                for _ in range(3):
                    client.send_channel_data(CHANNEL, b"12345")
                    await peer_receive(peer)
                peer.sendto(b"back", relayed)
                await client.receive()
            intruder = await RawTurnClient.connect("udp", listeners["udp"], "alice", "guess")
            with pytest.raises(TurnRequestFailed):
                await intruder.allocate()

            status, body = await scrape(address)
            assert status == "HTTP/1.1 200 OK"
            values = samples(body)
            assert values["icestack_turn_allocations"] == 1
            assert values["icestack_turn_permissions"] == 1
            assert values["icestack_turn_channels"] == 1
            assert values["icestack_turn_relayed_sockets"] == 1
            assert values['icestack_turn_relayed_packets_total{direction="to_peer"}'] == 3
            assert values['icestack_turn_relayed_packets_total{direction="to_client"}'] == 1
            assert values['icestack_turn_relayed_bytes_total{direction="to_peer"}'] == 15
            assert values['icestack_turn_relayed_bytes_total{direction="to_client"}'] == 4
            assert (
                values['icestack_turn_authentication_failures_total{reason="bad_integrity"}'] == 1
            )
            assert values['icestack_turn_datagrams_total{outcome="allocated"}'] == 1
            assert "# TYPE icestack_turn_relayed_packets_total counter" in body
            assert body == render_metrics(server)

            status, _ = await scrape(address, "POST")
            assert status == "HTTP/1.1 405 Method Not Allowed"
            await client.close()
            await intruder.close()

    run(scenario())


def test_the_metrics_endpoint_bounds_its_connections_and_requests() -> None:
    """Eight connections at a time: a ninth is closed at once while the eight are still open.
    A request line and headers past 8 KiB are closed unanswered. A scrape after is served."""

    async def scenario() -> None:
        async with turn_server() as (server, _):
            address = await server.serve_metrics()
            held = [await asyncio.open_connection(address.host, address.port) for _ in range(8)]
            ninth_reader, ninth_writer = await asyncio.open_connection(address.host, address.port)
            assert await asyncio.wait_for(ninth_reader.read(), 5.0) == b""
            assert not any(reader.at_eof() for reader, _ in held)
            for _, writer in [*held, (ninth_reader, ninth_writer)]:
                writer.close()
            reader, writer = await asyncio.open_connection(address.host, address.port)
            writer.write(b"GET /" + b"x" * 9000)  # no end of headers, ever
            # Closed unanswered: the unread rest of the request makes it a reset.
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5.0) == b""
            writer.close()
            status, _ = await scrape(address)
            assert status == "HTTP/1.1 200 OK"

    run(scenario())


# --------------------------------------------------------------------------- floods

#: Datagrams per flood, and how many go out between two yields to the event loop.
FLOOD_SIZE = 6000
BATCH = 100
#: How much memory a second flood may leave behind: a leak of a few bytes per datagram exceeds it.
MEMORY_GROWTH_BOUND = 256 * 1024
#: Where floods come from (all of 127.0.0.0/8 is loopback on Linux).
ATTACKER = "127.0.0.2"


def junk(rng: random.Random, kind: int) -> bytes:
    """One of six unwelcome datagrams: garbage, ChannelData and Send without an allocation,
    unauthenticated and wrongly authenticated Allocates."""
    tid = rng.randbytes(12)
    kind %= 6
    if kind == 0:
        return bytes([rng.randrange(0x80, 0x100)]) + rng.randbytes(rng.randrange(200))
    if kind == 1:
        return struct.pack("!HHI12s", 0x0003, 64, MAGIC_COOKIE, tid) + rng.randbytes(20)
    if kind == 2:
        return encode_channel_data(0x4000 + rng.randrange(0x1000), rng.randbytes(100))
    if kind == 3:
        peer = XorPeerAddress(Address("127.0.0.1", 9))
        return Message(Method.SEND, MessageClass.INDICATION, tid, [peer, Data(b"x" * 50)]).encode()
    allocate = [RequestedTransport()]
    if kind == 4:
        return Message(Method.ALLOCATE, MessageClass.REQUEST, tid, allocate).encode()
    credentials = [Username("alice"), Realm(REALM), Nonce("not-a-nonce-we-issued")]
    forged = Message(Method.ALLOCATE, MessageClass.REQUEST, tid, [*allocate, *credentials])
    return forged.encode(key=long_term_key("alice", REALM, "not her password"))


def test_floods_leave_memory_flat_and_real_clients_served() -> None:
    async def flood(target: Address, rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        # From another loopback address: the flood spends its own budget of 401s, not ours.
        senders = [peer_socket(ATTACKER) for _ in range(8)]
        try:
            for start in range(0, FLOOD_SIZE, BATCH):
                for i in range(start, start + BATCH):
                    with contextlib.suppress(BlockingIOError):
                        senders[i % len(senders)].sendto(junk(rng, i), target)
                await asyncio.sleep(0)
            # Let the server drain what the kernel still holds.
            await asyncio.sleep(0.05)
            await loop.run_in_executor(None, gc.collect)
        finally:
            for sender in senders:
                sender.close()

    async def served(listeners: dict[str, Address]) -> None:
        client = await connect("udp", listeners, "bob")
        (relayed,) = await client.allocate()
        with peer_socket("127.0.0.1") as peer:
            await client.permit(address_of(peer))
            peer.sendto(b"still here", relayed)
            assert await client.receive() == (address_of(peer), b"still here")
        await client.refresh(Lifetime(0))
        await client.close()

    async def scenario() -> None:
        rng = random.Random(7)
        async with turn_server(transports=("udp", "tcp")) as (server, listeners):
            await flood(listeners["udp"], rng)  # warm-up: caches and free lists fill
            await served(listeners)
            tracemalloc.start()
            try:
                gc.collect()
                baseline = tracemalloc.take_snapshot()
                await flood(listeners["udp"], rng)
                gc.collect()
                grown = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            stats = grown.compare_to(baseline, "filename")
            growth = sum(stat.size_diff for stat in stats)
            top = "\n".join(str(stat) for stat in stats[:5])
            assert growth < MEMORY_GROWTH_BOUND, f"grew {growth} bytes over a flood:\n{top}"
            await served(listeners)
            counts = server.stats
            assert counts[Outcome.MALFORMED] > 0
            assert counts[Outcome.NO_ALLOCATION] > 0
            assert counts[Outcome.AUTHENTICATION_FAILED] > 0
            assert counts[Outcome.RATE_LIMITED] > 0  # the attacker's 401s beyond its budget
            assert server.core.allocation_count == 0
            assert len(server.relays) == 0

    run(scenario(), timeout=60)
