"""Candidate pairs and check lists (RFC 8445 §6.1.2).

Theory of operation. A :class:`CheckList` holds the pairs of one data stream, sorted by pair
priority (§6.1.2.3), at most ``max_pairs`` of them (§6.1.2.5). A pair pairs a local *base* — a host
socket, or later a relay — with a remote candidate of the same component and address family; local
server-reflexive candidates are never paired, since their base already is (§6.1.2.4). Pairs start
Frozen; :meth:`CheckList.unfreeze_initial` sets, per foundation, the lowest-component,
highest-priority pair Waiting (§6.1.2.6). A pair moves:

    Frozen → Waiting → In-Progress → Succeeded | Failed
                ↑___________|  (triggered check, role conflict: back to Waiting)

Triggered checks (§7.3.1.4) wait in a FIFO queue that the agent serves before ordinary checks.
Every lookup a datagram needs is bounded: a pair by (local base, remote address) is a dict
access once the list holds more than :data:`FEW_PAIRS` pairs, a look through them until then; a
selected pair is a look at the few selected pairs, one per component (:class:`SelectedPairs`).
Whether a check waits to be sent is asked after every datagram: the list counts its pairs we can
still check (Waiting, or Frozen and not waiting for the peer) as they change state — every state
change of a pair of the list goes through :meth:`CheckList.set_state` — so the answer is no walk
over the pairs.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from stun.address import Address

from .candidate import Candidate, TcpType, pair_priority


class PairState(enum.Enum):
    """The state of a candidate pair (RFC 8445 §6.1.2.6)."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


#: Enum members read at every state change of a pair, bound once: CPython 3.11 reads a member
#: through its class in ~0.2 µs (EnumType defines __getattr__), a module name in ~0.02 µs.
_FROZEN = PairState.FROZEN
_WAITING = PairState.WAITING
_IN_PROGRESS = PairState.IN_PROGRESS
_PASSIVE = TcpType.PASSIVE


@dataclass(eq=False, slots=True)
class CandidatePair:
    """A local base and a remote candidate, with its check state and counters.

    Identity is the object: the agent keeps exactly one pair per (local base, remote address).
    """

    local: Candidate
    #: Where checks for this pair are sent from (the local candidate's base).
    local_base: Address
    remote: Candidate
    stream: int
    priority: int
    state: PairState = PairState.FROZEN
    #: Confirmed nominated (RFC 8445 §8.1.1): usable for data once selected.
    nominated: bool = False
    #: A USE-CANDIDATE check arrived before our own check of this pair succeeded (§7.3.1.5).
    nominate_on_success: bool = False
    #: The RFC's valid list: a check that this pair produced succeeded (§7.2.5.3.2).
    valid: bool = False
    requests_sent: int = 0
    requests_received: int = 0
    responses_sent: int = 0
    responses_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt_total: float = 0.0
    rtt_count: int = 0
    last_rtt: float | None = None
    #: When this pair's first check went out (consent checks aside), for nomination patience.
    first_check_at: float | None = None
    #: What ended the last check, for the failure summary (e.g. "timeout", "401").
    failure: str | None = None
    #: The transaction ID of the pair's latest check (consent checks aside), so that a
    #: triggered check or a nomination cancels it without a search.
    transaction_id: bytes | None = None
    #: The component of both candidates (a field, not a property: read at every datagram).
    component: int = field(init=False)

    def __post_init__(self) -> None:
        self.component = self.remote.component

    @property
    def waits_for_peer(self) -> bool:
        """A Frozen pair of a passive TCP candidate (RFC 6544 §7.1): we cannot check it, only
        the peer can, by connecting; its check arrives on a pair of a peer-reflexive candidate
        with the address the connection came from, so it stays Frozen and waits for nothing of
        ours."""
        return self.state is _FROZEN and self.local.tcp_type is _PASSIVE

    @property
    def foundation(self) -> str:
        """The pair foundation: local and remote foundations together (§6.1.2.6)."""
        return f"{self.local.foundation}:{self.remote.foundation}"

    def record_rtt(self, rtt: float) -> None:
        self.rtt_total += rtt
        self.rtt_count += 1
        self.last_rtt = rtt

    def __str__(self) -> str:
        return (
            f"{self.local.type.value} {self.local_base} -> {self.remote.type.value} "
            f"{self.remote.address} [{self.state.value}{', nominated' if self.nominated else ''}]"
        )


class CheckList:
    """The candidate pairs of one data stream (RFC 8445 §6.1.2)."""

    __slots__ = (
        "_by_addresses",
        "max_pairs",
        "pairs",
        "schedulable",
        "stream",
        "triggered",
    )

    def __init__(self, stream: int, max_pairs: int) -> None:
        self.stream = stream
        self.max_pairs = max_pairs
        self.pairs: list[CandidatePair] = []
        #: The triggered check queue (§7.3.1.4), FIFO: a dict used as an ordered set, ``None``
        #: while empty (most of the time: an emptied dict keeps 224 bytes).
        self.triggered: dict[CandidatePair, None] | None = None
        #: The pairs by (local base, remote address), made once the list holds more than
        #: :data:`FEW_PAIRS` (until then :meth:`find` looks through them: a one-entry dict takes
        #: 224 bytes, and most sessions have one or two pairs).
        self._by_addresses: dict[tuple[Address, Address], CandidatePair] | None = None
        #: How many pairs of the list we can check: Waiting, or Frozen and not waiting for the
        #: peer (kept by :meth:`set_state`, :meth:`add` and eviction).
        self.schedulable = 0

    def __iter__(self) -> Iterator[CandidatePair]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def find(self, local_base: Address, remote: Address) -> CandidatePair | None:
        """The pair checking ``remote`` from ``local_base``, if any."""
        table = self._by_addresses
        if table is not None:
            return table.get((local_base, remote))
        for pair in self.pairs:  # looked through here, not by a helper: a call per datagram
            if pair.local_base == local_base and pair.remote.address == remote:
                return pair
        return None

    def add(
        self, local: Candidate, local_base: Address, remote: Candidate, controlling: bool
    ) -> CandidatePair | None:
        """Pair a local base with a remote candidate (§6.1.2.2, §6.1.2.4, §6.1.2.5).

        Returns the new pair, or ``None`` if it is redundant (the same addresses are paired
        already) or does not fit under ``max_pairs`` with a priority high enough to evict another.
        """
        if self.find(local_base, remote.address) is not None:
            return None
        priority = _priority(local, remote, controlling)
        if len(self.pairs) >= self.max_pairs:
            lowest = self.pairs[-1]
            if lowest.priority >= priority or lowest.state is not PairState.FROZEN:
                return None
            self._remove(lowest)
        pair = CandidatePair(local, local_base, remote, self.stream, priority)
        bisect.insort(self.pairs, pair, key=_descending)
        table = self._by_addresses
        if table is not None:
            table[local_base, remote.address] = pair
        elif len(self.pairs) > FEW_PAIRS:
            self._by_addresses = {(p.local_base, p.remote.address): p for p in self.pairs}
        self.schedulable += _schedulable(pair, PairState.FROZEN)
        return pair

    def drop_base(self, local_base: Address) -> None:
        """Take every pair checked from ``local_base`` out of the list: the base was released
        (RFC 8445 §8.3, :mod:`ice.release`)."""
        for pair in [p for p in self.pairs if p.local_base == local_base]:
            self._remove(pair)

    def _remove(self, pair: CandidatePair) -> None:
        self.pairs.remove(pair)
        if self._by_addresses is not None:
            del self._by_addresses[(pair.local_base, pair.remote.address)]
        self.drop_triggered(pair)
        self.schedulable -= _schedulable(pair, pair.state)

    def set_state(self, pair: CandidatePair, state: PairState) -> None:
        """Move ``pair`` to ``state`` (§6.1.2.6), keeping :attr:`schedulable`. A pair that is not
        the list's (a valid pair made for a check's mapped address, §7.2.5.3.2, or a pair of a
        list a restart replaced) just changes state."""
        previous = pair.state
        if previous is state:
            return
        pair.state = state
        # _schedulable(pair, state) - _schedulable(pair, previous), without the calls: this
        # runs at every state change of every pair
        checkable_if_frozen = pair.local.tcp_type is not _PASSIVE
        change = (state is _WAITING or (state is _FROZEN and checkable_if_frozen)) - (
            previous is _WAITING or (previous is _FROZEN and checkable_if_frozen)
        )
        if not change:
            return
        table = self._by_addresses
        if (
            pair in self.pairs  # identity: a pair has no __eq__ of its own
            if table is None
            else table.get((pair.local_base, pair.remote.address)) is pair
        ):
            self.schedulable += change

    def replace_remote(self, old: Candidate, new: Candidate, controlling: bool) -> None:
        """A remote candidate is known better now (a prflx later signalled, of the same component
        and address): pairs take it."""
        for pair in self.pairs:
            if pair.remote is old:
                pair.remote = new
                pair.priority = _priority(pair.local, new, controlling)
        self.sort()

    def sort(self) -> None:
        """Highest priority first (§6.1.2.3)."""
        self.pairs.sort(key=_descending)

    def recompute_priorities(self, controlling: bool) -> None:
        """After a role change, every pair priority changes (§7.2.5.1)."""
        for pair in self.pairs:
            pair.priority = _priority(pair.local, pair.remote, controlling)
        self.sort()

    def unfreeze_initial(self) -> list[CandidatePair]:
        """Per foundation, set the lowest-component, highest-priority pair Waiting (§6.1.2.6)."""
        # Here and below a pair foundation is the pair of foundations it is made of, neither
        # formatted (ice-chars have no colon) nor found through a property (a call per pair).
        chosen: dict[tuple[str, str], CandidatePair] = {}
        for pair in self.pairs:
            if pair.local.tcp_type is _PASSIVE and pair.state is _FROZEN:  # waits_for_peer
                continue
            foundation = (pair.local.foundation, pair.remote.foundation)
            if pair.state is not _FROZEN:
                chosen.setdefault(foundation, pair)
                continue
            best = chosen.get(foundation)
            if best is None or (pair.component, -pair.priority) < (best.component, -best.priority):
                chosen[foundation] = pair
        changed = []
        for pair in chosen.values():  # a loop, not a comprehension (which is a call)
            if pair.state is _FROZEN:
                self.set_state(pair, _WAITING)
                changed.append(pair)
        return changed

    def unfreeze_siblings(self, succeeded: CandidatePair) -> Sequence[CandidatePair]:
        """A pair succeeded: the Frozen pairs of its foundation become Waiting (§7.2.5.3.3)."""
        if not self.schedulable:
            return ()  # no Frozen pair that we can check (asked at every success): no walk
        local, remote = succeeded.local.foundation, succeeded.remote.foundation
        changed = []
        for pair in self.pairs:  # a loop, not a comprehension (which is a call)
            if (
                pair.state is _FROZEN
                and pair.local.tcp_type is not _PASSIVE  # not waits_for_peer
                and pair.local.foundation == local
                and pair.remote.foundation == remote
            ):
                changed.append(pair)
        for pair in changed:
            self.set_state(pair, _WAITING)
        return changed

    def next_ordinary(
        self, can_check: Callable[[CandidatePair], bool] = lambda pair: True
    ) -> CandidatePair | None:
        """The pair for the next ordinary check (§6.1.4.2): highest-priority Waiting, else
        unfreeze the best Frozen pair of a foundation with nothing Waiting or In-Progress.
        Pairs that ``can_check`` refuses now (a TCP pair that must wait for a connection
        attempt of its own, :mod:`ice.tcp`) and pairs that wait for the peer are passed over."""
        if not self.schedulable:
            return None  # nothing Waiting, nothing Frozen that we can check: no walk
        for pair in self.pairs:
            if pair.state is _WAITING and can_check(pair):
                return pair
        busy = {
            (p.local.foundation, p.remote.foundation)
            for p in self.pairs
            if p.state is _WAITING or p.state is _IN_PROGRESS
        }
        for pair in self.pairs:
            if (
                pair.state is _FROZEN
                and (pair.local.foundation, pair.remote.foundation) not in busy
                and pair.local.tcp_type is not _PASSIVE  # not waits_for_peer
                and can_check(pair)
            ):
                self.set_state(pair, _WAITING)
                return pair
        return None

    def enqueue_triggered(self, pair: CandidatePair) -> None:
        """Queue a triggered check for ``pair`` (once; §7.3.1.4)."""
        if self.triggered is None:
            self.triggered = {pair: None}
        else:
            self.triggered[pair] = None

    def next_triggered(self) -> CandidatePair | None:
        """Take the first pair of the triggered check queue, if any."""
        triggered = self.triggered
        if not triggered:
            return None
        for pair in triggered:  # the first (no iter() and next() calls); the loop ends here
            del triggered[pair]
            if not triggered:
                self.triggered = None
            return pair
        return None

    def drop_triggered(self, *pairs: CandidatePair) -> None:
        """Take ``pairs`` out of the triggered check queue, where they are."""
        triggered = self.triggered
        if triggered:
            for pair in pairs:
                triggered.pop(pair, None)
            if not triggered:
                self.triggered = None

    def stop_below(self, component: int, priority: int) -> list[CandidatePair]:
        """Nomination concluded a component: take its lower-priority Frozen, Waiting and
        In-Progress pairs out of the schedule (§8.1.2) and return them, so that the agent can
        cancel the checks in flight (they stop holding their foundation's place)."""
        pruned = []
        for pair in self.pairs:
            if (
                pair.component == component
                and pair.priority < priority
                and pair.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
            ):
                pruned.append(pair)
        for pair in pruned:
            self.set_state(pair, PairState.FAILED)
            pair.failure = "pruned after nomination"
        if self.triggered:
            self.drop_triggered(
                *(p for p in self.triggered if p.component == component and p.priority < priority)
            )
        return pruned


#: How many pairs a check list looks through before it keeps a table of them by path.
FEW_PAIRS = 4


class SelectedPairs:
    """The selected pair of each (stream, component), found by its key or by its path — data
    arriving on (local base, remote address) is matched to its pair — by a look through them:
    a session has few components (fixed by its config, never by a peer), each one selected
    pair, so they are a tuple (a one-item tuple takes 48 bytes, a one-entry dict 224). A pair
    is held under its own key, ``(pair.stream, pair.component)``; the mapping methods the
    agent uses are here, in the order a dict would keep."""

    __slots__ = ("_pairs",)

    def __init__(self) -> None:
        self._pairs: tuple[CandidatePair, ...] = ()

    def get(self, key: tuple[int, int], default: None = None) -> CandidatePair | None:
        """The selected pair of ``key``, if any."""
        stream, component = key
        for pair in self._pairs:
            if pair.component == component and pair.stream == stream:
                return pair
        return default

    def __getitem__(self, key: tuple[int, int]) -> CandidatePair:
        pair = self.get(key)
        if pair is None:
            raise KeyError(key)
        return pair

    def put(self, pair: CandidatePair) -> CandidatePair | None:
        """Select ``pair`` for its component; the pair it replaces, if any (one call where a
        dict takes a get and an assignment)."""
        stream, component = pair.stream, pair.component
        for current in self._pairs:
            if current.component == component and current.stream == stream:
                # in its place, as a dict keeps a key it updates
                self._pairs = tuple(pair if p is current else p for p in self._pairs)
                return current
        self._pairs += (pair,)
        return None

    def __delitem__(self, key: tuple[int, int]) -> None:
        current = self[key]
        self._pairs = tuple(p for p in self._pairs if p is not current)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(pair.stream, pair.component) for pair in self._pairs])

    def __len__(self) -> int:
        return len(self._pairs)

    def values(self) -> tuple[CandidatePair, ...]:
        """The selected pairs (a tuple: changing the selection while walking them is safe)."""
        return self._pairs

    def items(self) -> list[tuple[tuple[int, int], CandidatePair]]:
        return [((pair.stream, pair.component), pair) for pair in self._pairs]

    def on_path(self, local_base: Address, remote: Address) -> CandidatePair | None:
        """The selected pair that sends from ``local_base`` to ``remote``, if any."""
        for pair in self._pairs:
            if pair.local_base == local_base and pair.remote.address == remote:
                return pair
        return None


def _schedulable(pair: CandidatePair, state: PairState) -> int:
    """1 if a pair in ``state`` is one we can still check (:attr:`CheckList.schedulable`)."""
    if state is _WAITING:
        return 1
    return int(state is _FROZEN and pair.local.tcp_type is not _PASSIVE)


def _descending(pair: CandidatePair) -> int:
    return -pair.priority


def _priority(local: Candidate, remote: Candidate, controlling: bool) -> int:
    if controlling:
        return pair_priority(local.priority, remote.priority)
    return pair_priority(remote.priority, local.priority)
