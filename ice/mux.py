"""The shared-port demultiplexer (sans-IO): which ICE session a datagram that arrived on a port
serving many sessions belongs to — pion's UDPMux, mediasoup's WebRtcServer, done as a table.

Theory of operation. Every session on the port registers its local ufrag (RFC 8445 §5.3). A
datagram is routed in this order:

1. A STUN Binding request (first byte 0-3, RFC 7983; the magic cookie; class request) goes by
   the first half of its USERNAME, ``<our ufrag>:<peer's ufrag>`` (§7.2.2), to the session that
   owns that ufrag — so two sessions checked from the same remote address are told apart, and a
   session that restarted (new ufrag, :meth:`MuxTable.rename`) or a peer on a new address is
   found again. The source address is then bound to that session.
2. A STUN response (success or error, RFC 8489 §6.3) goes by its transaction ID to the session
   whose request it answers (:meth:`MuxTable.sent` notes the ID of every request a session
   sends: its checks, consent, STUN and TURN servers' transactions) — so that when several
   sessions check one remote address (two muxes talking to each other, two sessions of one
   peer), each gets the answers to its own checks. The ID is forgotten at its first answer.
3. Anything else — data, indications, an answer whose ID is forgotten — goes by its source
   address: one a session's checks came from or one it sent to.
4. Everything else is dropped and counted by :class:`DropReason`: a request whose ufrag no
   session owns, one without USERNAME, bytes that are not STUN from an unknown address.

The mux routes; it does not authenticate. The session's agent still checks MESSAGE-INTEGRITY and
delivers data only from a valid pair (:mod:`ice.base_sockets`), so a datagram routed to the wrong
session is dropped there. What a peer can grow is bounded: sessions by ``max_sessions``
(:meth:`MuxTable.register` refuses more, :class:`MuxFull`), ufrags at two per session (the
current generation and the one before a restart), addresses by ``max_addresses`` per session
(the oldest forgotten first), transaction IDs awaiting an answer by ``max_transactions`` (the
oldest forgotten first: its answer, if it ever comes, goes by address). Every lookup is one
dict access. A session that closes
(:meth:`MuxTable.unregister`) releases its ufrags and addresses at once.

One remote address is bound to one session at a time: data (not STUN) from an address that checks
two sessions goes to the one it checked last, as in pion's mux.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stun.address import Address

from .errors import LocalProtocolError

__all__ = ["DropReason", "MuxConfig", "MuxFull", "MuxTable", "request_ufrag"]

Session = TypeVar("Session", bound=Hashable)

_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
_USERNAME = 0x0006
#: Most bytes of a USERNAME (RFC 8489 §14.3: under 513).
_MAX_USERNAME = 513


class MuxFull(LocalProtocolError):
    """The mux serves ``max_sessions`` sessions already: a new one is refused."""


class DropReason(enum.Enum):
    """Why the mux dropped a datagram (its metrics' label)."""

    UNKNOWN_UFRAG = "unknown-ufrag"
    NO_USERNAME = "no-username"
    UNKNOWN_SOURCE = "unknown-source"


@dataclass(frozen=True, kw_only=True, slots=True)
class MuxConfig:
    """The bounds of one mux's tables."""

    #: Sessions served at once; :meth:`MuxTable.register` refuses more.
    max_sessions: int = 10_000
    #: Remote addresses bound to one session (its peer's candidates, servers): the oldest goes.
    max_addresses: int = 16
    #: Transaction IDs of requests sent and not yet answered, all sessions together: the
    #: oldest goes. Four per session of the default cap: a session has a check or two in
    #: flight at a time once its pacing is over (RFC 8445 §6.1.4.2), one consent check.
    max_transactions: int = 40_000

    def __post_init__(self) -> None:
        if min(self.max_sessions, self.max_addresses, self.max_transactions) < 1:
            raise LocalProtocolError(
                "max_sessions, max_addresses and max_transactions must be at least 1"
            )


def request_ufrag(data: bytes) -> str | None:
    """The first half of a STUN Binding request's USERNAME (the receiver's ufrag, RFC 8445
    §7.2.2); ``""`` for a request without USERNAME; ``None`` for anything else. Reads the
    attribute headers only, each bounded by the message length; never raises."""
    if len(data) < 20 or data[0] > 3 or data[4:8] != _MAGIC_COOKIE:
        return None
    if data[0] != 0 or data[1] != 1:  # class request, method Binding (RFC 8489 §5)
        return None
    end = min(len(data), 20 + ((data[2] << 8) | data[3]))
    offset = 20
    while offset + 4 <= end:
        kind = (data[offset] << 8) | data[offset + 1]
        length = (data[offset + 2] << 8) | data[offset + 3]
        if kind == _USERNAME:
            if length > _MAX_USERNAME or offset + 4 + length > end:
                return ""
            value = data[offset + 4 : offset + 4 + length]
            head = value.split(b":", 1)[0]
            try:
                return head.decode()
            except UnicodeDecodeError:
                return ""
        offset += 4 + ((length + 3) & ~3)
    return ""


@dataclass(slots=True)
class _Entry:
    ufrags: list[str] = field(default_factory=list)
    addresses: dict[Address, None] = field(default_factory=dict)
    #: Its transaction IDs in the table's ``_by_transaction`` (to release them with it).
    transactions: dict[bytes, None] = field(default_factory=dict)


class MuxTable(Generic[Session]):
    """The sessions of one shared port and the routing of its datagrams (module docstring)."""

    __slots__ = (
        "_by_address",
        "_by_transaction",
        "_by_ufrag",
        "_entries",
        "config",
        "dropped",
        "routed",
    )

    def __init__(self, config: MuxConfig | None = None) -> None:
        self.config = config or MuxConfig()
        self._by_ufrag: dict[str, Session] = {}
        self._by_address: dict[Address, Session] = {}
        #: Requests sent and not answered yet, oldest first: their transaction ID's session.
        self._by_transaction: dict[bytes, Session] = {}
        self._entries: dict[Session, _Entry] = {}
        #: Datagrams routed to a session.
        self.routed = 0
        #: Datagrams dropped, by reason.
        self.dropped: Counter[DropReason] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session: object) -> bool:
        return session in self._entries

    @property
    def addresses(self) -> int:
        """Remote addresses bound to sessions now."""
        return len(self._by_address)

    @property
    def transactions(self) -> int:
        """Transaction IDs of requests sent that wait for their answer now."""
        return len(self._by_transaction)

    def register(self, session: Session, ufrag: str) -> None:
        """Serve ``session``, whose local ufrag is ``ufrag``; :class:`MuxFull` past
        ``max_sessions``, :class:`~ice.LocalProtocolError` for a ufrag another session owns."""
        if session in self._entries:
            raise LocalProtocolError("this session is on the mux already")
        if len(self._entries) >= self.config.max_sessions:
            raise MuxFull(
                f"the mux serves max_sessions ({self.config.max_sessions}) sessions already"
            )
        self._claim(ufrag)
        self._entries[session] = _Entry([ufrag])
        self._by_ufrag[ufrag] = session

    def rename(self, session: Session, ufrag: str) -> None:
        """The session's new ufrag after an ICE restart (RFC 8445 §9); the one before stays
        routed too until the next restart, for checks of the old generation still in flight."""
        entry = self._entries[session]
        if ufrag in entry.ufrags:
            return
        self._claim(ufrag)
        entry.ufrags.append(ufrag)
        self._by_ufrag[ufrag] = session
        while len(entry.ufrags) > 2:
            del self._by_ufrag[entry.ufrags.pop(0)]

    def _claim(self, ufrag: str) -> None:
        if ufrag in self._by_ufrag:
            raise LocalProtocolError(f"ufrag {ufrag!r} is another session's on this mux")

    def unregister(self, session: Session) -> None:
        """Stop serving ``session``: its ufrags and addresses are released at once."""
        entry = self._entries.pop(session, None)
        if entry is None:
            return
        for ufrag in entry.ufrags:
            del self._by_ufrag[ufrag]
        for address in entry.addresses:
            if self._by_address.get(address) is session:
                del self._by_address[address]
        for transaction_id in entry.transactions:
            del self._by_transaction[transaction_id]

    def session_of(self, ufrag: str) -> Session | None:
        """The session that owns ``ufrag`` (the current one or the one before a restart)."""
        return self._by_ufrag.get(ufrag)

    def sent(self, session: Session, remote: Address, data: bytes) -> None:
        """``session`` sent ``data`` to ``remote``: what comes back from there is its, and so is
        the answer to ``data`` if it is a STUN request."""
        if self._by_address.get(remote) is not session:
            self._bind(session, remote)
        # a request: first two bits and the class bits C1 (0x01 of byte 0) and C0 (0x10 of
        # byte 1) zero (RFC 8489 §5), and the magic cookie
        is_request = len(data) >= 20 and not data[0] & 0xC1 and not data[1] & 0x10
        if is_request and data[4:8] == _MAGIC_COOKIE:
            self._remember(session, data[8:20])

    def _remember(self, session: Session, transaction_id: bytes) -> None:
        transactions = self._by_transaction
        entry = self._entries.get(session)
        if entry is None or transaction_id in transactions:  # a retransmission keeps its place
            return
        transactions[transaction_id] = session
        entry.transactions[transaction_id] = None
        if len(transactions) > self.config.max_transactions:
            oldest = next(iter(transactions))
            owner = self._entries.get(transactions.pop(oldest))
            if owner is not None:
                owner.transactions.pop(oldest, None)

    def route(self, data: bytes, remote: Address) -> Session | None:
        """The session ``data`` from ``remote`` belongs to, or ``None`` (dropped, counted)."""
        if data and data[0] < 2:
            if data[0] == 1 and len(data) >= 20:  # a response (C1 set): by transaction ID
                transaction_id = data[8:20]
                session = self._by_transaction.pop(transaction_id, None)
                if session is not None:
                    self._entries[session].transactions.pop(transaction_id, None)
                    self.routed += 1
                    return session
            ufrag = request_ufrag(data)
            if ufrag is not None:
                session = self._by_ufrag.get(ufrag)
                if session is None:
                    reason = DropReason.UNKNOWN_UFRAG if ufrag else DropReason.NO_USERNAME
                    self.dropped[reason] += 1
                    return None
                if self._by_address.get(remote) is not session:
                    self._bind(session, remote)
                self.routed += 1
                return session
        session = self._by_address.get(remote)
        if session is None:
            self.dropped[DropReason.UNKNOWN_SOURCE] += 1
            return None
        self.routed += 1
        return session

    def _bind(self, session: Session, remote: Address) -> None:
        entry = self._entries.get(session)
        if entry is None:
            return
        previous = self._by_address.get(remote)
        if previous is not None:
            other = self._entries.get(previous)
            if other is not None:
                other.addresses.pop(remote, None)
        self._by_address[remote] = session
        entry.addresses[remote] = None
        if len(entry.addresses) > self.config.max_addresses:
            oldest = next(iter(entry.addresses))
            del entry.addresses[oldest]
            if self._by_address.get(oldest) is session:
                del self._by_address[oldest]
