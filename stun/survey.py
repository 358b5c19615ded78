"""``icestack stun TARGET TARGET…`` and ``icestack stun --public``: many STUN servers probed at
once, reported as one table or one JSON document (schema in docs/cli.md).

Every target gets one Binding transaction under the same bounded schedule (``--timeout``,
default :data:`SURVEY_TIMEOUT` seconds) through the same code as a single probe
(:func:`stun.probe.binding_probe`). Names are resolved first, all at once and each within the
timeout: a name that does not resolve is that server's row; when none does, the survey fails
at once in one line (this host is offline, or its resolver is), exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from .address import Address
from .aio import Transport, resolve
from .cli import load_client_tls
from .errors import LocalProtocolError, StunError
from .explain import Explanation, explain
from .probe import binding_probe, parse_target, probe_report, scaled_schedule
from .public_servers import PUBLIC_SERVERS

#: Seconds each server of a survey gets, unless ``--timeout`` says otherwise.
SURVEY_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class SurveyTarget:
    """One row of a survey: a server over one transport, and the name of its list entry."""

    name: str | None
    transport: Transport
    host: str
    port: int


def survey_targets(texts: list[str], *, public: bool, tcp: bool, tls: bool) -> list[SurveyTarget]:
    """The targets named on the command line, or the public list's entries over each transport
    they serve (only TCP ones with ``--tcp``); raises :class:`LocalProtocolError` for a bad one."""
    if public and texts:
        raise LocalProtocolError("--public probes the built-in list: drop the TARGETs, or --public")
    if public:
        if tls:
            raise LocalProtocolError("--public with --tls: no listed server is known to serve TLS")
        return [
            SurveyTarget(entry.name, transport, entry.host, entry.port)  # type: ignore[arg-type]
            for entry in PUBLIC_SERVERS
            for transport in entry.transports
            if transport == "tcp" or not tcp
        ]
    targets = []
    for text in texts:
        if not text.strip():
            raise LocalProtocolError("a TARGET is empty: name a STUN server")
        transport, host, port = parse_target(text, tcp=tcp, tls=tls)
        targets.append(SurveyTarget(None, transport, host, port))
    return targets


async def resolve_all(
    targets: list[SurveyTarget], family: int, timeout: float
) -> list[Address | str]:
    """Each target's address, or why it has none; all at once, each within ``timeout``. Raises
    :class:`LocalProtocolError` when no name resolves."""

    async def one(target: SurveyTarget) -> Address | str:
        try:
            return await asyncio.wait_for(
                resolve(target.host, target.port, family, stream=target.transport != "udp"),
                timeout,
            )
        except LocalProtocolError as exc:
            return str(exc)
        except TimeoutError:
            return f"resolving {target.host!r} took longer than {timeout:g} s"

    found = await asyncio.gather(*(one(target) for target in targets))
    if not any(isinstance(address, Address) for address in found):
        first = next(str(reason) for reason in found)
        raise LocalProtocolError(
            f"none of the {len(targets)} servers' names resolves ({first}); is this host "
            "offline, or its DNS resolver unreachable?"
        )
    return found


async def survey(args: argparse.Namespace) -> int:
    """Probe every target at once; print the table (or ``--json``); exit 0 if any answered."""
    if args.user is not None or args.password is not None:
        raise LocalProtocolError("--user/--password are one server's: probe it on its own")
    targets = survey_targets(args.server, public=args.public, tcp=args.tcp, tls=args.tls)
    if (args.cafile is not None or args.insecure) and not any(
        t.transport == "tls" for t in targets
    ):
        raise LocalProtocolError("--cafile/--insecure are for STUN over TLS targets")
    tls = any(t.transport == "tls" for t in targets)
    context = load_client_tls(args.cafile, verify=not args.insecure) if tls else None
    timeout = args.timeout or SURVEY_TIMEOUT
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET if args.ipv4 else 0
    started = time.monotonic()

    def say(text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - started:7.3f}s] {text}\n")
        sys.stderr.flush()

    say(f"probing {len(targets)} servers at once, up to {timeout:g} s each")
    addresses = await resolve_all(targets, family, timeout)
    schedule = scaled_schedule(timeout)

    async def probe(target: SurveyTarget, address: Address | str) -> dict[str, Any]:
        shown = str(Address(target.host, target.port))
        if isinstance(address, str):
            error: BaseException = LocalProtocolError(address)
            report = probe_report(target.transport, shown, None, error, Explanation(address))
        else:
            try:
                result = await binding_probe(
                    address, target.host, target.transport, credentials=None,
                    context=context, schedule=schedule,
                )  # fmt: skip
                report = probe_report(target.transport, shown, result, None)
            except (StunError, OSError) as exc:
                why = explain(exc, target=shown, transport=target.transport)
                report = probe_report(target.transport, shown, None, exc, why)
        report["name"] = target.name
        say(f"{shown} over {target.transport}: " + _outcome(report))
        return report

    reports = await asyncio.gather(*(probe(t, a) for t, a in zip(targets, addresses, strict=True)))
    answered = sum(report["ok"] for report in reports)
    if args.json:
        document = {"servers": reports, "answered": answered, "probed": len(reports)}
        print(json.dumps(document, indent=2))
    else:
        print(survey_table(reports))
        print(f"{answered} of {len(reports)} answered")
    return 0 if answered else 1


def _outcome(report: dict[str, Any]) -> str:
    if report["ok"]:
        return f"answered in {report['rtt_ms']:.1f} ms"
    return str(report["error"]["message"])


def _short(feature: str) -> str:
    return feature.split(" (")[0]


def _address_text(address: dict[str, Any] | None) -> str:
    return "-" if address is None else str(Address(address["host"], address["port"]))


def survey_table(reports: list[dict[str, Any]]) -> str:
    """One line per server: target, transport, RTT or why not, mapped address, SOFTWARE,
    RFC 8489 features seen, and RFC 5780 support (OTHER-ADDRESS)."""
    header = ("server", "over", "answer", "mapped address", "software", "features", "rfc 5780")
    rows = [header]
    for report in reports:
        ok = report["ok"]
        features = [_short(f) for f in report["features"] if "RFC 5780" not in f]
        other = report["other_address"]
        rows.append(
            (
                report["target"],
                report["transport"],
                f"{report['rtt_ms']:.1f} ms" if ok else f"no: {report['error']['message']}",
                _address_text(report["mapped_address"]),
                (report["software"] or "-") if ok else "-",
                ", ".join(features) or "-",
                (f"yes, other address {_address_text(other)}" if other else "no") if ok else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ).rstrip()
