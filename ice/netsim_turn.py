"""TURN over TCP on the simulated network (:mod:`ice.netsim`, :mod:`ice.netsim_tcp`): an agent's
TURN servers reached over simulated TCP connections, and the TURN server core behind a TCP
listener, so that "UDP blocked, TURN over TCP" runs in virtual time like every other scenario.

Theory of operation. The simulator drives :class:`~ice.tcp.StreamMachine`\\ s: it carries out
their :class:`~ice.tcp.OpenTcp`, :class:`~ice.tcp.WriteTcp` and :class:`~ice.tcp.CloseTcp` and
reports back by connection id, with bytes as they come. Neither the agent's relays nor the TURN
server core speak that directly — the agent asks for relay streams by label
(:class:`~ice.relay.OpenRelayStream`, :mod:`ice.relay`), the server core takes framed messages —
so each gets a thin driver here, as ``ice.relay_streams`` and ``turn.server.aio`` are on asyncio:

- :class:`RelayStreamAgent` wraps an :class:`~ice.agent.Agent`: a relay stream becomes a
  simulated connection (ids of its own, apart from the agent's ICE-TCP ones, whose commands and
  notifications pass through untouched); what the agent labels with the stream is written on it
  (held until it is established, at most :data:`MAX_WAITING` datagrams); what arrives is cut
  into STUN and ChannelData frames (:class:`~stun.framing.StreamDecoder`) and fed to the agent
  as datagrams that came on the label from the server.
- :class:`StreamTurnServer` wraps a :class:`~turn.server.TurnServerCore`: it accepts connections
  on its TCP port, feeds each frame to the core as a message of that TCP 5-tuple, writes the
  core's answers and relayed data back on the connection, and tells the core when a connection
  closes (its allocation is deleted with it).

The simulator has no TLS: a ``turns:`` server is reached as over TCP here (TLS changes who can
read the bytes, not which path they take).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from stun.address import Address
from stun.datagram import Datagram, Machine
from stun.errors import DecodeError
from stun.framing import Framing, StreamDecoder
from turn.server import TurnServerCore
from turn.server.allocation import FiveTuple
from turn.transport import ClientTransport

from .agent import Agent
from .relay import CloseRelayStream, OpenRelayStream
from .tcp import CloseTcp, OpenTcp, TcpCommand, WriteTcp

#: Datagrams held for a relay stream that is not established yet; more are dropped.
MAX_WAITING = 64
#: Relay streams' connection ids start here, far above the agent's own ICE-TCP ids.
_FIRST_RELAY_ID = 1 << 30


@dataclass(slots=True)
class _Stream:
    """One simulated TCP connection, with what waits for it and what is being reassembled."""

    id: int
    label: Address
    peer: Address
    established: bool = False
    waiting: list[bytes] = field(default_factory=list)
    decoder: StreamDecoder = field(
        default_factory=lambda: StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    )


class _Driver:
    """What a driver here passes to the machine it drives as it is: datagrams that arrive, the
    timer, the events."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        self._machine.receive_datagram(data, local, remote, now)

    def get_timer(self) -> float | None:
        return self._machine.get_timer()

    def handle_timer(self, now: float) -> None:
        self._machine.handle_timer(now)

    def next_event(self) -> object | None:
        return self._machine.next_event()


class RelayStreamAgent(_Driver):
    """An :class:`~ice.agent.Agent` whose TURN servers are reached over simulated TCP (module
    docstring); every other verb and notification goes to the agent as it is."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self.agent = agent
        self._ids = itertools.count(_FIRST_RELAY_ID)
        self._by_label: dict[Address, _Stream] = {}
        self._by_id: dict[int, _Stream] = {}
        self._commands: list[TcpCommand] = []
        #: Datagrams dropped: too many waiting for a connection to be established.
        self.dropped = 0

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """The agent's datagrams, but those labelled with a relay stream: written on it."""
        self._apply(now)
        outgoing = []
        for datagram in self.agent.datagrams_to_send(now):
            stream = self._by_label.get(datagram.local) if datagram.local else None
            if stream is None:
                outgoing.append(datagram)
            elif not stream.established:
                if len(stream.waiting) < MAX_WAITING:
                    stream.waiting.append(datagram.data)
                else:
                    self.dropped += 1
            else:
                self._commands.append(WriteTcp(stream.id, datagram.data))
        return outgoing

    def _apply(self, now: float) -> None:
        for command in self.agent.relay_stream_commands():
            stream = self._by_label.pop(command.label, None)
            if stream is not None:
                del self._by_id[stream.id]
                self._commands.append(CloseTcp(stream.id))
            if isinstance(command, OpenRelayStream):
                stream = _Stream(next(self._ids), command.label, command.server)
                self._by_label[stream.label] = self._by_id[stream.id] = stream
                local = Address(command.local_host, 0)
                self._commands.append(OpenTcp(stream.id, local, command.server))
            else:
                assert isinstance(command, CloseRelayStream)

    def tcp_commands(self) -> list[TcpCommand]:
        commands, self._commands = self._commands, []
        return commands + self.agent.tcp_commands()

    def tcp_accepted(self, local: Address, remote: Address, now: float) -> int | None:
        return self.agent.tcp_accepted(local, remote, now)

    def tcp_connected(self, connection: int, now: float) -> None:
        stream = self._by_id.get(connection)
        if stream is None:
            self.agent.tcp_connected(connection, now)
            return
        stream.established = True
        waiting, stream.waiting = stream.waiting, []
        self._commands += [WriteTcp(stream.id, data) for data in waiting]
        self.agent.relay_stream_connected(stream.label, now)

    def receive_stream(self, connection: int, data: bytes, now: float) -> None:
        stream = self._by_id.get(connection)
        if stream is None:
            self.agent.receive_stream(connection, data, now)
            return
        try:
            frames = stream.decoder.feed(data)
        except DecodeError as exc:
            self._forget(stream)
            self._commands.append(CloseTcp(stream.id))
            self.agent.relay_stream_closed(stream.label, now, f"not STUN or ChannelData: {exc}")
            return
        for frame in frames:
            self.agent.receive_datagram(frame, stream.label, stream.peer, now)

    def tcp_closed(self, connection: int, now: float, reason: str) -> None:
        stream = self._by_id.get(connection)
        if stream is None:
            self.agent.tcp_closed(connection, now, reason)
            return
        self._forget(stream)
        self.agent.relay_stream_closed(stream.label, now, reason)

    def _forget(self, stream: _Stream) -> None:
        del self._by_id[stream.id]
        del self._by_label[stream.label]


class StreamTurnServer(_Driver):
    """A :class:`~turn.server.TurnServerCore` that also takes clients over simulated TCP at
    ``address`` (module docstring); its UDP clients and peers are served as they are."""

    def __init__(self, core: TurnServerCore, address: Address) -> None:
        super().__init__(core)
        self.core = core
        self.address = address
        self._ids = itertools.count(1)
        self._by_id: dict[int, _Stream] = {}
        self._by_client: dict[Address, _Stream] = {}
        self._commands: list[TcpCommand] = []

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """The core's datagrams, but those to a TCP client: written on its connection."""
        outgoing = []
        for datagram in self.core.datagrams_to_send(now):
            stream = self._by_client.get(datagram.remote)
            if stream is not None and datagram.local == self.address:
                self._commands.append(WriteTcp(stream.id, datagram.data))
            else:
                outgoing.append(datagram)
        return outgoing

    def tcp_commands(self) -> list[TcpCommand]:
        commands, self._commands = self._commands, []
        return commands

    def tcp_accepted(self, local: Address, remote: Address, now: float) -> int | None:
        if local != self.address:
            return None
        stream = _Stream(next(self._ids), local, remote, established=True)
        self._by_id[stream.id] = self._by_client[remote] = stream
        return stream.id

    def tcp_connected(self, connection: int, now: float) -> None:
        """The server opens no connection of its own here (no RFC 6062 relays)."""

    def receive_stream(self, connection: int, data: bytes, now: float) -> None:
        stream = self._by_id.get(connection)
        if stream is None:
            return
        try:
            frames = stream.decoder.feed(data)
        except DecodeError:
            self._commands.append(CloseTcp(stream.id))
            self.tcp_closed(connection, now, "not STUN or ChannelData")
            return
        for frame in frames:
            self.core.receive_datagram(
                frame, self.address, stream.peer, now, transport=ClientTransport.TCP
            )

    def tcp_closed(self, connection: int, now: float, reason: str) -> None:
        stream = self._by_id.pop(connection, None)
        if stream is not None:
            del self._by_client[stream.peer]
            self.core.connection_closed(FiveTuple(stream.peer, self.address, ClientTransport.TCP))
