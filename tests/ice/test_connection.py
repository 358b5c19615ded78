"""ice.Connection on real UDP sockets, loopback only (gathering restricted to one loopback address).

Candidates cross "signaling" as text (``to_sdp`` / ``from_sdp``), as they would between two
processes. Every wait is bounded by :func:`tests.net.loopback.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import uuid
import weakref
from collections.abc import AsyncIterator, Callable

import pytest

from ice import (
    Candidate,
    CandidateType,
    Connection,
    IceConnectionError,
    TcpType,
    interface_addresses,
)
from ice.checklist import PairState
from ice.config import AgentConfig
from ice.events import (
    CandidateGathered,
    GatheringCompleted,
    GatheringFailed,
    IceEvent,
    IceState,
)
from ice.mdns import CandidateUnresolvable
from ice.stats import PeerInput
from stun.aio import StunServer
from stun.server import Outcome
from stun.transaction import TransactionConfig
from tests.net.loopback import LOOPBACK_HOSTS, run, udp_socket, until

WRONG_PASSWORD = "wrong-wrong-wrong-wrong-wrong"


def make(host: str, controlling: bool, **options: object) -> Connection:
    return Connection(controlling, include_loopback=True, interfaces=[host], **options)  # type: ignore[arg-type]


def over_signaling(candidate: Candidate) -> Candidate:
    return Candidate.from_sdp("candidate:" + candidate.to_sdp())


async def exchange(a: Connection, b: Connection, *, end: bool = True) -> None:
    """Both sides learn each other's credentials and candidates (and end-of-candidates)."""
    a.set_remote_credentials(b.local_username, b.local_password)
    b.remote_username, b.remote_password = a.local_username, a.local_password
    for candidate in b.local_candidates:
        await a.add_remote_candidate(over_signaling(candidate))
    for candidate in a.local_candidates:
        await b.add_remote_candidate(over_signaling(candidate))
    if end:
        await a.add_remote_candidate(None)
        await b.add_remote_candidate(None)


@contextlib.asynccontextmanager
async def gathered(
    host: str = "127.0.0.1", *, a_controlling: bool = True, **options: object
) -> AsyncIterator[tuple[Connection, Connection]]:
    a, b = make(host, a_controlling, **options), make(host, not a_controlling, **options)
    async with a, b:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        yield a, b


@contextlib.asynccontextmanager
async def connected(
    host: str = "127.0.0.1", *, a_controlling: bool = True, **options: object
) -> AsyncIterator[tuple[Connection, Connection]]:
    async with gathered(host, a_controlling=a_controlling, **options) as (a, b):
        await exchange(a, b)
        await asyncio.gather(a.connect(), b.connect())
        yield a, b


def assert_same_path(a: Connection, b: Connection, component: int = 1) -> None:
    pair_a, pair_b = a.selected_pair(component), b.selected_pair(component)
    assert pair_a is not None and pair_b is not None
    assert pair_a.local_base == pair_b.remote.address
    assert pair_b.local_base == pair_a.remote.address


# --------------------------------------------------------------------------- gathering


def test_interface_addresses_leave_out_loopback_unless_asked() -> None:
    everything = interface_addresses(include_loopback=True)
    assert "127.0.0.1" in {a.host for a in everything}
    assert all(a.host not in ("127.0.0.1", "::1") for a in interface_addresses())
    assert [a.host for a in interface_addresses(include_loopback=True, only=["127.0.0.1"])] == [
        "127.0.0.1"
    ]
    assert interface_addresses(only=["127.0.0.1"]) == []
    assert all(":" not in a.host for a in interface_addresses(use_ipv6=False))


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("components", [1, 2])
def test_gathering_binds_one_socket_per_component_on_the_given_address(
    host: str, components: int
) -> None:
    async def scenario() -> list[Candidate]:
        async with make(host, True, components=components) as connection:
            await connection.gather_candidates()
            return connection.local_candidates

    candidates = run(scenario())
    udp = [c for c in candidates if c.transport == "udp"]
    assert [c.component for c in udp] == list(range(1, components + 1))
    assert {c.host for c in candidates} == {host}
    assert all(c.type is CandidateType.HOST for c in candidates)
    assert len({c.port for c in udp}) == components
    # ICE-TCP, by default: a listening socket per component, its passive and active candidates.
    tcp = [(c.component, c.tcp_type, c.port) for c in candidates if c.transport == "tcp"]
    assert [(component, kind) for component, kind, _ in tcp] == [
        (component, kind)
        for component in range(1, components + 1)
        for kind in (TcpType.PASSIVE, TcpType.ACTIVE)
    ]
    assert {port for _, kind, port in tcp if kind is TcpType.ACTIVE} == {9}


def test_trickle_iterator_yields_every_candidate_then_stops() -> None:
    events: list[IceEvent] = []

    async def scenario() -> tuple[list[Candidate], list[Candidate]]:
        async with make("127.0.0.1", True, components=2) as connection:
            connection.on_event = events.append
            trickled = [c async for c in connection.trickle_candidates()]
            again = [c async for c in connection.trickle_candidates()]  # replays, then ends
            assert trickled == again
            return trickled, connection.local_candidates

    trickled, local = run(scenario())
    # Per component: a UDP host candidate, and the passive and active TCP ones (ICE-TCP).
    assert trickled == local and len(local) == 6
    assert [type(e) for e in events if isinstance(e, CandidateGathered | GatheringCompleted)] == [
        *[CandidateGathered] * 6,
        GatheringCompleted,
    ]


def test_our_stun_server_on_loopback_gives_a_redundant_srflx_and_gathering_completes() -> None:
    async def scenario() -> tuple[list[Candidate], int]:
        async with StunServer() as server:
            listener = await server.listen("udp", "127.0.0.1", 0)
            async with make("127.0.0.1", True, stun_servers=[listener.address]) as connection:
                await connection.gather_candidates()
                return connection.local_candidates, server.server.stats[Outcome.ANSWERED]

    candidates, answered = run(scenario())
    assert answered == 1  # the server saw our Binding request and answered it...
    udp = [c.type for c in candidates if c.transport == "udp"]
    assert udp == [CandidateType.HOST]  # ...with our own host address


def test_a_silent_stun_server_does_not_stall_gathering() -> None:
    events: list[IceEvent] = []

    async def scenario() -> list[Candidate]:
        with udp_socket("127.0.0.1") as silent:  # bound, never answers
            server = silent.getsockname()
            async with make(
                "127.0.0.1", True, stun_servers=[server], config=AgentConfig(gathering_timeout=0.3)
            ) as connection:
                connection.on_event = events.append
                await connection.gather_candidates()
                return connection.local_candidates

    candidates = run(scenario())
    assert [c.type for c in candidates if c.transport == "udp"] == [CandidateType.HOST]
    gathering = [e for e in events if isinstance(e, GatheringFailed | GatheringCompleted)]
    assert [type(e) for e in gathering] == [GatheringFailed, GatheringCompleted]


def test_close_while_gathering_wakes_the_gatherer() -> None:
    async def scenario() -> None:
        with udp_socket("127.0.0.1") as silent:
            connection = make("127.0.0.1", True, stun_servers=[silent.getsockname()])
            gathering = asyncio.ensure_future(connection.gather_candidates())
            await until(lambda: bool(connection.local_candidates))
            await connection.close()
            with pytest.raises(IceConnectionError, match="closed"):
                await gathering
            with pytest.raises(IceConnectionError, match="closed"):
                await connection.gather_candidates()

    run(scenario())


# --------------------------------------------------------------------------- connecting


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("a_controlling", [True, False], ids=["a-controlling", "a-controlled"])
@pytest.mark.parametrize("components", [1, 2])
def test_two_connections_connect_and_exchange_data_both_ways(
    host: str, a_controlling: bool, components: int
) -> None:
    async def scenario() -> None:
        async with connected(host, a_controlling=a_controlling, components=components) as (a, b):
            assert a.controlling is a_controlling and b.controlling is not a_controlling
            assert a.state is IceState.COMPLETED or a.state is IceState.CONNECTED
            for component in range(1, components + 1):
                assert_same_path(a, b, component)
                await a.sendto(b"\x80a to b %d" % component, component)
                assert await b.recvfrom() == (b"\x80a to b %d" % component, component)
                await b.sendto(b"\x80b to a %d" % component, component)
                assert await a.recvfrom() == (b"\x80b to a %d" % component, component)
            await a.send(b"\x80on one")
            assert await b.recv() == b"\x80on one"

    run(scenario())


def test_a_closed_connection_is_released_at_once_not_at_its_next_deadline() -> None:
    """With consent running, a connected session's next deadline is seconds away; the loop's
    shared timer must let go of it when it closes (else every closed session of a server stays in
    memory, with its agent, until that deadline comes)."""

    async def scenario() -> tuple[bool, bool]:
        async with connected() as (a, b):
            pass  # both closed here, their consent deadlines still ahead
        await asyncio.sleep(0.05)  # the transports' close callbacks run
        gone_a, gone_b = weakref.ref(a), weakref.ref(b)
        del a, b
        gc.collect()
        return gone_a() is None, gone_b() is None

    assert run(scenario()) == (True, True)


def test_trickle_candidates_added_after_connect_started() -> None:
    async def scenario() -> None:
        async with make("127.0.0.1", True) as a, make("127.0.0.1", False) as b:
            a.set_remote_credentials(b.local_username, b.local_password)
            b.set_remote_credentials(a.local_username, a.local_password)
            # Start gathering and connecting at once, then trickle the candidates across.
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            connecting = asyncio.gather(a.connect(), b.connect())

            async def trickle(source: Connection, target: Connection) -> None:
                async for candidate in source.trickle_candidates():
                    await target.add_remote_candidate(over_signaling(candidate))
                await target.add_remote_candidate(None)

            await asyncio.sleep(0)
            assert not connecting.done()
            await asyncio.gather(trickle(a, b), trickle(b, a))
            await connecting
            assert_same_path(a, b)
            await b.send(b"\x80trickled")
            assert await a.recv() == b"\x80trickled"

    run(scenario())


def test_wrong_password_fails_with_the_reason() -> None:
    # The peer's 401 carries no integrity, so it is discarded (RFC 8489 §9.1.4) and the check
    # fails when its transaction times out: two requests and one RTO of waiting, not 39.5 s.
    quick = AgentConfig(check_transaction=TransactionConfig(max_requests=2, final_wait=1))

    async def scenario() -> str:
        async with gathered(config=quick) as (a, b):
            await exchange(a, b)
            a.remote_password = WRONG_PASSWORD
            with pytest.raises(IceConnectionError) as failure:
                await a.connect()
            assert a.state is IceState.FAILED
            assert isinstance(failure.value, ConnectionError)
            return str(failure.value)

    reason = run(scenario())
    assert "401" in reason and "ufrag/pwd" in reason


def test_connect_needs_gathering_and_remote_credentials() -> None:
    async def scenario() -> None:
        async with make("127.0.0.1", True) as connection:
            with pytest.raises(IceConnectionError, match="gather"):
                await connection.connect()
            await connection.gather_candidates()
            with pytest.raises(IceConnectionError, match="remote username or password"):
                await connection.connect()
            with pytest.raises(IceConnectionError, match="not connected"):
                await connection.send(b"\x80early")
            with pytest.raises(IceConnectionError, match="not connected"):
                await connection.recv()

    run(scenario())


def test_end_of_candidates_twice_is_refused() -> None:
    async def scenario() -> None:
        async with make("127.0.0.1", True) as connection:
            await connection.add_remote_candidate(None)  # before gathering: kept for the agent
            with pytest.raises(Exception, match="end-of-candidates"):
                await connection.add_remote_candidate(None)

    run(scenario())


# --------------------------------------------------------------------------- data path


def test_stats_count_every_byte_of_the_fast_path() -> None:
    async def scenario() -> None:
        async with connected() as (a, b):
            payloads = [b"\x80" * size for size in (1, 10, 100, 1000)]
            for payload in payloads:
                await a.send(payload)
            for _ in payloads:
                await b.recv()
            await b.send(b"\x81reply")
            await a.recv()
            (stats_a,) = [s for s in a.stats() if s.selected]
            (stats_b,) = [s for s in b.stats() if s.selected]
            assert stats_a.bytes_sent == stats_b.bytes_received == 1111
            assert stats_b.bytes_sent == stats_a.bytes_received == 6
            assert stats_a.state is PairState.SUCCEEDED and stats_a.nominated
            assert stats_a.requests_sent >= 1 and stats_a.responses_received >= 1
            assert stats_a.current_rtt is not None and stats_a.consent == "granted"

    run(scenario())


def test_receive_queue_is_bounded_and_counts_what_it_drops() -> None:
    async def scenario() -> None:
        async with connected(receive_queue_size=8) as (a, b):
            for index in range(50):
                await a.send(b"\x80%d" % index)
            await until(lambda: b.receive_queue_dropped == 42)
            assert [await b.recv() for _ in range(8)] == [b"\x80%d" % i for i in range(8)]
            await a.send(b"\x80after")
            assert await b.recv() == b"\x80after"  # nothing of the 42 was kept
            assert b.receive_queue_dropped == 42

    run(scenario())


def test_a_strangers_datagram_is_dropped_and_counted_and_the_peers_data_still_arrives() -> None:
    """Redteam #4: a socket that no check proved sends to our selected pair's base. Its datagram
    never reaches recvfrom(); the peer's, sent after it on the same socket, does."""

    async def scenario() -> None:
        async with connected(components=2) as (a, b):
            pair = b.selected_pair(2)
            assert pair is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.1", 0))
                stranger.sendto(b"\x80stranger", pair.local_base)
                stranger.sendto(b"", pair.local_base)  # dropped too, carrying nothing to count
                await a.sendto(b"\x80peer", 2)
                assert await b.recvfrom() == (b"\x80peer", 2)
            assert b.agent.failures.peer_input[PeerInput.DATA_NOT_FROM_PEER] == 1
            (selected,) = [s for s in b.stats() if s.selected and s.component == 2]
            assert selected.bytes_received == len(b"\x80peer")

    run(scenario())


# --------------------------------------------------------------------------- close, restart


def test_close_wakes_a_waiting_receiver_and_refuses_data() -> None:
    async def scenario() -> None:
        async with connected() as (a, b):
            waiting = asyncio.ensure_future(b.recv())
            await asyncio.sleep(0)
            await b.close()
            with pytest.raises(IceConnectionError, match="closed"):
                await waiting
            with pytest.raises(IceConnectionError, match="closed"):
                await b.send(b"\x80late")
            assert b.state is IceState.CLOSED
            await b.close()  # twice is harmless
            await a.send(b"\x80into the void")  # the peer's socket is gone: no error here

    run(scenario())


def test_restart_keeps_data_flowing_and_selects_again() -> None:
    async def scenario() -> None:
        async with connected() as (a, b):
            old_pair, old_ufrag = a.selected_pair(), a.local_username
            await a.restart()
            await b.restart()
            assert a.local_username != old_ufrag and a.remote_username is None
            await a.send(b"\x80during restart")  # the old pair still carries data
            assert await b.recv() == b"\x80during restart"
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            assert a.selected_pair() is not old_pair
            assert_same_path(a, b)
            await b.send(b"\x80after restart")
            assert await a.recv() == b"\x80after restart"

    run(scenario())


def test_consent_lost_stops_sending_and_wakes_the_receiver() -> None:
    # RFC 7675 on a short clock: checks every ~0.1 s, consent gone 0.6 s after the last answer.
    brief = AgentConfig(consent_interval=0.1, disconnected_after=0.3, consent_timeout=0.6)
    events: list[IceEvent] = []

    async def scenario() -> None:
        async with connected(config=brief) as (a, b):
            a.on_event = events.append
            waiting = asyncio.ensure_future(a.recv())
            await b.close()  # the peer goes silent: no more consent responses
            with pytest.raises(IceConnectionError, match="consent"):
                await waiting
            with pytest.raises(IceConnectionError, match="consent"):
                await a.send(b"\x80unwanted")
            assert a.state is IceState.FAILED

    run(scenario())
    assert [type(e).__name__ for e in events if type(e).__name__ == "ConsentLost"] == [
        "ConsentLost"
    ]


def test_events_reach_the_handler() -> None:
    events: list[IceEvent] = []

    async def scenario() -> None:
        async with gathered() as (a, b):
            a.on_event = events.append
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())

    run(scenario())
    names = [type(e).__name__ for e in events]
    assert "SelectedPairChanged" in names and names[-1] == "StateChanged"


def test_config_supplies_the_rest_and_arguments_win() -> None:
    connection = Connection(
        False, pacing=0.02, config=AgentConfig(controlling=True, max_nomination_wait=0.5)
    )
    assert connection.controlling is False
    assert len(connection.local_password) >= 22
    with pytest.raises(Exception, match="ufrag"):
        Connection(True, local_username="no")
    with pytest.raises(Exception, match="receive_queue_size"):
        Connection(True, receive_queue_size=0)


def live_candidates(host_suffix: str) -> int:
    """How many Candidate objects whose host ends with ``host_suffix`` are alive: what the
    connection holds of them (the test keeps none)."""
    return sum(
        1 for o in gc.get_objects() if isinstance(o, Candidate) and o.host.endswith(host_suffix)
    )


def test_candidates_signalled_before_gathering_are_bounded_and_counted() -> None:
    """A peer can signal any number of candidates before we gather: the connection holds at
    most ``max_remote_candidates`` of them for the agent, and counts the rest."""

    async def scenario() -> None:
        connection = make("127.0.0.1", True, config=AgentConfig(max_remote_candidates=5))
        async with connection:
            for port in range(20000, 20500):
                line = f"1 1 udp 2130706431 127.0.0.42 {port} typ host"
                await connection.add_remote_candidate(Candidate.from_sdp(line))
            await connection.add_remote_candidate(None)
            assert live_candidates(".42") == 5
            await connection.gather_candidates()  # no credentials: no check goes out
            assert len(connection.remote_candidates) == 5
            dropped = connection.agent.failures.peer_input
            assert dropped == {PeerInput.REMOTE_CANDIDATES_FULL: 495}

    run(scenario())


# --------------------------------------------------------------------------- mDNS


def collect_reasons(reasons: list[str]) -> Callable[[IceEvent], None]:
    """An ``on_event`` that keeps the reason of every CandidateUnresolvable (only the reason:
    the test keeps no Candidate alive)."""

    def handler(event: IceEvent) -> None:
        if isinstance(event, CandidateUnresolvable):
            reasons.append(event.reason)

    return handler


def test_mdns_resolutions_are_bounded_per_generation_and_counted() -> None:
    """At most ``max_remote_candidates`` ``.local`` candidates are taken per generation — not
    only at a time: once their lookups ended, more are still dropped, each reported and
    counted. A restart opens a new generation."""
    reasons: list[str] = []

    def local_candidate(port: int) -> Candidate:
        return Candidate.from_sdp(f"1 1 udp 2130706431 {uuid.uuid4()}.local {port} typ host")

    async def scenario() -> None:
        config = AgentConfig(max_remote_candidates=4)
        connection = make("127.0.0.1", True, config=config, mdns_timeout=0.2)
        connection.on_event = collect_reasons(reasons)
        async with connection:
            await connection.gather_candidates()
            for port in range(20000, 20050):
                await connection.add_remote_candidate(local_candidate(port))
            assert live_candidates(".local") == 4
            dropped = connection.agent.failures.peer_input
            assert dropped == {PeerInput.MDNS_LOOKUPS_FULL: 46}
            await until(lambda: len(reasons) == 50)  # every lookup ended
            await connection.add_remote_candidate(local_candidate(20050))
            assert dropped == {PeerInput.MDNS_LOOKUPS_FULL: 47}
            await connection.restart()
            await connection.add_remote_candidate(local_candidate(20051))
            assert dropped == {PeerInput.MDNS_LOOKUPS_FULL: 47}  # a new generation: taken
            await until(lambda: len(reasons) == 52)

    run(scenario())
    cap = "not resolved: 4 .local candidates were taken in this generation already"
    assert sum(reason.startswith(cap) for reason in reasons) == 47
    assert sum(reason.startswith("no mDNS answer") for reason in reasons) == 5


def test_no_lookup_for_a_local_candidate_the_full_agent_could_not_take() -> None:
    reasons: list[str] = []

    async def scenario() -> None:
        config = AgentConfig(max_remote_candidates=2)
        connection = make("127.0.0.1", True, config=config, mdns_timeout=5.0)
        connection.on_event = collect_reasons(reasons)
        async with connection:
            await connection.gather_candidates()
            for port in (20000, 20001):
                line = f"1 1 udp 2130706431 127.0.0.42 {port} typ host"
                await connection.add_remote_candidate(Candidate.from_sdp(line))
            line = f"1 1 udp 2130706431 {uuid.uuid4()}.local 20002 typ host"
            await connection.add_remote_candidate(Candidate.from_sdp(line))
            assert reasons == [  # at once, not after mdns_timeout
                "not resolved: the agent holds max_remote_candidates (2) remote candidates "
                "already"
            ]
            dropped = connection.agent.failures.peer_input
            assert dropped == {PeerInput.REMOTE_CANDIDATES_FULL: 1}

    run(scenario())


def test_an_unresolvable_mdns_candidate_is_reported_not_fatal() -> None:
    events: list[IceEvent] = []

    async def scenario() -> None:
        async with gathered(mdns_timeout=0.2) as (a, b):
            a.on_event = events.append
            await exchange(a, b, end=False)
            hidden = Candidate.from_sdp(
                "1 1 udp 2130706431 0b5a7c1e-0000-4000-8000-000000000000.local 9 typ host"
            )
            await a.add_remote_candidate(hidden)
            await a.add_remote_candidate(None)
            await b.add_remote_candidate(None)
            await asyncio.gather(a.connect(), b.connect())  # over the plain candidates
            await until(lambda: any(isinstance(e, CandidateUnresolvable) for e in events))
            assert hidden.address not in [c.address for c in a.remote_candidates]

    run(scenario())
    (unresolvable,) = [e for e in events if isinstance(e, CandidateUnresolvable)]
    assert unresolvable.candidate.host.endswith(".local")
    assert "no mDNS answer" in unresolvable.reason or "mDNS" in unresolvable.reason


def test_local_candidates_the_agent_cannot_use_are_not_looked_up() -> None:
    """Browsers signal TCP candidates under the same ``.local`` names: with ICE-TCP off the
    agent uses UDP only, so they cost no lookup, and neither does a component the stream lacks
    (both counted)."""
    reasons: list[str] = []

    async def scenario() -> None:
        connection = make("127.0.0.1", True, mdns_timeout=5.0, tcp=False)
        connection.on_event = collect_reasons(reasons)
        async with connection:
            await connection.gather_candidates()
            name = f"{uuid.uuid4()}.local"
            for line in (
                f"1 1 tcp 1518280447 {name} 9 typ host tcptype active",
                f"1 2 udp 2130706431 {name} 20000 typ host",
            ):
                await connection.add_remote_candidate(Candidate.from_sdp(line))
            await connection.add_remote_candidate(None)
            # No lookup to wait for: end-of-candidates reached the agent at once.
            assert connection.agent.remote_complete
            dropped = connection.agent.failures.peer_input
            assert dropped == {
                PeerInput.UNKNOWN_COMPONENT: 1,
                PeerInput.TCP_CANDIDATE_IGNORED: 1,
            }

    run(scenario())
    assert reasons == []
