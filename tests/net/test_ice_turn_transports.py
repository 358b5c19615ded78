"""TURN over UDP, TCP and TLS inside ICE, on real loopback sockets with our TurnServer: relay-only
connections through each transport and family, relay preferences and foundations, servers that
refuse, stay silent or present an untrusted certificate, IPv6 and dual allocations, TURN REST API
credentials, and the bound on what waits for a TCP/TLS server that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

import ice
from ice import Candidate, CandidateType, IceConnectionError, TurnRestCredentials
from ice.events import GatheringFailed
from ice.relay_streams import WRITE_BUFFER_LIMIT
from stun.address import Address
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, server_context
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer
from turn.transport import ClientTransport

from .loopback import LOOPBACK_HOSTS, SKIP_NO_IPV6, run, until
from .test_ice_faults import (
    PASSWORD,
    USER,
    WAIT,
    connect,
    exchange,
    of_type,
    recorder,
    round_trip,
)

TRANSPORTS = ["udp", "tcp", "tls"]
SECRET = "shared with the web service"


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def uri(transport: str, host: str, port: int) -> str:
    """The RFC 7065 URI of a listener."""
    where = f"{bracket(host)}:{port}"
    return {
        "udp": f"turn:{where}",
        "tcp": f"turn:{where}?transport=tcp",
        "tls": f"turns:{where}",
    }[transport]


@contextlib.asynccontextmanager
async def our_server(
    tls_files: CertificateFiles,
    host: str = "127.0.0.1",
    *,
    relay_hosts: tuple[str, ...] | None = None,
    transports: tuple[str, ...] = ("udp", "tcp", "tls"),
) -> AsyncIterator[tuple[TurnServer, dict[str, str]]]:
    """Our TurnServer listening on ``host`` over ``transports``; the URI of each."""
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack", {USER: PASSWORD}),
        rest_secret=SECRET.encode(),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )
    tls = server_context(tls_files.certificate, tls_files.private_key)
    async with TurnServer(config, relay_hosts=list(relay_hosts or (host,))) as server:
        uris = {}
        for transport in transports:
            listener = await server.listen(
                transport,  # type: ignore[arg-type]
                host,
                0,
                ssl_context=tls if transport == "tls" else None,
            )
            uris[transport] = uri(transport, host, listener.address.port)
        yield server, uris


def relay_only(
    controlling: bool,
    servers: list[Any],
    hosts: list[str],
    tls_files: CertificateFiles,
    **options: Any,
) -> ice.Connection:
    return ice.Connection(
        controlling,
        turn_servers=servers,
        relay_only=True,
        include_loopback=True,
        interfaces=hosts,
        turn_tls_cafile=tls_files.certificate,
        **options,
    )


@contextlib.asynccontextmanager
async def gathered_pair(
    tls_files: CertificateFiles,
    servers: list[Any],
    b_servers: list[Any] | None = None,
    hosts: tuple[str, ...] = ("127.0.0.1",),
) -> AsyncIterator[tuple[ice.Connection, ice.Connection]]:
    """A (controlling) and B, relay-only through ``servers`` (B through ``b_servers`` if given),
    gathered; closed on exit."""
    a = relay_only(True, servers, list(hosts), tls_files)
    b = relay_only(False, b_servers or servers, list(hosts), tls_files)
    async with a, b:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        yield a, b


async def signal_and_connect(a: ice.Connection, b: ice.Connection) -> None:
    await exchange(a, b)
    await connect(a, b)


def relayed(connection: ice.Connection) -> list[Candidate]:
    return [c for c in connection.local_candidates if c.type is CandidateType.RELAYED]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_relay_only_connections_connect_through_each_transport(
    transport: str, host: str, tls_files: CertificateFiles
) -> None:
    """Relay-only, so the path is through the server and nothing else; the server's allocations
    are on the transport of the URI; the relayed candidate is of the family ICE gathers on (an
    IPv6 one on ::1: REQUESTED-ADDRESS-FAMILY)."""

    async def scenario() -> None:
        async with our_server(tls_files, host, transports=(transport,)) as (server, uris):
            servers = [(uris[transport], USER, PASSWORD)]
            async with gathered_pair(tls_files, servers, hosts=(host,)) as (a, b):
                for side in (a, b):
                    (candidate,) = side.local_candidates
                    assert candidate.type is CandidateType.RELAYED
                    assert candidate.host == host  # the family gathered on
                    assert side.agent.tcp.bases == {}  # no ICE-TCP listener: it would serve nothing
                await signal_and_connect(a, b)
                await round_trip(a, b, b"\x80through " + transport.encode())
                kinds = {alloc.five_tuple.transport for alloc in server.core.allocations()}
                assert kinds == {ClientTransport(transport)}
                assert len(a.relay_streams) == (0 if transport == "udp" else 1)
            # Closing deleted the allocations (a Refresh of lifetime 0 written before the close).
            await until(lambda: server.core.allocation_count == 0)

    run(scenario())


def test_relays_of_one_server_over_three_transports_rank_udp_tcp_tls(
    tls_files: CertificateFiles,
) -> None:
    async def scenario() -> None:
        async with our_server(tls_files) as (server, uris):
            servers = [(uris[t], USER, PASSWORD) for t in ("tls", "udp", "tcp")]
            udp = [(uris["udp"], USER, PASSWORD)]
            async with gathered_pair(tls_files, servers, udp) as (a, b):
                candidates = relayed(a)
                assert len(candidates) == 3
                by_priority = sorted(candidates, key=lambda c: -c.priority)
                transports = {
                    c.port: alloc.five_tuple.transport.value
                    for c in candidates
                    for alloc in server.core.allocations()
                    if Address(c.host, c.port) in alloc.relays.values()
                }
                assert [transports[c.port] for c in by_priority] == ["udp", "tcp", "tls"]
                assert len({c.priority for c in candidates}) == 3  # RFC 8445 §5.1.2.1
                assert len({c.foundation for c in candidates}) == 3  # §5.1.1.3
                await signal_and_connect(a, b)
                pair = a.selected_pair()
                assert pair is not None and pair.local == by_priority[0]  # the UDP relay

    run(scenario())


class SilentListener:
    """A TCP listener that accepts connections and never says a word (nor reads one)."""

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def accept_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            connection, _ = self.sock.accept()
            self.accepted.append(connection)

    def __enter__(self) -> SilentListener:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.accept_ready)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        for connection in self.accepted:
            connection.close()
        self.sock.close()


def test_dead_tcp_and_tls_servers_are_given_up_together_within_the_gathering_timeout(
    tls_files: CertificateFiles,
) -> None:
    """Three silent servers — TCP connected but mute, TLS stuck in its handshake, and a port that
    refuses — are asked at once (all connections are open before the first gives up), and each
    ends with the reason; connect() ends saying why no relayed candidate was gathered."""

    async def scenario() -> None:
        with SilentListener() as mute, SilentListener() as stuck:
            refusing = socket.create_server(("127.0.0.1", 0))
            refused_port = refusing.getsockname()[1]
            refusing.close()
            servers = [
                (f"turn:127.0.0.1:{mute.port}?transport=tcp", USER, PASSWORD),
                (f"turns:127.0.0.1:{stuck.port}", USER, PASSWORD),
                (f"turn:127.0.0.1:{refused_port}?transport=tcp", USER, PASSWORD),
            ]
            config = ice.config.AgentConfig(gathering_timeout=1.0)
            connection = relay_only(True, servers, ["127.0.0.1"], tls_files, config=config)
            events = recorder(connection)
            accepted_at_first_timeout: list[int] = []

            def watch(event: Any) -> None:
                events.append(event)
                if isinstance(event, GatheringFailed) and "within" in event.reason:
                    accepted_at_first_timeout.append(len(mute.accepted) + len(stuck.accepted))

            connection.on_event = watch
            async with connection:
                await connection.gather_candidates()
                reasons = {
                    event.server.port: event.reason for event in of_type(events, GatheringFailed)
                }
                assert reasons[mute.port] == (
                    f"over TCP: no answer to Allocate from 127.0.0.1:{mute.port} within 1 s"
                )
                assert (
                    reasons[stuck.port] == "over TLS: not connected within 1 s (gathering_timeout)"
                )
                assert reasons[refused_port] == (
                    f"over TCP: 127.0.0.1:{refused_port} refused the TCP connection: nothing "
                    "listens on that port"
                )
                assert accepted_at_first_timeout[0] == 2  # in parallel, not one after another
                connection.set_remote_credentials("peerufrag", "peerpassword0123456789")
                await connection.add_remote_candidate(None)
                with pytest.raises(IceConnectionError, match="no relayed candidate was gathered"):
                    await asyncio.wait_for(connection.connect(), WAIT)
                assert len(connection.relay_streams) == 0  # every connection was closed

    run(scenario())


def test_tls_verifies_the_certificate_unless_told_not_to(
    tls_files: CertificateFiles, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with our_server(tls_files, transports=("tls",)) as (_, uris):
            servers = [(uris["tls"], USER, PASSWORD)]
            untrusting = ice.Connection(
                True, turn_servers=servers, relay_only=True, include_loopback=True,
                interfaces=["127.0.0.1"],
            )  # fmt: skip
            events = recorder(untrusting)
            async with untrusting:
                await untrusting.gather_candidates()
                assert untrusting.local_candidates == []
                (failed,) = of_type(events, GatheringFailed)
                assert failed.reason.startswith("over TLS: the TLS certificate of 127.0.0.1:")
                assert "is not trusted" in failed.reason
            insecure = ice.Connection(
                True, turn_servers=servers, relay_only=True, include_loopback=True,
                interfaces=["127.0.0.1"], turn_tls_verify=False,
            )  # fmt: skip
            async with insecure:
                await insecure.gather_candidates()
                assert len(relayed(insecure)) == 1

    with caplog.at_level(logging.WARNING, logger="icestack.ice"):
        run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "TURN over TLS without certificate verification (turn_tls_verify=False): anyone on "
        "the path can pose as the TURN server"
    ]


def test_rest_api_credentials_made_from_the_shared_secret_are_accepted(
    tls_files: CertificateFiles,
) -> None:
    async def scenario() -> None:
        async with our_server(tls_files, transports=("tls",)) as (server, uris):
            servers = [(uris["tls"], TurnRestCredentials(SECRET, user="alice", ttl=300))]
            async with gathered_pair(tls_files, servers) as (a, b):
                await signal_and_connect(a, b)
                await round_trip(a, b, b"\x80with minted credentials")
                usernames = {alloc.username for alloc in server.core.allocations()}
                assert len(usernames) == 1 and usernames.pop().endswith(":alice")
            wrong = [(uris["tls"], TurnRestCredentials("not the secret", user="alice"))]
            refused = relay_only(True, wrong, ["127.0.0.1"], tls_files)
            events = recorder(refused)
            async with refused:
                await refused.gather_candidates()
                (failed,) = of_type(events, GatheringFailed)
                assert "401" in failed.reason

    run(scenario())


@SKIP_NO_IPV6
def test_a_dual_stack_connection_gets_both_families_from_one_allocation(
    tls_files: CertificateFiles,
) -> None:
    """Gathering on 127.0.0.1 and ::1 with a server on 127.0.0.1 that relays on both: the
    Allocate asks for ADDITIONAL-ADDRESS-FAMILY and one allocation gives an IPv4 and an IPv6
    relayed candidate, IPv6 ranked first (RFC 8421)."""

    async def scenario() -> None:
        relays = ("127.0.0.1", "::1")
        async with our_server(tls_files, relay_hosts=relays, transports=("tcp",)) as (srv, uris):
            connection = relay_only(True, [(uris["tcp"], USER, PASSWORD)], list(relays), tls_files)
            async with connection:
                await connection.gather_candidates()
                candidates = sorted(relayed(connection), key=lambda c: -c.priority)
                assert [c.host for c in candidates] == ["::1", "127.0.0.1"]
                assert srv.core.allocation_count == 1

    run(scenario())


@SKIP_NO_IPV6
@pytest.mark.parametrize(
    ("gathered_on", "relay_host", "wanted"),
    [
        (("127.0.0.1", "::1"), "::1", "::1"),  # dual refused 440 -> REQUESTED-ADDRESS-FAMILY
        (("::1",), "127.0.0.1", "127.0.0.1"),  # IPv6 refused 440 -> a plain Allocate
    ],
    ids=["dual-to-ipv6-only-server", "ipv6-to-ipv4-only-server"],
)
def test_a_refused_family_falls_back_to_what_the_server_offers(
    gathered_on: tuple[str, ...], relay_host: str, wanted: str, tls_files: CertificateFiles
) -> None:
    async def scenario() -> None:
        host = gathered_on[-1]
        async with our_server(tls_files, host, relay_hosts=(relay_host,), transports=("tcp",)) as (
            server,
            uris,
        ):
            connection = relay_only(
                True, [(uris["tcp"], USER, PASSWORD)], list(gathered_on), tls_files
            )
            events = recorder(connection)
            async with connection:
                await connection.gather_candidates()
                assert [c.host for c in relayed(connection)] == [wanted]
                assert of_type(events, GatheringFailed) == []
                assert server.core.allocation_count == 1
                assert len(connection.relay_streams) == 1  # the same connection, asked again

    run(scenario())


class StallingProxy:
    """A TCP proxy between a client and a server that can stop reading what the client sends,
    as a congested path or an overloaded server does, and start again."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.client: asyncio.Transport | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> StallingProxy:
        loop = asyncio.get_running_loop()
        proxy = self

        class Client(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                proxy.client = transport
                self.transport = transport
                self.upstream: asyncio.Transport | None = None
                self.early: list[bytes] = []
                self.opening = asyncio.ensure_future(self.open())

            async def open(self) -> None:
                client = self.transport

                class Upstream(asyncio.Protocol):
                    def data_received(self, data: bytes) -> None:
                        client.write(data)

                    def connection_lost(self, exc: Exception | None) -> None:
                        client.close()

                transport, _ = await loop.create_connection(
                    Upstream, proxy.upstream.host, proxy.upstream.port
                )
                self.upstream = transport
                for data in self.early:
                    transport.write(data)

            def data_received(self, data: bytes) -> None:
                if self.upstream is None:
                    self.early.append(data)
                else:
                    self.upstream.write(data)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.upstream is not None:
                    self.upstream.close()

        listening = socket.create_server(("127.0.0.1", 0))
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        self._server = await loop.create_server(Client, sock=listening)
        self.port = listening.getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        if self.client is not None:
            self.client.close()


def test_a_slow_tcp_server_costs_a_bounded_buffer_and_drops_are_counted(
    tls_files: CertificateFiles,
) -> None:
    """A's connection to the TURN server stops being read: what A sends piles up in its write
    buffer only up to the limit (a datagram beyond it), the rest is dropped and counted, and once
    the path moves again data flows — the allocation lived through it."""

    async def scenario() -> None:
        async with our_server(tls_files, transports=("tcp",)) as (_, uris):
            port = int(uris["tcp"].split(":")[2].partition("?")[0])
            async with StallingProxy(Address("127.0.0.1", port)) as proxy:
                slow = [(f"turn:127.0.0.1:{proxy.port}?transport=tcp", USER, PASSWORD)]
                direct = [(uris["tcp"], USER, PASSWORD)]
                async with gathered_pair(tls_files, slow, direct) as (a, b):
                    await signal_and_connect(a, b)
                    await round_trip(a, b, b"\x80before")
                    assert proxy.client is not None
                    proxy.client.pause_reading()
                    payload = b"\x80" + bytes(1199)
                    sent = 0
                    while a.relay_streams.dropped == 0 and sent < 100_000:
                        await a.send(payload)
                        sent += 1
                        if sent % 256 == 0:
                            await asyncio.sleep(0)  # let the loop write what the kernel takes
                    assert a.relay_streams.dropped > 0, f"{sent} datagrams never filled it"
                    # The bound: never more than the limit and one ChannelData message waiting.
                    assert a.relay_streams.buffered <= WRITE_BUFFER_LIMIT + len(payload) + 4
                    for _ in range(100):
                        await a.send(payload)
                    assert a.relay_streams.buffered <= WRITE_BUFFER_LIMIT + len(payload) + 4
                    proxy.client.resume_reading()
                    await until(lambda: a.relay_streams.buffered == 0, WAIT)
                    await a.send(b"\x80after")
                    async with asyncio.timeout(WAIT):
                        while await b.recv() != b"\x80after":
                            pass

    run(scenario(), timeout=60)
