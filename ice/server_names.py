"""The STUN and TURN servers a :class:`~ice.aio.Connection` was given, from names to addresses.

Names are resolved when gathering starts, all at once, each for at most ``gathering_timeout``: a
resolver that never answers must not hold gathering for its own timeouts (seconds per name, per
attempt), server after server. A server whose name does not resolve in time, or at all, is
skipped with a warning that says why, and gathering goes on with the others. TURN REST API
credentials (:class:`~ice.connection_options.TurnRestCredentials`) are made here too, from the
wall clock of now.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time

from stun.address import Address
from stun.aio import resolve as resolve_host
from stun.errors import LocalProtocolError as StunLocalProtocolError

from .config import AgentConfig, RelayServer
from .connection_options import StunServer, TurnRestCredentials, TurnServer

_log = logging.getLogger("icestack.ice")


async def resolve_servers(
    config: AgentConfig, stun: list[StunServer] | None, turn: list[TurnServer] | None
) -> AgentConfig:
    """``config`` with the given servers resolved in place of its own (``None``: keep its)."""
    limit = config.gathering_timeout
    stun_addresses: list[Address | None] = []
    turn_addresses: list[Address | None] = []
    if stun or turn:  # (no futures made for nothing: they would outlive the call as garbage)
        stun_addresses, turn_addresses = await asyncio.gather(
            asyncio.gather(*(_resolve("STUN", s[0], s[1], limit) for s in stun or ())),
            asyncio.gather(
                *(
                    _resolve("TURN", s.host, s.port, limit, s.transport.is_stream)
                    for s in turn or ()
                )
            ),
        )
    if stun is not None:
        servers = tuple(address for address in stun_addresses if address is not None)
        config = dataclasses.replace(config, stun_servers=servers)
    if turn is not None:
        now = time.time()
        relays = tuple(
            _relay_server(address, server, now)
            for address, server in zip(turn_addresses, turn, strict=True)
            if address is not None
        )
        config = dataclasses.replace(config, turn_servers=relays)
    return config


def _relay_server(address: Address, server: TurnServer, unix_time: float) -> RelayServer:
    credentials = server.credentials
    if isinstance(credentials, TurnRestCredentials):
        credentials = credentials.make(unix_time)
    username, password = credentials
    return RelayServer(
        address=address,
        username=username,
        password=password,
        transport=server.transport,
        server_name=server.host,
    )


async def _resolve(
    kind: str, host: str, port: int, limit: float, stream: bool = False
) -> Address | None:
    """A server's address, or ``None`` (logged) when its name does not resolve within
    ``limit`` seconds. An IP literal is its own address: no resolver thread is started for it."""
    with contextlib.suppress(ValueError):
        return Address(ipaddress.ip_address(host).compressed, port)
    try:
        return await asyncio.wait_for(resolve_host(host, port, stream=stream), limit)
    except StunLocalProtocolError as exc:
        reason = str(exc)
    except TimeoutError:
        reason = f"{host!r} was not resolved within {limit:g} s (gathering_timeout)"
    if kind == "STUN":
        _log.warning("STUN server %s skipped: %s", Address(host, port), reason)
    else:
        _log.warning("TURN server %s skipped: %s", Address(host, port), reason)
    return None
