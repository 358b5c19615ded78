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

Deadlines far ahead are coalesced. One set at least :data:`LAZY_AFTER` ahead of the caller's
``now`` — a consent check (RFC 7675 §5.1: every 4-6 s, randomized), consent's expiry, the
release of unused bases, a late retransmission — may fire up to :data:`LAZY_SLACK` after it,
together with the others due by then: such deadlines sit in a second heap, and the loop's one
timer is armed for the earliest of the precise heap's first deadline and the lazy heap's first
deadline plus the slack. Every wake-up also fires the lazy deadlines already past. An
established session wakes the process only for them, and thousands of sessions would each take
a wake-up of their own for every consent check — an ``epoll_wait``, a loop iteration and cold
caches for a couple of datagrams; coalesced, a wake-up serves every session due within the
slack (at most 5 % of such a deadline's distance). Deadlines closer than that — pacing (Ta,
RFC 8445 §6.1.4.2) and the first retransmissions — keep their time.
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

#: A deadline at least this far (s) ahead of its caller's ``now`` may fire late, coalesced with
#: others (module docstring).
LAZY_AFTER = 1.0
#: How late (s) such a deadline may fire.
LAZY_SLACK = 0.05


#: ``[place, sequence, owner, deadline, lazy]``: compared as a list by its place in its heap (the
#: sequence is unique, so the owner never is); ``deadline`` is later than ``place`` when the owner
#: moved it later since; ``lazy``: in the heap of deadlines that may fire late. The owner slot is
#: cleared when the owner moves its deadline earlier or cancels it.
TimerEntry = list[Any]


class TimerOwner(Protocol):
    """What the shared timer calls back: a connection, with its one current heap entry."""

    _timer_entry: TimerEntry | None

    def _on_timer(self, deadline: float) -> None: ...


class SharedTimers:
    """The deadlines of every connection of one event loop, behind one ``loop.call_at``."""

    __slots__ = (
        "__weakref__",
        "_armed_at",
        "_handle",
        "_heap",
        "_lazy",
        "_live",
        "_loop",
        "_sequence",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Weak: the loop keys this in ``_BY_LOOP``, whose values must not keep their keys.
        self._loop = weakref.ref(loop)
        #: The deadlines that fire on time, and those that may fire late (module docstring).
        self._heap: list[TimerEntry] = []
        self._lazy: list[TimerEntry] = []
        #: The last entry's sequence number (each new entry takes the next).
        self._sequence = 0
        #: How many owners have a deadline now (the heaps' live entries).
        self._live = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None

    def schedule(self, owner: TimerOwner, deadline: float | None, now: float | None = None) -> None:
        """Call ``owner._on_timer(deadline)`` at ``deadline``, instead of what it asked before
        (``None``: nothing). Given the loop's ``now``, a deadline :data:`LAZY_AFTER` or more
        ahead may fire up to :data:`LAZY_SLACK` late (module docstring)."""
        entry = owner._timer_entry
        was_first = False
        if entry is not None:
            heap = self._lazy if entry[4] else self._heap
            was_first = entry is heap[0]
            if deadline is not None and deadline >= entry[0] and not was_first:
                entry[3] = deadline  # later: moved there when it comes up (module docstring)
                return
            entry[2] = None  # stale from now on, and no longer holding the owner
            self._live -= 1
        if deadline is None:
            owner._timer_entry = None
            wake = None
        else:
            self._live += 1
            self._sequence = sequence = self._sequence + 1  # _entry, without a call
            if now is not None and deadline - now >= LAZY_AFTER:
                owner._timer_entry = entry = [deadline, sequence, owner, deadline, True]
                heapq.heappush(self._lazy, entry)
                wake = deadline + LAZY_SLACK
            else:
                owner._timer_entry = entry = [deadline, sequence, owner, deadline, False]
                heapq.heappush(self._heap, entry)
                wake = deadline
        if len(self._heap) + len(self._lazy) > 2 * self._live + 64:
            self._sweep()
        elif not was_first:
            armed = self._armed_at
            if wake is None or (armed is not None and wake >= armed):
                return  # the armed wake-up is still the earliest one (the usual case)
        self._arm()

    def _sweep(self) -> None:
        """Drop the stale entries: they outnumber the live ones."""
        self._heap = _live_only(self._heap)
        self._lazy = _live_only(self._lazy)

    def _entry(self, owner: TimerOwner, deadline: float, lazy: bool) -> TimerEntry:
        """A new entry of ``owner`` for ``deadline``, now its current one."""
        self._sequence = sequence = self._sequence + 1
        owner._timer_entry = entry = [deadline, sequence, owner, deadline, lazy]
        return entry

    def _moved(self, heap: list[TimerEntry], entry: TimerEntry) -> None:
        """``entry``, first in ``heap``, was moved later: to its deadline's place now — with
        the far deadlines if it was one, or if it moved LAZY_AFTER or more beyond its old place
        (about now). Never the other way: :meth:`_arm` and :meth:`_fire` read the precise heap
        first, and nothing they move may land before what they have read."""
        owner, deadline = entry[2], entry[3]
        lazy = entry[4] or deadline - entry[0] >= LAZY_AFTER
        if lazy == entry[4]:
            heapq.heapreplace(heap, self._entry(owner, deadline, lazy))
        else:
            heapq.heappop(heap)
            heapq.heappush(self._lazy if lazy else self._heap, self._entry(owner, deadline, lazy))

    def _first(self, heap: list[TimerEntry]) -> float | None:
        """The first live deadline of ``heap``, stale entries before it dropped."""
        while heap:
            entry = heap[0]
            if entry[2] is None:  # a cancelled deadline wakes nothing
                heapq.heappop(heap)
            elif entry[3] != entry[0]:
                self._moved(heap, entry)
            else:
                return float(entry[0])
        return None

    def _arm(self) -> None:
        first = self._first(self._heap)
        lazy = self._first(self._lazy)
        if lazy is not None and (first is None or lazy + LAZY_SLACK < first):
            first = lazy + LAZY_SLACK
        if first == self._armed_at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = first
        loop = self._loop()
        self._handle = None if first is None or loop is None else loop.call_at(first, self._fire)

    def _due(self, heap: list[TimerEntry], cutoff: float, due: list[TimerEntry]) -> None:
        """Move ``heap``'s entries due by ``cutoff`` to ``due``."""
        while heap and heap[0][0] <= cutoff:
            entry = heap[0]
            owner = entry[2]
            if owner is None:
                heapq.heappop(heap)
            elif entry[3] > cutoff:  # moved later since: not due yet
                self._moved(heap, entry)
            else:
                heapq.heappop(heap)
                owner._timer_entry = None
                self._live -= 1
                due.append(entry)

    def _fire(self) -> None:
        # Only what was due when the loop chose to run this: what fell due since (while this
        # iteration's reads ran) waits for the next iteration, after the loop has read again —
        # as a per-connection ``call_at`` would; else a late loop would spend Ta slots on checks
        # whose answers already wait in the sockets.
        assert self._armed_at is not None
        cutoff = self._armed_at + _EARLY
        self._handle = None
        self._armed_at = None
        due: list[TimerEntry] = []
        self._due(self._heap, cutoff, due)
        self._due(self._lazy, cutoff, due)
        hold_flush()  # what the owners send leaves together, below
        try:
            for _, _, owner, deadline, _ in due:
                try:
                    owner._on_timer(deadline)
                except Exception:  # a bug of one connection: the others still get their turn
                    _log.exception("ICE timer of %r failed", owner)
        finally:
            flush_pending()
        self._arm()


def _live_only(heap: list[TimerEntry]) -> list[TimerEntry]:
    """``heap`` without its stale entries, a heap again."""
    live = [entry for entry in heap if entry[2] is not None]
    heapq.heapify(live)
    return live


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
