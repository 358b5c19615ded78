"""``icestack serve turn``: the TURN server (:class:`turn.server.aio.TurnServer`) in the foreground.

Options carry coturn's names where the concept is the same (``--user``, ``--realm``,
``--static-auth-secret``, ``--allowed-peer-ip``, ``--relay-ip``, ``--min-port``, ...), so an
operator can move a ``turnserver.conf`` over: ``--config FILE`` reads ``name=value`` lines with
the same names (docs/cli.md). Authentication cannot be turned off: with no ``--user`` and no
``--static-auth-secret`` the server refuses to start.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import resource
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stun import Address, LocalProtocolError, make_address
from stun.aio import install_uvloop
from stun.cli import parse_user, run_workers, serve_until_signalled, split_host_port
from stun.server import LongTermCredentials
from stun.tls import make_self_signed, server_context

from .server.aio import TurnServer, relay_hosts_by_family
from .server.config import TurnServerConfig
from .server.embedded import parse_nat64_prefixes
from .server.policy import PeerPolicy, parse_networks
from .server.relays import DYNAMIC_PORTS

#: What ``--listen`` defaults to, as for ``icestack serve stun``.
DEFAULT_LISTEN = ("0.0.0.0", "[::]")
DEFAULT_PORT = 3478
DEFAULT_TLS_PORT = 5349
DEFAULT_REALM = "icestack"
#: File descriptors a server may need besides its relayed sockets and connections.
_SPARE_DESCRIPTORS = 64


def _number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}: {text}")
        return value

    return parse


_port = _number(0, 65535)
_relay_port = _number(1, 65535)
_positive = _number(1)


@dataclass(frozen=True)
class _Options:
    """The options of ``serve turn`` as the config file sees them: each name, whether it is a
    flag, and which ones may repeat (their values add up, file first, command line after)."""

    flags: frozenset[str]
    valued: frozenset[str]
    repeatable: frozenset[str]


def _add_options(parser: argparse.ArgumentParser) -> _Options:
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
    option(
        "--auth-failure-rate",
        type=_positive,
        metavar="N",
        help="401/400 answers a second per source IP (or IPv6 /64) before dropping (default 2)",
    )
    option(
        "--auth-failure-burst",
        type=_positive,
        metavar="N",
        help="401/400 answers a source may get at once (default 20)",
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
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read options from FILE: one name=value (or bare flag) a line, # comments",
    )
    return _Options(frozenset(flags), frozenset(valued), frozenset(repeatable))


# =========================================================================== the config file


def config_file_arguments(path: Path, options: _Options) -> list[str]:
    """The command-line arguments a config file stands for (coturn's ``turnserver.conf`` form:
    ``name=value`` or ``name value``, bare names for flags, ``#`` comments)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LocalProtocolError(f"--config {path}: {exc.strerror}") from None
    arguments: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.replace("=", " ", 1).partition(" ")
        name, value = name.removeprefix("--"), value.strip()
        where = f"{path} line {number}"
        if name in options.flags:
            if value.lower() in ("", "true", "yes", "on", "1"):
                arguments.append(f"--{name}")
            elif value.lower() not in ("false", "no", "off", "0"):
                raise LocalProtocolError(f"{where}: {name} is a flag, not {value!r}")
        elif name in options.valued:
            if not value and name != "tls":
                raise LocalProtocolError(f"{where}: {name} needs a value")
            arguments += [f"--{name}", *(value.split() if name == "tls" else [value])]
        else:
            raise LocalProtocolError(f"{where}: unknown option {name!r}")
    return arguments


def merge_config_file(
    args: argparse.Namespace, parser: argparse.ArgumentParser, options: _Options
) -> None:
    """Fill ``args`` from ``args.config``: the command line wins, repeatable options add up."""
    if args.config is None:
        return
    parser.exit_on_error = False
    try:
        from_file = parser.parse_args(config_file_arguments(args.config, options))
    except argparse.ArgumentError as exc:
        raise LocalProtocolError(f"--config {args.config}: {exc}") from None
    finally:
        parser.exit_on_error = True
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
    tls: tuple[Path, Path] | None
    tls_port: int
    relay_hosts: tuple[str, ...]
    relay_ports: range
    metrics: tuple[str, int] | None
    workers: int

    @property
    def reuse_port(self) -> bool:
        return self.workers > 1


def _host_of(text: str, what: str) -> str:
    """An IP literal (brackets allowed); raises LocalProtocolError naming the option."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise LocalProtocolError(f"{what}: not an IP address: {text!r}") from None


def _listen_addresses(args: argparse.Namespace) -> tuple[tuple[str, int], ...]:
    listen = []
    for text in args.listen or DEFAULT_LISTEN:
        host, port = split_host_port(text, DEFAULT_PORT)
        assert port is not None
        listen.append((_host_of(host, "--listen"), port))
    return tuple(listen)


def _relay_hosts(args: argparse.Namespace, listen: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """``--relay-ip``, or else the one specific listening address of each family."""
    if args.relay_ip:
        hosts = [_host_of(text, "--relay-ip") for text in args.relay_ip]
    else:
        if any(ipaddress.ip_address(host).is_unspecified for host, _ in listen):
            raise LocalProtocolError(
                "listening on a wildcard address: say which address relayed addresses are bound "
                "on with --relay-ip (one per family)"
            )
        hosts = list(dict.fromkeys(host for host, _ in listen))
    relay_hosts_by_family(hosts)  # one per family, bindable here
    return tuple(hosts)


def _tls_files(tls: list[str] | None) -> tuple[Path, Path] | None:
    if tls is None:
        return None
    if len(tls) == 2:
        return Path(tls[0]), Path(tls[1])
    if tls:
        raise LocalProtocolError("--tls takes CERT KEY, or nothing for a self-signed certificate")
    files = make_self_signed()
    warnings.warn(
        f"--tls without CERT KEY: using a self-signed certificate ({files.certificate}); "
        "clients cannot verify it",
        stacklevel=1,
    )
    return files.certificate, files.private_key


def build_plan(args: argparse.Namespace) -> TurnServePlan:
    """Validate the options and turn them into a plan; raises :class:`stun.LocalProtocolError`."""
    users = dict(args.user or [])
    secret = args.static_auth_secret
    if not users and not secret:
        raise LocalProtocolError(
            "authentication is required: give --user NAME:PASSWORD or --static-auth-secret"
        )
    realm = args.realm or DEFAULT_REALM
    alternate: Address | None = None
    if args.alternate_server is not None:
        host, port = split_host_port(args.alternate_server, DEFAULT_PORT)
        assert port is not None
        alternate = make_address(_host_of(host, "--alternate-server"), port)
    allowed = tuple(args.allowed_peer_ip or ())
    denied = tuple(args.denied_peer_ip or ())
    parse_networks(allowed, "--allowed-peer-ip")
    parse_networks(denied, "--denied-peer-ip")
    nat64 = tuple(args.nat64_prefix or ())
    parse_nat64_prefixes(nat64, "--nat64-prefix")
    listen = _listen_addresses(args)
    policy = PeerPolicy(
        allowed_peers=allowed,
        denied_peers=denied,
        allow_loopback_peers=bool(args.allow_loopback_peers),
        allow_documentation_peers=bool(args.allow_documentation_peers),
        nat64_prefixes=nat64,
        own_addresses=tuple(
            dict.fromkeys(h for h, _ in listen if not ipaddress.ip_address(h).is_unspecified)
        ),
    )
    limits = {
        "user_quota": args.user_quota,
        "total_quota": args.total_quota,
        "failure_rate": args.auth_failure_rate,
        "failure_burst": args.auth_failure_burst,
    }
    config = TurnServerConfig(
        credentials=LongTermCredentials.from_passwords(realm, users),
        rest_secret=secret.encode() if secret else None,
        # One nonce secret for every worker, so a nonce from one is good at all (stun.nonces).
        nonce_secret=secrets.token_bytes(32),
        max_bytes_per_second=args.max_bps,
        peer_policy=policy,
        alternate_server=alternate,
        rfc5766_channels=bool(args.rfc5766_channels),
        tcp_relays=not args.no_tcp_relay,
        **{name: value for name, value in limits.items() if value is not None},
    )
    low = DYNAMIC_PORTS.start if args.min_port is None else args.min_port
    high = DYNAMIC_PORTS.stop - 1 if args.max_port is None else args.max_port
    if low > high:
        raise LocalProtocolError(f"--min-port {low} is above --max-port {high}")
    udp, tcp, tls = not args.no_udp, not args.no_tcp, _tls_files(args.tls)
    if not (udp or tcp or tls):
        raise LocalProtocolError("--no-udp and --no-tcp without --tls leave nothing to listen on")
    workers = args.workers or 1
    if workers > 1 and any(port == 0 for _, port in listen):
        raise LocalProtocolError("--workers needs fixed ports: port 0 differs in every worker")
    metrics = None
    if args.metrics_port is not None:
        metrics = (_host_of(args.metrics_host or "127.0.0.1", "--metrics-host"), args.metrics_port)
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
    )


# =========================================================================== running


async def serve(plan: TurnServePlan, *, worker: int = 0) -> None:
    """Open every listener of ``plan`` and serve until SIGINT/SIGTERM."""
    server = TurnServer(plan.config, relay_hosts=plan.relay_hosts, relay_ports=plan.relay_ports)
    context = server_context(*plan.tls) if plan.tls else None
    reuse_port = plan.reuse_port
    metrics: Address | None = None
    try:
        for host, port in plan.listen:
            if plan.udp:
                await server.listen("udp", host, port, reuse_port=reuse_port)
            if plan.tcp:
                await server.listen("tcp", host, port, reuse_port=reuse_port)
            if context is not None:
                await server.listen(
                    "tls", host, plan.tls_port, ssl_context=context, reuse_port=reuse_port
                )
        if plan.metrics is not None:
            host, port = plan.metrics
            metrics = await server.serve_metrics(host, port + worker if port else 0)
    except OSError as exc:
        await server.close()
        raise LocalProtocolError(f"cannot listen: {exc}") from None
    ports = plan.relay_ports
    notes = [f"relaying on {', '.join(plan.relay_hosts)} ports {ports.start}-{ports.stop - 1}"]
    if metrics is not None:
        notes.append(f"metrics on http {metrics}")
    await serve_until_signalled(server, f"worker {worker}: " if plan.reuse_port else "", notes)


def _raise_descriptor_limit(plan: TurnServePlan) -> None:
    """Let one worker hold every relayed socket the quotas allow, and its connections."""
    config = plan.config
    needed = 2 * config.total_quota + config.max_reservations + 1024 + _SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        if wanted < needed:
            warnings.warn(
                f"only {wanted} file descriptors (the hard limit); --total-quota "
                f"{config.total_quota} may need {needed}",
                stacklevel=1,
            )


def _worker_main(plan: TurnServePlan, worker: int) -> None:
    asyncio.run(serve(plan, worker=worker))


def run_serve(parser: argparse.ArgumentParser, options: _Options, args: argparse.Namespace) -> int:
    """``icestack serve turn``: one process, or ``--workers N`` processes sharing the ports."""
    merge_config_file(args, parser, options)
    plan = build_plan(args)
    if args.uvloop and not install_uvloop():
        raise LocalProtocolError("--uvloop: uvloop is not installed (pip install 'icestack[fast]')")
    _raise_descriptor_limit(plan)
    if plan.workers == 1:
        asyncio.run(serve(plan))
        return 0
    return run_workers(plan.workers, functools.partial(_worker_main, plan))


def add_serve_command(serve_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``icestack serve turn``: run the TURN server in the foreground."""
    parser = serve_commands.add_parser(
        "turn",
        help="run the TURN server (UDP and TCP, optionally TLS; authentication required)",
        description=(
            "Run a TURN server (RFC 8656) until Ctrl-C. One log line per listener. Option names "
            "follow coturn's; --config reads them from a file."
        ),
    )
    options = _add_options(parser)
    parser.set_defaults(run=functools.partial(run_serve, parser, options))
