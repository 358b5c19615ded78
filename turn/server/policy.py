"""Which peers a TURN server relays to (RFC 8656 §11.2, §12.2: "the server MAY impose restrictions
on the IP address ... allowed in the XOR-PEER-ADDRESS attribute"; §21 on open relays).

A public relay that forwards anywhere lets anyone with credentials reach what sits behind it: the
server's own loopback services, the private network it lives in, a cloud provider's metadata
service at 169.254.169.254 — directly, or through a NAT64, 6to4 or Teredo gateway by an IPv6
address that carries such an IPv4 address. So by default this policy refuses every peer that is
not globally reachable, and an operator opens exactly what they need. The rules, in order; the
first that matches decides:

1. ``allowed_peers`` (CIDRs) admit a peer whatever else says — coturn's ``--allowed-peer-ip``;
2. ``denied_peers`` (CIDRs) refuse more — coturn's ``--denied-peer-ip``;
3. ``allow_loopback_peers`` admits 127.0.0.0/8 and ::1, for tests and local setups;
4. the server's own addresses (``own_addresses`` and those the server learns as it runs) are
   refused;
5. ``allow_documentation_peers`` admits the documentation ranges, which simulations and tests
   use as public addresses;
6. an IPv6 address that carries IPv4 addresses (:mod:`turn.server.embedded`: NAT64 with the
   well-known prefix or one of ``nat64_prefixes``, 6to4, Teredo) is judged by every IPv4 address
   it carries: refused if one is denied (2), is the server's own (4) or is not globally reachable;
7. any other address is refused if the most specific range of
   :data:`~turn.server.special_purpose.SPECIAL_RANGES` holding it is not globally reachable
   (the IANA special-purpose registries, multicast, IPv6 outside 2000::/3).

Allowances never travel through an embedding: ``allow_loopback_peers`` admits 127.0.0.1 but not
64:ff9b::7f00:1, and ``allowed_peers=("10.0.0.0/8",)`` admits 10.1.2.3 but not its NAT64 form
(allow the IPv6 form itself for that). Refusals do travel.

CreatePermission, ChannelBind and Connect for a refused peer are answered 403 (Forbidden); a
relay never holds a permission for one, so nothing reaches it. The verdict is asked per request,
never per relayed datagram.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field

from stun import LocalProtocolError

from .embedded import carried_ipv4, parse_nat64_prefixes
from .special_purpose import (
    DOCUMENTATION_RANGES,
    SPECIAL_RANGE_TABLE,
    IPAddress,
    Network,
)

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
DENIED = "denied by configuration"
OWN = "an address of this server"


def parse_networks(cidrs: Collection[str], what: str) -> tuple[Network, ...]:
    """Parse CIDRs (a bare address is a /32 or /128); raise :class:`stun.LocalProtocolError`."""
    parsed = []
    for cidr in cidrs:
        try:
            parsed.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as error:
            raise LocalProtocolError(f"{what}: {error}") from None
    return tuple(parsed)


def _inside(ip: IPAddress, networks: Collection[Network]) -> bool:
    return any(ip in network for network in networks)


def unreachable(ip: IPAddress) -> str | None:
    """Why ``ip`` is not globally reachable by its most specific special-purpose range, or
    ``None`` if it is (rule 7)."""
    row = SPECIAL_RANGE_TABLE.most_specific(ip)
    return row.reason if row is not None and row.refused else None


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerPolicy:
    """The peers a server relays to; see the module docstring for the order of the rules."""

    #: CIDRs admitted even inside refused ranges (``--allowed-peer-ip``).
    allowed_peers: tuple[str, ...] = ()
    #: CIDRs refused besides the default ranges (``--denied-peer-ip``).
    denied_peers: tuple[str, ...] = ()
    #: Admit loopback peers (``--allow-loopback-peers``), even when they are the server's own.
    allow_loopback_peers: bool = False
    #: Admit the documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
    #: 2001:db8::/32 and 3fff::/20 (``--allow-documentation-peers``), for simulated networks.
    allow_documentation_peers: bool = False
    #: The operator's NAT64 prefixes (RFC 6052 §2.2, ``--nat64-prefix``): their addresses are
    #: judged by the IPv4 address they carry, like those of the well-known 64:ff9b::/96.
    nat64_prefixes: tuple[str, ...] = ()
    #: IP addresses of this server, refused as peers: a relay must not loop into its own services.
    own_addresses: tuple[str, ...] = ()
    _allowed: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _denied: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _nat64: tuple[ipaddress.IPv6Network, ...] = field(init=False, repr=False, compare=False)
    _own: frozenset[IPAddress] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allowed", parse_networks(self.allowed_peers, "allowed_peers"))
        object.__setattr__(self, "_denied", parse_networks(self.denied_peers, "denied_peers"))
        object.__setattr__(
            self, "_nat64", parse_nat64_prefixes(self.nat64_prefixes, "nat64_prefixes")
        )
        own = parse_networks(self.own_addresses, "own_addresses")
        if any(n.num_addresses != 1 for n in own):
            raise LocalProtocolError("own_addresses are addresses, not networks")
        object.__setattr__(self, "_own", frozenset(n.network_address for n in own))

    def refusal(self, host: str, own_hosts: Collection[str] = ()) -> str | None:
        """Why a peer at ``host`` is refused, or ``None`` if it is allowed.

        ``own_hosts`` are further addresses of this server, such as the relayed and listening
        addresses in use, in normalised text form.
        """
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "not an IP address"
        if _inside(ip, self._allowed):
            return None
        if _inside(ip, self._denied):
            return DENIED
        if self.allow_loopback_peers and _inside(ip, _LOOPBACK):
            return None
        if self._is_own(ip, own_hosts):
            return OWN
        if self.allow_documentation_peers and _inside(ip, DOCUMENTATION_RANGES):
            return None
        carried = carried_ipv4(ip, self._nat64) if isinstance(ip, ipaddress.IPv6Address) else None
        if carried is None:
            return unreachable(ip)
        if not carried.addresses:
            return f"{carried.form}: carries no valid IPv4 address"
        for ipv4 in carried.addresses:
            refusal = self._carried_refusal(ipv4, own_hosts)
            if refusal is not None:
                return f"{carried.form} form of {ipv4}: {refusal}"
        return None

    def _is_own(self, ip: IPAddress, own_hosts: Collection[str]) -> bool:
        return ip in self._own or str(ip) in own_hosts

    def _carried_refusal(
        self, ipv4: ipaddress.IPv4Address, own_hosts: Collection[str]
    ) -> str | None:
        """Rule 6: an IPv4 address carried in an IPv6 one meets the refusals, not the allowances."""
        if _inside(ipv4, self._denied):
            return DENIED
        if self._is_own(ipv4, own_hosts):
            return OWN
        return unreachable(ipv4)
