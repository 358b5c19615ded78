"""The options of ``icestack serve turn`` (:mod:`turn.cli`), apart from the server: its
``--help`` and a mistaken option load no socket, TLS, asyncio or server; the server loads when it
runs. Every option defaults to ``None``, so that a ``--config`` file
(:mod:`turn.turnserver_conf`) can fill what the command line does not give.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stun.cli_options import (
    add_batch_io_option,
    add_limit_options,
    bounded_integer,
    parse_seconds,
    parse_user,
    port_number,
)
from stun.lazy_exports import run_later

from .server.relays import DYNAMIC_PORTS
from .turnserver_conf import OptionNames

#: The TLS port and the realm when ``--tls-listening-port`` and ``--realm`` do not say.
DEFAULT_TLS_PORT = 5349
DEFAULT_REALM = "icestack"
#: coturn's default max-allocate-timeout, as TurnServer's.
DEFAULT_ALLOCATE_TIMEOUT = 60.0

_port = port_number
_relay_port = bounded_integer(1, 65535)
_positive = bounded_integer(1)


def _add_options(parser: argparse.ArgumentParser) -> OptionNames:
    """Every option, defaulting to ``None`` so that a config file can fill what is not given."""
    flags: set[str] = set()
    valued: set[str] = set()
    repeatable: set[str] = set()

    def option(name: str, *aliases: str, **kwargs: object) -> None:
        parser.add_argument(name, *aliases, default=None, **kwargs)  # type: ignore[arg-type]
        key = name.removeprefix("--")
        (flags if kwargs.get("action") == "store_true" else valued).add(key)
        if kwargs.get("action") == "append":
            repeatable.add(key)

    option(
        "--listen",
        action="append",
        metavar="ADDR[:PORT]",
        help="listen here (repeatable; default 0.0.0.0:3478 and [::]:3478)",
    )
    option("--no-udp", action="store_true", help="no UDP listeners")
    option("--no-tcp", action="store_true", help="no TCP listeners")
    option(
        "--tls",
        nargs="*",
        metavar="FILE",
        help="also listen with TLS: --tls CERT KEY (--tls alone: a self-signed certificate)",
    )
    option(
        "--tls-listening-port",
        "--tls-port",
        type=_port,
        metavar="PORT",
        help=f"TLS port (default {DEFAULT_TLS_PORT})",
    )
    option(
        "--user",
        action="append",
        type=parse_user,
        metavar="NAME:PASSWORD",
        help="a long-term credential (repeatable)",
    )
    option("--realm", help=f"the realm of the long-term credentials (default {DEFAULT_REALM})")
    option(
        "--static-auth-secret",
        metavar="SECRET",
        help="accept TURN REST API credentials made with this shared secret",
    )
    option(
        "--allowed-peer-ip",
        action="append",
        metavar="CIDR",
        help="relay to these peers even inside refused ranges (repeatable)",
    )
    option(
        "--denied-peer-ip",
        action="append",
        metavar="CIDR",
        help="refuse these peers too (repeatable)",
    )
    option("--allow-loopback-peers", action="store_true", help="relay to 127.0.0.0/8 and ::1")
    option(
        "--allow-documentation-peers",
        action="store_true",
        help="relay to the documentation ranges (192.0.2.0/24, 2001:db8::/32, ...), for labs",
    )
    option(
        "--nat64-prefix",
        action="append",
        metavar="CIDR",
        help="a NAT64 prefix of this network: judge its peers by the IPv4 inside (repeatable)",
    )
    option(
        "--rfc5766-channels",
        action="store_true",
        help="accept channel numbers up to 0x7FFF (RFC 5766 clients, coturn's turnutils_uclient)",
    )
    option(
        "--no-tcp-relay",
        action="store_true",
        help="refuse TCP allocations (RFC 6062 TCP relays), answering them 442",
    )
    option("--user-quota", type=_positive, metavar="N", help="allocations per user (default 10)")
    option("--total-quota", type=_positive, metavar="N", help="allocations in all (default 1000)")
    option(
        "--max-bps",
        type=_positive,
        metavar="BYTES",
        help="relayed bytes a second per allocation and direction (default: no limit)",
    )
    add_limit_options(option)
    add_batch_io_option(option)
    option(
        "--max-allocate-timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help="close a TCP or TLS connection that has no allocation this long after it is "
        f"accepted (default {DEFAULT_ALLOCATE_TIMEOUT:g})",
    )
    option(
        "--alternate-server",
        metavar="ADDR[:PORT]",
        help="redirect every Allocate there (300 Try Alternate)",
    )
    option(
        "--relay-ip",
        action="append",
        metavar="IP",
        help="bind relayed addresses here, one per family (default: the --listen address)",
    )
    option(
        "--external-ip",
        "-X",
        action="append",
        metavar="PUBLIC[/PRIVATE]",
        help="behind a 1:1 NAT: report relayed addresses with this public address, for every "
        "relay address of its family or for PRIVATE only (repeatable, one per family or "
        "PRIVATE)",
    )
    option(
        "--min-port",
        type=_relay_port,
        metavar="PORT",
        help=f"lowest relayed port (default {DYNAMIC_PORTS.start})",
    )
    option(
        "--max-port",
        type=_relay_port,
        metavar="PORT",
        help=f"highest relayed port (default {DYNAMIC_PORTS.stop - 1})",
    )
    option(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics over HTTP on this port (worker i: PORT + i)",
    )
    option("--metrics-host", metavar="ADDR", help="metrics address (default 127.0.0.1)")
    option(
        "--workers",
        type=_positive,
        metavar="N",
        help="processes sharing each port with SO_REUSEPORT (default 1; use the core count)",
    )
    option("--uvloop", action="store_true", help="run on uvloop")
    option(
        "--verbose",
        "-v",
        action="store_true",
        help="log a line per session event: allocation, permission, channel, refusal and why, "
        "deletion",
    )
    option(
        "--log-file",
        "-l",
        metavar="FILE",
        help="append the log to FILE instead of writing it to stderr",
    )
    option("--pkey-pwd", metavar="PASSWORD", help="the password of an encrypted --tls key")
    option("--no-stun", action="store_true", help="do not answer Binding requests")
    option("--no-software-attribute", action="store_true", help="send no SOFTWARE attribute")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read options from FILE, a coturn turnserver.conf: one name=value (or bare flag) "
        "a line, # comments; coturn's own names too",
    )
    return OptionNames(frozenset(flags), frozenset(valued), frozenset(repeatable))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``icestack serve turn``: run the TURN server in the foreground."""
    parser.description = (
        "Run a TURN server (RFC 8656) until Ctrl-C. One log line per listener. Option names "
        "follow coturn's; --config reads them from a file."
    )
    options = _add_options(parser)
    parser.set_defaults(run=run_later("turn.cli", "run_serve", parser, options))
