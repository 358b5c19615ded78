"""Ready-made ICE scenarios on the simulated network: two agents, their NATs, a STUN server.

What it is for: the NAT-by-NAT matrix (tests, docs, ``icestack demo --sim NAT_A,NAT_B``) and any
test that wants two real :class:`~ice.agent.Agent` objects talking through :mod:`ice.netsim`.

Theory of operation. :func:`two_agents_behind_nats` builds a :class:`~ice.netsim.Network` with
the real STUN Binding server on the WAN and one host per side, each alone behind a NAT of the named
kind (or on the WAN for ``NatBehavior.OPEN``), and wraps it in a :class:`Scenario`. Agent A is
controlling, B controlled; each has one socket (*base*) per stream, component and host address.
:meth:`Scenario.run` plays a non-trickle session: both agents gather host and server-reflexive
candidates, the scenario signals ufrag/pwd, every candidate and end-of-candidates both ways (as an
application's signaling channel would, instantly), both start checking, and the network runs until
both agents have selected a nominated pair for every component, either fails, or ``timeout``
passes. The steps are public too (:meth:`Scenario.gather`, :meth:`Scenario.signal`,
:meth:`Scenario.start_checks`, :meth:`Scenario.wait_connected`) for scenarios that interleave them.

Everything is virtual time and one seeded generator: the agents draw their credentials,
tie-breakers and transaction IDs from the network's ``rng``, so an :class:`Outcome` is a pure
function of the NAT kinds and the seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stun.address import Address, AddressFamily
from stun.server import LongTermCredentials
from turn.server import PeerPolicy, PortRangeAllocator, TurnServerConfig, TurnServerCore
from turn.transport import ClientTransport

from .agent import Agent
from .candidate import Candidate, TcpType
from .checklist import CandidatePair
from .config import AgentConfig, RelayServer
from .events import CandidateGathered, IceEvent, IceState
from .netsim import DEFAULT_WAN_LINK, Attachment, Host, LinkConfig, NatBehavior, Network
from .netsim_turn import RelayStreamAgent, StreamTurnServer

#: Where :func:`two_agents_behind_nats` runs its STUN server (an RFC 5737 documentation address).
STUN_SERVER = Address("192.0.2.1", 3478)
#: The TURN servers of scenarios with relays: one per side (see :func:`add_turn_server`).
TURN_SERVERS = (Address("192.0.2.2", 3478), Address("192.0.2.3", 3478))
TURN_USERNAME = "ice"
TURN_PASSWORD = "relay-password"
#: The first port each agent binds; one more per further base.
FIRST_PORT = 5000
#: The first TCP port each agent listens on (ICE-TCP, RFC 6544), one more per further base; its
#: simultaneous-open bases start at :data:`FIRST_SO_PORT`.
FIRST_TCP_PORT = 7000
FIRST_SO_PORT = 8000
#: The states in which an agent has a selected pair for every component.
_CONNECTED = (IceState.CONNECTED, IceState.COMPLETED)

EventHook = Callable[[str, IceEvent], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one scenario run came to."""

    #: ``"A-B"`` labels, e.g. ``"symmetric/restricted"`` for the matrix.
    label: str
    connected: bool
    #: The types of A's selected pair (stream 0, component 1) as ``"local-remote"``, e.g.
    #: ``"prflx-srflx"`` (``"host-host/tcp"`` over ICE-TCP); ``None`` when nothing was
    #: selected.
    pair_types: str | None
    #: Virtual seconds from the start of checks until both agents were connected.
    connect_time: float | None
    #: Virtual seconds the gathering of both agents took (non-trickle: checks start after it).
    gather_time: float
    #: Why checking failed, in the agents' words (``None`` when connected).
    failure_reason: str | None
    #: The selected pairs (stream 0, component 1) of A and B.
    pair_a: CandidatePair | None
    pair_b: CandidatePair | None

    def __str__(self) -> str:
        if self.connected:
            return f"{self.label}: {self.pair_types} in {self.connect_time:.3f} s"
        return f"{self.label}: fails ({self.failure_reason})"


class Side:
    """One agent of a scenario with its host, its network attachment and the events it emitted."""

    def __init__(
        self, name: str, network: Network, host: Host, agent: Agent, hook: EventHook | None
    ) -> None:
        self.name = name
        self.host = host
        self.agent = agent
        #: ``(virtual time, event)`` for every event the agent emitted, in order.
        self.events: list[tuple[float, IceEvent]] = []
        self._network = network
        self._hook = hook
        #: With TURN servers over TCP, the agent goes on the network with the driver of its
        #: relay streams (:mod:`ice.netsim_turn`).
        machine: Agent | RelayStreamAgent = agent
        if any(server.transport.is_stream for server in agent.config.turn_servers):
            machine = RelayStreamAgent(agent)
        self.attachment: Attachment[Agent | RelayStreamAgent] = host.attach(
            machine, port=FIRST_PORT, on_event=self._record
        )
        components = [(s, c) for s, n in enumerate(agent.config.streams) for c in range(1, n + 1)]
        tcp_types = agent.config.tcp_types
        for index, (stream, component) in enumerate(components):
            port = FIRST_PORT + index
            if index:
                self.attachment.bind(port)
            for address in host.addresses:
                agent.add_base(stream, component, Address(address, port))
            if tcp_types:  # ICE-TCP: one listening base per component and address
                self._add_tcp_bases(stream, component, FIRST_TCP_PORT + index, False)
            if TcpType.SIMULTANEOUS_OPEN in tcp_types:
                self._add_tcp_bases(stream, component, FIRST_SO_PORT + index, True)

    def _add_tcp_bases(self, stream: int, component: int, port: int, simultaneous: bool) -> None:
        """TCP bases on every address, listening if anything is to accept there (an agent with
        active candidates only, as a browser has, never listens)."""
        if simultaneous or TcpType.PASSIVE in self.agent.config.tcp_types:
            self.attachment.listen_tcp(port)
        for address in self.host.addresses:
            self.agent.add_tcp_base(
                stream, component, Address(address, port), simultaneous_open=simultaneous
            )

    def send(self, data: bytes, stream: int = 0, component: int = 1) -> None:
        """Send application data on the selected pair now (its first byte must not be 0-3,
        which is STUN's: RFC 7983 demultiplexing)."""
        self.agent.send(data, stream, component)
        self.attachment.flush()

    def _record(self, event: object) -> None:
        assert isinstance(event, IceEvent)
        self.events.append((self._network.now, event))
        if self._hook is not None:
            self._hook(self.name, event)

    @property
    def connected(self) -> bool:
        return self.agent.state in _CONNECTED

    def signalled_candidates(self) -> list[tuple[int, Candidate]]:
        """The candidates an application signals: those the agent announced (CandidateGathered;
        a relay-only agent announces relayed candidates only)."""
        return [
            (event.stream, event.candidate)
            for _, event in self.events
            if isinstance(event, CandidateGathered)
        ]


class Scenario:
    """Two agents on a simulated network; A controlling, B controlled (unless configs say else).

    ``config_a`` and ``config_b`` are templates: their ``rng`` is replaced by the network's.
    """

    def __init__(
        self,
        network: Network,
        host_a: Host,
        host_b: Host,
        *,
        config_a: AgentConfig,
        config_b: AgentConfig,
        label: str = "A-B",
        on_event: EventHook | None = None,
    ) -> None:
        self.network = network
        self.label = label
        self.a = Side("A", network, host_a, Agent(_seeded(config_a, network)), on_event)
        self.b = Side("B", network, host_b, Agent(_seeded(config_b, network)), on_event)
        self.gather_time = 0.0
        #: The TURN server cores on the WAN, when the scenario has relays.
        self.turn_servers: list[TurnServerCore] = []
        self.checks_started_at: float | None = None

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b

    def gather(self, timeout: float = 10.0) -> bool:
        """Gather on both agents and run until both completed; ``False`` on timeout."""
        start = self.network.now
        for side in self.sides:
            side.agent.gather(self.network.now)
        done = self.network.run_until(
            lambda: all(s.agent.gatherer.completed for s in self.sides), timeout
        )
        self.gather_time = self.network.now - start
        return done

    def signal(self) -> None:
        """Hand each agent the other's ufrag/pwd, every candidate, and end-of-candidates."""
        for side, peer in ((self.a, self.b), (self.b, self.a)):
            side.agent.set_remote_credentials(peer.agent.local_username, peer.agent.local_password)
            for stream, candidate in peer.signalled_candidates():
                side.agent.add_remote_candidate(candidate, stream)
            side.agent.add_remote_candidate(None)

    def start_checks(self) -> None:
        """Both agents begin connectivity checks now."""
        self.checks_started_at = self.network.now
        for side in self.sides:
            side.agent.start_checks(self.network.now)

    def wait_connected(self, timeout: float) -> bool:
        """Run until both agents are connected (``True``), either failed, or ``timeout``."""
        self.network.run_until(
            lambda: (
                all(s.connected for s in self.sides)
                or any(s.agent.state is IceState.FAILED for s in self.sides)
            ),
            timeout,
        )
        return all(s.connected for s in self.sides)

    def run(self, timeout: float = 60.0) -> Outcome:
        """Play a non-trickle session (gather, signal, check) and say how it ended."""
        self.gather()
        self.signal()
        self.start_checks()
        connected = self.wait_connected(timeout)
        return self.outcome(connected)

    def outcome(self, connected: bool) -> Outcome:
        """Describe the session as it stands."""
        pair_a, pair_b = self.a.agent.selected_pair(), self.b.agent.selected_pair()
        started = self.checks_started_at
        reasons = [f"{s.name}: {s.agent.failure_reason()}" for s in self.sides if not s.connected]
        return Outcome(
            label=self.label,
            connected=connected,
            pair_types=pair_types(pair_a) if pair_a is not None else None,
            connect_time=self.network.now - started if connected and started is not None else None,
            gather_time=self.gather_time,
            failure_reason=None if connected else "; ".join(reasons),
            pair_a=pair_a,
            pair_b=pair_b,
        )


def _seeded(config: AgentConfig, network: Network) -> AgentConfig:
    return dataclasses.replace(config, rng=network.rng)


def pair_types(pair: CandidatePair) -> str:
    """``"local-remote"`` candidate types of a pair, e.g. ``"srflx-prflx"``; ``"/tcp"`` follows
    for an ICE-TCP pair (``"host-prflx/tcp"``)."""
    types = f"{pair.local.type.value}-{pair.remote.type.value}"
    return types if pair.local.transport == "udp" else f"{types}/{pair.local.transport}"


class _SimulatedRelays(PortRangeAllocator):
    """Relayed addresses on a simulated TURN host: each port is bound to the server as it is
    handed out, so peers' datagrams to it reach the server core."""

    def __init__(self, host: str) -> None:
        super().__init__({AddressFamily.IPV4: host}, range(50000, 50200))
        self.bind: Callable[[int], None] = lambda port: None
        self._bound: set[int] = set()

    def allocate_relay(
        self, family: AddressFamily, *, even_port: bool = False, reserve_next: bool = False
    ) -> Address | None:
        relayed = super().allocate_relay(family, even_port=even_port, reserve_next=reserve_next)
        if relayed is not None and relayed.port not in self._bound:
            self._bound.add(relayed.port)
            self.bind(relayed.port)
        return relayed


def add_turn_server(
    network: Network, address: Address, name: str, *, tcp: bool = False
) -> TurnServerCore:
    """The real sans-IO TURN server core on the WAN at ``address``, with one user
    (:data:`TURN_USERNAME`/:data:`TURN_PASSWORD`) and relayed ports 50000-50199; it relays to
    the documentation addresses that stand for the public Internet here. With ``tcp`` it also
    takes clients over TCP on the same port (:class:`~ice.netsim_turn.StreamTurnServer`)."""
    relays = _SimulatedRelays(address.host)
    credentials = LongTermCredentials.from_passwords("icestack", {TURN_USERNAME: TURN_PASSWORD})
    policy = PeerPolicy(allow_documentation_peers=True)
    core = TurnServerCore(TurnServerConfig(credentials=credentials, peer_policy=policy), relays)
    host = network.add_host(name, [address.host])
    machine: TurnServerCore | StreamTurnServer = core
    if tcp:
        machine = StreamTurnServer(core, address)
    attachment = host.attach(machine, port=address.port)
    if tcp:
        attachment.listen_tcp(address.port)
    relays.bind = attachment.bind
    return core


def relay_server(address: Address, transport: ClientTransport = ClientTransport.UDP) -> RelayServer:
    """How an agent reaches a scenario's TURN server (over UDP, or TCP)."""
    return RelayServer(
        address=address, username=TURN_USERNAME, password=TURN_PASSWORD, transport=transport
    )


def two_agents_behind_nats(
    nat_a: NatBehavior,
    nat_b: NatBehavior,
    seed: int = 0,
    *,
    wan_link: LinkConfig = DEFAULT_WAN_LINK,
    config_a: AgentConfig | None = None,
    config_b: AgentConfig | None = None,
    on_event: EventHook | None = None,
    turn: bool = False,
    turn_transport: ClientTransport = ClientTransport.UDP,
    udp_blocked: tuple[bool, bool] = (False, False),
) -> Scenario:
    """Agent A behind ``nat_a`` and agent B behind ``nat_b`` (``OPEN``: on the WAN), the STUN
    Binding server at :data:`STUN_SERVER`; host, server-reflexive and TCP host candidates (RFC
    6544), and with ``turn`` relayed ones too, each side from its own TURN server
    (:data:`TURN_SERVERS`), reached over ``turn_transport`` (UDP, or TCP: the simulator has no
    TLS). ``udp_blocked`` puts a firewall that drops every UDP datagram at A's or B's edge (its
    NAT's public address, or its own on the WAN), as corporate networks do.

    ``config_a``/``config_b`` default to a controlling A and a controlled B that use the STUN
    (and TURN) servers; ``on_event(side_name, event)`` sees every agent event as it happens.
    """
    network = Network(seed, wan_link=wan_link)
    network.add_stun_server(STUN_SERVER)
    relays: list[tuple[RelayServer, ...]] = [(), ()]
    cores = []
    if turn:
        tcp = turn_transport.is_stream
        for index, address in enumerate(TURN_SERVERS):
            cores.append(add_turn_server(network, address, f"turn{index}", tcp=tcp))
            relays[index] = (relay_server(address, turn_transport),)
    host_a, edge_a = _host_behind(network, "a", nat_a)
    host_b, edge_b = _host_behind(network, "b", nat_b)
    default_a = AgentConfig(controlling=True, stun_servers=(STUN_SERVER,), turn_servers=relays[0])
    default_b = AgentConfig(controlling=False, stun_servers=(STUN_SERVER,), turn_servers=relays[1])
    scenario = Scenario(
        network,
        host_a,
        host_b,
        config_a=config_a or default_a,
        config_b=config_b or default_b,
        label=f"{nat_a.value}/{nat_b.value}",
        on_event=on_event,
    )
    scenario.turn_servers = cores
    for edge, blocked in zip((edge_a, edge_b), udp_blocked, strict=True):
        if blocked:
            network.block(edge, transport="udp")
    return scenario


def _host_behind(network: Network, name: str, behavior: NatBehavior) -> tuple[Host, str]:
    """A host on the WAN or alone behind a new NAT ``{name}-nat`` (as
    :meth:`~ice.netsim.Network.add_host_behind` makes it), and its edge: where it meets the
    WAN, its NAT's public address or its own."""
    config = behavior.config
    if config is None:
        host = network.add_host(name)
        return host, host.addresses[0]
    nat = network.add_nat(f"{name}-nat", config)
    return network.add_host(name, lan=nat), nat.public_addresses[0]


def nat_matrix(
    seed: int = 0,
    behaviors: Iterable[NatBehavior] = tuple(NatBehavior),
    *,
    udp_blocked: tuple[bool, bool] = (False, False),
    turn_transport: ClientTransport | None = None,
) -> dict[tuple[NatBehavior, NatBehavior], Outcome]:
    """Run :func:`two_agents_behind_nats` for every ordered pair of ``behaviors`` (with
    ``udp_blocked`` as it says; with ``turn_transport``, TURN servers reached over it)."""
    kinds = list(behaviors)
    turn = turn_transport is not None
    transport = turn_transport or ClientTransport.UDP
    return {
        (a, b): two_agents_behind_nats(
            a, b, seed, udp_blocked=udp_blocked, turn=turn, turn_transport=transport
        ).run()
        for a in kinds
        for b in kinds
    }


def format_matrix(outcomes: dict[tuple[NatBehavior, NatBehavior], Outcome]) -> str:
    """The matrix as a text table: rows are A's NAT, columns B's; each cell the types of A's
    selected pair and the connect time in virtual seconds, or ``fails``."""
    rows = list(dict.fromkeys(a for a, _ in outcomes))
    columns = list(dict.fromkeys(b for _, b in outcomes))

    def cell(outcome: Outcome | None) -> str:
        if outcome is None:
            return ""
        if not outcome.connected:
            return "fails"
        return f"{outcome.pair_types} {outcome.connect_time:.3f}s"

    table = [["A \\ B", *(b.value for b in columns)]]
    table += [[a.value, *(cell(outcomes.get((a, b))) for b in columns)] for a in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
