"""Finding a pair by its path — (local base, remote address) — as every datagram does: the check
list and the valid list look through their few pairs and keep a table by path only once they
hold more than ``FEW_PAIRS``; whichever way, the answer is the pair a walk over all of them
finds, while pairs come, are evicted (``max_pairs``) and go. The valid list's count of
components left to decide, asked after every datagram, follows the same changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ice.candidate import Candidate, CandidateType
from ice.checklist import FEW_PAIRS, CandidatePair, CheckList, SelectedPairs
from ice.config import AgentConfig
from ice.nomination import NominationPolicy
from stun.address import Address

BASES = (Address("192.0.2.1", 4000), Address("192.0.2.1", 4001))
PORTS = range(5000, 5000 + 3 * FEW_PAIRS)


def remote(port: int, priority: int) -> Candidate:
    return Candidate(
        foundation=f"r{port}",
        component=1,
        transport="udp",
        priority=priority,
        host="198.51.100.1",
        port=port,
        type=CandidateType.HOST,
    )


def local(base: Address) -> Candidate:
    return Candidate(
        foundation=f"l{base.port}",
        component=1,
        transport="udp",
        priority=2**24,
        host=base.host,
        port=base.port,
        type=CandidateType.HOST,
    )


def walk(pairs: list[CandidatePair], base: Address, port: int) -> CandidatePair | None:
    found = [p for p in pairs if p.local_base == base and p.remote.address.port == port]
    assert len(found) <= 1  # one pair per path
    return found[0] if found else None


paths = st.tuples(st.sampled_from(BASES), st.sampled_from(PORTS))


@given(
    st.integers(min_value=1, max_value=2 * FEW_PAIRS),
    st.lists(st.tuples(paths, st.integers(min_value=1, max_value=2**31 - 1)), max_size=40),
)
def test_the_check_list_finds_what_a_walk_finds(
    max_pairs: int, added: list[tuple[tuple[Address, int], int]]
) -> None:
    checklist = CheckList(stream=0, max_pairs=max_pairs)
    for (base, port), priority in added:
        checklist.add(local(base), base, remote(port, priority), controlling=True)
        assert len(checklist) <= max_pairs
        for probe_base in BASES:
            for probe_port in PORTS:
                found = checklist.find(probe_base, Address("198.51.100.1", probe_port))
                assert found is walk(checklist.pairs, probe_base, probe_port)


def recount_deciding(policy: NominationPolicy) -> int:
    """Components with a valid pair and no nominee, by a look at each."""
    return sum(
        1 for component in policy._components if component.valid and component.nominating is None
    )


steps = st.tuples(
    st.sampled_from(["valid", "nominate", "lose base", "lose path"]),
    st.sampled_from(BASES),
    st.sampled_from(PORTS),
    st.booleans(),
)


@given(st.lists(steps, max_size=40))
def test_the_valid_list_finds_what_a_walk_finds(
    changes: list[tuple[str, Address, int, bool]],
) -> None:
    """Pairs made valid, nominations that fail (which take the pair out of the list) or
    conclude, local bases and paths lost; the count of components left to decide follows."""
    policy = NominationPolicy(AgentConfig(max_pairs=3 * FEW_PAIRS))
    checklist = CheckList(stream=0, max_pairs=100)
    for kind, base, port, fails in changes:
        address = Address("198.51.100.1", port)
        if kind == "valid":
            pair = checklist.find(base, address) or checklist.add(
                local(base), base, remote(port, port), controlling=True
            )
            assert pair is not None
            if not policy.pair_valid(pair, now=0.0):  # refused only by a full valid list
                assert policy.size == 3 * FEW_PAIRS
        elif kind == "nominate":
            nominee = policy.choose(checklist, 1, now=100.0)  # the best valid pair, if any
            if nominee is not None and fails:
                policy.nomination_failed(nominee)
            elif nominee is not None:
                policy.concluded(nominee)
        elif kind == "lose base":
            policy.forget(base)
        else:
            policy.forget(base, address)
        valid = policy.valid_pairs(0, 1)
        assert policy.size == len(valid)
        assert policy.deciding == recount_deciding(policy)
        for probe_base in BASES:
            for probe_port in PORTS:
                found = policy.valid_on(probe_base, Address("198.51.100.1", probe_port))
                assert found is walk(valid, probe_base, probe_port)


def test_a_selected_pair_is_found_by_its_path_only() -> None:
    checklist = CheckList(stream=0, max_pairs=10)
    first = checklist.add(local(BASES[0]), BASES[0], remote(5000, 1), controlling=True)
    assert first is not None
    selected = SelectedPairs()
    selected.put(first)
    assert selected.on_path(BASES[0], Address("198.51.100.1", 5000)) is first
    assert selected.on_path(BASES[1], Address("198.51.100.1", 5000)) is None
    assert selected.on_path(BASES[0], Address("198.51.100.1", 5001)) is None
    del selected[(0, 1)]
    assert selected.on_path(BASES[0], Address("198.51.100.1", 5000)) is None


def test_selected_pairs_behave_as_a_dict_by_component() -> None:
    """One pair per (stream, component), in the order a dict keeps: a new pair of a component
    takes its place and gives back the one it replaces."""
    checklist = CheckList(stream=0, max_pairs=10)
    first = checklist.add(local(BASES[0]), BASES[0], remote(5000, 1), controlling=True)
    second = checklist.add(local(BASES[1]), BASES[1], remote(5001, 1), controlling=True)
    other = CheckList(stream=1, max_pairs=10)
    third = other.add(local(BASES[0]), BASES[0], remote(5002, 1), controlling=True)
    assert first is not None and second is not None and third is not None
    selected = SelectedPairs()
    assert selected.put(first) is None
    selected.put(third)
    assert selected.put(second) is first
    assert list(selected) == [(0, 1), (1, 1)]
    assert selected.items() == [((0, 1), second), ((1, 1), third)]
    assert (len(selected), selected.get((0, 1)), selected[(1, 1)]) == (2, second, third)
    assert selected.get((0, 2)) is None
    del selected[(0, 1)]
    assert selected.values() == (third,)
    with pytest.raises(KeyError):
        del selected[(0, 1)]
