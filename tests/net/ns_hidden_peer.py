"""One side of the namespace test of mDNS after a restart (:mod:`tests.net.test_ice_interfaces`),
signalling as JSON lines on stdin/stdout like :mod:`tests.net.ns_agent`.

``python -m tests.net.ns_hidden_peer a``: a controlling :class:`ice.Connection` on every address
of the namespace — none at first: it gathers, prints ``{"gathered": [...]}``, waits for a line on
stdin (the test gives its link an address meanwhile) and restarts; then it signals and connects
as ns_agent does, says hello, and prints ``{"unresolvable": [...], "remote": [...], "received":
TEXT}``: why it could not resolve the peer's ``.local`` candidate (nothing, when it could), the
types and addresses of its remote candidates, and the peer's hello.

``python -m tests.net.ns_hidden_peer b``: a controlled connection that hides its host candidates
behind mDNS names: it signals, connects, says hello and prints ``{"received": TEXT}``.

Errors print ``{"error": ...}``; each run is bounded (ns_agent's bound).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import ice
from ice.events import IceEvent
from ice.mdns import CandidateUnresolvable

from .ns_agent import exchange, gather_signal_connect, print_line, run_agent

#: How long A waits for the peer's name to be resolved or reported once connected.
NAME_WAIT = 5.0
POLL = 0.05


async def restarting_side() -> dict[str, Any]:
    connection = ice.Connection(True, use_ipv6=False)
    unresolvable: list[str] = []

    def note(event: IceEvent) -> None:
        if isinstance(event, CandidateUnresolvable):
            unresolvable.append(event.reason)

    connection.on_event = note
    async with connection:
        await connection.gather_candidates()
        print_line({"gathered": [str(c.address) for c in connection.local_candidates]})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await connection.restart()
        await gather_signal_connect(connection)
        received = await exchange("a", connection.send, connection.recv)
        for _ in range(int(NAME_WAIT / POLL)):  # the name's answer may come after the checks
            remote = [f"{c.type.value} {c.address}" for c in connection.remote_candidates]
            if unresolvable or any(line.startswith("host ") for line in remote):
                break
            await asyncio.sleep(POLL)
        return {"unresolvable": unresolvable, "remote": remote, "received": received}


async def hiding_side() -> dict[str, Any]:
    connection = ice.Connection(False, use_ipv6=False, mdns_hide_host_candidates=True)
    async with connection:
        await gather_signal_connect(connection)
        return {"received": await exchange("b", connection.send, connection.recv)}


def main() -> int:
    return run_agent(restarting_side() if sys.argv[1:] == ["a"] else hiding_side())


if __name__ == "__main__":
    raise SystemExit(main())
