"""Our TurnClient's TCP allocations (RFC 6062) through coturn's turnserver, to TCP peers on
loopback: a connection to an echo peer (4 MB back in order), a peer that connects to the relayed
address and is accepted, over TCP and TLS control connections and over IPv6; closes both ways;
and coturn's refusals said in words (403 for a denied peer, 446, 447).

What coturn 4.6.1 does, as these tests found it:

* It accepts a ConnectionBind carrying the control connection's nonce on the new data connection.
* When the peer closes, it resets a TCP data connection (the client's reader raises
  ConnectionResetError) where it closes a TLS one cleanly, and where our server sends
  end-of-file on both.
* Under CPU load it sometimes stops relaying a TLS client data connection of a TCP allocation
  after a few megabytes: typically everything the client wrote has left it and the peer has
  echoed all it received, and neither more data nor time moves it (one run in four with two
  busy processes on two cores; never against our server over TLS). The 4 MB test skips over
  TLS, saying so, when nothing moves for a whole wait.
* It does not hold a fast peer back for a slow client: with the suite on two workers, over TCP,
  the peer had echoed all 4 MB, 1.4 MB came back and the rest never did (its maintainers say, in
  coturn issue #51, that it drops rather than apply backpressure, TURN being made for media).
  The 4 MB test keeps at most 64 KiB in flight, so it tests order and integrity, not coturn's
  buffers.
* Its reason phrases come padded with NUL bytes to a multiple of four
  (``"Connection Already Exists\\x00\\x00\\x00"``); what we print strips them.
* It does not refuse private or loopback peers by default: ``--denied-peer-ip`` makes the 403.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import pytest

from stun import Address, AddressFamily, make_address
from stun.aio import Transport
from stun.tls import CertificateFiles, client_context
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import RunningTurnserver, running_turnserver, skip_unless_installed
from tests.net.loopback import IPV6, closed_port, run
from tests.turn.test_tcp_relay_aio import EchoPeer, cross_connect, echo_peer
from turn import PeerConnectionFailed, TransportProtocol, TurnClient, TurnClientConfig

#: Bound on one wait: generous, for machines under load (only a hang reaches it).
WAIT = 15.0
DENIED_PEER = "127.0.0.2"
#: The 4 MB test's writes, and how far its writing may run ahead of the echo.
CHUNK = 16 * 1024
WINDOW = 64 * 1024
#: (control transport, host): TCP and TLS on IPv4, TCP on IPv6.
PATHS = [
    pytest.param("tcp", "127.0.0.1", id="tcp"),
    pytest.param("tls", "127.0.0.1", id="tls"),
    pytest.param(
        "tcp", "::1", id="ipv6",
        marks=pytest.mark.skipif(not IPV6, reason="IPv6 loopback (::1) is not available here"),
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def coturn_tcp(
    tmp_path_factory: pytest.TempPathFactory, tls_certificate: CertificateFiles
) -> Iterator[RunningTurnserver]:
    """coturn with long-term credentials, TLS, TCP relays (its default) and one denied peer."""
    skip_unless_installed("turnserver")
    with running_turnserver(
        tmp_path_factory.mktemp("coturn-tcp"),
        certificate=tls_certificate,
        credentials=TEST_CREDENTIALS,
        extra_arguments=["--denied-peer-ip", DENIED_PEER],
    ) as server:
        yield server


async def tcp_client(
    server: RunningTurnserver, transport: Transport = "tcp", host: str = "127.0.0.1"
) -> TurnClient:
    """Our client with a TCP allocation's config, to coturn over ``transport`` on ``host``."""
    family = AddressFamily.IPV6 if ":" in host else AddressFamily.IPV4
    address = server.tls_address(host) if transport == "tls" else server.address(host)
    assert server.certificate is not None
    return await TurnClient.connect(
        address.host,
        address.port,
        transport=transport,
        username=TEST_CREDENTIALS.username,
        password=TEST_CREDENTIALS.password,
        ssl_context=client_context(server.certificate),
        config=TurnClientConfig(relay_transport=TransportProtocol.TCP, requested_family=family),
    )


def skip_if_coturn_stalled(
    transport: Transport, writer: asyncio.StreamWriter, echo: EchoPeer, received: int
) -> None:
    """Skip, saying why, when coturn stopped relaying a TLS data connection (the module
    docstring): nothing moved either way for a whole wait. Over TCP a stall fails."""
    if transport == "tls":
        pytest.skip(
            f"coturn 4.6.1 stopped relaying the TLS data connection (under load, as it does): "
            f"{received} bytes came back, the peer echoed {echo.echoed}, "
            f"{writer.transport.get_write_buffer_size()} were still to be sent"
        )


async def ended(reader: asyncio.StreamReader) -> bool:
    """Whether the connection ends within the wait: end-of-file, or coturn's reset."""
    try:
        return await asyncio.wait_for(reader.read(65536), WAIT) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(("transport", "host"), PATHS)
def test_a_connection_to_an_echo_peer_carries_4_mb_in_order(
    coturn_tcp: RunningTurnserver, transport: Transport, host: str
) -> None:
    async def scenario() -> None:
        async with echo_peer(host) as (peer, echo), await tcp_client(
            coturn_tcp, transport, host
        ) as client:
            relayed = await client.allocate()
            assert relayed.host == host and relayed.port != coturn_tcp.port
            reader, writer = await client.open_connection(peer)
            assert echo.sources == [relayed]  # the peer sees the relayed address
            payload = random.randbytes(4 * 1024 * 1024)
            # At most WINDOW bytes in flight: coturn may drop what a slow reader leaves in its
            # buffers (the module docstring), so an unpaced burst fails under load.
            sent = 0
            received = bytearray()
            while len(received) < len(payload):
                while sent < len(payload) and sent - len(received) < WINDOW:
                    writer.write(payload[sent : sent + CHUNK])
                    sent += CHUNK
                await writer.drain()
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), WAIT)
                except TimeoutError:
                    skip_if_coturn_stalled(transport, writer, echo, len(received))
                    unsent = writer.transport.get_write_buffer_size()
                    raise AssertionError(
                        f"stalled: {len(received)} bytes back, the peer echoed {echo.echoed}, "
                        f"{unsent} not yet sent"
                    ) from None
                assert chunk, f"end-of-file after {len(received)} bytes"
                received += chunk
            assert received == payload
            writer.close()  # our close reaches the peer
            await asyncio.wait_for(echo.ended.wait(), WAIT)

    run(scenario(), timeout=120.0)


@pytest.mark.parametrize(("transport", "host"), PATHS)
def test_a_peer_that_connects_is_accepted(
    coturn_tcp: RunningTurnserver, transport: Transport, host: str
) -> None:
    async def scenario() -> None:
        async with await tcp_client(coturn_tcp, transport, host) as client:
            relayed = await client.allocate()
            await client.create_permission(host)
            peer_reader, peer_writer = await asyncio.wait_for(
                asyncio.open_connection(relayed.host, relayed.port), WAIT
            )
            peer_writer.write(b"before the bind")
            peer, reader, writer = await asyncio.wait_for(client.accept(), WAIT)
            sockname = peer_writer.get_extra_info("sockname")
            assert peer == make_address(sockname[0], sockname[1])
            assert await asyncio.wait_for(reader.readexactly(15), WAIT) == b"before the bind"
            writer.write(b"and back")
            assert await asyncio.wait_for(peer_reader.readexactly(8), WAIT) == b"and back"
            peer_writer.close()  # the peer's close reaches us
            assert await ended(reader)

    run(scenario())


def test_two_clients_connect_through_coturns_relays(coturn_tcp: RunningTurnserver) -> None:
    async def scenario() -> None:
        async with (
            await tcp_client(coturn_tcp) as alice,
            await tcp_client(coturn_tcp, "tls") as bob,
        ):
            await alice.allocate()
            await bob.allocate()
            await cross_connect(alice, bob)
            assert bob.tcp.open == 1 and alice.tcp.open == 1

    run(scenario())


@pytest.mark.parametrize(
    ("peer", "code", "step", "words"),
    [
        (make_address(DENIED_PEER, 80), 403, "CreatePermission", "peer policy"),
        (None, 447, "Connect", "could not connect to the peer"),
    ],
    ids=["denied-peer-403", "nothing-listens-447"],
)
def test_refusals_are_said_in_words(
    coturn_tcp: RunningTurnserver, peer: Address | None, code: int, step: str, words: str
) -> None:
    target = peer or make_address("127.0.0.1", closed_port("127.0.0.1", socket.SOCK_STREAM))

    async def scenario() -> None:
        async with await tcp_client(coturn_tcp) as client:
            await client.allocate()
            with pytest.raises(PeerConnectionFailed) as failed:
                await client.open_connection(target)
            assert (failed.value.code, failed.value.step) == (code, step)
            assert words in str(failed.value) and "\x00" not in str(failed.value)

    run(scenario())


def test_a_second_connection_to_a_peer_gets_446(coturn_tcp: RunningTurnserver) -> None:
    async def scenario() -> None:
        async with echo_peer("127.0.0.1") as (peer, _), await tcp_client(coturn_tcp) as client:
            await client.allocate()
            await client.open_connection(peer)
            with pytest.raises(PeerConnectionFailed) as exists:
                await client.open_connection(peer)
            assert exists.value.code == 446
            assert str(exists.value).count("Connection Already Exists: a connection") == 1

    run(scenario())

