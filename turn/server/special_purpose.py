"""The special-purpose address ranges a TURN relay must not reach unless told to (RFC 8656 §21:
a relay must not become a way into the networks behind it).

:data:`SPECIAL_RANGES` is the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890,
RFC 8190; registry as updated 2025-10-09, transcribed 2026-12-06 — the rows with their
provenance are in ``rfc_vectors/iana_special_purpose.json``), row for row with each row's
"Globally Reachable" value, plus the few ranges other registries and RFCs set apart
(:data:`OTHER_RANGES`: multicast, deprecated site-local and IPv4-compatible addresses, and IPv6
space outside the global unicast block 2000::/3). An address is judged by the most specific range
that holds it, as the registry's footnotes ask: 192.0.0.9/32 (PCP anycast, globally reachable)
inside 192.0.0.0/24 (not) is reachable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IANA_IPV4 = "IANA IPv4 Special-Purpose Address Registry"
IANA_IPV6 = "IANA IPv6 Special-Purpose Address Registry"


class Reach(Enum):
    """A registry row's "Globally Reachable" value (RFC 8190 §2)."""

    GLOBAL = "True"
    #: Not forwarded beyond the administrative domain it belongs to.
    LOCAL = "False"
    #: That of the IPv4 address the block carries (6to4, Teredo): see :mod:`turn.server.embedded`.
    CARRIED = "N/A"
    #: A terminated allocation; the registry leaves the value empty.
    TERMINATED = ""


@dataclass(frozen=True, slots=True)
class SpecialRange:
    """One special-purpose range: where it comes from, and whether a relay may reach it."""

    network: Network
    name: str
    rfc: str
    reach: Reach
    registry: str

    @property
    def refused(self) -> bool:
        """Whether a peer in this range is refused by default: all but globally reachable ones
        (a carrying range's addresses are judged by what they carry before this is asked)."""
        return self.reach is not Reach.GLOBAL

    @property
    def reason(self) -> str:
        """The reason a refusal names."""
        return f"{self.name} ({self.rfc}): not globally reachable"


def _rows(registry: str, table: Iterable[tuple[str, str, str, str]]) -> tuple[SpecialRange, ...]:
    """Rows as the registry writes them: block, name, reference, "Globally Reachable"."""
    return tuple(
        SpecialRange(ipaddress.ip_network(cidr), name, rfc, Reach(reach), registry)
        for cidr, name, rfc, reach in table
    )


#: Every row of the two IANA registries, in the registries' order (a row with two blocks is two).
REGISTRY_RANGES: tuple[SpecialRange, ...] = _rows(
    IANA_IPV4,
    (
        ("0.0.0.0/8", '"This network"', "RFC 791 §3.2", "False"),
        ("0.0.0.0/32", '"This host on this network"', "RFC 1122 §3.2.1.3", "False"),
        ("10.0.0.0/8", "Private-Use", "RFC 1918", "False"),
        ("100.64.0.0/10", "Shared Address Space", "RFC 6598", "False"),
        ("127.0.0.0/8", "Loopback", "RFC 1122 §3.2.1.3", "False"),
        ("169.254.0.0/16", "Link Local", "RFC 3927", "False"),
        ("172.16.0.0/12", "Private-Use", "RFC 1918", "False"),
        ("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 §2.1", "False"),
        ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", "False"),
        ("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", "False"),
        ("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", "True"),
        ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", "True"),
        ("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", "False"),
        ("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", "False"),
        ("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", "False"),
        ("192.31.196.0/24", "AS112-v4", "RFC 7535", "True"),
        ("192.52.193.0/24", "AMT", "RFC 7450", "True"),
        ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", ""),
        ("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", "False"),
        ("192.168.0.0/16", "Private-Use", "RFC 1918", "False"),
        ("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", "True"),
        ("198.18.0.0/15", "Benchmarking", "RFC 2544", "False"),
        ("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", "False"),
        ("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", "False"),
        ("240.0.0.0/4", "Reserved", "RFC 1112 §4", "False"),
        ("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 §7", "False"),
    ),
) + _rows(
    IANA_IPV6,
    (
        ("::1/128", "Loopback Address", "RFC 4291", "False"),
        ("::/128", "Unspecified Address", "RFC 4291", "False"),
        ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", "False"),
        ("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", "True"),
        ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", "False"),
        ("100::/64", "Discard-Only Address Block", "RFC 6666", "False"),
        ("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", "False"),
        ("2001::/23", "IETF Protocol Assignments", "RFC 2928", "False"),
        ("2001::/32", "TEREDO", "RFC 4380, RFC 8190", "N/A"),
        ("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", "True"),
        ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", "True"),
        ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", "True"),
        ("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", "False"),
        ("2001:3::/32", "AMT", "RFC 7450", "True"),
        ("2001:4:112::/48", "AS112-v6", "RFC 7535", "True"),
        ("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", ""),
        ("2001:20::/28", "ORCHIDv2", "RFC 7343", "True"),
        ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", "True"),
        ("2001:db8::/32", "Documentation", "RFC 3849", "False"),
        ("2002::/16", "6to4", "RFC 3056", "N/A"),
        ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", "True"),
        ("3fff::/20", "Documentation", "RFC 9637", "False"),
        ("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", "False"),
        ("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", "False"),
        ("fe80::/10", "Link-Local Unicast", "RFC 4291", "False"),
    ),
)

#: Ranges outside the special-purpose registries that no relay should reach either.
OTHER_RANGES: tuple[SpecialRange, ...] = _rows(
    "IANA IPv4 Multicast Address Space Registry",
    (("224.0.0.0/4", "Multicast", "RFC 5771", "False"),),
) + _rows(
    "IANA IPv6 Address Space Registry",
    (
        # The registry's only global unicast block is 2000::/3 (RFC 4291 §2.4); the rest is
        # multicast, link- and site-local, unique local, or reserved by the IETF.
        ("::/3", "Outside global unicast 2000::/3", "RFC 4291 §2.4", "False"),
        ("4000::/2", "Outside global unicast 2000::/3", "RFC 4291 §2.4", "False"),
        ("8000::/1", "Outside global unicast 2000::/3", "RFC 4291 §2.4", "False"),
        ("::/96", "IPv4-compatible Address, deprecated", "RFC 4291 §2.5.5.1", "False"),
        ("fec0::/10", "Site-Local, deprecated", "RFC 3879", "False"),
        ("ff00::/8", "Multicast", "RFC 4291 §2.7", "False"),
    ),
)

SPECIAL_RANGES: tuple[SpecialRange, ...] = REGISTRY_RANGES + OTHER_RANGES

#: The documentation ranges (RFC 5737, RFC 3849, RFC 9637): what tests and simulations use as
#: public addresses, admitted as peers with ``PeerPolicy(allow_documentation_peers=True)``.
DOCUMENTATION_RANGES: tuple[Network, ...] = tuple(
    row.network for row in REGISTRY_RANGES if row.name.startswith("Documentation")
)


class RangeTable:
    """The most specific of a set of ranges holding an address, in one dictionary probe per
    distinct prefix length (a dozen at most), longest first."""

    __slots__ = ("_levels",)

    def __init__(self, ranges: Iterable[SpecialRange]) -> None:
        levels: dict[tuple[int, int], dict[int, SpecialRange]] = {}
        for row in ranges:
            network = row.network
            shift = network.max_prefixlen - network.prefixlen
            level = levels.setdefault((network.version, shift), {})
            key = int(network.network_address) >> shift
            if key in level:
                raise ValueError(f"{network} is listed twice")
            level[key] = row
        self._levels: dict[int, tuple[tuple[int, dict[int, SpecialRange]], ...]] = {
            version: tuple(
                sorted(
                    ((shift, level) for (v, shift), level in levels.items() if v == version),
                    key=lambda item: item[0],
                )
            )
            for version in (4, 6)
        }

    def most_specific(self, ip: IPAddress) -> SpecialRange | None:
        """The range with the longest prefix that holds ``ip``, if any does."""
        value = int(ip)
        for shift, level in self._levels[ip.version]:
            row = level.get(value >> shift)
            if row is not None:
                return row
        return None


SPECIAL_RANGE_TABLE = RangeTable(SPECIAL_RANGES)
