"""asyncio layer: one timer for every :class:`~ice.aio.Connection` of an event loop.

Each connection drives its agent by one deadline (:meth:`~ice.agent.Agent.get_timer`,
architecture.md §2). Giving each its own ``loop.call_at`` costs a ``TimerHandle`` per connection
and a cancel and a new handle each time the deadline moves — several times per connectivity
check. :class:`SharedTimers` keeps the deadlines of all connections of a loop in one heap and
holds a single ``loop.call_at`` for the earliest; moving a deadline earlier is a ``heappush`` of
a new entry, and the entries it replaces are skipped when they come up (each owner holds its one
current entry). Moving it later — what most moves are: a check sent puts its retransmission
after the Ta slot that was due — only writes the new deadline into the owner's entry, which is
moved there when it comes up (unless it is the one the loop's timer is armed for: then it is
replaced at once, so the loop never wakes for nothing). Stale entries are swept out when they
outnumber the live ones, so the heap stays within a small multiple of the number of connections
waiting.

When the loop runs late, one wake-up fires the deadlines due when it was armed (and those within
half a millisecond after), not everything that fell due meanwhile: the rest fire on the next
iterations, after the loop has read its sockets again — so a herd of connections that start
checking at once interleaves its Ta slots with the answers already waiting, instead of spending
them all on checks first (what per-connection ``call_at`` handles did: each iteration ran the
timers that were due when it began, all of them).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import weakref
from typing import Any, Protocol

from stun.batch_io import flush_pending, hold_flush

_log = logging.getLogger("icestack.ice")

#: Deadlines this close ahead are due when the timer fires (the loop may wake a little early;
#: a machine called early does no harm, architecture.md §2).
_EARLY = 0.0005


#: ``[place, sequence, owner, deadline]``: compared as a list by its place in the heap (the
#: sequence is unique, so the owner never is); ``deadline`` is later than ``place`` when the owner
#: moved it later since. The owner slot is cleared when the owner moves its deadline earlier or
#: cancels it.
TimerEntry = list[Any]


class TimerOwner(Protocol):
    """What the shared timer calls back: a connection, with its one current heap entry."""

    _timer_entry: TimerEntry | None

    def _on_timer(self, deadline: float) -> None: ...


class SharedTimers:
    """The deadlines of every connection of one event loop, behind one ``loop.call_at``."""

    __slots__ = ("__weakref__", "_armed_at", "_handle", "_heap", "_live", "_loop", "_sequence")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Weak: the loop keys this in ``_BY_LOOP``, whose values must not keep their keys.
        self._loop = weakref.ref(loop)
        self._heap: list[TimerEntry] = []
        #: The last entry's sequence number (each new entry takes the next).
        self._sequence = 0
        #: How many owners have a deadline now (the heap's live entries).
        self._live = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None

    def schedule(self, owner: TimerOwner, deadline: float | None) -> None:
        """Call ``owner._on_timer(deadline)`` at ``deadline``, instead of what it asked before
        (``None``: nothing)."""
        entry = owner._timer_entry
        heap = self._heap
        if entry is not None:
            if deadline is not None and deadline >= entry[0] and entry is not heap[0]:
                entry[3] = deadline  # later: moved there when it comes up (module docstring)
                return
            entry[2] = None  # stale from now on, and no longer holding the owner
            self._live -= 1
        if deadline is None:
            owner._timer_entry = None
        else:
            self._live += 1
            self._sequence = sequence = self._sequence + 1  # _entry, without a call
            owner._timer_entry = entry = [deadline, sequence, owner, deadline]
            heapq.heappush(heap, entry)
        if len(heap) > 2 * self._live + 64:
            self._heap = heap = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(heap)
        if heap and heap[0][0] == self._armed_at and heap[0][2] is not None:
            return  # the earliest live deadline is the one armed (the usual case)
        self._arm()

    def _entry(self, owner: TimerOwner, deadline: float) -> TimerEntry:
        """A new entry of ``owner`` for ``deadline``, now its current one."""
        self._sequence = sequence = self._sequence + 1
        owner._timer_entry = entry = [deadline, sequence, owner, deadline]
        return entry

    def _arm(self) -> None:
        heap = self._heap
        while heap:
            entry = heap[0]
            owner = entry[2]
            if owner is None:  # a cancelled deadline wakes nothing
                heapq.heappop(heap)
            elif entry[3] != entry[0]:  # moved later: to its place now that it comes up
                heapq.heapreplace(heap, self._entry(owner, entry[3]))
            else:
                break
        first = heap[0][0] if heap else None
        if first == self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = first
        loop = self._loop()
        self._handle = None if first is None or loop is None else loop.call_at(first, self._fire)

    def _fire(self) -> None:
        # Only what was due when the loop chose to run this: what fell due since (while this
        # iteration's reads ran) waits for the next iteration, after the loop has read again —
        # as a per-connection ``call_at`` would; else a late loop would spend Ta slots on checks
        # whose answers already wait in the sockets.
        assert self._armed_at is not None
        cutoff = self._armed_at + _EARLY
        self._handle = None
        self._armed_at = None
        heap = self._heap
        due: list[TimerEntry] = []
        while heap and heap[0][0] <= cutoff:
            entry = heapq.heappop(heap)
            owner = entry[2]
            if owner is None:
                continue
            if entry[3] > cutoff:  # moved later since: not due yet
                heapq.heappush(heap, self._entry(owner, entry[3]))
                continue
            owner._timer_entry = None
            self._live -= 1
            due.append(entry)
        hold_flush()  # what the owners send leaves together, below
        try:
            for _, _, owner, deadline in due:
                try:
                    owner._on_timer(deadline)
                except Exception:  # a bug of one connection: the others still get their turn
                    _log.exception("ICE timer of %r failed", owner)
        finally:
            flush_pending()
        self._arm()


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedTimers]
_BY_LOOP = weakref.WeakKeyDictionary()


def shared_timers(loop: asyncio.AbstractEventLoop) -> SharedTimers:
    """The one :class:`SharedTimers` of ``loop`` (its own, for a loop that takes no weak
    reference)."""
    try:
        timers = _BY_LOOP.get(loop)
        if timers is None:
            timers = _BY_LOOP[loop] = SharedTimers(loop)
    except TypeError:
        return SharedTimers(loop)
    return timers
