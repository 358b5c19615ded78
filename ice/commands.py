"""The ICE commands of the ``icestack`` CLI: ``demo`` (on loopback, or ``--sim`` on the simulated
network) and ``ice offer`` / ``ice answer`` (two terminals, one line of signaling each way).

:mod:`ice.cli` assembles the parser; :func:`add_demo_command` and :func:`add_ice_command` add these.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from stun._version import __version__
from stun.address import Address
from stun.aio import StunClient, StunServer, Transport, ipv6_loopback_available, resolve
from stun.cli import format_table, main_error, server_address
from stun.cli import parse_seconds as seconds
from stun.errors import LocalProtocolError as StunLocalProtocolError
from stun.errors import StunError
from stun.explain import explain
from stun.probe import DEFAULT_PUBLIC_SERVER
from stun.tls import client_context, server_context, temporary_self_signed

from .aio import Connection, interface_addresses
from .candidate import Candidate, CandidateType, IceDescription
from .checklist import CandidatePair, PairState
from .errors import DecodeError, IceConnectionError, LocalProtocolError, UnsupportedCandidateError
from .events import (
    CandidateGathered,
    DataReceived,
    GatheringCompleted,
    GatheringFailed,
    IceEvent,
    PairStateChanged,
    RemoteCandidateLearned,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
)
from .netsim import NatBehavior, Network
from .scenarios import STUN_SERVER, Outcome, Side, pair_types, two_agents_behind_nats

#: The NAT names ``demo --sim`` accepts, in netsim's spelling.
NAT_NAMES = tuple(behavior.value for behavior in NatBehavior)
#: How many echo round trips each side makes once connected.
ECHO_COUNT = 3
#: Application data of the echo: first bytes above 3, so never taken for STUN (RFC 7983).
_PING = b"ping "
_PONG = b"pong "
_DONE = b"done"


def nat_pair(text: str) -> tuple[NatBehavior, NatBehavior]:
    """Parse ``NAT_A,NAT_B`` (an argparse ``type``: a bad name exits 2 with the valid ones)."""
    names = text.split(",")
    if len(names) != 2:
        raise argparse.ArgumentTypeError(
            f"want NAT_A,NAT_B, got {text!r}; NAT names: {', '.join(NAT_NAMES)}"
        )
    try:
        first, second = (NatBehavior.parse(name) for name in names)
    except LocalProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return first, second


def describe_pair(pair: CandidatePair) -> str:
    """``srflx 203.0.113.1:40000 -> host 198.51.100.2:50000``: the candidate types and addresses."""
    return f"{pair.local.type} {pair.local.address} -> {pair.remote.type} {pair.remote.address}"


def describe_candidate(candidate: Candidate) -> str:
    related = f" (base {candidate.related_address})" if candidate.related_address else ""
    return f"{candidate.type} {candidate.address}{related}"


def describe_event(event: IceEvent) -> str | None:
    """One log line for an agent event, or ``None`` for events the demo does not show."""
    if isinstance(event, CandidateGathered):
        return f"candidate {describe_candidate(event.candidate)}"
    if isinstance(event, GatheringFailed):
        return f"no srflx from {event.server} via {event.base}: {event.reason}"
    if isinstance(event, GatheringCompleted):
        return "gathering complete"
    if isinstance(event, RemoteCandidateLearned):
        return f"learnt peer-reflexive remote {event.candidate.address}"
    if isinstance(event, PairStateChanged):
        pair = event.pair
        nominated = ", nominated" if pair.nominated else ""
        return f"pair {describe_pair(pair)}: {pair.state.value}{nominated}"
    if isinstance(event, SelectedPairChanged):
        return f"selected {describe_pair(event.pair)}"
    if isinstance(event, RoleChanged):
        return f"role conflict: now {'controlling' if event.controlling else 'controlled'}"
    if isinstance(event, StateChanged):
        return f"state {event.state.value}"
    return None


def milliseconds(duration: float) -> str:
    return f"{duration * 1000:.2f} ms"


@dataclass
class EchoResult:
    """The round trips one side measured: ``rtts`` of the pings answered, out of ``sent``."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)

    def describe(self) -> str:
        if not self.rtts:
            return f"no answer to {self.sent} pings"
        rtts = sorted(self.rtts)
        return (
            f"{milliseconds(sum(rtts) / len(rtts))} mean, {milliseconds(rtts[0])} min, "
            f"{milliseconds(rtts[-1])} max ({len(rtts)}/{self.sent} answered)"
        )


def _sequence(text: bytes) -> int:
    """The number in a ping or pong (-1 when there is none)."""
    return int(text) if text.isdigit() else -1


# =========================================================================== demo --sim


#: Virtual seconds after which a simulated run that neither connected nor failed gives up.
SIM_TIMEOUT = 60.0
#: Virtual seconds between one side's echo requests.
SIM_ECHO_INTERVAL = 0.100


class SimulatedDemo:
    """``demo --sim``: a :mod:`ice.scenarios` session narrated line by line, then a data echo.

    Each agent event becomes one line stamped with the virtual time (``emit``). Once both agents
    are connected, each side sends :data:`ECHO_COUNT` pings over its selected pair and the other
    side answers each with a pong; the round trips are measured on the virtual clock.
    """

    def __init__(
        self, nats: tuple[NatBehavior, NatBehavior], seed: int, emit: Callable[[str], None]
    ) -> None:
        self.nats = nats
        self._emit = emit
        self.scenario = two_agents_behind_nats(*nats, seed, on_event=self._on_event)
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
        self.say("*", f"STUN server {STUN_SERVER} on the WAN; gathering")
        scenario.gather()
        self.say("*", "signaling: ufrag, pwd and every candidate, both ways; checking")
        scenario.signal()
        scenario.start_checks()
        connected = scenario.wait_connected(SIM_TIMEOUT)
        self.outcome = scenario.outcome(connected)
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
        side.send(_PING + str(sequence).encode())

    def _on_event(self, name: str, event: IceEvent) -> None:
        if isinstance(event, DataReceived):
            self._on_data(name, event)
            return
        line = describe_event(event)
        if line is not None:
            self.say(name, line)

    def _on_data(self, name: str, event: DataReceived) -> None:
        side = next(side for side in self.scenario.sides if side.name == name)
        if event.data.startswith(_PING):
            side.send(_PONG + event.data[len(_PING) :])
            return
        if not event.data.startswith(_PONG):
            return
        sent_at = self._sent_at.pop((name, _sequence(event.data[len(_PONG) :])), None)
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
    print(
        f"icestack demo --sim {nats[0].value},{nats[1].value}: two ICE agents and a STUN server "
        f"on a simulated network, seed {args.seed}, virtual time",
        file=out,
    )
    print(file=out)
    demo = SimulatedDemo(nats, args.seed, lambda line: print(line, file=out))
    outcome = demo.run()
    print(file=out)
    print(demo.summary(), file=out)
    return 0 if outcome.connected and demo.echoed() else 1


# =========================================================================== live view, echo


#: The frames of the spinner a live view shows on a terminal.
SPINNER = "|/-\\"


class LiveView:
    """Log lines, plus a status line with a spinner under them when ``out`` is a terminal.

    On a terminal the status line is redrawn in place (carriage return, erase line) every
    ``interval`` seconds while :meth:`spin` runs; elsewhere (a pipe, a CI log) only the log lines
    are written, so captured output stays clean.
    """

    def __init__(self, out: TextIO, *, live: bool | None = None, interval: float = 0.1) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.interval = interval
        self.status = ""
        self._frame = 0
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def line(self, text: str) -> None:
        """Write one log line stamped with the seconds since the view started."""
        self._write(f"[{self.elapsed():8.3f}s] {text}\n")

    def say(self, text: str) -> None:
        """Write one plain line."""
        self._write(text + "\n")

    def set_status(self, text: str) -> None:
        self.status = text
        if self.live:
            self._write("")

    def _write(self, text: str) -> None:
        if self.live:
            text = "\r\x1b[K" + text
            if self.status:
                # Cut to the terminal's width: a wrapped status line could not be redrawn.
                width = shutil.get_terminal_size().columns - 1
                text += f"{SPINNER[self._frame % len(SPINNER)]} {self.status}"[:width]
        self.out.write(text)
        self.out.flush()

    async def spin(self) -> None:
        """Turn the spinner until cancelled (does nothing off a terminal)."""
        if not self.live:
            return
        while True:
            await asyncio.sleep(self.interval)
            self._frame += 1
            self._write("")

    def close(self) -> None:
        """Erase the status line."""
        if self.live:
            self.status = ""
            self._write("")


async def echo(
    connection: Connection,
    count: int,
    *,
    patience: float = 1.0,
    on_rtt: Callable[[int, float], None] | None = None,
) -> EchoResult:
    """Measure ``count`` round trips over ``connection`` while answering the peer's own pings.

    Both sides run this at once. Each ping waits up to ``patience`` seconds for its pong (a lost
    one is counted, not resent); then the side says ``done`` and keeps answering until the peer
    says it too, or ``patience`` seconds pass, so neither leaves while the other still measures.
    """
    loop = asyncio.get_running_loop()
    pongs: dict[int, asyncio.Future[float]] = {}
    peer_done = asyncio.Event()

    async def answer() -> None:
        with contextlib.suppress(IceConnectionError):
            while True:
                data = await connection.recv()
                if data.startswith(_PING):
                    await connection.send(_PONG + data[len(_PING) :])
                elif data == _DONE:
                    peer_done.set()
                elif data.startswith(_PONG):
                    future = pongs.get(_sequence(data[len(_PONG) :]))
                    if future is not None and not future.done():
                        future.set_result(loop.time())

    answering = asyncio.ensure_future(answer())
    result = EchoResult()
    try:
        for sequence in range(count):
            pongs[sequence] = loop.create_future()
            sent_at = loop.time()
            await connection.send(_PING + str(sequence).encode())
            result.sent += 1
            try:
                async with asyncio.timeout(patience):
                    rtt = await pongs[sequence] - sent_at
            except TimeoutError:
                continue
            result.rtts.append(rtt)
            if on_rtt is not None:
                on_rtt(sequence, rtt)
        for _ in range(3):  # three times: a lost "done" costs the peer ``patience``, no more
            await connection.send(_DONE)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await peer_done.wait()
    finally:
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    return result


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

    def __init__(self, view: LiveView, stun_servers: list[Address]) -> None:
        self.view = view
        hosts = [server.host for server in stun_servers]
        self.sides = [
            _DemoSide(
                name,
                Connection(
                    controlling=name == "A",
                    stun_servers=[(server.host, server.port) for server in stun_servers],
                    include_loopback=True,
                    interfaces=hosts,
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


async def run_loopback_demo(out: TextIO = sys.stdout) -> int:
    """``icestack demo``: the embedded STUN server on loopback, probed over every transport, then
    two ICE connections through it. Works with no network at all."""
    view = LiveView(out)
    view.say(f"icestack {__version__} demo: the embedded STUN server and two ICE agents, loopback")
    view.say("")
    view.say("1. The STUN server, probed over every transport")
    async with StunServer() as server:
        answered = await probe_embedded_server(server, view)
        stun_servers = [
            listener.address for listener in server.listeners if listener.transport == "udp"
        ]
        view.say("")
        view.say(
            "2. ICE: A (controlling) and B (controlled) gather on "
            f"{', '.join(a.host for a in stun_servers)} with that server, trickle candidates to "
            "each other, check, and echo data"
        )
        demo = LoopbackDemo(view, stun_servers)
        spinner = asyncio.ensure_future(view.spin())
        try:
            connected = await demo.run()
        finally:
            spinner.cancel()
            view.close()
            await demo.close()
    if not any(
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


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``icestack demo [--sim NAT_A,NAT_B]``."""
    parser = commands.add_parser(
        "demo",
        help="two ICE agents and the embedded STUN server on loopback, or --sim on a simulated "
        "network (no network needed)",
        description="Connect two ICE agents on loopback with the embedded STUN server, or with "
        "--sim on the simulated network behind the named NATs, in virtual time.",
    )
    parser.add_argument(
        "--sim",
        type=nat_pair,
        metavar="NAT_A,NAT_B",
        help=f"run on the simulated network; NAT names: {', '.join(NAT_NAMES)}",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="the simulated network's seed (default 1)"
    )
    parser.set_defaults(
        run=lambda args: run_sim_demo(args) if args.sim else asyncio.run(run_loopback_demo())
    )


# =========================================================================== ice offer|answer

#: What every signaling line starts with; the digit is the format's version.
SIGNAL_PREFIX = "icestack1:"
#: The two roles: the offer is controlling, the answer controlled (RFC 8445 §6.1.1).
ROLES = ("offer", "answer")


@dataclass(frozen=True, slots=True)
class SignalingLine:
    """One side's ICE parameters as one line of text to paste into the other terminal.

    The line is :data:`SIGNAL_PREFIX` and the unpadded base64url of a compact JSON object:
    ``{"role": "offer"|"answer", "ufrag": ..., "pwd": ..., "candidates": [candidate-attribute
    values, as Candidate.to_sdp() writes them]}``. Every candidate is in it (no trickle), so the
    reader signals end-of-candidates after them.
    """

    role: str
    description: IceDescription

    def encode(self) -> str:
        document = {
            "role": self.role,
            "ufrag": self.description.ufrag,
            "pwd": self.description.pwd,
            "candidates": [candidate.to_sdp() for candidate in self.description.candidates],
        }
        payload = json.dumps(document, separators=(",", ":")).encode()
        return SIGNAL_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> SignalingLine:
        """Parse a line :meth:`encode` wrote (surrounding blanks are ignored); raises only
        :class:`~ice.DecodeError`, saying what is wrong."""
        line = text.strip()
        if not line.startswith(SIGNAL_PREFIX):
            shown = repr(line[:20] + "…") if len(line) > 20 else repr(line)
            raise DecodeError(f"not an icestack signaling line: want {SIGNAL_PREFIX}…, got {shown}")
        encoded = line[len(SIGNAL_PREFIX) :]
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            document = json.loads(payload)
        except (binascii.Error, ValueError):
            damaged = "damaged signaling line: not base64url JSON (was it copied in full?)"
            raise DecodeError(damaged) from None
        if not isinstance(document, dict):
            raise DecodeError("signaling line: not a JSON object")
        role, ufrag, pwd = (document.get(key) for key in ("role", "ufrag", "pwd"))
        candidates = document.get("candidates")
        if role not in ROLES:
            raise DecodeError(f"signaling line: role must be one of {', '.join(ROLES)}")
        if not isinstance(ufrag, str) or not isinstance(pwd, str):
            raise DecodeError("signaling line: ufrag and pwd must be strings")
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise DecodeError("signaling line: candidates must be a list of strings")
        parsed = []
        for candidate in candidates:
            try:
                parsed.append(Candidate.from_sdp(candidate))
            except UnsupportedCandidateError:
                continue  # RFC 8839 §5.1: ignore what we cannot use
        try:
            description = IceDescription(
                ufrag=ufrag, pwd=pwd, candidates=tuple(parsed), end_of_candidates=True
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"signaling line: {exc}") from None
        return cls(role, description)


#: How many echo round trips ``ice offer|answer`` measure by default.
PATH_ECHO_COUNT = 5
#: Longer input lines are read in pieces of this size (a signaling line is far shorter).
_MAX_LINE = 65536


class _StdinLines:
    """Lines typed or piped into stdin, read by a daemon thread so that waiting for one can time
    out (and the process can exit while the thread still waits)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: TextIO) -> None:
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        self._stream = stream
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        # Bounded reads: endless input without a newline must not fill memory.
        while line := self._stream.readline(_MAX_LINE):
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
        self._loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def next_line(self) -> str | None:
        """The next line that is not blank, or ``None`` at the end of input."""
        while (line := await self._lines.get()) is not None:
            if line.strip():
                return line
        return None


class _SignalingProblem(Exception):
    """The peer's line is missing or malformed: the command exits 2 with this message."""


async def _read_peer_line(lines: _StdinLines, role: str, wait: float) -> SignalingLine:
    """The peer's signaling line from stdin, which must come from the other role."""
    async with asyncio.timeout(wait):
        line = await lines.next_line()
    if line is None:
        raise _SignalingProblem(f"no {role} line on stdin (end of input)")
    try:
        peer = SignalingLine.decode(line)
    except DecodeError as exc:
        raise _SignalingProblem(str(exc)) from None
    if peer.role != role:
        raise _SignalingProblem(
            f"that is an {peer.role} line, and {role} lines are wanted here: paste it into "
            f"`icestack ice {'answer' if peer.role == 'offer' else 'offer'}`"
        )
    return peer


async def _option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the ``--stun`` and ``--interface`` options, if anything: a STUN server
    named on the command line must resolve (the default one is skipped with a warning when it
    does not), and every interface must match an address gathering can use here."""
    for host, port in args.stun or ():
        try:
            await resolve(host, port)
        except StunLocalProtocolError as exc:
            return f"--stun {Address(host, port)}: {exc}"
    for name in args.interface or ():
        if interface_addresses(include_loopback=args.include_loopback, only=[name]):
            continue
        if interface_addresses(include_loopback=True, only=[name]):
            return f"--interface {name}: a loopback address; add --include-loopback to use it"
        here = ", ".join(
            f"{a.interface} {a.host}" for a in interface_addresses(include_loopback=True)
        )
        return (
            f"--interface {name}: no usable address of this host matches it (an IP address "
            f"or an interface name; link-local addresses are never used); here: {here or 'none'}"
        )
    return None


async def run_ice(args: argparse.Namespace) -> int:
    """``icestack ice offer|answer``: gather, swap one line each way, connect, report the path."""
    role: str = args.role
    peer_role = "answer" if role == "offer" else "offer"
    problem = await _option_problem(args)
    if problem is not None:
        return main_error(problem)
    view = LiveView(sys.stderr)
    stun_servers = [] if args.no_stun else args.stun or [_stun_server(DEFAULT_PUBLIC_SERVER)]
    connection = Connection(
        controlling=role == "offer",
        stun_servers=stun_servers,
        include_loopback=args.include_loopback,
        interfaces=args.interface,
    )

    def narrate(event: IceEvent) -> None:
        text = describe_event(event)
        if text is not None:
            view.line(text)

    connection.on_event = narrate
    lines = _StdinLines(asyncio.get_running_loop(), sys.stdin)
    peer: SignalingLine | None = None
    waiting_for = f"the {peer_role} line"
    try:
        if role == "answer":
            view.say("paste the offer line from `icestack ice offer`, then Enter:")
            peer = await _read_peer_line(lines, "offer", args.wait)
        view.say(f"gathering ({_servers(stun_servers)})")
        waiting_for = "gathering"
        async with asyncio.timeout(args.timeout):
            await connection.gather_candidates()
        ours = IceDescription(
            ufrag=connection.local_username,
            pwd=connection.local_password,
            candidates=tuple(connection.local_candidates),
        )
        view.say(f"your {role} line: copy it into `icestack ice {peer_role}` on the other side")
        print(SignalingLine(role, ours).encode(), flush=True)
        if peer is None:
            view.say("paste the answer line from `icestack ice answer`, then Enter:")
            waiting_for = "the answer line"
            peer = await _read_peer_line(lines, "answer", args.wait)
        return await _connect_and_report(connection, peer, args, view)
    except _SignalingProblem as exc:
        return main_error(str(exc))
    except TimeoutError:
        print(format_table([("result", "failed"), ("reason", f"{waiting_for} timed out")]))
        return 1
    finally:
        await connection.close()


async def _connect_and_report(
    connection: Connection, peer: SignalingLine, args: argparse.Namespace, view: LiveView
) -> int:
    connection.set_remote_credentials(peer.description.ufrag, peer.description.pwd)
    for candidate in peer.description.candidates:
        await connection.add_remote_candidate(candidate)
    await connection.add_remote_candidate(None)
    # The answer's checks start before the offer side has its line: give the paste time too.
    budget = args.timeout + (args.wait if args.role == "answer" else 0.0)
    started = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            await connection.connect()
    except (IceConnectionError, TimeoutError) as exc:
        reason = (
            str(exc)
            if isinstance(exc, IceConnectionError)
            else (f"not connected within {budget:g} s; {connection.failure_reason()}")
        )
        print(format_table([("result", "failed"), ("reason", reason)]))
        return 1
    connected_after = time.monotonic() - started
    pair = connection.selected_pair()
    assert pair is not None
    view.line(f"connected; {args.count} echo round trips")
    try:
        async with asyncio.timeout(args.timeout):
            result = await echo(connection, args.count)
    except (IceConnectionError, TimeoutError) as exc:
        result = EchoResult()
        view.line(f"echo stopped: {exc or 'timed out'}")
    role = "controlling" if connection.controlling else "controlled"
    print(
        format_table(
            [
                ("result", f"connected in {milliseconds(connected_after)}"),
                ("role", f"{args.role} ({role})"),
                ("local", f"{pair.local.type} {pair.local.address}"),
                ("remote", f"{pair.remote.type} {pair.remote.address}"),
                ("path", pair_types(pair)),
                ("check rtt", "-" if pair.last_rtt is None else milliseconds(pair.last_rtt)),
                ("echo rtt", result.describe()),
            ]
        )
    )
    return 0 if result.rtts else 1


def _stun_server(text: str) -> tuple[str, int]:
    return server_address(text, 3478)


def _servers(servers: list[tuple[str, int]]) -> str:
    if not servers:
        return "no STUN"
    return "STUN " + ", ".join(str(Address(host, port)) for host, port in servers)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"want a whole number of at least 1, got {text!r}")
    return int(text)


def add_ice_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``icestack ice offer|answer``: a two-terminal connectivity test."""
    parser = commands.add_parser(
        "ice",
        help="connect two machines with ICE by pasting one line each way (connectivity test)",
        description="Run `icestack ice offer` on one machine and `icestack ice answer` on the "
        "other; paste each one's line into the other; both report the path ICE found and its RTT.",
    )
    roles = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    for role, help_text in (
        ("offer", "controlling side: gather, print the offer line, read the answer line"),
        ("answer", "controlled side: read the offer line, gather, print the answer line"),
    ):
        sub = roles.add_parser(role, help=help_text, description=help_text)
        sub.add_argument(
            "--stun",
            action="append",
            type=_stun_server,
            metavar="HOST[:PORT]",
            help=f"a STUN server for server-reflexive candidates (repeatable; default "
            f"{DEFAULT_PUBLIC_SERVER})",
        )
        sub.add_argument("--no-stun", action="store_true", help="host candidates only")
        sub.add_argument(
            "--include-loopback", action="store_true", help="gather on loopback addresses too"
        )
        sub.add_argument(
            "--interface",
            action="append",
            metavar="ADDR|NAME",
            help="gather only on this address or interface (repeatable)",
        )
        sub.add_argument(
            "--timeout",
            type=seconds,
            default=30.0,
            metavar="SECONDS",
            help="bound on gathering, and on connecting once both lines are in (default 30)",
        )
        sub.add_argument(
            "--wait",
            type=seconds,
            default=600.0,
            metavar="SECONDS",
            help="how long the peer's line may take to be pasted (default 600)",
        )
        sub.add_argument(
            "--count",
            type=_count,
            default=PATH_ECHO_COUNT,
            metavar="N",
            help=f"echo round trips to measure (default {PATH_ECHO_COUNT})",
        )
        sub.set_defaults(run=lambda args: asyncio.run(run_ice(args)))
