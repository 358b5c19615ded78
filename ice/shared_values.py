"""Equal immutable values held once, not once per agent (a flyweight table, bounded).

Every connection of a process gathers on the same interface addresses, so their agents compute
equal small tuples — the base addresses' local preferences, the interface addresses mDNS works
on — and would each hold a copy (~0.1 KiB apiece). :meth:`SharedValues.get` hands back the first
equal value seen instead. The table holds at most ``limit`` values; when full it starts afresh
(values already handed out stay valid: sharing is only a saving).
"""

from __future__ import annotations

from typing import Generic, TypeVar

_T = TypeVar("_T")


class SharedValues(Generic[_T]):
    """One table of shared values of one kind (each must be hashable and immutable)."""

    __slots__ = ("_limit", "_values")

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._values: dict[_T, _T] = {}

    def get(self, value: _T) -> _T:
        """The first value seen equal to ``value``, or ``value`` itself from now on."""
        values = self._values
        shared = values.get(value)
        if shared is not None:
            return shared
        if len(values) >= self._limit:
            values.clear()
        values[value] = value
        return value
