"""The ICE commands of the ``icestack`` CLI: ``demo`` (on loopback, or ``--sim`` on the simulated
network) and ``ice offer`` / ``ice answer`` (two terminals, one line of signaling each way).

:mod:`ice.cli` assembles the parser; :func:`add_demo_command` and :func:`add_ice_command` add these.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from stun._version import __version__
from stun.aio import StunClient, StunServer, Transport, ipv6_loopback_available
from stun.cli import format_table
from stun.errors import StunError
from stun.tls import client_context, make_self_signed, server_context

from .candidate import Candidate, IceDescription
from .checklist import CandidatePair
from .errors import DecodeError, LocalProtocolError, UnsupportedCandidateError
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
from .scenarios import STUN_SERVER, Outcome, Side, two_agents_behind_nats

#: The NAT names ``demo --sim`` accepts, in netsim's spelling.
NAT_NAMES = tuple(behavior.value for behavior in NatBehavior)
#: How many echo round trips each side makes once connected.
ECHO_COUNT = 3


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


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# =========================================================================== demo --sim


#: Virtual seconds after which a simulated run that neither connected nor failed gives up.
SIM_TIMEOUT = 60.0
#: Virtual seconds between one side's echo requests.
SIM_ECHO_INTERVAL = 0.100
_PING = b"ping "
_PONG = b"pong "


@dataclass
class _Echo:
    """One side's echo requests in flight and the round-trip times of those that came back."""

    sent: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)


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
        self.echoes = {side.name: _Echo() for side in self.scenario.sides}
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
        self.echoes[side.name].sent[sequence] = self.network.now
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
        echo = self.echoes[name]
        sent = echo.sent.pop(int(event.data[len(_PONG) :]), None)
        if event.data.startswith(_PONG) and sent is not None:
            rtt = self.network.now - sent
            echo.rtts.append(rtt)
            self.say(name, f"echo {len(echo.rtts)}/{ECHO_COUNT} back in {milliseconds(rtt)}")

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
                mean = "-" if not echo.rtts else milliseconds(sum(echo.rtts) / len(echo.rtts))
                rows.append((f"{name} echo rtt", f"{mean} ({len(echo.rtts)}/{ECHO_COUNT} echoes)"))
        else:
            rows.append(("result", "failed"))
            rows.append(("reason", outcome.failure_reason or "-"))
        stats = self.network.stats
        drops = ", ".join(f"{r.name.lower()} {n}" for r, n in stats.dropped.items() if n)
        rows.append((
            "network",
            f"{stats.sent} datagrams sent, {stats.delivered} delivered, "
            f"{stats.dropped_total} dropped{f' ({drops})' if drops else ''}",
        ))
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


# =========================================================================== demo (loopback)


async def probe_embedded_server(server: StunServer) -> bool:
    """Open UDP, TCP and TLS (self-signed) listeners of ``server`` on IPv4 and IPv6 loopback,
    probe each with a Binding request and print a table; ``True`` when every probe was answered."""
    files = make_self_signed()
    hosts = ["127.0.0.1"]
    if ipv6_loopback_available():
        hosts.append("::1")
    targets: list[tuple[Transport, str, int]] = []
    for host in hosts:
        for transport in ("udp", "tcp", "tls"):
            context = server_context(files.certificate, files.private_key)
            listener = await server.listen(
                transport, host, 0, ssl_context=context if transport == "tls" else None
            )
            targets.append((transport, host, listener.address.port))
    for listener in server.listeners:
        print(f"  listening on {listener}")
    print()
    rows: list[tuple[str, ...]] = []
    for transport, host, port in targets:
        try:
            async with await StunClient.connect(
                host, port, transport=transport, ssl_context=client_context(files.certificate)
            ) as client:
                result = await client.binding()
            rows.append((
                transport,
                str(result.server),
                str(result.mapped_address),
                milliseconds(result.rtt),
                result.software or "-",
            ))
        except (StunError, OSError) as exc:
            rows.append((transport, f"{host}:{port}", f"failed: {exc}", "-", "-"))
    header = ("transport", "server", "mapped address", "rtt", "software")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    failures = sum(1 for row in rows if row[2].startswith("failed"))
    print()
    print(format_table([("probes", str(len(rows))), ("answered", str(len(rows) - failures))]))
    return not failures


async def run_loopback_demo() -> int:
    """``icestack demo``: the embedded STUN server on loopback, probed; works with no network."""
    print(f"icestack {__version__} demo: embedded STUN server on loopback")
    async with StunServer() as server:
        answered = await probe_embedded_server(server)
    return 0 if answered else 1


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
        "--sim", type=nat_pair, metavar="NAT_A,NAT_B",
        help=f"run on the simulated network; NAT names: {', '.join(NAT_NAMES)}",
    )  # fmt: skip
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
