"""ice.timers: the one timer every Connection of a loop shares, on a real event loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st

from ice.timers import SharedTimers, TimerEntry, shared_timers


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
        st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(1, 30))),
        min_size=1,
        max_size=30,
    )
)
def test_every_owner_fires_once_at_its_last_deadline_in_deadline_order(
    moves: list[tuple[int, int | None]],
) -> None:
    """However the owners move their deadlines (earlier, later, cancelled), each fires once, at
    the last deadline it asked for, none early, and in the order of those deadlines."""

    async def main() -> tuple[list[tuple[str, float]], dict[str, float], float]:
        loop = asyncio.get_running_loop()
        timers = SharedTimers(loop)
        fired: list[tuple[str, float]] = []
        owners = [Owner(str(i), fired) for i in range(4)]
        now = loop.time()
        last: dict[str, float] = {}
        for index, delay in moves:
            deadline = None if delay is None else now + delay / 1000
            timers.schedule(owners[index], deadline)
            if deadline is None:
                last.pop(owners[index].name, None)
            else:
                last[owners[index].name] = deadline
        fired_at: dict[str, float] = {}

        def record(owner: Owner, deadline: float) -> None:
            fired.append((owner.name, deadline))
            fired_at[owner.name] = loop.time()

        for owner in owners:
            owner._on_timer = functools.partial(record, owner)  # type: ignore[method-assign]
        await _settle(loop, now + 0.031)
        early = min((fired_at[name] - last[name] for name in fired_at), default=0.0)
        return fired, last, early

    fired, last, early = asyncio.run(main())
    assert sorted(fired) == sorted(last.items())
    assert [deadline for _, deadline in fired] == sorted(last.values())
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
