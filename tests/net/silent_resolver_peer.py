"""Run inside a private network and mount namespace by ``tests/net/test_ice_faults.py``: a DNS
server on 127.0.0.1:53 that never answers (the namespace's resolv.conf points there, with long
timeouts), one STUN server name that must go to it, and our own STUN server by its IP literal.
Prints one JSON line: the warnings logged, and how many requests our STUN server got."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

from ice import Connection
from ice.config import AgentConfig
from stun.aio import StunServer

UNRESOLVABLE = "stun.unresolvable.test"


async def main() -> None:
    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("icestack.ice").addHandler(Keep(logging.WARNING))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 53))  # reads nothing, answers nothing
        async with StunServer() as stun:
            listener = await stun.listen("udp", "127.0.0.1", 0)
            connection = Connection(
                True,
                stun_servers=[(UNRESOLVABLE, 3478), ("127.0.0.1", listener.address.port)],
                include_loopback=True,
                interfaces=["127.0.0.1"],
                use_ipv6=False,
                config=AgentConfig(gathering_timeout=0.5),
            )
            async with connection:
                await connection.gather_candidates()
            asked = sum(stun.server.stats.counts.values())
    print(json.dumps({"warnings": warnings, "asked": asked}), flush=True)
    # The resolver's thread still waits for the silent DNS server (getaddrinfo cannot be
    # cancelled), and asyncio.run would wait for it at exit: this process ends here instead.
    os._exit(0)


asyncio.run(main())
