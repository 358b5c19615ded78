"""``aioice.ice`` as seen through :mod:`ice.compat.aioice`: aioice's :class:`Connection` as a
translation onto :class:`ice.aio.Connection`, which does all the ICE.

What is translated (docs/aiortc.md has the user's view):

- **Arguments.** ``stun_server`` and ``turn_server`` (``(host, port)``, names resolved when
  gathering starts) become one-element server lists; ``turn_ssl`` and ``turn_transport`` pick
  the ``turn:``/``turns:`` URI (RFC 7065), verified against the system's CAs as aioice does; a
  TURN server without a username and password is skipped, since it could not allocate
  (RFC 8656 §9.2); ``TransportPolicy.RELAY`` is ``relay_only``.
- **Knobs.** ``CONSENT_INTERVAL`` and ``CONSENT_FAILURES`` of this module, ``RETRY_MAX`` and
  ``RETRY_RTO`` of :mod:`~ice.compat.aioice.stun`, read when a ``Connection`` is made: left at
  aioice's values they change nothing (icestack keeps the RFCs' timers); changed, they become
  the agent's (:func:`agent_config`): the consent interval and timeout, the checks'
  retransmissions, and how long the peer's checks are awaited when ours can do no more
  (``peer_reflexive_wait``: one aioice transaction's span).
- **State that aiortc writes.** ``ice_controlling`` and ``remote_is_lite`` are icestack's
  ``controlling`` and ``remote_lite``, settable until checks start; ``set_selected_pair`` is
  ``force_selected_pair``.
- **Remote candidates** are listed as signalled (aioice keeps its own copies, drops those it
  cannot use and ignores one whose address it has); icestack also adds peer-reflexive ones.
- **Events.** :class:`ConnectionClosed` comes from :meth:`Connection.get_event` once the
  connection is closed: by :meth:`Connection.close`, or because ICE failed after connecting
  (consent lost, RFC 7675), which closes it as aioice does.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import logging
from typing import Any

from stun.transaction import TransactionConfig

from ...aio import Connection as IceConnection
from ...config import AgentConfig
from ...errors import IceError
from ...events import IceEvent, IceState, StateChanged
from . import stun
from .candidate import Candidate, from_ice, to_ice

__all__ = [
    "CONSENT_FAILURES",
    "CONSENT_INTERVAL",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "TransportPolicy",
    "agent_config",
]

_log = logging.getLogger("icestack.ice.compat")

#: aioice's consent freshness (RFC 7675): a check every ``CONSENT_INTERVAL`` seconds, consent
#: lost after ``CONSENT_FAILURES`` of them fail.
CONSENT_FAILURES = 6
CONSENT_INTERVAL = 5
_AIOICE_DEFAULTS = {"consent": (6, 5), "retry": (6, 0.5)}


class TransportPolicy(enum.Enum):
    """Which candidates to use (WebRTC's iceTransportPolicy)."""

    ALL = 0
    RELAY = 1


class ConnectionEvent:
    """Something that happened to a :class:`Connection`."""


class ConnectionClosed(ConnectionEvent):
    """The connection is closed: by :meth:`Connection.close`, or because ICE failed after it
    connected."""


def agent_config() -> AgentConfig:
    """The agent's configuration from aioice's module-level knobs as they are now: icestack's
    defaults for those left at aioice's values, translated for those changed."""
    changes: dict[str, Any] = {}
    if _AIOICE_DEFAULTS["consent"] != (CONSENT_FAILURES, CONSENT_INTERVAL):
        timeout = CONSENT_INTERVAL * CONSENT_FAILURES
        changes["consent_interval"] = CONSENT_INTERVAL
        changes["consent_timeout"] = timeout
        changes["disconnected_after"] = min(AgentConfig().disconnected_after, timeout / 2)
    if _AIOICE_DEFAULTS["retry"] != (stun.RETRY_MAX, stun.RETRY_RTO):
        changes["check_transaction"] = TransactionConfig(
            initial_rto=stun.RETRY_RTO,
            max_requests=stun.RETRY_MAX + 1,
            final_wait=2**stun.RETRY_MAX,
            min_rto=min(TransactionConfig().min_rto, stun.RETRY_RTO),
        )
        # The peer's checks (to a passive TCP candidate, say) are awaited as long as one of
        # aioice's transactions lasts: RTO + 2 RTO + ... + 2**RETRY_MAX RTO.
        changes["peer_reflexive_wait"] = stun.RETRY_RTO * (2 ** (stun.RETRY_MAX + 1) - 1)
    return AgentConfig(**changes)


def _turn_uri(host: str, port: int, ssl: bool, transport: str) -> str:
    host = f"[{host}]" if ":" in host else host
    if ssl:
        return f"turns:{host}:{port}?transport=tcp"
    return f"turn:{host}:{port}?transport={transport}"


def _address_key(candidate: Candidate) -> tuple[int, str, str, int]:
    return (candidate.component, candidate.transport.lower(), candidate.host, candidate.port)


class Connection:
    """An ICE connection for one media stream, with aioice's API, on :class:`ice.aio.Connection`
    (module docstring)."""

    def __init__(
        self,
        ice_controlling: bool,
        components: int = 1,
        stun_server: tuple[str, int] | None = None,
        turn_server: tuple[str, int] | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        turn_ssl: bool = False,
        turn_transport: str = "udp",
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        transport_policy: TransportPolicy = TransportPolicy.ALL,
        local_username: str | None = None,
        local_password: str | None = None,
    ) -> None:
        turn_servers = []
        if turn_server is not None and turn_username and turn_password is not None:
            uri = _turn_uri(*turn_server, turn_ssl, turn_transport)
            turn_servers.append((uri, turn_username, turn_password))
        elif turn_server is not None:
            _log.info("TURN server %s:%s skipped: no username and password", *turn_server)
        try:
            self._ice = IceConnection(
                ice_controlling,
                components=components,
                stun_servers=[stun_server] if stun_server is not None else [],
                turn_servers=turn_servers,
                relay_only=transport_policy is TransportPolicy.RELAY,
                use_ipv4=use_ipv4,
                use_ipv6=use_ipv6,
                local_username=local_username,
                local_password=local_password,
                config=agent_config(),
            )
        except IceError as exc:
            raise ValueError(str(exc)) from None
        self._ice.on_event = self._on_event
        self._remote_candidates: list[Candidate] = []
        self._remote_addresses: set[tuple[int, str, str, int]] = set()
        self._remote_end = False
        self._connected = False
        self._closed = False
        self._event_waiter: asyncio.Future[ConnectionEvent] | None = None
        self._closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<aioice-compat {self._ice!r}>"

    # ================================================================== what aiortc reads, writes

    @property
    def ice_controlling(self) -> bool:
        """Whether we are controlling; settable until checks start."""
        return self._ice.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        self._ice.controlling = value

    @property
    def remote_is_lite(self) -> bool:
        """Whether the peer is ICE-lite; settable until checks start (makes us controlling)."""
        return self._ice.remote_lite

    @remote_is_lite.setter
    def remote_is_lite(self, value: bool) -> None:
        self._ice.remote_lite = value

    @property
    def remote_username(self) -> str | None:
        return self._ice.remote_username

    @remote_username.setter
    def remote_username(self, value: str | None) -> None:
        self._ice.remote_username = value

    @property
    def remote_password(self) -> str | None:
        return self._ice.remote_password

    @remote_password.setter
    def remote_password(self, value: str | None) -> None:
        self._ice.remote_password = value

    @property
    def local_username(self) -> str:
        return self._ice.local_username

    @property
    def local_password(self) -> str:
        return self._ice.local_password

    @property
    def local_candidates(self) -> list[Candidate]:
        """Our candidates once gathered (none once closed)."""
        return [] if self._closed else [from_ice(c) for c in self._ice.local_candidates]

    @property
    def remote_candidates(self) -> list[Candidate]:
        """The peer's candidates as signalled (copies)."""
        return list(self._remote_candidates)

    def get_default_candidate(self, component: int) -> Candidate | None:
        """The UDP candidate of ``component`` with the lowest priority (aioice's choice among
        its candidates, which are all UDP)."""
        ours = [
            c
            for c in self.local_candidates
            if c.component == component and c.transport.lower() == "udp"
        ]
        return min(ours, key=lambda c: c.priority, default=None)

    # ================================================================== ICE

    async def gather_candidates(self) -> None:
        await self._ice.gather_candidates()

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a signalled candidate, or ``None`` for end-of-candidates; a candidate icestack
        cannot use, or with an address already added, is logged and ignored."""
        if self._remote_end:
            raise ValueError("Cannot add remote candidate after end-of-candidates.")
        if self._closed:
            return
        if remote_candidate is None:
            self._remote_end = True
            await self._ice.add_remote_candidate(None)
            return
        key = _address_key(remote_candidate)
        try:
            candidate = to_ice(remote_candidate)
        except IceError as exc:
            _log.info("remote candidate %r ignored: %s", remote_candidate, exc)
            return
        if key in self._remote_addresses:
            return
        self._remote_addresses.add(key)
        self._remote_candidates.append(copy.copy(remote_candidate))
        await self._ice.add_remote_candidate(candidate)

    async def connect(self) -> None:
        """Run the checks until every component has a selected pair; ``ConnectionError`` (an
        :class:`ice.IceConnectionError`) saying why when ICE fails."""
        await self._ice.connect()
        self._connected = True

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        """Use the pair of these foundations for ``component`` without checks, for a peer that
        does no ICE (:meth:`ice.aio.Connection.force_selected_pair`)."""
        local = next(
            (
                c
                for c in self.local_candidates
                if c.component == component and c.foundation == local_foundation
            ),
            None,
        )
        remote = next(
            (
                c
                for c in self._remote_candidates
                if c.component == component and c.foundation == remote_foundation
            ),
            None,
        )
        if local is None or remote is None:
            missing = "local" if local is None else "remote"
            raise ValueError(f"no {missing} candidate of component {component} has that foundation")
        self._ice.force_selected_pair(to_ice(local), to_ice(remote))

    # ================================================================== data

    async def send(self, data: bytes) -> None:
        await self._ice.send(data)

    async def sendto(self, data: bytes, component: int) -> None:
        await self._ice.sendto(data, component)

    async def recv(self) -> bytes:
        return await self._ice.recv()

    async def recvfrom(self) -> tuple[bytes, int]:
        return await self._ice.recvfrom()

    # ================================================================== ending

    async def close(self) -> None:
        """Close the connection; :class:`ConnectionClosed` follows."""
        await self._ice.close()
        if not self._closed:
            self._closed = True
            waiter, self._event_waiter = self._event_waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(ConnectionClosed())

    async def get_event(self) -> ConnectionEvent | None:
        """The next event (:class:`ConnectionClosed`), or ``None`` once closed; one caller at
        a time."""
        if self._event_waiter is not None:
            raise RuntimeError("get_event() is already being awaited")
        if self._closed:
            return None
        self._event_waiter = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._event_waiter)

    def _on_event(self, event: IceEvent) -> None:
        if (
            isinstance(event, StateChanged)
            and event.state is IceState.FAILED
            and self._connected
            and self._closing is None
        ):
            _log.info("ICE failed after connecting: closing (%s)", self._ice.failure_reason())
            self._closing = asyncio.ensure_future(self.close())
