"""asyncio layer: what a :class:`~ice.aio.Connection` shows and lets be set — its role, the
credentials of both sides, the candidates, the selected pairs, statistics — as the
:class:`ConnectionProperties` half of the connection (the other halves: :mod:`ice.aio`, which
gathers, connects, carries data and closes, and :mod:`ice.pump`, which drives the agent).

Each property reads the agent once it exists (gathering creates it) and the configuration
before; a setter checks its value at the call (:mod:`ice.connection_options`) and, once the
agent runs, hands it over and pumps, so whatever it changes is sent at once.
"""

from __future__ import annotations

import asyncio
import dataclasses

from . import connection_options as options
from .agent import Agent
from .base_sockets import DataPaths
from .candidate import Candidate
from .checklist import CandidatePair
from .config import AgentConfig
from .errors import LocalProtocolError
from .events import IceState
from .mdns_candidates import MdnsCandidates
from .mdns_candidates import signalled as mdns_signalled
from .pump import AgentPump
from .relay_streams import RelayStreams, TlsSettings
from .stats import PairStats
from .tcp_sockets import TcpSockets


class ConnectionProperties(AgentPump):
    """The properties of :class:`~ice.aio.Connection` (module docstring); the connection holds
    the state declared here."""

    #: What the properties set; the rest of the connection's state is in its own __slots__.
    __slots__ = ("_config", "_relay_streams", "_remote_password", "_remote_username")

    _agent: Agent | None
    _loop: asyncio.AbstractEventLoop
    _config: AgentConfig
    _remote_username: str | None
    _remote_password: str | None
    _relay_streams: RelayStreams | None
    _turn_tls: TlsSettings
    _tcp: TcpSockets | None
    _mdns: MdnsCandidates | None
    _data_paths: DataPaths
    _local_candidates: tuple[Candidate, ...]
    _lost_local: tuple[Candidate, ...]

    @property
    def relay_streams(self) -> RelayStreams:
        """The TCP/TLS connections to TURN servers: how many (``len``), the bytes waiting to be
        written (``buffered``), the datagrams dropped (``dropped``; :mod:`ice.relay_streams`)."""
        if self._relay_streams is None:  # no TURN server: none, and none will be
            self._relay_streams = RelayStreams(self, self._turn_tls)  # type: ignore[arg-type]
        return self._relay_streams

    @property
    def agent(self) -> Agent:
        """The sans-IO agent behind this connection (created when gathering starts)."""
        if self._agent is None:
            raise LocalProtocolError("gather_candidates() first: the agent starts with gathering")
        return self._agent

    @property
    def controlling(self) -> bool:
        """Whether we are the controlling agent now (a role conflict may have switched it).

        Settable until checks start (RFC 8445 §6.1.1: the offerer controls, which signalling may
        settle after gathering); then :class:`~ice.LocalProtocolError`, as for the controlled
        role while :attr:`remote_lite` or the controlling one for an ICE-lite agent."""
        return self._agent.controlling if self._agent else self._config.controlling

    @controlling.setter
    def controlling(self, value: bool) -> None:
        options.flag("controlling", value)
        if self._agent is not None:
            self._agent.set_role(value)
            self._pump()
        elif value and self._config.lite:
            raise LocalProtocolError("an ICE-lite agent is always controlled (RFC 8445 §6.1.1)")
        else:
            self._config = dataclasses.replace(self._config, controlling=value)

    @property
    def remote_lite(self) -> bool:
        """Whether the peer is ICE-lite (its ``a=ice-lite``); settable until checks start
        (:meth:`connect`). Setting it makes us controlling, as RFC 8445 §6.1.1 requires."""
        return self._agent.remote_lite if self._agent else self._config.remote_lite

    @remote_lite.setter
    def remote_lite(self, value: bool) -> None:
        options.flag("remote_lite", value)
        if self._agent is not None:
            self._agent.set_remote_lite(value)
            self._pump()
        elif value and self._config.lite:
            raise LocalProtocolError("two ICE-lite agents cannot connect (RFC 8445 §2.5)")
        else:
            controlling = self._config.controlling or value
            self._config = dataclasses.replace(
                self._config, remote_lite=value, controlling=controlling
            )

    @property
    def state(self) -> IceState:
        return self._agent.state if self._agent else IceState.NEW

    @property
    def local_username(self) -> str:
        """Our ufrag (RFC 8445 §5.3); a restart changes it."""
        if self._agent is not None:
            return self._agent.local_username
        assert self._config.local_username is not None
        return self._config.local_username

    @property
    def local_password(self) -> str:
        """Our pwd; a restart changes it."""
        if self._agent is not None:
            return self._agent.local_password
        assert self._config.local_password is not None
        return self._config.local_password

    @property
    def remote_username(self) -> str | None:
        """The peer's ufrag, from signaling."""
        return self._remote_username

    @remote_username.setter
    def remote_username(self, value: str | None) -> None:
        if value is not None:
            options.credential("ufrag", value)
        self._remote_username = value
        self._apply_remote_credentials()

    @property
    def remote_password(self) -> str | None:
        """The peer's pwd, from signaling."""
        return self._remote_password

    @remote_password.setter
    def remote_password(self, value: str | None) -> None:
        if value is not None:
            options.credential("pwd", value)
        self._remote_password = value
        self._apply_remote_credentials()

    def set_remote_credentials(self, username: str, password: str) -> None:
        """The peer's ufrag and pwd from signaling (RFC 8839 §5.4): non-empty strings."""
        options.credential("ufrag", username)
        options.credential("pwd", password)
        self._remote_username = username
        self._remote_password = password
        self._apply_remote_credentials()

    def _apply_remote_credentials(self) -> None:
        if self._agent is not None and self._remote_username and self._remote_password:
            self._agent.set_remote_credentials(self._remote_username, self._remote_password)
            self._pump()

    @property
    def local_candidates(self) -> list[Candidate]:
        """Our candidates so far, as they are signalled (``.local`` names when hidden); a lost
        one (:class:`~ice.events.CandidateLost`) is no longer among them."""
        return [c for c in self._local_candidates if c not in self._lost_local]

    @property
    def remote_candidates(self) -> list[Candidate]:
        """The peer's candidates the agent uses: signalled (``.local`` ones once resolved) and
        peer-reflexive."""
        return [c for _, c in self._agent.remote_candidates] if self._agent else []

    def force_selected_pair(self, local: Candidate, remote: Candidate) -> None:
        """Use ``local`` (one of :attr:`local_candidates`) → ``remote`` for their component's
        data at once, without checks or consent: for a peer that does no ICE, in place of
        :meth:`connect` (aioice's ``set_selected_pair``; :meth:`~ice.agent.Agent.
        force_selected_pair`). Raises :class:`~ice.LocalProtocolError` for a candidate that is
        not ours, a pair that cannot form, or a remote ``.local`` name."""
        agent = self.agent
        if remote.is_mdns:
            raise LocalProtocolError(f"{remote}: a .local name must be resolved first")
        ours = next(
            (
                c.candidate
                for c in agent.local_candidates
                if local in (c.candidate, mdns_signalled(self._mdns, c.candidate))
            ),
            None,
        )
        if ours is None:
            raise LocalProtocolError(f"{local} is not one of this connection's candidates")
        agent.force_selected_pair(ours, remote, self._loop.time())
        self._pump()

    def selected_pair(self, component: int = 1) -> CandidatePair | None:
        """The pair a component's data goes to, once one is selected."""
        return self._agent.selected_pair(0, component) if self._agent else None

    def stats(self) -> list[PairStats]:
        """Per-pair statistics, like WebRTC's RTCIceCandidatePairStats."""
        if self._agent is None:
            return []
        self._data_paths.flush(self._loop.time())
        if self._tcp is not None:
            self._tcp.flush(self._loop.time())
        return self._agent.stats()

    def failure_reason(self) -> str:
        """Why ICE failed (or is failing), in words a person can act on."""
        return self.agent.failure_reason()

    @property
    def tcp_dropped_writes(self) -> int:
        """Writes on ICE-TCP connections dropped because the connection's send buffer was full
        (:data:`~ice.tcp_sockets.WRITE_LIMIT` bytes waiting: the path is slower than the data)."""
        return self._tcp.dropped_writes if self._tcp is not None else 0
