"""Which pair carries each component's data, and the session state that follows from it
(RFC 8445 §8, §6.1.3; RFC 7675).

Theory of operation. **Nomination.** The controlling agent asks :mod:`ice.nomination` after every
interaction whether a component's best valid pair is ready, and checks it again with
USE-CANDIDATE; the success of that check nominates the pair (§8.1.1). The controlled agent
nominates the valid pair of a USE-CANDIDATE check once its own check of the pair has succeeded
(§7.3.1.5). A nominated pair is selected when it replaces the current one
(:func:`~ice.nomination.replaces_selected`), consent starts on it (:mod:`ice.consent`), and the
lower-priority pairs of its component stop being checked (§8.1.2). A controlled agent whose peer
sends data on another nominated pair follows the peer there.

**State.** The agent's state derives from its components: *connected* once every component has
this generation's nominated pair (a pair kept through a restart concludes nothing, §9),
*completed* when no check is in flight any more, *disconnected* while a selected pair goes
unanswered for ``disconnected_after``. **Ending.** An agent with a component not concluded that
has nothing left to do by itself — gathering over, no check in flight or waiting — gives the
peer a bounded time and then fails: at once when every pair failed or none can be formed, after
``peer_reflexive_wait`` when no pair exists yet (the peer's checks may still bring
peer-reflexive candidates), after ``idle_timeout`` without end-of-candidates or, controlled,
without a nomination. Consent loss and the loss of the only path's local candidate fail it too.
Every failure keeps its reason (:meth:`Selection.failure_reason`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from stun.address import Address

from .agent_part import AgentPart
from .checklist import CandidatePair, PairState
from .config import Policy
from .events import ConsentLost, IceEvent, IceState, PairStateChanged, SelectedPairChanged
from .gather import LocalCandidate
from .nomination import component_keys, replaces_selected
from .stats import PeerInput, describe_failure

if TYPE_CHECKING:
    from .agent import Agent

#: States read after every datagram and timer, bound once as in ice.agent (a module name reads
#: ~10x faster than an enum member through its class in CPython 3.11).
_CLOSED = IceState.CLOSED
_FAILED = IceState.FAILED
_CONNECTED = IceState.CONNECTED
_COMPLETED = IceState.COMPLETED


class _Stall(enum.Enum):
    """What an idle agent without a pair for every component is waiting for in vain."""

    NOTHING_TO_CHECK = "nothing to check"
    NO_END_OF_CANDIDATES = "no end-of-candidates"
    NO_NOMINATION = "no nomination"


class Selection(AgentPart):
    """Nomination, selection and the derived state of an :class:`~ice.agent.Agent`."""

    __slots__ = ("_keys", "_selected", "_unconcluded", "all_concluded", "failure")

    def __init__(self, agent: Agent, emit: Callable[[IceEvent], None]) -> None:
        super().__init__(agent, emit)
        self._selected = agent.selected
        #: Every (stream, component) of the session: fixed by the config, restarts included.
        self._keys = component_keys(agent.config.streams)
        #: Why the agent failed, once it has (see :meth:`failure_reason`).
        self.failure: str | None = None
        #: The components not :meth:`concluded`, and whether there is none: asked after every
        #: datagram, so worked out again only where they can change — a pair selected or
        #: unselected, a restart.
        self._unconcluded = self._keys
        self.all_concluded = False

    # ================================================================== nomination, selection

    def nominate(self, pair: CandidatePair, now: float) -> None:
        """The pair is nominated (§8.1.1, §7.3.1.5): select it if it replaces the current one,
        and prune the lower-priority pairs of its component (§8.1.2)."""
        if pair.nominated:
            return
        agent = self._agent
        pair.nominated = True
        pair.valid = True
        if not agent.nomination.pair_valid(pair, now):
            self._failures.peer_input[PeerInput.VALID_LIST_FULL] += 1
        agent.nomination.concluded(pair)
        current = self._selected.get((pair.stream, pair.component))
        suspended = current is not None and self._consent.suspended(current)
        if replaces_selected(current, pair, suspended=suspended):
            self._select(pair, now)
        for pruned in agent.checklists[pair.stream].stop_below(pair.component, pair.priority):
            agent.outgoing.abandon(pruned)
        if agent.progress_events:
            self._emit(PairStateChanged(pair.stream, pair))

    def force(self, pair: CandidatePair, now: float) -> None:
        """Select ``pair`` without checks, nomination or consent: the application says the
        peer does no ICE (:meth:`~ice.agent.Agent.force_selected_pair`)."""
        pair.valid = pair.nominated = True
        self._select(pair, now, consent=False)
        self.derive_state(now)

    def _select(self, pair: CandidatePair, now: float, *, consent: bool = True) -> None:
        current = self._selected.put(pair)
        if consent and not self._config.lite:  # a lite agent sends no checks at all (§2.5)
            self._consent.track(pair, now)
        if current is not None and current is not pair:
            self._consent.untrack(current)
        self._conclude()
        self._emit(SelectedPairChanged(pair.stream, pair.component, pair))

    def follow_peer(self, local: Address, remote: Address, now: float) -> CandidatePair | None:
        """The peer's data arrived on a nominated pair that is not the selected one: a
        controlled agent selects it, since a peer sends data on the pair it selected (see
        :func:`~ice.nomination.replaces_selected`)."""
        agent = self._agent
        pair = agent.nomination.valid_on(local, remote)
        if (
            agent.controlling
            or pair is None
            or not pair.nominated
            or not self._consent.allows(pair)
            or self._selected.get((pair.stream, pair.component)) is pair
        ):
            return None
        self._select(pair, now)
        return pair

    def repeat_unconfirmed_nominations(self, now: float) -> None:
        """The peer just proved it has our credentials: repeat at once every nomination it may
        have forgotten (see :meth:`NominationPolicy.nominated_by_us`)."""
        agent = self._agent
        if not agent.controlling or agent.remote_password is None:
            return
        for pair in agent.nomination.unconfirmed_pairs():
            if self._selected.get((pair.stream, pair.component)) is pair:
                agent.outgoing.send(pair, now, use_candidate=True, consent=True)

    def run_nomination(self, now: float) -> None:
        """The controlling agent nominates every component whose best valid pair is ready."""
        agent = self._agent
        if not agent.controlling or self._config.lite or not agent.nomination.deciding:
            return
        for stream, component in self._unconcluded:
            pair = agent.nomination.choose(agent.checklists[stream], component, now)
            if pair is not None:
                # The nomination check repeats a check that just succeeded on a proven path
                # (§8.1.1): it goes out at once rather than in the next Ta slot, and the next
                # ordinary check waits a full Ta after it, so the pace of new checks holds.
                agent.outgoing.send(pair, now, use_candidate=True)
                agent.outgoing.hold_slot(now)

    def forget_local(self, local: LocalCandidate, reason: str, now: float) -> None:
        """A local candidate is lost: its pairs fail and stop being checked; if it carried a
        component's data, the component is open for nomination again, and fails with
        ``reason`` when no other valid pair remains."""
        agent = self._agent
        checklist = agent.checklists[local.stream]
        gone = [pair for pair in checklist if pair.local_base == local.base]
        for pair in gone:
            pair.failure = "local candidate lost"
            agent._set_pair_state(pair, PairState.FAILED)
        checklist.drop_triggered(*gone)
        agent.outgoing.forget_base(local.base)
        agent.nomination.forget(local.base)
        key = (local.stream, local.candidate.component)
        selected = self._selected.get(key)
        if selected is None or selected.local_base != local.base:
            return
        concluded = self.concluded(key)
        del self._selected[key]
        self._consent.untrack(selected)
        self._conclude()
        if not concluded:
            return  # the previous generation's pair: the current checks decide
        if agent.nomination.has_valid(*key) and agent.controlling and not self._config.lite:
            agent._set_state(IceState.CHECKING)  # another valid pair gets nominated
        else:
            self.fail(f"component {key[1]} lost its only path: {reason}")

    def lose_path(self, local: Address, remote: Address, reason: str, now: float) -> None:
        """A TCP connection is gone — refused, timed out, reset, closed (RFC 6544 §7.1): the
        checks on its path fail, and so do its pairs, which leave the valid list; a selected
        pair on it loses consent as if it had expired (a restart's previous pair just stops
        carrying data)."""
        agent = self._agent
        for check in agent.outgoing.forget_path(local, remote):
            if check.use_candidate and not check.consent:
                agent.nomination.nomination_failed(check.pair)
        for checklist in agent.checklists:
            pair = checklist.find(local, remote)
            if pair is not None and pair.state is not PairState.FAILED:
                pair.failure = reason
                agent._set_pair_state(pair, PairState.FAILED)
                checklist.drop_triggered(pair)
        agent.nomination.forget(local, remote)
        agent._touched = True  # what the agent waits for changed: derive the state again
        selected = self._selected.on_path(local, remote)
        if selected is None:
            return
        suspended = self._consent.suspended(selected)
        del self._selected[(selected.stream, selected.component)]
        self._consent.untrack(selected)
        self._conclude()
        self._emit(ConsentLost(selected.stream, selected.component, selected))
        if not suspended:
            self.fail(f"component {selected.component} lost its selected pair: {reason}")

    # ================================================================== state

    def update(self, now: float, *, nominate: bool = True) -> None:
        """Nominate what is ready (unless not to ``nominate``), then derive the overall state
        from the components' (RFC 8445 §6.1.3, §8; RFC 8838 §8). After every datagram and
        timer: the usual answer — still checking, a check in flight — costs no further call."""
        agent = self._agent
        if not self.all_concluded:
            if nominate and agent.controlling and agent.nomination.deciding:
                self.run_nomination(now)
            if agent.outgoing.in_flight.ordinary or not agent._checking:
                return  # a check to wait for, or none yet: a restart's previous pairs carry data on
        state = agent.state
        if state is _CLOSED or state is _FAILED:
            return
        if self.all_concluded:
            self._derive_concluded(now)
            return
        verdict = self.give_up_at()
        if verdict is not None and now >= verdict[0]:
            self._give_up(verdict[1])

    def restart(self) -> None:
        """ICE restart (§9): the selected pairs are the previous generation's — they carry data
        on but conclude nothing now — and the new generation has not failed."""
        self._consent.suspend(self._selected.values())
        self.failure = None
        self._conclude()

    def keys(self) -> tuple[tuple[int, int], ...]:
        """Every (stream, component) of the session."""
        return self._keys

    def concluded(self, key: tuple[int, int]) -> bool:
        """Whether a component has this generation's nominated pair: a pair kept through a
        restart carries data but concludes nothing (§9)."""
        pair = self._selected.get(key)
        return pair is not None and pair.nominated and not self._consent.suspended(pair)

    def _conclude(self) -> None:
        """Work out again which components are concluded: a selected pair changed."""
        concluded = self.concluded
        unconcluded = []
        for key in self._keys:  # a loop, not a generator (which is a call)
            if not concluded(key):
                unconcluded.append(key)
        self._unconcluded = tuple(unconcluded)
        self.all_concluded = not unconcluded

    def give_up_at(self) -> tuple[float, _Stall] | None:
        """When an agent that is neither over nor concluded fails, and why, if it is idle:
        checking, with nothing left that it can do by itself — gathering is over, no check is in
        flight and none waits to be sent (each asked in O(1), from the counts the checks in
        flight and the check lists keep). Only the peer can move things on now, and it gets a
        bounded time to. ``None`` when it is not idle."""
        agent = self._agent
        if not agent._checking or not self._gatherer.completed or agent.outgoing.in_flight.ordinary:
            return None
        for checklist in agent.checklists:
            if checklist.triggered or checklist.schedulable:
                return None
        config = self._config
        idle_end = agent._last_progress + config.idle_timeout
        has_valid = agent.nomination.has_valid
        hopeless = []
        for key in self._unconcluded:  # a loop, not a comprehension (which is a call)
            if not has_valid(*key):
                hopeless.append(key)
        if not hopeless or config.lite:  # a lite agent sends no checks: it waits to be nominated
            return idle_end, _Stall.NO_NOMINATION
        if not agent.remote_complete:
            return idle_end, _Stall.NO_END_OF_CANDIDATES
        for stream, component in hopeless:
            if not self._gatherer.pairable(stream, component):
                return -math.inf, _Stall.NOTHING_TO_CHECK  # no peer check can reach us either
            pairs = [p for p in agent.checklists[stream] if p.component == component]
            if pairs and not any(p.waits_for_peer for p in pairs):
                return -math.inf, _Stall.NOTHING_TO_CHECK  # every pair failed
        # No pair at all, or only passive TCP ones: the peer's checks may still bring
        # peer-reflexive candidates (§7.3.1.3), on a connection the peer opens (RFC 6544 §7.2).
        return agent._last_progress + config.peer_reflexive_wait, _Stall.NOTHING_TO_CHECK

    def derive_state(self, now: float) -> None:
        """The overall state from the components', with no nomination (:meth:`update`)."""
        self.update(now, nominate=False)

    def _give_up(self, stall: _Stall) -> None:
        """An idle agent waited its bounded time in vain: it fails, saying for what."""
        waited = f"{self._config.idle_timeout:g} s"
        if stall is _Stall.NOTHING_TO_CHECK:
            self.fail(self.failure_reason())
        elif stall is _Stall.NO_END_OF_CANDIDATES:
            self.fail(
                f"nothing left to check, and neither a new remote candidate nor "
                f"end-of-candidates came for {waited}: {self.failure_reason()}"
            )
        else:
            self.fail(f"the controlling peer nominated no pair for {waited}")

    def _derive_concluded(self, now: float) -> None:
        """:meth:`derive_state` once every component is concluded."""
        agent = self._agent
        disconnected = self._consent.disconnected
        for pair in self._selected.values():
            if disconnected(pair, now):
                agent._set_state(IceState.DISCONNECTED)
                return
        if agent.state is not _COMPLETED:
            # Completed stays completed: a check still in flight (the peer's last triggered
            # check, a cancelled one) does not reopen the session.
            checking = agent.outgoing.in_flight.ordinary
            agent._set_state(_CONNECTED if checking else _COMPLETED)

    def fail(self, reason: str) -> None:
        """The session failed for ``reason`` (unless it had failed or closed already)."""
        agent = self._agent
        if agent.state not in (IceState.FAILED, IceState.CLOSED):
            self.failure = reason
            agent._set_state(IceState.FAILED)

    # ================================================================== failure reasons

    def failure_reason(self) -> str:
        """Why the agent failed (or why checking is failing), in words a person can act on."""
        if self.failure is not None:
            return self.failure
        agent = self._agent
        usable = sum(
            len(self._gatherer.pairable(stream, component))
            for stream, components in enumerate(self._config.streams)
            for component in range(1, components + 1)
        )
        if not usable:
            unusable = self._no_usable_candidate()
            if unusable is not None:
                return unusable
        pairs = [p for checklist in agent.checklists for p in checklist]
        succeeded = sum(1 for p in pairs if p.state is PairState.SUCCEEDED)
        if succeeded and not any(agent.nomination.has_valid(*key) for key in self.keys()):
            # Only a nomination check that timed out takes a pair out of the valid list.
            return (
                f"the peer stopped answering: {succeeded} pairs succeeded, but no nomination "
                "check (USE-CANDIDATE) was answered"
            )
        return describe_failure(self._failures, len(agent.remote_candidates), usable, pairs)

    def _no_usable_candidate(self) -> str | None:
        """Why gathering gave no candidate a pair can use, when it says more than "none"."""
        config = self._config
        relay_only = config.policy is Policy.RELAY
        reasons = [
            f"{event.server} from {event.base}: {event.reason}" for event in self._gatherer.failures
        ]
        if reasons:
            wanted = "relayed candidate" if relay_only else "local candidate"
            return f"no {wanted} was gathered: " + "; ".join(reasons)
        if relay_only and not config.turn_servers:
            return "no relayed candidate: the relay-only policy needs a TURN server"
        if relay_only:
            return "no relayed candidate: no TURN server of a local address's family"
        return None
