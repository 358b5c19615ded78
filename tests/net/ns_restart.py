"""Two ICE connections in one process inside a network namespace, for the test of a restart
after an interface address changed (:mod:`tests.net.test_ice_interfaces`).

``python -m tests.net.ns_restart A_INTERFACE B_INTERFACE`` connects A (gathering on the
interface named ``A_INTERFACE`` only) to B (on ``B_INTERFACE``) and prints a JSON line
``{"connected": {"a": ADDRESS}}``; then it waits for one line on stdin (the test changes A's
interface addresses meanwhile), restarts both, connects again and prints
``{"lost": [...], "a": [...], "selected": ADDRESS, "echo": TEXT}``: the candidates A lost, A's
host candidates after the restart, the local address of A's new selected pair, and what came
back through it. Errors print ``{"error": ...}``; the whole run is bounded (ns_agent's bound).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import ice
from ice.events import CandidateLost, IceEvent

from .ns_agent import print_line, run_agent

#: The bound on each wait.
WAIT = 10.0


async def signal_both(a: ice.Connection, b: ice.Connection) -> None:
    for target, source in ((a, b), (b, a)):
        target.set_remote_credentials(source.local_username, source.local_password)
        for candidate in source.local_candidates:
            await target.add_remote_candidate(candidate)
        await target.add_remote_candidate(None)


async def connect_and_echo(a: ice.Connection, b: ice.Connection, text: str) -> str:
    await signal_both(a, b)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), WAIT)
    await a.send(b"\x80" + text.encode())
    await b.send(await asyncio.wait_for(b.recv(), WAIT))
    return (await asyncio.wait_for(a.recv(), WAIT))[1:].decode()


def local_address(connection: ice.Connection) -> str:
    pair = connection.selected_pair()
    assert pair is not None
    return str(pair.local_base)


async def session(a_interface: str, b_interface: str) -> dict[str, Any]:
    a = ice.Connection(True, interfaces=[a_interface], use_ipv6=False)
    b = ice.Connection(False, interfaces=[b_interface], use_ipv6=False)
    lost: list[str] = []

    def note(event: IceEvent) -> None:
        if isinstance(event, CandidateLost):
            lost.append(f"{event.candidate.address} {event.reason}")

    a.on_event = note
    async with a, b:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        await connect_and_echo(a, b, "before")
        print_line({"connected": {"a": local_address(a)}})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.wait_for(asyncio.gather(a.restart(), b.restart()), WAIT)
        after = [str(c.address) for c in a.local_candidates]
        echo = await connect_and_echo(a, b, "after the restart")
        return {"lost": lost, "a": after, "selected": local_address(a), "echo": echo}


def main() -> int:
    return run_agent(session(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    raise SystemExit(main())
