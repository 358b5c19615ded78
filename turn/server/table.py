"""Every allocation a TURN server holds, the ports it reserved, and when each expires.

:class:`AllocationTable` is the bookkeeping under :class:`turn.server.TurnServerCore`: it finds an
allocation by 5-tuple or by relayed address, counts allocations per user for the quota, asks the
:class:`~turn.server.RelayAllocator` for relayed addresses and gives them back, holds the ports
reserved by EVEN-PORT's R bit under their RESERVATION-TOKENs (RFC 8656 §7.2), and keeps one timer
per allocation (at its expiry) and per reservation in a heap. The core decides what is allowed;
the table only does what it is told, and reports creations and deletions as events.

Timers are lazy: refreshing an allocation to a later expiry leaves its heap entry in place; when
the entry comes due, the allocation is found alive and timed again. An entry whose allocation was
deleted, or that a shorter lifetime superseded, is stale and skipped; the heap is rebuilt when
stale entries outnumber live ones, so it stays in proportion to the table.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stun import Address, AddressFamily, LocalProtocolError, RandomSource
from stun.address import family_of
from stun.limits import TokenBucket
from stun.randomness import random_bytes

from ..attributes import TransportProtocol
from .allocation import Allocation, FiveTuple
from .events import AllocationCreated, AllocationDeleted, DeletionReason, TurnServerEvent
from .relays import RelayAllocator

#: Events waiting to be drained are capped; the oldest are dropped beyond this.
MAX_PENDING_EVENTS = 4096
#: The largest UDP payload: a bandwidth bucket always holds at least one datagram's worth.
_MAX_UDP_PAYLOAD = 65535


@dataclass(frozen=True, slots=True)
class Reservation:
    """A port held for the Allocate that presents its RESERVATION-TOKEN (RFC 8656 §7.2)."""

    address: Address
    expires_at: float


_TimerKey = Allocation | bytes


class AllocationTable:
    """The allocations and reservations of one server, their relayed addresses and timers."""

    def __init__(
        self,
        relays: RelayAllocator,
        *,
        rebind_wait: float,
        on_delete: Callable[[Allocation, DeletionReason], None] | None = None,
    ) -> None:
        self.relays = relays
        self.rebind_wait = rebind_wait
        #: Called with every allocation deleted and why, after its relayed addresses are released.
        self.on_delete = on_delete
        #: Hosts of this server's relayed and listening addresses: never valid peers.
        self.own_hosts: set[str] = set()
        self.events: deque[TurnServerEvent] = deque(maxlen=MAX_PENDING_EVENTS)
        #: The allocations by 5-tuple and by relayed address (read them; the table changes
        #: them). A plain ``(client, server, transport)`` tuple finds the same entry as its
        #: :class:`FiveTuple`: the relay's lean path looks up with what a socket gives it.
        self.by_five_tuple: dict[FiveTuple, Allocation] = {}
        self.by_relayed: dict[Address, Allocation] = {}
        self._per_user: dict[str, int] = {}
        self._reservations: dict[bytes, Reservation] = {}
        self._reserved: set[Address] = set()
        self._timers: list[tuple[float, int, _TimerKey]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self.by_five_tuple)

    def __iter__(self) -> Iterator[Allocation]:
        return iter(list(self.by_five_tuple.values()))

    # ------------------------------------------------------------------ lookups

    def get(self, five_tuple: FiveTuple, now: float) -> Allocation | None:
        """The 5-tuple's allocation, deleted first if it expired before its timer fired."""
        allocation = self.by_five_tuple.get(five_tuple)
        if allocation is not None and allocation.expires_at <= now:
            self.delete(allocation, DeletionReason.EXPIRED)
            return None
        return allocation

    def peek(self, five_tuple: FiveTuple) -> Allocation | None:
        """The 5-tuple's allocation as it stands, expired or not."""
        return self.by_five_tuple.get(five_tuple)

    def by_relay(self, address: Address) -> Allocation | None:
        """The allocation a relayed address belongs to."""
        return self.by_relayed.get(address)

    def is_reserved(self, address: Address) -> bool:
        """Whether ``address`` is a port held for a RESERVATION-TOKEN."""
        return address in self._reserved

    def user_count(self, username: str) -> int:
        """How many allocations ``username`` holds (for the quota, RFC 8656 §7.2)."""
        return self._per_user.get(username, 0)

    @property
    def reservation_count(self) -> int:
        """How many ports are held for RESERVATION-TOKENs."""
        return len(self._reservations)

    @property
    def pending_timers(self) -> int:
        """Entries in the timer heap, stale ones included (bounded by the live ones)."""
        return len(self._timers)

    # ------------------------------------------------------------------ allocations

    def new_relay(
        self, family: AddressFamily, *, even_port: bool = False, reserve_next: bool = False
    ) -> Address | None:
        """A fresh relayed address from the allocator, or ``None`` if it has none."""
        relay = self.relays.allocate_relay(family, even_port=even_port, reserve_next=reserve_next)
        if relay is None:
            return None
        if relay in self.by_relayed or relay in self._reserved or family_of(relay) != family:
            raise LocalProtocolError(f"the relay allocator handed out {relay} wrongly")
        self.own_hosts.add(relay.host)
        return relay

    def create(
        self,
        five_tuple: FiveTuple,
        *,
        username: str,
        relays: dict[AddressFamily, Address],
        transaction_id: bytes,
        now: float,
        lifetime: float,
        max_bytes_per_second: int | None,
        relay_transport: TransportProtocol = TransportProtocol.UDP,
    ) -> Allocation:
        """Record a new allocation, time it, and report it."""
        rate = max_bytes_per_second
        burst = max(rate or 0, _MAX_UDP_PAYLOAD)
        allocation = Allocation(
            five_tuple,
            username=username,
            relays=relays,
            expires_at=now + lifetime,
            transaction_id=transaction_id,
            to_peer=TokenBucket(rate, burst, now) if rate else None,
            to_client=TokenBucket(rate, burst, now) if rate else None,
            relay_transport=relay_transport,
        )
        self.by_five_tuple[five_tuple] = allocation
        for relay in relays.values():
            self.by_relayed[relay] = allocation
        self._per_user[username] = self._per_user.get(username, 0) + 1
        self.own_hosts.add(five_tuple.server.host)
        self._schedule(allocation.expires_at, allocation)
        self.events.append(
            AllocationCreated(five_tuple, username, allocation.relayed_addresses, lifetime)
        )
        return allocation

    def refresh(self, allocation: Allocation, expires_at: float) -> None:
        """Set a new expiry (RFC 8656 §8.2); a nearer one is timed at once."""
        allocation.expires_at = expires_at
        if expires_at < allocation.timer_at:
            allocation.timer_at = expires_at
            self._schedule(expires_at, allocation)

    def delete(self, allocation: Allocation, reason: DeletionReason) -> None:
        """Remove an allocation, release its relayed addresses, and report it."""
        five_tuple = allocation.five_tuple
        relayed = allocation.relayed_addresses
        del self.by_five_tuple[five_tuple]
        for relay in relayed:
            del self.by_relayed[relay]
            self.relays.release_relay(relay)
        username = allocation.username
        remaining = self._per_user[username] - 1
        if remaining:
            self._per_user[username] = remaining
        else:
            del self._per_user[username]
        if self.on_delete is not None:
            self.on_delete(allocation, reason)
        self.events.append(AllocationDeleted(five_tuple, username, relayed, reason))

    def delete_family(self, allocation: Allocation, family: AddressFamily) -> None:
        """Take one family's relayed address from a dual allocation and release it."""
        if len(allocation.relays) < 2:
            raise LocalProtocolError("only a dual allocation can lose one family")
        relay = allocation.forget_family(family)
        del self.by_relayed[relay]
        self.relays.release_relay(relay)

    # ------------------------------------------------------------------ reservations

    def reserve(self, relay: Address, now: float, lifetime: float, rng: RandomSource) -> bytes:
        """Hold the port after ``relay`` (the allocator bound it) under a fresh token."""
        token = random_bytes(rng, 8)
        while token in self._reservations:
            token = random_bytes(rng, 8)
        address = Address(relay.host, relay.port + 1)
        reservation = Reservation(address, now + lifetime)
        self._reservations[token] = reservation
        self._reserved.add(address)
        self._schedule(reservation.expires_at, token)
        return token

    def reservation(self, token: bytes, now: float) -> Reservation | None:
        """The reservation a token names, if it is still held."""
        reservation = self._reservations.get(token)
        if reservation is None or reservation.expires_at <= now:
            return None
        return reservation

    def claim(self, token: bytes) -> Address:
        """Take the reserved address for a new allocation; the token is spent."""
        reservation = self._reservations.pop(token)
        self._reserved.discard(reservation.address)
        return reservation.address

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """When the next allocation or reservation expires."""
        timers = self._timers
        while timers and self._is_stale(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> None:
        """Delete allocations that expired, sweep the others, release unclaimed reservations."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if self._is_stale(entry):
                continue
            key = entry[2]
            if isinstance(key, bytes):
                self.relays.release_relay(self.claim(key))
            elif key.expires_at <= now:
                self.delete(key, DeletionReason.EXPIRED)
            else:
                key.sweep(now, self.rebind_wait)
                key.timer_at = key.expires_at
                self._schedule(key.expires_at, key)

    def _schedule(self, deadline: float, key: _TimerKey) -> None:
        timers = self._timers
        heapq.heappush(timers, (deadline, next(self._sequence), key))
        if len(timers) > 2 * (len(self.by_five_tuple) + len(self._reservations)) + 64:
            self._timers = [entry for entry in timers if not self._is_stale(entry)]
            heapq.heapify(self._timers)

    def _is_stale(self, entry: tuple[float, int, _TimerKey]) -> bool:
        """Whether a timer entry no longer stands for anything (deleted, or superseded)."""
        deadline, _, key = entry
        if isinstance(key, bytes):
            reservation = self._reservations.get(key)
            return reservation is None or reservation.expires_at != deadline
        return self.by_five_tuple.get(key.five_tuple) is not key or key.timer_at != deadline
