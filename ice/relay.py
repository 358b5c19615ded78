"""Relayed candidates (RFC 8445 §5.1.1.2) through TURN allocations (RFC 8656), for the agent.

Theory of operation. For every host base and every configured TURN server of the same family,
:meth:`Relays.allocate` opens a :class:`~turn.client.TurnAllocation` that talks to the server from
that base. When the Allocate succeeds, each relayed address becomes a relayed candidate — its own
base (checks are sent "from" it), related address the server-reflexive address the server saw
(RFC 8839 §5.1; with the relay-only policy a placeholder instead, :func:`related_address`),
type preference 0 — and when it fails, or is left unanswered for ``gathering_timeout`` (a dead
server must not stall gathering), a :class:`~ice.events.GatheringFailed`. Afterwards the agent
treats a relayed address like any other base: a datagram it addresses from a relayed address is
handed to :meth:`Relays.send`, which the allocation wraps in ChannelData or a Send indication
(creating the peer's permission first); a datagram from the TURN server is unwrapped by
:meth:`Relays.receive` into what the peer sent to the relayed address.

**Transports** (RFC 7065). A server reached over UDP is talked to from the base's own socket. A
server reached over TCP or TLS needs a connection, which only the driver can open: the relay
asks for one with :class:`OpenRelayStream`, naming a *stream label* — an :class:`Address` on the
base's host whose port is above 65535, so that no socket has it — and everything the allocation
sends carries that label as its ``local`` (STUN messages, and ChannelData padded to four bytes,
RFC 8656 §12.5: the driver writes the bytes as they are). The driver cuts what the connection
brings into STUN and ChannelData frames (:mod:`stun.framing`) and feeds each one as a datagram
that arrived on the label from the server; it reports the connection established
(:meth:`Relays.stream_connected`) or gone (:meth:`Relays.stream_closed`: refused, the TLS
handshake failed, closed by the server). The Allocate is sent at once and waits in the driver
while the connection opens, so ``gathering_timeout`` bounds the connect, the TLS handshake and
the Allocate together. A stream that fails or ends is asked closed (:class:`CloseRelayStream`).

**Families** (RFC 8656 §7.1). The relayed address is asked for in the families the agent
gathers on: IPv4 alone by default, REQUESTED-ADDRESS-FAMILY IPv6 when every base is IPv6, and a
dual allocation (ADDITIONAL-ADDRESS-FAMILY IPv6) when both are — the server gives the IPv6
address as well when it offers it, the IPv4 one alone otherwise. A 440 (Address Family not
Supported) is met with the next plan: an IPv6-only server gets REQUESTED-ADDRESS-FAMILY IPv6
after refusing the dual allocation, an IPv4-only one a plain Allocate after refusing IPv6.

**Priorities and foundations.** A relayed candidate's local preference ranks its server's
transport first (UDP, then TCP, then TLS) and is unique among the relayed candidates of its
component (:mod:`ice.preferences`, RFC 8445 §5.1.2.1); its foundation names the server's IP
address and, for TCP and TLS, the transport it was obtained over (§5.1.1.3).

An allocation can end without us: a 437 answer (the server restarted and holds no allocation for
us), its lifetime running out, or its TCP/TLS connection closing. Its relayed candidates are then
*lost* at once (the agent's ``lose`` callback). :meth:`Relays.probe` asks the server early, with
a Refresh, whether it still holds an allocation — the agent does so when a relayed pair stops
answering consent checks — and :meth:`Relays.restart` allocates again wherever the allocation is
gone (ICE restart, RFC 8445 §9), over a new connection for TCP and TLS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from stun.address import Address, AddressFamily, family_of
from stun.client import ClientConfig, Credentials
from stun.datagram import Datagram
from turn.client import AllocationState, TurnAllocation, TurnClientConfig
from turn.events import (
    AllocationCreated,
    AllocationDeleted,
    AllocationExpired,
    AllocationFailed,
    DataReceived,
)
from turn.transport import ClientTransport

from .candidate import (
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    candidate_priority,
    compute_foundation,
)
from .config import AgentConfig, Policy, RelayServer
from .events import GatheringFailed
from .preferences import LocalPreferences, relay_local_preference

#: What the peer sent: (the relayed address it went to, the peer, the bytes).
Delivery = tuple[Address, Address, bytes]
#: A base to allocate from: (stream, component, base address, local preference).
RelayBase = tuple[int, int, Address, int]
#: Where the gone allocations stand: they are allocated again at a restart (closing or closed:
#: deleted by :meth:`Relays.release`).
_ENDED = (
    AllocationState.FAILED,
    AllocationState.EXPIRED,
    AllocationState.CLOSING,
    AllocationState.CLOSED,
)
#: The first port of stream labels: above every port a socket can have.
STREAM_LABELS_START = 0x10000


@dataclass(frozen=True, slots=True)
class RelayStreamCommand:
    """Base class of what the agent asks its driver to do with the TCP/TLS connections of its
    relays (drained with ``Agent.relay_stream_commands()``)."""

    label: Address


@dataclass(frozen=True, slots=True)
class OpenRelayStream(RelayStreamCommand):
    """Connect from the interface address ``local_host`` to the TURN server ``server`` over TCP,
    or TLS when ``tls`` (verifying the certificate for ``server_name``); write every datagram
    labelled ``label`` there, and feed every STUN or ChannelData frame that arrives as a datagram
    received on ``label`` from ``server``. Report ``relay_stream_connected`` once established
    (the TLS handshake done) and ``relay_stream_closed`` if it fails or ends. What is sent before
    it is established waits for it."""

    local_host: str
    server: Address
    tls: bool
    server_name: str


@dataclass(frozen=True, slots=True)
class CloseRelayStream(RelayStreamCommand):
    """Close the connection (after writing what was sent to it), or give up opening it; nothing
    more is reported about it. A later :class:`OpenRelayStream` may reuse the label."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """The relayed families an Allocate asks for (RFC 8656 §7.1)."""

    requested: AddressFamily | None = None
    dual: bool = False


_IPV4 = _Plan()
_IPV6 = _Plan(requested=AddressFamily.IPV6)
_DUAL = _Plan(dual=True)


def _plans(families: set[AddressFamily]) -> tuple[_Plan, ...]:
    """What to ask for, in order, when the agent gathers on ``families`` (module docstring)."""
    if AddressFamily.IPV6 not in families:
        return (_IPV4,)
    if AddressFamily.IPV4 not in families:
        return (_IPV6, _IPV4)
    return (_DUAL, _IPV6)


@dataclass(slots=True)
class _Relay:
    allocation: TurnAllocation
    server: RelayServer
    #: The host base (an interface address) the allocation is made from.
    base: Address
    stream: int
    component: int
    local_preference: int
    #: What its datagrams carry as ``local``: the base over UDP, a stream label over TCP/TLS.
    label: Address
    #: The family plans left to try after a 440.
    plans: tuple[_Plan, ...]
    #: When its first Allocate was sent: fallbacks share its ``gathering_timeout``.
    started: float
    #: TCP/TLS: the server its connection goes to, whether it is established, and why it ended.
    stream_server: Address | None = None
    connected: bool = False
    stream_error: str | None = None

    @property
    def over_stream(self) -> bool:
        return self.server.transport.is_stream


class Relays:
    """The TURN allocations of one agent and the relayed candidates they give."""

    __slots__ = (
        "_add_candidate",
        "_by_relayed",
        "_commands",
        "_config",
        "_failed",
        "_families",
        "_labels",
        "_lose_candidate",
        "_preferences",
        "_relays",
        "_routes",
        "_streams",
        "active",
    )

    def __init__(
        self,
        config: AgentConfig,
        preferences: LocalPreferences,
        add_candidate: Callable[[Candidate, int], None],
        lose_candidate: Callable[[Address, str, bool], None],
        failed: Callable[[GatheringFailed], None],
    ) -> None:
        self._config = config
        self._preferences = preferences
        self._add_candidate = add_candidate
        self._lose_candidate = lose_candidate
        self._failed = failed
        self._relays: list[_Relay] = []
        #: Whether any allocation exists (else there is nothing to send, time or wrap): an
        #: attribute, not a property, since the agent asks at every datagram and timer.
        self.active = False
        self._by_relayed: dict[Address, _Relay] = {}
        #: (label, server) → relay: the owner of a datagram from a TURN server, in one lookup.
        self._routes: dict[tuple[Address, Address], _Relay] = {}
        #: TCP/TLS relays by stream label, for the driver's notifications.
        self._streams: dict[Address, _Relay] = {}
        self._labels = itertools.count(STREAM_LABELS_START)
        #: What the driver must do with relay streams, in order.
        self._commands: list[RelayStreamCommand] = []
        #: The families the agent gathers on (those of every base so far).
        self._families: set[AddressFamily] = set()

    def allocate(self, bases: list[RelayBase], now: float) -> None:
        """Allocate on every TURN server from every base of the server's family."""
        if not self._config.turn_servers:
            return  # nothing to allocate on (and :data:`NO_RELAYS`, shared, stays as it is)
        self._families |= {family_of(base[2]) for base in bases}
        plans = _plans(self._families)
        for base in bases:
            for server in self._config.turn_servers:
                if family_of(server.address) == family_of(base[2]):
                    self._open(server, base, plans, now)

    def _open(
        self, server: RelayServer, base: RelayBase, plans: tuple[_Plan, ...], now: float
    ) -> None:
        stream, component, address, preference = base
        label = address
        if server.transport.is_stream:
            label = Address(address.host, next(self._labels))
        relay = _Relay(
            self._allocation(server, label, plans[0], self._config.gathering_timeout),
            server,
            address,
            stream,
            component,
            preference,
            label,
            plans[1:],
            now,
        )
        self._relays.append(relay)
        self.active = True
        self._routes[(label, server.address)] = relay
        if relay.over_stream:
            self._streams[label] = relay
            self._open_stream(relay, server.address)
        relay.allocation.allocate(now)
        self._drain(relay, now)

    def _allocation(
        self, server: RelayServer, label: Address, plan: _Plan, timeout: float
    ) -> TurnAllocation:
        config = self._config
        return TurnAllocation(
            server.address,
            Credentials(username=server.username, password=server.password),
            TurnClientConfig(
                stun=ClientConfig(rng=config.rng, software=config.software),
                transport=server.transport,
                allocate_timeout=timeout,
                requested_family=plan.requested,
                dual_allocation=plan.dual,
            ),
            local=label,
        )

    def _open_stream(self, relay: _Relay, server: Address) -> None:
        relay.stream_server = server
        relay.connected = False
        relay.stream_error = None
        name = relay.server.server_name or relay.server.address.host
        tls = relay.server.transport is ClientTransport.TLS
        self._commands.append(OpenRelayStream(relay.label, relay.base.host, server, tls, name))

    def _close_stream(self, relay: _Relay) -> None:
        if self._streams.pop(relay.label, None) is relay:
            self._commands.append(CloseRelayStream(relay.label))

    def restart(self, now: float) -> None:
        """ICE restart: allocate again on every server whose allocation failed or ended."""
        plans = _plans(self._families)
        for relay in [r for r in self._relays if r.allocation.state in _ENDED]:
            self._forget(relay)
            base = (relay.stream, relay.component, relay.base, relay.local_preference)
            self._open(relay.server, base, plans, now)

    def remove_base(
        self, base: Address, now: float, reason: str, *, released: bool = False
    ) -> None:
        """The base's interface address is gone, or the base was ``released``: end its
        allocations and lose their candidates."""
        for relay in [r for r in self._relays if r.base == base]:
            self._lose(relay, reason, released=released)
            relay.allocation.close(now)  # nothing can be sent from a gone base: no wait for it
            self._forget(relay)

    def release(self, needed: set[Address], now: float, reason: str) -> list[Address]:
        """Delete every allocation none of whose relayed addresses ``needed`` holds (RFC 8445
        §8.3: a completed agent frees the candidates it does not use; RFC 8656 §8: a Refresh with
        LIFETIME 0), losing its candidates with ``reason``; a restart allocates again. Returns
        the relayed addresses released."""
        released = []
        for relay in self._relays:
            relayed = [a for a, r in self._by_relayed.items() if r is relay]
            if relayed and needed.isdisjoint(relayed):
                self._lose(relay, reason, released=True)
                relay.allocation.close(now)
                self._drain(relay, now)
                released += relayed
        return released

    def _forget(self, relay: _Relay) -> None:
        self._relays.remove(relay)
        self.active = bool(self._relays)
        self._close_stream(relay)
        self._routes = {key: r for key, r in self._routes.items() if r is not relay}

    @property
    def pending(self) -> bool:
        """Whether an Allocate is still unanswered (gathering is not complete until none is)."""
        return any(r.allocation.state is AllocationState.ALLOCATING for r in self._relays)

    def base_of(self, relayed: Address) -> Address | None:
        """The host base whose allocation gave the relayed address ``relayed``, if it is ours."""
        relay = self._by_relayed.get(relayed)
        return None if relay is None else relay.base

    def is_relayed(self, address: Address) -> bool:
        return address in self._by_relayed

    def protocol(self, relayed: Address) -> str | None:
        """How the TURN server behind a relayed address is reached (``"udp"``, ``"tcp"``,
        ``"tls"``), or ``None`` if ``relayed`` is not one of ours."""
        relay = self._by_relayed.get(relayed)
        return None if relay is None else relay.server.transport.value

    def owner(self, local: Address, remote: Address) -> _Relay | None:
        """The allocation a datagram arriving on ``local`` (a base, or a stream label) from
        ``remote`` belongs to."""
        return self._routes.get((local, remote))

    def receive(self, relay: _Relay, data: bytes, now: float) -> list[Delivery]:
        """Feed a datagram from the TURN server; return what peers sent through the relay."""
        relay.allocation.receive_datagram(data, relay.label, relay.allocation.server, now)
        return self._drain(relay, now)

    def send(self, data: bytes, relayed: Address, peer: Address, now: float) -> None:
        """Send ``data`` from a relayed address to ``peer`` (through the TURN server)."""
        relay = self._by_relayed.get(relayed)
        if relay is not None and relay.allocation.state is AllocationState.ALLOCATED:
            relay.allocation.send(data, peer, now)

    def probe(self, relayed: Address, now: float) -> None:
        """Ask the server whether it still holds the allocation behind ``relayed`` (an early
        Refresh, RFC 8656 §8): a 437 answer loses its candidates at once."""
        relay = self._by_relayed.get(relayed)
        if relay is not None and relay.allocation.state is AllocationState.ALLOCATED:
            relay.allocation.refresh(now)
            self._drain(relay, now)

    # ------------------------------------------------------------------ the driver's streams

    def stream_commands(self) -> list[RelayStreamCommand]:
        """Take what the driver must do with relay streams, in order."""
        commands = self._commands
        if commands:  # asked at every pump: no new list when there is nothing
            self._commands = []
        return commands

    def stream_connected(self, label: Address, now: float) -> None:
        """The driver established the connection of ``label`` (TLS handshake included)."""
        relay = self._streams.get(label)
        if relay is not None:
            relay.connected = True

    def stream_closed(self, label: Address, now: float, reason: str) -> list[Delivery]:
        """The connection of ``label`` could not be opened, or ended: its allocation ends with
        it (RFC 8656 §3.1: the server deletes an allocation whose connection closed)."""
        relay = self._streams.pop(label, None)
        if relay is None:
            return []
        relay.stream_error = reason
        relay.allocation.connection_lost(now)
        return self._drain(relay, now)

    # ------------------------------------------------------------------ the five verbs

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return [d for relay in self._relays for d in relay.allocation.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return min(
            (t for relay in self._relays if (t := relay.allocation.get_timer()) is not None),
            default=None,
        )

    def handle_timer(self, now: float) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for relay in list(self._relays):
            relay.allocation.handle_timer(now)
            deliveries += self._drain(relay, now)
        return deliveries

    def close(self, now: float) -> None:
        """Delete every allocation (RFC 8656 §8: Refresh with LIFETIME 0)."""
        for relay in self._relays:
            relay.allocation.close(now)

    def _drain(self, relay: _Relay, now: float) -> list[Delivery]:
        deliveries: list[Delivery] = []
        allocation = relay.allocation
        while (event := allocation.next_event()) is not None:
            if isinstance(event, DataReceived):
                deliveries.append((event.relayed, event.peer, event.data))
            elif isinstance(event, AllocationCreated):
                relayed = sorted(event.relayed, key=lambda a: family_of(a) is AddressFamily.IPV4)
                for address in relayed:  # IPv6 first, as RFC 8421 ranks it
                    self._by_relayed[address] = relay
                    self._add_candidate(self._candidate(relay, address, event.mapped), relay.stream)
            elif isinstance(event, AllocationFailed):
                if event.code == 440 and relay.plans:
                    self._fall_back(relay, now)
                    return deliveries
                self._close_stream(relay)
                self._failed(GatheringFailed(relay.server.address, relay.base, _why(relay, event)))
            elif isinstance(event, AllocationDeleted):
                self._close_stream(relay)  # released: its TCP or TLS connection goes too
            elif isinstance(event, AllocationExpired):
                self._close_stream(relay)
                why = event.reason
                if relay.stream_error is not None:
                    why += f" ({relay.stream_error})"
                self._lose(relay, f"the TURN allocation on {relay.server.address} ended: {why}")
        # ALTERNATE-SERVER (RFC 8489 §10) may have moved the allocation to another server.
        self._routes[(relay.label, allocation.server)] = relay
        if relay.stream_server not in (None, allocation.server) and relay.label in self._streams:
            self._commands.append(CloseRelayStream(relay.label))
            self._open_stream(relay, allocation.server)
        return deliveries

    def _fall_back(self, relay: _Relay, now: float) -> None:
        """The server refused the families asked for (440): ask for the next plan's, on the same
        connection, within what is left of ``gathering_timeout``."""
        plan, relay.plans = relay.plans[0], relay.plans[1:]
        left = max(relay.started + self._config.gathering_timeout - now, 1e-3)
        relay.allocation = self._allocation(relay.server, relay.label, plan, left)
        relay.allocation.allocate(now)
        self._drain(relay, now)

    def _lose(self, relay: _Relay, reason: str, *, released: bool = False) -> None:
        for relayed in [a for a, r in self._by_relayed.items() if r is relay]:
            del self._by_relayed[relayed]
            self._lose_candidate(relayed, reason, released)

    def _candidate(self, relay: _Relay, relayed: Address, mapped: Address | None) -> Candidate:
        transport = relay.server.transport
        wanted = relay_local_preference(relay.local_preference, transport)
        preference = self._preferences.take(
            relay.stream, relay.component, CandidateType.RELAYED, wanted
        )
        return Candidate(
            foundation=compute_foundation(
                CandidateType.RELAYED,
                relay.base.host,
                "udp",
                relay.server.address.host,
                server_transport=transport.value if transport.is_stream else None,
            ),
            component=relay.component,
            transport="udp",
            priority=candidate_priority(
                TYPE_PREFERENCE[CandidateType.RELAYED], preference, relay.component
            ),
            host=relayed.host,
            port=relayed.port,
            type=CandidateType.RELAYED,
            related_address=related_address(relayed, mapped, self._config.policy),
            base=relayed,
        )


def _never(*_: object) -> None:
    """The callbacks of :data:`NO_RELAYS`, which allocates nothing and so never calls them."""


#: The relays of every agent without TURN servers: they never allocate, so one inert instance
#: serves them all and holds nothing of any of them (~1 KiB of empty tables per agent less).
NO_RELAYS = Relays(AgentConfig(), LocalPreferences(), _never, _never, _never)


def _why(relay: _Relay, event: AllocationFailed) -> str:
    """Why a relay gave no candidate, saying the transport when it is not UDP."""
    if not relay.over_stream:
        return event.reason
    over = f"over {relay.server.transport.name}"
    if relay.stream_error is not None:
        return f"{over}: {relay.stream_error}"
    if not relay.connected:
        seconds = relay.allocation.config.allocate_timeout
        return f"{over}: not connected within {seconds:g} s (gathering_timeout)"
    return f"{over}: {event.reason}"


def related_address(relayed: Address, mapped: Address | None, policy: Policy) -> Address | None:
    """The related address a relayed candidate is signalled with (RFC 8839 §5.1): the address the
    TURN server saw us at — unless the policy is relay-only, whose point is that the peer never
    learns an address of ours: then the unspecified address of the candidate's family, port 0,
    which the SDP grammar allows and browsers signal in that mode (libwebrtc empties a relayed
    candidate's related address when reflexive candidates are not allowed)."""
    if policy is Policy.RELAY:
        return Address("::" if ":" in relayed.host else "0.0.0.0", 0)
    return mapped
