"""ice.shared_values: equal values come back as the first one seen, and the table stays bounded."""

from __future__ import annotations

from ice.candidate import TcpType
from ice.config import AgentConfig
from ice.shared_values import SharedValues


def test_an_equal_value_comes_back_as_the_first_one_seen() -> None:
    table: SharedValues[tuple[str, int]] = SharedValues()
    first = ("127.0.0.1", 65535)
    copy = tuple(["127.0.0.1", 65535])
    assert copy == first and copy is not first
    assert table.get(first) is first
    assert table.get(copy) is first
    other = ("::1", 65534)
    assert table.get(other) is other


def test_the_table_starts_afresh_when_full() -> None:
    table: SharedValues[int] = SharedValues(limit=4)
    values = [1000 + n for n in range(4)]
    for value in values:
        table.get(value)
    assert len(table._values) == 4
    table.get(2000)  # full: emptied, then holds the new value alone
    assert len(table._values) == 1
    late = int("1000")  # equal to a value held before, no longer shared
    assert late is not values[0] and table.get(late) is late


def test_configurations_share_their_equal_small_tuples() -> None:
    first = AgentConfig(streams=(1, 2), tcp_types=("passive",))  # type: ignore[arg-type]
    second = AgentConfig(streams=tuple([1, 2]), tcp_types=(TcpType.PASSIVE,))
    assert first.streams is second.streams and first.tcp_types is second.tcp_types
