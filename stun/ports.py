"""asyncio layer: binding sockets inside a port range, for hosts whose firewall opens a few ports
only (``Connection(port_range=(50000, 50100))``, ``TurnClient.connect(..., port_range=...)``).

A socket asked to bind inside ``(lo, hi)`` tries each port of the range once, starting from a
random one (so that processes sharing a range do not all race for its first port, as pion's
``listenUDPInPortRange`` does) and walking up, wrapping around. A port in use is skipped; when
every port is taken the bind fails with :class:`PortRangeExhausted`, an :class:`OSError`
(``EADDRINUSE``) whose message names the range, the transport and the host. Any other error of
``bind`` (no such address, permission) is raised as it comes: another port would not help.
"""

from __future__ import annotations

import errno
import random
import socket

from .errors import LocalProtocolError

__all__ = ["PortRange", "PortRangeExhausted", "bind_in_range", "check_port_range"]

#: The first and last port a socket may bind, inclusive.
PortRange = tuple[int, int]

_random = random.SystemRandom()


class PortRangeExhausted(OSError):
    """Every port of a port range is in use on that host (``errno`` is ``EADDRINUSE``)."""


def check_port_range(
    value: object, name: str = "port_range", *, error: type[Exception] = LocalProtocolError
) -> PortRange | None:
    """``value`` as a port range — ``None`` (ephemeral ports) or ``(lo, hi)`` with
    ``1 <= lo <= hi <= 65535`` — or ``error`` (a package's ``LocalProtocolError``) naming
    ``name``."""
    if value is None:
        return None
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(type(port) is int for port in value)
    ):
        raise error(f"{name}: a (first, last) pair of ports, not {value!r}")
    low, high = value
    if not 1 <= low <= high <= 65535:
        raise error(f"{name}: ports 1-65535 with first <= last, not {low}-{high}")
    return low, high


def describe(port_range: PortRange) -> str:
    """The range as people write it: ``50000-50100``."""
    return f"{port_range[0]}-{port_range[1]}"


def bind_in_range(
    sock: socket.socket, host: str, port_range: PortRange | None, *, avoid: int = 0
) -> None:
    """Bind ``sock`` to ``host`` on an ephemeral port (``port_range`` ``None``), or on a free port
    of ``port_range`` other than ``avoid`` (module docstring); raises
    :class:`PortRangeExhausted` when there is none."""
    if port_range is None:
        sock.bind((host, 0))
        return
    low, high = port_range
    size = high - low + 1
    start = _random.randrange(size)
    for step in range(size):
        port = low + (start + step) % size
        if port == avoid:
            continue
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return
    kind = "UDP" if sock.type == socket.SOCK_DGRAM else "TCP"
    raise PortRangeExhausted(
        errno.EADDRINUSE,
        f"no free {kind} port on {host} in port range {describe(port_range)}: "
        f"all {size} in use (widen the range or close other sessions)",
    )
