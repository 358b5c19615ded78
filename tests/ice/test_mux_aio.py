"""Many sessions behind one UDP port (:class:`ice.aio_mux.UdpMux`) on loopback: ICE-lite and full
server sessions, against icestack clients and aioice 0.13 clients (each with sockets of its own,
as browsers are), restart on the mux, closing releases, the session cap.

Counts are bounded (at most :data:`SESSIONS` sessions a test) and every wait is bounded by
:func:`tests.net.loopback.run`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aioice
import aioice.ice
import pytest

from ice import Candidate, CandidateType, Connection, LocalProtocolError
from ice.aio_mux import Mux, UdpMux
from ice.config import AgentConfig, RelayServer
from ice.events import GatheringFailed, IceEvent
from ice.mux import MuxConfig, MuxFull
from stun.address import Address
from stun.aio import StunServer
from stun.server import Outcome
from tests.ice.test_connection import make, over_signaling
from tests.net.loopback import run
from tests.net.test_ice_faults import PASSWORD, USER, turn_server

HOST = "127.0.0.1"
#: Sessions on the mux in the load tests.
SESSIONS = 300
LITE = AgentConfig(lite=True, controlling=False)


def server(mux: Mux, *, lite: bool = True) -> Connection:
    return Connection(False, mux=mux, config=LITE if lite else None)


async def connect_ours(served: Connection, client: Connection) -> None:
    await asyncio.gather(served.gather_candidates(), client.gather_candidates())
    await signal_and_connect(served, client, end=True)


async def signal_and_connect(served: Connection, client: Connection, *, end: bool) -> None:
    """Credentials and candidates both ways (end-of-candidates with ``end``), then connect."""
    client.set_remote_credentials(served.local_username, served.local_password)
    served.set_remote_credentials(client.local_username, client.local_password)
    for candidate in served.local_candidates:
        await client.add_remote_candidate(over_signaling(candidate))
    for candidate in client.local_candidates:
        await served.add_remote_candidate(over_signaling(candidate))
    if end:
        await client.add_remote_candidate(None)
        await served.add_remote_candidate(None)
    await asyncio.gather(served.connect(), client.connect())


async def echo_check(
    served: Connection, send: Callable[[bytes], Awaitable[None]], tag: int
) -> None:
    """The client's datagram reaches its own session on the mux."""
    message = f"session {tag}".encode()
    await send(message)
    assert await served.recv() == message


def ours_client(lite_server: bool) -> Connection:
    client = make(HOST, True, tcp=False)
    client.remote_lite = lite_server
    return client


@pytest.mark.parametrize("lite", [True, False], ids=["lite", "full"])
def test_many_sessions_on_one_port_against_icestack_clients(lite: bool) -> None:
    count = SESSIONS if lite else SESSIONS // 3

    async def main() -> None:
        async with UdpMux(HOST) as mux:
            served = [server(mux, lite=lite) for _ in range(count)]
            clients = [ours_client(lite) for _ in range(count)]
            await asyncio.gather(
                *(connect_ours(s, c) for s, c in zip(served, clients, strict=True))
            )
            assert {c.local_candidates[0].address for c in served} == {mux.local}
            for tag, (s, c) in enumerate(zip(served, clients, strict=True)):
                pair = c.selected_pair()
                assert pair is not None and pair.remote.address == mux.local
                await echo_check(s, c.send, tag)
            metrics = mux.metrics()
            assert metrics["sessions"] == count and metrics["routed"] > 2 * count
            assert metrics["dropped_unknown_ufrag"] == metrics["dropped_no_username"] == 0
            for connection in served[: count // 2]:
                await connection.close()
            assert mux.metrics()["sessions"] == count - count // 2
            for connection in served[count // 2 :] + clients:
                await connection.close()
            assert mux.metrics() | {"routed": 0} == {
                "sessions": 0, "addresses": 0, "transactions": 0, "routed": 0,
                "dropped_unknown_ufrag": 0, "dropped_no_username": 0,
                "dropped_unknown_source": mux.metrics()["dropped_unknown_source"],
            }  # fmt: skip

    run(main())


def test_many_sessions_on_one_port_against_aioice_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [HOST])
    count = SESSIONS // 3

    async def main() -> None:
        async with UdpMux(HOST) as mux:
            served = [server(mux) for _ in range(count)]
            clients = [aioice.Connection(ice_controlling=True, use_ipv6=False) for _ in served]

            async def pair_up(ours: Connection, theirs: aioice.Connection) -> None:
                await asyncio.gather(ours.gather_candidates(), theirs.gather_candidates())
                ours.set_remote_credentials(theirs.local_username, theirs.local_password)
                theirs.remote_username = ours.local_username
                theirs.remote_password = ours.local_password
                for theirs_candidate in theirs.local_candidates:
                    await ours.add_remote_candidate(Candidate.from_sdp(theirs_candidate.to_sdp()))
                for our_candidate in ours.local_candidates:
                    await theirs.add_remote_candidate(
                        aioice.Candidate.from_sdp(our_candidate.to_sdp())
                    )
                await ours.add_remote_candidate(None)
                await theirs.add_remote_candidate(None)
                await asyncio.gather(ours.connect(), theirs.connect())

            try:
                await asyncio.gather(*(pair_up(s, c) for s, c in zip(served, clients, strict=True)))
                for tag, (s, c) in enumerate(zip(served, clients, strict=True)):
                    await echo_check(s, c.send, tag)
                assert mux.metrics()["sessions"] == count
            finally:
                for connection in served:
                    await connection.close()
                for theirs in clients:
                    await theirs.close()

    run(main())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_restart_on_the_mux_reconnects_under_the_new_ufrag(transport: str) -> None:
    """Over the UDP side (a UdpMux) and over the TCP side (a client that offers no UDP)."""

    async def main() -> None:
        async with UdpMux(HOST) if transport == "udp" else Mux(HOST) as mux:
            served = server(mux, lite=False)
            client = ours_client(False) if transport == "udp" else make(HOST, True, udp=False)
            async with served, client:
                await connect_ours(served, client)
                old = served.local_username
                await asyncio.gather(served.restart(), client.restart())
                assert served.local_username != old
                await signal_and_connect(served, client, end=False)
                pair = client.selected_pair()
                assert pair is not None
                assert pair.remote.address == (mux.local if transport == "udp" else mux.tcp_local)
                await echo_check(served, client.send, 1)
                assert mux.metrics()["sessions"] == 1

    run(main())


def test_the_session_cap_refuses_a_new_session_cleanly() -> None:
    async def main() -> None:
        async with UdpMux(HOST, config=MuxConfig(max_sessions=2)) as mux:
            first, second, third = server(mux), server(mux), server(mux)
            async with first, second, third:
                await first.gather_candidates()
                await second.gather_candidates()
                with pytest.raises(MuxFull, match=r"max_sessions \(2\)"):
                    await third.gather_candidates()
                await first.close()
                fourth = server(mux)
                async with fourth:
                    await fourth.gather_candidates()
                    assert mux.metrics()["sessions"] == 2

    run(main())


def test_sessions_on_one_port_asking_one_stun_server_each_get_their_answer() -> None:
    """Every session's Binding request goes to the same server address, so the answers all come
    from one address: they reach their sessions by transaction ID (routed by address alone, all
    but the last asker's were dropped by the wrong session and gathering failed for them)."""
    count = 20
    failed: list[IceEvent] = []

    async def main() -> tuple[int, dict[str, int]]:
        async with StunServer() as stun, UdpMux(HOST) as mux:
            listener = await stun.listen("udp", HOST, 0)
            config = AgentConfig(stun_servers=(listener.address,), gathering_timeout=2.0)
            sessions = [Connection(True, mux=mux, config=config) for _ in range(count)]
            for session in sessions:
                session.on_event = lambda event: failed.extend(
                    [event] if isinstance(event, GatheringFailed) else []
                )
            await asyncio.gather(*(session.gather_candidates() for session in sessions))
            metrics = mux.metrics()
            for session in sessions:
                await session.close()
            return stun.server.stats[Outcome.ANSWERED], metrics

    answered, metrics = run(main())
    assert answered >= count  # a retransmission may be answered too
    assert failed == []
    assert metrics["transactions"] == 0 and metrics["dropped_unknown_source"] == 0


def test_a_udp_turn_server_is_refused_on_a_mux_and_tcp_relays_work_for_every_session() -> None:
    """Over UDP every session on the mux would ask the TURN server from one address, which
    holds one allocation (RFC 8656 §2); over TCP each session has a connection of its own."""
    count = 3

    async def main() -> list[list[CandidateType]]:
        server, udp_port = await turn_server()
        tcp = await server.listen("tcp", HOST, 0)
        async with server, UdpMux(HOST) as mux:
            for refused in (
                {"turn_servers": [(HOST, udp_port, USER, PASSWORD)]},
                {"turn_servers": [(f"turn:{HOST}:{udp_port}", USER, PASSWORD)]},
                {
                    "config": AgentConfig(
                        turn_servers=(
                            RelayServer(
                                address=Address(HOST, udp_port), username=USER, password=PASSWORD
                            ),
                        )
                    )
                },
            ):
                with pytest.raises(LocalProtocolError, match=r"over UDP on a mux.*TCP or TLS"):
                    Connection(True, mux=mux, **refused)
            uri = f"turn:{HOST}:{tcp.address.port}?transport=tcp"
            sessions = [
                Connection(True, mux=mux, turn_servers=[(uri, USER, PASSWORD)])
                for _ in range(count)
            ]
            await asyncio.gather(*(session.gather_candidates() for session in sessions))
            types = [[c.type for c in session.local_candidates] for session in sessions]
            for session in sessions:
                await session.close()
            return types

    assert run(main()) == [[CandidateType.HOST, CandidateType.RELAYED]] * count
