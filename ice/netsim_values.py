"""The values of the simulated network (:mod:`ice.netsim`): how its NATs and links behave, and what
it reports.

Configuration: a NAT's mapping and filtering behaviours, port allocation and lifetimes (RFC 4787),
the classic RFC 3489 names for the common combinations (:class:`NatBehavior`), and what crossing
a realm does to a datagram (:class:`LinkConfig`). Observations: why a datagram was dropped
(:class:`DropReason`), the network's counters, trace lines and live NAT mappings. Everything here
is a frozen dataclass or an enum, importable from :mod:`ice.netsim` as well.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from stun.address import Address, normalize_host

from .errors import LocalProtocolError, enum_member

# --------------------------------------------------------------------------- configuration


class MappingBehavior(enum.Enum):
    """When a NAT reuses a mapping for a new destination (RFC 4787 §4.1)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class FilteringBehavior(enum.Enum):
    """Which inbound datagrams a NAT lets through a mapping (RFC 4787 §5).

    Endpoint-independent: any source. Address-dependent: a source IP address the internal
    endpoint has sent to through this mapping. Address-and-port-dependent: a source address and
    port it has sent to.
    """

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortAllocation(enum.Enum):
    """How a NAT picks an external port it does not preserve (RFC 4787 §4.2.1)."""

    RANDOM = "random"
    SEQUENTIAL = "sequential"


#: The enum-typed fields of :class:`NatConfig`, which also take their enum's value strings.
_NAT_ENUMS: tuple[tuple[str, type[enum.Enum]], ...] = (
    ("mapping", MappingBehavior),
    ("filtering", FilteringBehavior),
    ("port_allocation", PortAllocation),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class NatConfig:
    """How one NAT behaves; the defaults are RFC 4787's recommendations where it makes one."""

    mapping: MappingBehavior = MappingBehavior.ENDPOINT_INDEPENDENT
    filtering: FilteringBehavior = FilteringBehavior.ENDPOINT_INDEPENDENT
    #: Seconds a mapping lives after its last outbound datagram (§4.3, REQ-5: at least 2 minutes).
    binding_lifetime: float = 120.0
    #: Whether inbound datagrams refresh a mapping too (§4.3 leaves it to the NAT and asks only
    #: that outbound ones do).
    inbound_refresh: bool = False
    #: Loop datagrams between two hosts of the LAN through their public mappings (§6, REQ-9).
    hairpinning: bool = True
    #: Keep the internal port as the external one when it is free (§4.2.1).
    port_preservation: bool = False
    port_allocation: PortAllocation = PortAllocation.RANDOM
    #: The external ports a NAT allocates from, inclusive.
    port_range: tuple[int, int] = (1024, 65535)
    #: Seconds a TCP mapping lives after its last segment either way (RFC 5382 §5, REQ-5: an
    #: established connection's at least 2 hours 4 minutes).
    tcp_binding_lifetime: float = 7440.0

    def __post_init__(self) -> None:
        for name, kind in _NAT_ENUMS:
            object.__setattr__(self, name, enum_member(kind, getattr(self, name), name))
        if not (self.binding_lifetime > 0 and self.tcp_binding_lifetime > 0):
            raise LocalProtocolError("binding_lifetime and tcp_binding_lifetime must be positive")
        low, high = self.port_range
        if not 1 <= low <= high <= 0xFFFF:
            raise LocalProtocolError(f"bad port_range {self.port_range}")


class NatBehavior(enum.Enum):
    """Named NAT kinds for scenario tables and the command line; the value is the CLI name.

    The classic RFC 3489 names, as RFC 4787 §4.1 and §5 relate them to mapping and filtering.
    ``OPEN`` is no NAT at all: the host has a public address.
    """

    OPEN = "none"
    FULL_CONE = "full-cone"
    RESTRICTED_CONE = "restricted"
    PORT_RESTRICTED_CONE = "port-restricted"
    SYMMETRIC = "symmetric"

    @property
    def config(self) -> NatConfig | None:
        """This kind's :class:`NatConfig` (``None`` for ``OPEN``); ``dataclasses.replace`` it to
        change the lifetime, hairpinning or port allocation."""
        preset = _PRESETS.get(self)
        if preset is None:
            return None
        return NatConfig(mapping=preset[0], filtering=preset[1])

    @classmethod
    def parse(cls, text: str) -> NatBehavior:
        """The kind a CLI name (``"port-restricted"``) or member name (``"SYMMETRIC"``) names."""
        wanted = text.strip().lower().replace("_", "-")
        for behavior in cls:
            if wanted in (behavior.value, behavior.name.lower().replace("_", "-")):
                return behavior
        choices = ", ".join(b.value for b in cls)
        raise LocalProtocolError(f"unknown NAT behaviour {text!r}; choose from {choices}")


_PRESETS = {
    NatBehavior.FULL_CONE: (
        MappingBehavior.ENDPOINT_INDEPENDENT,
        FilteringBehavior.ENDPOINT_INDEPENDENT,
    ),
    NatBehavior.RESTRICTED_CONE: (
        MappingBehavior.ENDPOINT_INDEPENDENT,
        FilteringBehavior.ADDRESS_DEPENDENT,
    ),
    NatBehavior.PORT_RESTRICTED_CONE: (
        MappingBehavior.ENDPOINT_INDEPENDENT,
        FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT,
    ),
    NatBehavior.SYMMETRIC: (
        MappingBehavior.ADDRESS_AND_PORT_DEPENDENT,
        FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT,
    ),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkConfig:
    """What crossing one realm does to a datagram; each copy's delay is drawn on its own.

    A datagram is lost with probability ``loss``, else sent twice with probability
    ``duplicate``; each copy takes ``delay`` plus a uniform draw in ``[0, jitter]`` seconds, plus
    ``reorder_delay`` with probability ``reorder`` (so later datagrams overtake it). Jitter larger
    than the gap between two datagrams reorders them as well.
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05

    def __post_init__(self) -> None:
        if min(self.delay, self.jitter, self.reorder_delay) < 0:
            raise LocalProtocolError("delay, jitter and reorder_delay must not be negative")
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LocalProtocolError(f"{name} is a probability, between 0 and 1")


#: The WAN's default link: 10 ms one way, nothing lost.
DEFAULT_WAN_LINK = LinkConfig(delay=0.010)
#: A LAN's default link: 1 ms one way, nothing lost.
DEFAULT_LAN_LINK = LinkConfig(delay=0.001)


class Firewall:
    """The rules of :meth:`~ice.netsim.Network.block`: which packets no link carries, by the IP
    addresses they go between (or one of them, either way) and, optionally, their transport."""

    def __init__(self) -> None:
        self._rules: set[tuple[str, str | None, Transport | None]] = set()

    def __bool__(self) -> bool:
        return bool(self._rules)

    def block(self, address: str, other: str | None, transport: Transport | str | None) -> None:
        self._rules.update(self._expand(address, other, transport))

    def unblock(self, address: str, other: str | None, transport: Transport | str | None) -> None:
        self._rules.difference_update(self._expand(address, other, transport))

    def blocks(self, source: str, destination: str, transport: Transport) -> bool:
        """Whether a packet from ``source`` to ``destination`` (normalised hosts) is dropped."""
        rules = self._rules
        return any(
            rule in rules
            for which in (None, transport)
            for rule in (
                (source, destination, which),
                (source, None, which),
                (destination, None, which),
            )
        )

    @staticmethod
    def _expand(
        address: str, other: str | None, transport: Transport | str | None
    ) -> list[tuple[str, str | None, Transport | None]]:
        which = None if transport is None else enum_member(Transport, transport, "transport")
        first = normalize_host(address)
        if other is None:
            return [(first, None, which)]
        second = normalize_host(other)
        return [(first, second, which), (second, first, which)]


# --------------------------------------------------------------------------- observations


class DropReason(enum.Enum):
    """Why the network discarded a datagram; counted in :attr:`NetworkStats.dropped`."""

    LOSS = "lost on a link"
    NO_ROUTE = "no host or NAT has the destination address (or not in the right family)"
    PORT_UNREACHABLE = "no machine is attached to the destination port"
    NO_MAPPING = "a NAT has no live mapping for the destination port"
    FILTERED = "a NAT's filtering refused the source"
    NO_HAIRPINNING = "a NAT that does not hairpin got a datagram for its own public address"
    PORTS_EXHAUSTED = "a NAT had no free external port"
    FIREWALL = "blocked by Network.block"


class Transport(enum.Enum):
    """What a packet on the simulated network carries: a UDP datagram or a TCP segment."""

    UDP = "udp"
    TCP = "tcp"


class Segment(enum.Enum):
    """The kinds of TCP segment the simulated network carries (:mod:`ice.netsim_tcp`)."""

    SYN = "SYN"
    SYN_ACK = "SYN-ACK"
    DATA = "data"
    FIN = "FIN"
    RST = "RST"


@dataclass(slots=True)
class NetworkStats:
    """Counters over the whole network."""

    #: Datagrams machines sent.
    sent: int = 0
    #: Datagrams handed to a machine (duplicates count again).
    delivered: int = 0
    #: Extra copies links made.
    duplicated: int = 0
    dropped: dict[DropReason, int] = field(default_factory=lambda: dict.fromkeys(DropReason, 0))
    #: TCP connections established (both sides), refused (a reset answered the SYN) and reset.
    tcp_established: int = 0
    tcp_refused: int = 0
    tcp_reset: int = 0

    def __repr__(self) -> str:
        drops = ", ".join(f"{r.name}={n}" for r, n in self.dropped.items() if n)
        tcp = (
            f", tcp_established={self.tcp_established}, tcp_refused={self.tcp_refused}, "
            f"tcp_reset={self.tcp_reset}"
            if self.tcp_established or self.tcp_refused or self.tcp_reset
            else ""
        )
        return (
            f"NetworkStats(sent={self.sent}, delivered={self.delivered}, "
            f"duplicated={self.duplicated}, dropped={{{drops}}}{tcp})"
        )

    @property
    def dropped_total(self) -> int:
        """Datagrams dropped for any reason."""
        return sum(self.dropped.values())


class TraceEntry(NamedTuple):
    """One line of :attr:`~ice.netsim.Network.trace`: the virtual time and what happened."""

    time: float
    text: str


@dataclass(frozen=True, slots=True)
class NatMapping:
    """A live NAT mapping, as :attr:`~ice.netsim.Nat.mappings` reports it."""

    internal: Address
    external: Address
    expires_at: float
    transport: Transport = Transport.UDP
