"""The events that only report progress (PairStateChanged, StateChanged to anything but failed or
closed) are made only for a driver that reads them (``Agent.progress_events``): everything else
the agent does is the same without them."""

from __future__ import annotations

import asyncio

from ice.events import IceEvent, IceState, PairStateChanged, StateChanged
from tests.net.loopback import run

from .machine_pair import connect, pair_of, states
from .test_connection import exchange, gathered


def _progress(event: IceEvent) -> bool:
    if isinstance(event, StateChanged):
        return event.state is not IceState.FAILED and event.state is not IceState.CLOSED
    return isinstance(event, PairStateChanged)


def test_an_agent_without_progress_events_connects_alike_and_leaves_only_those_out() -> None:
    logs = []
    for progress_events in (True, False):
        a, b, wire = pair_of()
        a.progress_events = b.progress_events = progress_events
        connect(a, b, wire)
        logs.append((wire, a, b))
    (wire_on, a_on, b_on), (wire_off, a_off, b_off) = logs
    for on, off in ((a_on, a_off), (b_on, b_off)):
        assert any(isinstance(e, PairStateChanged) for e in wire_on.log(on))
        assert states(wire_on, on)[-1] is IceState.COMPLETED
        assert not any(_progress(e) for e in wire_off.log(off))
        assert [type(e) for e in wire_on.log(on) if not _progress(e)] == [
            type(e) for e in wire_off.log(off)
        ]
        assert on.state is off.state is IceState.COMPLETED
        assert [p.state for p in on.checklists[0]] == [p.state for p in off.checklists[0]]
    assert len(wire_on.sent) == len(wire_off.sent)


def test_an_agent_without_progress_events_still_says_it_failed_or_closed() -> None:
    a, b, wire = pair_of()
    a.progress_events = False
    a.set_remote_credentials(b.local_username, b.local_password)
    a.add_remote_candidate(None)  # nothing to check, and the peer never checks either
    a.start_checks(wire.now)
    wire.run(60.0)
    a.close()
    assert states(wire, a) == [IceState.FAILED]
    a.take_events()
    b.progress_events = False
    b.close()
    assert [e for e in b.take_events() if isinstance(e, StateChanged)] == [
        StateChanged(IceState.CLOSED)
    ]


def test_a_connection_asks_for_progress_events_only_while_it_has_a_handler() -> None:
    events: list[IceEvent] = []

    async def scenario() -> tuple[bool, bool, bool]:
        async with gathered() as (a, b):
            without = a.agent.progress_events
            a.on_event = events.append
            with_handler = a.agent.progress_events
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            a.on_event = None
            return without, with_handler, a.agent.progress_events or b.agent.progress_events

    assert run(scenario()) == (False, True, False)
    assert any(isinstance(event, PairStateChanged) for event in events)
    assert IceState.COMPLETED in [e.state for e in events if isinstance(e, StateChanged)]


def test_pending_events_is_empty_exactly_when_every_event_was_read() -> None:
    a, b, wire = pair_of()
    a.set_remote_credentials(b.local_username, b.local_password)
    a.add_remote_candidate(None)
    a.start_checks(wire.now)  # checking: a StateChanged, and pair events
    a.handle_timer(wire.now)
    count = len(a.pending_events)
    assert count >= 2
    for _ in range(count - 1):
        assert a.next_event() is not None
        assert a.pending_events  # one is still unread
    assert a.next_event() is not None
    assert not a.pending_events and a.next_event() is None
    a.close()
    assert a.pending_events and a.take_events() and not a.pending_events
