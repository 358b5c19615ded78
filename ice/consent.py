"""Consent freshness (RFC 7675) and keepalives (RFC 8445 §11) on selected pairs.

Theory of operation. Every selected pair is *tracked*. A consent check — an ordinary
connectivity check on that pair — goes out every ``consent_interval`` times U(0.8, 1.2) (RFC 7675
§5.1). Only an authenticated *response* refreshes consent; any other traffic does not. With no
response for ``disconnected_after`` the pair counts as disconnected (it recovers if a response
comes), and with none for ``consent_timeout`` consent is lost: the agent must stop sending on it.
A keepalive (a Binding indication, §11) goes out when nothing was sent on the pair for Tr; while
consent checks run every few seconds, that never happens, so keepalives matter only while consent
is suspended (during an ICE restart, whose new credentials the old pair's peer may not accept).

An ICE restart *suspends* every selected pair, whether its consent is still granted or was lost
(a lost pair is no longer tracked, but it is still the selected one until the new generation
selects another): a suspended pair is the previous generation's and concludes nothing in the new
one (:meth:`ConsentTracker.suspended`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .checklist import CandidatePair
from .config import AgentConfig


@dataclass(slots=True)
class _Consent:
    pair: CandidatePair
    last_response: float
    next_check: float
    last_sent: float
    suspended: bool = False
    #: The disconnected deadline passed and was acted on; re-armed by the next response.
    disconnect_noted: bool = False


class ConsentTracker:
    """Consent and keepalive timers of the selected pairs."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._tracked: dict[int, _Consent] = {}
        self._lost: set[int] = set()
        #: Pairs selected before the last restart (tracked or lost), by ``id``.
        self._suspended: set[int] = set()

    def _interval(self) -> float:
        return self._config.consent_interval * (0.8 + 0.4 * self._config.rng.random())

    def track(self, pair: CandidatePair, now: float) -> None:
        """Start consent on a newly selected pair: its last check just succeeded."""
        self._tracked[id(pair)] = _Consent(pair, now, now + self._interval(), now)
        self._lost.discard(id(pair))
        self._suspended.discard(id(pair))

    def untrack(self, pair: CandidatePair) -> None:
        """The pair is no longer selected: forget it."""
        self._tracked.pop(id(pair), None)
        self._lost.discard(id(pair))
        self._suspended.discard(id(pair))

    def suspend(self, pairs: Iterable[CandidatePair]) -> None:
        """ICE restart: the selected ``pairs`` belong to the previous generation. Their consent
        checks stop (keepalives go on) until new pairs are selected; a lost one stays lost."""
        for pair in pairs:
            self._suspended.add(id(pair))
            consent = self._tracked.get(id(pair))
            if consent is not None:
                consent.suspended = True

    def suspended(self, pair: CandidatePair) -> bool:
        """Whether the pair was selected before the last restart (it concludes nothing now)."""
        return id(pair) in self._suspended

    def sent(self, pair: CandidatePair, now: float) -> None:
        """Anything went out on the pair (for the keepalive timer)."""
        consent = self._tracked.get(id(pair))
        if consent is not None:
            consent.last_sent = now

    def answered(self, pair: CandidatePair, now: float) -> None:
        """An authenticated consent response arrived (RFC 7675 §5.1)."""
        consent = self._tracked.get(id(pair))
        if consent is not None:
            consent.last_response = now
            consent.disconnect_noted = False

    def allows(self, pair: CandidatePair) -> bool:
        """Whether data may be sent on the pair."""
        return id(pair) not in self._lost

    def disconnected(self, pair: CandidatePair, now: float) -> bool:
        consent = self._tracked.get(id(pair))
        return (
            consent is not None
            and not consent.suspended
            and now >= consent.last_response + self._config.disconnected_after
        )

    def state_of(self, pair: CandidatePair) -> str:
        """``"lost"``, ``"granted"``, ``"suspended"`` or ``"none"`` (not a selected pair)."""
        if id(pair) in self._lost:
            return "lost"
        consent = self._tracked.get(id(pair))
        if consent is None:
            return "none"
        return "suspended" if consent.suspended else "granted"

    def get_timer(self) -> float | None:
        config = self._config
        deadlines = []
        for consent in self._tracked.values():
            deadlines.append(consent.last_sent + config.keepalive_interval)
            if not consent.suspended:
                deadlines += [consent.next_check, consent.last_response + config.consent_timeout]
                if not consent.disconnect_noted:
                    deadlines.append(consent.last_response + config.disconnected_after)
        return min(deadlines, default=None)

    def newly_disconnected(self, now: float) -> list[CandidatePair]:
        """Pairs that have just gone ``disconnected_after`` without a response: each is
        reported once, until a response re-arms it."""
        newly = []
        for consent in self._tracked.values():
            if (
                not consent.suspended
                and not consent.disconnect_noted
                and now >= consent.last_response + self._config.disconnected_after
            ):
                consent.disconnect_noted = True
                newly.append(consent.pair)
        return newly

    def due(self, now: float) -> list[CandidatePair]:
        """Pairs whose consent check is due now; schedules the next one."""
        due = []
        for consent in self._tracked.values():
            if not consent.suspended and now >= consent.next_check:
                consent.next_check = now + self._interval()
                due.append(consent.pair)
        return due

    def keepalives_due(self, now: float) -> list[CandidatePair]:
        """Pairs silent for Tr (RFC 8445 §11)."""
        return [
            c.pair
            for c in self._tracked.values()
            if now >= c.last_sent + self._config.keepalive_interval
        ]

    def expired(self, now: float) -> list[CandidatePair]:
        """Pairs whose consent just expired; they stop being tracked and refuse data."""
        expired = [
            c
            for c in self._tracked.values()
            if not c.suspended and now >= c.last_response + self._config.consent_timeout
        ]
        for consent in expired:
            del self._tracked[id(consent.pair)]
            self._lost.add(id(consent.pair))
        return [c.pair for c in expired]
