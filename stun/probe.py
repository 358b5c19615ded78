"""``icestack stun``: probe a STUN server with one Binding request, and say what it answered.

The target is ``host``, ``host:port``, ``[v6]:port`` or a ``stun:`` / ``stuns:`` URI (RFC 7064).
The probe says at once what it probes, then shows its progress on stderr (each retransmission
over UDP, the wait over TCP and TLS), and prints its report on stdout: a table, or with
``--json`` one JSON object whose shape is documented in ``docs/cli.md`` and kept stable (other
tools parse it). A failure is said in words with a hint (:mod:`stun.explain`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from typing import Any, TextIO

from .address import Address
from .aio import DEFAULT_PORTS, StunClient, Transport, resolve
from .cli import load_client_tls
from .cli_messages import format_table
from .cli_options import server_address
from .client import BindingResult, ClientConfig, Credentials
from .datagram import Datagram
from .errors import ErrorResponse, LocalProtocolError, StunError
from .explain import Explanation, explain
from .public_servers import DEFAULT_PUBLIC_SERVER
from .transaction import RtoCache, TransactionConfig

#: The host probed when ``icestack stun`` is given none.
#: Seconds a name may take to resolve before the probe says it is resolving.
_QUIET_RESOLUTION = 0.5


def parse_target(text: str, *, tcp: bool, tls: bool) -> tuple[Transport, str, int]:
    """The transport, host and port of a probe target; a ``stuns:`` URI means TLS, ``stun:``
    not. Raises :class:`LocalProtocolError` for a target that is none of the accepted forms."""
    scheme, sep, rest = text.partition(":")
    transport: Transport = "tls" if tls else "tcp" if tcp else "udp"
    if sep and scheme.lower() in ("stun", "stuns") and not rest.isdigit():
        if "?" in rest:
            raise LocalProtocolError(
                f"{text!r}: a STUN URI has no query (RFC 7064); use --tcp for STUN over TCP"
            )
        secure = scheme.lower() == "stuns"
        if secure and tcp:
            raise LocalProtocolError(f"{text!r} is STUN over TLS: drop --tcp")
        if not secure and tls:
            raise LocalProtocolError(f"{text!r} is STUN without TLS: write stuns:, or drop --tls")
        transport = "tls" if secure else transport
        text = rest.removeprefix("//")
    try:
        host, port = server_address(text, DEFAULT_PORTS[transport])
    except argparse.ArgumentTypeError as exc:
        raise LocalProtocolError(str(exc)) from None
    return transport, host, port


def scaled_schedule(timeout: float) -> TransactionConfig:
    """The RFC 8489 §6.2 schedule, shrunk or stretched to give up after ``timeout`` seconds.

    Over UDP the Rc requests and the final Rm wait stay as they are and the initial RTO is scaled
    (the default 500 ms makes 39.5 s); over TCP/TLS ``timeout`` is Ti.
    """
    default = TransactionConfig()
    rtos = 2 ** (default.max_requests - 1) - 1 + default.final_wait
    return TransactionConfig(initial_rto=timeout / rtos, reliable_timeout=timeout)


class Progress:
    """One stderr line per step of a probe: the target, resolution, connection, and every
    request as it goes out (a retransmission is the same transaction ID again, RFC 8489 §6.2.1)."""

    def __init__(self, out: TextIO, schedule: TransactionConfig, transport: Transport) -> None:
        self.out = out
        self.schedule = schedule
        self.transport = transport
        self._started = time.monotonic()
        self._transaction: bytes | None = None
        self._server: Address | None = None
        self._sends = 0

    def say(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self._started:7.3f}s] {text}\n")
        self.out.flush()

    def sent(self, datagram: Datagram) -> None:
        """A request went out (or was written to the stream)."""
        transaction = datagram.data[8:20]
        if transaction != self._transaction:
            again = ""
            if self._transaction is not None:
                moved = datagram.remote != self._server
                again = f" to {datagram.remote} (redirected)" if moved else " again, as asked"
            self._transaction, self._server = transaction, datagram.remote
            self._sends = 1
            if self.transport == "udp":
                schedule = self.schedule
                total = (2 ** (schedule.max_requests - 1) - 1 + schedule.final_wait) * (
                    schedule.initial_rto
                )
                self.say(
                    f"request sent{again}; up to {schedule.max_requests} sends over "
                    f"{total:g} s until an answer comes"
                )
            else:
                self.say(
                    f"request sent{again}; waiting up to {self.schedule.reliable_timeout:g} s "
                    "for the answer"
                )
            return
        self._sends += 1
        self.say(f"no answer yet: sent again ({self._sends} of {self.schedule.max_requests})")


def address_json(address: Address | None) -> dict[str, Any] | None:
    """An address as the ``--json`` documents write it: ``{"host": ..., "port": ...}``."""
    return None if address is None else {"host": address.host, "port": address.port}


def probe_report(
    transport: str,
    target: str,
    result: BindingResult | None,
    error: BaseException | None,
    explanation: Explanation | None = None,
) -> dict[str, Any]:
    """The ``--json`` document of ``icestack stun`` (schema in docs/cli.md)."""
    report: dict[str, Any] = {
        "ok": result is not None,
        "target": target,
        "transport": transport,
        "server": address_json(result.server) if result else None,
        "mapped_address": address_json(result.mapped_address) if result else None,
        "rtt_ms": round(result.rtt * 1000, 3) if result else None,
        "software": result.software if result else None,
        "features": list(result.features) if result else [],
        "response_origin": address_json(result.response_origin) if result else None,
        "other_address": address_json(result.other_address) if result else None,
        "error": None,
    }
    if error is not None:
        explanation = explanation or Explanation(str(error))
        report["error"] = {
            "type": type(error).__name__,
            "message": explanation.what,
            "hint": explanation.hint,
            "code": error.code if isinstance(error, ErrorResponse) else None,
        }
    return report


def _probe_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    def show(address: dict[str, Any] | None) -> str:
        return "-" if address is None else str(Address(address["host"], address["port"]))

    rows = [("target", f"{report['target']} ({report['transport']})")]
    if report["ok"]:
        rows += [
            ("server", show(report["server"])),
            ("mapped address", show(report["mapped_address"])),
            ("rtt", f"{report['rtt_ms']:.2f} ms"),
            ("software", report["software"] or "-"),
            ("features", ", ".join(report["features"]) or "-"),
        ]
        if report["other_address"]:
            rows.append(("other address", show(report["other_address"])))
    else:
        error = report["error"]
        rows.append(("error", error["message"]))
        if error["hint"]:
            rows.append(("hint", error["hint"]))
    return rows


async def resolve_target(
    host: str, port: int, family: int, transport: Transport, progress: Progress
) -> Address:
    """The address of the server a probe probes. A name that does not resolve is a bad option
    (:class:`LocalProtocolError`: exit 2, in one line); a slow resolver shows as progress."""
    resolving = asyncio.ensure_future(_resolve(host, port, family, transport))
    if not (await asyncio.wait({resolving}, timeout=_QUIET_RESOLUTION))[0]:
        progress.say(f"resolving {host}")
    return await resolving


async def _resolve(host: str, port: int, family: int, transport: Transport) -> Address:
    """The server's address; a name that does not resolve is a bad option (exit 2)."""
    names: dict[int, str] = {socket.AF_INET: " IPv4", socket.AF_INET6: " IPv6"}
    wanted = names.get(family, "")
    try:
        return await resolve(host, port, family, stream=transport != "udp")
    except LocalProtocolError as exc:
        if wanted and "family" in str(exc):
            option = "-4" if family == socket.AF_INET else "-6"
            raise LocalProtocolError(f"{host} has no{wanted} address ({option})") from None
        raise LocalProtocolError(
            f"{exc}; check the name, and that this host can reach its DNS servers"
        ) from None


async def binding_probe(
    server: Address,
    host: str,
    transport: Transport,
    *,
    credentials: Credentials | None,
    context: ssl.SSLContext | None,
    schedule: TransactionConfig,
    progress: Progress | None = None,
) -> BindingResult:
    """One Binding transaction with ``server`` (named ``host``, for TLS) under ``schedule``;
    each request shows on ``progress`` if given. Raises what the client raises."""
    # Connecting ends within the schedule's Ti, the --timeout over TCP and TLS.
    client = await StunClient.connect(
        server.host, server.port, transport=transport, credentials=credentials,
        ssl_context=context, server_hostname=host,
        config=ClientConfig(transaction=schedule), rto_cache=RtoCache(schedule),
    )  # fmt: skip
    if progress is not None:
        if transport != "udp":
            progress.say(f"connected over {transport}")
        # Every request the client sends shows as progress (a fresh RTO cache: the schedule is
        # the configured one, from its first send).
        send = client._driver.send_datagram

        def send_and_show(datagram: Datagram) -> None:
            progress.sent(datagram)
            send(datagram)

        client._driver.send_datagram = send_and_show
    async with client:
        return await client.binding()


async def _probe(args: argparse.Namespace) -> int:
    if args.public or len(args.server) > 1:
        from .survey import survey  # the survey builds on this module

        return await survey(args)
    args.server = args.server[0] if args.server else None
    if args.server is not None and not args.server.strip():
        # "$SERVER" with SERVER unset must not probe a public server instead.
        raise LocalProtocolError(
            f"the target is empty: name a STUN server, or leave TARGET out to probe "
            f"{DEFAULT_PUBLIC_SERVER}"
        )
    transport, host, port = parse_target(
        DEFAULT_PUBLIC_SERVER if args.server is None else args.server, tcp=args.tcp, tls=args.tls
    )
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET if args.ipv4 else 0
    credentials = None
    if args.user is not None and args.password is None:
        raise LocalProtocolError("--user needs --password")
    if args.password is not None and args.user is None:
        raise LocalProtocolError("--password needs --user")
    if args.user is not None:
        credentials = Credentials(username=args.user, password=args.password)
    if transport != "tls" and (args.cafile is not None or args.insecure):
        option = "--cafile" if args.cafile is not None else "--insecure"
        raise LocalProtocolError(f"{option} is for STUN over TLS: add --tls, or use a stuns: URI")
    context = load_client_tls(args.cafile, verify=not args.insecure) if transport == "tls" else None
    schedule = scaled_schedule(args.timeout) if args.timeout else TransactionConfig()
    target = str(Address(host, port))
    progress = Progress(sys.stderr, schedule, transport)
    server = await resolve_target(host, port, family, transport, progress)
    shown = "" if server.host == host else f" ({server.host})"
    progress.say(f"probing {target}{shown} over {transport}")
    result: BindingResult | None = None
    error: StunError | OSError | None = None
    try:
        result = await binding_probe(
            server, host, transport, credentials=credentials, context=context,
            schedule=schedule, progress=progress,
        )  # fmt: skip
    except (StunError, OSError) as exc:
        error = exc
    explanation = None
    if error is not None:
        explanation = explain(
            error, target=target, transport=transport, with_credentials=credentials is not None
        )
        progress.say(f"failed: {explanation.what}")
    report = probe_report(transport, target, result, error, explanation)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(_probe_rows(report)))
    return 0 if result is not None else 1


def run_probe(args: argparse.Namespace) -> int:
    """``icestack stun``, its options parsed (:mod:`stun.probe_options`)."""
    return asyncio.run(_probe(args))
