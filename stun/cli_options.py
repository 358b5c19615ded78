"""The argparse ``type`` functions and shared options of the ``icestack`` commands: what parsing
a command line needs, and no more (no sockets, TLS or asyncio), so that a command's ``--help``
or a mistyped option is answered without loading the stack the command runs on. Each ``type``
raises :class:`argparse.ArgumentTypeError`, which argparse turns into one line and exit status
2 (:class:`stun.cli_messages.CliParser`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .limits import StreamLimits


def split_host_port(text: str, default_port: int | None) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal; raises
    :class:`argparse.ArgumentTypeError` (an argparse ``type``) for what is none of them."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise argparse.ArgumentTypeError(f"unclosed '[' in {text!r}")
        if rest and not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"want [IPv6]:PORT, got {text!r}")
        colon, port_text = bool(rest), rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        colon = True
    else:
        host, port_text, colon = text, "", False
    if not host:
        raise argparse.ArgumentTypeError(f"no host in {text!r}")
    if colon and not port_text:
        raise argparse.ArgumentTypeError(f"no port after ':' in {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}: ports are 0 to 65535")
    return host, int(port_text)


def server_address(text: str, default_port: int) -> tuple[str, int]:
    """A server to talk to: ``host``, ``host:port`` or ``[v6]:port``, never port 0 (which no
    server listens on); raises :class:`argparse.ArgumentTypeError`."""
    host, port = split_host_port(text, default_port)
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 in {text!r}: a server is never on port 0")
    assert port is not None
    return host, port


def parse_seconds(text: str) -> float:
    """An argparse ``type``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def bounded_integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [minimum, maximum]."""

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


#: An argparse ``type``: a port to listen on, 0 for any free one.
port_number = bounded_integer(0, 65535)


#: The defaults the help texts of the limit options quote.
_LIMITS = StreamLimits()
_positive = bounded_integer(1)


def add_batch_io_option(option: Callable[..., object]) -> None:
    """``--no-batch-io``, shared by ``serve stun`` and ``serve turn``."""
    option(
        "--no-batch-io",
        action="store_true",
        help="read and send UDP one datagram per system call (default on Linux: recvmmsg and "
        "sendmmsg, many per call)",
    )


def add_limit_options(add: Callable[..., object]) -> None:
    """The options of ``serve stun`` and ``serve turn`` that bound TCP and TLS connections
    (:class:`stun.limits.StreamLimits`) and 400/401 answers per source; ``add`` is the
    parser's ``add_argument`` (or what wraps it). Each defaults to ``None``: unset."""
    add(
        "--max-connections",
        type=_positive,
        metavar="N",
        help="TCP and TLS connections at once, TLS handshakes included "
        f"(default {_LIMITS.max_connections})",
    )
    add(
        "--max-connections-per-source",
        type=_positive,
        metavar="N",
        help="TCP and TLS connections at once from one IPv4 address or IPv6 /64 "
        f"(default {_LIMITS.max_connections_per_source})",
    )
    add(
        "--max-tls-handshakes",
        type=_positive,
        metavar="N",
        help=f"TLS handshakes pending at once (default {_LIMITS.max_handshakes}, "
        f"{_LIMITS.max_handshakes_per_source} from one source)",
    )
    add(
        "--tls-handshake-timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help=f"close a TLS connection whose handshake takes longer "
        f"(default {_LIMITS.handshake_timeout:g})",
    )
    add(
        "--first-message-timeout",
        type=parse_seconds,
        metavar="SECONDS",
        help="close a TCP or TLS connection that sends no complete message this long after "
        f"it is accepted (after its TLS handshake) (default {_LIMITS.first_message_timeout:g})",
    )
    add(
        "--auth-failure-rate",
        type=_positive,
        metavar="N",
        help="401/400 answers a second per source IP (or IPv6 /64) before dropping (default 2)",
    )
    add(
        "--auth-failure-burst",
        type=_positive,
        metavar="N",
        help="401/400 answers a source may get at once (default 20)",
    )


def parse_user(text: str) -> tuple[str, str]:
    """An argparse ``type``: ``NAME:PASSWORD``."""
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"--user wants NAME:PASSWORD, got {text!r}")
    return name, password
