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
(a lost pair is no longer checked, but it is still the selected one until the new generation
selects another): a suspended pair is the previous generation's and concludes nothing in the new
one (:meth:`ConsentTracker.suspended`).

The tracker keeps one record per tracked pair, granted or lost, and the suspended pairs (an
ICE-lite agent's selected pairs are suspended too, though never tracked). A component has one
selected pair, so tracking or suspending a pair forgets any other pair of its component: neither
holds more entries than the session has components — a number its config fixes, usually one —
so both are tuples looked through (a one-entry dict takes 224 bytes, a one-item tuple 48), and a
pair the tracker no longer holds has no consent state at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stun.randomness import uniform

from .checklist import CandidatePair
from .config import AgentConfig


@dataclass(slots=True)
class _Consent:
    pair: CandidatePair
    last_response: float
    next_check: float
    last_sent: float
    suspended: bool = False
    #: No authenticated response for ``consent_timeout``: no data may be sent on the pair.
    lost: bool = False
    #: The disconnected deadline passed and was acted on; re-armed by the next response.
    disconnect_noted: bool = False


class ConsentTracker:
    """Consent and keepalive timers of the selected pairs."""

    __slots__ = ("_config", "_suspended", "records")

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        #: One record per tracked pair (at most one per component), lost ones included. Read by
        #: the agent too: while it is empty — all the time checks run — no consent timer runs.
        self.records: tuple[_Consent, ...] = ()
        #: Pairs selected before the last restart, tracked or not (at most one per component).
        self._suspended: tuple[CandidatePair, ...] = ()

    def __len__(self) -> int:
        """How many pairs the tracker holds (never more than the session has components)."""
        return len(self._held())

    def _held(self) -> set[CandidatePair]:
        """Every pair the tracker holds, tracked or suspended (a pair hashes by identity)."""
        return {consent.pair for consent in self.records}.union(self._suspended)

    def _record(self, pair: CandidatePair) -> _Consent | None:
        for consent in self.records:
            if consent.pair is pair:
                return consent
        return None

    def _interval(self) -> float:
        return self._config.consent_interval * (0.8 + 0.4 * uniform(self._config.rng))

    def _checked(self) -> list[_Consent]:
        """The records whose consent is being checked: not lost, not suspended."""
        return [c for c in self.records if not c.lost and not c.suspended]

    def track(self, pair: CandidatePair, now: float) -> None:
        """Start consent on a newly selected pair: its last check just succeeded. What was held
        of the component's previous selected pair goes."""
        if self.records or self._suspended:
            self._forget_component(pair)
        self.records += (_Consent(pair, now, now + self._interval(), now),)

    def untrack(self, pair: CandidatePair) -> None:
        """The pair is no longer selected: forget it."""
        self._keep(lambda other: other is not pair)

    def _forget_component(self, pair: CandidatePair) -> None:
        """Forget every pair of ``pair``'s component, ``pair`` included: it has one selected
        pair, and the caller holds ``pair`` again as it wants it."""
        stream, component = pair.stream, pair.component
        self._keep(lambda other: other.stream != stream or other.component != component)

    def _keep(self, wanted: Callable[[CandidatePair], bool]) -> None:
        """Keep only the records and suspended pairs of the ``wanted`` pairs."""
        if self.records:
            self.records = tuple(c for c in self.records if wanted(c.pair))
        if self._suspended:
            self._suspended = tuple(p for p in self._suspended if wanted(p))

    def suspend(self, pairs: Iterable[CandidatePair]) -> None:
        """ICE restart: the selected ``pairs`` belong to the previous generation. Their consent
        checks stop (keepalives go on) until new pairs are selected; a lost one stays lost."""
        for pair in pairs:
            consent = self._record(pair)
            self._forget_component(pair)
            self._suspended += (pair,)
            if consent is not None:
                consent.suspended = True
                self.records += (consent,)

    def suspended(self, pair: CandidatePair) -> bool:
        """Whether the pair was selected before the last restart (it concludes nothing now)."""
        return pair in self._suspended  # `in` compares by identity first: no __eq__ call

    def sent(self, pair: CandidatePair, now: float) -> None:
        """Anything went out on the pair (for the keepalive timer)."""
        for consent in self.records:  # not _record: asked at every check sent
            if consent.pair is pair:
                consent.last_sent = now
                return

    def answered(self, pair: CandidatePair, now: float) -> None:
        """An authenticated consent response arrived (RFC 7675 §5.1)."""
        consent = self._record(pair)
        if consent is not None and not consent.lost:
            consent.last_response = now
            consent.disconnect_noted = False

    def allows(self, pair: CandidatePair) -> bool:
        """Whether data may be sent on the pair."""
        consent = self._record(pair)
        return consent is None or not consent.lost

    def disconnected(self, pair: CandidatePair, now: float) -> bool:
        for consent in self.records:  # not _record: asked after every datagram once connected
            if consent.pair is pair:
                return (
                    not consent.lost
                    and not consent.suspended
                    and now >= consent.last_response + self._config.disconnected_after
                )
        return False

    def state_of(self, pair: CandidatePair) -> str:
        """``"lost"``, ``"granted"``, ``"suspended"`` or ``"none"`` (not a selected pair)."""
        consent = self._record(pair)
        if consent is None:
            return "none"
        if consent.lost:
            return "lost"
        return "suspended" if consent.suspended else "granted"

    def get_timer(self) -> float | None:
        if not self.records:  # asked after every datagram: nothing is selected while checking
            return None
        config = self._config
        earliest = None
        for consent in self.records:
            if consent.lost:
                continue
            deadline = consent.last_sent + config.keepalive_interval
            if not consent.suspended:
                # consent_timeout > disconnected_after: the disconnection comes first, unless
                # it was noted already
                last_response = consent.last_response
                deadline = min(
                    deadline,
                    consent.next_check,
                    last_response + config.consent_timeout
                    if consent.disconnect_noted
                    else last_response + config.disconnected_after,
                )
            if earliest is None or deadline < earliest:
                earliest = deadline
        return earliest

    def newly_disconnected(self, now: float) -> list[CandidatePair]:
        """Pairs that have just gone ``disconnected_after`` without a response: each is
        reported once, until a response re-arms it."""
        newly = []
        for consent in self._checked():
            if (
                not consent.disconnect_noted
                and now >= consent.last_response + self._config.disconnected_after
            ):
                consent.disconnect_noted = True
                newly.append(consent.pair)
        return newly

    def due(self, now: float) -> list[CandidatePair]:
        """Pairs whose consent check is due now; schedules the next one."""
        due = []
        for consent in self._checked():
            if now >= consent.next_check:
                consent.next_check = now + self._interval()
                due.append(consent.pair)
        return due

    def keepalives_due(self, now: float) -> list[CandidatePair]:
        """Pairs silent for Tr (RFC 8445 §11)."""
        return [
            c.pair
            for c in self.records
            if not c.lost and now >= c.last_sent + self._config.keepalive_interval
        ]

    def expired(self, now: float) -> list[CandidatePair]:
        """Pairs whose consent just expired; they are no longer checked and refuse data."""
        expired = [
            c for c in self._checked() if now >= c.last_response + self._config.consent_timeout
        ]
        for consent in expired:
            consent.lost = True
        return [c.pair for c in expired]
