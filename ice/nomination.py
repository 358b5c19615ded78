"""When the controlling agent nominates, and the valid list it chooses from (RFC 8445 §8.1.1).

Regular nomination, with no fixed waits per candidate type: for each component, the controlling
agent nominates its best valid pair as soon as no pair of higher priority can still be expected to
succeed — every better pair has been checked and had a few round trips of the valid pair to answer
— or, at the latest, ``max_nomination_wait`` after the component's first valid pair. An unreachable
higher-priority pair (which fails only when its transaction times out) thus costs a few round trips,
not a whole transaction timeout. Nominating means checking the pair again with
USE-CANDIDATE; if that check fails, the component is open for nomination again.
"""

from __future__ import annotations

from stun.address import Address

from .checklist import CandidatePair, CheckList, PairState
from .config import AgentConfig

_Key = tuple[int, int]

#: How many round trips of the best valid pair a better pair's first check gets to answer.
PATIENCE_RTTS = 3
#: The least time a better pair gets, whatever the round trip (clock and scheduling noise).
MIN_PATIENCE = 0.020


def _same(a: CandidatePair, b: CandidatePair) -> bool:
    return a.local_base == b.local_base and a.remote.address == b.remote.address


class NominationPolicy:
    """The valid list per component, and the decision to nominate."""

    def __init__(self, config: AgentConfig) -> None:
        self._max_wait = config.max_nomination_wait
        self._valid: dict[_Key, list[CandidatePair]] = {}
        self._first_valid_at: dict[_Key, float] = {}
        self._nominating: dict[_Key, CandidatePair] = {}
        self._recheck_at: dict[_Key, float] = {}

    def pair_valid(self, pair: CandidatePair, now: float) -> None:
        """Add a pair to the valid list (§7.2.5.3.2)."""
        key = (pair.stream, pair.component)
        valid = self._valid.setdefault(key, [])
        if not any(_same(pair, other) for other in valid):
            valid.append(pair)
            valid.sort(key=lambda p: p.priority, reverse=True)
        self._first_valid_at.setdefault(key, now)

    def valid_pairs(self, stream: int, component: int) -> list[CandidatePair]:
        """The valid list of a component, best first."""
        return list(self._valid.get((stream, component), ()))

    @property
    def deadline(self) -> float | None:
        """When the nomination decision of some component must be taken again."""
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
        best = valid[0]
        cap = self._first_valid_at[key] + self._max_wait
        if now < cap:
            patience = max(PATIENCE_RTTS * (best.last_rtt or 0.0), MIN_PATIENCE)
            promising = [
                p.first_check_at + patience if p.first_check_at is not None else cap
                for p in checklist
                if p.component == component
                and p.priority > best.priority
                and p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
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

    def forget(self, local_base: Address) -> None:
        """A local candidate is lost: its valid pairs go, and a component whose nominee was on
        it may be nominated again."""
        for key, valid in self._valid.items():
            self._valid[key] = [p for p in valid if p.local_base != local_base]
        for key, nominee in list(self._nominating.items()):
            if nominee.local_base == local_base:
                del self._nominating[key]

    def nomination_failed(self, pair: CandidatePair) -> None:
        """The USE-CANDIDATE check timed out: the component may be nominated again."""
        key = (pair.stream, pair.component)
        nominee = self._nominating.get(key)
        if nominee is not None and _same(nominee, pair):
            del self._nominating[key]
            self._valid[key] = [p for p in self._valid.get(key, []) if not _same(p, pair)]
