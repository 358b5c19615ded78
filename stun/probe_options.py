"""The options of ``icestack stun`` (:mod:`stun.probe`), apart from the probe itself: its
``--help`` and a mistaken option load no socket, TLS or asyncio; the probe loads when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_options import parse_seconds
from .lazy_exports import run_later
from .public_servers import DEFAULT_PUBLIC_SERVER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack stun``: probe a STUN server."""
    parser.description = "Send one Binding request and report what the server answered."
    parser.add_argument(
        "server",
        nargs="*",
        metavar="TARGET",
        help=f"HOST, HOST:PORT, [IPv6]:PORT, or a stun:/stuns: URI (RFC 7064); default "
        f"{DEFAULT_PUBLIC_SERVER}; the port defaults to 3478, 5349 for TLS. Several targets "
        "are probed at once and reported as one table",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="probe the built-in list of well-known public STUN servers (docs/stun.md), each "
        "over the transports it is known to serve, at once",
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--tcp", action="store_true", help="STUN over TCP (RFC 8489 §6.2.2)")
    transport.add_argument("--tls", action="store_true", help="STUN over TLS (RFC 8489 §6.2.3)")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6")
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4")
    parser.add_argument("--user", help="long-term credential username")
    parser.add_argument("--password", help="long-term credential password")
    parser.add_argument("--cafile", type=Path, help="trust this CA file for --tls")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the TLS certificate (diagnostics)"
    )
    parser.add_argument(
        "--timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help="give up after this long (default 39.5, the RFC 8489 §6.2 schedule); over TCP and "
        "TLS it bounds connecting too",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object (docs/cli.md)")
    parser.set_defaults(run=run_later("stun.probe", "run_probe"))
