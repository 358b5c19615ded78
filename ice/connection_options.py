"""The arguments of :class:`~ice.aio.Connection`, checked at the call.

A wrong argument is refused where it is given, with a :class:`~ice.errors.LocalProtocolError`
that names the argument and says what is wanted — not as an unpacking error, a wait for the
gathering timeout, or a connection that silently gathers nothing.

STUN servers are ``(host, port)`` pairs or text: ``host``, ``host:port``, ``[IPv6]:port``, a
bare IPv6 literal, or a ``stun:`` URI (RFC 7064); ICE asks them over UDP, so ``stuns:`` is
refused. TURN servers are ``(host, port, username, password)`` (over UDP), or ``(uri, username,
password)`` with a ``turn:`` or ``turns:`` URI (RFC 7065: ``turn:host:port?transport=udp|tcp``,
``turns:host:port?transport=tcp`` for TLS) or ``host:port`` — and in place of the username and
password, :class:`TurnRestCredentials`: the TURN REST API's time-limited credentials, made from
the secret the server shares when gathering starts. Ports are 1-65535: no server is on port 0,
and the default, 3478 (5349 for ``turns:``), is taken only where no port is written.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from turn.errors import DecodeError as UriDecodeError
from turn.rest_api import rest_api_password, rest_api_username
from turn.transport import ClientTransport
from turn.uri import UriScheme, parse_uri

from .candidate import TcpType, generate_credentials, validate_pwd, validate_ufrag
from .config import AgentConfig, Policy, RelayServer
from .errors import LocalProtocolError
from .shared_values import SharedValues

#: A STUN server as the agent is given it before names are resolved: (host, port).
StunServer = tuple[str, int]


class GatherOptions(NamedTuple):
    """How a connection gathers and what its sockets do (its arguments of that name, checked),
    read when gathering starts or restarts: one object held instead of eight attributes, shared
    by the connections given the same ones (:func:`gather_options`)."""

    use_ipv4: bool
    use_ipv6: bool
    include_loopback: bool
    #: The addresses or interface names to gather on (``None``: every usable one).
    interfaces: tuple[str, ...] | None
    udp: bool
    batch_io: bool
    port_range: tuple[int, int] | None
    mdns_timeout: float


_GATHER_OPTIONS: SharedValues[GatherOptions] = SharedValues()


def gather_options(options: GatherOptions) -> GatherOptions:
    """``options``, or the equal one another connection holds already."""
    return _GATHER_OPTIONS.get(options)


@dataclass(frozen=True, slots=True)
class TurnRestCredentials:
    """Credentials for a TURN server that shares a secret with your service (the TURN REST API,
    coturn's ``use-auth-secret`` / ``static-auth-secret``): made when gathering starts, valid for
    ``ttl`` seconds — username ``"<expiry>:<user>"`` (``"<expiry>"`` without a ``user``), password
    base64(HMAC-SHA1(secret, username)). Give it in place of a username and password:
    ``turn_servers=[("turns:turn.example.net", TurnRestCredentials("s3cret", user="alice"))]``.
    """

    secret: str | bytes = field(repr=False)
    user: str = ""
    ttl: float = 86400.0

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str | bytes) or not self.secret:
            raise LocalProtocolError("TurnRestCredentials: the secret must be a non-empty string")
        if not isinstance(self.user, str) or ":" in self.user:
            raise LocalProtocolError("TurnRestCredentials: the user must be a string without ':'")
        seconds("TurnRestCredentials: ttl", self.ttl)

    def make(self, unix_time: float) -> tuple[str, str]:
        """The username and password, valid from ``unix_time`` (seconds since 1970) on."""
        secret = self.secret.encode("utf-8") if isinstance(self.secret, str) else self.secret
        username = rest_api_username(self.user, unix_time + self.ttl)
        return username, rest_api_password(secret, username)


class TurnServer(NamedTuple):
    """A TURN server as the agent is given it before its name is resolved."""

    host: str
    port: int
    #: A username and password, or how to make them.
    credentials: tuple[str, str] | TurnRestCredentials
    transport: ClientTransport = ClientTransport.UDP


#: What ``Connection(stun_servers=[...])`` takes for one server (module docstring).
StunServerArgument = StunServer | str
#: What ``Connection(turn_servers=[...])`` takes for one server: with a host and port, or with
#: a ``turn:``/``turns:`` URI (or ``host:port``) and a username and password or REST credentials.
TurnServerArgument = (
    tuple[str, int, str, str] | tuple[str, str, str] | tuple[str, TurnRestCredentials]
)


def agent_config(
    config: object,
    *,
    controlling: bool,
    components: int | None,
    pacing: float | None,
    local_username: str | None,
    local_password: str | None,
    relay_only: bool,
    udp: bool,
    tcp: bool,
) -> AgentConfig:
    """The configuration a :class:`~ice.aio.Connection` runs its agent with: ``config``'s (or
    the defaults), each argument that was given (not ``None``) in place of the field it names —
    ``components`` the one stream's, ``relay_only=True`` the ``policy``, ``tcp=False`` the
    ``tcp_types`` — every one checked, and random credentials where none were given."""
    if config is not None and not isinstance(config, AgentConfig):
        raise LocalProtocolError(f"config must be an ice.AgentConfig, not {config!r}")
    base = config or AgentConfig()
    if components is None:
        if len(base.streams) != 1:
            raise LocalProtocolError(
                f"a Connection carries one data stream; config.streams is {base.streams}"
            )
        components = base.streams[0]
    whole_number("components", components, 1, 256)
    if pacing is not None:
        seconds("pacing", pacing)  # AgentConfig checks the range
    if not tcp:
        base = dataclasses.replace(base, tcp_types=())
    if not udp and not base.tcp_types:
        raise LocalProtocolError("udp and tcp cannot both be off: no candidate to offer")
    if local_username is not None:
        validate_ufrag(local_username)
    if local_password is not None:
        validate_pwd(local_password)
    ufrag, pwd = generate_credentials(base.rng)
    return dataclasses.replace(
        base,
        controlling=controlling,
        streams=(components,),
        pacing=base.pacing if pacing is None else pacing,
        local_username=local_username or base.local_username or ufrag,
        local_password=local_password or base.local_password or pwd,
        policy=Policy.RELAY if relay_only else base.policy,
    )


def flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``: a string such as ``"no"`` is no answer."""
    if not isinstance(value, bool):
        raise LocalProtocolError(f"{name} must be True or False, not {value!r}")
    return value


def whole_number(name: str, value: object, least: int, most: int | None = None) -> int:
    """An ``int`` (not a ``bool``) from ``least`` to ``most``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{name} must be a whole number, not {value!r}")
    if value < least or (most is not None and value > most):
        wanted = f"at least {least}" if most is None else f"{least} to {most}"
        raise LocalProtocolError(f"{name} must be {wanted}, not {value}")
    return value


def seconds(name: str, value: object) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LocalProtocolError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 < value < math.inf:
        raise LocalProtocolError(f"{name} must be a positive number of seconds, not {value}")
    return float(value)


def names(name: str, value: Iterable[str] | None) -> list[str] | None:
    """A list of strings (``None`` stays ``None``); one string alone is refused, since it would
    be taken letter by letter."""
    if value is None:
        return None
    if isinstance(value, str):
        raise LocalProtocolError(f"{name} is a list: write {name}=[{value!r}]")
    items = _items(name, value)
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise LocalProtocolError(f"{name}[{index}] must be a non-empty string, not {item!r}")
    return items  # type: ignore[return-value]  # each item was checked to be a str


def datagram(data: object) -> None:
    """Refuse application data that is not bytes-like (``send("hello")``): it would fail only
    when the datagram is wrapped for a TURN server, far from the call."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalProtocolError(f"data must be bytes, not {type(data).__name__}")


def credential(name: str, value: object) -> None:
    """The peer's ufrag or pwd from signalling: a non-empty string (it signs every check)."""
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"the remote {name} must be a non-empty string, not {value!r}")


def stun_servers(value: Iterable[object]) -> list[StunServer]:
    """Every STUN server of ``stun_servers`` as ``(host, port)`` (module docstring)."""
    _not_one_server("stun_servers", value, 2)
    return [_stun_server(f"stun_servers[{i}]", item) for i, item in enumerate(_items("", value))]


def turn_servers(value: Iterable[object]) -> list[TurnServer]:
    """Every TURN server of ``turn_servers`` (module docstring)."""
    _not_one_server("turn_servers", value, 4)
    return [_turn_server(f"turn_servers[{i}]", item) for i, item in enumerate(_items("", value))]


def _items(name: str, value: object) -> list[object]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise LocalProtocolError(f"{name or 'the servers'} must be a list, not {value!r}")
    return list(value)


def _not_one_server(name: str, value: object, size: int) -> None:
    """Refuse one server given where a list of them is wanted: ``("host", 3478)``."""
    if isinstance(value, str):
        raise LocalProtocolError(f"{name} is a list of servers: write {name}=[{value!r}]")
    one = isinstance(value, tuple) and len(value) == size and isinstance(value[1], int)
    one_uri = (  # ("turn:…", "user", "password") or ("turn:…", TurnRestCredentials(…))
        size == 4
        and isinstance(value, tuple)
        and len(value) in (2, 3)
        and isinstance(value[0], str)
        and isinstance(value[-1], str | TurnRestCredentials)
    )
    if one or one_uri:
        raise LocalProtocolError(f"{name} is a list of servers: write {name}=[{value!r}]")


def _stun_server(name: str, item: object) -> StunServer:
    if isinstance(item, str):
        uri = item if item.lower().startswith(("stun:", "stuns:", "turn:", "turns:")) else None
        host, port, _ = _from_text(name, item, uri, turn=False)
        return host, port
    if isinstance(item, tuple | list) and len(item) == 2:
        return _host(name, item[0]), _port(name, item[1])
    raise LocalProtocolError(
        f"{name}: want a (host, port) pair, 'host:port' or a stun: URI, not {item!r}"
    )


def _turn_server(name: str, item: object) -> TurnServer:
    if isinstance(item, tuple | list) and len(item) == 4:
        host, port = _host(name, item[0]), _port(name, item[1])
        return TurnServer(host, port, _credentials(name, item[2], item[3]))
    if isinstance(item, tuple | list) and len(item) in (2, 3) and isinstance(item[0], str):
        text = item[0]
        uri = text if text.lower().startswith(("stun:", "stuns:", "turn:", "turns:")) else None
        host, port, transport = _from_text(name, text, uri, turn=True)
        if len(item) == 3:
            return TurnServer(host, port, _credentials(name, item[1], item[2]), transport)
        if isinstance(item[1], TurnRestCredentials):
            return TurnServer(host, port, item[1], transport)
    raise LocalProtocolError(
        f"{name}: want (host, port, username, password), (turn: URI, username, password) or "
        f"(turn: URI, TurnRestCredentials(secret, user)), not {item!r}"
    )


def _from_text(
    name: str, text: str, uri: str | None, *, turn: bool
) -> tuple[str, int, ClientTransport]:
    """A server written as text: a URI of the right scheme, or a host and port (over UDP)."""
    kind = "turn: URI or host:port" if turn else "'host:port' or a stun: URI"
    if uri is None:
        try:  # a bare IPv6 literal: no port can follow it unbracketed
            host = ipaddress.IPv6Address(text).compressed
            return host, UriScheme.STUN.default_port, ClientTransport.UDP
        except ValueError:
            uri = ("turn:" if turn else "stun:") + text
    try:
        parsed = parse_uri(uri)
    except UriDecodeError as exc:
        why = str(exc).removeprefix(f"URI {uri!r}: ")
        raise LocalProtocolError(f"{name}: {text!r} is not a {kind}: {why}") from None
    if parsed.is_turn != turn:
        wanted = "turn_servers, with a username and password" if parsed.is_turn else "stun_servers"
        scheme = parsed.scheme.value
        raise LocalProtocolError(f"{name}: {text!r} is a {scheme}: URI: give it in {wanted}")
    if not turn and parsed.transport is not ClientTransport.UDP:
        raise LocalProtocolError(
            f"{name}: {text!r} is over {parsed.transport.name}: ICE asks STUN servers over UDP "
            "only (a TURN server over TCP or TLS goes in turn_servers)"
        )
    return parsed.host, parsed.port, parsed.transport


def _host(name: str, host: object) -> str:
    if not isinstance(host, str) or not host or host != host.strip():
        raise LocalProtocolError(f"{name}: the host must be a name or an IP address, not {host!r}")
    return host


def _port(name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise LocalProtocolError(
            f"{name}: port {port!r} out of range: a server's port is 1 to 65535"
        )
    return port


def _credentials(name: str, username: object, password: object) -> tuple[str, str]:
    if isinstance(password, TurnRestCredentials):
        raise LocalProtocolError(
            f"{name}: TurnRestCredentials replace the username and password: "
            "(turn: URI, TurnRestCredentials(secret, user))"
        )
    if not isinstance(username, str) or not username:
        raise LocalProtocolError(f"{name}: the username must be a non-empty string")
    if not isinstance(password, str):
        raise LocalProtocolError(f"{name}: the password must be a string")
    return username, password


def refuse_udp_relays_on_mux(servers: Iterable[TurnServer | RelayServer]) -> None:
    """A connection on a shared-port mux allocates relays over TCP or TLS only: over UDP every
    session on the mux would ask from the same address, and a TURN server keeps one allocation
    per client address and port (RFC 8656 §2: the 5-tuple names it), so all but the first
    session would be refused (437 Allocation Mismatch)."""
    for server in servers:
        if server.transport is ClientTransport.UDP:
            where = (
                f"{server.host}:{server.port}"
                if isinstance(server, TurnServer)
                else str(server.address)
            )
            raise LocalProtocolError(
                f"TURN server {where} over UDP on a mux: the sessions on a mux share one address, "
                "and a TURN server allows one allocation per address; reach it over TCP or TLS "
                "('turn:…?transport=tcp' or 'turns:'), or connect without the mux"
            )


def on_mux(config: AgentConfig) -> AgentConfig:
    """The configuration of a connection on a shared-port mux (:mod:`ice.aio_mux`): of its TCP
    types the passive one only — an active or simultaneous-open candidate would connect from
    ports other than the mux's."""
    passive = TcpType.PASSIVE in config.tcp_types
    return dataclasses.replace(config, tcp_types=(TcpType.PASSIVE,) if passive else ())
