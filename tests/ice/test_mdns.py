"""ice.mdns on the loopback interface: our resolver against our responder, raw queries of both
kinds (one-shot and from port 5353), models of a browser's querier and responder (port 5353 and
multicast only), announcements, goodbyes, garbage, and Connections that hide their host
addresses. Tests against an independent implementation (Avahi) are in tests/net/test_mdns_avahi.py.

Multicast stays on ``lo`` (the sockets send through 127.0.0.1 only). Where the kernel does not
allow multicast on loopback, or port 5353 cannot be shared, the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from ice import Candidate, CandidateType, Connection, DecodeError
from ice.dns import AddressRecord, DnsMessage, NsecRecord, Question, Record, RecordType
from ice.mdns import (
    HOST_RECORD_TTL,
    LEGACY_TTL,
    MDNS_GROUP_IPV4,
    MDNS_PORT,
    CandidateUnresolvable,
    InterfaceAddress,
    Resolver,
    Responder,
    resolve,
)
from ice.mdns_candidates import MAX_CONCURRENT_LOOKUPS
from tests.ice.test_connection import assert_same_path, exchange, make
from tests.net.loopback import NO_PROC, open_fds, run, until

LOOPBACK = InterfaceAddress("127.0.0.1", socket.if_nametoindex("lo"), "lo")
UNKNOWN = "0b5a7c1e-0000-4000-8000-000000000000.local"


def _loopback_multicast_problem() -> str | None:
    """Why our responder cannot be resolved on loopback here, or ``None`` when it can."""

    async def probe() -> None:
        responder = Responder([LOOPBACK])
        try:
            name = responder.publish("127.0.0.1")
            await resolve(name, [LOOPBACK])
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


Publish = Callable[..., tuple[Responder, str]]


@pytest.fixture
def publish(loopback_multicast: None) -> Iterator[Publish]:
    """Start a responder on loopback (inside the test's loop) that publishes an address
    (127.0.0.1 by default); return it and the name. Every responder is closed after the test."""
    made: list[Responder] = []

    def start(address: str = "127.0.0.1") -> tuple[Responder, str]:
        responder = Responder([LOOPBACK])
        made.append(responder)
        return responder, responder.publish(address)

    yield start
    for responder in made:
        responder.close()


def multicast_socket(port: int = 0) -> socket.socket:
    """A socket that sends multicast through loopback only (and may share port 5353)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.bind(("127.0.0.1", 0) if not port else ("0.0.0.0", port))
    sock.setblocking(False)
    return sock


def group_socket() -> socket.socket:
    """A socket on 224.0.0.251:5353, joined on loopback: it reads multicast only, and what it
    sends leaves from port 5353 — a browser's mDNS socket as far as a peer can tell."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    membership = socket.inet_aton(MDNS_GROUP_IPV4) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.bind((MDNS_GROUP_IPV4, MDNS_PORT))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket) -> tuple[DnsMessage, tuple[str, int]]:
    """The next DNS response on ``sock`` and its source (queries, ours or others', are skipped, and
    so is what is no DNS message: the group is shared with every process of the host)."""
    loop = asyncio.get_running_loop()
    while True:
        data, source = await loop.sock_recvfrom(sock, 9000)
        try:
            message = DnsMessage.decode(data)
        except DecodeError:
            continue
        if message.response:
            return message, source


async def responses_about(sock: socket.socket, name: str, count: int) -> list[DnsMessage]:
    """The next ``count`` responses on ``sock`` that carry a record of ``name``."""
    found: list[DnsMessage] = []
    while len(found) < count:
        message, _ = await receive(sock)
        if any(r.name == name for r in message.answers + message.additionals):
            found.append(message)
    return found


def nsec(name: str, *types: RecordType, ttl: int = HOST_RECORD_TTL) -> NsecRecord:
    return NsecRecord(name, name, frozenset(types), ttl, cache_flush=ttl == HOST_RECORD_TTL)


def address(name: str, host: str, ttl: int = HOST_RECORD_TTL) -> AddressRecord:
    return AddressRecord(name, host, ttl, cache_flush=ttl == HOST_RECORD_TTL)


# --------------------------------------------------------------------------- our responder


def test_resolve_a_published_name(publish: Publish) -> None:
    async def scenario() -> tuple[str, str, str]:
        responder, name = publish()
        assert responder.publish("127.0.0.1") == name  # one name per address
        resolver = Resolver([LOOPBACK])
        try:
            return name, await resolver.resolve(name), await resolver.resolve(name.upper())
        finally:
            resolver.close()

    name, resolved, shouted = run(scenario())
    assert name.endswith(".local") and len(name) == 36 + len(".local")
    assert resolved == shouted == "127.0.0.1"


def test_one_shot_query_gets_a_unicast_answer_with_its_id(publish: Publish) -> None:
    async def scenario() -> tuple[str, DnsMessage, tuple[str, int]]:
        _, name = publish()
        unknown = DnsMessage(id=1, questions=(Question(UNKNOWN, RecordType.A),))
        query = DnsMessage(
            id=0x4242,
            questions=(
                Question(name, RecordType.AAAA),  # we have no IPv6 address for it: NSEC
                Question(name, RecordType.A),
            ),
        )
        with multicast_socket() as sock:
            # Loopback keeps order: if the unknown name were answered, that answer came first.
            sock.sendto(unknown.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            sock.sendto(query.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            return name, *await receive(sock)

    name, answer, source = run(scenario())
    assert source[1] == MDNS_PORT
    assert answer.id == 0x4242 and answer.authoritative
    assert answer.questions == (Question(name, RecordType.AAAA), Question(name, RecordType.A))
    assert answer.answers == (
        NsecRecord(name, name, frozenset({RecordType.A}), LEGACY_TTL),  # §6.7: short, no flush
        AddressRecord(name, "127.0.0.1", ttl=LEGACY_TTL),
    )
    assert answer.additionals == ()


def test_a_browser_like_querier_gets_multicast_answers_and_nsec(publish: Publish) -> None:
    """A querier that sends from 5353 and reads only multicast, asking A and AAAA separately
    (as Chromium does), gets both answers by multicast: the A record and the NSEC record that
    says there is no AAAA."""

    async def scenario() -> tuple[str, list[DnsMessage]]:
        _, name = publish()
        with group_socket() as sock:
            for rtype in (RecordType.A, RecordType.AAAA):
                query = DnsMessage(questions=(Question(name, rtype),))
                sock.sendto(query.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            # The NSEC comes at once; the A record was announced a moment ago, so it comes when
            # its second is over (RFC 6762 §6), by then also as the second announcement.
            found: list[DnsMessage] = []
            while not {RecordType.A, RecordType.NSEC} <= {r.type for m in found for r in m.answers}:
                found += await responses_about(sock, name, 1)
            return name, found

    name, found = run(scenario())
    for message in found:
        assert message.id == 0 and message.questions == ()
        assert set(message.answers + message.additionals) <= {
            address(name, "127.0.0.1"),
            nsec(name, RecordType.A),
        }


def test_an_ipv6_only_name_is_answered_over_ipv4(publish: Publish) -> None:
    """Browsers ask over IPv4 only: the AAAA record goes out on the IPv4 socket the question
    came in on, and a question for A gets the NSEC record."""

    async def scenario() -> tuple[str, list[DnsMessage]]:
        _, name = publish("2001:db8::7")
        with multicast_socket() as sock:
            query = DnsMessage(
                id=7, questions=(Question(name, RecordType.AAAA), Question(name, RecordType.A))
            )
            sock.sendto(query.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))
            return name, [(await receive(sock))[0]]

    name, (answer,) = run(scenario())
    assert answer.answers == (
        AddressRecord(name, "2001:db8::7", LEGACY_TTL),
        NsecRecord(name, name, frozenset({RecordType.AAAA}), LEGACY_TTL),
    )


def test_names_are_announced_and_withdrawn(loopback_multicast: None) -> None:
    async def scenario() -> tuple[str, list[DnsMessage], DnsMessage]:
        with group_socket() as sock:
            responder = Responder([LOOPBACK])
            try:
                name = responder.publish("127.0.0.1")
                announcements = await responses_about(sock, name, 2)
            finally:
                responder.close()
            (goodbye,) = await responses_about(sock, name, 1)
            return name, announcements, goodbye

    name, announcements, goodbye = run(scenario())
    expected = DnsMessage(
        response=True,
        authoritative=True,
        answers=(address(name, "127.0.0.1"),),
        additionals=(nsec(name, RecordType.A),),
    )
    assert announcements == [expected, expected]
    assert goodbye.answers == (AddressRecord(name, "127.0.0.1", 0, cache_flush=True),)


def test_garbage_does_not_stop_the_responder(publish: Publish) -> None:
    async def scenario() -> str:
        _, name = publish()
        query = DnsMessage(questions=(Question(name, RecordType.A),)).encode()
        truncated = query[:5] + b"\x02" + query[6:]  # two questions claimed, one sent
        with multicast_socket() as sock:
            for garbage in (b"", b"\x00", b"\xff" * 40, truncated, bytes(range(256))):
                sock.sendto(garbage, (MDNS_GROUP_IPV4, MDNS_PORT))
        return await resolve(name, [LOOPBACK])

    assert run(scenario()) == "127.0.0.1"


# --------------------------------------------------------------------------- our resolver


class BrowserLikeResponder:
    """A model of Chromium's mDNS responder: it answers only queries sent from port 5353, only
    by multicast, and announces its names; it counts the queries it sees for its names."""

    def __init__(self) -> None:
        self.sock = group_socket()
        self.names: dict[str, str] = {}
        self.queries = 0
        self.ignored_one_shot = 0
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def announce(self, name: str, host: str) -> None:
        self.names[name] = host
        self._multicast((address(name, host),))

    def _multicast(self, records: tuple[Record, ...]) -> None:
        response = DnsMessage(response=True, authoritative=True, answers=records)
        self.sock.sendto(response.encode(), (MDNS_GROUP_IPV4, MDNS_PORT))

    def _readable(self) -> None:
        data, source = self.sock.recvfrom(9000)
        query = DnsMessage.decode(data)
        asked = [q for q in query.questions if q.name in self.names and not query.response]
        if not asked:
            return
        if source[1] != MDNS_PORT:
            self.ignored_one_shot += 1
            return
        self.queries += 1
        records: list[Record] = []
        for question in asked:
            host = self.names[question.name]
            if question.type == RecordType.A:
                records.append(address(question.name, host))
            else:
                records.append(nsec(question.name, RecordType.A))
        self._multicast(tuple(records))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def test_resolver_queries_from_5353_and_takes_multicast_answers(
    loopback_multicast: None,
) -> None:
    async def scenario() -> tuple[str, int, int]:
        browser = BrowserLikeResponder()
        try:
            browser.names[UNKNOWN] = "127.0.0.9"
            resolved = await resolve(UNKNOWN, [LOOPBACK], timeout=5.0)
            return resolved, browser.queries, browser.ignored_one_shot
        finally:
            browser.close()

    resolved, queries, ignored = run(scenario())
    assert resolved == "127.0.0.9" and queries >= 1 and ignored == 0


def test_resolver_remembers_announcements(loopback_multicast: None) -> None:
    """A name announced before it was signalled resolves from the cache, with no query."""

    async def scenario() -> tuple[str, str, int]:
        browser = BrowserLikeResponder()
        resolver = Resolver([LOOPBACK])
        try:
            browser.announce(UNKNOWN, "127.0.0.9")
            await until(lambda: resolver.cached(UNKNOWN) is not None)
            resolved = await resolver.resolve(UNKNOWN.upper(), timeout=5.0)
            return resolved, resolver.interfaces[0].host, browser.queries
        finally:
            resolver.close()
            browser.close()

    assert run(scenario()) == ("127.0.0.9", "127.0.0.1", 0)


def test_nobody_answers_a_name_nobody_published(loopback_multicast: None) -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError, match="no mDNS answer"):
            await resolve(UNKNOWN, [LOOPBACK], timeout=0.2)

    run(scenario())


def test_no_interface_means_unresolvable_at_once() -> None:
    async def scenario() -> None:
        with pytest.raises(OSError, match="cannot query by mDNS: no interface to query on"):
            await resolve("a.local", [], timeout=5.0)

    run(scenario())


@pytest.mark.skipif(NO_PROC is not None, reason=NO_PROC or "")
def test_a_resolver_without_sockets_says_why_file_descriptors_ran_out() -> None:
    """With no file descriptor left, the resolver cannot open its socket; the reason says that,
    not that no interface can send (redteam #5's misleading "no interface" message)."""

    async def scenario() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
        fillers = []
        try:
            with contextlib.suppress(OSError):  # take every descriptor left below the limit
                while True:
                    fillers.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            resolver = Resolver([LOOPBACK])
        finally:
            for filler in fillers:
                filler.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            with pytest.raises(OSError) as raised:
                await resolver.resolve(UNKNOWN, timeout=5.0)
        finally:
            resolver.close()
        assert str(raised.value) == (
            "[Errno 101] cannot query by mDNS: no IPv4 socket could be opened: Too many open files"
        )

    run(scenario())


def test_closing_the_resolver_ends_pending_resolutions(loopback_multicast: None) -> None:
    async def scenario() -> None:
        resolver = Resolver([LOOPBACK])
        pending = asyncio.ensure_future(resolver.resolve(UNKNOWN, timeout=30.0))
        await asyncio.sleep(0)
        resolver.close()
        with pytest.raises(OSError, match="closed"):
            await pending
        with pytest.raises(OSError, match="closed"):
            await resolver.resolve(UNKNOWN)

    run(scenario())


# --------------------------------------------------------------------------- Connection


def test_connections_with_hidden_host_candidates_connect(loopback_multicast: None) -> None:
    async def scenario() -> None:
        async with (
            make("127.0.0.1", True, mdns_hide_host_candidates=True) as a,
            make("127.0.0.1", False, mdns_hide_host_candidates=True) as b,
        ):
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            # The UDP host candidate and both TCP ones, all behind the address's one name.
            hidden, *tcp = a.local_candidates
            assert hidden.type is CandidateType.HOST and hidden.host.endswith(".local")
            assert [c.transport for c in tcp] == ["tcp", "tcp"]
            assert {c.host for c in tcp} == {hidden.host}
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
    # Gathered (UDP host, TCP passive and active), but never shown with its address.
    assert signalled == [] and gathered == 3


@pytest.mark.skipif(NO_PROC is not None, reason=NO_PROC or "")
def test_a_session_whose_peer_signals_addresses_opens_no_mdns_socket() -> None:
    """The resolver is opened by the first remote ``.local`` name: a gathered and connected pair
    that signal addresses hold their host sockets and nothing more (a server's thousands of
    sessions would otherwise hold an mDNS socket each)."""

    async def scenario() -> tuple[int, int]:
        before = open_fds()
        a, b = make("127.0.0.1", True, tcp=False), make("127.0.0.1", False, tcp=False)
        async with a, b:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            return open_fds() - before, len(a.local_candidates) + len(b.local_candidates)

    opened, host_candidates = run(scenario())
    assert host_candidates == 2 and opened == host_candidates


@pytest.mark.skipif(NO_PROC is not None, reason=NO_PROC or "")
def test_remote_names_share_the_resolver_once_each_and_at_most_16_at_a_time(
    loopback_multicast: None,
) -> None:
    """Redteam #5: every ``.local`` candidate used to open its own sockets at once. Now they go
    through the connection's one resolver: one socket in all (opened with the first name), a
    name carried by two candidates is queried once, and no more than 16 names are looked up at a
    time — the 17th is first queried after a lookup ended. A query on the link is seen by a
    socket of our own."""
    # Fresh names: another test run on this host's loopback multicast must not be heard as ours.
    run_id = uuid.uuid4().hex[:8]
    names = [f"{run_id}-0000-4000-8000-{index:012d}.local" for index in range(20)]
    log: list[tuple[str, str]] = []

    def heard(sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(9000)
            except BlockingIOError:
                return
            message = DnsMessage.decode(data)
            if not message.response:
                log.extend(("query", q.name) for q in message.questions if q.type == RecordType.A)

    async def scenario() -> None:
        connection = make("127.0.0.1", True, mdns_timeout=0.5)
        async with connection:
            connection.on_event = lambda event: (
                log.append(("ended", event.candidate.host))
                if isinstance(event, CandidateUnresolvable)
                else None
            )
            await connection.gather_candidates()
            with group_socket() as observer:
                loop = asyncio.get_running_loop()
                loop.add_reader(observer.fileno(), heard, observer)
                sockets = open_fds()
                for port, name in enumerate([names[0], *names], start=20000):
                    line = f"1 1 udp 2130706431 {name} {port} typ host"
                    await connection.add_remote_candidate(Candidate.from_sdp(line))
                    # the resolver's one socket opens with the first name, none per lookup
                    assert open_fds() == sockets + 1
                await until(lambda: sum(kind == "ended" for kind, _ in log) == 21, timeout=10)
                loop.remove_reader(observer.fileno())
            assert not connection.agent.failures.peer_input

    run(scenario())
    ours = [(kind, name) for kind, name in log if name in names]
    first_end = next(i for i, (kind, _) in enumerate(ours) if kind == "ended")
    queried_first = {name for kind, name in ours[:first_end] if kind == "query"}
    assert len(queried_first) == MAX_CONCURRENT_LOOKUPS == 16
    assert {name for kind, name in ours if kind == "query"} == set(names)
    assert sum(entry == ("query", names[0]) for entry in ours) == 1  # once, for two candidates
    assert sum(entry == ("ended", names[0]) for entry in ours) == 2  # each candidate hears
