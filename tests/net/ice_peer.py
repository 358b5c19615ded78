"""An ICE peer process on loopback for the fault tests: it connects, then echoes until it is
killed (or its run time ends), signalling as JSON lines on stdin/stdout.

``python -m tests.net.ice_peer --controlled --config '{"consent_timeout": 8.0}'`` runs one
:class:`ice.Connection` gathering on 127.0.0.1 only:

1. prints its description: ``{"ufrag": ..., "pwd": ..., "candidates": [...]}``;
2. reads the peer's description (one line on stdin) and connects, then prints
   ``{"connected": true}``;
3. sends back every datagram it receives, until it is killed; if the connection fails it prints
   ``{"error": ...}`` and exits 1. It never lives longer than :data:`ns_agent.RUN_TIMEOUT`.

``--config`` takes :class:`ice.config.AgentConfig` fields as JSON (short consent timers, say).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import ice
from ice.config import AgentConfig

from .ns_agent import gather_signal_connect, print_line, run_agent


async def session(controlling: bool, config: AgentConfig) -> dict[str, Any]:
    connection = ice.Connection(
        controlling, include_loopback=True, interfaces=["127.0.0.1"], config=config
    )
    try:
        await gather_signal_connect(connection)
        print_line({"connected": True})
        while True:
            await connection.send(await connection.recv())
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="an ICE peer that echoes until it is killed")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", dest="controlling", action="store_true")
    role.add_argument("--controlled", dest="controlling", action="store_false")
    parser.add_argument("--config", type=json.loads, default={}, help="AgentConfig fields")
    args = parser.parse_args()
    return run_agent(session(args.controlling, AgentConfig(**args.config)))


if __name__ == "__main__":
    raise SystemExit(main())
