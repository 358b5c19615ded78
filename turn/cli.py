"""``icestack serve turn``: the TURN server (:class:`turn.server.aio.TurnServer`) in the foreground.

Options carry coturn's names where the concept is the same (``--user``, ``--realm``,
``--static-auth-secret``, ``--allowed-peer-ip``, ``--relay-ip``, ``--min-port``, ``-v``,
``--log-file`` ...), so an operator can move a ``turnserver.conf`` over: ``--config FILE`` reads
it, coturn's own names included (:mod:`turn.turnserver_conf`; docs/cli.md). Authentication cannot
be turned off: with no ``--user`` and no ``--static-auth-secret`` the server refuses to start.
``-v`` logs every session event (:mod:`turn.server.session_log`) to stderr or ``--log-file``.
The options themselves are :mod:`turn.serve_options`'; this module runs the server they describe.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import functools
import ipaddress
import logging
import os
import resource
import secrets
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stun import Address, LocalProtocolError, make_address
from stun._version import DEFAULT_SOFTWARE
from stun.advertised import parse_advertised
from stun.aio import Transport, install_uvloop
from stun.cli import (
    check_ports_free,
    failure_limits,
    ip_literal,
    listen_address,
    listen_failure,
    listener_endpoints,
    load_server_tls,
    open_listeners,
    run_workers,
    self_signed_tls,
    serve_until_signalled,
    stream_limits,
    user_passwords,
)
from stun.cli_messages import warn
from stun.cli_options import server_address
from stun.files import file_problem
from stun.limits import StreamLimits
from stun.server import LongTermCredentials

from .serve_options import DEFAULT_ALLOCATE_TIMEOUT, DEFAULT_REALM, DEFAULT_TLS_PORT
from .server.aio import TurnServer, relay_hosts_by_family
from .server.config import TurnServerConfig
from .server.embedded import parse_nat64_prefixes
from .server.policy import PeerPolicy, parse_networks
from .server.relays import DYNAMIC_PORTS
from .turnserver_conf import OptionNames, check_values, read_config

#: What ``--listen`` defaults to, as for ``icestack serve stun``.
DEFAULT_LISTEN = ("0.0.0.0", "[::]")
DEFAULT_PORT = 3478
#: File descriptors a server may need besides its relayed sockets and connections.
_SPARE_DESCRIPTORS = 64


# =========================================================================== the config file


def merge_config_file(
    args: argparse.Namespace, parser: argparse.ArgumentParser, options: OptionNames
) -> None:
    """Fill ``args`` from ``args.config``: the command line wins, repeatable options add up.
    Every line that cannot be used is reported at once; the options that have no effect here
    are noted, one line each."""
    if args.config is None:
        return
    config = read_config(args.config, options)
    check_values(config, parser)
    where = f"--config {args.config}"
    if len(config.problems) == 1:
        raise LocalProtocolError(f"{where} {config.problems[0]}")
    if config.problems:
        lines = "".join(f"\n  {problem}" for problem in config.problems)
        raise LocalProtocolError(f"{where}: {len(config.problems)} lines cannot be used:{lines}")
    for note in config.notes:
        print(f"icestack: note: {args.config} {note}", file=sys.stderr)
    from_file = parser.parse_args([word for _, words in config.arguments for word in words])
    for name, value in vars(from_file).items():
        given = getattr(args, name, None)
        if value is None or name in ("config", "run"):
            continue
        if given is None:
            setattr(args, name, value)
        elif name in {key.replace("-", "_") for key in options.repeatable}:
            setattr(args, name, value + given)


# =========================================================================== the plan


@dataclass(frozen=True)
class TurnServePlan:
    """Everything ``icestack serve turn`` needs to start, validated before any worker forks."""

    config: TurnServerConfig
    listen: tuple[tuple[str, int], ...]
    udp: bool
    tcp: bool
    #: The TLS context, built before any worker forks (the workers inherit it).
    tls: ssl.SSLContext | None
    tls_port: int
    relay_hosts: tuple[str, ...]
    relay_ports: range
    metrics: tuple[str, int] | None
    workers: int
    limits: StreamLimits
    max_allocate_timeout: float = DEFAULT_ALLOCATE_TIMEOUT
    verbose: bool = False
    log_file: Path | None = None
    #: Batched UDP system calls where available (``--no-batch-io``: one datagram per call).
    batch_io: bool = True

    @property
    def reuse_port(self) -> bool:
        return self.workers > 1

    @property
    def endpoints(self) -> list[tuple[Transport, str, int]]:
        """Every ``(transport, host, port)`` to listen on."""
        tls_port = None if self.tls is None else self.tls_port
        return listener_endpoints(self.listen, udp=self.udp, tcp=self.tcp, tls_port=tls_port)


def _relay_hosts(args: argparse.Namespace, listen: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """``--relay-ip``, or else the one specific listening address of each family."""
    if args.relay_ip:
        hosts = [ip_literal(text, "--relay-ip") for text in args.relay_ip]
    else:
        if any(ipaddress.ip_address(host).is_unspecified for host, _ in listen):
            raise LocalProtocolError(
                "listening on a wildcard address: say which address relayed addresses are bound "
                "on with --relay-ip (one per family)"
            )
        hosts = list(dict.fromkeys(host for host, _ in listen))
    relay_hosts_by_family(hosts)  # one per family, bindable here
    return tuple(hosts)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """``--tls CERT KEY`` (and ``--pkey-pwd``) loaded, ``--tls`` alone a self-signed one."""
    if args.tls is None:
        if args.pkey_pwd is not None:
            raise LocalProtocolError("--pkey-pwd without --tls CERT KEY")
        if args.tls_listening_port is not None:
            raise LocalProtocolError(
                "--tls-listening-port (--tls-port) without --tls: add --tls (CERT KEY; cert= "
                "and pkey= in a config file), or drop it"
            )
        return None
    if len(args.tls) == 2:
        certificate, key = (Path(name) for name in args.tls)
        return load_server_tls(certificate, key, password=args.pkey_pwd)
    if args.tls:
        raise LocalProtocolError("--tls takes CERT KEY, or nothing for a self-signed certificate")
    return self_signed_tls()


def _peer_networks(values: list[str] | None, what: str) -> tuple[str, ...]:
    """CIDRs, bare addresses, and coturn's ``FIRST-LAST`` ranges, as CIDRs."""
    networks: list[str] = []
    for value in values or ():
        first, dash, last = value.partition("-")
        if not dash:
            networks.append(value)
            continue
        try:
            low, high = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
            networks.extend(str(n) for n in ipaddress.summarize_address_range(low, high))
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"{what}: bad range {value!r}: {exc}") from None
    parse_networks(networks, what)
    return tuple(networks)


def _log_file(path: str | None) -> Path | None:
    """``--log-file``, checked for being writable before the server starts: a file (made if
    need be), a device such as ``/dev/stderr``, or a FIFO a process reads — opened without
    waiting, so that a FIFO nobody reads is refused instead of hanging the start."""
    if path is None:
        return None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            problem = "no such folder"
        elif isinstance(exc, PermissionError):
            problem = "cannot write it (permission denied)"
        elif exc.errno == errno.ENXIO:
            problem = "a FIFO (named pipe) that no process reads"
        else:
            problem = file_problem(exc)
        raise LocalProtocolError(f"--log-file {path}: {problem}") from None
    os.close(descriptor)
    return Path(path)


def build_plan(args: argparse.Namespace) -> TurnServePlan:
    """Validate the options and turn them into a plan; raises :class:`stun.LocalProtocolError`."""
    users = user_passwords(args.user)
    secret = args.static_auth_secret
    if not users and not secret:
        raise LocalProtocolError(
            "authentication is required: give --user NAME:PASSWORD or --static-auth-secret"
        )
    realm = DEFAULT_REALM if args.realm is None else args.realm
    if not realm:
        raise LocalProtocolError("--realm: the realm must not be empty")
    alternate: Address | None = None
    if args.alternate_server is not None:
        try:
            host, port = server_address(args.alternate_server, DEFAULT_PORT)
        except argparse.ArgumentTypeError as exc:
            raise LocalProtocolError(f"--alternate-server: {exc}") from None
        alternate = make_address(ip_literal(host, "--alternate-server"), port)
    allowed = _peer_networks(args.allowed_peer_ip, "--allowed-peer-ip")
    denied = _peer_networks(args.denied_peer_ip, "--denied-peer-ip")
    listen = tuple(listen_address(text, DEFAULT_PORT) for text in args.listen or DEFAULT_LISTEN)
    nat64 = tuple(args.nat64_prefix or ())
    parse_nat64_prefixes(nat64, "--nat64-prefix")
    external = tuple(parse_advertised(text, "--external-ip") for text in args.external_ip or ())
    policy = PeerPolicy(
        allowed_peers=allowed,
        denied_peers=denied,
        allow_loopback_peers=bool(args.allow_loopback_peers),
        allow_documentation_peers=bool(args.allow_documentation_peers),
        nat64_prefixes=nat64,
        own_addresses=tuple(
            dict.fromkeys(
                [h for h, _ in listen if not ipaddress.ip_address(h).is_unspecified]
                + [a.public for a in external]
            )
        ),
    )
    quotas = {"user_quota": args.user_quota, "total_quota": args.total_quota}
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(realm, users),
        rest_secret=secret.encode() if secret else None,
        # One nonce secret for every worker, so a nonce from one is good at all (stun.nonces).
        nonce_secret=secrets.token_bytes(32),
        max_bytes_per_second=args.max_bps,
        peer_policy=policy,
        external_addresses=external,
        alternate_server=alternate,
        rfc5766_channels=bool(args.rfc5766_channels),
        tcp_relays=not args.no_tcp_relay,
        answer_binding=not args.no_stun,
        software=None if args.no_software_attribute else DEFAULT_SOFTWARE,
        **{name: value for name, value in quotas.items() if value is not None},
        **failure_limits(args),
    )
    low = DYNAMIC_PORTS.start if args.min_port is None else args.min_port
    high = DYNAMIC_PORTS.stop - 1 if args.max_port is None else args.max_port
    if low > high:
        raise LocalProtocolError(f"--min-port {low} is above --max-port {high}")
    udp, tcp, tls = not args.no_udp, not args.no_tcp, _tls(args)
    if not (udp or tcp or tls):
        raise LocalProtocolError("--no-udp and --no-tcp without --tls leave nothing to listen on")
    workers = args.workers or 1
    if workers > 1 and any(port == 0 for _, port in listen):
        raise LocalProtocolError("--workers needs fixed ports: port 0 differs in every worker")
    metrics = None
    if args.metrics_port is not None:
        host = ip_literal(args.metrics_host or "127.0.0.1", "--metrics-host")
        metrics = (host, args.metrics_port)
    elif args.metrics_host is not None:
        raise LocalProtocolError("--metrics-host without --metrics-port")
    return TurnServePlan(
        config=config,
        listen=listen,
        udp=udp,
        tcp=tcp,
        tls=tls,
        tls_port=DEFAULT_TLS_PORT if args.tls_listening_port is None else args.tls_listening_port,
        relay_hosts=_relay_hosts(args, listen),
        relay_ports=range(low, high + 1),
        metrics=metrics,
        workers=workers,
        limits=stream_limits(args, streams=tcp or tls is not None, tls=tls is not None),
        max_allocate_timeout=(
            DEFAULT_ALLOCATE_TIMEOUT
            if args.max_allocate_timeout is None
            else args.max_allocate_timeout
        ),
        verbose=bool(args.verbose),
        log_file=_log_file(args.log_file),
        batch_io=not args.no_batch_io,
    )


# =========================================================================== running


async def serve(plan: TurnServePlan, *, worker: int = 0) -> None:
    """Open every listener of ``plan`` and serve until SIGINT/SIGTERM."""
    prefix = f"worker {worker}: " if plan.reuse_port else ""
    log_to(plan.log_file, plan.verbose, prefix)
    server = TurnServer(
        plan.config,
        relay_hosts=plan.relay_hosts,
        relay_ports=plan.relay_ports,
        limits=plan.limits,
        max_allocate_timeout=plan.max_allocate_timeout,
        batch_io=plan.batch_io,
    )
    await open_listeners(server, plan.endpoints, plan.tls, reuse_port=plan.reuse_port)
    metrics: Address | None = None
    if plan.metrics is not None:
        host, port = plan.metrics
        port = port + worker if port else 0
        try:
            metrics = await server.serve_metrics(host, port)
        except OSError as exc:
            await server.close()
            raise listen_failure("http (metrics)", host, port, exc) from None
    ports = plan.relay_ports
    notes = [f"relaying on {', '.join(plan.relay_hosts)} ports {ports.start}-{ports.stop - 1}"]
    if metrics is not None:
        notes.append(f"metrics on http {metrics}")
    await serve_until_signalled(server, prefix, notes)


def log_to(path: Path | None, verbose: bool, prefix: str) -> None:
    """Send icestack's log lines to ``path`` (appended) or stderr, each stamped with the time
    and ``prefix``: warnings always, with ``verbose`` every session event too."""
    handler = logging.FileHandler(path) if path is not None else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s"))
    root = logging.getLogger("icestack")
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _raise_descriptor_limit(plan: TurnServePlan) -> None:
    """Let one worker hold every relayed socket the quotas allow, and its connections."""
    config = plan.config
    connections = plan.limits.max_connections
    needed = 2 * config.total_quota + config.max_reservations + connections + _SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        if wanted < needed:
            warn(
                f"only {wanted} file descriptors (the hard limit); --total-quota "
                f"{config.total_quota} may need {needed}"
            )


def _worker_main(plan: TurnServePlan, worker: int) -> None:
    asyncio.run(serve(plan, worker=worker))


def run_serve(
    parser: argparse.ArgumentParser, options: OptionNames, args: argparse.Namespace
) -> int:
    """``icestack serve turn``: one process, or ``--workers N`` processes sharing the ports."""
    merge_config_file(args, parser, options)
    plan = build_plan(args)
    if args.uvloop and not install_uvloop():
        raise LocalProtocolError("--uvloop: uvloop is not installed (pip install 'icestack[fast]')")
    _raise_descriptor_limit(plan)
    if plan.workers == 1:
        asyncio.run(serve(plan))
        return 0
    check_ports_free(plan.endpoints)
    return run_workers(plan.workers, functools.partial(_worker_main, plan))
