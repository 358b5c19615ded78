"""What a Multicast DNS querier has heard: addresses of ``.local`` names, kept for their TTL.

Responders answer by multicast and announce their names unsolicited (RFC 6762 §6, §8.3), so a
querier that listens on port 5353 learns addresses before it asks; a browser announces a host
candidate's ``<uuid>.local`` name when it gathers it, often before the candidate reaches us
through signalling. :class:`AddressCache` keeps every address record of class IN from a
response's answer and additional sections, sans-IO, with the TTL the responder gave (capped),
and drops it on a goodbye (TTL 0, §10.1). A record with the cache-flush bit replaces the other
addresses of its family for that name (§10.2).

The peer decides what arrives, so the cache is bounded: at most ``max_names`` names (the oldest
is evicted first) and :data:`MAX_ADDRESSES_PER_NAME` addresses per name; every lookup is a dict
access.
"""

from __future__ import annotations

from .dns import AddressRecord, DnsMessage
from .errors import LocalProtocolError

#: Addresses kept per name; a host has a few, a flood is cut here.
MAX_ADDRESSES_PER_NAME = 8


def normalise_name(name: str) -> str:
    """The form names are compared in: lower case, without the trailing dot (RFC 6762 §16)."""
    return name.rstrip(".").lower()


class AddressCache:
    """Addresses heard in mDNS responses, each until its TTL (at most ``max_ttl`` seconds) ends."""

    def __init__(self, *, max_names: int = 256, max_ttl: float = 120.0) -> None:
        if max_names < 1 or max_ttl <= 0:
            raise LocalProtocolError("an mDNS cache needs room for a name and a positive TTL")
        self.max_names = max_names
        self.max_ttl = max_ttl
        #: name -> address -> when it expires; dicts keep insertion order, so the first name is
        #: the oldest.
        self._names: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def add(self, message: DnsMessage, now: float) -> set[str]:
        """Take the address records of a response; return the names that have an address now."""
        learnt = set()
        for record in message.answers + message.additionals:
            if isinstance(record, AddressRecord) and self._add(record, now):
                learnt.add(normalise_name(record.name))
        # A later record of the message may have withdrawn or evicted what an earlier one added.
        return {name for name in learnt if self.addresses(name, now)}

    def _add(self, record: AddressRecord, now: float) -> bool:
        name = normalise_name(record.name)
        addresses = self._names.get(name)
        if record.ttl == 0:
            if addresses is not None:
                addresses.pop(record.address, None)
            return False
        if addresses is None:
            while len(self._names) >= self.max_names:
                del self._names[next(iter(self._names))]
            addresses = self._names[name] = {}
        elif record.cache_flush:
            ipv6 = ":" in record.address
            for other in [a for a in addresses if (":" in a) == ipv6 and a != record.address]:
                del addresses[other]
        if record.address not in addresses and len(addresses) >= MAX_ADDRESSES_PER_NAME:
            return True
        addresses[record.address] = now + min(float(record.ttl), self.max_ttl)
        return True

    def lookup(self, name: str, now: float) -> str | None:
        """An unexpired address of ``name`` (the first one heard), or ``None``."""
        return next(iter(self.addresses(name, now)), None)

    def addresses(self, name: str, now: float) -> list[str]:
        """The unexpired addresses of ``name``, in the order they were heard."""
        name = normalise_name(name)
        addresses = self._names.get(name)
        if addresses is None:
            return []
        for address in [a for a, expires in addresses.items() if expires <= now]:
            del addresses[address]
        if not addresses:
            del self._names[name]
        return list(addresses)
