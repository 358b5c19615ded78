"""The STUN commands of the ``icestack`` CLI: ``icestack stun`` (probe) and ``icestack serve stun``.

``icestack stun --json`` prints one JSON object whose shape is documented in ``docs/cli.md`` and
kept stable: other tools parse it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ._version import __version__
from .address import Address
from .aio import DEFAULT_PORTS, Listener, StunServer, Transport, binding, install_uvloop
from .client import BindingResult, ClientConfig, Credentials
from .errors import ErrorResponse, LocalProtocolError, StunError
from .server import LongTermCredentials, ServerConfig, ShortTermCredentials
from .tls import client_context, make_self_signed, server_context
from .transaction import TransactionConfig

#: The host probed when ``icestack stun`` is given none.
DEFAULT_PUBLIC_SERVER = "stun.l.google.com:19302"

_log = logging.getLogger("icestack")


def split_host_port(text: str, default_port: int | None) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise argparse.ArgumentTypeError(f"unclosed '[' in {text!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise argparse.ArgumentTypeError(f"no host in {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return host, int(port_text)


# =========================================================================== icestack stun


def scaled_schedule(timeout: float) -> TransactionConfig:
    """The RFC 8489 §6.2 schedule, shrunk or stretched to give up after ``timeout`` seconds.

    Over UDP the Rc requests and the final Rm wait stay as they are and the initial RTO is scaled
    (the default 500 ms makes 39.5 s); over TCP/TLS ``timeout`` is Ti.
    """
    default = TransactionConfig()
    rtos = 2 ** (default.max_requests - 1) - 1 + default.final_wait
    return TransactionConfig(initial_rto=timeout / rtos, reliable_timeout=timeout)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _address_json(address: Address | None) -> dict[str, Any] | None:
    return None if address is None else {"host": address.host, "port": address.port}


def probe_report(
    transport: str, target: str, result: BindingResult | None, error: StunError | OSError | None
) -> dict[str, Any]:
    """The ``--json`` document of ``icestack stun`` (schema in docs/cli.md)."""
    report: dict[str, Any] = {
        "ok": result is not None,
        "target": target,
        "transport": transport,
        "server": _address_json(result.server) if result else None,
        "mapped_address": _address_json(result.mapped_address) if result else None,
        "rtt_ms": round(result.rtt * 1000, 3) if result else None,
        "software": result.software if result else None,
        "features": list(result.features) if result else [],
        "response_origin": _address_json(result.response_origin) if result else None,
        "other_address": _address_json(result.other_address) if result else None,
        "error": None,
    }
    if error is not None:
        report["error"] = {
            "type": type(error).__name__,
            "message": str(error),
            "code": error.code if isinstance(error, ErrorResponse) else None,
        }
    return report


def format_table(rows: list[tuple[str, str]]) -> str:
    """Two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


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
        rows.append(("error", f"{error['type']}: {error['message']}"))
    return rows


async def _probe(args: argparse.Namespace) -> int:
    transport: Transport = "tls" if args.tls else "tcp" if args.tcp else "udp"
    host, port = split_host_port(args.server or DEFAULT_PUBLIC_SERVER, None)
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET if args.ipv4 else 0
    credentials = None
    if args.user is not None:
        if args.password is None:
            raise LocalProtocolError("--user needs --password")
        credentials = Credentials(username=args.user, password=args.password)
    context = client_context(args.cafile, verify=not args.insecure) if transport == "tls" else None
    target = f"{host}:{port or DEFAULT_PORTS[transport]}"
    config = ClientConfig(transaction=scaled_schedule(args.timeout)) if args.timeout else None
    result: BindingResult | None = None
    error: StunError | OSError | None = None
    try:
        result = await binding(
            host, port, transport=transport, family=family, credentials=credentials,
            ssl_context=context, config=config,
        )
    except (StunError, OSError) as exc:
        error = exc
    report = probe_report(transport, target, result, error)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(_probe_rows(report)))
    return 0 if result is not None else 1


def add_probe_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``icestack stun``: probe a STUN server."""
    parser = commands.add_parser(
        "stun",
        help="probe a STUN server: mapped address, RTT, software, features",
        description="Send one Binding request and report what the server answered.",
    )
    parser.add_argument(
        "server", nargs="?", metavar="HOST[:PORT]",
        help=f"the server (default {DEFAULT_PUBLIC_SERVER}); port defaults to 3478, 5349 for TLS",
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
        "--timeout", type=parse_seconds, metavar="SECONDS",
        help="give up after this long (default 39.5, the RFC 8489 §6.2 schedule)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object (docs/cli.md)")
    parser.set_defaults(run=lambda args: asyncio.run(_probe(args)))


# =========================================================================== icestack serve stun


def parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"--user wants NAME:PASSWORD, got {text!r}")
    return name, password


@dataclass(frozen=True)
class ServePlan:
    """Everything ``icestack serve stun`` needs to open its listeners, picklable for workers."""

    config: ServerConfig
    listen: tuple[tuple[str, int], ...]
    tcp: bool
    tls: tuple[Path, Path] | None
    tls_port: int
    reuse_port: bool


def build_serve_plan(args: argparse.Namespace) -> ServePlan:
    """Turn parsed options into a validated plan; raises LocalProtocolError on bad combinations."""
    users = dict(args.user or [])
    auth: ShortTermCredentials | LongTermCredentials | None = None
    if args.auth == "long-term":
        if not users:
            raise LocalProtocolError("--auth long-term needs at least one --user NAME:PASSWORD")
        auth = LongTermCredentials.from_passwords(args.realm, users)
    elif args.auth == "short-term":
        if not users:
            raise LocalProtocolError("--auth short-term needs at least one --user NAME:PASSWORD")
        auth = ShortTermCredentials.from_passwords(users)
    elif users:
        raise LocalProtocolError("--user given without --auth short-term or --auth long-term")
    software = None if args.no_software else args.software
    # One nonce secret for every worker, so a nonce from one is good at all (stun.nonces).
    config = ServerConfig(
        software=software, authentication=auth, nonce_secret=secrets.token_bytes(32)
    )
    listen = tuple(split_host_port(text, 3478) for text in args.listen or ["0.0.0.0", "[::]"])
    tls: tuple[Path, Path] | None = None
    if args.tls is not None:
        if len(args.tls) == 2:
            tls = (Path(args.tls[0]), Path(args.tls[1]))
        elif not args.tls:
            files = make_self_signed()
            warnings.warn(
                f"--tls without CERT KEY: using a self-signed certificate ({files.certificate}); "
                "clients cannot verify it",
                stacklevel=1,
            )
            tls = (files.certificate, files.private_key)
        else:
            raise LocalProtocolError("--tls takes CERT KEY, or nothing for a self-signed one")
    if args.workers < 1:
        raise LocalProtocolError("--workers must be at least 1")
    if args.workers > 1 and any(port == 0 for _, port in listen):
        raise LocalProtocolError("--workers needs fixed ports: port 0 differs in every worker")
    return ServePlan(
        config=config,
        listen=listen,  # type: ignore[arg-type]
        tcp=args.tcp,
        tls=tls,
        tls_port=args.tls_port,
        reuse_port=args.workers > 1,
    )


async def serve(plan: ServePlan, *, worker: int = 0) -> None:
    """Open every listener of ``plan`` and serve until SIGINT/SIGTERM."""
    server = StunServer(plan.config)
    context = server_context(*plan.tls) if plan.tls else None
    try:
        for host, port in plan.listen:
            await server.listen("udp", host, port, reuse_port=plan.reuse_port)
            if plan.tcp:
                await server.listen("tcp", host, port, reuse_port=plan.reuse_port)
            if context is not None:
                await server.listen(
                    "tls", host, plan.tls_port, ssl_context=context, reuse_port=plan.reuse_port
                )
    except OSError as exc:
        await server.close()
        raise LocalProtocolError(f"cannot listen: {exc}") from None
    await serve_until_signalled(server, f"worker {worker}: " if plan.reuse_port else "")


class Serving(Protocol):
    """What :func:`serve_until_signalled` needs of a server (the STUN and the TURN server)."""

    @property
    def listeners(self) -> Sequence[Listener]: ...

    async def serve_forever(self) -> None: ...

    async def close(self) -> None: ...


async def serve_until_signalled(server: Serving, prefix: str, notes: Sequence[str] = ()) -> None:
    """Print one line per listener (then ``notes``), serve until SIGINT or SIGTERM, and print
    ``stopped``; every line starts with ``prefix`` (the worker's number, with ``--workers``)."""
    # Handlers first: whoever reads "listening on" may signal at once and expect a clean stop.
    close_on_signals(server.close)
    for listener in server.listeners:
        say(f"{prefix}listening on {listener}")
    for note in notes:
        say(prefix + note)
    await server.serve_forever()
    say(f"{prefix}stopped")


def close_on_signals(close: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``close()`` when SIGINT or SIGTERM arrives (call it from inside the event loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(close()))


def say(line: str) -> None:
    """Print one line in one write, so that the lines of workers sharing stdout do not mix."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _worker_main(plan: ServePlan, use_uvloop: bool, worker: int) -> None:
    if use_uvloop:
        install_uvloop()
    asyncio.run(serve(plan, worker=worker))


def run_serve(args: argparse.Namespace) -> int:
    """``icestack serve stun``: one process, or ``--workers N`` processes sharing the ports."""
    plan = build_serve_plan(args)
    if args.uvloop and not install_uvloop():
        raise LocalProtocolError("--uvloop: uvloop is not installed (pip install 'icestack[fast]')")
    if args.workers == 1:
        asyncio.run(serve(plan))
        return 0
    return run_workers(args.workers, functools.partial(_worker_main, plan, args.uvloop))


def run_workers(count: int, worker_main: Callable[[int], None]) -> int:
    """Run ``worker_main(i)`` for i in 0..count-1, each in a forked process (they share their
    ports with SO_REUSEPORT); SIGINT or SIGTERM to this process is passed on to every worker.
    Returns 0 when every worker exited with 0, else 1."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=worker_main, args=(i,), daemon=True) for i in range(count)]
    for process in workers:
        process.start()

    def stop(signum: int, frame: object) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for process in workers:
        process.join()
    return 0 if all(p.exitcode == 0 for p in workers) else 1


def add_serve_command(serve_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``icestack serve stun``: run the STUN server in the foreground."""
    parser = serve_commands.add_parser(
        "stun",
        help="run the STUN server (UDP, optionally TCP and TLS)",
        description="Run a STUN Binding server until Ctrl-C. One log line per listener.",
    )
    parser.add_argument(
        "--listen", action="append", metavar="ADDR[:PORT]",
        help="listen here (repeatable; default 0.0.0.0:3478 and [::]:3478); UDP always",
    )
    parser.add_argument("--tcp", action="store_true", help="also listen on TCP at each address")
    parser.add_argument(
        "--tls", nargs="*", metavar="FILE",
        help="also listen with TLS: --tls CERT KEY, or --tls alone for a self-signed certificate",
    )
    parser.add_argument("--tls-port", type=int, default=5349, help="TLS port (default 5349)")
    parser.add_argument(
        "--auth", choices=("none", "short-term", "long-term"), default="none",
        help="authentication (RFC 8489 §9); a plain STUN server needs none (§12)",
    )
    parser.add_argument(
        "--user", action="append", type=parse_user, metavar="NAME:PASSWORD",
        help="a credential (repeatable)",
    )
    parser.add_argument("--realm", default="icestack", help="long-term credential realm")
    parser.add_argument(
        "--software", default=f"icestack {__version__}", help="SOFTWARE attribute value"
    )
    parser.add_argument("--no-software", action="store_true", help="send no SOFTWARE attribute")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="processes sharing each port with SO_REUSEPORT (default 1; use the core count)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.set_defaults(run=run_serve)


def main_error(message: str) -> int:
    """Print a CLI error and return the exit status for it."""
    print(f"icestack: error: {message}", file=sys.stderr)
    return 2
