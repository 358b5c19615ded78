"""The local interface addresses ICE gathers host candidates on (RFC 8445 §5.1.1.1), asked of the
operating system through ``ifaddr``."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Collection

import ifaddr

from stun.address import normalize_host
from stun.errors import LocalProtocolError as StunLocalProtocolError

from .mdns_sockets import InterfaceAddress


def interface_addresses(
    *,
    include_loopback: bool = False,
    use_ipv4: bool = True,
    use_ipv6: bool = True,
    only: Collection[str] | None = None,
) -> list[InterfaceAddress]:
    """The local IP addresses to gather host candidates on (RFC 8445 §5.1.1.1), via ``ifaddr``.

    Link-local addresses are never used (IPv6 ones need a scope on every peer's side, IPv4 ones
    are self-assigned); loopback addresses only with ``include_loopback``. ``only`` narrows the
    list to the addresses or interface names it contains.
    """
    wanted = None if only is None else {_normal(name) for name in only}
    found: dict[str, InterfaceAddress] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            host = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            parsed = ipaddress.ip_address(host.split("%", 1)[0])
            if (parsed.version == 4 and not use_ipv4) or (parsed.version == 6 and not use_ipv6):
                continue
            if parsed.is_link_local or (parsed.is_loopback and not include_loopback):
                continue
            text = parsed.compressed
            if wanted is not None and not ({text, adapter.name, adapter.nice_name} & wanted):
                continue
            # Interned: every connection keeps its addresses (mDNS, local preferences), and they
            # are the same few strings for all of them.
            name = sys.intern(adapter.name)
            found.setdefault(text, InterfaceAddress(sys.intern(text), adapter.index or 0, name))
    return list(found.values())


def interface_problem(
    name: str,
    *,
    include_loopback: bool,
    use_ipv4: bool = True,
    use_ipv6: bool = True,
    loopback_hint: str,
) -> str | None:
    """Why ``name`` — an address or an interface name — gives gathering no address here, or
    ``None`` when it gives one; ``loopback_hint`` says how to allow loopback addresses."""
    families = {"use_ipv4": use_ipv4, "use_ipv6": use_ipv6}
    if interface_addresses(include_loopback=include_loopback, only=[name], **families):
        return None
    if not include_loopback and interface_addresses(include_loopback=True, only=[name], **families):
        return f"a loopback address; {loopback_hint}"
    if interface_addresses(include_loopback=True, only=[name]):
        off = "IPv4" if not use_ipv4 else "IPv6"
        return f"its addresses are {off}, which is turned off"
    here = ", ".join(f"{a.interface} {a.host}" for a in interface_addresses(include_loopback=True))
    return (
        "no usable address of this host matches it (an IP address or an interface name; "
        f"link-local addresses are never used); here: {here or 'none'}"
    )


def _normal(name: str) -> str:
    try:
        return normalize_host(name)
    except StunLocalProtocolError:
        return name  # an interface name
