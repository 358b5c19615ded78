"""When the controlling agent nominates, and the valid list it chooses from (RFC 8445 §8.1.1).

Regular nomination, with no fixed waits per candidate type: for each component, the controlling
agent nominates its best valid pair as soon as no pair of higher priority can still be expected to
succeed — every better pair has been checked and had a few round trips of the valid pair to answer
— or, at the latest, ``max_nomination_wait`` after the component's first valid pair. An unreachable
higher-priority pair (which fails only when its transaction times out) thus costs a few round trips,
not a whole transaction timeout. Nominating means checking the pair again with
USE-CANDIDATE; if that check fails, the component is open for nomination again.

The valid list of a component holds at most ``max_pairs`` pairs (a peer decides how many paths it
validates); every pair in it is also found by its path — (local base, remote address) — in O(1),
for the checks and the data that arrive on it.

A nomination is *unconfirmed* while the peer may not have acted on it: see
:meth:`NominationPolicy.nominated_by_us`.
"""

from __future__ import annotations

from stun.address import Address

from .checklist import CandidatePair, CheckList, PairState
from .config import AgentConfig

_Key = tuple[int, int]
_Path = tuple[Address, Address]

#: How many round trips of the best valid pair a better pair's first check gets to answer.
PATIENCE_RTTS = 3
#: The least time a better pair gets, whatever the round trip (clock and scheduling noise).
MIN_PATIENCE = 0.020


def _path(pair: CandidatePair) -> _Path:
    return (pair.local_base, pair.remote.address)


def _same(a: CandidatePair, b: CandidatePair) -> bool:
    return _path(a) == _path(b)


class NominationPolicy:
    """The valid list per component, and the decision to nominate."""

    __slots__ = (
        "_by_path",
        "_first_valid_at",
        "_limit",
        "_max_wait",
        "_nominating",
        "_recheck_at",
        "_unconfirmed",
        "_valid",
    )

    def __init__(self, config: AgentConfig) -> None:
        self._max_wait = config.max_nomination_wait
        self._limit = config.max_pairs
        self._valid: dict[_Key, dict[_Path, CandidatePair]] = {}
        self._by_path: dict[_Path, CandidatePair] = {}
        self._first_valid_at: dict[_Key, float] = {}
        self._nominating: dict[_Key, CandidatePair] = {}
        self._recheck_at: dict[_Key, float] = {}
        self._unconfirmed: dict[_Key, CandidatePair] = {}

    def pair_valid(self, pair: CandidatePair, now: float) -> bool:
        """Add a pair to the valid list (§7.2.5.3.2). ``False`` when the list is full: it holds
        ``max_pairs`` pairs and none of lower priority that is not nominated to make room."""
        key = (pair.stream, pair.component)
        valid = self._valid.setdefault(key, {})
        path = _path(pair)
        if path not in valid:
            if len(valid) >= self._limit:
                lowest = min(
                    (p for p in valid.values() if not p.nominated),
                    key=lambda p: p.priority,
                    default=None,
                )
                if lowest is None or lowest.priority >= pair.priority:
                    return False
                self._forget(key, lowest)
            valid[path] = pair
            self._by_path[path] = pair
        self._first_valid_at.setdefault(key, now)
        return True

    def _forget(self, key: _Key, pair: CandidatePair) -> None:
        path = _path(pair)
        del self._valid[key][path]
        if self._by_path.get(path) is pair:
            del self._by_path[path]

    def valid_pairs(self, stream: int, component: int) -> list[CandidatePair]:
        """The valid list of a component, best first."""
        valid = self._valid.get((stream, component), {})
        return sorted(valid.values(), key=lambda p: p.priority, reverse=True)

    def has_valid(self, stream: int, component: int) -> bool:
        """Whether the component has a valid pair."""
        return bool(self._valid.get((stream, component)))

    def valid_on(self, local_base: Address, remote: Address) -> CandidatePair | None:
        """The valid pair that sends from ``local_base`` to ``remote``, if any."""
        return self._by_path.get((local_base, remote))

    @property
    def size(self) -> int:
        """How many valid pairs are kept, over every component."""
        return len(self._by_path)

    @property
    def deadline(self) -> float | None:
        """When the nomination decision of some component must be taken again."""
        if not self._first_valid_at or self._first_valid_at.keys() <= self._nominating.keys():
            return None  # no valid pair yet, or every component with one is nominated
        waiting = [
            min(at + self._max_wait, self._recheck_at.get(key, at + self._max_wait))
            for key, at in self._first_valid_at.items()
            if key not in self._nominating and self._valid.get(key)
        ]
        return min(waiting, default=None)

    def choose(self, checklist: CheckList, component: int, now: float) -> CandidatePair | None:
        """The valid pair to nominate now for this component, or ``None`` (not yet, or done).

        A higher-priority pair still deserves waiting for while it has not been checked yet, or
        while its first check is younger than ``PATIENCE_RTTS`` round trips of the best valid
        pair (at least ``MIN_PATIENCE``): a path that works answers in about that time. Never
        longer than ``max_nomination_wait`` after the first valid pair.
        """
        key = (checklist.stream, component)
        valid = self._valid.get(key)
        if key in self._nominating or not valid:
            return None
        best = max(valid.values(), key=lambda p: p.priority)
        cap = self._first_valid_at[key] + self._max_wait
        if now < cap:
            patience = max(PATIENCE_RTTS * (best.last_rtt or 0.0), MIN_PATIENCE)
            promising = [
                p.first_check_at + patience if p.first_check_at is not None else cap
                for p in checklist
                if p.component == component
                and p.priority > best.priority
                and p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
                and not p.waits_for_peer  # a passive TCP pair: its checks come from elsewhere
            ]
            if promising and now < min(max(promising), cap):
                self._recheck_at[key] = min(max(promising), cap)
                return None
        self._nominating[key] = best
        return best

    def wants_use_candidate(self, pair: CandidatePair, controlling: bool) -> bool:
        """Whether a check of ``pair`` is the nomination check (carries USE-CANDIDATE)."""
        nominee = self._nominating.get((pair.stream, pair.component))
        return controlling and nominee is not None and _same(nominee, pair)

    def concluded(self, pair: CandidatePair) -> None:
        """The component has a nominated pair: nothing more to decide for it."""
        self._nominating.setdefault((pair.stream, pair.component), pair)

    def forget(self, local_base: Address, remote: Address | None = None) -> None:
        """A local candidate is lost (or, with ``remote``, the TCP connection of one path): its
        valid pairs go, and a component whose nominee was on it may be nominated again."""

        def gone(pair: CandidatePair) -> bool:
            return pair.local_base == local_base and remote in (None, pair.remote.address)

        for key, valid in self._valid.items():
            for pair in [p for p in valid.values() if gone(p)]:
                self._forget(key, pair)
        for table in (self._nominating, self._unconfirmed):
            for key, pair in list(table.items()):
                if gone(pair):
                    del table[key]

    def nomination_failed(self, pair: CandidatePair) -> None:
        """The USE-CANDIDATE check timed out: the component may be nominated again."""
        key = (pair.stream, pair.component)
        nominee = self._nominating.get(key)
        if nominee is not None and _same(nominee, pair):
            del self._nominating[key]
            known = self._valid.get(key, {}).get(_path(pair))
            if known is not None:
                self._forget(key, known)

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
        key = (pair.stream, pair.component)
        if confirmed:
            self._unconfirmed.pop(key, None)
        else:
            self._unconfirmed[key] = pair

    def unconfirmed(self, pair: CandidatePair) -> bool:
        """Whether ``pair`` is our nomination and the peer may not have acted on it yet."""
        return self._unconfirmed.get((pair.stream, pair.component)) is pair

    def unconfirmed_pairs(self) -> list[CandidatePair]:
        return list(self._unconfirmed.values())

    def confirm(self, pair: CandidatePair) -> None:
        """The peer showed it selected ``pair``: stop repeating USE-CANDIDATE on it."""
        key = (pair.stream, pair.component)
        if self._unconfirmed.get(key) is pair:
            del self._unconfirmed[key]


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
