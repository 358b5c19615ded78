"""The ``icestack`` command line: ``demo``, ``stun`` (probe a server) and ``serve stun``.

Each package contributes its own commands (``stun.cli``); this module only assembles them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from stun._version import __version__
from stun.aio import StunClient, StunServer, Transport, ipv6_loopback_available
from stun.cli import add_probe_command, add_serve_command, format_table, main_error
from stun.errors import LocalProtocolError, StunError
from stun.tls import client_context, make_self_signed, server_context


async def run_demo() -> int:
    """Start the embedded STUN server on loopback and probe it over every transport.

    Works with no network at all: IPv4 and IPv6 loopback, UDP, TCP and TLS (self-signed).
    """
    files = make_self_signed()
    hosts = ["127.0.0.1"]
    if ipv6_loopback_available():
        hosts.append("::1")
    rows: list[tuple[str, ...]] = []
    async with StunServer() as server:
        targets: list[tuple[Transport, str, int]] = []
        for host in hosts:
            for transport in ("udp", "tcp", "tls"):
                context = server_context(files.certificate, files.private_key)
                listener = await server.listen(
                    transport, host, 0, ssl_context=context if transport == "tls" else None
                )
                targets.append((transport, host, listener.address.port))
        print(f"icestack {__version__} demo: embedded STUN server on loopback")
        for listener in server.listeners:
            print(f"  listening on {listener}")
        print()
        for transport, host, port in targets:
            try:
                async with await StunClient.connect(
                    host,
                    port,
                    transport=transport,
                    ssl_context=client_context(files.certificate),
                ) as client:
                    result = await client.binding()
                rows.append((
                    transport,
                    str(result.server),
                    str(result.mapped_address),
                    f"{result.rtt * 1000:.2f} ms",
                    result.software or "-",
                ))
            except (StunError, OSError) as exc:
                rows.append((transport, f"{host}:{port}", f"failed: {exc}", "-", "-"))
    header = ("transport", "server", "mapped address", "rtt", "software")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    failures = sum(1 for row in rows if row[2].startswith("failed"))
    print()
    print(format_table([
        ("probes", str(len(rows))),
        ("answered", str(len(rows) - failures)),
    ]))
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``icestack`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="icestack",
        description="STUN, TURN and ICE in pure Python: probe servers, run servers, try it out.",
    )
    parser.add_argument("--version", action="version", version=f"icestack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo", help="run the embedded STUN server on loopback and probe it (no network needed)"
    )
    demo.set_defaults(run=lambda args: asyncio.run(run_demo()))
    add_probe_command(commands)
    serve = commands.add_parser("serve", help="run a server in the foreground")
    serve_commands = serve.add_subparsers(dest="server", metavar="SERVER", required=True)
    add_serve_command(serve_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``icestack`` console script."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except (LocalProtocolError, argparse.ArgumentTypeError) as exc:
        # ArgumentTypeError: an address that split_host_port rejects after parsing.
        return main_error(str(exc))
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
