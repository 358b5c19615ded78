"""When the controlling agent nominates, and the valid list it chooses from (RFC 8445 §8.1.1).

Regular nomination, with no fixed waits per candidate type: for each component, the controlling
agent nominates its best valid pair as soon as no pair of higher priority can still be expected to
succeed — every better pair has been checked and had a few round trips of the valid pair to answer
— or, at the latest, ``max_nomination_wait`` after the component's first valid pair. An unreachable
higher-priority pair (which fails only when its transaction times out) thus costs a few round trips,
not a whole transaction timeout. Nominating means checking the pair again with
USE-CANDIDATE; if that check fails, the component is open for nomination again.

The valid list of a component holds at most ``max_pairs`` pairs (a peer decides how many paths it
validates); every pair in it is also found by its path — (local base, remote address) — in
bounded time, for the checks and the data that arrive on it: by a look through the few valid
pairs a session usually has, by a table once they are more.

A nomination is *unconfirmed* while the peer may not have acted on it: see
:meth:`NominationPolicy.nominated_by_us`.
"""

from __future__ import annotations

import functools

from stun.address import Address

from .checklist import FEW_PAIRS, CandidatePair, CheckList, PairState
from .config import AgentConfig

_Key = tuple[int, int]
_Path = tuple[Address, Address]

#: How many round trips of the best valid pair a better pair's first check gets to answer.
PATIENCE_RTTS = 3
#: The least time a better pair gets, whatever the round trip (clock and scheduling noise).
MIN_PATIENCE = 0.020
#: The states of a pair whose check may still succeed.
_UNDECIDED = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)


def _path(pair: CandidatePair) -> _Path:
    return (pair.local_base, pair.remote.address)


def _same(a: CandidatePair, b: CandidatePair) -> bool:
    return _path(a) == _path(b)


@functools.lru_cache(maxsize=64)
def component_keys(streams: tuple[int, ...]) -> tuple[_Key, ...]:
    """Every (stream, component) of a session with ``streams`` (components per stream): one
    immutable tuple shared by every agent of the same shape, not a list of tuples each."""
    return tuple(
        (stream, component)
        for stream, components in enumerate(streams)
        for component in range(1, components + 1)
    )


@functools.lru_cache(maxsize=64)
def _component_index(streams: tuple[int, ...]) -> dict[_Key, int]:
    """Where each (stream, component) is in :func:`component_keys`: shared like it."""
    return {key: index for index, key in enumerate(component_keys(streams))}


class _Component:
    """What nomination knows of one component: one record instead of a table per fact keyed by
    component (a one-entry dict takes ~220 bytes, a slot 8)."""

    __slots__ = ("first_valid_at", "nominating", "recheck_at", "unconfirmed", "valid")

    def __init__(self) -> None:
        #: How many pairs the valid list holds (they are in the policy's one table by path).
        self.valid = 0
        #: When the first pair became valid (set with the first valid pair).
        self.first_valid_at: float | None = None
        #: The pair being nominated, or concluded (nothing more to decide).
        self.nominating: CandidatePair | None = None
        #: When :meth:`NominationPolicy.choose` wants to look again, if it chose to wait.
        self.recheck_at: float | None = None
        #: Our nomination, while the peer may not have acted on it.
        self.unconfirmed: CandidatePair | None = None


class NominationPolicy:
    """The valid list per component, and the decision to nominate."""

    __slots__ = ("_by_path", "_components", "_index", "_limit", "_max_wait", "_valid", "deciding")

    def __init__(self, config: AgentConfig) -> None:
        self._max_wait = config.max_nomination_wait
        self._limit = config.max_pairs
        #: The record of each component, in the order of :func:`component_keys` (a tuple made
        #: once: the components are fixed by the config), found through the shared index.
        self._index = _component_index(config.streams)
        self._components = tuple(_Component() for _ in self._index)
        #: The valid pairs of every component, one per path (a path belongs to one component:
        #: its local base's), and, once there are more than :data:`~ice.checklist.FEW_PAIRS`,
        #: a table of them by path (until then :meth:`valid_on` looks through them: a
        #: one-entry dict takes 224 bytes, a one-item tuple 48).
        self._valid: tuple[CandidatePair, ...] = ()
        self._by_path: dict[_Path, CandidatePair] | None = None
        #: How many components have a valid pair and no nominee: those :meth:`choose` may
        #: nominate. Asked after every datagram and timer, where the usual answer, none, ends
        #: the question without a call (kept by every change of a component's record).
        self.deciding = 0

    def _component(self, pair: CandidatePair) -> _Component:
        """The record of ``pair``'s component (every pair is of a component of the session:
        a remote candidate of another is refused when signalled)."""
        return self._components[self._index[pair.stream, pair.component]]

    def pair_valid(self, pair: CandidatePair, now: float) -> bool:
        """Add a pair to the valid list (§7.2.5.3.2). ``False`` when the list is full: it holds
        ``max_pairs`` pairs and none of lower priority that is not nominated to make room."""
        component = self._components[self._index[pair.stream, pair.component]]
        local_base, remote = pair.local_base, pair.remote.address
        table = self._by_path
        if table is None:
            for other in self._valid:  # valid_on, without the call (at every success)
                if other.local_base == local_base and other.remote.address == remote:
                    break
            else:
                other = None
        else:
            other = table.get((local_base, remote))
        if other is None:
            if component.valid >= self._limit:
                lowest = min(
                    (p for p in self._valid_of(pair.stream, pair.component) if not p.nominated),
                    key=lambda p: p.priority,
                    default=None,
                )
                if lowest is None or lowest.priority >= pair.priority:
                    return False
                self._forget(component, lowest)
            self._valid += (pair,)
            if table is not None:
                table[local_base, remote] = pair
            elif len(self._valid) > FEW_PAIRS:
                self._by_path = {_path(p): p for p in self._valid}
            component.valid += 1
            if component.valid == 1 and component.nominating is None:
                self.deciding += 1
        if component.first_valid_at is None:
            component.first_valid_at = now
        return True

    def _forget(self, component: _Component, pair: CandidatePair) -> None:
        self._valid = tuple(p for p in self._valid if p is not pair)
        if self._by_path is not None:
            del self._by_path[_path(pair)]
        component.valid -= 1
        if not component.valid and component.nominating is None:
            self.deciding -= 1

    def _nominee(self, component: _Component, pair: CandidatePair | None) -> None:
        """Set (or, with ``None``, clear) the nominee of ``component``, keeping :attr:`deciding`."""
        if component.valid and (component.nominating is None) != (pair is None):
            self.deciding += 1 if pair is None else -1
        component.nominating = pair

    def _valid_of(self, stream: int, component: int) -> list[CandidatePair]:
        """The valid list of a component: one table for all, since one component is the rule
        (a one-entry dict per component would take ~220 bytes more)."""
        return [p for p in self._valid if p.stream == stream and p.component == component]

    def valid_pairs(self, stream: int, component: int) -> list[CandidatePair]:
        """The valid list of a component, best first."""
        valid = self._valid_of(stream, component)
        return sorted(valid, key=lambda p: p.priority, reverse=True)

    def has_valid(self, stream: int, component: int) -> bool:
        """Whether the component has a valid pair."""
        return self._components[self._index[stream, component]].valid > 0

    def valid_on(self, local_base: Address, remote: Address) -> CandidatePair | None:
        """The valid pair that sends from ``local_base`` to ``remote``, if any."""
        table = self._by_path
        if table is not None:
            return table.get((local_base, remote))
        for pair in self._valid:
            if pair.local_base == local_base and pair.remote.address == remote:
                return pair
        return None

    @property
    def size(self) -> int:
        """How many valid pairs are kept, over every component."""
        return len(self._valid)

    @property
    def deadline(self) -> float | None:
        """When the nomination decision of some component must be taken again."""
        deadline = None
        if not self.deciding:
            return None
        for component in self._components:  # usually one
            at = component.first_valid_at
            if component.nominating is None and component.valid and at is not None:
                due = at + self._max_wait
                recheck = component.recheck_at
                if recheck is not None and recheck < due:
                    due = recheck
                if deadline is None or due < deadline:
                    deadline = due
        return deadline

    def choose(self, checklist: CheckList, component: int, now: float) -> CandidatePair | None:
        """The valid pair to nominate now for this component, or ``None`` (not yet, or done).

        A higher-priority pair still deserves waiting for while it has not been checked yet, or
        while its first check is younger than ``PATIENCE_RTTS`` round trips of the best valid
        pair (at least ``MIN_PATIENCE``): a path that works answers in about that time. Never
        longer than ``max_nomination_wait`` after the first valid pair.
        """
        stream = checklist.stream
        record = self._components[self._index[stream, component]]
        if record.nominating is not None or not record.valid:
            return None  # asked after every datagram: the usual answer costs no further call
        assert record.first_valid_at is not None  # set with the first valid pair
        best: CandidatePair | None = None  # the first of the highest priority, as max() gives
        for pair in self._valid:
            if (
                pair.stream == stream
                and pair.component == component
                and (best is None or pair.priority > best.priority)
            ):
                best = pair
        assert best is not None  # record.valid counts the component's pairs in the table
        cap = record.first_valid_at + self._max_wait
        if now < cap:
            patience = PATIENCE_RTTS * (best.last_rtt or 0.0)
            if patience < MIN_PATIENCE:
                patience = MIN_PATIENCE
            latest = None  # when the last better pair still checked has had its patience
            for pair in checklist.pairs:
                if (
                    pair.component == component
                    and pair.priority > best.priority
                    and pair.state in _UNDECIDED
                    and not pair.waits_for_peer  # passive TCP: its checks come from elsewhere
                ):
                    at = cap if pair.first_check_at is None else pair.first_check_at + patience
                    if latest is None or at > latest:
                        latest = at
            if latest is not None and now < min(latest, cap):
                record.recheck_at = min(latest, cap)
                return None
        record.nominating = best
        self.deciding -= 1  # the record had a valid pair and no nominee
        return best

    def wants_use_candidate(self, pair: CandidatePair, controlling: bool) -> bool:
        """Whether a check of ``pair`` is the nomination check (carries USE-CANDIDATE)."""
        if not controlling:
            return False
        nominee = self._component(pair).nominating
        return nominee is not None and _same(nominee, pair)

    def concluded(self, pair: CandidatePair) -> None:
        """The component has a nominated pair: nothing more to decide for it."""
        record = self._components[self._index[pair.stream, pair.component]]  # at every nomination
        if record.nominating is None:
            self._nominee(record, pair)

    def forget(self, local_base: Address, remote: Address | None = None) -> None:
        """A local candidate is lost (or, with ``remote``, the TCP connection of one path): its
        valid pairs go, and a component whose nominee was on it may be nominated again."""

        def gone(pair: CandidatePair | None) -> bool:
            return (
                pair is not None
                and pair.local_base == local_base
                and remote in (None, pair.remote.address)
            )

        for pair in [p for p in self._valid if gone(p)]:
            self._forget(self._component(pair), pair)
        for component in self._components:
            if gone(component.nominating):
                self._nominee(component, None)
            if gone(component.unconfirmed):
                component.unconfirmed = None

    def nomination_failed(self, pair: CandidatePair) -> None:
        """The USE-CANDIDATE check timed out: the component may be nominated again."""
        record = self._component(pair)
        nominee = record.nominating
        if nominee is not None and _same(nominee, pair):
            self._nominee(record, None)
            known = self.valid_on(*_path(pair))
            if known is not None:
                self._forget(record, known)

    def nominated_by_us(self, pair: CandidatePair, *, confirmed: bool) -> None:
        """Our USE-CANDIDATE check of ``pair`` succeeded (§8.1.1); ``confirmed`` says whether
        the peer is known to have acted on it.

        RFC 8445 §8.1.1 makes the pair nominated once the USE-CANDIDATE check succeeds, and
        §7.3.1.5 obliges the controlled agent to act on it or refuse it with an error. Deployed
        agents do not always: one that receives our check before it has our credentials (our
        answer is still in signalling) answers it with a 200 — its own password is enough for
        that — then forgets the request, never sets the nominated flag, and, once controlled,
        waits for a nomination forever. A success proves the peer acted on USE-CANDIDATE only
        if the peer had our credentials when the check reached it, which we know when one of
        its authenticated checks (signed with our password) arrived before we sent ours.

        So until then the nomination is unconfirmed: as libwebrtc does, every later check of
        the selected pair — the consent checks of RFC 7675 included — carries USE-CANDIDATE
        again, and the first authenticated check from the peer makes the agent send one at
        once. This stays within §8.1.1: it is the same pair, nominated once and never another
        for the component; a conforming peer treats the repetition as the no-op §7.3.1.5
        describes (the pair is nominated already). A USE-CANDIDATE check answered after the
        peer proved it has our credentials, or the peer's data on the pair (it sends data only
        on the pair it selected), confirms the nomination and ends the repetition.
        """
        self._component(pair).unconfirmed = None if confirmed else pair

    def unconfirmed(self, pair: CandidatePair) -> bool:
        """Whether ``pair`` is our nomination and the peer may not have acted on it yet."""
        return self._component(pair).unconfirmed is pair

    def unconfirmed_pairs(self) -> list[CandidatePair]:
        pairs = []
        for component in self._components:  # a loop, not a comprehension: one call less
            if component.unconfirmed is not None:
                pairs.append(component.unconfirmed)
        return pairs

    def confirm(self, pair: CandidatePair) -> None:
        """The peer showed it selected ``pair``: stop repeating USE-CANDIDATE on it."""
        record = self._component(pair)
        if record.unconfirmed is pair:
            record.unconfirmed = None


def replaces_selected(
    current: CandidatePair | None, nominated: CandidatePair, *, suspended: bool
) -> bool:
    """Whether a pair just nominated replaces ``current`` as the selected pair of its component
    (docs/ice.md, "Nomination with agents that bend the rules").

    The highest-priority nominated pair is selected (RFC 8445 §8.1.1), and a pair kept through an
    ICE restart (``suspended``) gives way to any nomination of the new generation (§9). But a peer
    that nominates aggressively (USE-CANDIDATE on every check, RFC 5245 §8.1.1.2) and keeps the
    first pair it nominated would be left on another pair than ours when a later candidate gives
    a better nominated pair: so a selected pair that carries data stays selected, and the
    controlled agent follows the peer's data instead (its data arrives on the pair it selected).
    """
    if current is None or not current.nominated or suspended:
        return True
    carrying_data = current.bytes_sent > 0 or current.bytes_received > 0
    return nominated.priority > current.priority and not carrying_data
