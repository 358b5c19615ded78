"""ice.recency: a table of recent keys is the same bounded, least-recent-first table whether it is
a tuple or a dict, and it is a tuple only while it is small."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ice.recency import SMALL, Recent, remember


def reference(keys: list[int], bound: int, *, refresh: bool) -> list[int]:
    """The table as a dict of every size keeps it: insertion order, the oldest evicted."""
    table: dict[int, None] = {}
    for key in keys:
        if key in table:
            if refresh:
                del table[key]
                table[key] = None
            continue
        table[key] = None
        if len(table) > bound:
            del table[next(iter(table))]
    return list(table)


@given(
    keys=st.lists(st.integers(0, 9), max_size=40),
    bound=st.integers(1, 8),
    refresh=st.booleans(),
)
def test_the_table_keeps_the_most_recent_keys_in_order_as_a_dict_would(
    keys: list[int], bound: int, refresh: bool
) -> None:
    table: Recent[int] = ()
    for count in range(1, len(keys) + 1):
        table = remember(table, keys[count - 1], bound, refresh=refresh)
        expected = reference(keys[:count], bound, refresh=refresh)
        assert list(table) == expected
        assert len(table) == len(expected) <= bound
        assert all(key in table for key in expected)
        if isinstance(table, tuple):
            assert len(table) <= SMALL  # a dict once past SMALL keys, never a tuple again


def test_a_table_past_small_keys_becomes_a_dict_and_stays_one() -> None:
    table: Recent[int] = ()
    for key in range(SMALL):
        table = remember(table, key, 100, refresh=False)
    assert table == tuple(range(SMALL))
    table = remember(table, SMALL, 100, refresh=False)
    assert isinstance(table, dict) and list(table) == list(range(SMALL + 1))
    table = remember(table, 0, 100, refresh=True)
    assert isinstance(table, dict) and list(table) == [*range(1, SMALL + 1), 0]
