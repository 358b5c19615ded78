"""Small bounded tables of recent keys, least recent first: the transaction IDs of the peer's
recent checks and the paths they came on (RFC 8445 §7.3.1; :mod:`ice.incoming`).

A peer can grow such a table, so it is bounded; yet almost every session sees a path or two and
a few transaction IDs in all. A table of up to :data:`SMALL` keys is therefore a tuple (48 bytes
and 8 a key), and only a longer one a dict (224 bytes and up, a key found in O(1) at any size).
:func:`remember` gives the table back with its key the most recent and the least recent one
dropped past the bound; ``in`` and ``len`` work on either form.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")

#: How many keys a table keeps as a tuple (whose ``in`` walks them) before it becomes a dict.
SMALL = 4

#: A table of recent keys, least recent first.
Recent = tuple[K, ...] | dict[K, None]


def remember(table: Recent[K], key: K, bound: int, *, refresh: bool) -> Recent[K]:
    """``table`` with ``key`` in it and at most ``bound`` keys (the least recent go first).
    A key already there stays where it is, or, with ``refresh``, becomes the most recent."""
    if isinstance(table, dict):
        if key in table:
            if refresh:
                del table[key]  # re-inserted below, as the most recent
                table[key] = None
            return table
        table[key] = None
        if len(table) > bound:
            del table[next(iter(table))]  # the least recent: a dict keeps insertion order
        return table
    if key in table:
        if not refresh or table[-1] == key:
            return table
        table = tuple([kept for kept in table if kept != key])
    table = (*table, key)[-bound:]
    return dict.fromkeys(table) if table[SMALL:] else table  # (no len() call)
