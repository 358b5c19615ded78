"""Readers contain what a core raises (stun.reader_errors), on real loopback sockets.

No core raises on peer input; the only way to see what a reader does if one ever does is a core
with a bug on purpose: a subclass of the real one that raises on datagrams carrying MARKER. Each
test sends marked datagrams among good ones, all queued before the event loop reads, so they are
handled in one batch, and checks that the good ones were all answered or relayed, that the
exceptions were counted by kind, and that each kind was logged once, with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from ice import Connection
from ice.agent import Agent
from stun import (
    Address,
    BindingServer,
    Message,
    MessageClass,
    Method,
    Software,
    StunError,
    TransactionTimeout,
    make_address,
)
from stun.aio import StunClient, StunServer
from stun.client import ClientConfig, ClientSession
from stun.datagram import Datagram
from stun.reader_errors import error_kind
from stun.server import LongTermCredentials
from stun.transaction import RtoCache, TransactionConfig
from tests.net.loopback import binding_request, run, until
from tests.properties.ice_signed import signed_check_from
from tests.turn.aio_client import RawTurnClient
from turn import TurnAllocation, TurnClient
from turn.client import TurnClientConfig
from turn.server import (
    Allocation,
    ClientTransport,
    FiveTuple,
    PeerPolicy,
    TurnServerConfig,
    TurnServerCore,
)
from turn.server.aio import TurnServer, render_metrics
from turn.server.core import SockAddr

MARKER = b"a bug on purpose"
HOST = "127.0.0.1"
PASSWORDS = {"alice": "wonderland"}


class CoreBug(Exception):
    """What the buggy cores raise: kinds no real code raises, one per core (a kind is logged once
    per process, and each test checks its own log)."""


class BindingBug(CoreBug):
    pass


class TurnServerBug(CoreBug):
    pass


class AllocationBug(CoreBug):
    pass


class AgentBug(CoreBug):
    pass


def _check(data: bytes, bug: type[CoreBug]) -> None:
    if MARKER in data:
        raise bug("raised on purpose by a test core")


class BuggyBindingServer(BindingServer):
    def respond(
        self, data: bytes, local: Address | None, remote: Address, now: float, *,
        stream: bool = False,
    ) -> bytes | None:  # fmt: skip
        _check(data, BindingBug)
        return super().respond(data, local, remote, now, stream=stream)


class BuggyTurnCore(TurnServerCore):
    def handle_datagram(
        self,
        data: bytes,
        local: Address | None,
        remote: Address,
        now: float,
        *,
        transport: ClientTransport = ClientTransport.UDP,
    ) -> Datagram | None:
        _check(data, TurnServerBug)
        return super().handle_datagram(data, local, remote, now, transport=transport)

    # The UDP driver's entry points (the lean relay path), which reach handle_datagram only
    # for what they do not relay themselves.
    def relay_from_client(
        self, data: bytes, local: Address, source: SockAddr, now: float
    ) -> Datagram | None:
        _check(data, TurnServerBug)
        return super().relay_from_client(data, local, source, now)

    def relay_from_peer(
        self, data: bytes, relay: Address, source: SockAddr, now: float
    ) -> Datagram | None:
        _check(data, TurnServerBug)
        return super().relay_from_peer(data, relay, source, now)


class BuggyAllocation(TurnAllocation):
    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        _check(data, AllocationBug)
        super().receive_datagram(data, local, remote, now)


class BuggyAgent(Agent):
    __slots__ = ()  # the Agent is slotted: a class swapped in must keep its layout

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        _check(data, AgentBug)
        super().receive_datagram(data, local, remote, now)


class TimerBug(CoreBug):
    pass


class TimerBugs:
    """A mixin: ``handle_timer`` raises ``bug`` the first ``timer_bugs`` times it is called."""

    timer_bugs = 0
    bug: type[CoreBug] = CoreBug

    def timer_check(self) -> None:
        if self.timer_bugs:
            self.timer_bugs -= 1
            raise self.bug("raised on purpose by a test core's timer")


class TurnServerTimerBug(CoreBug):
    pass


class TimerBuggyTurnCore(TurnServerCore, TimerBugs):
    """A TURN server core whose first ``handle_timer`` raises."""

    timer_bugs, bug = 1, TurnServerTimerBug

    def handle_timer(self, now: float) -> None:
        self.timer_check()
        super().handle_timer(now)


class DeadlineBug(CoreBug):
    pass


class DeadlineBuggyTurnCore(TurnServerCore):
    """A TURN server core whose allocation lookup, which a connection's deadline check makes,
    raises."""

    def allocation(self, five_tuple: FiveTuple) -> Allocation | None:
        raise DeadlineBug("raised on purpose by a test core")


def buggy_agent_class(bugs: int, *, on_timer: bool) -> type[Agent]:
    """An Agent subclass to swap into a running connection (``agent.__class__ = ...``): its
    ``handle_timer`` (``on_timer``) or ``datagrams_to_send`` raises the first ``bugs`` times it
    is called. The Agent is slotted, so the count is the class's: one class per agent."""

    class BuggyAgent(Agent):
        __slots__ = ()
        left = bugs

        def bug_check(self, bug: type[CoreBug]) -> None:
            if type(self).left:
                type(self).left -= 1
                raise bug("raised on purpose by a test agent")

        def handle_timer(self, now: float) -> None:
            if on_timer:
                self.bug_check(TimerBug)
            super().handle_timer(now)

        def datagrams_to_send(self, now: float) -> list[Datagram]:
            if not on_timer:
                self.bug_check(PumpBug)
            return super().datagrams_to_send(now)

    return BuggyAgent


class PumpBug(CoreBug):
    pass



TURN_KIND = error_kind(TurnServerBug())


def logged_tracebacks(
    caplog: pytest.LogCaptureFixture, bug: type[CoreBug]
) -> list[logging.LogRecord]:
    kind = error_kind(bug())
    return [
        r for r in caplog.records
        if (r.name, r.levelno) == ("icestack.readers", logging.ERROR) and kind in r.getMessage()
    ]  # fmt: skip


def request(tid: int, *attributes: Software) -> bytes:
    message = Message(Method.BINDING, MessageClass.REQUEST, tid.to_bytes(12, "big"), attributes)
    return message.encode(fingerprint=True)


MARKED = request(0, Software(MARKER.decode()))


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def receive_all(sock: socket.socket, count: int) -> list[bytes]:
    loop = asyncio.get_running_loop()
    received = []
    for _ in range(count):
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), 5.0)
        received.append(data)
    return received


async def read_message(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(20)
    return header + await reader.readexactly(int.from_bytes(header[2:4], "big"))


def answered_ids(answers: list[bytes]) -> set[int]:
    return {int.from_bytes(Message.decode(a).transaction_id, "big") for a in answers}


# --------------------------------------------------------------------------- STUN server


def test_the_stun_server_udp_reader_loses_only_the_datagram_that_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            server.server = BuggyBindingServer()
            listener = await server.listen("udp", HOST)
            with client_socket() as sock:
                for n in range(1, 11):  # one batch: the loop does not run in between
                    sock.sendto(request(n), listener.address)
                    if n in (3, 7):
                        sock.sendto(MARKED, listener.address)
                answers = await receive_all(sock, 10)
            assert answered_ids(answers) == set(range(1, 11))
            assert server.reader_errors.counts == {error_kind(BindingBug()): 2}
            assert server.server.stats.counts  # the server went on counting

    with caplog.at_level(logging.ERROR):
        run(scenario())
    (record,) = logged_tracebacks(caplog, BindingBug)  # two errors, one log
    assert record.exc_info is not None and record.exc_info[0] is BindingBug


def test_the_stun_server_stream_reader_answers_the_frames_around_one_that_raised() -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            server.server = BuggyBindingServer()
            listener = await server.listen("tcp", HOST)
            reader, writer = await asyncio.open_connection(HOST, listener.address.port)
            writer.write(request(1) + MARKED + request(2))  # three frames, one read
            answers = [await asyncio.wait_for(read_message(reader), 5.0) for _ in range(2)]
            assert answered_ids(answers) == {1, 2}
            assert server.reader_errors.total == 1
            writer.close()

    run(scenario())


# --------------------------------------------------------------------------- TURN server


def turn_config() -> TurnServerConfig:
    return TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack.test", PASSWORDS),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )


def buggy_turn_server(server: TurnServer) -> None:
    """Swap the server's core for the buggy one, before any listener reads with it."""
    core = server.core
    server.core = BuggyTurnCore(
        core.config, server.relays, tcp_listeners=server.tcp_relays,
        wall_clock_offset=core.wall_clock_offset,
    )  # fmt: skip


def test_the_turn_server_readers_lose_only_the_datagrams_that_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with TurnServer(turn_config(), relay_hosts=[HOST]) as server:
            buggy_turn_server(server)
            listener = await server.listen("udp", HOST)
            # The client listener: Binding requests answered around the marked one.
            with client_socket() as sock:
                for n in range(1, 6):
                    sock.sendto(request(n), listener.address)
                    sock.sendto(MARKED, listener.address)
                assert answered_ids(await receive_all(sock, 5)) == set(range(1, 6))
            assert server.reader_errors.counts == {TURN_KIND: 5}
            # A relayed address: the peer's datagrams reach the client around the marked one.
            client = await RawTurnClient.connect("udp", listener.address, "alice", "wonderland")
            (relayed,) = await client.allocate()
            with client_socket() as peer:
                await client.permit(make_address(HOST, peer.getsockname()[1]))
                for payload in (b"one", MARKER, b"two", MARKER, b"three"):
                    peer.sendto(payload, relayed)
                received = [await client.receive() for _ in range(3)]
            assert [data for _, data in received] == [b"one", b"two", b"three"]
            assert server.reader_errors.counts == {TURN_KIND: 7}
            assert f'icestack_turn_reader_errors_total{{kind="{TURN_KIND}"}} 7' in (
                render_metrics(server)
            )
            await client.close()

    with caplog.at_level(logging.ERROR):
        run(scenario())
    assert len(logged_tracebacks(caplog, TurnServerBug)) == 1


def test_the_turn_server_timer_is_armed_again_after_the_core_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The timer that would end a short allocation raises the first time: no datagram comes
    after it to arm the timer again, so only the guard can end the allocation. It does, a
    second later; the exception is counted, logged once, and exported."""

    async def scenario() -> None:
        config = dataclasses.replace(turn_config(), default_lifetime=0.2, max_lifetime=0.2)
        async with TurnServer(config, relay_hosts=[HOST]) as server:
            core = server.core
            server.core = TimerBuggyTurnCore(
                core.config, server.relays, tcp_listeners=server.tcp_relays,
                wall_clock_offset=core.wall_clock_offset,
            )  # fmt: skip
            listener = await server.listen("udp", HOST)
            client = await RawTurnClient.connect("udp", listener.address, "alice", "wonderland")
            await client.allocate()
            assert server.core.allocation_count == 1
            await until(lambda: server.core.allocation_count == 0)
            kind = error_kind(TurnServerTimerBug())
            assert server.timer_errors.counts == {kind: 1}
            assert server.reader_errors.total == 0
            assert f'icestack_turn_timer_errors_total{{kind="{kind}"}} 1' in render_metrics(server)
            await client.close()

    run_logging_one_timer_traceback(caplog, scenario(), TurnServerTimerBug)


def test_a_turn_connections_deadline_check_that_raises_costs_nothing() -> None:
    """A connection's first message makes it check its deadlines, which asks the core for its
    allocation: raising there is contained, and the message is answered all the same."""

    async def scenario() -> None:
        async with TurnServer(turn_config(), relay_hosts=[HOST]) as server:
            core = server.core
            server.core = DeadlineBuggyTurnCore(
                core.config, server.relays, tcp_listeners=server.tcp_relays,
                wall_clock_offset=core.wall_clock_offset,
            )  # fmt: skip
            listener = await server.listen("tcp", HOST)
            reader, writer = await asyncio.open_connection(HOST, listener.address.port)
            writer.write(request(1))
            answer = await asyncio.wait_for(read_message(reader), 5.0)
            assert answered_ids([answer]) == {1}
            assert server.timer_errors.counts == {error_kind(DeadlineBug()): 1}
            assert server.connection_count == 1
            writer.close()

    run(scenario())


# --------------------------------------------------------------------------- TURN client


def test_the_turn_client_reader_loses_only_the_datagram_that_raised() -> None:
    async def scenario() -> None:
        async with TurnServer(turn_config(), relay_hosts=[HOST]) as server:
            listener = await server.listen("udp", HOST)
            client = await TurnClient.connect(
                HOST, listener.address.port, username="alice", password="wonderland"
            )
            async with client:
                relayed = await client.allocate()
                client.allocation.__class__ = BuggyAllocation
                with client_socket() as peer:
                    peer_address = make_address(HOST, peer.getsockname()[1])
                    await client.create_permission(peer_address)
                    for payload in (b"one", MARKER, b"two"):
                        peer.sendto(payload, relayed)
                    got = [await asyncio.wait_for(client.recv(), 5.0) for _ in range(2)]
                assert got == [(b"one", peer_address), (b"two", peer_address)]
                assert client.reader_errors.counts == {error_kind(AllocationBug()): 1}

    run(scenario())


# --------------------------------------------------------------------------- ICE connection


@contextlib.asynccontextmanager
async def signalled_pair() -> AsyncIterator[tuple[Connection, Connection]]:
    """Two connections on loopback that know each other's credentials and candidates."""
    a = Connection(True, include_loopback=True, interfaces=[HOST])
    b = Connection(False, include_loopback=True, interfaces=[HOST])
    async with a, b:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for side, peer in ((a, b), (b, a)):
            side.set_remote_credentials(peer.local_username, peer.local_password)
            for candidate in peer.local_candidates:
                await side.add_remote_candidate(candidate)
            await side.add_remote_candidate(None)
        yield a, b


def test_the_ice_reader_loses_only_the_datagram_that_raised() -> None:
    async def scenario() -> None:
        async with signalled_pair() as (a, b):
            await asyncio.gather(a.connect(), b.connect())
            b.agent.__class__ = BuggyAgent
            pair = b.selected_pair()
            assert pair is not None
            with client_socket() as other:  # not the selected path: through the agent
                # A path of the peer's that its signed check proved: its data is taken.
                other.sendto(
                    signed_check_from([], b.local_username, b.local_password, bytes(12)),
                    pair.local_base,
                )
                for payload in (b"\x80one", b"\x80" + MARKER, b"\x80two"):
                    other.sendto(payload, pair.local_base)
                got = [await asyncio.wait_for(b.recv(), 5.0) for _ in range(2)]
            assert got == [b"\x80one", b"\x80two"]
            assert b.reader_errors.counts == {error_kind(AgentBug()): 1}

    run(scenario())


def test_the_ice_readers_pump_is_contained_and_data_flows_on() -> None:
    """After a batch reached the agent, the reader pumps it (sends, events, timer). A bug there
    reached the event loop's handler; now it is contained and counted like one in
    receive_datagram, and the connection goes on."""

    async def scenario() -> None:
        async with signalled_pair() as (a, b):
            await asyncio.gather(a.connect(), b.connect())
            b.agent.__class__ = buggy = buggy_agent_class(1, on_timer=False)
            assert isinstance(b.agent, buggy)
            pair = b.selected_pair()
            assert pair is not None
            with client_socket() as other:  # a STUN datagram: through the agent, then a pump
                other.sendto(binding_request(), pair.local_base)
                await until(lambda: b.reader_errors.counts == {error_kind(PumpBug()): 1})
            await a.send(b"\x80after the bug")
            assert await asyncio.wait_for(b.recv(), 5.0) == b"\x80after the bug"

    run(scenario())


def test_the_ice_timer_is_armed_again_after_the_agent_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first timer of each side's checks raises: no check has gone out yet, so no datagram
    would ever re-arm the timer. Contained like a reader's exception, the timer is armed again
    and both sides connect; each exception is counted, and logged once with its traceback."""

    async def scenario() -> None:
        async with signalled_pair() as (a, b):
            for side in (a, b):
                side.agent.__class__ = buggy = buggy_agent_class(1, on_timer=True)
                assert isinstance(side.agent, buggy)
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10.0)
            for side in (a, b):
                assert side.timer_errors.counts == {error_kind(TimerBug()): 1}
                assert side.reader_errors.total == 0

    run_logging_one_timer_traceback(caplog, scenario(), TimerBug)


def run_logging_one_timer_traceback(
    caplog: pytest.LogCaptureFixture, scenario: Coroutine[Any, Any, None], bug: type[CoreBug]
) -> None:
    """Run ``scenario``; the timer's ``bug`` was logged once, with its traceback."""
    with caplog.at_level(logging.ERROR, logger="icestack.readers"):
        run(scenario)
    [record] = logged_tracebacks(caplog, bug)
    assert "handling its timer raised" in record.getMessage()
    assert record.exc_info is not None


# --------------------------------------------------------------------------- client timers


class StunTimerBug(CoreBug):
    pass


class TurnTimerBug(CoreBug):
    pass


class TimerBuggySession(ClientSession, TimerBugs):
    """A STUN client session whose first ``handle_timer`` raises."""

    timer_bugs, bug = 1, StunTimerBug

    def handle_timer(self, now: float) -> None:
        self.timer_check()
        super().handle_timer(now)


class TimerBuggyAllocation(TurnAllocation, TimerBugs):
    """A TURN allocation whose first ``handle_timer`` raises."""

    timer_bugs, bug = 1, TurnTimerBug

    def handle_timer(self, now: float) -> None:
        self.timer_check()
        super().handle_timer(now)


#: Sends at 0 and 50 ms, then 100 ms more: every step of it is the timer's.
FAST = TransactionConfig(initial_rto=0.05, max_requests=2, final_wait=2)


def test_the_stun_client_timer_is_armed_again_after_the_session_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that ignores the first request: only the retransmission, which the timer sends,
    is answered. The timer's first call raises; contained, the timer is armed again and the
    retransmission goes out. Unguarded, the exception would reach the loop's handler and leave
    the request waiting for ever."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        with client_socket() as server:
            port = server.getsockname()[1]
            client = await StunClient.connect(
                HOST, port, config=ClientConfig(transaction=FAST), rto_cache=RtoCache(FAST)
            )
            async with client:
                client._driver.session.__class__ = TimerBuggySession
                pending = asyncio.ensure_future(client.binding())
                _, source = await loop.sock_recvfrom(server, 2048)  # the first: ignored
                data, source = await loop.sock_recvfrom(server, 2048)
                answer = BindingServer().respond(data, None, make_address(*source), loop.time())
                assert answer is not None
                server.sendto(answer, source)
                result = await asyncio.wait_for(pending, 5.0)
                assert result.mapped_address == make_address(*source)
                assert client.timer_errors.counts == {error_kind(StunTimerBug()): 1}
                assert client.reader_errors.total == 0

    run_logging_one_timer_traceback(caplog, scenario(), StunTimerBug)


def test_the_turn_client_timer_is_armed_again_after_the_allocation_raised() -> None:
    """An Allocate to a server that never answers ends, as it must, with TransactionTimeout —
    through the timer, whose first call raised."""

    async def scenario() -> None:
        with client_socket() as silent:
            client = await TurnClient.connect(
                HOST, silent.getsockname()[1], username="alice", password="wonderland",
                config=TurnClientConfig(stun=ClientConfig(transaction=FAST)),
                rto_cache=RtoCache(FAST),
            )  # fmt: skip
            async with client:
                client.allocation.__class__ = TimerBuggyAllocation
                with pytest.raises(TransactionTimeout, match="after 2 request"):
                    await asyncio.wait_for(client.allocate(), 5.0)
                assert client.timer_errors.counts == {error_kind(TurnTimerBug()): 1}

    run(scenario())


def test_error_kind_names_module_and_class() -> None:
    assert error_kind(StunError("x")) == "stun.errors.StunError"
