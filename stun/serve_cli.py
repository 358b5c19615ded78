"""``icestack serve stun``: the STUN server in the foreground, one process or ``--workers N``
sharing the ports, and with ``--rfc5780`` the four sockets of NAT behaviour discovery (RFC 5780).

Its options are checked into a :class:`ServePlan` before anything listens or forks; what is wrong
with one is one line and exit status 2 (:mod:`stun.cli`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import ssl
from dataclasses import dataclass

from .address import Address
from .aio import StunServer, Transport, install_uvloop
from .behavior import BehaviorAddresses
from .cli import (
    check_ports_free,
    failure_limits,
    listen_address,
    listener_endpoints,
    open_listeners,
    run_workers,
    serve_until_signalled,
    stream_limits,
    tls_context,
    user_passwords,
)
from .errors import LocalProtocolError
from .limits import StreamLimits
from .server import LongTermCredentials, ServerConfig, ShortTermCredentials


@dataclass(frozen=True)
class ServePlan:
    """Everything ``icestack serve stun`` needs to open its listeners, validated before any
    worker forks (the TLS context is built once, and forked workers inherit it)."""

    config: ServerConfig
    listen: tuple[tuple[str, int], ...]
    tcp: bool
    tls: ssl.SSLContext | None
    tls_port: int
    reuse_port: bool
    limits: StreamLimits
    #: Batched UDP system calls where available (``--no-batch-io``: one datagram per call).
    batch_io: bool = True

    @property
    def endpoints(self) -> list[tuple[Transport, str, int]]:
        """Every ``(transport, host, port)`` to listen on."""
        tls_port = None if self.tls is None else self.tls_port
        return listener_endpoints(self.listen, udp=True, tcp=self.tcp, tls_port=tls_port)


def behavior_addresses(
    args: argparse.Namespace, listen: tuple[tuple[str, int], ...]
) -> BehaviorAddresses | None:
    """``--rfc5780``: the primary and alternate address from the two ``--listen`` addresses and
    ``--alt-port`` (default the port + 1); raises :class:`LocalProtocolError` for what cannot
    make the four sockets of RFC 5780 §6."""
    if not args.rfc5780:
        if args.alt_port is not None:
            raise LocalProtocolError("--alt-port without --rfc5780: add --rfc5780, or drop it")
        return None
    if len(listen) != 2 or not args.listen:
        raise LocalProtocolError(
            "--rfc5780 needs two --listen addresses of one family (IP1:PORT and IP2:PORT)"
        )
    (first, port), (second, other_port) = listen
    if port != other_port or port == 0:
        raise LocalProtocolError(
            "--rfc5780: give both --listen addresses the same fixed port (not 0)"
        )
    alternate = port + 1 if args.alt_port is None else args.alt_port
    if alternate > 65535:
        raise LocalProtocolError(f"--rfc5780: port {port} + 1 is no port; set --alt-port")
    try:
        return BehaviorAddresses(primary=Address(first, port), alternate=Address(second, alternate))
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"--rfc5780: {exc}") from None


def build_serve_plan(args: argparse.Namespace) -> ServePlan:
    """Turn parsed options into a validated plan; raises LocalProtocolError on bad combinations."""
    users = user_passwords(args.user)
    auth: ShortTermCredentials | LongTermCredentials | None = None
    if args.auth == "long-term":
        if not users:
            raise LocalProtocolError("--auth long-term needs at least one --user NAME:PASSWORD")
        if not args.realm:
            raise LocalProtocolError("--realm: the realm must not be empty")
        auth = LongTermCredentials.from_passwords(args.realm, users)
    elif args.auth == "short-term":
        if not users:
            raise LocalProtocolError("--auth short-term needs at least one --user NAME:PASSWORD")
        auth = ShortTermCredentials.from_passwords(users)
    elif users:
        raise LocalProtocolError("--user given without --auth short-term or --auth long-term")
    failures = failure_limits(args)
    if failures and auth is None:
        raise LocalProtocolError("--auth-failure-rate/-burst have no effect without --auth")
    software = None if args.no_software else args.software
    listen = tuple(listen_address(text, 3478) for text in args.listen or ["0.0.0.0", "[::]"])
    behavior = behavior_addresses(args, listen)
    if args.auth_discovery_only and (auth is None or behavior is None):
        raise LocalProtocolError("--auth-discovery-only needs --auth and --rfc5780")
    # One nonce secret for every worker, so a nonce from one is good at all (stun.nonces).
    config = ServerConfig(
        software=software,
        authentication=auth,
        nonce_secret=secrets.token_bytes(32),
        behavior=behavior,
        discovery_requires_auth=args.auth_discovery_only,
        **failures,
    )
    if behavior is not None:
        listen = behavior.sockets
    if args.workers < 1:
        raise LocalProtocolError("--workers must be at least 1")
    if args.workers > 1 and any(port == 0 for _, port in listen):
        raise LocalProtocolError("--workers needs fixed ports: port 0 differs in every worker")
    if args.tls is None and args.tls_port is not None:
        raise LocalProtocolError("--tls-port without --tls: add --tls (CERT KEY), or drop it")
    tls = tls_context(args.tls)
    return ServePlan(
        config=config,
        listen=listen,
        tcp=args.tcp,
        tls=tls,
        tls_port=5349 if args.tls_port is None else args.tls_port,
        reuse_port=args.workers > 1,
        limits=stream_limits(args, streams=args.tcp or tls is not None, tls=tls is not None),
        batch_io=not args.no_batch_io,
    )


async def serve(plan: ServePlan, *, worker: int = 0) -> None:
    """Open every listener of ``plan`` and serve until SIGINT/SIGTERM."""
    server = StunServer(plan.config, limits=plan.limits, batch_io=plan.batch_io)
    await open_listeners(server, plan.endpoints, plan.tls, reuse_port=plan.reuse_port)
    await serve_until_signalled(server, f"worker {worker}: " if plan.reuse_port else "")


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
    check_ports_free(plan.endpoints)
    return run_workers(args.workers, functools.partial(_worker_main, plan, args.uvloop))
