"""ice.mdns on the loopback interface: our resolver against our responder, raw queries of both
kinds (one-shot and from port 5353), and Connections that hide their host addresses.

Multicast stays on ``lo`` (the sockets send through 127.0.0.1 only). Where the kernel does not
allow multicast on loopback, or port 5353 cannot be shared, the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import pytest

from ice import CandidateType, Connection
from ice.dns import AddressRecord, DnsMessage, Question, RecordType
from ice.mdns import (
    HOST_RECORD_TTL,
    LEGACY_TTL,
    MDNS_GROUP_IPV4,
    MDNS_PORT,
    InterfaceAddress,
    Responder,
    resolve,
)
from tests.ice.test_connection import assert_same_path, exchange, make
from tests.net.loopback import run

LOOPBACK = InterfaceAddress("127.0.0.1", socket.if_nametoindex("lo"), "lo")


def _loopback_multicast_problem() -> str | None:
    """Why our responder cannot be resolved on loopback here, or ``None`` when it can."""

    async def probe() -> None:
        responder = Responder([LOOPBACK])
        try:
            name = responder.publish("127.0.0.1")
            await resolve(name, [LOOPBACK], timeout=1.0)
        finally:
            responder.close()

    try:
        run(probe())
    except (OSError, TimeoutError) as exc:
        return f"no mDNS over loopback multicast here: {exc}"
    return None


@pytest.fixture(scope="module")
def loopback_multicast() -> None:
    problem = _loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)


Publish = Callable[[], tuple[Responder, str]]


@pytest.fixture
def publish(loopback_multicast: None) -> Iterator[Publish]:
    """Start a responder on loopback (inside the test's loop) that publishes 127.0.0.1; return
    it and the name. Every responder is closed after the test."""
    made: list[Responder] = []

    def start() -> tuple[Responder, str]:
        responder = Responder([LOOPBACK])
        made.append(responder)
        return responder, responder.publish("127.0.0.1")

    yield start
    for responder in made:
        responder.close()


def multicast_socket(port: int = 0) -> socket.socket:
    """A socket that sends multicast through loopback only (and may share port 5353)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.bind(("0.0.0.0", port) if port else ("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket) -> DnsMessage:
    """The next DNS response on ``sock`` (its own multicast queries, looped back, are skipped)."""
    loop = asyncio.get_running_loop()
    while True:
        data, _ = await loop.sock_recvfrom(sock, 9000)
        message = DnsMessage.decode(data)
        if message.response:
            return message


# --------------------------------------------------------------------------- resolver, responder


def test_resolve_a_published_name(publish: Publish) -> None:
    async def scenario() -> tuple[str, str, str]:
        responder, name = publish()
        assert responder.publish("127.0.0.1") == name  # one name per address
        return name, await resolve(name, [LOOPBACK]), await resolve(name.upper(), [LOOPBACK])

    name, address, shouted = run(scenario())
    assert name.endswith(".local") and len(name) == 36 + len(".local")
    assert address == shouted == "127.0.0.1"


def test_one_shot_query_gets_a_unicast_answer_with_its_id(publish: Publish) -> None:
    async def scenario() -> tuple[str, DnsMessage]:
        _, name = publish()
        unknown = DnsMessage(id=1, questions=(Question("nobody.local", RecordType.A),))
        query = DnsMessage(
            id=0x4242,
            questions=(
                Question(name, RecordType.AAAA),  # we have no IPv6 address for it
                Question(name, RecordType.A),
            ),
        )
        with multicast_socket() as sock:
            # Loopback keeps order: if the unknown name were answered, that answer came first.
            sock.sendto(unknown.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            sock.sendto(query.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            return name, await receive(sock)

    name, answer = run(scenario())
    assert answer.id == 0x4242 and answer.authoritative
    assert answer.questions == (Question(name, RecordType.A),)  # §6.7: the question repeated
    assert answer.answers == (AddressRecord(name, "127.0.0.1", ttl=LEGACY_TTL),)


def test_query_from_port_5353_gets_a_multicast_answer(publish: Publish) -> None:
    async def scenario() -> tuple[str, DnsMessage]:
        _, name = publish()
        with multicast_socket(MDNS_PORT) as sock:
            membership = socket.inet_aton(MDNS_GROUP_IPV4) + socket.inet_aton("127.0.0.1")
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            query = DnsMessage(questions=(Question(name, RecordType.A),))
            sock.sendto(query.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            return name, await receive(sock)

    name, answer = run(scenario())
    assert answer.id == 0 and answer.questions == ()
    assert answer.answers == (
        AddressRecord(name, "127.0.0.1", ttl=HOST_RECORD_TTL, cache_flush=True),
    )


def test_nobody_answers_a_name_nobody_published(loopback_multicast: None) -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError, match="no mDNS answer"):
            await resolve("0b5a7c1e-0000-4000-8000-000000000000.local", [LOOPBACK], timeout=0.2)

    run(scenario())


def test_no_interface_means_unresolvable_at_once() -> None:
    async def scenario() -> None:
        with pytest.raises(OSError, match="no interface"):
            await resolve("a.local", [], timeout=5.0)

    run(scenario())


# --------------------------------------------------------------------------- Connection


def test_connections_with_hidden_host_candidates_connect(loopback_multicast: None) -> None:
    async def scenario() -> None:
        async with (
            make("127.0.0.1", True, mdns_hide_host_candidates=True) as a,
            make("127.0.0.1", False, mdns_hide_host_candidates=True) as b,
        ):
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            (hidden,) = a.local_candidates
            assert hidden.type is CandidateType.HOST and hidden.host.endswith(".local")
            assert hidden.foundation != a.agent.local_candidates[0].candidate.foundation
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            assert_same_path(a, b)
            pair = a.selected_pair()
            assert pair is not None and pair.remote.host == "127.0.0.1"
            await a.send(b"\x80behind a name")
            assert await b.recv() == b"\x80behind a name"

    run(scenario())


def test_host_candidates_are_withheld_when_they_cannot_be_published() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # 5353 without address sharing
    try:
        blocker.bind(("0.0.0.0", MDNS_PORT))
    except OSError as exc:
        blocker.close()
        pytest.skip(f"cannot hold port 5353 to block the responder: {exc}")

    async def scenario() -> tuple[list[CandidateType], int]:
        async with Connection(
            True, include_loopback=True, interfaces=["127.0.0.1"], mdns_hide_host_candidates=True
        ) as connection:
            await connection.gather_candidates()
            return [c.type for c in connection.local_candidates], len(
                connection.agent.local_candidates
            )

    with blocker:
        signalled, gathered = run(scenario())
    assert signalled == [] and gathered == 1  # gathered, but never shown with its address
