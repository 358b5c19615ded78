"""The options of ``icestack turn`` (:mod:`turn.probe`), apart from the probe itself: its
``--help`` and a mistaken option load no socket, TLS, asyncio or TURN client; the probe loads
when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stun.cli_options import parse_seconds
from stun.lazy_exports import run_later

#: Seconds each step may take unless ``--timeout`` says otherwise.
DEFAULT_TIMEOUT = 10.0
#: How long TURN REST API credentials made from ``--secret`` are valid, unless ``--ttl``.
DEFAULT_TTL = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack turn``: probe a TURN server."""
    parser.description = (
        "Allocate twice on a TURN server, relay datagrams between the two allocations "
        "through it, and report the relayed and mapped addresses, the lifetime, the RTT "
        "through the relay and the credential mechanisms; a failure is named by its step "
        "and said in words."
    )
    parser.add_argument(
        "uri",
        metavar="URI",
        help="turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065); a bare "
        "HOST[:PORT] is turn: over UDP",
    )
    parser.add_argument("--user", help="long-term credential username (with --secret: the user)")
    parser.add_argument("--password", help="long-term credential password")
    parser.add_argument(
        "--secret",
        help="TURN REST API shared secret (coturn's static-auth-secret): the probe makes "
        "time-limited credentials from it",
    )
    parser.add_argument(
        "--ttl",
        type=parse_seconds,
        metavar="SECONDS",
        help=f"how long credentials made from --secret are valid (default {DEFAULT_TTL:g})",
    )
    parser.add_argument("--cafile", type=Path, help="trust this CA file for turns:")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the TLS certificate (diagnostics)"
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6")
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4")
    parser.add_argument(
        "--relay-family",
        choices=("ipv4", "ipv6"),
        default="ipv4",
        help="the family of the relayed addresses to ask for (REQUESTED-ADDRESS-FAMILY; "
        "default ipv4, what a server grants when not asked)",
    )
    parser.add_argument(
        "--timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help=f"how long each step may take (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object (docs/cli.md)")
    parser.set_defaults(run=run_later("turn.probe", "run_probe"))
