"""ice.Connection releasing what the session does not use (RFC 8445 §8.3, :mod:`ice.release`), on
loopback: with ICE-TCP on (the default) and a UDP pair selected, each side closes its listening
TCP socket three seconds after completing — connecting to it is refused — while data flows on;
a restart opens a listener again and offers its TCP candidates, and the session connects again.
On a shared-port mux the agent forgets what it does not use, the mux's sockets stay open for the
other sessions, and a restart offers them again.

Every wait is bounded (:func:`tests.net.loopback.run`, :func:`tests.net.loopback.until`); no
duration is asserted.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from ice import Connection, TcpType
from ice.aio_mux import Mux
from ice.config import AgentConfig
from ice.events import CandidateLost, IceEvent
from ice.release import RELEASE_DELAY
from stun.address import Address
from tests.net.loopback import LOOPBACK_HOSTS, run, until

from .test_connection import assert_same_path, exchange, gathered, make
from .test_mux_aio import HOST, connect_ours, echo_check, server, signal_and_connect

#: A bound on waiting for the release: the delay, and room for a loaded machine.
RELEASE_WAIT = RELEASE_DELAY + 10.0


def passive(connection: Connection) -> Address:
    [candidate] = [c for c in connection.local_candidates if c.tcp_type is TcpType.PASSIVE]
    return candidate.address


async def connect_to(address: Address) -> None:
    """Open a TCP connection to ``address`` and close it (raises if refused)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)


def released(events: list[IceEvent]) -> list[CandidateLost]:
    return [e for e in events if isinstance(e, CandidateLost) and e.released]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_a_udp_session_closes_its_tcp_listener_after_completion_and_a_restart_reopens_it(
    host: str,
) -> None:
    events: dict[str, list[IceEvent]] = {"a": [], "b": []}

    async def scenario() -> None:
        async with gathered(host) as (a, b):
            a.on_event, b.on_event = events["a"].append, events["b"].append
            listeners = {"a": passive(a), "b": passive(b)}
            await connect_to(listeners["a"])  # listening while ICE runs
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            for connection in (a, b):
                pair = connection.selected_pair()
                assert pair is not None and pair.local.transport == "udp"

            await until(lambda: all(len(released(e)) == 2 for e in events.values()), RELEASE_WAIT)
            for name, connection in (("a", a), ("b", b)):
                lost = released(events[name])
                assert {e.candidate.tcp_type for e in lost} == {TcpType.PASSIVE, TcpType.ACTIVE}
                assert {e.candidate.base for e in lost} == {listeners[name]}
                with pytest.raises(ConnectionRefusedError):
                    await connect_to(listeners[name])  # the listening socket is closed
                assert {c.transport for c in connection.local_candidates} == {"udp"}
            await a.send(b"\x80after the release")
            assert await b.recv() == b"\x80after the release"

            await a.restart()
            await b.restart()
            for connection in (a, b):  # the new generation offers TCP again, on a new listener
                assert {c.transport for c in connection.local_candidates} == {"udp", "tcp"}
                await connect_to(passive(connection))
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            assert_same_path(a, b)
            await b.send(b"\x80after the restart")
            assert await a.recv() == b"\x80after the restart"

    run(scenario())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_session_on_a_mux_releases_without_closing_the_shared_sockets(transport: str) -> None:
    """Over UDP the session's agent forgets the mux's TCP base (its passive candidate), over TCP
    the UDP one; the mux keeps both open, and after a restart the session offers both again and
    connects."""
    events: list[IceEvent] = []

    async def main() -> None:
        async with Mux(HOST) as mux:
            assert mux.tcp_local is not None
            served = server(mux, lite=False)
            served.on_event = events.append
            client = make(HOST, True, udp=transport == "udp", tcp=transport == "tcp")
            async with served, client:
                await connect_ours(served, client)
                await until(lambda: len(released(events)) == 1, RELEASE_WAIT)
                [lost] = released(events)
                assert lost.candidate.transport != transport
                assert {c.transport for c in served.local_candidates} == {transport}
                await connect_to(mux.tcp_local)  # the mux's sockets are open: shared
                await echo_check(served, client.send, 1)

                await asyncio.gather(served.restart(), client.restart())
                assert {c.transport for c in served.local_candidates} == {"udp", "tcp"}
                await signal_and_connect(served, client, end=False)
                await echo_check(served, client.send, 2)
                assert mux.metrics()["sessions"] == 1

    run(main())


def test_a_restart_reopens_the_released_simultaneous_open_base_beside_a_kept_tcp_base() -> None:
    """TCP only, with all three TCP types: the pair uses the listening base's active or passive
    candidate, and the simultaneous-open base (a socket of its own) is released; a restart
    opens it again and offers its S-O candidate. (A restart once took the kept TCP base of the
    address for it and left the S-O candidate out.)"""
    events: list[IceEvent] = []
    every_type = (TcpType.ACTIVE, TcpType.PASSIVE, TcpType.SIMULTANEOUS_OPEN)

    async def scenario() -> None:
        config = AgentConfig(tcp_types=every_type)
        async with gathered("127.0.0.1", udp=False, config=config) as (a, b):
            a.on_event = events.append
            assert {c.tcp_type for c in a.local_candidates} == set(every_type)
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            pair = a.selected_pair()
            assert pair is not None and pair.local.tcp_type is not TcpType.SIMULTANEOUS_OPEN

            await until(lambda: len(released(events)) == 1, RELEASE_WAIT)
            [lost] = released(events)
            assert lost.candidate.tcp_type is TcpType.SIMULTANEOUS_OPEN
            await asyncio.gather(a.restart(), b.restart())
            assert {c.tcp_type for c in a.local_candidates} == set(every_type)

    run(scenario())
