"""ICE-TCP (RFC 6544) for the sans-IO agent: its TCP connections, and the commands and
notifications that pass between the agent and the driver that owns the sockets.

Theory of operation. The agent keeps no socket: opening, accepting, writing to and closing a TCP
connection are :class:`TcpCommand`\\ s it issues (drained with ``Agent.tcp_commands()``) and
notifications its driver feeds back, as the TURN server's RFC 6062 core does
(``turn.server.connections``):

* **agent → driver**: :class:`OpenTcp` (connect from a TCP base — from its port too for a
  simultaneous-open one — to a remote address, then report), :class:`WriteTcp` (bytes already
  framed, RFC 4571), :class:`CloseTcp` (close, or give up connecting; closing what is closed does
  nothing).
* **driver → agent**: ``tcp_accepted(local, remote, now)`` when a listening base accepted a
  connection (returns its id, or ``None``: close it at once), ``tcp_connected(id, now)``,
  ``receive_stream(id, data, now)`` for the bytes as they come, and ``tcp_closed(id, now,
  reason)`` when a connection is refused, reset or closed by the peer (not after a
  :class:`CloseTcp`).

Inside the agent a TCP connection stands for one *path*, (local base, remote address): the one
connection of the pair of that path (RFC 6544 §7.1), reused for its checks, its consent checks
and its data. A TCP base never shares its address with a UDP base, so the rest of the agent
reads and writes a path the same whatever its transport: what it addresses from a TCP base is
framed and written on the path's connection (:meth:`TcpConnections.send`) — opened first if the
local candidate of the pair is active or simultaneous-open and there is none — and every frame
that arrives is handed to the agent as a datagram of that path would be. A path without a
connection that the agent may not open (a passive candidate waits for the peer to connect)
drops what is sent on it.

Peer input never escapes and every table is bounded. A connection we accepted must send, within
``tcp_connect_timeout``, a first frame of at most :data:`FIRST_FRAME_LIMIT` bytes that is a
Binding request signed with our credentials; else it is closed. Bytes that are no RFC 4571 frame
close the connection (there is no resynchronising a stream). At most ``max_tcp_connections``
connections exist and at most ``max_tcp_connecting`` are being opened; an incoming connection
beyond the bound replaces the oldest one that has not authenticated, or is refused. What waits
for a connection to open is bounded too (:data:`MAX_WAITING_FRAMES`). Every closure and drop is
counted by :class:`~ice.stats.TcpOutcome`. A connection that closes takes its path with it: the
checks on it fail, its pairs fail, and a selected pair on it loses consent
(:meth:`~ice.selection.Selection.lose_path`). Once the agent completes, the connections of
pairs that were not selected are closed (RFC 6544 §7.1: only the selected pair's connection is
needed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from stun.address import Address
from stun.attributes import Username
from stun.datagram import Machine
from stun.errors import DecodeError as StunDecodeError
from stun.framing import MAX_RFC4571_PACKET, Framing, StreamDecoder, frame_rfc4571
from stun.message import Message, MessageClass, Method

from .candidate import TcpType
from .checklist import CandidatePair
from .stats import TcpOutcome

if TYPE_CHECKING:
    from .agent import Agent

#: The largest first frame a connection we accepted may send: a check is a few hundred bytes at
#: most, so a peer that announces more before it authenticated is not checking.
FIRST_FRAME_LIMIT = 2048
#: How many frames wait for a connection being opened (the check that opens it, an answer or
#: two); more are dropped and counted.
MAX_WAITING_FRAMES = 16


@dataclass(frozen=True, slots=True)
class TcpCommand:
    """Base class of what the agent asks its driver to do with TCP connections."""

    connection: int


@dataclass(frozen=True, slots=True)
class OpenTcp(TcpCommand):
    """Connect from the TCP base ``local`` to ``remote`` (RFC 6544 §7.1): from an ephemeral
    port of ``local``'s address, or from ``local`` itself when ``simultaneous_open`` (the base
    also accepts, and both sides connect at once). Report ``tcp_connected`` or ``tcp_closed``."""

    local: Address
    remote: Address
    simultaneous_open: bool = False


@dataclass(frozen=True, slots=True)
class WriteTcp(TcpCommand):
    """Write ``data`` (RFC 4571 frames) on the connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseTcp(TcpCommand):
    """Close the connection, or give up opening it."""


@runtime_checkable
class StreamMachine(Machine, Protocol):
    """A machine that also uses TCP connections through its driver (the notifications of the
    module docstring); :mod:`ice.netsim` drives any machine that has these."""

    def tcp_commands(self) -> list[TcpCommand]: ...

    def tcp_accepted(self, local: Address, remote: Address, now: float) -> int | None: ...

    def tcp_connected(self, connection: int, now: float) -> None: ...

    def receive_stream(self, connection: int, data: bytes, now: float) -> None: ...

    def tcp_closed(self, connection: int, now: float, reason: str) -> None: ...


class TcpState(enum.Enum):
    """Where a connection of the agent stands."""

    CONNECTING = "connecting"
    OPEN = "open"


class TcpConnection:
    """One TCP connection of the agent: the path it carries and what it holds."""

    __slots__ = (
        "accepted",
        "authenticated",
        "deadline",
        "decoder",
        "id",
        "local",
        "remote",
        "sink",
        "state",
        "waiting",
    )

    def __init__(
        self,
        connection_id: int,
        local: Address,
        remote: Address,
        state: TcpState,
        *,
        accepted: bool,
        deadline: float,
    ) -> None:
        self.id = connection_id
        #: The TCP base: a listening address, or the base an active candidate connects from.
        self.local = local
        self.remote = remote
        self.state = state
        #: The peer connected to us: its first message must authenticate.
        self.accepted = accepted
        self.authenticated = not accepted
        #: When it is closed unless established (ours) or authenticated (accepted); ``None``
        #: once it is (:meth:`TcpConnections._settle`, which keeps their count of deadlines).
        self.deadline: float | None = deadline
        self.decoder = StreamDecoder(
            Framing.RFC4571,
            max_frame_size=FIRST_FRAME_LIMIT if accepted else MAX_RFC4571_PACKET,
        )
        #: Frames written before the connection was established.
        self.waiting: list[bytes] = []
        #: Where its application data goes straight to, bypassing the agent's events (a
        #: driver's fast path for a selected pair, :meth:`TcpConnections.set_sink`).
        self.sink: Callable[[bytes], None] | None = None

    def __repr__(self) -> str:
        return f"TcpConnection({self.id}, {self.local} -> {self.remote}, {self.state.value})"


#: The tables of an agent that holds no TCP connection: shared, never added to (only
#: :meth:`TcpConnections._add` adds, to tables of the agent's own).
_NO_CONNECTIONS: dict[int, TcpConnection] = {}
_NO_PATHS: dict[tuple[Address, Address], TcpConnection] = {}
_NO_BASES: dict[Address, None] = {}
#: What an agent with nothing for its driver to do drains: shared, never added to (the caller
#: only reads what it drains).
_NO_COMMANDS: list[TcpCommand] = []


class TcpConnections:
    """The TCP connections of an :class:`~ice.agent.Agent`, by id and by path."""

    __slots__ = (
        "_agent",
        "_by_id",
        "_by_path",
        "_connecting",
        "bases",
        "commands",
        "last_id",
        "timed",
    )

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        #: The TCP bases the driver declared: what the agent addresses from them goes here.
        #: The shared empty table until the first (:meth:`add_base`, the only place that adds;
        #: an agent without ICE-TCP never declares one).
        self.bases: dict[Address, None] = _NO_BASES
        #: What the driver must do, in order (drained by ``Agent.tcp_commands``): the shared
        #: empty list while there is nothing (:meth:`_command` adds, to a list of the agent's
        #: own; an agent that makes no TCP connection never has one).
        self.commands: list[TcpCommand] = _NO_COMMANDS
        # Both tables start as the one shared empty table (most agents never hold a TCP
        # connection; an empty dict is 64 bytes): :meth:`_add`, the only place that adds to
        # them, gives the agent tables of its own first.
        self._by_id: dict[int, TcpConnection] = _NO_CONNECTIONS
        self._by_path: dict[tuple[Address, Address], TcpConnection] = _NO_PATHS
        #: The id of the last connection made (ids count from 1): 0 while none ever was.
        self.last_id = 0
        self._connecting = 0
        #: How many connections have a deadline (being opened, or accepted and not yet
        #: authenticated): the agent asks for :meth:`get_timer` and :meth:`handle_timer` after
        #: every datagram and timer only when there is one. Kept by :meth:`_add`, :meth:`_settle`,
        #: :meth:`_forget` and :meth:`close_all`, the only places a deadline comes or goes.
        self.timed = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def add_base(self, address: Address) -> None:
        """A TCP base the driver declared."""
        if self.bases is _NO_BASES:
            self.bases = {}
        self.bases[address] = None

    @property
    def connecting(self) -> int:
        """How many connections the agent is opening now."""
        return self._connecting

    def set_sink(self, connection_id: int, sink: Callable[[bytes], None] | None) -> None:
        """Hand the application data (frames whose first byte is not STUN's, RFC 7983) that
        arrives on a connection to ``sink`` instead of emitting :class:`~ice.events.DataReceived`
        (``None``: events again) — for a driver's data path on a selected pair, which then
        accounts for the bytes itself (``Agent.count_data``)."""
        connection = self._by_id.get(connection_id)
        if connection is not None:
            connection.sink = sink

    def connection_of(self, pair: CandidatePair) -> int | None:
        """The id of the established connection that carries ``pair``, if any."""
        connection = self._by_path.get((pair.local_base, pair.remote.address))
        return connection.id if connection and connection.state is TcpState.OPEN else None

    def can_check(self, pair: CandidatePair) -> bool:
        """Whether an ordinary check of ``pair`` can go out now: a UDP pair, or a TCP pair with
        a connection, or one that may open a connection now (active or simultaneous-open local
        candidate, under ``max_tcp_connecting`` and ``max_tcp_connections``)."""
        if pair.local_base not in self.bases:
            return True
        if (pair.local_base, pair.remote.address) in self._by_path:
            return True
        return pair.local.tcp_type is not TcpType.PASSIVE and self._room_to_open()

    def _room_to_open(self) -> bool:
        config = self._agent.config
        return (
            self._connecting < config.max_tcp_connecting
            and len(self._by_id) < config.max_tcp_connections
        )

    # ================================================================== what the agent sends

    def send(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """Frame ``data`` (RFC 4571) and write it on the connection of the path, opening it if
        the path's local candidate is active or simultaneous-open and it has none yet."""
        connection = self._by_path.get((local, remote)) or self._open(local, remote, now)
        if connection is None:
            self._agent.failures.tcp[TcpOutcome.SEND_DROPPED] += 1
            self._agent.selection.lose_path(local, remote, "no TCP connection to send on", now)
            return
        frame = frame_rfc4571(data)
        if connection.state is TcpState.OPEN:
            self._command(WriteTcp(connection.id, frame))
        elif len(connection.waiting) < MAX_WAITING_FRAMES:
            connection.waiting.append(frame)
        else:
            self._agent.failures.tcp[TcpOutcome.SEND_DROPPED] += 1

    def _open(self, local: Address, remote: Address, now: float) -> TcpConnection | None:
        tcp_type = self._local_type(local, remote)
        if tcp_type in (None, TcpType.PASSIVE) or not self._room_to_open():
            return None
        connection = self._add(
            local, remote, TcpState.CONNECTING, accepted=False, deadline=now + self._timeout
        )
        self._connecting += 1
        simultaneous = tcp_type is TcpType.SIMULTANEOUS_OPEN
        self._command(OpenTcp(connection.id, local, remote, simultaneous))
        return connection

    def _local_type(self, local: Address, remote: Address) -> TcpType | None:
        """The TCP type of the local candidate of the path's pair (the selected one, else the
        one in a check list), if the path has a pair."""
        agent = self._agent
        pair = agent.selected.on_path(local, remote)
        for checklist in agent.checklists:
            pair = pair or checklist.find(local, remote)
        return None if pair is None else pair.local.tcp_type

    @property
    def _timeout(self) -> float:
        return self._agent.config.tcp_connect_timeout

    # ================================================================== notifications

    def accepted(self, local: Address, remote: Address, now: float) -> int | None:
        """A listening base accepted a connection from ``remote``: its id, or ``None`` to close
        it (nothing of ours accepts there, or no room)."""
        base = self._agent.gatherer.on_base(local)
        accepting = (TcpType.PASSIVE, TcpType.SIMULTANEOUS_OPEN)
        if local not in self.bases or base is None or base.candidate.tcp_type not in accepting:
            self._agent.failures.tcp[TcpOutcome.ACCEPT_REFUSED] += 1
            return None
        existing = self._by_path.get((local, remote))
        waiting: list[bytes] = []
        if existing is not None:
            if existing.state is TcpState.OPEN:
                self._agent.failures.tcp[TcpOutcome.ACCEPT_REFUSED] += 1  # one connection per pair
                return None
            # Both sides of a simultaneous-open pair connected and the peer's won: ours goes.
            waiting = existing.waiting
            self._command(CloseTcp(existing.id))
            self._forget(existing)
        if len(self._by_id) >= self._agent.config.max_tcp_connections and not self._evict():
            self._agent.failures.tcp[TcpOutcome.ACCEPT_REFUSED] += 1
            return None
        connection = self._add(
            local, remote, TcpState.OPEN, accepted=True, deadline=now + self._timeout
        )
        self._write(connection, waiting)
        return connection.id

    def _evict(self) -> bool:
        """Close the oldest accepted connection that has not authenticated; ``False`` if none."""
        for connection in self._by_id.values():  # oldest first: dicts keep insertion order
            if not connection.authenticated:
                self._close(connection, TcpOutcome.EVICTED, now=None)
                return True
        return False

    def connected(self, connection_id: int) -> None:
        """A connection we opened is established: what waited for it goes out."""
        connection = self._by_id.get(connection_id)
        if connection is None or connection.state is not TcpState.CONNECTING:
            return
        connection.state = TcpState.OPEN
        self._settle(connection)
        self._connecting -= 1
        waiting, connection.waiting = connection.waiting, []
        self._write(connection, waiting)

    def _write(self, connection: TcpConnection, frames: list[bytes]) -> None:
        if frames:
            self._command(WriteTcp(connection.id, b"".join(frames)))

    def received(self, connection_id: int, data: bytes, now: float) -> bool:
        """Bytes arrived on a connection: each complete frame reaches the agent as a datagram of
        the connection's path would, or the connection's sink. Whether anything but the sink
        got something (the driver has the agent's output to see to, then)."""
        connection = self._by_id.get(connection_id)
        if connection is None or connection.state is not TcpState.OPEN:
            return False
        try:
            frames = connection.decoder.feed(data)
        except StunDecodeError:
            self._close(connection, TcpOutcome.FRAMING, now)
            return True
        agent = self._agent
        sink = connection.sink
        handled = False
        for frame in frames:
            if sink is not None and frame and frame[0] > 3:
                sink(frame)
                continue
            handled = True
            if not connection.authenticated:
                if not self._authenticates(frame):
                    self._close(connection, TcpOutcome.UNAUTHENTICATED, now)
                    return True
                connection.authenticated = True
                self._settle(connection)
                connection.decoder.max_frame_size = MAX_RFC4571_PACKET
            agent._receive(frame, connection.local, connection.remote, now)
            if self._by_id.get(connection_id) is not connection:
                break  # the agent closed it meanwhile
        return handled

    def _authenticates(self, frame: bytes) -> bool:
        """Whether a frame is a Binding request signed with our current credentials (RFC 8445
        §7.3: USERNAME starting with our ufrag, MESSAGE-INTEGRITY with our password)."""
        if not frame or frame[0] > 3:
            return False
        try:
            message = Message.decode(frame)
        except StunDecodeError:
            return False
        if message.method != Method.BINDING or message.message_class is not MessageClass.REQUEST:
            return False
        username = message.get(Username)
        agent = self._agent
        return (
            username is not None
            and username.value.partition(":")[0] == agent.local_username
            and message.check_integrity(agent.local_password.encode())
        )

    def closed(self, connection_id: int, now: float, reason: str) -> None:
        """The driver says a connection was refused, reset or closed by the peer."""
        connection = self._by_id.get(connection_id)
        if connection is None:
            return
        connecting = connection.state is TcpState.CONNECTING
        outcome = TcpOutcome.REFUSED if connecting else TcpOutcome.CLOSED_BY_PEER
        self._agent.failures.tcp[outcome] += 1
        self._forget(connection)
        what = "could not be opened" if connecting else "was closed"
        path_reason = f"the TCP connection to {connection.remote} {what}: {reason}"
        self._agent.selection.lose_path(connection.local, connection.remote, path_reason, now)

    # ================================================================== timers and closing

    def get_timer(self) -> float | None:
        if not self.timed:
            return None
        return min(
            (c.deadline for c in self._by_id.values() if c.deadline is not None), default=None
        )

    def handle_timer(self, now: float) -> None:
        """Close what was not established (ours) or authenticated (accepted) in time."""
        for connection in list(self._by_id.values()):
            if connection.deadline is not None and now >= connection.deadline:
                late = TcpOutcome.SILENT if connection.accepted else TcpOutcome.CONNECT_TIMEOUT
                self._close(connection, late, now)

    def _close(self, connection: TcpConnection, outcome: TcpOutcome, now: float | None) -> None:
        """Close a connection ourselves for ``outcome``; with ``now``, its path is lost."""
        self._agent.failures.tcp[outcome] += 1
        self._command(CloseTcp(connection.id))
        self._forget(connection)
        if now is not None:
            reason = f"TCP connection to {connection.remote} closed: {outcome.value}"
            self._agent.selection.lose_path(connection.local, connection.remote, reason, now)

    def close_unselected(self) -> None:
        """The agent completed: only the selected pairs' connections are needed (RFC 6544 §7.1)."""
        agent = self._agent
        for connection in list(self._by_id.values()):
            if agent.selected.on_path(connection.local, connection.remote) is None:
                self._command(CloseTcp(connection.id))
                self._forget(connection)

    def close_base(self, base: Address) -> None:
        """A TCP base is gone (or released): so are its connections."""
        self.bases.pop(base, None)
        if not self.bases:
            self.bases = _NO_BASES  # an emptied dict keeps its 224 bytes
        for connection in [c for c in self._by_id.values() if c.local == base]:
            self._command(CloseTcp(connection.id))
            self._forget(connection)

    def close_all(self) -> None:
        """The agent closes: every connection goes."""
        for connection_id in self._by_id:
            self._command(CloseTcp(connection_id))
        self._by_id, self._by_path = _NO_CONNECTIONS, _NO_PATHS
        self._connecting = 0
        self.timed = 0

    def drain(self) -> list[TcpCommand]:
        commands = self.commands
        if commands:  # asked at every pump: no new list when there is nothing
            self.commands = _NO_COMMANDS
        return commands

    def _command(self, command: TcpCommand) -> None:
        if self.commands is _NO_COMMANDS:
            self.commands = [command]
        else:
            self.commands.append(command)

    # ================================================================== the table

    def _add(
        self,
        local: Address,
        remote: Address,
        state: TcpState,
        *,
        accepted: bool,
        deadline: float,
    ) -> TcpConnection:
        self.last_id += 1
        connection = TcpConnection(
            self.last_id, local, remote, state, accepted=accepted, deadline=deadline
        )
        if self._by_id is _NO_CONNECTIONS:
            self._by_id, self._by_path = {}, {}
        self._by_id[connection.id] = connection
        self._by_path[(local, remote)] = connection
        self.timed += 1  # every connection starts with a deadline
        return connection

    def _settle(self, connection: TcpConnection) -> None:
        """The connection is established (ours) or authenticated (accepted): no deadline now."""
        if connection.deadline is not None:
            connection.deadline = None
            self.timed -= 1

    def _forget(self, connection: TcpConnection) -> None:
        del self._by_id[connection.id]
        path = (connection.local, connection.remote)
        if self._by_path.get(path) is connection:
            del self._by_path[path]
        if connection.state is TcpState.CONNECTING:
            self._connecting -= 1
        if connection.deadline is not None:
            self.timed -= 1
