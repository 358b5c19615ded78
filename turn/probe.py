"""``icestack turn``: is this TURN server working? Allocate, relay a round trip, and say what
happened.

The probe takes a ``turn:`` or ``turns:`` URI (RFC 7065) and credentials — a username and
password, or a TURN REST API shared secret from which it makes time-limited ones (coturn's
``use-auth-secret``) — and runs these steps over the URI's transport, each bounded by
``--timeout``:

1. ``connect``: the TCP or TLS connection (and its certificate check), or the UDP socket;
2. ``allocate``: an Allocate with the long-term credential dance (RFC 8656 §7): the relayed and
   mapped addresses, the lifetime, and what the challenge settled (realm, MD5 or SHA-256 keys
   among the PASSWORD-ALGORITHMS offered, USERHASH);
3. ``second allocation``: another allocation of its own, so that no outside peer is needed;
4. ``permissions``: each allocation admits the other's relayed address (§9): a server whose peer
   policy refuses its own relayed addresses answers 403 here;
5. ``relay``: :data:`ROUNDS` datagrams from the first allocation through the server to the second
   and back (a Send indication first, then a channel), timed: the RTT through the relay;
6. ``tcp relays`` (over TCP and TLS only, informative): whether the server grants a TCP allocation
   (RFC 6062);
7. ``delete``: both allocations are deleted (Refresh with LIFETIME 0).

Progress goes to stderr, one stamped line per step (as ``icestack stun`` does); the report to
stdout, a table or with ``--json`` one JSON object whose keys docs/cli.md documents. A failure
names its step and is said in words with a hint (:mod:`turn.explain`). Exit status 0 when the
relay carried the round trip, 1 when a step failed, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stun import Address, AddressFamily, ErrorResponse, StunError
from stun.aio import Transport
from stun.cli import load_client_tls
from stun.cli_messages import format_table
from stun.client import Authentication, ClientConfig
from stun.errors import LocalProtocolError
from stun.explain import Explanation
from stun.integrity import PasswordAlgorithmId
from stun.probe import Progress, address_json, resolve_target, scaled_schedule

from .aio import TurnClient
from .attributes import TransportProtocol
from .client import TurnClientConfig
from .errors import DecodeError, TurnError
from .explain import LONG_TERM, REST_API, Situation, explain_turn
from .probe_options import DEFAULT_TIMEOUT, DEFAULT_TTL
from .rest_api import rest_api_password, rest_api_username
from .server.policy import unreachable
from .uri import ServerUri, UriScheme, parse_uri

#: Round trips through the relay.
ROUNDS = 3
#: Seconds a step's own bound waits beyond ``--timeout`` for the machines' timeouts to speak.
_MARGIN = 0.5
_ALGORITHM_NAMES = {PasswordAlgorithmId.MD5: "MD5", PasswordAlgorithmId.SHA256: "SHA-256"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbeCredentials:
    """What the probe authenticates with: ``kind`` is :data:`~turn.explain.LONG_TERM` or
    :data:`~turn.explain.REST_API` (made from a shared secret)."""

    username: str
    password: str = field(repr=False)
    kind: str = LONG_TERM


def rest_credentials(secret: str, user: str | None, ttl: float, now: float) -> ProbeCredentials:
    """TURN REST API credentials valid ``ttl`` seconds from ``now`` (Unix time), for ``user``."""
    username = rest_api_username(user or "", now + ttl)
    password = rest_api_password(secret.encode("utf-8"), username)
    return ProbeCredentials(username, password, REST_API)


def parse_turn_target(text: str) -> ServerUri:
    """A ``turn:``/``turns:`` URI, or a bare ``HOST[:PORT]`` taken as ``turn:HOST[:PORT]``;
    raises :class:`stun.LocalProtocolError` saying what is wrong."""
    scheme = text.partition(":")[0].lower()
    if scheme not in {s.value for s in UriScheme}:
        text = f"turn:{text}"
    try:
        uri = parse_uri(text)
    except DecodeError as error:
        raise LocalProtocolError(str(error)) from None
    if not uri.is_turn:
        raise LocalProtocolError(
            f"{text!r} is a STUN URI: icestack stun probes STUN servers, icestack turn wants "
            "turn: or turns:"
        )
    return uri


class StepFailed(Exception):
    """A step of the probe ended in ``error``."""

    def __init__(self, step: str, error: BaseException, peer: Address | None = None) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error
        self.peer = peer


@dataclass
class TurnProbeReport:
    """What the probe learned, step by step; :meth:`to_json` is the ``--json`` document."""

    uri: str
    transport: Transport
    credentials: ProbeCredentials
    server: Address | None = None
    relayed: Address | None = None
    mapped: Address | None = None
    lifetime: float | None = None
    authentication: Authentication | None = None
    rtts: list[float] = field(default_factory=list)
    lost: int = 0
    channel: bool | None = None
    relay_transports: dict[str, bool | None] = field(
        default_factory=lambda: {"udp": None, "tcp": None}
    )
    deleted: bool | None = None
    steps: list[tuple[str, bool, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed_step: str | None = None
    error: BaseException | None = None
    explanation: Explanation | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rtts)

    @property
    def rtt(self) -> float | None:
        """The median round trip through the relay, seconds."""
        return statistics.median(self.rtts) if self.rtts else None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document of ``icestack turn`` (schema in docs/cli.md)."""
        auth = self.authentication
        rtt = self.rtt
        error = None
        if self.error is not None:
            explanation = self.explanation or Explanation(str(self.error))
            error = {
                "step": self.failed_step,
                "type": type(self.error).__name__,
                "message": explanation.what,
                "hint": explanation.hint,
                "code": self.error.code if isinstance(self.error, ErrorResponse) else None,
            }
        return {
            "ok": self.ok,
            "uri": self.uri,
            "transport": self.transport,
            "server": address_json(self.server),
            "credentials": {
                "kind": self.credentials.kind,
                "username": self.credentials.username,
                "realm": auth.realm if auth else None,
                "password_algorithm": _algorithm(auth.algorithm) if auth else None,
                "password_algorithms_offered": [_algorithm(a) for a in auth.offered]
                if auth
                else [],
                "userhash": auth.userhash if auth else None,
            },
            "relayed_address": address_json(self.relayed),
            "mapped_address": address_json(self.mapped),
            "lifetime_s": self.lifetime,
            "relay_rtt_ms": round(rtt * 1000, 3) if rtt is not None else None,
            "round_trips": len(self.rtts),
            "lost": self.lost,
            "channel": self.channel,
            "relay_transports": dict(self.relay_transports),
            "deleted": self.deleted,
            "steps": [
                {"name": name, "ok": ok, "ms": round(seconds * 1000, 3)}
                for name, ok, seconds in self.steps
            ],
            "notes": list(self.notes),
            "error": error,
        }

    def rows(self) -> list[tuple[str, str]]:
        """The table ``icestack turn`` prints."""
        server = f" ({self.transport} {self.server})" if self.server else ""
        rows = [("target", f"{self.uri}{server}")]
        rows.append(("credentials", self._credentials_text()))
        if self.relayed is not None:
            lifetime = f", for {self.lifetime:g} s" if self.lifetime is not None else ""
            rows.append(("relayed address", f"{self.relayed}{lifetime}"))
            rows.append(("mapped address", str(self.mapped) if self.mapped else "-"))
        rtt = self.rtt
        if rtt is not None:
            how = "Send indications, then a channel" if self.channel else "Send indications"
            rows.append((
                "relay rtt",
                f"{rtt * 1000:.2f} ms (median of {len(self.rtts)} round trips, {self.lost} lost; "
                f"{how})",
            ))  # fmt: skip
        relays = self.relay_transports
        if relays["udp"]:
            tcp = {True: "and TCP (RFC 6062)", False: "not TCP (442)", None: ""}[relays["tcp"]]
            if relays["tcp"] is None and self.transport == "udp":
                tcp = "(TCP relays are checked over TCP and TLS)"
            rows.append(("relays", f"UDP {tcp}".rstrip()))
        if self.deleted is not None:
            rows.append(("deleted", "yes" if self.deleted else "not confirmed by the server"))
        rows += [("note", note) for note in self.notes]
        if self.error is not None:
            explanation = self.explanation or Explanation(str(self.error))
            rows.append(("error", explanation.what))
            if explanation.hint:
                rows.append(("hint", explanation.hint))
        return rows

    def _credentials_text(self) -> str:
        credentials = self.credentials
        kind = "TURN REST API" if credentials.kind == REST_API else "long-term"
        text = f"{kind}, user {credentials.username!r}"
        auth = self.authentication
        if auth is not None:
            offered = ", ".join(_algorithm(a) for a in auth.offered)
            keys = f"{_algorithm(auth.algorithm)} keys" + (
                f" (offered: {offered})" if offered else " (RFC 5389: no PASSWORD-ALGORITHMS)"
            )
            text += f"; realm {auth.realm!r}, {keys}" + ("; USERHASH" if auth.userhash else "")
        return text


def _algorithm(number: int) -> str:
    try:
        return _ALGORITHM_NAMES[PasswordAlgorithmId(number)]
    except ValueError:
        return f"algorithm {number}"


class TurnProbe:
    """One run of the probe against ``server`` (resolved), reached as ``host`` says."""

    def __init__(
        self,
        report: TurnProbeReport,
        *,
        server: Address,
        host: str,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
        progress: Progress,
        relay_family: AddressFamily = AddressFamily.IPV4,
    ) -> None:
        self.report = report
        self.relay_family = relay_family
        self.server = server
        self.host = host
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.progress = progress
        self._clients: list[TurnClient] = []

    async def run(self) -> TurnProbeReport:
        """Every step until one fails; the allocations are deleted whatever happened."""
        report = self.report
        try:
            await self._probe()
        except StepFailed as failure:
            report.failed_step, report.error = failure.step, failure.error
            report.explanation = explain_turn(failure.error, self._situation(failure))
            self.progress.say(f"failed: {report.explanation.what}")
        finally:
            await self._delete()
        return report

    def _situation(self, failure: StepFailed) -> Situation:
        report = self.report
        return Situation(
            step=failure.step,
            target=str(self.server),
            transport=report.transport,
            credentials=report.credentials.kind,
            username=report.credentials.username,
            peer=str(failure.peer) if failure.peer else None,
        )

    async def _probe(self) -> None:
        report, say = self.report, self.progress.say
        first = await self._step("connect", self._connect())
        say(f"allocating; waiting up to {self.timeout:g} s for the server")
        relayed = await self._step("allocate", first.allocate())
        report.relayed, report.mapped = relayed, first.mapped_address
        expires_at = first.allocation.expires_at
        if expires_at is not None:
            report.lifetime = round(expires_at - asyncio.get_running_loop().time())
        report.authentication = first.allocation.authentication
        report.relay_transports["udp"] = True
        if first.server != self.server:
            report.notes.append(
                f"the server sent the allocation on to {first.server} (300 Try Alternate)"
            )
        say(f"allocated {relayed} for {report.lifetime} s; the server sees us at {report.mapped}")
        note = unreachable_relay(relayed, self.server)
        if note is not None:
            report.notes.append(note)
        second, other = await self._step("second allocation", self._allocate_again())
        say(f"second allocation: {other}")
        await self._step("permissions", self._permit(first, second, relayed, other))
        say("permissions granted: each relayed address admits the other")
        await self._step("relay", self._round_trips(first, second, relayed, other))
        report.channel = first.allocation.channel(other) is not None
        if report.transport != "udp":
            await self._check_tcp_relays()

    async def _step(self, name: str, action: Awaitable[T], *, peer: Address | None = None) -> T:
        """Run one step within the timeout; its failure becomes :class:`StepFailed`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # A little beyond the machines' own timeouts, which end first and say more.
            async with asyncio.timeout(self.timeout + _MARGIN):
                result = await action
        except TimeoutError:
            error = TimeoutError(f"no answer from {self.server} within {self.timeout:g} s")
            self.report.steps.append((name, False, loop.time() - started))
            raise StepFailed(name, error, peer) from None
        except StepFailed:
            self.report.steps.append((name, False, loop.time() - started))
            raise
        except (StunError, TurnError, OSError) as error:
            self.report.steps.append((name, False, loop.time() - started))
            raise StepFailed(name, error, peer) from None
        self.report.steps.append((name, True, loop.time() - started))
        return result

    async def _connect(self, relay: TransportProtocol = TransportProtocol.UDP) -> TurnClient:
        schedule = scaled_schedule(self.timeout)
        client = await TurnClient.connect(
            self.server.host,
            self.server.port,
            transport=self.report.transport,
            username=self.report.credentials.username,
            password=self.report.credentials.password,
            ssl_context=self.ssl_context,
            server_hostname=self.host,
            config=TurnClientConfig(
                stun=ClientConfig(transaction=schedule),
                allocate_timeout=self.timeout,
                relay_transport=relay,
                # IPv4 is what a server grants without REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.2)
                requested_family=self.relay_family
                if self.relay_family is AddressFamily.IPV6
                else None,
            ),
        )
        self._clients.append(client)
        if self.report.transport != "udp" and len(self._clients) == 1:
            self.progress.say(f"connected over {self.report.transport}")
        return client

    async def _allocate_again(self) -> tuple[TurnClient, Address]:
        client = await self._connect()
        return client, await client.allocate()

    async def _permit(
        self, first: TurnClient, second: TurnClient, relayed: Address, other: Address
    ) -> None:
        """Each allocation admits the other's relayed address — the whole address, port and
        all: a server may admit its own IP as a peer only where it is another allocation's
        relayed address (ours does)."""
        for client, peer in ((first, other), (second, relayed)):
            try:
                await client.create_permission(peer)
            except (StunError, TurnError) as error:
                raise StepFailed("permissions", error, peer) from None

    async def _round_trips(
        self, first: TurnClient, second: TurnClient, relayed: Address, other: Address
    ) -> None:
        """:data:`ROUNDS` datagrams from ``first`` to ``second`` and back through the relay."""
        loop = asyncio.get_running_loop()
        wait = self.timeout / (ROUNDS + 1)
        token = secrets.token_hex(8)
        for number in range(1, ROUNDS + 1):
            payload = f"icestack turn probe {token} {number}".encode()
            started = loop.time()
            await first.send(payload, other)
            try:
                async with asyncio.timeout(wait):
                    await _receive(second, payload, relayed)
                    await second.send(payload, relayed)
                    await _receive(first, payload, other)
            except TimeoutError:
                self.report.lost += 1
                self.progress.say(f"round trip {number}: nothing came back within {wait:.2g} s")
                continue
            rtt = loop.time() - started
            self.report.rtts.append(rtt)
            self.progress.say(f"round trip {number}: {rtt * 1000:.2f} ms through the relay")
        if not self.report.rtts:
            raise TimeoutError(
                f"none of {ROUNDS} datagrams came back through the relay (each waited {wait:.2g} s)"
            )

    async def _check_tcp_relays(self) -> None:
        """Whether the server grants a TCP allocation (RFC 6062): informative, never failing."""
        accepted: bool | None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._connect(TransportProtocol.TCP)
                await client.allocate()
            accepted = True
        except ErrorResponse as error:
            accepted = False if error.code == 442 else None
            if accepted is None:
                self.report.notes.append(f"TCP relays not checked: {error}")
        except (StunError, TurnError, OSError, TimeoutError) as error:
            accepted = None
            self.report.notes.append(f"TCP relays not checked: {error or 'timeout'}")
        self.report.relay_transports["tcp"] = accepted
        self.report.steps.append(("tcp relays", accepted is True, loop.time() - started))
        said = {True: "granted", False: "refused (442)", None: "not checked"}[accepted]
        self.progress.say(f"TCP allocation (RFC 6062): {said}")

    async def _delete(self) -> None:
        clients, self._clients = self._clients, []
        if not clients:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(client.close(timeout=self.timeout) for client in clients))
        allocated = [client for client in clients if client.relayed_addresses]
        if allocated:
            self.report.deleted = all(client.deleted for client in allocated)
            self.report.steps.append(("delete", self.report.deleted, loop.time() - started))
            self.progress.say(
                "allocations deleted"
                if self.report.deleted
                else "the server did not confirm the deletion of every allocation"
            )


def unreachable_relay(relayed: Address, server: Address) -> str | None:
    """A note when peers on the Internet cannot reach ``relayed`` although they can reach the
    ``server`` itself: a server behind a NAT that announces its private address."""
    try:
        why = unreachable(ipaddress.ip_address(relayed.host))
        server_why = unreachable(ipaddress.ip_address(server.host))
    except ValueError:
        return None
    if why is None or server_why is not None:
        return None
    return (
        f"the relayed address {relayed} is not reachable from the Internet ({why}): peers "
        "cannot send to it; behind a 1:1 NAT, coturn and icestack serve turn need --external-ip "
        "PUBLIC[/PRIVATE]"
    )


async def _receive(client: TurnClient, payload: bytes, sender: Address) -> None:
    """Wait for ``payload`` from ``sender`` (skipping anything else, such as a late round)."""
    while True:
        data, source = await client.recv()
        if data == payload and source == sender:
            return


# =========================================================================== the command


def _credentials(args: argparse.Namespace) -> ProbeCredentials:
    if args.secret is not None:
        if args.password is not None:
            raise LocalProtocolError("--secret makes the password itself: drop --password")
        ttl = args.ttl if args.ttl is not None else DEFAULT_TTL
        return rest_credentials(args.secret, args.user, ttl, time.time())
    if args.ttl is not None:
        raise LocalProtocolError("--ttl is for credentials made from --secret")
    if args.user is None or args.password is None:
        missing = "--password" if args.user is not None else "--user"
        raise LocalProtocolError(
            f"{missing} missing: a TURN server always asks for credentials; give --user and "
            "--password, or the TURN REST API --secret"
        )
    return ProbeCredentials(args.user, args.password)


async def _probe(args: argparse.Namespace) -> int:
    # The client's warnings (a refused permission, say) are the report's business here.
    logging.getLogger("icestack").addHandler(logging.NullHandler())
    uri = parse_turn_target(args.uri)
    transport: Transport = uri.transport.value
    credentials = _credentials(args)
    if transport != "tls" and (args.cafile is not None or args.insecure):
        option = "--cafile" if args.cafile is not None else "--insecure"
        raise LocalProtocolError(f"{option} is for TURN over TLS: use a turns: URI")
    context = load_client_tls(args.cafile, verify=not args.insecure) if transport == "tls" else None
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET if args.ipv4 else 0
    timeout = args.timeout or DEFAULT_TIMEOUT
    progress = Progress(sys.stderr, scaled_schedule(timeout), transport)
    server = await resolve_target(uri.host, uri.port, family, transport, progress)
    shown = "" if server.host == uri.host else f" ({server.host})"
    progress.say(f"probing {uri}{shown} over {transport}, as {credentials.username!r}")
    report = TurnProbeReport(str(uri), transport, credentials, server=server)
    probe = TurnProbe(
        report, server=server, host=uri.host, ssl_context=context, timeout=timeout,
        progress=progress,
        relay_family=AddressFamily.IPV6 if args.relay_family == "ipv6" else AddressFamily.IPV4,
    )  # fmt: skip
    await probe.run()
    if report.ok:
        progress.say("the TURN server works")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report.rows()))
    return 0 if report.ok else 1


def run_probe(args: argparse.Namespace) -> int:
    """``icestack turn``, its options parsed (:mod:`turn.probe_options`)."""
    return asyncio.run(_probe(args))
