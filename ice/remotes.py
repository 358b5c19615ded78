"""The remote candidates of an agent: a bounded table with O(1) lookups (RFC 8445 §5.1, §7.3.1.3).

Theory of operation. Remote candidates come from two sources the peer controls: signalling
(trickled candidates, RFC 8838) and the peer's own checks, each of which, from an address the
agent has not seen, makes a peer-reflexive candidate (§7.3.1.3). A peer can repeat either at will,
so the table holds at most ``limit`` candidates per data stream and refuses more (the agent counts
the refusal). Candidates are keyed by (stream, component, transport, address) — a peer may offer
a UDP and a TCP candidate on one address and port, since the two port spaces are separate —
so finding the candidate a check came from, done for every check that arrives, is one dict
access. A one-stream session's first few candidates (most sessions have no more) are a tuple
instead, walked to find one: a dict and its keys take ~300 bytes for one candidate, a tuple 64.
Iteration yields ``(stream, candidate)`` in the order candidates were learnt; a signalled
candidate that replaces the peer-reflexive one of the same address keeps its place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from stun.address import Address

from .candidate import Candidate, TcpType
from .recency import SMALL

_Key = tuple[int, int, str, Address]


class RemoteCandidates:
    """Remote candidates by (stream, component, transport, address), at most ``limit`` per
    stream."""

    __slots__ = ("_per_stream", "_table", "limit")

    def __init__(self, limit: int, streams: int = 1) -> None:
        self.limit = limit
        #: The candidates by key; the stream is the key's first item (a tuple per value would
        #: cost 56 bytes more). With one stream, up to ``SMALL`` candidates are a tuple of them.
        self._table: dict[_Key, Candidate] | tuple[Candidate, ...] = () if streams == 1 else {}
        #: How many candidates each of ``streams`` streams holds, by stream number (a Counter
        #: costs ~250 bytes); ``None`` with one stream, which holds the whole table.
        self._per_stream: list[int] | None = [0] * streams if streams > 1 else None

    def __iter__(self) -> Iterator[tuple[int, Candidate]]:
        table = self._table
        if isinstance(table, tuple):
            return iter([(0, candidate) for candidate in table])
        return iter([(key[0], candidate) for key, candidate in table.items()])

    def __len__(self) -> int:
        return len(self._table)

    def clear(self) -> None:
        counts = self._per_stream
        if counts is None:
            self._table = ()
        else:
            self._table = {}
            counts[:] = [0] * len(counts)

    def find(
        self, stream: int, component: int, address: Address, transport: str = "udp"
    ) -> Candidate | None:
        """The remote candidate of this stream, component and transport at ``address``, if
        known."""
        table = self._table
        if isinstance(table, tuple):  # one stream: ``stream`` is 0
            for candidate in table:
                if (
                    candidate.address == address
                    and candidate.component == component
                    and candidate.transport == transport
                ):
                    return candidate
            return None
        return table.get((stream, component, transport, address))

    def full(self, stream: int) -> bool:
        """Whether the stream holds ``limit`` candidates: a new address would not be learnt."""
        counts = self._per_stream
        return (len(self._table) if counts is None else counts[stream]) >= self.limit

    def add(self, stream: int, candidate: Candidate) -> bool:
        """Learn a candidate whose address is not known yet; ``False`` if the stream is full."""
        if self.full(stream):
            return False
        table = self._table
        if isinstance(table, tuple):
            if len(table) < SMALL:
                self._table = (*table, candidate)
                return True
            table = self._table = {_key(0, known): known for known in table}
        table[_key(stream, candidate)] = candidate
        counts = self._per_stream
        if counts is not None:
            counts[stream] += 1
        return True

    def remove(self, stream: int, candidate: Candidate) -> None:
        """Forget a known candidate (one nothing can pair with any more, :mod:`ice.release`).
        A one-stream table that falls back to ``SMALL`` candidates is a tuple again."""
        table = self._table
        key = _key(stream, candidate)
        if isinstance(table, tuple):
            self._table = tuple([known for known in table if _key(0, known) != key])
            return
        if table.pop(key, None) is None:
            return
        counts = self._per_stream
        if counts is not None:
            counts[stream] -= 1
        elif len(table) <= SMALL:
            self._table = tuple(table.values())

    def replace(self, stream: int, candidate: Candidate) -> None:
        """Put ``candidate`` in the place of the known one with the same address."""
        table = self._table
        if isinstance(table, tuple):
            key = _key(0, candidate)
            self._table = tuple([candidate if _key(0, known) == key else known for known in table])
        else:
            table[_key(stream, candidate)] = candidate


def _key(stream: int, candidate: Candidate) -> _Key:
    return (stream, candidate.component, candidate.transport, candidate.address)


def unusable(candidate: Candidate) -> bool:
    """Whether no datagram can be sent to the candidate: port 0, an unspecified address
    (``0.0.0.0`` would reach this very host) or a multicast one. ``host`` is an IP literal. An
    active TCP candidate's port is never connected to (RFC 6544 §4.5), so any, 0 too, will do."""
    ip = ipaddress.ip_address(candidate.host)
    no_port = candidate.port == 0 and candidate.tcp_type is not TcpType.ACTIVE
    return no_port or ip.is_unspecified or ip.is_multicast
