"""The TCP side of the shared-port demultiplexer (sans-IO): which ICE session a TCP connection
accepted on a listening port shared by many sessions belongs to — pion's TCPMux, as a table.

Theory of operation. Passive ICE-TCP candidates (RFC 6544 §4.5) of every session on the mux share
one listening port. A connection accepted there is *unowned* (:meth:`TcpMuxTable.accepted`)
until its first RFC 4571 frame (RFC 6544 §3) is complete: that frame must be a STUN Binding
request, and the first half of its USERNAME, the receiver's ufrag (RFC 8445 §7.2.2), names the
session — looked up in the same :class:`~ice.mux.MuxTable` the UDP side routes by. The
connection is then :class:`Routed` to that session with every byte received so far, the first
frame first; from there on it is the session's, exactly as a connection accepted on a listening
socket of its own (the session's agent authenticates the request, bounds its own connections
with ``max_tcp_connections`` and owns their life). Otherwise it is :class:`Dropped`, counted by
:class:`TcpDropReason`, and the driver closes it: a frame that is not a Binding request or
announces more than :data:`~ice.tcp.FIRST_FRAME_LIMIT` bytes, a request without USERNAME, a ufrag
no session owns, a connection silent past ``first_request_timeout`` (:meth:`TcpMuxTable.
handle_timer`), the oldest unowned connection when ``max_unowned`` are waiting already.

What a peer can grow is bounded: unowned connections by ``max_unowned`` (the oldest evicted), the
bytes held for each by one first frame — a read past that decides at once. Every lookup is one
dict access, and so is the next deadline: connections wait in the order they were accepted, all
for the same time, so the oldest is the first due.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import LocalProtocolError
from .mux import MuxTable, request_ufrag
from .tcp import FIRST_FRAME_LIMIT

__all__ = ["Dropped", "Routed", "TcpDropReason", "TcpMuxConfig", "TcpMuxTable"]

Session = TypeVar("Session", bound=Hashable)
#: How the driver knows a connection (its socket, a number).
Key = TypeVar("Key", bound=Hashable)

#: The smallest STUN message (RFC 8489 §5: the header).
_STUN_HEADER = 20


class TcpDropReason(enum.Enum):
    """Why the mux closed a TCP connection before any session had it (its metrics' label)."""

    UNKNOWN_UFRAG = "unknown-ufrag"
    NO_USERNAME = "no-username"
    #: The first frame is no STUN Binding request (or announces more than a check needs).
    NOT_STUN = "not-stun"
    #: Nothing complete arrived within ``first_request_timeout``.
    SILENT = "silent"
    #: ``max_unowned`` connections were waiting: the oldest went.
    EVICTED = "evicted"
    #: ``max_unowned_per_source`` connections from its source were waiting: it was closed at
    #: once (one host cannot push everyone else's waiting connections out).
    SOURCE_LIMIT = "source-limit"
    #: The peer closed it before its first request was complete.
    CLOSED = "closed"
    #: The session it was routed to did not take it (its ``max_tcp_connections``, or closing).
    REFUSED = "refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class TcpMuxConfig:
    """The bounds of a mux's TCP side."""

    #: Connections accepted and waiting for their first request; the oldest goes past this.
    max_unowned: int = 256
    #: Of those, how many may come from one source (an IPv4 address, an IPv6 /64): half, so
    #: that one host cannot push every other waiting connection out, while many clients behind
    #: one NAT can still connect at once.
    max_unowned_per_source: int = 128
    #: How long an accepted connection may take to send its first request (seconds).
    first_request_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_unowned < 1:
            raise LocalProtocolError("max_unowned must be at least 1")
        if self.max_unowned_per_source < 1:
            raise LocalProtocolError("max_unowned_per_source must be at least 1")
        if not self.first_request_timeout > 0:
            raise LocalProtocolError("first_request_timeout must be positive")


@dataclass(frozen=True, slots=True)
class Routed(Generic[Session]):
    """The connection is ``session``'s from now on: hand it ``data``, every byte received."""

    session: Session
    data: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    """Close the connection (counted under ``reason``)."""

    reason: TcpDropReason


class _Waiting:
    __slots__ = ("buffer", "deadline", "source")

    def __init__(self, deadline: float, source: Hashable) -> None:
        self.buffer = bytearray()
        self.deadline = deadline
        self.source = source


class TcpMuxTable(Generic[Key, Session]):
    """The unowned connections of one shared listening port (module docstring); ``sessions``
    is the mux's table, which owns the ufrags."""

    __slots__ = (
        "_by_source", "_waiting", "accepted_count", "config", "dropped", "routed", "sessions",
    )  # fmt: skip

    def __init__(self, sessions: MuxTable[Session], config: TcpMuxConfig | None = None) -> None:
        self.sessions = sessions
        self.config = config or TcpMuxConfig()
        self._waiting: dict[Key, _Waiting] = {}
        #: How many of them each source has (sources with none are not kept).
        self._by_source: Counter[Hashable] = Counter()
        #: Connections accepted.
        self.accepted_count = 0
        #: Connections routed to a session.
        self.routed = 0
        #: Connections closed before a session had them, by reason.
        self.dropped: Counter[TcpDropReason] = Counter()

    def __len__(self) -> int:
        """Connections waiting for their first request now."""
        return len(self._waiting)

    def __contains__(self, key: object) -> bool:
        return key in self._waiting

    def accepted(self, key: Key, now: float, source: Hashable = None) -> Key | None:
        """A connection from ``source`` (see :func:`stun.limits.source_key`) was accepted: it
        waits for its first request. Returns the connection to close, if any: this one, when
        its source has ``max_unowned_per_source`` waiting already; else the oldest waiting
        one, past ``max_unowned``."""
        if key in self._waiting:
            raise LocalProtocolError(f"connection {key!r} is waiting already")
        self.accepted_count += 1
        if self._by_source[source] >= self.config.max_unowned_per_source:
            self.dropped[TcpDropReason.SOURCE_LIMIT] += 1
            return key
        evicted = None
        if len(self._waiting) >= self.config.max_unowned:
            evicted = next(iter(self._waiting))
            self._drop(evicted, TcpDropReason.EVICTED)
        self._waiting[key] = _Waiting(now + self.config.first_request_timeout, source)
        self._by_source[source] += 1
        return evicted

    def received(self, key: Key, data: bytes) -> Routed[Session] | Dropped | None:
        """Bytes arrived on a waiting connection: ``None`` while its first frame is incomplete,
        else where it goes. Never raises on what a peer sends; a connection that is not waiting
        (routed or dropped already) gets ``None``."""
        waiting = self._waiting.get(key)
        if waiting is None:
            return None
        buffer = waiting.buffer
        buffer += data
        if len(buffer) < 2:
            return None
        length = (buffer[0] << 8) | buffer[1]
        if not _STUN_HEADER <= length <= FIRST_FRAME_LIMIT:
            return self._drop(key, TcpDropReason.NOT_STUN)
        if len(buffer) < 2 + length:
            return None
        ufrag = request_ufrag(bytes(buffer[2 : 2 + length]))
        if ufrag is None:
            return self._drop(key, TcpDropReason.NOT_STUN)
        if not ufrag:
            return self._drop(key, TcpDropReason.NO_USERNAME)
        session = self.sessions.session_of(ufrag)
        if session is None:
            return self._drop(key, TcpDropReason.UNKNOWN_UFRAG)
        self._forget(key)
        self.routed += 1
        return Routed(session, bytes(buffer))

    def refused(self) -> None:
        """The session a connection was just routed to did not take it: the driver closes it
        (counted as dropped, not routed: ``accepted_count`` is always routed + dropped +
        waiting)."""
        self.routed -= 1
        self.dropped[TcpDropReason.REFUSED] += 1

    def closed(self, key: Key) -> None:
        """A waiting connection was closed by its peer (or failed): forgotten, counted."""
        if key in self._waiting:
            self._drop(key, TcpDropReason.CLOSED)

    def get_timer(self) -> float | None:
        """When the oldest waiting connection is due (:meth:`handle_timer`)."""
        for waiting in self._waiting.values():
            return waiting.deadline
        return None

    def handle_timer(self, now: float) -> list[Key]:
        """The waiting connections that were silent too long: dropped, to be closed."""
        due = []
        for key, waiting in self._waiting.items():
            if waiting.deadline > now:
                break
            due.append(key)
        for key in due:
            self._drop(key, TcpDropReason.SILENT)
        return due

    def _drop(self, key: Key, reason: TcpDropReason) -> Dropped:
        self._forget(key)
        self.dropped[reason] += 1
        return Dropped(reason)

    def _forget(self, key: Key) -> None:
        source = self._waiting.pop(key).source
        left = self._by_source[source] - 1
        if left:
            self._by_source[source] = left
        else:
            del self._by_source[source]
