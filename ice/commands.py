"""``icestack ice offer`` / ``icestack ice answer``: a connectivity test between two machines, with
a person as the signaling channel (one line pasted each way), which reports the path ICE found.
``--turn URI`` (with ``--turn-user``/``--turn-password``, or ``--turn-secret``) adds relayed
candidates through a TURN server over UDP, TCP or TLS (RFC 7065 URIs); ``--relay-only`` keeps to
them, which is how to test a TURN server for ICE, or a network that lets nothing else through.

:mod:`ice.cli` names the command and, once it is chosen, :mod:`ice.commands_options` adds its
options.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from stun.address import Address
from stun.aio import resolve
from stun.cli_messages import format_table, main_error
from stun.errors import LocalProtocolError as StunLocalProtocolError
from stun.public_servers import DEFAULT_PUBLIC_SERVER
from turn.transport import ClientTransport
from turn.uri import ServerUri

from .aio import Connection
from .candidate import Candidate, CandidateType, IceDescription
from .commands_options import stun_server
from .connection_options import TurnRestCredentials, TurnServerArgument
from .errors import DecodeError, IceConnectionError, LocalProtocolError, UnsupportedCandidateError
from .events import IceEvent
from .interfaces import interface_problem
from .narration import EchoResult, LiveView, describe_event, echo, milliseconds
from .scenarios import pair_types

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
    if args.no_udp and args.stun:
        return "--stun with --no-udp: STUN servers are asked from UDP candidates' bases"
    for host, port in args.stun or ():
        try:
            await resolve(host, port)
        except StunLocalProtocolError as exc:
            return f"--stun {Address(host, port)}: {exc}"
    problem = _turn_option_problem(args)
    if problem is not None:
        return problem
    for uri in args.turn or ():
        try:
            await resolve(uri.host, uri.port, stream=uri.transport.is_stream)
        except StunLocalProtocolError as exc:
            return f"--turn {uri}: {exc}"
    for name in args.interface or ():
        problem = interface_problem(
            name,
            include_loopback=args.include_loopback,
            loopback_hint="add --include-loopback to use it",
        )
        if problem is not None:
            return f"--interface {name}: {problem}"
    return None


def _turn_option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the TURN options together, if anything: each given one must count."""
    turn: list[ServerUri] = args.turn or []
    if not turn:
        for option, value in (
            ("--turn-user", args.turn_user),
            ("--turn-password", args.turn_password),
            ("--turn-secret", args.turn_secret),
            ("--relay-only", args.relay_only or None),
        ):
            if value is not None:
                return f"{option} needs a TURN server: add --turn URI"
    elif args.no_udp:
        return "--turn with --no-udp: TURN servers are reached from UDP candidates' bases"
    elif args.relay_only and args.stun:
        return "--stun with --relay-only: a relay-only connection asks no STUN server"
    elif args.turn_secret is not None and args.turn_password is not None:
        return "--turn-secret makes the password itself: drop --turn-password"
    elif args.turn_secret is None and (args.turn_user is None or args.turn_password is None):
        return "--turn needs --turn-user and --turn-password (or the TURN REST API --turn-secret)"
    if not any(uri.transport is ClientTransport.TLS for uri in turn):
        for option, value in (
            ("--turn-cafile", args.turn_cafile),
            ("--turn-insecure", args.turn_insecure or None),
        ):
            if value is not None:
                return f"{option} is for turns: servers (TLS), and no --turn is one"
    return None


def _turn_servers(args: argparse.Namespace) -> list[TurnServerArgument]:
    """The ``--turn`` servers with their credentials, as ``Connection(turn_servers=...)``."""
    servers: list[TurnServerArgument] = []
    for uri in args.turn or ():
        if args.turn_secret is not None:
            servers.append((str(uri), TurnRestCredentials(args.turn_secret, args.turn_user or "")))
        else:
            servers.append((str(uri), args.turn_user, args.turn_password))
    return servers


def run_ice(args: argparse.Namespace) -> int:
    """``icestack ice offer|answer``, its options parsed (:mod:`ice.commands_options`)."""
    return asyncio.run(_run_ice(args))


async def _run_ice(args: argparse.Namespace) -> int:
    """``icestack ice offer|answer``: gather, swap one line each way, connect, report the path."""
    role: str = args.role
    peer_role = "answer" if role == "offer" else "offer"
    problem = await _option_problem(args)
    if problem is not None:
        return main_error(problem)
    view = LiveView(sys.stderr)
    # relay-only talks to the TURN servers alone; without UDP there is nothing to ask STUN from
    no_stun = args.no_stun or args.relay_only or args.no_udp
    stun_servers = [] if no_stun else args.stun or [stun_server(DEFAULT_PUBLIC_SERVER)]
    try:
        connection = Connection(
            controlling=role == "offer",
            stun_servers=stun_servers,
            turn_servers=_turn_servers(args),
            relay_only=args.relay_only,
            include_loopback=args.include_loopback,
            interfaces=args.interface,
            udp=not args.no_udp,
            tcp=not args.no_tcp,
            turn_tls_cafile=args.turn_cafile,
            turn_tls_verify=not args.turn_insecure,
        )
    except LocalProtocolError as exc:
        return main_error(str(exc).replace("turn_tls_cafile", "--turn-cafile"))

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
        view.say(f"gathering ({_servers(stun_servers, args.turn or [])})")
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
    rows = [
        ("result", f"connected in {milliseconds(connected_after)}"),
        ("role", f"{args.role} ({role})"),
        ("local", f"{pair.local.type} {pair.local.address}"),
        ("remote", f"{pair.remote.type} {pair.remote.address}"),
        ("path", pair_types(pair)),
    ]
    if pair.local.type is CandidateType.RELAYED:
        (selected,) = [s for s in connection.stats() if s.selected and s.component == 1]
        rows.append(("relay", f"through the TURN server over {selected.relay_protocol}"))
    rows += [
        ("check rtt", "-" if pair.last_rtt is None else milliseconds(pair.last_rtt)),
        ("echo rtt", result.describe()),
    ]
    print(format_table(rows))
    return 0 if result.rtts else 1


def _servers(servers: list[tuple[str, int]], turn: list[ServerUri]) -> str:
    stun = "STUN " + ", ".join(str(Address(host, port)) for host, port in servers)
    said = [stun if servers else "no STUN"]
    if turn:
        said.append("TURN " + ", ".join(map(str, turn)))
    return "; ".join(said)
