"""A virtual-clock world where UDP does not exist: ICE agents reach the real TURN server core only
over "TCP" connections that this world opens for them when their relays ask (ice.relay's
OpenRelayStream), byte streams cut into frames by stun.framing both ways. Whatever an agent sends
anywhere else (UDP to a host candidate, to the server's UDP port) is dropped and counted.

It is a driver like ice.aio's, reduced to a dictionary and a clock, so that what the sans-IO
agent does with stream relays — the commands, the labels, a refused or silent connection, a
connection the server drops, a restart — is tested deterministically, in both roles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from ice.agent import Agent
from ice.config import AgentConfig, Policy, RelayServer
from ice.events import IceEvent, IceState
from ice.relay import CloseRelayStream, OpenRelayStream
from stun.address import Address, AddressFamily
from stun.datagram import Datagram
from stun.framing import Framing, StreamDecoder
from stun.server import LongTermCredentials
from turn.server import PeerPolicy, PortRangeAllocator, TurnServerConfig, TurnServerCore
from turn.server.allocation import FiveTuple
from turn.transport import ClientTransport

SERVER = Address("192.0.2.9", 443)
USER, PASSWORD = "ice", "stream-relay"
#: One way, each direction, for every byte that crosses the world.
DELAY = 0.010


def relay_server(transport: ClientTransport = ClientTransport.TCP) -> RelayServer:
    return RelayServer(address=SERVER, username=USER, password=PASSWORD, transport=transport)


@dataclass
class _Connection:
    agent: Agent
    label: Address
    client: Address
    #: Server to client bytes, cut into frames as the driver would.
    decoder: StreamDecoder = field(
        default_factory=lambda: StreamDecoder(Framing.STUN_OR_CHANNEL_DATA)
    )


class StreamWorld:
    """Agents, one TURN server core, and the connections between them (module docstring).

    ``refuse`` makes every connection attempt fail (a firewall answering RST); ``silent`` makes
    them never complete (SYNs dropped): the agent must give up on its own.
    """

    def __init__(self, *, refuse: bool = False, silent: bool = False) -> None:
        self.now = 0.0
        self.refuse = refuse
        self.silent = silent
        credentials = LongTermCredentials.from_passwords("icestack", {USER: PASSWORD})
        config = TurnServerConfig(
            credentials=credentials, peer_policy=PeerPolicy(allowed_peers=("192.0.2.0/24",))
        )
        relays = PortRangeAllocator({AddressFamily.IPV4: SERVER.host}, range(50000, 50100))
        self.server = TurnServerCore(config, relays)
        self.agents: list[Agent] = []
        self.events: dict[int, list[IceEvent]] = {}
        self.connections: dict[Address, _Connection] = {}  # by client address
        self._by_label: dict[tuple[int, Address], _Connection] = {}
        self._ports = iter(range(40000, 50000))
        #: (time, what) to do, in order.
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0
        #: What agents sent that no connection carries (UDP, here): dropped.
        self.dropped_udp = 0
        #: Every connection the agents asked for.
        self.opened: list[OpenRelayStream] = []
        self.closed_by_agent = 0

    def add_agent(
        self,
        controlling: bool,
        host: str,
        transport: ClientTransport = ClientTransport.TCP,
        **options: object,
    ) -> Agent:
        config = AgentConfig(
            controlling=controlling,
            turn_servers=(relay_server(transport),),
            policy=Policy.RELAY,
            gathering_timeout=2.0,
            **options,  # type: ignore[arg-type]
        )
        agent = Agent(config)
        agent.add_base(0, 1, Address(host, 5000))
        self.agents.append(agent)
        self.events[id(agent)] = []
        agent.gather(self.now)
        return agent

    # ------------------------------------------------------------------ the driver

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        self._sequence += 1
        self._queue.append((self.now + delay, self._sequence, action))
        self._queue.sort()

    def pump(self) -> None:
        for index, agent in enumerate(self.agents):
            for command in agent.relay_stream_commands():
                key = (index, command.label)
                known = self._by_label.pop(key, None)
                if known is not None:
                    self._drop(known)
                if isinstance(command, OpenRelayStream):
                    self._open(index, agent, command)
                else:
                    assert isinstance(command, CloseRelayStream)
                    self.closed_by_agent += 1
            for datagram in agent.datagrams_to_send(self.now):
                self._write(index, datagram)
            while (event := agent.next_event()) is not None:
                self.events[id(agent)].append(event)

    def _open(self, index: int, agent: Agent, command: OpenRelayStream) -> None:
        self.opened.append(command)
        if self.silent:
            return
        if self.refuse:
            self._later(DELAY, lambda: self._closed(agent, command.label, "connection refused"))
            return
        client = Address(command.local_host, next(self._ports))
        connection = _Connection(agent, command.label, client)
        self._by_label[(index, command.label)] = connection
        self.connections[client] = connection

        def established() -> None:
            if self.connections.get(client) is connection:
                agent.relay_stream_connected(command.label, self.now)
                self.pump()

        self._later(2 * DELAY, established)

    def _closed(self, agent: Agent, label: Address, reason: str) -> None:
        agent.relay_stream_closed(label, self.now, reason)
        self.pump()

    def _drop(self, connection: _Connection) -> None:
        self.connections.pop(connection.client, None)
        self.server.connection_closed(FiveTuple(connection.client, SERVER, ClientTransport.TCP))

    def drop_connection(self, agent: Agent) -> None:
        """The server side closes every connection of ``agent`` (say, the server restarted)."""
        for key, connection in list(self._by_label.items()):
            if connection.agent is agent:
                del self._by_label[key]
                self._drop(connection)
                closed = functools.partial(
                    self._closed, connection.agent, connection.label, "reset"
                )
                self._later(DELAY, closed)

    def _write(self, index: int, datagram: Datagram) -> None:
        connection = self._by_label.get((index, datagram.local))  # type: ignore[arg-type]
        if connection is None or datagram.remote != SERVER:
            self.dropped_udp += 1
            return
        self._later(DELAY, lambda: self._to_server(connection, datagram.data))

    def _to_server(self, connection: _Connection, data: bytes) -> None:
        if self.connections.get(connection.client) is not connection:
            return
        out = self.server.handle_datagram(
            data, SERVER, connection.client, self.now, transport=ClientTransport.TCP
        )
        self._from_server(out)

    def _from_server(self, out: Datagram | None) -> None:
        while out is not None:
            if out.remote.host == SERVER.host:  # relay to relay, inside the server
                out = self.server.handle_datagram(out.data, out.remote, out.local, self.now)  # type: ignore[arg-type]
                continue
            target = self.connections.get(out.remote)
            if target is not None:
                self._later(DELAY, functools.partial(self._to_agent, target, out.data))
            return

    def _to_agent(self, connection: _Connection, data: bytes) -> None:
        if self.connections.get(connection.client) is not connection:
            return
        for frame in connection.decoder.feed(data):
            connection.agent.receive_datagram(frame, connection.label, SERVER, self.now)
        self.pump()

    # ------------------------------------------------------------------ time

    def run(self, until: Callable[[], bool], timeout: float) -> bool:
        """Advance virtual time until ``until()`` holds or ``timeout`` virtual seconds pass."""
        end = self.now + timeout
        self.pump()
        while not until():
            timers = [t for agent in self.agents if (t := agent.get_timer()) is not None]
            server_timer = self.server.get_timer()
            if server_timer is not None:
                timers.append(server_timer)
            if self._queue:
                timers.append(self._queue[0][0])
            if not timers or min(timers) > end:
                self.now = end
                return until()
            self.now = max(self.now, min(timers))
            while self._queue and self._queue[0][0] <= self.now:
                self._queue.pop(0)[2]()
            for agent in self.agents:
                timer = agent.get_timer()
                if timer is not None and timer <= self.now:
                    agent.handle_timer(self.now)
            if server_timer is not None and server_timer <= self.now:
                self.server.handle_timer(self.now)
            self.pump()
        return True

    def gathered(self) -> bool:
        return all(agent.gatherer.completed for agent in self.agents)

    def connected(self) -> bool:
        return all(a.state in (IceState.CONNECTED, IceState.COMPLETED) for a in self.agents)

    def signal(self) -> None:
        """Every agent's credentials and relayed candidates to every other, end-of-candidates."""
        for agent in self.agents:
            for peer in self.agents:
                if peer is agent:
                    continue
                agent.set_remote_credentials(peer.local_username, peer.local_password)
                for local in peer.local_candidates:
                    agent.add_remote_candidate(local.candidate)
                agent.add_remote_candidate(None)
            agent.start_checks(self.now)
        self.pump()
