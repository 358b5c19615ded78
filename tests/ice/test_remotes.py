"""ice.remotes.RemoteCandidates: a one-stream table that starts as a tuple behaves as the keyed
dict of a several-stream one does — the same finds, bound, order and replacements — through any
sequence of adds, replacements, removals and clears (hypothesis), back to a tuple when a removal
leaves it few."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ice.candidate import Candidate, CandidateType, TcpType
from ice.recency import SMALL
from ice.remotes import RemoteCandidates
from stun.address import Address

#: (component, transport, port, priority): few values, so that keys repeat and collide.
candidates = st.builds(
    lambda component, transport, port, priority: Candidate(
        "f",
        component,
        transport,
        priority,
        "198.51.100.7",
        port,
        CandidateType.HOST,
        tcp_type=TcpType.PASSIVE if transport == "tcp" else None,
    ),
    st.integers(1, 2),
    st.sampled_from(["udp", "tcp"]),
    st.integers(1, 4),
    st.integers(1, 9),
)
operations = st.lists(
    st.tuples(st.sampled_from(["add", "replace", "remove", "clear"]), candidates), max_size=30
)


@given(operations=operations, limit=st.integers(1, 7))
def test_a_one_stream_table_is_the_keyed_table_of_stream_0(
    operations: list[tuple[str, Candidate]], limit: int
) -> None:
    small = RemoteCandidates(limit)  # one stream: a tuple while it holds a few
    keyed = RemoteCandidates(limit, streams=2)  # a dict from the start; stream 0 compared
    for operation, candidate in operations:
        known = keyed.find(0, candidate.component, candidate.address, candidate.transport)
        if operation == "add" and known is None:
            assert small.add(0, candidate) == keyed.add(0, candidate)
        elif operation == "replace" and known is not None:
            small.replace(0, candidate)
            keyed.replace(0, candidate)
        elif operation == "remove" and known is not None:
            small.remove(0, known)
            keyed.remove(0, known)
        elif operation == "clear":
            small.clear()
            keyed.clear()
        assert list(small) == list(keyed)
        assert len(small) == len(keyed) <= limit
        assert isinstance(small._table, tuple) == (len(small) <= SMALL)
        assert small.full(0) == keyed.full(0)
        for component in (1, 2):
            for transport in ("udp", "tcp"):
                for port in range(1, 5):
                    address = Address("198.51.100.7", port)
                    assert small.find(0, component, address, transport) is keyed.find(
                        0, component, address, transport
                    )
