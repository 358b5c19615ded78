"""Advertised addresses: what a host behind a 1:1 NAT (a cloud VM with a private address and a
public one) tells its peers in place of the address its sockets are bound to.

Written as coturn's ``--external-ip`` is: ``PUBLIC`` alone stands for every local address of its
family, ``PUBLIC/PRIVATE`` for the one local address ``PRIVATE``. A 1:1 NAT keeps ports, so only
the IP address changes. ICE offers its host candidates with the public address
(``Connection(advertised_addresses=[...])``, like pion's NAT 1:1 IPs); the TURN server reports
its relayed addresses with it (``icestack serve turn --external-ip``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import LocalProtocolError

__all__ = ["AdvertisedAddress", "advertise", "check_advertised", "parse_advertised"]


@dataclass(frozen=True, slots=True)
class AdvertisedAddress:
    """``public`` is told to peers in place of ``private`` (``None``: any local address of the
    public one's family). Hosts are canonical IP literals."""

    public: str
    private: str | None = None

    def __str__(self) -> str:
        return self.public if self.private is None else f"{self.public}/{self.private}"


def _ip(text: str, what: str, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise LocalProtocolError(f"{what}: {name} {text!r} is not an IP address") from None


def parse_advertised(
    value: object, what: str = "advertised address", *, error: type[Exception] = LocalProtocolError
) -> AdvertisedAddress:
    """``PUBLIC`` or ``PUBLIC/PRIVATE`` (text, or an :class:`AdvertisedAddress`) checked: IP
    literals of one family; else ``error`` naming ``what``."""
    if isinstance(value, AdvertisedAddress):
        value = str(value)
    if not isinstance(value, str):
        raise error(f"{what}: 'PUBLIC' or 'PUBLIC/PRIVATE' text, not {value!r}")
    public_text, slash, private_text = value.partition("/")
    try:
        public = _ip(public_text, what, "public address")
        private = _ip(private_text, what, "private address") if slash else None
    except LocalProtocolError as exc:
        raise error(str(exc)) from None
    if private is not None and private.version != public.version:
        raise error(f"{what}: {value!r} mixes IPv4 and IPv6")
    return AdvertisedAddress(str(public), None if private is None else str(private))


def check_advertised(
    values: Iterable[AdvertisedAddress], what: str, *, error: type[Exception] = LocalProtocolError
) -> None:
    """At most one ``PUBLIC`` alone per family and one mapping per private address: otherwise
    which public address a local one gets would depend on the order."""
    seen: set[str] = set()
    for value in values:
        key = value.private or ("any IPv6" if ":" in value.public else "any IPv4")
        if key in seen:
            raise error(f"{what}: two public addresses for {key}")
        seen.add(key)


def advertise(values: Iterable[AdvertisedAddress], host: str) -> str:
    """The address peers are told for local address ``host``: its own mapping, else the one
    for every address of its family, else ``host`` itself."""
    fallback = host
    six = ":" in host
    for value in values:
        if value.private == host:
            return value.public
        if value.private is None and (":" in value.public) == six:
            fallback = value.public
    return fallback
