"""Limits per source address, shared by the STUN and the TURN server: token buckets (the 400/401
budget of a source, a TURN allocation's bandwidth) and the admission of stream connections.

A :class:`TokenBucket` holds up to ``burst`` tokens and gains ``rate`` tokens a second; spending
more than it holds is refused. :class:`SourceRateLimiter` keeps one bucket per key (a source IP
address) in a table of at most ``max_entries``: when a new key arrives at a full table, the key
used longest ago is forgotten, so a flood from many addresses costs a bounded amount of memory (a
forgotten key starts again with a full bucket, which bounds what it can get to one burst per
eviction). :func:`source_key` names a source for both: an IPv4 address, or the /64 an IPv6 address
is in, since one host commonly holds a whole /64.

:class:`StreamAdmission` decides, when a TCP or TLS connection is accepted and before anything is
read from it, whether it may stay: at most :attr:`StreamLimits.max_connections` at once, at most
``max_connections_per_source`` from one source, and of those at most ``max_handshakes`` (and
``max_handshakes_per_source``) still in their TLS handshake. A pending handshake costs the server
as much memory as an open connection (asyncio gives each TLS connection a 256 KiB read buffer),
so it is counted from the accept on; its table holds only sources with a connection open, never
more entries than ``max_connections``. It counts every refusal and every connection the server
closed for a deadline (:class:`Refusal`, :class:`Closure`).
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from .errors import LocalProtocolError


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; starts full. Time is the caller's ``now``."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise LocalProtocolError("a token bucket needs a positive rate and burst")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` tokens if the bucket holds them; say whether it did."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def spend(self, amount: float, now: float) -> float:
        """Spend ``amount`` tokens even beyond what the bucket holds (bytes a stream already
        carried cannot be refused); return how long until the debt is paid, in seconds."""
        self.take(0, now)
        self.tokens -= amount
        return max(0.0, -self.tokens / self.rate)


class SourceRateLimiter:
    """One :class:`TokenBucket` per key, at most ``max_entries`` of them (least recently used
    forgotten first)."""

    __slots__ = ("_buckets", "burst", "max_entries", "rate")

    def __init__(self, *, rate: float, burst: float, max_entries: int) -> None:
        if max_entries < 1:
            raise LocalProtocolError("a rate limiter needs room for at least one source")
        TokenBucket(rate, burst, 0.0)  # validates rate and burst
        self.rate = rate
        self.burst = burst
        self.max_entries = max_entries
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Spend one token of ``key``'s bucket; ``False`` when it is empty."""
        buckets = self._buckets
        bucket = buckets.pop(key, None)
        if bucket is None:
            if len(buckets) >= self.max_entries:
                del buckets[next(iter(buckets))]
            bucket = TokenBucket(self.rate, self.burst, now)
        buckets[key] = bucket  # most recently used last
        return bucket.take(1, now)


def source_key(host: str) -> str:
    """The key a source address is limited under: IPv4 as it is, IPv6 by its /64 prefix (an
    IPv4-mapped IPv6 address, from a dual-stack socket, by the IPv4 address it carries)."""
    if ":" not in host:
        return host
    network = ipaddress.IPv6Network((host, 64), strict=False)
    mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
    return str(mapped) if mapped is not None else str(network.network_address)


# --------------------------------------------------------------------------- stream connections


class Refusal(enum.Enum):
    """Why a stream connection was closed as soon as it was accepted; the names are the metric
    labels (and the limits' names)."""

    MAX_CONNECTIONS = "max_connections connections are open"
    MAX_CONNECTIONS_PER_SOURCE = "max_connections_per_source are open from its source"
    MAX_HANDSHAKES = "max_handshakes TLS handshakes are pending"
    MAX_HANDSHAKES_PER_SOURCE = "max_handshakes_per_source are pending from its source"


class Closure(enum.Enum):
    """Why the server closed a stream connection it had admitted (its own protocol errors, such
    as bytes that cannot be framed, are counted where they are found)."""

    HANDSHAKE_TIMEOUT = "the TLS handshake took longer than handshake_timeout"
    HANDSHAKE_FAILED = "the TLS handshake failed"
    FIRST_MESSAGE_TIMEOUT = "no complete message within first_message_timeout"
    IDLE = "no message for the idle timeout"
    ALLOCATE_TIMEOUT = "no allocation within max_allocate_timeout (TURN)"


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamLimits:
    """The bounds of a server's TCP and TLS connections (``icestack serve stun|turn`` options of
    the same names); validated when built."""

    #: Connections open at once, TLS handshakes still pending included.
    max_connections: int = 1024
    #: Connections open at once from one source (an IPv4 address, an IPv6 /64): one host cannot
    #: take every slot. Clients behind one NAT share it.
    max_connections_per_source: int = 64
    #: TLS handshakes pending at once, and from one source.
    max_handshakes: int = 128
    max_handshakes_per_source: int = 8
    #: Seconds a TLS handshake may take, from the accept.
    handshake_timeout: float = 5.0
    #: Seconds a connection may take to send its first complete message, from the end of its TLS
    #: handshake (from the accept over TCP): a connection that says nothing is closed early.
    first_message_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "max_connections", "max_connections_per_source", "max_handshakes",
            "max_handshakes_per_source",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be at least 1")
        for name in ("handshake_timeout", "first_message_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise LocalProtocolError(f"{name} must be a positive number of seconds")


@dataclass(slots=True)
class StreamAdmission:
    """The connections a server holds by source, against its :class:`StreamLimits` (see the
    module docstring). Every call is O(1); the caller names a source by :func:`source_key`."""

    limits: StreamLimits = field(default_factory=StreamLimits)
    #: Connections refused, by reason.
    refused: dict[Refusal, int] = field(default_factory=lambda: dict.fromkeys(Refusal, 0))
    #: Connections the server closed, by reason.
    closed: dict[Closure, int] = field(default_factory=lambda: dict.fromkeys(Closure, 0))
    #: Connections held now (TLS handshakes included), and handshakes pending.
    connections: int = 0
    handshakes: int = 0
    _by_source: dict[str, int] = field(default_factory=dict, repr=False)
    _handshakes_by_source: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def sources(self) -> int:
        """Sources with a connection held now: the size of the table."""
        return len(self._by_source)

    def admit(self, source: str, *, tls: bool) -> Refusal | None:
        """Hold a connection from ``source`` (and a handshake with ``tls``), or say why not
        (counted in :attr:`refused`)."""
        limits = self.limits
        refusal = None
        if self.connections >= limits.max_connections:
            refusal = Refusal.MAX_CONNECTIONS
        elif self._by_source.get(source, 0) >= limits.max_connections_per_source:
            refusal = Refusal.MAX_CONNECTIONS_PER_SOURCE
        elif tls and self.handshakes >= limits.max_handshakes:
            refusal = Refusal.MAX_HANDSHAKES
        elif tls and self._handshakes_by_source.get(source, 0) >= limits.max_handshakes_per_source:
            refusal = Refusal.MAX_HANDSHAKES_PER_SOURCE
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.connections += 1
        _add(self._by_source, source, 1)
        if tls:
            self.handshakes += 1
            _add(self._handshakes_by_source, source, 1)
        return None

    def handshake_ended(self, source: str) -> None:
        """The TLS handshake of a connection from ``source`` is over, done or failed."""
        self.handshakes -= 1
        _add(self._handshakes_by_source, source, -1)

    def release(self, source: str) -> None:
        """A connection from ``source`` is gone (end its handshake first if it had one)."""
        self.connections -= 1
        _add(self._by_source, source, -1)


def _add(counts: dict[str, int], key: str, amount: int) -> None:
    """Add to ``counts[key]``, forgetting a key that reaches zero (so the table holds only
    sources with something open)."""
    count = counts.get(key, 0) + amount
    if count:
        counts[key] = count
    else:
        del counts[key]
