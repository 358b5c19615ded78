"""ice.timers: the one timer every Connection of a loop shares, on a real event loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st

from ice.timers import LAZY_AFTER, LAZY_SLACK, SharedTimers, TimerEntry, shared_timers


class Owner:
    def __init__(self, name: str, fired: list[tuple[str, float]]) -> None:
        self.name = name
        self.fired = fired
        self._timer_entry: TimerEntry | None = None

    def _on_timer(self, deadline: float) -> None:
        self.fired.append((self.name, deadline))


async def _settle(loop: asyncio.AbstractEventLoop, until: float) -> None:
    await asyncio.sleep(max(0.0, until - loop.time()) + 0.02)


def test_owners_fire_in_deadline_order_and_only_at_their_last_deadline() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        fired: list[tuple[str, float]] = []
        a, b, c = Owner("a", fired), Owner("b", fired), Owner("c", fired)
        now = loop.time()
        timers.schedule(a, now + 0.03)
        timers.schedule(b, now + 0.01)
        timers.schedule(c, now + 0.02)
        timers.schedule(a, now + 0.005)  # moved earlier: the old entry is skipped
        timers.schedule(c, None)  # cancelled
        await _settle(loop, now + 0.03)
        assert a._timer_entry is None and b._timer_entry is None
        return [(name, round(deadline - now, 3)) for name, deadline in fired]

    assert asyncio.run(main()) == [("a", 0.005), ("b", 0.01)]


def test_a_deadline_moved_later_stays_in_its_entry_and_fires_once_at_the_last() -> None:
    """Moving a deadline later (not the armed one) pushes nothing: the owner's entry takes the
    new deadline and is moved there when it comes up; moving it earlier again is a new entry."""

    async def main() -> tuple[list[int], list[tuple[str, float]]]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        fired: list[tuple[str, float]] = []
        a, b, c = Owner("a", fired), Owner("b", fired), Owner("c", fired)
        now = loop.time()
        timers.schedule(a, now + 0.005)  # the armed one
        sizes = []
        for delay in (0.01, 0.02, 0.03):
            timers.schedule(b, now + delay)
            sizes.append(len(timers._heap))
        timers.schedule(c, now + 0.01)
        timers.schedule(c, now + 0.04)
        timers.schedule(c, now + 0.02)  # earlier than its last: a new entry
        await _settle(loop, now + 0.03)
        return sizes, [(name, round(deadline - now, 3)) for name, deadline in fired]

    sizes, fired = asyncio.run(main())
    assert sizes == [2, 2, 2]
    assert fired == [("a", 0.005), ("c", 0.02), ("b", 0.03)]


@settings(max_examples=15, deadline=None)
@given(
    moves=st.lists(
        st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(1, 30)), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_every_owner_fires_once_at_its_last_deadline_in_deadline_order(
    moves: list[tuple[int, int | None, bool]],
) -> None:
    """However the owners move their deadlines (earlier, later, cancelled; near, or far from
    the ``now`` given, which may fire late), each fires once, at the last deadline it asked
    for, none early; those asked near, in the order of their deadlines."""

    async def main() -> tuple[list[tuple[str, float]], dict[str, float], set[str], float]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        fired: list[tuple[str, float]] = []
        owners = [Owner(str(i), fired) for i in range(4)]
        now = loop.time()
        last: dict[str, float] = {}
        for index, delay, lazy in moves:
            deadline = None if delay is None else now + delay / 1000
            # Far: said to be LAZY_AFTER ahead of the caller's now (a clock read long ago).
            timers.schedule(owners[index], deadline, now - LAZY_AFTER if lazy else now)
            if deadline is None:
                last.pop(owners[index].name, None)
            else:
                last[owners[index].name] = deadline
        # Which wait with the far ones: a move later keeps the owner's entry, and its kind.
        far = {o.name for o in owners if o._timer_entry is not None and o._timer_entry[4]}
        fired_at: dict[str, float] = {}

        def record(owner: Owner, deadline: float) -> None:
            fired.append((owner.name, deadline))
            fired_at[owner.name] = loop.time()

        for owner in owners:
            owner._on_timer = functools.partial(record, owner)  # type: ignore[method-assign]
        await _settle(loop, now + 0.031 + LAZY_SLACK)
        early = min((fired_at[name] - last[name] for name in fired_at), default=0.0)
        return fired, last, far, early

    fired, last, far, early = asyncio.run(main())
    assert sorted(fired) == sorted(last.items())
    near = [deadline for name, deadline in fired if name not in far]
    assert near == sorted(near)
    assert early >= -0.001  # the loop may run a timer up to its clock's resolution early


def test_a_failing_owner_does_not_stop_the_others() -> None:
    class Broken(Owner):
        def _on_timer(self, deadline: float) -> None:
            raise RuntimeError("a bug")

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        fired: list[tuple[str, float]] = []
        now = loop.time()
        timers.schedule(Broken("x", fired), now + 0.01)
        timers.schedule(Owner("y", fired), now + 0.01)
        await _settle(loop, now + 0.01)
        return [name for name, _ in fired]

    assert asyncio.run(main()) == ["y"]


def test_stale_entries_are_swept_so_the_heap_stays_bounded() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        owners = [Owner(str(i), []) for i in range(10)]
        for step in range(1000):  # every owner moves its deadline again and again
            for owner in owners:
                timers.schedule(owner, loop.time() + 60 + step)
        size = len(timers._heap)
        for owner in owners:
            timers.schedule(owner, None)
        return size

    assert asyncio.run(main()) <= 2 * 10 + 64 + 1


def test_one_shared_timer_per_loop() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        return shared_timers(loop) is shared_timers(loop)

    assert asyncio.run(main())


def test_a_finished_loop_is_not_kept_by_its_shared_timer() -> None:
    """The per-loop table holds its timers weakly by loop; the timers must not hold the loop
    back (a value that refers to its weak key keeps both forever) once its connections are
    closed (their deadlines cancelled)."""
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        owner = Owner("a", [])
        shared_timers(loop).schedule(owner, loop.time() + 60.0)
        shared_timers(loop).schedule(owner, None)  # as a closed connection does

    asyncio.run(main())
    gc.collect()
    assert loops[0]() is None


def test_a_late_loop_runs_the_loop_again_before_firing_what_fell_due_meanwhile() -> None:
    """Deadlines that passed while the loop was busy fire a slice per iteration, with the
    loop's other work (its reads) in between, as per-connection ``call_at`` handles would."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        order: list[str] = []

        class Recorder(Owner):
            def _on_timer(self, deadline: float) -> None:
                order.append(self.name)
                loop.call_soon(order.append, f"after {self.name}")  # the loop's next iteration

        now = loop.time()
        timers.schedule(Recorder("a", []), now + 0.001)
        timers.schedule(Recorder("b", []), now + 0.010)
        time.sleep(0.02)  # the loop is late: both deadlines have passed when it looks
        await _settle(loop, now + 0.01)
        return order

    assert asyncio.run(main()) == ["a", "after a", "b", "after b"]


def test_closed_owners_are_not_held_until_their_old_deadlines() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        owners = [Owner(str(i), []) for i in range(200)]
        for owner in owners:
            timers.schedule(owner, loop.time() + 3600)
        for owner in owners:
            timers.schedule(owner, None)  # closed
        return sum(1 for entry in timers._heap if entry[2] in owners)

    assert asyncio.run(main()) == 0


def test_a_cancelled_owner_is_released_at_once_not_at_its_old_deadline() -> None:
    """A closed connection cancels its deadline: the shared heap must not keep it (and its whole
    object graph) alive until the hour-away deadline comes or a sweep happens."""

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        keeper = Owner("keeper", [])
        timers.schedule(keeper, loop.time() + 3600)  # the heap stays in use
        owner = Owner("closed", [])
        timers.schedule(owner, loop.time() + 3600)
        timers.schedule(owner, loop.time() + 1800)  # moved: the older entry is stale
        timers.schedule(owner, None)  # closed
        gone = weakref.ref(owner)
        del owner
        gc.collect()
        return gone() is None, keeper._timer_entry is not None

    assert asyncio.run(main()) == (True, True)


class Batch(Owner):
    """An owner that records its name, and marks the loop's next iteration after it: owners
    fired by one wake-up come before every mark."""

    def __init__(self, name: str, order: list[str], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name, [])
        self.order = order
        self.loop = loop

    def _on_timer(self, deadline: float) -> None:
        self.order.append(self.name)
        self.loop.call_soon(self.order.append, "|")


def test_far_deadlines_fire_together_within_the_slack() -> None:
    """Deadlines set LAZY_AFTER or more ahead of the caller's now wait up to LAZY_SLACK after
    the first of them, and then fire in one wake-up; a near one is armed for its own time."""

    async def main() -> tuple[list[str], bool, bool]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        order: list[str] = []
        now = loop.time()
        said = now - LAZY_AFTER  # far from the clock reading the caller gives
        for name, delay in (("a", 0.005), ("b", 0.02), ("c", 0.04)):
            timers.schedule(Batch(name, order, loop), now + delay, said)
        armed_lazily = timers._armed_at == now + 0.005 + LAZY_SLACK
        near = Batch("near", order, loop)
        timers.schedule(near, now + 0.3, now)
        armed_near = timers._armed_at == now + 0.005 + LAZY_SLACK
        timers.schedule(near, None)
        await _settle(loop, now + 0.005 + LAZY_SLACK)
        return order, armed_lazily, armed_near

    order, armed_lazily, armed_near = asyncio.run(main())
    assert armed_lazily and armed_near
    assert order == ["a", "b", "c", "|", "|", "|"]


def test_a_wake_up_on_time_takes_the_far_deadlines_already_past_along() -> None:
    async def main() -> tuple[list[str], float | None]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        order: list[str] = []
        now = loop.time()
        timers.schedule(Batch("far", order, loop), now + 0.005, now - LAZY_AFTER)
        timers.schedule(Batch("near", order, loop), now + 0.02, now)
        armed = timers._armed_at
        await _settle(loop, now + 0.02)
        return order, None if armed is None else armed - now

    order, armed = asyncio.run(main())
    assert armed is not None and round(armed, 6) == 0.02
    assert sorted(order[:2]) == ["far", "near"] and order[2:] == ["|", "|"]


def test_a_deadline_moved_far_later_waits_in_the_lazy_heap() -> None:
    """A near deadline its owner moves LAZY_AFTER or more later is filed with the far ones once
    it comes up (nothing is pushed when it is moved)."""

    async def main() -> tuple[bool, bool, float | None]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        first, moved = Owner("first", []), Owner("moved", [])
        now = loop.time()
        timers.schedule(first, now + 0.005, now)
        timers.schedule(moved, now + 0.01, now)
        timers.schedule(moved, now + 0.01 + LAZY_AFTER, now)  # later, in place
        in_place = moved._timer_entry is not None and moved._timer_entry[0] == now + 0.01
        await _settle(loop, now + 0.005)  # "first" fired: "moved" came up and was filed
        entry = moved._timer_entry
        lazy = entry is not None and entry[4] and entry[0] == now + 0.01 + LAZY_AFTER
        armed = timers._armed_at
        timers.schedule(moved, None)
        return in_place, lazy, None if armed is None else armed - now

    in_place, lazy, armed = asyncio.run(main())
    assert in_place and lazy
    assert armed is not None and round(armed, 6) == round(0.01 + LAZY_AFTER + LAZY_SLACK, 6)


def test_closed_owners_of_far_deadlines_are_not_held_either() -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        owners = [Owner(str(i), []) for i in range(200)]
        for owner in owners:
            timers.schedule(owner, loop.time() + 3600, loop.time())
        far = sum(1 for entry in timers._lazy if entry[2] in owners)
        for owner in owners:
            timers.schedule(owner, None)  # closed
        return far, sum(1 for e in timers._heap + timers._lazy if e[2] in owners)

    assert asyncio.run(main()) == (200, 0)
