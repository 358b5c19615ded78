"""Checks of what a caller hands the public API, made at the call.

Local misuse raises at once with the package's ``LocalProtocolError`` (docs/architecture.md), and
says which argument is wrong and what is wanted: a ``str`` where bytes belong, a port out of range
or a ``"host:port"`` string where an :class:`Address` belongs must not be accepted and then fail
later, far from its cause — as a ``TypeError`` inside the event loop, or as a request sent to a
port nothing listens on. Each check takes the exception class to raise, so :mod:`turn` raises its
own :class:`turn.LocalProtocolError` with the same words.
"""

from __future__ import annotations

import math

from .address import Address, make_address
from .errors import LocalProtocolError

#: What an API call raises for a bad argument: a package's ``LocalProtocolError``.
MisuseError = type[Exception]


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_port(
    value: object,
    name: str = "port",
    *,
    zero: bool = False,
    error: MisuseError = LocalProtocolError,
) -> int:
    """``value`` as a port: an ``int`` in 1-65535 (0 too with ``zero``, for "pick one")."""
    low = 0 if zero else 1
    if not _is_integer(value):
        raise error(f"{name} must be an int in {low}-65535, not {value!r}")
    assert isinstance(value, int)
    if not low <= value <= 65535:
        raise error(f"{name} {value} out of range {low}-65535")
    return value


def check_count(value: object, name: str, *, error: MisuseError = LocalProtocolError) -> int:
    """``value`` as a number of things: an ``int`` of at least 1."""
    if not _is_integer(value) or value < 1:  # type: ignore[operator]
        raise error(f"{name} must be an int of at least 1, not {value!r}")
    assert isinstance(value, int)
    return value


def check_seconds(value: object, name: str, *, error: MisuseError = LocalProtocolError) -> float:
    """``value`` as a duration: a positive, finite number of seconds."""
    if not (_is_integer(value) or isinstance(value, float)):
        raise error(f"{name} must be a number of seconds, not {value!r}")
    assert isinstance(value, int | float)
    if not 0 < value < math.inf:
        raise error(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def check_bytes(
    value: object, name: str = "data", *, error: MisuseError = LocalProtocolError
) -> None:
    """``value`` must be bytes (``bytes``, ``bytearray`` or ``memoryview``), not text."""
    if not isinstance(value, bytes | bytearray | memoryview):
        hint = " (encode text first, e.g. text.encode())" if isinstance(value, str) else ""
        raise error(f"{name} must be bytes, not {type(value).__name__}{hint}")


def check_text(value: object, name: str, *, error: MisuseError = LocalProtocolError) -> str:
    """``value`` must be a non-empty ``str`` (a host name or IP literal, a username)."""
    if not isinstance(value, str):
        raise error(f"{name} must be a str, not {value!r}")
    if not value:
        raise error(f"{name} must not be empty")
    return value


def check_address(
    value: object, name: str = "peer", *, error: MisuseError = LocalProtocolError
) -> Address:
    """``value`` as a transport address: an :class:`Address` or a ``(host, port)`` pair of an IP
    literal and an ``int`` port in 0-65535, normalised (not a ``"host:port"`` string)."""
    if not (isinstance(value, tuple) and len(value) == 2):
        raise error(f"{name} must be an Address(host, port) of an IP literal, not {value!r}")
    host, port = value
    if not isinstance(host, str):
        raise error(f"{name}: the host must be an IP literal str, not {host!r}")
    check_port(port, f"{name}: the port", zero=True, error=error)
    try:
        return make_address(host, port)
    except LocalProtocolError as exc:
        raise error(f"{name}: {exc}") from None
