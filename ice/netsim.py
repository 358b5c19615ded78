"""A deterministic simulated network for sans-IO machines: hosts, NATs, lossy links, virtual time.

Theory of operation. A :class:`Network` is a tree of address realms (the RFC 2663 term): the WAN
at the root, and one LAN inside every :class:`Nat`. A NAT has public addresses in its parent realm
(the WAN, or the LAN of another NAT: nested NATs are a NAT whose parent is a NAT) and its own LAN
behind. A :class:`Host` has addresses in one or more realms (a host on a LAN with a public IPv6
address too is a host with an address in each). :meth:`Host.attach` binds a sans-IO machine (the
architecture.md §2 verbs, :class:`stun.datagram.Machine`) to a port on every address of its host,
as a socket bound to the wildcard address would be.

What NATs and links do, and what the network reports, are values of :mod:`ice.netsim_values`,
importable from here too.

A datagram a machine sends enters the realm of its source address and crosses that realm's link,
which may lose, delay, jitter, duplicate or reorder it (:class:`LinkConfig`). At the far side of the
link the realm routes it: to a host of the realm that owns the destination address; to a NAT
whose public address it is, which filters and translates it into the NAT's LAN; or, from a LAN,
out through the LAN's NAT, which maps the source (RFC 4787 §4.1) and sends it into the parent
realm. A datagram for an address the WAN does not know is dropped, and so is one that a NAT filters
(§5), has no mapping for, or could not map; every drop is counted by :class:`DropReason`. A
datagram from a NAT's LAN to one of that NAT's own public addresses is hairpinned (§6) when the
NAT allows it: translated twice without leaving the NAT, its source the sender's public mapping.

Time is virtual. One heap of ``(time, sequence, event)`` holds every pending arrival, machine timer
and scheduled callback; the sequence number orders events of equal time by insertion, so a run is
a pure function of the seed and the scenario. After every interaction with a machine (a delivery,
its timer, :meth:`Attachment.flush`) the network drains ``datagrams_to_send``, hands any events to
the attachment's ``on_event`` hook if it has one, and re-arms one timer event from ``get_timer()``;
an outdated timer event is skipped when it comes up. Application events are otherwise left in the
machine for the test or user to drain with ``next_event()``. Commands given to a machine between
runs (``client.request(now=net.now)``) are picked up when the next run starts, which flushes every
attachment first. :meth:`Network.run` and :meth:`Network.run_until` stop after ``max_events``
events, so a machine that asks for its timer again and again at the same instant cannot hang a test.

Randomness. Everything random — loss, jitter, duplication, reordering, NAT port allocation — comes
from the one ``random.Random(seed)`` of the network, drawn in event order, and only when the
setting that needs it is non-zero. This module is the one place in ``ice`` that imports
:mod:`random` (tests/test_architecture.py allows it here alone): a seeded generator is the point of
a simulator, and nothing here is protocol logic that a real stack would run.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from stun.address import Address, normalize_host
from stun.datagram import Datagram, Machine
from stun.server import BindingServer, ServerConfig

from .errors import LocalProtocolError, enum_member
from .netsim_tcp import TcpModel
from .netsim_values import (
    DEFAULT_LAN_LINK,
    DEFAULT_WAN_LINK,
    DropReason,
    FilteringBehavior,
    Firewall,
    LinkConfig,
    MappingBehavior,
    NatBehavior,
    NatConfig,
    NatMapping,
    NetworkStats,
    PortAllocation,
    Segment,
    TraceEntry,
    Transport,
)
from .tcp import StreamMachine

__all__ = [
    "DEFAULT_LAN_LINK",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_WAN_LINK",
    "Attachment",
    "DropReason",
    "FilteringBehavior",
    "Host",
    "LinkConfig",
    "MappingBehavior",
    "Nat",
    "NatBehavior",
    "NatConfig",
    "NatMapping",
    "Network",
    "NetworkStats",
    "PortAllocation",
    "Realm",
    "Segment",
    "TraceEntry",
    "Transport",
]

#: How many events a run processes at most unless told otherwise.
DEFAULT_MAX_EVENTS = 100_000
#: How many times one interaction alternates between an ``on_event`` hook and the datagrams its
#: commands queue before the network leaves the rest for the machine's next interaction.
_MAX_HOOK_ROUNDS = 100

# --------------------------------------------------------------------------- topology


class _Packet(NamedTuple):
    data: bytes
    source: Address
    destination: Address
    #: The TCP segment this packet is (:mod:`ice.netsim_tcp`); ``None`` for a UDP datagram.
    segment: Segment | None = None

    @property
    def transport(self) -> Transport:
        return Transport.UDP if self.segment is None else Transport.TCP


class Realm:
    """An address realm: the WAN, or the LAN behind one NAT. Its ``link`` may be replaced at any
    time (``nat.lan.link = LinkConfig(loss=1.0)``) and applies to datagrams sent from then on."""

    def __init__(self, name: str, link: LinkConfig, nat: Nat | None, pool: Iterator[str]) -> None:
        self.name = name
        self.link = link
        #: The NAT this realm is the inside of; ``None`` for the WAN.
        self.nat = nat
        self._owners: dict[str, Host | Nat] = {}
        self._pool = pool

    def __repr__(self) -> str:
        return f"<Realm {self.name}>"

    def _claim(self, address: str, owner: Host | Nat) -> str:
        host = normalize_host(address)
        if host in self._owners:
            raise LocalProtocolError(f"{host} is already in use in {self.name}")
        self._owners[host] = owner
        return host

    def _next_free(self) -> str:
        for candidate in self._pool:
            if candidate not in self._owners:
                return candidate
        raise LocalProtocolError(f"no free address left in {self.name}")


def _wan_pool() -> Iterator[str]:
    """Public addresses from the documentation ranges (RFC 5737), in order."""
    for prefix in ("203.0.113", "198.51.100", "192.0.2"):
        for last in range(1, 255):
            yield f"{prefix}.{last}"


def _lan_pool(index: int) -> Iterator[str]:
    """Private addresses for the ``index``-th LAN: ``10.x.y.2`` to ``10.x.y.254`` (RFC 1918)."""
    prefix = f"10.{(index >> 8) & 0xFF}.{index & 0xFF}"
    for last in range(2, 255):
        yield f"{prefix}.{last}"


@dataclass(slots=True)
class _Mapping:
    internal: Address
    external: Address
    key: tuple[object, ...]
    expires_at: float
    transport: Transport
    peer_hosts: set[str] = field(default_factory=set)
    peers: set[Address] = field(default_factory=set)


class Nat:
    """A NAT between a parent realm (its public side) and its own LAN (RFC 4787 behaviours)."""

    def __init__(
        self,
        network: Network,
        name: str,
        config: NatConfig,
        parent: Realm,
        link: LinkConfig,
        pool: Iterator[str],
    ) -> None:
        self.name = name
        self.config = config
        #: Where the public addresses live: the WAN or another NAT's LAN.
        self.parent = parent
        #: The realm behind this NAT.
        self.lan = Realm(f"{name} LAN", link, self, pool)
        self._network = network
        self._public: list[str] = []
        self._by_key: dict[tuple[object, ...], _Mapping] = {}
        self._by_external: dict[tuple[Transport, Address], _Mapping] = {}
        self._next_port: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Nat {self.name} {self.config.mapping.name}/{self.config.filtering.name}>"

    @property
    def public_addresses(self) -> tuple[str, ...]:
        """The NAT's addresses in its parent realm; mappings use the first of each family."""
        return tuple(self._public)

    @property
    def mappings(self) -> tuple[NatMapping, ...]:
        """The mappings alive now, oldest first."""
        now = self._network.now
        return tuple(
            NatMapping(m.internal, m.external, m.expires_at, m.transport)
            for m in self._by_external.values()
            if m.expires_at > now
        )

    # ------------------------------------------------------------------ translation

    def _outbound(self, packet: _Packet, now: float, rng: random.Random) -> _Packet | DropReason:
        """Map the source of a datagram leaving the LAN (RFC 4787 §4.1), refreshing the mapping
        (§4.3) and remembering the destination for filtering (§5)."""
        destination = packet.destination
        public = next((a for a in self._public if _same_family(a, destination.host)), None)
        if public is None:
            return DropReason.NO_ROUTE
        mapping_behavior = self.config.mapping
        transport = packet.transport
        key: tuple[object, ...]
        if mapping_behavior is MappingBehavior.ENDPOINT_INDEPENDENT:
            key = (transport, packet.source, public)
        elif mapping_behavior is MappingBehavior.ADDRESS_DEPENDENT:
            key = (transport, packet.source, public, destination.host)
        else:
            key = (transport, packet.source, public, destination)
        mapping = self._by_key.get(key)
        if mapping is not None and mapping.expires_at <= now:
            self._forget(mapping)
            mapping = None
        if mapping is None:
            if packet.segment not in (None, Segment.SYN):
                return DropReason.NO_MAPPING  # only a SYN opens a TCP mapping (RFC 5382 §4)
            port = self._allocate(packet.source, public, transport, now, rng)
            if port is None:
                return DropReason.PORTS_EXHAUSTED
            mapping = _Mapping(packet.source, Address(public, port), key, now, transport)
            self._by_key[key] = mapping
            self._by_external[transport, mapping.external] = mapping
            note = "{} maps {} to {}" if transport is Transport.UDP else "{} maps TCP {} to {}"
            self._network._note(note, self.name, packet.source, mapping.external)
        mapping.expires_at = now + self._lifetime(transport)
        mapping.peer_hosts.add(destination.host)
        mapping.peers.add(destination)
        return packet._replace(source=mapping.external)

    def _inbound(self, packet: _Packet, now: float) -> _Packet | DropReason:
        """Filter (RFC 4787 §5) and translate a datagram for one of the public addresses."""
        transport = packet.transport
        mapping = self._by_external.get((transport, packet.destination))
        if mapping is None or mapping.expires_at <= now:
            if mapping is not None:
                self._forget(mapping)
            return DropReason.NO_MAPPING
        filtering = self.config.filtering
        if (
            filtering is FilteringBehavior.ADDRESS_DEPENDENT
            and packet.source.host not in mapping.peer_hosts
        ) or (
            filtering is FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT
            and packet.source not in mapping.peers
        ):
            return DropReason.FILTERED
        if self.config.inbound_refresh or transport is Transport.TCP:
            mapping.expires_at = now + self._lifetime(transport)
        return packet._replace(destination=mapping.internal)

    def _lifetime(self, transport: Transport) -> float:
        config = self.config
        return (
            config.binding_lifetime if transport is Transport.UDP else config.tcp_binding_lifetime
        )

    def _forget(self, mapping: _Mapping) -> None:
        del self._by_key[mapping.key]
        del self._by_external[mapping.transport, mapping.external]
        self._network._note(
            "{} forgets expired {} -> {}", self.name, mapping.internal, mapping.external
        )

    def _port_free(self, public: str, port: int, transport: Transport, now: float) -> bool:
        mapping = self._by_external.get((transport, Address(public, port)))
        if mapping is not None and mapping.expires_at <= now:
            self._forget(mapping)
            return True
        return mapping is None

    def _allocate(
        self, internal: Address, public: str, transport: Transport, now: float, rng: random.Random
    ) -> int | None:
        """An external port no live mapping holds (no port overloading, RFC 4787 §4.2.1)."""
        config = self.config
        low, high = config.port_range
        if config.port_preservation and self._port_free(public, internal.port, transport, now):
            return internal.port
        if config.port_allocation is PortAllocation.RANDOM:
            for _ in range(64):
                port = rng.randint(low, high)
                if self._port_free(public, port, transport, now):
                    return port
        start = self._next_port.get(public, low)
        size = high - low + 1
        for offset in range(size):
            port = low + (start - low + offset) % size
            if self._port_free(public, port, transport, now):
                self._next_port[public] = port + 1 if port < high else low
                return port
        return None


def _same_family(a: str, b: str) -> bool:
    return (":" in a) == (":" in b)


M = TypeVar("M", bound=Machine)
M_co = TypeVar("M_co", bound=Machine, covariant=True)


class Attachment(Generic[M_co]):
    """A machine attached to a host: the ports it is bound to, its timer, its event hook."""

    def __init__(
        self, host: Host, machine: M_co, port: int, on_event: Callable[[object], None] | None
    ) -> None:
        self.host = host
        self.machine = machine
        #: The port a datagram with ``local=None`` is sent from.
        self.port = port
        self.on_event = on_event
        self.ports: set[int] = set()
        #: The TCP ports it listens on (:meth:`listen_tcp`).
        self.tcp_ports: set[int] = set()
        #: The machine, if it also uses TCP connections (:class:`~ice.tcp.StreamMachine`).
        self.stream: StreamMachine | None = machine if isinstance(machine, StreamMachine) else None
        self.attached = True
        self._timer_deadline: float | None = None
        self._timer_token = 0

    def __repr__(self) -> str:
        return f"<Attachment {type(self.machine).__name__} on {self.host.name}:{self.port}>"

    def bind(self, port: int) -> None:
        """Bind one more port (on every address of the host) to this machine."""
        self.host._bind(self, port)

    def listen_tcp(self, port: int) -> None:
        """Accept TCP connections on ``port`` (on every address of the host) for this machine,
        which must be a :class:`~ice.tcp.StreamMachine`; it also connects from that port when
        told to (simultaneous open)."""
        self.host._network._tcp.listen(self, port)

    def flush(self) -> None:
        """Send what the machine has to send now and re-arm its timer: call after a command
        given in the middle of a run (between runs, the next run does it)."""
        self.host._network._service(self)

    def detach(self) -> None:
        """Unbind the machine: its ports close and its timer is no longer called."""
        for port in self.ports:
            del self.host._ports[port]
        self.ports.clear()
        self.host._network._tcp.detach(self)
        self.attached = False
        self.host._network._attachments.remove(self)


class Host:
    """A machine's home: addresses in one or more realms, and ports bound to attached machines."""

    def __init__(self, network: Network, name: str) -> None:
        self.name = name
        self._network = network
        self._realms: dict[str, Realm] = {}
        self._ports: dict[int, Attachment[Machine]] = {}
        self._ephemeral = itertools.count(50000)

    def __repr__(self) -> str:
        return f"<Host {self.name} {' '.join(self._realms)}>"

    @property
    def addresses(self) -> tuple[str, ...]:
        """The host's IP addresses, first one first (the source of ``local=None`` datagrams)."""
        return tuple(self._realms)

    def _source_for(self, destination: str) -> str:
        """The first address of the destination's family, as an unbound socket would pick."""
        addresses = self._realms
        return next((a for a in addresses if _same_family(a, destination)), next(iter(addresses)))

    def add_address(self, address: str | None, *, lan: Nat | None) -> str:
        """Give the host an address (a free one if ``None``) behind ``lan``, or on the WAN."""
        realm = self._network._realm(lan)
        host = realm._claim(address if address is not None else realm._next_free(), self)
        self._realms[host] = realm
        return host

    def attach(
        self,
        machine: M,
        *,
        port: int | None = None,
        on_event: Callable[[object], None] | None = None,
    ) -> Attachment[M]:
        """Bind ``machine`` to ``port`` (the next free port from 50000 if ``None``) on every
        address of this host; ``on_event`` is handed each event after every interaction.

        A datagram the machine sends with ``local=None`` leaves from ``port`` on the host's first
        address of the destination's family; with ``local`` set, from that address and port,
        which must be one of the host's and bound to this machine (else LocalProtocolError).
        """
        if port is None:
            port = next(p for p in self._ephemeral if p not in self._ports)
        attachment = Attachment(self, machine, port, on_event)
        self._bind(attachment, port)
        self._network._attachments.append(attachment)
        self._network._service(attachment)
        return attachment

    def _bind(self, attachment: Attachment[Machine], port: int) -> None:
        if not 0 < port <= 0xFFFF:
            raise LocalProtocolError(f"port out of range: {port}")
        if port in self._ports:
            raise LocalProtocolError(f"port {port} of {self.name} is already bound")
        self._ports[port] = attachment
        attachment.ports.add(port)


# --------------------------------------------------------------------------- the network


@dataclass(slots=True)
class _Arrival:
    realm: Realm
    packet: _Packet


@dataclass(slots=True)
class _TimerDue:
    attachment: Attachment[Machine]
    token: int


@dataclass(slots=True)
class _Callback:
    callback: Callable[[], None]


_Event = _Arrival | _TimerDue | _Callback


class Network:
    """The simulated network: the topology, the virtual clock, the event queue and the RNG."""

    def __init__(
        self, seed: int, *, wan_link: LinkConfig = DEFAULT_WAN_LINK, trace: bool = False
    ) -> None:
        #: The virtual time, in seconds; it only moves forward.
        self.now = 0.0
        #: The one random generator; drawing from it elsewhere changes what follows, reproducibly.
        self.rng = random.Random(seed)
        self.wan = Realm("WAN", wan_link, None, _wan_pool())
        self.stats = NetworkStats()
        #: What happened, in order, when ``trace`` is on: for debugging and determinism tests.
        self.trace: list[TraceEntry] = []
        self._tracing = trace
        self._queue: list[tuple[float, int, _Event]] = []
        self._sequence = itertools.count()
        self._attachments: list[Attachment[Machine]] = []
        self._names: set[str] = set()
        self._nats: list[Nat] = []
        self._firewall = Firewall()
        self._tcp = TcpModel(self)

    # ------------------------------------------------------------------ building

    def add_nat(
        self,
        name: str,
        behavior: NatBehavior | NatConfig,
        *,
        public: Sequence[str] | None = None,
        lan: Nat | None = None,
        link: LinkConfig = DEFAULT_LAN_LINK,
    ) -> Nat:
        """Add a NAT with ``public`` addresses (a free one if ``None``) on the WAN, or on the LAN
        of the NAT ``lan`` (a nested NAT); its own LAN's link is ``link``."""
        if isinstance(behavior, NatConfig):
            config: NatConfig | None = behavior
        else:
            config = enum_member(NatBehavior, behavior, "NAT behaviour").config
        if config is None:
            raise LocalProtocolError("NatBehavior.OPEN is no NAT: put the host on the WAN")
        self._claim_name(name)
        parent = self._realm(lan)
        nat = Nat(self, name, config, parent, link, _lan_pool(len(self._nats) + 1))
        self._nats.append(nat)
        for address in public if public is not None else [parent._next_free()]:
            nat._public.append(parent._claim(address, nat))
        return nat

    def add_host(
        self, name: str, addresses: Sequence[str] | None = None, *, lan: Nat | None = None
    ) -> Host:
        """Add a host with ``addresses`` (one free IPv4 address if ``None``) behind the NAT
        ``lan``, or on the WAN; :meth:`Host.add_address` adds addresses in other realms."""
        if addresses is not None and not addresses:
            raise LocalProtocolError("a host needs at least one address")
        self._claim_name(name)
        host = Host(self, name)
        for address in addresses if addresses is not None else [None]:
            host.add_address(address, lan=lan)
        return host

    def add_host_behind(self, name: str, behavior: NatBehavior | NatConfig) -> Host:
        """A host on the WAN (``NatBehavior.OPEN``) or alone behind a new NAT ``{name}-nat``."""
        if isinstance(behavior, NatConfig):
            config: NatConfig | None = behavior
        else:
            config = enum_member(NatBehavior, behavior, "NAT behaviour").config
        if config is None:
            return self.add_host(name)
        return self.add_host(name, lan=self.add_nat(f"{name}-nat", config))

    def add_stun_server(
        self, address: Address, *, config: ServerConfig | None = None
    ) -> BindingServer:
        """Run the real sans-IO :class:`~stun.server.BindingServer` at ``address`` on the WAN
        (on the host that already has that address, if any)."""
        host_address = normalize_host(address.host)
        owner = self.wan._owners.get(host_address)
        if isinstance(owner, Nat):
            raise LocalProtocolError(f"{host_address} belongs to {owner.name}")
        host = owner or self.add_host(f"stun-{address}", [host_address])
        server = BindingServer(config or ServerConfig(rng=random.Random(self.rng.getrandbits(64))))
        host.attach(server, port=address.port)
        return server

    def block(
        self,
        address: str,
        other: str | None = None,
        *,
        transport: Transport | str | None = None,
    ) -> None:
        """Drop every packet between IP addresses ``address`` and ``other`` (both ways), or
        to and from ``address`` when ``other`` is ``None``; checked on every link crossed. With
        ``transport`` (``"udp"`` or ``"tcp"``), only that transport's: ``transport="udp"`` is
        the firewall of a network that blocks UDP."""
        self._firewall.block(address, other, transport)

    def unblock(
        self,
        address: str,
        other: str | None = None,
        *,
        transport: Transport | str | None = None,
    ) -> None:
        """Undo :meth:`block` with the same arguments."""
        self._firewall.unblock(address, other, transport)

    @property
    def tcp(self) -> TcpModel:
        """The TCP side of the network: its connections, and resets for tests
        (:mod:`ice.netsim_tcp`)."""
        return self._tcp

    def _claim_name(self, name: str) -> None:
        if name in self._names:
            raise LocalProtocolError(f"the name {name!r} is taken")
        self._names.add(name)

    def _realm(self, lan: Nat | None) -> Realm:
        return self.wan if lan is None else lan.lan

    # ------------------------------------------------------------------ running

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` at virtual time ``when`` (now, if that has passed); every
        attachment is flushed after it, so it may give machines commands."""
        self._push(when, _Callback(callback))

    def run(self, until: float | None = None, *, max_events: int = DEFAULT_MAX_EVENTS) -> int:
        """Process events in time order up to ``until`` (then set the clock to it), or until none
        are left; stop early after ``max_events``. Return how many were processed."""
        return self._run(until, max_events, None)[0]

    def run_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> bool:
        """Run until ``predicate()`` holds (checked after every event) or ``timeout`` seconds
        of virtual time pass; return whether it held."""
        return self._run(self.now + timeout, max_events, predicate)[1]

    def _run(
        self, until: float | None, max_events: int, predicate: Callable[[], bool] | None
    ) -> tuple[int, bool]:
        for attachment in list(self._attachments):
            self._service(attachment)
        if predicate is not None and predicate():
            return 0, True
        processed = 0
        queue = self._queue
        while queue and processed < max_events:
            if until is not None and queue[0][0] > until:
                break
            when, _, event = heapq.heappop(queue)
            if isinstance(event, _TimerDue) and (
                event.token != event.attachment._timer_token or not event.attachment.attached
            ):
                continue
            self.now = max(self.now, when)
            self._fire(event)
            processed += 1
            if predicate is not None and predicate():
                return processed, True
        if until is not None and processed < max_events:
            self.now = max(self.now, until)
        return processed, False

    def _push(self, when: float, event: _Event) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._sequence), event))

    def _fire(self, event: _Event) -> None:
        if isinstance(event, _Arrival):
            self._route(event.realm, event.packet)
        elif isinstance(event, _TimerDue):
            attachment = event.attachment
            attachment._timer_deadline = None
            self._note("timer {}:{}", attachment.host.name, attachment.port)
            attachment.machine.handle_timer(self.now)
            self._service(attachment)
        else:
            event.callback()
            for attachment in list(self._attachments):
                self._service(attachment)

    def _service(self, attachment: Attachment[Machine]) -> None:
        """Drain a machine after an interaction: datagrams, events for the hook, then the timer."""
        machine = attachment.machine
        stream = attachment.stream
        for _ in range(_MAX_HOOK_ROUNDS):
            for datagram in machine.datagrams_to_send(self.now):
                if attachment.attached:
                    self._send(attachment, datagram)
            if stream is not None:
                for command in stream.tcp_commands():
                    if attachment.attached:
                        self._tcp.command(attachment, command)
            hook = attachment.on_event
            if hook is None:
                break
            event = machine.next_event()
            if event is None:
                break
            while event is not None:
                hook(event)
                event = machine.next_event()
        if not attachment.attached:
            return
        deadline = machine.get_timer()
        if deadline == attachment._timer_deadline:
            return
        attachment._timer_token += 1
        attachment._timer_deadline = deadline
        if deadline is not None:
            self._push(deadline, _TimerDue(attachment, attachment._timer_token))

    # ------------------------------------------------------------------ datagrams

    def _send(self, attachment: Attachment[Machine], datagram: Datagram) -> None:
        host = attachment.host
        local = datagram.local
        remote = datagram.remote
        destination = Address(normalize_host(remote.host), remote.port)
        if local is None:
            source = Address(host._source_for(destination.host), attachment.port)
        else:
            source = Address(normalize_host(local.host), local.port)
            if source.host not in host._realms:
                raise LocalProtocolError(f"{host.name} has no address {source.host}")
            if host._ports.get(source.port) is not attachment:
                raise LocalProtocolError(f"the machine is not bound to port {source.port}")
        packet = _Packet(datagram.data, source, destination)
        self.stats.sent += 1
        self._note("{} sends {} -> {} ({} B)", host.name, source, destination, len(packet.data))
        self._emit(host, packet)

    def _send_segment(
        self, host: Host, segment: Segment, source: Address, destination: Address, data: bytes
    ) -> None:
        """A TCP segment leaves ``host`` (:mod:`ice.netsim_tcp`)."""
        self._note("{} sends {} {} -> {}", host.name, segment.value, source, destination)
        self._emit(host, _Packet(data, source, destination, segment))

    def _emit(self, host: Host, packet: _Packet) -> None:
        """A packet leaves ``host`` (from one of its addresses) onto that address's realm."""
        if not _same_family(packet.source.host, packet.destination.host):
            self._drop(DropReason.NO_ROUTE, packet)
            return
        self._transmit(host._realms[packet.source.host], packet)

    def _transmit(self, realm: Realm, packet: _Packet) -> None:
        """Put a packet on a realm's link: it arrives at the realm's router after the delay. A
        TCP segment takes the link's delay only: TCP's retransmissions and ordering hide loss,
        duplicates, jitter and reordering from both ends (their cost in time is not modelled)."""
        firewall = self._firewall
        if firewall and firewall.blocks(
            packet.source.host, packet.destination.host, packet.transport
        ):
            self._drop(DropReason.FIREWALL, packet)
            return
        link = realm.link
        if packet.segment is not None:
            self._push(self.now + link.delay, _Arrival(realm, packet))
            return
        rng = self.rng
        if link.loss and rng.random() < link.loss:
            self._drop(DropReason.LOSS, packet)
            return
        copies = 1
        if link.duplicate and rng.random() < link.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            delay = link.delay
            if link.jitter:
                delay += rng.uniform(0.0, link.jitter)
            if link.reorder and rng.random() < link.reorder:
                delay += link.reorder_delay
            self._push(self.now + delay, _Arrival(realm, packet))

    def _route(self, realm: Realm, packet: _Packet) -> None:
        """A datagram reached the far end of ``realm``'s link: deliver, translate or drop it."""
        owner = realm._owners.get(packet.destination.host)
        if isinstance(owner, Host):
            self._deliver(owner, packet)
        elif isinstance(owner, Nat):
            self._enter(owner, packet)
        elif realm.nat is None:
            self._drop(DropReason.NO_ROUTE, packet)
        else:
            nat = realm.nat
            translated = nat._outbound(packet, self.now, self.rng)
            if isinstance(translated, DropReason):
                self._drop(translated, packet)
            elif nat.parent._owners.get(translated.destination.host) is nat:
                if nat.config.hairpinning:
                    self._note("{} hairpins {} -> {}", nat.name, *translated[1:])
                    self._enter(nat, translated)
                else:
                    self._drop(DropReason.NO_HAIRPINNING, translated)
            else:
                self._transmit(nat.parent, translated)

    def _enter(self, nat: Nat, packet: _Packet) -> None:
        translated = nat._inbound(packet, self.now)
        if isinstance(translated, DropReason):
            self._drop(translated, packet)
        else:
            self._transmit(nat.lan, translated)

    def _deliver(self, host: Host, packet: _Packet) -> None:
        if packet.segment is not None:
            self._tcp.deliver(host, packet.segment, packet.source, packet.destination, packet.data)
            return
        attachment = host._ports.get(packet.destination.port)
        if attachment is None:
            self._drop(DropReason.PORT_UNREACHABLE, packet)
            return
        self.stats.delivered += 1
        self._note("{} receives {} -> {}", host.name, packet.source, packet.destination)
        attachment.machine.receive_datagram(
            packet.data, packet.destination, packet.source, self.now
        )
        self._service(attachment)

    def _drop(self, reason: DropReason, packet: _Packet) -> None:
        self.stats.dropped[reason] += 1
        self._note("drop {} -> {}: {}", packet.source, packet.destination, reason.name)

    def _note(self, template: str, *values: object) -> None:
        """Trace one step; the text is only formatted when tracing is on."""
        if self._tracing:
            self.trace.append(TraceEntry(self.now, template.format(*values)))
