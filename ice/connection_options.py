"""The arguments of :class:`~ice.aio.Connection`, checked at the call.

A wrong argument is refused where it is given, with a :class:`~ice.errors.LocalProtocolError`
that names the argument and says what is wanted — not as an unpacking error, a wait for the
gathering timeout, or a connection that silently gathers nothing.

STUN servers are ``(host, port)`` pairs or text: ``host``, ``host:port``, ``[IPv6]:port``, a
bare IPv6 literal, or a ``stun:`` URI (RFC 7064). TURN servers are ``(host, port, username,
password)``, or ``(uri, username, password)`` with a ``turn:`` URI (RFC 7065) or ``host:port``.
ICE reaches both over UDP only, so ``stuns:``, ``turns:`` and ``?transport=tcp`` are refused
(:class:`turn.TurnClient` on its own speaks TCP and TLS). Ports are 1-65535: no server is on
port 0, and the default, 3478, is taken only where no port is written.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from turn.errors import DecodeError as UriDecodeError
from turn.server.allocation import ClientTransport
from turn.uri import UriScheme, parse_uri

from .errors import LocalProtocolError

#: A STUN server as the agent is given it before names are resolved: (host, port).
StunServer = tuple[str, int]
#: A TURN server likewise: (host, port, username, password).
TurnServer = tuple[str, int, str, str]
#: What ``Connection(stun_servers=[...])`` takes for one server (module docstring).
StunServerArgument = StunServer | str
#: What ``Connection(turn_servers=[...])`` takes for one server: with a host and port, or with
#: a ``turn:`` URI.
TurnServerArgument = TurnServer | tuple[str, str, str]


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
    """Every TURN server of ``turn_servers`` as ``(host, port, username, password)``."""
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
    if isinstance(value, tuple) and len(value) == size and isinstance(value[1], int):
        raise LocalProtocolError(f"{name} is a list of servers: write {name}=[{value!r}]")


def _stun_server(name: str, item: object) -> StunServer:
    if isinstance(item, str):
        uri = item if item.lower().startswith(("stun:", "stuns:", "turn:", "turns:")) else None
        host, port = _from_text(name, item, uri, turn=False)
        return host, port
    if isinstance(item, tuple | list) and len(item) == 2:
        return _host(name, item[0]), _port(name, item[1])
    raise LocalProtocolError(
        f"{name}: want a (host, port) pair, 'host:port' or a stun: URI, not {item!r}"
    )


def _turn_server(name: str, item: object) -> TurnServer:
    if isinstance(item, tuple | list) and len(item) == 4:
        host, port = _host(name, item[0]), _port(name, item[1])
        return host, port, *_credentials(name, item[2], item[3])
    if isinstance(item, tuple | list) and len(item) == 3 and isinstance(item[0], str):
        text = item[0]
        uri = text if text.lower().startswith(("stun:", "stuns:", "turn:", "turns:")) else None
        host, port = _from_text(name, text, uri, turn=True)
        return host, port, *_credentials(name, item[1], item[2])
    raise LocalProtocolError(
        f"{name}: want (host, port, username, password) or (turn: URI, username, password), "
        f"not {item!r}"
    )


def _from_text(name: str, text: str, uri: str | None, *, turn: bool) -> StunServer:
    """A server written as text: a URI of the right scheme over UDP, or a host and port."""
    kind = "turn: URI or host:port" if turn else "'host:port' or a stun: URI"
    if uri is None:
        try:  # a bare IPv6 literal: no port can follow it unbracketed
            return ipaddress.IPv6Address(text).compressed, UriScheme.STUN.default_port
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
    if parsed.transport is not ClientTransport.UDP:
        raise LocalProtocolError(
            f"{name}: {text!r} is over {parsed.transport.name}: ICE gathers over UDP only "
            "(turn.TurnClient on its own speaks TCP and TLS)"
        )
    return parsed.host, parsed.port


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
    if not isinstance(username, str) or not username:
        raise LocalProtocolError(f"{name}: the username must be a non-empty string")
    if not isinstance(password, str):
        raise LocalProtocolError(f"{name}: the password must be a string")
    return username, password
