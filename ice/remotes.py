"""The remote candidates of an agent: a bounded table with O(1) lookups (RFC 8445 §5.1, §7.3.1.3).

Theory of operation. Remote candidates come from two sources the peer controls: signalling
(trickled candidates, RFC 8838) and the peer's own checks, each of which, from an address the
agent has not seen, makes a peer-reflexive candidate (§7.3.1.3). A peer can repeat either at will,
so the table holds at most ``limit`` candidates per data stream and refuses more (the agent counts
the refusal). Candidates are keyed by (stream, component, address): finding the candidate a check
came from — done for every check that arrives — is one dict access. Iteration yields
``(stream, candidate)`` in the order candidates were learnt; a signalled candidate that replaces
the peer-reflexive one of the same address keeps its place.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator

from stun.address import Address

from .candidate import Candidate

_Key = tuple[int, int, Address]


class RemoteCandidates:
    """Remote candidates by (stream, component, address), at most ``limit`` per stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._table: dict[_Key, tuple[int, Candidate]] = {}
        self._per_stream: Counter[int] = Counter()

    def __iter__(self) -> Iterator[tuple[int, Candidate]]:
        return iter(list(self._table.values()))

    def __len__(self) -> int:
        return len(self._table)

    def clear(self) -> None:
        self._table.clear()
        self._per_stream.clear()

    def find(self, stream: int, component: int, address: Address) -> Candidate | None:
        """The remote candidate of this stream and component at ``address``, if known."""
        entry = self._table.get((stream, component, address))
        return None if entry is None else entry[1]

    def full(self, stream: int) -> bool:
        """Whether the stream holds ``limit`` candidates: a new address would not be learnt."""
        return self._per_stream[stream] >= self.limit

    def add(self, stream: int, candidate: Candidate) -> bool:
        """Learn a candidate whose address is not known yet; ``False`` if the stream is full."""
        if self.full(stream):
            return False
        self._table[(stream, candidate.component, candidate.address)] = (stream, candidate)
        self._per_stream[stream] += 1
        return True

    def replace(self, stream: int, candidate: Candidate) -> None:
        """Put ``candidate`` in the place of the known one with the same address."""
        self._table[(stream, candidate.component, candidate.address)] = (stream, candidate)


def unusable(candidate: Candidate) -> bool:
    """Whether no datagram can be sent to the candidate: port 0, an unspecified address
    (``0.0.0.0`` would reach this very host) or a multicast one. ``host`` is an IP literal."""
    ip = ipaddress.ip_address(candidate.host)
    return candidate.port == 0 or ip.is_unspecified or ip.is_multicast
