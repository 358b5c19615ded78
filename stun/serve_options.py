"""The options of ``icestack serve stun`` (:mod:`stun.serve_cli`), apart from the server: its
``--help`` and a mistaken option load no socket, TLS or asyncio; the server loads when it runs.
"""

from __future__ import annotations

import argparse

from ._version import __version__
from .cli_options import add_batch_io_option, add_limit_options, parse_user, port_number
from .lazy_exports import run_later


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack serve stun``: run the STUN server in the foreground."""
    parser.description = "Run a STUN Binding server until Ctrl-C. One log line per listener."
    parser.add_argument(
        "--listen",
        action="append",
        metavar="ADDR[:PORT]",
        help="listen here, an IP address (repeatable; default 0.0.0.0:3478 and [::]:3478); "
        "UDP always",
    )
    parser.add_argument("--tcp", action="store_true", help="also listen on TCP at each address")
    parser.add_argument(
        "--tls",
        nargs="*",
        metavar="FILE",
        help="also listen with TLS: --tls CERT KEY, or --tls alone for a self-signed certificate",
    )
    parser.add_argument("--tls-port", type=port_number, help="TLS port, with --tls (default 5349)")
    parser.add_argument(
        "--auth",
        choices=("none", "short-term", "long-term"),
        default="none",
        help="authentication (RFC 8489 §9); a plain STUN server needs none (§12)",
    )
    parser.add_argument(
        "--user",
        action="append",
        type=parse_user,
        metavar="NAME:PASSWORD",
        help="a credential (repeatable)",
    )
    parser.add_argument("--realm", default="icestack", help="long-term credential realm")
    parser.add_argument(
        "--software", default=f"icestack {__version__}", help="SOFTWARE attribute value"
    )
    parser.add_argument("--no-software", action="store_true", help="send no SOFTWARE attribute")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing each port with SO_REUSEPORT (default 1; use the core count)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--rfc5780",
        action="store_true",
        help="NAT behaviour discovery (RFC 5780): with two --listen IP:PORT of one family, "
        "listen on both IPs at PORT and the alternate port, answer CHANGE-REQUEST, "
        "RESPONSE-PORT and PADDING, send OTHER-ADDRESS and RESPONSE-ORIGIN",
    )
    parser.add_argument(
        "--alt-port", type=port_number, metavar="PORT", help="the alternate port (default PORT + 1)"
    )
    parser.add_argument(
        "--auth-discovery-only",
        action="store_true",
        help="with --auth and --rfc5780: only requests using CHANGE-REQUEST, RESPONSE-PORT or "
        "PADDING must authenticate; plain Binding requests are answered without",
    )
    add_batch_io_option(parser.add_argument)
    add_limit_options(parser.add_argument)
    parser.set_defaults(run=run_later("stun.serve_cli", "run_serve"))
