"""PairStateChanged events are made only for a driver that reads them (``Agent.pair_events``):
everything else the agent does is the same without them."""

from __future__ import annotations

import asyncio

from ice.events import IceEvent, PairStateChanged
from tests.net.loopback import run

from .machine_pair import connect, pair_of, states
from .test_connection import exchange, gathered


def test_an_agent_without_pair_events_connects_alike_and_leaves_only_those_out() -> None:
    logs = []
    for pair_events in (True, False):
        a, b, wire = pair_of()
        a.pair_events = b.pair_events = pair_events
        connect(a, b, wire)
        logs.append((wire, a, b))
    (wire_on, a_on, b_on), (wire_off, a_off, b_off) = logs
    for on, off in ((a_on, a_off), (b_on, b_off)):
        assert any(isinstance(e, PairStateChanged) for e in wire_on.log(on))
        assert not any(isinstance(e, PairStateChanged) for e in wire_off.log(off))
        assert [type(e) for e in wire_on.log(on) if not isinstance(e, PairStateChanged)] == [
            type(e) for e in wire_off.log(off)
        ]
        assert states(wire_on, on) == states(wire_off, off)
        assert [p.state for p in on.checklists[0]] == [p.state for p in off.checklists[0]]
    assert len(wire_on.sent) == len(wire_off.sent)


def test_a_connection_asks_for_pair_events_only_while_it_has_a_handler() -> None:
    events: list[IceEvent] = []

    async def scenario() -> tuple[bool, bool, bool]:
        async with gathered() as (a, b):
            without = a.agent.pair_events
            a.on_event = events.append
            with_handler = a.agent.pair_events
            await exchange(a, b)
            await asyncio.gather(a.connect(), b.connect())
            a.on_event = None
            return without, with_handler, a.agent.pair_events or b.agent.pair_events

    assert run(scenario()) == (False, True, False)
    assert any(isinstance(event, PairStateChanged) for event in events)
