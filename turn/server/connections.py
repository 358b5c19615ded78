"""TCP relays (RFC 6062): the peer connections of TCP allocations, and the commands and
notifications that pass between the sans-IO core and the driver that owns the TCP sockets.

Theory of operation. A TCP allocation (an Allocate with REQUESTED-TRANSPORT TCP over a TCP or TLS
control connection, RFC 6062 §5.1) has a relayed transport address on which the driver accepts TCP
connections from peers (:class:`TcpListeners`). Each peer connection has a CONNECTION-ID and
moves through :class:`ConnectionState`::

    Connect (§5.2) ─▶ CONNECTING ──connected──▶ PENDING ──ConnectionBind (§5.4)──▶ BOUND
                        │ failed, timed out       │ no ConnectionBind       │ either side closed,
                        ▼ (447)                   ▼ within 30 s            ▼ or the allocation gone
                      forgotten                 closed                   closed
    a peer connects to the relayed address (§5.3) ─▶ PENDING, with a ConnectionAttempt indication

The core (:class:`turn.server.TurnServerCore`) decides: which requests succeed, which peers may
connect (permissions, peer policy), which CONNECTION-ID names what, and when a connection times
out. The driver owns every TCP socket. Between them:

* **core → driver**, :class:`TcpCommand`\\ s drained with ``TurnServerCore.tcp_commands()``:
  :class:`OpenPeerConnection` (connect from the relayed address to the peer, then report),
  :class:`SpliceConnection` (the client stream of a 5-tuple stops carrying STUN and carries the
  peer connection's bytes both ways, from right after the ConnectionBind success response), and
  :class:`ClosePeerConnection` (close the peer connection and the client data connection spliced
  to it, if any; closing what is already closed does nothing).
* **driver → core**, plain methods of the core: ``peer_connected(id, now)``,
  ``peer_connect_failed(id, now)``, ``peer_connection_arrived(relay, peer, now)`` (returns the new
  CONNECTION-ID, or ``None``: close the connection at once), ``peer_connection_closed(id, now)``,
  ``connection_closed(five_tuple)`` for every client stream that closes (a control connection's
  close deletes its allocation; a data connection's closes its peer connection), and
  ``stream_relayed(id, size, to_peer, now)`` for the bandwidth limit on spliced bytes.
* **Listeners**: :class:`TcpListeners`, called synchronously like the
  :class:`~turn.server.RelayAllocator`, starts and stops accepting on a relayed address.

The driver does not read a peer connection before it is bound: until then the peer's bytes wait in
the kernel, whose TCP window tells the peer how much room is left (the buffering of §5.2, §5.3).

:class:`ConnectionTable` is the bookkeeping: connections by CONNECTION-ID, by allocation, by
allocation and peer, and by client data connection (every lookup one dict access), at most
``max_per_allocation`` per allocation (so at most that many CONNECTION-IDs are pending per
allocation), one lazy timer heap for the deadlines.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from stun import Address, RandomSource

from .allocation import Allocation, FiveTuple

if TYPE_CHECKING:
    from .methods import AuthenticatedRequest


class TcpListeners(Protocol):
    """Starts and stops accepting TCP connections on relayed transport addresses (RFC 6062 §5.1:
    "the server MUST start accepting incoming TCP connections on the relayed transport address").

    ``listen`` is called with an address the :class:`~turn.server.RelayAllocator` just handed out
    for a TCP allocation; it returns ``False`` if it cannot listen there (the core then tries
    another address). ``stop_listening`` is called when that allocation is deleted. Each accepted
    connection is reported with ``TurnServerCore.peer_connection_arrived``.
    """

    def listen(self, relay: Address) -> bool: ...

    def stop_listening(self, relay: Address) -> None: ...


class ConnectionState(enum.Enum):
    """Where a peer connection is in its life (see the module docstring)."""

    CONNECTING = "the server is connecting to the peer for a Connect request (§5.2)"
    PENDING = "connected, waiting for the client's ConnectionBind (§5.2, §5.3)"
    BOUND = "spliced to a client data connection (§5.4)"


@dataclass(frozen=True, slots=True)
class TcpCommand:
    """Base class of what the core asks the driver to do with TCP connections."""

    connection_id: int


@dataclass(frozen=True, slots=True)
class OpenPeerConnection(TcpCommand):
    """Connect from ``relay`` (the relayed transport address, RFC 6062 §5.2) to ``peer``; report
    ``peer_connected`` or ``peer_connect_failed``. Do not read the connection until spliced."""

    relay: Address
    peer: Address


@dataclass(frozen=True, slots=True)
class SpliceConnection(TcpCommand):
    """The client stream of ``client`` is now the client data connection of the peer connection
    (§5.4): bytes go as-is both ways, the peer's buffered ones first."""

    client: FiveTuple


@dataclass(frozen=True, slots=True)
class ClosePeerConnection(TcpCommand):
    """Close the peer connection (or abandon connecting) and its client data connection."""


class PeerConnection:
    """One peer TCP connection of a TCP allocation. Read it; the core changes it."""

    __slots__ = ("allocation", "data", "deadline", "id", "peer", "request", "state", "timer")

    def __init__(
        self,
        connection_id: int,
        allocation: Allocation,
        peer: Address,
        state: ConnectionState,
        deadline: float,
        request: AuthenticatedRequest | None,
    ) -> None:
        #: The CONNECTION-ID (RFC 6062 §6.2.1).
        self.id = connection_id
        self.allocation = allocation
        self.peer = peer
        self.state = state
        #: When it times out in its state (connecting, or waiting for ConnectionBind); ``inf``
        #: once bound, as a bound connection lasts as long as both sides and the allocation.
        self.deadline = deadline
        #: The Connect request to answer when the connection succeeds or fails (§5.2).
        self.request = request
        #: The 5-tuple of the client data connection, once bound.
        self.data: FiveTuple | None = None
        #: The sequence number of its live entry in the timer heap.
        self.timer = -1

    def __repr__(self) -> str:
        return f"PeerConnection({self.id:#010x}, {self.peer}, {self.state.name})"


class ConnectionTable:
    """Every peer connection of every TCP allocation, and their deadlines (one lazy heap, as in
    :class:`~turn.server.AllocationTable`: an entry whose connection is gone or was timed again
    is skipped, and the heap is rebuilt when stale entries outnumber live ones)."""

    def __init__(self, rng: RandomSource, *, max_per_allocation: int) -> None:
        self.rng = rng
        self.max_per_allocation = max_per_allocation
        self._by_id: dict[int, PeerConnection] = {}
        self._by_allocation: dict[FiveTuple, dict[int, PeerConnection]] = {}
        self._by_peer: dict[tuple[FiveTuple, Address], PeerConnection] = {}
        self._by_data: dict[FiveTuple, PeerConnection] = {}
        self._timers: list[tuple[float, int, PeerConnection]] = []
        self._sequence = itertools.count()
        #: What the driver must do, in order (drained by ``TurnServerCore.tcp_commands``).
        self.commands: list[TcpCommand] = []

    def __len__(self) -> int:
        return len(self._by_id)

    # ------------------------------------------------------------------ lookups

    def get(self, connection_id: int) -> PeerConnection | None:
        """The connection a CONNECTION-ID names."""
        return self._by_id.get(connection_id)

    def by_data(self, five_tuple: FiveTuple) -> PeerConnection | None:
        """The connection a client data connection is spliced to."""
        return self._by_data.get(five_tuple)

    def of(self, allocation: Allocation) -> list[PeerConnection]:
        """The connections of an allocation."""
        return list(self._by_allocation.get(allocation.five_tuple, {}).values())

    def count(self, allocation: Allocation) -> int:
        """How many connections an allocation has, in any state."""
        return len(self._by_allocation.get(allocation.five_tuple, ()))

    def to_peer(self, allocation: Allocation, peer: Address) -> PeerConnection | None:
        """The allocation's connection with ``peer`` (connecting, pending or bound), if any."""
        return self._by_peer.get((allocation.five_tuple, peer))

    def count_in(self, state: ConnectionState) -> int:
        """How many connections are in ``state``."""
        return sum(1 for connection in self._by_id.values() if connection.state is state)

    @property
    def pending_timers(self) -> int:
        """Entries in the timer heap, stale ones included (bounded by the live ones)."""
        return len(self._timers)

    # ------------------------------------------------------------------ changes

    def open(
        self,
        allocation: Allocation,
        peer: Address,
        state: ConnectionState,
        deadline: float,
        request: AuthenticatedRequest | None = None,
    ) -> PeerConnection:
        """Record a new connection under a fresh CONNECTION-ID (random, so not guessable)."""
        connection_id = self.rng.getrandbits(32)
        while connection_id == 0 or connection_id in self._by_id:
            connection_id = self.rng.getrandbits(32)
        connection = PeerConnection(connection_id, allocation, peer, state, deadline, request)
        self._by_id[connection_id] = connection
        self._by_allocation.setdefault(allocation.five_tuple, {})[connection_id] = connection
        self._by_peer.setdefault((allocation.five_tuple, peer), connection)
        self._schedule(connection)
        return connection

    def advance(self, connection: PeerConnection, state: ConnectionState, deadline: float) -> None:
        """Move a connection to ``state`` with a new deadline."""
        connection.state = state
        connection.deadline = deadline
        connection.timer = -1
        if deadline != math.inf:
            self._schedule(connection)

    def bind(self, connection: PeerConnection, data: FiveTuple) -> None:
        """Splice a pending connection to the client data connection ``data``."""
        connection.data = data
        connection.request = None
        self._by_data[data] = connection
        self.advance(connection, ConnectionState.BOUND, math.inf)

    def forget(self, connection: PeerConnection) -> None:
        """Remove a connection from every index (forgetting one already gone does nothing)."""
        if self._by_id.pop(connection.id, None) is None:
            return
        key = connection.allocation.five_tuple
        of_allocation = self._by_allocation[key]
        del of_allocation[connection.id]
        if not of_allocation:
            del self._by_allocation[key]
        by_peer = (key, connection.peer)
        if self._by_peer.get(by_peer) is connection:
            # A peer that connected twice from one address: the other connection stands for it.
            other = next((c for c in of_allocation.values() if c.peer == connection.peer), None)
            if other is None:
                del self._by_peer[by_peer]
            else:
                self._by_peer[by_peer] = other
        if connection.data is not None:
            del self._by_data[connection.data]

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """The earliest deadline of a connecting or pending connection."""
        timers = self._timers
        while timers and self._is_stale(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def due(self, now: float) -> list[PeerConnection]:
        """The connections whose deadline has come, taken off the heap."""
        timers = self._timers
        due = []
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if not self._is_stale(entry):
                due.append(entry[2])
        return due

    def _schedule(self, connection: PeerConnection) -> None:
        timers = self._timers
        connection.timer = next(self._sequence)
        heapq.heappush(timers, (connection.deadline, connection.timer, connection))
        if len(timers) > 2 * len(self._by_id) + 64:
            self._timers = [entry for entry in timers if not self._is_stale(entry)]
            heapq.heapify(self._timers)

    def _is_stale(self, entry: tuple[float, int, PeerConnection]) -> bool:
        _, sequence, connection = entry
        return self._by_id.get(connection.id) is not connection or connection.timer != sequence
