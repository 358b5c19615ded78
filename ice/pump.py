"""asyncio layer: how an :class:`~ice.aio.Connection` drives its sans-IO agent (architecture.md
§2) — :class:`AgentPump`, the half of the connection that sends what the agent drains, hands its
events over and keeps its one timer.

Theory of operation. After anything reaches the agent, :meth:`AgentPump._pump` sends what
:meth:`~ice.agent.Agent.datagrams_to_send` returns — from a UDP base's socket, or on the TCP/TLS
connection to a TURN server whose label the datagram carries (:mod:`ice.relay_streams`) — carries
out the agent's commands for ICE-TCP (:mod:`ice.tcp_sockets`) and TURN connections, hands the
events to the connection (``_drain_events``), and moves its one deadline to
:meth:`~ice.agent.Agent.get_timer` in the loop's timer that all connections share
(:mod:`ice.timers`). Working out that deadline is the costly part, so a burst of
relayed data re-arms it once, at the end of the loop iteration (``timer_later``,
:meth:`AgentPump._pump_soon`). A bug of the agent — an exception from ``handle_timer`` or from a
pump — is contained and counted, and the timer is armed again no sooner than Ta later, so that
the connection neither stops nor spins.
"""

from __future__ import annotations

import asyncio

from stun.address import Address
from stun.datagram import Datagram
from stun.reader_errors import TIMER, ReaderErrors

from .agent import Agent
from .base_sockets import BaseSocket, DataPaths
from .checklist import CandidatePair
from .config import AgentConfig
from .events import IceEvent
from .relay_streams import RelayStreams
from .tcp_sockets import TcpSockets
from .timers import SharedTimers, TimerEntry


class AgentPump:
    """The driving half of :class:`~ice.aio.Connection` (module docstring); the connection holds
    the state declared here and hands the agent's events over in ``_drain_events``."""

    #: What the pump sets; the rest of the connection's state is in its own __slots__.
    __slots__ = ("_pump_due", "_timer_deadline")

    _agent: Agent | None
    _loop: asyncio.AbstractEventLoop
    _config: AgentConfig
    _closed: bool
    _bases: dict[Address, BaseSocket]
    _data_paths: DataPaths
    _relay_streams: RelayStreams | None
    _tcp: TcpSockets | None
    _timers: SharedTimers
    #: This connection's current deadline's entry in ``_timers`` (``None``: none).
    _timer_entry: TimerEntry | None
    _timer_deadline: float | None
    #: A pump is due in this iteration of the loop (:meth:`_pump_soon`).
    _pump_due: bool
    reader_errors: ReaderErrors
    timer_errors: ReaderErrors

    def _drain_events(self, taken: list[IceEvent]) -> None:
        raise NotImplementedError

    def _pump(
        self,
        not_before: float | None = None,
        *,
        timer_later: bool = False,
        now: float | None = None,
    ) -> None:
        """Send what the agent wants sent, handle its events, re-arm the timer (no earlier than
        ``not_before``, if given) — with ``timer_later``, once at the end of this iteration of
        the loop, for the whole burst of data that called it (the timer is the costly part).
        ``now``: the loop's time, if the caller has just read it."""
        agent = self._agent
        if agent is None or self._closed:
            return
        if now is None:
            now = self._loop.time()
        if self._data_paths.paths:
            self._data_paths.flush(now)
        streams = self._relay_streams
        if streams is not None and self._config.turn_servers:  # only TURN: over TCP or TLS
            streams.apply(agent.relay_stream_commands())
        tcp = self._tcp
        if tcp is not None and tcp.paths:
            tcp.flush(now)
        datagrams = agent.datagrams_to_send(now)
        if datagrams:  # (three pumps in eight send nothing while connecting: no call then)
            self._send(datagrams)
        if tcp is not None and agent.tcp.commands:  # asked only when there is something
            tcp.execute(agent.tcp_commands())
        if agent.pending_events:  # (most pumps have none while connecting: no call then)
            self._drain_events(agent.take_events())
        if timer_later:
            self._pump_soon()
            return
        deadline = agent.get_timer()
        if deadline is not None and not_before is not None:
            deadline = max(deadline, not_before)
        if deadline != self._timer_deadline:
            self._timer_deadline = deadline
            self._timers.schedule(self, deadline, now)

    def _pump_soon(self) -> None:
        """:meth:`_pump` later in this iteration of the event loop, once however often asked."""
        if not self._pump_due:
            self._pump_due = True
            self._loop.call_soon(self._due_pump)

    def _due_pump(self) -> None:
        self._pump_due = False
        try:
            self._pump()
        except Exception as error:  # a bug: contained, as the readers contain theirs
            self.reader_errors.contain(error, f"ICE connection {self._config.local_username}")

    def _send(self, datagrams: list[Datagram]) -> None:
        for datagram in datagrams:
            base = self._bases.get(datagram.local) if datagram.local else None
            if base is None:
                if self._relay_streams is not None:  # to a TURN server over TCP or TLS, if any
                    self._relay_streams.send(datagram)
                continue
            if base.mux is not None:
                base.mux.table.sent(base, datagram.remote, datagram.data)
            base.outbox.send_nowait(datagram.data, datagram.remote)  # queued: ice.outbox

    def _on_timer(self, deadline: float) -> None:
        self._timer_deadline = None
        agent = self._agent
        if agent is None or self._closed:
            return
        now = self._loop.time()
        if now < deadline:  # the loop may wake a little early: max(), without the call
            now = deadline
        try:
            agent.handle_timer(now)
        except Exception as error:
            # A bug of the agent, contained as the readers contain theirs; the timer is armed
            # again, no sooner than Ta from now, so that a bug that fires every time cannot spin.
            self.timer_errors.contain(error, f"ICE connection {agent.local_username}", TIMER)
            self._pump(not_before=now + self._config.pacing, now=now)
            return
        self._pump(now=now)

    def _count_data(self, pair: CandidatePair, now: float, sent: int, received: int) -> None:
        """Hand the bytes the fast path moved on ``pair`` to the agent."""
        assert self._agent is not None
        self._agent.count_data(pair, now, sent=sent, received=received)
