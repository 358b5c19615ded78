"""The options of ``icestack ice offer|answer`` (:mod:`ice.commands`), apart from the test: its
``--help`` and a mistaken option (a TURN URI that is none, say) load no agent, socket or
asyncio; they load when the test runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stun.cli_options import parse_seconds as seconds
from stun.cli_options import server_address
from stun.lazy_exports import run_later
from stun.public_servers import DEFAULT_PUBLIC_SERVER
from turn.errors import DecodeError as UriDecodeError
from turn.uri import ServerUri, parse_uri

#: How many echo round trips ``ice offer|answer`` measure by default.
PATH_ECHO_COUNT = 5


def stun_server(text: str) -> tuple[str, int]:
    """An argparse ``type``: ``--stun HOST[:PORT]``, the port 3478 unless given."""
    return server_address(text, 3478)


def _turn_uri(text: str) -> ServerUri:
    """An argparse ``type``: a ``turn:`` or ``turns:`` URI (RFC 7065), or ``host[:port]`` for
    ``turn:host[:port]`` over UDP."""
    scheme = text.partition(":")[0].lower()
    uri = text if scheme in ("turn", "turns", "stun", "stuns") else f"turn:{text}"
    try:
        parsed = parse_uri(uri)
    except UriDecodeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not parsed.is_turn:
        raise argparse.ArgumentTypeError(f"{text!r} is a STUN URI: give it with --stun")
    return parsed


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"want a whole number of at least 1, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack ice offer|answer``: a two-terminal connectivity test."""
    parser.description = (
        "Run `icestack ice offer` on one machine and `icestack ice answer` on the "
        "other; paste each one's line into the other; both report the path ICE found and its RTT."
    )
    roles = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    for role, help_text in (
        ("offer", "controlling side: gather, print the offer line, read the answer line"),
        ("answer", "controlled side: read the offer line, gather, print the answer line"),
    ):
        sub = roles.add_parser(role, help=help_text, description=help_text)
        stun = sub.add_mutually_exclusive_group()  # --no-stun with --stun: one line, exit 2
        stun.add_argument(
            "--stun",
            action="append",
            type=stun_server,
            metavar="HOST[:PORT]",
            help=f"a STUN server for server-reflexive candidates (repeatable; default "
            f"{DEFAULT_PUBLIC_SERVER})",
        )
        stun.add_argument("--no-stun", action="store_true", help="no server-reflexive candidates")
        turn = sub.add_argument_group(
            "TURN", "relayed candidates: TURN over UDP, TCP or TLS (RFC 7065 URIs)"
        )
        turn.add_argument(
            "--turn",
            action="append",
            type=_turn_uri,
            metavar="URI",
            help="a TURN server: turn:HOST[:PORT][?transport=udp|tcp], or turns:HOST[:PORT] "
            "for TLS (repeatable)",
        )
        turn.add_argument("--turn-user", metavar="USER", help="the TURN username")
        turn.add_argument("--turn-password", metavar="PASSWORD", help="the TURN password")
        turn.add_argument(
            "--turn-secret",
            metavar="SECRET",
            help="the TURN REST API shared secret (coturn's static-auth-secret): credentials "
            "are made from it, for --turn-user if given",
        )
        turn.add_argument(
            "--turn-cafile", type=Path, metavar="FILE", help="trust this CA file for turns:"
        )
        turn.add_argument(
            "--turn-insecure",
            action="store_true",
            help="do not verify the turns: server's certificate (diagnostics only)",
        )
        turn.add_argument(
            "--relay-only",
            action="store_true",
            help="use relayed candidates only: the path goes through a TURN server",
        )
        transports = sub.add_mutually_exclusive_group()
        transports.add_argument(
            "--no-tcp", action="store_true", help="offer no ICE-TCP candidates (RFC 6544)"
        )
        transports.add_argument(
            "--no-udp",
            action="store_true",
            help="offer ICE-TCP host candidates only (no UDP, STUN or TURN), as on a network "
            "that blocks UDP",
        )
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
        sub.set_defaults(run=run_later("ice.commands", "run_ice"))
