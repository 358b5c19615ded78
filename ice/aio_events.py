"""asyncio layer: what a :class:`~ice.aio.Connection` does with its agent's events, as the
:class:`ConnectionEvents` part of the connection (the others: :mod:`ice.aio`, which gathers,
connects, carries data and closes, :mod:`ice.aio_properties`, what it shows and lets be set, and
:mod:`ice.pump`, which drives the agent).

After every pump the events are drained and each is handed to the handler of its type (one dict
access per event, not a chain of ``isinstance``): data goes into the receive queue, gathered
candidates into the list signalled to the peer (as the peer sees them: hidden behind mDNS names
if asked), a selected pair becomes the component's fast data path, consent lost or a candidate
lost takes it away, saying why (a base the agent released after completing, RFC 8445 §8.3, has
its socket closed); the waits (:meth:`~ice.aio.Connection.connect`, gathering,
:meth:`~ice.aio.Connection.recv`) are woken when what they wait for may have come. Every event
then reaches ``on_event``, if set.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from stun.address import Address

from . import events
from .aio_properties import ConnectionProperties
from .base_sockets import Signal
from .candidate import Candidate
from .events import IceEvent, IceState
from .mdns_candidates import signalled as mdns_signalled

_log = logging.getLogger("icestack.ice")

#: Read at every change of state, bound once as in ice.agent (a module name reads ~10x faster
#: than an enum member through its class in CPython 3.11).
_FAILED = IceState.FAILED
_CLOSED = IceState.CLOSED


class ConnectionEvents(ConnectionProperties):
    """The event handling of :class:`~ice.aio.Connection` (module docstring); the connection
    holds the state declared here."""

    #: What the handlers set; the rest of the connection's state is in its own __slots__.
    __slots__ = (
        "_gathering_complete",
        "_local_candidates",
        "_lost_local",
        "_on_event",
        "_received",
        "_selected_since_restart",
        "receive_queue_dropped",
    )

    _loop: asyncio.AbstractEventLoop
    _gathering_complete: bool
    #: Datagrams dropped because the receive queue was full.
    receive_queue_dropped: int
    #: The components selected since the (re)start: bit ``1 << component`` of each.
    _selected_since_restart: int
    #: Data not read yet, made with the first datagram (an empty deque is ~0.6 KiB, and a
    #: session may carry none: consent only).
    _received: deque[tuple[bytes, int]] | None
    _receive_queue_size: int
    _state_signal: Signal
    _data_signal: Signal
    _local_candidates: tuple[Candidate, ...]
    _on_event: Callable[[IceEvent], None] | None

    @property
    def on_event(self) -> Callable[[IceEvent], None] | None:
        """Called with every event of the agent (and :class:`~ice.mdns.CandidateUnresolvable`),
        for logs and live views. It must not block. Only a handler here reads the events that
        just report progress (:class:`~ice.events.PairStateChanged`, most
        :class:`~ice.events.StateChanged`): without one the agent makes none
        (:attr:`~ice.agent.Agent.progress_events`)."""
        return self._on_event

    @on_event.setter
    def on_event(self, handler: Callable[[IceEvent], None] | None) -> None:
        self._on_event = handler
        if self._agent is not None:
            self._agent.progress_events = handler is not None

    def _drain_events(self, taken: list[IceEvent]) -> None:
        """Hand over ``taken`` (what the agent's ``take_events`` just gave) and whatever the
        handlers make the agent say meanwhile."""
        agent = self._agent
        assert agent is not None
        handlers = _EVENT_HANDLERS
        while taken:
            again = False  # whether a handler may have fed the agent, which may have more
            for event in taken:
                kind = type(event)
                if kind in handlers:  # dict accesses, not a chain of isinstance
                    handlers[kind](self, event)
                    again = again or kind in _FEEDING_AGENT
                if self._on_event is not None:
                    self._emit(event)
                    again = True
            taken = agent.take_events() if again and agent.pending_events else []

    def _on_data(self, event: events.DataReceived) -> None:
        self._deliver(event.data, event.component)

    def _on_candidate(self, event: events.CandidateGathered) -> None:
        signalled = mdns_signalled(self._mdns, event.candidate)
        if signalled is not None:
            self._local_candidates += (signalled,)
        self._state_signal.fire()

    def _on_gathering_completed(self, event: events.GatheringCompleted) -> None:
        self._gathering_complete = True
        self._state_signal.fire()

    def _on_selected(self, event: events.SelectedPairChanged) -> None:
        self._data_paths.select(event.component, event.pair, self._loop.time())
        if self._tcp is not None:
            self._tcp.select(event.component, event.pair)
        self._selected_since_restart |= 1 << event.component
        self._state_signal.fire()

    def _on_consent_lost(self, event: events.ConsentLost) -> None:
        reason = (
            "the selected pair's TCP connection was closed"
            if event.pair.local.transport == "tcp"
            else "consent to send was lost (RFC 7675)"
        )
        self._data_paths.drop(event.component, reason, self._loop.time())
        if self._tcp is not None:
            self._tcp.drop(event.component, self._loop.time())

    def _on_candidate_lost(self, event: events.CandidateLost) -> None:
        candidate = event.candidate
        _log.info("%s candidate %s lost: %s", candidate.type, candidate.address, event.reason)
        signalled = mdns_signalled(self._mdns, candidate)
        if signalled is not None and event.released and self._gathering_complete:
            # Gone from the list (an iteration of trickle_candidates walks its own snapshot).
            self._local_candidates = tuple(c for c in self._local_candidates if c != signalled)
        elif signalled is not None:
            self._lost_local += (signalled,)
        self._data_paths.lose(candidate, event.reason, self._loop.time())
        if event.released:
            self._close_released(candidate.base)

    def _close_released(self, address: Address | None) -> None:
        raise NotImplementedError

    def _on_gathering_failed(self, event: events.GatheringFailed) -> None:
        _log.info(
            "gathering: no candidate from %s for base %s: %s",
            event.server,
            event.base,
            event.reason,
        )

    def _on_state(self, event: events.StateChanged) -> None:
        # Only an ending wakes the waits: connect() returns on SelectedPairChanged, gathering
        # on its own events; waking them for checking/connected/completed costs a task step.
        state = event.state
        if state is _FAILED:
            assert self._agent is not None
            _log.info("ICE failed: %s", self._agent.failure_reason())
        if state is _FAILED or state is _CLOSED:
            self._state_signal.fire()
            self._data_signal.fire()

    def _deliver(self, data: bytes, component: int) -> None:
        received = self._received
        if received is None:
            received = self._received = deque()
        if len(received) < self._receive_queue_size:
            received.append((data, component))
            self._data_signal.fire()
        else:
            self.receive_queue_dropped += 1

    def _emit(self, event: IceEvent) -> None:
        handler = self._on_event
        if handler is not None:
            try:
                handler(event)
            except Exception:
                _log.exception("on_event handler failed on %s", type(event).__name__)


#: What the connection does with each kind of the agent's events (the others only reach
#: ``on_event``).
_EVENT_HANDLERS: dict[type[IceEvent], Callable[[ConnectionEvents, Any], None]] = {
    events.DataReceived: ConnectionEvents._on_data,
    events.CandidateGathered: ConnectionEvents._on_candidate,
    events.GatheringCompleted: ConnectionEvents._on_gathering_completed,
    events.SelectedPairChanged: ConnectionEvents._on_selected,
    events.ConsentLost: ConnectionEvents._on_consent_lost,
    events.CandidateLost: ConnectionEvents._on_candidate_lost,
    events.GatheringFailed: ConnectionEvents._on_gathering_failed,
    events.StateChanged: ConnectionEvents._on_state,
}
#: The kinds whose handler may call the agent (its byte counts, ICE-TCP): events it makes
#: meanwhile are drained in the same pump.
_FEEDING_AGENT = frozenset((events.SelectedPairChanged, events.ConsentLost, events.CandidateLost))
