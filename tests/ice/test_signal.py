"""ice.base_sockets.Signal: the "something changed" wake-up of a connection's waits
(connect, gathering, recv)."""

from __future__ import annotations

import asyncio

from ice.base_sockets import Signal


def test_a_fire_wakes_every_waiter_in_the_next_iteration_of_the_loop() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        signal = Signal()
        waiters = [asyncio.ensure_future(signal.wait(loop)) for _ in range(3)]
        await asyncio.sleep(0)  # they wait now
        assert not any(waiter.done() for waiter in waiters)
        signal.fire()
        # One loop callback per waiter: woken by the time this task runs again (a shared
        # future behind asyncio.shield took three iterations).
        await asyncio.sleep(0)
        assert all(waiter.done() for waiter in waiters)
        signal.fire()  # nobody waits: nothing happens

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_nothing_behind_and_the_others_still_wake() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        signal = Signal()
        kept = asyncio.ensure_future(signal.wait(loop))
        for _ in range(100):  # a caller that waits with a timeout, again and again
            gone = asyncio.ensure_future(signal.wait(loop))
            await asyncio.sleep(0)
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
            assert gone.cancelled()
        assert signal._waiters is not None and len(signal._waiters) == 1
        signal.fire()
        await asyncio.wait_for(kept, 5)
        assert signal._waiters is None

    asyncio.run(scenario())
