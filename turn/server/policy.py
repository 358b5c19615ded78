"""Which peers a TURN server relays to (RFC 8656 §11.2, §12.2: "the server MAY impose restrictions
on the IP address ... allowed in the XOR-PEER-ADDRESS attribute"; §21 on open relays).

A public relay that forwards anywhere lets anyone on the Internet reach what sits behind it: the
server's own loopback services, the private network it lives in, a cloud provider's metadata
service at 169.254.169.254. So by default this policy refuses every peer in the ranges of
:data:`REFUSED_RANGES` and the server's own addresses, and an operator opens exactly what they
need:

1. ``allowed_peers`` (CIDRs) admit a peer whatever else says — coturn's ``--allowed-peer-ip``;
2. ``denied_peers`` (CIDRs) refuse more — coturn's ``--denied-peer-ip``;
3. ``allow_loopback_peers`` admits 127.0.0.0/8 and ::1, for tests and local setups;
4. the server's own addresses (``own_addresses`` and those the server learns as it runs) and
   :data:`REFUSED_RANGES` are refused.

The first rule that matches decides. CreatePermission and ChannelBind for a refused peer are
answered 403 (Forbidden); a relay never holds a permission for one, so nothing reaches it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field

from stun import LocalProtocolError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(table: tuple[tuple[str, str], ...]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in table)


#: The ranges refused unless allowed, each with the reason a refusal names.
REFUSED_RANGES: tuple[tuple[Network, str], ...] = _networks(
    (
        ("0.0.0.0/8", "unspecified / this network (RFC 791)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback (RFC 1122)"),
        ("169.254.0.0/16", "link-local, cloud metadata services (RFC 3927)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("224.0.0.0/4", "multicast (RFC 5771)"),
        ("240.0.0.0/4", "reserved, limited broadcast (RFC 1112, RFC 919)"),
        ("::/128", "unspecified (RFC 4291)"),
        ("::1/128", "loopback (RFC 4291)"),
        ("::ffff:0:0/96", "IPv4-mapped: a way round the IPv4 rules (RFC 4291)"),
        ("fc00::/7", "unique local (RFC 4193)"),
        ("fe80::/10", "link-local (RFC 4291)"),
        ("fec0::/10", "site-local, deprecated (RFC 3879)"),
        ("ff00::/8", "multicast (RFC 4291)"),
    )
)

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def parse_networks(cidrs: Collection[str], what: str) -> tuple[Network, ...]:
    """Parse CIDRs (a bare address is a /32 or /128); raise :class:`stun.LocalProtocolError`."""
    parsed = []
    for cidr in cidrs:
        try:
            parsed.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as error:
            raise LocalProtocolError(f"{what}: {error}") from None
    return tuple(parsed)


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerPolicy:
    """The peers a server relays to; see the module docstring for the order of the rules."""

    #: CIDRs admitted even inside refused ranges (``--allowed-peer-ip``).
    allowed_peers: tuple[str, ...] = ()
    #: CIDRs refused besides the default ranges (``--denied-peer-ip``).
    denied_peers: tuple[str, ...] = ()
    #: Admit loopback peers (``--allow-loopback-peers``), even when they are the server's own.
    allow_loopback_peers: bool = False
    #: IP addresses of this server, refused as peers: a relay must not loop into its own services.
    own_addresses: tuple[str, ...] = ()
    _allowed: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _denied: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _own: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allowed", parse_networks(self.allowed_peers, "allowed_peers"))
        object.__setattr__(self, "_denied", parse_networks(self.denied_peers, "denied_peers"))
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
        if any(ip in network for network in self._allowed):
            return None
        if any(ip in network for network in self._denied):
            return "denied by configuration"
        if self.allow_loopback_peers and any(ip in network for network in _LOOPBACK):
            return None
        if ip in self._own or host in own_hosts:
            return "an address of this server"
        for network, why in REFUSED_RANGES:
            if ip in network:
                return why
        return None
