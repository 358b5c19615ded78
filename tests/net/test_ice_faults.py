"""Faults in real time: ice.Connection on loopback with real sockets, our own TurnServer and
StunServer, and a peer process (:mod:`tests.net.ice_peer`) that the test kills by its PID.

Each fault must end in the right state with the right reason, and data must flow again after a
restart wherever a path exists. Timers are short because the agent's config says so (consent
every ~0.2 s, check transactions of two requests); nothing here asserts a duration: every wait is
bounded generously (``asyncio.wait_for``) so that only a hang could reach a bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import ice
from ice.config import AgentConfig
from ice.events import CandidateLost, ConsentLost, IceEvent, IceState, SelectedPairChanged
from ice.mdns import MDNS_PORT, CandidateUnresolvable
from stun.aio import StunServer
from stun.server import LongTermCredentials
from stun.transaction import TransactionConfig
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

from .loopback import NO_PROC, own_udp_ports, run, udp_socket

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
USER, PASSWORD = "alice", "wonderland-relay"
#: Consent on a short clock: a check every ~0.2 s, disconnected after 0.6 s, lost after 2 s.
BRIEF = {"consent_interval": 0.2, "disconnected_after": 0.6, "consent_timeout": 2.0}
#: Checks of two requests and one RTO: a dead pair fails in about a second.
QUICK_CHECKS = TransactionConfig(max_requests=2, final_wait=1)
#: The generous bound on any single wait of a test (a hang, not slowness, reaches it).
WAIT = 15.0


def config(**options: Any) -> AgentConfig:
    return AgentConfig(check_transaction=QUICK_CHECKS, **{**BRIEF, **options})


def connection(controlling: bool, **options: Any) -> ice.Connection:
    return ice.Connection(
        controlling, include_loopback=True, interfaces=[LOOPBACK], use_ipv6=False, **options
    )


async def signal_to(target: ice.Connection, source: ice.Connection) -> None:
    """``target`` learns ``source``'s credentials, candidates and end-of-candidates."""
    target.set_remote_credentials(source.local_username, source.local_password)
    for candidate in source.local_candidates:
        await target.add_remote_candidate(ice.Candidate.from_sdp(candidate.to_sdp()))
    await target.add_remote_candidate(None)


async def exchange(a: ice.Connection, b: ice.Connection) -> None:
    await signal_to(a, b)
    await signal_to(b, a)


async def connect(a: ice.Connection, b: ice.Connection) -> None:
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), WAIT)


async def round_trip(a: ice.Connection, b: ice.Connection, payload: bytes) -> None:
    await a.send(payload)
    assert await asyncio.wait_for(b.recv(), WAIT) == payload
    await b.send(payload + b" back")
    assert await asyncio.wait_for(a.recv(), WAIT) == payload + b" back"


def turn_config() -> TurnServerConfig:
    return TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack", {USER: PASSWORD}),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )


async def turn_server(port: int = 0) -> tuple[TurnServer, int]:
    server = TurnServer(turn_config(), relay_hosts=[LOOPBACK])
    listener = await server.listen("udp", LOOPBACK, port)
    return server, listener.address.port


def relay_only(controlling: bool, port: int, password: str = PASSWORD, **options: Any) -> Any:
    return connection(
        controlling,
        turn_servers=[(LOOPBACK, port, USER, password)],
        relay_only=True,
        config=config(**options),
    )


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The INFO lines of the ``icestack.ice`` logger."""
    return [
        r.getMessage()
        for r in caplog.records
        if (r.name, r.levelno) == ("icestack.ice", logging.INFO)
    ]


def recorder(target: ice.Connection) -> list[IceEvent]:
    events: list[IceEvent] = []
    target.on_event = events.append
    return events


def of_type(events: Iterable[IceEvent], kind: type[IceEvent]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


# --------------------------------------------------------------------------- no pair at all


def test_end_of_candidates_without_candidates_ends_connect_with_the_reason() -> None:
    async def scenario() -> str:
        async with connection(True, config=config(peer_reflexive_wait=0.5)) as a:
            await a.gather_candidates()
            a.set_remote_credentials("peer", "peer-password-peer-password")
            await a.add_remote_candidate(None)
            with pytest.raises(ice.IceConnectionError) as failure:
                await asyncio.wait_for(a.connect(), WAIT)
            assert a.state is IceState.FAILED
            return str(failure.value)

    assert "no remote candidates" in run(scenario())


def test_relay_only_refused_by_its_turn_server_ends_connect_with_the_401(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[str, str]:
        server, port = await turn_server()
        async with server:
            refused = relay_only(True, port, password="not-the-password")
            other = connection(False, config=config(peer_reflexive_wait=0.5))
            async with refused, other:
                await asyncio.gather(refused.gather_candidates(), other.gather_candidates())
                assert refused.local_candidates == []  # the host candidate is never signalled
                await exchange(refused, other)
                reasons = []
                for side in (refused, other):
                    with pytest.raises(ice.IceConnectionError) as failure:
                        await asyncio.wait_for(side.connect(), WAIT)
                    reasons.append(str(failure.value))
                return reasons[0], reasons[1]

    with caplog.at_level(logging.INFO, logger="icestack.ice"):
        ours, theirs = run(scenario())
    assert "no relayed candidate" in ours and "401" in ours
    assert "no remote candidates" in theirs
    lines = logged(caplog)
    assert [line for line in lines if line.startswith("gathering:")] == [
        line for line in lines if line.startswith("gathering: no candidate from") and "401" in line
    ]
    assert f"ICE failed: {ours.removeprefix('ICE failed: ')}" in lines
    assert f"ICE failed: {theirs.removeprefix('ICE failed: ')}" in lines


def test_relay_only_with_a_dead_turn_server_gathers_and_fails_in_bounded_time() -> None:
    async def scenario() -> str:
        with udp_socket(LOOPBACK) as silent:  # bound, never answers: a dead TURN server
            port = silent.getsockname()[1]
            dead = relay_only(True, port, gathering_timeout=0.5)
            other = connection(False, config=config(peer_reflexive_wait=0.5))
            async with dead, other:
                events = recorder(dead)
                await asyncio.wait_for(
                    asyncio.gather(dead.gather_candidates(), other.gather_candidates()), WAIT
                )
                assert [type(e).__name__ for e in events][-2:] == [
                    "GatheringFailed",
                    "GatheringCompleted",
                ]
                await exchange(dead, other)
                with pytest.raises(ice.IceConnectionError) as failure:
                    await asyncio.wait_for(dead.connect(), WAIT)
                return str(failure.value)

    assert "no answer to Allocate" in run(scenario())


def test_relay_only_sends_nothing_to_its_stun_server() -> None:
    async def scenario() -> int:
        server, port = await turn_server()
        async with server, StunServer() as stun:
            listener = await stun.listen("udp", LOOPBACK, 0)
            stun_servers = [(LOOPBACK, listener.address.port)]
            a, b = (relay_only(c, port, stun_servers=stun_servers) for c in (True, False))
            async with a, b:
                await asyncio.gather(a.gather_candidates(), b.gather_candidates())
                await exchange(a, b)
                await connect(a, b)
                await round_trip(a, b, b"\x80relayed only")
            return sum(stun.server.stats.counts.values())

    assert run(scenario()) == 0


@pytest.mark.skipif(NO_PROC is not None, reason=NO_PROC or "")
def test_relay_only_stays_off_the_local_link_and_hides_the_address_the_turn_server_saw() -> None:
    """Relay-only sends nothing but to the TURN servers: no mDNS socket, not even to resolve a
    peer's ``.local`` candidate or to publish hidden host names (it says so at once, without
    waiting for an answer). Its relayed candidates' raddr is 0.0.0.0 port 0, not the address
    the TURN server saw us at."""
    events: list[IceEvent] = []

    async def scenario() -> None:
        server, port = await turn_server()
        async with server:
            relayed = {"turn_servers": [(LOOPBACK, port, USER, PASSWORD)], "relay_only": True}
            a = connection(True, config=config(), mdns_timeout=30.0, **relayed)
            b = connection(False, config=config(), mdns_hide_host_candidates=True, **relayed)
            a.on_event = events.append
            async with a, b:
                await asyncio.gather(a.gather_candidates(), b.gather_candidates())
                name = "0b5a7c1e-0000-4000-8000-000000000000.local"
                await a.add_remote_candidate(
                    ice.Candidate.from_sdp(f"1 1 udp 2130706431 {name} 9 typ host")
                )
                (unresolvable,) = of_type(events, CandidateUnresolvable)
                assert "relay-only" in unresolvable.reason
                assert MDNS_PORT not in own_udp_ports()
                for side in (a, b):
                    for candidate in side.local_candidates:
                        assert candidate.type is ice.CandidateType.RELAYED
                        assert candidate.related_address == ("0.0.0.0", 0)
                        assert "raddr 0.0.0.0 rport 0" in candidate.to_sdp()
                await exchange(a, b)
                await connect(a, b)
                await round_trip(a, b, b"\x80relayed, and nothing on the link")
                assert MDNS_PORT not in own_udp_ports()

    run(scenario())


def _private_namespace_problem() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "a private network and mount namespace needs root on Linux"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip are needed"
    return None


NO_PRIVATE_NAMESPACE = _private_namespace_problem()


@pytest.mark.skipif(NO_PRIVATE_NAMESPACE is not None, reason=str(NO_PRIVATE_NAMESPACE))
def test_a_resolver_that_never_answers_does_not_hold_gathering(tmp_path: Path) -> None:
    """A STUN server's name goes to a DNS server that never answers, with resolver timeouts of
    150 s: gathering used to wait for them. Now the name gets ``gathering_timeout`` (0.5 s), is
    skipped with a warning that says so, and the server given by address is asked meanwhile.
    Runs in a private network and mount namespace (``unshare``), so the resolv.conf and the
    silent DNS server there touch nothing else."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:5\n")
    inner = (
        f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} -m tests.net.silent_resolver_peer"
    )
    completed = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", inner],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # the old sequential resolution took 150 s here
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    assert report["warnings"] == [
        "STUN server stun.unresolvable.test:3478 skipped: 'stun.unresolvable.test' was not "
        "resolved within 0.5 s (gathering_timeout)"
    ]
    assert report["asked"] >= 1


# --------------------------------------------------------------------------- the peer dies


@asynccontextmanager
async def peer_process(**options: Any) -> AsyncIterator[tuple[asyncio.subprocess.Process, Any]]:
    """A controlled :mod:`tests.net.ice_peer` process and its description; ended by its PID."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.net.ice_peer",
        "--controlled",
        "--config",
        json.dumps({**BRIEF, **options}),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        description = json.loads(await asyncio.wait_for(process.stdout.readline(), WAIT))
        yield process, description
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()


async def introduce(ours: ice.Connection, process: asyncio.subprocess.Process, theirs: Any) -> None:
    """Both sides learn each other: ``theirs`` is the peer process's description."""
    await ours.gather_candidates()
    assert process.stdin is not None
    description = {
        "ufrag": ours.local_username,
        "pwd": ours.local_password,
        "candidates": [c.to_sdp() for c in ours.local_candidates],
    }
    process.stdin.write(json.dumps(description).encode() + b"\n")
    await process.stdin.drain()
    await learn(ours, theirs)


async def learn(ours: ice.Connection, theirs: Any) -> None:
    """Our side learns the peer process's description."""
    ours.set_remote_credentials(theirs["ufrag"], theirs["pwd"])
    for line in theirs["candidates"]:
        await ours.add_remote_candidate(ice.Candidate.from_sdp(line))
    await ours.add_remote_candidate(None)


def kill(process: asyncio.subprocess.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)


def test_a_killed_peer_process_ends_in_consent_loss(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[str, list[IceEvent]]:
        async with peer_process() as (process, theirs), connection(True, config=config()) as a:
            events = recorder(a)
            await introduce(a, process, theirs)
            await asyncio.wait_for(a.connect(), WAIT)
            await a.send(b"\x80ping")
            assert await asyncio.wait_for(a.recv(), WAIT) == b"\x80ping"  # echoed
            kill(process)
            assert await asyncio.wait_for(process.wait(), WAIT) == -signal.SIGKILL
            with pytest.raises(ice.IceConnectionError) as failure:
                await asyncio.wait_for(a.recv(), WAIT)
            assert a.state is IceState.FAILED
            assert "consent" in a.failure_reason()
            return str(failure.value), events

    with caplog.at_level(logging.INFO, logger="icestack.ice"):
        reason, events = run(scenario(), timeout=2 * WAIT)
    assert "consent" in reason
    assert len(of_type(events, ConsentLost)) == 1
    (failed,) = [line for line in logged(caplog) if line.startswith("ICE failed")]
    assert failed.startswith("ICE failed: consent to send on component 1 was lost (RFC 7675)")


def test_a_peer_killed_while_checking_ends_connect_with_the_reason() -> None:
    async def scenario() -> str:
        async with peer_process() as (process, theirs), connection(True, config=config()) as a:
            kill(process)
            await asyncio.wait_for(process.wait(), WAIT)
            await a.gather_candidates()
            await learn(a, theirs)
            with pytest.raises(ice.IceConnectionError) as failure:
                await asyncio.wait_for(a.connect(), WAIT)
            return str(failure.value)

    reason = run(scenario(), timeout=2 * WAIT)
    assert "timed out" in reason and "the peer stopped" in reason


# --------------------------------------------------------------------------- the TURN server dies


def test_a_turn_server_restarted_on_its_port_ends_the_allocation_then_restart_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[list[IceEvent], str]:
        server, port = await turn_server()
        a, b = relay_only(True, port), relay_only(False, port)
        try:
            async with a, b:
                events = recorder(a)
                await asyncio.gather(a.gather_candidates(), b.gather_candidates())
                await exchange(a, b)
                await connect(a, b)
                await round_trip(a, b, b"\x80before")
                await server.close()  # the TURN server dies and comes back, knowing nobody
                server, _ = await turn_server(port)
                with pytest.raises(ice.IceConnectionError) as failure:
                    await asyncio.wait_for(b.recv(), WAIT)
                await asyncio.wait_for(until_state(a, IceState.FAILED), WAIT)
                reason = a.failure_reason()
                assert a.selected_pair() is None
                assert a.local_candidates == []  # the lost relayed candidate is offered no more
                await asyncio.wait_for(asyncio.gather(a.restart(), b.restart()), WAIT)
                assert [c.type.value for c in a.local_candidates] == ["relay"]
                await exchange(a, b)
                await connect(a, b)
                await round_trip(a, b, b"\x80after")
                assert len(server.core.table) == 2  # both allocated again on the new server
                assert "437" in str(failure.value)
                return events, reason
        finally:
            await server.close()

    with caplog.at_level(logging.INFO, logger="icestack.ice"):
        events, reason = run(scenario(), timeout=3 * WAIT)
    assert reason.startswith("component 1 lost its only path") and "437" in reason
    lines = logged(caplog)
    lost = [line for line in lines if line.startswith("relay candidate") and "lost" in line]
    assert len(lost) == 2 and all("437" in line for line in lost)  # A's and B's
    assert lines.count(f"ICE failed: {reason}") == 2
    (lost,) = of_type(events, CandidateLost)
    assert lost.candidate.type.value == "relay" and "437" in lost.reason
    assert not of_type(events, ConsentLost)  # the allocation's end, not consent, said it


def test_a_dead_turn_server_ends_in_consent_loss() -> None:
    async def scenario() -> str:
        server, port = await turn_server()
        a, b = relay_only(True, port), relay_only(False, port)
        async with a, b:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            await exchange(a, b)
            await connect(a, b)
            await server.close()  # and it stays dead: the allocation probe gets no answer
            with pytest.raises(ice.IceConnectionError) as failure:
                await asyncio.wait_for(a.recv(), WAIT)
            assert a.state is IceState.FAILED
            return str(failure.value)

    assert "consent" in run(scenario(), timeout=2 * WAIT)


# --------------------------------------------------------------------------- stalls, restarts


async def until_state(target: ice.Connection, *states: IceState) -> None:
    while target.state not in states:
        await asyncio.sleep(0.01)


def stall_the_loop(seconds: float) -> None:
    """Block the event loop, as a CPU-bound callback or a blocking call would."""
    time.sleep(seconds)


def test_a_three_second_stall_shorter_than_consent_is_survived() -> None:
    async def scenario() -> list[IceEvent]:
        patient = {"disconnected_after": 1.0, "consent_timeout": 8.0}
        peer = peer_process(**patient)
        async with peer as (process, theirs), connection(True, config=config(**patient)) as a:
            events = recorder(a)
            await introduce(a, process, theirs)
            await asyncio.wait_for(a.connect(), WAIT)
            await a.send(b"\x80echoed while we stall")
            stall_the_loop(3.0)  # the peer goes on; its echo waits in our socket
            assert await asyncio.wait_for(a.recv(), WAIT) == b"\x80echoed while we stall"
            await asyncio.wait_for(until_state(a, IceState.COMPLETED), WAIT)
            await a.send(b"\x80after the stall")
            assert await asyncio.wait_for(a.recv(), WAIT) == b"\x80after the stall"
            assert process.returncode is None  # the peer's consent held too
            assert a.state is IceState.COMPLETED
            return events

    events = run(scenario(), timeout=3 * WAIT)
    # Whether "disconnected" shows for a moment depends on whether the loop, waking from the
    # stall, runs the consent timer before it reads the answers that waited in the socket:
    # asyncio's order, not ours. What must hold is that the stall cost nothing.
    assert not of_type(events, ConsentLost)


def test_a_stall_longer_than_consent_fails_both_and_a_restart_reconnects() -> None:
    async def scenario() -> tuple[str, str]:
        async with connection(True, config=config()) as a, connection(False, config=config()) as b:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            await exchange(a, b)
            await connect(a, b)
            stall_the_loop(3.0)  # longer than the 2 s consent timeout, for both
            waiting = asyncio.gather(a.recv(), b.recv(), return_exceptions=True)
            outcomes = await asyncio.wait_for(waiting, WAIT)
            assert all(isinstance(o, ice.IceConnectionError) for o in outcomes)
            reasons = a.failure_reason(), b.failure_reason()
            await restart_and_reconnect(a, b)
            return reasons

    for reason in run(scenario(), timeout=3 * WAIT):
        assert reason.startswith("consent to send on component 1 was lost")


async def restart_and_reconnect(a: ice.Connection, b: ice.Connection) -> None:
    old = a.selected_pair(), b.selected_pair()
    await asyncio.wait_for(asyncio.gather(a.restart(), b.restart()), WAIT)
    assert a.state is not IceState.COMPLETED  # the dead pair concludes nothing now
    await exchange(a, b)
    await connect(a, b)
    assert (a.selected_pair(), b.selected_pair()) != old
    await round_trip(a, b, b"\x80after the restart")


def test_restart_after_consent_was_lost_to_a_restarted_peer() -> None:
    """B restarts alone: A's consent checks carry B's old ufrag and are refused, so A loses
    consent; then A restarts too, and the two connect again."""

    async def scenario() -> tuple[str, list[IceEvent]]:
        async with connection(True, config=config()) as a, connection(False, config=config()) as b:
            events = recorder(a)
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            await exchange(a, b)
            await connect(a, b)
            await asyncio.wait_for(b.restart(), WAIT)
            with pytest.raises(ice.IceConnectionError, match="consent"):
                await asyncio.wait_for(a.recv(), WAIT)
            reason = a.failure_reason()
            events.clear()
            await asyncio.wait_for(a.restart(), WAIT)
            assert a.state is IceState.CHECKING  # not completed: the dead pair counts for nothing
            await exchange(a, b)
            await connect(a, b)
            await round_trip(a, b, b"\x80reconnected")
            return reason, events

    reason, events = run(scenario(), timeout=3 * WAIT)
    assert reason.startswith("consent to send on component 1 was lost")
    assert len(of_type(events, SelectedPairChanged)) == 1
