"""The consent tracker (ice/consent.py, RFC 7675) on its own, on a virtual clock: what it holds of
a pair is held by the pair object, and never more than one pair per component."""

from __future__ import annotations

import random

from ice.candidate import Candidate, CandidateType
from ice.checklist import CandidatePair
from ice.config import AgentConfig
from ice.consent import ConsentTracker
from stun.address import Address

CONFIG = AgentConfig(rng=random.Random(0))
BASE = Address("192.0.2.1", 5000)


def make_pair(port: int, stream: int = 0, component: int = 1) -> CandidatePair:
    remote = Candidate(
        foundation="1",
        component=component,
        transport="udp",
        priority=1,
        host="198.51.100.1",
        port=port,
        type=CandidateType.HOST,
    )
    return CandidatePair(remote, BASE, remote, stream, 1)


def lose_consent(tracker: ConsentTracker, pair: CandidatePair, now: float) -> float:
    """Track ``pair`` at ``now`` and let its consent expire; the time it expired."""
    tracker.track(pair, now)
    expired_at = now + CONFIG.consent_timeout
    assert pair in tracker.expired(expired_at)
    assert not tracker.allows(pair)
    return expired_at


def test_a_new_pair_never_inherits_what_was_held_of_a_dropped_one() -> None:
    """The agent drops its last reference to a pair whose consent was lost; the new pairs made
    after it (which CPython places at the freed address, so ``id()`` repeats) send freely and
    have no consent state."""
    tracker = ConsentTracker(CONFIG)
    lost = make_pair(1)
    lose_consent(tracker, lost, 0.0)
    tracker.suspend([lost])
    del lost
    for port in range(2, 50):
        fresh = make_pair(port)  # freed again at the end of each round: its address is reused
        assert tracker.allows(fresh)
        assert tracker.state_of(fresh) == "none"
        assert not tracker.suspended(fresh)


def test_the_tracker_holds_one_pair_per_component() -> None:
    """Each component has one selected pair: tracking a new one forgets the last, whether its
    consent was granted, lost or suspended, even if nobody untracked it."""
    tracker = ConsentTracker(CONFIG)
    now = 0.0
    for port in range(1, 101):
        now = lose_consent(tracker, make_pair(port, component=1), now)
        tracker.track(make_pair(port, component=2), now)
        tracker.suspend([make_pair(port, stream=1)])
    assert len(tracker) == 3
    last = make_pair(999, component=1)
    tracker.track(last, now)
    assert tracker.state_of(last) == "granted"
    assert len(tracker) == 3


def test_a_lost_pair_stays_lost_and_suspended_through_a_restart() -> None:
    tracker = ConsentTracker(CONFIG)
    pair = make_pair(1)
    now = lose_consent(tracker, pair, 0.0)
    tracker.suspend([pair])
    assert tracker.state_of(pair) == "lost"
    assert tracker.suspended(pair)
    assert tracker.get_timer() is None  # a lost pair is neither checked nor kept alive
    tracker.untrack(pair)
    assert tracker.state_of(pair) == "none" and tracker.allows(pair)
    assert len(tracker) == 0
    assert tracker.due(now) == []
