"""The STUN and TURN servers a :class:`~ice.aio.Connection` was given, from names to addresses.

Names are resolved when gathering starts, all at once, each for at most ``gathering_timeout``: a
resolver that never answers must not hold gathering for its own timeouts (seconds per name, per
attempt), server after server. A server whose name does not resolve in time, or at all, is
skipped with a warning that says why, and gathering goes on with the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from stun.address import Address
from stun.aio import resolve as resolve_host
from stun.errors import LocalProtocolError as StunLocalProtocolError

from .config import AgentConfig, RelayServer
from .connection_options import StunServer, TurnServer

_log = logging.getLogger("icestack.ice")


async def resolve_servers(
    config: AgentConfig, stun: list[StunServer] | None, turn: list[TurnServer] | None
) -> AgentConfig:
    """``config`` with the given servers resolved in place of its own (``None``: keep its)."""
    limit = config.gathering_timeout
    stun_addresses, turn_addresses = await asyncio.gather(
        asyncio.gather(*(_resolve("STUN", s[0], s[1], limit) for s in stun or ())),
        asyncio.gather(*(_resolve("TURN", s[0], s[1], limit) for s in turn or ())),
    )
    if stun is not None:
        servers = tuple(address for address in stun_addresses if address is not None)
        config = dataclasses.replace(config, stun_servers=servers)
    if turn is not None:
        relays = tuple(
            RelayServer(address=address, username=username, password=password)
            for address, (_, _, username, password) in zip(turn_addresses, turn, strict=True)
            if address is not None
        )
        config = dataclasses.replace(config, turn_servers=relays)
    return config


async def _resolve(kind: str, host: str, port: int, limit: float) -> Address | None:
    """A server's address, or ``None`` (logged) when its name does not resolve within
    ``limit`` seconds."""
    try:
        return await asyncio.wait_for(resolve_host(host, port), limit)
    except StunLocalProtocolError as exc:
        reason = str(exc)
    except TimeoutError:
        reason = f"{host!r} was not resolved within {limit:g} s (gathering_timeout)"
    if kind == "STUN":
        _log.warning("STUN server %s skipped: %s", Address(host, port), reason)
    else:
        _log.warning("TURN server %s skipped: %s", Address(host, port), reason)
    return None
