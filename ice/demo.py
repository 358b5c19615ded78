"""``icestack demo``: two ICE agents connect and echo data, on loopback with the embedded STUN
server (:class:`LoopbackDemo`), or with ``--sim`` behind simulated NATs in virtual time
(:class:`SimulatedDemo`). With ``--turn`` they go through a TURN relay: on loopback, relay-only
through the embedded TURN server over TLS; on the simulated network, with a TURN server on the
WAN for each side, which is what two NATs that leave no direct path need (the demo says so when
it fails without one). :mod:`ice.cli` names the command; :mod:`ice.demo_options` adds its options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import secrets
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from stun._version import __version__
from stun.address import Address
from stun.aio import StunClient, StunServer, Transport, ipv6_loopback_available
from stun.cli_messages import format_table
from stun.errors import LocalProtocolError as StunLocalProtocolError
from stun.errors import StunError
from stun.explain import explain
from stun.server import LongTermCredentials
from stun.tls import CertificateFiles, client_context, server_context, temporary_self_signed
from turn.server import PeerPolicy, TurnServerConfig
from turn.server.aio import TurnServer

from .aio import Connection
from .candidate import CandidateType
from .checklist import PairState
from .connection_options import TurnServerArgument
from .demo_options import SIM_SEED
from .errors import IceConnectionError
from .events import CandidateGathered, DataReceived, IceEvent, PairStateChanged
from .narration import (
    ECHO_COUNT,
    PING,
    PONG,
    EchoResult,
    LiveView,
    describe_event,
    describe_pair,
    echo,
    milliseconds,
    sequence_of,
)
from .netsim import NatBehavior, Network
from .scenarios import (
    STUN_SERVER,
    TURN_SERVERS,
    Outcome,
    Side,
    pair_types,
    two_agents_behind_nats,
)

# =========================================================================== demo --sim


#: Virtual seconds after which a simulated run that neither connected nor failed gives up.
SIM_TIMEOUT = 60.0
#: Virtual seconds between one side's echo requests.
SIM_ECHO_INTERVAL = 0.100
#: What a simulated run that failed without TURN says: the NATs leave no direct path.
NO_DIRECT_PATH = "no direct path between these NATs: only a relay connects them (add --turn)"


class SimulatedDemo:
    """``demo --sim``: a :mod:`ice.scenarios` session narrated line by line, then a data echo.

    Each agent event becomes one line stamped with the virtual time (``emit``). Once both agents
    are connected, each side sends :data:`ECHO_COUNT` pings over its selected pair and the other
    side answers each with a pong; the round trips are measured on the virtual clock.
    """

    def __init__(
        self,
        nats: tuple[NatBehavior, NatBehavior],
        seed: int,
        emit: Callable[[str], None],
        *,
        turn: bool = False,
    ) -> None:
        self.nats = nats
        self.turn = turn
        self._emit = emit
        self.scenario = two_agents_behind_nats(*nats, seed, on_event=self._on_event, turn=turn)
        self.echoes = {side.name: EchoResult() for side in self.scenario.sides}
        #: When each (side, sequence) ping left, on the virtual clock.
        self._sent_at: dict[tuple[str, int], float] = {}
        self.outcome: Outcome | None = None

    @property
    def network(self) -> Network:
        return self.scenario.network

    def say(self, name: str, text: str) -> None:
        self._emit(f"[{self.network.now:8.3f}s] {name}  {text}")

    def run(self) -> Outcome:
        """Gather, signal, check, and echo; the outcome says whether it connected and how."""
        scenario = self.scenario
        for side, behavior in zip(scenario.sides, self.nats, strict=True):
            where = (
                "on the WAN" if behavior is NatBehavior.OPEN else f"behind a {behavior.value} NAT"
            )
            role = "controlling" if side.agent.controlling else "controlled"
            self.say(side.name, f"{role}, {', '.join(side.host.addresses)} {where}")
        servers = f"STUN server {STUN_SERVER}"
        if self.turn:
            servers += f", TURN servers {' and '.join(map(str, TURN_SERVERS))} (A's, B's)"
        self.say("*", f"{servers} on the WAN; gathering")
        scenario.gather()
        self.say("*", "signaling: ufrag, pwd and every candidate, both ways; checking")
        scenario.signal()
        scenario.start_checks()
        connected = scenario.wait_connected(SIM_TIMEOUT)
        self.outcome = scenario.outcome(connected)
        if not connected and not self.turn:
            self.say("*", NO_DIRECT_PATH)
        if connected:
            self.say("*", "connected; echoing data both ways")
            for side in scenario.sides:
                for sequence in range(ECHO_COUNT):
                    self.network.call_at(
                        self.network.now + SIM_ECHO_INTERVAL * sequence,
                        functools.partial(self._ping, side, sequence),
                    )
            self.network.run_until(self.echoed, 5.0)
        return self.outcome

    def echoed(self) -> bool:
        return all(len(echo.rtts) == ECHO_COUNT for echo in self.echoes.values())

    def _ping(self, side: Side, sequence: int) -> None:
        self._sent_at[side.name, sequence] = self.network.now
        self.echoes[side.name].sent += 1
        side.send(PING + str(sequence).encode())

    def _on_event(self, name: str, event: IceEvent) -> None:
        if isinstance(event, DataReceived):
            self._on_data(name, event)
            return
        line = describe_event(event)
        if line is not None:
            self.say(name, line)

    def _on_data(self, name: str, event: DataReceived) -> None:
        side = next(side for side in self.scenario.sides if side.name == name)
        if event.data.startswith(PING):
            side.send(PONG + event.data[len(PING) :])
            return
        if not event.data.startswith(PONG):
            return
        sent_at = self._sent_at.pop((name, sequence_of(event.data[len(PONG) :])), None)
        if sent_at is not None:
            echo = self.echoes[name]
            echo.rtts.append(self.network.now - sent_at)
            self.say(
                name, f"echo {len(echo.rtts)}/{ECHO_COUNT} back in {milliseconds(echo.rtts[-1])}"
            )

    def summary(self) -> str:
        """The table printed after the run."""
        outcome = self.outcome
        assert outcome is not None
        rows = [("nats", f"A {self.nats[0].value}, B {self.nats[1].value}")]
        if outcome.connected:
            rows.append(("result", f"connected in {outcome.connect_time:.3f} s (virtual)"))
            rows.append(("pair types", f"{outcome.pair_types} (A's local-remote)"))
            for name, pair in (("A", outcome.pair_a), ("B", outcome.pair_b)):
                assert pair is not None
                rows.append((f"{name} selected", describe_pair(pair)))
                check_rtt = "-" if pair.last_rtt is None else milliseconds(pair.last_rtt)
                rows.append((f"{name} check rtt", check_rtt))
            for name, echo in self.echoes.items():
                rows.append((f"{name} echo rtt", echo.describe()))
        else:
            rows.append(("result", "failed"))
            rows.append(("reason", outcome.failure_reason or "-"))
            if not self.turn:
                rows.append(("hint", NO_DIRECT_PATH))
        stats = self.network.stats
        drops = ", ".join(f"{r.name.lower()} {n}" for r, n in stats.dropped.items() if n)
        rows.append(
            (
                "network",
                f"{stats.sent} datagrams sent, {stats.delivered} delivered, "
                f"{stats.dropped_total} dropped{f' ({drops})' if drops else ''}",
            )
        )
        return format_table(rows)


def run_sim_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``icestack demo --sim NAT_A,NAT_B``: exit 0 when the agents connected and echoed."""
    nats: tuple[NatBehavior, NatBehavior] = args.sim
    seed = SIM_SEED if args.seed is None else args.seed
    print(
        f"icestack demo --sim {nats[0].value},{nats[1].value}: two ICE agents and a STUN server "
        f"on a simulated network, seed {seed}, virtual time",
        file=out,
    )
    print(file=out)
    demo = SimulatedDemo(nats, seed, lambda line: print(line, file=out), turn=args.turn)
    outcome = demo.run()
    print(file=out)
    print(demo.summary(), file=out)
    return 0 if outcome.connected and demo.echoed() else 1


# =========================================================================== demo (loopback)


async def probe_embedded_server(server: StunServer, view: LiveView) -> bool:
    """Open UDP, TCP and TLS (self-signed) listeners of ``server`` on IPv4 and IPv6 loopback,
    probe each with a Binding request and show a table; ``True`` when every probe was answered.
    The certificate is made and loaded in a temporary folder that is gone before the probes."""
    with temporary_self_signed() as files:
        server_side = server_context(files.certificate, files.private_key)
        client_side = client_context(files.certificate)
    hosts = ["127.0.0.1"]
    if ipv6_loopback_available():
        hosts.append("::1")
    targets: list[tuple[Transport, str, int]] = []
    for host in hosts:
        for transport in ("udp", "tcp", "tls"):
            listener = await server.listen(
                transport, host, 0, ssl_context=server_side if transport == "tls" else None
            )
            targets.append((transport, host, listener.address.port))
    for listener in server.listeners:
        view.say(f"  listening on {listener}")
    view.say("")
    rows: list[tuple[str, ...]] = []
    for transport, host, port in targets:
        try:
            async with await StunClient.connect(
                host, port, transport=transport, ssl_context=client_side
            ) as client:
                result = await client.binding()
            rows.append(
                (
                    transport,
                    str(result.server),
                    str(result.mapped_address),
                    milliseconds(result.rtt),
                    result.software or "-",
                )
            )
        except (StunError, OSError) as exc:
            target = str(Address(host, port))
            failure = explain(exc, target=target, transport=transport)
            rows.append((transport, target, f"failed: {failure}", "-", "-"))
    header = ("transport", "server", "mapped address", "rtt", "software")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        view.say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    failures = sum(1 for row in rows if row[2].startswith("failed"))
    view.say("")
    view.say(format_table([("probes", str(len(rows))), ("answered", str(len(rows) - failures))]))
    return not failures


#: How long each phase of the loopback demo may take (gathering, connecting, the echo).
DEMO_TIMEOUT = 10.0


@dataclass
class _DemoSide:
    """One connection of the loopback demo, with what the live view counts."""

    name: str
    connection: Connection
    candidates: int = 0
    pairs: dict[int, PairState] = field(default_factory=dict)
    echo: EchoResult | None = None


class LoopbackDemo:
    """``icestack demo``: two :class:`~ice.aio.Connection` objects on loopback, A controlling and
    B controlled, that learn server-reflexive candidates from the embedded STUN server, trickle
    their candidates to each other, connect, and echo data both ways, narrated by a
    :class:`LiveView`."""

    def __init__(
        self,
        view: LiveView,
        stun_servers: list[Address],
        turn_servers: list[TurnServerArgument] | None = None,
        cafile: Path | None = None,
    ) -> None:
        self.view = view
        hosts = [server.host for server in stun_servers]
        self.sides = [
            _DemoSide(
                name,
                Connection(
                    controlling=name == "A",
                    stun_servers=[(server.host, server.port) for server in stun_servers],
                    turn_servers=turn_servers,
                    relay_only=bool(turn_servers),
                    include_loopback=True,
                    interfaces=hosts,
                    turn_tls_cafile=cafile,
                ),
            )
            for name in ("A", "B")
        ]
        for side in self.sides:
            side.connection.on_event = functools.partial(self._on_event, side)
        self.connect_time: float | None = None
        self.failure: str | None = None

    def _on_event(self, side: _DemoSide, event: IceEvent) -> None:
        if isinstance(event, CandidateGathered):
            side.candidates += 1
        elif isinstance(event, PairStateChanged):
            side.pairs[id(event.pair)] = event.pair.state
        text = describe_event(event)
        if text is not None:
            self.view.line(f"{side.name}  {text}")
        self._update_status()

    def _update_status(self) -> None:
        parts = []
        for side in self.sides:
            states = list(side.pairs.values())
            succeeded = states.count(PairState.SUCCEEDED)
            parts.append(
                f"{side.name} {side.connection.state.value}: {side.candidates} candidates, "
                f"{succeeded}/{len(states)} pairs succeeded"
            )
        self.view.set_status(" | ".join(parts))

    async def run(self) -> bool:
        """Gather, trickle, connect and echo; ``True`` when both sides connected and echoed."""
        a, b = (side.connection for side in self.sides)
        a.set_remote_credentials(b.local_username, b.local_password)
        b.set_remote_credentials(a.local_username, a.local_password)
        started = time.monotonic()
        try:
            async with asyncio.timeout(DEMO_TIMEOUT):
                await asyncio.gather(_trickle(a, b), _trickle(b, a), a.connect(), b.connect())
        except (IceConnectionError, TimeoutError) as exc:
            self.failure = str(exc) or f"not connected within {DEMO_TIMEOUT:.0f} s"
            return False
        self.connect_time = time.monotonic() - started
        self.view.line("*  connected; echoing data both ways")
        try:
            async with asyncio.timeout(DEMO_TIMEOUT):
                echoes = await asyncio.gather(*(self._echo(side) for side in self.sides))
        except (IceConnectionError, TimeoutError) as exc:
            self.failure = f"the echo stopped: {exc or 'timed out'}"
            return False
        for side, result in zip(self.sides, echoes, strict=True):
            side.echo = result
        return all(len(result.rtts) == ECHO_COUNT for result in echoes)

    async def _echo(self, side: _DemoSide) -> EchoResult:
        def show(sequence: int, rtt: float) -> None:
            self.view.line(
                f"{side.name}  echo {sequence + 1}/{ECHO_COUNT} back in {milliseconds(rtt)}"
            )

        return await echo(side.connection, ECHO_COUNT, on_rtt=show)

    def summary(self) -> str:
        rows = []
        if self.connect_time is not None:
            rows.append(("result", f"connected in {milliseconds(self.connect_time)}"))
            a_pair = self.sides[0].connection.selected_pair()
            if a_pair is not None:
                rows.append(("pair types", f"{pair_types(a_pair)} (A's local-remote)"))
            a_stats = [s for s in self.sides[0].connection.stats() if s.selected]
            if a_stats and a_stats[0].relay_protocol is not None:
                relay = f"through the embedded TURN server over {a_stats[0].relay_protocol}"
                rows.append(("relay", relay))
            for side in self.sides:
                pair = side.connection.selected_pair()
                rows.append((f"{side.name} selected", "-" if pair is None else describe_pair(pair)))
                rtt = None if pair is None else pair.last_rtt
                rows.append((f"{side.name} check rtt", "-" if rtt is None else milliseconds(rtt)))
            for side in self.sides:
                if side.echo is not None:
                    rows.append((f"{side.name} echo rtt", side.echo.describe()))
        if self.failure is not None:
            if self.connect_time is None:
                rows.append(("result", "failed"))
            rows.append(("reason", self.failure))
        return format_table(rows)

    async def close(self) -> None:
        for side in self.sides:
            await side.connection.close()


async def _trickle(source: Connection, target: Connection) -> None:
    """In-process signaling: each of ``source``'s candidates to ``target`` as it is gathered,
    then end-of-candidates (RFC 8838)."""
    async for candidate in source.trickle_candidates():
        await target.add_remote_candidate(candidate)
    await target.add_remote_candidate(None)


async def embedded_turn_server(
    stack: contextlib.AsyncExitStack, hosts: list[str], files: CertificateFiles, view: LiveView
) -> list[TurnServerArgument]:
    """``demo --turn``: our TURN server on the loopback ``hosts`` until ``stack`` closes, over TLS
    only with the certificate of ``files``, and a throw-away user; the ``turn_servers`` to give
    the connections."""
    password = secrets.token_urlsafe(12)
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords("icestack", {"demo": password}),
        peer_policy=PeerPolicy(allow_loopback_peers=True),
    )
    server = await stack.enter_async_context(TurnServer(config, relay_hosts=hosts))
    tls = server_context(files.certificate, files.private_key)
    uris = []
    for host in hosts:
        listener = await server.listen("tls", host, 0, ssl_context=tls)
        shown = f"[{host}]" if ":" in host else host
        uris.append(f"turns:{shown}:{listener.address.port}")
        view.say(f"  TURN server listening on tls {listener.address}")
    return [(uri, "demo", password) for uri in uris]


def loopback_problem() -> str | None:
    """Why this host cannot talk to itself on 127.0.0.1 (its loopback interface is down, as in
    a fresh network namespace), or ``None``: one datagram sent to a socket of its own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", 0))
            probe.sendto(b"", probe.getsockname())
        except OSError as exc:
            return (
                "the loopback interface is down: this host cannot send to itself (127.0.0.1: "
                f"{exc.strerror or exc}); the demo runs on loopback only: bring it up "
                "(ip link set lo up)"
            )
    return None


async def run_loopback_demo(out: TextIO = sys.stdout, turn: bool = False) -> int:
    """``icestack demo``: the embedded STUN server on loopback, probed over every transport, then
    two ICE connections through it — or with ``turn``, relay-only through the embedded TURN
    server over TLS. Works with no network at all, but loopback: without it, one line says so and
    the exit status is 1."""
    problem = loopback_problem()
    if problem is not None:
        print(f"icestack: error: {problem}", file=sys.stderr)
        return 1
    view = LiveView(out)
    view.say(f"icestack {__version__} demo: the embedded STUN server and two ICE agents, loopback")
    view.say("")
    view.say("1. The STUN server, probed over every transport")
    async with StunServer() as server, contextlib.AsyncExitStack() as turn_stack:
        answered = await probe_embedded_server(server, view)
        stun_servers = [
            listener.address for listener in server.listeners if listener.transport == "udp"
        ]
        hosts = ", ".join(a.host for a in stun_servers)
        view.say("")
        if turn:
            view.say(
                f"2. ICE through a relay: A (controlling) and B (controlled) gather on {hosts} "
                "relayed candidates only, from the embedded TURN server over TLS, trickle them "
                "to each other, check, and echo data"
            )
            with temporary_self_signed() as files:
                relays = await embedded_turn_server(
                    turn_stack, [a.host for a in stun_servers], files, view
                )
                demo = LoopbackDemo(view, stun_servers, relays, files.certificate)
            # The certificate's folder is gone: the connections loaded it when they were made.
        else:
            view.say(
                f"2. ICE: A (controlling) and B (controlled) gather on {hosts} with that server, "
                "trickle candidates to each other, check, and echo data"
            )
            demo = LoopbackDemo(view, stun_servers)
        spinner = asyncio.ensure_future(view.spin())
        try:
            connected = await demo.run()
        finally:
            spinner.cancel()
            view.close()
            await demo.close()
    if not turn and not any(
        c.type is CandidateType.SERVER_REFLEXIVE
        for side in demo.sides
        for c in side.connection.local_candidates
    ):
        view.say(
            "   (the STUN server maps a loopback socket to itself: server-reflexive candidates "
            "equal the host ones and are dropped as redundant, RFC 8445 §5.1.3)"
        )
    view.say("")
    view.say(demo.summary())
    return 0 if answered and connected else 1


def run_demo(args: argparse.Namespace) -> int:
    """``icestack demo``: on loopback, or with ``--sim`` on the simulated network."""
    if args.sim:
        return run_sim_demo(args)
    if args.seed is not None:
        raise StunLocalProtocolError(
            "--seed is the simulated network's: add --sim NAT_A,NAT_B (the loopback demo has no "
            "seed)"
        )
    return asyncio.run(run_loopback_demo(turn=args.turn))
