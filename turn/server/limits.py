"""Token buckets: the relay's bandwidth limit per allocation and the 401 budget per source address.

A :class:`TokenBucket` holds up to ``burst`` tokens and gains ``rate`` tokens a second; spending
more than it holds is refused. :class:`SourceRateLimiter` keeps one bucket per key (a source IP
address) in a table of at most ``max_entries``: when a new key arrives at a full table, the key
used longest ago is forgotten, so a flood from many addresses costs a bounded amount of memory (a
forgotten key starts again with a full bucket, which bounds what it can get to one burst per
eviction). :func:`source_key` names a source for it: an IPv4 address, or the /64 an IPv6 address
is in, since one host commonly holds a whole /64.
"""

from __future__ import annotations

import ipaddress

from stun import LocalProtocolError


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
    """The key a source address is limited under: IPv4 as it is, IPv6 by its /64 prefix."""
    if ":" not in host:
        return host
    return str(ipaddress.IPv6Network((host, 64), strict=False).network_address)
