"""ice.gather: the gatherer's one index table answers as the plain rules say, whatever the order in
which local candidates are learnt and lost.

``Gatherer.find(stream, component, address)`` is the first candidate learnt (and not lost since)
with that stream, component and transport address; ``Gatherer.on_base(base)`` the first learnt on
that base, forgotten when it is lost. The table keeps no key of its own for a candidate at its
base's address (found through the base's entry), so these properties hold the lookups equal to a
scan of the candidate list and to a plain dict per index, under hypothesis.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ice.candidate import Candidate, CandidateType
from ice.config import AgentConfig
from ice.gather import Gatherer, LocalCandidate
from stun import Address

#: Few addresses, so that bases and candidate addresses meet often.
ADDRESSES = [Address("192.0.2.1", 5000), Address("192.0.2.1", 5001), Address("192.0.2.2", 5000)]

adds = st.tuples(
    st.just("add"),
    st.integers(0, 1),  # stream
    st.integers(1, 2),  # component
    st.sampled_from(ADDRESSES),  # base
    st.sampled_from(ADDRESSES),  # the candidate's address
)
removes = st.tuples(st.just("remove"), st.integers(0, 20))
operations = st.lists(st.one_of(adds, removes), max_size=25)


def local_candidate(stream: int, component: int, base: Address, address: Address) -> LocalCandidate:
    candidate = Candidate(
        foundation="1",
        component=component,
        transport="udp",
        priority=1,
        host=address.host,
        port=address.port,
        type=CandidateType.HOST,
        base=base,
    )
    return LocalCandidate(candidate, base, stream)


def key(local: LocalCandidate) -> tuple[int, int, Address]:
    return (local.stream, local.candidate.component, local.candidate.address)


A, B, C = ADDRESSES


@settings(max_examples=500, deadline=None)
@given(operations)
# Two candidates at one address on other bases, then one at its own base's address; the first
# goes: the second (the first left), not the one found through its base, is the answer.
@example([("add", 0, 1, B, A), ("add", 0, 1, C, A), ("add", 0, 1, A, A), ("remove", 0)])
def test_find_and_on_base_answer_as_a_scan_and_a_plain_table(
    steps: list[tuple[Any, ...]],
) -> None:
    gatherer = Gatherer(AgentConfig(), lambda event: None, lambda datagram: None)
    by_base: dict[Address, LocalCandidate] = {}  # the on_base rule, kept the plain way
    for step in steps:
        if step[0] == "add":
            _, stream, component, base, address = step
            local = local_candidate(stream, component, base, address)
            gatherer._add(local)
            by_base.setdefault(base, local)
        elif gatherer.candidates:
            local = gatherer.candidates[step[1] % len(gatherer.candidates)]
            gatherer._remove(local)
            if by_base.get(local.base) is local:
                del by_base[local.base]
        for stream in (0, 1):
            for component in (1, 2):
                for address in ADDRESSES:
                    wanted = (stream, component, address)
                    first = next((c for c in gatherer.candidates if key(c) == wanted), None)
                    assert gatherer.find(stream, component, address) is first
        for base in ADDRESSES:
            assert gatherer.on_base(base) is by_base.get(base)
