"""TURN and STUN server URIs: ``turn:`` and ``turns:`` (RFC 7065), ``stun:`` and ``stuns:``
(RFC 7064), as ICE configurations name servers.

The grammar (RFC 7065 §3.1, RFC 7064 §3.1; ABNF literals match in any case)::

    turnURI   = ("turn" / "turns") ":" host [ ":" port ] [ "?transport=" transport ]
    stunURI   = ("stun" / "stuns") ":" host [ ":" port ]

``host`` is an IPv6 literal in brackets, an IPv4 address, or a host name (RFC 3986 §3.2.2; this
module accepts DNS names: dot-separated labels of letters, digits, ``-`` and ``_``). There is no
``//`` and no user information: credentials travel apart from the URI (RFC 7065 §3). The port
defaults to 3478, or 5349 for the secure schemes. ``turn:`` runs over UDP unless
``?transport=tcp``; ``turns:`` over TLS on TCP (``?transport=udp`` would be DTLS, which is not
supported here); ``stun:`` over UDP and ``stuns:`` over TLS.

:func:`parse_uri` raises :class:`turn.DecodeError` (only) for text it cannot use, and says why.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from .errors import DecodeError
from .transport import ClientTransport

_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_NUMERIC = re.compile(r"[0-9.]+")


class UriScheme(enum.Enum):
    """The four schemes, by their name in a URI."""

    STUN = "stun"
    STUNS = "stuns"
    TURN = "turn"
    TURNS = "turns"

    @property
    def secure(self) -> bool:
        """Whether the scheme runs over TLS."""
        return self in (UriScheme.STUNS, UriScheme.TURNS)

    @property
    def default_port(self) -> int:
        """3478, or 5349 over TLS (RFC 8489 §18.7, RFC 8656 §17)."""
        return 5349 if self.secure else 3478


@dataclass(frozen=True, slots=True)
class ServerUri:
    """A parsed server URI. ``host`` is a normalised IP literal (IPv6 without brackets) or a
    lower-case name; ``transport`` is how to reach the server."""

    scheme: UriScheme
    host: str
    port: int
    transport: ClientTransport

    @property
    def is_turn(self) -> bool:
        return self.scheme in (UriScheme.TURN, UriScheme.TURNS)

    def __str__(self) -> str:
        """The shortest URI that parses back to this one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == self.scheme.default_port else f":{self.port}"
        query = "?transport=tcp" if self.transport is ClientTransport.TCP else ""
        return f"{self.scheme.value}:{host}{port}{query}"


def parse_uri(text: str) -> ServerUri:
    """Parse a ``turn:``, ``turns:``, ``stun:`` or ``stuns:`` URI (see the module docstring)."""
    name, colon, rest = text.partition(":")
    try:
        scheme = UriScheme(name.lower())
    except ValueError:
        raise _fail(text, "the scheme must be turn, turns, stun or stuns") from None
    if not colon:
        raise _fail(text, "no ':' after the scheme")
    if rest.startswith("//"):
        raise _fail(text, "no '//' in a STUN or TURN URI (RFC 7064, RFC 7065)")
    authority, question, query = rest.partition("?")
    if "@" in authority:
        raise _fail(text, "no user information in a STUN or TURN URI")
    host, port_text = _split_authority(text, authority)
    port = scheme.default_port if not port_text else _port(text, port_text)
    if question and scheme not in (UriScheme.TURN, UriScheme.TURNS):
        raise _fail(text, "a stun: or stuns: URI has no query (RFC 7064)")
    return ServerUri(scheme, host, port, _transport(text, scheme, query if question else None))


def _fail(text: str, why: str) -> DecodeError:
    return DecodeError(f"URI {text!r}: {why}")


def _split_authority(text: str, authority: str) -> tuple[str, str]:
    """The normalised host and the port text (empty when there is none)."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _fail(text, "'[' without ']'")
        literal, after = authority[1:end], authority[end + 1 :]
        try:
            host = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            raise _fail(text, f"[{literal}] is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise _fail(text, f"{after!r} after the host")
        return host, after[1:]
    host, _, port_text = authority.partition(":")
    if ":" in port_text:
        raise _fail(text, "an IPv6 address must be in brackets")
    return _host(text, host), port_text


def _host(text: str, host: str) -> str:
    if not host:
        raise _fail(text, "no host")
    if _NUMERIC.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _fail(text, f"{host} is not an IPv4 address") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _fail(text, f"{host!r} is not a host name")
    return host.lower()


def _port(text: str, port_text: str) -> int:
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) <= 0xFFFF:
        raise _fail(text, f"port {port_text!r} is not 1-65535")
    return int(port_text)


def _transport(text: str, scheme: UriScheme, query: str | None) -> ClientTransport:
    secure = scheme.secure
    if query is None:
        return ClientTransport.TLS if secure else ClientTransport.UDP
    key, equals, value = query.partition("=")
    if key.lower() != "transport" or not equals:
        raise _fail(text, "the only query is ?transport=udp or ?transport=tcp (RFC 7065)")
    value = value.lower()
    if value == "tcp":
        return ClientTransport.TLS if secure else ClientTransport.TCP
    if value == "udp":
        if secure:
            raise _fail(text, "turns: over UDP means DTLS, which is not supported")
        return ClientTransport.UDP
    raise _fail(text, f"transport {value!r} is not supported: udp or tcp")
