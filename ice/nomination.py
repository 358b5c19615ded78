"""When the controlling agent nominates, and the valid list it chooses from (RFC 8445 §8.1.1).

Regular nomination, with no fixed waits per candidate type: for each component, the controlling
agent nominates its best valid pair as soon as no pair of higher priority can still succeed — none
is Frozen, Waiting or In-Progress — or, at the latest, ``max_nomination_wait`` after the component's
first valid pair, so that an unreachable higher-priority pair (which fails only when its transaction
times out) cannot hold the session hostage. Nominating means checking the pair again with
USE-CANDIDATE; if that check fails, the component is open for nomination again.
"""

from __future__ import annotations

from .checklist import CandidatePair, CheckList, PairState
from .config import AgentConfig

_Key = tuple[int, int]


def _same(a: CandidatePair, b: CandidatePair) -> bool:
    return a.local_base == b.local_base and a.remote.address == b.remote.address


class NominationPolicy:
    """The valid list per component, and the decision to nominate."""

    def __init__(self, config: AgentConfig) -> None:
        self._max_wait = config.max_nomination_wait
        self._valid: dict[_Key, list[CandidatePair]] = {}
        self._first_valid_at: dict[_Key, float] = {}
        self._nominating: dict[_Key, CandidatePair] = {}

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
        """When a waiting component must be nominated anyway."""
        waiting = [
            at + self._max_wait
            for key, at in self._first_valid_at.items()
            if key not in self._nominating
        ]
        return min(waiting, default=None)

    def choose(self, checklist: CheckList, component: int, now: float) -> CandidatePair | None:
        """The valid pair to nominate now for this component, or ``None`` (not yet, or done)."""
        key = (checklist.stream, component)
        valid = self._valid.get(key)
        if key in self._nominating or not valid:
            return None
        best = valid[0]
        better_pending = any(
            p.component == component
            and p.priority > best.priority
            and p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
            for p in checklist
        )
        if better_pending and now < self._first_valid_at[key] + self._max_wait:
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

    def nomination_failed(self, pair: CandidatePair) -> None:
        """The USE-CANDIDATE check timed out: the component may be nominated again."""
        key = (pair.stream, pair.component)
        nominee = self._nominating.get(key)
        if nominee is not None and _same(nominee, pair):
            del self._nominating[key]
            self._valid[key] = [p for p in self._valid.get(key, []) if not _same(p, pair)]
