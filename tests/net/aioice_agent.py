"""An aioice (0.13) agent process for the namespace tests: the lines of :mod:`tests.net.ns_agent`.

``python -m tests.net.aioice_agent NAME --controlling|--controlled --stun HOST:PORT``. aioice lists
the namespace's interfaces itself (``ifaddr``, loopback and link-local left out) and gathers a
server-reflexive candidate for each IPv4 one from the STUN server.
"""

from __future__ import annotations

from typing import Any

import aioice

from .ns_agent import describe, exchange, parse_arguments, print_line, read_description, run_agent


async def session(name: str, controlling: bool, stun: tuple[str, int]) -> dict[str, Any]:
    """Gather, signal, connect, exchange hellos; the result line."""
    connection = aioice.Connection(ice_controlling=controlling, stun_server=stun)
    try:
        await connection.gather_candidates()
        print_line({
            "ufrag": connection.local_username,
            "pwd": connection.local_password,
            "candidates": [candidate.to_sdp() for candidate in connection.local_candidates],
        })
        remote = await read_description()
        connection.remote_username = remote["ufrag"]
        connection.remote_password = remote["pwd"]
        for line in remote["candidates"]:
            await connection.add_remote_candidate(
                aioice.Candidate.from_sdp(line.removeprefix("candidate:"))
            )
        await connection.add_remote_candidate(None)
        await connection.connect()
        received = await exchange(name, connection.send, connection.recv)
        # aioice keeps the selected pair of each component in a private dict (no public API).
        pair = connection._nominated[1]
        local, remote_candidate = pair.local_candidate, pair.remote_candidate
        return {
            "selected": {
                "local": describe(local.type, local.host, local.port),
                "remote": describe(remote_candidate.type, remote_candidate.host,
                                   remote_candidate.port),
            },
            "received": received,
        }
    finally:
        await connection.close()


def main() -> int:
    args = parse_arguments("an aioice ICE agent speaking JSON lines on stdin/stdout")
    return run_agent(session(args.name, args.controlling, args.stun))


if __name__ == "__main__":
    raise SystemExit(main())
