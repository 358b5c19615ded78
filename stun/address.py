"""Transport addresses as icestack passes them: ``(host, port)`` with normalised text hosts.

Hosts are IP literals in their canonical text form (dotted quad, compressed IPv6), so two addresses
compare equal exactly when they name the same endpoint. Packing to and from wire bytes lives here
because every address-carrying attribute (RFC 8489 §14.1, §14.2; RFC 8656 §18) needs it.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import sys
from typing import NamedTuple

from .errors import LocalProtocolError


class Address(NamedTuple):
    """A transport address: an IP literal (normalised text) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class AddressFamily(enum.IntEnum):
    """The family byte of address attributes (RFC 8489 §14.1)."""

    IPV4 = 0x01
    IPV6 = 0x02


def family_of(address: Address) -> AddressFamily:
    """The family of a transport address (hosts are normalised IP literals: an IPv6 one has a
    colon, an IPv4 one none)."""
    return AddressFamily.IPV6 if ":" in address.host else AddressFamily.IPV4


@functools.lru_cache(maxsize=4096)
def pack_host(host: str) -> tuple[AddressFamily, bytes]:
    """Return the family and the 4- or 16-byte packed form of an IP literal.

    Raises :class:`LocalProtocolError` for anything that is not an IP literal (names are resolved
    by the asyncio layer, never here).
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise LocalProtocolError(f"not an IP address literal: {host!r}") from None
    family = AddressFamily.IPV4 if ip.version == 4 else AddressFamily.IPV6
    return family, ip.packed


#: The decimal text of each byte value, for dotted quads without formatting integers.
DECIMAL_OCTETS = tuple(str(octet) for octet in range(256))


def unpack_host(packed: bytes) -> str:
    """Return the normalised text form of a 4- or 16-byte packed address."""
    # Interned: the addresses that sessions keep (a peer's, a mapped one) are held once.
    if len(packed) == 4:
        return sys.intern(".".join([DECIMAL_OCTETS[octet] for octet in packed]))
    return sys.intern(ipaddress.IPv6Address(packed).compressed)


def new_address(host: str, port: int) -> Address:
    """:class:`Address` built without ``NamedTuple``'s Python-level constructor, for decoders
    (which have checked ``host`` and ``port`` already)."""
    return _new_tuple(Address, (host, port))


_new_tuple = tuple.__new__


def normalize_host(host: str) -> str:
    """Return the canonical text of an IP literal (``"::ffff:0:1"`` style compression for IPv6)."""
    return unpack_host(pack_host(host)[1])


def make_address(host: str, port: int) -> Address:
    """Build an :class:`Address`, normalising the host and checking the port range."""
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {port}")
    return Address(normalize_host(host), port)


@functools.lru_cache(maxsize=4096)
def is_unicast(host: str) -> bool:
    """Whether ``host`` is a unicast IP literal: not the unspecified address, multicast, or
    IPv4's limited broadcast (sent to, the unspecified address reaches this very host)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    limited_broadcast = ip.version == 4 and ip.packed == b"\xff\xff\xff\xff"
    return not (ip.is_unspecified or ip.is_multicast or limited_broadcast)


def is_destination(address: Address) -> bool:
    """Whether datagrams can be sent to ``address``: a port other than 0 and a unicast IP
    literal — not the unspecified address, multicast, or IPv4's limited broadcast.

    A peer-supplied address that is none of these (an ALTERNATE-SERVER, a relayed address, a
    peer's address in a Data indication) is semantically impossible and dropped, not used.
    """
    return address.port != 0 and is_unicast(address.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an IP literal in 127.0.0.0/8 or ``::1``."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
