"""``icestack nat``: what NAT is this host behind? RFC 5780 behaviour discovery against one STUN
server, or with ``--public`` against every listed public server that does RFC 5780, and what
the verdicts mean for ICE.

Progress goes to stderr, one line per test as it starts; the report to stdout: a table that
ends with what it means for ICE, or with ``--json`` one object whose schema docs/cli.md
documents (other tools parse it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

from .address import Address
from .aio_discovery import discover_nat
from .cli_messages import format_table, write_line
from .discovery_results import Behavior, DiscoveryConfig, DiscoveryResult, Finding, Lifetime
from .errors import LocalProtocolError, StunError
from .explain import explain
from .probe import address_json, parse_target
from .public_servers import DEFAULT_PUBLIC_SERVER
from .survey import SurveyTarget, resolve_all, survey_targets

_MAPPING_ADVICE = {
    Behavior.ENDPOINT_INDEPENDENT: "endpoint-independent mapping: your server-reflexive "
    "candidate is the address every peer sees, so ICE can connect directly to most peers",
    Behavior.ADDRESS_DEPENDENT: "address-dependent mapping: each peer sees you at another "
    "port, so direct connections to peers behind restrictive NATs will often fail; use a TURN "
    "server",
    Behavior.ADDRESS_AND_PORT_DEPENDENT: "address-and-port-dependent mapping: direct "
    "connections to peers behind the same kind of NAT will fail; use a TURN server",
}
_FILTERING_ADVICE = {
    Behavior.ENDPOINT_INDEPENDENT: "endpoint-independent filtering: anyone who learns your "
    "address can reach you",
    Behavior.ADDRESS_DEPENDENT: "address-dependent filtering: a peer reaches you once you have "
    "sent to its IP, which ICE's checks from both sides do",
    Behavior.ADDRESS_AND_PORT_DEPENDENT: "address-and-port-dependent filtering: a peer reaches "
    "you once you have sent to its exact address, which ICE's checks from both sides do",
}


def ice_meaning(result: DiscoveryResult) -> list[str]:
    """What the verdicts mean for ICE, a sentence a line; the last line is the bottom line."""
    if result.mapped_address is None:
        over = result.transport.upper()
        return [
            f"no answer from the server over {over}: if {over} is blocked here, ICE needs a TURN "
            "server reached over TCP or TLS (turn:HOST?transport=tcp or turns:HOST)"
        ]
    lines = []
    if result.nat is False:
        lines.append("no NAT between this host and the server: your host candidates are public")
    mapping, filtering = result.mapping.verdict, result.filtering.verdict
    if filtering is not None:
        lines.append(_FILTERING_ADVICE[filtering])
    if result.hairpinning.verdict is False:
        lines.append(
            "no hairpinning: two peers behind this same NAT reach each other over host "
            "candidates on the LAN, or through TURN"
        )
    if mapping is None:
        lines.append(
            "mapping undetermined: ICE may or may not connect directly; configure a TURN server "
            "to be safe"
        )
    else:
        lines.append(_MAPPING_ADVICE[mapping])
    return lines


def _verdict(finding: Finding[Any]) -> Any:
    verdict = finding.verdict
    if isinstance(verdict, Behavior):
        return verdict.value
    if isinstance(verdict, Lifetime):
        return {"alive_after": verdict.alive_after, "expired_after": verdict.expired_after}
    return verdict


def nat_report(target: str, result: DiscoveryResult) -> dict[str, Any]:
    """The ``--json`` document of ``icestack nat`` (schema in docs/cli.md)."""
    findings: dict[str, Finding[Any] | None] = {
        "mapping": result.mapping,
        "filtering": result.filtering,
        "hairpinning": result.hairpinning,
        "lifetime": result.lifetime,
    }
    return {
        "target": target,
        "server": address_json(result.server),
        "transport": result.transport,
        "local_address": address_json(result.local),
        "mapped_address": address_json(result.mapped_address),
        "other_address": address_json(result.other_address),
        "response_origin": address_json(result.response_origin),
        "software": result.software,
        "nat": result.nat,
        **{name: _verdict(f) if f is not None else None for name, f in findings.items()},
        "reason": {name: f.reason if f is not None else None for name, f in findings.items()},
        "evidence": {name: list(f.evidence) if f else [] for name, f in findings.items()},
        "ice": ice_meaning(result),
    }


def _shown(report: dict[str, Any], name: str) -> str:
    verdict = report[name]
    if verdict is None:
        reason = report["reason"][name]
        return f"undetermined: {reason}" if reason else "-"
    if name == "hairpinning":
        return "yes" if verdict else "no"
    if name == "lifetime":
        expired = verdict["expired_after"]
        alive = f"alive after {verdict['alive_after']:g} s"
        return (
            f"{alive}, gone after {expired:g} s"
            if expired is not None
            else f"{alive} (the longest wait)"
        )
    return str(verdict)


def nat_text(report: dict[str, Any]) -> str:
    """The readable report: a table, the evidence, and what it means for ICE."""

    def show(address: dict[str, Any] | None) -> str:
        return "-" if address is None else str(Address(address["host"], address["port"]))

    nat = {True: "yes", False: "no", None: "unknown"}[report["nat"]]
    rows = [
        ("server", f"{report['target']} ({report['transport']})"),
        ("local address", show(report["local_address"])),
        ("mapped address", show(report["mapped_address"])),
        ("other address", show(report["other_address"])),
        ("behind a NAT", nat),
        ("mapping", _shown(report, "mapping")),
        ("filtering", _shown(report, "filtering")),
        ("hairpinning", _shown(report, "hairpinning")),
    ]
    if report["lifetime"] is not None or report["reason"]["lifetime"] is not None:
        rows.append(("binding lifetime", _shown(report, "lifetime")))
    evidence = [line for lines in report["evidence"].values() for line in lines]
    text = format_table(rows)
    if evidence:
        text += "\n\nevidence:\n" + "\n".join(f"  {line}" for line in dict.fromkeys(evidence))
    text += "\n\nwhat it means for ICE:\n" + "\n".join(f"  {line}" for line in report["ice"])
    return text


def _config(args: argparse.Namespace) -> DiscoveryConfig:
    if args.lifetime and args.tcp:
        raise LocalProtocolError("--lifetime is a UDP test: drop --tcp or --lifetime")
    settings: dict[str, Any] = {"lifetime": args.lifetime, "reliable": args.tcp}
    if args.timeout is not None:
        settings["test_timeout"] = args.timeout
    if args.lifetime_max is not None:
        if not args.lifetime:
            raise LocalProtocolError("--lifetime-max without --lifetime: add --lifetime")
        settings["lifetime_max"] = args.lifetime_max
        # the search stops at a bracket 5 s wide, or a quarter of a shorter longest wait
        settings["lifetime_resolution"] = min(5.0, args.lifetime_max / 4)
    return DiscoveryConfig(**settings)


def _refuse_tls(transports: Iterable[str]) -> None:
    if "tls" in transports:
        raise LocalProtocolError(
            "a stuns: target is STUN over TLS: icestack nat tests over UDP, or TCP with --tcp "
            "(write stun:)"
        )


async def _nat(args: argparse.Namespace) -> int:
    config = _config(args)
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET if args.ipv4 else 0
    started = time.monotonic()

    def progress(text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - started:7.3f}s] {text}\n")
        sys.stderr.flush()

    if args.public or len(args.server) > 1:
        targets = survey_targets(args.server, public=args.public, tcp=args.tcp, tls=False)
        _refuse_tls(target.transport for target in targets)
        wanted = "tcp" if args.tcp else "udp"
        chosen = [target for target in targets if target.transport == wanted]
        return await _nat_many(args, config, family, progress, chosen)
    args.server = args.server[0] if args.server else None
    if args.server is not None and not args.server.strip():
        raise LocalProtocolError(
            f"the target is empty: name a STUN server, or leave TARGET out for "
            f"{DEFAULT_PUBLIC_SERVER}"
        )
    text = DEFAULT_PUBLIC_SERVER if args.server is None else args.server
    transport, host, port = parse_target(text, tcp=args.tcp, tls=False)
    _refuse_tls((transport,))
    target = str(Address(host, port))
    progress(f"NAT behaviour discovery with {target} over {transport} (RFC 5780)")
    try:
        result = await discover_nat(host, port, config=config, family=family, progress=progress)
    except LocalProtocolError as exc:
        raise LocalProtocolError(
            f"{exc}; check the name, and that this host can reach its DNS servers"
        ) from None
    except (StunError, OSError) as exc:
        # not a bad option: the network failed the run (no route to the server, say)
        why = explain(exc, target=target, transport=transport)
        progress(f"failed: {why}")
        write_line(sys.stderr, f"icestack: error: {why}")
        return 1
    report = nat_report(target, result)
    print(json.dumps(report, indent=2) if args.json else nat_text(report))
    return 0 if result.mapped_address is not None else 1


async def _nat_many(
    args: argparse.Namespace,
    config: DiscoveryConfig,
    family: int,
    progress: Any,
    targets: list[SurveyTarget],
) -> int:
    """Discovery against several servers (or every listed one) at once, each from its own
    sockets; whether their verdicts agree."""
    addresses = await resolve_all(targets, family, config.test_timeout * 2)
    progress(f"NAT behaviour discovery with {len(targets)} servers at once")

    async def one(target: SurveyTarget, address: Address | str) -> dict[str, Any]:
        shown = str(Address(target.host, target.port))
        if isinstance(address, str):
            return {"target": shown, "name": target.name, "error": address}
        try:
            result = await discover_nat(
                address.host,
                address.port,
                config=config,
                progress=lambda text: progress(f"{shown}: {text}"),
            )
        except (StunError, OSError) as exc:
            return {"target": shown, "name": target.name, "error": str(exc)}
        report = nat_report(shown, result)
        report["name"] = target.name
        report["error"] = None
        progress(f"{shown}: done")
        return report

    reports = await asyncio.gather(*(one(t, a) for t, a in zip(targets, addresses, strict=True)))
    agree = verdicts_agree(reports)
    if args.json:
        print(json.dumps({"servers": reports, "agree": agree}, indent=2))
    else:
        print(public_table(reports, agree))
    return 0 if any(r.get("mapped_address") for r in reports) else 1


def verdicts_agree(reports: list[dict[str, Any]]) -> bool | None:
    """Whether the servers that reached a verdict on mapping and filtering reached the same one
    (``None``: fewer than two did)."""
    seen = {
        (r["mapping"], r["filtering"])
        for r in reports
        if not r.get("error") and r["mapping"] is not None and r["filtering"] is not None
    }
    verdicts = [r for r in reports if not r.get("error") and r["mapping"] and r["filtering"]]
    if len(verdicts) < 2:
        return None
    return len(seen) == 1


def public_table(reports: list[dict[str, Any]], agree: bool | None) -> str:
    """One line per server (mapping, filtering, hairpinning, or why not), then the agreement."""
    rows = []
    for report in reports:
        if report.get("error"):
            rows.append((report["target"], f"no answer: {report['error']}"))
            continue
        if report["mapped_address"] is None:
            rows.append((report["target"], f"no answer: {report['reason']['mapping']}"))
            continue
        if report["other_address"] is None:
            mapped = report["mapped_address"]
            shown = Address(mapped["host"], mapped["port"]) if mapped else "-"
            rows.append((report["target"], f"no RFC 5780 (no OTHER-ADDRESS); mapped {shown}"))
            continue
        rows.append(
            (
                report["target"],
                f"mapping {_shown(report, 'mapping')}; filtering {_shown(report, 'filtering')}; "
                f"hairpinning {_shown(report, 'hairpinning')}",
            )
        )
    verdict = {
        None: "fewer than two servers reached a verdict: nothing to compare",
        True: "the servers' verdicts agree",
        False: "the servers' verdicts differ: the NAT may treat them differently, or one "
        "server's RFC 5780 support is broken",
    }[agree]
    return format_table(rows) + "\n\n" + verdict


def run_nat(args: argparse.Namespace) -> int:
    """``icestack nat``, its options parsed (:mod:`stun.nat_options`)."""
    return asyncio.run(_nat(args))
