"""Client waits that must end with their reason, run inside a namespace the test built.

``python -m tests.net.ns_client_waits CASE [ARG]`` runs one case and prints one JSON line per
client tried: ``{"client": ..., "error": "module.Class", "message": ...}`` (``error`` is null
when the call succeeded, which no case expects):

* ``tcp-connect PORT``: StunClient, binding() and TurnClient connect over TCP to
  ``127.0.0.1:PORT``, whose SYNs the namespace's firewall drops, with ``connect_timeout=1``;
* ``unreachable HOST``: a Binding request and an Allocate over UDP to ``HOST`` (a documentation
  address) from a namespace with no route to it, with the default 39.5 s schedule;
* ``resolve NAME``: StunClient and TurnClient connect to ``NAME`` with ``connect_timeout=1``
  where the namespace's resolver never answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

from stun.aio import StunClient, binding
from stun.reader_errors import error_kind
from turn import TurnClient

#: How long a connection may take in the tcp-connect case.
CONNECT_TIMEOUT = 1.0


async def report(client: str, attempt: Callable[[], Awaitable[object]]) -> None:
    outcome: dict[str, str | None]
    try:
        await attempt()
    except Exception as exc:
        outcome = {"client": client, "error": error_kind(exc), "message": str(exc)}
    else:
        outcome = {"client": client, "error": None, "message": ""}
    print(json.dumps(outcome), flush=True)


async def tcp_connect(port: int) -> None:
    async def stun_client() -> None:
        client = await StunClient.connect(
            "127.0.0.1", port, transport="tcp", connect_timeout=CONNECT_TIMEOUT
        )
        await client.close()

    async def turn_client() -> None:
        client = await TurnClient.connect(
            "127.0.0.1", port, transport="tcp", username="alice", password="wonderland",
            connect_timeout=CONNECT_TIMEOUT,
        )  # fmt: skip
        await client.close()

    await report("StunClient", stun_client)
    await report("binding", lambda: binding("127.0.0.1", port, transport="tcp", connect_timeout=1))
    await report("TurnClient", turn_client)


async def unreachable(host: str) -> None:
    async def allocate() -> None:
        client = await TurnClient.connect(host, username="alice", password="wonderland")
        async with client:
            await client.allocate()

    await report("binding", lambda: binding(host))
    await report("TurnClient", allocate)


async def resolve(name: str) -> None:
    async def stun_client() -> None:
        await (await StunClient.connect(name, connect_timeout=CONNECT_TIMEOUT)).close()

    async def turn_client() -> None:
        client = await TurnClient.connect(
            name, username="alice", password="wonderland", connect_timeout=CONNECT_TIMEOUT
        )
        await client.close()

    await report("StunClient", stun_client)
    await report("TurnClient", turn_client)


def main() -> None:
    case, argument = sys.argv[1], sys.argv[2]
    if case == "tcp-connect":
        asyncio.run(tcp_connect(int(argument)))
    elif case == "unreachable":
        asyncio.run(unreachable(argument))
    elif case == "resolve":
        asyncio.run(resolve(argument))
    else:
        raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
