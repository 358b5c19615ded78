"""One side of ``bench.ice_turn_netns``: an ICE agent, icestack's or aioice's, relay-only through a
TURN server over TLS, speaking JSON lines on stdin/stdout.

``python -m bench.turn_agent icestack|aioice --controlling|--controlled --server HOST:PORT
--user U --password P --cafile FILE`` gathers (its relayed candidate, over TLS), prints
``{"ufrag", "pwd", "candidates"}``, reads the peer's line, connects, checks that one datagram
crosses each way, and prints ``{"gather": s, "connect": s}``: the seconds gathering took, and
from reading the peer's line until ``connect()`` returned. Every run is bounded (30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aioice

import ice
from stun.tls import client_context

#: The bound on one agent's whole run.
RUN_TIMEOUT = 30.0


def connection(args: argparse.Namespace) -> Any:
    host, _, port = args.server.rpartition(":")
    if args.library == "icestack":
        return ice.Connection(
            args.controlling,
            turn_servers=[(f"turns:{host}:{port}", args.user, args.password)],
            relay_only=True,
            turn_tls_cafile=args.cafile,
        )
    return aioice.Connection(
        ice_controlling=args.controlling,
        turn_server=(host, int(port)),
        turn_username=args.user,
        turn_password=args.password,
        turn_transport="tcp",
        # aioice hands turn_ssl to loop.create_connection(ssl=...): a context works, its hint
        # says bool
        turn_ssl=client_context(args.cafile),  # type: ignore[arg-type]
        transport_policy=aioice.TransportPolicy.RELAY,
    )


async def session(args: argparse.Namespace) -> dict[str, float]:
    agent = connection(args)
    loop = asyncio.get_running_loop()
    try:
        started = time.monotonic()
        await agent.gather_candidates()
        gathered = time.monotonic() - started
        candidates = [candidate.to_sdp() for candidate in agent.local_candidates]
        print(json.dumps({"ufrag": agent.local_username, "pwd": agent.local_password,
                          "candidates": candidates}), flush=True)  # fmt: skip
        line = await loop.run_in_executor(None, sys.stdin.readline)
        peer = json.loads(line)
        started = time.monotonic()
        agent.remote_username = peer["ufrag"]
        agent.remote_password = peer["pwd"]
        parse = ice.Candidate.from_sdp if args.library == "icestack" else aioice.Candidate.from_sdp
        for text in peer["candidates"]:
            await agent.add_remote_candidate(parse(text))
        await agent.add_remote_candidate(None)
        await agent.connect()
        connected = time.monotonic() - started
        if args.controlling:
            await agent.send(b"\x80ping")
            assert await agent.recv() == b"\x80pong"
        else:
            assert await agent.recv() == b"\x80ping"
            await agent.send(b"\x80pong")
        return {"gather": gathered, "connect": connected}
    finally:
        await agent.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=("icestack", "aioice"))
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", dest="controlling", action="store_true")
    role.add_argument("--controlled", dest="controlling", action="store_false")
    parser.add_argument("--server", required=True, metavar="HOST:PORT")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cafile", required=True)
    args = parser.parse_args()
    result = asyncio.run(asyncio.wait_for(session(args), RUN_TIMEOUT))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
