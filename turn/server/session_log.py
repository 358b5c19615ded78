"""One log line per session event of the TURN server, for operators (coturn's ``--verbose``).

:class:`~turn.server.TurnServer` logs every :class:`~turn.server.TurnServerEvent` the core
reports on the logger ``icestack.turn.server`` at INFO: allocations made and deleted (and why),
permissions and channels granted, and requests refused with the reason and what an operator can
do about it. ``icestack serve turn -v`` shows them; a program embedding the server turns them on
with ``logging.getLogger("icestack.turn.server").setLevel(logging.INFO)`` and a handler.

A line starts with the session: the client's transport and address and the username, e.g.
``udp 198.51.100.7:40000 alice: allocated 192.0.2.1:50123 for 600 s``. Usernames and peer input
are shown with ``repr``, so a client cannot forge log lines.
"""

from __future__ import annotations

import ipaddress

from stun import Method

from .allocation import FiveTuple
from .events import (
    AllocationCreated,
    AllocationDeleted,
    ChannelGranted,
    PermissionGranted,
    RequestRefused,
    TurnServerEvent,
)
from .stats import Outcome


def _session(five_tuple: FiveTuple, username: str) -> str:
    user = repr(username) if username else "(no username)"
    return f"{five_tuple.transport.value} {five_tuple.client} {user}"


def _method(number: int) -> str:
    """``CreatePermission`` for CREATE_PERMISSION."""
    try:
        return Method(number).name.title().replace("_", "")
    except ValueError:
        return f"method 0x{number:03X}"


def _addresses(addresses: tuple[object, ...]) -> str:
    return ", ".join(str(address) for address in addresses)


def _refusal_hint(event: RequestRefused) -> str:
    """What an operator can do about a refusal, when it is their configuration that refused."""
    outcome, detail = event.outcome, event.detail or ""
    if outcome is Outcome.FORBIDDEN and detail.startswith("peer "):
        host = detail.removeprefix("peer ").partition(":")[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return "allow_loopback_peers (serve turn --allow-loopback-peers) admits loopback peers"
        return "allowed_peers (serve turn --allowed-peer-ip) admits an address or a range"
    if outcome is Outcome.QUOTA_REACHED:
        return "raise user_quota (serve turn --user-quota) to allow more"
    if outcome is Outcome.INSUFFICIENT_CAPACITY and detail.startswith("total_quota"):
        return "raise total_quota (serve turn --total-quota) to allow more"
    if outcome is Outcome.EXPIRED_CREDENTIALS:
        return "the REST API username's expiry has passed; the client needs fresh credentials"
    return ""


def _what(event: TurnServerEvent) -> str:
    if isinstance(event, AllocationCreated):
        return f"allocated {_addresses(event.relayed)} for {event.lifetime:g} s"
    if isinstance(event, AllocationDeleted):
        return f"deleted {_addresses(event.relayed)}: {event.reason.value}"
    if isinstance(event, PermissionGranted):
        return f"permission for {', '.join(event.hosts)}"
    if isinstance(event, ChannelGranted):
        return f"channel 0x{event.channel:04X} bound to {event.peer}"
    assert isinstance(event, RequestRefused)
    value = str(event.outcome.value)
    why = value.partition(": ")[2] or value  # the outcomes' texts start with their code
    detail = f" ({event.detail})" if event.detail else ""
    hint = _refusal_hint(event)
    return f"{_method(event.method)} refused {event.code}: {why}{detail}" + (
        f"; {hint}" if hint else ""
    )


#: The events :func:`describe` knows; each has a ``five_tuple`` and a ``username``.
_SESSION_EVENTS = (
    AllocationCreated, AllocationDeleted, PermissionGranted, ChannelGranted, RequestRefused
)  # fmt: skip


def describe(event: TurnServerEvent) -> str:
    """The log line of one session event."""
    if not isinstance(event, _SESSION_EVENTS):
        return repr(event)
    return f"{_session(event.five_tuple, event.username)}: {_what(event)}"
