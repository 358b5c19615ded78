"""IPv6 addresses that carry IPv4 addresses, and the IPv4 addresses they carry.

A datagram to such an address ends at the IPv4 address inside it, through a gateway the relay
cannot see: a NAT64 translator (RFC 6052, RFC 8215), a 6to4 relay (RFC 3056) or a Teredo relay
(RFC 4380). So the peer policy judges these addresses by the IPv4 addresses they carry; the
well-known forms are recognised always, an operator's own NAT64 prefixes when configured. The
IPv4-mapped and IPv4-compatible forms are not here: the registries refuse them outright.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass

from stun import LocalProtocolError

#: The NAT64 well-known prefix (RFC 6052 §2.1).
WELL_KNOWN_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: The prefix lengths of IPv4-embedded IPv6 addresses (RFC 6052 §2.2).
NAT64_PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)

_U_OCTET_SHIFT = 56  # bits 64-71 of an RFC 6052 address, which must be zero (§2.2)
_LOW_56_BITS = (1 << _U_OCTET_SHIFT) - 1


@dataclass(frozen=True, slots=True)
class Carried:
    """What an IPv4-carrying IPv6 address carries: its form, and the IPv4 addresses (none when
    the address breaks its form's rules, as an RFC 6052 address with bits 64-71 set does)."""

    form: str
    addresses: tuple[ipaddress.IPv4Address, ...]


def parse_nat64_prefixes(cidrs: Collection[str], what: str) -> tuple[ipaddress.IPv6Network, ...]:
    """Parse NAT64 prefixes (RFC 6052 §2.2: /32, /40, /48, /56, /64 or /96, bits 64-71 zero);
    raise :class:`stun.LocalProtocolError` naming ``what``."""
    prefixes = []
    for cidr in cidrs:
        try:
            prefix = ipaddress.IPv6Network(cidr)
        except ValueError as error:
            raise LocalProtocolError(f"{what}: {error}") from None
        if prefix.prefixlen not in NAT64_PREFIX_LENGTHS or _u_octet(int(prefix.network_address)):
            raise LocalProtocolError(
                f"{what}: {cidr} is not a NAT64 prefix (RFC 6052 §2.2: /32, /40, /48, /56, /64 "
                "or /96, with bits 64-71 zero)"
            )
        prefixes.append(prefix)
    return tuple(prefixes)


def _u_octet(value: int) -> int:
    return (value >> _U_OCTET_SHIFT) & 0xFF


def nat64_embedded(ip: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address inside an RFC 6052 §2.2 address under a prefix of this length: 32 bits
    right after the prefix, skipping bits 64-71."""
    value = int(ip)
    squeezed = (value >> 64 << _U_OCTET_SHIFT) | (value & _LOW_56_BITS)  # 120 bits, no u-octet
    start = prefix_length if prefix_length <= 64 else prefix_length - 8
    return ipaddress.IPv4Address((squeezed >> (120 - start - 32)) & 0xFFFFFFFF)


def carried_ipv4(
    ip: ipaddress.IPv6Address, nat64_prefixes: Collection[ipaddress.IPv6Network] = ()
) -> Carried | None:
    """The IPv4 addresses ``ip`` carries, or ``None`` if it is no IPv4-carrying form."""
    for prefix in (*nat64_prefixes, WELL_KNOWN_NAT64):
        if ip in prefix:
            if _u_octet(int(ip)):
                return Carried("NAT64 (RFC 6052)", ())
            return Carried("NAT64 (RFC 6052)", (nat64_embedded(ip, prefix.prefixlen),))
    six_to_four = ip.sixtofour  # the IPv4 address in bits 16-47 of 2002::/16
    if six_to_four is not None:
        return Carried("6to4 (RFC 3056)", (six_to_four,))
    teredo = ip.teredo  # the server's IPv4 address and the client's, un-obfuscated
    if teredo is not None:
        return Carried("Teredo (RFC 4380)", teredo)
    return None
