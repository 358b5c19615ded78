"""The options of ``icestack nat`` (:mod:`stun.nat_cli`), apart from the discovery itself: its
``--help`` and a mistaken option load no socket or asyncio; the discovery loads when it runs.
"""

from __future__ import annotations

import argparse

from .cli_options import parse_seconds
from .lazy_exports import run_later
from .public_servers import DEFAULT_PUBLIC_SERVER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack nat``: RFC 5780 NAT behaviour discovery."""
    parser.description = (
        "Test the NAT between this host and a STUN server that does RFC 5780 "
        "(mapping, filtering, hairpinning, and with --lifetime the binding lifetime) and say "
        "what it means for ICE."
    )
    parser.add_argument(
        "server",
        nargs="*",
        metavar="TARGET",
        help=f"HOST, HOST:PORT, [IPv6]:PORT or a stun: URI; default {DEFAULT_PUBLIC_SERVER}. "
        "Several are tested at once, and their verdicts compared",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object (docs/cli.md)")
    parser.add_argument(
        "--lifetime",
        action="store_true",
        help="also measure the binding lifetime (RFC 5780 §4.6): waits of up to --lifetime-max "
        "seconds, a binary search; takes minutes",
    )
    parser.add_argument(
        "--lifetime-max",
        type=parse_seconds,
        metavar="SECONDS",
        help="the longest wait of --lifetime (default 180)",
    )
    parser.add_argument(
        "--tcp", action="store_true", help="test the TCP mapping (no filtering test over TCP)"
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="test with every built-in public server (docs/stun.md) at once and compare verdicts",
    )
    parser.add_argument(
        "--timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help="how long each test waits for its answer (default 2; 3 sends over UDP)",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6")
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4")
    parser.set_defaults(run=run_later("stun.nat_cli", "run_nat"))
