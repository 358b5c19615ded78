"""``icestack serve turn --config FILE``: an operator's coturn ``turnserver.conf``, read as is.

The file is coturn's: one option a line, ``name=value`` or ``name value`` (quotes around a value
are dropped), a bare name or a boolean (``1``/``0``, ``yes``/``no``, ``on``/``off``,
``true``/``false``) for a flag, ``#`` comments. Each line is one of:

* an option of ``icestack serve turn`` under its own name (most carry coturn's names:
  ``user``, ``realm``, ``static-auth-secret``, ``relay-ip``, ``min-port`` ...);
* a coturn option translated to ours (``listening-ip`` and ``listening-port`` to ``listen``,
  ``cert`` and ``pkey`` to ``tls``, ``Verbose`` to ``verbose``, ``prometheus`` to the metrics
  port 9641, ``aux-server`` to another ``listen``; ``user-quota=0`` and ``total-quota=0``, which
  mean "no limit" to coturn, keep icestack's bounded defaults);
* a coturn option that has no effect here, because icestack does it anyway or has no such thing
  (``lt-cred-mech``, ``fingerprint``, ``no-cli``, ``syslog``, ``no-dtls`` ...): accepted, with
  one note line each saying why;
* a coturn option icestack cannot honour, where going on without it would not be what the
  operator asked for (a user database, ``no-auth``, ``proc-user`` ...), or a
  name nobody knows.

Every line of the last kind, and every value that does not parse, is reported together in one
error (exit status 2), each with its line number, so a whole file is fixed in one pass.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stun import Address, LocalProtocolError
from stun.files import read_file

#: The port coturn serves Prometheus metrics on (``--prometheus``).
COTURN_PROMETHEUS_PORT = 9641

_TRUE = frozenset(("", "1", "y", "yes", "t", "true", "on"))
_FALSE = frozenset(("0", "n", "no", "f", "false", "off"))
_LINE = re.compile(r"(?P<name>[^=\s]+)\s*(?:=\s*|\s+|$)(?P<value>.*)$")


@dataclass(frozen=True)
class OptionNames:
    """The options of ``serve turn`` as the file sees them: each name (without ``--``), whether
    it is a flag, and which ones may repeat (their values add up, the file's first)."""

    flags: frozenset[str]
    valued: frozenset[str]
    repeatable: frozenset[str]


@dataclass(frozen=True)
class Line:
    """One option line of the file."""

    number: int
    name: str
    value: str


@dataclass
class ConfigFile:
    """What a file stands for: the command-line ``arguments``, each with the line it came from,
    and the ``notes`` to print (options accepted without effect here)."""

    arguments: list[tuple[int, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, line: Line, *arguments: str) -> None:
        self.arguments.append((line.number, list(arguments)))


#: coturn options accepted without effect here, and why (a flag set to false says nothing).
NO_EFFECT: dict[str, str] = {
    "lt-cred-mech": "long-term credentials are always required here",
    "use-auth-secret": "REST API credentials are accepted whenever static-auth-secret is given",
    "fingerprint": "answers carry FINGERPRINT whenever the request did",
    "stale-nonce": "nonces always expire here (after an hour)",
    "no-loopback-peers": "loopback peers are refused unless allow-loopback-peers",
    "no-multicast-peers": "multicast peers are always refused",
    "no-dtls": "icestack has no DTLS listener",
    "no-tlsv1": "TLS 1.2 or newer only, always",
    "no-tlsv1_1": "TLS 1.2 or newer only, always",
    "no-sslv2": "TLS 1.2 or newer only, always",
    "no-sslv3": "TLS 1.2 or newer only, always",
    "cipher-list": "Python's ssl defaults choose the ciphers",
    "ec-curve-name": "Python's ssl defaults choose the curves",
    "dh-file": "key exchange is ECDHE; no DH parameters are used",
    "dh566": "key exchange is ECDHE; no DH parameters are used",
    "dh1066": "key exchange is ECDHE; no DH parameters are used",
    "dh2066": "key exchange is ECDHE; no DH parameters are used",
    "no-cli": "icestack has no telnet admin CLI",
    "cli-ip": "icestack has no telnet admin CLI",
    "cli-port": "icestack has no telnet admin CLI",
    "cli-password": "icestack has no telnet admin CLI",
    "cli-max-output-sessions": "icestack has no telnet admin CLI",
    "web-admin": "icestack has no web admin; metrics-port serves Prometheus metrics",
    "web-admin-ip": "icestack has no web admin",
    "web-admin-port": "icestack has no web admin",
    "web-admin-listen-on-workers": "icestack has no web admin",
    "acme-redirect": "icestack serves no HTTP challenges",
    "syslog": "icestack logs to stderr, or to log-file",
    "syslog-facility": "icestack logs to stderr, or to log-file",
    "simple-log": "icestack logs to stderr, or to log-file",
    "no-stdout-log": "icestack logs to stderr, or to log-file",
    "new-log-timestamp": "log lines always start with a timestamp",
    "new-log-timestamp-format": "log lines always start with a timestamp",
    "log-binding": "Binding requests are never logged",
    "pidfile": "icestack stays in the foreground; let the service manager track it",
    "daemon": "icestack stays in the foreground; let the service manager run it",
    "relay-threads": "one thread a process; workers=N runs N processes",
    "udp-self-balance": "no auxiliary-server balancing; workers=N share each port",
    "alt-listening-port": "no RFC 5780 (NAT behaviour discovery) here",
    "alt-tls-listening-port": "no RFC 5780 (NAT behaviour discovery) here",
    "no-rfc5780": "no RFC 5780 (NAT behaviour discovery) here anyway",
    "response-origin-only-with-rfc5780": "no RFC 5780 here, so no RESPONSE-ORIGIN",
    "no-stun-backward-compatibility": "RFC 3489 requests are dropped here anyway",
    "check-origin-consistency": "ORIGIN is not checked",
    "server-relay": "relayed traffic is never sent to the server itself",
    "mobility": "no mobility tickets (RFC 8016); clients go on without them",
    "keep-address-family": "relayed addresses are of the family the client asks for",
    "server-name": "only oAuth uses it, and icestack has no oAuth",
    "redis-statsdb": "no statistics database; metrics-port serves Prometheus metrics",
    "no-auth-pings": "no user database to ping",
    "no-dynamic-ip-list": "no database of peer ranges",
    "no-dynamic-realms": "one realm, from realm=",
    "ne": "one network engine",
    "secret-ts-exp-time": "REST API usernames carry their own expiry",
    "channel-lifetime": "channels last RFC 8656's 600 s",
    "permission-lifetime": "permissions last RFC 8656's 300 s",
    "max-allocate-lifetime": "allocations last at most RFC 8656's 3600 s",
}

#: coturn's user databases, none of which icestack has.
_USER_DATABASES = (
    "userdb", "db", "psql-userdb", "sql-userdb", "mysql-userdb", "mongo-userdb", "redis-userdb",
)  # fmt: skip
#: coturn options icestack cannot honour, and what to do instead.
UNSUPPORTED: dict[str, str] = {
    "no-auth": "authentication cannot be turned off (RFC 8656 §5): give users or a secret",
    "listening-device": "icestack does not listen on a device: use listening-ip",
    "relay-device": "icestack does not relay on a device: use relay-ip",
    "no-udp-relay": "UDP relaying cannot be turned off",
    "stun-only": "for a STUN server alone, run icestack serve stun",
    "secure-stun": "Binding requests are answered without authentication (no-stun stops them)",
    "bps-capacity": "there is no server-wide bandwidth cap; max-bps limits each allocation",
    "tcp-proxy-port": "icestack has no PROXY protocol listener",
    "oauth": "icestack has no oAuth (RFC 7635)",
    "CA-file": "icestack does not check client certificates",
    "no-tlsv1_2": "TLS cannot be limited to 1.3",
    "proc-user": "icestack does not change user: run it as that user (systemd User=, with "
    "AmbientCapabilities=CAP_NET_BIND_SERVICE for ports below 1024)",
    "proc-group": "icestack does not change group: run it with that group (systemd Group=)",
    "tls-alternate-server": "icestack has one alternate-server, for every transport",
    **dict.fromkeys(
        _USER_DATABASES,
        "icestack has no user database: give users with user=NAME:PASSWORD, or a "
        "static-auth-secret",
    ),
    "secret-key-file": "icestack has no user database, so no key for its passwords",
}


def _flag_value(value: str) -> bool | None:
    """A boolean the way coturn reads one; ``None`` for a value that is none."""
    text = value.lower()
    return True if text in _TRUE else False if text in _FALSE else None


class _Reader:
    """Goes through the lines once; listening addresses and TLS files are put together after."""

    def __init__(self, options: OptionNames) -> None:
        self.options = options
        self.result = ConfigFile()
        self.listening_ips: list[tuple[Line, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
        self.listening_port = 3478
        self.listening_port_from: Line | None = None
        self.tls: dict[str, Line] = {}
        self.no_tls = False
        self.seen: dict[str, Line] = {}
        #: coturn's names that are not simply ours, and how each is read.
        self.special: dict[str, Callable[[Line], None]] = {
            "listening-ip": self.listening_ip,
            "listening-port": self.listening_port_line,
            "aux-server": lambda line: self.valued(line, "listen"),
            "cert": lambda line: self.tls.__setitem__("cert", line),
            "pkey": lambda line: self.tls.__setitem__("pkey", line),
            "no-tls": self.no_tls_line,
            "Verbose": self.extra_verbose,
            "prometheus": self.prometheus,
            "user": self.user,
            "user-quota": lambda line: self.quota(line, "user-quota", 10),
            "total-quota": lambda line: self.quota(line, "total-quota", 1000),
            "max-bps": self.max_bps,
            "rest-api-separator": self.rest_api_separator,
            "allocation-default-address-family": self.address_family,
        }

    def problem(self, line: Line, text: str) -> None:
        self.result.problems.append(f"line {line.number}: {text}")

    def note(self, line: Line, text: str) -> None:
        self.result.notes.append(f"line {line.number}: {line.name} has no effect here: {text}")

    def read(self, line: Line) -> None:
        name, value = line.name, line.value
        special = self.special.get(name)
        if special is not None:
            special(line)
        elif name in NO_EFFECT:
            if _flag_value(value) is not False:
                self.note(line, NO_EFFECT[name])
        elif name in UNSUPPORTED:
            if _flag_value(value) is not False:
                self.problem(line, f"{name} cannot be honoured: {UNSUPPORTED[name]}")
        elif name in self.options.flags:
            self.flag(line, name)
        elif name in self.options.valued:
            self.valued(line, name)
        else:
            self.problem(line, f"unknown option {name!r}")

    def flag(self, line: Line, option: str) -> None:
        state = _flag_value(line.value)
        if state is None:
            self.problem(line, f"{line.name} is a flag, not {line.value!r}")
        elif state:
            self.result.add(line, f"--{option}")

    def valued(self, line: Line, option: str) -> None:
        if not line.value:
            self.problem(line, f"{line.name} needs a value")
            return
        if option not in self.options.repeatable:
            earlier = self.seen.get(option)
            if earlier is not None:
                self.problem(line, f"{line.name} again (line {earlier.number}): give it once")
                return
            self.seen[option] = line
        if option == "tls":
            self.result.add(line, "--tls", *line.value.split())
        else:
            self.result.add(line, f"--{option}={line.value}")

    # ------------------------------------------------------------------ coturn's own forms

    def listening_ip(self, line: Line) -> None:
        try:
            self.listening_ips.append((line, ipaddress.ip_address(line.value.strip("[]"))))
        except ValueError:
            self.problem(line, f"listening-ip wants an IP address, not {line.value!r}")

    def listening_port_line(self, line: Line) -> None:
        if line.value.isdigit() and int(line.value) <= 65535:
            self.listening_port = int(line.value)
        else:
            self.problem(line, f"listening-port wants a port number, not {line.value!r}")
        self.listening_port_from = line

    def no_tls_line(self, line: Line) -> None:
        self.no_tls = _flag_value(line.value) is not False

    def extra_verbose(self, line: Line) -> None:
        self.note(line, "extra verbose logs what verbose does")
        self.flag(line, "verbose")

    def prometheus(self, line: Line) -> None:
        if _flag_value(line.value):
            self.result.add(line, f"--metrics-port={COTURN_PROMETHEUS_PORT}")

    def user(self, line: Line) -> None:
        if line.value.partition(":")[2].lower().startswith("0x"):
            self.problem(line, "a key made by turnadmin is not supported: give the password")
        else:
            self.valued(line, "user")

    def quota(self, line: Line, option: str, default: int) -> None:
        if line.value.strip() == "0":
            self.note(
                line, f"0 is coturn's 'no limit', and icestack bounds every table: the "
                f"default of {default} stays (give a number to change it)",
            )  # fmt: skip
        else:
            self.valued(line, option)

    def max_bps(self, line: Line) -> None:
        if line.value.strip() != "0":  # coturn's 0, no limit, is the default here too
            self.valued(line, "max-bps")

    def rest_api_separator(self, line: Line) -> None:
        if line.value != ":":
            self.problem(line, "REST API usernames are EXPIRY:NAME here, with ':'")

    def address_family(self, line: Line) -> None:
        if line.value.lower() != "ipv4":
            self.problem(line, "the relayed address is IPv4 unless the client asks for IPv6")

    def finish(self) -> ConfigFile:
        """Put the listening addresses and TLS files together; return the result."""
        ips = self.listening_ips
        port_line = self.listening_port_from
        if not ips and port_line is not None:  # coturn then listens on every address
            ips = [(port_line, ipaddress.ip_address(any_ip)) for any_ip in ("0.0.0.0", "::")]
        for line, ip in ips:
            self.result.add(line, f"--listen={Address(str(ip), self.listening_port)}")
        if self.tls and not self.no_tls:
            cert, pkey = self.tls.get("cert"), self.tls.get("pkey")
            if cert is None or pkey is None:
                given = cert or pkey
                assert given is not None
                self.problem(given, "cert and pkey go together: give both")
            else:
                self.result.add(cert, "--tls", cert.value, pkey.value)
        return self.result


def lines(text: str) -> Iterable[Line]:
    """The option lines of a file, comments and blank lines left out, quotes dropped."""
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        assert match is not None  # any non-blank text matches
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        yield Line(number, match["name"].removeprefix("--"), value)


def read_config(path: Path, options: OptionNames) -> ConfigFile:
    """Read ``path``; the problems are left in the result for the caller to report with the
    values' own (see :func:`check_values`)."""
    try:
        text = read_file(path, "--config").decode()
    except UnicodeDecodeError:
        raise LocalProtocolError(f"--config {path}: not a text file") from None
    reader = _Reader(options)
    for line in lines(text):
        reader.read(line)
    return reader.finish()


def check_values(config: ConfigFile, parser: argparse.ArgumentParser) -> None:
    """Parse each line's arguments alone, so that a bad value is reported with its line."""
    parser.exit_on_error = False
    try:
        for number, arguments in config.arguments:
            try:
                parser.parse_args(arguments)
            except argparse.ArgumentError as exc:
                config.problems.append(f"line {number}: {exc}")
    finally:
        parser.exit_on_error = True
